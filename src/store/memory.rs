//! The embedded store: everything in this process's memory, for one
//! instance.
//!
//! It owns the replay marks, revocations, rate counters and refresh-token
//! families of a single process. It must never forget a live entry to make
//! room: when it is full it refuses ([`StoreError::Full`]) after sweeping what
//! has expired. It never reads the system clock: expiry is decided with the
//! `now` each caller passes, and reclaiming memory uses the latest `now` any
//! caller has passed.
//!
//! [`ping`](Store::ping) (readiness) fails with [`StoreError::Full`] while
//! the mark table is full of live marks, since every first use would then
//! be refused. Which marks are live is judged by that same latest `now`: a
//! store that no caller reaches does not see time pass, so it stays unready
//! until a caller brings a later `now` (or a restart empties it).
//!
//! Memory per replay mark is what bounds a busy verifier, so a mark is 24
//! bytes of table entry plus the table's slack: the first 16 bytes of the
//! SHA-256 of its key and an expiry, with no allocation of its own (see
//! `benches/tools/mark_memory.rs`). A collision of two such prefixes (odds about
//! 2^-128 per pair) could only make a fresh key look used: a refusal, never
//! a replay.
//!
//! A mark placed with a retry key (see [`Consume::retry_key`]) costs one
//! more entry, in a side table of the same shard, holding the first 16 bytes
//! of the key's SHA-256; marks without one cost nothing more.
//!
//! Expired entries are removed three ways: by a background task every few
//! seconds (when [`MemoryStore::start`] is called inside a Tokio runtime;
//! stopped when the store is dropped), lazily before a shard's table would
//! grow, and on demand when the store is full.
//!
//! # Epoch
//!
//! Everything here dies with the process, so a process started after
//! another (a restart, a crash) cannot know which tokens the other one
//! consumed. [`with_epoch`](MemoryStore::with_epoch) sets the first second
//! this store vouches for; [`consume`](Store::consume) answers
//! [`StateLost`](ConsumeOutcome::StateLost) for a token with an earlier
//! `iat`. [`AnyStore::from_config`](super::AnyStore::from_config) sets it to
//! the second after the process made the store and waits for that second
//! before serving, so the tokens it issues are consumed normally. A store
//! made with [`new`](MemoryStore::new) or [`start`](MemoryStore::start) alone
//! has no epoch (every `iat` is accepted): for tests, and for an embedder
//! that sets one itself.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::{
    rate_decision, rate_window, Consume, ConsumeOutcome, RateDecision, RefreshRecord, SpendOutcome, Store, StoreError,
};
use crate::jose::alg::sha256;

mod ops;
mod tables;
#[cfg(test)]
mod tests;

use tables::{MarkShard, RateCounter, RefreshTokens, Revocations, SubRevocation, TokenEntry};

/// Shards of the mark table: enough that concurrent consumes on a few cores
/// rarely wait for each other, few enough that a full sweep stays cheap.
const SHARDS: usize = 16;

/// How often the background task sweeps. Sweeping is a scan of every table,
/// so it is not done per second; expired entries are also reclaimed lazily.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Entries are reclaimed only once they expired this many seconds before the
/// latest `now` seen, so a caller whose clock read straddled a second
/// boundary (and passes a slightly older `now`) never finds its still-live
/// mark gone.
const SWEEP_GRACE: i64 = 2;

/// A key as stored: the first 16 bytes of its SHA-256.
type Compact = [u8; 16];

