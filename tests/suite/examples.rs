//! The examples, run as a user would run them: built once with
//! `cargo build --example …`, started as child processes pointed (by their
//! environment) at a tokensmith on a loopback port, exercised over HTTP,
//! and killed.
//!
//! tokensmith here is the in-process service of [`Served`], on the system
//! clock (the examples verify and cache on it), so the test can read how many
//! tokens it issued from its metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokensmith::client::jwks::http_client;
use tokensmith::{Clock, SystemClock};

use crate::harness::SHOP_KEY;
use crate::redis_harness::RedisServer;
use crate::remote_jwks::Served;

/// Builds the examples once per test run; the directory they are in.
///
/// With the whole workspace selected, so with the features that the
/// dev-dependencies turn on, as in this test binary's own build (which has
/// already built the library and every dependency): `-p tokensmith-examples`
/// alone resolves features without them (no tokio `test-util`, for one) and
/// rebuilds some forty crates, tokio and the library among them.
pub(crate) fn examples_dir() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
            "build",
            "--quiet",
            "--workspace",
            "--example",
            "identity_backend",
            "--example",
            "plugin_backend",
        ]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        if cfg!(feature = "ring") && !cfg!(feature = "aws-lc") {
            cmd.args(["--no-default-features", "--features", "ring"]);
        }
        let status = cmd.status().expect("run cargo build --example");
        assert!(status.success(), "cargo build of the examples failed");
        // This test binary is target/<profile>/deps/suite-…; examples sit in
        // target/<profile>/examples, wherever the target directory is.
        let exe = std::env::current_exe().unwrap();
        exe.parent().and_then(|deps| deps.parent()).unwrap().join("examples")
    })
}

/// An example as a child process, killed on drop.
struct Example {
    child: Child,
    base: String,
}

