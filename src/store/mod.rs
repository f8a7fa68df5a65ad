//! State that must be shared between instances: `jti` replay marks,
//! revocations, refresh-token families and rate counters.
//!
//! This module owns the [`Store`] contract and its two implementations:
//! [`memory::MemoryStore`] (one process, the default) and
//! [`redis::RedisStore`] (every instance that points at the same Redis and
//! namespace shares one view). The server holds an [`AnyStore`] so it has one
//! concrete type whichever backend the configuration picks.
//!
//! A store must never answer "yes, go ahead" when it does not know: every
//! failure to reach or update the state is an error ([`StoreError`]), never a
//! default answer, so callers fail closed (HTTP 503 `store_unavailable`).
//! A store never reads the system clock to decide anything: every time is a
//! parameter, taken by the caller from its [`Clock`].

pub mod memory;
pub mod redis;

use std::fmt;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;

/// Why a store could not answer. Both variants mean "refuse the request".
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend is unreachable, timed out, or answered something this
    /// crate does not understand. The text says which, for the log only.
    /// A call that timed out may still take effect later (Redis runs a
    /// command it received once it can): the outcome is unknown, not "no".
    Unavailable(String),
    /// The memory store is at capacity: it refuses new entries rather than
    /// evict a live mark, because forgetting a mark early re-opens a replay.
    /// Nothing was written.
    Full {
        /// The most entries of each kind the store holds.
        capacity: usize,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "store unavailable: {why}"),
            StoreError::Full { capacity } => write!(
                f,
                "store full (capacity {capacity}): refusing new entries rather than evicting live ones"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// The answer to one hit on a rate counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether this hit is within the limit.
    pub allowed: bool,
    /// Seconds until the current window ends; at least 1 when `!allowed`
    /// (it becomes the `Retry-After` header).
    pub retry_after: u64,
}

/// What a store keeps about one refresh token. Every token of a family
/// carries the same identity; only `expires_at` differs from one to the next.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// The id shared by every token descended from the same first one.
    pub family: String,
    /// The id of the client the family was issued to.
    pub client: String,
    /// The subject of the tokens it renews.
    pub sub: String,
    /// Their scopes.
    pub scopes: Vec<String>,
    /// Their extra claims.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Lifetime in seconds of each refresh token of this family.
    pub ttl: i64,
    /// This token is refused from this second on.
    pub expires_at: i64,
    /// Every token of the family is refused from this second on, however
    /// often it was rotated.
    pub family_expires_at: i64,
    /// When the family was started (its first token issued): a revocation of
    /// the subject at or after this second ends the family. Records written
    /// before this field existed read as 0, so any such revocation ends them.
    #[serde(default)]
    pub created_at: i64,
}

/// The result of presenting a refresh token.
#[derive(Clone, Debug, PartialEq)]
pub enum SpendOutcome {
    /// The token was live: here is its record (with its own `expires_at`);
    /// its successor is now stored.
    Spent(RefreshRecord),
    /// The token had been spent before: someone holds a copy. The whole
    /// family is now revoked, the legitimate holder's successor included.
    Reused,
    /// The family was revoked earlier.
    Revoked,
    /// Never issued, or expired (the token or its family).
    Unknown,
}

/// One single use of a token, as [`Store::consume`] takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consume<'a> {
    /// The key of a revocation by `jti`.
    pub jti: &'a str,
    /// The key of a revocation by `sub`.
    pub sub: &'a str,
    /// The token's `iat`: a revocation by `sub` and the store's epoch are
    /// judged by it.
    pub iat: i64,
    /// The key the single-use mark is kept under.
    pub mark_key: &'a str,
    /// The mark is kept until then (as [`Store::mark_once`] keeps one).
    pub expires_at: i64,
    /// Who consumes, when the caller may retry: a mark placed with a retry
    /// key answers [`Retried`](ConsumeOutcome::Retried) to a later consume
    /// with the same key, and [`Replayed`](ConsumeOutcome::Replayed) to any
    /// other. An opaque identifier (the authority passes a digest of the
    /// client id and its `Idempotency-Key`), never a secret.
    pub retry_key: Option<&'a str>,
}

