//! The accept loop over real loopback sockets, on tokio's paused clock:
//! every timeout is reached by the runtime advancing virtual time while it
//! waits, so no test sleeps, and "when" is asserted in virtual time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{run, Limits};

const SECOND: Duration = Duration::from_secs(1);

fn limits(max_connections: usize) -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections,
        shutdown_grace: Duration::from_secs(10),
    }
}

/// `/` answers at once; `/wait` answers once `gate` is notified; `/echo`
/// returns its body; `/peer` the port the peer connected from.
fn router(gate: Arc<Notify>) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/wait",
            get(move || async move {
                gate.notified().await;
                "done"
            }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.port().to_string() }),
        )
}

struct Server {
    addr: SocketAddr,
    gate: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gate = Arc::new(Notify::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(router(Arc::clone(&gate)), listener, limits, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        gate,
        stop: Some(stop),
        task,
    }
}

impl Server {
    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    fn shut_down(&mut self) {
        let _ = self.stop.take().unwrap().send(());
    }
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

/// Reads one response whose body is `Content-Length` long; the head and body as text.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed mid-response: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the server closed the connection: end of stream or a reset,
/// with nothing (more) sent.
async fn closed(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest).await {
        Ok(_) => rest.is_empty(),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_is_closed_after_header_read_timeout() {
    let srv = start(limits(8)).await;
    let t0 = Instant::now();
    let mut s = srv.connect().await;
    assert!(closed(&mut s).await);
    // From the opening, and not the (longer) idle timeout.
    let took = t0.elapsed();
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(11)).contains(&took),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_partial_head_is_closed_after_header_read_timeout() {
    let srv = start(limits(8)).await;
    let mut s = srv.connect().await;
    let t0 = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(closed(&mut s).await);
    let took = t0.elapsed();
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(11)).contains(&took),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_keep_alive_pause_lasts_idle_timeout_then_a_head_has_header_read_timeout() {
    let srv = start(limits(8)).await;
    let mut s = srv.connect().await;
    s.write_all(&get_request("/")).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));

    // A pause shorter than idle_timeout but longer than header_read_timeout
    // keeps the connection: a keep-alive pause is not header time.
    tokio::time::sleep(Duration::from_secs(45)).await;
    s.write_all(&get_request("/")).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));

    // After a pause, a head that starts but never ends is cut
    // header_read_timeout after its first byte.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let t0 = Instant::now();
    s.write_all(b"GET / HT").await.unwrap();
    assert!(closed(&mut s).await);
    let took = t0.elapsed();
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(11)).contains(&took),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let srv = start(limits(8)).await;
    let mut s = srv.connect().await;
    s.write_all(&get_request("/")).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    let t0 = Instant::now();
    assert!(closed(&mut s).await);
    let took = t0.elapsed();
    assert!(
        (Duration::from_secs(60)..Duration::from_secs(61)).contains(&took),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_that_trickles_is_cut_at_header_read_timeout() {
    let srv = start(limits(8)).await;
    let mut s = srv.connect().await;
    let t0 = Instant::now();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
        .await
        .unwrap();
    let r = read_response(&mut s).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let took = t0.elapsed();
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(11)).contains(&took),
        "{took:?}"
    );
    // A body that arrives in time is read whole.
    let mut s = srv.connect().await;
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    s.write_all(b"cd").await.unwrap();
    assert!(read_response(&mut s).await.ends_with("\r\n\r\nabcd"));
}

#[tokio::test(start_paused = true)]
async fn handlers_see_the_peer_address() {
    let srv = start(limits(8)).await;
    let mut s = srv.connect().await;
    let port = s.local_addr().unwrap().port();
    s.write_all(&get_request("/peer")).await.unwrap();
    assert!(read_response(&mut s).await.ends_with(&format!("\r\n\r\n{port}")));
}

