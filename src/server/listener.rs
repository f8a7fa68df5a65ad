//! The accept loop: an axum [`Router`] served over HTTP/1.1 with the bounds
//! a public service needs, and a drain with a deadline on shutdown.
//!
//! What it promises:
//! - **a cap** of [`Limits::max_connections`] connections served at once.
//!   A connection past the cap closes the one idle longest ("idle": no
//!   request in a handler; waiting for a first byte, in a keep-alive pause,
//!   or with a head still arriving); when every connection is running a
//!   request, the newcomer gets `503 server_busy` and is closed. An idle
//!   flood therefore never locks a client out, and descriptors stay under
//!   the process limit the cap is sized from.
//! - **timeouts**: a request head must arrive whole within
//!   `header_read_timeout`, counted from the connection's opening for its
//!   first request and from the first byte for later ones, and a body within
//!   as long again after its head; a keep-alive connection that starts no
//!   request for `idle_timeout` is closed (as is one whose peer stops
//!   reading an answer for that long).
//! - **shutdown**: the listener closes at once; connections with no request
//!   in a handler close at once (a partial head is not a request); requests
//!   in handlers get `shutdown_grace` to finish and are answered with
//!   `Connection: close`; then the rest are closed and [`run`] returns.
//!
//! It knows nothing of tokens: it serves any router (its tests use small
//! ones). It must never block the accept loop on one connection, nor let
//! one connection's timer or eviction touch another's request in flight.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tower::Service as _;

use crate::config::ServerConfig;

mod registry;
mod wire;

use registry::{Conn, Registry, NEVER};
use wire::{Head, TimedBody, Watched};

/// Descriptors never given to connections: the store's, the session check's
/// and the metrics listener's connections, key files, the runtime's own.
pub const MIN_RESERVED_DESCRIPTORS: u64 = 64;
/// Connections of the metrics listener: a few scrapers.
pub const METRICS_CONNECTIONS: usize = 16;
/// The body of the answer past the cap when no connection is idle.
const BUSY_BODY: &str =
    r#"{"error":"server_busy","error_description":"every connection is in use; retry in a second"}"#;
