//! # tokensmith
//!
//! Issues short-lived JWTs, publishes their keys as a JWKS, rotates the keys
//! without breaking anyone, and verifies tokens, refusing a second use of the
//! same `jti` where asked.
//!
//! The library is the product: the HTTP server and the command line are thin
//! shells over it, and a Rust backend can embed the same issuer and verifier
//! in-process.
//!
//! # Layout
//!
//! - [`jose`]: the wire format (algorithms, JWK, compact JWS). Nothing about
//!   policy, key files or HTTP; the only module that knows the crypto provider
//!   is [`jose::alg`].
//! - [`clock`]: injected time.
#![forbid(unsafe_code)]

pub mod clock;
pub mod jose;
