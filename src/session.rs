//! The session check, and identities vouched for by someone other than a
//! client's backend.
//!
//! This module owns two things:
//!
//! - [`SessionChecker`]: asks `[session] check_url` whether the caller's
//!   `Cookie` and `Authorization` headers are a signed-in app session, and
//!   reads the answer (`200 {sub, scopes?, claims?}`) into an [`Identity`].
//!   Good answers may be reused for at most `cache_ttl` (≤ 10 s), keyed by
//!   the SHA-256 of the forwarded headers.
//! - [`Identity`]: a subject with scopes and claims that the app's session
//!   check, a visitor token or a refresh token vouches for, and
//!   [`Identity::token_spec`], which cuts it to the client's policy. Unlike
//!   [`crate::issuer::apply_policy`], which refuses a client's backend that
//!   asks for too much, this *cuts*: the party that vouched is not the
//!   client, and a widget cannot fix its request.
//!
//! It must never forward any other header of the caller (an API key, `Host`,
//! `X-Forwarded-For`), nor an `Authorization` that carries a credential of
//! tokensmith's own ([`OwnCredentials`]: an API key, or a token this service
//! issued), whose holder meant it for us and not for the app; log a cookie,
//! an `Authorization` value or the check URL (it may carry credentials);
//! send anything over cleartext off loopback unless `allow_http` says so;
//! cache a failure, or turn a `200` whose body it does not understand into
//! an identity.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, COOKIE};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::claims::MAX_ID_LEN;
use crate::claims::{Claims, CLIENT_ID};
use crate::clients::Client;
use crate::config::SessionConfig;
use crate::jose::alg::{random_bytes, sha256};
use crate::jose::jws::MAX_TOKEN_LEN;
use crate::jose::JoseError;
use crate::keys::SharedKeys;
use crate::store::RefreshRecord;

/// The largest check answer read: a `whoami` is a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The most cached sessions: beyond this, answers are not cached (the check
/// is asked every time) rather than evicting, which keeps the bound simple.
const MAX_CACHED: usize = 10_000;
/// The only caller headers the check ever sees.
const FORWARDED: [reqwest::header::HeaderName; 2] = [COOKIE, AUTHORIZATION];
/// Prefix of guest subjects.
pub const GUEST_PREFIX: &str = "guest:";
/// Every API key starts with this (`clients`' rule): a credential that does
/// is one of ours, even when no client has it.
const API_KEY_PREFIX: &[u8] = b"sk_";

/// Who a token will be for, before the client's policy is applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Identity {
    pub sub: String,
    pub scopes: Vec<String>,
    pub claims: Map<String, Value>,
}

impl Identity {
    /// A new anonymous visitor of `client`: `guest:<128 random bits>` with the
    /// client's guest scopes and no claims.
    pub fn guest(client: &Client) -> Result<Identity, JoseError> {
        let mut b = [0u8; 16];
        random_bytes(&mut b)?;
        Ok(Identity {
            sub: format!("{GUEST_PREFIX}{}", URL_SAFE_NO_PAD.encode(b)),
            scopes: client.guest_scopes.clone(),
            claims: Map::new(),
        })
    }

    /// The identity a verified visitor token carries: its subject, scopes and
    /// extra claims, less the claim that named its client.
    pub fn from_visitor(claims: &Claims) -> Identity {
        let mut extra = claims.extra.clone();
        extra.remove(CLIENT_ID);
        Identity {
            sub: claims.sub.clone(),
            scopes: claims.scopes.clone(),
            claims: extra,
        }
    }

    /// The identity a refresh token renews.
    pub fn from_refresh(record: &RefreshRecord) -> Identity {
        Identity {
            sub: record.sub.clone(),
            scopes: record.scopes.clone(),
            claims: record.claims.clone(),
        }
    }
}

/// Why the session check gave no identity.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The caller sent neither `Cookie` nor `Authorization`: there is no
    /// session to check, and the check is not asked.
    NoCredentials,
    /// The check answered something other than 200 (and not 5xx): the
    /// session is not (or no longer) signed in.
    Rejected {
        /// The HTTP status it answered.
        status: u16,
    },
    /// The check could not be reached, timed out, failed (5xx), or answered
    /// 200 with a body that is not `{sub, scopes?, claims?}`. For the log only.
    Unavailable(String),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::NoCredentials => f.write_str("no Cookie or Authorization header to check"),
            SessionError::Rejected { status } => write!(f, "the session check answered {status}"),
            SessionError::Unavailable(why) => write!(f, "the session check is unavailable: {why}"),
        }
    }
}

impl std::error::Error for SessionError {}

