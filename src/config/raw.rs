//! The raw shapes: exactly what `tokensmith.toml` may say, nothing checked yet.
//!
//! This module owns the serde shapes, each with `deny_unknown_fields` so that
//! a misspelt key stops start-up instead of being ignored, and the turning
//! of toml's errors into a [`ConfigError`] that names the key. It must never
//! judge a value or fill in a default: that is `check`'s work.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{invalid, join, ConfigError};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) issuer: Option<String>,
    pub(super) listen: Option<String>,
    #[serde(default)]
    pub(super) keys: RawKeys,
    #[serde(default)]
    pub(super) tokens: RawTokens,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) server: RawServer,
    pub(super) session: Option<RawSession>,
    #[serde(default)]
    pub(super) dpop: super::dpop::RawDpop,
    // Kept as TOML values and read one by one, so that an error can name
    // the client by index and id: toml's own error path says only `clients`.
    #[serde(default)]
    pub(super) clients: Vec<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeys {
    pub(super) dir: Option<String>,
    pub(super) algorithm: Option<String>,
    pub(super) rsa_bits: Option<u32>,
    pub(super) rotate_every: Option<RawDuration>,
    pub(super) publish_ahead: Option<RawDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokens {
    pub(super) default_ttl: Option<RawDuration>,
    pub(super) max_ttl: Option<RawDuration>,
    pub(super) leeway: Option<RawDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) backend: Option<String>,
    pub(super) redis_url: Option<String>,
    pub(super) capacity: Option<usize>,
    pub(super) timeout: Option<RawDuration>,
    pub(super) redis_cluster: Option<Vec<String>>,
    pub(super) redis_wait_replicas: Option<u32>,
    pub(super) redis_ca_file: Option<String>,
    pub(super) redis_client_cert_file: Option<String>,
    pub(super) redis_client_key_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) header_read_timeout: Option<RawDuration>,
    pub(super) idle_timeout: Option<RawDuration>,
    pub(super) max_connections: Option<usize>,
    pub(super) shutdown_grace: Option<RawDuration>,
    pub(super) metrics_listen: Option<String>,
    /// OAuth 2.0 metadata: list the clients' scopes.
    pub(super) publish_scopes: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSession {
    pub(super) check_url: Option<String>,
    pub(super) client: Option<String>,
    pub(super) timeout: Option<RawDuration>,
    pub(super) cache_ttl: Option<RawDuration>,
    pub(super) allow_http: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub(super) id: Option<String>,
    pub(super) audience: Option<String>,
    #[serde(default)]
    pub(super) audiences: Vec<String>,
    #[serde(default)]
    pub(super) api_keys: Vec<String>,
    pub(super) public_key: Option<String>,
    #[serde(default)]
    pub(super) allowed_origins: Vec<String>,
    #[serde(default)]
    pub(super) scopes: Vec<String>,
    pub(super) max_ttl: Option<RawDuration>,
    #[serde(default)]
    pub(super) claims: Map<String, Value>,
    #[serde(default)]
    pub(super) allowed_claims: Vec<String>,
    pub(super) rate_limit: Option<String>,
    #[serde(default)]
    pub(super) guest_scopes: Vec<String>,
    pub(super) refresh_ttl: Option<RawDuration>,
    pub(super) refresh_family_ttl: Option<RawDuration>,
    #[serde(default)]
    pub(super) config: Map<String, Value>,
    // --- OAuth 2.0 (issue 11), checked by `config::oauth`.
    pub(super) token_format: Option<String>,
    pub(super) token_prefix: Option<String>,
    pub(super) jwt_profile: Option<String>,
    pub(super) jwks_uri: Option<String>,
    pub(super) jwks: Option<Value>,
    pub(super) grant_types: Option<Vec<String>>,
    // --- DPoP (issue 14), checked by `config::dpop`.
    pub(super) dpop: Option<String>,
}

/// A duration as written: text (`"5m"`) or a whole number of seconds.
pub(super) enum RawDuration {
    Text(String),
    Secs(u64),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"5m\" or a whole number of seconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(s.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Secs(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawDuration, E> {
                u64::try_from(n)
                    .map(RawDuration::Secs)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn syntax_error(text: &str, file: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map_or(0, |s| s.start).min(text.len());
    let before = text.get(..at).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ConfigError::Syntax {
        file: file.to_owned(),
        line,
        column,
        reason: e.message().trim().to_owned(),
    }
}

/// Turns toml's "message\nin `path`" into an error that names the key.
pub(super) fn serde_error(prefix: &str, e: &toml::de::Error) -> ConfigError {
    let text = e.to_string();
    let mut reason = String::new();
    let mut path = "";
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(p) = line.strip_prefix("in `").and_then(|l| l.strip_suffix('`')) {
            path = p;
        } else {
            if !reason.is_empty() {
                reason.push_str("; ");
            }
            reason.push_str(line);
        }
    }
    let mut key = join(prefix, path);
    if let Some((name, rest)) = reason.strip_prefix("unknown field `").and_then(|r| r.split_once('`')) {
        key = join(&key, name);
        reason = format!("unknown key{rest}");
    }
    // serde names our private raw types ("expected struct RawKeys"); a user wrote a table.
    if let Some(at) = reason.find("struct Raw") {
        let end = reason[at..].find([';', ',']).map_or(reason.len(), |n| at + n);
        reason.replace_range(at..end, "a table");
    }
    invalid(key, reason)
}
