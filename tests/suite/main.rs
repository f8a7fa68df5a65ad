//! The integration suite: one binary, one module per subject.

mod common;
mod harness;
mod interop;
mod jose_attacks;
mod jose_props;
mod jose_vectors;
mod redis_harness;
mod store;
mod wycheproof;
