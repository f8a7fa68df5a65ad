//! OAuth 2.0 at the HTTP edge, in-process: the token endpoint's grants and
//! client authentication (secrets), its error answers for every kind of bad
//! input, and the metadata documents. Introspection, revocation, token
//! exchange and `private_key_jwt` are in `oauth_flows.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use serde_json::{json, Value};

use super::harness::{base_config, Resp, TestApp, OTHER_KEY, SHOP_KEY};

/// How a request authenticates.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    /// `client_secret_basic`.
    Basic(&'a str, &'a str),
    /// `client_secret_post`.
    Post(&'a str, &'a str),
    /// Nothing.
    None,
}

/// Percent-encodes a form value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// POSTs a form to `path` with `auth`.
pub async fn form(app: &TestApp, path: &str, auth: Auth<'_>, body: &str) -> Resp {
    let mut req = Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    let mut body = body.to_owned();
    match auth {
        Auth::Basic(id, secret) => {
            let cred = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)));
            req = req.header("authorization", format!("Basic {cred}"));
        }
        Auth::Post(id, secret) => {
            body = format!("{body}&client_id={}&client_secret={}", enc(id), enc(secret));
        }
        Auth::None => {}
    }
    app.send(req.body(Body::from(body)).unwrap()).await
}

pub fn ok(r: &Resp) -> Value {
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json()
}

