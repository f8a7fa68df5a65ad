//! Issuance: `POST /v1/tokens`.
//!
//! Handlers extract, call one library function, and map the result; the
//! policy is `issuer::apply_policy`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::auth::{ApiClient, JsonBody};
use super::error::ApiError;
use super::AppState;
use crate::issuer::{apply_policy, IssuedToken, TokenRequest};

/// The answer of every endpoint that hands out a token.
#[derive(Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub expires_at: i64,
    pub jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl TokenResponse {
    pub fn new(issued: IssuedToken, refresh_token: Option<String>) -> TokenResponse {
        let c = issued.claims;
        TokenResponse {
            token: issued.token,
            token_type: "Bearer",
            expires_in: c.exp - c.iat,
            expires_at: c.exp,
            jti: c.jti,
            refresh_token,
        }
    }
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        let mut r = Json(self).into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r.headers_mut()
            .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        r
    }
}

pub async fn tokens_create(
    State(state): State<Arc<AppState>>,
    ApiClient(client): ApiClient,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Result<TokenResponse, ApiError> {
    let spec = apply_policy(&client, req, state.limits, state.issuer.issuer())?;
    Ok(TokenResponse::new(state.issue(&client.id, spec)?, None))
}
