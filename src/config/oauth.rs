//! The OAuth 2.0 keys of the configuration: `[server] publish_scopes`, and
//! each `[[clients]]` entry's `token_format`, `token_prefix`, `jwt_profile`,
//! `jwks`, `jwks_uri` and `grant_types`.
//!
//! This module owns their checks and defaults, each refusing with a message
//! that names the key; it builds a [`ClientOAuth`]. Like the rest of the
//! config check it never echoes a secret (a client's JWKS holding a private
//! key is refused without being quoted).

use serde_json::Value;

use super::{invalid, ConfigError};
use crate::jose::JwkSet;
use crate::oauth::{ClientJwks, ClientOAuth, GrantType, JwtProfile, TokenFormat, DEFAULT_TOKEN_PREFIX};
use crate::verifier::StaticKeys;

/// The longest `token_prefix`: a label, not a payload.
const MAX_PREFIX_LEN: usize = 16;

/// Prefixes that already mean something here: API keys and public keys.
const TAKEN_PREFIXES: [&str; 2] = ["sk_", "pk_"];

/// The OAuth 2.0 keys of one `[[clients]]` entry, as written.
pub(super) struct RawClientOAuth {
    pub(super) token_format: Option<String>,
    pub(super) token_prefix: Option<String>,
    pub(super) jwt_profile: Option<String>,
    pub(super) jwks_uri: Option<String>,
    pub(super) jwks: Option<Value>,
    pub(super) grant_types: Option<Vec<String>>,
}

/// Checks the OAuth 2.0 keys of the entry `label`.
pub(super) fn check_client_oauth(label: &str, raw: RawClientOAuth) -> Result<ClientOAuth, ConfigError> {
    let key = |k: &str| format!("{label}.{k}");
    let token_format = match raw.token_format.as_deref() {
        None | Some("jwt") => TokenFormat::Jwt,
        Some("opaque") => TokenFormat::Opaque,
        Some(other) => return Err(invalid(key("token_format"), format!("{other:?} is not jwt or opaque"))),
    };
    let token_prefix = match raw.token_prefix {
        None => DEFAULT_TOKEN_PREFIX.to_owned(),
        Some(p) => {
            let ok_chars = p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if p.is_empty() || p.len() > MAX_PREFIX_LEN || !ok_chars {
                return Err(invalid(
                    key("token_prefix"),
                    format!("{p:?} is not 1 to {MAX_PREFIX_LEN} letters, digits, '_' or '-'"),
                ));
            }
            if let Some(taken) = TAKEN_PREFIXES.iter().find(|t| p.starts_with(**t)) {
                return Err(invalid(
                    key("token_prefix"),
                    format!("{taken:?} starts API keys and public keys: an access token must not look like one"),
                ));
            }
            p
        }
    };
    let jwt_profile = match raw.jwt_profile.as_deref() {
        None | Some("jwt") => JwtProfile::Jwt,
        Some("at+jwt") => JwtProfile::AtJwt,
        Some(other) => return Err(invalid(key("jwt_profile"), format!("{other:?} is not jwt or at+jwt"))),
    };
    let jwks = match (raw.jwks, raw.jwks_uri) {
        (Some(_), Some(_)) => return Err(invalid(key("jwks_uri"), "give jwks or jwks_uri, not both")),
        (None, None) => None,
        (None, Some(uri)) => {
            crate::jwks::check_url(&uri).map_err(|e| invalid(key("jwks_uri"), e.to_string()))?;
            Some(ClientJwks::Uri(uri))
        }
        (Some(value), None) => {
            let set: JwkSet = serde_json::from_value(value)
                .map_err(|e| invalid(key("jwks"), format!("is not a JWK Set ({{ keys = [...] }}): {e}")))?;
            // Refuses private members and a set with no usable key, now
            // rather than at the client's first assertion.
            StaticKeys::from_jwks(&set).map_err(|e| invalid(key("jwks"), e.to_string()))?;
            Some(ClientJwks::Inline(set))
        }
    };
    let grant_types = match raw.grant_types {
        None => GrantType::ALL.to_vec(),
        Some(names) => grant_types(&key("grant_types"), &names)?,
    };
    Ok(ClientOAuth {
        token_format,
        token_prefix,
        jwt_profile,
        jwks,
        grant_types,
        dpop: crate::dpop::DpopMode::Optional,
    })
}

