//! The OAuth 2.0 endpoints: `POST /oauth2/token`, `POST /oauth2/introspect`
//! and `POST /oauth2/revoke`.
//!
//! Each handler reads the form ([`crate::oauth::Form`]: form-encoded only,
//! no repeated parameter) and the client's credentials, calls one method of
//! the [`Authority`](crate::Authority), and maps the answer. [`OAuthReply`]
//! is the one place where an [`OAuthError`] becomes an RFC 6749 §5.2
//! response: status, `{"error", "error_description"}`, `Cache-Control:
//! no-store`, and `WWW-Authenticate: Basic realm="tokensmith"` when the
//! client authenticated with Basic. Causes that are not the client's
//! business stay in the log. Nothing here logs a secret or a token.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::widget::PeerIp;
use super::AppState;
use crate::authority::AuthorityError;
use crate::authority::OAuthError;
use crate::oauth::request::is_basic;
use crate::oauth::{ClientAuth, Form, Introspection, TokenGrant};

/// Why an OAuth 2.0 request failed, on its way to the client.
#[derive(Debug)]
pub(crate) enum OAuthReply {
    /// An RFC 6749 error; `basic` when the request used `Authorization: Basic`.
    Error {
        /// The error.
        error: OAuthError,
        /// The client authenticated (or tried to) with Basic.
        basic: bool,
    },
    /// The body is not `application/x-www-form-urlencoded`.
    MediaType,
    /// The body is over 64 KiB.
    TooLarge,
}

impl OAuthReply {
    fn status(&self) -> StatusCode {
        match self {
            OAuthReply::MediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            OAuthReply::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            OAuthReply::Error { error, .. } => match error {
                OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
                OAuthError::Service(AuthorityError::Store(_)) => StatusCode::SERVICE_UNAVAILABLE,
                OAuthError::Service(AuthorityError::RateLimited { .. }) => StatusCode::TOO_MANY_REQUESTS,
                OAuthError::Service(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            },
        }
    }

    fn code(&self) -> &'static str {
        match self {
            OAuthReply::MediaType | OAuthReply::TooLarge => "invalid_request",
            OAuthReply::Error { error, .. } => error.code(),
        }
    }

    fn description(&self) -> String {
        match self {
            OAuthReply::MediaType => "the body must be application/x-www-form-urlencoded".into(),
            OAuthReply::TooLarge => "the request body is over 64 KiB".into(),
            OAuthReply::Error { error, .. } => match error {
                OAuthError::Service(AuthorityError::Store(_)) => {
                    "the shared store cannot be reached; nothing was issued or revoked".into()
                }
                OAuthError::Service(e @ AuthorityError::RateLimited { .. }) => e.to_string(),
                OAuthError::Service(AuthorityError::Issue(e @ crate::issuer::IssueError::TooLarge { .. })) => {
                    e.to_string()
                }
                OAuthError::Service(_) => "internal error".into(),
                e => e.to_string(),
            },
        }
    }
}

impl From<OAuthError> for OAuthReply {
    fn from(error: OAuthError) -> Self {
        OAuthReply::Error { error, basic: false }
    }
}

impl IntoResponse for OAuthReply {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        match &self {
            OAuthReply::Error {
                error: OAuthError::Service(e),
                ..
            } if status.is_server_error() => {
                tracing::warn!(code, error = %e, cause = ?std::error::Error::source(e), "oauth request failed")
            }
            _ => tracing::debug!(code, "oauth request refused"),
        }
        let body = serde_json::json!({ "error": code, "error_description": self.description() });
        let mut resp = (status, Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let OAuthReply::Error { error, basic } = &self {
            if matches!(error, OAuthError::InvalidClient(_)) && *basic {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"tokensmith\""),
                );
            }
            if let OAuthError::Service(AuthorityError::RateLimited { retry_after }) = error {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            super::dpop::nonce_header(h, error);
        }
        resp
    }
}

