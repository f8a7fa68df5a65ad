//! Extractors: the calling client from its API key (the authority finds it
//! and charges its rate limit), and a strict JSON body.
//!
//! Authentication lives here so that handlers take a verified client and
//! never see the key. The key is looked up by its SHA-256 and confirmed in
//! constant time by the registry; it is never logged.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;
use crate::authority::AuthorityError;
use crate::clients::Client;

/// The client whose API key came with the request, after its rate limit.
pub struct ApiClient(pub Arc<Client>);

/// The API key from `Authorization: Bearer …` or `X-API-Key`. Header bytes
/// that are not visible ASCII make the key malformed.
fn presented_key(headers: &HeaderMap) -> Result<&str, AuthorityError> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| AuthorityError::InvalidApiKey)?;
        let (scheme, rest) = v.split_once(' ').ok_or(AuthorityError::InvalidApiKey)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthorityError::InvalidApiKey);
        }
        return Ok(rest.trim());
    }
    match headers.get("x-api-key") {
        Some(v) => v.to_str().map(str::trim).map_err(|_| AuthorityError::InvalidApiKey),
        None => Err(AuthorityError::InvalidApiKey),
    }
}

impl FromRequestParts<Arc<AppState>> for ApiClient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let key = presented_key(&parts.headers)?;
        Ok(ApiClient(state.authority.authenticate(key).await?))
    }
}

/// A JSON body: `Content-Type: application/json`, at most 64 KiB, an
/// object with no duplicate members at any depth (serde would keep the last
/// of two, where other parsers keep the first: two readings of one request),
/// unknown fields refused by the target type. Every failure is an `ApiError`.
pub struct JsonBody<T>(pub T);

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = ct.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || (mime.len() > 5 && mime[..mime.len() - 5].contains('/') && mime.to_ascii_lowercase().ends_with("+json"))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::InvalidRequest("the request body could not be read".into())
            }
        })?;
        // Every body of the contract is an object: serde's derived structs
        // would also take an array of their fields in declaration order.
        let object =
            crate::jose::json::parse_object(&bytes, "the body").map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
        serde_json::from_value(serde_json::Value::Object(object))
            .map(JsonBody)
            .map_err(|e| ApiError::InvalidRequest(format!("body: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn key_from_either_header() {
        let mut h = HeaderMap::new();
        assert!(presented_key(&h).is_err());
        h.insert("x-api-key", HeaderValue::from_static("sk_a"));
        assert_eq!(presented_key(&h).unwrap(), "sk_a");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer sk_b"));
        assert_eq!(presented_key(&h).unwrap(), "sk_b");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic c2s="));
        assert!(presented_key(&h).is_err());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer sk_\xff").unwrap(),
        );
        assert!(presented_key(&h).is_err());
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (ct, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("+json", false),
            ("application/jsonx", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_json(&h), ok, "{ct}");
        }
    }
}
