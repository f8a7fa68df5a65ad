//! A client's OAuth 2.0 options: the `[[clients]]` keys `token_format`,
//! `token_prefix`, `jwt_profile`, `jwks` and `jwks_uri`, checked.
//!
//! This module owns their types and defaults; the config check fills them
//! in (`config::oauth`), the authority acts on them. Nothing here is secret:
//! a client's JWKS holds public keys only (one with private members is
//! refused where the config is read).

use crate::jose::JwkSet;

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
            dpop: crate::dpop::DpopMode::Optional,
        }
    }
}
