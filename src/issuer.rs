//! The issuer: claims in, signed token out, with the active key of the
//! current key-ring snapshot.
//!
//! The issuer fills every registered claim itself (`iss`, `iat`, `exp`,
//! `jti`); what a caller may ask for (`sub`, `aud`, `scopes`, a lifetime,
//! extra claims) arrives in a [`TokenSpec`] that the client policy has
//! already cut down. Extra claims can never override a registered one.

use serde_json::{Map, Value};

use crate::claims::{is_reserved, new_jti, Claims, REGISTERED};
use crate::clients::Client;
use crate::clock::SharedClock;
use crate::jose::{jws, JoseError};
use crate::keys::SharedKeys;

/// What a token should say, after policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenSpec {
    pub sub: String,
    pub aud: Vec<String>,
    pub scopes: Vec<String>,
    /// Lifetime in seconds.
    pub ttl: i64,
    pub extra: Map<String, Value>,
}

/// A signed token and what it says.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub claims: Claims,
}

/// Signs tokens for one issuer URL.
#[derive(Clone)]
pub struct Issuer {
    keys: SharedKeys,
    issuer: String,
    clock: SharedClock,
}

impl Issuer {
    pub fn new(keys: SharedKeys, issuer: impl Into<String>, clock: SharedClock) -> Issuer {
        Issuer {
            keys,
            issuer: issuer.into(),
            clock,
        }
    }

    /// The `iss` this issuer writes.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The shared key ring this issuer signs with.
    pub fn keys(&self) -> &SharedKeys {
        &self.keys
    }

    /// Fills the registered claims and signs with the active key.
    pub fn issue(&self, spec: TokenSpec) -> Result<IssuedToken, JoseError> {
        let now = self.clock.now();
        let mut extra = spec.extra;
        extra.retain(|k, _| !REGISTERED.contains(&k.as_str()));
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: spec.sub,
            aud: spec.aud,
            iat: now,
            exp: now.saturating_add(spec.ttl),
            nbf: None,
            jti: new_jti()?,
            scopes: spec.scopes,
            extra,
        };
        let snapshot = self.keys.load();
        let signer = &snapshot.signer;
        let token = jws::sign(&signer.header_segment, &claims.to_json(), &signer.key)?;
        Ok(IssuedToken { token, claims })
    }
}

/// What a client's backend asks for in `POST /v1/tokens` (and what the
/// widget flows ask for on a client's behalf). Unknown fields are refused.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub sub: String,
    #[serde(default)]
    pub aud: Option<Audience>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// A duration string (`"10m"`) or a number of seconds.
    #[serde(default)]
    pub ttl: Option<Value>,
    #[serde(default)]
    pub claims: Option<Map<String, Value>>,
    /// `"exchange"` mints a visitor token for `POST /v1/exchange`.
    #[serde(default)]
    pub purpose: Option<Purpose>,
}

/// `aud` in a request: one audience or several.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Why a token is asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// A token for the client's audience (the default).
    #[default]
    Access,
    /// A single-use visitor token, exchanged at `/v1/exchange` for a session token.
    Exchange,
}

/// The longest a visitor (exchange) token lives.
pub const EXCHANGE_TTL_MAX: i64 = 300;

/// The audience of visitor tokens: the exchange endpoint of this issuer.
pub fn exchange_audience(issuer: &str) -> String {
    format!("{}/v1/exchange", issuer.trim_end_matches('/'))
}

/// A request asked for more than the client's policy gives, or made no sense.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyError {
    InvalidRequest(String),
    ScopeNotAllowed(String),
    AudienceNotAllowed(String),
    TtlNotAllowed { asked: i64, max: i64 },
    ClaimNotAllowed(String),
}

impl PolicyError {
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::InvalidRequest(_) => "invalid_request",
            PolicyError::ScopeNotAllowed(_) => "scope_not_allowed",
            PolicyError::AudienceNotAllowed(_) => "audience_not_allowed",
            PolicyError::TtlNotAllowed { .. } => "ttl_not_allowed",
            PolicyError::ClaimNotAllowed(_) => "claim_not_allowed",
        }
    }
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyError::InvalidRequest(why) => f.write_str(why),
            PolicyError::ScopeNotAllowed(s) => write!(f, "this client may not grant the scope {s:?}"),
            PolicyError::AudienceNotAllowed(a) => write!(f, "this client may not issue tokens for the audience {a:?}"),
            PolicyError::TtlNotAllowed { asked, max } => {
                write!(f, "a lifetime of {asked}s is above this client's maximum of {max}s")
            }
            PolicyError::ClaimNotAllowed(c) => write!(f, "this client may not set the claim {c:?}"),
        }
    }
}

