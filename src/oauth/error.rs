//! [`RequestError`]: what is wrong with an OAuth 2.0 request as sent, found
//! while reading it (the form, the client credentials, the grant), before
//! any policy is asked. The authority's [`OAuthError`](crate::OAuthError)
//! takes it in (`From`), with the same RFC 6749 §5.2 codes.

use std::fmt;

/// A malformed OAuth 2.0 request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// `invalid_request`: a missing, repeated or malformed parameter.
    InvalidRequest(String),
    /// `invalid_client`: the client's credentials are malformed or missing.
    InvalidClient(String),
    /// `invalid_scope`: a malformed `scope`.
    InvalidScope(String),
    /// `invalid_target` (RFC 8707 §2): a malformed `resource` or `audience`.
    InvalidTarget(String),
    /// `unsupported_grant_type`.
    UnsupportedGrantType(String),
}

impl RequestError {
    /// The `error` code (RFC 6749 §5.2, RFC 8707 §2).
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::InvalidRequest(_) => "invalid_request",
            RequestError::InvalidClient(_) => "invalid_client",
            RequestError::InvalidScope(_) => "invalid_scope",
            RequestError::InvalidTarget(_) => "invalid_target",
            RequestError::UnsupportedGrantType(_) => "unsupported_grant_type",
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::InvalidRequest(why)
            | RequestError::InvalidClient(why)
            | RequestError::InvalidScope(why)
            | RequestError::InvalidTarget(why)
            | RequestError::UnsupportedGrantType(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for RequestError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of each kind is its description alone: it becomes the
    /// answer's `error_description`, next to the code.
    #[test]
    fn the_text_is_the_description() {
        for e in [
            RequestError::InvalidRequest("a".into()),
            RequestError::InvalidClient("a".into()),
            RequestError::InvalidScope("a".into()),
            RequestError::InvalidTarget("a".into()),
            RequestError::UnsupportedGrantType("a".into()),
        ] {
            assert_eq!(e.to_string(), "a", "{}", e.code());
        }
    }
}
