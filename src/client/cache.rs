//! `TokenCache`: a backend's own tokens, asked for once and reused until
//! shortly before they expire.
//!
//! A backend that passes a token to every widget render or outgoing call
//! should not ask the issuer each time. This module owns the reuse rules:
//!
//! - a token is handed out while it is fresh, and renewed once 80 % of its
//!   lifetime has passed or 60 s before it expires, whichever comes first
//!   (never before half its lifetime, so a 60 s token is still reused);
//! - callers of one key share one renewal (single flight): a hundred
//!   concurrent callers on an empty cache cause one issuance, and while a
//!   renewal runs, callers holding a still-valid token get it at once;
//! - a failed renewal while the old token is still valid hands out the old
//!   token; the next attempt waits out a backoff (1 s, 2 s, 4 s, … capped),
//!   so at most one attempt is made per backoff step;
//! - optionally ([`SharedRedis`]) every instance shares one token per key
//!   through Redis: the token is stored with `PX` = its remaining lifetime;
//!   a renewal runs under `SET lock NX PX` with a random lock value, and the
//!   new token is written by a Lua compare-and-set that accepts only the
//!   lock holder's write (fencing). Instances that find the lock taken and
//!   hold no valid token poll the shared token for a bounded time instead of
//!   issuing one of their own. If Redis cannot be reached the cache falls
//!   back to issuing locally, since a few extra tokens are better than none.
//!
//! Time comes from an injected [`Clock`](crate::clock::Clock), in the whole
//! seconds of JWT dates. This module never logs a token or the issue
//! function's credentials, and never issues without the caller asking.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;

/// A token as the issuer handed it out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// The token (a compact JWS): a credential, redacted in `Debug`.
    pub token: String,
    /// When it was issued (its `iat`), in Unix seconds.
    pub issued_at: i64,
    /// When it stops being valid (its `exp`), in Unix seconds.
    pub expires_at: i64,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A token is a credential: never in a log line.
        f.debug_struct("Issued")
            .field("token", &"<redacted>")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What the cache calls to get a new token for a key (a user id, or a fixed
/// name for a backend's single token).
///
/// Implemented for every `Fn(String) -> impl Future<Output = Result<Issued, E>>`,
/// and for any type of yours, so that the cache's type can be named (in an
/// axum state, say).
pub trait IssueToken: Send + Sync + 'static {
    /// Why issuance failed; shown in [`CacheError`] and the log.
    type Error: fmt::Display + Send;
    /// A new token for `key` (a call to tokensmith's `POST /v1/tokens`, or
    /// an in-process [`Issuer`](crate::Issuer)). It should give up within
    /// [`CacheOptions::lock_ttl`].
    fn issue(&self, key: &str) -> impl Future<Output = Result<Issued, Self::Error>> + Send;
}

impl<F, Fut, E> IssueToken for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Issued, E>> + Send,
    E: fmt::Display + Send,
{
    type Error = E;
    fn issue(&self, key: &str) -> impl Future<Output = Result<Issued, E>> + Send {
        self(key.to_owned())
    }
}

/// Tunables; every field documents its default.
#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// Renew once this share of a token's lifetime has passed, in percent. Default 80.
    pub renew_at_percent: u8,
    /// Renew at the latest this many seconds before expiry. Default 60.
    pub renew_before: i64,
    /// Wait after the first failed renewal, in seconds; doubled after each
    /// further failure. Default 1.
    pub backoff_initial: i64,
    /// The longest wait between two renewal attempts, in seconds. Default 60.
    pub backoff_max: i64,
    /// Shared mode: how long a renewal lock lives if its holder never
    /// releases it (crashed). Default 10 s. The issue function should give
    /// up well within it.
    pub lock_ttl: Duration,
    /// Shared mode: how often a waiter looks for the token another instance
    /// is renewing. Default 25 ms.
    pub poll_every: Duration,
    /// Shared mode: how long a waiter waits for it before giving up
    /// ([`CacheError::Timeout`]). Default 15 s, longer than `lock_ttl`, so a
    /// crashed holder's lock expires within the wait and a waiter takes over.
    pub wait_for: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            renew_at_percent: 80,
            renew_before: 60,
            backoff_initial: 1,
            backoff_max: 60,
            lock_ttl: Duration::from_secs(10),
            poll_every: Duration::from_millis(25),
            wait_for: Duration::from_secs(15),
        }
    }
}

