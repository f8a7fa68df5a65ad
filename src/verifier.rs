//! The verifier: token in, validated claims out.
//!
//! The order is fixed: strict decode, the key named by `kid` from a
//! [`KeySource`] (never from the token: `jku`, `x5u`, `jwk`, `x5c` are not
//! read), `alg` pinned to that key, the signature, then the claims
//! ([`Validation`]). Revocation and replay, which need the shared store, are
//! the caller's next step (see `server`).
//!
//! A token's identity is its `jti`, never its bytes. A valid signature can
//! have more than one encoding: an ES256 `(r, s)` also verifies as
//! `(r, n - s)` (ECDSA malleability). We sign low-S only, but we accept
//! high-S signatures from other signers, because they are valid ECDSA, so
//! anyone holding one of our tokens can spell it a second way. Nothing in
//! tokensmith keys on the token string: single use, revocation and the
//! authority's marks go by `jti` (and `sub`) from verified claims, and the
//! token cache keys by what it was asked for. Code that caches verification
//! results or counts uses must do the same, never hash the compact string.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::claims::{Claims, Rejection, Validation};
use crate::clock::{SharedClock, SystemClock};
use crate::jose::{jws, Algorithm, JoseError, JwkSet, VerifyingKey};
use crate::keys::{KeyError, KeySnapshot};

/// Where a verifier gets the key for a token.
///
/// Contract: the key returned is chosen by the source's own keys alone; the
/// `kid` is only a name to look up, never a path, URL or key material.
pub trait KeySource: Send + Sync {
    /// The key that must verify a token whose header names `kid`.
    fn key_for(&self, kid: Option<&str>) -> Result<Arc<VerifyingKey>, Rejection>;
}

impl KeySource for KeySnapshot {
    fn key_for(&self, kid: Option<&str>) -> Result<Arc<VerifyingKey>, Rejection> {
        let kid = kid.ok_or(Rejection::UnknownKid(None))?;
        self.verifier(kid)
            .cloned()
            .ok_or_else(|| Rejection::UnknownKid(Some(kid.to_owned())))
    }
}

impl KeySource for arc_swap::ArcSwap<KeySnapshot> {
    fn key_for(&self, kid: Option<&str>) -> Result<Arc<VerifyingKey>, Rejection> {
        self.load().key_for(kid)
    }
}

impl<T: KeySource + ?Sized> KeySource for Arc<T> {
    fn key_for(&self, kid: Option<&str>) -> Result<Arc<VerifyingKey>, Rejection> {
        (**self).key_for(kid)
    }
}

/// A fixed set of keys: a JWKS file, or one key (an HS256 secret, say).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tokensmith::{JwkSet, StaticKeys};
/// let set: JwkSet = serde_json::from_str(r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
///     "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#)?;
/// let keys = StaticKeys::from_jwks(&set)?;
/// assert_eq!(keys.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct StaticKeys {
    by_kid: HashMap<String, Arc<VerifyingKey>>,
    /// With one key and no kids, any token is checked against it.
    single: Option<Arc<VerifyingKey>>,
}

impl StaticKeys {
    /// The signing keys of a JWKS that this crate can use. Keys for other
    /// uses (`use: enc`) and of types or algorithms this crate does not
    /// implement are skipped, as other verifiers do; a key that carries
    /// private members makes the whole set an error (a leak elsewhere that
    /// must not be used), as does a set with no usable key, or with several
    /// and not one `kid` (no token could name its key).
    pub fn from_jwks(set: &JwkSet) -> Result<StaticKeys, JoseError> {
        let mut by_kid = HashMap::new();
        let mut unnamed = Vec::new();
        for jwk in set.keys.iter().filter(|k| k.is_for_signing()) {
            if jwk.has_private_members() {
                return Err(JoseError::InvalidKey(format!(
                    "the JWK {:?} carries private key members",
                    jwk.kid.as_deref().unwrap_or("")
                )));
            }
            let Ok(key) = jwk.verifying_key() else {
                continue;
            };
            match &jwk.kid {
                Some(kid) => {
                    by_kid.insert(kid.clone(), Arc::new(key));
                }
                None => unnamed.push(Arc::new(key)),
            }
        }
        let single = match (by_kid.len(), unnamed.len()) {
            (0, 0) => return Err(JoseError::InvalidKey("the JWKS has no usable signing key".into())),
            (0, 1) => unnamed.pop(),
            // No kid anywhere: a token cannot name the key that signed it.
            (0, n) => {
                return Err(JoseError::InvalidKey(format!(
                    "the JWKS has {n} signing keys and none has a kid: a token cannot name the one that signed it"
                )))
            }
            _ => None,
        };
        Ok(StaticKeys { by_kid, single })
    }

