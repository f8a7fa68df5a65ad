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

#[derive(Default)]
struct MarkShard {
    /// Key → the second from which the mark is forgotten.
    map: HashMap<Compact, i64>,
    /// Key → the retry key it was placed with, for the marks placed with
    /// one. Apart from `map` so that a mark without one stays 24 bytes; an
    /// entry here never outlives its mark's entry in `map`.
    retry_keys: HashMap<Compact, Compact>,
}

impl MarkShard {
    /// Removes marks expired at `horizon`; returns how many. Gives memory
    /// back when the table has become mostly empty (after a burst).
    fn sweep(&mut self, horizon: i64) -> usize {
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
    fn set_retry_key(&mut self, key: Compact, retry_key: Option<Compact>) {
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
struct Revocations {
    /// Revoked `jti` → kept until.
    jti: HashMap<Compact, i64>,
    sub: HashMap<Compact, SubRevocation>,
}

#[derive(Clone, Copy)]
struct SubRevocation {
    /// Tokens with `iat <= revoked_at` are revoked.
    revoked_at: i64,
    until: i64,
}

impl Revocations {
    fn len(&self) -> usize {
        self.jti.len() + self.sub.len()
    }

    /// Whether a token with this `jti`, `sub` and `iat` is revoked at `now`.
    fn covers(&self, jti: &Compact, sub: &Compact, iat: i64, now: i64) -> bool {
        if self.jti.get(jti).is_some_and(|until| *until > now) {
            return true;
        }
        self.sub.get(sub).is_some_and(|s| s.until > now && iat <= s.revoked_at)
    }

    fn sweep(&mut self, horizon: i64) -> usize {
        let before = self.len();
        self.jti.retain(|_, until| *until > horizon);
        self.sub.retain(|_, r| r.until > horizon);
        before - self.len()
    }

    /// Makes room for one more entry, or refuses.
    fn reserve(&mut self, capacity: usize, horizon: i64) -> Result<(), StoreError> {
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
struct RateCounter {
    start: i64,
    end: i64,
    count: u32,
}

#[derive(Default)]
struct RefreshTokens {
    tokens: HashMap<String, TokenEntry>,
    /// Revoked family → its `family_expires_at`, after which no token of it
    /// can be presented anyway. Only revoked families are recorded.
    revoked_families: HashMap<String, i64>,
}

struct TokenEntry {
    /// Shared by every token of one family: rotation copies a pointer, not
    /// the claims. Its `expires_at` is the first token's; `expires_at` below
    /// is this token's own.
    record: Arc<RefreshRecord>,
    expires_at: i64,
    spent: bool,
}

impl RefreshTokens {
    fn sweep(&mut self, horizon: i64) -> usize {
        let before = self.tokens.len();
        // Spent tokens stay until the family expires: that is what lets a
        // reuse be detected after the spent token's own expiry.
        self.tokens.retain(|_, t| t.record.family_expires_at > horizon);
        self.revoked_families
            .retain(|_, family_expires_at| *family_expires_at > horizon);
        before - self.tokens.len()
    }

    fn reserve(&mut self, capacity: usize, horizon: i64) -> Result<(), StoreError> {
        if self.tokens.len() >= capacity {
            self.sweep(horizon);
        }
        if self.tokens.len() >= capacity {
            return Err(StoreError::Full { capacity });
        }
        Ok(())
    }
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
        MemoryStats {
            marks: inner.mark_count.load(Ordering::Acquire),
            retry_keys,
            revocations,
            rate_counters,
            refresh_tokens,
            revoked_families,
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

impl Inner {
    /// Records a caller's `now`; the sweeper's clock only moves forward.
    fn observe(&self, now: i64) {
        self.latest_now.fetch_max(now, Ordering::AcqRel);
    }

    /// Entries whose expiry is at or before this are reclaimed.
    fn horizon(&self) -> i64 {
        self.latest_now.load(Ordering::Acquire).saturating_sub(SWEEP_GRACE)
    }

    /// Takes one slot of the mark budget, or reports that there is none.
    fn reserve_mark(&self) -> bool {
        self.mark_count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    fn release_marks(&self, n: usize) {
        if n > 0 {
            self.mark_count.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Shard by shard, so only one shard is locked at a time.
    fn sweep_marks(&self) {
        let horizon = self.horizon();
        for shard in &self.marks {
            let removed = lock(shard).sweep(horizon);
            self.release_marks(removed);
        }
    }

    fn sweep_all(&self) {
        self.sweep_marks();
        let horizon = self.horizon();
        write(&self.revocations).sweep(horizon);
        lock(&self.rates).retain(|_, c| c.end > horizon);
        lock(&self.refresh).sweep(horizon);
        lock(&self.opaque).retain(|_, (_, until)| *until > horizon);
    }

    fn mark_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        self.observe(now);
        Ok(self.mark(key, None, expires_at, now)? == Marked::First)
    }

    /// The check-and-insert of [`mark_once`](Inner::mark_once), placing the
    /// mark with `retry_key` if given. Locks mark shards only (one at a
    /// time), so a consume may call it while holding the revocations lock.
    fn mark(&self, key: &str, retry_key: Option<&str>, expires_at: i64, now: i64) -> Result<Marked, StoreError> {
        let key = compact(key);
        let retry_key = retry_key.map(compact);
        let until = expires_at.max(now.saturating_add(1));
        let shard = &self.marks[usize::from(key[0]) % SHARDS];
        for attempt in 0..2 {
            {
                let mut shard = lock(shard);
                match shard.map.get_mut(&key) {
                    Some(old) if *old > now => {
                        let same = retry_key.is_some() && shard.retry_keys.get(&key) == retry_key.as_ref();
                        return Ok(if same { Marked::Retried } else { Marked::Already });
                    }
                    Some(old) => {
                        // Expired but not yet swept: the slot is reused.
                        *old = until;
                        shard.set_retry_key(key, retry_key);
                        return Ok(Marked::First);
                    }
                    None => {}
                }
                if shard.map.len() == shard.map.capacity() {
                    // About to grow: reclaim expired marks first, so the
                    // table grows for live marks only.
                    let removed = shard.sweep(self.horizon());
                    self.release_marks(removed);
                }
                if self.reserve_mark() {
                    shard.map.insert(key, until);
                    shard.set_retry_key(key, retry_key);
                    return Ok(Marked::First);
                }
            }
            // Full. Sweep every shard (this one's lock is released: the
            // sweep takes each in turn) and try once more.
            if attempt == 0 {
                self.sweep_marks();
            }
        }
        Err(StoreError::Full {
            capacity: self.capacity,
        })
    }

    fn revoke_jti(&self, jti: &str, until: i64, now: i64) -> Result<(), StoreError> {
        self.observe(now);
        if until <= now {
            return Ok(());
        }
        let key = compact(jti);
        let mut r = write(&self.revocations);
        if let Some(old) = r.jti.get_mut(&key) {
            *old = (*old).max(until);
            return Ok(());
        }
        r.reserve(self.capacity, self.horizon())?;
        r.jti.insert(key, until);
        Ok(())
    }

    fn revoke_sub(&self, sub: &str, revoked_at: i64, until: i64, now: i64) -> Result<(), StoreError> {
        self.observe(now);
        if until <= now {
            return Ok(());
        }
        let key = compact(sub);
        let mut r = write(&self.revocations);
        if let Some(old) = r.sub.get_mut(&key) {
            // Keep the later of each: a revocation is never narrowed.
            old.revoked_at = old.revoked_at.max(revoked_at);
            old.until = old.until.max(until);
            return Ok(());
        }
        r.reserve(self.capacity, self.horizon())?;
        r.sub.insert(key, SubRevocation { revoked_at, until });
        Ok(())
    }

    fn is_revoked(&self, jti: &str, sub: &str, iat: i64, now: i64) -> bool {
        self.observe(now);
        read(&self.revocations).covers(&compact(jti), &compact(sub), iat, now)
    }

    fn consume(&self, c: Consume<'_>, now: i64) -> Result<ConsumeOutcome, StoreError> {
        self.observe(now);
        // Held until the mark is placed: a revocation takes the write lock,
        // so it lands wholly before the check (Revoked, nothing marked) or
        // wholly after the mark, never in between.
        let revocations = read(&self.revocations);
        if revocations.covers(&compact(c.jti), &compact(c.sub), c.iat, now) {
            return Ok(ConsumeOutcome::Revoked);
        }
        if c.iat < self.epoch.load(Ordering::Acquire) {
            return Ok(ConsumeOutcome::StateLost);
        }
        let marked = self.mark(c.mark_key, c.retry_key, c.expires_at, now)?;
        drop(revocations);
        Ok(match marked {
            Marked::First => ConsumeOutcome::FirstUse,
            Marked::Retried => ConsumeOutcome::Retried,
            Marked::Already => ConsumeOutcome::Replayed,
        })
    }

    /// Ready unless the mark table is full of live marks: then every first
    /// use would be refused, and a load balancer should send traffic to
    /// another instance. What is live is judged by the latest `now` seen.
    fn ready(&self) -> Result<(), StoreError> {
        if self.mark_count.load(Ordering::Acquire) < self.capacity {
            return Ok(());
        }
        self.sweep_marks();
        if self.mark_count.load(Ordering::Acquire) < self.capacity {
            return Ok(());
        }
        Err(StoreError::Full {
            capacity: self.capacity,
        })
    }

    fn rate_hit(&self, key: &str, limit: u32, window_secs: u32, now: i64) -> Result<RateDecision, StoreError> {
        self.observe(now);
        let (start, end) = rate_window(window_secs, now);
        let key = compact(key);
        let mut rates = lock(&self.rates);
        if !rates.contains_key(&key) && rates.len() >= self.capacity {
            let horizon = self.horizon();
            rates.retain(|_, c| c.end > horizon);
            if rates.len() >= self.capacity {
                return Err(StoreError::Full {
                    capacity: self.capacity,
                });
            }
        }
        let counter = rates.entry(key).or_insert(RateCounter { start, end, count: 0 });
        if counter.start != start || counter.end != end {
            *counter = RateCounter { start, end, count: 0 };
        }
        counter.count = counter.count.saturating_add(1);
        Ok(rate_decision(u64::from(counter.count), limit, end, now))
    }

    fn refresh_insert(&self, hash: &str, record: &RefreshRecord, now: i64) -> Result<(), StoreError> {
        self.observe(now);
        if record.family_expires_at <= now {
            // Expired on arrival: presenting it will answer Unknown.
            return Ok(());
        }
        let mut r = lock(&self.refresh);
        if r.tokens.contains_key(hash) {
            return Err(StoreError::Unavailable("refresh token hash is already stored".into()));
        }
        r.reserve(self.capacity, self.horizon())?;
        let entry = TokenEntry {
            record: Arc::new(record.clone()),
            expires_at: record.expires_at.min(record.family_expires_at),
            spent: false,
        };
        r.tokens.insert(hash.to_owned(), entry);
        Ok(())
    }

    fn refresh_spend(&self, hash: &str, successor_hash: &str, now: i64) -> Result<SpendOutcome, StoreError> {
        self.observe(now);
        let mut r = lock(&self.refresh);
        let Some(entry) = r.tokens.get(hash) else {
            return Ok(SpendOutcome::Unknown);
        };
        let (record, expires_at, spent) = (Arc::clone(&entry.record), entry.expires_at, entry.spent);
        if r.revoked_families.contains_key(&record.family) {
            return Ok(SpendOutcome::Revoked);
        }
        if record.family_expires_at <= now {
            return Ok(SpendOutcome::Unknown);
        }
        if spent {
            r.revoked_families
                .insert(record.family.clone(), record.family_expires_at);
            return Ok(SpendOutcome::Reused);
        }
        if expires_at <= now {
            return Ok(SpendOutcome::Unknown);
        }
        if successor_hash == hash || r.tokens.contains_key(successor_hash) {
            return Err(StoreError::Unavailable(
                "refresh successor hash is already stored".into(),
            ));
        }
        r.reserve(self.capacity, self.horizon())?;
        // The sweep in `reserve` only removes families expired before the
        // latest `now`, which can be later than this caller's: look again.
        let Some(entry) = r.tokens.get_mut(hash) else {
            return Ok(SpendOutcome::Unknown);
        };
        entry.spent = true;
        let successor = TokenEntry {
            record: Arc::clone(&record),
            expires_at: now.saturating_add(record.ttl).min(record.family_expires_at),
            spent: false,
        };
        r.tokens.insert(successor_hash.to_owned(), successor);
        Ok(SpendOutcome::Spent(RefreshRecord {
            expires_at,
            ..(*record).clone()
        }))
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
        let live = !t.spent
            && t.expires_at > now
            && t.record.family_expires_at > now
            && !r.revoked_families.contains_key(&t.record.family);
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
