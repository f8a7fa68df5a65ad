//! Issuance: `POST /v1/tokens`, and the answer of every endpoint that hands
//! out a token.
//!
//! The handler extracts, calls [`Authority::issue`](crate::Authority::issue)
//! and maps the result: the policy is the authority's.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::auth::{ApiClient, JsonBody};
use super::error::ApiError;
use super::AppState;
use crate::authority::{Grant, TokenRequest};

/// The answer of every endpoint that hands out a token.
#[derive(Serialize)]
pub(crate) struct TokenResponse {
    token: String,
    token_type: &'static str,
    expires_in: i64,
    expires_at: i64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

impl AppState {
    /// The response for `grant`, counted in the metrics by the client it
    /// was issued to: every token the service hands out passes here.
    pub(crate) fn respond(&self, grant: Grant) -> TokenResponse {
        let c = grant.token.claims;
        self.metrics.token_issued(c.client_id().unwrap_or_default());
        TokenResponse {
            token_type: super::dpop::token_type(&c),
            token: grant.token.token,
            expires_in: c.exp - c.iat,
            expires_at: c.exp,
            jti: c.jti,
            refresh_token: grant.refresh_token,
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

/// `POST /v1/tokens`.
pub(crate) async fn tokens_create(
    State(state): State<Arc<AppState>>,
    ApiClient(client): ApiClient,
    headers: HeaderMap,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Result<TokenResponse, ApiError> {
    let proof = super::dpop::token_request_proof(&state, &headers, "/v1/tokens").await?;
    let token = state.authority.issue_bound(&client, req, proof.as_ref()).await?;
    Ok(state.respond(Grant {
        token,
        refresh_token: None,
    }))
}