fn compact(key: &str) -> Compact {
    let digest = sha256(key.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Locks that survive a panic elsewhere: every critical section here leaves
/// its map consistent (one insert, update or retain), so the data behind a
/// poisoned lock is still sound, and refusing service forever would be worse.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

/// An opaque access token's stored claims, and the second it is forgotten.
type OpaqueEntry = (Box<[u8]>, i64);

/// The in-memory [`Store`].
pub struct MemoryStore {
    inner: Arc<Inner>,
    /// Stops the background sweeper when the store is dropped; `None` when
    /// there was no runtime to run one in.
    _sweeper: Option<SweeperGuard>,
}

/// How full the store is, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryStats {
    /// Replay marks held, expired ones not yet swept included.
    pub marks: usize,
    /// Of those, the marks placed with a retry key (each costs one more
    /// entry).
    pub retry_keys: usize,
    /// Revoked `jti`s and `sub`s.
    pub revocations: usize,
    /// Rate-limit windows held.
    pub rate_counters: usize,
    /// Refresh tokens held, spent ones included (they are kept until their
    /// family expires so reuse is detected).
    pub refresh_tokens: usize,
    /// Refresh-token families revoked after a reuse, until they expire.
    pub revoked_families: usize,
    /// Opaque tokens (OAuth 2.0 access tokens kept server-side), expired
    /// ones not yet swept included.
    pub opaque_tokens: usize,
}

struct Inner {
    /// The most entries of each kind (marks; revocations; rate counters;
    /// refresh tokens) held at once.
    capacity: usize,
    /// Replay marks, sharded by key so concurrent consumes rarely contend.
    /// A std Mutex, not a tokio one: no await happens while it is held, and
    /// a std lock is cheaper for these short critical sections.
    marks: [Mutex<MarkShard>; SHARDS],
    /// Marks held across all shards. Reserved before an insert so the total
    /// never exceeds `capacity`, even with inserts racing in different shards.
    mark_count: AtomicUsize,
    /// Read on every verification, written only by revocations: a read-write
    /// lock lets verifications proceed in parallel.
    ///
    /// Lock order: a consume holds this (read) while it locks one mark shard
    /// (and, when full, each shard in turn), so no code may wait for this
    /// lock while holding a mark shard. Nothing does: mark shards are only
    /// ever locked alone otherwise.
    revocations: RwLock<Revocations>,
    rates: Mutex<HashMap<Compact, RateCounter>>,
    refresh: Mutex<RefreshTokens>,
    /// OAuth 2.0 opaque access tokens.
    opaque: Mutex<HashMap<Compact, OpaqueEntry>>,
    /// The latest `now` any caller has passed: the only time the sweeper
    /// knows, so that reclaiming memory never needs the system clock.
    latest_now: AtomicI64,
    /// Tokens with an earlier `iat` cannot be consumed: this process cannot
    /// know whether an earlier one consumed them. `i64::MIN` when unset.
    epoch: AtomicI64,
    /// Set by [`SweeperGuard`] on drop; the background task exits when it sees it.
    shutdown: AtomicBool,
    /// Wakes the background task early, to exit promptly on shutdown.
    wake: Notify,
}

impl MemoryStore {
    /// A store holding at most `capacity` entries of each kind, with no
    /// background sweeper: expired entries are reclaimed lazily (before a
    /// table grows, and when full). Works without a Tokio runtime.
    pub fn new(capacity: usize) -> MemoryStore {
        let inner = Inner {
            capacity,
            marks: std::array::from_fn(|_| Mutex::new(MarkShard::default())),
            mark_count: AtomicUsize::new(0),
            revocations: RwLock::new(Revocations::default()),
            rates: Mutex::new(HashMap::new()),
            refresh: Mutex::new(RefreshTokens::default()),
            opaque: Mutex::new(HashMap::new()),
            latest_now: AtomicI64::new(i64::MIN),
            epoch: AtomicI64::new(i64::MIN),
            shutdown: AtomicBool::new(false),
            wake: Notify::new(),
        };
        MemoryStore {
            inner: Arc::new(inner),
            _sweeper: None,
        }
    }

    /// Like [`new`](MemoryStore::new), plus a background task that sweeps
    /// expired entries every few seconds until the store is dropped. Outside
    /// a Tokio runtime there is nowhere to run it, and the store relies on
    /// lazy sweeping alone (see [`is_sweeping`](MemoryStore::is_sweeping)).
    pub fn start(capacity: usize) -> MemoryStore {
        let mut store = MemoryStore::new(capacity);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep_task(Arc::clone(&store.inner)));
            store._sweeper = Some(SweeperGuard {
                inner: Arc::clone(&store.inner),
            });
        }
        store
    }

    /// The same store, refusing to consume tokens issued before `epoch`
    /// ([`ConsumeOutcome::StateLost`]): pass the second after this process
    /// started, so that a token an earlier process consumed is never
    /// consumed again here. See the module docs.
    pub fn with_epoch(self, epoch: i64) -> MemoryStore {
        self.inner.epoch.store(epoch, Ordering::Release);
        self
    }

    /// The first `iat` this store consumes; `i64::MIN` when no epoch was set.
    pub fn epoch(&self) -> i64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    /// Whether a background sweeper runs for this store.
    pub fn is_sweeping(&self) -> bool {
        self._sweeper.is_some()
    }

    /// The most entries of each kind this store holds.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Removes every entry that expired before the latest `now` seen (less a
    /// grace of two seconds): what the background task does.
    pub fn sweep(&self) {
        self.inner.sweep_all();
    }

    /// Readiness at `now`: records the time first, so that readiness probes
    /// alone (when a full store has made a balancer stop sending requests)
    /// advance the sweep and let the store become ready again.
    pub fn ready_at(&self, now: i64) -> Result<(), StoreError> {
        self.inner.observe(now);
        self.inner.ready()
    }

    /// Current sizes.
    pub fn stats(&self) -> MemoryStats {
        let inner = &self.inner;
        let revocations = read(&inner.revocations).len();
        let rate_counters = lock(&inner.rates).len();
        let (refresh_tokens, revoked_families) = {
            let r = lock(&inner.refresh);
            (r.tokens.len(), r.revoked_families.len())
        };
        let retry_keys = inner.marks.iter().map(|shard| lock(shard).retry_keys.len()).sum();
        let opaque_tokens = lock(&inner.opaque).len();
        MemoryStats {
            marks: inner.mark_count.load(Ordering::Acquire),
            retry_keys,
            revocations,
            rate_counters,
            refresh_tokens,
            revoked_families,
            opaque_tokens,
        }
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &self.inner.capacity)
            .field("sweeping", &self.is_sweeping())
            .finish_non_exhaustive()
    }
}

