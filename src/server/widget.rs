//! The widget and session flows, and their CORS: `POST /v1/session/token`,
//! `POST /v1/guest`, `POST /v1/exchange`, `POST /v1/refresh` and
//! `GET /v1/clients/{public_key}/config`.
//!
//! Handlers extract, call one method of the [`Authority`](crate::Authority)
//! and map the result; which origins, rates and credentials are accepted is
//! the authority's.
//!
//! # CORS
//!
//! Preflights (`OPTIONS`) are answered 204 for an origin that some client
//! allows (for the config endpoint: that client), 403 otherwise; actual
//! responses, errors included, carry `Access-Control-Allow-Origin` for the
//! same origins, so a widget can read why it was refused. Every response
//! says `Vary: Origin`. No credentials mode: these endpoints use no cookies.
//!
//! Nothing here logs a token, a refresh token or a cookie.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth::JsonBody;
use super::error::ApiError;
use super::tokens::TokenResponse;
use super::AppState;

/// How long a browser may reuse a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: u32 = 600;
/// The request's `Origin`, if it sent one. A value that is not visible
/// ASCII, or several `Origin` headers, count as an origin no client allows.
pub(crate) struct RequestOrigin(pub Option<String>);

fn origin_of(headers: &HeaderMap) -> Option<String> {
    let mut all = headers.get_all(header::ORIGIN).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return Some(String::new());
    }
    Some(first.to_str().unwrap_or_default().to_owned())
}

impl<S: Send + Sync> FromRequestParts<S> for RequestOrigin {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestOrigin(origin_of(&parts.headers)))
    }
}

/// The peer's address when the server runs with connect info (`serve`); in
/// an in-process router without it, `None`, and limits fall back to per client.
pub(crate) struct PeerIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_canonical());
        Ok(PeerIp(ip))
    }
}

/// Whether any client allows `origin`: the CORS answer where the client is
/// not known from the request line (guest, exchange, refresh). Read from the
/// current registry, so a SIGHUP that adds a client or changes origins counts.
fn any_client_allows(state: &AppState, origin: &str) -> bool {
    state.authority.origin_allowed_by_any(origin)
}

/// Adds `Vary: Origin` to every response of the widget routes, and
/// `Access-Control-Allow-Origin` for an origin some client allows.
/// Preflights build their own headers.
pub(crate) async fn cors(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let origin = origin_of(req.headers());
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(o) = origin.filter(|o| any_client_allows(&state, o)) {
        allow_origin(headers, &o);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after, dpop-nonce, www-authenticate"),
        );
    }
    resp
}

fn allow_origin(headers: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
}

/// The preflight answer: 204 with the CORS headers for an allowed origin,
/// 403 `origin_not_allowed` (and no CORS headers) otherwise.
fn preflight_answer(origin: Option<&str>, allowed: bool, methods: &'static str) -> Response {
    let mut resp = match origin {
        Some(o) if allowed => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            allow_origin(h, o);
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("content-type, dpop"),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(PREFLIGHT_MAX_AGE));
            r
        }
        _ => ApiError::from(crate::authority::AuthorityError::OriginNotAllowed).into_response(),
    };
    resp.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
    );
    resp
}

/// `OPTIONS` on `/v1/guest`, `/v1/exchange`, `/v1/refresh`.
pub(crate) async fn preflight(State(state): State<Arc<AppState>>, RequestOrigin(origin): RequestOrigin) -> Response {
    let allowed = origin.as_deref().is_some_and(|o| any_client_allows(&state, o));
    preflight_answer(origin.as_deref(), allowed, "POST, OPTIONS")
}

/// `OPTIONS /v1/clients/{public_key}/config`: the client is in the path.
pub(crate) async fn config_preflight(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    RequestOrigin(origin): RequestOrigin,
) -> Response {
    let allowed = match (path, origin.as_deref()) {
        (Ok(Path(pk)), Some(o)) => state.authority.origin_allowed_for(&pk, o),
        _ => false,
    };
    preflight_answer(origin.as_deref(), allowed, "GET, OPTIONS")
}

/// `POST /v1/session/token`: 404 when no `[session]` is configured.
pub(crate) async fn session_token_create(
    State(state): State<Arc<AppState>>,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
) -> Result<TokenResponse, ApiError> {
    let grant = state.authority.session_token(&headers, ip).await?;
    Ok(state.respond(grant))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GuestRequest {
    client_key: String,
}

/// `POST /v1/guest`.
pub(crate) async fn guest_create(
    State(state): State<Arc<AppState>>,
    RequestOrigin(origin): RequestOrigin,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    JsonBody(req): JsonBody<GuestRequest>,
) -> Result<TokenResponse, ApiError> {
    let proof = super::dpop::token_request_proof(&state, &headers, "/v1/guest").await?;
    let grant = state
        .authority
        .guest(&req.client_key, origin.as_deref(), ip, proof.as_ref())
        .await?;
    Ok(state.respond(grant))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExchangeRequest {
    token: String,
}

/// `POST /v1/exchange`.
pub(crate) async fn exchange_create(
    State(state): State<Arc<AppState>>,
    RequestOrigin(origin): RequestOrigin,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ExchangeRequest>,
) -> Result<TokenResponse, ApiError> {
    let proof = super::dpop::token_request_proof(&state, &headers, "/v1/exchange").await?;
    let grant = state
        .authority
        .exchange(&req.token, origin.as_deref(), ip, proof.as_ref())
        .await?;
    Ok(state.respond(grant))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshRequest {
    refresh_token: String,
}

/// `POST /v1/refresh`.
pub(crate) async fn refresh_create(
    State(state): State<Arc<AppState>>,
    RequestOrigin(origin): RequestOrigin,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    JsonBody(req): JsonBody<RefreshRequest>,
) -> Result<TokenResponse, ApiError> {
    let proof = super::dpop::token_request_proof(&state, &headers, "/v1/refresh").await?;
    let grant = state
        .authority
        .refresh(&req.refresh_token, origin.as_deref(), ip, proof.as_ref())
        .await?;
    Ok(state.respond(grant))
}

/// `GET /v1/clients/{public_key}/config`.
pub(crate) async fn client_config_get(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    RequestOrigin(origin): RequestOrigin,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let Path(pk) = path.map_err(|e| ApiError::InvalidRequest(format!("path: {e}")))?;
    Ok(Json(state.authority.client_config(&pk, origin.as_deref())?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn several_or_non_ascii_origins_match_nothing() {
        let mut h = HeaderMap::new();
        assert_eq!(origin_of(&h), None);
        h.insert(header::ORIGIN, HeaderValue::from_static("https://a.example"));
        assert_eq!(origin_of(&h).as_deref(), Some("https://a.example"));
        h.append(header::ORIGIN, HeaderValue::from_static("https://b.example"));
        assert_eq!(origin_of(&h).as_deref(), Some(""));
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_bytes(b"https://\xffa.example").unwrap(),
        );
        assert_eq!(origin_of(&h).as_deref(), Some(""));
    }
}
