//! The key ring: which keys exist, which one signs, which ones verify.
//!
//! A key moves through `next → active → retiring → pruned`:
//!
//! - `next` is published in the JWKS but signs nothing, so that verifiers
//!   have it cached before the first token it signs reaches them. It may
//!   become active only once it has been published for `publish_ahead`.
//! - `active` signs every new token. There is exactly one.
//! - `retiring` signs nothing and stays published until every token it
//!   signed has expired: `deactivated_at + max_ttl + leeway`.
//!
//! [`KeyRing`] is the pure model (no disk, no clock of its own);
//! [`disk::KeyDir`] keeps it in a folder; [`KeySnapshot`] is the read-only
//! view every request uses, swapped whole through an `ArcSwap` so rotation
//! never blocks a request.

pub mod disk;
mod leftovers;
pub mod permissions;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::jose::{jws, Algorithm, JoseError, Jwk, JwkSet, SigningKey, VerifyingKey};

/// Where a key is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published in the JWKS, signs nothing yet.
    Next,
    /// Signs every new token; exactly one per ring.
    Active,
    /// Signs nothing; published until every token it signed has expired.
    Retiring,
}

impl KeyState {
    /// The name in `keyring.json` and `keys list`: `next`, `active`, `retiring`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
        }
    }
}

/// One key's entry in `keyring.json`. Times are Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// RFC 7638 thumbprint of the public key; checked against the key file on load.
    pub kid: String,
    /// The key's algorithm; never HS256.
    #[serde(with = "alg_name")]
    pub alg: Algorithm,
    /// Where the key is in its life.
    pub state: KeyState,
    /// The PEM file's name inside the keys folder.
    pub file: String,
    /// When the key was made.
    pub created_at: i64,
    /// When it first appeared in the JWKS.
    pub published_at: i64,
    /// When it began signing; none while `next`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<i64>,
    /// When it stopped signing (became `retiring`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivated_at: Option<i64>,
}

mod alg_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::jose::Algorithm;

    pub fn serialize<S: Serializer>(alg: &Algorithm, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(alg.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Algorithm, D::Error> {
        let name = String::deserialize(d)?;
        match Algorithm::from_name(&name) {
            Some(alg) if alg != Algorithm::HS256 => Ok(alg),
            _ => Err(serde::de::Error::custom(format_args!(
                "unsupported key algorithm {name:?}"
            ))),
        }
    }
}

/// A key of the ring, loaded.
pub struct RingKey {
    /// Its entry in `keyring.json`.
    pub record: KeyRecord,
    /// The private key; `Debug` never shows it.
    pub signing: Arc<SigningKey>,
    /// Its public half, ready to verify.
    pub verifying: Arc<VerifyingKey>,
    /// Its public JWK, as published.
    pub jwk: Jwk,
}

impl fmt::Debug for RingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingKey")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl RingKey {
    /// Wraps a loaded signing key with its record; the record's `kid` must be
    /// the key's thumbprint and its `alg` the key's algorithm.
    pub fn new(record: KeyRecord, signing: SigningKey) -> Result<RingKey, KeyError> {
        let jwk = Jwk::from_public(signing.algorithm(), signing.public_key());
        if jwk.kid.as_deref() != Some(record.kid.as_str()) || signing.algorithm() != record.alg {
            return Err(KeyError::Corrupt {
                path: PathBuf::from(&record.file),
                why: format!(
                    "the key in the file is not the key {} ({}) that keyring.json names",
                    record.kid, record.alg
                ),
            });
        }
        let verifying = Arc::new(signing.verifying_key()?);
        Ok(RingKey {
            record,
            signing: Arc::new(signing),
            verifying,
            jwk,
        })
    }

    /// A fresh key record for `signing`, published at `now`.
    pub fn fresh(signing: SigningKey, state: KeyState, now: i64) -> Result<RingKey, KeyError> {
        let jwk = Jwk::from_public(signing.algorithm(), signing.public_key());
        let kid = jwk
            .kid
            .clone()
            .ok_or(KeyError::Jose(JoseError::InvalidKey("no thumbprint".into())))?;
        let record = KeyRecord {
            file: format!("{kid}.pem"),
            kid,
            alg: signing.algorithm(),
            state,
            created_at: now,
            published_at: now,
            activated_at: (state == KeyState::Active).then_some(now),
            deactivated_at: None,
        };
        RingKey::new(record, signing)
    }
}

