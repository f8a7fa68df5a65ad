//! The issuer: claims in, signed token out, with the active key of the
//! current key-ring snapshot.
//!
//! The issuer fills every registered claim itself (`iss`, `iat`, `exp`,
//! `jti`); what a caller may ask for (`sub`, `aud`, `scopes`, a lifetime,
//! extra claims) arrives in a [`TokenSpec`] that the client policy has
//! already cut down. Extra claims can never override a registered one.

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::claims::{new_jti, Claims, REGISTERED};
use crate::clock::{SharedClock, SystemClock};
use crate::jose::jws::{self, MAX_TOKEN_LEN};
use crate::jose::JoseError;
use crate::keys::disk::KeyDir;
use crate::keys::{KeyError, KeyRing, SharedKeys};

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
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("tokensmith-doc-issuer-{}", std::process::id()));
/// # tokensmith::KeyDir::new(&dir).ensure(tokensmith::Algorithm::EdDSA, 0, 0)?;
/// use tokensmith::{Issuer, TokenSpec};
/// let issuer = Issuer::from_dir(&dir, "https://auth.example.com")?;
/// let issued = issuer.issue(TokenSpec {
///     sub: "alice".into(),
///     aud: vec!["chatbot".into()],
///     scopes: vec!["read:orders".into()],
///     ttl: 300,
///     ..Default::default()
/// })?;
/// assert_eq!(issued.claims.exp, issued.claims.iat + 300);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
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

    /// Signs with the active key of the keys folder `dir` (made by
    /// `tokensmith keys init` or [`KeyDir::init`]) as issuer `issuer`, on the
    /// system clock.
    ///
    /// The folder is read once: a rotation made later (by
    /// `tokensmith keys rotate` or a server) is not seen until the keys are
    /// swapped: `issuer.keys().store(Arc::new(KeyDir::new(dir).load()?.snapshot()?))`.
    /// Fails with the folder's [`KeyError`] (`no_keys` when it has none).
    pub fn from_dir(dir: impl AsRef<Path>, issuer: impl Into<String>) -> Result<Issuer, KeyError> {
        Issuer::from_ring(&KeyDir::new(dir.as_ref()).load()?, issuer)
    }

    /// Signs with the active key of `ring` as issuer `issuer`, on the system
    /// clock. The ring is copied: a later rotation of it is not seen.
    pub fn from_ring(ring: &KeyRing, issuer: impl Into<String>) -> Result<Issuer, KeyError> {
        Ok(Issuer::new(ring.shared()?, issuer, SystemClock::shared()))
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
        Ok(IssuedToken {
            token: within_size(token)?,
            claims,
        })
    }
}

