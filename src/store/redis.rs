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
//! Every key starts with `tokensmith:<namespace>:` (the namespace is usually
//! the issuer), so several deployments can share one Redis:
//!
//! | key | type | holds | expires (PXAT) |
//! |---|---|---|---|
//! | `epoch` | string | the first `iat` this namespace can consume (Unix seconds) | never |
//! | `mark:<key>` | string | `1`, or `r:<retry key>` when placed with one | the mark's `expires_at` |
//! | `revoked-jti:<jti>` | string | `"<revoked_at> <until>"` | `until` |
//! | `revoked-sub:<sub>` | string | `"<revoked_at> <until>"` | `until` |
//! | `rate:<key>:<window start>` | counter | hits | window end |
//! | `refresh:<hash>` | hash | `rec` (JSON), `fam`, `exp`, `fexp`, `ttl`, `spent` | `family_expires_at` |
//! | `family:<family>` | string | `1`: the family is revoked | `family_expires_at` |
//! | `opaque:<hash>` | string | an opaque access token's claims (JSON) | the token's `exp` + leeway |
//!
//! A replay mark is one `SET key 1 NX PXAT <ms>`: one round trip, atomic
//! across every instance. A consume (revocation check, epoch check, then
//! mark) is one `EVALSHA` of a script that reads both revocation keys and
//! the epoch in one `MGET` and sets the mark, so neither a revocation nor a
//! loss of state lands between the checks and the mark. Scripts are sent by
//! hash; after a Redis restart (`NOSCRIPT`) the client loads the script and
//! runs it again, under the same timeout. The refresh scripts read the
//! family key by a name built inside the script, so this store needs a
//! single Redis (or a primary with replicas), not Redis Cluster.
//!
//! Redis expires keys by its own clock.
//!
//! # Lost state
//!
//! A Redis that restarts without persistence, is flushed, or evicts keys
//! forgets marks, and trusting an empty Redis would accept every token
//! consumed before. So a namespace has an `epoch` key, with no expiry:
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
//! **Per shard, for Redis Cluster.** Each master of a cluster can lose its
//! data alone, so the epoch that vouches for a mark must live and die with
//! it: on the same master and, for the script to touch one slot, in the
//! same slot. The layout for a cluster is therefore: every key a consume
//! reads or writes (the mark, the revocations it checks, and the epoch)
//! carries one hash tag, `{<namespace>:<bucket>}`, where the bucket is a
//! function of the mark key (say 1,024 buckets, for an even spread over the
//! slots), and each bucket has its own epoch key
//! `tokensmith:{<namespace>:<bucket>}:epoch`, written at connect for every
//! bucket (`SET NX`, pipelined per node). The script stays as it is (its
//! KEYS[4] is the bucket's epoch); a master restarted empty loses its
//! buckets' epochs with their marks, and only tokens hashed to those buckets
//! are refused. A replica promoted after a failover holds the epoch
//! (replicated long ago) but may lack the newest marks: the epoch does not
//! see that, `WAIT` for replicas before answering does.
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

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Cmd, FromRedisValue, RedisError, RedisResult, Script, ScriptInvocation, Value};
use arc_swap::ArcSwap;

mod durability;
mod scripts;

use scripts::{CONSUME_LUA, RATE_LUA, REFRESH_INSERT_LUA, REFRESH_SPEND_LUA, REVOKE_LUA};

use super::{
    rate_decision, rate_window, Consume, ConsumeOutcome, RateDecision, RefreshRecord, SpendOutcome, Store, StoreError,
};

/// 9999-12-31T23:59:59Z: later times are clamped, so a bogus `until` cannot
/// overflow into a PXAT that Redis rejects.
const MAX_UNIX_SECS: i64 = 253_402_300_799;

/// The first and the longest pause between reconnection attempts while
/// Redis is unreachable: short, so a Redis that is back is used within a
/// quarter second; not shorter, so an outage costs each instance at most a
/// few connection attempts per second.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_millis(250);

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
    /// Kept to build a replacement connection manager.
    client: Client,
    config: ConnectionManagerConfig,
    /// Swapped whole when a fresh connection has answered; a call clones
    /// the manager (an `Arc`) without locking.
    conn: ArcSwap<ConnectionManager>,
    /// True from the first connection failure until a fresh connection is
    /// swapped in: one reconnection task at a time, however many calls fail.
    reconnecting: AtomicBool,
    /// `tokensmith:<namespace>:`
    prefix: String,
    /// `tokensmith:<namespace>:epoch`
    epoch_key: String,
    /// The epoch as last seen (at connect, then in each consume's answer).
    epoch: AtomicI64,
    namespace: String,
    timeout: Duration,
    revoke: Script,
    rate: Script,
    refresh_insert: Script,
    refresh_spend: Script,
    consume: Script,
}