/// Tells a credential meant for tokensmith from the app's own, so that the
/// session check never sees one of ours. Ours are:
///
/// - an API key (`sk_…`) under any scheme (`Bearer`, `DPoP`) or none, or
///   as the password of `Basic` (the form OAuth's `client_secret_basic` takes);
/// - a token this service issued, under any scheme but `Basic`: a compact
///   JWS whose header `kid` names a key of our ring, or whose payload `iss`
///   is our issuer (which also catches a token whose key has been pruned).
///
/// Any other JWS is forwarded: an app's own session may well be a JWT from
/// its identity provider, and refusing every JWS would break those apps.
/// The parse is lenient on purpose: a credential that only *looks* like ours
/// is not forwarded either.
#[derive(Clone)]
pub struct OwnCredentials {
    keys: SharedKeys,
    issuer: String,
}

impl fmt::Debug for OwnCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnCredentials")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl OwnCredentials {
    /// Ours are the tokens signed by a key of `keys` or naming `issuer`.
    pub fn new(keys: SharedKeys, issuer: impl Into<String>) -> OwnCredentials {
        OwnCredentials {
            keys,
            issuer: issuer.into(),
        }
    }

    /// True when the `Authorization` value `value` carries one of ours. The
    /// scheme matters only for `Basic`: an API key or a token of ours under
    /// any other scheme, or with none, is still ours.
    pub fn is_ours(&self, value: &HeaderValue) -> bool {
        let bytes = value.as_bytes().trim_ascii();
        let (scheme, credential) = match bytes.iter().position(|b| *b == b' ') {
            Some(at) => (&bytes[..at], bytes[at + 1..].trim_ascii()),
            None => (&b""[..], bytes),
        };
        if scheme.eq_ignore_ascii_case(b"basic") {
            return basic_password(credential).is_some_and(|p| p.starts_with(API_KEY_PREFIX));
        }
        credential.starts_with(API_KEY_PREFIX) || self.is_our_token(credential)
    }

    fn is_our_token(&self, token: &[u8]) -> bool {
        if token.len() > MAX_TOKEN_LEN {
            return false;
        }
        let mut parts = token.split(|b| *b == b'.');
        let (Some(header), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let member = |part: &[u8], name: &str| -> Option<String> {
            let json = URL_SAFE_NO_PAD.decode(part).ok()?;
            let value: Value = serde_json::from_slice(&json).ok()?;
            value.get(name)?.as_str().map(str::to_owned)
        };
        if member(header, "kid").is_some_and(|kid| self.keys.load().verifier(&kid).is_some()) {
            return true;
        }
        member(payload, "iss").is_some_and(|iss| iss == self.issuer)
    }
}

/// The password of a `Basic` credential, if it decodes to `user:password`.
fn basic_password(credential: &[u8]) -> Option<Vec<u8>> {
    let unpadded = credential.strip_suffix(b"==").or_else(|| credential.strip_suffix(b"="));
    let decoded = STANDARD_NO_PAD.decode(unpadded.unwrap_or(credential)).ok()?;
    let at = decoded.iter().position(|b| *b == b':')?;
    Some(decoded[at + 1..].to_vec())
}

/// What the check answers on 200. Other members are the app's business and
/// are ignored: the endpoint is often an existing `whoami`.
#[derive(Deserialize)]
struct Answer {
    sub: String,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    claims: Option<Map<String, Value>>,
}

struct Cached {
    identity: Identity,
    /// Reused while `now < until`.
    until: i64,
}

/// Asks the app whether a caller is signed in. Built once at start-up.
pub struct SessionChecker {
    url: String,
    client_id: String,
    /// The HTTP client, or why it could not be built: then every check is
    /// unavailable (503) rather than the endpoint quietly missing.
    http: Result<reqwest::Client, String>,
    /// Whole seconds; 0 disables the cache. Rounded down, so an answer is
    /// never reused for longer than `cache_ttl`.
    cache_secs: i64,
    /// A std Mutex, not a tokio one: no await happens while it is held.
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    /// Credentials never forwarded.
    own: OwnCredentials,
}

impl fmt::Debug for SessionChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionChecker")
            .field("client", &self.client_id)
            .field("cache_secs", &self.cache_secs)
            .finish_non_exhaustive()
    }
}

impl SessionChecker {
    /// The checker `[session]` describes: a GET with the configured timeout
    /// (connect included), no redirects followed, never forwarding `own`.
    /// A `check_url` in clear off loopback without `allow_http` (which the
    /// config refuses, but a `SessionConfig` built in code may hold) makes
    /// every check unavailable rather than send cookies in clear.
    pub fn from_config(cfg: &SessionConfig, own: OwnCredentials) -> SessionChecker {
        let secure = reqwest::Url::parse(&cfg.check_url).is_ok_and(|u| crate::jwks::secure_transport(&u));
        let http = if secure || cfg.allow_http {
            crate::jwks::http_client(cfg.timeout).map_err(|e| e.to_string())
        } else {
            Err("session.check_url must use https: plain http is allowed to a loopback address only, or with session.allow_http = true".to_owned())
        };
        if let Err(why) = &http {
            tracing::error!(error = %why, "the session check's HTTP client could not be built; session tokens will answer 503");
        }
        SessionChecker {
            url: cfg.check_url.clone(),
            client_id: cfg.client.clone(),
            http,
            cache_secs: i64::try_from(cfg.cache_ttl.as_secs()).unwrap_or(0),
            cache: Mutex::new(HashMap::new()),
            own,
        }
    }

