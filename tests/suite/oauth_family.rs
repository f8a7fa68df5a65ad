//! Refresh families over OAuth 2.0: introspection of refresh tokens (active
//! exactly while a refresh would accept them, and only to their client),
//! revocation of a refresh token ending the access tokens issued from its
//! family (`sid`), through `/v1/verify`, introspection and the `Bearer`
//! extractor; and `grant_types` (`unauthorized_client`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tokensmith::client::extract::{AnyToken, BearerConfig};
use tokensmith::store::redis::RedisStore;
use tokensmith::store::AnyStore;
use tokensmith::{SharedClock, Validation};

use super::harness::{base_config, Resp, TestApp, NOW, OTHER_KEY, SHOP_KEY};
use super::oauth::{enc, form, ok, refused, Auth};
use super::redis_harness::RedisServer;

fn shop() -> Auth<'static> {
    Auth::Basic("shop_123", SHOP_KEY)
}

fn other() -> Auth<'static> {
    Auth::Basic("other", OTHER_KEY)
}

/// The base config with shop_123's refresh tokens living 1 h in families of 2 h.
fn config() -> String {
    base_config().replace(
        "guest_scopes = [\"chat\"]",
        "guest_scopes = [\"chat\"]\nrefresh_ttl = \"1h\"\nrefresh_family_ttl = \"2h\"",
    )
}

fn app() -> TestApp {
    TestApp::new(&config())
}

async fn redis_store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&server.url, "https://issuer.test", Duration::from_secs(2), 0)
        .await
        .unwrap()
}

