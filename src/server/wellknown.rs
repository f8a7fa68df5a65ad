//! `/.well-known/jwks.json` and `/.well-known/openid-configuration`: bytes
//! computed once per key-ring snapshot, served with a strong `ETag`,
//! `Cache-Control: public, max-age=N` (N at most half of `publish_ahead`,
//! so a verifier's cache always holds a `next` key before it signs), and
//! 304 on a matching `If-None-Match`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::AppState;
use crate::keys::KeySnapshot;

/// The discovery document of one snapshot, with its ETag.
pub struct Discovery {
    pub json: Bytes,
    pub etag: String,
}

impl Discovery {
    /// The OpenID Provider Metadata this service can honestly claim.
    pub fn from_snapshot(issuer: &str, snapshot: &KeySnapshot) -> Discovery {
        let base = issuer.trim_end_matches('/');
        let mut algs: Vec<&str> = Vec::new();
        for k in &snapshot.jwks.keys {
            if let Some(a) = k.alg.as_deref() {
                if !algs.contains(&a) {
                    algs.push(a);
                }
            }
        }
        let doc = serde_json::json!({
            "issuer": issuer,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "token_endpoint": format!("{base}/v1/tokens"),
            "revocation_endpoint": format!("{base}/v1/revoke"),
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
        });
        let json = Bytes::from(doc.to_string());
        let digest = crate::jose::alg::sha256(&json);
        let etag = format!(
            "\"{}\"",
            digest[..16].iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        Discovery { json, etag }
    }
}

/// True when `If-None-Match` names `etag` (or `*`). Weak comparison, as
/// RFC 9110 §13.1.2 prescribes for this header.
pub(crate) fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
        })
}

fn cached(headers: &HeaderMap, body: Bytes, etag: &str, max_age: u64) -> Response {
    let cache = HeaderValue::from_str(&format!("public, max-age={max_age}"))
        .unwrap_or(HeaderValue::from_static("public, max-age=60"));
    let etag_value = HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let status = if not_modified(headers, etag) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut resp = if status == StatusCode::OK {
        body.into_response()
    } else {
        status.into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, cache);
    h.insert(header::ETAG, etag_value);
    resp
}

pub async fn jwks_get(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let snap = state.keys.load();
    cached(&headers, snap.jwks_json.clone(), &snap.etag, state.jwks_max_age)
}

pub async fn discovery_get(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let doc = state.discovery.load();
    cached(&headers, doc.json.clone(), &doc.etag, state.jwks_max_age)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, "\"a\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"b\", W/\"a\""));
        assert!(not_modified(&h, "\"a\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&h, "\"zzz\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"ab\""));
        assert!(!not_modified(&h, "\"a\""));
    }
}