impl CacheOptions {
    /// When a token stops being handed out without a renewal attempt.
    pub fn renew_at(&self, t: &Issued) -> i64 {
        let life = t.expires_at.saturating_sub(t.issued_at).max(0);
        let by_share = t
            .issued_at
            .saturating_add(life.saturating_mul(i64::from(self.renew_at_percent.min(100))) / 100);
        let by_margin = t.expires_at.saturating_sub(self.renew_before);
        // For a token shorter than twice the margin, "60 s before expiry"
        // would mean "at once", and every call would issue: keep half.
        by_share.min(by_margin).max(t.issued_at.saturating_add(life / 2))
    }

    fn backoff(&self, failures: u32) -> i64 {
        let doublings = failures.saturating_sub(1).min(30);
        self.backoff_initial
            .max(1)
            .saturating_mul(1i64 << doublings)
            .min(self.backoff_max.max(1))
    }
}

/// Why no token could be handed out.
#[derive(Debug)]
#[non_exhaustive]
pub enum CacheError<E> {
    /// The issue function failed, and no valid token was cached.
    Issue(E),
    /// A recent renewal failed and no valid token is cached; no new attempt
    /// is made before `retry_at` (Unix seconds).
    BackingOff {
        /// The next renewal attempt is not made before this, Unix seconds.
        retry_at: i64,
        /// Why the last renewal failed.
        last_error: String,
    },
    /// Shared mode: another instance held the renewal for longer than
    /// `wait_for`, and no valid token was cached.
    Timeout,
}

impl<E: fmt::Display> fmt::Display for CacheError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Issue(e) => write!(f, "token issuance failed: {e}"),
            CacheError::BackingOff { retry_at, last_error } => {
                write!(f, "token issuance failed ({last_error}); next attempt at {retry_at}")
            }
            CacheError::Timeout => f.write_str("another instance is renewing the token and did not finish in time"),
        }
    }
}

impl<E: fmt::Display + fmt::Debug> std::error::Error for CacheError<E> {}

/// Counters, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Calls of the issue function (successful or not).
    pub issue_calls: u64,
    /// Shared mode: tokens taken from Redis that another instance issued.
    pub adopted: u64,
    /// Shared mode: polls while another instance held the renewal lock.
    pub waits: u64,
}

#[derive(Default)]
struct Counters {
    issue_calls: AtomicU64,
    adopted: AtomicU64,
    waits: AtomicU64,
}

/// One key's token and retry state.
#[derive(Default)]
struct Slot {
    token: Option<Arc<Issued>>,
    failures: u32,
    /// After a failure, no renewal attempt before this time.
    retry_at: i64,
    last_error: Option<String>,
}

#[derive(Default)]
struct Entry {
    /// A std Mutex: held to read or replace the slot, never across an await.
    slot: Mutex<Slot>,
    /// Single flight: one renewal of this key at a time. A tokio Mutex
    /// because it is held across the issue call.
    renewing: tokio::sync::Mutex<()>,
}

impl Entry {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        // A slot is replaced whole; a panicked holder cannot leave it half-written.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Caches the tokens that an [`IssueToken`] hands out, per key.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tokensmith::{CacheOptions, Clock, Issued, SystemClock, TokenCache};
/// // In a real backend: a call to tokensmith's `POST /v1/tokens` for `user`.
/// let issue = |user: String| async move {
///     let now = SystemClock.now();
///     Ok::<_, std::io::Error>(Issued { token: format!("token-of-{user}"), issued_at: now, expires_at: now + 300 })
/// };
/// let cache = TokenCache::new(issue, SystemClock::shared(), CacheOptions::default());
/// let first = cache.get("alice").await?;
/// let second = cache.get("alice").await?; // reused until 80% of its life
/// assert_eq!(first.token, second.token);
/// assert_eq!(cache.stats().issue_calls, 1);
/// # Ok(()) }
/// ```
pub struct TokenCache<I> {
    issuer: I,
    clock: SharedClock,
    opts: CacheOptions,
    /// A std Mutex: held to find or add an entry, never across an await.
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    /// Entries are swept of expired tokens when the map reaches this size.
    sweep_at: AtomicU64,
    shared: Option<SharedRedis>,
    counters: Counters,
}

impl<I> fmt::Debug for TokenCache<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("opts", &self.opts)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

/// What one renewal produced.
enum Renewal<E> {
    Issued(Arc<Issued>),
    /// Another instance's token (shared mode); may be the old one, still
    /// valid, while that instance renews.
    Adopted(Arc<Issued>),
    Failed(CacheError<E>),
}

impl<I: IssueToken> TokenCache<I> {
    /// A cache in this process only.
    pub fn new(issuer: I, clock: SharedClock, opts: CacheOptions) -> TokenCache<I> {
        TokenCache {
            issuer,
            clock,
            opts,
            entries: Mutex::new(HashMap::new()),
            sweep_at: AtomicU64::new(64),
            shared: None,
            counters: Counters::default(),
        }
    }

