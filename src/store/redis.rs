//! The shared store: Redis, for more than one instance.
//!
//! It owns the Redis side of the [`Store`] contract: the key layout, the Lua
//! scripts that make check-and-set steps atomic, and the connection. Every
//! call is bounded by the configured timeout and every failure is
//! [`StoreError::Unavailable`]: it never waits without bound, never panics,
//! and never answers from a guess.
//!
//! # Keys
//!
//! Every key starts with `ts:<id>:`, `<id>` five characters that stand for
//! the namespace (usually the issuer; `ts:ns:<id>` holds its name, see
//! `layout.rs`), so several deployments can share one Redis:
//!
//! | key | type | holds | expires (PXAT) |
//! |---|---|---|---|
//! | `mark-epoch` | string | the first `iat` this namespace can consume (Unix seconds) | never |
//! | `<digest>` | string | a replay mark: `1`, or `r:<retry key>` when placed with one | the mark's `expires_at` |
//! | `revoked-jti:<jti>` | string | `"<revoked_at> <until>"` | `until` |
//! | `revoked-sub:<sub>` | string | `"<revoked_at> <until>"` | `until` |
//! | `rate:<key>:<window start>` | counter | hits | window end |
//! | `refresh:<hash>` | hash | `rec` (JSON), `fam`, `exp`, `fexp`, `ttl`, `spent` | `family_expires_at` |
//! | `family:<family>` | string | `1`: the family is revoked | `family_expires_at` |
//! | `opaque:<hash>` | string | an opaque access token's claims (JSON) | the token's `exp` + leeway |
//!
//! A mark's `<digest>` is 21 characters of a SHA-256 of the namespace and
//! the mark's key (a JWT's is `jti:<jti>`), so that every mark fits
//! Redis's smallest size class for it: 72 bytes of Redis memory (`MEMORY
//! USAGE`), 88 on a Redis 7.0 cluster, whose cluster mode adds its own
//! bookkeeping to every key (see "Marks" and "Memory" in `layout.rs`).
//!
//! Three more keys never expire: `ts:ns:<id>` (the namespace's name), and
//! the epochs of the two layouts before this one, `ts:<id>:epoch` and
//! `tokensmith:<namespace>:epoch`, held at 9999-12-31 (see "Changing the
//! layout").
//!
//! A replay mark is one `SET key 1 NX PXAT <ms>`: one round trip, atomic
//! across every instance. A consume (revocation check, epoch check, then
//! mark) is one `EVALSHA` of a script that reads both revocation keys and
//! the epoch in one `MGET` and sets the mark, so neither a revocation nor a
//! loss of state lands between the checks and the mark. Scripts are sent by
//! hash; after a Redis restart (`NOSCRIPT`) the client loads the script and
//! runs it again, under the same timeout. On one Redis the refresh spend
//! script reads the family key by a name built inside the script; on a
//! cluster that name is in the family's slot (see "Redis Cluster").
//!
//! Redis expires keys by its own clock.
//!
//! # Lost state
//!
//! A Redis that restarts without persistence, is flushed, or evicts keys
//! forgets marks, and trusting an empty Redis would accept every token
//! consumed before. So a namespace has an epoch key (`mark-epoch`), with
//! no expiry:
//!
//! - [`connect`](RedisStore::connect) writes it if it is missing (`SET NX`)
//!   with the epoch its caller gives (the second after its clock's now). A
//!   new namespace and one whose Redis lost everything while no instance
//!   ran look the same here, so the caller waits for that second before it
//!   issues: tokens from before the connect cannot be consumed, tokens from
//!   after it can.
//! - The consume script reads it with the revocations. Missing means the
//!   state was lost since some instance connected: the script writes a new
//!   epoch, `now + 1`, in the same step, and refuses the token. Every token
//!   with `iat < epoch` is refused ([`ConsumeOutcome::StateLost`], HTTP 401
//!   `replay_state_lost`); tokens issued from the epoch on are consumed
//!   normally. The check is in the script, not a call before it: a check
//!   that passed just before a restart would let the mark land in the
//!   emptied Redis. It adds no round trip: the `MGET` reads one key more.
//!
//! What the epoch cannot see: a Redis that restores an older snapshot (RDB
//! only, `appendonly no`) keeps the epoch and loses the marks written since;
//! keys evicted by a `volatile-*` policy are marks, never the epoch. At
//! connect the store reads `appendonly`, `save`, `maxmemory` and
//! `maxmemory-policy` (`CONFIG GET`, where allowed) and logs one warning
//! naming every way this Redis can lose marks (see `durability.rs`).
//! Run Redis with `appendonly yes` and `maxmemory-policy noeviction`.
//!
//! # Changing the layout
//!
//! A store whose mark names changed (this layout replaced `ts:<id>:m:<key>`,
//! which had replaced `tokensmith:<namespace>:…`) finds none of the old
//! marks: to it, a live deployment looks like a Redis that lost its state,
//! and the epoch makes that safe, provided the epoch's name changes with
//! the marks' (here `epoch` became `mark-epoch`). Connect finds no epoch
//! under the new name and records one (the second after its clock's now),
//! so every token issued before the switch, among them every token consumed
//! under the old names, is refused (`replay_state_lost`), never consumed a
//! second time. The same step sets the earlier layouts' epoch keys (on a
//! cluster, each bucket's, which are in the same slot) to 9999-12-31: an
//! instance of an earlier version still sharing this Redis during a rolling
//! upgrade then refuses every consume instead of marking under names the
//! new instances never read. The cost of an upgrade is that tokens issued
//! before it cannot be consumed. Revocations, refresh tokens, rate counters
//! and opaque tokens kept their names in this change, and so their state.
//!
//! The epoch does not cover [`mark_once`](Store::mark_once), which knows no
//! `iat`: a DPoP proof or a client assertion marked under the old names can
//! be presented once more to a new instance while its own window lasts (a
//! proof's `iat` window, an assertion's `exp` of at most five minutes ahead
//! plus leeway), and an older instance still running marks them where the
//! new ones do not look. To close that window, stop every older instance
//! and start the new ones once it has passed.
//!
//! To roll back to the previous version, stop every newer instance and
//! delete both epochs, the previous version's (`ts:<id>:epoch`, on a
//! cluster `ts:{*}:<id>:epoch`) and this one's (`ts:<id>:mark-epoch`,
//! `ts:{*}:<id>:mark-epoch`): the previous version then records a new epoch
//! of its own, and so will this one when it comes back, so that neither
//! consumes a token the other marked.
//!
//! # Redis Cluster
//!
//! [`connect_cluster`](RedisStore::connect_cluster) takes seed nodes (any
//! that answers gives the slot map). Keys then carry hash tags (see
//! `layout.rs`): a mark and its bucket's epoch share one slot; a refresh
//! family's tokens and its revocation share another, `{f:<family>}`.
//!
//! **Consume, in two steps.** A mark's slot depends on the mark key; the
//! revocations it must check are by `jti` and by `sub`, on other slots
//! (co-locating a `sub`'s revocation with every mark of that `sub` would
//! mean writing it to every bucket). So a consume on a cluster runs the
//! mark script (epoch check, then `SET NX`) on the mark's slot first, and
//! reads both revocations *after* the script has answered. The order keeps
//! the contract "a revocation that landed before the mark wins": such a
//! revocation was written before the mark, hence before the reads, which
//! see it (each read goes to the master of its slot); the answer is then
//! `Revoked`, whatever the script said, and a mark this call placed is
//! removed again (compare-and-delete on its value), so a revoked token is
//! not left marked. A revocation that lands after the reads was not there
//! when the token was accepted, exactly as on one Redis. Two concurrent
//! consumes of one token still give one `FirstUse`: the mark's `SET NX` is
//! the one atomic step. The price is a second round trip (the two reads
//! run at once).
//!
//! **Refresh tokens.** `refresh_spend` is given a token's hash, not its
//! family, so each hash has an index key (`refresh-of:<hash>` → family id,
//! written once with `SET NX`, never changed, kept until the family
//! expires) on the hash's own slot. A spend reads the index, writes the
//! successor's index (`SET NX`: a hash is never stored twice), then runs the
//! spend script on the family's slot, which is the same script as on one
//! Redis. An index whose record was never written (a failure between the
//! steps) names a family without that token: `Unknown`, never a spend.
//!
//! **Lost state, per shard.** Each master can lose its data alone, so the
//! epoch that vouches for a mark lives and dies with it: every bucket has
//! its own epoch key in the bucket's slot, written at connect (`SET NX`,
//! all 1,024 at once). A master restarted empty loses its buckets' epochs
//! with their marks; the consume script finds its bucket's epoch missing,
//! writes `now + 1` and refuses the token, so only tokens hashed to that
//! master's buckets are refused, and only those issued before the loss.
//! [`epoch`](RedisStore::epoch) is the latest epoch of any bucket.
//!
//! **Failover.** A replica promoted after its master died holds the epochs
//! (replicated long before) but may lack the newest marks: replication is
//! asynchronous. With `wait_replicas = N` ([`with_wait_replicas`]) a
//! single-use decision (a consume or `mark_once` that placed a mark, a
//! refresh spend, a revocation) is sent in one pipeline with `WAIT N
//! <timeout/2>` on the same connection to the same master, and is
//! reported only once `WAIT` confirms N replicas have it; fewer is
//! [`StoreError::Unavailable`] (HTTP 503). The mark stays on the master:
//! a retry answers `Replayed` (or `Retried` with the same retry key).
//! A call that fails mid-way (a node killed) is an error: its outcome is
//! unknown, and the client follows `MOVED`/`ASK` (up to three times, within
//! the timeout) since a redirection means the command did not run.
//!
//! [`with_wait_replicas`]: RedisStore::with_wait_replicas
//!
//! # Connection
//!
//! Calls go through a [`ConnectionManager`] with no retry loop of its own,
//! so a call while Redis is down fails at once instead of waiting on a
//! backoff. The manager alone would reconnect only when a call fails, one
//! attempt per failed call: after an outage the first call would still meet
//! the last failed attempt and fail. So the store heals itself: the first
//! call that fails for want of a connection (refused, reset, timed out, a
//! paused Redis or a dropped NAT entry that never answers) starts one
//! background task, which builds a fresh manager and checks it with `PING`
//! every 100 ms, backing off to every 250 ms, each attempt bounded by the
//! timeout, until one answers; it then swaps it in and ends. Once Redis is
//! back, the next call uses a connection that has just answered. Only one
//! such task runs per store, it stops when the store is dropped, and calls
//! never wait for it: they fail (bounded by the timeout) until the swap.
//! A cluster connection reconnects to its nodes and refreshes its slot
//! map by itself; calls fail (bounded) meanwhile.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ScriptInvocation, Value};

