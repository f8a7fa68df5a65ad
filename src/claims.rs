//! JWT claims and the rules a token must meet, with the reason it failed.
//!
//! Parsing is strict about types: an `exp` that is a string, an `aud` that
//! is a number, a `scopes` that is not an array of strings are rejections,
//! never "absent". Every rejection carries the stable code of API.md's table
//! ([`Rejection::code`]) and context for the description; it never carries
//! the token.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use crate::jose::{self, JoseError};

/// The most a `sub` or a `jti` may be, in bytes, at every entry (requests,
/// session answers, revocations): an identifier, not a document, and a
/// bound on what one request can make a store keep.
pub const MAX_ID_LEN: usize = 256;

/// Claims the service sets itself; a request's extra claims may not use them.
pub const REGISTERED: [&str; 9] = ["iss", "sub", "aud", "iat", "exp", "nbf", "jti", "scopes", "scope"];

/// The claims [`Claims::from_payload`] reads into fields, in slot order.
const SLOT_NAMES: [&str; 8] = ["iss", "sub", "aud", "iat", "exp", "nbf", "jti", "scopes"];

/// The client a token was issued to (RFC 9068 §2.2). The service stamps it
/// on every token it issues; it travels among the extra claims.
pub const CLIENT_ID: &str = "client_id";

/// The refresh-token family a token was issued from (the OpenID Connect
/// session id): the service stamps it on tokens of guest, exchange and
/// refresh flows, so that revoking the family revokes them too.
pub const SID: &str = "sid";

/// The confirmation claim (RFC 7800): `{"jkt": …}` on a DPoP-bound token
/// (RFC 9449 §6). Only the authority sets it, from a checked proof.
pub const CNF: &str = "cnf";

/// True for a claim no request, session answer or client config may set:
/// the registered claims, [`CLIENT_ID`], [`SID`] and [`CNF`].
pub fn is_reserved(name: &str) -> bool {
    name == CLIENT_ID || name == SID || name == CNF || REGISTERED.contains(&name)
}

/// The claims of a token.
#[derive(Clone, Debug, PartialEq)]
pub struct Claims {
    /// The issuer URL (`iss`).
    pub iss: String,
    /// The subject (`sub`): whom the token is about.
    pub sub: String,
    /// The audiences; written as a string when there is one, omitted when none.
    pub aud: Vec<String>,
    /// Issued at (`iat`), Unix seconds.
    pub iat: i64,
    /// Expires at (`exp`), Unix seconds.
    pub exp: i64,
    /// Not before (`nbf`), Unix seconds; tokensmith never sets it.
    pub nbf: Option<i64>,
    /// The token's unique id (`jti`): what single use and revocation key on.
    pub jti: String,
    /// Written as an array, omitted when empty.
    pub scopes: Vec<String>,
    /// Everything else: the client's fixed claims and allowed request claims.
    pub extra: Map<String, Value>,
}

/// Why a token (or a refresh token) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// Not a well-formed token, or a claim of the wrong type (`malformed_token`).
    Malformed(String),
    /// The signature does not verify (`bad_signature`).
    BadSignature,
    /// No key known under the token's `kid`, or no `kid` (`unknown_kid`).
    UnknownKid(Option<String>),
    /// The header's `alg` is not the algorithm of the key (`alg_not_allowed`).
    AlgNotAllowed {
        /// The header's `alg`.
        alg: String,
    },
    /// `exp` is past, beyond the leeway (`token_expired`).
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The time it was judged at.
        now: i64,
    },
    /// `nbf` is ahead, beyond the leeway (`token_not_yet_valid`).
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The time it was judged at.
        now: i64,
    },
    /// `iat` is ahead, beyond the leeway (`issued_in_future`).
    IssuedInFuture {
        /// The token's `iat`.
        iat: i64,
        /// The time it was judged at.
        now: i64,
    },
    /// `exp - iat` is over [`Validation::max_ttl`] (`ttl_too_long`).
    TtlTooLong {
        /// The token's lifetime, in seconds.
        ttl: i64,
        /// The longest accepted, in seconds.
        max: i64,
    },
    /// `iss` is not [`Validation::issuer`] (`wrong_issuer`).
    WrongIssuer {
        /// The token's `iss`.
        found: String,
    },
    /// `aud` lacks the audience required (`wrong_audience`).
    WrongAudience {
        /// The audience required.
        expected: String,
    },
    /// A required claim is absent or empty (`missing_claim`).
    MissingClaim(&'static str),
    /// The `jti` was consumed already (`token_replayed`).
    Replayed,
    /// The token was issued before the replay store's epoch: its single-use
    /// state may have been lost, so it cannot be consumed (`replay_state_lost`).
    StateLost,
    /// The token was revoked, by `jti` or by `sub` (`token_revoked`).
    Revoked,
    /// A refresh token that is unknown, expired, spent or revoked (`invalid_refresh_token`).
    InvalidRefreshToken,
    /// A scope the caller requires is missing (`insufficient_scope`).
    InsufficientScope {
        /// The first required scope the token lacks.
        missing: String,
    },
}

