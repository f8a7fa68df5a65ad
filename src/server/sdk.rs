//! The browser SDK: `GET /sdk/v1/tokensmith.js` and `GET /sdk/v1/tokensmith.d.ts`.
//!
//! The files live in the repository's `sdk/` folder and are compiled into
//! the binary, so the SDK a page loads always matches the server it talks
//! to. Each is served with a strong `ETag` (the base64url SHA-256 of its
//! bytes, computed once), 304 on a matching `If-None-Match`,
//! `Cache-Control: public, max-age=300` (a deploy reaches browsers within
//! five minutes), and `Access-Control-Allow-Origin: *`: a public document
//! that every embedding page may import as a module. No credentials and no
//! per-request state are involved.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::wellknown::not_modified;

/// How long a browser may reuse the SDK without asking again, in seconds.
const MAX_AGE: &str = "public, max-age=300";

/// One embedded file and its validator.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: String,
}

impl Asset {
    fn from_static(body: &'static str, content_type: &'static str) -> Asset {
        let etag = format!(
            "\"{}\"",
            URL_SAFE_NO_PAD.encode(crate::jose::alg::sha256(body.as_bytes()))
        );
        Asset {
            body,
            content_type,
            etag,
        }
    }

    fn respond(&self, headers: &HeaderMap) -> Response {
        let mut resp = if not_modified(headers, &self.etag) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            self.body.into_response()
        };
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(MAX_AGE));
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if let Ok(v) = HeaderValue::from_str(&self.etag) {
            h.insert(header::ETAG, v);
        }
        resp
    }
}

/// A constant of the build, not configuration: its digest is computed once,
/// on first use.
static JS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::from_static(
        include_str!("../../sdk/tokensmith.js"),
        "text/javascript; charset=utf-8",
    )
});

static DTS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::from_static(
        include_str!("../../sdk/tokensmith.d.ts"),
        "application/typescript; charset=utf-8",
    )
});

/// `GET /sdk/v1/tokensmith.js`: the ES module.
pub async fn sdk_js_get(headers: HeaderMap) -> Response {
    JS.respond(&headers)
}

/// `GET /sdk/v1/tokensmith.d.ts`: its TypeScript declarations.
pub async fn sdk_types_get(headers: HeaderMap) -> Response {
    DTS.respond(&headers)
}
