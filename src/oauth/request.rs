//! What an OAuth 2.0 request says, read from its form and `Authorization`
//! header: the client's credentials ([`ClientAuth`]) and, at the token
//! endpoint, the grant ([`TokenGrant`]).
//!
//! This module only reads: which client a credential opens, and what a
//! grant may yield, are the authority's to decide. It never logs, and its
//! `Debug` output never shows a secret, an assertion or a token.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;

use super::form::Form;
use super::options::GrantType;
use super::{
    RequestError, ASSERTION_TYPE_JWT_BEARER, GRANT_CLIENT_CREDENTIALS, GRANT_REFRESH_TOKEN, GRANT_TOKEN_EXCHANGE,
};

/// How a client proved who it is (RFC 6749 §2.3, RFC 7523 §2.2).
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic` or `client_secret_post`: the client id and one
    /// of the client's API keys.
    Secret {
        /// The client id.
        client_id: String,
        /// The API key.
        secret: String,
        /// True for `client_secret_basic` (the `Authorization: Basic` header).
        basic: bool,
    },
    /// `private_key_jwt`: a JWT signed with one of the client's keys.
    Assertion {
        /// The `client_id` parameter, when sent; it must then name the
        /// assertion's `sub`.
        client_id: Option<String>,
        /// The compact JWS.
        assertion: String,
    },
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::Secret { client_id, basic, .. } => f
                .debug_struct("Secret")
                .field("client_id", client_id)
                .field("basic", basic)
                .finish_non_exhaustive(),
            ClientAuth::Assertion { client_id, .. } => f
                .debug_struct("Assertion")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
        }
    }
}

/// Whether an `Authorization` header value uses the Basic scheme: the
/// answer to a failed authentication then carries a Basic challenge.
pub fn is_basic(authorization: Option<&str>) -> bool {
    authorization
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
}

/// Reads `client_id:client_secret` from a Basic credential: base64 of the
/// two, each form-urlencoded first (RFC 6749 §2.3.1).
fn basic_credentials(value: &str) -> Result<(String, String), RequestError> {
    let bad = || RequestError::InvalidClient("the Basic credentials are malformed".into());
    let (scheme, encoded) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(RequestError::InvalidClient(
            "client authentication uses the Basic scheme, private_key_jwt or client_secret_post".into(),
        ));
    }
    let encoded = encoded.trim();
    let bytes = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let id = super::form::decode(id.as_bytes(), "the Basic client id").map_err(|_| bad())?;
    let secret = super::form::decode(secret.as_bytes(), "the Basic secret").map_err(|_| bad())?;
    if id.is_empty() || secret.is_empty() {
        return Err(bad());
    }
    Ok((id, secret))
}

impl ClientAuth {
    /// The credentials of a request: its `Authorization` header value (if
    /// any) and its form. More than one method, or none, is refused (RFC
    /// 6749 §2.3: "MUST NOT use more than one authentication method").
    pub fn from_request(authorization: Option<&str>, form: &Form) -> Result<ClientAuth, RequestError> {
        let form_secret = form.take("client_secret");
        let assertion_type = form.take("client_assertion_type");
        let assertion = form.take("client_assertion");
        let client_id = form.take("client_id");
        let methods = usize::from(authorization.is_some())
            + usize::from(form_secret.is_some())
            + usize::from(assertion.is_some() || assertion_type.is_some());
        if methods > 1 {
            return Err(RequestError::InvalidRequest(
                "use one client authentication method per request (RFC 6749 §2.3)".into(),
            ));
        }
        if let Some(header) = authorization {
            let (id, secret) = basic_credentials(header)?;
            if client_id.as_deref().is_some_and(|c| c != id) {
                return Err(RequestError::InvalidRequest(
                    "client_id differs from the client of the Authorization header".into(),
                ));
            }
            return Ok(ClientAuth::Secret {
                client_id: id,
                secret,
                basic: true,
            });
        }
        if let Some(secret) = form_secret {
            let client_id = client_id.ok_or_else(|| {
                RequestError::InvalidRequest("client_secret_post needs client_id with client_secret".into())
            })?;
            return Ok(ClientAuth::Secret {
                client_id,
                secret,
                basic: false,
            });
        }
        match (assertion_type, assertion) {
            (Some(t), Some(assertion)) if t == ASSERTION_TYPE_JWT_BEARER => {
                Ok(ClientAuth::Assertion { client_id, assertion })
            }
            (Some(_), Some(_)) => Err(RequestError::InvalidClient(format!(
                "client_assertion_type must be {ASSERTION_TYPE_JWT_BEARER}"
            ))),
            (Some(_), None) | (None, Some(_)) => Err(RequestError::InvalidRequest(
                "client_assertion and client_assertion_type go together".into(),
            )),
            (None, None) => Err(RequestError::InvalidClient(
                "the request carries no client authentication: use client_secret_basic, client_secret_post or private_key_jwt"
                    .into(),
            )),
        }
    }

    /// True for `client_secret_basic`.
    pub fn is_basic(&self) -> bool {
        matches!(self, ClientAuth::Secret { basic: true, .. })
    }
}

/// A space-separated `scope` (RFC 6749 §3.3): each scope-token of printable
/// ASCII but space, `"` and `\`.
pub fn parse_scope(scope: &str) -> Result<Vec<String>, RequestError> {
    let mut out: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !s.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e)) {
            return Err(RequestError::InvalidScope(format!(
                "{s:?} is not a scope token (RFC 6749 §3.3)"
            )));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}

