//! The widget and session flows end to end: the session check against a
//! real HTTP server on loopback, guest tokens and their Origin verdicts,
//! CORS, refresh-token rotation (memory and Redis), the public config, and
//! the seed flow (backend mints a visitor token, the widget exchanges and
//! refreshes it, a plugin backend verifies the result).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokensmith::store::redis::RedisStore;
use tokensmith::store::AnyStore;

use super::harness::{base_config, free_port, Resp, TestApp, SHOP_KEY};
use super::redis_harness::RedisServer;

const SHOP_ORIGIN: &str = "https://shop.example.com";
const SHOP_PK: &str = "pk_test_shop_123";

// ---------------------------------------------------------------------------
// Helpers

/// POSTs JSON with the given extra headers.
async fn post_with(app: &TestApp, path: &str, headers: &[(&str, &str)], body: &Value) -> Resp {
    let mut req = Request::post(path).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.send(req.body(Body::from(body.to_string())).unwrap()).await
}

/// A request with the given method, path and headers, and no body.
async fn send_empty(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.send(req.body(Body::empty()).unwrap()).await
}

async fn guest(app: &TestApp, origin: Option<&str>) -> Resp {
    let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
    post_with(app, "/v1/guest", &headers, &json!({ "client_key": SHOP_PK })).await
}

async fn refresh(app: &TestApp, token: &str) -> Resp {
    post_with(
        app,
        "/v1/refresh",
        &[("origin", SHOP_ORIGIN)],
        &json!({ "refresh_token": token }),
    )
    .await
}

