//! The integration suite: one binary, one module per subject.

mod authority;
mod cli;
mod common;
mod e2e;
mod examples;
mod fleet;
mod harness;
mod http;
mod interop;
mod jose_attacks;
mod jose_props;
mod jose_vectors;
mod oauth;
mod oauth_flows;
mod oauth_opaque;
mod oauth_profile;
mod oauth_rust_client;
mod redis_harness;
mod remote_jwks;
mod sdk;
mod store;
mod token_cache;
mod widget;
mod wycheproof;