/// A guest of shop_123: (access token, refresh token).
async fn guest(app: &TestApp) -> (String, String) {
    let r = app
        .send(
            Request::post("/v1/guest")
                .header("content-type", "application/json")
                .header("origin", "https://shop.example.com")
                .body(Body::from(json!({ "client_key": "pk_test_shop_123" }).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    (
        v["token"].as_str().unwrap().to_owned(),
        v["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(app: &TestApp, token: &str) -> Resp {
    form(
        app,
        "/oauth2/token",
        shop(),
        &format!("grant_type=refresh_token&refresh_token={}", enc(token)),
    )
    .await
}

/// Refreshes `token`: (new access token, new refresh token).
async fn rotate(app: &TestApp, token: &str) -> (String, String) {
    let v = ok(&refresh(app, token).await);
    (
        v["access_token"].as_str().unwrap().to_owned(),
        v["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn introspect(app: &TestApp, auth: Auth<'_>, token: &str) -> Value {
    ok(&form(app, "/oauth2/introspect", auth, &format!("token={}", enc(token))).await)
}

async fn revoke(app: &TestApp, token: &str) {
    let r = form(app, "/oauth2/revoke", shop(), &format!("token={}", enc(token))).await;
    assert_eq!(r.status, StatusCode::OK);
}

/// `/v1/verify` of `token` by shop_123: `None` when valid, else the error code.
async fn verify_error(app: &TestApp, token: &str) -> Option<String> {
    let r = app.post("/v1/verify", Some(SHOP_KEY), &json!({ "token": token })).await;
    (r.status != StatusCode::OK).then(|| r.error())
}

fn inactive() -> Value {
    json!({ "active": false })
}

#[tokio::test]
async fn a_refresh_token_is_active_to_its_client_while_a_refresh_would_accept_it() {
    let app = app();
    let (access, first) = guest(&app).await;
    let v = introspect(&app, shop(), &first).await;
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["token_type"], "refresh_token");
    assert_eq!(v["client_id"], "shop_123");
    assert!(v["sub"].as_str().unwrap().starts_with("guest:"), "{v}");
    assert_eq!(v["scope"], "chat");
    assert_eq!(v["iss"], "https://issuer.test");
    assert_eq!(v["exp"], NOW + 3600);
    // The family id, which the access tokens of the family carry as `sid`.
    let sid = v["sid"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&app, shop(), &access).await["sid"], sid.as_str());
    for absent in ["aud", "jti", "iat", "nbf"] {
        assert!(v.get(absent).is_none(), "{absent}: {v}");
    }
    // Never to another client, even one that may see the access tokens.
    assert_eq!(introspect(&app, other(), &first).await, inactive());

    // Spent: inactive; its successor is active, with its own expiry.
    app.clock.advance(600);
    let (_, second) = rotate(&app, &first).await;
    assert_eq!(introspect(&app, shop(), &first).await, inactive());
    let v = introspect(&app, shop(), &second).await;
    assert_eq!(
        (v["active"].clone(), v["exp"].clone()),
        (json!(true), json!(NOW + 600 + 3600))
    );
    // A reuse of the spent one ends the family: the successor too.
    refused(&refresh(&app, &first).await, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(introspect(&app, shop(), &second).await, inactive());
}

#[tokio::test]
async fn a_refresh_token_is_inactive_once_revoked_or_expired() {
    let app = app();
    // Revoked through /oauth2/revoke.
    let (_, revoked) = guest(&app).await;
    revoke(&app, &revoked).await;
    assert_eq!(introspect(&app, shop(), &revoked).await, inactive());
    // Its subject revoked through /v1/revoke.
    let (_, by_sub) = guest(&app).await;
    let sub = introspect(&app, shop(), &by_sub).await["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app.post("/v1/revoke", Some(SHOP_KEY), &json!({ "sub": sub })).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(introspect(&app, shop(), &by_sub).await, inactive());
    // Its own expiry (1 h), then its family's (2 h) for a rotated one.
    let (_, expiring) = guest(&app).await;
    let (_, rotating) = guest(&app).await;
    app.clock.advance(3599);
    assert_eq!(introspect(&app, shop(), &expiring).await["active"], true);
    let (_, rotated) = rotate(&app, &rotating).await;
    app.clock.advance(1);
    assert_eq!(introspect(&app, shop(), &expiring).await, inactive());
    assert_eq!(introspect(&app, shop(), &rotated).await["active"], true);
    app.clock.advance(3600);
    assert_eq!(introspect(&app, shop(), &rotated).await, inactive());
    // Not a refresh token of ours: 43 characters of the right alphabet.
    let fake = "A".repeat(43);
    assert_eq!(introspect(&app, shop(), &fake).await, inactive());
}

/// On Redis, with a plugin backend's `Bearer` extractor on its own
/// connection to the same Redis.
#[tokio::test]
async fn revoking_a_refresh_token_ends_the_access_tokens_of_its_family() {
    let server = RedisServer::start();
    let app = TestApp::with_store(&config(), AnyStore::Redis(redis_store(&server).await));
    let (a1, r1) = guest(&app).await;
    let (a2, r2) = rotate(&app, &r1).await;
    let (unrelated, _) = guest(&app).await;
    let cc = ok(&form(&app, "/oauth2/token", shop(), "grant_type=client_credentials").await);
    let cc = cc["access_token"].as_str().unwrap().to_owned();
    // Only tokens of a family carry its id.
    assert!(introspect(&app, shop(), &cc).await.get("sid").is_none());
    let sid = introspect(&app, shop(), &a1).await["sid"].clone();
    assert_eq!(introspect(&app, shop(), &a2).await["sid"], sid);

    // Another client's revocation changes nothing.
    let r = form(&app, "/oauth2/revoke", other(), &format!("token={}", enc(&r2))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(verify_error(&app, &a1).await, None);

    revoke(&app, &r2).await;
    for token in [&a1, &a2] {
        assert_eq!(verify_error(&app, token).await.as_deref(), Some("token_revoked"));
        assert_eq!(introspect(&app, shop(), token).await, inactive());
    }
    // Nothing else: another family, a token of no family.
    assert_eq!(verify_error(&app, &unrelated).await, None);
    assert_eq!(verify_error(&app, &cc).await, None);

    // The Bearer extractor of a plugin backend sharing the store.
    let clock: SharedClock = app.clock.clone();
    let bearer = BearerConfig::local(
        Arc::clone(&app.state.keys),
        Validation::new("https://issuer.test").audience("chatbot"),
        clock,
    )
    .unwrap()
    .with_store(Arc::new(redis_store(&server).await));
    for token in [&a1, &a2] {
        let e = bearer.check::<AnyToken>(token).await.unwrap_err();
        assert_eq!(e.status_code().1, "token_revoked");
    }
    assert_eq!(
        bearer.check::<AnyToken>(&unrelated).await.unwrap().sid(),
        Some(introspect(&app, shop(), &unrelated).await["sid"].as_str().unwrap())
    );
}

#[tokio::test]
async fn a_reused_refresh_token_ends_the_access_tokens_of_its_family() {
    let app = app();
    let (a1, r1) = guest(&app).await;
    let (a2, _) = rotate(&app, &r1).await;
    refused(&refresh(&app, &r1).await, StatusCode::BAD_REQUEST, "invalid_grant");
    for token in [&a1, &a2] {
        assert_eq!(verify_error(&app, token).await.as_deref(), Some("token_revoked"));
        // A consume is refused too, and marks nothing.
        let r = app
            .post(
                "/v1/verify",
                Some(SHOP_KEY),
                &json!({ "token": token, "consume": true }),
            )
            .await;
        assert_eq!(r.error(), "token_revoked");
    }
    // Also through /v1/refresh, which shares the code.
    let (a3, r3) = guest(&app).await;
    let (_, _) = rotate(&app, &r3).await;
    let r = app
        .send(
            Request::post("/v1/refresh")
                .header("content-type", "application/json")
                .header("origin", "https://shop.example.com")
                .body(Body::from(json!({ "refresh_token": r3 }).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.error(), "invalid_refresh_token");
    assert_eq!(verify_error(&app, &a3).await.as_deref(), Some("token_revoked"));
}

#[tokio::test]
async fn sid_is_the_services_own_claim() {
    let app = app();
    // An operator's token (no client) with an oversized sid is not looked up.
    let mut extra = serde_json::Map::new();
    extra.insert("sid".into(), json!("s".repeat(257)));
    let spec = tokensmith::TokenSpec {
        sub: "u1".into(),
        aud: vec!["chatbot".into()],
        scopes: vec![],
        ttl: 60,
        extra,
    };
    let long = app.state.authority.sign(None, spec).unwrap().token;
    assert_eq!(verify_error(&app, &long).await.as_deref(), Some("malformed_token"));
    let r = app
        .post(
            "/v1/tokens",
            Some(SHOP_KEY),
            &json!({ "sub": "u1", "claims": { "sid": "forged" } }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error(), "claim_not_allowed");
    for line in ["allowed_claims = [\"sid\"]", "claims = { sid = \"s\" }"] {
        let cfg = format!("[[clients]]\nid = \"c\"\naudience = \"a\"\n{line}\n");
        let e = tokensmith::Config::from_toml_str(&cfg, Vec::<(String, String)>::new()).unwrap_err();
        assert!(e.to_string().contains("registered claim the service sets"), "{e}");
    }
}

#[tokio::test]
async fn a_grant_type_the_client_is_not_allowed_is_unauthorized_client() {
    let cfg = base_config().replace(
        "guest_scopes = [\"chat\"]",
        "guest_scopes = [\"chat\"]\ngrant_types = [\"refresh_token\"]",
    );
    let app = TestApp::new(&cfg);
    let r = form(&app, "/oauth2/token", shop(), "grant_type=client_credentials").await;
    refused(&r, StatusCode::BAD_REQUEST, "unauthorized_client");
    assert!(r.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("client_credentials"));
    let x = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=x\
             &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token";
    refused(
        &form(&app, "/oauth2/token", shop(), x).await,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );
    // The grant it is allowed works; bad credentials are still invalid_client,
    // an unknown grant still unsupported_grant_type.
    let (_, r1) = guest(&app).await;
    ok(&refresh(&app, &r1).await);
    refused(
        &form(
            &app,
            "/oauth2/token",
            Auth::Basic("shop_123", OTHER_KEY),
            "grant_type=client_credentials",
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    refused(
        &form(&app, "/oauth2/token", shop(), "grant_type=password").await,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    );
    // Other clients keep every grant.
    ok(&form(&app, "/oauth2/token", other(), "grant_type=client_credentials").await);
}