mod cluster;
mod conn;
mod durability;
mod layout;
mod ops;
mod reply;
mod scripts;
mod stats;
mod tls;

pub use tls::{RedisTls, TlsFileError};

use conn::{is_connection_error, start_reconnecting, Conn};
pub use layout::namespace_id;
use layout::Layout;
use reply::{bad_reply, evalsha, in_runtime, outcome_of, pxat, revocation_in_force, texts};
use scripts::{CONSUME_LUA, CONSUME_MARK_LUA, RATE_LUA, REFRESH_INSERT_LUA, REFRESH_SPEND_LUA, REVOKE_LUA, UNMARK_LUA};

use super::{
    rate_decision, rate_window, Consume, ConsumeOutcome, RateDecision, RefreshRecord, SpendOutcome, Store, StoreError,
};

/// 9999-12-31T23:59:59Z: later times are clamped, so a bogus `until` cannot
/// overflow into a PXAT that Redis rejects.
const MAX_UNIX_SECS: i64 = 253_402_300_799;

/// KEYS: the family key. ARGV: PXAT ms. OAuth 2.0 (issue 11).
const REVOKE_FAMILY_LUA: &str = r#"
redis.call('SET', KEYS[1], '1', 'NX', 'PXAT', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[1], 'GT')
return 1
"#;