/// The audiences a request names: every `audience` (RFC 8693) and every
/// `resource` (RFC 8707: an absolute URI without a fragment).
fn targets(form: &Form) -> Result<Vec<String>, RequestError> {
    let mut out = form.all("audience");
    for r in form.all("resource") {
        let absolute = r.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                && !rest.is_empty()
        });
        if !absolute || r.contains('#') {
            return Err(RequestError::InvalidTarget(
                "resource must be an absolute URI without a fragment (RFC 8707 §2)".into(),
            ));
        }
        out.push(r);
    }
    out.dedup();
    Ok(out)
}

/// What an RFC 8693 token-exchange request asks for.
#[derive(Clone, PartialEq, Eq)]
pub struct ExchangeRequest {
    /// The token exchanged: a tokensmith visitor token, access token or opaque token.
    pub subject_token: String,
    /// Its type: `urn:ietf:params:oauth:token-type:access_token` or `…:jwt`.
    pub subject_token_type: String,
    /// Audiences asked for; default the caller's audience.
    pub audience: Vec<String>,
    /// Scopes asked for; default every scope the subject token has that the
    /// caller may grant.
    pub scope: Option<Vec<String>>,
    /// The type of token asked for, if named.
    pub requested_token_type: Option<String>,
}

impl fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("subject_token_type", &self.subject_token_type)
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .field("requested_token_type", &self.requested_token_type)
            .finish_non_exhaustive()
    }
}

/// The grant of a token request.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenGrant {
    /// `client_credentials`: a token for the client itself (`sub` = client id).
    ClientCredentials {
        /// Scopes asked for; default none.
        scope: Option<Vec<String>>,
        /// Audiences asked for; default the client's audience.
        audience: Vec<String>,
    },
    /// `refresh_token`: rotate a refresh token of the client's.
    RefreshToken {
        /// The refresh token.
        refresh_token: String,
        /// A narrower scope, if asked (RFC 6749 §6).
        scope: Option<Vec<String>>,
    },
    /// `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693).
    TokenExchange(ExchangeRequest),
}

impl fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenGrant::ClientCredentials { scope, audience } => f
                .debug_struct("ClientCredentials")
                .field("scope", scope)
                .field("audience", audience)
                .finish(),
            TokenGrant::RefreshToken { scope, .. } => f
                .debug_struct("RefreshToken")
                .field("scope", scope)
                .finish_non_exhaustive(),
            TokenGrant::TokenExchange(x) => x.fmt(f),
        }
    }
}

