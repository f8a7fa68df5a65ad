//! The service as a real process on a real socket: issuing and verifying
//! over HTTP, a rotation made by another process, interop with josekit and
//! with the CLI over the published JWKS, hostile bytes on the wire, and the
//! signals (SIGTERM drains and exits 0, SIGHUP reloads clients).
//!
//! Every wait is a bounded poll with sleeps of at most 50 ms, for something
//! a real process must do: start, notice `keyring.json`, take a signal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::{self, kid_in, token_part};
use crate::harness::{self, Spawned, SHOP_KEY};

const POLL: Duration = Duration::from_millis(50);
const WITHIN: Duration = Duration::from_secs(5);

/// Polls `f` every 50 ms until it gives `Some`, for at most `within`.
fn poll<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up after {within:?} waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// The suite's base config on `port`, with its keys in `<dir>/keys`, and
/// `more` (further `[[clients]]`) before the `[keys]` table.
fn config_text(dir: &Path, port: u16, alg: &str, more: &str) -> String {
    let base = harness::base_config().replace(
        "issuer = \"https://issuer.test\"",
        &format!("issuer = \"http://127.0.0.1:{port}\""),
    );
    assert!(
        base.contains(&format!(":{port}\"")),
        "base_config's issuer line changed"
    );
    format!(
        "{base}\n{more}\n[keys]\ndir = \"{}\"\nalgorithm = \"{alg}\"\n",
        dir.join("keys").display()
    )
}

/// A running `tokensmith serve` with the base config in a temp dir.
struct Server {
    proc: Spawned,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(alg: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = harness::free_port();
        let config = dir.path().join("server.toml");
        std::fs::write(&config, config_text(dir.path(), port, alg, "")).unwrap();
        // An empty folder that exists: serve makes the ring there.
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        let proc = Spawned::start(dir.path(), &config, port, &[]);
        wait_healthy(port);
        Server { proc, dir }
    }

    fn keys(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.proc.port)
    }

    fn url(&self, path: &str) -> String {
        self.proc.url(path)
    }
}

/// Waits until `/healthz` answers 200: the server is past start-up and serving.
fn wait_healthy(port: u16) {
    poll(Duration::from_secs(20), "/healthz 200", || {
        let r = raw(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        (status(&r) == 200).then_some(())
    });
}

/// Writes `request` on a fresh connection and reads until the server closes
/// it (5 s at most). An I/O error reads as an empty answer.
fn raw(port: u16, request: &[u8]) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(WITHIN)).unwrap();
    let _ = s.write_all(request);
    read_all(&mut s)
}