impl RedisStore {
    /// Connects to `url`, prefixing every key with `tokensmith:<namespace>:`,
    /// and records `epoch` as the namespace's epoch unless it has one (see
    /// the module docs: pass the second after your clock's now, and issue
    /// nothing before the clock reaches [`epoch`](RedisStore::epoch)). Logs
    /// one warning if Redis's configuration lets it lose marks. Every call,
    /// this first connection included, fails with
    /// [`StoreError::Unavailable`] if Redis has not answered within
    /// `timeout`. Must be called inside a Tokio runtime.
    pub async fn connect(url: &str, namespace: &str, timeout: Duration, epoch: i64) -> Result<RedisStore, StoreError> {
        in_runtime()?;
        let client =
            Client::open(url).map_err(|e| StoreError::Unavailable(format!("redis: invalid redis_url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            // No retry loop inside the manager: a call during an outage
            // fails at once instead of waiting on a backoff that outlasts
            // Redis's return. Reconnecting is the store's own task.
            .set_number_of_retries(0);
        let conn = match tokio::time::timeout(
            timeout,
            ConnectionManager::new_with_config(client.clone(), config.clone()),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(StoreError::Unavailable(format!("redis connect: {e}"))),
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "redis connect: no answer within {timeout:?}"
                )))
            }
        };
        let prefix = format!("tokensmith:{namespace}:");
        let epoch_key = format!("{prefix}epoch");
        let epoch = durability::init_epoch(&conn, &epoch_key, epoch, timeout).await?;
        durability::warn_if_marks_can_be_lost(&conn, namespace, timeout).await;
        let inner = Inner {
            client,
            config,
            conn: ArcSwap::from_pointee(conn),
            reconnecting: AtomicBool::new(false),
            epoch_key,
            epoch: AtomicI64::new(epoch),
            prefix,
            namespace: namespace.to_owned(),
            timeout,
            revoke: Script::new(REVOKE_LUA),
            rate: Script::new(RATE_LUA),
            refresh_insert: Script::new(REFRESH_INSERT_LUA),
            refresh_spend: Script::new(REFRESH_SPEND_LUA),
            consume: Script::new(CONSUME_LUA),
        };
        Ok(RedisStore { inner: Arc::new(inner) })
    }

    /// The namespace every key of this store is under.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The namespace's epoch as last seen: tokens with an earlier `iat`
    /// cannot be consumed.
    pub fn epoch(&self) -> i64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.inner.prefix)
    }

    /// Whether the store is reconnecting: a call failed for want of a
    /// connection and no fresh one has answered since. Calls fail meanwhile.
    pub fn is_reconnecting(&self) -> bool {
        self.inner.reconnecting.load(Ordering::Acquire)
    }

    async fn query<T: FromRedisValue>(&self, what: &'static str, cmd: Cmd) -> Result<T, StoreError> {
        let used = self.inner.conn.load_full();
        let mut conn = ConnectionManager::clone(&used);
        self.bounded(what, &used, async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Runs a script by hash; on `NOSCRIPT` (Redis restarted or flushed its
    /// scripts) `invoke_async` loads it and runs it again, all under the
    /// one timeout.
    async fn eval<T: FromRedisValue>(&self, what: &'static str, script: ScriptInvocation<'_>) -> Result<T, StoreError> {
        let used = self.inner.conn.load_full();
        let mut conn = ConnectionManager::clone(&used);
        self.bounded(what, &used, async move { script.invoke_async(&mut conn).await })
            .await
    }

    /// Runs one Redis exchange on `used` under the timeout; every failure
    /// becomes `Unavailable` with its cause, and a failure of the connection
    /// itself starts the reconnection task.
    async fn bounded<T>(
        &self,
        what: &'static str,
        used: &Arc<ConnectionManager>,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        in_runtime()?;
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if is_connection_error(&e) {
                    start_reconnecting(&self.inner, used);
                }
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
        let mut script = self.inner.revoke.prepare_invoke();
        script.key(key).arg(revoked_at).arg(until.min(MAX_UNIX_SECS));
        self.eval::<Value>("revoke", script).await.map(|_| ())
    }
}

impl fmt::Debug for RedisStore {
    // No URL: it may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.inner.namespace)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// Errors that say the connection, not the command, failed: refused,
/// reset, closed, timed out, or a reply stream that no longer parses.
/// Server error replies (a script error, `NOSCRIPT`, a wrong type) do not
/// count: the connection is fine.
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

/// Starts the reconnection task unless one runs. Only for a failure on the
/// connection still installed: a call that began before a fresh connection
/// was swapped in says nothing about the fresh one.
fn start_reconnecting(inner: &Arc<Inner>, failed: &Arc<ConnectionManager>) {
    if !Arc::ptr_eq(&inner.conn.load(), failed) {
        return;
    }
    if inner.reconnecting.swap(true, Ordering::AcqRel) {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(reconnect(Arc::downgrade(inner)));
        }
        // Unreachable in practice (calls check for a runtime first); leave
        // the flag clear so a later call can start the task.
        Err(_) => inner.reconnecting.store(false, Ordering::Release),
    }
}

/// Tries a fresh connection until one answers `PING`, then installs it.
/// Holds the store only during an attempt, so it ends once the store is
/// dropped.
async fn reconnect(store: Weak<Inner>) {
    let mut pause = RECONNECT_FIRST;
    let mut attempts: u32 = 0;
    loop {
        let Some(inner) = store.upgrade() else {
            return;
        };
        attempts = attempts.saturating_add(1);
        match fresh_connection(&inner).await {
            Ok(conn) => {
                inner.conn.store(Arc::new(conn));
                inner.reconnecting.store(false, Ordering::Release);
                tracing::info!(namespace = %inner.namespace, attempts, "redis: reconnected");
                return;
            }
            // One warning per outage; the retries are routine.
            Err(why) if attempts == 1 => {
                tracing::warn!(namespace = %inner.namespace, error = %why, "redis: unreachable; reconnecting in the background")
            }
            Err(why) => {
                tracing::debug!(namespace = %inner.namespace, attempts, error = %why, "redis: still unreachable")
            }
        }
        drop(inner);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}

/// A new manager whose connection has answered `PING`, within one timeout:
/// connecting alone succeeds against a paused Redis (the kernel accepts).
async fn fresh_connection(inner: &Inner) -> Result<ConnectionManager, String> {
    let attempt = async {
        let mut conn = ConnectionManager::new_with_config(inner.client.clone(), inner.config.clone()).await?;
        let pong: String = ::redis::cmd("PING").query_async(&mut conn).await?;
        Ok::<_, RedisError>((conn, pong))
    };
    match tokio::time::timeout(inner.timeout, attempt).await {
        Ok(Ok((conn, pong))) if pong == "PONG" => Ok(conn),
        Ok(Ok((_, pong))) => Err(format!("unexpected PING reply {pong:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {:?}", inner.timeout)),
    }
}

/// Tokio timers and the connection manager need a runtime; without one,
/// answer an error instead of panicking.
fn in_runtime() -> Result<(), StoreError> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!(
            "redis: called outside a Tokio runtime: {e}"
        ))),
    }
}

