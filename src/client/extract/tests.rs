//! Tests of `extract`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::clock::ManualClock;
use crate::jose::{Algorithm, VerifyingKey};
use crate::store::memory::MemoryStore;
use crate::verifier::StaticKeys;
use axum::body::Body;
use axum::http::{HeaderValue, Request};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use tower::ServiceExt;

const NOW: i64 = 1_800_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn headers(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn parse(values: &[&str]) -> Result<String, &'static str> {
    bearer_token(&headers(values))
        .map(str::to_owned)
        .map_err(|e| e.status_code().1)
}

#[test]
fn bearer_header_parsing_follows_rfc_6750() {
    assert_eq!(parse(&["Bearer abc.DEF-_~+/=="]), Ok("abc.DEF-_~+/==".into()));
    assert_eq!(parse(&["bearer a.b.c"]), Ok("a.b.c".into()));
    assert_eq!(parse(&["BEARER a.b.c"]), Ok("a.b.c".into()));
    assert_eq!(parse(&["Bearer   a.b.c "]), Ok("a.b.c".into()));
    assert_eq!(parse(&[]), Err("invalid_token"));
    assert_eq!(parse(&["Basic dXNlcjpwYXNz"]), Err("invalid_token"));
    assert_eq!(parse(&["Bearerabc"]), Err("invalid_token"));
    for bad in [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer a,b",
        "Bearer \"a\"",
        "Bearer a=b",
        "Bearer ===",
        "Bearer a\tb",
    ] {
        assert_eq!(parse(&[bad]), Err("invalid_request"), "{bad:?}");
    }
    assert_eq!(parse(&["Bearer a", "Bearer b"]), Err("invalid_request"));
}

/// An HS256 token over `claims` (the unit tests' key source is one secret).
fn token(claims: Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg":"HS256","typ":"JWT"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let sig = crate::jose::alg::hmac_sha256(SECRET, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn claims(scopes: &[&str], jti: &str) -> Value {
    json!({"iss":"https://issuer.test","sub":"u1","aud":"plugin","iat":NOW,"exp":NOW+300,"jti":jti,"scopes":scopes})
}

struct Read;
impl Policy for Read {
    const SCOPES: &'static [&'static str] = &["read:orders"];
}
struct WriteOnce;
impl Policy for WriteOnce {
    const SCOPES: &'static [&'static str] = &["write:orders"];
    const CONSUME: bool = true;
}

#[derive(Clone)]
struct AppState {
    auth: BearerConfig,
}
impl FromRef<AppState> for BearerConfig {
    fn from_ref(s: &AppState) -> BearerConfig {
        s.auth.clone()
    }
}

fn config(store: Option<Arc<MemoryStore>>) -> BearerConfig {
    let keys = StaticKeys::single(VerifyingKey::hmac(SECRET).unwrap());
    assert_eq!(keys.algorithms(), [Algorithm::HS256]);
    let validation = Validation {
        audience: Some("plugin".into()),
        ..Validation::new("https://issuer.test")
    };
    let c = BearerConfig::local(keys, validation, ManualClock::new(NOW)).unwrap();
    match store {
        Some(s) => c.with_store(s),
        None => c,
    }
}

fn router(auth: BearerConfig) -> Router {
    Router::new()
        .route("/any", get(|b: Bearer| async move { b.sub.clone() }))
        .route("/read", get(|b: Bearer<Read>| async move { b.claims.sub }))
        .route(
            "/write",
            post(|b: Bearer<WriteOnce>| async move { b.into_claims().jti }),
        )
        .with_state(AppState { auth })
}

async fn call(r: &Router, method: &str, path: &str, auth: Option<&str>) -> (StatusCode, Option<String>, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let resp = r.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let challenge = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, challenge, body)
}

