//! `/.well-known/jwks.json`, `/.well-known/openid-configuration` and
//! `/.well-known/oauth-authorization-server`: bytes computed once per
//! key-ring snapshot (and client set), served with a strong `ETag`,
//! `Cache-Control: public, max-age=N` (N at most half of `publish_ahead`,
//! so a verifier's cache always holds a `next` key before it signs), and
//! 304 on a matching `If-None-Match`. All three are public:
//! `Access-Control-Allow-Origin: *`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::AppState;
use crate::clients::ClientRegistry;
use crate::config::Config;
use crate::keys::KeySnapshot;
use crate::oauth::metadata;

/// The metadata documents of one key-ring snapshot and client set, with
/// their ETags: OpenID discovery and RFC 8414 (`crate::oauth::metadata`).
pub struct Discovery {
    pub json: Bytes,
    pub etag: String,
    /// `/.well-known/oauth-authorization-server`.
    pub oauth_json: Bytes,
    pub oauth_etag: String,
    /// The clients whose scopes the documents list: when the authority's
    /// set is another (a reload), the documents are rebuilt.
    clients: Arc<ClientRegistry>,
}

fn etag_of(json: &[u8]) -> String {
    let digest = crate::jose::alg::sha256(json);
    format!(
        "\"{}\"",
        digest[..16].iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

impl Discovery {
    /// The documents this service can honestly publish for `snapshot` and `clients`.
    pub fn from_snapshot(config: &Config, snapshot: &KeySnapshot, clients: Arc<ClientRegistry>) -> Discovery {
        let mut algs: Vec<&str> = Vec::new();
        for k in &snapshot.jwks.keys {
            if let Some(a) = k.alg.as_deref() {
                if !algs.contains(&a) {
                    algs.push(a);
                }
            }
        }
        let scopes = config
            .server
            .publish_scopes
            .then(|| metadata::union_of_scopes(clients.iter().flat_map(|c| c.scopes.iter())));
        let input = metadata::MetadataInput {
            issuer: &config.issuer,
            signing_algs: algs,
            scopes,
        };
        let json = Bytes::from(serde_json::Value::Object(metadata::openid_configuration(&input)).to_string());
        let oauth_json = Bytes::from(serde_json::Value::Object(metadata::authorization_server(&input)).to_string());
        Discovery {
            etag: etag_of(&json),
            json,
            oauth_etag: etag_of(&oauth_json),
            oauth_json,
            clients,
        }
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
    // Public documents: browsers and agents fetch them from any origin.
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    resp
}

pub async fn jwks_get(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let snap = state.keys.load();
    cached(&headers, snap.jwks_json.clone(), &snap.etag, state.jwks_max_age)
}

/// The documents for the current keys and clients, rebuilt when the
/// clients were reloaded since they were made.
fn current(state: &AppState) -> Arc<Discovery> {
    let doc = state.discovery.load_full();
    let clients = state.authority.clients();
    if Arc::ptr_eq(&doc.clients, &clients) {
        return doc;
    }
    let fresh = Arc::new(Discovery::from_snapshot(&state.config, &state.keys.load(), clients));
    state.discovery.store(Arc::clone(&fresh));
    fresh
}

pub async fn discovery_get(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let doc = current(&state);
    cached(&headers, doc.json.clone(), &doc.etag, state.jwks_max_age)
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn oauth_metadata_get(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let doc = current(&state);
    cached(&headers, doc.oauth_json.clone(), &doc.oauth_etag, state.jwks_max_age)
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
