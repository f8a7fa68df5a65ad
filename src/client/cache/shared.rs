//! The Redis side of a shared [`TokenCache`](super::TokenCache): the
//! renewal lock with fencing, and the published token.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisResult, Script};

use super::Issued;

/// A random lock value: only the instance that set it may publish or release.
pub(super) fn lock_value() -> String {
    let mut b = [0u8; 16];
    if crate::jose::alg::random_bytes(&mut b).is_err() {
        // Without randomness, fall back to something unique to this process
        // and moment; fencing then still tells instances apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("{}-{nanos}", std::process::id());
    }
    URL_SAFE_NO_PAD.encode(b)
}

/// KEYS: lock, token. ARGV: lock value, token JSON, PX in ms.
/// Only the lock holder's write is accepted; the lock is released with it.
const PUBLISH_LUA: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[1])
return 1
"#;

/// KEYS: lock. ARGV: lock value. Deletes the lock only if it is still ours.
const RELEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// The Redis side of a shared [`TokenCache`](super::TokenCache).
///
/// Keys: `tokensmith-cache:<namespace>:token:<key>` (the token as JSON,
/// expiring with the token) and `tokensmith-cache:<namespace>:lock:<key>`
/// (the renewal lock). Every instance that should share tokens uses the
/// same namespace; a different issue function needs a different namespace.
#[derive(Clone)]
pub struct SharedRedis {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    publish: Arc<Script>,
    release: Arc<Script>,
}

impl fmt::Debug for SharedRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRedis")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl SharedRedis {
    /// Connects to `url`; every later command is bounded by `timeout`.
    pub async fn connect(url: &str, namespace: &str, timeout: Duration) -> RedisResult<SharedRedis> {
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            // Fail fast during an outage: the cache falls back to issuing locally.
            .set_number_of_retries(0);
        let conn = bounded(timeout, ConnectionManager::new_with_config(client, config)).await?;
        Ok(SharedRedis {
            conn,
            prefix: format!("tokensmith-cache:{namespace}:"),
            timeout,
            publish: Arc::new(Script::new(PUBLISH_LUA)),
            release: Arc::new(Script::new(RELEASE_LUA)),
        })
    }

    pub(super) fn key(&self, kind: &str, key: &str) -> String {
        format!("{}{kind}:{key}", self.prefix)
    }

    pub(super) async fn get(&self, key: &str) -> RedisResult<Option<Issued>> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("GET").arg(self.key("token", key)).clone();
        let raw: Option<String> = bounded(self.timeout, async move { cmd.query_async(&mut conn).await }).await?;
        // A value that does not parse (another version's format) is as good as none.
        Ok(raw.and_then(|s| serde_json::from_str(&s).ok()))
    }

    pub(super) async fn try_lock(&self, key: &str, value: &str, ttl: Duration) -> RedisResult<bool> {
        let mut conn = self.conn.clone();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let cmd = redis::cmd("SET")
            .arg(self.key("lock", key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .clone();
        let set: Option<String> = bounded(self.timeout, async move { cmd.query_async(&mut conn).await }).await?;
        Ok(set.is_some())
    }

    pub(super) async fn publish(&self, key: &str, lock: &str, t: &Issued, px_ms: i64) -> RedisResult<bool> {
        let json = serde_json::to_string(t)
            .map_err(|e| redis::RedisError::from((redis::ErrorKind::TypeError, "token JSON", e.to_string())))?;
        let mut conn = self.conn.clone();
        let mut inv = self.publish.prepare_invoke();
        inv.key(self.key("lock", key))
            .key(self.key("token", key))
            .arg(lock)
            .arg(json)
            .arg(px_ms);
        let written: i64 = bounded(self.timeout, async move { inv.invoke_async(&mut conn).await }).await?;
        Ok(written == 1)
    }

    pub(super) async fn release(&self, key: &str, lock: &str) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        let mut inv = self.release.prepare_invoke();
        inv.key(self.key("lock", key)).arg(lock);
        let _: i64 = bounded(self.timeout, async move { inv.invoke_async(&mut conn).await }).await?;
        Ok(())
    }
}

/// One Redis exchange under `timeout`.
async fn bounded<T>(timeout: Duration, call: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::IoError,
            "no answer from Redis in time",
        ))),
    }
}
