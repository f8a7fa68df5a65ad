//! The browser SDK as the router serves it: the embedded files byte for
//! byte, their content types, a strong ETag and 304, public caching, and
//! the CORS wildcard that lets any page import the module. (What the SDK
//! does in a browser is tested by `scripts/browser-test`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{Request, StatusCode};

use super::harness::{Resp, TestApp};

const JS: &str = include_str!("../../sdk/tokensmith.js");
const DTS: &str = include_str!("../../sdk/tokensmith.d.ts");

async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.send(req.body(Body::empty()).unwrap()).await
}

fn assert_public(r: &Resp) {
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

/// A strong validator: quoted, no `W/`, the base64url SHA-256 (43 characters).
fn assert_strong_etag(etag: &str) {
    assert!(!etag.starts_with("W/"), "{etag}");
    let inner = etag.strip_prefix('"').and_then(|e| e.strip_suffix('"')).unwrap();
    assert_eq!(inner.len(), 43, "{etag}");
    assert!(inner
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
}

#[tokio::test]
async fn the_module_is_served_with_its_type_a_strong_etag_public_caching_and_cors() {
    let app = TestApp::base();
    let r = app.get("/sdk/v1/tokensmith.js").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_public(&r);
    assert_eq!(r.body, JS.as_bytes());
    let etag = r.header("etag").unwrap().to_owned();
    assert_strong_etag(&etag);
    // The same bytes, the same validator: it is computed once, not per request.
    assert_eq!(
        app.get("/sdk/v1/tokensmith.js").await.header("etag"),
        Some(etag.as_str())
    );
    for export in ["export function sessionTokens", "export function widgetAuth"] {
        assert!(JS.contains(export), "{export}");
    }
}

#[tokio::test]
async fn the_declarations_are_served_as_typescript_with_their_own_etag() {
    let app = TestApp::base();
    let r = app.get("/sdk/v1/tokensmith.d.ts").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/typescript; charset=utf-8"));
    assert_public(&r);
    assert_eq!(r.body, DTS.as_bytes());
    let etag = r.header("etag").unwrap();
    assert_strong_etag(etag);
    let js = app.get("/sdk/v1/tokensmith.js").await;
    assert_ne!(js.header("etag"), Some(etag));
}

#[tokio::test]
async fn a_matching_if_none_match_answers_304_with_the_same_headers_and_no_body() {
    let app = TestApp::base();
    for path in ["/sdk/v1/tokensmith.js", "/sdk/v1/tokensmith.d.ts"] {
        let etag = app.get(path).await.header("etag").unwrap().to_owned();
        for sent in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".into(),
        ] {
            let r = get_with(&app, path, &[("if-none-match", &sent)]).await;
            assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{path} {sent}");
            assert!(r.body.is_empty());
            assert_eq!(r.header("etag"), Some(etag.as_str()));
            assert_public(&r);
        }
        let r = get_with(&app, path, &[("if-none-match", "\"stale\"")]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(!r.body.is_empty());
    }
}

#[tokio::test]
async fn the_sdk_answers_any_origin_and_only_get_and_head() {
    let app = TestApp::base();
    let r = get_with(&app, "/sdk/v1/tokensmith.js", &[("origin", "https://anyone.example")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let head = app
        .send(Request::head("/sdk/v1/tokensmith.js").body(Body::empty()).unwrap())
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-type"), Some("text/javascript; charset=utf-8"));
    let post = app.post("/sdk/v1/tokensmith.js", None, &serde_json::json!({})).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.error(), "method_not_allowed");
    // Other versions and files are not there.
    assert_eq!(app.get("/sdk/v2/tokensmith.js").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/sdk/v1/other.js").await.status, StatusCode::NOT_FOUND);
}
