//! The Redis store's connection: one Redis (a [`ConnectionManager`] that the
//! store heals itself, see "Connection" in the parent module) or a Redis
//! Cluster (a [`ClusterConnection`], which follows `MOVED`/`ASK` and
//! refreshes its slot map by itself). [`AnyConn`] lets every command and
//! script run on either without the callers knowing which.
//!
//! It never retries a command itself and never turns a failure into an
//! answer: that is the parent module's `bounded`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, Value};
use arc_swap::ArcSwap;

use super::tls::{use_crate_provider, RedisTls};
use super::Inner;
use crate::store::StoreError;

/// The first and the longest pause between reconnection attempts while
/// Redis is unreachable: short, so a Redis that is back is used within a
/// quarter second; not shorter, so an outage costs each instance at most a
/// few connection attempts per second.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_millis(250);

/// How often the cluster client follows a redirection (`MOVED`, `ASK`) or
/// waits out `TRYAGAIN`/`CLUSTERDOWN` within one call. A redirection means
/// the node did not run the command, so following it is safe; every call is
/// still bounded by the store's timeout as a whole.
const CLUSTER_RETRIES: u32 = 3;

/// One Redis, or a cluster.
pub(super) enum Conn {
    Single(Box<Single>),
    Cluster(ClusterConnection),
}

/// One Redis, with the store's own reconnection.
pub(super) struct Single {
    /// Kept to build a replacement connection manager.
    client: Client,
    config: ConnectionManagerConfig,
    /// Swapped whole when a fresh connection has answered; a call clones
    /// the manager (an `Arc`) without locking.
    conn: ArcSwap<ConnectionManager>,
    /// True from the first connection failure until a fresh connection is
    /// swapped in: one reconnection task at a time, however many calls fail.
    reconnecting: AtomicBool,
}

/// A connection of either kind, for one call.
#[derive(Clone)]
pub(super) enum AnyConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for AnyConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            AnyConn::Single(c) => c.req_packed_command(cmd),
            AnyConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            AnyConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            AnyConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            AnyConn::Single(c) => c.get_db(),
            AnyConn::Cluster(c) => c.get_db(),
        }
    }
}

/// The connection a call uses, and (one Redis) the manager it came from, so
/// that a failure on it can start the reconnection.
pub(super) struct Handle {
    pub(super) conn: AnyConn,
    pub(super) used: Option<Arc<ConnectionManager>>,
}