    /// Shares tokens with every instance using the same Redis and namespace.
    pub fn with_redis(mut self, shared: SharedRedis) -> TokenCache<I> {
        self.shared = Some(shared);
        self
    }

    /// The options in force.
    pub fn options(&self) -> &CacheOptions {
        &self.opts
    }

    /// Counters since this cache was made.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            issue_calls: self.counters.issue_calls.load(Ordering::Relaxed),
            adopted: self.counters.adopted.load(Ordering::Relaxed),
            waits: self.counters.waits.load(Ordering::Relaxed),
        }
    }

    /// A token for `key`: the cached one while fresh, else a renewed one (or
    /// the old one while it is valid and renewal fails or is under way).
    pub async fn get(&self, key: &str) -> Result<Arc<Issued>, CacheError<I::Error>> {
        let entry = self.entry(key);
        let now = self.clock.now();
        if let Some(t) = self.fresh(&entry, now) {
            return Ok(t);
        }
        let _renewal = match entry.renewing.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // Someone renews this key right now: a valid token needs no wait.
                if let Some(t) = valid(&entry, now) {
                    return Ok(t);
                }
                entry.renewing.lock().await
            }
        };
        // Decide again under the lock: the renewal we waited for may have
        // brought a token, or started a backoff.
        let now = self.clock.now();
        if let Some(t) = self.fresh(&entry, now) {
            return Ok(t);
        }
        {
            let slot = entry.slot();
            if now < slot.retry_at {
                return match slot.token.as_ref().filter(|t| now < t.expires_at) {
                    Some(t) => Ok(Arc::clone(t)),
                    None => Err(CacheError::BackingOff {
                        retry_at: slot.retry_at,
                        last_error: slot.last_error.clone().unwrap_or_default(),
                    }),
                };
            }
        }
        let old = entry.slot().token.clone();
        match self.renew(key, old.as_ref(), now).await {
            Renewal::Issued(t) | Renewal::Adopted(t) => {
                let mut slot = entry.slot();
                slot.token = Some(Arc::clone(&t));
                slot.failures = 0;
                slot.retry_at = 0;
                slot.last_error = None;
                Ok(t)
            }
            Renewal::Failed(e) => {
                let mut slot = entry.slot();
                let retry_at = if matches!(e, CacheError::Issue(_)) {
                    slot.failures = slot.failures.saturating_add(1);
                    slot.retry_at = now.saturating_add(self.opts.backoff(slot.failures));
                    slot.last_error = Some(e.to_string());
                    slot.retry_at
                } else {
                    0
                };
                tracing::warn!(key, retry_at, failures = slot.failures, error = %e, "token renewal failed");
                match slot.token.as_ref().filter(|t| now < t.expires_at) {
                    Some(t) => Ok(Arc::clone(t)),
                    None => Err(e),
                }
            }
        }
    }

    fn entry(&self, key: &str) -> Arc<Entry> {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get(key) {
            return Arc::clone(e);
        }
        if map.len() as u64 >= self.sweep_at.load(Ordering::Relaxed) {
            let now = self.clock.now();
            // Only entries nobody is using (the map holds the one reference)
            // whose token has expired: they would be renewed anyway.
            map.retain(|_, e| Arc::strong_count(e) > 1 || e.slot().token.as_ref().is_some_and(|t| now < t.expires_at));
            self.sweep_at
                .store((map.len() as u64).saturating_mul(2).max(64), Ordering::Relaxed);
        }
        let entry = Arc::new(Entry::default());
        map.insert(key.to_owned(), Arc::clone(&entry));
        entry
    }

    fn fresh(&self, entry: &Entry, now: i64) -> Option<Arc<Issued>> {
        entry
            .slot()
            .token
            .as_ref()
            .filter(|t| now < self.opts.renew_at(t))
            .cloned()
    }

    async fn renew(&self, key: &str, old: Option<&Arc<Issued>>, now: i64) -> Renewal<I::Error> {
        let Some(shared) = &self.shared else {
            return self.issue_local(key).await;
        };
        match self.renew_shared(shared, key, old).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(key, error = %e, now, "token cache: Redis unavailable; issuing locally");
                self.issue_local(key).await
            }
        }
    }

    async fn issue_local(&self, key: &str) -> Renewal<I::Error> {
        self.counters.issue_calls.fetch_add(1, Ordering::Relaxed);
        match self.issuer.issue(key).await {
            Ok(t) => Renewal::Issued(Arc::new(t)),
            Err(e) => Renewal::Failed(CacheError::Issue(e)),
        }
    }

    /// The shared protocol. `Err` only when Redis fails, so the caller can
    /// fall back to issuing locally.
    async fn renew_shared(
        &self,
        shared: &SharedRedis,
        key: &str,
        old: Option<&Arc<Issued>>,
    ) -> Result<Renewal<I::Error>, redis::RedisError> {
        let deadline = tokio::time::Instant::now() + self.opts.wait_for;
        loop {
            let now = self.clock.now();
            let current = shared.get(key).await?;
            if let Some(t) = current.as_ref().filter(|t| now < self.opts.renew_at(t)) {
                self.counters.adopted.fetch_add(1, Ordering::Relaxed);
                return Ok(Renewal::Adopted(Arc::new(t.clone())));
            }
            let lock = lock_value();
            if shared.try_lock(key, &lock, self.opts.lock_ttl).await? {
                return self.renew_locked(shared, key, &lock).await;
            }
            // Another instance renews. A valid token (theirs or ours) needs no wait.
            let valid_now = current
                .map(Arc::new)
                .into_iter()
                .chain(old.cloned())
                .find(|t| now < t.expires_at);
            if let Some(t) = valid_now {
                return Ok(Renewal::Adopted(t));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Renewal::Failed(CacheError::Timeout));
            }
            self.counters.waits.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(self.opts.poll_every).await;
        }
    }

    /// Holding the lock: issue, then publish under the fencing check.
    async fn renew_locked(
        &self,
        shared: &SharedRedis,
        key: &str,
        lock: &str,
    ) -> Result<Renewal<I::Error>, redis::RedisError> {
        // A holder may have published and released between our read and our
        // lock: look once more before issuing.
        let now = self.clock.now();
        if let Some(t) = shared.get(key).await?.filter(|t| now < self.opts.renew_at(t)) {
            shared.release(key, lock).await?;
            self.counters.adopted.fetch_add(1, Ordering::Relaxed);
            return Ok(Renewal::Adopted(Arc::new(t)));
        }
        let renewal = self.issue_local(key).await;
        match &renewal {
            Renewal::Issued(t) => {
                let remaining_ms = t.expires_at.saturating_sub(self.clock.now()).saturating_mul(1000);
                if remaining_ms <= 0 {
                    shared.release(key, lock).await?;
                } else if !shared.publish(key, lock, t, remaining_ms).await? {
                    // Our lock expired and someone else renewed: their token
                    // is the shared one; ours is still good for this caller.
                    tracing::warn!(
                        key,
                        "token cache: renewal lock lost before the write; token kept locally"
                    );
                }
            }
            _ => {
                shared.release(key, lock).await?;
            }
        }
        Ok(renewal)
    }
}

fn valid(entry: &Entry, now: i64) -> Option<Arc<Issued>> {
    entry.slot().token.as_ref().filter(|t| now < t.expires_at).cloned()
}

mod shared;
use shared::lock_value;
pub use shared::SharedRedis;

#[cfg(test)]
mod tests;
