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
//! - [`units`]: durations, a request's `ttl`, and rates, read from text; depends on nothing else here.
//! - [`config`]: `tokensmith.toml` + `TOKENSMITH_*` overrides, checked once into a [`config::Config`].
//! - [`clients`]: the client registry: API keys (by hash), public keys, origins, policy.
//! - [`keys`]: the key ring (`next → active → retiring`), its folder on disk,
//!   and the snapshot requests read.
//! - [`claims`]: JWT claims, [`claims::Validation`], and [`claims::Rejection`] codes.
//! - [`issuer`]: claims in, signed token out.
//! - [`verifier`]: token in, validated claims out, from any [`verifier::KeySource`].
//! - [`store`]: state shared between instances (replay marks, revocations,
//!   refresh-token families, rate counters), in memory or in Redis; fails closed.
//! - [`session`]: the app-session check (`[session] check_url`), and the
//!   policy cut of identities that someone other than a client's backend vouches for.
//! - [`refresh`]: refresh tokens: opaque secrets stored by hash, rotated
//!   once each, reuse revoking the family.
//! - [`oauth`]: OAuth 2.0 on the wire (forms, client credentials, grants,
//!   errors, metadata); the rules are the authority's.
//! - [`server`]: the HTTP service (axum), a thin shell over the above.
//! - [`client`]: the other side of the wire: `RemoteJwks` (cached, refreshed
//!   issuer keys), `TokenCache` (renew ahead, single flight, optional Redis
//!   sharing) and the `Bearer` extractor for plugin backends.
//! - [`cli`]: the `tokensmith` command line.
#![forbid(unsafe_code)]

pub mod authority;
pub mod claims;
pub mod client;
pub mod clients;
pub mod clock;
pub mod config;
pub mod issuer;
pub mod jose;
pub mod keys;
pub mod oauth;
pub mod refresh;
pub mod server;
pub mod session;
pub mod store;
pub mod units;
pub mod verifier;

pub use authority::{exchange_audience, Authority, AuthorityError, Revocation, TokenRequest, VerifyOptions};
pub use claims::{Claims, Rejection, Validation};
