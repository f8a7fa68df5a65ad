//! Refresh tokens: the opaque secrets that renew a widget's session token.
//!
//! This module owns the format of a refresh token (256 random bits,
//! base64url without padding), the name a store keeps it under (the
//! base64url SHA-256 of the secret), and the two things one does with a
//! family: start it ([`issue_family`]) and trade a live token for its
//! successor ([`rotate`]). The atomic part — spend once, and a second
//! spend revokes the whole family — is the [`Store`]'s contract; this module
//! only turns its answers into [`RefreshError`]s.
//!
//! It must never hand a store, a log line or an error the secret itself:
//! stores get only its hash, errors say only why a token was refused, and
//! [`IssuedRefresh`]'s `Debug` hides the token.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::claims::Rejection;
use crate::clients::Client;
use crate::jose::alg::{random_bytes, sha256};
use crate::jose::JoseError;
use crate::store::{RefreshRecord, SpendOutcome, Store, StoreError};

/// Bytes of randomness in a refresh token.
const SECRET_BYTES: usize = 32;
/// Its length once encoded: 32 bytes in unpadded base64url.
pub const REFRESH_TOKEN_LEN: usize = 43;
/// Bytes of randomness in a family id: an identifier, not a secret.
const FAMILY_BYTES: usize = 16;

/// A refresh token just made, and what the store keeps for it.
#[derive(Clone, PartialEq)]
pub struct IssuedRefresh {
    /// The secret, handed to the holder once and never stored.
    pub token: String,
    /// The identity it renews, with this token's own `expires_at`.
    pub record: RefreshRecord,
}

impl fmt::Debug for IssuedRefresh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedRefresh")
            .field("token", &"<redacted>")
            .field("record", &self.record)
            .finish()
    }
}

/// Why a presented refresh token was refused. Every reason answers the same
/// `invalid_refresh_token`: telling a caller *why* would tell a thief which
/// of its stolen tokens are worth keeping. The reason is for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidReason {
    /// Not 43 base64url characters of 32 bytes: never one of ours.
    Malformed,
    /// Never issued, or expired (the token or its family).
    Unknown,
    /// Spent before: someone holds a copy, and the family is now revoked.
    Reused,
    /// Its family was revoked earlier.
    Revoked,
}

impl InvalidReason {
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::Malformed => "malformed",
            InvalidReason::Unknown => "unknown",
            InvalidReason::Reused => "reused",
            InvalidReason::Revoked => "revoked",
        }
    }
}

/// Why a refresh token could not be issued or rotated.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RefreshError {
    /// The presented token is refused (see [`InvalidReason`]).
    Invalid(InvalidReason),
    /// The store could not answer: nothing was issued or spent for sure.
    Store(StoreError),
    /// The system random generator failed.
    Random(JoseError),
}

impl RefreshError {
    /// The rejection the caller sees, when the token itself is the problem.
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            RefreshError::Invalid(_) => Some(Rejection::InvalidRefreshToken),
            RefreshError::Store(_) | RefreshError::Random(_) => None,
        }
    }
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshError::Invalid(why) => write!(f, "refresh token refused: {}", why.as_str()),
            RefreshError::Store(e) => write!(f, "{e}"),
            RefreshError::Random(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RefreshError {}

impl From<StoreError> for RefreshError {
    fn from(e: StoreError) -> Self {
        RefreshError::Store(e)
    }
}

impl From<JoseError> for RefreshError {
    fn from(e: JoseError) -> Self {
        RefreshError::Random(e)
    }
}

/// The name a store keeps a refresh token under: base64url(SHA-256(secret)).
/// 256 random bits need no salt or slow hash: there is nothing to guess.
pub fn refresh_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(token.as_bytes()))
}

