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
//! | `mark:<key>` | string | `1` | the mark's `expires_at` |
//! | `revoked-jti:<jti>` | string | `"<revoked_at> <until>"` | `until` |
//! | `revoked-sub:<sub>` | string | `"<revoked_at> <until>"` | `until` |
//! | `rate:<key>:<window start>` | counter | hits | window end |
//! | `refresh:<hash>` | hash | `rec` (JSON), `fam`, `exp`, `fexp`, `ttl`, `spent` | `family_expires_at` |
//! | `family:<family>` | string | `1`: the family is revoked | `family_expires_at` |
//! | `opaque:<hash>` | string | an opaque access token's claims (JSON) | the token's `exp` + leeway |
//!
//! A replay mark is one `SET key 1 NX PXAT <ms>`: one round trip, atomic
//! across every instance. A consume (revocation check, then mark) is one
//! `EVALSHA` of a script that reads both revocation keys and sets the mark,
//! so a revocation never lands between the check and the mark. Scripts are
//! sent by hash; after a Redis restart (`NOSCRIPT`) the client loads the
//! script and runs it again, under the same timeout. The refresh scripts
//! read the family key by a name built inside the script, so this store
//! needs a single Redis (or a primary with replicas), not Redis Cluster.
//!
//! Redis expires keys by its own clock. Without persistence (`appendonly
//! yes`), a Redis restart forgets every mark and revocation: run it with
//! persistence where replay protection must survive one.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Cmd, FromRedisValue, RedisError, RedisResult, Script, ScriptInvocation, Value};
use arc_swap::ArcSwap;

use super::{rate_decision, rate_window, ConsumeOutcome, RateDecision, RefreshRecord, SpendOutcome, Store, StoreError};

/// 9999-12-31T23:59:59Z: later times are clamped, so a bogus `until` cannot
/// overflow into a PXAT that Redis rejects.
const MAX_UNIX_SECS: i64 = 253_402_300_799;

/// Keeps the later `revoked_at` and the later `until` of the old and new
/// revocation, so an instance with a slow clock never narrows one. Numbers
/// go back to Redis through `%d`: Lua's own number-to-string conversion may
/// use an exponent, which `PXAT` rejects.
const REVOKE_LUA: &str = r#"
local at, untl = tonumber(ARGV[1]), tonumber(ARGV[2])
local old = redis.call('GET', KEYS[1])
if old then
  local oa, ou = string.match(old, '^(%-?%d+) (%-?%d+)$')
  if oa then
    at = math.max(at, tonumber(oa))
    untl = math.max(untl, tonumber(ou))
  end
end
redis.call('SET', KEYS[1], string.format('%d %d', at, untl), 'PXAT', string.format('%d', untl * 1000))
return 1
"#;

/// The first and the longest pause between reconnection attempts while
/// Redis is unreachable: short, so a Redis that is back is used within a
/// quarter second; not shorter, so an outage costs each instance at most a
/// few connection attempts per second.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_millis(250);

/// KEYS: revoked-jti, revoked-sub, mark. ARGV: now, iat, mark PXAT ms.
/// Reads the revocations as `is_revoked` does (an entry is
/// `"<revoked_at> <until>"`, in force while `now < until`; a `sub` entry
/// covers `iat <= revoked_at`; an unreadable entry is an error, never "not
/// revoked"), then marks as `mark_once` does. A revoked token is not marked.
const CONSUME_LUA: &str = r#"
local now, iat = tonumber(ARGV[1]), tonumber(ARGV[2])
local r = redis.call('MGET', KEYS[1], KEYS[2])
for i = 1, 2 do
  if r[i] then
    local at, untl = string.match(r[i], '^(%-?%d+) (%-?%d+)$')
    if not at then
      return redis.error_reply('ERR tokensmith: unreadable revocation entry')
    end
    if tonumber(untl) > now and (i == 1 or iat <= tonumber(at)) then
      return 'revoked'
    end
  end
end
if redis.call('SET', KEYS[3], '1', 'NX', 'PXAT', ARGV[3]) then
  return 'first'
end
return 'replayed'
"#;

/// INCR and its expiry in one step, so a counter never outlives its window.
const RATE_LUA: &str = r#"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return n
"#;

/// ARGV: record JSON, family, expires_at, family_expires_at, ttl, PXAT ms.
const REFRESH_INSERT_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('ERR tokensmith: refresh token hash is already stored')
end
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'fam', ARGV[2], 'exp', ARGV[3], 'fexp', ARGV[4], 'ttl', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
return 1
"#;

/// KEYS: the presented token, its successor. ARGV: now, family key prefix.
/// The order of checks is the one documented on `Store::refresh_spend`.
/// The successor copies the record JSON verbatim: Lua never re-encodes it.
const REFRESH_SPEND_LUA: &str = r#"
local now = tonumber(ARGV[1])
local t = redis.call('HMGET', KEYS[1], 'rec', 'fam', 'exp', 'fexp', 'ttl', 'spent')
if not t[1] then return {'unknown'} end
local fam, exp, fexp, ttl = t[2], tonumber(t[3]), tonumber(t[4]), tonumber(t[5])
local fkey = ARGV[2] .. fam
if redis.call('EXISTS', fkey) == 1 then return {'revoked'} end
if fexp <= now then return {'unknown'} end
if t[6] then
  redis.call('SET', fkey, '1', 'PXAT', string.format('%d', fexp * 1000))
  return {'reused'}
end
if exp <= now then return {'unknown'} end
if KEYS[2] == KEYS[1] or redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('ERR tokensmith: refresh successor hash is already stored')
end
redis.call('HSET', KEYS[1], 'spent', '1')
local next_exp = math.min(now + ttl, fexp)
redis.call('HSET', KEYS[2], 'rec', t[1], 'fam', fam, 'exp', string.format('%d', next_exp), 'fexp', t[4], 'ttl', t[5])
redis.call('PEXPIREAT', KEYS[2], string.format('%d', fexp * 1000))
return {'spent', t[1], t[3]}
"#;

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
    namespace: String,
    timeout: Duration,
    revoke: Script,
    rate: Script,
    refresh_insert: Script,
    refresh_spend: Script,
    consume: Script,
}

impl RedisStore {
    /// Connects to `url`, prefixing every key with `tokensmith:<namespace>:`.
    /// Every call, this first connection included, fails with
    /// [`StoreError::Unavailable`] if Redis has not answered within
    /// `timeout`. Must be called inside a Tokio runtime.
    pub async fn connect(url: &str, namespace: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
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
        let inner = Inner {
            client,
            config,
            conn: ArcSwap::from_pointee(conn),
            reconnecting: AtomicBool::new(false),
            prefix: format!("tokensmith:{namespace}:"),
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

    async fn consume(
        &self,
        jti: &str,
        sub: &str,
        iat: i64,
        mark_key: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<ConsumeOutcome, StoreError> {
        let mut script = self.inner.consume.prepare_invoke();
        script
            .key(self.key("revoked-jti", jti))
            .key(self.key("revoked-sub", sub))
            .key(self.key("mark", mark_key))
            .arg(now)
            .arg(iat)
            .arg(pxat(expires_at.max(now.saturating_add(1))));
        let reply: String = self.eval("consume", script).await?;
        match reply.as_str() {
            "first" => Ok(ConsumeOutcome::FirstUse),
            "replayed" => Ok(ConsumeOutcome::Replayed),
            "revoked" => Ok(ConsumeOutcome::Revoked),
            _ => Err(bad_reply("consume", reply)),
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

    async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = self.query("ping", ::redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(bad_reply("ping", pong))
        }
    }
}
