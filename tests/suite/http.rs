//! The HTTP service in-process: every row of API.md's status table that the
//! current endpoints can produce, issuance, verification and revocation,
//! the well-known documents, the operator endpoints, and bad input.
//!
//! Every refusal is asserted by exact status and exact `error` code. Odd
//! tokens are forged by signing our own payloads with the fixture key the
//! harness makes active (`rsa2048`), so each one fails exactly one check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Request, StatusCode};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use tokensmith::jose::{jws, Algorithm, Jwk, SigningKey};
use tokensmith::keys::{KeyState, RingKey};
use tokensmith::store::memory::MemoryStore;
use tokensmith::store::AnyStore;
use tower::ServiceExt;

use super::common::pkcs8;
use super::harness::{base_config, fixture_ring, Resp, TestApp, NOW, OTHER_KEY, SHOP_KEY};

const ISSUER: &str = "https://issuer.test";

// ---------------------------------------------------------------------------
// Helpers

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Segment `i` of a compact token, decoded as JSON.
fn segment(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn fixture_key(alg: Algorithm, stem: &str) -> SigningKey {
    SigningKey::from_pkcs8(alg, &pkcs8(stem)).unwrap()
}

fn kid_of(key: &SigningKey) -> String {
    Jwk::from_public(key.algorithm(), key.public_key()).kid.unwrap()
}

fn active_kid(app: &TestApp) -> String {
    app.state.keys.load().signer.kid.clone()
}

/// Claims that pass every check for `shop_123` at [`NOW`].
fn good_claims() -> Value {
    json!({
        "iss": ISSUER, "sub": "alice", "aud": "chatbot",
        "iat": NOW, "exp": NOW + 300, "jti": "forged-jti-0000000001",
    })
}

fn with(key: &str, v: Value) -> Value {
    let mut c = good_claims();
    c[key] = v;
    c
}

fn without(key: &str) -> Value {
    let mut c = good_claims();
    c.as_object_mut().unwrap().remove(key);
    c
}

/// `claims` signed by the active fixture key under its own kid: what the
/// service itself would sign.
fn forge(app: &TestApp, claims: &Value) -> String {
    forge_payload(app, &serde_json::to_vec(claims).unwrap())
}

/// Any payload bytes, signed as [`forge`] signs.
fn forge_payload(app: &TestApp, payload: &[u8]) -> String {
    let key = fixture_key(Algorithm::RS256, "rsa2048");
    let header = jws::header_segment(Algorithm::RS256, &active_kid(app));
    jws::sign(&header, payload, &key).unwrap()
}

/// `claims` under exactly `header` (raw JSON), signed by `key`.
fn forge_with_header(header: &str, claims: &Value, key: &SigningKey) -> String {
    jws::sign(&b64(header), &serde_json::to_vec(claims).unwrap(), key).unwrap()
}

/// POSTs `body` (raw bytes) as JSON with `Authorization: Bearer <key>`.
async fn post_raw(app: &TestApp, path: &str, key: Option<&str>, body: impl Into<Body>) -> Resp {
    let mut req = Request::post(path).header(CONTENT_TYPE, "application/json");
    if let Some(k) = key {
        req = req.header(AUTHORIZATION, format!("Bearer {k}"));
    }
    app.send(req.body(body.into()).unwrap()).await
}

async fn verify(app: &TestApp, key: &str, body: &Value) -> Resp {
    app.post("/v1/verify", Some(key), body).await
}

async fn verify_token(app: &TestApp, token: &str) -> Resp {
    verify(app, SHOP_KEY, &json!({ "token": token })).await
}

fn body_text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// An error answer: this status and code, the `{error, error_description}`
/// shape, and `Cache-Control: no-store`.
#[track_caller]
fn assert_error(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "expected {status} {code}, got: {}", body_text(r));
    let body = r.json();
    let obj = body.as_object().unwrap_or_else(|| panic!("not an object: {body}"));
    assert_eq!(obj.len(), 2, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{body}");
}

/// Neither the body nor any header repeats the token or one of its parts.
#[track_caller]
fn assert_no_token(r: &Resp, token: &str) {
    let text = body_text(r);
    let mut pieces = vec![token];
    pieces.extend(token.split('.'));
    for piece in pieces.into_iter().filter(|p| p.len() >= 16) {
        assert!(!text.contains(piece), "the body echoes the token: {text}");
        for (name, value) in &r.headers {
            let v = String::from_utf8_lossy(value.as_bytes());
            assert!(!v.contains(piece), "header {name} echoes the token: {v}");
        }
    }
}

/// A token rejection: 401, the code, `WWW-Authenticate: Bearer
/// error="invalid_token"…`, and the token not echoed.
#[track_caller]
fn assert_rejected(r: &Resp, code: &str, token: &str) {
    assert_error(r, StatusCode::UNAUTHORIZED, code);
    let www = r
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("no WWW-Authenticate on {code}"));
    assert!(www.starts_with("Bearer error=\"invalid_token\""), "{code}: {www}");
    assert_no_token(r, token);
}

#[track_caller]
fn assert_ok(r: &Resp) -> Value {
    assert_eq!(r.status, StatusCode::OK, "{}", body_text(r));
    r.json()
}

// ---------------------------------------------------------------------------
// 400 invalid_request

