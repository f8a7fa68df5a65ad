//! The tables of the embedded store: replay-mark shards, revocations, rate
//! counters and refresh-token families, each with its own sweep and the rule
//! that a full table refuses rather than forgets a live entry.

use std::collections::HashMap;
use std::sync::Arc;

use super::Compact;
use crate::store::{RefreshRecord, StoreError};

#[derive(Default)]
pub(super) struct MarkShard {
    /// Key → the second from which the mark is forgotten.
    pub(super) map: HashMap<Compact, i64>,
    /// Key → the retry key it was placed with, for the marks placed with
    /// one. Apart from `map` so that a mark without one stays 24 bytes; an
    /// entry here never outlives its mark's entry in `map`.
    pub(super) retry_keys: HashMap<Compact, Compact>,
}

impl MarkShard {
    /// Removes marks expired at `horizon`; returns how many. Gives memory
    /// back when the table has become mostly empty (after a burst).
    pub(super) fn sweep(&mut self, horizon: i64) -> usize {
        let before = self.map.len();
        self.map.retain(|_, until| *until > horizon);
        if !self.retry_keys.is_empty() {
            let map = &self.map;
            self.retry_keys.retain(|key, _| map.contains_key(key));
        }
        if self.map.len().saturating_mul(4) < self.map.capacity() {
            self.map.shrink_to(self.map.len().saturating_mul(2));
        }
        before - self.map.len()
    }

    /// Records (or clears) the retry key of the mark at `key`.
    pub(super) fn set_retry_key(&mut self, key: Compact, retry_key: Option<Compact>) {
        match retry_key {
            Some(r) => {
                self.retry_keys.insert(key, r);
            }
            None => {
                self.retry_keys.remove(&key);
            }
        }
    }
}

#[derive(Default)]
pub(super) struct Revocations {
    /// Revoked `jti` → kept until.
    pub(super) jti: HashMap<Compact, i64>,
    pub(super) sub: HashMap<Compact, SubRevocation>,
}

#[derive(Clone, Copy)]
pub(super) struct SubRevocation {
    /// Tokens with `iat <= revoked_at` are revoked.
    pub(super) revoked_at: i64,
    pub(super) until: i64,
}

impl Revocations {
    pub(super) fn len(&self) -> usize {
        self.jti.len() + self.sub.len()
    }

    /// Whether a token with this `jti`, `sub` and `iat` is revoked at `now`.
    pub(super) fn covers(&self, jti: &Compact, sub: &Compact, iat: i64, now: i64) -> bool {
        if self.jti.get(jti).is_some_and(|until| *until > now) {
            return true;
        }
        self.sub.get(sub).is_some_and(|s| s.until > now && iat <= s.revoked_at)
    }

    pub(super) fn sweep(&mut self, horizon: i64) {
        self.jti.retain(|_, until| *until > horizon);
        self.sub.retain(|_, r| r.until > horizon);
    }

    /// Makes room for one more entry, or refuses.
    pub(super) fn reserve(&mut self, capacity: usize, horizon: i64) -> Result<(), StoreError> {
        if self.len() >= capacity {
            self.sweep(horizon);
        }
        if self.len() >= capacity {
            return Err(StoreError::Full { capacity });
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
pub(super) struct RateCounter {
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) count: u32,
}

#[derive(Default)]
pub(super) struct RefreshTokens {
    pub(super) tokens: HashMap<String, TokenEntry>,
    /// Revoked family → its `family_expires_at`, after which no token of it
    /// can be presented anyway. Only revoked families are recorded.
    pub(super) revoked_families: HashMap<String, i64>,
}

pub(super) struct TokenEntry {
    /// Shared by every token of one family: rotation copies a pointer, not
    /// the claims. Its `expires_at` is the first token's; `expires_at` below
    /// is this token's own.
    pub(super) record: Arc<RefreshRecord>,
    pub(super) expires_at: i64,
    pub(super) spent: bool,
}

impl RefreshTokens {
    pub(super) fn sweep(&mut self, horizon: i64) {
        // Spent tokens stay until the family expires: that is what lets a
        // reuse be detected after the spent token's own expiry.
        self.tokens.retain(|_, t| t.record.family_expires_at > horizon);
        self.revoked_families
            .retain(|_, family_expires_at| *family_expires_at > horizon);
    }

    pub(super) fn reserve(&mut self, capacity: usize, horizon: i64) -> Result<(), StoreError> {
        if self.tokens.len() >= capacity {
            self.sweep(horizon);
        }
        if self.tokens.len() >= capacity {
            return Err(StoreError::Full { capacity });
        }
        Ok(())
    }
}