impl Rejection {
    /// The stable `error` code of API.md.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed_token",
            Rejection::BadSignature => "bad_signature",
            Rejection::UnknownKid(_) => "unknown_kid",
            Rejection::AlgNotAllowed { .. } => "alg_not_allowed",
            Rejection::Expired { .. } => "token_expired",
            Rejection::NotYetValid { .. } => "token_not_yet_valid",
            Rejection::IssuedInFuture { .. } => "issued_in_future",
            Rejection::TtlTooLong { .. } => "ttl_too_long",
            Rejection::WrongIssuer { .. } => "wrong_issuer",
            Rejection::WrongAudience { .. } => "wrong_audience",
            Rejection::MissingClaim(_) => "missing_claim",
            Rejection::Replayed => "token_replayed",
            Rejection::StateLost => "replay_state_lost",
            Rejection::Revoked => "token_revoked",
            Rejection::InvalidRefreshToken => "invalid_refresh_token",
            Rejection::InsufficientScope { .. } => "insufficient_scope",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Malformed(why) => f.write_str(why),
            Rejection::BadSignature => f.write_str("the signature does not verify"),
            Rejection::UnknownKid(Some(kid)) => write!(f, "no published key has kid {kid:?}"),
            Rejection::UnknownKid(None) => f.write_str("the token names no kid"),
            Rejection::AlgNotAllowed { alg } => write!(f, "alg {alg:?} is not the algorithm of the key"),
            // Dates come from the token, so the difference saturates.
            Rejection::Expired { exp, now } => write!(f, "expired {}s ago", now.saturating_sub(*exp)),
            Rejection::NotYetValid { nbf, now } => write!(f, "not valid for another {}s", nbf.saturating_sub(*now)),
            Rejection::IssuedInFuture { iat, now } => write!(f, "issued {}s in the future", iat.saturating_sub(*now)),
            Rejection::TtlTooLong { ttl, max } => write!(f, "lifetime of {ttl}s exceeds the maximum of {max}s"),
            Rejection::WrongIssuer { found } => write!(f, "issuer {found:?} is not the expected issuer"),
            Rejection::WrongAudience { expected } => write!(f, "the audience does not include {expected:?}"),
            Rejection::MissingClaim(name) => write!(f, "the {name:?} claim is missing"),
            Rejection::Replayed => f.write_str("this token's jti has been used already"),
            // The replay store lost its state after the token was issued (a
            // Redis restarted empty, a new process's memory store).
            Rejection::StateLost => f.write_str(
                "the replay store lost its record of used tokens after this token was issued: \
                 whether it was used cannot be known, so it cannot be consumed; use a newer token",
            ),
            Rejection::Revoked => f.write_str("this token has been revoked"),
            Rejection::InvalidRefreshToken => f.write_str("the refresh token is unknown, expired, spent or revoked"),
            Rejection::InsufficientScope { missing } => write!(f, "the token lacks the scope {missing:?}"),
        }
    }
}

impl std::error::Error for Rejection {}

impl From<JoseError> for Rejection {
    fn from(e: JoseError) -> Self {
        match e {
            JoseError::BadSignature => Rejection::BadSignature,
            JoseError::AlgMismatch { header, .. } => Rejection::AlgNotAllowed { alg: header },
            JoseError::UnsupportedAlg(alg) => Rejection::AlgNotAllowed { alg },
            other => Rejection::Malformed(other.to_string()),
        }
    }
}

