//! The other side of the wire: what a verifying agent or a plugin backend
//! embeds to check tokens from a tokensmith server without calling it for
//! each one.
//!
//! - [`jwks`]: `RemoteJwks`, the issuer's keys over HTTP, cached and refreshed.

pub mod jwks;
