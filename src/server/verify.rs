//! `POST /v1/verify` and `POST /v1/revoke`.
//!
//! Verification is the library's (`Verifier`), then the shared store:
//! revoked? and, with `consume`, first use of this `jti`? A store that cannot
//! be reached answers 503: nothing is reported valid-and-unrevoked, and
//! nothing is consumed, unchecked.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{ApiClient, JsonBody};
use super::error::ApiError;
use super::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub token: String,
    /// Default: the calling client's audience.
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Mark the `jti` as used until the token expires; a second consume is `token_replayed`.
    #[serde(default)]
    pub consume: bool,
}

pub async fn tokens_verify(
    State(state): State<Arc<AppState>>,
    ApiClient(client): ApiClient,
    JsonBody(req): JsonBody<VerifyRequest>,
) -> Result<Json<Value>, ApiError> {
    // A client verifies tokens addressed to one of its audiences, or tokens
    // it was issued itself (a visitor token, say). Anything else would let it
    // consume (burn) or probe tokens it has no business with.
    let audience = req.audience.as_deref().unwrap_or(&client.audience);
    let issued_to = (!client.audience_allowed(audience)).then_some(client.id.as_str());
    let claims = state
        .verify_token(&req.token, audience, &req.scopes, req.consume, issued_to)
        .await?;
    Ok(Json(json!({ "valid": true, "claims": claims.to_value() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
}

pub async fn tokens_revoke(
    State(state): State<Arc<AppState>>,
    ApiClient(client): ApiClient,
    JsonBody(req): JsonBody<RevokeRequest>,
) -> Result<Json<Value>, ApiError> {
    let (kind, value) = match (req.jti, req.sub) {
        (Some(jti), None) if !jti.is_empty() => ("jti", jti),
        (None, Some(sub)) if !sub.is_empty() => ("sub", sub),
        _ => return Err(ApiError::InvalidRequest("give exactly one of jti or sub".into())),
    };
    state.revoke(&client.id, kind, &value).await?;
    tracing::info!(client = %client.id, kind, "revoked");
    Ok(Json(json!({ "revoked": kind })))
}
