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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::dpop::DpopError;
    use crate::store::StoreError;

    fn why(e: &OAuthError) -> String {
        e.to_string()
    }

    /// RFC 6749 §5.2's codes, and the service's failures told apart: an
    /// unreachable store or a rate limit is temporary, anything else a
    /// server error.
    #[test]
    fn each_error_has_its_rfc_code() {
        let cases = [
            (OAuthError::InvalidRequest("x".into()), "invalid_request"),
            (OAuthError::InvalidClient("x".into()), "invalid_client"),
            (OAuthError::InvalidGrant("x".into()), "invalid_grant"),
            (OAuthError::InvalidScope("x".into()), "invalid_scope"),
            (OAuthError::InvalidTarget("x".into()), "invalid_target"),
            (OAuthError::UnsupportedGrantType("x".into()), "unsupported_grant_type"),
            (OAuthError::UnauthorizedClient("x".into()), "unauthorized_client"),
            (
                OAuthError::Service(AuthorityError::Store(StoreError::Unavailable("down".into()))),
                "temporarily_unavailable",
            ),
            (
                OAuthError::Service(AuthorityError::RateLimited { retry_after: 3 }),
                "temporarily_unavailable",
            ),
            (
                OAuthError::Service(AuthorityError::Misconfigured("x".into())),
                "server_error",
            ),
            (
                OAuthError::Dpop(DpopError::UseNonce { nonce: "n".into() }),
                "use_dpop_nonce",
            ),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e:?}");
        }
    }

    /// The description is the reason's own text; only a service failure
    /// has a source, its cause kept for the log.
    #[test]
    fn the_description_is_the_reason_and_a_service_failure_keeps_its_cause() {
        assert_eq!(
            why(&OAuthError::InvalidScope("the scope \"x\"".into())),
            "the scope \"x\""
        );
        assert!(OAuthError::InvalidGrant("x".into()).source().is_none());
        let store = StoreError::Unavailable("down".into());
        let e = OAuthError::Service(AuthorityError::Store(store.clone()));
        assert_eq!(why(&e), store.to_string());
        assert_eq!(e.source().map(|s| s.to_string()), Some(store.to_string()));
        let d = DpopError::Invalid("stale".into());
        assert_eq!(why(&OAuthError::Dpop(d.clone())), d.to_string());
    }

    /// The authority's refusals in OAuth words: a bad API key or unknown
    /// client is `invalid_client`, a scope or audience beyond the policy
    /// `invalid_scope` / `invalid_target`, a refused token `invalid_grant`,
    /// and what is not the client's doing stays a service failure.
    #[test]
    fn authority_refusals_become_oauth_codes() {
        let code = |e: AuthorityError| OAuthError::from(e).code();
        assert_eq!(code(AuthorityError::InvalidRequest("x".into())), "invalid_request");
        assert_eq!(code(AuthorityError::InvalidApiKey), "invalid_client");
        assert_eq!(code(AuthorityError::UnknownClient), "invalid_client");
        assert_eq!(
            code(PolicyError::ScopeNotAllowed("admin".into()).into()),
            "invalid_scope"
        );
        assert_eq!(
            code(PolicyError::AudienceNotAllowed("api".into()).into()),
            "invalid_target"
        );
        assert_eq!(
            code(PolicyError::ClaimNotAllowed("role".into()).into()),
            "invalid_request"
        );
        assert_eq!(code(Rejection::InvalidRefreshToken.into()), "invalid_grant");
        assert_eq!(code(Rejection::Revoked.into()), "invalid_grant");
        assert_eq!(code(AuthorityError::GrantOfOtherClient), "invalid_grant");
        assert_eq!(
            code(AuthorityError::Dpop(DpopError::Invalid("x".into()))),
            "invalid_dpop_proof"
        );
        assert_eq!(
            code(AuthorityError::RateLimited { retry_after: 1 }),
            "temporarily_unavailable"
        );
        assert_eq!(code(AuthorityError::Misconfigured("x".into())), "server_error");
        let scope = OAuthError::from(AuthorityError::from(PolicyError::ScopeNotAllowed("admin".into())));
        assert!(why(&scope).contains("\"admin\""), "{scope}");
        let refused = OAuthError::from(AuthorityError::Rejected(Rejection::Revoked));
        assert_eq!(why(&refused), Rejection::Revoked.to_string());
    }

    /// A refused grant is `invalid_grant`; a refused subject token is
    /// `invalid_request` naming its code (RFC 8693 §2.2.2), and a client
    /// that no longer exists is said so; anything else converts as usual.
    #[test]
    fn grants_and_subject_tokens_are_refused_in_their_own_words() {
        let g = OAuthError::grant(AuthorityError::Rejected(Rejection::Replayed));
        assert!(
            matches!(&g, OAuthError::InvalidGrant(w) if *w == Rejection::Replayed.to_string()),
            "{g:?}"
        );
        let g = OAuthError::grant(AuthorityError::InvalidApiKey);
        assert_eq!(g.code(), "invalid_client");
        let s = OAuthError::subject(AuthorityError::Rejected(Rejection::Replayed));
        assert!(
            matches!(&s, OAuthError::InvalidRequest(w) if w == "subject_token: token_replayed"),
            "{s:?}"
        );
        let s = OAuthError::subject(AuthorityError::UnknownClient);
        assert!(
            matches!(&s, OAuthError::InvalidRequest(w) if w.contains("no longer exists")),
            "{s:?}"
        );
        let s = OAuthError::subject(AuthorityError::RateLimited { retry_after: 1 });
        assert_eq!(s.code(), "temporarily_unavailable");
    }

    /// A malformed request keeps its code and its words.
    #[test]
    fn request_errors_keep_their_code_and_words() {
        for (e, code) in [
            (RequestError::InvalidRequest("a".into()), "invalid_request"),
            (RequestError::InvalidClient("b".into()), "invalid_client"),
            (RequestError::InvalidScope("c".into()), "invalid_scope"),
            (RequestError::InvalidTarget("d".into()), "invalid_target"),
            (RequestError::UnsupportedGrantType("e".into()), "unsupported_grant_type"),
        ] {
            let words = match &e {
                RequestError::InvalidRequest(w)
                | RequestError::InvalidClient(w)
                | RequestError::InvalidScope(w)
                | RequestError::InvalidTarget(w)
                | RequestError::UnsupportedGrantType(w) => w.clone(),
            };
            let o = OAuthError::from(e);
            assert_eq!((o.code(), why(&o)), (code, words));
        }
    }
}
