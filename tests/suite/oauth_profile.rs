//! RFC 9068 access tokens (`jwt_profile = "at+jwt"`): what they carry, and
//! a verifier that requires `typ: at+jwt` refusing every other JWT of the
//! same issuer (an ID-token-shaped one among them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Value};
use tokensmith::client::extract::{AnyToken, BearerConfig};
use tokensmith::SharedClock;
use tokensmith::Validation;

use super::harness::{base_config, TestApp, SHOP_KEY};
use super::oauth::{enc, form, ok, Auth};

fn part(token: &str, n: usize) -> Value {
    let seg = token.split('.').nth(n).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
}

#[tokio::test]
async fn at_jwt_tokens_carry_the_rfc_9068_header_and_claims() {
    let app = TestApp::new(&base_config().replace(
        "config = { displayName",
        "jwt_profile = \"at+jwt\"\nconfig = { displayName",
    ));
    let v = ok(&form(
        &app,
        "/oauth2/token",
        Auth::Basic("shop_123", SHOP_KEY),
        "grant_type=client_credentials&scope=chat+read%3Aorders",
    )
    .await);
    let token = v["access_token"].as_str().unwrap();
    assert_eq!(part(token, 0)["typ"], "at+jwt");
    let claims = part(token, 1);
    for name in ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"] {
        assert!(claims.get(name).is_some(), "{name} missing: {claims}");
    }
    assert_eq!(claims["scope"], "chat read:orders");
    assert!(claims.get("scopes").is_none());
    // The service reads its scope back.
    let r = app
        .post(
            "/v1/verify",
            Some(SHOP_KEY),
            &json!({ "token": token, "scopes": ["read:orders"] }),
        )
        .await;
    assert_eq!(
        r.status,
        axum::http::StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let i = ok(&form(
        &app,
        "/oauth2/introspect",
        Auth::Basic("shop_123", SHOP_KEY),
        &format!("token={}", enc(token)),
    )
    .await);
    assert_eq!(
        (i["active"].as_bool(), i["scope"].as_str()),
        (Some(true), Some("chat read:orders"))
    );

    // A verifier that requires at+jwt takes it, and refuses a plain JWT of
    // the same issuer and audience: shaped like an ID token, not an access token.
    let clock: SharedClock = app.clock.clone();
    let strict = Validation::new("https://issuer.test").audience("chatbot").typ("at+jwt");
    let bearer = BearerConfig::local(Arc::clone(&app.state.keys), strict, Arc::clone(&clock)).unwrap();
    bearer.check::<AnyToken>(token).await.unwrap();
    let plain = TestApp::base();
    let id_shaped = plain.token(&json!({ "sub": "u1" })).await;
    assert_eq!(part(&id_shaped, 0)["typ"], "JWT");
    let e = bearer.check::<AnyToken>(&id_shaped).await.unwrap_err();
    assert_eq!(e.status_code().1, "malformed_token");
    // Without the requirement, both pass.
    let lax = BearerConfig::local(
        Arc::clone(&app.state.keys),
        Validation::new("https://issuer.test").audience("chatbot"),
        clock,
    )
    .unwrap();
    lax.check::<AnyToken>(&id_shaped).await.unwrap();
}
