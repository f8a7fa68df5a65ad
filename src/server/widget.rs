//! The widget and session flows, and their CORS: `POST /v1/session/token`,
//! `POST /v1/guest`, `POST /v1/exchange`, `POST /v1/refresh` and
//! `GET /v1/clients/{public_key}/config`.
//!
//! Handlers extract, call the library ([`crate::session`],
//! [`crate::refresh`], [`Identity::token_spec`]) and map the result; the
//! policy cut lives in the library, not here.
//!
//! # Origins and CORS
//!
//! `Origin` is the widget's only credential on `/v1/guest` and the config
//! endpoint: it must be in the client's allowlist. On `/v1/exchange` and
//! `/v1/refresh` the token is the credential and the client is known only
//! once it is read; an `Origin`, when sent, must then be allowed for that
//! client (a request without one is not from a browser page, and CORS does
//! not concern it). `Origin` can be forged by anything but a browser, so
//! this guards against other web pages, not against a thief of the token.
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
use crate::claims::Rejection;
use crate::claims::CLIENT_ID;
use crate::clients::Client;
use crate::issuer::exchange_audience;
use crate::refresh::{self, InvalidReason, RefreshError};
use crate::session::{Identity, SessionError};
use crate::store::Store;

/// How long a browser may reuse a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: u32 = 600;
/// A client IP gets this share of the client's rate for new guests: one
/// page cannot mint every guest the client may have. Behind a proxy every
/// request shares the proxy's address (`X-Forwarded-For` is not trusted),
/// and the share becomes a fleet-wide limit.
const GUEST_IP_SHARE: u32 = 10;

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::NoCredentials | SessionError::Rejected { .. } => ApiError::InvalidSession,
            SessionError::Unavailable(why) => ApiError::SessionUnavailable(why),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Invalid(why) => {
                if why == InvalidReason::Reused {
                    // Two holders of one token: a theft, or a client that refreshes twice.
                    tracing::warn!("a spent refresh token was presented again; its family is revoked");
                } else {
                    tracing::debug!(reason = why.as_str(), "refresh token refused");
                }
                ApiError::Rejected(Rejection::InvalidRefreshToken)
            }
            RefreshError::Store(e) => ApiError::Store(e),
            RefreshError::Random(e) => ApiError::Internal(e.to_string()),
        }
    }
}

/// The request's `Origin`, if it sent one. A value that is not visible
/// ASCII, or several `Origin` headers, count as an origin no client allows.
pub struct RequestOrigin(pub Option<String>);

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
pub struct PeerIp(pub Option<IpAddr>);

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

/// The rate-limit key of an address: IPv4 as is, IPv6 by its /64, since one
/// host commonly holds a whole /64.
fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// `Ok` when `origin` is allowed for `client`; a missing origin passes only
/// where the endpoint does not require one.
fn check_origin(client: &Client, origin: Option<&str>, required: bool) -> Result<(), ApiError> {
    match origin {
        None if !required => Ok(()),
        Some(o) if client.origin_allowed(o) => Ok(()),
        _ => Err(ApiError::OriginNotAllowed),
    }
}

/// Whether any client allows `origin`: the CORS answer where the client is
/// not known from the request line (guest, exchange, refresh). Read from the
/// current registry, so a SIGHUP that adds a client or changes origins counts.
fn any_client_allows(state: &AppState, origin: &str) -> bool {
    state.clients.load().any_origin_allowed(origin)
}

/// Adds `Vary: Origin` to every response of the widget routes, and
/// `Access-Control-Allow-Origin` for an origin some client allows.
/// Preflights build their own headers.
pub async fn cors(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
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
            HeaderValue::from_static("retry-after"),
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
                HeaderValue::from_static("content-type"),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(PREFLIGHT_MAX_AGE));
            r
        }
        _ => ApiError::OriginNotAllowed.into_response(),
    };
    resp.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
    );
    resp
}

/// `OPTIONS` on `/v1/guest`, `/v1/exchange`, `/v1/refresh`.
pub async fn preflight(State(state): State<Arc<AppState>>, RequestOrigin(origin): RequestOrigin) -> Response {
    let allowed = origin.as_deref().is_some_and(|o| any_client_allows(&state, o));
    preflight_answer(origin.as_deref(), allowed, "POST, OPTIONS")
}

/// `OPTIONS /v1/clients/{public_key}/config`: the client is in the path.
pub async fn config_preflight(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    RequestOrigin(origin): RequestOrigin,
) -> Response {
    let client = path.ok().and_then(|Path(pk)| state.clients.load().by_public_key(&pk));
    let allowed = match (&client, origin.as_deref()) {
        (Some(c), Some(o)) => c.origin_allowed(o),
        _ => false,
    };
    preflight_answer(origin.as_deref(), allowed, "GET, OPTIONS")
}

/// Signs a token for `identity` under `client`'s policy, with a refresh
/// token when one is given.
fn respond(
    state: &AppState,
    client: &Client,
    identity: &Identity,
    refresh_token: Option<String>,
) -> Result<TokenResponse, ApiError> {
    let spec = identity.token_spec(client, state.limits);
    Ok(TokenResponse::new(state.issue(&client.id, spec)?, refresh_token))
}