    /// The signing keys of the JWKS file at `path` (a saved
    /// `/.well-known/jwks.json`), as [`StaticKeys::from_jwks`] takes them.
    /// An unreadable file is [`KeyError::Io`], one that is not a JWKS
    /// [`KeyError::Corrupt`], and a set with no usable key (or a private
    /// one) [`KeyError::Jose`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<StaticKeys, KeyError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let set: JwkSet = serde_json::from_slice(&bytes).map_err(|e| KeyError::Corrupt {
            path: path.to_path_buf(),
            why: format!("not a JWKS: {e}"),
        })?;
        Ok(StaticKeys::from_jwks(&set)?)
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.by_kid.len() + usize::from(self.single.is_some())
    }

    /// True when no key is held (never for a set built by [`StaticKeys::from_jwks`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One key that verifies every token, whatever its `kid`.
    pub fn single(key: VerifyingKey) -> StaticKeys {
        StaticKeys {
            by_kid: HashMap::new(),
            single: Some(Arc::new(key)),
        }
    }

    /// The algorithms of the keys held.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        self.by_kid
            .values()
            .chain(self.single.iter())
            .map(|k| k.algorithm())
            .collect()
    }
}

impl KeySource for StaticKeys {
    fn key_for(&self, kid: Option<&str>) -> Result<Arc<VerifyingKey>, Rejection> {
        if let Some(key) = &self.single {
            return Ok(Arc::clone(key));
        }
        let kid = kid.ok_or(Rejection::UnknownKid(None))?;
        self.by_kid
            .get(kid)
            .cloned()
            .ok_or_else(|| Rejection::UnknownKid(Some(kid.to_owned())))
    }
}

/// Verifies tokens against a key source and a [`Validation`], offline.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("tokensmith-doc-verifier-{}", std::process::id()));
/// # let ring = tokensmith::KeyDir::new(&dir).ensure(tokensmith::Algorithm::EdDSA, 0, 0)?.0;
/// # std::fs::write(dir.join("jwks.json"), &ring.snapshot()?.jwks_json)?;
/// # let spec = tokensmith::TokenSpec { sub: "alice".into(), aud: vec!["chatbot".into()], ttl: 300, ..Default::default() };
/// # let token = tokensmith::Issuer::from_ring(&ring, "https://auth.example.com")?.issue(spec)?.token;
/// use tokensmith::{Rejection, StaticKeys, Validation, Verifier};
/// let keys = StaticKeys::from_file(dir.join("jwks.json"))?;
/// let verifier = Verifier::from_keys(keys, Validation::new("https://auth.example.com").audience("chatbot"));
/// assert_eq!(verifier.verify(&token)?.sub, "alice");
/// assert!(matches!(verifier.verify("not.a.token"), Err(Rejection::Malformed(_))));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub struct Verifier<K> {
    keys: K,
    validation: Validation,
    clock: SharedClock,
}

impl<K: KeySource> Verifier<K> {
    /// Verifies with `keys` and `validation`, judging time on `clock`.
    pub fn new(keys: K, validation: Validation, clock: SharedClock) -> Verifier<K> {
        Verifier {
            keys,
            validation,
            clock,
        }
    }

    /// Verifies with `keys` and `validation` on the system clock.
    pub fn from_keys(keys: K, validation: Validation) -> Verifier<K> {
        Verifier::new(keys, validation, SystemClock::shared())
    }

    /// The validation every token must pass.
    pub fn validation(&self) -> &Validation {
        &self.validation
    }

    /// The keys it verifies with.
    pub fn keys(&self) -> &K {
        &self.keys
    }

    /// Verifies with the default audience and scopes of the validation.
    pub fn verify(&self, token: &str) -> Result<Claims, Rejection> {
        self.verify_for(
            token,
            self.validation.audience.as_deref(),
            &self.validation.required_scopes,
        )
    }

    /// Verifies for one request's audience and required scopes.
    pub fn verify_for(&self, token: &str, audience: Option<&str>, scopes: &[String]) -> Result<Claims, Rejection> {
        let jws = jws::decode(token)?;
        let key = self.keys.key_for(jws.header.kid.as_deref())?;
        check(&jws, &key, &self.validation, self.clock.now(), audience, scopes)
    }
}