/// Verifies `token` as `shop_123`'s backend would, and returns its claims.
async fn verified_claims(app: &TestApp, token: &str, scopes: &[&str]) -> Value {
    let r = app
        .post(
            "/v1/verify",
            Some(SHOP_KEY),
            &json!({ "token": token, "scopes": scopes }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    r.json()["claims"].clone()
}

fn ok_json(r: &Resp) -> Value {
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn assert_error(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error(), code);
}

/// Every `Vary` value of a response, joined.
fn vary(r: &Resp) -> String {
    r.headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

// ---------------------------------------------------------------------------
// A real session-check server on loopback

/// What the check server saw.
#[derive(Clone, Default)]
struct Seen {
    hits: Arc<AtomicUsize>,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Seen {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    fn record(&self, h: &HeaderMap) {
        self.hits.fetch_add(1, Ordering::SeqCst);
        self.headers.lock().unwrap().push(h.clone());
    }
}

/// `session=good` → the over-privileged user-1; `session=alice` → alice;
/// anything else 401.
async fn whoami(State(seen): State<Seen>, headers: HeaderMap) -> axum::response::Response {
    seen.record(&headers);
    let cookie = headers.get("cookie").and_then(|v| v.to_str().ok()).unwrap_or("");
    if cookie.contains("session=good") {
        Json(json!({
            "sub": "user-1",
            "scopes": ["chat", "read:orders", "admin:all"],
            "claims": { "tier": "gold", "storeId": "forged", "role": "admin" },
            "name": "Ann"
        }))
        .into_response()
    } else if cookie.contains("session=alice") {
        Json(json!({ "sub": "alice" })).into_response()
    } else {
        (StatusCode::UNAUTHORIZED, Json(json!({ "error": "signed out" }))).into_response()
    }
}

/// Sleeps well past the test's timeout, bounded.
async fn slow(State(seen): State<Seen>, headers: HeaderMap) -> Json<Value> {
    seen.record(&headers);
    tokio::time::sleep(Duration::from_secs(5)).await;
    Json(json!({ "sub": "late" }))
}

async fn broken(State(seen): State<Seen>, headers: HeaderMap) -> StatusCode {
    seen.record(&headers);
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn garbage(State(seen): State<Seen>, headers: HeaderMap) -> &'static str {
    seen.record(&headers);
    "<html>welcome</html>"
}

/// Starts the check server; returns its base URL and what it sees.
async fn check_server() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route("/slow", get(slow))
        .route("/broken", get(broken))
        .route("/garbage", get(garbage))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), seen)
}

/// The base config with a `[session]` for `shop_123`.
fn session_app(check_url: &str, timeout: &str, cache_ttl: &str) -> TestApp {
    TestApp::new(&format!(
        "{}\n[session]\ncheck_url = \"{check_url}\"\nclient = \"shop_123\"\ntimeout = \"{timeout}\"\ncache_ttl = \"{cache_ttl}\"\n",
        base_config()
    ))
}

async fn session_token(app: &TestApp, headers: &[(&str, &str)]) -> Resp {
    let mut req = Request::post("/v1/session/token");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.send(req.body(Body::empty()).unwrap()).await
}

// ---------------------------------------------------------------------------
// Session tokens

#[tokio::test]
async fn session_token_is_404_without_a_session_section() {
    let app = TestApp::base();
    let r = session_token(&app, &[("cookie", "session=good")]).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn an_accepted_session_gets_a_token_cut_to_the_client_policy() {
    let (base, seen) = check_server().await;
    let app = session_app(&format!("{base}/whoami"), "2s", "0s");
    let r = session_token(&app, &[("cookie", "session=good")]).await;
    let body = ok_json(&r);
    assert!(body.get("refresh_token").is_none(), "{body}");
    let claims = verified_claims(&app, str_of(&body, "token"), &["chat"]).await;
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["aud"], "chatbot");
    // admin:all is beyond shop_123's scopes: cut, not refused.
    assert_eq!(claims["scopes"], json!(["chat", "read:orders"]));
    // tier is an allowed claim; storeId is fixed (the check cannot forge it); role is not allowed.
    assert_eq!(claims["tier"], "gold");
    assert_eq!(claims["storeId"], "st_1");
    assert_eq!(claims["appId"], "app_9");
    assert!(claims.get("role").is_none() && claims.get("name").is_none(), "{claims}");
    assert_eq!(seen.hits(), 1);

    // An answer without scopes or claims: a token with only the fixed claims.
    let r = session_token(&app, &[("authorization", "Bearer x"), ("cookie", "session=alice")]).await;
    let claims = verified_claims(&app, str_of(&ok_json(&r), "token"), &[]).await;
    assert_eq!(claims["sub"], "alice");
    assert!(claims.get("scopes").is_none(), "{claims}");
    assert_eq!(claims["storeId"], "st_1");
}

#[tokio::test]
async fn only_cookie_and_authorization_reach_the_check() {
    let (base, seen) = check_server().await;
    let app = session_app(&format!("{base}/whoami"), "2s", "0s");
    let r = session_token(
        &app,
        &[
            ("cookie", "session=good; theme=dark"),
            ("authorization", "Bearer app-session-token"),
            ("x-api-key", SHOP_KEY),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
            ("x-custom", "1"),
            ("forwarded", "for=203.0.113.9"),
            ("origin", SHOP_ORIGIN),
            ("referer", "https://shop.example.com/page"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let got = seen.headers.lock().unwrap()[0].clone();
    assert_eq!(got.get("cookie").unwrap(), "session=good; theme=dark");
    assert_eq!(got.get("authorization").unwrap(), "Bearer app-session-token");
    for name in [
        "x-api-key",
        "x-forwarded-for",
        "x-real-ip",
        "x-custom",
        "forwarded",
        "origin",
        "referer",
    ] {
        assert!(got.get(name).is_none(), "{name} was forwarded: {got:?}");
    }
    // What arrives besides: only what any HTTP client sends.
    let mut names: Vec<&str> = got.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["accept", "authorization", "cookie", "host", "user-agent"]);
}

#[tokio::test]
async fn a_rejected_session_is_401_and_no_credentials_are_not_checked() {
    let (base, seen) = check_server().await;
    let app = session_app(&format!("{base}/whoami"), "2s", "5s");
    let r = session_token(&app, &[("cookie", "session=expired")]).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_session");
    assert_eq!(seen.hits(), 1);
    // Failures are not cached: the next try asks again.
    let r = session_token(&app, &[("cookie", "session=expired")]).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_session");
    assert_eq!(seen.hits(), 2);
    // Nothing to check: refused without asking.
    let r = session_token(&app, &[("x-api-key", SHOP_KEY)]).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_session");
    assert_eq!(seen.hits(), 2);
}

#[tokio::test]
async fn a_slow_broken_or_absent_check_is_503() {
    let (base, seen) = check_server().await;
    // Slower than our timeout.
    let app = session_app(&format!("{base}/slow"), "300ms", "0s");
    let started = Instant::now();
    let r = session_token(&app, &[("cookie", "session=good")]).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "invalid_session");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(seen.hits(), 1);
    // 5xx, and a 200 that is not {sub, ...}.
    for path in ["/broken", "/garbage"] {
        let app = session_app(&format!("{base}{path}"), "2s", "0s");
        let r = session_token(&app, &[("cookie", "session=good")]).await;
        assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "invalid_session");
    }
    // Nothing listens.
    let app = session_app(&format!("http://127.0.0.1:{}/whoami", free_port()), "2s", "0s");
    let r = session_token(&app, &[("cookie", "session=good")]).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "invalid_session");
}

