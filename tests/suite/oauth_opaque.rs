//! Opaque access tokens (`token_format = "opaque"`): issued by every flow of
//! such a client, verified through `/v1/verify` and introspection, revoked
//! at once on every instance sharing a Redis, never stored as themselves;
//! and what one costs in Redis (`MEMORY USAGE`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};
use tokensmith::store::redis::RedisStore;
use tokensmith::store::AnyStore;

use super::harness::{base_config, TestApp, SHOP_KEY};
use super::oauth::{enc, form, ok, Auth};
use super::redis_harness::RedisServer;

fn opaque_config() -> String {
    base_config().replace(
        "config = { displayName",
        "token_format = \"opaque\"\ntoken_prefix = \"wt_\"\nconfig = { displayName",
    )
}

fn shop() -> Auth<'static> {
    Auth::Basic("shop_123", SHOP_KEY)
}

fn assert_opaque(token: &str) {
    let body = token.strip_prefix("wt_").unwrap_or_else(|| panic!("{token}"));
    assert_eq!(body.len(), 43, "{token}");
    assert!(!token.contains('.'));
}

async fn verify(app: &TestApp, token: &str) -> (StatusCode, Value) {
    let r = app.post("/v1/verify", Some(SHOP_KEY), &json!({ "token": token })).await;
    (r.status, r.json())
}

async fn active(app: &TestApp, token: &str) -> bool {
    let v = ok(&form(app, "/oauth2/introspect", shop(), &format!("token={}", enc(token))).await);
    v["active"].as_bool().unwrap()
}

async fn redis_app(server: &RedisServer) -> TestApp {
    let store = RedisStore::connect(&server.url, "https://issuer.test", Duration::from_secs(2), 0)
        .await
        .unwrap();
    TestApp::with_store(&opaque_config(), AnyStore::Redis(store))
}