    /// The id of the client whose policy session tokens follow.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// How many answers are cached now.
    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The identity the app vouches for, given the caller's headers. Only
    /// `Cookie` and an `Authorization` that is not ours are forwarded; `now`
    /// (Unix seconds) decides whether a cached answer is still fresh.
    pub async fn check(&self, caller: &HeaderMap, now: i64) -> Result<Identity, SessionError> {
        let forwarded = forwarded_headers(caller, &self.own);
        if forwarded.is_empty() {
            return Err(SessionError::NoCredentials);
        }
        let key = cache_key(&forwarded);
        if let Some(hit) = self.cache_get(&key, now) {
            return Ok(hit);
        }
        let identity = self.ask(forwarded).await?;
        self.cache_put(key, &identity, now);
        Ok(identity)
    }

    async fn ask(&self, forwarded: HeaderMap) -> Result<Identity, SessionError> {
        let http = self
            .http
            .as_ref()
            .map_err(|why| SessionError::Unavailable(why.clone()))?;
        let resp = http
            .get(&self.url)
            .headers(forwarded)
            .header(ACCEPT, "application/json")
            .send()
            .await
            // Without the URL: it may carry credentials.
            .map_err(|e| SessionError::Unavailable(crate::jwks::cause_chain(&e.without_url())))?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(SessionError::Unavailable(format!("the check answered {status}")));
        }
        if status != StatusCode::OK {
            tracing::debug!(status = status.as_u16(), "session check refused the session");
            return Err(SessionError::Rejected {
                status: status.as_u16(),
            });
        }
        let body = read_capped(resp, MAX_ANSWER_BYTES).await?;
        parse_answer(&body)
    }

    fn cache_get(&self, key: &[u8; 32], now: i64) -> Option<Identity> {
        if self.cache_secs == 0 {
            return None;
        }
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(key).filter(|c| now < c.until).map(|c| c.identity.clone())
    }

    fn cache_put(&self, key: [u8; 32], identity: &Identity, now: i64) {
        if self.cache_secs == 0 {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, c| now < c.until);
        }
        if cache.len() >= MAX_CACHED {
            return;
        }
        let entry = Cached {
            identity: identity.clone(),
            until: now.saturating_add(self.cache_secs),
        };
        cache.insert(key, entry);
    }
}

/// The caller's `Cookie` and `Authorization` headers, every value of each
/// (HTTP/2 may split cookies over several fields), less every
/// `Authorization` that carries a credential of ours, and nothing else.
fn forwarded_headers(caller: &HeaderMap, own: &OwnCredentials) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in FORWARDED {
        for value in caller.get_all(&name) {
            if name == AUTHORIZATION && own.is_ours(value) {
                tracing::debug!("a credential of tokensmith's own is not forwarded to the session check");
                continue;
            }
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// SHA-256 over the forwarded headers, in a fixed order and unambiguous:
/// header values cannot hold NUL or newline.
fn cache_key(forwarded: &HeaderMap) -> [u8; 32] {
    let mut buf = Vec::new();
    for name in FORWARDED {
        for value in forwarded.get_all(&name) {
            buf.extend_from_slice(name.as_str().as_bytes());
            buf.push(0);
            buf.extend_from_slice(value.as_bytes());
            buf.push(b'\n');
        }
    }
    sha256(&buf)
}

async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, SessionError> {
    let too_big = || SessionError::Unavailable(format!("the check's answer is over {max} bytes"));
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| SessionError::Unavailable(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A 200 body as an identity. A body that does not parse, or a `sub` that is
/// empty or too long, is a broken check, not a signed-out user.
fn parse_answer(body: &[u8]) -> Result<Identity, SessionError> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| SessionError::Unavailable(format!("the check's answer is not {{sub, scopes?, claims?}}: {e}")))?;
    if answer.sub.is_empty() || answer.sub.len() > MAX_ID_LEN {
        return Err(SessionError::Unavailable(format!(
            "the check's sub must be 1 to {MAX_ID_LEN} bytes"
        )));
    }
    Ok(Identity {
        sub: answer.sub,
        scopes: answer.scopes.unwrap_or_default(),
        claims: answer.claims.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests;