pub fn refused(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["error"], code, "{v}");
    assert!(v["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(v.get("access_token").is_none());
}

/// Verifies `token` as `shop_123` would and returns its claims.
pub async fn claims_of(app: &TestApp, token: &str, audience: &str) -> Value {
    let r = app
        .post(
            "/v1/verify",
            Some(SHOP_KEY),
            &json!({ "token": token, "audience": audience }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    r.json()["claims"].clone()
}

#[tokio::test]
async fn client_credentials_with_basic_and_post() {
    let app = TestApp::base();
    for auth in [Auth::Basic("shop_123", SHOP_KEY), Auth::Post("shop_123", SHOP_KEY)] {
        let r = form(
            &app,
            "/oauth2/token",
            auth,
            "grant_type=client_credentials&scope=chat+read%3Aorders",
        )
        .await;
        let v = ok(&r);
        assert_eq!(v["token_type"], "Bearer");
        assert_eq!(v["expires_in"], 300);
        assert_eq!(v["scope"], "chat read:orders");
        assert!(v.get("refresh_token").is_none(), "{v}");
        let c = claims_of(&app, v["access_token"].as_str().unwrap(), "chatbot").await;
        assert_eq!(c["sub"], "shop_123");
        assert_eq!(c["client_id"], "shop_123");
        assert_eq!(c["scopes"], json!(["chat", "read:orders"]));
        assert_eq!(c["storeId"], "st_1");
    }
    // No scope asked: none given, and no scope member.
    let v = ok(&form(
        &app,
        "/oauth2/token",
        Auth::Basic("shop_123", SHOP_KEY),
        "grant_type=client_credentials",
    )
    .await);
    assert!(v.get("scope").is_none(), "{v}");
    // Another of its audiences, by `audience` or `resource`.
    for body in ["audience=chatbot-admin", "resource=chatbot-admin"] {
        let r = form(
            &app,
            "/oauth2/token",
            Auth::Basic("shop_123", SHOP_KEY),
            &format!("grant_type=client_credentials&{body}"),
        )
        .await;
        if body.starts_with("resource") {
            // RFC 8707: a resource is an absolute URI.
            refused(&r, StatusCode::BAD_REQUEST, "invalid_target");
        } else {
            let v = ok(&r);
            claims_of(&app, v["access_token"].as_str().unwrap(), "chatbot-admin").await;
        }
    }
}

#[tokio::test]
async fn client_authentication_failures_are_invalid_client() {
    let app = TestApp::base();
    let cc = "grant_type=client_credentials";
    // Wrong secret, with Basic: 401 and a Basic challenge.
    let r = form(&app, "/oauth2/token", Auth::Basic("shop_123", OTHER_KEY), cc).await;
    refused(&r, StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"tokensmith\""));
    // With POST: 401 without a challenge.
    let r = form(&app, "/oauth2/token", Auth::Post("shop_123", OTHER_KEY), cc).await;
    refused(&r, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(r.header("www-authenticate").is_none());
    // The right secret under another client's id.
    let r = form(&app, "/oauth2/token", Auth::Basic("other", SHOP_KEY), cc).await;
    refused(&r, StatusCode::UNAUTHORIZED, "invalid_client");
    // Unknown, empty, not a key at all, none.
    for (id, secret) in [
        ("shop_123", "sk_live_nope"),
        ("shop_123", "pk_test_shop_123"),
        ("nobody", SHOP_KEY),
    ] {
        let r = form(&app, "/oauth2/token", Auth::Post(id, secret), cc).await;
        refused(&r, StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let r = form(&app, "/oauth2/token", Auth::None, cc).await;
    refused(&r, StatusCode::UNAUTHORIZED, "invalid_client");
    let r = form(&app, "/oauth2/token", Auth::None, &format!("{cc}&client_id=shop_123")).await;
    refused(&r, StatusCode::UNAUTHORIZED, "invalid_client");
    // Two methods at once.
    let r = form(
        &app,
        "/oauth2/token",
        Auth::Basic("shop_123", SHOP_KEY),
        &format!("{cc}&client_secret={}", SHOP_KEY),
    )
    .await;
    refused(&r, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn requests_beyond_the_policy_are_refused() {
    let app = TestApp::base();
    let basic = Auth::Basic("shop_123", SHOP_KEY);
    for (body, code) in [
        ("grant_type=client_credentials&scope=admin", "invalid_scope"),
        ("grant_type=client_credentials&scope=chat+admin", "invalid_scope"),
        ("grant_type=client_credentials&audience=plugin", "invalid_target"),
        (
            "grant_type=client_credentials&audience=https%3A%2F%2Fissuer.test%2Fv1%2Fexchange",
            "invalid_target",
        ),
        (
            "grant_type=client_credentials&audience=chatbot&audience=plugin",
            "invalid_target",
        ),
    ] {
        refused(
            &form(&app, "/oauth2/token", basic, body).await,
            StatusCode::BAD_REQUEST,
            code,
        );
    }
    // `other` has no scopes at all.
    let r = form(
        &app,
        "/oauth2/token",
        Auth::Basic("other", OTHER_KEY),
        "grant_type=client_credentials&scope=chat",
    )
    .await;
    refused(&r, StatusCode::BAD_REQUEST, "invalid_scope");
}

#[tokio::test]
async fn bad_input_gets_the_rfc_error_never_a_token_or_a_500() {
    let app = TestApp::base();
    let basic = Auth::Basic("shop_123", SHOP_KEY);
    for (body, code) in [
        ("", "invalid_request"),
        (
            "grant_type=client_credentials&grant_type=client_credentials",
            "invalid_request",
        ),
        ("grant_type=client_credentials&scope=chat&scope=chat", "invalid_request"),
        ("grant_type=password&username=a&password=b", "unsupported_grant_type"),
        ("grant_type=authorization_code&code=x", "unsupported_grant_type"),
        ("grant_type=refresh_token", "invalid_request"),
        ("grant_type=client_credentials&scope=%ZZ", "invalid_request"),
        ("grant_type=client_credentials&scope=%FF", "invalid_request"),
        ("grant_type=client_credentials&scope=a%5Cb", "invalid_scope"),
    ] {
        let r = form(&app, "/oauth2/token", basic, body).await;
        refused(&r, StatusCode::BAD_REQUEST, code);
    }
    // Not a form: JSON, or no content type.
    for ct in [Some("application/json"), Some("text/plain"), None] {
        let mut req = Request::post("/oauth2/token").header("authorization", "Basic eDp5");
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = app
            .send(req.body(Body::from("grant_type=client_credentials")).unwrap())
            .await;
        refused(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request");
    }
    // Over 64 KiB, and exactly at the limit.
    let pad = |n: usize| format!("grant_type=client_credentials&x={}", "a".repeat(n));
    let big = pad(64 * 1024);
    refused(
        &form(&app, "/oauth2/token", basic, &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request",
    );
    let at_limit = pad(64 * 1024 - "grant_type=client_credentials&x=".len());
    assert_eq!(at_limit.len(), 64 * 1024);
    let mut req = Request::post("/oauth2/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("shop_123:{SHOP_KEY}"))
            ),
        );
    req = req.header("x-test", "limit");
    ok(&app.send(req.body(Body::from(at_limit)).unwrap()).await);
    // Two Authorization headers.
    let r = app
        .send(
            Request::post("/oauth2/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", "Basic eDp5")
                .header("authorization", "Basic eDp5")
                .body(Body::from("grant_type=client_credentials"))
                .unwrap(),
        )
        .await;
    refused(&r, StatusCode::BAD_REQUEST, "invalid_request");
    // Another method on the endpoint: the JSON 405 of the rest of the API.
    let r = app.get("/oauth2/token").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn metadata_documents_say_what_the_service_does() {
    let app = TestApp::base();
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{path}");
        assert!(r.header("cache-control").unwrap().starts_with("public, max-age="));
        let etag = r.header("etag").unwrap().to_owned();
        let d = r.json();
        assert_eq!(d["issuer"], "https://issuer.test");
        assert_eq!(d["token_endpoint"], "https://issuer.test/oauth2/token");
        assert_eq!(d["introspection_endpoint"], "https://issuer.test/oauth2/introspect");
        assert_eq!(d["revocation_endpoint"], "https://issuer.test/oauth2/revoke");
        assert_eq!(d["jwks_uri"], "https://issuer.test/.well-known/jwks.json");
        assert_eq!(
            d["grant_types_supported"],
            json!([
                "client_credentials",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:token-exchange"
            ])
        );
        assert_eq!(
            d["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post", "private_key_jwt"])
        );
        assert_eq!(
            d["token_endpoint_auth_signing_alg_values_supported"],
            json!(["RS256", "PS256", "ES256", "EdDSA"])
        );
        assert_eq!(d["scopes_supported"], json!(["chat", "read:orders", "write:orders"]));
        // RFC 9449 §5.1: what DPoP proofs may be signed with, as the
        // WWW-Authenticate challenge's algs say.
        assert_eq!(
            d["dpop_signing_alg_values_supported"],
            json!(["ES256", "EdDSA", "RS256", "PS256"])
        );
        assert!(d.get("authorization_endpoint").is_none());
        let again = app
            .send(
                Request::get(path)
                    .header("if-none-match", &etag)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    }
    let oidc = app.get("/.well-known/openid-configuration").await.json();
    assert_eq!(oidc["id_token_signing_alg_values_supported"], json!(["RS256"]));
    assert_eq!(oidc["subject_types_supported"], json!(["public"]));
    // The JWKS is public too; the API is not.
    assert_eq!(
        app.get("/.well-known/jwks.json")
            .await
            .header("access-control-allow-origin"),
        Some("*")
    );
    let r = form(
        &app,
        "/oauth2/token",
        Auth::Basic("shop_123", SHOP_KEY),
        "grant_type=client_credentials",
    )
    .await;
    assert!(r.header("access-control-allow-origin").is_none());

    // publish_scopes = false keeps scope names private.
    let private = TestApp::new(&format!("{}\n[server]\npublish_scopes = false\n", base_config()));
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        assert!(
            private.get(path).await.json().get("scopes_supported").is_none(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn metadata_follows_a_reload_of_the_clients() {
    let app = TestApp::base();
    let before = app.get("/.well-known/oauth-authorization-server").await;
    let mut clients: Vec<_> = app.state.authority.clients().iter().map(|c| (**c).clone()).collect();
    for c in &mut clients {
        if c.id == "other" {
            c.scopes = vec!["zebra".into()];
        }
    }
    let registry = tokensmith::clients::ClientRegistry::from_clients(&clients).unwrap();
    app.state.authority.replace_clients(registry).unwrap();
    let after = app.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(
        after.json()["scopes_supported"],
        json!(["chat", "read:orders", "write:orders", "zebra"])
    );
    assert_ne!(before.header("etag"), after.header("etag"));
}
