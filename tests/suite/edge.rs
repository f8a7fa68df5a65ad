//! The HTTP edge against hostile or careless peers, on the real binary where
//! the process matters: an idle-connection flood under a 1,024-descriptor
//! limit, heads that never end, SIGTERM with such connections open, the
//! metrics listener; and, in-process, what the session check is never sent.
//!
//! Every wait is bounded: a poll with short sleeps, or a socket read timeout,
//! for something a real process must do (start, close a socket, exit).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::harness::{self, base_config, TestApp, SHOP_KEY};

const WITHIN: Duration = Duration::from_secs(5);

/// The suite's base config on `port`, keys (ES256: quick to make) in `<dir>/keys`.
fn config_text(dir: &Path, port: u16) -> String {
    let base = base_config().replace(
        "issuer = \"https://issuer.test\"",
        &format!("issuer = \"http://127.0.0.1:{port}\""),
    );
    assert!(
        base.contains(&format!(":{port}\"")),
        "base_config's issuer line changed"
    );
    format!(
        "{base}\n[keys]\ndir = \"{}\"\nalgorithm = \"ES256\"\n",
        dir.join("keys").display()
    )
}

/// `tokensmith serve` on a free port, with `env`, its stderr (logs at
/// `info`) in `<dir>/stderr`; killed on drop. `ulimit_n` runs it under
/// `ulimit -n` (soft and hard).
struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(env: &[(&str, &str)], ulimit_n: Option<u32>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = harness::free_port();
        let config = dir.path().join("server.toml");
        std::fs::write(&config, config_text(dir.path(), port)).unwrap();
        // An empty folder that exists: serve makes the ring there.
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        let args = [
            "--config".to_owned(),
            config.display().to_string(),
            "serve".to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
        ];
        let mut cmd = match ulimit_n {
            Some(n) => {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(harness::binary())
                    .args(args);
                c
            }
            None => {
                let mut c = Command::new(harness::binary());
                c.args(args);
                c
            }
        };
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TOKENSMITH_") {
                cmd.env_remove(k);
            }
        }
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        cmd.current_dir(dir.path())
            .env("TOKENSMITH_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().unwrap();
        let s = Server { child, port, dir };
        poll(Duration::from_secs(20), "/healthz 200", || {
            (status(&request(
                s.port,
                b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            )) == 200)
                .then_some(())
        });
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap()
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(WITHIN)).unwrap();
        s
    }

    fn sigterm(&self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// The exit code, once the process has exited (waiting at most `within`).
    fn exit_code(&mut self, within: Duration) -> Option<i32> {
        poll(within, "the process to exit", || self.child.try_wait().unwrap()).code()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 50 ms until it gives `Some`, for at most `within`.
fn poll<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `bytes` on a fresh connection and reads until the server closes
/// it (5 s at most); an I/O error reads as an empty answer.
fn request(port: u16, bytes: &[u8]) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(WITHIN)).unwrap();
    let _ = s.write_all(bytes);
    read_until_closed(&mut s).0
}

/// Everything the server sends until it closes, and whether it did close
/// (rather than the read timing out).
fn read_until_closed(s: &mut TcpStream) -> (String, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = loop {
        match s.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&buf).into_owned(), closed)
}

