//! [`AuthorityError`]: why the authority said no, with its cause.
//!
//! The mapping of these to HTTP lives in exactly one place,
//! `server::error`; the CLI maps them to its `error: <code>: …` line with
//! [`AuthorityError::code`].

use std::fmt;

use crate::claims::Rejection;
use crate::issuer::IssueError;
use crate::jose::JoseError;
use crate::session::SessionError;
use crate::store::StoreError;

use super::PolicyError;

/// Why the [`Authority`](super::Authority) refused or could not act.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthorityError {
    /// The request is malformed: a missing or bad field.
    InvalidRequest(String),
    /// No client has the API key presented (or it is not one).
    InvalidApiKey,
    /// The token was refused, and why.
    Rejected(Rejection),
    /// The client asked for more than its policy gives.
    Policy(PolicyError),
    /// No `[session]` is configured: the session flow does not exist here.
    NoSessionCheck,
    /// The app's session check did not vouch for the caller.
    InvalidSession,
    /// The app's session check could not be asked.
    SessionUnavailable(SessionError),
    /// The `Origin` is not in the client's allowlist.
    OriginNotAllowed,
    /// No client has the public key given.
    UnknownClient,
    /// Over a rate limit; retry after this many seconds.
    RateLimited {
        /// Seconds until the window ends, at least 1.
        retry_after: u64,
    },
    /// The shared store could not answer: nothing was issued or consumed unchecked.
    Store(StoreError),
    /// A consume got no answer from the store (a timeout, a lost
    /// connection): the token was not accepted, but the store may still have
    /// marked it used.
    ConsumeUnconfirmed {
        /// The caller sent an `Idempotency-Key`: retrying with it answers
        /// as the first attempt did.
        retryable: bool,
        /// Why the store did not answer.
        cause: StoreError,
    },
    /// Signing failed, or the token would be too large.
    Issue(IssueError),
    /// The system random generator failed.
    Random(JoseError),
    /// A client set that this authority refuses to serve (an audience
    /// reserved for visitor tokens, a session client that does not exist).
    Misconfigured(String),
    /// OAuth 2.0: a grant (a visitor token, a refresh token) presented by
    /// a client other than the one it was issued to. Spent all the same:
    /// a grant in the wrong hands is as good as stolen.
    GrantOfOtherClient,
    /// A DPoP proof was missing, invalid or for another key (RFC 9449):
    /// `invalid_dpop_proof`, or `use_dpop_nonce` with a fresh nonce.
    Dpop(crate::dpop::DpopError),
}

impl AuthorityError {
    /// The stable `error` code of API.md.
    pub fn code(&self) -> &'static str {
        match self {
            AuthorityError::InvalidRequest(_) => "invalid_request",
            AuthorityError::InvalidApiKey => "invalid_api_key",
            AuthorityError::Rejected(r) => r.code(),
            AuthorityError::Policy(p) => p.code(),
            AuthorityError::NoSessionCheck => "not_found",
            AuthorityError::InvalidSession | AuthorityError::SessionUnavailable(_) => "invalid_session",
            AuthorityError::OriginNotAllowed => "origin_not_allowed",
            AuthorityError::UnknownClient => "unknown_client",
            AuthorityError::RateLimited { .. } => "rate_limited",
            AuthorityError::Store(StoreError::Full { .. }) => "store_full",
            AuthorityError::Store(_) | AuthorityError::ConsumeUnconfirmed { .. } => "store_unavailable",
            AuthorityError::Issue(IssueError::TooLarge { .. }) => "invalid_request",
            AuthorityError::Issue(_) | AuthorityError::Random(_) => "server_error",
            AuthorityError::Misconfigured(_) => "invalid_config",
            AuthorityError::GrantOfOtherClient => "invalid_grant",
            AuthorityError::Dpop(e) => e.code(),
        }
    }
}

