//! The integration suite: one binary, one module per subject.

mod common;
mod fleet;
mod harness;
mod interop;
mod jose_attacks;
mod jose_props;
mod jose_vectors;
mod redis_harness;
mod store;
mod wycheproof;
mod http;
mod cli;
mod e2e;
mod widget;
mod remote_jwks;
mod token_cache;
mod examples;
