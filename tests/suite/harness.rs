//! An in-process tokensmith for router tests, and a real one on a socket.
//!
//! `TestApp::new(toml)` builds the `AppState` from a config text, with the
//! fixture RSA keys (active `rsa2048`, next `rsa2048_b`), a memory store and
//! a `ManualClock` at [`NOW`], and calls the router with `oneshot`.
//! `Spawned::start(...)` runs the built binary on a free loopback port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tokensmith::clients::ClientRegistry;
use tokensmith::config::Config;
use tokensmith::jose::{Algorithm, SigningKey};
use tokensmith::keys::{KeyRing, KeyState, RingKey};
use tokensmith::server::{app, AppState};
use tokensmith::store::memory::MemoryStore;
use tokensmith::store::AnyStore;
use tokensmith::{ManualClock, SharedClock};
use tower::ServiceExt;

use super::common::pkcs8;

/// The test clock's start: a fixed instant, so tokens are reproducible.
pub const NOW: i64 = 1_800_000_000;

/// API keys of the clients in [`BASE_CONFIG`]; the config holds only their hashes.
pub const SHOP_KEY: &str = "sk_test_shop_0123456789abcdefghijklmnopqrstuv";
pub const OTHER_KEY: &str = "sk_test_other_0123456789abcdefghijklmnopqrstu";

/// Two clients: `shop_123` (audience `chatbot`, scopes, fixed claims, 30m,
/// a rate limit of 1000/s) and `other` (audience `plugin`, no scopes).
pub fn base_config() -> String {
    let h = |k: &str| tokensmith::clients::hash_line(&tokensmith::clients::api_key_hash(k));
    format!(
        r##"
issuer = "https://issuer.test"

[tokens]
default_ttl = "5m"
max_ttl = "24h"
leeway = "60s"

[[clients]]
id = "shop_123"
audience = "chatbot"
audiences = ["chatbot-admin"]
api_keys = ["{shop}"]
public_key = "pk_test_shop_123"
allowed_origins = ["https://shop.example.com"]
scopes = ["read:orders", "write:orders", "chat"]
max_ttl = "30m"
claims = {{ storeId = "st_1", appId = "app_9", installationId = "in_4" }}
allowed_claims = ["tier"]
rate_limit = "1000/s"
guest_scopes = ["chat"]
config = {{ displayName = "Support", color = "#3366ff" }}

[[clients]]
id = "other"
audience = "plugin"
api_keys = ["{other}"]
"##,
        shop = h(SHOP_KEY),
        other = h(OTHER_KEY)
    )
}

/// The fixture ring: `rsa2048` active, `rsa2048_b` next, both published at `now`.
pub fn fixture_ring(now: i64) -> KeyRing {
    let key = |stem: &str, state| {
        let signing = SigningKey::from_pkcs8(Algorithm::RS256, &pkcs8(stem)).unwrap();
        RingKey::fresh(signing, state, now).unwrap()
    };
    KeyRing::from_keys(vec![key("rsa2048", KeyState::Active), key("rsa2048_b", KeyState::Next)]).unwrap()
}

/// A response, read whole.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    /// The `error` code of an error body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The service in-process.
pub struct TestApp {
    pub state: Arc<AppState>,
    pub clock: Arc<ManualClock>,
    pub router: Router,
}

impl TestApp {
    /// From a config text, with a memory store of the default capacity.
    pub fn new(toml: &str) -> TestApp {
        TestApp::with_store(toml, AnyStore::Memory(MemoryStore::new(1_000_000)))
    }

    pub fn with_store(toml: &str, store: AnyStore) -> TestApp {
        let cfg = Config::from_toml_str(toml, Vec::<(String, String)>::new()).unwrap();
        let clients = ClientRegistry::from_clients(&cfg.clients).unwrap();
        let clock = ManualClock::new(NOW);
        let shared: SharedClock = clock.clone();
        let state = Arc::new(AppState::new(cfg, &fixture_ring(NOW), clients, store, shared).unwrap());
        let router = app(Arc::clone(&state));
        TestApp { state, clock, router }
    }

    /// The base config: see [`base_config`].
    pub fn base() -> TestApp {
        TestApp::new(&base_config())
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Resp { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Request::get(path).body(Body::empty()).unwrap()).await
    }

    /// POSTs JSON with `Authorization: Bearer <key>` when a key is given.
    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Resp {
        let mut req = Request::post(path).header("content-type", "application/json");
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        self.send(req.body(Body::from(body.to_string())).unwrap()).await
    }

    /// Issues a token for `shop_123` and returns it.
    pub async fn token(&self, body: &Value) -> String {
        let r = self.post("/v1/tokens", Some(SHOP_KEY), body).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", String::from_utf8_lossy(&r.body));
        r.json()["token"].as_str().unwrap().to_owned()
    }
}

/// The built `tokensmith` binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tokensmith")
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tokensmith serve` as a child process, killed on drop.
pub struct Spawned {
    pub child: Child,
    pub base: String,
    pub port: u16,
}

impl Spawned {
    /// Starts `tokensmith --config <config> serve --listen 127.0.0.1:<port>`
    /// in `dir`, and waits (bounded) until `/healthz` answers; panics if it
    /// does not (see [`try_start`](Spawned::try_start)).
    pub fn start(dir: &Path, config: &Path, port: u16, extra_env: &[(&str, &str)]) -> Spawned {
        Spawned::try_start(dir, config, port, extra_env).unwrap_or_else(|why| panic!("{why}"))
    }

    /// As [`start`](Spawned::start), but an instance that exits (its port
    /// taken, its store unreachable: the reason is on the test's stderr) or
    /// never answers is an `Err`, so a caller can retry on other ports.
    pub fn try_start(dir: &Path, config: &Path, port: u16, extra_env: &[(&str, &str)]) -> Result<Spawned, String> {
        let mut cmd = Command::new(binary());
        cmd.current_dir(dir)
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("TOKENSMITH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut s = Spawned {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
        };
        s.try_wait_healthy(Duration::from_secs(20))?;
        Ok(s)
    }

    /// Polls until *this* process answers `GET /healthz` with 200 and its
    /// body: a TCP connect alone is not enough, since the listener is bound
    /// before the store connects (a start-up that then fails resets every
    /// connection waiting on it), and another process may hold the port (a
    /// Redis, or a cluster node's bus port), which answers a request with a
    /// reset. Panics after `within`, or once the process has exited.
    pub fn wait_healthy(&mut self, within: Duration) {
        self.try_wait_healthy(within).unwrap_or_else(|why| panic!("{why}"));
    }

    fn try_wait_healthy(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "tokensmith on port {} exited with {status} before /healthz answered (its log is above)",
                    self.port
                ));
            }
            if healthz_answers(self.port) {
                // The answer may still come from another process on the
                // port while ours is failing to bind: ours must be alive.
                if let Ok(None) = self.child.try_wait() {
                    return Ok(());
                }
                continue;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "tokensmith did not answer /healthz on port {} within {within:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Whether a tokensmith answers `GET /healthz` on `port`: 200 and
/// `{"status":"ok"}`, within a second.
fn healthz_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.starts_with("HTTP/1.1 200") && text.contains(r#"{"status":"ok"}"#)
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
