//! `POST /v1/verify` and `POST /v1/revoke`: parse, call the authority, map.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{ApiClient, JsonBody};
use super::error::ApiError;
use super::AppState;
use crate::authority::{AuthorityError, DpopPresented, Revocation, VerifyOptions};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRequest {
    token: String,
    /// Default: the calling client's audience.
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    /// Mark the `jti` as used until the token expires; a second consume is `token_replayed`.
    #[serde(default)]
    consume: bool,
    /// The DPoP proof the token came with, and that request's method and URL.
    #[serde(default)]
    dpop: Option<VerifyDpop>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyDpop {
    proof: String,
    method: String,
    url: String,
}

/// `POST /v1/verify`. An `Idempotency-Key` header makes a retried consume
/// answer as the first attempt did.
pub(crate) async fn tokens_verify(
    State(state): State<Arc<AppState>>,
    ApiClient(client): ApiClient,
    headers: HeaderMap,
    JsonBody(req): JsonBody<VerifyRequest>,
) -> Result<Json<Value>, ApiError> {
    let idempotency_key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::InvalidRequest("Idempotency-Key must be printable ASCII".into()))?
                .to_owned(),
        ),
        None => None,
    };
    let opts = VerifyOptions {
        audience: req.audience,
        scopes: req.scopes,
        consume: req.consume,
        idempotency_key,
        dpop: req.dpop.map(|d| DpopPresented {
            proof: d.proof,
            method: d.method,
            url: d.url,
        }),
    };
    let result = state.authority.verify(&client, &req.token, &opts).await;
    state.metrics.verification(match &result {
        Ok(_) => "valid",
        Err(AuthorityError::Rejected(r)) => r.code(),
        Err(_) => "error",
    });
    let claims = result.map_err(|e| match e {
        // RFC 6750 §3: the challenge names every scope the caller asked for.
        AuthorityError::Rejected(crate::claims::Rejection::InsufficientScope { missing }) => {
            ApiError::InsufficientScope {
                missing,
                scopes: opts.scopes.clone(),
            }
        }
        e => e.into(),
    })?;
    Ok(Json(json!({ "valid": true, "claims": claims.to_value() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    sub: Option<String>,
}

/// `POST /v1/revoke`.
pub(crate) async fn tokens_revoke(
    State(state): State<Arc<AppState>>,
    ApiClient(client): ApiClient,
    JsonBody(req): JsonBody<RevokeRequest>,
) -> Result<Json<Value>, ApiError> {
    let (kind, what) = match (req.jti, req.sub) {
        (Some(jti), None) => ("jti", Revocation::Jti(jti)),
        (None, Some(sub)) => ("sub", Revocation::Sub(sub)),
        _ => return Err(ApiError::InvalidRequest("give exactly one of jti or sub".into())),
    };
    state.authority.revoke(&client, &what).await?;
    tracing::info!(client = %client.id, kind, "revoked");
    Ok(Json(json!({ "revoked": kind })))
}
