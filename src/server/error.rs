//! `ApiError`: the one place where errors become HTTP responses.
//!
//! Every error answers `{"error": CODE, "error_description": TEXT}` with the
//! status of API.md's table and `Cache-Control: no-store`. Internal causes
//! are logged here and replaced by a generic text; only descriptions written
//! for the client (a rejection's reason, a policy refusal) are sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::claims::Rejection;
use crate::issuer::PolicyError;
use crate::store::StoreError;

/// An error on its way to the client.
#[derive(Debug)]
pub enum ApiError {
    InvalidRequest(String),
    UnsupportedMediaType,
    InvalidApiKey,
    Rejected(Rejection),
    Policy(PolicyError),
    InvalidSession,
    SessionUnavailable(String),
    OriginNotAllowed,
    UnknownClient,
    TooLarge,
    RateLimited { retry_after: u64 },
    Store(StoreError),
    NotFound,
    MethodNotAllowed,
    Internal(String),
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError::Rejected(r)
    }
}

impl From<PolicyError> for ApiError {
    fn from(p: PolicyError) -> Self {
        match p {
            PolicyError::InvalidRequest(why) => ApiError::InvalidRequest(why),
            other => ApiError::Policy(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}

impl ApiError {
    /// Status and stable code.
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request"),
            ApiError::InvalidApiKey => (StatusCode::UNAUTHORIZED, "invalid_api_key"),
            ApiError::Rejected(r @ Rejection::InsufficientScope { .. }) => (StatusCode::FORBIDDEN, r.code()),
            ApiError::Rejected(r) => (StatusCode::UNAUTHORIZED, r.code()),
            ApiError::Policy(p) => (StatusCode::FORBIDDEN, p.code()),
            ApiError::InvalidSession => (StatusCode::UNAUTHORIZED, "invalid_session"),
            ApiError::SessionUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "invalid_session"),
            ApiError::OriginNotAllowed => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            ApiError::UnknownClient => (StatusCode::NOT_FOUND, "unknown_client"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }

    fn description(&self) -> String {
        match self {
            ApiError::InvalidRequest(why) => why.clone(),
            ApiError::UnsupportedMediaType => "the body must be JSON with Content-Type: application/json".into(),
            ApiError::InvalidApiKey => "the API key is missing, unknown or malformed".into(),
            ApiError::Rejected(r) => r.to_string(),
            ApiError::Policy(p) => p.to_string(),
            ApiError::InvalidSession => "the session was not accepted".into(),
            ApiError::SessionUnavailable(_) => "the session check could not be reached".into(),
            ApiError::OriginNotAllowed => "this Origin is not allowed for this client".into(),
            ApiError::UnknownClient => "no client has this public key".into(),
            ApiError::TooLarge => "the request body is over 64 KiB".into(),
            ApiError::RateLimited { retry_after } => format!("rate limit reached; retry in {retry_after}s"),
            ApiError::Store(_) => "the shared store cannot be reached; nothing was issued or consumed".into(),
            ApiError::NotFound => "no such resource".into(),
            ApiError::MethodNotAllowed => "this method is not allowed on this resource".into(),
            ApiError::Internal(_) => "internal error".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = %cause, "internal error"),
            ApiError::Store(cause) => tracing::warn!(error = ?cause, "store unavailable"),
            ApiError::SessionUnavailable(cause) => tracing::warn!(error = %cause, "session check unavailable"),
            _ => tracing::debug!(code, "request refused"),
        }
        let description = self.description();
        let body = serde_json::json!({ "error": code, "error_description": description });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            ApiError::Rejected(r) => {
                // RFC 6750 §3: say why, without echoing anything of the token.
                let kind = if matches!(r, Rejection::InsufficientScope { .. }) {
                    "insufficient_scope"
                } else {
                    "invalid_token"
                };
                let value = format!("Bearer error=\"{kind}\", error_description=\"{}\"", code);
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::InvalidApiKey | ApiError::InvalidSession => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tokensmith\""),
                );
            }
            ApiError::RateLimited { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        response
    }
}