#[tokio::test]
async fn refusals_carry_status_challenge_and_code() {
    let r = router(config(None));
    let good = format!("Bearer {}", token(claims(&["read:orders"], "j1")));
    let (s, _, body) = call(&r, "GET", "/read", Some(&good)).await;
    assert_eq!((s, body), (StatusCode::OK, Value::String("u1".into())));

    let (s, ch, body) = call(&r, "GET", "/read", None).await;
    assert_eq!((s, ch.as_deref()), (StatusCode::UNAUTHORIZED, Some("Bearer")));
    assert_eq!(body["error"], "invalid_token");

    let (s, ch, body) = call(&r, "GET", "/read", Some("Bearer a b")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(ch.as_deref(), Some("Bearer error=\"invalid_request\""));
    assert_eq!(body["error"], "invalid_request");

    let mut forged = token(claims(&["read:orders"], "j1"));
    forged.push('A');
    let (s, ch, body) = call(&r, "GET", "/read", Some(&format!("Bearer {forged}"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        ch.unwrap(),
        "Bearer error=\"invalid_token\", error_description=\"bad_signature\""
    );
    assert_eq!(body["error"], "bad_signature");
    assert!(body["error_description"].as_str().unwrap().contains("signature"));

    let mut wrong_aud = claims(&["read:orders"], "j1");
    wrong_aud["aud"] = json!("someone-else");
    let (s, _, body) = call(&r, "GET", "/any", Some(&format!("Bearer {}", token(wrong_aud)))).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("wrong_audience"))
    );

    let mut expired = claims(&[], "j1");
    expired["iat"] = json!(NOW - 1000);
    expired["exp"] = json!(NOW - 100);
    let (s, _, body) = call(&r, "GET", "/any", Some(&format!("Bearer {}", token(expired)))).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_expired"))
    );

    let chat_only = format!("Bearer {}", token(claims(&["chat"], "j2")));
    let (s, _, _) = call(&r, "GET", "/any", Some(&chat_only)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, ch, body) = call(&r, "GET", "/read", Some(&chat_only)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        ch.unwrap(),
        "Bearer error=\"insufficient_scope\", scope=\"read:orders\""
    );
    assert_eq!(body["error"], "insufficient_scope");
}

#[tokio::test]
async fn consume_refuses_a_second_use_and_needs_a_store() {
    let store = Arc::new(MemoryStore::new(1000));
    let r = router(config(Some(Arc::clone(&store))));
    let write = format!("Bearer {}", token(claims(&["write:orders"], "once")));
    let (s, _, body) = call(&r, "POST", "/write", Some(&write)).await;
    assert_eq!((s, body), (StatusCode::OK, Value::String("once".into())));
    let (s, ch, body) = call(&r, "POST", "/write", Some(&write)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "token_replayed");
    assert!(ch.unwrap().starts_with("Bearer error=\"invalid_token\""));
    // A token missing the scope is refused before it is consumed.
    let read = format!("Bearer {}", token(claims(&["read:orders"], "other")));
    assert_eq!(call(&r, "POST", "/write", Some(&read)).await.0, StatusCode::FORBIDDEN);
    assert!(Store::mark_once(&*store, "jti:other", NOW + 400, NOW).await.unwrap());
    // Reusable routes never consume.
    let (s, _, _) = call(&r, "GET", "/any", Some(&write)).await;
    assert_eq!(s, StatusCode::OK);
    // Revoked tokens are refused on every route once a store is configured
    // (a token without `client_id` is kept under the empty client).
    Store::revoke_jti(&*store, ":rv", NOW + 400, NOW).await.unwrap();
    let revoked = format!("Bearer {}", token(claims(&[], "rv")));
    let (s, _, body) = call(&r, "GET", "/any", Some(&revoked)).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_revoked"))
    );
    let revoked_write = format!("Bearer {}", token(claims(&["write:orders"], "rv")));
    let (s, _, body) = call(&r, "POST", "/write", Some(&revoked_write)).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_revoked"))
    );

    let no_store = router(config(None));
    let fresh = format!("Bearer {}", token(claims(&["write:orders"], "x")));
    let (s, _, body) = call(&no_store, "POST", "/write", Some(&fresh)).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("server_error"))
    );
}

#[test]
fn a_config_without_audience_is_refused() {
    let keys = StaticKeys::single(VerifyingKey::hmac(SECRET).unwrap());
    let err = BearerConfig::local(keys, Validation::new("https://issuer.test"), ManualClock::new(NOW)).unwrap_err();
    assert_eq!(err, BearerConfigError::NoAudience);
}

#[test]
fn from_remote_judges_on_the_clock_of_its_jwks() {
    let jwks = || {
        let opts = crate::jwks::JwksOptions::default();
        Arc::new(RemoteJwks::new("http://127.0.0.1:1/jwks", opts, ManualClock::new(NOW)).unwrap())
    };
    let err = BearerConfig::from_remote(jwks(), Validation::new("https://issuer.test")).unwrap_err();
    assert_eq!(err, BearerConfigError::NoAudience);
    let c = BearerConfig::from_remote(jwks(), Validation::new("https://issuer.test").audience("plugin")).unwrap();
    assert_eq!(c.clock.now(), NOW);
}