/// Timing rules the ring enforces, from `[keys]` and `[tokens]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingPolicy {
    /// A `next` key must be published this long before it signs.
    pub publish_ahead: i64,
    /// How long a retiring key stays published: the longest token lifetime
    /// plus the verifiers' leeway.
    pub retire_after: i64,
    /// The server rotates by itself this long after a key became active.
    pub rotate_every: i64,
}

/// The keys, newest first. Invariant (checked by [`KeyRing::from_keys`]):
/// exactly one active key, at most one next key, kids unique.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl KeyRing {
    /// Builds a ring and checks its invariants.
    pub fn from_keys(mut keys: Vec<RingKey>) -> Result<KeyRing, KeyError> {
        let count = |s: KeyState| keys.iter().filter(|k| k.record.state == s).count();
        if count(KeyState::Active) != 1 {
            return Err(KeyError::Corrupt {
                path: PathBuf::from(disk::KEYRING_FILE),
                why: format!("{} active keys; exactly one is required", count(KeyState::Active)),
            });
        }
        if count(KeyState::Next) > 1 {
            return Err(KeyError::Corrupt {
                path: PathBuf::from(disk::KEYRING_FILE),
                why: "more than one next key".into(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = keys.iter().find(|k| !seen.insert(k.record.kid.clone())) {
            return Err(KeyError::Corrupt {
                path: PathBuf::from(disk::KEYRING_FILE),
                why: format!("key {} is listed twice", dup.record.kid),
            });
        }
        // Newest first: next, then active, then retiring by deactivation, newest first.
        keys.sort_by_key(|k| {
            let rank = match k.record.state {
                KeyState::Next => 0,
                KeyState::Active => 1,
                KeyState::Retiring => 2,
            };
            (
                rank,
                std::cmp::Reverse(k.record.deactivated_at.unwrap_or(i64::MAX)),
                std::cmp::Reverse(k.record.created_at),
            )
        });
        Ok(KeyRing { keys })
    }

    /// The keys, newest first: `next`, `active`, then `retiring`.
    pub fn keys(&self) -> &[RingKey] {
        &self.keys
    }

    /// Every key's record, in the same order.
    pub fn records(&self) -> Vec<KeyRecord> {
        self.keys.iter().map(|k| k.record.clone()).collect()
    }

    fn find(&self, state: KeyState) -> Option<&RingKey> {
        self.keys.iter().find(|k| k.record.state == state)
    }

    /// The signing key.
    pub fn active(&self) -> Option<&RingKey> {
        self.find(KeyState::Active)
    }

    /// The key that signs after the next rotation.
    pub fn next(&self) -> Option<&RingKey> {
        self.find(KeyState::Next)
    }

    /// When `next` may start signing: `publish_ahead` after it was published.
    pub fn rotation_allowed_at(&self, policy: &RingPolicy) -> Option<i64> {
        self.next()
            .map(|k| k.record.published_at.saturating_add(policy.publish_ahead))
    }

    /// When the server's schedule wants the next rotation: `rotate_every`
    /// after the active key began signing, but never before `next` may sign.
    pub fn scheduled_rotation_at(&self, policy: &RingPolicy) -> Option<i64> {
        let active = self.active()?;
        let due = active
            .record
            .activated_at
            .unwrap_or(active.record.created_at)
            .saturating_add(policy.rotate_every);
        Some(due.max(self.rotation_allowed_at(policy).unwrap_or(due)))
    }

    /// Checks that a rotation may happen at `now`. `force` (the CLI's `--now`)
    /// skips the publish-ahead wait: an emergency, where verifiers refetch the
    /// JWKS when they meet the new `kid`.
    pub fn check_rotation(&self, policy: &RingPolicy, now: i64, force: bool) -> Result<(), KeyError> {
        if force {
            return Ok(());
        }
        match self.rotation_allowed_at(policy) {
            Some(at) if now < at => Err(KeyError::RotationTooEarly { allowed_at: at, now }),
            _ => Ok(()),
        }
    }

    /// Rotates: `next` signs from `now`, the old active key retires, and
    /// `new_next` is published. Without a `next` key (a ring made elsewhere)
    /// the new key becomes active at once.
    pub fn rotate(
        mut self,
        policy: &RingPolicy,
        now: i64,
        force: bool,
        mut new_next: RingKey,
    ) -> Result<KeyRing, KeyError> {
        self.check_rotation(policy, now, force)?;
        let has_next = self.next().is_some();
        for key in &mut self.keys {
            match key.record.state {
                KeyState::Active => {
                    key.record.state = KeyState::Retiring;
                    key.record.deactivated_at = Some(now);
                }
                KeyState::Next => {
                    key.record.state = KeyState::Active;
                    key.record.activated_at = Some(now);
                }
                KeyState::Retiring => {}
            }
        }
        new_next.record.state = if has_next { KeyState::Next } else { KeyState::Active };
        new_next.record.published_at = now;
        new_next.record.activated_at = (!has_next).then_some(now);
        self.keys.push(new_next);
        KeyRing::from_keys(self.keys)
    }

    /// Drops retiring keys whose every token has expired; returns the ring
    /// and the records dropped.
    pub fn prune(self, policy: &RingPolicy, now: i64) -> (KeyRing, Vec<KeyRecord>) {
        let (gone, kept): (Vec<RingKey>, Vec<RingKey>) = self.keys.into_iter().partition(|k| {
            k.record.state == KeyState::Retiring
                && k.record
                    .deactivated_at
                    .is_some_and(|d| now >= d.saturating_add(policy.retire_after))
        });
        (KeyRing { keys: kept }, gone.into_iter().map(|k| k.record).collect())
    }

    /// The ring's snapshot in a cell of its own, ready for
    /// [`Issuer::new`](crate::Issuer::new), [`Authority::new`](crate::Authority::new)
    /// or a [`Verifier`](crate::Verifier). A reload swaps it in place:
    /// `keys.store(Arc::new(ring.snapshot()?))`.
    pub fn shared(&self) -> Result<SharedKeys, KeyError> {
        Ok(Arc::new(ArcSwap::from_pointee(self.snapshot()?)))
    }

    /// The read-only view requests use.
    pub fn snapshot(&self) -> Result<KeySnapshot, KeyError> {
        let active = self.active().ok_or(KeyError::NoActiveKey)?;
        let signer = Signer {
            kid: active.record.kid.clone(),
            alg: active.record.alg,
            header_segment: jws::header_segment(active.record.alg, &active.record.kid),
            key: Arc::clone(&active.signing),
        };
        let jwks = JwkSet {
            keys: self.keys.iter().map(|k| k.jwk.clone()).collect(),
        };
        let jwks_json = serde_json::to_vec(&jwks).map_err(|e| KeyError::Jose(JoseError::Malformed(e.to_string())))?;
        let etag = format!("\"{}\"", hex(&crate::jose::alg::sha256(&jwks_json)[..16]));
        let verifiers = self
            .keys
            .iter()
            .map(|k| (k.record.kid.clone(), Arc::clone(&k.verifying)))
            .collect();
        Ok(KeySnapshot {
            signer,
            verifiers,
            jwks,
            jwks_json: jwks_json.into(),
            etag,
            records: self.records(),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The active key, ready to sign: its header segment is computed once.
#[derive(Clone, Debug)]
pub struct Signer {
    /// The active key's `kid`.
    pub kid: String,
    /// Its algorithm.
    pub alg: Algorithm,
    /// The base64url JWS header (`alg`, `typ`, `kid`) every token it signs starts with.
    pub header_segment: String,
    /// The private key.
    pub key: Arc<SigningKey>,
}

/// An immutable view of the ring: the signer, the verifiers by `kid`, and
/// the JWKS bytes with their ETag, computed once per rotation.
#[derive(Debug)]
pub struct KeySnapshot {
    /// The active key.
    pub signer: Signer,
    verifiers: HashMap<String, Arc<VerifyingKey>>,
    /// The published keys (every state), newest first.
    pub jwks: JwkSet,
    /// `jwks` serialised once: the body of `/.well-known/jwks.json`.
    pub jwks_json: bytes::Bytes,
    /// A strong ETag of `jwks_json`.
    pub etag: String,
    /// The ring's records, newest first.
    pub records: Vec<KeyRecord>,
}

impl KeySnapshot {
    /// The verifier for `kid`, if the ring publishes it.
    pub fn verifier(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.verifiers.get(kid)
    }
}

/// The ring as every request sees it: one atomic pointer, swapped on rotation.
pub type SharedKeys = Arc<ArcSwap<KeySnapshot>>;

/// Why a key operation failed. [`KeyError::code`] is the stable code the CLI prints.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// A file or the folder could not be read or written (`key_io`).
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file is not what it must be: a manifest that does not parse or
    /// breaks the ring's rules, a key that is not the one named
    /// (`keyring_corrupt`).
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// `init` on a folder that holds a ring already (`keys_exist`).
    AlreadyInitialised {
        /// The folder.
        path: PathBuf,
    },
    /// The folder holds no ring (`no_keys`).
    NotInitialised {
        /// The folder.
        path: PathBuf,
    },
    /// The next key has not been published for `publish_ahead` yet (`rotation_too_early`).
    RotationTooEarly {
        /// When the rotation is allowed, Unix seconds.
        allowed_at: i64,
        /// The time it was asked for.
        now: i64,
    },
    /// Another key operation held the folder's lock for too long (`keys_locked`).
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The folder cannot be written here (a read-only mount, or not ours):
    /// nothing can rotate, prune or init it; it can still be read (`keys_read_only`).
    ReadOnly {
        /// The folder or lock file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The folder is writable by group or others, and that was not allowed
    /// (`insecure_permissions`).
    InsecurePermissions {
        /// The folder.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The ring has no active key (`no_active_key`).
    NoActiveKey,
    /// Key material the provider refuses (`invalid_key`).
    Jose(JoseError),
}

impl KeyError {
    /// The stable code the CLI prints: `key_io`, `keyring_corrupt`, ….
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::Io { .. } => "key_io",
            KeyError::Corrupt { .. } => "keyring_corrupt",
            KeyError::AlreadyInitialised { .. } => "keys_exist",
            KeyError::NotInitialised { .. } => "no_keys",
            KeyError::RotationTooEarly { .. } => "rotation_too_early",
            KeyError::Locked { .. } => "keys_locked",
            KeyError::ReadOnly { .. } => "keys_read_only",
            KeyError::InsecurePermissions { .. } => "insecure_permissions",
            KeyError::NoActiveKey => "no_active_key",
            KeyError::Jose(_) => "invalid_key",
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            KeyError::Corrupt { path, why } => write!(f, "{}: {why}", path.display()),
            KeyError::AlreadyInitialised { path } => {
                write!(f, "{} already holds a key ring; use `keys rotate`", path.display())
            }
            KeyError::NotInitialised { path } => {
                write!(f, "{} holds no key ring; run `tokensmith keys init` first", path.display())
            }
            KeyError::RotationTooEarly { allowed_at, now } => write!(
                f,
                "the next key has not been published for publish_ahead yet; rotation is allowed in {}s (at {}), or use --now",
                allowed_at - now,
                allowed_at
            ),
            KeyError::Locked { path } => write!(f, "{} is locked by another key operation", path.display()),
            KeyError::ReadOnly { path, source } => write!(
                f,
                "{}: {source}: the keys folder cannot be written here; rotate, prune and init it where it is writable",
                path.display()
            ),
            KeyError::InsecurePermissions { path, mode } => write!(
                f,
                "keys folder {} is writable by group or others (mode {mode:04o}): anyone who can write there can \
                 replace the signing keys; chmod 700 it, or pass --insecure-permissions to use it anyway",
                path.display()
            ),
            KeyError::NoActiveKey => f.write_str("the key ring has no active key"),
            KeyError::Jose(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyError::Io { source, .. } | KeyError::ReadOnly { source, .. } => Some(source),
            KeyError::Jose(e) => Some(e),
            _ => None,
        }
    }
}

impl From<JoseError> for KeyError {
    fn from(e: JoseError) -> Self {
        KeyError::Jose(e)
    }
}

#[cfg(test)]
mod tests;