fn random_b64(n: usize) -> Result<String, JoseError> {
    let mut b = vec![0u8; n];
    random_bytes(&mut b)?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// Whether `token` has the shape of one of ours: checked before hashing or
/// asking the store, so garbage costs neither.
fn well_formed(token: &str) -> bool {
    token.len() == REFRESH_TOKEN_LEN && URL_SAFE_NO_PAD.decode(token).is_ok_and(|b| b.len() == SECRET_BYTES)
}

/// Secs of a client duration, saturating.
fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Starts a new family for `sub` of `client`: the first refresh token lives
/// the client's `refresh_ttl`, and no token of the family outlives
/// `refresh_family_ttl` from now. `scopes` and `claims` are what every
/// token of the family renews, already cut to the client's policy.
pub async fn issue_family(
    store: &impl Store,
    client: &Client,
    sub: &str,
    scopes: &[String],
    claims: &Map<String, Value>,
    now: i64,
) -> Result<IssuedRefresh, RefreshError> {
    let ttl = secs(client.refresh_ttl).max(1);
    let family_expires_at = now.saturating_add(secs(client.refresh_family_ttl).max(1));
    let record = RefreshRecord {
        family: random_b64(FAMILY_BYTES)?,
        client: client.id.clone(),
        sub: sub.to_owned(),
        scopes: scopes.to_vec(),
        claims: claims.clone(),
        ttl,
        expires_at: now.saturating_add(ttl).min(family_expires_at),
        family_expires_at,
        created_at: now,
    };
    let token = random_b64(SECRET_BYTES)?;
    store.refresh_insert(&refresh_hash(&token), &record, now).await?;
    Ok(IssuedRefresh { token, record })
}

/// The record of a presented refresh token, spent or not, without
/// spending it: who is asking (client, subject, family start), so that
/// rate limits and revocations can be decided before the token is spent.
/// A token that is not one of ours, or unknown, is refused.
pub async fn peek(store: &impl Store, presented: &str) -> Result<RefreshRecord, RefreshError> {
    if !well_formed(presented) {
        return Err(RefreshError::Invalid(InvalidReason::Malformed));
    }
    store
        .refresh_peek(&refresh_hash(presented))
        .await?
        .ok_or(RefreshError::Invalid(InvalidReason::Unknown))
}

/// The record of `presented` if it could be spent now (unspent, its family
/// neither revoked nor expired, itself not expired), without spending it;
/// `None` for anything else, a string that is not one of ours included.
pub async fn live(store: &impl Store, presented: &str, now: i64) -> Result<Option<RefreshRecord>, StoreError> {
    if !well_formed(presented) {
        return Ok(None);
    }
    store.refresh_live(&refresh_hash(presented), now).await
}

/// Spends `presented` and returns its successor, with the record the store
/// now keeps for the successor. A token spent before makes the store revoke
/// the family, the holder's live successor included: of two parties holding
/// the same token, the service cannot tell which is the thief.
pub async fn rotate(store: &impl Store, presented: &str, now: i64) -> Result<IssuedRefresh, RefreshError> {
    if !well_formed(presented) {
        return Err(RefreshError::Invalid(InvalidReason::Malformed));
    }
    let token = random_b64(SECRET_BYTES)?;
    let outcome = store
        .refresh_spend(&refresh_hash(presented), &refresh_hash(&token), now)
        .await?;
    let old = match outcome {
        SpendOutcome::Spent(old) => old,
        SpendOutcome::Reused => return Err(RefreshError::Invalid(InvalidReason::Reused)),
        SpendOutcome::Revoked => return Err(RefreshError::Invalid(InvalidReason::Revoked)),
        SpendOutcome::Unknown => return Err(RefreshError::Invalid(InvalidReason::Unknown)),
    };
    // The store gave the successor this expiry (see `Store::refresh_spend`).
    let expires_at = now.saturating_add(old.ttl).min(old.family_expires_at);
    Ok(IssuedRefresh {
        token,
        record: RefreshRecord { expires_at, ..old },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use super::*;
    use crate::store::memory::MemoryStore;

    const NOW: i64 = 1_800_000_000;

    fn client() -> Client {
        Client {
            scopes: vec!["chat".into()],
            max_ttl: Duration::from_secs(1800),
            refresh_ttl: Duration::from_secs(3600),
            refresh_family_ttl: Duration::from_secs(3 * 3600),
            ..Client::new("shop", "chatbot")
        }
    }

    async fn family(store: &MemoryStore) -> IssuedRefresh {
        issue_family(store, &client(), "u1", &["chat".to_owned()], &Map::new(), NOW)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn tokens_are_43_base64url_chars_and_stored_only_by_hash() {
        let store = MemoryStore::new(1000);
        let a = family(&store).await;
        let b = family(&store).await;
        assert_eq!(a.token.len(), REFRESH_TOKEN_LEN);
        assert!(well_formed(&a.token));
        assert_ne!(a.token, b.token);
        assert_ne!(a.record.family, b.record.family);
        assert_eq!(a.record.expires_at, NOW + 3600);
        assert_eq!(a.record.family_expires_at, NOW + 3 * 3600);
        assert!(!format!("{a:?}").contains(&a.token));
        // The store knows the hash, not the secret: the secret itself is unknown to it.
        let by_secret = store.refresh_spend(&a.token, "x", NOW).await.unwrap();
        assert_eq!(by_secret, SpendOutcome::Unknown);
        assert_eq!(refresh_hash(&a.token).len(), 43);
    }

    #[tokio::test]
    async fn rotation_hands_out_a_successor_and_reuse_revokes_the_family() {
        let store = MemoryStore::new(1000);
        let first = family(&store).await;
        let second = rotate(&store, &first.token, NOW + 10).await.unwrap();
        assert_ne!(second.token, first.token);
        assert_eq!(second.record.family, first.record.family);
        assert_eq!(second.record.sub, "u1");
        assert_eq!(second.record.expires_at, NOW + 10 + 3600);
        let third = rotate(&store, &second.token, NOW + 20).await.unwrap();
        // The first token again: reuse, and the live third token dies with it.
        let e = rotate(&store, &first.token, NOW + 30).await.unwrap_err();
        assert_eq!(e, RefreshError::Invalid(InvalidReason::Reused));
        assert_eq!(e.rejection(), Some(Rejection::InvalidRefreshToken));
        let e = rotate(&store, &third.token, NOW + 31).await.unwrap_err();
        assert_eq!(e, RefreshError::Invalid(InvalidReason::Revoked));
    }

    #[tokio::test]
    async fn successors_never_outlive_the_family() {
        let store = MemoryStore::new(1000);
        let mut t = family(&store).await;
        for step in 1..=3 {
            t = rotate(&store, &t.token, NOW + step * 3000).await.unwrap();
            assert!(t.record.expires_at <= t.record.family_expires_at);
        }
        assert_eq!(t.record.expires_at, NOW + 3 * 3600);
        let e = rotate(&store, &t.token, NOW + 3 * 3600).await.unwrap_err();
        assert_eq!(e, RefreshError::Invalid(InvalidReason::Unknown));
    }

    #[tokio::test]
    async fn malformed_and_unknown_tokens_are_refused() {
        let store = MemoryStore::new(1000);
        for bad in ["", "short", &"A".repeat(44), &"+".repeat(43), &"A".repeat(42)] {
            let e = rotate(&store, bad, NOW).await.unwrap_err();
            assert_eq!(e, RefreshError::Invalid(InvalidReason::Malformed), "{bad:?}");
        }
        let never = random_b64(SECRET_BYTES).unwrap();
        let e = rotate(&store, &never, NOW).await.unwrap_err();
        assert_eq!(e, RefreshError::Invalid(InvalidReason::Unknown));
        // Expired, and then never coming back.
        let t = family(&store).await;
        let e = rotate(&store, &t.token, NOW + 3600).await.unwrap_err();
        assert_eq!(e, RefreshError::Invalid(InvalidReason::Unknown));
    }

    /// `peek` and `live` read a token without spending it: `peek` answers
    /// for a spent token too, `live` only while a spend would succeed; a
    /// string that is not one of ours is refused before the store is asked.
    #[tokio::test]
    async fn peek_and_live_read_a_token_without_spending_it() {
        let store = MemoryStore::new(1000);
        let t = family(&store).await;
        assert_eq!(peek(&store, &t.token).await.unwrap(), t.record);
        assert_eq!(live(&store, &t.token, NOW + 1).await.unwrap(), Some(t.record.clone()));
        // Neither spent it: it rotates once, and then it is spent.
        let next = rotate(&store, &t.token, NOW + 2).await.unwrap();
        assert_eq!(peek(&store, &t.token).await.unwrap().family, t.record.family);
        assert_eq!(live(&store, &t.token, NOW + 3).await.unwrap(), None);
        assert_eq!(live(&store, &next.token, NOW + 3).await.unwrap(), Some(next.record));
        let never = random_b64(SECRET_BYTES).unwrap();
        let e = peek(&store, &never).await.unwrap_err();
        assert_eq!(e, RefreshError::Invalid(InvalidReason::Unknown));
        assert_eq!(live(&store, &never, NOW).await.unwrap(), None);
        for bad in ["", &"+".repeat(43), &"A".repeat(44)] {
            let e = peek(&store, bad).await.unwrap_err();
            assert_eq!(e, RefreshError::Invalid(InvalidReason::Malformed), "{bad:?}");
            assert_eq!(live(&store, bad, NOW).await.unwrap(), None, "{bad:?}");
        }
    }

    /// What the log sees: the reason by name, never the token; the debug
    /// form of an issued token shows its record and hides its secret.
    #[tokio::test]
    async fn errors_and_debug_name_the_reason_and_hide_the_secret() {
        let reasons = [
            (InvalidReason::Malformed, "malformed"),
            (InvalidReason::Unknown, "unknown"),
            (InvalidReason::Reused, "reused"),
            (InvalidReason::Revoked, "revoked"),
        ];
        for (why, name) in reasons {
            assert_eq!(why.as_str(), name);
            let e = RefreshError::Invalid(why);
            assert_eq!(e.to_string(), format!("refresh token refused: {name}"));
            assert_eq!(e.rejection(), Some(Rejection::InvalidRefreshToken));
        }
        let random = RefreshError::from(JoseError::Crypto("rng failed"));
        assert_eq!(random, RefreshError::Random(JoseError::Crypto("rng failed")));
        assert_eq!(random.to_string(), JoseError::Crypto("rng failed").to_string());
        assert_eq!(random.rejection(), None);
        let full = RefreshError::from(StoreError::Full { capacity: 3 });
        assert_eq!(full, RefreshError::Store(StoreError::Full { capacity: 3 }));
        assert_eq!(full.to_string(), StoreError::Full { capacity: 3 }.to_string());
        assert_eq!(full.rejection(), None);
        let store = MemoryStore::new(1000);
        let t = family(&store).await;
        let dbg = format!("{t:?}");
        assert!(dbg.contains("<redacted>") && dbg.contains(&t.record.family), "{dbg}");
        assert!(!dbg.contains(&t.token), "{dbg}");
    }
}
