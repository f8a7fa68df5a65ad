//! # tokensmith
//!
//! Issues short-lived JWTs, publishes their keys as a JWKS, rotates the keys
//! without breaking anyone, and verifies tokens, refusing a second use of the
//! same `jti` where asked.
//!
//! The library is the product: the HTTP server and the command line are thin
//! shells over it, and a Rust backend can embed the same issuer and verifier
//! in-process. Everything a user needs is re-exported here, at the crate
//! root; the public modules hold the rest (key-ring states, store outcomes,
//! the wire format) for those who build on the parts.
//!
//! # Issue a token from a keys folder
//!
//! The folder is the one `tokensmith keys init` makes (or [`KeyDir::init`]);
//! the token is signed with its active key, on the system clock.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("tokensmith-doc-issue-{}", std::process::id()));
//! # tokensmith::KeyDir::new(&dir).ensure(tokensmith::Algorithm::EdDSA, 0, 0)?.0;
//! use tokensmith::{Issuer, TokenSpec};
//! let issuer = Issuer::from_dir(&dir, "https://auth.example.com")?;
//! let spec = TokenSpec { sub: "alice".into(), aud: vec!["chatbot".into()], ttl: 300, ..Default::default() };
//! let token = issuer.issue(spec)?.token;
//! # assert_eq!(token.split('.').count(), 3);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
//!
//! # Verify in an axum handler, with the issuer's JWKS
//!
//! A handler that takes a [`Bearer`] runs only for a request with a valid
//! token; the keys are fetched from the issuer, cached, and refetched when
//! it rotates ([`RemoteJwks`]). Refusals answer 401/403 with a
//! `WWW-Authenticate: Bearer` challenge.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use axum::{routing::get, Router};
//! use tokensmith::{Bearer, BearerConfig, RemoteJwks, Validation};
//!
//! async fn me(token: Bearer) -> String {
//!     format!("hello {}", token.sub)
//! }
//! let jwks = Arc::new(RemoteJwks::from_url("https://auth.example.com/.well-known/jwks.json")?);
//! let validation = Validation::new("https://auth.example.com").audience("orders-api");
//! let app: Router = Router::new().route("/me", get(me)).with_state(BearerConfig::from_remote(jwks, validation)?);
//! # let _ = app; Ok(()) }
//! ```
//!
//! Per-route scopes and single use are a [`Policy`] type (`Bearer<PlaceOrder>`,
//! see [`BearerConfig`]); without axum, [`RemoteJwks::verifier`] verifies
//! a token with the same keys.
//!
//! # Verify offline, with a JWKS file
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("tokensmith-doc-offline-{}", std::process::id()));
//! # let ring = tokensmith::KeyDir::new(&dir).ensure(tokensmith::Algorithm::EdDSA, 0, 0)?.0;
//! # let path = dir.join("jwks.json");
//! # std::fs::write(&path, &ring.snapshot()?.jwks_json)?;
//! # let spec = tokensmith::TokenSpec { sub: "alice".into(), aud: vec!["chatbot".into()], ttl: 300, ..Default::default() };
//! # let token = tokensmith::Issuer::from_ring(&ring, "https://auth.example.com")?.issue(spec)?.token;
//! use tokensmith::{StaticKeys, Validation, Verifier};
//! let keys = StaticKeys::from_file(&path)?;
//! let verifier = Verifier::from_keys(keys, Validation::new("https://auth.example.com").audience("chatbot"));
//! let claims = verifier.verify(&token)?;
//! assert_eq!(claims.sub, "alice");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! One file or folder per subject, in the order a token flows; the flow is
//! one-way (`jose` knows nothing of keys on disk, `keys` nothing of HTTP,
//! `server` nothing of RSA).
//!
//! - `jose/` ([`jose`]): the wire format: `alg.rs` (algorithms, and the only
//!   file that knows the crypto provider), `jwk.rs` (JWK, JWKS, thumbprints),
//!   `jws.rs` (compact JWS), `json.rs` and `der.rs` (strict parsers, internal).
//! - `clock.rs`: injected time ([`Clock`], [`SystemClock`], [`ManualClock`]).
//! - `units.rs` ([`units`]): durations, a request's `ttl`, and rates, read from text.
//! - `config/` ([`config`]): `tokensmith.toml` + `TOKENSMITH_*` overrides,
//!   checked once into a [`Config`] (`raw.rs` → `env.rs` → `check.rs`).
//! - `clients.rs` ([`clients`]): the client registry: API keys (by hash),
//!   public keys, origins, policy.
//! - `keys/` ([`keys`]): the key ring (`next → active → retiring`) and its
//!   snapshot; `disk.rs`, the keys folder ([`KeyDir`]).
//! - `claims.rs` ([`claims`]): [`Claims`], [`Validation`], and the
//!   [`Rejection`] codes.
//! - `issuer.rs`: claims in, signed token out ([`Issuer`]).
//! - `verifier.rs`: token in, validated claims out, from any [`KeySource`]
//!   ([`Verifier`], [`StaticKeys`]).
//! - `store/` ([`store`]): state shared between instances (replay marks,
//!   revocations, refresh-token families, rate counters): `memory.rs`,
//!   `redis.rs`; fails closed.
//! - `authority/`: the one home of every policy rule ([`Authority`]):
//!   `policy.rs` (a client's request cut to its policy), `flows.rs` (guest,
//!   exchange, refresh, session), `error.rs`.
//! - `session.rs`, `refresh.rs`: the app-session check and refresh-token
//!   families, used by the authority's flows (internal).
//! - `oauth/` ([`oauth`]): OAuth 2.0 on the wire (forms, client
//!   credentials, grants, errors, metadata); the rules are the authority's
//!   (`authority/oauth.rs`, `authority/format.rs`).
//! - `server/` ([`server`]): the HTTP service (axum), a thin shell over the
//!   authority; its handlers are private; `listener.rs`, its accept loop
//!   (connection cap, header and idle timeouts, a drain with a deadline).
//! - `jwks.rs` ([`jwks`]): [`RemoteJwks`] and [`RemoteVerifier`], an
//!   issuer's keys over HTTP; also used by the authority for clients that
//!   publish their keys (`private_key_jwt`).
//! - `client/` ([`client`]): the other side of the wire: [`TokenCache`] and
//!   the [`Bearer`] extractor (and `client::jwks`, the same module as
//!   [`jwks`]).
//! - `cli/` and `main.rs`: the `tokensmith` binary (clap, logging, signals,
//!   binding); not part of the library.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub(crate) mod authority;
pub mod claims;
pub mod client;
pub mod clients;
pub(crate) mod clock;
pub mod config;
pub mod dpop;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod issuer;
pub mod jose;
pub mod jwks;
pub mod keys;
pub mod oauth;
pub(crate) mod refresh;
pub mod server;
pub(crate) mod session;
pub mod store;
#[cfg(test)]
mod testlog;
pub mod units;
pub(crate) mod verifier;