impl Example {
    /// Starts `name` with `env` and `LISTEN=127.0.0.1:0`, and reads the
    /// address it prints (bounded).
    fn start(name: &str, env: &[(&str, &str)]) -> Example {
        let path = examples_dir().join(name);
        let mut cmd = Command::new(&path);
        cmd.env("LISTEN", "127.0.0.1:0")
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{name} printed no address: {e}"));
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("{name} printed {line:?}"))
            .to_owned();
        Example { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The in-process tokensmith, on the system clock.
async fn tokensmith() -> Served {
    let served = Served::start().await;
    served.app.clock.set(SystemClock.now());
    served
}

/// The same, keeping its replay marks and revocations in `redis`.
async fn tokensmith_on(redis: &RedisServer) -> Served {
    let served = Served::start_with_redis(&redis.url).await;
    served.app.clock.set(SystemClock.now());
    served
}

fn issued_count(served: &Served) -> u64 {
    let text = served.app.state.metrics.render(0);
    text.lines()
        .find_map(|l| l.strip_prefix("tokensmith_tokens_issued_total{client=\"shop_123\"} "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

fn http() -> reqwest::Client {
    http_client(Duration::from_secs(10)).unwrap()
}

/// Signs in as `user`; the session cookie.
async fn login(http: &reqwest::Client, backend: &Example, user: &str) -> String {
    let resp = http
        .post(backend.url("/login"))
        .json(&json!({ "user": user }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    cookie.split(';').next().unwrap().to_owned()
}

/// `GET /chat` as JSON (owned arguments, so it can run in a task).
async fn chat_json(http: reqwest::Client, url: String, cookie: String) -> Value {
    let resp = http
        .get(url)
        .header("cookie", cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_backend_hands_each_signed_in_user_a_cached_chatbot_token() {
    let served = tokensmith().await;
    let backend = Example::start(
        "identity_backend",
        &[("ISSUER_URL", &served.base), ("ISSUER_API_KEY", SHOP_KEY)],
    );
    let http = http();

    let anonymous = http.get(backend.url("/chat")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let alice = login(&http, &backend, "alice").await;
    let first = chat_json(http.clone(), backend.url("/chat"), alice.clone()).await;
    let token = first["token"].as_str().unwrap().to_owned();
    // A real tokensmith token for alice, for the shop's chatbot.
    let verifier = served.verifier();
    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.aud.as_slice()),
        ("alice", &["chatbot".to_owned()][..])
    );
    assert_eq!(claims.scopes, ["chat"]);

    // Reloads reuse it; the HTML page embeds it.
    assert_eq!(
        chat_json(http.clone(), backend.url("/chat"), alice.clone()).await["token"],
        token.as_str()
    );
    let page = http
        .get(backend.url("/chat"))
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("data-token=\"{token}\"")), "{html}");
    assert_eq!(issued_count(&served), 1);

    // Another user, another token.
    let bob = login(&http, &backend, "bob").await;
    let bobs = chat_json(http.clone(), backend.url("/chat"), bob.clone()).await;
    assert_ne!(bobs["token"], token.as_str());
    assert_eq!(issued_count(&served), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_identity_backend_processes_sharing_redis_issue_one_token_per_user() {
    let redis = RedisServer::start();
    let served = tokensmith().await;
    let env = [
        ("ISSUER_URL", served.base.as_str()),
        ("ISSUER_API_KEY", SHOP_KEY),
        ("REDIS_URL", redis.url.as_str()),
    ];
    let one = Example::start("identity_backend", &env);
    let two = Example::start("identity_backend", &env);
    let http = http();
    let (c1, c2) = (login(&http, &one, "carol").await, login(&http, &two, "carol").await);
    // Both processes asked at once, for the same user.
    let mut asks = Vec::new();
    for i in 0..10 {
        let (backend, cookie) = if i % 2 == 0 { (&one, &c1) } else { (&two, &c2) };
        asks.push(tokio::spawn(chat_json(
            http.clone(),
            backend.url("/chat"),
            cookie.clone(),
        )));
    }
    let mut answers = Vec::new();
    for a in asks {
        answers.push(a.await.unwrap());
    }
    let token = answers[0]["token"].clone();
    assert!(answers.iter().all(|a| a["token"] == token), "{answers:?}");
    assert_eq!(issued_count(&served), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_backend_accepts_only_scoped_tokens_and_consumes_on_write() {
    let served = tokensmith().await;
    let plugin = Example::start(
        "plugin_backend",
        &[("ISSUER_URL", &served.base), ("AUDIENCE", "chatbot")],
    );
    // Its memory store consumes no token issued before it started (an
    // earlier run may have): tokens from here on, by the real clock.
    served.app.clock.set(SystemClock.now());
    let http = http();
    let call = |method: reqwest::Method, token: Option<String>| {
        let req = http.request(method, plugin.url("/orders"));
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, challenge, body)
        }
    };

    let (s, ch, body) = call(reqwest::Method::GET, None).await;
    assert_eq!((s, ch.as_deref()), (StatusCode::UNAUTHORIZED, Some("Bearer")));
    assert_eq!(body["error"], "invalid_token");

    let (s, _, body) = call(reqwest::Method::GET, Some(served.token(&["read:orders"]).await)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["sub"], "user-1");
    assert_eq!(body["store"], "st_1");

    let (s, ch, body) = call(reqwest::Method::GET, Some(served.token(&["chat"]).await)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "insufficient_scope");
    assert!(ch.unwrap().contains("scope=\"read:orders\""));

    let write = served.token(&["read:orders", "write:orders"]).await;
    let (s, _, body) = call(reqwest::Method::POST, Some(write.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, ch, body) = call(reqwest::Method::POST, Some(write.clone())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "token_replayed");
    assert!(ch.unwrap().starts_with("Bearer error=\"invalid_token\""));
    // Reading with the consumed token still works: only the write route consumes.
    assert_eq!(call(reqwest::Method::GET, Some(write)).await.0, StatusCode::OK);

    // A token for another audience (client `other`: audience `plugin`).
    let other = served
        .app
        .post("/v1/tokens", Some(crate::harness::OTHER_KEY), &json!({"sub": "x"}))
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _, body) = call(reqwest::Method::GET, Some(other)).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("wrong_audience"))
    );
    assert!(served.hits.ok.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_backend_sharing_tokensmith_s_redis_sees_its_consumes_and_revocations() {
    let redis = RedisServer::start();
    let served = tokensmith_on(&redis).await;
    let plugin = Example::start(
        "plugin_backend",
        &[
            ("ISSUER_URL", &served.base),
            ("AUDIENCE", "chatbot"),
            ("REDIS_URL", &redis.url),
        ],
    );
    let http = http();
    let orders = |method: reqwest::Method, token: &str| {
        let req = http.request(method, plugin.url("/orders")).bearer_auth(token);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, body["error"].as_str().unwrap_or_default().to_owned())
        }
    };
    let scopes = ["read:orders", "write:orders"];

    // Consumed at tokensmith (`/v1/verify` with consume): refused by the plugin's write route.
    let spent = served.token(&scopes).await;
    let r = served
        .app
        .post("/v1/verify", Some(SHOP_KEY), &json!({"token": spent, "consume": true}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        orders(reqwest::Method::POST, &spent).await,
        (StatusCode::UNAUTHORIZED, "token_replayed".into())
    );

    // Consumed by the plugin: refused by tokensmith.
    let used = served.token(&scopes).await;
    assert_eq!(orders(reqwest::Method::POST, &used).await.0, StatusCode::CREATED);
    let r = served
        .app
        .post("/v1/verify", Some(SHOP_KEY), &json!({"token": used, "consume": true}))
        .await;
    assert_eq!(r.error(), "token_replayed");

    // Revoked at tokensmith: refused by the plugin on every route.
    let revoked = served.token(&scopes).await;
    assert_eq!(orders(reqwest::Method::GET, &revoked).await.0, StatusCode::OK);
    let payload = tokensmith::jose::jws::decode(&revoked).unwrap().into_payload();
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    let r = served
        .app
        .post("/v1/revoke", Some(SHOP_KEY), &json!({"jti": claims["jti"]}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        orders(reqwest::Method::GET, &revoked).await,
        (StatusCode::UNAUTHORIZED, "token_revoked".into())
    );
    assert_eq!(
        orders(reqwest::Method::POST, &revoked).await,
        (StatusCode::UNAUTHORIZED, "token_revoked".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_backend_serves_the_sdk_demo_and_its_two_host_endpoints() {
    let served = tokensmith().await;
    let backend = Example::start(
        "identity_backend",
        &[
            ("ISSUER_URL", &served.base),
            ("ISSUER_API_KEY", SHOP_KEY),
            ("ISSUER_PUBLIC_KEY", "pk_test_shop_123"),
        ],
    );
    let http = http();
    let post = |path: &str, cookie: Option<&str>| {
        let req = http.post(backend.url(path));
        let req = match cookie {
            Some(c) => req.header("cookie", c),
            None => req,
        };
        async move { req.send().await.unwrap() }
    };

    // Nobody signed in: both endpoints refuse, in tokensmith's error shape.
    for path in ["/api/widget-auth", "/api/visitor-token"] {
        let r = post(path, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_signed_in");
    }

    // The auth endpoint: a fresh token for the user on each call (the SDK
    // caches), with expires_in, never cached by the browser.
    let alice = login(&http, &backend, "alice").await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let r = post("/api/widget-auth", Some(&alice)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["expires_in"], 300);
        let token = body["token"].as_str().unwrap().to_owned();
        let claims = served.verifier().verify(&token).await.unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(body["expires_at"], claims.exp);
        tokens.push(token);
    }
    assert_ne!(tokens[0], tokens[1]);
    assert_eq!(issued_count(&served), 2);

    // The visitor token: text, single use at tokensmith's /v1/exchange.
    let r = post("/api/visitor-token", Some(&alice)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let visitor = r.text().await.unwrap();
    let exchange = json!({ "token": visitor });
    let first = served.app.post("/v1/exchange", None, &exchange).await;
    assert_eq!(first.status, 200, "{:?}", first.json());
    let session = first.json()["token"].as_str().unwrap().to_owned();
    let claims = served.verifier().verify(&session).await.unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.scopes.as_slice()),
        ("alice", &["chat".to_owned()][..])
    );
    assert!(first.json()["refresh_token"].is_string());
    assert_eq!(
        served.app.post("/v1/exchange", None, &exchange).await.error(),
        "token_replayed"
    );

    // The pages carry tokensmith's address and the public key, escaped.
    for path in ["/", "/widget"] {
        let html = http.get(backend.url(path)).send().await.unwrap().text().await.unwrap();
        assert!(html.contains(&format!("data-issuer=\"{}\"", served.base)), "{path}");
        assert!(html.contains("/sdk/v1/tokensmith.js"), "{path}");
    }
    let widget = http
        .get(backend.url("/widget"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(widget.contains("data-client-key=\"pk_test_shop_123\""));

    // Signing out ends the session: the endpoints refuse again.
    let r = post("/logout", Some(&alice)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(
        post("/api/widget-auth", Some(&alice)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post("/api/visitor-token", Some(&alice)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_backend_says_why_it_has_no_token() {
    let http = http_client(Duration::from_secs(10)).unwrap();
    // A wrong API key: tokensmith refused, and the answer says so.
    let served = tokensmith().await;
    let backend = Example::start(
        "identity_backend",
        &[
            ("ISSUER_URL", &served.base),
            ("ISSUER_API_KEY", "sk_test_not_a_key_of_any_client"),
        ],
    );
    let alice = login(&http, &backend, "alice").await;
    let r = http
        .get(backend.url("/chat"))
        .header("cookie", &alice)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "issuer_refused", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("401 invalid_api_key"),
        "{body}"
    );

    // tokensmith gone: unreachable, a different answer.
    let port = crate::harness::free_port();
    let gone = Example::start(
        "identity_backend",
        &[
            ("ISSUER_URL", &format!("http://127.0.0.1:{port}")),
            ("ISSUER_API_KEY", SHOP_KEY),
        ],
    );
    let bob = login(&http, &gone, "bob").await;
    let r = http
        .get(gone.url("/chat"))
        .header("cookie", &bob)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "issuer_unavailable", "{body}");
}

#[test]
fn an_example_that_cannot_listen_says_where_in_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(examples_dir().join("identity_backend"))
        .env("LISTEN", &addr)
        .env("ISSUER_API_KEY", SHOP_KEY)
        .env_remove("REDIS_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
    assert!(!stderr.contains("Os {"), "{stderr}");
}
