//! OAuth 2.0 flows in-process: the refresh grant and token exchange over the
//! same code as `/v1/refresh` and `/v1/exchange`, introspection and
//! revocation (only the caller's tokens), and `private_key_jwt` with inline
//! keys and with a `jwks_uri` served by a real HTTP server on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use tokensmith::jose::jws::{header_segment, sign};
use tokensmith::jose::{Algorithm, Jwk, SigningKey};

use super::common::pkcs8;
use super::harness::{base_config, Resp, TestApp, NOW, OTHER_KEY, SHOP_KEY};
use super::oauth::{claims_of, enc, form, ok, refused, Auth};

const BOT_KEY: &str = "sk_test_bot_0123456789abcdefghijklmnopqrstuvwx";
const XCHG: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange";
const AT: &str = "urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token";
const JWT_BEARER: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

fn shop() -> Auth<'static> {
    Auth::Basic("shop_123", SHOP_KEY)
}

fn other() -> Auth<'static> {
    Auth::Basic("other", OTHER_KEY)
}

fn bot() -> Auth<'static> {
    Auth::Post("bot", BOT_KEY)
}

/// The P-256 fixture key and its public JWK as a TOML inline table.
fn p256() -> (SigningKey, String) {
    let key = SigningKey::from_pkcs8(Algorithm::ES256, &pkcs8("p256")).unwrap();
    let jwk = Jwk::from_public(Algorithm::ES256, key.public_key());
    let toml = format!(
        r#"{{ kty = "EC", crv = "P-256", x = "{}", y = "{}", kid = "{}" }}"#,
        jwk.x.unwrap(),
        jwk.y.unwrap(),
        jwk.kid.unwrap()
    );
    (key, toml)
}

/// The base config, a client `bot` of the audience `chatbot` (so it may see
/// shop_123's tokens), and clients `signer` (inline jwks) and, when
/// `jwks_uri` is given, `fetcher`.
fn app_with(jwks_uri: Option<&str>) -> TestApp {
    let h = tokensmith::clients::hash_line(&tokensmith::clients::api_key_hash(BOT_KEY));
    let (_, jwk) = p256();
    let mut cfg = format!(
        r#"{}
[[clients]]
id = "bot"
audience = "chatbot"
api_keys = ["{h}"]
scopes = ["chat"]

[[clients]]
id = "signer"
audience = "signer-api"
scopes = ["s"]
jwks = {{ keys = [ {jwk} ] }}
"#,
        base_config()
    );
    if let Some(uri) = jwks_uri {
        cfg.push_str(&format!(
            "\n[[clients]]\nid = \"fetcher\"\naudience = \"fetcher-api\"\njwks_uri = \"{uri}\"\n"
        ));
    }
    TestApp::new(&cfg)
}

async fn guest_refresh(app: &TestApp) -> String {
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
    assert_eq!(r.status, StatusCode::OK);
    r.json()["refresh_token"].as_str().unwrap().to_owned()
}

async fn refresh(app: &TestApp, auth: Auth<'_>, token: &str, extra: &str) -> Resp {
    form(
        app,
        "/oauth2/token",
        auth,
        &format!("grant_type=refresh_token&refresh_token={}{extra}", enc(token)),
    )
    .await
}