impl Conn {
    /// Connects to one Redis at `url`, within `timeout`.
    pub(super) async fn single(url: &str, tls: &RedisTls, timeout: Duration) -> Result<Conn, StoreError> {
        let client = if tls.is_custom() {
            if !is_tls_url(url) {
                return Err(StoreError::Unavailable(
                    "redis: TLS files are set but redis_url is not rediss://".into(),
                ));
            }
            Client::build_with_tls(url, tls.certificates())
        } else {
            Client::open(url)
        }
        .map_err(|e| StoreError::Unavailable(format!("redis: invalid redis_url: {e}")))?;
        if is_tls_url(url) {
            use_crate_provider();
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            // No retry loop inside the manager: a call during an outage
            // fails at once instead of waiting on a backoff that outlasts
            // Redis's return. Reconnecting is the store's own task.
            .set_number_of_retries(0);
        let manager = ConnectionManager::new_with_config(client.clone(), config.clone());
        let conn = match tokio::time::timeout(timeout, manager).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(StoreError::Unavailable(format!("redis connect: {e}"))),
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "redis connect: no answer within {timeout:?}"
                )))
            }
        };
        Ok(Conn::Single(Box::new(Single {
            client,
            config,
            conn: ArcSwap::from_pointee(conn),
            reconnecting: AtomicBool::new(false),
        })))
    }

    /// Connects to the cluster that `seeds` belong to, within `timeout`:
    /// the client asks the seeds (any one that answers is enough) for the
    /// slot map and connects to every master.
    pub(super) async fn cluster(seeds: &[String], tls: &RedisTls, timeout: Duration) -> Result<Conn, StoreError> {
        if seeds.is_empty() {
            return Err(StoreError::Unavailable("redis cluster: no seed node given".into()));
        }
        let encrypted = seeds.iter().filter(|s| is_tls_url(s)).count();
        if encrypted != 0 && encrypted != seeds.len() {
            return Err(StoreError::Unavailable(
                "redis cluster: the seeds mix redis:// and rediss://".into(),
            ));
        }
        if tls.is_custom() && encrypted == 0 {
            return Err(StoreError::Unavailable(
                "redis cluster: TLS files are set but the seeds are not rediss://".into(),
            ));
        }
        let mut builder = ClusterClient::builder(seeds.iter().map(String::as_str));
        if encrypted != 0 {
            use_crate_provider();
            if tls.is_custom() {
                builder = builder.certs(tls.certificates());
            }
        }
        let client = builder
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(CLUSTER_RETRIES)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("redis cluster: invalid seed list: {e}")))?;
        match tokio::time::timeout(timeout, client.get_async_connection()).await {
            Ok(Ok(conn)) => Ok(Conn::Cluster(conn)),
            Ok(Err(e)) => Err(StoreError::Unavailable(format!(
                "redis cluster connect (no seed answered with a usable slot map): {e}"
            ))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "redis cluster connect: no answer within {timeout:?}"
            ))),
        }
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    pub(super) fn handle(&self) -> Handle {
        match self {
            Conn::Single(s) => {
                let used = s.conn.load_full();
                Handle {
                    conn: AnyConn::Single(ConnectionManager::clone(&used)),
                    used: Some(used),
                }
            }
            Conn::Cluster(c) => Handle {
                conn: AnyConn::Cluster(c.clone()),
                used: None,
            },
        }
    }

    /// The database number every command uses (a cluster has only 0).
    pub(super) fn db(&self) -> i64 {
        self.handle().conn.get_db()
    }

    /// The cluster connection, for commands routed by hand.
    pub(super) fn cluster_conn(&self) -> Option<ClusterConnection> {
        match self {
            Conn::Cluster(c) => Some(c.clone()),
            Conn::Single(_) => None,
        }
    }

    pub(super) fn is_reconnecting(&self) -> bool {
        match self {
            Conn::Single(s) => s.reconnecting.load(Ordering::Acquire),
            Conn::Cluster(_) => false,
        }
    }
}

/// Whether `url` asks for TLS.
fn is_tls_url(url: &str) -> bool {
    url.get(..9).is_some_and(|s| s.eq_ignore_ascii_case("rediss://"))
}

/// Errors that say the connection, not the command, failed: any I/O error
/// (refused, reset, closed, timed out: the client reports each as one), or
/// one after which the client must reconnect (a reply stream that no longer
/// parses, a failed authentication, a cluster node it has no connection
/// to). Server error replies (a script error, `NOSCRIPT`, a wrong type,
/// `MOVED`) do not count: the connection is fine.
pub(super) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_unrecoverable_error()
}