pub use authority::{
    exchange_audience, Audience, Authority, AuthorityError, ClientsChange, DpopPresented, GlobalLimits, Grant,
    OAuthError, OAuthGrant, PolicyError, Presentation, Presenter, Purpose, Revocation, TokenRequest, VerifyOptions,
    MAX_IDEMPOTENCY_KEY_LEN,
};
pub use claims::{Claims, Rejection, Validation};
pub use client::cache::{CacheError, CacheOptions, IssueToken, Issued, SharedRedis, TokenCache};
pub use client::extract::{AnyToken, Bearer, BearerConfig, BearerConfigError, BearerRejection, Policy, Presented};
pub use clients::{Client, ClientRegistry};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::{Config, ConfigError};
pub use issuer::{IssueError, IssuedToken, Issuer, TokenSpec};
pub use jose::{Algorithm, JoseError, Jwk, JwkSet};
pub use jwks::{JwksError, JwksOptions, RemoteJwks, RemoteVerifier};
pub use keys::disk::KeyDir;
pub use keys::{KeyError, KeyRing};
pub use session::SessionError;
pub use store::memory::MemoryStore;
pub use store::redis::RedisStore;
pub use store::{AnyStore, Store, StoreError};
pub use verifier::{KeySource, StaticKeys, Verifier};
