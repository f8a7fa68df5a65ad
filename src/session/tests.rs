//! Tests of `session`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::header::HeaderValue;
use serde_json::json;

use super::*;

fn client() -> Client {
    let mut claims = Map::new();
    claims.insert("storeId".into(), json!("st_1"));
    Client {
        scopes: vec!["chat".into(), "read:orders".into()],
        max_ttl: Duration::from_secs(120),
        claims,
        allowed_claims: vec!["tier".into(), "storeId".into(), "exp".into()],
        guest_scopes: vec!["chat".into()],
        refresh_ttl: Duration::from_secs(3600),
        refresh_family_ttl: Duration::from_secs(7200),
        ..Client::new("shop", "chatbot")
    }
}

#[test]
fn guests_get_a_random_subject_and_the_guest_scopes() {
    let a = Identity::guest(&client()).unwrap();
    let b = Identity::guest(&client()).unwrap();
    assert!(a.sub.starts_with("guest:"));
    assert_eq!(a.sub.len(), "guest:".len() + 22);
    assert_ne!(a.sub, b.sub);
    assert_eq!(a.scopes, vec!["chat".to_owned()]);
}

const ISSUER: &str = "https://auth.example";

/// A one-key ES256 ring and the issuer [`ISSUER`]; the key's kid.
fn own() -> (OwnCredentials, String) {
    use crate::jose::{Algorithm, SigningKey};
    use crate::keys::{KeyRing, KeyState, RingKey};
    let (signing, _) = SigningKey::generate(Algorithm::ES256, 2048).unwrap();
    let ring = KeyRing::from_keys(vec![RingKey::fresh(signing, KeyState::Active, 0).unwrap()]).unwrap();
    let snapshot = ring.snapshot().unwrap();
    let kid = snapshot.signer.kid.clone();
    let keys: SharedKeys = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(snapshot));
    (OwnCredentials::new(keys, ISSUER), kid)
}

/// A compact JWS with these header and payload members and a dummy signature.
fn jws(header: &Value, payload: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.c2ln", part(header), part(payload))
}

#[test]
fn only_cookie_and_authorization_are_forwarded() {
    let (own, _) = own();
    let mut h = HeaderMap::new();
    h.insert("x-api-key", HeaderValue::from_static("sk_secret"));
    h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
    h.insert("host", HeaderValue::from_static("evil.example"));
    assert!(forwarded_headers(&h, &own).is_empty());
    h.append(COOKIE, HeaderValue::from_static("a=1"));
    h.append(COOKIE, HeaderValue::from_static("b=2"));
    h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
    let f = forwarded_headers(&h, &own);
    assert_eq!(f.len(), 3);
    assert_eq!(f.keys_len(), 2);
    assert!(f.get("x-api-key").is_none());
}

#[test]
fn credentials_of_ours_are_never_forwarded() {
    let (own, kid) = own();
    let ours = |v: &str| own.is_ours(&HeaderValue::from_str(v).unwrap());
    // API keys, in every scheme that can carry one.
    assert!(ours("Bearer sk_live_0123456789abcdef"));
    assert!(ours("bearer   sk_test_x"));
    assert!(ours("DPoP sk_live_x"));
    let basic = |user_pass: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_pass));
    assert!(ours(&basic("shop_123:sk_live_secret")));
    assert!(!ours(&basic("shop_123:hunter2")));
    assert!(!ours("Basic !!!"));
    // Tokens we issued: by kid, or by issuer when the key is gone.
    let header = json!({"alg": "ES256", "kid": kid});
    assert!(ours(&format!("Bearer {}", jws(&header, &json!({"sub": "u"})))));
    assert!(ours(&format!("DPoP {}", jws(&header, &json!({})))));
    let gone = json!({"alg": "ES256", "kid": "pruned"});
    assert!(ours(&format!("Bearer {}", jws(&gone, &json!({"iss": ISSUER})))));
    // Anything else is the app's: its own JWTs, opaque sessions, other schemes.
    assert!(!ours(&format!(
        "Bearer {}",
        jws(&gone, &json!({"iss": "https://idp.example"}))
    )));
    assert!(!ours(&format!(
        "Bearer {}",
        jws(&json!({"alg": "RS256"}), &json!({"iss": "x"}))
    )));
    assert!(!ours("Bearer app-session-token"));
    assert!(!ours("Bearer a.b.c"));
    assert!(!ours("Bearer"));
    assert!(!ours("Bearer sk"));
    // Ours whatever the scheme, or with none.
    assert!(ours("Token sk_live_x"));
    assert!(ours("sk_live_x"));
    assert!(ours(&jws(&header, &json!({}))));

    // Dropped from what is forwarded; the cookie still goes.
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer sk_live_secret"));
    assert!(forwarded_headers(&h, &own).is_empty());
    h.insert(COOKIE, HeaderValue::from_static("session=1"));
    let f = forwarded_headers(&h, &own);
    assert_eq!(f.len(), 1);
    assert!(f.get(AUTHORIZATION).is_none());
}