impl<'a> Consume<'a> {
    /// A consume with no retry key.
    pub fn new(jti: &'a str, sub: &'a str, iat: i64, mark_key: &'a str, expires_at: i64) -> Consume<'a> {
        Consume {
            jti,
            sub,
            iat,
            mark_key,
            expires_at,
            retry_key: None,
        }
    }

    /// The same consume, placed (or retried) under `retry_key`.
    pub fn with_retry_key(self, retry_key: &'a str) -> Consume<'a> {
        Consume {
            retry_key: Some(retry_key),
            ..self
        }
    }
}

/// The answer to one [`consume`](Store::consume) of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeOutcome {
    /// Not revoked, and this call placed the mark: the token may be used.
    FirstUse,
    /// Not revoked, and the mark was placed by an earlier consume with the
    /// same retry key: this is that consume again (its answer was lost), and
    /// the answer is the one it had.
    Retried,
    /// Not revoked, but the mark was already there: a second use.
    Replayed,
    /// Revoked (by `jti`, or by `sub` for its `iat`). Nothing was marked.
    Revoked,
    /// Not revoked as far as the store knows, but issued before the store's
    /// epoch: the store may have forgotten a use (and a revocation) of it,
    /// so it cannot vouch for a first use. Nothing was marked.
    StateLost,
}

/// Shared state with a security contract.
///
/// Every implementation must uphold all of this; the suite in
/// `tests/suite/store.rs` runs the same cases against each one.
///
/// - **Fail closed.** Any doubt is an `Err`: a timeout, a lost connection, a
///   reply that does not parse, a full memory store. An implementation never
///   turns an error into `Ok(true)` from [`mark_once`](Store::mark_once),
///   `Ok(false)` from [`is_revoked`](Store::is_revoked), `FirstUse` from
///   [`consume`](Store::consume), an allowed rate decision, or a spent
///   refresh token.
/// - **Atomic.** `mark_once`, `consume` and `refresh_spend` are
///   check-and-set in one step: of any number of concurrent calls with the
///   same key, across every instance sharing the store, exactly one wins.
/// - **Never forget early.** A mark, a revocation and a spent refresh token
///   are kept at least until the time given with them. Forgetting early is a
///   replay hole, so a store refuses new entries ([`StoreError::Full`]) rather
///   than evict live ones. It should forget them soon after, to bound memory.
/// - **Caller's time.** Times are Unix seconds, passed in by the caller from
///   its clock; a store never reads the system clock to decide anything (a
///   background sweeper may use timers to decide *when* to sweep). An entry
///   is live while `now < expires_at`. Redis expires keys by its own clock at
///   the same instants, so instances and Redis should agree on the time
///   (NTP); skew of a second or two only shifts when memory is reclaimed.
/// - **No secrets.** Keys given to a store are identifiers (`jti`, `sub`,
///   hashes of refresh secrets), never tokens or refresh secrets themselves.
/// - **Lost state is detected, never trusted.** A store has an *epoch*: the
///   first second from which it is sure to hold every mark placed through
///   it. A store that cannot rule out having forgotten marks (a Redis
///   restarted empty, flushed, or that evicted the epoch; a memory store in
///   a new process) moves its epoch to a second after the loss, and
///   [`consume`](Store::consume) answers
///   [`StateLost`](ConsumeOutcome::StateLost) for every token with
///   `iat < epoch`: it cannot know whether such a token was used. Tokens
///   issued from the epoch on are consumed normally.
pub trait Store: Send + Sync + 'static {
    /// Atomic check-and-insert. `Ok(true)` the first time `key` is marked;
    /// `Ok(false)` if it is already marked and not expired.
    ///
    /// Must never forget a mark before `expires_at` (forgetting early is a
    /// replay hole, unlike a cache); should forget it soon after. Pass the
    /// last second at which the token could still be accepted, i.e. `exp`
    /// plus the verifier's leeway. A mark is kept at least one second even
    /// if `expires_at <= now`.
    fn mark_once(&self, key: &str, expires_at: i64, now: i64) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Revokes the token with this `jti` until `until` (its expiry, or the
    /// longest a token may live). Revoking again keeps the later `until`.
    fn revoke_jti(&self, jti: &str, until: i64, now: i64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Tokens of `sub` with `iat <= revoked_at` are revoked; the entry is kept
    /// until `until`. Revoking again keeps the later of each time, so an
    /// instance with a slow clock never narrows a revocation.
    fn revoke_sub(
        &self,
        sub: &str,
        revoked_at: i64,
        until: i64,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether a token with this `jti`, `sub` and `iat` has been revoked.
    fn is_revoked(
        &self,
        jti: &str,
        sub: &str,
        iat: i64,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Checks revocation of (`jti`, `sub` at `iat`), then the store's epoch,
    /// and, if neither refuses, marks `mark_key` until `expires_at`, as one
    /// atomic step. Never marks a revoked token or one issued before the
    /// epoch; never reports `FirstUse` twice for one `mark_key`.
    ///
    /// The same answers as [`is_revoked`](Store::is_revoked) followed by
    /// [`mark_once`](Store::mark_once) (same revocations, same marks: a key
    /// marked by one is marked for the other), but a revocation can never
    /// land between the check and the mark, and a remote store answers in
    /// one round trip. A revocation wins over a mark that already exists;
    /// the epoch is checked after revocations. When the mark exists and was
    /// placed with this call's `retry_key`, the answer is `Retried`.
    ///
    /// [`mark_once`](Store::mark_once) knows no `iat` and checks no epoch.
    fn consume(&self, c: Consume<'_>, now: i64) -> impl Future<Output = Result<ConsumeOutcome, StoreError>> + Send;

    /// One hit on a counter: fixed window of `window_secs` aligned to
    /// multiples of it, at most `limit` hits per window. A window of 0 is
    /// treated as 1 second.
    fn rate_hit(
        &self,
        key: &str,
        limit: u32,
        window_secs: u32,
        now: i64,
    ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send;

    /// Stores a new refresh token (the first of a family) under the hash of
    /// its secret. A hash that is already stored is an error: overwriting it
    /// could erase the memory of a spent token.
    fn refresh_insert(
        &self,
        hash: &str,
        record: &RefreshRecord,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Atomically: if `hash` is live and unspent and its family is not
    /// revoked, mark it spent and store its successor under `successor_hash`
    /// with the same identity and `expires_at = min(now + ttl,
    /// family_expires_at)`; return `Spent(old record)`. If it was spent
    /// already: revoke the family (every token descended from the same first
    /// one, including the live successor) and return `Reused`. Spent tokens
    /// are remembered until their family expires so that reuse is detected,
    /// even after the spent token's own expiry.
    ///
    /// The order of checks: unknown hash → `Unknown`; revoked family →
    /// `Revoked`; family expired → `Unknown`; spent → `Reused`; token expired
    /// → `Unknown`.
    fn refresh_spend(
        &self,
        hash: &str,
        successor_hash: &str,
        now: i64,
    ) -> impl Future<Output = Result<SpendOutcome, StoreError>> + Send;

    /// The record stored under `hash`, spent or not, without changing
    /// anything; `None` when nothing is stored (never issued, or forgotten
    /// after its family expired). For deciding who is asking before a spend;
    /// whether the token may be spent is [`refresh_spend`](Store::refresh_spend)'s
    /// answer alone.
    fn refresh_peek(&self, hash: &str) -> impl Future<Output = Result<Option<RefreshRecord>, StoreError>> + Send;

    /// Whether the store can serve, for `/readyz`: reachable (Redis), and
    /// not so full that a first use would be refused (memory).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    // --- OAuth 2.0 (issue 11) ---

    /// Revokes the refresh-token family `family` until `until` (its
    /// `family_expires_at`): every token of it, spent or live, answers
    /// [`SpendOutcome::Revoked`] from now on. Revoking again keeps the
    /// later `until`. RFC 7009 revocation of a refresh token.
    fn refresh_revoke_family(
        &self,
        family: &str,
        until: i64,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores an opaque access token's claims (`value`, JSON) under the
    /// hash of the token (never the token) until `expires_at`. A hash that
    /// is already stored is an error: two tokens never share one.
    fn opaque_insert(
        &self,
        hash: &str,
        value: &[u8],
        expires_at: i64,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The claims stored under `hash`, while `now < expires_at`; `None`
    /// when nothing is stored (never issued, expired, or removed).
    fn opaque_get(&self, hash: &str, now: i64) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Forgets the opaque token stored under `hash`, on every instance at once.
    fn opaque_remove(&self, hash: &str, now: i64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The record of the refresh token stored under `hash` (with its own
    /// `expires_at`) if [`refresh_spend`](Store::refresh_spend) would spend
    /// it at `now`: unspent, its family not revoked, neither it nor its
    /// family expired. `None` otherwise. Changes nothing: RFC 7662
    /// introspection of a refresh token. Need not be atomic (a spend or a
    /// revocation racing it may or may not be seen).
    fn refresh_live(
        &self,
        hash: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<RefreshRecord>, StoreError>> + Send;
}

/// The configured store, as one concrete type for the server to hold.
#[derive(Debug)]
pub enum AnyStore {
    /// In this process only: for one instance.
    Memory(memory::MemoryStore),
    /// In Redis, shared by every instance.
    Redis(self::redis::RedisStore),
}

impl AnyStore {
    /// The epoch as this store last knew it (a Redis epoch can move later,
    /// when a consume finds the state lost).
    pub fn epoch(&self) -> i64 {
        match self {
            AnyStore::Memory(s) => s.epoch(),
            AnyStore::Redis(s) => s.epoch(),
        }
    }

    /// Waits until `clock` has reached the store's epoch, for at most
    /// [`EPOCH_WAIT`]: a process that made its store just now calls this
    /// before it serves, so that the tokens it issues (or receives) from
    /// then on can be consumed. An epoch the clock does not reach in time (a
    /// manual clock; an epoch written by an instance whose clock runs fast)
    /// is logged and not waited for: tokens issued before it are refused
    /// when consumed, which is safe.
    pub async fn wait_for_epoch(&self, clock: &dyn Clock) {
        let epoch = self.epoch();
        let deadline = tokio::time::Instant::now() + EPOCH_WAIT;
        while clock.now() < epoch {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    epoch,
                    now = clock.now(),
                    "store: the replay epoch is ahead of this clock; tokens issued before it cannot be consumed"
                );
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// The longest [`AnyStore::wait_for_epoch`] waits: the one second an epoch
/// is ahead of the clock that set it, and a margin.
pub const EPOCH_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

impl From<memory::MemoryStore> for AnyStore {
    fn from(store: memory::MemoryStore) -> AnyStore {
        AnyStore::Memory(store)
    }
}

impl From<self::redis::RedisStore> for AnyStore {
    fn from(store: self::redis::RedisStore) -> AnyStore {
        AnyStore::Redis(store)
    }
}

impl Store for AnyStore {
    async fn mark_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        match self {
            AnyStore::Memory(s) => s.mark_once(key, expires_at, now).await,
            AnyStore::Redis(s) => s.mark_once(key, expires_at, now).await,
        }
    }

    async fn revoke_jti(&self, jti: &str, until: i64, now: i64) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(s) => s.revoke_jti(jti, until, now).await,
            AnyStore::Redis(s) => s.revoke_jti(jti, until, now).await,
        }
    }

    async fn revoke_sub(&self, sub: &str, revoked_at: i64, until: i64, now: i64) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(s) => s.revoke_sub(sub, revoked_at, until, now).await,
            AnyStore::Redis(s) => s.revoke_sub(sub, revoked_at, until, now).await,
        }
    }

    async fn is_revoked(&self, jti: &str, sub: &str, iat: i64, now: i64) -> Result<bool, StoreError> {
        match self {
            AnyStore::Memory(s) => s.is_revoked(jti, sub, iat, now).await,
            AnyStore::Redis(s) => s.is_revoked(jti, sub, iat, now).await,
        }
    }

    async fn consume(&self, c: Consume<'_>, now: i64) -> Result<ConsumeOutcome, StoreError> {
        match self {
            AnyStore::Memory(s) => s.consume(c, now).await,
            AnyStore::Redis(s) => s.consume(c, now).await,
        }
    }

    async fn rate_hit(&self, key: &str, limit: u32, window_secs: u32, now: i64) -> Result<RateDecision, StoreError> {
        match self {
            AnyStore::Memory(s) => s.rate_hit(key, limit, window_secs, now).await,
            AnyStore::Redis(s) => s.rate_hit(key, limit, window_secs, now).await,
        }
    }

    async fn refresh_insert(&self, hash: &str, record: &RefreshRecord, now: i64) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(s) => s.refresh_insert(hash, record, now).await,
            AnyStore::Redis(s) => s.refresh_insert(hash, record, now).await,
        }
    }

    async fn refresh_spend(&self, hash: &str, successor_hash: &str, now: i64) -> Result<SpendOutcome, StoreError> {
        match self {
            AnyStore::Memory(s) => s.refresh_spend(hash, successor_hash, now).await,
            AnyStore::Redis(s) => s.refresh_spend(hash, successor_hash, now).await,
        }
    }

    async fn refresh_peek(&self, hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
        match self {
            AnyStore::Memory(s) => s.refresh_peek(hash).await,
            AnyStore::Redis(s) => s.refresh_peek(hash).await,
        }
    }

    async fn refresh_live(&self, hash: &str, now: i64) -> Result<Option<RefreshRecord>, StoreError> {
        match self {
            AnyStore::Memory(s) => s.refresh_live(hash, now).await,
            AnyStore::Redis(s) => s.refresh_live(hash, now).await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(s) => s.ping().await,
            AnyStore::Redis(s) => s.ping().await,
        }
    }

    // --- OAuth 2.0 (issue 11) ---

    async fn refresh_revoke_family(&self, family: &str, until: i64, now: i64) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(s) => s.refresh_revoke_family(family, until, now).await,
            AnyStore::Redis(s) => s.refresh_revoke_family(family, until, now).await,
        }
    }

    async fn opaque_insert(&self, hash: &str, value: &[u8], expires_at: i64, now: i64) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(s) => s.opaque_insert(hash, value, expires_at, now).await,
            AnyStore::Redis(s) => s.opaque_insert(hash, value, expires_at, now).await,
        }
    }

    async fn opaque_get(&self, hash: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            AnyStore::Memory(s) => s.opaque_get(hash, now).await,
            AnyStore::Redis(s) => s.opaque_get(hash, now).await,
        }
    }

    async fn opaque_remove(&self, hash: &str, now: i64) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(s) => s.opaque_remove(hash, now).await,
            AnyStore::Redis(s) => s.opaque_remove(hash, now).await,
        }
    }
}