/// The steps after the key is found, shared by every verifier: `alg`
/// pinned to `key`, the signature, the claims, then `validation` for this
/// request's `audience` and `scopes`.
pub(crate) fn check(
    jws: &jws::Jws<'_>,
    key: &VerifyingKey,
    validation: &Validation,
    now: i64,
    audience: Option<&str>,
    scopes: &[String],
) -> Result<Claims, Rejection> {
    jws.verify(key)?;
    validation.check_typ(jws.header.typ.as_deref())?;
    let claims = Claims::from_payload(jws.payload())?;
    validation.check_for(&claims, now, audience, scopes)?;
    Ok(claims)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::issuer::{Issuer, TokenSpec};
    use crate::keys::disk::KeyDir;

    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn set(keys: &[String]) -> JwkSet {
        serde_json::from_str(&format!(r#"{{"keys":[{}]}}"#, keys.join(","))).unwrap()
    }

    fn ed(kid: Option<&str>) -> String {
        let kid = kid.map(|k| format!(r#","kid":"{k}""#)).unwrap_or_default();
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{ED_X}"{kid}}}"#)
    }

    /// A JWKS with nothing this crate can verify with says so, rather than
    /// falling through to the "none has a kid" refusal of several keys.
    #[test]
    fn a_jwks_with_no_usable_signing_key_says_so() {
        let unusable = [
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","use":"enc","kid":"e"}"#
                .to_owned(),
            r#"{"kty":"EC","crv":"P-521","x":"AA","y":"AA","kid":"p521"}"#.to_owned(),
        ];
        for keys in [&[][..], &unusable[..]] {
            let err = StaticKeys::from_jwks(&set(keys)).unwrap_err();
            assert!(matches!(err, JoseError::InvalidKey(_)), "{err:?}");
            assert!(err.to_string().contains("no usable signing key"), "{err}");
        }
    }

    /// One key without `kid` verifies every token; one with a `kid` only
    /// tokens that name it.
    #[test]
    fn one_key_without_kid_is_the_key_for_every_token() {
        let keys = StaticKeys::from_jwks(&set(&[ed(None)])).unwrap();
        assert_eq!((keys.len(), keys.is_empty()), (1, false));
        assert_eq!(keys.algorithms(), [Algorithm::EdDSA]);
        assert!(keys.key_for(None).is_ok());
        assert!(keys.key_for(Some("anything")).is_ok());

        let named = StaticKeys::from_jwks(&set(&[ed(Some("k1"))])).unwrap();
        assert_eq!((named.len(), named.is_empty()), (1, false));
        assert!(named.key_for(Some("k1")).is_ok());
        assert_eq!(named.key_for(None).unwrap_err(), Rejection::UnknownKid(None));
        assert_eq!(
            named.key_for(Some("k2")).unwrap_err(),
            Rejection::UnknownKid(Some("k2".into()))
        );
        // Several keys and no kid: no token could name its key.
        let err = StaticKeys::from_jwks(&set(&[ed(None), ed(None)])).unwrap_err();
        assert!(err.to_string().contains("2 signing keys and none has a kid"), "{err}");
        // With named keys, an unnamed one is left out: a token names its key.
        let mixed = StaticKeys::from_jwks(&set(&[ed(Some("k1")), ed(Some("k2")), ed(None)])).unwrap();
        assert_eq!(mixed.len(), 2);
        assert!(mixed.key_for(None).is_err());
    }

    #[test]
    fn len_and_is_empty_count_the_keys_held() {
        let none = StaticKeys::default();
        assert_eq!((none.len(), none.is_empty()), (0, true));
        assert!(none.algorithms().is_empty());
        let one = StaticKeys::single(VerifyingKey::hmac(&[7u8; 32]).unwrap());
        assert_eq!((one.len(), one.is_empty()), (1, false));
        assert_eq!(one.algorithms(), [Algorithm::HS256]);
        let three = StaticKeys::from_jwks(&set(&[ed(Some("a")), ed(Some("b")), ed(Some("c"))])).unwrap();
        assert_eq!((three.len(), three.is_empty()), (3, false));
    }

    #[test]
    fn from_file_reads_a_jwks_and_says_why_not() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("jwks.json");
        assert_eq!(StaticKeys::from_file(&path).unwrap_err().code(), "key_io");
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(StaticKeys::from_file(&path).unwrap_err().code(), "keyring_corrupt");
        std::fs::write(&path, r#"{"keys": []}"#).unwrap();
        assert_eq!(StaticKeys::from_file(&path).unwrap_err().code(), "invalid_key");

        let ring = KeyDir::new(t.path().join("keys"))
            .init(crate::jose::Algorithm::EdDSA, 0, 0)
            .unwrap();
        std::fs::write(&path, &ring.snapshot().unwrap().jwks_json).unwrap();
        let keys = StaticKeys::from_file(&path).unwrap();
        assert_eq!(keys.len(), 2);
        // A token of the ring verifies on the system clock.
        let spec = TokenSpec {
            sub: "alice".into(),
            aud: vec!["chatbot".into()],
            ttl: 60,
            ..Default::default()
        };
        let token = Issuer::from_ring(&ring, "https://issuer.test")
            .unwrap()
            .issue(spec)
            .unwrap()
            .token;
        let verifier = Verifier::from_keys(keys, Validation::new("https://issuer.test").audience("chatbot"));
        assert_eq!(verifier.verify(&token).unwrap().sub, "alice");
    }
}