impl TokenGrant {
    /// Which grant type this is.
    pub fn grant_type(&self) -> GrantType {
        match self {
            TokenGrant::ClientCredentials { .. } => GrantType::ClientCredentials,
            TokenGrant::RefreshToken { .. } => GrantType::RefreshToken,
            TokenGrant::TokenExchange(_) => GrantType::TokenExchange,
        }
    }

    /// Reads the grant of a token request's form.
    pub fn from_form(form: &Form) -> Result<TokenGrant, RequestError> {
        let grant_type = form.require("grant_type")?;
        let scope = form.get("scope").map(parse_scope).transpose()?;
        match grant_type.as_str() {
            GRANT_CLIENT_CREDENTIALS => Ok(TokenGrant::ClientCredentials {
                scope,
                audience: targets(form)?,
            }),
            GRANT_REFRESH_TOKEN => Ok(TokenGrant::RefreshToken {
                refresh_token: form.require("refresh_token")?,
                scope,
            }),
            GRANT_TOKEN_EXCHANGE => {
                if form.get("actor_token").is_some() || form.get("actor_token_type").is_some() {
                    return Err(RequestError::InvalidRequest(
                        "actor_token (delegation) is not supported: only impersonation".into(),
                    ));
                }
                Ok(TokenGrant::TokenExchange(ExchangeRequest {
                    subject_token: form.require("subject_token")?,
                    subject_token_type: form.require("subject_token_type")?,
                    audience: targets(form)?,
                    scope,
                    requested_token_type: form.take("requested_token_type"),
                }))
            }
            other => {
                let shown: String = other.chars().take(64).collect();
                Err(RequestError::UnsupportedGrantType(format!(
                    "the grant type {shown:?} is not supported: use client_credentials, refresh_token or {GRANT_TOKEN_EXCHANGE}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn form(s: &str) -> Form {
        Form::parse(s.as_bytes()).unwrap()
    }

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn one_method_each_time() {
        let a = ClientAuth::from_request(Some(&basic("shop", "sk_1")), &form("grant_type=x")).unwrap();
        assert_eq!(
            a,
            ClientAuth::Secret {
                client_id: "shop".into(),
                secret: "sk_1".into(),
                basic: true
            }
        );
        assert!(a.is_basic());
        // Debug names the client and the method, never the secret.
        assert_eq!(format!("{a:?}"), r#"Secret { client_id: "shop", basic: true, .. }"#);
        // Form-urlencoded inside Basic (RFC 6749 §2.3.1).
        let a = ClientAuth::from_request(Some(&basic("a%3Ab", "s%2Bk+x")), &form("")).unwrap();
        assert_eq!(
            a,
            ClientAuth::Secret {
                client_id: "a:b".into(),
                secret: "s+k x".into(),
                basic: true
            }
        );
        let p = ClientAuth::from_request(None, &form("client_id=shop&client_secret=sk_1")).unwrap();
        assert!(!p.is_basic());
        let j = ClientAuth::from_request(
            None,
            &form("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=e.e.e"),
        )
        .unwrap();
        assert!(matches!(j, ClientAuth::Assertion { client_id: None, .. }));
        assert_eq!(format!("{j:?}"), "Assertion { client_id: None, .. }");
        for (header, body, code) in [
            (
                Some(basic("shop", "sk_1")),
                "client_secret=sk_1&client_id=shop",
                "invalid_request",
            ),
            (Some(basic("shop", "sk_1")), "client_id=other", "invalid_request"),
            // Half an assertion is a method too: with another, two methods.
            (
                Some(basic("shop", "sk_1")),
                "client_assertion_type=x",
                "invalid_request",
            ),
            (Some(basic("shop", "sk_1")), "client_assertion=e.e.e", "invalid_request"),
            (
                None,
                "client_id=shop&client_secret=sk_1&client_assertion=e.e.e",
                "invalid_request",
            ),
            (None, "client_secret=sk_1", "invalid_request"),
            (None, "client_id=shop", "invalid_client"),
            (None, "", "invalid_client"),
            (None, "client_assertion=e.e.e", "invalid_request"),
            (None, "client_assertion_type=x&client_assertion=e.e.e", "invalid_client"),
            (Some("Basic !!!".into()), "", "invalid_client"),
            (
                Some(format!("Basic {}", STANDARD.encode("nocolon"))),
                "",
                "invalid_client",
            ),
            (Some("Bearer sk_1".into()), "", "invalid_client"),
            // Neither half of a Basic credential may be empty.
            (Some(basic("", "sk_1")), "", "invalid_client"),
            (Some(basic("shop", "")), "", "invalid_client"),
            (Some(basic("", "")), "", "invalid_client"),
        ] {
            let e = ClientAuth::from_request(header.as_deref(), &form(body)).unwrap_err();
            assert_eq!(e.code(), code, "{header:?} {body}");
        }
        assert!(is_basic(Some("basic abc")) && !is_basic(Some("Bearer x")) && !is_basic(None));
    }

    #[test]
    fn grants() {
        let g = TokenGrant::from_form(&form(
            "grant_type=client_credentials&scope=a+b+a&audience=x&resource=https%3A%2F%2Fr",
        ))
        .unwrap();
        assert_eq!(
            g,
            TokenGrant::ClientCredentials {
                scope: Some(vec!["a".into(), "b".into()]),
                audience: vec!["x".into(), "https://r".into()]
            }
        );
        for (body, code) in [
            ("", "invalid_request"),
            ("grant_type=password", "unsupported_grant_type"),
            ("grant_type=refresh_token", "invalid_request"),
            ("grant_type=client_credentials&scope=a%22b", "invalid_scope"),
            ("grant_type=client_credentials&resource=relative", "invalid_target"),
            ("grant_type=client_credentials&resource=https%3A%2F%2Fr%23f", "invalid_target"),
            // An absolute URI: a scheme, of scheme characters, and more after `://`.
            ("grant_type=client_credentials&resource=%3A%2F%2Fr", "invalid_target"),
            ("grant_type=client_credentials&resource=ht+tp%3A%2F%2Fr", "invalid_target"),
            ("grant_type=client_credentials&resource=https%3A%2F%2F", "invalid_target"),
            ("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=t", "invalid_request"),
            (
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=t&subject_token_type=x&actor_token=a",
                "invalid_request",
            ),
        ] {
            assert_eq!(TokenGrant::from_form(&form(body)).unwrap_err().code(), code, "{body}");
        }
        let ok = TokenGrant::from_form(&form("grant_type=client_credentials&resource=x%2B1.a-b%3A%2F%2Fr")).unwrap();
        assert_eq!(
            ok,
            TokenGrant::ClientCredentials {
                scope: None,
                audience: vec!["x+1.a-b://r".into()]
            }
        );
        // Debug shows what was asked, never a token.
        let r = TokenGrant::from_form(&form("grant_type=refresh_token&refresh_token=secret&scope=a")).unwrap();
        assert_eq!(format!("{r:?}"), r#"RefreshToken { scope: Some(["a"]), .. }"#);
        assert_eq!(
            format!("{g:?}"),
            r#"ClientCredentials { scope: Some(["a", "b"]), audience: ["x", "https://r"] }"#
        );
        let x = TokenGrant::from_form(&form(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=secret&subject_token_type=t&audience=a",
        ))
        .unwrap();
        assert_eq!(
            format!("{x:?}"),
            r#"ExchangeRequest { subject_token_type: "t", audience: ["a"], scope: None, requested_token_type: None, .. }"#
        );
    }
}
