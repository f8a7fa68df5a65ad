//! The JOSE wire format: algorithms, keys as JWK, compact JWS.
//!
//! Nothing here knows about claims, key files, clients or HTTP. Everything
//! here is strict: what it accepts, every other careful implementation
//! accepts too, and it reads nothing from a token that would choose a key
//! or an algorithm.

pub mod alg;
mod der;
pub(crate) mod json;
pub mod jwk;
pub mod jws;

/// The test fixture keys (PKCS#8 DER, `tests/fixtures/`), one per key type,
/// with the algorithm each is used for: for unit tests that must cover every
/// key type.
#[cfg(test)]
pub(crate) const FIXTURE_KEYS: [(Algorithm, &[u8]); 3] = [
    (Algorithm::RS256, include_bytes!("../../tests/fixtures/rsa2048.der")),
    (Algorithm::ES256, include_bytes!("../../tests/fixtures/p256.der")),
    (Algorithm::EdDSA, include_bytes!("../../tests/fixtures/ed25519.der")),
];

pub use alg::{Algorithm, PublicKey, SigningKey, VerifyingKey};
pub use jwk::{Jwk, JwkSet};

use std::fmt;

/// Why the jose layer refused something.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoseError {
    /// The token (or a JSON document in it) is not well formed.
    Malformed(String),
    /// The token is longer than the size cap.
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The cap in bytes.
        max: usize,
    },
    /// An `alg` value this crate does not implement (`none` among them).
    UnsupportedAlg(String),
    /// The header's `alg` is not the algorithm of the key that must verify it.
    AlgMismatch {
        /// The header's `alg`.
        header: String,
        /// The key's algorithm.
        key: Algorithm,
    },
    /// The signature does not verify.
    BadSignature,
    /// Key material that cannot be used (wrong type, too small, malformed).
    InvalidKey(String),
    /// The provider failed at something that should not fail (RNG, keygen).
    Crypto(&'static str),
}

impl fmt::Display for JoseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoseError::Malformed(why) => write!(f, "malformed token: {why}"),
            JoseError::TooLarge { len, max } => write!(f, "token of {len} bytes exceeds the {max}-byte limit"),
            JoseError::UnsupportedAlg(alg) => write!(f, "algorithm {alg:?} is not supported"),
            JoseError::AlgMismatch { header, key } => {
                write!(f, "header alg {header:?} is not the key's algorithm {key}")
            }
            JoseError::BadSignature => f.write_str("signature does not verify"),
            JoseError::InvalidKey(why) => write!(f, "invalid key: {why}"),
            JoseError::Crypto(why) => write!(f, "crypto provider failure: {why}"),
        }
    }
}

impl std::error::Error for JoseError {}
