//! [`OAuthError`]: why an OAuth 2.0 endpoint said no, in the words of RFC
//! 6749 §5.2 (and RFC 8693, RFC 8707 where they add a code). RFC 7009's
//! `unsupported_token_type` never arises: every kind of token is revocable.
//!
//! The HTTP side (status, `WWW-Authenticate`, the JSON body) is written in
//! exactly one place, `server::oauth`. The authority's own refusals
//! ([`AuthorityError`]) become OAuth codes through [`OAuthError::grant`] and
//! the `From` conversion here; failures that are not the client's
//! (an unreachable store, a rate limit, a signing failure) keep their cause.

use std::fmt;

use super::{AuthorityError, PolicyError};
use crate::claims::Rejection;
use crate::oauth::RequestError;

/// An OAuth 2.0 error response.
#[derive(Debug)]
#[non_exhaustive]
pub enum OAuthError {
    /// `invalid_request`: a missing, repeated or malformed parameter, or an
    /// unacceptable subject token (RFC 8693 §2.2.2).
    InvalidRequest(String),
    /// `invalid_client`: client authentication failed.
    InvalidClient(String),
    /// `invalid_grant`: the refresh token or grant is invalid, expired,
    /// revoked, or was issued to another client.
    InvalidGrant(String),
    /// `invalid_scope`: a scope the client or the grant does not have.
    InvalidScope(String),
    /// `invalid_target` (RFC 8707 §2, RFC 8693 §2.2.2): an audience or
    /// resource the client may not get tokens for.
    InvalidTarget(String),
    /// `unsupported_grant_type`.
    UnsupportedGrantType(String),
    /// `unauthorized_client`: the authenticated client may not use this
    /// grant type (its `grant_types`).
    UnauthorizedClient(String),
    /// Not the client's doing: the store cannot be reached (503
    /// `temporarily_unavailable`), a rate limit (429), an internal failure
    /// (500 `server_error`). The cause is kept for the log.
    Service(AuthorityError),
    /// RFC 9449 §5: `invalid_dpop_proof`, or `use_dpop_nonce` (with the
    /// nonce for the `DPoP-Nonce` header).
    Dpop(crate::dpop::DpopError),
}

impl OAuthError {
    /// The `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::InvalidTarget(_) => "invalid_target",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::Service(AuthorityError::Store(_)) => "temporarily_unavailable",
            OAuthError::Service(AuthorityError::RateLimited { .. }) => "temporarily_unavailable",
            OAuthError::Service(_) => "server_error",
            OAuthError::Dpop(e) => e.code(),
        }
    }

    /// The authority's refusal of a grant (a refresh token, a subject
    /// token) in OAuth words: a refused token is `invalid_grant`.
    pub fn grant(e: AuthorityError) -> OAuthError {
        match e {
            AuthorityError::Rejected(r) => OAuthError::InvalidGrant(r.to_string()),
            e => OAuthError::from(e),
        }
    }

    /// The authority's refusal of a subject token (RFC 8693 §2.2.2: an
    /// invalid or unacceptable subject token is `invalid_request`).
    pub fn subject(e: AuthorityError) -> OAuthError {
        match e {
            AuthorityError::Rejected(r) => OAuthError::InvalidRequest(format!("subject_token: {}", r.code())),
            AuthorityError::UnknownClient => {
                OAuthError::InvalidRequest("subject_token: issued to a client that no longer exists".into())
            }
            e => OAuthError::from(e),
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OAuthError::InvalidRequest(why)
            | OAuthError::InvalidClient(why)
            | OAuthError::InvalidGrant(why)
            | OAuthError::InvalidScope(why)
            | OAuthError::InvalidTarget(why)
            | OAuthError::UnsupportedGrantType(why)
            | OAuthError::UnauthorizedClient(why) => f.write_str(why),
            OAuthError::Service(e) => write!(f, "{e}"),
            OAuthError::Dpop(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OAuthError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OAuthError::Service(e) => Some(e),
            _ => None,
        }
    }
}

impl From<AuthorityError> for OAuthError {
    fn from(e: AuthorityError) -> Self {
        match e {
            AuthorityError::InvalidRequest(why) => OAuthError::InvalidRequest(why),
            AuthorityError::InvalidApiKey | AuthorityError::UnknownClient => {
                OAuthError::InvalidClient("client authentication failed".into())
            }
            AuthorityError::Policy(PolicyError::ScopeNotAllowed(s)) => {
                OAuthError::InvalidScope(format!("the scope {s:?} is not allowed for this client"))
            }
            AuthorityError::Policy(PolicyError::AudienceNotAllowed(a)) => {
                OAuthError::InvalidTarget(format!("this client may not get tokens for the audience {a:?}"))
            }
            AuthorityError::Policy(p) => OAuthError::InvalidRequest(p.to_string()),
            AuthorityError::Rejected(Rejection::InvalidRefreshToken) => {
                OAuthError::InvalidGrant(Rejection::InvalidRefreshToken.to_string())
            }
            AuthorityError::Rejected(r) => OAuthError::InvalidGrant(r.to_string()),
            AuthorityError::GrantOfOtherClient => OAuthError::InvalidGrant(e.to_string()),
            AuthorityError::Dpop(d) => OAuthError::Dpop(d),
            e => OAuthError::Service(e),
        }
    }
}

impl From<RequestError> for OAuthError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::InvalidRequest(why) => OAuthError::InvalidRequest(why),
            RequestError::InvalidClient(why) => OAuthError::InvalidClient(why),
            RequestError::InvalidScope(why) => OAuthError::InvalidScope(why),
            RequestError::InvalidTarget(why) => OAuthError::InvalidTarget(why),
            RequestError::UnsupportedGrantType(why) => OAuthError::UnsupportedGrantType(why),
        }
    }
}