/// After a failed `accept` that is not about one connection (out of
/// descriptors), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The bounds one listener serves under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A connection that has not sent a whole request head this long after
    /// it opened (or after its last response) is closed.
    pub header_read_timeout: Duration,
    /// A keep-alive connection idle this long is closed.
    pub idle_timeout: Duration,
    /// The most connections served at once; past it the oldest idle one is
    /// dropped, or the new one refused.
    pub max_connections: usize,
    /// How long in-flight requests get to finish once shutdown starts.
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The main listener's limits under a soft descriptor limit of
    /// `descriptors`: `[server]`'s, with `max_connections` by default three
    /// quarters of the descriptors (the rest, at least
    /// [`MIN_RESERVED_DESCRIPTORS`], kept for everything else). A
    /// `max_connections` that leaves less than that is refused, naming the key.
    pub fn from_config(cfg: &ServerConfig, descriptors: u64) -> Result<Limits, String> {
        let reserve = (descriptors / 4).max(MIN_RESERVED_DESCRIPTORS);
        let room = usize::try_from(descriptors.saturating_sub(MIN_RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX);
        let max_connections = match cfg.max_connections {
            Some(n) if n > room => {
                return Err(format!(
                    "server.max_connections: {n} leaves too few of the {descriptors} file descriptors this process may open: at most {room}, or raise the limit (ulimit -n)"
                ))
            }
            Some(n) => n,
            None => usize::try_from(descriptors.saturating_sub(reserve)).unwrap_or(usize::MAX),
        };
        if max_connections == 0 {
            return Err(format!(
                "the file-descriptor limit {descriptors} leaves no room for connections; raise it (ulimit -n)"
            ));
        }
        Ok(Limits {
            header_read_timeout: cfg.header_read_timeout,
            idle_timeout: cfg.idle_timeout,
            max_connections,
            shutdown_grace: cfg.shutdown_grace,
        })
    }

    /// The same bounds for the metrics listener, with its own small cap.
    pub fn for_metrics(&self) -> Limits {
        Limits {
            max_connections: METRICS_CONNECTIONS,
            ..*self
        }
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` resolves,
/// then drains: see the module docs. Handlers see the peer address as
/// `ConnectInfo<SocketAddr>`.
pub async fn run(
    router: Router,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let registry = Arc::new(Registry::new(limits));
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                if let Some(suppressed) = super::logthrottle::edge().admit("accept", std::time::Instant::now()) {
                    tracing::warn!(error = %e, suppressed, "accept failed; retrying shortly");
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Some(conn) = registry.admit().await else {
            // Best effort: a fresh socket's send buffer is empty, so this
            // does not block; the peer may still see a reset.
            let _ = stream.try_write(busy_response().as_bytes());
            continue;
        };
        let _ = stream.set_nodelay(true);
        let task = Connection {
            registry: Arc::clone(&registry),
            conn,
            router: router.clone(),
            peer,
            limits,
        };
        tokio::spawn(task.serve(stream));
    }
    // New connections are refused from here on.
    drop(listener);
    registry.enter(Phase::Draining);
    if tokio::time::timeout(limits.shutdown_grace, registry.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            open = registry.len(),
            "shutdown: the grace period is over; closing the connections still open"
        );
        registry.enter(Phase::Closing);
        registry.drained().await;
    }
    Ok(())
}

/// The whole answer past the cap, written without reading the request:
/// nothing of it is needed.
fn busy_response() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncache-control: no-store\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BUSY_BODY}",
        BUSY_BODY.len()
    )
}

/// Errors of `accept` that concern one incoming connection, not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Where the listener is in its life; each change wakes every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum Phase {
    Serving = 0,
    /// Shutdown began: finish the request in a handler, if any, then close.
    Draining = 1,
    /// The grace period is over: close now.
    Closing = 2,
}

// ---------------------------------------------------------------------------
// One connection's task.

struct Connection {
    registry: Arc<Registry>,
    conn: Arc<Conn>,
    router: Router,
    peer: SocketAddr,
    limits: Limits,
}

/// Takes the connection out of the registry however its task ends.
struct Deregister(Arc<Registry>, u64);

impl Drop for Deregister {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        let _registered = Deregister(Arc::clone(&self.registry), self.conn.id);
        let io = TokioIo::new(Watched {
            stream,
            conn: Arc::clone(&self.conn),
            header_read_timeout: self.limits.header_read_timeout,
            seen_finished: 0,
            head: Head::Awaited,
        });
        let service = ConnService {
            router: self.router.clone(),
            conn: Arc::clone(&self.conn),
            peer: self.peer,
            body_timeout: self.limits.header_read_timeout,
        };
        let mut builder = http1::Builder::new();
        // Our own deadlines apply: hyper's would count a keep-alive pause
        // as header time.
        builder.header_read_timeout(None);
        let mut http = pin!(builder.serve_connection(io, service));
        let first_due = self.conn.due.load(Ordering::Relaxed);
        let mut deadline = Deadline {
            conn: &self.conn,
            sleep: Box::pin(tokio::time::sleep_until(self.conn.instant(first_due))),
            armed: first_due,
        };
        let mut closing = false;
        loop {
            // Biased: the deadline is looked at after hyper's poll, which
            // is where a request begins or ends and moves it.
            tokio::select! {
                biased;
                done = http.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = &mut deadline => return,
                () = self.conn.close.notified() => {
                    // Evicted, or shutting down: an idle connection goes now;
                    // one with a request in a handler finishes it first,
                    // unless the grace is over.
                    if self.registry.phase() == Phase::Closing || !self.conn.busy.load(Ordering::Relaxed) {
                        return;
                    }
                    if !closing {
                        http.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

/// Resolves when the connection's `due` passes with no request in a
/// handler. Re-reads `due` on every poll, so it follows the connection from
/// one phase to the next without a wake of its own.
struct Deadline<'a> {
    conn: &'a Conn,
    sleep: Pin<Box<Sleep>>,
    /// The `due` the sleep is set to.
    armed: u64,
}

impl Future for Deadline<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let due = self.conn.due.load(Ordering::Relaxed);
            if due == NEVER {
                // A handler runs: the body deadline and the handlers' own bound it.
                return Poll::Pending;
            }
            if due != self.armed {
                let at = self.conn.instant(due);
                self.sleep.as_mut().reset(at);
                self.armed = due;
            }
            std::task::ready!(self.sleep.as_mut().poll(cx));
            if self.conn.due.load(Ordering::Relaxed) == due {
                return Poll::Ready(());
            }
        }
    }
}

/// The hyper service of one connection: the router, with the peer address,
/// the body deadline, and the connection marked busy while a handler runs.
struct ConnService {
    router: Router,
    conn: Arc<Conn>,
    peer: SocketAddr,
    body_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = Tracked<axum::routing::future::RouteFuture<Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.conn.begin_request();
        let busy = Busy(Arc::clone(&self.conn));
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(ConnectInfo(self.peer));
        let body = Body::new(TimedBody {
            inner: body,
            timeout: self.body_timeout,
            sleep: None,
        });
        let future = self.router.clone().call(Request::from_parts(parts, body));
        Tracked {
            future,
            busy: Some(busy),
        }
    }
}

/// Marks its connection idle again when the response is ready (or the
/// request is abandoned).
struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// A handler's future that holds its connection busy until it resolves.
struct Tracked<F> {
    future: F,
    busy: Option<Busy>,
}

impl<F: Future + Unpin> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let out = std::task::ready!(Pin::new(&mut self.future).poll(cx));
        self.busy = None;
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests;