#[tokio::test]
async fn good_answers_are_cached_per_session_for_at_most_cache_ttl() {
    let (base, seen) = check_server().await;
    let app = session_app(&format!("{base}/whoami"), "2s", "5s");
    for _ in 0..3 {
        let r = session_token(&app, &[("cookie", "session=good")]).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(seen.hits(), 1, "the same session within cache_ttl asks once");
    // Another session is another key.
    let r = session_token(&app, &[("cookie", "session=alice")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(seen.hits(), 2);
    // The same cookie with an Authorization header is another key too.
    let r = session_token(&app, &[("cookie", "session=alice"), ("authorization", "Bearer b")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(seen.hits(), 3);
    // Still fresh at 4s; asked again at 5s.
    app.clock.advance(4);
    session_token(&app, &[("cookie", "session=good")]).await;
    assert_eq!(seen.hits(), 3);
    app.clock.advance(1);
    session_token(&app, &[("cookie", "session=good")]).await;
    assert_eq!(seen.hits(), 4);
}

// ---------------------------------------------------------------------------
// Guest tokens and Origin verdicts

#[tokio::test]
async fn guest_tokens_from_an_allowed_origin() {
    let app = TestApp::base();
    let r = guest(&app, Some(SHOP_ORIGIN)).await;
    let body = ok_json(&r);
    assert_eq!(r.header("access-control-allow-origin"), Some(SHOP_ORIGIN));
    assert!(vary(&r).contains("Origin"));
    assert_eq!(str_of(&body, "refresh_token").len(), 43);
    let claims = verified_claims(&app, str_of(&body, "token"), &["chat"]).await;
    let sub = str_of(&claims, "sub");
    assert!(sub.starts_with("guest:") && sub.len() == "guest:".len() + 22, "{sub}");
    assert_eq!(claims["scopes"], json!(["chat"]));
    assert_eq!(claims["aud"], "chatbot");
    assert_eq!(claims["storeId"], "st_1");
    // Every guest is a new subject.
    let again = ok_json(&guest(&app, Some(SHOP_ORIGIN)).await);
    let other = verified_claims(&app, str_of(&again, "token"), &[]).await;
    assert_ne!(other["sub"], claims["sub"]);
}

#[tokio::test]
async fn guest_origin_verdicts_come_from_the_allowlist() {
    let app = TestApp::base();
    for origin in [
        "https://evil.example",
        "http://shop.example.com",
        "https://shop.example.com.evil.example",
        "https://evilshop.example.com",
        "https://shop.example.com:8443",
        "null",
        "",
        "https://shop.example.com/path",
    ] {
        let r = guest(&app, Some(origin)).await;
        assert_error(&r, StatusCode::FORBIDDEN, "origin_not_allowed");
        assert!(r.header("access-control-allow-origin").is_none(), "{origin}");
    }
    // No Origin at all: the widget's only credential is missing.
    assert_error(&guest(&app, None).await, StatusCode::FORBIDDEN, "origin_not_allowed");
    // Case of the host does not matter; the default port may be written.
    for origin in ["https://SHOP.example.com", "https://shop.example.com:443"] {
        assert_eq!(guest(&app, Some(origin)).await.status, StatusCode::OK, "{origin}");
    }
}

#[tokio::test]
async fn guest_requests_name_a_known_client() {
    let app = TestApp::base();
    let o = [("origin", SHOP_ORIGIN)];
    let r = post_with(&app, "/v1/guest", &o, &json!({ "client_key": "pk_nobody_here" })).await;
    assert_error(&r, StatusCode::NOT_FOUND, "unknown_client");
    // Readable by the widget: the origin is one some client allows.
    assert_eq!(r.header("access-control-allow-origin"), Some(SHOP_ORIGIN));
    let r = post_with(&app, "/v1/guest", &o, &json!({})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    let r = post_with(&app, "/v1/guest", &o, &json!({ "client_key": SHOP_PK, "sub": "admin" })).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
}

/// A guest request from `ip`, as `serve` sees it (with connect info).
async fn guest_from(app: &TestApp, ip: &str) -> Resp {
    let mut req = Request::post("/v1/guest")
        .header("content-type", "application/json")
        .header("origin", SHOP_ORIGIN)
        .body(Body::from(json!({ "client_key": SHOP_PK }).to_string()))
        .unwrap();
    let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    app.send(req).await
}

#[tokio::test]
async fn guests_are_limited_per_address_and_per_client() {
    // 10 a minute for the client: 1 a minute for one address.
    let app = TestApp::new(&base_config().replace("rate_limit = \"1000/s\"", "rate_limit = \"10/m\""));
    assert_eq!(guest_from(&app, "198.51.100.1").await.status, StatusCode::OK);
    let r = guest_from(&app, "198.51.100.1").await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.header("retry-after").is_some());
    // X-Forwarded-For is not trusted: the same peer stays limited.
    let mut req = Request::post("/v1/guest")
        .header("content-type", "application/json")
        .header("origin", SHOP_ORIGIN)
        .header("x-forwarded-for", "203.0.113.77")
        .body(Body::from(json!({ "client_key": SHOP_PK }).to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("198.51.100.1:1".parse::<SocketAddr>().unwrap()));
    assert_eq!(app.send(req).await.status, StatusCode::TOO_MANY_REQUESTS);
    // Other addresses have their own share, until the client's rate is spent.
    // Requests refused for their address never spend the client's rate: 1 so far.
    for i in 2..=10 {
        let ip = format!("198.51.100.{i}");
        assert_eq!(guest_from(&app, &ip).await.status, StatusCode::OK, "{ip}");
    }
    let r = guest_from(&app, "198.51.100.99").await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // A new window.
    app.clock.advance(60);
    assert_eq!(guest_from(&app, "198.51.100.1").await.status, StatusCode::OK);
}

/// `POST /v1/session/token` from `ip` with `headers`.
async fn session_token_from(app: &TestApp, ip: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = Request::post("/v1/session/token");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Body::empty()).unwrap();
    let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    app.send(req).await
}

#[tokio::test]
async fn session_requests_without_a_valid_session_never_spend_the_client_rate() {
    // Issue 10, item 3: 25 requests without a session (401) used to spend the
    // client's budget, and then a real user got 429.
    let (base, seen) = check_server().await;
    let app = TestApp::new(
        &format!(
            "{}\n[session]\ncheck_url = \"{base}/whoami\"\nclient = \"shop_123\"\ntimeout = \"2s\"\ncache_ttl = \"0s\"\n",
            base_config()
        )
        .replace("rate_limit = \"1000/s\"", "rate_limit = \"10/m\""),
    );
    for i in 1..=25 {
        let ip = format!("198.51.100.{i}");
        // A rejected session, and no credential at all: both 401.
        let headers: &[(&str, &str)] = if i % 2 == 0 {
            &[("cookie", "session=expired")]
        } else {
            &[]
        };
        let r = session_token_from(&app, &ip, headers).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_session");
    }
    // An address that keeps failing is limited by its own share (1/m here).
    let r = session_token_from(&app, "198.51.100.2", &[("cookie", "session=expired")]).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let asked = seen.hits();
    // The client's 10/m is untouched: ten real users in a row get tokens.
    for i in 101..=110 {
        let ip = format!("198.51.100.{i}");
        let r = session_token_from(&app, &ip, &[("cookie", "session=good")]).await;
        assert_eq!(r.status, StatusCode::OK, "{ip}: {:?}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(seen.hits(), asked + 10);
    // The eleventh is over the client's rate.
    let r = session_token_from(&app, "198.51.100.111", &[("cookie", "session=good")]).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[tokio::test]
async fn guests_without_connect_info_are_limited_per_client_only() {
    let app = TestApp::new(&base_config().replace("rate_limit = \"1000/s\"", "rate_limit = \"3/m\""));
    for _ in 0..3 {
        assert_eq!(guest(&app, Some(SHOP_ORIGIN)).await.status, StatusCode::OK);
    }
    assert_error(
        &guest(&app, Some(SHOP_ORIGIN)).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );
}

// ---------------------------------------------------------------------------
// CORS

#[tokio::test]
async fn preflights_are_answered_for_allowed_origins_only() {
    let app = TestApp::base();
    let config_path = format!("/v1/clients/{SHOP_PK}/config");
    for (path, method) in [
        ("/v1/guest", "POST"),
        ("/v1/exchange", "POST"),
        ("/v1/refresh", "POST"),
        (config_path.as_str(), "GET"),
    ] {
        let headers = [
            ("origin", SHOP_ORIGIN),
            ("access-control-request-method", method),
            ("access-control-request-headers", "content-type"),
        ];
        let r = send_empty(&app, "OPTIONS", path, &headers).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{path}");
        assert_eq!(r.header("access-control-allow-origin"), Some(SHOP_ORIGIN), "{path}");
        assert!(
            r.header("access-control-allow-methods").unwrap().contains(method),
            "{path}"
        );
        // A widget sends its DPoP proof (RFC 9449) in a header of its own.
        assert_eq!(r.header("access-control-allow-headers"), Some("content-type, dpop"));
        assert_eq!(r.header("access-control-max-age"), Some("600"));
        assert!(r.header("access-control-allow-credentials").is_none());
        assert!(vary(&r).contains("Origin"), "{path}");

        for bad in ["https://evil.example", "null", "https://shop.example.com.evil.example"] {
            let headers = [("origin", bad), ("access-control-request-method", method)];
            let r = send_empty(&app, "OPTIONS", path, &headers).await;
            assert_error(&r, StatusCode::FORBIDDEN, "origin_not_allowed");
            assert!(r.header("access-control-allow-origin").is_none(), "{path} {bad}");
            assert!(r.header("access-control-allow-methods").is_none(), "{path} {bad}");
            assert!(vary(&r).contains("Origin"), "{path}");
        }
    }
    // The config preflight knows its client: an unknown key is no one's.
    let headers = [("origin", SHOP_ORIGIN), ("access-control-request-method", "GET")];
    let r = send_empty(&app, "OPTIONS", "/v1/clients/pk_nobody/config", &headers).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn actual_responses_carry_cors_headers_for_allowed_origins_only() {
    let app = TestApp::base();
    let r = guest(&app, Some("https://evil.example")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.header("access-control-allow-origin").is_none());
    assert!(vary(&r).contains("Origin"));
    // The other endpoints too, errors included.
    let r = post_with(
        &app,
        "/v1/refresh",
        &[("origin", SHOP_ORIGIN)],
        &json!({ "refresh_token": "x" }),
    )
    .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    assert_eq!(r.header("access-control-allow-origin"), Some(SHOP_ORIGIN));
    assert!(vary(&r).contains("Origin"));
    // Routes outside the widget's get no CORS headers at all.
    let r = post_with(&app, "/v1/tokens", &[("origin", SHOP_ORIGIN)], &json!({ "sub": "u" })).await;
    assert!(r.header("access-control-allow-origin").is_none());
}

// ---------------------------------------------------------------------------
// Public config

#[tokio::test]
async fn public_config_for_allowed_origins() {
    let app = TestApp::base();
    let path = format!("/v1/clients/{SHOP_PK}/config");
    let r = send_empty(&app, "GET", &path, &[("origin", SHOP_ORIGIN)]).await;
    assert_eq!(ok_json(&r), json!({ "displayName": "Support", "color": "#3366ff" }));
    assert_eq!(r.header("access-control-allow-origin"), Some(SHOP_ORIGIN));
    assert!(vary(&r).contains("Origin"));

    let r = send_empty(
        &app,
        "GET",
        "/v1/clients/pk_nobody_here/config",
        &[("origin", SHOP_ORIGIN)],
    )
    .await;
    assert_error(&r, StatusCode::NOT_FOUND, "unknown_client");

    let none: &[(&str, &str)] = &[];
    for headers in [&[("origin", "https://evil.example")][..], none] {
        let r = send_empty(&app, "GET", &path, headers).await;
        assert_error(&r, StatusCode::FORBIDDEN, "origin_not_allowed");
        assert!(r.header("access-control-allow-origin").is_none());
    }
}

// ---------------------------------------------------------------------------
// Refresh tokens, on both stores

/// The rotation chain over five steps, then reuse of step 2's token: 401,
/// and every later token of the family, the live one included, fails too.
async fn rotation_chain_and_reuse(app: &TestApp) {
    let first = ok_json(&guest(app, Some(SHOP_ORIGIN)).await);
    let sub = verified_claims(app, str_of(&first, "token"), &[]).await["sub"].clone();
    let mut tokens = vec![str_of(&first, "refresh_token").to_owned()];
    let mut jtis = vec![str_of(&first, "jti").to_owned()];
    for step in 1..=5 {
        app.clock.advance(60);
        let r = refresh(app, tokens.last().unwrap()).await;
        let body = ok_json(&r);
        assert_eq!(r.header("access-control-allow-origin"), Some(SHOP_ORIGIN));
        let claims = verified_claims(app, str_of(&body, "token"), &["chat"]).await;
        assert_eq!(claims["sub"], sub, "step {step}");
        assert_eq!(claims["scopes"], json!(["chat"]));
        assert_eq!(claims["storeId"], "st_1");
        let next = str_of(&body, "refresh_token").to_owned();
        assert!(!tokens.contains(&next));
        assert!(!jtis.contains(&str_of(&body, "jti").to_owned()));
        tokens.push(next);
        jtis.push(str_of(&body, "jti").to_owned());
    }
    // tokens[k] came from step k; tokens[2] was spent at step 3.
    let r = refresh(app, &tokens[2]).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    assert!(r.header("www-authenticate").is_some());
    for (k, t) in tokens.iter().enumerate().skip(3) {
        let r = refresh(app, t).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_refresh_token");
        assert!(!r.body.windows(t.len()).any(|w| w == t.as_bytes()), "step {k} echoed");
    }
    // Another family is untouched.
    let other = ok_json(&guest(app, Some(SHOP_ORIGIN)).await);
    assert_eq!(
        refresh(app, str_of(&other, "refresh_token")).await.status,
        StatusCode::OK
    );
}

/// Two refreshes of the same token at once: exactly one wins. The loser's
/// presentation is a reuse, so the family is revoked and the winner's new
/// token dies too: there is no grace period, so a widget must not refresh
/// the same token twice (one refresh in flight per family).
async fn concurrent_refreshes(app: Arc<TestApp>) {
    let first = ok_json(&guest(&app, Some(SHOP_ORIGIN)).await);
    let token = str_of(&first, "refresh_token").to_owned();
    let spawn = |app: Arc<TestApp>, token: String| tokio::spawn(async move { refresh(&app, &token).await });
    let a = spawn(Arc::clone(&app), token.clone());
    let b = spawn(Arc::clone(&app), token.clone());
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let winners: Vec<&Resp> = [&a, &b].into_iter().filter(|r| r.status == StatusCode::OK).collect();
    assert_eq!(winners.len(), 1, "{:?} {:?}", a.status, b.status);
    let loser = if a.status == StatusCode::OK { &b } else { &a };
    assert_error(loser, StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    let successor = str_of(&winners[0].json(), "refresh_token").to_owned();
    let r = refresh(&app, &successor).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_refresh_token");
}

/// Refresh tokens expire on their own and with their family.
async fn expiry(app: &TestApp) {
    let first = ok_json(&guest(app, Some(SHOP_ORIGIN)).await);
    // refresh_ttl defaults to 24h.
    app.clock.advance(24 * 3600);
    let r = refresh(app, str_of(&first, "refresh_token")).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_refresh_token");
}

/// A refresh from an origin the client does not allow is refused, and the
/// token is spent: its holder's next try is a reuse.
async fn refresh_origin(app: &TestApp) {
    let first = ok_json(&guest(app, Some(SHOP_ORIGIN)).await);
    let t = str_of(&first, "refresh_token");
    let r = post_with(
        app,
        "/v1/refresh",
        &[("origin", "https://evil.example")],
        &json!({ "refresh_token": t }),
    )
    .await;
    assert_error(&r, StatusCode::FORBIDDEN, "origin_not_allowed");
    assert!(r.header("access-control-allow-origin").is_none());
    assert_error(
        &refresh(app, t).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    );
    // Without an Origin (not a browser): allowed.
    let second = ok_json(&guest(app, Some(SHOP_ORIGIN)).await);
    let r = post_with(
        app,
        "/v1/refresh",
        &[],
        &json!({ "refresh_token": str_of(&second, "refresh_token") }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("access-control-allow-origin").is_none());
}

async fn redis_app(redis: &RedisServer) -> TestApp {
    let store = RedisStore::connect(&redis.url, "t", Duration::from_millis(500), 0)
        .await
        .unwrap();
    TestApp::with_store(&base_config(), AnyStore::Redis(store))
}

#[tokio::test]
async fn refresh_rotation_and_reuse_on_memory() {
    rotation_chain_and_reuse(&TestApp::base()).await;
}

#[tokio::test]
async fn refresh_rotation_and_reuse_on_redis() {
    let redis = RedisServer::start();
    rotation_chain_and_reuse(&redis_app(&redis).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_on_memory() {
    for _ in 0..5 {
        concurrent_refreshes(Arc::new(TestApp::base())).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_on_redis() {
    let redis = RedisServer::start();
    let app = Arc::new(redis_app(&redis).await);
    for _ in 0..5 {
        concurrent_refreshes(Arc::clone(&app)).await;
    }
}

#[tokio::test]
async fn refresh_expiry_and_origin_on_memory() {
    expiry(&TestApp::base()).await;
    refresh_origin(&TestApp::base()).await;
}

#[tokio::test]
async fn refresh_expiry_and_origin_on_redis() {
    let redis = RedisServer::start();
    expiry(&redis_app(&redis).await).await;
    refresh_origin(&redis_app(&redis).await).await;
}

#[tokio::test]
async fn malformed_refresh_requests() {
    let app = TestApp::base();
    for body in [
        json!({}),
        json!({ "refresh_token": 5 }),
        json!({ "refresh_token": "x", "sub": "u" }),
    ] {
        let r = post_with(&app, "/v1/refresh", &[], &body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    }
    for t in ["", "x", &"A".repeat(43), &"A".repeat(4000)] {
        let r = post_with(&app, "/v1/refresh", &[], &json!({ "refresh_token": t })).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    }
}

// ---------------------------------------------------------------------------
// The seed flow: visitor token → exchange → refresh → verify

async fn visitor_token(app: &TestApp, sub: &str) -> String {
    app.token(&json!({
        "sub": sub,
        "purpose": "exchange",
        "scopes": ["chat", "read:orders"],
        "claims": { "tier": "gold" }
    }))
    .await
}

async fn exchange(app: &TestApp, origin: Option<&str>, token: &str) -> Resp {
    let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
    post_with(app, "/v1/exchange", &headers, &json!({ "token": token })).await
}

#[tokio::test]
async fn seed_flow_exchange_refresh_verify() {
    let app = TestApp::base();
    // The shop's backend mints a visitor token for its signed-in visitor.
    let visitor = visitor_token(&app, "visitor-42").await;
    // The widget exchanges it from the shop's page.
    let r = exchange(&app, Some(SHOP_ORIGIN), &visitor).await;
    let body = ok_json(&r);
    assert_eq!(r.header("access-control-allow-origin"), Some(SHOP_ORIGIN));
    let session = verified_claims(&app, str_of(&body, "token"), &["chat"]).await;
    assert_eq!(session["sub"], "visitor-42");
    assert_eq!(session["aud"], "chatbot");
    // Every token names the client it was issued to (RFC 9068 `client_id`).
    assert_eq!(session["client_id"], "shop_123", "{session}");
    // The visitor token was single use.
    let r = exchange(&app, Some(SHOP_ORIGIN), &visitor).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "token_replayed");
    assert_eq!(r.header("access-control-allow-origin"), Some(SHOP_ORIGIN));
    // ... and refreshes twice.
    let mut refresh_token = str_of(&body, "refresh_token").to_owned();
    let mut access = String::new();
    for _ in 0..2 {
        app.clock.advance(240);
        let body = ok_json(&refresh(&app, &refresh_token).await);
        refresh_token = str_of(&body, "refresh_token").to_owned();
        access = str_of(&body, "token").to_owned();
    }
    // A plugin backend verifies the final access token with required scopes.
    let r = app
        .post(
            "/v1/verify",
            Some(SHOP_KEY),
            &json!({ "token": access, "scopes": ["chat", "read:orders"], "consume": true }),
        )
        .await;
    let verified = ok_json(&r);
    assert_eq!(verified["valid"], true);
    let c = &verified["claims"];
    assert_eq!(c["sub"], "visitor-42");
    assert_eq!(c["aud"], "chatbot");
    assert_eq!(c["iss"], "https://issuer.test");
    assert_eq!(c["scopes"], json!(["chat", "read:orders"]));
    assert_eq!(
        (c["tier"].as_str(), c["storeId"].as_str()),
        (Some("gold"), Some("st_1"))
    );
    assert_eq!(c["installationId"], "in_4");
    // A scope it does not carry.
    let r = app
        .post(
            "/v1/verify",
            Some(SHOP_KEY),
            &json!({ "token": access, "scopes": ["write:orders"] }),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "insufficient_scope");
}

#[tokio::test]
async fn visitor_tokens_name_their_client_and_only_they_exchange() {
    let app = TestApp::base();
    let visitor = visitor_token(&app, "v1").await;
    // The backend can inspect it: client_id is set by the service.
    let claims = {
        let r = app
            .post(
                "/v1/verify",
                Some(SHOP_KEY),
                &json!({ "token": visitor, "audience": "https://issuer.test/v1/exchange" }),
            )
            .await;
        ok_json(&r)["claims"].clone()
    };
    assert_eq!(claims["client_id"], "shop_123");
    // A request cannot set client_id on a visitor token.
    let r = app
        .post(
            "/v1/tokens",
            Some(SHOP_KEY),
            &json!({ "sub": "v", "purpose": "exchange", "claims": { "client_id": "other" } }),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "claim_not_allowed");
    // An access token is not a visitor token.
    let access = app.token(&json!({ "sub": "v1" })).await;
    let r = exchange(&app, Some(SHOP_ORIGIN), &access).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "wrong_audience");
    // No Origin (a native app): allowed.
    let r = exchange(&app, None, &visitor).await;
    assert_eq!(r.status, StatusCode::OK);
    // From a page the client does not allow: refused, and the token is spent.
    let visitor = visitor_token(&app, "v2").await;
    let r = exchange(&app, Some("https://evil.example"), &visitor).await;
    assert_error(&r, StatusCode::FORBIDDEN, "origin_not_allowed");
    assert!(r.header("access-control-allow-origin").is_none());
    let r = exchange(&app, Some(SHOP_ORIGIN), &visitor).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "token_replayed");
    // Expired: visitor tokens live at most 5 minutes (+ the 60s leeway).
    let visitor = visitor_token(&app, "v3").await;
    app.clock.advance(301 + 60);
    let r = exchange(&app, Some(SHOP_ORIGIN), &visitor).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "token_expired");
}
