//! `ApiError`: the one place where errors become HTTP responses, for the
//! service's handlers and for the `Bearer` extractor of plugin backends alike.
//!
//! Every error answers `{"error": CODE, "error_description": TEXT}` with the
//! status of API.md's table and `Cache-Control: no-store`; token refusals
//! carry an RFC 6750 `WWW-Authenticate: Bearer` challenge. Internal causes
//! are logged here and replaced by a generic text; only descriptions written
//! for the client (a rejection's reason, a policy refusal) are sent, and a
//! challenge carries codes, never anything of the token.

use std::fmt;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::authority::AuthorityError;
use crate::claims::Rejection;
use crate::issuer::IssueError;
use crate::store::StoreError;

/// An error on its way to the client.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApiError {
    /// The authority refused, or could not act.
    Authority(AuthorityError),
    /// A malformed request body, path or field, found at the edge.
    InvalidRequest(String),
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The body is over 64 KiB.
    TooLarge,
    /// No such route.
    NotFound,
    /// No such method on this route.
    MethodNotAllowed,
    /// No bearer credentials (none, or another scheme): RFC 6750 §3.1.
    NoBearerToken,
    /// An `Authorization: Bearer` header that breaks RFC 6750 §2.1.
    BadAuthorization(&'static str),
    /// A scope is missing; `scopes` are what the resource requires.
    InsufficientScope {
        /// The first scope missing.
        missing: String,
        /// Every scope the resource requires, for the challenge.
        scopes: Vec<String>,
    },
    /// A setup mistake of the service itself: logged, answered 500.
    Internal(&'static str),
}

impl From<AuthorityError> for ApiError {
    fn from(e: AuthorityError) -> Self {
        match e {
            AuthorityError::Rejected(Rejection::InsufficientScope { missing }) => ApiError::InsufficientScope {
                scopes: vec![missing.clone()],
                missing,
            },
            e => ApiError::Authority(e),
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError::from(AuthorityError::Rejected(r))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Authority(AuthorityError::Store(e))
    }
}

impl ApiError {
    /// Status and stable code.
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Authority(e) => (authority_status(e), e.code()),
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::NoBearerToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::BadAuthorization(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::InsufficientScope { .. } => (StatusCode::FORBIDDEN, "insufficient_scope"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }

    /// What the client is told. Causes it has no business with (a store's
    /// address, a provider failure) stay in the log.
    fn description(&self) -> String {
        match self {
            ApiError::Authority(e) => match e {
                AuthorityError::Store(StoreError::Full { capacity }) => {
                    format!("the replay store is full (capacity {capacity}); nothing was issued or consumed")
                }
                AuthorityError::Store(_) => "the shared store cannot be reached; nothing was issued or consumed".into(),
                AuthorityError::ConsumeUnconfirmed { retryable, .. } => {
                    let mut why = String::from(
                        "the shared store did not answer: the outcome is unknown, and the token may have been used",
                    );
                    if *retryable {
                        why.push_str("; retry with the same Idempotency-Key to get the original outcome");
                    }
                    why
                }
                AuthorityError::SessionUnavailable(_) => "the session check could not be reached".into(),
                AuthorityError::Issue(IssueError::TooLarge { .. }) => e.to_string(),
                AuthorityError::Issue(_) | AuthorityError::Random(_) | AuthorityError::Misconfigured(_) => {
                    "internal error".into()
                }
                AuthorityError::NoSessionCheck => "no such resource".into(),
                e => e.to_string(),
            },
            ApiError::InvalidRequest(why) => why.clone(),
            ApiError::UnsupportedMediaType => "the body must be JSON with Content-Type: application/json".into(),
            ApiError::TooLarge => "the request body is over 64 KiB".into(),
            ApiError::NotFound => "no such resource".into(),
            ApiError::MethodNotAllowed => "this method is not allowed on this resource".into(),
            ApiError::NoBearerToken => "the request carries no bearer token".into(),
            ApiError::BadAuthorization(why) => (*why).into(),
            ApiError::InsufficientScope { missing, .. } => Rejection::InsufficientScope {
                missing: missing.clone(),
            }
            .to_string(),
            ApiError::Internal(_) => "internal error".into(),
        }
    }

    /// The `WWW-Authenticate` value, if this error carries one (RFC 6750 §3).
    fn challenge(&self) -> Option<String> {
        match self {
            ApiError::NoBearerToken => Some("Bearer".into()),
            ApiError::BadAuthorization(_) => Some("Bearer error=\"invalid_request\"".into()),
            // The code, never the description: it could echo parts of the token.
            ApiError::Authority(AuthorityError::Rejected(r)) => Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                r.code()
            )),
            // RFC 9449 §7.1: the DPoP scheme, with the algorithms accepted.
            ApiError::Authority(AuthorityError::Dpop(e)) => Some(format!(
                "DPoP error=\"{}\", algs=\"{}\"",
                e.code(),
                crate::dpop::DPOP_ALGS_TEXT
            )),
            ApiError::Authority(AuthorityError::InvalidApiKey | AuthorityError::InvalidSession) => {
                Some("Bearer realm=\"tokensmith\"".into())
            }
            ApiError::InsufficientScope { scopes, .. } => {
                let mut v = String::from("Bearer error=\"insufficient_scope\"");
                // RFC 6750 §3: scope tokens are NQCHARs, space-separated.
                let nqchar = |s: &&String| {
                    s.bytes()
                        .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
                };
                let listed: Vec<&str> = scopes.iter().filter(nqchar).map(String::as_str).collect();
                if !listed.is_empty() {
                    v.push_str(&format!(", scope=\"{}\"", listed.join(" ")));
                }
                Some(v)
            }
            _ => None,
        }
    }

    /// Logs what the client is not told. Warnings and errors go through the
    /// edge's [`logthrottle`](super::logthrottle): one line per cause per
    /// second, carrying how many were held back (`suppressed`), so that an
    /// outage failing every request cannot flood the log.
    fn log(&self, code: &'static str) {
        let admit = |cause: &'static str| super::logthrottle::edge().admit(cause, std::time::Instant::now());
        match self {
            ApiError::Authority(
                e @ (AuthorityError::Store(_)
                | AuthorityError::ConsumeUnconfirmed { .. }
                | AuthorityError::SessionUnavailable(_)),
            ) => {
                let cause = if matches!(e, AuthorityError::SessionUnavailable(_)) {
                    "session_check"
                } else {
                    "store"
                };
                if let Some(suppressed) = admit(cause) {
                    tracing::warn!(code, error = %e, cause = ?std::error::Error::source(e), suppressed, "dependency unavailable")
                }
            }
            ApiError::Authority(
                e @ (AuthorityError::Issue(IssueError::Crypto(_))
                | AuthorityError::Random(_)
                | AuthorityError::Misconfigured(_)),
            ) => {
                if let Some(suppressed) = admit("internal") {
                    tracing::error!(code, error = %e, cause = ?std::error::Error::source(e), suppressed, "internal error")
                }
            }
            ApiError::Internal(why) => {
                if let Some(suppressed) = admit(why) {
                    tracing::error!(code, error = why, suppressed, "internal error")
                }
            }
            _ => tracing::debug!(code, "request refused"),
        }
    }
}

/// The HTTP status of each authority answer (API.md's table).
fn authority_status(e: &AuthorityError) -> StatusCode {
    match e {
        AuthorityError::InvalidRequest(_) | AuthorityError::Issue(IssueError::TooLarge { .. }) => {
            StatusCode::BAD_REQUEST
        }
        AuthorityError::InvalidApiKey | AuthorityError::InvalidSession | AuthorityError::Dpop(_) => {
            StatusCode::UNAUTHORIZED
        }
        AuthorityError::Rejected(Rejection::InsufficientScope { .. }) => StatusCode::FORBIDDEN,
        AuthorityError::Rejected(_) => StatusCode::UNAUTHORIZED,
        AuthorityError::Policy(_) | AuthorityError::OriginNotAllowed => StatusCode::FORBIDDEN,
        AuthorityError::NoSessionCheck | AuthorityError::UnknownClient => StatusCode::NOT_FOUND,
        AuthorityError::SessionUnavailable(_)
        | AuthorityError::Store(_)
        | AuthorityError::ConsumeUnconfirmed { .. } => StatusCode::SERVICE_UNAVAILABLE,
        AuthorityError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status_code().1, self.description())
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApiError::Authority(e) => Some(e),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        self.log(code);
        let body = serde_json::json!({ "error": code, "error_description": self.description() });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(v) = self.challenge().and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        if let ApiError::Authority(AuthorityError::RateLimited { retry_after }) = &self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        if let ApiError::Authority(AuthorityError::Dpop(e)) = &self {
            super::dpop::nonce_header_for(headers, e);
        }
        response
    }
}
