//! A client's OAuth 2.0 options: the `[[clients]]` keys `token_format`,
//! `token_prefix`, `jwt_profile`, `jwks`, `jwks_uri` and `grant_types`, checked.
//!
//! This module owns their types and defaults; the config check fills them
//! in (`config::oauth`), the authority acts on them. Nothing here is secret:
//! a client's JWKS holds public keys only (one with private members is
//! refused where the config is read).

use crate::jose::JwkSet;

use super::{GRANT_CLIENT_CREDENTIALS, GRANT_REFRESH_TOKEN, GRANT_TOKEN_EXCHANGE};

/// The default `token_prefix` of opaque tokens.
pub const DEFAULT_TOKEN_PREFIX: &str = "ts_";

/// What kind of access token a client gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenFormat {
    /// A signed JWT, verifiable offline from the JWKS (the default).
    #[default]
    Jwt,
    /// A reference token: `token_prefix` + 32 random bytes, its claims kept
    /// in the store; verifiable only by asking the service, revocable at once.
    Opaque,
}

/// The `typ` and claims profile of a client's JWT access tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JwtProfile {
    /// `typ: JWT` (the default).
    #[default]
    Jwt,
    /// RFC 9068: `typ: at+jwt`, with `client_id` and the RFC's claims.
    AtJwt,
}

/// Where a client's public keys for `private_key_jwt` are.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientJwks {
    /// `jwks = { keys = [...] }` in the config.
    Inline(JwkSet),
    /// `jwks_uri`: fetched (https, or http on loopback) and cached.
    Uri(String),
}

/// A grant of the token endpoint, as a client's `grant_types` names it
/// (the RFC 7591 `grant_types` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantType {
    /// `client_credentials` (RFC 6749 §4.4).
    ClientCredentials,
    /// `refresh_token` (RFC 6749 §6).
    RefreshToken,
    /// `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693).
    TokenExchange,
}

impl GrantType {
    /// Every grant the token endpoint knows: what a client that names no
    /// `grant_types` may use.
    pub const ALL: [GrantType; 3] = [
        GrantType::ClientCredentials,
        GrantType::RefreshToken,
        GrantType::TokenExchange,
    ];

    /// The `grant_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => GRANT_CLIENT_CREDENTIALS,
            GrantType::RefreshToken => GRANT_REFRESH_TOKEN,
            GrantType::TokenExchange => GRANT_TOKEN_EXCHANGE,
        }
    }

    /// The grant a `grant_type` value names, if the token endpoint knows it.
    pub fn from_name(name: &str) -> Option<GrantType> {
        GrantType::ALL.into_iter().find(|g| g.as_str() == name)
    }
}

/// A client's OAuth 2.0 options. `Default` is what a config entry that
/// names none of them gets.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientOAuth {
    /// `token_format`. Default `jwt`.
    pub token_format: TokenFormat,
    /// `token_prefix` of opaque tokens. Default `ts_`.
    pub token_prefix: String,
    /// `jwt_profile`. Default `jwt`.
    pub jwt_profile: JwtProfile,
    /// `jwks` or `jwks_uri`: the keys of `private_key_jwt` assertions.
    /// Default none: the client cannot use `private_key_jwt`.
    pub jwks: Option<ClientJwks>,
    /// `grant_types`: the grants this client may use at the token endpoint;
    /// any other is `unauthorized_client`. Default all of [`GrantType::ALL`].
    pub grant_types: Vec<GrantType>,
    /// `dpop`: whether token requests must carry a DPoP proof (RFC 9449).
    /// Default optional.
    pub dpop: crate::dpop::DpopMode,
}

impl Default for ClientOAuth {
    fn default() -> Self {
        ClientOAuth {
            token_format: TokenFormat::Jwt,
            token_prefix: DEFAULT_TOKEN_PREFIX.to_owned(),
            jwt_profile: JwtProfile::Jwt,
            jwks: None,
            grant_types: GrantType::ALL.to_vec(),
            dpop: crate::dpop::DpopMode::Optional,
        }
    }
}