/// A new `jti`: 128 random bits, base64url.
pub fn new_jti() -> Result<String, JoseError> {
    let mut b = [0u8; 16];
    jose::alg::random_bytes(&mut b)?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

fn numeric_date(v: &Value, name: &'static str) -> Result<i64, Rejection> {
    let bad = || Rejection::Malformed(format!("the {name:?} claim is not a NumericDate"));
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else {
                // RFC 7519 allows fractional seconds; anything out of i64 range is not a date.
                let f = n.as_f64().ok_or_else(bad)?;
                if f.is_finite() && f.abs() < 9.0e15 {
                    Ok(f.floor() as i64)
                } else {
                    Err(bad())
                }
            }
        }
        _ => Err(bad()),
    }
}

fn string(v: Value, name: &'static str) -> Result<String, Rejection> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(Rejection::Malformed(format!("the {name:?} claim is not a string"))),
    }
}

fn string_list(v: Value, name: &'static str) -> Result<Vec<String>, Rejection> {
    let bad = || Rejection::Malformed(format!("the {name:?} claim is not an array of strings"));
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s),
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

impl Claims {
    /// Reads claims from a verified payload. Required claims that are
    /// missing are left empty (or 0) and reported by [`Validation`]; claims of
    /// the wrong type are rejected here.
    pub fn from_payload(payload: &[u8]) -> Result<Claims, Rejection> {
        // Registered claims are read straight into slots: no name is
        // allocated and no map entry made for them, the largest cost of
        // verification besides the signature. Types are checked after, in a
        // fixed order, so one token always gets the same code.
        let split = jose::json::parse_object_split(payload, "the claims", &SLOT_NAMES).map_err(Rejection::from)?;
        let [iss, sub, aud, iat, exp, nbf, jti, scopes] = split.slots;
        let extra = split.rest;
        let iss = iss.map(|v| string(v, "iss")).transpose()?;
        let sub = sub.map(|v| string(v, "sub")).transpose()?;
        let aud = match aud {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s],
            Some(v @ Value::Array(_)) => string_list(v, "aud")?,
            Some(_) => {
                return Err(Rejection::Malformed(
                    "the \"aud\" claim is neither a string nor an array".into(),
                ))
            }
        };
        let iat = iat.map(|v| numeric_date(&v, "iat")).transpose()?;
        let exp = exp.map(|v| numeric_date(&v, "exp")).transpose()?;
        let nbf = nbf.map(|v| numeric_date(&v, "nbf")).transpose()?;
        let jti = jti.map(|v| string(v, "jti")).transpose()?;
        let scopes = match (scopes, extra.get("scope")) {
            (Some(v), _) => string_list(v, "scopes")?,
            // RFC 9068 tokens carry `scope`, space-separated: read it too.
            (None, Some(Value::String(s))) => s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            (None, Some(_)) => return Err(Rejection::Malformed("the \"scope\" claim is not a string".into())),
            (None, None) => Vec::new(),
        };
        let present = Present {
            iss: iss.is_some(),
            sub: sub.is_some(),
            iat: iat.is_some(),
            exp: exp.is_some(),
            jti: jti.is_some(),
        };
        let claims = Claims {
            iss: iss.unwrap_or_default(),
            sub: sub.unwrap_or_default(),
            aud,
            iat: iat.unwrap_or(i64::MIN),
            exp: exp.unwrap_or(i64::MIN),
            nbf,
            jti: jti.unwrap_or_default(),
            scopes,
            extra,
        };
        present.check()?;
        Ok(claims)
    }

    /// The JSON payload. Extra claims never override a registered one.
    pub fn to_json(&self) -> Vec<u8> {
        let mut map = Map::with_capacity(9 + self.extra.len());
        map.insert("iss".into(), Value::String(self.iss.clone()));
        map.insert("sub".into(), Value::String(self.sub.clone()));
        match self.aud.as_slice() {
            [] => {}
            [one] => {
                map.insert("aud".into(), Value::String(one.clone()));
            }
            many => {
                map.insert(
                    "aud".into(),
                    Value::Array(many.iter().cloned().map(Value::String).collect()),
                );
            }
        }
        map.insert("iat".into(), Value::from(self.iat));
        map.insert("exp".into(), Value::from(self.exp));
        if let Some(nbf) = self.nbf {
            map.insert("nbf".into(), Value::from(nbf));
        }
        map.insert("jti".into(), Value::String(self.jti.clone()));
        if !self.scopes.is_empty() {
            map.insert(
                "scopes".into(),
                Value::Array(self.scopes.iter().cloned().map(Value::String).collect()),
            );
        }
        for (k, v) in &self.extra {
            if !REGISTERED.contains(&k.as_str()) {
                map.insert(k.clone(), v.clone());
            }
        }
        serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
    }

    /// The payload of an RFC 9068 access token: as [`Claims::to_json`], but
    /// the scopes as `scope`, one space-separated string (§2.2.3).
    pub fn to_json_rfc9068(&self) -> Vec<u8> {
        let mut map: Map<String, Value> = serde_json::from_slice(&self.to_json()).unwrap_or_default();
        if let Some(Value::Array(_)) = map.remove("scopes") {
            map.insert("scope".into(), Value::String(self.scopes.join(" ")));
        }
        serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
    }

    /// The claims as a JSON object, for `verify` output and `/v1/verify`.
    pub fn to_value(&self) -> Value {
        serde_json::from_slice(&self.to_json()).unwrap_or(Value::Null)
    }

    /// The client the token was issued to, when it says.
    pub fn client_id(&self) -> Option<&str> {
        self.extra.get(CLIENT_ID).and_then(Value::as_str)
    }

    /// The refresh family the token was issued from ([`SID`]), if any.
    pub fn sid(&self) -> Option<&str> {
        self.extra.get(SID).and_then(Value::as_str)
    }

    /// The thumbprint of the key a DPoP-bound token is bound to (`cnf.jkt`).
    /// A `cnf` that is not an object with a string `jkt` reads as bound to
    /// no key anyone has (`Some("")`): never as unbound.
    pub fn cnf_jkt(&self) -> Option<&str> {
        let cnf = self.extra.get(CNF)?;
        Some(cnf.get("jkt").and_then(Value::as_str).unwrap_or_default())
    }

    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Which required claims were present, so that absence is reported after