impl std::error::Error for PolicyError {}

/// Limits that hold for every client: `[tokens]`.
#[derive(Clone, Copy, Debug)]
pub struct GlobalLimits {
    pub default_ttl: i64,
    pub max_ttl: i64,
}

/// The most a `sub` may be, in bytes: a subject is an identifier, not a document.
const MAX_SUB_LEN: usize = 255;

/// Checks the scopes asked for against what the client may grant (`*` in a
/// client's scopes grants any, as the `--dev` client does).
pub fn allowed_scopes(client: &Client, asked: &[String]) -> Result<Vec<String>, PolicyError> {
    let mut out: Vec<String> = Vec::with_capacity(asked.len());
    for s in asked {
        if s.is_empty() || s.contains(char::is_whitespace) {
            return Err(PolicyError::InvalidRequest(format!("{s:?} is not a scope")));
        }
        if !client.scopes.iter().any(|c| c == "*" || c == s) {
            return Err(PolicyError::ScopeNotAllowed(s.clone()));
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

/// Turns a request into what the token will say, or says why not: the
/// audience, scopes, lifetime (request ≤ client `max_ttl` ≤ global `max_ttl`)
/// and extra claims are the client's to allow; its fixed claims are added
/// and cannot be overridden.
pub fn apply_policy(
    client: &Client,
    req: TokenRequest,
    limits: GlobalLimits,
    issuer: &str,
) -> Result<TokenSpec, PolicyError> {
    if req.sub.is_empty() || req.sub.len() > MAX_SUB_LEN {
        return Err(PolicyError::InvalidRequest(format!(
            "sub must be 1 to {MAX_SUB_LEN} bytes"
        )));
    }
    let client_max = (client.max_ttl.as_secs() as i64).min(limits.max_ttl);
    let purpose = req.purpose.unwrap_or_default();
    let max = match purpose {
        Purpose::Access => client_max,
        Purpose::Exchange => client_max.min(EXCHANGE_TTL_MAX),
    };
    let ttl = match &req.ttl {
        None => limits.default_ttl.min(max),
        Some(v) => {
            let asked = crate::units::parse_ttl(v).map_err(|e| PolicyError::InvalidRequest(format!("ttl: {e}")))?;
            let asked = i64::try_from(asked.as_secs()).unwrap_or(i64::MAX);
            if asked == 0 {
                return Err(PolicyError::InvalidRequest("ttl must be at least one second".into()));
            }
            if asked > max {
                return Err(PolicyError::TtlNotAllowed { asked, max });
            }
            asked
        }
    };
    let aud = match (purpose, req.aud) {
        (Purpose::Exchange, Some(_)) => {
            return Err(PolicyError::InvalidRequest(
                "a visitor token's audience is the exchange endpoint".into(),
            ))
        }
        (Purpose::Exchange, None) => vec![exchange_audience(issuer)],
        (Purpose::Access, None) => vec![client.audience.clone()],
        (Purpose::Access, Some(Audience::One(a))) => vec![a],
        (Purpose::Access, Some(Audience::Many(list))) => list,
    };
    if aud.is_empty() {
        return Err(PolicyError::InvalidRequest(
            "aud must name at least one audience".into(),
        ));
    }
    if purpose == Purpose::Access {
        if let Some(bad) = aud.iter().find(|a| !client.audience_allowed(a)) {
            return Err(PolicyError::AudienceNotAllowed(bad.clone()));
        }
    }
    let scopes = allowed_scopes(client, &req.scopes.unwrap_or_default())?;
    let mut extra = client.claims.clone();
    for (k, v) in req.claims.unwrap_or_default() {
        if client.claims.contains_key(&k) || is_reserved(&k) || !client.allowed_claims.contains(&k) {
            return Err(PolicyError::ClaimNotAllowed(k));
        }
        extra.insert(k, v);
    }
    Ok(TokenSpec {
        sub: req.sub,
        aud,
        scopes,
        ttl,
        extra,
    })
}
