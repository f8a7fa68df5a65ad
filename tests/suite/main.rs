//! The integration suite: one binary, one module per subject.

mod authority;
mod cli;
mod common;
mod e2e;
mod examples;
mod fleet;
mod fuzz_found;
mod harness;
mod http;
mod interop;
mod jose_attacks;
mod jose_props;
mod jose_vectors;
mod redis_harness;
mod remote_jwks;
mod sdk;
mod store;
mod token_cache;
mod widget;
mod wycheproof;