/// The Redis [`Store`].
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    keys: Layout,
    /// The epoch as last seen (at connect, then in each consume's answer);
    /// on a cluster, the latest of the buckets' epochs seen.
    epoch: AtomicI64,
    namespace: String,
    timeout: Duration,
    /// Replicas that must have a single-use decision before it is reported.
    wait_replicas: u32,
    revoke: Script,
    rate: Script,
    refresh_insert: Script,
    refresh_spend: Script,
    consume: Script,
    consume_mark: Script,
    unmark: Script,
    stats: stats::Stats,
}

impl RedisStore {
    /// Connects to `url`, prefixing every key with `ts:<id>:` (`<id>` stands
    /// for the namespace: [`namespace_id`]),
    /// and records `epoch` as the namespace's epoch unless it has one (see
    /// the module docs: pass the second after your clock's now, and issue
    /// nothing before the clock reaches [`epoch`](RedisStore::epoch)). Logs
    /// one warning if Redis's configuration lets it lose marks. Every call,
    /// this first connection included, fails with
    /// [`StoreError::Unavailable`] if Redis has not answered within
    /// `timeout`. `rediss://` connects with TLS (rustls, the crate's crypto
    /// provider, the system's roots). Must be called inside a Tokio runtime.
    pub async fn connect(url: &str, namespace: &str, timeout: Duration, epoch: i64) -> Result<RedisStore, StoreError> {
        RedisStore::connect_with_tls(url, &RedisTls::default(), namespace, timeout, epoch).await
    }

