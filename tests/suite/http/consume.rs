//! `consume` at the HTTP edge (issue 10, items 7 and 8): a token issued
//! before the store's epoch answers `replay_state_lost`, and a consume
//! retried with the same `Idempotency-Key` by the same client answers as
//! the first attempt did.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tokensmith::store::memory::MemoryStore;
use tokensmith::store::AnyStore;

use super::{assert_error, assert_ok, assert_rejected, base_config, verify, Resp, TestApp, NOW, SHOP_KEY};

/// A third client with `shop_123`'s audience: it may verify (and consume)
/// the same tokens, but is not `shop_123`.
const PARTNER_KEY: &str = "sk_test_partner_0123456789abcdefghijklmnopq";

fn with_partner() -> String {
    let hash = tokensmith::clients::hash_line(&tokensmith::clients::api_key_hash(PARTNER_KEY));
    format!(
        "{}\n[[clients]]\nid = \"partner\"\naudience = \"chatbot\"\napi_keys = [\"{hash}\"]\n",
        base_config()
    )
}

/// `POST /v1/verify` with `consume: true`, as `key`, with an
/// `Idempotency-Key` header when given.
async fn consume_as(app: &TestApp, key: &str, token: &str, idempotency_key: Option<&[u8]>) -> Resp {
    let mut req = Request::post("/v1/verify")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"));
    if let Some(k) = idempotency_key {
        req = req.header("idempotency-key", k);
    }
    let body = json!({ "token": token, "consume": true }).to_string();
    app.send(req.body(Body::from(body)).unwrap()).await
}

#[tokio::test]
async fn a_token_from_before_the_store_s_epoch_cannot_be_consumed() {
    let store = MemoryStore::new(1000).with_epoch(NOW + 1);
    let app = TestApp::with_store(&base_config(), AnyStore::Memory(store));
    let old = app.token(&json!({"sub": "alice"})).await;
    let r = verify(&app, SHOP_KEY, &json!({"token": old, "consume": true})).await;
    assert_rejected(&r, "replay_state_lost", &old);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\", error_description=\"replay_state_lost\"")
    );
    let description = r.json()["error_description"].as_str().unwrap().to_owned();
    assert!(description.contains("lost its record of used tokens"), "{description}");
    // Verifying without consuming needs no mark: unaffected.
    assert_ok(&verify(&app, SHOP_KEY, &json!({"token": old})).await);
    // A token issued from the epoch on is consumed once.
    app.clock.advance(1);
    let fresh = app.token(&json!({"sub": "alice"})).await;
    assert_ok(&verify(&app, SHOP_KEY, &json!({"token": fresh, "consume": true})).await);
    let r = verify(&app, SHOP_KEY, &json!({"token": fresh, "consume": true})).await;
    assert_rejected(&r, "token_replayed", &fresh);
}

#[tokio::test]
async fn a_consume_retried_with_its_idempotency_key_answers_as_the_first() {
    let app = TestApp::new(&with_partner());
    let token = app.token(&json!({"sub": "alice"})).await;
    let first = consume_as(&app, SHOP_KEY, &token, Some(b"order-17")).await;
    let claims = assert_ok(&first)["claims"].clone();
    for _ in 0..2 {
        let again = consume_as(&app, SHOP_KEY, &token, Some(b"order-17")).await;
        assert_eq!(assert_ok(&again)["claims"], claims, "the first answer, again");
    }
    // Anyone else is a replay: no key, another key, another client.
    for (key, idem) in [
        (SHOP_KEY, None),
        (SHOP_KEY, Some(&b"order-18"[..])),
        (PARTNER_KEY, Some(&b"order-17"[..])),
        (PARTNER_KEY, None),
    ] {
        let r = consume_as(&app, key, &token, idem).await;
        assert_rejected(&r, "token_replayed", &token);
    }
    // A key does not make a replayed token first: the first consume had none.
    let other = app.token(&json!({"sub": "bob"})).await;
    assert_ok(&consume_as(&app, SHOP_KEY, &other, None).await);
    let r = consume_as(&app, SHOP_KEY, &other, Some(b"order-17")).await;
    assert_rejected(&r, "token_replayed", &other);
    // Another client's key is its own.
    let theirs = app.token(&json!({"sub": "carol"})).await;
    assert_ok(&consume_as(&app, PARTNER_KEY, &theirs, Some(b"order-17")).await);
    let r = consume_as(&app, SHOP_KEY, &theirs, Some(b"order-17")).await;
    assert_rejected(&r, "token_replayed", &theirs);
    assert_ok(&consume_as(&app, PARTNER_KEY, &theirs, Some(b"order-17")).await);
}

#[tokio::test]
async fn a_bad_idempotency_key_is_a_bad_request() {
    let app = TestApp::base();
    let token = app.token(&json!({"sub": "alice"})).await;
    let long = "k".repeat(tokensmith::MAX_IDEMPOTENCY_KEY_LEN + 1);
    for bad in [long.as_bytes(), "é".as_bytes(), b"a\tb".as_slice()] {
        let r = consume_as(&app, SHOP_KEY, &token, Some(bad)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
        let description = r.json()["error_description"].as_str().unwrap().to_owned();
        assert!(description.contains("Idempotency-Key"), "{description}");
    }
    // Nothing was consumed by the refused requests.
    let longest = "k".repeat(tokensmith::MAX_IDEMPOTENCY_KEY_LEN);
    assert_ok(&consume_as(&app, SHOP_KEY, &token, Some(longest.as_bytes())).await);
}

/// Without `consume`, a key changes nothing (verifying is repeatable anyway).
#[tokio::test]
async fn an_idempotency_key_without_consume_is_ignored() {
    let app = TestApp::base();
    let token = app.token(&json!({"sub": "alice"})).await;
    let req = Request::post("/v1/verify")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {SHOP_KEY}"))
        .header("idempotency-key", "k");
    let body = json!({ "token": token }).to_string();
    let r = app.send(req.body(Body::from(body)).unwrap()).await;
    let v: Value = assert_ok(&r);
    assert_eq!(v["valid"], true);
    // Nor is it read: one a consume would refuse changes nothing either.
    let req = Request::post("/v1/verify")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {SHOP_KEY}"))
        .header("idempotency-key", "a\tb");
    let body = json!({ "token": token }).to_string();
    assert_eq!(
        assert_ok(&app.send(req.body(Body::from(body)).unwrap()).await)["valid"],
        true
    );
    assert_ok(&consume_as(&app, SHOP_KEY, &token, None).await);
}