/// What placing a mark found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marked {
    /// This call placed it.
    First,
    /// It was there, placed with the same retry key.
    Retried,
    /// It was there.
    Already,
}

/// Stops the background sweeper when dropped (mini-redis's `DbDropGuard`).
struct SweeperGuard {
    inner: Arc<Inner>,
}

impl Drop for SweeperGuard {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::Release);
        // A stored permit wakes the task even if it is not waiting yet.
        self.inner.wake.notify_one();
    }
}

/// Sweeps every [`SWEEP_EVERY`] until shut down. Tokio time only schedules
/// the sweeps; what is expired is decided by the callers' latest `now`.
async fn sweep_task(inner: Arc<Inner>) {
    while !inner.shutdown.load(Ordering::Acquire) {
        inner.sweep_all();
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = inner.wake.notified() => {}
        }
    }
}

impl Store for MemoryStore {
    async fn mark_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        self.inner.mark_once(key, expires_at, now)
    }

    async fn revoke_jti(&self, jti: &str, until: i64, now: i64) -> Result<(), StoreError> {
        self.inner.revoke_jti(jti, until, now)
    }

    async fn revoke_sub(&self, sub: &str, revoked_at: i64, until: i64, now: i64) -> Result<(), StoreError> {
        self.inner.revoke_sub(sub, revoked_at, until, now)
    }

    async fn is_revoked(&self, jti: &str, sub: &str, iat: i64, now: i64) -> Result<bool, StoreError> {
        Ok(self.inner.is_revoked(jti, sub, iat, now))
    }

    async fn consume(&self, c: Consume<'_>, now: i64) -> Result<ConsumeOutcome, StoreError> {
        self.inner.consume(c, now)
    }

    async fn rate_hit(&self, key: &str, limit: u32, window_secs: u32, now: i64) -> Result<RateDecision, StoreError> {
        self.inner.rate_hit(key, limit, window_secs, now)
    }

    async fn refresh_insert(&self, hash: &str, record: &RefreshRecord, now: i64) -> Result<(), StoreError> {
        self.inner.refresh_insert(hash, record, now)
    }

    async fn refresh_spend(&self, hash: &str, successor_hash: &str, now: i64) -> Result<SpendOutcome, StoreError> {
        self.inner.refresh_spend(hash, successor_hash, now)
    }

    async fn refresh_peek(&self, hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
        let r = lock(&self.inner.refresh);
        Ok(r.tokens.get(hash).map(|t| RefreshRecord {
            expires_at: t.expires_at,
            ..(*t.record).clone()
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ready()
    }

    // --- OAuth 2.0 (issue 11) ---

    async fn refresh_revoke_family(&self, family: &str, until: i64, now: i64) -> Result<(), StoreError> {
        self.inner.observe(now);
        if until <= now {
            // Every token of the family has expired: nothing to keep.
            return Ok(());
        }
        let mut r = lock(&self.inner.refresh);
        if let Some(old) = r.revoked_families.get_mut(family) {
            *old = (*old).max(until);
            return Ok(());
        }
        if r.revoked_families.len() >= self.inner.capacity {
            r.sweep(self.inner.horizon());
            if r.revoked_families.len() >= self.inner.capacity {
                return Err(StoreError::Full {
                    capacity: self.inner.capacity,
                });
            }
        }
        r.revoked_families.insert(family.to_owned(), until);
        Ok(())
    }

    async fn opaque_insert(&self, hash: &str, value: &[u8], expires_at: i64, now: i64) -> Result<(), StoreError> {
        self.inner.observe(now);
        if expires_at <= now {
            return Ok(());
        }
        let key = compact(hash);
        let mut o = lock(&self.inner.opaque);
        if o.contains_key(&key) {
            return Err(StoreError::Unavailable("opaque token hash is already stored".into()));
        }
        if o.len() >= self.inner.capacity {
            let horizon = self.inner.horizon();
            o.retain(|_, (_, until)| *until > horizon);
            if o.len() >= self.inner.capacity {
                return Err(StoreError::Full {
                    capacity: self.inner.capacity,
                });
            }
        }
        o.insert(key, (value.into(), expires_at));
        Ok(())
    }

    async fn opaque_get(&self, hash: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.observe(now);
        let o = lock(&self.inner.opaque);
        Ok(o.get(&compact(hash))
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v.to_vec()))
    }

    async fn refresh_live(&self, hash: &str, now: i64) -> Result<Option<RefreshRecord>, StoreError> {
        let r = lock(&self.inner.refresh);
        let Some(t) = r.tokens.get(hash) else {
            return Ok(None);
        };
        // A token's `expires_at` never passes its family's end (insert and
        // spend both cut it to `family_expires_at`), so its own expiry
        // covers the family's.
        let live = !t.spent && t.expires_at > now && !r.revoked_families.contains_key(&t.record.family);
        Ok(live.then(|| RefreshRecord {
            expires_at: t.expires_at,
            ..(*t.record).clone()
        }))
    }

    async fn opaque_remove(&self, hash: &str, now: i64) -> Result<(), StoreError> {
        self.inner.observe(now);
        lock(&self.inner.opaque).remove(&compact(hash));
        Ok(())
    }
}