/// Starts the reconnection task unless one runs. Only for a failure on the
/// connection still installed: a call that began before a fresh connection
/// was swapped in says nothing about the fresh one. A cluster connection
/// reconnects by itself: nothing to do.
pub(super) fn start_reconnecting(inner: &Arc<Inner>, failed: Option<&Arc<ConnectionManager>>) {
    let (Conn::Single(single), Some(failed)) = (&inner.conn, failed) else {
        return;
    };
    if !Arc::ptr_eq(&single.conn.load(), failed) {
        return;
    }
    if single.reconnecting.swap(true, Ordering::AcqRel) {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(reconnect(Arc::downgrade(inner)));
        }
        // Unreachable in practice (calls check for a runtime first); leave
        // the flag clear so a later call can start the task.
        Err(_) => single.reconnecting.store(false, Ordering::Release),
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
        let Conn::Single(single) = &inner.conn else {
            return;
        };
        attempts = attempts.saturating_add(1);
        match fresh_connection(&single.client, &single.config, inner.timeout).await {
            Ok(conn) => {
                single.conn.store(Arc::new(conn));
                single.reconnecting.store(false, Ordering::Release);
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
async fn fresh_connection(
    client: &Client,
    config: &ConnectionManagerConfig,
    timeout: Duration,
) -> Result<ConnectionManager, String> {
    let attempt = async {
        let mut conn = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        let pong: String = ::redis::cmd("PING").query_async(&mut conn).await?;
        Ok::<_, RedisError>((conn, pong))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok((conn, pong))) if pong == "PONG" => Ok(conn),
        Ok(Ok((_, pong))) => Err(format!("unexpected PING reply {pong:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::io::{self, Read, Write};
    use std::time::Duration;

    use ::redis::aio::ConnectionManagerConfig;
    use ::redis::{Client, ErrorKind, RedisError};

    use super::{fresh_connection, is_connection_error};

    /// The length of the first complete RESP command (an array of bulk
    /// strings) at the start of `buf`.
    fn one_command(buf: &[u8]) -> Option<usize> {
        let line = |at: usize| -> Option<(&[u8], usize)> {
            let end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
            Some((&buf[at..end], end + 2))
        };
        let number = |text: &[u8], tag: u8| -> Option<usize> {
            std::str::from_utf8(text.strip_prefix(&[tag])?).ok()?.parse().ok()
        };
        let (head, mut at) = line(0)?;
        for _ in 0..number(head, b'*')? {
            let (len, next) = line(at)?;
            at = next + number(len, b'$')? + 2;
        }
        (at <= buf.len()).then_some(at)
    }

    /// A server on a loopback port that answers every command with `reply`.
    fn answering(reply: &'static [u8]) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(mut sock) = sock else { return };
                std::thread::spawn(move || {
                    let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
                    while let Ok(n @ 1..) = sock.read(&mut chunk) {
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(used) = one_command(&buf) {
                            buf.drain(..used);
                            if sock.write_all(reply).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        port
    }

    /// A server that accepts and answers, but not `PONG` to `PING`, is not
    /// taken for a Redis that came back.
    #[tokio::test]
    async fn a_fresh_connection_is_one_that_answered_pong() {
        let timeout = Duration::from_secs(2);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_number_of_retries(0);
        let client = |port: u16| Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let pong = client(answering(b"+PONG\r\n"));
        assert!(fresh_connection(&pong, &config, timeout).await.is_ok());
        let other = client(answering(b"+HELLO\r\n"));
        match fresh_connection(&other, &config, timeout).await {
            Ok(_) => panic!("a connection that answered HELLO to PING was taken"),
            Err(why) => assert_eq!(why, "unexpected PING reply \"HELLO\""),
        }
    }

    #[test]
    fn connection_errors_are_io_and_reconnect_errors_only() {
        let io = |kind: io::ErrorKind| RedisError::from(io::Error::new(kind, "test"));
        for e in [
            io(io::ErrorKind::ConnectionRefused),
            io(io::ErrorKind::ConnectionReset),
            io(io::ErrorKind::TimedOut),
            io(io::ErrorKind::Other),
            RedisError::from((ErrorKind::ParseError, "test")),
            RedisError::from((ErrorKind::AuthenticationFailed, "test")),
            RedisError::from((ErrorKind::ClusterConnectionNotFound, "test")),
        ] {
            assert!(is_connection_error(&e), "{e:?}");
        }
        for e in [
            RedisError::from((ErrorKind::ResponseError, "test")),
            RedisError::from((ErrorKind::NoScriptError, "test")),
            RedisError::from((ErrorKind::TypeError, "test")),
            RedisError::from((ErrorKind::Moved, "test")),
            RedisError::from((ErrorKind::TryAgain, "test")),
        ] {
            assert!(!is_connection_error(&e), "{e:?}");
        }
    }
}