impl fmt::Display for AuthorityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthorityError::InvalidRequest(why) => f.write_str(why),
            AuthorityError::InvalidApiKey => f.write_str("the API key is missing, unknown or malformed"),
            AuthorityError::Rejected(r) => write!(f, "{r}"),
            AuthorityError::Policy(p) => write!(f, "{p}"),
            AuthorityError::NoSessionCheck => f.write_str("no [session] check is configured"),
            AuthorityError::InvalidSession => f.write_str("the session was not accepted"),
            AuthorityError::SessionUnavailable(e) => write!(f, "{e}"),
            AuthorityError::OriginNotAllowed => f.write_str("this Origin is not allowed for this client"),
            AuthorityError::UnknownClient => f.write_str("no client has this public key"),
            AuthorityError::RateLimited { retry_after } => write!(f, "rate limit reached; retry in {retry_after}s"),
            AuthorityError::Store(e) => write!(f, "{e}"),
            AuthorityError::ConsumeUnconfirmed { cause, .. } => {
                write!(f, "the consume got no answer, its outcome is unknown: {cause}")
            }
            AuthorityError::Issue(e) => write!(f, "{e}"),
            AuthorityError::Random(e) => write!(f, "random generator: {e}"),
            AuthorityError::Misconfigured(why) => f.write_str(why),
            AuthorityError::GrantOfOtherClient => f.write_str("the grant was issued to another client"),
            AuthorityError::Dpop(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AuthorityError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuthorityError::Rejected(e) => Some(e),
            AuthorityError::Policy(e) => Some(e),
            AuthorityError::SessionUnavailable(e) => Some(e),
            AuthorityError::Store(e) => Some(e),
            AuthorityError::ConsumeUnconfirmed { cause, .. } => Some(cause),
            AuthorityError::Issue(e) => Some(e),
            AuthorityError::Random(e) => Some(e),
            AuthorityError::Dpop(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Rejection> for AuthorityError {
    fn from(r: Rejection) -> Self {
        AuthorityError::Rejected(r)
    }
}

impl From<PolicyError> for AuthorityError {
    fn from(p: PolicyError) -> Self {
        match p {
            PolicyError::InvalidRequest(why) => AuthorityError::InvalidRequest(why),
            other => AuthorityError::Policy(other),
        }
    }
}

impl From<StoreError> for AuthorityError {
    fn from(e: StoreError) -> Self {
        AuthorityError::Store(e)
    }
}

impl From<IssueError> for AuthorityError {
    fn from(e: IssueError) -> Self {
        AuthorityError::Issue(e)
    }
}

impl From<SessionError> for AuthorityError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::NoCredentials | SessionError::Rejected { .. } => AuthorityError::InvalidSession,
            unavailable @ SessionError::Unavailable(_) => AuthorityError::SessionUnavailable(unavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use std::error::Error as _;

    use super::*;

    /// Every refusal has its stable code of API.md; the store's "full" and
    /// an oversized token have their own, apart from their kind's.
    #[test]
    fn each_refusal_has_its_api_code() {
        let cases = [
            (AuthorityError::InvalidRequest("no sub".into()), "invalid_request"),
            (AuthorityError::InvalidApiKey, "invalid_api_key"),
            (AuthorityError::Rejected(Rejection::Revoked), "token_revoked"),
            (
                AuthorityError::Policy(PolicyError::ScopeNotAllowed("admin".into())),
                "scope_not_allowed",
            ),
            (AuthorityError::NoSessionCheck, "not_found"),
            (AuthorityError::InvalidSession, "invalid_session"),
            (
                AuthorityError::SessionUnavailable(SessionError::Unavailable("down".into())),
                "invalid_session",
            ),
            (AuthorityError::OriginNotAllowed, "origin_not_allowed"),
            (AuthorityError::UnknownClient, "unknown_client"),
            (AuthorityError::RateLimited { retry_after: 7 }, "rate_limited"),
            (AuthorityError::Store(StoreError::Full { capacity: 3 }), "store_full"),
            (
                AuthorityError::Store(StoreError::Unavailable("down".into())),
                "store_unavailable",
            ),
            (
                AuthorityError::ConsumeUnconfirmed {
                    retryable: true,
                    cause: StoreError::Unavailable("timeout".into()),
                },
                "store_unavailable",
            ),
            (
                AuthorityError::Issue(IssueError::TooLarge { len: 9000 }),
                "invalid_request",
            ),
            (
                AuthorityError::Issue(IssueError::Crypto(JoseError::Crypto("sign"))),
                "server_error",
            ),
            (AuthorityError::Random(JoseError::Crypto("rng")), "server_error"),
            (
                AuthorityError::Misconfigured("reserved audience".into()),
                "invalid_config",
            ),
            (AuthorityError::GrantOfOtherClient, "invalid_grant"),
            (
                AuthorityError::Dpop(crate::dpop::DpopError::Invalid("no proof".into())),
                "invalid_dpop_proof",
            ),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e:?}");
        }
    }

    /// The text says why; an error with a cause says it in the cause's words
    /// and keeps the cause as its `source()` (the log's chain).
    #[test]
    fn the_cause_is_the_source_and_its_text() {
        let rl = AuthorityError::RateLimited { retry_after: 7 };
        assert_eq!(rl.to_string(), "rate limit reached; retry in 7s");
        assert!(rl.source().is_none());
        assert!(AuthorityError::InvalidApiKey.source().is_none());
        let with_cause: [(AuthorityError, String); 8] = [
            (Rejection::Revoked.into(), Rejection::Revoked.to_string()),
            (
                AuthorityError::Policy(PolicyError::ClaimNotAllowed("role".into())),
                PolicyError::ClaimNotAllowed("role".into()).to_string(),
            ),
            (
                SessionError::Unavailable("down".into()).into(),
                SessionError::Unavailable("down".into()).to_string(),
            ),
            (
                StoreError::Full { capacity: 3 }.into(),
                StoreError::Full { capacity: 3 }.to_string(),
            ),
            (
                AuthorityError::ConsumeUnconfirmed {
                    retryable: false,
                    cause: StoreError::Unavailable("timeout".into()),
                },
                StoreError::Unavailable("timeout".into()).to_string(),
            ),
            (
                IssueError::TooLarge { len: 9000 }.into(),
                IssueError::TooLarge { len: 9000 }.to_string(),
            ),
            (
                AuthorityError::Random(JoseError::Crypto("rng")),
                JoseError::Crypto("rng").to_string(),
            ),
            (
                AuthorityError::Dpop(crate::dpop::DpopError::Invalid("stale".into())),
                crate::dpop::DpopError::Invalid("stale".into()).to_string(),
            ),
        ];
        for (e, cause) in with_cause {
            let source = e.source().unwrap_or_else(|| panic!("{e:?} has no source"));
            assert_eq!(source.to_string(), cause, "{e:?}");
            assert!(e.to_string().contains(&cause), "{e}");
        }
    }

    /// A policy's malformed request is the request's fault, not a policy
    /// refusal; a session that is not signed in is no outage.
    #[test]
    fn conversions_sort_the_request_from_the_policy_and_the_session_from_the_outage() {
        let e = AuthorityError::from(PolicyError::InvalidRequest("bad ttl".into()));
        assert!(
            matches!(&e, AuthorityError::InvalidRequest(why) if why == "bad ttl"),
            "{e:?}"
        );
        let e = AuthorityError::from(PolicyError::TtlNotAllowed { asked: 10, max: 5 });
        assert!(matches!(
            e,
            AuthorityError::Policy(PolicyError::TtlNotAllowed { asked: 10, max: 5 })
        ));
        let e = AuthorityError::from(SessionError::NoCredentials);
        assert!(matches!(e, AuthorityError::InvalidSession), "{e:?}");
        let e = AuthorityError::from(SessionError::Rejected { status: 401 });
        assert!(matches!(e, AuthorityError::InvalidSession), "{e:?}");
        let e = AuthorityError::from(SessionError::Unavailable("down".into()));
        assert!(
            matches!(e, AuthorityError::SessionUnavailable(SessionError::Unavailable(_))),
            "{e:?}"
        );
    }
}