#[test]
fn cache_keys_depend_on_every_forwarded_value() {
    let (own, _) = own();
    let key = |pairs: &[(&'static str, &'static str)]| {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        cache_key(&forwarded_headers(&h, &own))
    };
    let a = key(&[("cookie", "s=1")]);
    assert_eq!(a, key(&[("cookie", "s=1"), ("x-other", "z")]));
    assert_ne!(a, key(&[("cookie", "s=2")]));
    assert_ne!(a, key(&[("authorization", "s=1")]));
    assert_ne!(key(&[("cookie", "a"), ("cookie", "b")]), key(&[("cookie", "ab")]));
}

#[test]
fn answers_are_parsed_strictly_where_it_matters() {
    let ok = parse_answer(br#"{"sub":"u1","scopes":["chat"],"claims":{"tier":"gold"},"name":"Ann"}"#).unwrap();
    assert_eq!(ok.sub, "u1");
    assert_eq!(ok.scopes, vec!["chat".to_owned()]);
    assert_eq!(
        parse_answer(br#"{"sub":"u1","scopes":null}"#).unwrap().scopes,
        Vec::<String>::new()
    );
    for bad in [
        &b"not json"[..],
        br#"{"user":null}"#,
        br#"{"sub":""}"#,
        br#"{"sub":42}"#,
        br#"{"sub":"u","scopes":"chat"}"#,
        br#"{"sub":"u","claims":[]}"#,
    ] {
        assert!(
            matches!(parse_answer(bad), Err(SessionError::Unavailable(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = format!(r#"{{"sub":"{}"}}"#, "x".repeat(257));
    assert!(parse_answer(long.as_bytes()).is_err());
}

#[tokio::test]
async fn no_credentials_means_no_check() {
    let cfg = SessionConfig {
        // Nothing listens here; a check would fail as unavailable.
        check_url: "http://127.0.0.1:9/whoami".into(),
        client: "shop".into(),
        timeout: Duration::from_millis(200),
        cache_ttl: Duration::from_secs(5),
        allow_http: false,
    };
    let checker = SessionChecker::from_config(&cfg, own().0);
    let mut h = HeaderMap::new();
    h.insert("x-api-key", HeaderValue::from_static("sk_x"));
    assert_eq!(checker.check(&h, 0).await, Err(SessionError::NoCredentials));
    h.insert(COOKIE, HeaderValue::from_static("s=1"));
    assert!(matches!(checker.check(&h, 0).await, Err(SessionError::Unavailable(_))));
    // Failures are never cached.
    assert_eq!(checker.cached(), 0);
}

#[tokio::test]
async fn a_cleartext_check_off_loopback_is_never_asked() {
    let mut cfg = SessionConfig {
        // A listener here would see the cookie in clear; the checker refuses to send it.
        check_url: "http://app.example.invalid/whoami".into(),
        client: "shop".into(),
        timeout: Duration::from_millis(200),
        cache_ttl: Duration::ZERO,
        allow_http: false,
    };
    let mut h = HeaderMap::new();
    h.insert(COOKIE, HeaderValue::from_static("s=1"));
    let refused = SessionChecker::from_config(&cfg, own().0).check(&h, 0).await;
    match refused {
        Err(SessionError::Unavailable(why)) => assert!(why.contains("must use https"), "{why}"),
        other => panic!("{other:?}"),
    }
    // With allow_http the request is made (and fails here only because the host does not exist).
    cfg.allow_http = true;
    match SessionChecker::from_config(&cfg, own().0).check(&h, 0).await {
        Err(SessionError::Unavailable(why)) => assert!(!why.contains("must use https"), "{why}"),
        other => panic!("{other:?}"),
    }
}