#[tokio::test]
async fn every_flow_of_an_opaque_client_issues_opaque_tokens() {
    let app = TestApp::new(&opaque_config());
    let v = ok(&form(
        &app,
        "/oauth2/token",
        shop(),
        "grant_type=client_credentials&scope=chat",
    )
    .await);
    let token = v["access_token"].as_str().unwrap();
    assert_opaque(token);
    assert_eq!(v["expires_in"], 300);
    let (status, body) = verify(&app, token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c = &body["claims"];
    assert_eq!(
        (c["sub"].as_str(), c["client_id"].as_str()),
        (Some("shop_123"), Some("shop_123"))
    );
    assert_eq!(c["scopes"], json!(["chat"]));
    assert_eq!(c["storeId"], "st_1");
    assert!(active(&app, token).await);
    // /v1/tokens: opaque, but a visitor token stays a JWT (it is verified
    // by signature at the exchange).
    assert_opaque(&app.token(&json!({ "sub": "u1" })).await);
    let visitor = app.token(&json!({ "sub": "v1", "purpose": "exchange" })).await;
    assert_eq!(visitor.matches('.').count(), 2);
    // Guest and exchange hand out opaque tokens too.
    let r = app
        .send(
            axum::http::Request::post("/v1/guest")
                .header("content-type", "application/json")
                .header("origin", "https://shop.example.com")
                .body(axum::body::Body::from(
                    json!({ "client_key": "pk_test_shop_123" }).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_opaque(r.json()["token"].as_str().unwrap());
    let r = app.post("/v1/exchange", None, &json!({ "token": visitor })).await;
    assert_opaque(r.json()["token"].as_str().unwrap());
    // Expired past the leeway: gone.
    app.clock.advance(300 + 60);
    assert!(!active(&app, token).await);
    assert_eq!(verify(&app, token).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_and_forged_opaque_tokens_are_refused() {
    let app = TestApp::new(&opaque_config());
    let real = app.token(&json!({ "sub": "u1" })).await;
    let mut forged = real.clone();
    forged.pop();
    forged.push(if real.ends_with('A') { 'B' } else { 'A' });
    for t in [forged.as_str(), "wt_", "garbage", &"a".repeat(65)] {
        let (status, body) = verify(&app, t).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{t}: {body}");
        assert!(!active(&app, t).await, "{t}");
    }
    // Another client may not see it.
    let v = ok(&form(
        &app,
        "/oauth2/introspect",
        Auth::Basic("other", super::harness::OTHER_KEY),
        &format!("token={}", enc(&real)),
    )
    .await);
    assert_eq!(v, json!({ "active": false }));
}

#[tokio::test]
async fn revocation_is_instant_on_every_instance_and_the_store_never_holds_the_token() {
    let server = RedisServer::start();
    let (a, b) = (redis_app(&server).await, redis_app(&server).await);
    let v = ok(&form(&a, "/oauth2/token", shop(), "grant_type=client_credentials&scope=chat").await);
    let token = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(verify(&b, &token).await.0, StatusCode::OK);
    assert!(active(&b, &token).await);
    // The store holds a hash of it, never the token itself.
    let mut conn = redis::Client::open(server.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    let secret = token.trim_start_matches("wt_");
    assert!(keys.iter().any(|k| k.contains(":opaque:")), "{keys:?}");
    for k in &keys {
        assert!(!k.contains(secret), "{k}");
        let kind: String = redis::cmd("TYPE").arg(k).query_async(&mut conn).await.unwrap();
        if kind == "string" {
            let v: Vec<u8> = redis::cmd("GET").arg(k).query_async(&mut conn).await.unwrap();
            assert!(!String::from_utf8_lossy(&v).contains(secret), "{k}");
        }
    }
    // Revoked on A: B refuses it at once, and its record is gone.
    let records = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("*:opaque:*")
                .query_async(&mut conn)
                .await
                .unwrap();
            keys
        }
    };
    let before = records(&mut conn).await;
    let r = form(&a, "/oauth2/revoke", shop(), &format!("token={}", enc(&token))).await;
    assert_eq!(r.status, StatusCode::OK);
    let after = records(&mut conn).await;
    assert_eq!(after.len() + 1, before.len(), "{before:?} {after:?}");
    assert!(!active(&b, &token).await);
    assert_eq!(verify(&b, &token).await.0, StatusCode::UNAUTHORIZED);
    // /v1/revoke by jti works the same for an opaque token.
    let t2 = a.token(&json!({ "sub": "u2" })).await;
    let jti = verify(&b, &t2).await.1["claims"]["jti"].as_str().unwrap().to_owned();
    a.post("/v1/revoke", Some(SHOP_KEY), &json!({ "jti": jti })).await;
    assert_eq!(verify(&b, &t2).await.1["error"], "token_revoked");
}

/// `MEMORY USAGE` of one opaque token with 3 scopes and 3 extra claims
/// (the shop client's fixed claims) in Redis: the issue's budget is 400 bytes.
#[tokio::test]
async fn an_opaque_token_costs_at_most_400_bytes_in_redis() {
    let server = RedisServer::start();
    let app = redis_app(&server).await;
    app.token(&json!({ "sub": "user-12345", "scopes": ["read:orders", "write:orders", "chat"] }))
        .await;
    let mut conn = redis::Client::open(server.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*:opaque:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let bytes: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&keys[0])
        .arg("SAMPLES")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    println!("MEMORY USAGE of one opaque token (3 scopes, 3 claims): {bytes} bytes");
    assert!(bytes <= 400, "{bytes} bytes");
}

/// A plugin backend's `Bearer` extractor with its own connection to the
/// same Redis reads opaque tokens, and their revocation, from there.
#[tokio::test]
async fn the_bearer_extractor_with_a_store_accepts_opaque_tokens() {
    use std::sync::Arc;
    use tokensmith::client::extract::{AnyToken, BearerConfig, Policy};
    use tokensmith::SharedClock;
    use tokensmith::Validation;

    struct Once;
    impl Policy for Once {
        const SCOPES: &'static [&'static str] = &["chat"];
        const CONSUME: bool = true;
    }

    let server = RedisServer::start();
    let app = redis_app(&server).await;
    let plugin_store = RedisStore::connect(&server.url, "https://issuer.test", Duration::from_secs(2), 0)
        .await
        .unwrap();
    let clock: SharedClock = app.clock.clone();
    let validation = Validation::new("https://issuer.test").audience("chatbot");
    let keys = Arc::clone(&app.state.keys);
    let without = BearerConfig::local(Arc::clone(&keys), validation.clone(), Arc::clone(&clock)).unwrap();
    let with = without.clone().with_store(Arc::new(plugin_store));
    let token = app.token(&json!({ "sub": "u1", "scopes": ["chat"] })).await;
    assert_opaque(&token);
    let claims = with.check::<AnyToken>(&token).await.unwrap();
    assert_eq!(claims.sub, "u1");
    // Without the store there is nothing to read it from.
    assert_eq!(
        without.check::<AnyToken>(&token).await.unwrap_err().status_code().1,
        "malformed_token"
    );
    // Scopes and single use, as for a JWT.
    with.check::<Once>(&token).await.unwrap();
    assert_eq!(
        with.check::<Once>(&token).await.unwrap_err().status_code().1,
        "token_replayed"
    );
    let unscoped = app.token(&json!({ "sub": "u2" })).await;
    assert_eq!(
        with.check::<Once>(&unscoped).await.unwrap_err().status_code().1,
        "insufficient_scope"
    );
    // Revoked through the service: refused here at once.
    form(&app, "/oauth2/revoke", shop(), &format!("token={}", enc(&unscoped))).await;
    assert!(with.check::<AnyToken>(&unscoped).await.is_err());
}