#[tokio::test]
async fn bad_token_requests_are_invalid_request() {
    let app = TestApp::base();
    let deep_claims = format!(
        r#"{{"sub":"u1","claims":{{"tier":{}1{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let long_sub = json!({ "sub": "u".repeat(257) }).to_string();
    let bodies: Vec<(&str, String)> = vec![
        ("malformed JSON", r#"{"sub":"#.into()),
        ("trailing garbage", r#"{"sub":"u1"} x"#.into()),
        ("empty body", String::new()),
        ("missing sub", "{}".into()),
        ("sub wrong type", r#"{"sub":5}"#.into()),
        ("scopes wrong type", r#"{"sub":"u1","scopes":"read:orders"}"#.into()),
        ("scope not a string", r#"{"sub":"u1","scopes":[5]}"#.into()),
        ("aud wrong type", r#"{"sub":"u1","aud":5}"#.into()),
        ("claims wrong type", r#"{"sub":"u1","claims":["tier"]}"#.into()),
        ("unknown field", r#"{"sub":"u1","admin":true}"#.into()),
        ("duplicate field", r#"{"sub":"u1","sub":"root"}"#.into()),
        ("bad duration", r#"{"sub":"u1","ttl":"3x"}"#.into()),
        ("negative ttl", r#"{"sub":"u1","ttl":-5}"#.into()),
        ("negative ttl string", r#"{"sub":"u1","ttl":"-5m"}"#.into()),
        ("zero ttl", r#"{"sub":"u1","ttl":0}"#.into()),
        ("zero ttl string", r#"{"sub":"u1","ttl":"0s"}"#.into()),
        ("fractional ttl", r#"{"sub":"u1","ttl":1.5}"#.into()),
        ("boolean ttl", r#"{"sub":"u1","ttl":true}"#.into()),
        ("empty sub", r#"{"sub":""}"#.into()),
        ("sub over 256 bytes", long_sub),
        ("empty aud list", r#"{"sub":"u1","aud":[]}"#.into()),
        ("empty scope", r#"{"sub":"u1","scopes":[""]}"#.into()),
        ("unknown purpose", r#"{"sub":"u1","purpose":"admin"}"#.into()),
        (
            "aud on an exchange token",
            r#"{"sub":"u1","purpose":"exchange","aud":"chatbot"}"#.into(),
        ),
        ("deep JSON in claims", deep_claims),
        ("array body", r#"["u1"]"#.into()),
        ("string body", r#""u1""#.into()),
        ("null body", "null".into()),
    ];
    for (what, body) in bodies {
        let r = post_raw(&app, "/v1/tokens", Some(SHOP_KEY), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", body_text(&r));
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn bad_verify_and_revoke_requests_are_invalid_request() {
    let app = TestApp::base();
    let cases: [(&str, &str); 17] = [
        ("/v1/verify", r#"{"token":"#),
        ("/v1/verify", "{}"),
        ("/v1/verify", r#"{"token":5}"#),
        ("/v1/verify", r#"{"token":"a.b.c","extra":1}"#),
        ("/v1/verify", r#"{"token":"a.b.c","consume":"yes"}"#),
        ("/v1/verify", r#"{"token":"a.b.c","scopes":"chat"}"#),
        ("/v1/verify", r#"{"token":"a.b.c","audience":["chatbot"]}"#),
        ("/v1/verify", r#"["a.b.c"]"#),
        ("/v1/revoke", "{"),
        ("/v1/revoke", "{}"),
        ("/v1/revoke", r#"{"jti":"a","sub":"b"}"#),
        ("/v1/revoke", r#"{"jti":null,"sub":null}"#),
        ("/v1/revoke", r#"{"jti":""}"#),
        ("/v1/revoke", r#"{"sub":""}"#),
        ("/v1/revoke", r#"{"jti":5}"#),
        ("/v1/revoke", r#"{"jti":"a","reason":"x"}"#),
        ("/v1/revoke", r#"["a"]"#),
    ];
    for (path, body) in cases {
        let r = post_raw(&app, path, Some(SHOP_KEY), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path} {body}: {}", body_text(&r));
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

// ---------------------------------------------------------------------------
// 415

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_415() {
    let app = TestApp::base();
    let bodies = [
        ("/v1/tokens", json!({"sub": "u1"})),
        ("/v1/verify", json!({"token": "a.b.c"})),
        ("/v1/revoke", json!({"jti": "j1"})),
    ];
    for (path, body) in &bodies {
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("json"),
        ] {
            let mut req = Request::post(*path).header(AUTHORIZATION, format!("Bearer {SHOP_KEY}"));
            if let Some(ct) = ct {
                req = req.header(CONTENT_TYPE, ct);
            }
            let r = app.send(req.body(Body::from(body.to_string())).unwrap()).await;
            assert_eq!(
                r.status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{path} {ct:?}: {}",
                body_text(&r)
            );
            assert_error(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request");
        }
    }
    // A charset parameter and letter case do not matter.
    let req = Request::post("/v1/tokens")
        .header(AUTHORIZATION, format!("Bearer {SHOP_KEY}"))
        .header(CONTENT_TYPE, "Application/JSON; charset=utf-8")
        .body(Body::from(r#"{"sub":"u1"}"#))
        .unwrap();
    assert_ok(&app.send(req).await);
}

// ---------------------------------------------------------------------------
// 401 invalid_api_key

#[tokio::test]
async fn api_key_missing_unknown_or_malformed_is_401() {
    let app = TestApp::base();
    let basic = format!("Basic {}", STANDARD.encode(format!("shop_123:{SHOP_KEY}")));
    let near_miss = format!("Bearer {SHOP_KEY}x");
    let prefix_only = format!("Bearer {}", &SHOP_KEY[..SHOP_KEY.len() - 1]);
    let non_ascii: Vec<u8> = [format!("Bearer {SHOP_KEY}").as_bytes(), b"\xff"].concat();
    let non_ascii_x: Vec<u8> = [SHOP_KEY.as_bytes(), b"\xe9"].concat();
    let bearer_in_x = format!("Bearer {SHOP_KEY}");
    // (what, the one credential header sent, if any)
    type Case<'a> = (&'a str, Option<(&'a str, Vec<u8>)>);
    let cases: Vec<Case> = vec![
        ("missing", None),
        (
            "unknown",
            Some((
                "authorization",
                b"Bearer sk_test_nobody_0123456789abcdefghijkl".to_vec(),
            )),
        ),
        ("near miss", Some(("authorization", near_miss.into_bytes()))),
        ("truncated", Some(("authorization", prefix_only.into_bytes()))),
        ("empty bearer", Some(("authorization", b"Bearer ".to_vec()))),
        ("scheme only", Some(("authorization", b"Bearer".to_vec()))),
        ("no scheme", Some(("authorization", SHOP_KEY.as_bytes().to_vec()))),
        ("basic scheme", Some(("authorization", basic.into_bytes()))),
        ("non-ASCII bytes", Some(("authorization", non_ascii))),
        (
            "x-api-key unknown",
            Some(("x-api-key", b"sk_test_nobody_0123456789abcdefghijkl".to_vec())),
        ),
        ("x-api-key empty", Some(("x-api-key", Vec::new()))),
        ("x-api-key not sk_", Some(("x-api-key", b"pk_test_shop_123".to_vec()))),
        ("x-api-key with a scheme", Some(("x-api-key", bearer_in_x.into_bytes()))),
        ("x-api-key non-ASCII", Some(("x-api-key", non_ascii_x))),
    ];
    let endpoints = [
        ("/v1/tokens", json!({"sub": "u1"})),
        ("/v1/verify", json!({"token": "a.b.c"})),
        ("/v1/revoke", json!({"jti": "j1"})),
    ];
    for (path, body) in &endpoints {
        for (what, header) in &cases {
            let mut req = Request::post(*path).header(CONTENT_TYPE, "application/json");
            if let Some((name, value)) = header {
                req = req.header(*name, value.as_slice());
            }
            let r = app.send(req.body(Body::from(body.to_string())).unwrap()).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} {what}: {}", body_text(&r));
            assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_api_key");
            let www = r.header("www-authenticate").unwrap_or_else(|| panic!("{path} {what}"));
            assert!(www.starts_with("Bearer"), "{www}");
            assert!(!body_text(&r).contains(SHOP_KEY), "{path} {what}");
        }
    }
    // The right key passes through either header, with any case of scheme.
    for (name, value) in [
        ("x-api-key", SHOP_KEY.to_owned()),
        ("authorization", format!("bearer {SHOP_KEY}")),
        ("authorization", format!("Bearer {SHOP_KEY}")),
    ] {
        let req = Request::post("/v1/tokens")
            .header(CONTENT_TYPE, "application/json")
            .header(name, value)
            .body(Body::from(r#"{"sub":"u1"}"#))
            .unwrap();
        assert_ok(&app.send(req).await);
    }
}

// ---------------------------------------------------------------------------
// 401 token rejections

#[tokio::test]
async fn each_forged_token_gets_its_rejection_code() {
    let app = TestApp::base();
    let kid = active_kid(&app);
    let ours = fixture_key(Algorithm::RS256, "rsa2048");
    let attackers = fixture_key(Algorithm::RS256, "rsa2048_b");
    let pss = fixture_key(Algorithm::PS256, "rsa2048");
    let real = app.token(&json!({"sub": "alice"})).await;
    let (h, _) = real.split_once('.').unwrap();
    let sig = real.rsplit_once('.').unwrap().1;
    let payload_of = |c: &Value| b64(serde_json::to_vec(c).unwrap());
    let header = |alg: &str, kid: &str| format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{kid}"}}"#);
    let big = with("pad", json!("A".repeat(9_000)));

    let cases: Vec<(&str, &str, String)> = vec![
        ("garbage", "malformed_token", "not-a-token-at-all-really".into()),
        ("empty", "malformed_token", String::new()),
        (
            "two parts",
            "malformed_token",
            real.rsplit_once('.').unwrap().0.to_owned(),
        ),
        ("four parts", "malformed_token", format!("{real}.{sig}")),
        (
            "padding",
            "malformed_token",
            format!("{h}=.{}", real.split_once('.').unwrap().1),
        ),
        ("over 8 KiB", "malformed_token", forge(&app, &big)),
        (
            "crit header",
            "malformed_token",
            forge_with_header(
                &format!(r#"{{"alg":"RS256","kid":"{kid}","crit":["exp"],"exp":1}}"#),
                &good_claims(),
                &ours,
            ),
        ),
        (
            "duplicate header member",
            "malformed_token",
            forge_with_header(
                &format!(r#"{{"alg":"RS256","alg":"RS256","kid":"{kid}"}}"#),
                &good_claims(),
                &ours,
            ),
        ),
        ("claims not JSON", "malformed_token", forge_payload(&app, b"not json")),
        ("claims not an object", "malformed_token", forge_payload(&app, b"[1]")),
        (
            "duplicate claim",
            "malformed_token",
            forge_payload(
                &app,
                format!(
                    r#"{{"iss":"{ISSUER}","sub":"a","aud":"chatbot","iat":{NOW},"exp":{},"exp":{},"jti":"j"}}"#,
                    NOW + 10,
                    NOW + 99_999
                )
                .as_bytes(),
            ),
        ),
        (
            "exp a string",
            "malformed_token",
            forge(&app, &with("exp", json!("never"))),
        ),
        (
            "signed by another key",
            "bad_signature",
            forge_with_header(&header("RS256", &kid), &good_claims(), &attackers),
        ),
        (
            "payload swapped",
            "bad_signature",
            format!("{h}.{}.{sig}", payload_of(&with("sub", json!("admin")))),
        ),
        (
            "unknown kid",
            "unknown_kid",
            forge_with_header(&header("RS256", "nope"), &good_claims(), &ours),
        ),
        (
            "no kid",
            "unknown_kid",
            forge_with_header(r#"{"alg":"RS256","typ":"JWT"}"#, &good_claims(), &ours),
        ),
        (
            "alg none",
            "alg_not_allowed",
            format!("{}.{}.", b64(header("none", &kid)), payload_of(&good_claims())),
        ),
        (
            "PS256 on an RS256 key",
            "alg_not_allowed",
            forge_with_header(&header("PS256", &kid), &good_claims(), &pss),
        ),
        (
            "HS256 on an RSA key",
            "alg_not_allowed",
            format!(
                "{}.{}.{}",
                b64(header("HS256", &kid)),
                payload_of(&good_claims()),
                b64([7u8; 32])
            ),
        ),
        (
            "expired long ago",
            "token_expired",
            forge(&app, &with("exp", json!(NOW - 61)).tap_set("iat", json!(NOW - 361))),
        ),
        (
            "nbf in the future",
            "token_not_yet_valid",
            forge(
                &app,
                &with("nbf", json!(NOW + 1_000)).tap_set("exp", json!(NOW + 2_000)),
            ),
        ),
        (
            "iat in the future",
            "issued_in_future",
            forge(
                &app,
                &with("iat", json!(NOW + 1_000)).tap_set("exp", json!(NOW + 1_300)),
            ),
        ),
        (
            "ttl over 24h",
            "ttl_too_long",
            forge(&app, &with("exp", json!(NOW + 86_401))),
        ),
        (
            "another issuer",
            "wrong_issuer",
            forge(&app, &with("iss", json!("https://evil.test"))),
        ),
        (
            "issuer with a slash",
            "wrong_issuer",
            forge(&app, &with("iss", json!("https://issuer.test/"))),
        ),
        (
            "another audience",
            "wrong_audience",
            forge(&app, &with("aud", json!("plugin"))),
        ),
        ("no audience", "wrong_audience", forge(&app, &without("aud"))),
        ("no jti", "missing_claim", forge(&app, &without("jti"))),
        ("no sub", "missing_claim", forge(&app, &without("sub"))),
        ("empty sub", "missing_claim", forge(&app, &with("sub", json!("")))),
        ("no exp", "missing_claim", forge(&app, &without("exp"))),
        ("no iat", "missing_claim", forge(&app, &without("iat"))),
        ("no iss", "missing_claim", forge(&app, &without("iss"))),
    ];
    for (what, code, token) in &cases {
        let r = verify_token(&app, token).await;
        assert_eq!(r.json()["error"], *code, "{what}: {}", body_text(&r));
        assert_rejected(&r, code, token);
    }
    // The control: the forging itself is sound.
    assert_eq!(
        assert_ok(&verify_token(&app, &forge(&app, &good_claims())).await)["valid"],
        true
    );
    assert_eq!(
        assert_ok(&verify_token(&app, &forge(&app, &with("aud", json!(["plugin", "chatbot"])))).await)["valid"],
        true
    );
}

/// Sets one member of a JSON object and gives it back.
trait TapSet {
    fn tap_set(self, key: &str, v: Value) -> Value;
}

impl TapSet for Value {
    fn tap_set(mut self, key: &str, v: Value) -> Value {
        self[key] = v;
        self
    }
}

#[tokio::test]
async fn a_token_expires_when_the_clock_passes_exp_plus_leeway() {
    let app = TestApp::base();
    let token = app.token(&json!({"sub": "alice"})).await;
    app.clock.advance(300 + 59);
    assert_ok(&verify_token(&app, &token).await);
    app.clock.advance(1);
    let r = verify_token(&app, &token).await;
    assert_rejected(&r, "token_expired", &token);
}

#[tokio::test]
async fn a_missing_required_scope_is_403_insufficient_scope() {
    let app = TestApp::base();
    let token = app.token(&json!({"sub": "alice", "scopes": ["read:orders"]})).await;
    let ok = verify(&app, SHOP_KEY, &json!({"token": token, "scopes": ["read:orders"]})).await;
    assert_eq!(assert_ok(&ok)["claims"]["scopes"], json!(["read:orders"]));
    for scopes in [json!(["write:orders"]), json!(["read:orders", "chat"])] {
        let r = verify(&app, SHOP_KEY, &json!({"token": token, "scopes": scopes})).await;
        assert_error(&r, StatusCode::FORBIDDEN, "insufficient_scope");
        let www = r.header("www-authenticate").unwrap();
        assert!(www.starts_with("Bearer error=\"insufficient_scope\""), "{www}");
        assert_no_token(&r, &token);
    }
}

// ---------------------------------------------------------------------------
// 403 policy

#[tokio::test]
async fn asking_for_more_than_the_policy_gives_is_403() {
    let app = TestApp::base();
    let shop = [
        (json!({"sub": "u1", "scopes": ["admin"]}), "scope_not_allowed"),
        (
            json!({"sub": "u1", "scopes": ["read:orders", "admin"]}),
            "scope_not_allowed",
        ),
        (json!({"sub": "u1", "aud": "plugin"}), "audience_not_allowed"),
        (
            json!({"sub": "u1", "aud": ["chatbot", "plugin"]}),
            "audience_not_allowed",
        ),
        (json!({"sub": "u1", "ttl": "31m"}), "ttl_not_allowed"),
        (json!({"sub": "u1", "ttl": 1801}), "ttl_not_allowed"),
        (json!({"sub": "u1", "ttl": "25h"}), "ttl_not_allowed"),
        (
            json!({"sub": "u1", "purpose": "exchange", "ttl": "10m"}),
            "ttl_not_allowed",
        ),
        (json!({"sub": "u1", "claims": {"role": "admin"}}), "claim_not_allowed"),
        (
            json!({"sub": "u1", "claims": {"tier": "gold", "role": "admin"}}),
            "claim_not_allowed",
        ),
        (json!({"sub": "u1", "claims": {"sub": "root"}}), "claim_not_allowed"),
        (
            json!({"sub": "u1", "claims": {"exp": 9_999_999_999_i64}}),
            "claim_not_allowed",
        ),
        (
            json!({"sub": "u1", "claims": {"iss": "https://evil.test"}}),
            "claim_not_allowed",
        ),
        (json!({"sub": "u1", "claims": {"aud": "plugin"}}), "claim_not_allowed"),
        (json!({"sub": "u1", "claims": {"jti": "fixed"}}), "claim_not_allowed"),
        (json!({"sub": "u1", "claims": {"iat": 0}}), "claim_not_allowed"),
        (json!({"sub": "u1", "claims": {"nbf": 0}}), "claim_not_allowed"),
        (
            json!({"sub": "u1", "claims": {"scopes": ["admin"]}}),
            "claim_not_allowed",
        ),
        (json!({"sub": "u1", "claims": {"scope": "admin"}}), "claim_not_allowed"),
        (json!({"sub": "u1", "claims": {"storeId": "st_2"}}), "claim_not_allowed"),
        (json!({"sub": "u1", "claims": {"appId": "app_1"}}), "claim_not_allowed"),
        (
            json!({"sub": "u1", "claims": {"installationId": "in_1"}}),
            "claim_not_allowed",
        ),
    ];
    for (body, code) in &shop {
        let r = app.post("/v1/tokens", Some(SHOP_KEY), body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body}: {}", body_text(&r));
        assert_error(&r, StatusCode::FORBIDDEN, code);
    }
    // `other` has no scopes and no allowed claims.
    for (body, code) in [
        (json!({"sub": "u1", "scopes": ["chat"]}), "scope_not_allowed"),
        (json!({"sub": "u1", "claims": {"tier": "gold"}}), "claim_not_allowed"),
        (json!({"sub": "u1", "aud": "chatbot"}), "audience_not_allowed"),
    ] {
        let r = app.post("/v1/tokens", Some(OTHER_KEY), &body).await;
        assert_error(&r, StatusCode::FORBIDDEN, code);
    }
    // What the policy does give passes.
    for body in [
        json!({"sub": "u1", "aud": "chatbot-admin"}),
        json!({"sub": "u1", "aud": ["chatbot", "chatbot-admin"]}),
        json!({"sub": "u1", "ttl": "30m"}),
        json!({"sub": "u1", "ttl": 1800}),
        json!({"sub": "u1", "scopes": ["read:orders", "write:orders", "chat"]}),
        json!({"sub": "u1", "claims": {"tier": "gold"}}),
    ] {
        assert_ok(&app.post("/v1/tokens", Some(SHOP_KEY), &body).await);
    }
}

// ---------------------------------------------------------------------------
// 413

#[tokio::test]
async fn bodies_over_64_kib_are_413() {
    let app = TestApp::base();
    let at_cap = |len: usize| {
        let mut s = String::from(r#"{"sub":"u1"}"#);
        s.push_str(&" ".repeat(len - s.len()));
        s
    };
    let over = post_raw(&app, "/v1/tokens", Some(SHOP_KEY), at_cap(64 * 1024 + 1)).await;
    assert_error(&over, StatusCode::PAYLOAD_TOO_LARGE, "request_too_large");
    let way_over = post_raw(&app, "/v1/verify", Some(SHOP_KEY), at_cap(1024 * 1024)).await;
    assert_error(&way_over, StatusCode::PAYLOAD_TOO_LARGE, "request_too_large");
    for len in [64 * 1024, 64 * 1024 - 1] {
        assert_ok(&post_raw(&app, "/v1/tokens", Some(SHOP_KEY), at_cap(len)).await);
    }
}

// ---------------------------------------------------------------------------
// 429

#[tokio::test]
async fn over_the_client_rate_is_429_with_retry_after() {
    let cfg = base_config();
    let limited = cfg.replace(r#"rate_limit = "1000/s""#, r#"rate_limit = "2/s""#);
    assert_ne!(cfg, limited);
    let app = TestApp::new(&limited);
    let body = json!({"sub": "u1"});
    assert_ok(&app.post("/v1/tokens", Some(SHOP_KEY), &body).await);
    assert_ok(&app.post("/v1/tokens", Some(SHOP_KEY), &body).await);
    for path in ["/v1/tokens", "/v1/verify", "/v1/revoke"] {
        let r = app.post(path, Some(SHOP_KEY), &body).await;
        assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        assert_eq!(r.header("retry-after"), Some("1"), "{path}");
    }
    // Another client has its own budget; the next window opens a new one.
    assert_ok(&app.post("/v1/tokens", Some(OTHER_KEY), &body).await);
    app.clock.advance(1);
    assert_ok(&app.post("/v1/tokens", Some(SHOP_KEY), &body).await);
}

// ---------------------------------------------------------------------------
// 503

/// A full store's answer names what is wrong: full, with its capacity, not
/// unreachable.
#[track_caller]
fn assert_full(r: &Resp) {
    let body = r.json();
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.starts_with("the replay store is full (capacity 1)"),
        "{body}"
    );
    assert!(!description.contains("reached"), "{body}");
}

#[tokio::test]
async fn a_full_store_is_503_never_a_pass() {
    let app = TestApp::with_store(&base_config(), AnyStore::Memory(MemoryStore::new(1)));
    let a = app.token(&json!({"sub": "alice"})).await;
    let b = app.token(&json!({"sub": "bob"})).await;
    let consume = |t: &str| json!({"token": t, "consume": true});
    assert_ok(&verify(&app, SHOP_KEY, &consume(&a)).await);
    for _ in 0..2 {
        let r = verify(&app, SHOP_KEY, &consume(&b)).await;
        assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "store_full");
        assert_full(&r);
        assert_no_token(&r, &b);
    }
    // The first mark holds; a plain verification needs no new entry.
    assert_rejected(&verify(&app, SHOP_KEY, &consume(&a)).await, "token_replayed", &a);
    assert_ok(&verify_token(&app, &b).await);
    // Revocations are refused the same way once the one slot is taken.
    assert_ok(
        &app.post("/v1/revoke", Some(SHOP_KEY), &json!({"jti": "AAAAAAAAAAAAAAAAAAAAAA"}))
            .await,
    );
    let r = app
        .post("/v1/revoke", Some(SHOP_KEY), &json!({"jti": "AAAAAAAAAAAAAAAAAAAAAQ"}))
        .await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "store_full");
    assert_full(&r);
    // A full store is not ready, and says so: it is reachable, but full.
    let ready = app.get("/readyz").await;
    assert_error(&ready, StatusCode::SERVICE_UNAVAILABLE, "store_full");
    assert_full(&ready);
    // ... and becomes ready again once the mark has expired, with nothing but
    // probes arriving (a balancer sends no traffic to an unready instance).
    app.clock.advance(300 + 60 + 3);
    assert_ok(&app.get("/readyz").await);
    let metrics = body_text(&app.get("/metrics").await);
    assert!(
        metrics.contains("tokensmith_verifications_total{result=\"error\"} 2"),
        "{metrics}"
    );
}

// ---------------------------------------------------------------------------
// Issuance

#[tokio::test]
async fn an_issued_token_has_the_documented_shape() {
    let app = TestApp::base();
    let r = app
        .post(
            "/v1/tokens",
            Some(SHOP_KEY),
            &json!({"sub": "alice", "scopes": ["read:orders", "chat"]}),
        )
        .await;
    let body = assert_ok(&r);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let obj = body.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["expires_at", "expires_in", "jti", "token", "token_type"]);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["expires_at"], NOW + 300);
    let token = body["token"].as_str().unwrap();

    let header = segment(token, 0);
    let jwks = app.get("/.well-known/jwks.json").await.json();
    let signer = kid_of(&fixture_key(Algorithm::RS256, "rsa2048"));
    assert_eq!(header, json!({"alg": "RS256", "typ": "JWT", "kid": signer}));
    assert_eq!(jwks["keys"][1]["kid"], signer);
    assert_eq!(active_kid(&app), signer);

    let claims = segment(token, 1);
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(jti, body["jti"]);
    assert_eq!(jti.len(), 22);
    assert_eq!(URL_SAFE_NO_PAD.decode(jti).unwrap().len(), 16);
    assert_eq!(
        claims,
        json!({
            "iss": ISSUER, "sub": "alice", "aud": "chatbot", "iat": NOW, "exp": NOW + 300,
            "jti": jti, "scopes": ["read:orders", "chat"], "client_id": "shop_123",
            "storeId": "st_1", "appId": "app_9", "installationId": "in_4",
        })
    );
    let again = app.token(&json!({"sub": "alice"})).await;
    assert_ne!(segment(&again, 1)["jti"], claims["jti"]);
}

#[tokio::test]
async fn audiences_scopes_and_extra_claims() {
    let app = TestApp::base();
    let plain = segment(&app.token(&json!({"sub": "u1"})).await, 1);
    assert!(plain.get("scopes").is_none(), "{plain}");
    assert_eq!(plain["aud"], "chatbot");
    let one = segment(&app.token(&json!({"sub": "u1", "aud": "chatbot-admin"})).await, 1);
    assert_eq!(one["aud"], "chatbot-admin");
    let many = segment(
        &app.token(&json!({"sub": "u1", "aud": ["chatbot", "chatbot-admin"]}))
            .await,
        1,
    );
    assert_eq!(many["aud"], json!(["chatbot", "chatbot-admin"]));
    let empty_scopes = segment(&app.token(&json!({"sub": "u1", "scopes": []})).await, 1);
    assert!(empty_scopes.get("scopes").is_none(), "{empty_scopes}");
    let tier = segment(&app.token(&json!({"sub": "u1", "claims": {"tier": "gold"}})).await, 1);
    assert_eq!(tier["tier"], "gold");
    assert_eq!(tier["storeId"], "st_1");
    let other = app
        .post("/v1/tokens", Some(OTHER_KEY), &json!({"sub": "u2"}))
        .await
        .json();
    let other = segment(other["token"].as_str().unwrap(), 1);
    assert_eq!(other["aud"], "plugin");
    assert!(other.get("storeId").is_none(), "{other}");
}

#[tokio::test]
async fn ttl_is_a_duration_or_seconds_and_defaults_to_5m() {
    let app = TestApp::base();
    for (ttl, secs) in [
        (None, 300),
        (Some(json!("10m")), 600),
        (Some(json!(600)), 600),
        (Some(json!("90s")), 90),
        (Some(json!("30m")), 1800),
    ] {
        let mut body = json!({"sub": "u1"});
        if let Some(t) = &ttl {
            body["ttl"] = t.clone();
        }
        let r = assert_ok(&app.post("/v1/tokens", Some(SHOP_KEY), &body).await);
        assert_eq!(r["expires_in"], secs, "{ttl:?}");
        assert_eq!(r["expires_at"], NOW + secs, "{ttl:?}");
        let c = segment(r["token"].as_str().unwrap(), 1);
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), secs, "{ttl:?}");
    }
}

#[tokio::test]
async fn an_exchange_token_is_short_and_for_the_exchange_endpoint() {
    let app = TestApp::base();
    let r = assert_ok(
        &app.post(
            "/v1/tokens",
            Some(SHOP_KEY),
            &json!({"sub": "u1", "purpose": "exchange"}),
        )
        .await,
    );
    assert!(r["expires_in"].as_i64().unwrap() <= 300, "{r}");
    let token = r["token"].as_str().unwrap();
    let c = segment(token, 1);
    assert_eq!(c["aud"], "https://issuer.test/v1/exchange");
    assert!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap() <= 300);
    let short = assert_ok(
        &app.post(
            "/v1/tokens",
            Some(SHOP_KEY),
            &json!({"sub": "u1", "purpose": "exchange", "ttl": "4m"}),
        )
        .await,
    );
    assert_eq!(short["expires_in"], 240);
    let long = app
        .post(
            "/v1/tokens",
            Some(SHOP_KEY),
            &json!({"sub": "u1", "purpose": "exchange", "ttl": "10m"}),
        )
        .await;
    assert_error(&long, StatusCode::FORBIDDEN, "ttl_not_allowed");
    // It is no access token for the client's own audience.
    assert_rejected(&verify_token(&app, token).await, "wrong_audience", token);
}

// ---------------------------------------------------------------------------
// Verify and revoke

#[tokio::test]
async fn verify_answers_valid_and_the_claims() {
    let app = TestApp::base();
    let token = app
        .token(&json!({"sub": "alice", "scopes": ["chat"], "claims": {"tier": "gold"}}))
        .await;
    let r = verify_token(&app, &token).await;
    let body = assert_ok(&r);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(body, json!({"valid": true, "claims": segment(&token, 1)}));
}

#[tokio::test]
async fn the_audience_defaults_to_the_callers() {
    let app = TestApp::base();
    let token = app.token(&json!({"sub": "alice"})).await;
    let r = verify(&app, OTHER_KEY, &json!({"token": token})).await;
    assert_rejected(&r, "wrong_audience", &token);
    // Naming another client's audience does not help: a client verifies
    // tokens for its own audiences, or tokens it was issued itself.
    let named = verify(&app, OTHER_KEY, &json!({"token": token, "audience": "chatbot"})).await;
    assert_rejected(&named, "wrong_audience", &token);
    let own = verify(&app, SHOP_KEY, &json!({"token": token, "audience": "chatbot-admin"})).await;
    assert_rejected(&own, "wrong_audience", &token);
    let wrong = verify(&app, SHOP_KEY, &json!({"token": token, "audience": "plugin"})).await;
    assert_rejected(&wrong, "wrong_audience", &token);
}

#[tokio::test]
async fn consume_succeeds_once_then_replayed() {
    let app = TestApp::base();
    let token = app.token(&json!({"sub": "alice"})).await;
    let body = json!({"token": token, "consume": true});
    assert_ok(&verify(&app, SHOP_KEY, &body).await);
    assert_rejected(&verify(&app, SHOP_KEY, &body).await, "token_replayed", &token);
    // Another client cannot consume (burn) a token of a foreign audience:
    // it is refused before the store is touched.
    let fresh = app.token(&json!({"sub": "bob"})).await;
    let other = verify(
        &app,
        OTHER_KEY,
        &json!({"token": fresh, "audience": "chatbot", "consume": true}),
    )
    .await;
    assert_rejected(&other, "wrong_audience", &fresh);
    assert_ok(&verify(&app, SHOP_KEY, &json!({"token": fresh, "consume": true})).await);
    // A different token of the same subject is unaffected.
    let fresh = app.token(&json!({"sub": "alice"})).await;
    assert_ok(&verify(&app, SHOP_KEY, &json!({"token": fresh, "consume": true})).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_64_concurrent_consumes_exactly_one_wins() {
    let app = TestApp::base();
    let token = app.token(&json!({"sub": "alice"})).await;
    let body = json!({"token": token, "consume": true}).to_string();
    let handles: Vec<_> = (0..64)
        .map(|_| {
            let router = app.router.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let req = Request::post("/v1/verify")
                    .header(CONTENT_TYPE, "application/json")
                    .header(AUTHORIZATION, format!("Bearer {SHOP_KEY}"))
                    .body(Body::from(body))
                    .unwrap();
                let resp = router.oneshot(req).await.unwrap();
                let status = resp.status();
                let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
                (status, serde_json::from_slice::<Value>(&bytes).unwrap())
            })
        })
        .collect();
    let mut wins = 0;
    for h in handles {
        let (status, body) = h.await.unwrap();
        if status == StatusCode::OK {
            wins += 1;
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            assert_eq!(body["error"], "token_replayed", "{body}");
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn revoking_a_jti_rejects_that_token_only() {
    let app = TestApp::base();
    let a = app.token(&json!({"sub": "alice"})).await;
    let b = app.token(&json!({"sub": "alice"})).await;
    let jti = segment(&a, 1)["jti"].as_str().unwrap().to_owned();
    let r = app.post("/v1/revoke", Some(SHOP_KEY), &json!({"jti": jti})).await;
    assert_ok(&r);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_rejected(&verify_token(&app, &a).await, "token_revoked", &a);
    // Revoked beats consume: nothing is marked, the answer is the revocation.
    assert_rejected(
        &verify(&app, SHOP_KEY, &json!({"token": a, "consume": true})).await,
        "token_revoked",
        &a,
    );
    assert_ok(&verify_token(&app, &b).await);
}

#[tokio::test]
async fn revoking_a_sub_rejects_its_earlier_tokens_only() {
    let app = TestApp::base();
    let alice = app.token(&json!({"sub": "alice"})).await;
    let bob = app.token(&json!({"sub": "bob"})).await;
    assert_ok(&app.post("/v1/revoke", Some(SHOP_KEY), &json!({"sub": "alice"})).await);
    assert_rejected(&verify_token(&app, &alice).await, "token_revoked", &alice);
    assert_ok(&verify_token(&app, &bob).await);
    // A token issued after the revocation is good.
    app.clock.advance(1);
    let later = app.token(&json!({"sub": "alice"})).await;
    assert_ok(&verify_token(&app, &later).await);
    assert_rejected(&verify_token(&app, &alice).await, "token_revoked", &alice);
}

// ---------------------------------------------------------------------------
// Well-known documents

#[tokio::test]
async fn the_jwks_has_both_keys_newest_first_and_caches() {
    let app = TestApp::base();
    let r = app.get("/.well-known/jwks.json").await;
    let jwks = assert_ok(&r);
    let active = kid_of(&fixture_key(Algorithm::RS256, "rsa2048"));
    let next = kid_of(&fixture_key(Algorithm::RS256, "rsa2048_b"));
    let keys = jwks["keys"].as_array().unwrap();
    let kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, [next.as_str(), active.as_str()]);
    for k in keys {
        let mut members: Vec<&str> = k.as_object().unwrap().keys().map(String::as_str).collect();
        members.sort_unstable();
        assert_eq!(members, ["alg", "e", "kid", "kty", "n", "use"], "{k}");
        assert_eq!(k["kty"], "RSA");
        assert_eq!(k["use"], "sig");
        assert_eq!(k["alg"], "RS256");
    }
    assert_eq!(r.header("cache-control"), Some("public, max-age=1800"));
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    let etag = r.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "{etag}");

    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".to_owned(),
    ] {
        let req = Request::get("/.well-known/jwks.json")
            .header("if-none-match", inm.as_str())
            .body(Body::empty())
            .unwrap();
        let r = app.send(req).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{inm}");
        assert!(r.body.is_empty(), "{inm}");
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_eq!(r.header("cache-control"), Some("public, max-age=1800"));
    }
    let req = Request::get("/.well-known/jwks.json")
        .header("if-none-match", "\"stale\"")
        .body(Body::empty())
        .unwrap();
    assert_ok(&app.send(req).await);
}

#[tokio::test]
async fn max_age_is_half_of_publish_ahead() {
    let cfg = base_config().replace("[tokens]", "[keys]\npublish_ahead = \"10m\"\n\n[tokens]");
    let app = TestApp::new(&cfg);
    for path in ["/.well-known/jwks.json", "/.well-known/openid-configuration"] {
        assert_eq!(
            app.get(path).await.header("cache-control"),
            Some("public, max-age=300"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_discovery_document_names_the_endpoints_and_caches() {
    let app = TestApp::base();
    let r = app.get("/.well-known/openid-configuration").await;
    let doc = assert_ok(&r);
    assert_eq!(doc["issuer"], ISSUER);
    assert_eq!(doc["jwks_uri"], "https://issuer.test/.well-known/jwks.json");
    // The OAuth 2.0 token endpoint (issue 11), not /v1/tokens, which speaks JSON.
    assert_eq!(doc["token_endpoint"], "https://issuer.test/oauth2/token");
    assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["RS256"]));
    assert_eq!(r.header("cache-control"), Some("public, max-age=1800"));
    let etag = r.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let req = Request::get("/.well-known/openid-configuration")
        .header("if-none-match", etag.as_str())
        .body(Body::empty())
        .unwrap();
    let cached = app.send(req).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert!(cached.body.is_empty());
}

#[tokio::test]
async fn after_rotation_old_tokens_verify_and_new_ones_carry_the_new_kid() {
    let app = TestApp::base();
    let policy = app.state.policy;
    // The next key may sign once it has been published for publish_ahead.
    app.clock.advance(policy.publish_ahead);
    let now = NOW + policy.publish_ahead;
    let before = app.token(&json!({"sub": "alice"})).await;
    let old_etag = app
        .get("/.well-known/jwks.json")
        .await
        .header("etag")
        .unwrap()
        .to_owned();

    let (fresh, _) = SigningKey::generate(Algorithm::RS256, 2048).unwrap();
    let fresh_kid = kid_of(&fresh);
    let new_next = RingKey::fresh(fresh, KeyState::Next, now).unwrap();
    let ring = fixture_ring(NOW).rotate(&policy, now, false, new_next).unwrap();
    app.state.install(&ring).unwrap();

    let r = app.get("/.well-known/jwks.json").await;
    let etag = r.header("etag").unwrap().to_owned();
    assert_ne!(etag, old_etag);
    let old_active = kid_of(&fixture_key(Algorithm::RS256, "rsa2048"));
    let new_active = kid_of(&fixture_key(Algorithm::RS256, "rsa2048_b"));
    let kids: Vec<String> = r.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, [fresh_kid, new_active.clone(), old_active]);
    let req = Request::get("/.well-known/jwks.json")
        .header("if-none-match", old_etag.as_str())
        .body(Body::empty())
        .unwrap();
    assert_ok(&app.send(req).await);

    assert_ok(&verify_token(&app, &before).await);
    let after = app.token(&json!({"sub": "alice"})).await;
    assert_eq!(segment(&after, 0)["kid"], new_active);
    assert_ok(&verify_token(&app, &after).await);
}

// ---------------------------------------------------------------------------
// Operators

/// A rotated-out key stays published while a token it signed can still
/// verify: the longest lifetime (`tokens.max_ttl`, 24 h here) plus the
/// clock leeway (60 s).
#[tokio::test]
async fn a_retired_key_is_kept_for_the_longest_lifetime_and_the_leeway() {
    let app = TestApp::base();
    assert_eq!(app.state.policy.retire_after, 24 * 3600 + 60);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::base();
    let h = app.get("/healthz").await;
    assert_eq!(assert_ok(&h)["status"], "ok");
    let ready = app.get("/readyz").await;
    assert_eq!(assert_ok(&ready)["status"], "ready");

    let token = app.token(&json!({"sub": "alice"})).await;
    assert_ok(&verify_token(&app, &token).await);
    let m = app.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.header("content-type").unwrap().starts_with("text/plain"),
        "{:?}",
        m.headers
    );
    let text = body_text(&m);
    for needle in [
        "tokensmith_tokens_issued_total{client=\"shop_123\"} 1",
        "tokensmith_verifications_total{result=\"valid\"} 1",
        "tokensmith_request_duration_seconds_bucket{route=\"/v1/tokens\"",
        "# TYPE tokensmith_request_duration_seconds histogram",
        "tokensmith_seconds_until_rotation 2592000",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let value = line.rsplit_once(' ').unwrap().1;
        assert!(value.parse::<f64>().is_ok(), "not a sample line: {line}");
    }
}

#[tokio::test]
async fn every_answer_but_the_well_known_documents_is_no_store() {
    let app = TestApp::base();
    let token = app.token(&json!({"sub": "alice"})).await;
    let mut answers = vec![
        ("healthz", app.get("/healthz").await),
        ("readyz", app.get("/readyz").await),
        ("metrics", app.get("/metrics").await),
        ("404", app.get("/nope").await),
        ("404 under v1", app.post("/v1/nope", Some(SHOP_KEY), &json!({})).await),
        ("405", app.get("/v1/tokens").await),
        ("401", app.post("/v1/tokens", None, &json!({"sub": "u1"})).await),
        ("400", post_raw(&app, "/v1/tokens", Some(SHOP_KEY), "{").await),
        (
            "403",
            app.post("/v1/tokens", Some(SHOP_KEY), &json!({"sub": "u1", "scopes": ["admin"]}))
                .await,
        ),
        ("token 401", verify_token(&app, "a.b.c").await),
        (
            "200 tokens",
            app.post("/v1/tokens", Some(SHOP_KEY), &json!({"sub": "u1"})).await,
        ),
        ("200 verify", verify_token(&app, &token).await),
        (
            "200 revoke",
            app.post("/v1/revoke", Some(SHOP_KEY), &json!({"jti": "x"})).await,
        ),
    ];
    let req = Request::post("/v1/tokens")
        .header(AUTHORIZATION, format!("Bearer {SHOP_KEY}"))
        .body(Body::from("{}"))
        .unwrap();
    answers.push(("415", app.send(req).await));
    for (what, r) in &answers {
        assert_eq!(r.header("cache-control"), Some("no-store"), "{what}: {}", r.status);
    }
    for path in ["/.well-known/jwks.json", "/.well-known/openid-configuration"] {
        let cc = app.get(path).await.header("cache-control").unwrap().to_owned();
        assert!(cc.starts_with("public, max-age="), "{path}: {cc}");
    }
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let app = TestApp::base();
    assert_error(&app.get("/nope").await, StatusCode::NOT_FOUND, "not_found");
    assert_error(&app.get("/v1/tokens/extra").await, StatusCode::NOT_FOUND, "not_found");
    let r = app.post("/.well-known/nope", Some(SHOP_KEY), &json!({})).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn no_answer_repeats_the_api_key_and_no_error_repeats_the_token() {
    let app = TestApp::base();
    let token = app.token(&json!({"sub": "alice"})).await;
    let mut answers = vec![
        app.post("/v1/tokens", Some(SHOP_KEY), &json!({"sub": "u1"})).await,
        app.post("/v1/tokens", Some(SHOP_KEY), &json!({"sub": "u1", "scopes": ["admin"]}))
            .await,
        post_raw(&app, "/v1/tokens", Some(SHOP_KEY), "{").await,
        verify_token(&app, &token).await,
        verify_token(&app, SHOP_KEY).await,
        verify(&app, SHOP_KEY, &json!({"token": token, "scopes": ["admin"]})).await,
        app.post("/v1/revoke", Some(SHOP_KEY), &json!({"jti": "j1"})).await,
        app.post("/v1/tokens", Some(&format!("{SHOP_KEY}x")), &json!({"sub": "u1"}))
            .await,
        app.get("/metrics").await,
    ];
    let req = Request::post("/v1/tokens")
        .header(CONTENT_TYPE, "application/json")
        .header("x-api-key", format!("{SHOP_KEY}zz"))
        .body(Body::from(r#"{"sub":"u1"}"#))
        .unwrap();
    answers.push(app.send(req).await);
    for r in &answers {
        let text = body_text(r);
        assert!(!text.contains(SHOP_KEY), "{}: {text}", r.status);
        for (name, value) in &r.headers {
            assert!(!String::from_utf8_lossy(value.as_bytes()).contains(SHOP_KEY), "{name}");
        }
    }
    // The token in error bodies: expired, revoked, replayed, wrong audience, scope.
    let consume = json!({"token": token, "consume": true});
    assert_ok(&verify(&app, SHOP_KEY, &consume).await);
    let errors = [
        verify(&app, SHOP_KEY, &consume).await,
        verify(&app, OTHER_KEY, &json!({"token": token})).await,
        verify(&app, SHOP_KEY, &json!({"token": token, "scopes": ["chat"]})).await,
        verify(&app, SHOP_KEY, &json!({"token": token, "consume": "twice"})).await,
        verify(&app, SHOP_KEY, &json!({"token": token, "extra": token})).await,
        verify(&app, SHOP_KEY, &json!({"token": format!("{token}x")})).await,
        verify(&app, SHOP_KEY, &json!({"token": format!("{token}.{token}")})).await,
    ];
    for r in &errors {
        assert!(r.status.is_client_error(), "{}", body_text(r));
        assert_no_token(r, &token);
    }
}

// ---------------------------------------------------------------------------
// Bad input keeps the service up

#[tokio::test]
async fn a_burst_of_bad_input_leaves_the_service_serving() {
    let app = TestApp::base();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let unclosed = "[".repeat(60_000);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("garbage bytes", garbage),
        ("invalid UTF-8 in a string", b"{\"sub\":\"\xff\xfe\"}".to_vec()),
        ("invalid UTF-8 key", b"{\"\xc3\":\"u1\"}".to_vec()),
        ("NUL bytes", b"{\"sub\":\"u1\0\"}\0".to_vec()),
        ("10,000-deep array", deep_array.into_bytes()),
        ("10,000-deep object", deep_object.into_bytes()),
        ("60,000 open brackets", unclosed.into_bytes()),
        ("lone surrogate", br#"{"sub":"\ud800"}"#.to_vec()),
        (
            "huge number",
            format!(r#"{{"sub":"u1","ttl":1{}}}"#, "0".repeat(5_000)).into_bytes(),
        ),
    ];
    for path in ["/v1/tokens", "/v1/verify", "/v1/revoke"] {
        for (what, body) in &bodies {
            let r = post_raw(&app, path, Some(SHOP_KEY), body.clone()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path} {what}: {}", body_text(&r));
            assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
        }
    }
    let huge = "A".repeat(100_000);
    let key_header = ("x-api-key", SHOP_KEY.to_owned());
    let json_header = ("content-type", "application/json".to_owned());
    let cases = [
        (
            "huge Authorization",
            vec![json_header.clone(), ("authorization", format!("Bearer {huge}"))],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "huge X-API-Key",
            vec![json_header.clone(), ("x-api-key", format!("sk_{huge}"))],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "huge Content-Type",
            vec![key_header.clone(), ("content-type", format!("application/{huge}"))],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "huge other header",
            vec![key_header.clone(), json_header.clone(), ("x-padding", huge.clone())],
            StatusCode::OK,
        ),
    ];
    for (what, headers, status) in cases {
        let mut req = Request::post("/v1/tokens");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let r = app.send(req.body(Body::from(r#"{"sub":"u1"}"#)).unwrap()).await;
        assert_eq!(r.status, status, "{what}: {}", body_text(&r));
    }
    let huge_token = verify_token(&app, &format!("{huge}.{huge}.{huge}")[..60_000]).await;
    assert_error(&huge_token, StatusCode::UNAUTHORIZED, "malformed_token");
    // Still serving, and still correct.
    let token = app.token(&json!({"sub": "alice"})).await;
    assert_ok(&verify_token(&app, &token).await);
    assert_ok(&app.get("/readyz").await);
}

#[tokio::test]
async fn a_revocation_by_sub_covers_only_the_revoking_clients_tokens() {
    let app = TestApp::base();
    let token = app.token(&json!({"sub": "alice"})).await;
    // `other` revoking "alice" revokes its own alice, not the shop's.
    let r = app.post("/v1/revoke", Some(OTHER_KEY), &json!({"sub": "alice"})).await;
    assert_ok(&r);
    assert_ok(&verify(&app, SHOP_KEY, &json!({"token": token})).await);
    let r = app.post("/v1/revoke", Some(SHOP_KEY), &json!({"sub": "alice"})).await;
    assert_ok(&r);
    assert_rejected(
        &verify(&app, SHOP_KEY, &json!({"token": token})).await,
        "token_revoked",
        &token,
    );
}

#[tokio::test]
async fn a_wrong_method_is_a_json_405() {
    let app = TestApp::base();
    let r = app.get("/v1/tokens").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.error(), "method_not_allowed");
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

mod consume;
