//! What a client may get: the pure part of the authority's rules.
//!
//! Two ways of turning a wish into a [`TokenSpec`] live here:
//!
//! - [`apply_policy`] *refuses* a client's backend that asks for more than
//!   its policy gives (an audience, scope, lifetime or claim it may not
//!   have): the backend can fix its request.
//! - [`Identity::cut_to`] and [`Identity::token_spec`] *cut*: an identity that
//!   someone other than the client's backend vouched for (the app's session
//!   check, a visitor token, a refresh token) is narrowed to the policy,
//!   since a widget cannot fix what it was given.
//!
//! Nothing here touches the store, the clock or the keys; the
//! [`Authority`](super::Authority) calls these and does the rest.

use std::fmt;

use serde_json::{Map, Value};

use crate::claims::is_reserved;
use crate::clients::Client;
use crate::issuer::TokenSpec;
use crate::session::Identity;

/// The most a `sub` or a `jti` may be, in bytes (defined with the claims,
/// which the session check also uses).
pub use crate::claims::MAX_ID_LEN;

/// The longest a visitor (exchange) token lives, in seconds.
pub const EXCHANGE_TTL_MAX: i64 = 300;

/// The audience of visitor tokens: the exchange endpoint of this issuer.
pub fn exchange_audience(issuer: &str) -> String {
    format!("{}/v1/exchange", issuer.trim_end_matches('/'))
}

/// Limits that hold for every client: `[tokens]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalLimits {
    /// Lifetime of a token when a request names none, in seconds.
    pub default_ttl: i64,
    /// The longest any token lives, in seconds.
    pub max_ttl: i64,
}

/// What a client's backend asks for in `POST /v1/tokens`. Unknown fields
/// are refused.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The subject, 1 to 256 bytes (`MAX_ID_LEN`).
    pub sub: String,
    /// Default: the client's audience.
    #[serde(default)]
    pub aud: Option<Audience>,
    /// Default: none.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// A duration string (`"10m"`) or a number of seconds. Default:
    /// `tokens.default_ttl`, cut to the client's `max_ttl`.
    #[serde(default)]
    pub ttl: Option<Value>,
    /// Extra claims, each named in the client's `allowed_claims`.
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
    /// One audience.
    One(String),
    /// Several audiences.
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

/// A request asked for more than the client's policy gives, or made no sense.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// The request is malformed (answers 400 `invalid_request`).
    InvalidRequest(String),
    /// A scope the client may not grant.
    ScopeNotAllowed(String),
    /// An audience the client may not issue for.
    AudienceNotAllowed(String),
    /// A lifetime above the client's maximum.
    TtlNotAllowed {
        /// What was asked, in seconds.
        asked: i64,
        /// The most allowed, in seconds.
        max: i64,
    },
    /// A claim the client may not set.
    ClaimNotAllowed(String),
}

impl PolicyError {
    /// The stable `error` code of API.md.
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

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// Whether `s` is a scope token: non-empty, no white space.
fn valid_scope(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace)
}

/// Whether `client` may grant `scope` (`*` in a client's scopes grants any,
/// as the `--dev` client does).
fn grants(client: &Client, scope: &str) -> bool {
    client.scopes.iter().any(|c| c == "*" || c == scope)
}

/// Whether a request may set the extra claim `name` for `client`: named in
/// its `allowed_claims`, not one of its fixed claims, not reserved.
fn claim_allowed(client: &Client, name: &str) -> bool {
    client.allowed_claims.iter().any(|c| c == name) && !client.claims.contains_key(name) && !is_reserved(name)
}

/// A client's own maximum lifetime, cut to the global one, in seconds.
fn client_max_ttl(client: &Client, limits: GlobalLimits) -> i64 {
    i64::try_from(client.max_ttl.as_secs())
        .unwrap_or(i64::MAX)
        .min(limits.max_ttl)
}