/// Unix seconds → the milliseconds `PXAT`/`PEXPIREAT` take.
fn pxat(secs: i64) -> i64 {
    secs.clamp(1, MAX_UNIX_SECS) * 1000
}

fn bad_reply(what: &str, reply: impl fmt::Debug) -> StoreError {
    StoreError::Unavailable(format!("redis {what}: unexpected reply {reply:?}"))
}

/// The `revoked_at` of a revocation entry (`"<revoked_at> <until>"`), if
/// it is still in force at `now`.
fn revocation_in_force(what: &str, entry: &str, now: i64) -> Result<Option<i64>, StoreError> {
    let mut parts = entry.split(' ').map(str::parse::<i64>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(revoked_at)), Some(Ok(until)), None) => Ok((until > now).then_some(revoked_at)),
        _ => Err(bad_reply(what, entry)),
    }
}

impl Store for RedisStore {
    async fn mark_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key("mark", key))
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(pxat(expires_at.max(now.saturating_add(1))));
        match self.query::<Value>("mark_once", cmd).await? {
            Value::Okay => Ok(true),
            Value::Nil => Ok(false),
            other => Err(bad_reply("mark_once", other)),
        }
    }

    async fn revoke_jti(&self, jti: &str, until: i64, now: i64) -> Result<(), StoreError> {
        self.revoke(self.key("revoked-jti", jti), now, until, now).await
    }

    async fn revoke_sub(&self, sub: &str, revoked_at: i64, until: i64, now: i64) -> Result<(), StoreError> {
        self.revoke(self.key("revoked-sub", sub), revoked_at, until, now).await
    }

    async fn is_revoked(&self, jti: &str, sub: &str, iat: i64, now: i64) -> Result<bool, StoreError> {
        let mut cmd = ::redis::cmd("MGET");
        cmd.arg(self.key("revoked-jti", jti)).arg(self.key("revoked-sub", sub));
        let (by_jti, by_sub): (Option<String>, Option<String>) = self.query("is_revoked", cmd).await?;
        if let Some(entry) = by_jti {
            if revocation_in_force("is_revoked", &entry, now)?.is_some() {
                return Ok(true);
            }
        }
        match by_sub {
            Some(entry) => Ok(revocation_in_force("is_revoked", &entry, now)?.is_some_and(|at| iat <= at)),
            None => Ok(false),
        }
    }

    async fn consume(&self, c: Consume<'_>, now: i64) -> Result<ConsumeOutcome, StoreError> {
        let mark = match c.retry_key {
            // Prefixed, so no retry key can equal the plain mark `1`.
            Some(retry_key) => format!("r:{retry_key}"),
            None => "1".to_owned(),
        };
        let mut script = self.inner.consume.prepare_invoke();
        script
            .key(self.key("revoked-jti", c.jti))
            .key(self.key("revoked-sub", c.sub))
            .key(self.key("mark", c.mark_key))
            .key(&self.inner.epoch_key)
            .arg(now)
            .arg(c.iat)
            .arg(pxat(c.expires_at.max(now.saturating_add(1))))
            .arg(mark);
        let (outcome, reset, epoch): (String, i64, i64) = self.eval("consume", script).await?;
        self.inner.epoch.store(epoch, Ordering::Release);
        if reset == 1 {
            tracing::error!(
                namespace = %self.inner.namespace,
                epoch,
                "redis: replay state lost (the epoch key is gone: Redis restarted without persistence, \
                 was flushed, or evicted it); tokens issued before the new epoch cannot be consumed"
            );
        }
        match outcome.as_str() {
            "first" => Ok(ConsumeOutcome::FirstUse),
            "retried" => Ok(ConsumeOutcome::Retried),
            "replayed" => Ok(ConsumeOutcome::Replayed),
            "revoked" => Ok(ConsumeOutcome::Revoked),
            "lost" => Ok(ConsumeOutcome::StateLost),
            _ => Err(bad_reply("consume", outcome)),
        }
    }

    async fn rate_hit(&self, key: &str, limit: u32, window_secs: u32, now: i64) -> Result<RateDecision, StoreError> {
        let (start, end) = rate_window(window_secs, now);
        let mut script = self.inner.rate.prepare_invoke();
        script.key(self.key("rate", &format!("{key}:{start}"))).arg(pxat(end));
        let count: i64 = self.eval("rate_hit", script).await?;
        let count = u64::try_from(count).map_err(|_| bad_reply("rate_hit", count))?;
        Ok(rate_decision(count, limit, end, now))
    }

    async fn refresh_insert(&self, hash: &str, record: &RefreshRecord, now: i64) -> Result<(), StoreError> {
        if record.family_expires_at <= now {
            // Expired on arrival: presenting it will answer Unknown.
            return Ok(());
        }
        let json = serde_json::to_string(record)
            .map_err(|e| StoreError::Unavailable(format!("redis refresh_insert: cannot encode the record: {e}")))?;
        let family_expires_at = record.family_expires_at.min(MAX_UNIX_SECS);
        let mut script = self.inner.refresh_insert.prepare_invoke();
        script
            .key(self.key("refresh", hash))
            .arg(json)
            .arg(&record.family)
            .arg(record.expires_at.min(family_expires_at))
            .arg(family_expires_at)
            .arg(record.ttl)
            .arg(pxat(family_expires_at));
        self.eval::<Value>("refresh_insert", script).await.map(|_| ())
    }

    async fn refresh_spend(&self, hash: &str, successor_hash: &str, now: i64) -> Result<SpendOutcome, StoreError> {
        let mut script = self.inner.refresh_spend.prepare_invoke();
        script
            .key(self.key("refresh", hash))
            .key(self.key("refresh", successor_hash))
            .arg(now)
            .arg(self.key("family", ""));
        let reply: Vec<String> = self.eval("refresh_spend", script).await?;
        match reply.as_slice() {
            [outcome] if outcome == "unknown" => Ok(SpendOutcome::Unknown),
            [outcome] if outcome == "revoked" => Ok(SpendOutcome::Revoked),
            [outcome] if outcome == "reused" => Ok(SpendOutcome::Reused),
            [outcome, json, expires_at] if outcome == "spent" => {
                let mut record: RefreshRecord = serde_json::from_str(json).map_err(|e| {
                    StoreError::Unavailable(format!("redis refresh_spend: unreadable refresh record: {e}"))
                })?;
                record.expires_at = expires_at.parse().map_err(|_| bad_reply("refresh_spend", expires_at))?;
                Ok(SpendOutcome::Spent(record))
            }
            _ => Err(bad_reply("refresh_spend", reply)),
        }
    }

    async fn refresh_peek(&self, hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
        let mut cmd = ::redis::cmd("HMGET");
        cmd.arg(self.key("refresh", hash)).arg("rec").arg("exp");
        let (json, expires_at): (Option<String>, Option<i64>) = self.query("refresh_peek", cmd).await?;
        let (Some(json), Some(expires_at)) = (json, expires_at) else {
            return Ok(None);
        };
        let record: RefreshRecord = serde_json::from_str(&json)
            .map_err(|e| StoreError::Unavailable(format!("redis refresh_peek: unreadable refresh record: {e}")))?;
        Ok(Some(RefreshRecord { expires_at, ..record }))
    }

    // --- OAuth 2.0 (issue 11) ---

    async fn refresh_revoke_family(&self, family: &str, until: i64, now: i64) -> Result<(), StoreError> {
        if until <= now {
            return Ok(());
        }
        // Sent as text (a rare call): set, or move the expiry later only
        // (GT), so a second revocation never shortens the first.
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(REVOKE_FAMILY_LUA)
            .arg(1)
            .arg(self.key("family", family))
            .arg(pxat(until.min(MAX_UNIX_SECS)));
        self.query::<Value>("refresh_revoke_family", cmd).await.map(|_| ())
    }

    async fn opaque_insert(&self, hash: &str, value: &[u8], expires_at: i64, now: i64) -> Result<(), StoreError> {
        if expires_at <= now {
            return Ok(());
        }
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key("opaque", hash))
            .arg(value)
            .arg("NX")
            .arg("PXAT")
            .arg(pxat(expires_at.min(MAX_UNIX_SECS)));
        match self.query::<Value>("opaque_insert", cmd).await? {
            Value::Okay => Ok(()),
            Value::Nil => Err(StoreError::Unavailable(
                "redis opaque_insert: the token hash is already stored".into(),
            )),
            other => Err(bad_reply("opaque_insert", other)),
        }
    }

    async fn opaque_get(&self, hash: &str, _now: i64) -> Result<Option<Vec<u8>>, StoreError> {
        // Redis expires the key at `expires_at` by its own clock.
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(self.key("opaque", hash));
        self.query("opaque_get", cmd).await
    }

    async fn opaque_remove(&self, hash: &str, _now: i64) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(self.key("opaque", hash));
        self.query::<Value>("opaque_remove", cmd).await.map(|_| ())
    }

    async fn refresh_live(&self, hash: &str, now: i64) -> Result<Option<RefreshRecord>, StoreError> {
        // Two single-key reads, no script: introspection need not be atomic.
        let mut cmd = ::redis::cmd("HMGET");
        cmd.arg(self.key("refresh", hash))
            .arg("rec")
            .arg("exp")
            .arg("fexp")
            .arg("spent");
        let (json, exp, fexp, spent): (Option<String>, Option<i64>, Option<i64>, Option<String>) =
            self.query("refresh_live", cmd).await?;
        let (Some(json), Some(exp), Some(fexp)) = (json, exp, fexp) else {
            return Ok(None);
        };
        if spent.is_some() || exp <= now || fexp <= now {
            return Ok(None);
        }
        let record: RefreshRecord = serde_json::from_str(&json)
            .map_err(|e| StoreError::Unavailable(format!("redis refresh_live: unreadable refresh record: {e}")))?;
        let mut cmd = ::redis::cmd("EXISTS");
        cmd.arg(self.key("family", &record.family));
        let revoked: i64 = self.query("refresh_live", cmd).await?;
        Ok((revoked == 0).then_some(RefreshRecord {
            expires_at: exp,
            ..record
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = self.query("ping", ::redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(bad_reply("ping", pong))
        }
    }
}