fn status(resp: &str) -> u16 {
    resp.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn tokens_request(body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST /v1/tokens HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {SHOP_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// The head of a `/v1/tokens` request for `body`, with `Expect:
/// 100-continue`: the server says `100 Continue` once the handler starts
/// reading the body, which is then in flight until the body is sent.
fn in_flight_head(body: &[u8]) -> Vec<u8> {
    let mut req = tokens_request(body);
    req.truncate(req.len() - body.len());
    String::from_utf8(req)
        .unwrap()
        .replace("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n")
        .into_bytes()
}

// ---------------------------------------------------------------------------
// Connection flood, timeouts, shutdown: the real process

#[test]
fn healthz_and_tokens_answer_with_1100_idle_connections_under_ulimit_1024() {
    // The test itself needs more than 1,100 descriptors.
    let (_, fds) = tokensmith::server::fdlimit::raise();
    assert!(
        fds.soft >= 1300,
        "this test needs `ulimit -n` of at least 1300; the hard limit is {}",
        fds.hard
    );
    let srv = Server::start(&[], Some(1024));
    let log = srv.log();
    assert!(log.contains("file-descriptor limit soft=1024 hard=1024"), "{log}");
    assert!(log.contains("max_connections=768"), "{log}");

    let mut idle = Vec::with_capacity(1100);
    for _ in 0..1100 {
        idle.push(TcpStream::connect(("127.0.0.1", srv.port)).unwrap());
    }
    let r = request(
        srv.port,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&r), 200, "{r:?}");
    let r = request(srv.port, &tokens_request(br#"{"sub":"bob"}"#));
    assert_eq!(status(&r), 200, "{r:?}");
    // The oldest idle connections made room; the server never ran out of descriptors.
    let mut first = idle.swap_remove(0);
    first.set_read_timeout(Some(WITHIN)).unwrap();
    assert!(read_until_closed(&mut first).1, "the idlest connection is still open");
    drop(idle);
    assert!(!srv.log().contains("Too many open files"), "{}", srv.log());
}

#[test]
fn a_head_that_never_ends_is_closed_after_header_read_timeout() {
    let srv = Server::start(&[("TOKENSMITH_SERVER_HEADER_READ_TIMEOUT", "1s")], None);
    let mut s = srv.connect();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let (got, closed) = read_until_closed(&mut s);
    assert!(closed && got.is_empty(), "still open after {WITHIN:?}: {got:?}");
}

#[test]
fn sigterm_with_partial_heads_open_answers_the_request_in_flight_and_exits_0() {
    let mut srv = Server::start(&[], None);
    let mut partial = srv.connect();
    partial.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut silent = srv.connect();
    // A request in a handler, waiting for its body: `Expect: 100-continue`
    // makes the server say when it starts reading it.
    let body = br#"{"sub":"in-flight"}"#;
    let mut in_flight = srv.connect();
    in_flight.write_all(&in_flight_head(body)).unwrap();
    let mut buf = [0u8; 64];
    let n = in_flight.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"));

    srv.sigterm();
    // The connections with no request in a handler are closed at once ...
    for s in [&mut partial, &mut silent] {
        let (got, closed) = read_until_closed(s);
        assert!(closed && got.is_empty(), "{got:?}");
    }
    assert!(
        srv.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    // ... the request in flight is answered ...
    in_flight.write_all(body).unwrap();
    let (r, _) = read_until_closed(&mut in_flight);
    assert_eq!(status(&r), 200, "{r:?}");
    // ... and the process exits 0.
    assert_eq!(srv.exit_code(WITHIN), Some(0));
}

#[test]
fn sigterm_gives_a_stuck_request_shutdown_grace_then_exits_0() {
    let mut srv = Server::start(
        &[
            ("TOKENSMITH_SERVER_SHUTDOWN_GRACE", "1s"),
            ("TOKENSMITH_SERVER_HEADER_READ_TIMEOUT", "10s"),
        ],
        None,
    );
    // Its body never comes: only the grace (1 s), not the body timeout
    // (10 s), can end it in time.
    let mut stuck = srv.connect();
    stuck.write_all(&in_flight_head(br#"{"sub":"never-whole"}"#)).unwrap();
    let mut buf = [0u8; 64];
    let n = stuck.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"));
    srv.sigterm();
    assert_eq!(srv.exit_code(Duration::from_secs(7)), Some(0));
    let (got, closed) = read_until_closed(&mut stuck);
    assert!(closed && status(&got) != 200, "{got:?}");
    assert!(srv.log().contains("the grace period is over"), "{}", srv.log());
}

#[test]
fn metrics_listen_moves_metrics_off_the_main_listener() {
    let metrics_port = harness::free_port();
    let at = format!("127.0.0.1:{metrics_port}");
    let srv = Server::start(&[("TOKENSMITH_SERVER_METRICS_LISTEN", &at)], None);
    let get = |port: u16, path: &str| {
        request(
            port,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let main = get(srv.port, "/metrics");
    assert_eq!(status(&main), 404, "{main}");
    assert!(main.contains("\"error\":\"not_found\""), "{main}");
    let metrics = get(metrics_port, "/metrics");
    assert_eq!(status(&metrics), 200, "{metrics}");
    assert!(metrics.contains("tokensmith_"), "{metrics}");
    // Only /metrics is there.
    assert_eq!(status(&get(metrics_port, "/healthz")), 404);
    assert_eq!(status(&get(srv.port, "/healthz")), 200);
}

#[tokio::test]
async fn without_metrics_listen_metrics_stay_on_the_main_router() {
    let app = TestApp::base();
    assert_eq!(app.get("/metrics").await.status, StatusCode::OK);
    let app = TestApp::new(&format!(
        "{}\n[server]\nmetrics_listen = \"127.0.0.1:9464\"\n",
        base_config()
    ));
    let r = app.get("/metrics").await;
    assert_eq!((r.status, r.error()), (StatusCode::NOT_FOUND, "not_found".to_owned()));
}

// ---------------------------------------------------------------------------
// What the session check is sent

/// A check endpoint that records the headers of every call and vouches for anyone.
async fn check_server() -> (String, Arc<Mutex<Vec<HeaderMap>>>) {
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let app = Router::new()
        .route(
            "/whoami",
            get(
                |State(seen): State<Arc<Mutex<Vec<HeaderMap>>>>, h: HeaderMap| async move {
                    seen.lock().unwrap().push(h);
                    Json(json!({ "sub": "user-1" }))
                },
            ),
        )
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/whoami"), seen)
}

#[tokio::test]
async fn the_session_check_never_sees_an_api_key_or_a_token_of_ours() {
    let (url, seen) = check_server().await;
    let app = TestApp::new(&format!(
        "{}\n[session]\ncheck_url = \"{url}\"\nclient = \"shop_123\"\n",
        base_config()
    ));
    let ours = app.token(&json!({ "sub": "alice" })).await;
    let session_token = |headers: Vec<(&'static str, String)>| {
        let mut req = Request::post("/v1/session/token");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        app.send(req.body(Body::empty()).unwrap())
    };

    // An API key, or one of our tokens, alone: nothing to check, and the check is not asked.
    for auth in [
        format!("Bearer {SHOP_KEY}"),
        format!("Bearer {ours}"),
        format!("DPoP {ours}"),
    ] {
        let r = session_token(vec![("authorization", auth)]).await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::UNAUTHORIZED, "invalid_session".to_owned())
        );
    }
    assert!(seen.lock().unwrap().is_empty());

    // With a session cookie: the cookie goes, the credential of ours does not.
    let r = session_token(vec![
        ("authorization", format!("Bearer {SHOP_KEY}")),
        ("cookie", "session=abc".to_owned()),
    ])
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let got = seen.lock().unwrap().pop().unwrap();
    assert_eq!(got.get("cookie").unwrap(), "session=abc");
    assert!(got.get("authorization").is_none(), "{got:?}");

    // The app's own bearer credential is still forwarded.
    let r = session_token(vec![("authorization", "Bearer app-session-42".to_owned())]).await;
    assert_eq!(r.status, StatusCode::OK);
    let got = seen.lock().unwrap().pop().unwrap();
    assert_eq!(got.get("authorization").unwrap(), "Bearer app-session-42");
}
