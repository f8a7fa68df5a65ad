//! OAuth 2.0 on the wire: what the standard endpoints read and write.
//!
//! This module owns the parts of RFC 6749 (token endpoint), RFC 7009
//! (revocation), RFC 7523 (`private_key_jwt`), RFC 7662 (introspection),
//! RFC 8414 (metadata) and RFC 8693 (token exchange) that are about format:
//!
//! - [`form`]: the strict `application/x-www-form-urlencoded` reader, which
//!   refuses a repeated parameter;
//! - [`request`]: a request's client credentials ([`ClientAuth`]) and grant
//!   ([`TokenGrant`]);
//! - [`error`]: [`RequestError`], a request malformed as sent (the
//!   authority answers in [`OAuthError`](crate::OAuthError), which takes it in);
//! - [`options`]: a client's OAuth options ([`ClientOAuth`]);
//! - [`metadata`]: the RFC 8414 and OpenID discovery documents;
//! - [`Introspection`]: the RFC 7662 answer.
//!
//! It decides nothing: which client a credential opens, what a grant yields
//! and who may see or revoke which token are methods of the
//! [`Authority`](crate::Authority) (`authority/oauth.rs`); the HTTP handlers
//! (`server::oauth`) parse with this module, call one of them, and map the
//! answer. It never logs, and no `Debug` here shows a secret or a token.

pub mod error;
pub mod form;
pub mod metadata;
pub mod options;
pub mod request;

use serde::Serialize;

use crate::claims::Claims;
use crate::store::RefreshRecord;

pub use error::RequestError;
pub use form::Form;
pub use options::{ClientJwks, ClientOAuth, GrantType, JwtProfile, TokenFormat, DEFAULT_TOKEN_PREFIX};
pub use request::{ClientAuth, ExchangeRequest, TokenGrant};

/// The token endpoint, below the issuer.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// The introspection endpoint (RFC 7662), below the issuer.
pub const INTROSPECT_PATH: &str = "/oauth2/introspect";
/// The revocation endpoint (RFC 7009), below the issuer.
pub const REVOKE_PATH: &str = "/oauth2/revoke";

/// `grant_type` of the client credentials grant (RFC 6749 §4.4).
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
/// `grant_type` of the refresh grant (RFC 6749 §6).
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
/// `grant_type` of token exchange (RFC 8693 §2.1).
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `client_assertion_type` of `private_key_jwt` (RFC 7523 §2.2).
pub const ASSERTION_TYPE_JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Token type of an access token (RFC 8693 §3).
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Token type of a JWT (RFC 8693 §3).
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The longest a `private_key_jwt` assertion may still live, in seconds.
pub const ASSERTION_MAX_AHEAD: i64 = 300;

/// `endpoint` (one of the `*_PATH`s) under `issuer`.
pub fn endpoint(issuer: &str, path: &str) -> String {
    format!("{}{path}", issuer.trim_end_matches('/'))
}

/// The answer of the introspection endpoint (RFC 7662 §2.2).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Introspection {
    /// Whether the token is active for the caller. When false, nothing else is said.
    pub active: bool,
    /// Space-separated scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client the token was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The audiences: a string when one, an array when several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    /// The issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Expiry, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before, Unix seconds, when the token has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The token's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `Bearer` for an access token, `DPoP` for a DPoP-bound one (RFC 9449
    /// §6.2), `refresh_token` for a refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// The confirmation of a DPoP-bound token: `{"jkt": <thumbprint>}`, as
    /// the token carries it (RFC 9449 §6.2, RFC 7800).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<serde_json::Value>,
    /// The refresh family the token belongs to (an access token issued from
    /// one, or a refresh token): the OpenID Connect session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// [`Introspection::inactive`]: `{"active": false}` and nothing else.
impl Default for Introspection {
    fn default() -> Introspection {
        Introspection::inactive()
    }
}

impl Introspection {
    /// The answer for a token the caller may not see, or that is not active.
    pub fn inactive() -> Introspection {
        Introspection {
            active: false,
            scope: None,
            client_id: None,
            sub: None,
            aud: None,
            iss: None,
            exp: None,
            iat: None,
            nbf: None,
            jti: None,
            token_type: None,
            cnf: None,
            sid: None,
        }
    }

    /// The answer for an active token with these claims.
    pub fn active(c: &Claims) -> Introspection {
        let aud = match c.aud.as_slice() {
            [] => None,
            [one] => Some(serde_json::Value::String(one.clone())),
            many => Some(serde_json::Value::from(many.to_vec())),
        };
        Introspection {
            active: true,
            scope: (!c.scopes.is_empty()).then(|| c.scopes.join(" ")),
            client_id: c.client_id().map(str::to_owned),
            sub: Some(c.sub.clone()),
            aud,
            iss: Some(c.iss.clone()),
            exp: Some(c.exp),
            iat: Some(c.iat),
            nbf: c.nbf,
            jti: Some(c.jti.clone()),
            token_type: Some(if c.cnf_jkt().is_some() { "DPoP" } else { "Bearer" }),
            cnf: c.cnf_jkt().map(|jkt| serde_json::json!({ "jkt": jkt })),
            sid: c.sid().map(str::to_owned),
        }
    }

    /// The answer for a live refresh token of the family `record`, issued
    /// by `iss`, that renews `scopes` (the family's, cut to its client's
    /// current policy). `exp` is this token's own expiry (never after the
    /// family's); a refresh token has no `aud`, `jti` or `iat` of its own.
    pub fn refresh(record: &RefreshRecord, iss: &str, scopes: &[String]) -> Introspection {
        Introspection {
            active: true,
            scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
            client_id: Some(record.client.clone()),
            sub: Some(record.sub.clone()),
            iss: Some(iss.to_owned()),
            exp: Some(record.expires_at.min(record.family_expires_at)),
            token_type: Some("refresh_token"),
            sid: Some(record.family.clone()),
            ..Introspection::inactive()
        }
    }
}