#[tokio::test]
async fn refresh_grant_rotates_and_detects_reuse_like_v1_refresh() {
    let app = app_with(None);
    let first = guest_refresh(&app).await;
    let v = ok(&refresh(&app, shop(), &first, "").await);
    assert_eq!(v["scope"], "chat");
    let second = v["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    // Reuse of the spent one: invalid_grant, and the whole family is gone.
    refused(
        &refresh(&app, shop(), &first, "").await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    refused(
        &refresh(&app, shop(), &second, "").await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    // The same family through /v1/refresh agrees.
    let r = app.post("/v1/refresh", None, &json!({ "refresh_token": second })).await;
    assert_eq!(r.error(), "invalid_refresh_token");
}

#[tokio::test]
async fn refresh_grant_narrows_and_belongs_to_its_client() {
    let app = app_with(None);
    let t = guest_refresh(&app).await;
    // Widening: refused, and nothing is spent.
    refused(
        &refresh(&app, shop(), &t, "&scope=chat+write%3Aorders").await,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
    );
    let v = ok(&refresh(&app, shop(), &t, "&scope=chat").await);
    assert_eq!(v["scope"], "chat");
    // Another client: invalid_grant, and the token it held is spent, so
    // the next presentation by anyone is a reuse that ends the family.
    let t2 = v["refresh_token"].as_str().unwrap().to_owned();
    refused(
        &refresh(&app, other(), &t2, "").await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    refused(
        &refresh(&app, shop(), &t2, "").await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    refused(
        &refresh(&app, shop(), "not-a-refresh-token", "").await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

async fn exchange(app: &TestApp, auth: Auth<'_>, subject: &str, extra: &str) -> Resp {
    form(
        app,
        "/oauth2/token",
        auth,
        &format!(
            "grant_type={XCHG}&subject_token={}&subject_token_type={AT}{extra}",
            enc(subject)
        ),
    )
    .await
}

#[tokio::test]
async fn token_exchange_of_a_visitor_token_is_v1_exchange() {
    let app = app_with(None);
    let visitor = app
        .token(&json!({ "sub": "v1", "purpose": "exchange", "scopes": ["chat", "read:orders"] }))
        .await;
    let v = ok(&exchange(&app, shop(), &visitor, "&scope=chat").await);
    assert_eq!(v["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(v["scope"], "chat");
    assert!(v["refresh_token"].as_str().is_some());
    let c = claims_of(&app, v["access_token"].as_str().unwrap(), "chatbot").await;
    assert_eq!(
        (c["sub"].as_str(), c["client_id"].as_str()),
        (Some("v1"), Some("shop_123"))
    );
    // Single use, across both paths.
    refused(
        &exchange(&app, shop(), &visitor, "").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let r = app.post("/v1/exchange", None, &json!({ "token": visitor })).await;
    assert_eq!(r.error(), "token_replayed");
    // Only for the client's own audience.
    let visitor = app.token(&json!({ "sub": "v3", "purpose": "exchange" })).await;
    refused(
        &exchange(&app, shop(), &visitor, "&audience=chatbot-admin").await,
        StatusCode::BAD_REQUEST,
        "invalid_target",
    );
    ok(&exchange(&app, shop(), &visitor, "&audience=chatbot").await);
    // Presented by another client: refused, and burned.
    let visitor = app.token(&json!({ "sub": "v2", "purpose": "exchange" })).await;
    refused(
        &exchange(&app, bot(), &visitor, "").await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    refused(
        &exchange(&app, shop(), &visitor, "").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

#[tokio::test]
async fn token_exchange_of_an_access_token_narrows_to_the_caller() {
    let app = app_with(None);
    let subject = app
        .token(&json!({ "sub": "u1", "scopes": ["chat", "read:orders"], "ttl": "10m" }))
        .await;
    // bot's audience is the token's: it may exchange it; the result is cut
    // to bot's policy (scopes, claims) and lives no longer than the subject.
    app.clock.advance(500);
    let v = ok(&exchange(&app, bot(), &subject, "").await);
    assert!(v.get("refresh_token").is_none());
    assert_eq!(v["scope"], "chat");
    assert_eq!(v["expires_in"], 100);
    let token = v["access_token"].as_str().unwrap();
    let r = app.post("/v1/verify", Some(BOT_KEY), &json!({ "token": token })).await;
    let c = r.json()["claims"].clone();
    assert_eq!((c["sub"].as_str(), c["client_id"].as_str()), (Some("u1"), Some("bot")));
    assert!(c.get("storeId").is_none(), "{c}");
    // Its own token, narrowed to the scope asked; widening is refused.
    let v = ok(&exchange(&app, shop(), &subject, "&scope=read%3Aorders").await);
    assert_eq!(v["scope"], "read:orders");
    let c = claims_of(&app, v["access_token"].as_str().unwrap(), "chatbot").await;
    assert_eq!(c["scopes"], json!(["read:orders"]), "{c}");
    refused(
        &exchange(&app, shop(), &subject, "&scope=write%3Aorders").await,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
    );
    refused(
        &exchange(&app, shop(), &subject, "&audience=plugin").await,
        StatusCode::BAD_REQUEST,
        "invalid_target",
    );
    // `other` may not see it.
    refused(
        &exchange(&app, other(), &subject, "").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // Bad types, garbage, a revoked subject.
    refused(
        &form(
            &app,
            "/oauth2/token",
            shop(),
            &format!(
                "grant_type={XCHG}&subject_token={}&subject_token_type=urn%3Ax",
                enc(&subject)
            ),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    refused(
        &exchange(&app, shop(), &subject, "&requested_token_type=urn%3Ax").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    refused(
        &exchange(&app, shop(), "garbage", "").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let jti = claims_of(&app, &subject, "chatbot").await["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post("/v1/revoke", Some(SHOP_KEY), &json!({ "jti": jti })).await;
    refused(
        &exchange(&app, shop(), &subject, "").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

async fn introspect(app: &TestApp, auth: Auth<'_>, token: &str) -> Value {
    ok(&form(
        app,
        "/oauth2/introspect",
        auth,
        &format!("token={}&token_type_hint=access_token", enc(token)),
    )
    .await)
}

#[tokio::test]
async fn introspection_shows_only_the_callers_tokens() {
    let app = app_with(None);
    let token = app.token(&json!({ "sub": "u1", "scopes": ["chat"] })).await;
    let v = introspect(&app, shop(), &token).await;
    assert_eq!(v["active"], true);
    assert_eq!(v["scope"], "chat");
    assert_eq!(v["client_id"], "shop_123");
    assert_eq!(v["sub"], "u1");
    assert_eq!(v["aud"], "chatbot");
    assert_eq!(v["iss"], "https://issuer.test");
    assert_eq!((v["iat"].as_i64(), v["exp"].as_i64()), (Some(NOW), Some(NOW + 300)));
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["jti"].as_str().is_some());
    // Meant for bot's audience: visible to bot; not to other.
    assert_eq!(introspect(&app, bot(), &token).await["active"], true);
    assert_eq!(introspect(&app, other(), &token).await, json!({ "active": false }));
    for junk in ["garbage", "a.b.c"] {
        assert_eq!(introspect(&app, shop(), junk).await, json!({ "active": false }));
    }
    // A refresh token is active to its own client only (oauth_family.rs).
    let refresh_token = guest_refresh(&app).await;
    assert_eq!(
        introspect(&app, shop(), &refresh_token).await["token_type"],
        "refresh_token"
    );
    assert_eq!(
        introspect(&app, bot(), &refresh_token).await,
        json!({ "active": false })
    );
    // Bad credentials are not an inactive token.
    let r = form(
        &app,
        "/oauth2/introspect",
        Auth::Basic("shop_123", OTHER_KEY),
        &format!("token={}", enc(&token)),
    )
    .await;
    refused(&r, StatusCode::UNAUTHORIZED, "invalid_client");
    refused(
        &form(&app, "/oauth2/introspect", shop(), "").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // Expired (past the leeway): inactive.
    app.clock.advance(300 + 60);
    assert_eq!(introspect(&app, shop(), &token).await["active"], false);
}

#[tokio::test]
async fn revocation_of_access_and_refresh_tokens() {
    let app = app_with(None);
    let token = app.token(&json!({ "sub": "u1" })).await;
    // Another client's revocation: 200, and nothing happens.
    let r = form(&app, "/oauth2/revoke", bot(), &format!("token={}", enc(&token))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(introspect(&app, shop(), &token).await["active"], true);
    // Its own: at once.
    let r = form(&app, "/oauth2/revoke", shop(), &format!("token={}", enc(&token))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(introspect(&app, shop(), &token).await["active"], false);
    let r = app.post("/v1/verify", Some(SHOP_KEY), &json!({ "token": token })).await;
    assert_eq!(r.error(), "token_revoked");
    // A refresh token: its whole family, the live successor included.
    let first = guest_refresh(&app).await;
    let second = ok(&refresh(&app, shop(), &first, "").await)["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Not by another client.
    assert_eq!(
        form(&app, "/oauth2/revoke", other(), &format!("token={}", enc(&second)))
            .await
            .status,
        StatusCode::OK
    );
    let third = ok(&refresh(&app, shop(), &second, "").await)["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = form(
        &app,
        "/oauth2/revoke",
        shop(),
        &format!("token={}&token_type_hint=refresh_token", enc(&first)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    refused(
        &refresh(&app, shop(), &third, "").await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    // Unknown tokens: 200. No token, no credentials: errors.
    assert_eq!(
        form(&app, "/oauth2/revoke", shop(), "token=whatever").await.status,
        StatusCode::OK
    );
    refused(
        &form(&app, "/oauth2/revoke", shop(), "").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    refused(
        &form(&app, "/oauth2/revoke", Auth::None, "token=x").await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
}

/// A `private_key_jwt` assertion for `sub` with `claims` over the defaults.
fn assertion(key: &SigningKey, kid: &str, claims: Value) -> String {
    let mut c = json!({
        "iss": "signer", "sub": "signer", "aud": "https://issuer.test/oauth2/token",
        "iat": NOW, "exp": NOW + 60, "jti": format!("j-{}", rand_id()),
    });
    for (k, v) in claims.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    sign(
        &header_segment(Algorithm::ES256, kid),
        &serde_json::to_vec(&c).unwrap(),
        key,
    )
    .unwrap()
}

fn rand_id() -> String {
    let mut b = [0u8; 12];
    tokensmith::jose::alg::random_bytes(&mut b).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

async fn with_assertion(app: &TestApp, a: &str, extra: &str) -> Resp {
    form(
        app,
        "/oauth2/token",
        Auth::None,
        &format!(
            "grant_type=client_credentials&client_assertion_type={JWT_BEARER}&client_assertion={}{extra}",
            enc(a)
        ),
    )
    .await
}

#[tokio::test]
async fn private_key_jwt_with_inline_keys() {
    let app = app_with(None);
    let (key, _) = p256();
    let kid = Jwk::from_public(Algorithm::ES256, key.public_key()).kid.unwrap();
    let a = assertion(&key, &kid, json!({}));
    let v = ok(&with_assertion(&app, &a, "&client_id=signer&scope=s").await);
    assert_eq!(v["scope"], "s");
    // Replayed: invalid_client.
    refused(
        &with_assertion(&app, &a, "").await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    // The issuer as audience is accepted too.
    ok(&with_assertion(
        &app,
        &assertion(&key, &kid, json!({ "aud": "https://issuer.test" })),
        "",
    )
    .await);
    let other_key = SigningKey::generate(Algorithm::ES256, 0).unwrap().0;
    for (a, extra) in [
        (
            assertion(&key, &kid, json!({ "aud": "https://elsewhere.test/token" })),
            "",
        ),
        (assertion(&key, &kid, json!({ "exp": NOW + 301 })), ""),
        (assertion(&key, &kid, json!({ "exp": NOW - 61 })), ""),
        (assertion(&key, &kid, json!({ "iss": "shop_123" })), ""),
        (
            assertion(&key, &kid, json!({ "sub": "shop_123", "iss": "shop_123" })),
            "",
        ),
        (assertion(&key, &kid, json!({ "jti": null })), ""),
        (assertion(&key, &kid, json!({ "jti": "j".repeat(257) })), ""),
        (assertion(&key, &kid, json!({})), "&client_id=shop_123"),
        (assertion(&other_key, &kid, json!({})), ""),
        ("not.a.jwt".to_owned(), ""),
    ] {
        refused(
            &with_assertion(&app, &a, extra).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        );
    }
    // Exactly five minutes ahead is allowed, and a jti of exactly 256 bytes.
    ok(&with_assertion(&app, &assertion(&key, &kid, json!({ "exp": NOW + 300 })), "").await);
    ok(&with_assertion(&app, &assertion(&key, &kid, json!({ "jti": "j".repeat(256) })), "").await);
    // An assertion is not a token of ours: it may have been made long ago
    // (no max_ttl), as long as it expires within five minutes.
    ok(&with_assertion(
        &app,
        &assertion(&key, &kid, json!({ "iat": NOW - 7 * 86_400, "exp": NOW + 60 })),
        "",
    )
    .await);
}

/// An assertion's `exp` is checked with the service's configured leeway.
#[tokio::test]
async fn private_key_jwt_takes_the_configured_leeway() {
    let (key, jwk) = p256();
    let cfg = format!(
        "{}
[[clients]]
id = \"signer\"\naudience = \"signer-api\"\nscopes = [\"s\"]\njwks = {{ keys = [ {jwk} ] }}\n",
        base_config().replace("leeway = \"60s\"", "leeway = \"5s\"")
    );
    let app = TestApp::new(&cfg);
    let kid = Jwk::from_public(Algorithm::ES256, key.public_key()).kid.unwrap();
    ok(&with_assertion(&app, &assertion(&key, &kid, json!({ "exp": NOW - 4 })), "").await);
    refused(
        &with_assertion(&app, &assertion(&key, &kid, json!({ "exp": NOW - 5 })), "").await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
}

#[tokio::test]
async fn private_key_jwt_with_a_jwks_uri() {
    let (key, _) = p256();
    let jwk = Jwk::from_public(Algorithm::ES256, key.public_key());
    let kid = jwk.kid.clone().unwrap();
    let body = json!({ "keys": [jwk] }).to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&fetches);
    let served = Router::new().route(
        "/jwks.json",
        get(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::ready(body.clone())
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, served).await });
    let app = app_with(Some(&format!("http://{addr}/jwks.json")));
    let a = assertion(&key, &kid, json!({ "iss": "fetcher", "sub": "fetcher" }));
    ok(&with_assertion(&app, &a, "").await);
    // The client's keys are fetched once and kept for its next assertions.
    let a = assertion(&key, &kid, json!({ "iss": "fetcher", "sub": "fetcher" }));
    ok(&with_assertion(&app, &a, "").await);
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    // An assertion with a kid the JWKS does not have.
    let a = assertion(&key, "unknown-kid", json!({ "iss": "fetcher", "sub": "fetcher" }));
    refused(
        &with_assertion(&app, &a, "").await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    server.abort();
}
