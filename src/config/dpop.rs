//! The `[dpop]` section (RFC 9449 sender-constrained tokens) and each
//! `[[clients]]` entry's `dpop = "optional" | "required"`.
//!
//! This module owns their raw shape, checks and defaults. The nonce secret
//! is a secret: it never appears in a message or a `Debug`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::raw::RawDuration;
use super::{invalid, ConfigError};
use crate::dpop::{DpopMode, DEFAULT_IAT_WINDOW, DEFAULT_NONCE_LIFETIME};

/// `[dpop]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDpop {
    pub(super) iat_window: Option<RawDuration>,
    pub(super) require_nonce: Option<bool>,
    pub(super) nonce_secret: Option<String>,
    pub(super) nonce_lifetime: Option<RawDuration>,
    pub(super) external_url: Option<String>,
}

/// The checked `[dpop]` section.
#[derive(Clone, PartialEq, Eq)]
pub struct DpopConfig {
    /// A proof's `iat` may be this far from now, either way. Default 60s.
    pub iat_window: Duration,
    /// Every proof must carry a server nonce (`use_dpop_nonce` otherwise).
    /// Default false.
    pub require_nonce: bool,
    /// The secret nonces are made with: the same on every instance of a
    /// fleet. Default: a random secret per process (one instance only).
    pub nonce_secret: Option<String>,
    /// A nonce is good for its bucket of this length and the next. Default 5m.
    pub nonce_lifetime: Duration,
    /// The URL clients reach this service at, when it differs from `issuer`
    /// (behind a proxy): proofs' `htu` are compared to it plus the path.
    /// Default: the issuer.
    pub external_url: Option<String>,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            iat_window: Duration::from_secs(DEFAULT_IAT_WINDOW.unsigned_abs()),
            require_nonce: false,
            nonce_secret: None,
            nonce_lifetime: Duration::from_secs(DEFAULT_NONCE_LIFETIME.unsigned_abs()),
            external_url: None,
        }
    }
}

impl fmt::Debug for DpopConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopConfig")
            .field("iat_window", &self.iat_window)
            .field("require_nonce", &self.require_nonce)
            .field("nonce_secret", &self.nonce_secret.as_ref().map(|_| "<redacted>"))
            .field("nonce_lifetime", &self.nonce_lifetime)
            .field("external_url", &self.external_url)
            .finish()
    }
}

fn secs(key: &str, raw: Option<RawDuration>, default: Duration, max: u64) -> Result<Duration, ConfigError> {
    let d = match raw {
        None => return Ok(default),
        Some(RawDuration::Secs(n)) => Duration::from_secs(n),
        Some(RawDuration::Text(s)) => crate::units::parse_duration(&s).map_err(|why| invalid(key, why))?,
    };
    if d.is_zero() || d.subsec_nanos() != 0 || d.as_secs() > max {
        return Err(invalid(key, format!("must be whole seconds, from 1s to {max}s")));
    }
    Ok(d)
}

/// Checks `[dpop]`.
pub(super) fn check_dpop(raw: RawDpop) -> Result<DpopConfig, ConfigError> {
    let d = DpopConfig::default();
    let iat_window = secs("dpop.iat_window", raw.iat_window, d.iat_window, 3600)?;
    let nonce_lifetime = secs("dpop.nonce_lifetime", raw.nonce_lifetime, d.nonce_lifetime, 86_400)?;
    if raw.nonce_secret.as_ref().is_some_and(|s| s.len() < 16) {
        return Err(invalid("dpop.nonce_secret", "must be at least 16 characters"));
    }
    if let Some(url) = &raw.external_url {
        crate::dpop::normalize_htu(url).map_err(|_| invalid("dpop.external_url", "is not an http(s) URL"))?;
    }
    Ok(DpopConfig {
        iat_window,
        require_nonce: raw.require_nonce.unwrap_or(false),
        nonce_secret: raw.nonce_secret,
        nonce_lifetime,
        external_url: raw.external_url.map(|u| u.trim_end_matches('/').to_owned()),
    })
}

/// Checks a client's `dpop` key.
pub(super) fn check_client_dpop(key: &str, raw: Option<&str>) -> Result<DpopMode, ConfigError> {
    match raw {
        None | Some("optional") => Ok(DpopMode::Optional),
        Some("required") => Ok(DpopMode::Required),
        Some(other) => Err(invalid(key, format!("{other:?} is not optional or required"))),
    }
}