    /// As [`connect`](RedisStore::connect), with `tls` deciding how a
    /// `rediss://` server is verified (its CA) and whether a client
    /// certificate is sent. A custom `tls` with a URL that is not
    /// `rediss://` is [`StoreError::Unavailable`]: never plain text when
    /// TLS was asked for.
    pub async fn connect_with_tls(
        url: &str,
        tls: &RedisTls,
        namespace: &str,
        timeout: Duration,
        epoch: i64,
    ) -> Result<RedisStore, StoreError> {
        in_runtime()?;
        let conn = Conn::single(url, tls, timeout).await?;
        RedisStore::start(conn, namespace, timeout, epoch).await
    }

    /// Connects to the Redis Cluster that `seeds` (`redis://` or
    /// `rediss://` URLs of some of its nodes) belong to; otherwise as
    /// [`connect`](RedisStore::connect). Keys are hash-tagged (see the
    /// module docs) and every bucket gets its own epoch: `epoch` is
    /// recorded in each bucket that has none.
    pub async fn connect_cluster(
        seeds: &[String],
        namespace: &str,
        timeout: Duration,
        epoch: i64,
    ) -> Result<RedisStore, StoreError> {
        RedisStore::connect_cluster_with_tls(seeds, &RedisTls::default(), namespace, timeout, epoch).await
    }

    /// As [`connect_cluster`](RedisStore::connect_cluster), with `tls` for
    /// every node (see [`connect_with_tls`](RedisStore::connect_with_tls)):
    /// the seeds must all be `rediss://` when it is custom.
    pub async fn connect_cluster_with_tls(
        seeds: &[String],
        tls: &RedisTls,
        namespace: &str,
        timeout: Duration,
        epoch: i64,
    ) -> Result<RedisStore, StoreError> {
        in_runtime()?;
        let conn = Conn::cluster(seeds, tls, timeout).await?;
        RedisStore::start(conn, namespace, timeout, epoch).await
    }

    async fn start(conn: Conn, namespace: &str, timeout: Duration, epoch: i64) -> Result<RedisStore, StoreError> {
        let keys = Layout::new(namespace, conn.is_cluster());
        let first = conn.handle().conn;
        durability::register_namespace(&first, &keys, namespace, timeout).await?;
        let epoch = if keys.is_cluster() {
            durability::init_bucket_epochs(&first, &keys, epoch, timeout).await?
        } else {
            durability::init_epoch(&first, &keys, epoch, timeout).await?
        };
        durability::warn_if_marks_can_be_lost(&first, namespace, timeout).await;
        let inner = Inner {
            conn,
            keys,
            epoch: AtomicI64::new(epoch),
            namespace: namespace.to_owned(),
            timeout,
            wait_replicas: 0,
            revoke: Script::new(REVOKE_LUA),
            rate: Script::new(RATE_LUA),
            refresh_insert: Script::new(REFRESH_INSERT_LUA),
            refresh_spend: Script::new(REFRESH_SPEND_LUA),
            consume: Script::new(CONSUME_LUA),
            consume_mark: Script::new(CONSUME_MARK_LUA),
            unmark: Script::new(UNMARK_LUA),
            stats: stats::Stats::default(),
        };
        Ok(RedisStore { inner: Arc::new(inner) })
    }

