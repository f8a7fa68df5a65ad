//! What the `cargo fuzz` targets in `fuzz/` reach, in one place.
//!
//! The fuzz crate is built apart from this one (`fuzz/Cargo.toml` has its
//! own `[workspace]`) and names only what is re-exported here, so the public
//! surface can shrink (internals going `pub(crate)`) without breaking the
//! fuzzers: whatever a target needs is kept reachable by one line below.
//! Hidden from the documentation and not part of the API.md contract: it
//! adds no behaviour, only names, and must never grow any.

pub use crate::claims::{Claims, Rejection, Validation};
pub use crate::clients::{Client, ClientRegistry, OriginPattern};
pub use crate::config::{Config, ConfigError};
pub use crate::jose::alg::hmac_sha256;
pub use crate::jose::json::{parse_object, parse_object_split};
pub use crate::jose::jws::{decode as jws_decode, sign as jws_sign, verify as jws_verify, Jws, MAX_TOKEN_LEN};
pub use crate::jose::{Algorithm, JoseError, Jwk, JwkSet, PublicKey, SigningKey, VerifyingKey};
pub use crate::verifier::{KeySource, StaticKeys};