/// `grant_types` as written: names of grants the token endpoint knows, each
/// once. An empty list is allowed: such a client only introspects and revokes.
fn grant_types(key: &str, names: &[String]) -> Result<Vec<GrantType>, ConfigError> {
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let Some(grant) = GrantType::from_name(name) else {
            let known: Vec<&str> = GrantType::ALL.iter().map(|g| g.as_str()).collect();
            return Err(invalid(k, format!("{name:?} is not one of {}", known.join(", "))));
        };
        if out.contains(&grant) {
            return Err(invalid(k, format!("{name:?} is listed twice")));
        }
        out.push(grant);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::config::Config;
    use crate::oauth::{ClientJwks, GrantType, JwtProfile, TokenFormat};

    fn client(extra: &str) -> Result<Config, String> {
        let text = format!("[[clients]]\nid = \"c\"\naudience = \"a\"\n{extra}\n");
        Config::from_toml_str(&text, Vec::<(String, String)>::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_accepted_values() {
        let c = client("").unwrap();
        assert!(c.server.publish_scopes);
        let o = &c.clients[0].oauth;
        assert_eq!(
            (o.token_format, o.jwt_profile, o.token_prefix.as_str()),
            (TokenFormat::Jwt, JwtProfile::Jwt, "ts_")
        );
        assert!(o.jwks.is_none());
        assert_eq!(o.grant_types, GrantType::ALL.to_vec());
        let c = client("token_format = \"opaque\"\ntoken_prefix = \"wt_\"\njwt_profile = \"at+jwt\"").unwrap();
        let o = &c.clients[0].oauth;
        assert_eq!(
            (o.token_format, o.jwt_profile, o.token_prefix.as_str()),
            (TokenFormat::Opaque, JwtProfile::AtJwt, "wt_")
        );
        let c = client("jwks_uri = \"https://shop.example.com/jwks.json\"").unwrap();
        assert_eq!(
            c.clients[0].oauth.jwks,
            Some(ClientJwks::Uri("https://shop.example.com/jwks.json".into()))
        );
        let jwk = r#"jwks = { keys = [ { kty = "OKP", crv = "Ed25519", x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" } ] }"#;
        assert!(matches!(
            client(jwk).unwrap().clients[0].oauth.jwks,
            Some(ClientJwks::Inline(_))
        ));
        let c = client("grant_types = [\"urn:ietf:params:oauth:grant-type:token-exchange\", \"client_credentials\"]")
            .unwrap();
        assert_eq!(
            c.clients[0].oauth.grant_types,
            [GrantType::TokenExchange, GrantType::ClientCredentials]
        );
        assert!(client("grant_types = []").unwrap().clients[0]
            .oauth
            .grant_types
            .is_empty());
        let off = Config::from_toml_str("[server]\npublish_scopes = false\n", Vec::<(String, String)>::new()).unwrap();
        assert!(!off.server.publish_scopes);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, key) in [
            ("token_format = \"paseto\"", "token_format"),
            ("token_prefix = \"\"", "token_prefix"),
            ("token_prefix = \"a.b\"", "token_prefix"),
            ("token_prefix = \"sk_live_\"", "token_prefix"),
            ("token_prefix = \"pk_\"", "token_prefix"),
            ("token_prefix = \"abcdefghijklmnopq\"", "token_prefix"),
            ("jwt_profile = \"id+jwt\"", "jwt_profile"),
            ("jwks_uri = \"http://shop.example.com/jwks\"", "jwks_uri"),
            ("jwks_uri = \"https://a/j\"\njwks = { keys = [] }", "jwks_uri"),
            ("jwks = { keys = [] }", "jwks"),
            ("jwks = [1]", "jwks"),
            (
                r#"jwks = { keys = [ { kty = "OKP", crv = "Ed25519", x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", d = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A" } ] }"#,
                "jwks",
            ),
        ] {
            let e = client(extra).unwrap_err();
            assert!(e.starts_with(&format!("clients[0] (c).{key}")), "{extra}: {e}");
            assert!(!e.contains("nWGxne"), "{e}");
        }
        for (extra, key, why) in [
            (
                "grant_types = [\"password\"]",
                "grant_types[0]",
                "is not one of client_credentials",
            ),
            (
                "grant_types = [\"refresh_token\", \"refresh_token\"]",
                "grant_types[1]",
                "listed twice",
            ),
            ("grant_types = \"client_credentials\"", "", "grant_types"),
        ] {
            let e = client(extra).unwrap_err();
            assert!(
                e.starts_with(&format!("clients[0] (c).{key}")) || key.is_empty(),
                "{extra}: {e}"
            );
            assert!(e.contains(why), "{extra}: {e}");
        }
        // Exactly 16 characters is the longest prefix.
        assert!(client("token_prefix = \"abcdefghijklmnop\"").is_ok());
    }
}