/// Checks the scopes asked for against what the client may grant, and
/// drops repeats.
pub fn allowed_scopes(client: &Client, asked: &[String]) -> Result<Vec<String>, PolicyError> {
    let mut out: Vec<String> = Vec::with_capacity(asked.len());
    for s in asked {
        if !valid_scope(s) {
            return Err(PolicyError::InvalidRequest(format!("{s:?} is not a scope")));
        }
        if !grants(client, s) {
            return Err(PolicyError::ScopeNotAllowed(s.clone()));
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

/// Checks a subject given by a caller: 1 to [`MAX_ID_LEN`] bytes.
pub fn check_subject(sub: &str) -> Result<(), PolicyError> {
    if sub.is_empty() || sub.len() > MAX_ID_LEN {
        return Err(PolicyError::InvalidRequest(format!(
            "sub must be 1 to {MAX_ID_LEN} bytes"
        )));
    }
    Ok(())
}

/// Turns a request into what the token will say, or says why not: the
/// audience, scopes, lifetime (request ≤ client `max_ttl` ≤ global `max_ttl`)
/// and extra claims are the client's to allow; its fixed claims are added
/// and cannot be overridden. `issuer` names the exchange endpoint that
/// visitor tokens are for.
pub fn apply_policy(
    client: &Client,
    req: TokenRequest,
    limits: GlobalLimits,
    issuer: &str,
) -> Result<TokenSpec, PolicyError> {
    check_subject(&req.sub)?;
    let purpose = req.purpose.unwrap_or_default();
    let max = match purpose {
        Purpose::Access => client_max_ttl(client, limits),
        Purpose::Exchange => client_max_ttl(client, limits).min(EXCHANGE_TTL_MAX),
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
        if !claim_allowed(client, &k) {
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

impl Identity {
    /// This identity cut to what `client` may grant: valid scopes the client
    /// has, and extra claims a request may set ([`apply_policy`]'s rule).
    /// Anything else is dropped, not refused.
    pub fn cut_to(&self, client: &Client) -> Identity {
        let mut scopes: Vec<String> = Vec::with_capacity(self.scopes.len());
        for s in &self.scopes {
            if valid_scope(s) && grants(client, s) && !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        let claims = self
            .claims
            .iter()
            .filter(|(k, _)| claim_allowed(client, k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Identity {
            sub: self.sub.clone(),
            scopes,
            claims,
        }
    }

    /// What a token for this identity says: the client's audience, the scopes
    /// and claims `cut_to` leaves plus the client's fixed claims, and the
    /// default lifetime cut to the client's and the global maximum.
    pub fn token_spec(&self, client: &Client, limits: GlobalLimits) -> TokenSpec {
        let cut = self.cut_to(client);
        let mut extra = client.claims.clone();
        extra.extend(cut.claims);
        TokenSpec {
            sub: cut.sub,
            aud: vec![client.audience.clone()],
            scopes: cut.scopes,
            ttl: limits.default_ttl.min(client_max_ttl(client, limits)).max(1),
            extra,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn client() -> Client {
        let mut claims = Map::new();
        claims.insert("storeId".into(), json!("st_1"));
        Client {
            scopes: vec!["chat".into(), "read:orders".into()],
            max_ttl: Duration::from_secs(120),
            claims,
            allowed_claims: vec!["tier".into(), "storeId".into(), "exp".into()],
            guest_scopes: vec!["chat".into()],
            ..Client::new("shop", "chatbot")
        }
    }

    fn limits() -> GlobalLimits {
        GlobalLimits {
            default_ttl: 300,
            max_ttl: 86400,
        }
    }

    #[test]
    fn scopes_and_claims_are_cut_to_the_policy_and_fixed_claims_win() {
        let id = Identity {
            sub: "u1".into(),
            scopes: vec![
                "chat".into(),
                "admin".into(),
                "chat".into(),
                "".into(),
                "read:orders".into(),
            ],
            claims: json!({"tier": "gold", "storeId": "forged", "exp": 1, "role": "admin"})
                .as_object()
                .unwrap()
                .clone(),
        };
        let spec = id.token_spec(&client(), limits());
        assert_eq!(spec.sub, "u1");
        assert_eq!(spec.aud, vec!["chatbot".to_owned()]);
        assert_eq!(spec.scopes, vec!["chat".to_owned(), "read:orders".to_owned()]);
        assert_eq!(Value::Object(spec.extra), json!({"tier": "gold", "storeId": "st_1"}));
        // Default 5m, cut to the client's 2m.
        assert_eq!(spec.ttl, 120);
    }

    /// The scopes asked for are granted in the order asked, each once.
    #[test]
    fn requested_scopes_are_kept_once_in_order() {
        let asked = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            allowed_scopes(&client(), &asked(&["read:orders", "chat", "read:orders"])),
            Ok(asked(&["read:orders", "chat"]))
        );
        assert_eq!(allowed_scopes(&client(), &[]), Ok(vec![]));
        let spec = apply_policy(
            &client(),
            serde_json::from_value(json!({"sub": "u", "scopes": ["chat", "chat"]})).unwrap(),
            limits(),
            "https://i",
        )
        .unwrap();
        assert_eq!(spec.scopes, asked(&["chat"]));
    }

    /// Each refusal says what was refused, for the `error_description`.
    #[test]
    fn policy_errors_say_what_was_refused() {
        for (e, text) in [
            (PolicyError::InvalidRequest("sub is empty".into()), "sub is empty"),
            (
                PolicyError::ScopeNotAllowed("admin".into()),
                "this client may not grant the scope \"admin\"",
            ),
            (
                PolicyError::AudienceNotAllowed("other".into()),
                "this client may not issue tokens for the audience \"other\"",
            ),
            (
                PolicyError::TtlNotAllowed { asked: 121, max: 120 },
                "a lifetime of 121s is above this client's maximum of 120s",
            ),
            (
                PolicyError::ClaimNotAllowed("exp".into()),
                "this client may not set the claim \"exp\"",
            ),
        ] {
            assert_eq!(e.to_string(), text);
        }
    }

    #[test]
    fn any_scope_client_keeps_every_valid_scope() {
        let mut c = client();
        c.scopes = vec!["*".into()];
        let id = Identity {
            sub: "u".into(),
            scopes: vec!["x".into(), "a b".into()],
            claims: Map::new(),
        };
        assert_eq!(id.cut_to(&c).scopes, vec!["x".to_owned()]);
    }

    #[test]
    fn requests_are_refused_where_identities_are_cut() {
        let req = |v: Value| serde_json::from_value::<TokenRequest>(v).unwrap();
        let l = limits();
        let spec = apply_policy(
            &client(),
            req(json!({"sub": "u", "scopes": ["chat"], "claims": {"tier": "gold"}})),
            l,
            "https://i",
        )
        .unwrap();
        assert_eq!(spec.ttl, 120);
        assert_eq!(spec.extra["storeId"], "st_1");
        for (body, code) in [
            (json!({"sub": "u", "scopes": ["admin"]}), "scope_not_allowed"),
            (
                json!({"sub": "u", "claims": {"storeId": "forged"}}),
                "claim_not_allowed",
            ),
            (json!({"sub": "u", "claims": {"exp": 1}}), "claim_not_allowed"),
            (json!({"sub": "u", "aud": "other"}), "audience_not_allowed"),
            (json!({"sub": "u", "ttl": 121}), "ttl_not_allowed"),
            (json!({"sub": "u", "ttl": 0}), "invalid_request"),
            (json!({"sub": ""}), "invalid_request"),
            (json!({"sub": "u".repeat(MAX_ID_LEN + 1)}), "invalid_request"),
            (json!({"sub": "u", "aud": []}), "invalid_request"),
            (
                json!({"sub": "u", "purpose": "exchange", "aud": "chatbot"}),
                "invalid_request",
            ),
        ] {
            let e = apply_policy(&client(), req(body.clone()), l, "https://i").unwrap_err();
            assert_eq!(e.code(), code, "{body}");
        }
        // The boundaries: exactly the client's maximum, exactly MAX_ID_LEN.
        let at_max = apply_policy(
            &client(),
            req(json!({"sub": "u".repeat(MAX_ID_LEN), "ttl": 120})),
            l,
            "https://i",
        )
        .unwrap();
        assert_eq!(at_max.ttl, 120);
        // A visitor token: the exchange audience, at most five minutes.
        let mut long = client();
        long.max_ttl = Duration::from_secs(3600);
        let v = apply_policy(&long, req(json!({"sub": "u", "purpose": "exchange"})), l, "https://i/").unwrap();
        assert_eq!(v.aud, vec!["https://i/v1/exchange".to_owned()]);
        let e = apply_policy(
            &long,
            req(json!({"sub": "u", "purpose": "exchange", "ttl": 301})),
            l,
            "https://i",
        )
        .unwrap_err();
        assert_eq!(
            e,
            PolicyError::TtlNotAllowed {
                asked: 301,
                max: EXCHANGE_TTL_MAX
            }
        );
    }
}
