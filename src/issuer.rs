//! The issuer: claims in, signed token out, with the active key of the
//! current key-ring snapshot.
//!
//! The issuer fills every registered claim itself (`iss`, `iat`, `exp`,
//! `jti`); what a caller may ask for (`sub`, `aud`, `scopes`, a lifetime,
//! extra claims) arrives in a [`TokenSpec`] that the client policy has
//! already cut down. Extra claims can never override a registered one.

use std::fmt;

use serde_json::{Map, Value};

use crate::claims::{new_jti, Claims, REGISTERED};
use crate::clock::SharedClock;
use crate::jose::jws::{self, MAX_TOKEN_LEN};
use crate::jose::JoseError;
use crate::keys::SharedKeys;

/// What a token should say, after policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenSpec {
    /// The subject.
    pub sub: String,
    /// The audiences (written as a string when there is one).
    pub aud: Vec<String>,
    /// The scopes (omitted when empty).
    pub scopes: Vec<String>,
    /// Lifetime in seconds.
    pub ttl: i64,
    /// Further claims; registered names among them are dropped.
    pub extra: Map<String, Value>,
}

/// A signed token and what it says.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The compact JWS.
    pub token: String,
    /// Its claims.
    pub claims: Claims,
}

/// Why a token could not be signed.
#[derive(Debug)]
#[non_exhaustive]
pub enum IssueError {
    /// The token would be longer than a verifier accepts
    /// ([`MAX_TOKEN_LEN`]): it is not handed out.
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// The provider failed (random numbers, signing).
    Crypto(JoseError),
}

impl fmt::Display for IssueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssueError::TooLarge { len } => write!(
                f,
                "the token would be {len} bytes, over the {MAX_TOKEN_LEN}-byte limit verifiers accept: ask for fewer or smaller claims"
            ),
            IssueError::Crypto(e) => write!(f, "signing failed: {e}"),
        }
    }
}

impl std::error::Error for IssueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IssueError::Crypto(e) => Some(e),
            IssueError::TooLarge { .. } => None,
        }
    }
}

impl From<JoseError> for IssueError {
    fn from(e: JoseError) -> Self {
        IssueError::Crypto(e)
    }
}

/// Signs tokens for one issuer URL.
#[derive(Clone)]
pub struct Issuer {
    keys: SharedKeys,
    issuer: String,
    clock: SharedClock,
}

impl Issuer {
    /// Signs with the active key of `keys` as issuer `issuer`, on `clock`.
    pub fn new(keys: SharedKeys, issuer: impl Into<String>, clock: SharedClock) -> Issuer {
        Issuer {
            keys,
            issuer: issuer.into(),
            clock,
        }
    }

    /// The `iss` this issuer writes.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The shared key ring this issuer signs with.
    pub fn keys(&self) -> &SharedKeys {
        &self.keys
    }

    /// Fills the registered claims and signs with the active key. A token
    /// its own verifier would refuse for its size is never handed out.
    pub fn issue(&self, spec: TokenSpec) -> Result<IssuedToken, IssueError> {
        let now = self.clock.now();
        let mut extra = spec.extra;
        extra.retain(|k, _| !REGISTERED.contains(&k.as_str()));
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: spec.sub,
            aud: spec.aud,
            iat: now,
            exp: now.saturating_add(spec.ttl),
            nbf: None,
            jti: new_jti()?,
            scopes: spec.scopes,
            extra,
        };
        let snapshot = self.keys.load();
        let signer = &snapshot.signer;
        let token = jws::sign(&signer.header_segment, &claims.to_json(), &signer.key)?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(IssueError::TooLarge { len: token.len() });
        }
        Ok(IssuedToken { token, claims })
    }
}