/// type errors (a wrong type is the more specific finding).
struct Present {
    iss: bool,
    sub: bool,
    iat: bool,
    exp: bool,
    jti: bool,
}

impl Present {
    fn check(&self) -> Result<(), Rejection> {
        for (ok, name) in [
            (self.exp, "exp"),
            (self.iat, "iat"),
            (self.iss, "iss"),
            (self.sub, "sub"),
            (self.jti, "jti"),
        ] {
            if !ok {
                return Err(Rejection::MissingClaim(name));
            }
        }
        Ok(())
    }
}

/// What a verifier expects of every token. Every field documents its default.
///
/// An audience is required: a verifier that names none refuses every token
/// (`wrong_audience`) unless it says [`any_audience`](Validation::any_audience)
/// explicitly, since a token meant for another service must not pass here.
///
/// ```
/// use tokensmith::Validation;
/// let v = Validation::new("https://auth.example.com").audience("orders-api");
/// assert_eq!(v.audience.as_deref(), Some("orders-api"));
/// ```
#[derive(Clone, Debug)]
pub struct Validation {
    /// `iss` must equal this exactly. No default: a verifier always knows its issuer.
    pub issuer: String,
    /// `aud` must contain this. Default: none, which refuses every token
    /// unless `any_audience` is set (or a request names one, [`Validation::check_for`]).
    pub audience: Option<String>,
    /// Accept a token whatever its audience when none is named. Default:
    /// false. Set it with [`Validation::any_audience`], knowingly.
    pub any_audience: bool,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds. Default 60.
    pub leeway: i64,
    /// The longest `exp - iat` accepted, in seconds. Default 24 h.
    pub max_ttl: i64,
    /// Scopes the token must carry. Default: none.
    pub required_scopes: Vec<String>,
    /// The header `typ` the token must have, compared without case and
    /// with or without `application/` (RFC 7515 §4.1.9): `at+jwt` refuses
    /// anything but RFC 9068 access tokens, so an ID token or another JWT
    /// of the same issuer cannot pass for one. Default: none (any `typ`).
    pub required_typ: Option<String>,
}