/// Starts a refresh family for `identity` (cut to `client`) and signs its
/// first token.
async fn respond_with_new_family(
    state: &AppState,
    client: &Client,
    identity: &Identity,
) -> Result<TokenResponse, ApiError> {
    let cut = identity.cut_to(client);
    let now = state.clock.now();
    let family = refresh::issue_family(&state.store, client, &cut.sub, &cut.scopes, &cut.claims, now).await?;
    tracing::debug!(client = %client.id, family = %family.record.family, "refresh family started");
    respond(state, client, &cut, Some(family.token))
}

/// `POST /v1/session/token`: the app's session check vouches for the
/// caller; the token follows `[session] client`'s policy. 404 when no
/// `[session]` is configured.
pub async fn session_token_create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<TokenResponse, ApiError> {
    let checker = state.session.as_ref().ok_or(ApiError::NotFound)?;
    let client = state
        .clients
        .load()
        .by_id(checker.client_id())
        .ok_or_else(|| ApiError::Internal(format!("session.client {:?} names no client", checker.client_id())))?;
    state.rate_limit(&client, "session", &client.id).await?;
    let identity = checker.check(&headers, state.clock.now()).await?;
    respond(&state, &client, &identity, None)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestRequest {
    pub client_key: String,
}

/// `POST /v1/guest`: an anonymous visitor of the client whose public key
/// is given, from one of its origins.
pub async fn guest_create(
    State(state): State<Arc<AppState>>,
    RequestOrigin(origin): RequestOrigin,
    PeerIp(ip): PeerIp,
    JsonBody(req): JsonBody<GuestRequest>,
) -> Result<TokenResponse, ApiError> {
    let client = state
        .clients
        .load()
        .by_public_key(&req.client_key)
        .ok_or(ApiError::UnknownClient)?;
    check_origin(&client, origin.as_deref(), true)?;
    state.rate_limit(&client, "guest", &client.id).await?;
    if let Some(ip) = ip {
        guest_ip_limit(&state, &client, ip).await?;
    }
    let identity = Identity::guest(&client).map_err(|e| ApiError::Internal(e.to_string()))?;
    respond_with_new_family(&state, &client, &identity).await
}

/// One hit on the per-address guest counter: [`GUEST_IP_SHARE`] of the
/// client's rate, in the same window. No limit when the client has none.
async fn guest_ip_limit(state: &AppState, client: &Client, ip: IpAddr) -> Result<(), ApiError> {
    let Some(limit) = &client.rate_limit else {
        return Ok(());
    };
    let window = u32::try_from(limit.per.as_secs().max(1)).unwrap_or(u32::MAX);
    let count = (limit.count / GUEST_IP_SHARE).max(1);
    let key = format!("guest-ip:{}:{}", client.id, ip_key(ip));
    let decision = state.store.rate_hit(&key, count, window, state.clock.now()).await?;
    if decision.allowed {
        Ok(())
    } else {
        Err(ApiError::RateLimited {
            retry_after: decision.retry_after.max(1),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    pub token: String,
}

/// `POST /v1/exchange`: a visitor token (single use) for a session token of
/// the same subject and client, and a refresh token. The visitor token is
/// consumed before the Origin is checked: a token presented from a page the
/// client does not allow is as good as stolen, and burning it is the safe way.
pub async fn exchange_create(
    State(state): State<Arc<AppState>>,
    RequestOrigin(origin): RequestOrigin,
    JsonBody(req): JsonBody<ExchangeRequest>,
) -> Result<TokenResponse, ApiError> {
    let audience = exchange_audience(state.issuer.issuer());
    let claims = state.verify_token(&req.token, &audience, &[], true, None).await?;
    let client_id = claims.client_id().ok_or(Rejection::MissingClaim(CLIENT_ID))?;
    let client = state.clients.load().by_id(client_id).ok_or(ApiError::UnknownClient)?;
    check_origin(&client, origin.as_deref(), false)?;
    respond_with_new_family(&state, &client, &Identity::from_visitor(&claims)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// `POST /v1/refresh`: spends the refresh token and answers a new token and
/// the successor refresh token. Reuse of a spent one revokes the family.
/// The scopes and claims renewed are cut again to the client's current policy.
pub async fn refresh_create(
    State(state): State<Arc<AppState>>,
    RequestOrigin(origin): RequestOrigin,
    JsonBody(req): JsonBody<RefreshRequest>,
) -> Result<TokenResponse, ApiError> {
    let next = refresh::rotate(&state.store, &req.refresh_token, state.clock.now()).await?;
    // A client removed since: its families are dead.
    let client = state
        .clients
        .load()
        .by_id(&next.record.client)
        .ok_or(Rejection::InvalidRefreshToken)?;
    check_origin(&client, origin.as_deref(), false)?;
    respond(&state, &client, &Identity::from_refresh(&next.record), Some(next.token))
}

/// `GET /v1/clients/{public_key}/config`: the client's public bootstrap
/// config, for its own origins only.
pub async fn client_config_get(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    RequestOrigin(origin): RequestOrigin,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let Path(pk) = path.map_err(|e| ApiError::InvalidRequest(format!("path: {e}")))?;
    let client = state.clients.load().by_public_key(&pk).ok_or(ApiError::UnknownClient)?;
    check_origin(&client, origin.as_deref(), true)?;
    Ok(Json(client.config.clone()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ipv6_is_limited_by_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        assert_eq!(ip_key("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }

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