    /// The same store, reporting a single-use decision (a placed mark, a
    /// refresh spend, a revocation) only once `WAIT` confirms that `n`
    /// replicas of its master have it; fewer within half the timeout is
    /// [`StoreError::Unavailable`]. 0 (the default) waits for none.
    pub fn with_wait_replicas(mut self, n: u32) -> RedisStore {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.wait_replicas = n,
            // Unreachable: the store was just built and is not shared yet.
            None => tracing::error!("redis: wait_replicas set on a shared store; ignored"),
        }
        self
    }

    /// The namespace every key of this store is under.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.keys.is_cluster()
    }

    /// The namespace's epoch as last seen: tokens with an earlier `iat`
    /// cannot be consumed.
    pub fn epoch(&self) -> i64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    fn key(&self, kind: &str, id: &str) -> String {
        self.inner.keys.key(kind, id)
    }

    /// Appends this store's call latency and errors, by operation, as
    /// Prometheus text (`tokensmith_store_duration_seconds`,
    /// `tokensmith_store_errors_total{kind=timeout|connection|redirect|server|replicas}`).
    pub fn render_metrics(&self, out: &mut String) {
        self.inner.stats.render(out);
    }

    /// Whether the store is reconnecting: a call failed for want of a
    /// connection and no fresh one has answered since. Calls fail meanwhile.
    pub fn is_reconnecting(&self) -> bool {
        self.inner.conn.is_reconnecting()
    }

    async fn query<T: FromRedisValue>(&self, what: &'static str, cmd: Cmd) -> Result<T, StoreError> {
        let h = self.inner.conn.handle();
        let mut conn = h.conn;
        self.bounded(what, h.used.as_ref(), async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Runs a script by hash; on `NOSCRIPT` (Redis restarted or flushed its
    /// scripts) `invoke_async` loads it and runs it again, all under the
    /// one timeout.
    async fn eval<T: FromRedisValue>(&self, what: &'static str, script: ScriptInvocation<'_>) -> Result<T, StoreError> {
        let h = self.inner.conn.handle();
        let mut conn = h.conn;
        self.bounded(
            what,
            h.used.as_ref(),
            async move { script.invoke_async(&mut conn).await },
        )
        .await
    }

    /// Runs a single-use decision: `cmd` alone when no replica is waited
    /// for; else `cmd` and `WAIT n` in one pipeline, which goes to the node
    /// of `cmd`'s key on one connection, so `WAIT` counts the replicas that
    /// have this very write. Answers `cmd`'s reply and the replicas that
    /// acknowledged (`u32::MAX` when none was asked for). `script` is
    /// loaded and the pipeline sent again on `NOSCRIPT`.
    async fn decide(
        &self,
        what: &'static str,
        cmd: Cmd,
        script: Option<&Script>,
        wait: u32,
    ) -> Result<(Value, u32), StoreError> {
        if wait == 0 {
            let value = match script {
                Some(s) => self.eval_cmd(what, cmd, s).await?,
                None => self.query(what, cmd).await?,
            };
            return Ok((value, u32::MAX));
        }
        let wait_ms = (self.inner.timeout / 2).as_millis().max(1);
        let mut pipe = ::redis::pipe();
        pipe.add_command(cmd)
            .cmd("WAIT")
            .arg(wait)
            .arg(u64::try_from(wait_ms).unwrap_or(u64::MAX));
        let h = self.inner.conn.handle();
        let mut conn = h.conn;
        let call = async move {
            let first: RedisResult<(Value, i64)> = pipe.query_async(&mut conn).await;
            match (first, script) {
                (Err(e), Some(s)) if e.kind() == ErrorKind::NoScriptError => {
                    s.prepare_invoke().load_async(&mut conn).await?;
                    pipe.query_async(&mut conn).await
                }
                (other, _) => other,
            }
        };
        let (value, acked) = self.bounded(what, h.used.as_ref(), call).await?;
        Ok((value, u32::try_from(acked).unwrap_or(0)))
    }

    /// A script invocation already built as an `EVALSHA` command, with the
    /// `NOSCRIPT` fallback of [`eval`](RedisStore::eval).
    async fn eval_cmd(&self, what: &'static str, cmd: Cmd, script: &Script) -> Result<Value, StoreError> {
        let h = self.inner.conn.handle();
        let mut conn = h.conn;
        let call = async move {
            match cmd.query_async::<Value>(&mut conn).await {
                Err(e) if e.kind() == ErrorKind::NoScriptError => {
                    script.prepare_invoke().load_async(&mut conn).await?;
                    cmd.query_async(&mut conn).await
                }
                other => other,
            }
        };
        self.bounded(what, h.used.as_ref(), call).await
    }

    /// Fails a decision that `WAIT` did not see reach enough replicas.
    fn replicated(&self, what: &'static str, acked: u32) -> Result<(), StoreError> {
        let wanted = self.inner.wait_replicas;
        if acked >= wanted {
            return Ok(());
        }
        self.inner.stats.replicas_short(what);
        tracing::warn!(
            namespace = %self.inner.namespace,
            acked,
            wanted,
            "redis: a single-use decision reached too few replicas in time; refused (a failover could forget it)"
        );
        Err(StoreError::Unavailable(format!(
            "redis {what}: written on the master but confirmed by {acked} of {wanted} replicas within {:?}; \
             a failover now could forget it",
            self.inner.timeout / 2
        )))
    }

    /// Runs one Redis exchange on `used` under the timeout; every failure
    /// becomes `Unavailable` with its cause, and a failure of the connection
    /// itself starts the reconnection task.
    async fn bounded<T>(
        &self,
        what: &'static str,
        used: Option<&Arc<ConnectionManager>>,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        in_runtime()?;
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.inner.timeout, call).await;
        let kind = match &result {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(stats::kind_of(e)),
            Err(_) => Some("timeout"),
        };
        self.inner.stats.observe(what, started.elapsed(), kind);
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if is_connection_error(&e) {
                    start_reconnecting(&self.inner, used);
                }
                tracing::debug!(namespace = %self.inner.namespace, op = what, kind, error = %e, "redis: call failed");
                Err(StoreError::Unavailable(format!("redis {what}: {e}")))
            }
            Err(_) => {
                // No answer: the connection may be one that will never
                // answer again (a paused Redis, a dropped NAT entry), which
                // the manager cannot tell from a slow one.
                start_reconnecting(&self.inner, used);
                Err(StoreError::Unavailable(format!(
                    "redis {what}: no answer within {:?}",
                    self.inner.timeout
                )))
            }
        }
    }

    async fn revoke(&self, key: String, revoked_at: i64, until: i64, now: i64) -> Result<(), StoreError> {
        if until <= now {
            // Every token it could cover has expired: nothing to keep.
            return Ok(());
        }
        let mut cmd = evalsha(&self.inner.revoke, &[&key]);
        cmd.arg(revoked_at).arg(until.min(MAX_UNIX_SECS));
        let (_, acked) = self
            .decide("revoke", cmd, Some(&self.inner.revoke), self.inner.wait_replicas)
            .await?;
        self.replicated("revoke", acked)
    }

    /// The revocation entries of `jti` and `sub`: one `MGET` on one Redis,
    /// two `GET`s at once on a cluster (their slots differ).
    async fn revocations(&self, jti: &str, sub: &str) -> Result<(Option<String>, Option<String>), StoreError> {
        let (jti_key, sub_key) = (self.key("revoked-jti", jti), self.key("revoked-sub", sub));
        if !self.is_cluster() {
            let mut cmd = ::redis::cmd("MGET");
            cmd.arg(jti_key).arg(sub_key);
            return self.query("is_revoked", cmd).await;
        }
        let (mut by_jti, mut by_sub) = (::redis::cmd("GET"), ::redis::cmd("GET"));
        by_jti.arg(jti_key);
        by_sub.arg(sub_key);
        let (by_jti, by_sub) = tokio::join!(self.query("is_revoked", by_jti), self.query("is_revoked", by_sub));
        Ok((by_jti?, by_sub?))
    }

    /// Whether the entries say revoked, for a token issued at `iat`.
    fn revoked_by(entries: &(Option<String>, Option<String>), iat: i64, now: i64) -> Result<bool, StoreError> {
        if let Some(entry) = &entries.0 {
            if revocation_in_force("is_revoked", entry, now)?.is_some() {
                return Ok(true);
            }
        }
        match &entries.1 {
            Some(entry) => Ok(revocation_in_force("is_revoked", entry, now)?.is_some_and(|at| iat <= at)),
            None => Ok(false),
        }
    }

    fn saw_epoch(&self, epoch: i64, reset: i64, bucket_key: &str) {
        self.inner.epoch.fetch_max(epoch, Ordering::AcqRel);
        if reset == 1 {
            tracing::error!(
                namespace = %self.inner.namespace,
                epoch,
                key = bucket_key,
                "redis: replay state lost (the epoch key is gone: Redis restarted without persistence, \
                 was flushed, or evicted it); tokens issued before the new epoch cannot be consumed"
            );
        }
    }
}

impl fmt::Debug for RedisStore {
    // No URL: it may carry a password. The database number is what tells
    // two namespaces on one server apart when their key ids collide.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.inner.namespace)
            .field("cluster", &self.is_cluster())
            .field("db", &self.inner.conn.db())
            .field("timeout", &self.inner.timeout)
            .field("wait_replicas", &self.inner.wait_replicas)
            .finish_non_exhaustive()
    }
}