fn read_all(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The status of a raw response, 0 when there is none.
fn status(resp: &str) -> u16 {
    resp.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The JSON body of a raw response.
fn body_json(resp: &str) -> Value {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {resp:?}"))
}

/// A raw POST of `body` with the shop's API key.
fn post_request(path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {SHOP_KEY}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn kill(signal: &str, pid: u32) {
    let st = Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
    assert!(st.success(), "kill {signal} {pid}");
}

/// Waits (bounded) for the child to exit; its exit code.
fn wait_exit(child: &mut std::process::Child, within: Duration) -> Option<i32> {
    poll(within, "the process to exit", || child.try_wait().unwrap()).code()
}

/// reqwest as the crate builds it: rustls over the crate's one crypto
/// provider (the crate's reqwest has none of its own), no redirects.
fn http_client() -> reqwest::Client {
    tokensmith::client::jwks::http_client(WITHIN).unwrap()
}

/// `POST /v1/tokens` as `key`; the whole answer.
async fn tokens(http: &reqwest::Client, base: &str, key: &str, body: Value) -> (u16, Value) {
    let r = http
        .post(format!("{base}/v1/tokens"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A token for the shop, asserted issued.
async fn shop_token(http: &reqwest::Client, base: &str, body: Value) -> String {
    let (st, v) = tokens(http, base, SHOP_KEY, body).await;
    assert_eq!(st, 200, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

/// `POST /v1/verify` as the shop.
async fn verify(http: &reqwest::Client, base: &str, token: &str) -> (u16, Value) {
    let r = http
        .post(format!("{base}/v1/verify"))
        .header("x-api-key", SHOP_KEY)
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn jwks_kids(http: &reqwest::Client, base: &str) -> Vec<String> {
    let v: Value = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Lines of a child's stdout or stderr, read by a thread.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn new(r: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx, seen: Vec::new() }
    }

    /// The first new line that `pred` accepts, within `within`.
    fn wait_for(&mut self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) => panic!("no matching line within {within:?} ({e}); saw {:#?}", self.seen),
            }
        }
    }

    /// Everything, once the process has exited and closed the pipe.
    fn all(mut self) -> Vec<String> {
        while let Ok(line) = self.rx.recv_timeout(WITHIN) {
            self.seen.push(line);
        }
        self.seen
    }
}

/// `tokensmith ARGS` serving on `port` in `cwd`, with stdout and stderr
/// (logs at `info`) captured line by line; killed on drop.
fn serve_captured(cwd: &Path, args: &[&str], port: u16) -> (Spawned, Lines, Lines) {
    let mut cmd = cli::tokensmith(cwd);
    cmd.args(args)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("TOKENSMITH_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let out = Lines::new(child.stdout.take().unwrap());
    let err = Lines::new(child.stderr.take().unwrap());
    let proc = Spawned {
        child,
        base: format!("http://127.0.0.1:{port}"),
        port,
    };
    wait_healthy(port);
    (proc, out, err)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_by_another_process_reaches_the_running_server() {
    let srv = Server::start("RS256");
    let base = srv.proc.base.clone();
    let http = http_client();
    let cwd = tempfile::tempdir().unwrap();

    let old = shop_token(&http, &base, json!({ "sub": "alice", "scopes": ["chat"] })).await;
    let (st, v) = verify(&http, &base, &old).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["valid"], true);
    assert_eq!(v["claims"]["sub"], "alice");
    assert_eq!(v["claims"]["iss"], srv.issuer());
    let before = cli::list(cwd.path(), &srv.keys());
    let old_kid = token_part(&old, 0)["kid"].as_str().unwrap().to_owned();
    assert_eq!(old_kid, kid_in(&before, "active"));

    cli::run(
        cwd.path(),
        &["keys", "rotate", "--dir", srv.keys().to_str().unwrap(), "--now"],
    )
    .ok();
    let after = cli::list(cwd.path(), &srv.keys());
    let (active, next) = (kid_in(&after, "active"), kid_in(&after, "next"));
    assert_eq!(active, kid_in(&before, "next"));

    let started = Instant::now();
    let mut fresh = String::new();
    while Instant::now() < started + WITHIN {
        let kids = jwks_kids(&http, &base).await;
        fresh = shop_token(&http, &base, json!({ "sub": "bob" })).await;
        if kids.contains(&next) && token_part(&fresh, 0)["kid"] == active.as_str() {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(
        token_part(&fresh, 0)["kid"],
        active.as_str(),
        "the server did not pick up the rotation within {WITHIN:?}"
    );
    let kids = jwks_kids(&http, &base).await;
    assert_eq!(kids, [next.clone(), active.clone(), old_kid.clone()], "newest first");

    // Tokens of the retired key still verify; so do the new ones.
    let (st, v) = verify(&http, &base, &old).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = verify(&http, &base, &fresh).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["claims"]["sub"], "bob");
    let ready: Value = http.get(srv.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["kid"], active.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verifier_with_only_the_published_jwks_accepts_our_tokens() {
    let srv = Server::start("RS256");
    let base = srv.proc.base.clone();
    let http = http_client();
    let token = shop_token(&http, &base, json!({ "sub": "carol", "scopes": ["read:orders"] })).await;

    let resp = http.get(srv.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let cache = resp.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(cache.starts_with("public, max-age="), "{cache}");
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let jwks = resp.bytes().await.unwrap();
    let again = http
        .get(srv.url("/.well-known/jwks.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // josekit, knowing nothing but that JWKS.
    let set = josekit::jwk::JwkSet::from_bytes(&jwks).unwrap();
    let kid = token_part(&token, 0)["kid"].as_str().unwrap().to_owned();
    let found = set.get(&kid);
    assert_eq!(found.len(), 1, "kid {kid} in the JWKS");
    let verifier = josekit::jws::RS256.verifier_from_jwk(found[0]).unwrap();
    let (payload, header) = josekit::jwt::decode_with_verifier(&token, &verifier).unwrap();
    assert_eq!(header.algorithm(), Some("RS256"));
    assert_eq!(header.token_type(), Some("JWT"));
    assert_eq!(payload.issuer(), Some(srv.issuer().as_str()));
    assert_eq!(payload.subject(), Some("carol"));
    assert_eq!(payload.audience(), Some(vec!["chatbot"]));
    assert_eq!(payload.claim("storeId"), Some(&json!("st_1")));
    assert_eq!(payload.claim("scopes"), Some(&json!(["read:orders"])));
    let mut forged = token.clone();
    forged.insert_str(token.find('.').unwrap() + 1, "eyJ4IjoxfQ");
    assert!(josekit::jwt::decode_with_verifier(&forged, &verifier).is_err());

    // The CLI, fetching the JWKS itself (http is allowed for loopback).
    let cwd = tempfile::tempdir().unwrap();
    let jwks_url = srv.url("/.well-known/jwks.json");
    let iss = srv.issuer();
    let args = ["verify", &token, "--jwks", &jwks_url, "--iss", &iss, "--aud", "chatbot"];
    let out = cli::run(cwd.path(), &args);
    let claims: Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(claims["sub"], "carol");
    assert_eq!(claims["installationId"], "in_4");
    let out = cli::run(
        cwd.path(),
        &["verify", &token, "--jwks", &jwks_url, "--iss", &iss, "--aud", "plugin"],
    );
    out.fails("wrong_audience");
    // Plain http anywhere but loopback is refused before any request.
    let out = cli::run(
        cwd.path(),
        &[
            "verify",
            &token,
            "--jwks",
            "http://issuer.example/.well-known/jwks.json",
            "--aud",
            "chatbot",
        ],
    );
    assert!(out.fails("invalid_request").contains("https"), "{}", out.stderr);
}

#[test]
fn hostile_bytes_get_a_4xx_and_the_server_keeps_serving() {
    let srv = Server::start("ES256");
    let port = srv.proc.port;
    let healthy = || {
        let r = raw(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(status(&r), 200, "{r:?}");
    };

    // A header name that is not ASCII.
    let r = raw(
        port,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-\xc3\xa9t\xff: 1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&r), 400, "{r:?}");
    healthy();

    // An API key with bytes that are not ASCII.
    let mut req = b"POST /v1/tokens HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer sk_\xff\xfe\x80\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n".to_vec();
    req.extend_from_slice(br#"{"sub":"bob"}"#);
    let r = raw(port, &req);
    assert_eq!(status(&r), 401, "{r:?}");
    assert_eq!(body_json(&r)["error"], "invalid_api_key");
    healthy();

    // 1 MiB, announced by Content-Length: 413 without reading it all. The
    // body is written by another thread while this one reads the answer.
    let big = vec![b' '; 1 << 20];
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WITHIN)).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&post_request("/v1/tokens", Some("application/json"), &big));
    });
    let mut got = Vec::new();
    let mut chunk = [0u8; 512];
    while !got.ends_with(b"}") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    let r = String::from_utf8_lossy(&got).into_owned();
    assert_eq!(status(&r), 413, "{r:?}");
    assert_eq!(body_json(&r)["error"], "request_too_large");
    drop(s);
    writer.join().unwrap();
    healthy();

    // Malformed JSON.
    let r = raw(
        port,
        &post_request("/v1/tokens", Some("application/json"), br#"{"sub": "bob""#),
    );
    assert_eq!(status(&r), 400, "{r:?}");
    assert_eq!(body_json(&r)["error"], "invalid_request");
    healthy();

    // No Content-Type.
    let r = raw(port, &post_request("/v1/tokens", None, br#"{"sub":"bob"}"#));
    assert!((400..500).contains(&status(&r)), "{r:?}");
    assert_eq!(body_json(&r)["error"], "invalid_request");
    healthy();

    // Truncated: a body shorter than its Content-Length, and a request line
    // cut short, each followed by the end of the stream.
    let mut req = post_request("/v1/tokens", Some("application/json"), br#"{"sub":"bob"}"#);
    req.truncate(req.len() - 5);
    for partial in [req, b"GET /heal".to_vec()] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(WITHIN)).unwrap();
        s.write_all(&partial).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let r = read_all(&mut s);
        assert!(r.is_empty() || (400..500).contains(&status(&r)), "{r:?}");
        healthy();
    }

    // And a well-formed request still works.
    let r = raw(
        port,
        &post_request("/v1/tokens", Some("application/json"), br#"{"sub":"bob"}"#),
    );
    assert_eq!(status(&r), 200, "{r:?}");
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let mut srv = Server::start("ES256");
    let port = srv.proc.port;

    // An idle keep-alive connection must not hold the shutdown up.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    assert!(idle.read(&mut buf).unwrap() > 0);

    // A request whose handler is running, waiting for its body: `Expect:
    // 100-continue` makes the server say so when it starts reading it.
    let body = br#"{"sub":"in-flight"}"#;
    let mut req = post_request("/v1/tokens", Some("application/json"), body);
    req.truncate(req.len() - body.len());
    let head = String::from_utf8(req)
        .unwrap()
        .replace("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WITHIN)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );

    kill("-TERM", srv.proc.child.id());
    // New connections are refused once the signal is taken ...
    poll(WITHIN, "the listener to close", || {
        TcpStream::connect(("127.0.0.1", port)).is_err().then_some(())
    });
    assert!(
        srv.proc.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    // ... while the request in flight completes.
    s.write_all(body).unwrap();
    let r = read_all(&mut s);
    assert_eq!(status(&r), 200, "{r:?}");
    assert!(body_json(&r)["token"].is_string());

    assert_eq!(wait_exit(&mut srv.proc.child, WITHIN), Some(0));
    drop(idle);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_clients_and_keeps_them_on_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let port = harness::free_port();
    let config = dir.path().join("server.toml");
    std::fs::write(&config, config_text(dir.path(), port, "ES256", "")).unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let conf = config.to_str().unwrap().to_owned();
    let (proc, _out, mut logs) = serve_captured(dir.path(), &["--config", &conf, "serve"], port);
    let pid = proc.child.id();
    let http = http_client();

    // A key made the documented way.
    let made = cli::run(dir.path(), &["apikey", "create", "--client", "third"]);
    let text = made.ok();
    let key = text.lines().find(|l| l.starts_with("sk_live_")).unwrap().to_owned();
    let line = text.lines().find(|l| l.starts_with("api_keys = ")).unwrap();
    let (st, v) = tokens(&http, &proc.base, &key, json!({ "sub": "dan" })).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("invalid_api_key")));

    let third = format!("[[clients]]\nid = \"third\"\naudience = \"widgets\"\n{line}\n");
    std::fs::write(&config, config_text(dir.path(), port, "ES256", &third)).unwrap();
    kill("-HUP", pid);
    let started = Instant::now();
    let token = loop {
        let (st, v) = tokens(&http, &proc.base, &key, json!({ "sub": "dan" })).await;
        if st == 200 {
            break v["token"].as_str().unwrap().to_owned();
        }
        assert!(started.elapsed() < WITHIN, "the new key was not accepted: {st} {v}");
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(token_part(&token, 1)["aud"], "widgets");
    shop_token(&http, &proc.base, json!({ "sub": "alice" })).await;
    // One line says what the reload changed, by client id.
    let line = logs.wait_for(WITHIN, |l| l.contains("SIGHUP"));
    assert!(line.contains("INFO"), "{line}");
    assert!(
        line.contains("clients reloaded: 1 added (third), 0 removed, 0 changed, 2 unchanged"),
        "{line}"
    );

    // A config that does not load: logged, and the current clients stay.
    std::fs::write(&config, "[[clients]]\nid = \"x\"\nbogus = 1\n").unwrap();
    kill("-HUP", pid);
    let line = logs.wait_for(WITHIN, |l| l.contains("SIGHUP"));
    assert!(line.contains("did not load"), "{line}");
    assert!(!line.contains(&key), "{line}");
    let (st, v) = tokens(&http, &proc.base, &key, json!({ "sub": "dan" })).await;
    assert_eq!(st, 200, "{v}");
    shop_token(&http, &proc.base, json!({ "sub": "alice" })).await;

    // An empty config file loads (embedded defaults) but names no client:
    // refused at ERROR, and every API key keeps working.
    std::fs::write(&config, "").unwrap();
    kill("-HUP", pid);
    let line = logs.wait_for(WITHIN, |l| l.contains("SIGHUP"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("remove all 3 clients"), "{line}");
    let (st, v) = tokens(&http, &proc.base, &key, json!({ "sub": "dan" })).await;
    assert_eq!(st, 200, "{v}");
    shop_token(&http, &proc.base, json!({ "sub": "alice" })).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_dev_prints_its_keys_once_and_they_work() {
    let cwd = tempfile::tempdir().unwrap();
    let port = harness::free_port();
    let (mut proc, mut out, err) = serve_captured(cwd.path(), &["serve", "--dev"], port);
    // Blocking here is fine: the test body is not on a runtime worker.
    let pick = |l: &str, label: &str| l.split(label).nth(1).unwrap().trim().to_owned();
    let api_key = pick(&out.wait_for(WITHIN, |l| l.contains("API key:")), "API key:");
    let public_key = pick(&out.wait_for(WITHIN, |l| l.contains("public key:")), "public key:");
    assert!(api_key.starts_with("sk_live_") && api_key.len() == 8 + 43, "{api_key}");
    assert!(public_key.starts_with("pk_live_"), "{public_key}");

    let http = http_client();
    let (st, v) = tokens(
        &http,
        &proc.base,
        &api_key,
        json!({ "sub": "user-1", "scopes": ["anything"] }),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let claims = token_part(v["token"].as_str().unwrap(), 1);
    assert_eq!(claims["aud"], "dev");
    assert_eq!(claims["iss"], format!("http://127.0.0.1:{port}"));
    assert_eq!(claims["scopes"], json!(["anything"]));
    let (st, _) = tokens(&http, &proc.base, "sk_live_wrong", json!({ "sub": "user-1" })).await;
    assert_eq!(st, 401);

    // A line to copy, and a file another terminal can source (0600).
    let export = out.wait_for(WITHIN, |l| l.contains("export DEV_API_KEY="));
    assert_eq!(export.trim(), format!("export DEV_API_KEY={api_key}"));
    let env_file = cwd.path().join("keys/dev.env");
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(env.contains(&format!("export DEV_API_KEY={api_key}\n")), "{env}");
    assert!(env.contains(&format!("export DEV_PUBLIC_KEY={public_key}\n")), "{env}");
    assert!(
        env.contains(&format!("export TOKENSMITH_URL=http://127.0.0.1:{port}\n")),
        "{env}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let sourced = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && printf %s \"$DEV_API_KEY\"", env_file.display()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(sourced.stdout).unwrap(), api_key);

    // The keys were made in ./keys.
    let records = cli::list(cwd.path(), Path::new("keys"));
    assert_eq!(records.len(), 2);
    assert!(cwd.path().join("keys/keyring.json").exists());

    kill("-TERM", proc.child.id());
    assert_eq!(wait_exit(&mut proc.child, WITHIN), Some(0));
    let stdout = out.all();
    let stderr = err.all();
    let announced = stdout.iter().filter(|l| l.contains("API key:")).count();
    assert_eq!(announced, 1, "{stdout:#?}");
    assert!(
        !stderr.iter().any(|l| l.contains(&api_key)),
        "the API key is in the logs: {stderr:#?}"
    );
    assert!(!stderr.is_empty(), "logs at info are expected on stderr");
}
