//! The verifier: token in, validated claims out.
//!
//! The order is fixed: strict decode, the key named by `kid` from a
//! [`KeySource`] (never from the token: `jku`, `x5u`, `jwk`, `x5c` are not
//! read), `alg` pinned to that key, the signature, then the claims
//! ([`Validation`]). Revocation and replay, which need the shared store, are
//! the caller's next step (see `server`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::claims::{Claims, Rejection, Validation};
use crate::clock::SharedClock;
use crate::jose::{jws, Algorithm, JoseError, JwkSet, VerifyingKey};
use crate::keys::KeySnapshot;

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

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.by_kid.len() + usize::from(self.single.is_some())
    }

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

/// Verifies tokens against a key source and a [`Validation`].
pub struct Verifier<K> {
    keys: K,
    validation: Validation,
    clock: SharedClock,
}

impl<K: KeySource> Verifier<K> {
    pub fn new(keys: K, validation: Validation, clock: SharedClock) -> Verifier<K> {
        Verifier {
            keys,
            validation,
            clock,
        }
    }

    pub fn validation(&self) -> &Validation {
        &self.validation
    }

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
    let claims = Claims::from_payload(jws.payload())?;
    validation.check_for(&claims, now, audience, scopes)?;
    Ok(claims)
}