#[tokio::test(start_paused = true)]
async fn past_the_cap_the_connection_idle_longest_is_closed() {
    let srv = start(limits(2)).await;
    let mut oldest = srv.connect().await;
    tokio::time::sleep(SECOND).await;
    let mut second = srv.connect().await;
    tokio::time::sleep(SECOND).await;
    // The third connection is served; the oldest idle one made room.
    let mut third = srv.connect().await;
    third.write_all(&get_request("/")).await.unwrap();
    assert!(read_response(&mut third).await.starts_with("HTTP/1.1 200"));
    assert!(closed(&mut oldest).await);
    tokio::time::sleep(SECOND).await;
    // The second is still served.
    second.write_all(&get_request("/")).await.unwrap();
    assert!(read_response(&mut second).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(SECOND).await;
    // Idle time counts from the last answer: the third, answered before
    // the second, is now the idlest and goes first.
    let mut fourth = srv.connect().await;
    fourth.write_all(&get_request("/")).await.unwrap();
    assert!(read_response(&mut fourth).await.starts_with("HTTP/1.1 200"));
    assert!(closed(&mut third).await);
    second.write_all(&get_request("/")).await.unwrap();
    assert!(read_response(&mut second).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(start_paused = true)]
async fn past_the_cap_a_request_in_a_handler_is_never_evicted_and_newcomers_get_503() {
    let srv = start(limits(1)).await;
    let mut busy = srv.connect().await;
    busy.write_all(&get_request("/wait")).await.unwrap();
    // Let the handler start.
    tokio::time::sleep(SECOND).await;
    let mut late = srv.connect().await;
    let r = read_response(&mut late).await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("\"error\":\"server_busy\""), "{r}");
    assert!(r.to_ascii_lowercase().contains("retry-after: 1"), "{r}");
    assert!(closed(&mut late).await);
    // The request in the handler is answered.
    srv.gate.notify_one();
    assert!(read_response(&mut busy).await.ends_with("done"));
}

#[tokio::test(start_paused = true)]
async fn shutdown_answers_requests_in_handlers_and_closes_everything_else_at_once() {
    let mut srv = start(limits(8)).await;
    let mut fresh = srv.connect().await;
    let mut kept_alive = srv.connect().await;
    kept_alive.write_all(&get_request("/")).await.unwrap();
    assert!(read_response(&mut kept_alive).await.starts_with("HTTP/1.1 200"));
    let mut partial = srv.connect().await;
    partial.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut in_flight = srv.connect().await;
    in_flight.write_all(&get_request("/wait")).await.unwrap();
    tokio::time::sleep(SECOND).await;

    let t0 = Instant::now();
    srv.shut_down();
    for s in [&mut fresh, &mut kept_alive, &mut partial] {
        assert!(closed(s).await);
    }
    assert!(t0.elapsed() < SECOND, "closing idle connections waited");
    // The listener is closed.
    assert!(TcpStream::connect(srv.addr).await.is_err());
    assert!(!srv.task.is_finished());
    // The request in flight is answered, on a connection that then closes.
    srv.gate.notify_one();
    let r = read_response(&mut in_flight).await;
    assert!(r.ends_with("done"), "{r}");
    assert!(r.to_ascii_lowercase().contains("connection: close"), "{r}");
    assert!(closed(&mut in_flight).await);
    srv.task.await.unwrap().unwrap();
    assert!(t0.elapsed() < SECOND);
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_what_is_still_running_after_the_grace() {
    let mut srv = start(limits(8)).await;
    let mut stuck = srv.connect().await;
    stuck.write_all(&get_request("/wait")).await.unwrap();
    tokio::time::sleep(SECOND).await;
    let t0 = Instant::now();
    srv.shut_down();
    srv.task.await.unwrap().unwrap();
    let took = t0.elapsed();
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(11)).contains(&took),
        "{took:?}"
    );
    assert!(closed(&mut stuck).await);
}

#[test]
fn the_default_cap_leaves_a_quarter_of_the_descriptors() {
    let cfg = crate::config::Config::embedded().server;
    let l = Limits::from_config(&cfg, 1024).unwrap();
    assert_eq!(l.max_connections, 768);
    assert_eq!(l.header_read_timeout, Duration::from_secs(10));
    // Small limits keep at least 64 back.
    assert_eq!(Limits::from_config(&cfg, 200).unwrap().max_connections, 136);
    assert!(Limits::from_config(&cfg, 64)
        .unwrap_err()
        .contains("leaves no room for connections"));
    // An explicit cap must leave the 64.
    let mut explicit = cfg.clone();
    explicit.max_connections = Some(960);
    assert_eq!(Limits::from_config(&explicit, 1024).unwrap().max_connections, 960);
    explicit.max_connections = Some(961);
    let e = Limits::from_config(&explicit, 1024).unwrap_err();
    assert!(e.starts_with("server.max_connections: 961 leaves too few"), "{e}");
    assert_eq!(l.for_metrics().max_connections, super::METRICS_CONNECTIONS);
}