impl Validation {
    /// The defaults above, for tokens of `issuer`.
    pub fn new(issuer: impl Into<String>) -> Validation {
        Validation {
            issuer: issuer.into(),
            audience: None,
            any_audience: false,
            leeway: 60,
            max_ttl: 86_400,
            required_scopes: Vec::new(),
            required_typ: None,
        }
    }

    /// Tokens must carry this header `typ` (`at+jwt` for RFC 9068 access tokens).
    pub fn typ(mut self, typ: impl Into<String>) -> Validation {
        self.required_typ = Some(typ.into());
        self
    }

    /// Checks a token's header `typ` against [`Validation::required_typ`].
    pub fn check_typ(&self, typ: Option<&str>) -> Result<(), Rejection> {
        let Some(required) = &self.required_typ else {
            return Ok(());
        };
        let bare = |t: &str| {
            let t = t.trim();
            match t.get(..12) {
                Some(p) if p.eq_ignore_ascii_case("application/") => t[12..].to_ascii_lowercase(),
                _ => t.to_ascii_lowercase(),
            }
        };
        match typ {
            Some(t) if bare(t) == bare(required) => Ok(()),
            _ => Err(Rejection::Malformed(format!("the header typ must be {required:?}"))),
        }
    }

    /// Tokens must carry `audience` in `aud`.
    pub fn audience(mut self, audience: impl Into<String>) -> Validation {
        self.audience = Some(audience.into());
        self
    }

    /// Tokens of any audience are accepted when no audience is named. For
    /// tools that inspect tokens, never for a service that acts on them.
    pub fn any_audience(mut self) -> Validation {
        self.any_audience = true;
        self
    }

    /// Tokens must carry every one of `scopes`.
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Validation {
        self.required_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Checks every rule of API.md's "Tokens" section except the signature,
    /// which the caller has checked, in a fixed order so that one token always
    /// gets the same code.
    pub fn check(&self, c: &Claims, now: i64) -> Result<(), Rejection> {
        self.check_for(c, now, self.audience.as_deref(), &self.required_scopes)
    }

    /// [`Validation::check`] with the audience and scopes of one request in
    /// place of the defaults, so a shared `Validation` serves every caller.
    pub fn check_for(&self, c: &Claims, now: i64, audience: Option<&str>, scopes: &[String]) -> Result<(), Rejection> {
        if now >= c.exp.saturating_add(self.leeway) {
            return Err(Rejection::Expired { exp: c.exp, now });
        }
        if c.iat > now.saturating_add(self.leeway) {
            return Err(Rejection::IssuedInFuture { iat: c.iat, now });
        }
        if let Some(nbf) = c.nbf {
            if nbf > now.saturating_add(self.leeway) {
                return Err(Rejection::NotYetValid { nbf, now });
            }
        }
        let ttl = c.exp.saturating_sub(c.iat);
        if ttl > self.max_ttl {
            return Err(Rejection::TtlTooLong { ttl, max: self.max_ttl });
        }
        if c.iss != self.issuer {
            return Err(Rejection::WrongIssuer { found: c.iss.clone() });
        }
        match audience {
            Some(expected) if !c.aud.iter().any(|a| a == expected) => {
                return Err(Rejection::WrongAudience {
                    expected: expected.to_owned(),
                })
            }
            None if !self.any_audience => {
                return Err(Rejection::WrongAudience {
                    expected: "(no audience is configured: name one, or allow any audience explicitly)".to_owned(),
                })
            }
            _ => {}
        }
        if c.sub.is_empty() {
            return Err(Rejection::MissingClaim("sub"));
        }
        if c.jti.is_empty() {
            return Err(Rejection::MissingClaim("jti"));
        }
        check_scopes(c, scopes)
    }
}

/// Every scope in `required` must be in the token's scopes.
pub fn check_scopes(c: &Claims, required: &[String]) -> Result<(), Rejection> {
    match required.iter().find(|s| !c.has_scope(s)) {
        Some(missing) => Err(Rejection::InsufficientScope {
            missing: missing.clone(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