/// A successful answer: JSON, never cached.
fn no_store(body: impl Serialize) -> Response {
    let mut r = Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// A request's form and credentials, and whether it used Basic.
struct Parsed {
    form: Form,
    auth: Result<ClientAuth, OAuthError>,
    basic: bool,
}

/// Reads the form and the credentials of an OAuth 2.0 request. The
/// credentials are kept as a result: the endpoint decides when a failure
/// to authenticate is reported.
fn parse(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Parsed, OAuthReply> {
    let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
    let authorization = authorizations.next();
    let basic = is_basic(authorization.and_then(|v| v.to_str().ok()));
    let fail = |error: OAuthError| OAuthReply::Error { error, basic };
    if authorizations.next().is_some() {
        return Err(fail(OAuthError::InvalidRequest(
            "more than one Authorization header".into(),
        )));
    }
    if !is_form(headers) {
        return Err(OAuthReply::MediaType);
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            OAuthReply::TooLarge
        } else {
            fail(OAuthError::InvalidRequest("the request body could not be read".into()))
        }
    })?;
    let form = Form::parse(&body).map_err(|e| fail(e.into()))?;
    let authorization = match authorization.map(HeaderValue::to_str) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return Err(fail(OAuthError::InvalidClient(
                "the Authorization header is not visible ASCII".into(),
            )))
        }
    };
    let auth = ClientAuth::from_request(authorization, &form).map_err(OAuthError::from);
    Ok(Parsed { form, auth, basic })
}

/// RFC 6749 §5.1, with RFC 8693's `issued_token_type`.
#[derive(Serialize)]
struct TokenBody {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
}

/// `POST /oauth2/token`.
pub(crate) async fn oauth_token_create(
    State(state): State<Arc<AppState>>,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthReply> {
    let Parsed { form, auth, basic } = parse(&headers, body)?;
    let fail = |error: OAuthError| OAuthReply::Error { error, basic };
    let auth = auth.map_err(fail)?;
    let grant = TokenGrant::from_form(&form).map_err(|e| fail(e.into()))?;
    let proof = super::dpop::token_request_proof(&state, &headers, "/oauth2/token")
        .await
        .map_err(|e| fail(e.into()))?;
    let issued = state
        .authority
        .oauth_token(&auth, grant, ip, proof.as_ref())
        .await
        .map_err(fail)?;
    let claims = &issued.grant.token.claims;
    state.metrics.token_issued(claims.client_id().unwrap_or_default());
    Ok(no_store(TokenBody {
        expires_in: claims.exp - claims.iat,
        scope: (!claims.scopes.is_empty()).then(|| claims.scopes.join(" ")),
        token_type: super::dpop::token_type(claims),
        access_token: issued.grant.token.token,
        refresh_token: issued.grant.refresh_token,
        issued_token_type: issued.issued_token_type,
    }))
}

/// `POST /oauth2/introspect` (RFC 7662).
pub(crate) async fn oauth_introspect(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthReply> {
    let Parsed { form, auth, basic } = parse(&headers, body)?;
    let fail = |error: OAuthError| OAuthReply::Error { error, basic };
    let auth = auth.map_err(fail)?;
    let token = form.require("token").map_err(|e| fail(e.into()))?;
    let answer: Introspection = state.authority.introspect(&auth, &token).await.map_err(fail)?;
    Ok(no_store(answer))
}

/// `POST /oauth2/revoke` (RFC 7009): 200 with an empty body.
pub(crate) async fn oauth_revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthReply> {
    let Parsed { form, auth, basic } = parse(&headers, body)?;
    let fail = |error: OAuthError| OAuthReply::Error { error, basic };
    let auth = auth.map_err(fail)?;
    let token = form.require("token").map_err(|e| fail(e.into()))?;
    state.authority.revoke_token(&auth, &token).await.map_err(fail)?;
    let mut r = StatusCode::OK.into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_form(&h));
        for (ct, ok) in [
            ("application/x-www-form-urlencoded", true),
            ("application/x-www-form-urlencoded; charset=UTF-8", true),
            ("Application/X-WWW-Form-Urlencoded", true),
            ("application/json", false),
            ("multipart/form-data", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_form(&h), ok, "{ct}");
        }
    }
}