/// The start of the fixed window of `window_secs` that contains `now`, and
/// its end. Shared so both stores cut windows at the same instants.
fn rate_window(window_secs: u32, now: i64) -> (i64, i64) {
    let w = i64::from(window_secs.max(1));
    let start = now - now.rem_euclid(w);
    (start, start.saturating_add(w))
}

/// The decision for the `count`-th hit of a window ending at `end`.
fn rate_decision(count: u64, limit: u32, end: i64, now: i64) -> RateDecision {
    let remaining = u64::try_from(end.saturating_sub(now)).unwrap_or(0);
    RateDecision {
        allowed: count <= u64::from(limit),
        retry_after: remaining.max(1),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{AnyStore, StoreError, EPOCH_WAIT};
    use crate::clock::ManualClock;
    use crate::store::memory::MemoryStore;

    const EPOCH: i64 = 1_800_000_000;

    /// How long `wait_for_epoch` waits (tokio's paused clock: no real time
    /// passes) with the caller's clock standing at `now`.
    async fn waited(now: i64) -> Duration {
        let store: AnyStore = MemoryStore::new(10).with_epoch(EPOCH).into();
        assert_eq!(store.epoch(), EPOCH);
        let clock = ManualClock::new(now);
        let started = tokio::time::Instant::now();
        store.wait_for_epoch(clock.as_ref()).await;
        started.elapsed()
    }

    /// A clock at the epoch goes on at once; one short of it is waited for,
    /// at most `EPOCH_WAIT` (here it never moves: the wait ends at the bound).
    #[tokio::test(start_paused = true)]
    async fn waits_for_the_epoch_at_most_its_bound() {
        assert_eq!(waited(EPOCH).await, Duration::ZERO);
        assert_eq!(waited(EPOCH + 5).await, Duration::ZERO);
        let short = waited(EPOCH - 1).await;
        assert!(
            short >= EPOCH_WAIT && short < EPOCH_WAIT + Duration::from_millis(100),
            "{short:?}"
        );
    }

    #[test]
    fn errors_say_what_failed() {
        assert_eq!(
            StoreError::Unavailable("redis: no answer".into()).to_string(),
            "store unavailable: redis: no answer"
        );
        assert_eq!(
            StoreError::Full { capacity: 3 }.to_string(),
            "store full (capacity 3): refusing new entries rather than evicting live ones"
        );
    }
}
