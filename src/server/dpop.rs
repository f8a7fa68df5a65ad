//! DPoP at the HTTP edge: reading the `DPoP` header of a token request and
//! handing it to the authority, the `token_type` of an answer, and the
//! `DPoP-Nonce` header of a `use_dpop_nonce` refusal.
//!
//! Which proofs are good and what a bound token needs are the authority's
//! (`Authority::dpop_proof`, `Authority::admit_dpop`); nothing is decided here.

use axum::http::{HeaderMap, HeaderValue};

use super::AppState;
use crate::authority::AuthorityError;
use crate::authority::OAuthError;
use crate::claims::Claims;
use crate::dpop::{DpopError, Proof};

/// The `DPoP` request header.
pub(crate) const DPOP: &str = "dpop";
/// The `DPoP-Nonce` response header.
pub(crate) const DPOP_NONCE: &str = "dpop-nonce";

/// The one `DPoP` header of a request, if it has one. Two, or one that is
/// not visible ASCII, is an invalid proof.
pub(crate) fn proof_header(headers: &HeaderMap) -> Result<Option<&str>, DpopError> {
    let mut all = headers.get_all(DPOP).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(DpopError::Invalid("more than one DPoP header".into()));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| DpopError::Invalid("the DPoP header is not visible ASCII".into()))
}

/// The checked (and spent) proof of a token request to `path`, if it
/// carries one.
pub(crate) async fn token_request_proof(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
) -> Result<Option<Proof>, AuthorityError> {
    match proof_header(headers)? {
        None => Ok(None),
        Some(proof) => Ok(Some(state.authority.dpop_proof(proof, "POST", path).await?)),
    }
}

/// `token_type` of an answer: `DPoP` for a bound token (RFC 9449 §5).
pub(crate) fn token_type(claims: &Claims) -> &'static str {
    if claims.cnf_jkt().is_some() {
        "DPoP"
    } else {
        "Bearer"
    }
}

/// Adds `DPoP-Nonce` to the answer of a `use_dpop_nonce` refusal.
pub(crate) fn nonce_header_for(headers: &mut HeaderMap, error: &DpopError) {
    if let DpopError::UseNonce { nonce } = error {
        if let Ok(v) = HeaderValue::from_str(nonce) {
            headers.insert(DPOP_NONCE, v);
        }
    }
}

/// [`nonce_header_for`] an OAuth 2.0 error.
pub(crate) fn nonce_header(headers: &mut HeaderMap, error: &OAuthError) {
    if let OAuthError::Dpop(e) = error {
        nonce_header_for(headers, e);
    }
}