/// The size rule of every token this service signs: one its own verifier
/// would refuse for its size (over [`MAX_TOKEN_LEN`] bytes) is never
/// handed out.
pub(crate) fn within_size(token: String) -> Result<String, IssueError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(IssueError::TooLarge { len: token.len() });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::jose::Algorithm;

    #[test]
    fn from_dir_signs_with_the_active_key_of_the_folder_on_the_system_clock() {
        let t = tempfile::tempdir().unwrap();
        let err = Issuer::from_dir(t.path(), "https://issuer.test").err().unwrap();
        assert_eq!(err.code(), "no_keys");
        let ring = KeyDir::new(t.path()).init(Algorithm::EdDSA, 0, 0).unwrap();
        let issuer = Issuer::from_dir(t.path(), "https://issuer.test").unwrap();
        let before = SystemClock.now();
        let issued = issuer
            .issue(TokenSpec {
                sub: "alice".into(),
                ttl: 60,
                ..Default::default()
            })
            .unwrap();
        assert!((before..=SystemClock.now()).contains(&issued.claims.iat));
        assert_eq!(issued.claims.iss, "https://issuer.test");
        let kid = jws::decode(&issued.token).unwrap().header.kid;
        assert_eq!(kid.as_deref(), ring.active().map(|k| k.record.kid.as_str()));
    }

    /// The size cap is tested at the cap: a token of exactly
    /// [`MAX_TOKEN_LEN`] bytes is handed out (its verifier accepts it), and
    /// one a byte or two longer is not.
    #[test]
    fn a_token_at_the_size_cap_is_issued_and_one_over_is_not() {
        let t = tempfile::tempdir().unwrap();
        KeyDir::new(t.path()).init(Algorithm::EdDSA, 0, 0).unwrap();
        let issuer = Issuer::from_dir(t.path(), "https://issuer.test").unwrap();
        let spec = |pad: usize| {
            let mut extra = Map::new();
            extra.insert("pad".into(), Value::String("x".repeat(pad)));
            TokenSpec {
                sub: "alice".into(),
                ttl: 60,
                extra,
                ..Default::default()
            }
        };
        // Each byte of padding adds 4/3 characters; the rest of the token
        // has the same length every time (a jti of 22 characters, 10-digit dates).
        let base = issuer.issue(spec(0)).unwrap().token.len();
        let start = (MAX_TOKEN_LEN - base) * 3 / 4 - 3;
        let (mut at_cap, mut over) = (false, false);
        for pad in start..start + 8 {
            match issuer.issue(spec(pad)) {
                Ok(issued) => {
                    assert!(issued.token.len() <= MAX_TOKEN_LEN, "{}", issued.token.len());
                    assert!(jws::decode(&issued.token).is_ok());
                    at_cap |= issued.token.len() == MAX_TOKEN_LEN;
                }
                Err(IssueError::TooLarge { len }) => {
                    assert!(len > MAX_TOKEN_LEN, "{len}");
                    over = true;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            at_cap && over,
            "no token of exactly {MAX_TOKEN_LEN} bytes from a {base}-byte base"
        );
    }

    /// The issuer fills the registered claims itself: an extra claim named
    /// like one (`iss`, `exp`, `jti`, ...) is dropped, and the others are
    /// kept and signed.
    #[test]
    fn extra_claims_are_signed_and_never_override_a_registered_one() {
        let t = tempfile::tempdir().unwrap();
        let ring = KeyDir::new(t.path()).init(Algorithm::EdDSA, 0, 0).unwrap();
        let clock = ManualClock::new(1_800_000_000);
        let issuer = Issuer::new(ring.shared().unwrap(), "https://issuer.test", clock);
        assert_eq!(issuer.issuer(), "https://issuer.test");
        let mut extra = Map::new();
        extra.insert("tenant".into(), Value::String("acme".into()));
        for name in REGISTERED {
            extra.insert(name.into(), Value::String("forged".into()));
        }
        let issued = issuer
            .issue(TokenSpec {
                sub: "alice".into(),
                ttl: 60,
                extra,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(issued.claims.extra.len(), 1, "{:?}", issued.claims.extra);
        assert_eq!(issued.claims.extra["tenant"], "acme");
        assert_eq!((issued.claims.iat, issued.claims.exp), (1_800_000_000, 1_800_000_060));
        let jws = jws::decode(&issued.token).unwrap();
        let payload: Value = serde_json::from_slice(jws.payload()).unwrap();
        assert_eq!(payload["tenant"], "acme");
        assert_eq!(payload["iss"], "https://issuer.test");
        assert_eq!(payload["sub"], "alice");
        assert_eq!(payload["exp"], 1_800_000_060);
        // Signed with the active key of the ring the issuer was given.
        let kid = issuer.keys().load().signer.kid.clone();
        assert_eq!(jws.header.kid.as_deref(), Some(kid.as_str()));
        assert_eq!(ring.active().map(|k| k.record.kid.as_str()), Some(kid.as_str()));
    }

    /// The size error names the length and the cap; a provider failure keeps
    /// its cause as the error's source.
    #[test]
    fn errors_name_the_size_and_keep_the_provider_failure_as_source() {
        use std::error::Error as _;
        let big = IssueError::TooLarge { len: 9000 };
        let text = big.to_string();
        assert!(
            text.contains("9000") && text.contains(&MAX_TOKEN_LEN.to_string()),
            "{text}"
        );
        assert!(big.source().is_none());
        let crypto = IssueError::from(JoseError::Crypto("rng failed"));
        assert!(matches!(crypto, IssueError::Crypto(JoseError::Crypto("rng failed"))));
        assert!(crypto.to_string().contains("rng failed"), "{crypto}");
        let source = crypto.source().unwrap();
        assert_eq!(source.to_string(), JoseError::Crypto("rng failed").to_string());
    }
}
