//! The other side of the wire: what a verifying agent, a plugin backend or
//! an identity backend embeds to use tokens from a tokensmith server without
//! calling it for each one.
//!
//! - [`jwks`]: `RemoteJwks`, the issuer's keys over HTTP, cached and refreshed
//!   (the crate's top-level [`crate::jwks`], re-exported here: the
//!   authority uses it too, and the crate's modules import nothing that
//!   imports them back).
//! - [`cache`]: `TokenCache`, a backend's own tokens reused until shortly
//!   before expiry, one renewal at a time (optionally across instances, in Redis).
//! - [`extract`]: `Bearer<P>`, the axum extractor that turns a request's
//!   bearer token into verified claims, with per-route scopes and single use.
//!
//! Nothing here issues tokens or holds signing keys.

pub mod cache;
pub mod extract;
pub use crate::jwks;
