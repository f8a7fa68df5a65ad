//! An axum extractor for plugin backends: a handler that takes a
//! [`Bearer<P>`] runs only for a request carrying a valid tokensmith token,
//! and gets its verified [`Claims`].
//!
//! This module owns the resource server's side of RFC 6750: reading
//! `Authorization: Bearer <token>` strictly (scheme case-insensitive, one
//! token of the b64token alphabet, one header), and answering refusals with
//! the right status, a `WWW-Authenticate: Bearer` challenge (§3) and the
//! JSON body `{error, error_description}` with [`Rejection`] codes:
//!
//! | case | status | challenge |
//! |---|---|---|
//! | no credentials, or another scheme | 401 `invalid_token` | `Bearer` (no error, §3.1) |
//! | a malformed `Authorization` header | 400 `invalid_request` | `Bearer error="invalid_request"` |
//! | a rejected token (expired, bad signature, wrong audience, …, replayed, revoked) | 401 with its code | `Bearer error="invalid_token"` |
//! | a scope the route requires is missing | 403 `insufficient_scope` | `Bearer error="insufficient_scope", scope="…"` |
//! | the shared store cannot be reached | 503 `store_unavailable` | none |
//!
//! What a route requires is a type: `Bearer<P>` for a [`Policy`] `P` that
//! names the scopes and whether the token is single-use there
//! ([`Policy::CONSUME`]: its `jti` is marked in the shared store, and a
//! second use answers 401 `token_replayed`). The configuration
//! ([`BearerConfig`]: key source, issuer, audience, optional store) comes
//! from the router's state through `FromRef`.
//!
//! It never logs or echoes a token, never takes a key from the token, and
//! never lets a request through when the store that must check it is down.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::jwks::RemoteJwks;
use crate::claims::{Claims, Rejection, Validation};
use crate::clock::SharedClock;
use crate::store::{ConsumeOutcome, Store, StoreError};
use crate::verifier::{KeySource, Verifier};

/// What a route requires of a token, as a type.
///
/// ```
/// use tokensmith::client::extract::Policy;
/// struct ReadOrders;
/// impl Policy for ReadOrders {
///     const SCOPES: &'static [&'static str] = &["read:orders"];
/// }
/// struct PlaceOrder;
/// impl Policy for PlaceOrder {
///     const SCOPES: &'static [&'static str] = &["write:orders"];
///     const CONSUME: bool = true;
/// }
/// ```
pub trait Policy: Send + Sync + 'static {
    /// Every one of these scopes must be in the token. Default: none.
    const SCOPES: &'static [&'static str] = &[];
    /// The token may be used once on this route: its `jti` is marked in the
    /// store until the token expires. Needs [`BearerConfig::with_store`].
    /// Default: false.
    const CONSUME: bool = false;
}

/// Any valid token: no scope, reusable.
#[derive(Debug)]
pub struct AnyToken;

impl Policy for AnyToken {}

/// The verified claims of the request's bearer token, checked against `P`.
pub struct Bearer<P: Policy = AnyToken> {
    pub claims: Claims,
    policy: PhantomData<fn() -> P>,
}

impl<P: Policy> Bearer<P> {
    pub fn into_claims(self) -> Claims {
        self.claims
    }
}

impl<P: Policy> Deref for Bearer<P> {
    type Target = Claims;
    fn deref(&self) -> &Claims {
        &self.claims
    }
}

impl<P: Policy> fmt::Debug for Bearer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bearer")
            .field("sub", &self.claims.sub)
            .field("jti", &self.claims.jti)
            .finish_non_exhaustive()
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Token in, claims out: over fetched keys or keys in memory.
trait VerifyToken: Send + Sync {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, Rejection>>;
}

struct Remote(Verifier<Arc<RemoteJwks>>);

impl VerifyToken for Remote {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, Rejection>> {
        Box::pin(RemoteJwks::verify(&self.0, token))
    }
}

struct Local<K>(Verifier<K>);

impl<K: KeySource + 'static> VerifyToken for Local<K> {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, Rejection>> {
        Box::pin(std::future::ready(self.0.verify(token)))
    }
}

/// The part of a [`Store`] the extractor uses, object-safe.
trait ReplayStore: Send + Sync {
    fn is_revoked<'a>(&'a self, c: &'a Claims, now: i64) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn consume<'a>(
        &'a self,
        c: &'a Claims,
        mark_key: &'a str,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<ConsumeOutcome, StoreError>>;
}

impl<S: Store> ReplayStore for S {
    fn is_revoked<'a>(&'a self, c: &'a Claims, now: i64) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(Store::is_revoked(self, &c.jti, &c.sub, c.iat, now))
    }
    fn consume<'a>(
        &'a self,
        c: &'a Claims,
        mark_key: &'a str,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<ConsumeOutcome, StoreError>> {
        Box::pin(Store::consume(self, &c.jti, &c.sub, c.iat, mark_key, expires_at, now))
    }
}

/// How [`Bearer`] checks tokens. Put it in the router's state (or derive it
/// with `FromRef` from yours); cloning is cheap.
#[derive(Clone)]
pub struct BearerConfig {
    verifier: Arc<dyn VerifyToken>,
    store: Option<Arc<dyn ReplayStore>>,
    clock: SharedClock,
    leeway: i64,
}

impl fmt::Debug for BearerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerConfig")
            .field("store", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

/// A configuration the extractor refuses to run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerConfigError {
    /// The validation names no audience: any token of the issuer, meant for
    /// any service, would be accepted.
    NoAudience,
}

impl fmt::Display for BearerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BearerConfigError::NoAudience => {
                f.write_str("a bearer extractor must check an audience: set Validation::audience")
            }
        }
    }
}

impl std::error::Error for BearerConfigError {}

impl BearerConfig {
    /// Tokens checked against the issuer's keys fetched from `jwks`
    /// (refetched on rotation), with `validation` (issuer, audience, leeway).
    pub fn remote(
        jwks: Arc<RemoteJwks>,
        validation: Validation,
        clock: SharedClock,
    ) -> Result<BearerConfig, BearerConfigError> {
        let leeway = checked(&validation)?;
        let verifier = Arc::new(Remote(Verifier::new(jwks, validation, Arc::clone(&clock))));
        Ok(BearerConfig {
            verifier,
            store: None,
            clock,
            leeway,
        })
    }

    /// Tokens checked against keys held in memory: a JWKS file
    /// ([`StaticKeys`](crate::verifier::StaticKeys)), a key ring snapshot,
    /// or any other [`KeySource`].
    pub fn local<K: KeySource + 'static>(
        keys: K,
        validation: Validation,
        clock: SharedClock,
    ) -> Result<BearerConfig, BearerConfigError> {
        let leeway = checked(&validation)?;
        let verifier = Arc::new(Local(Verifier::new(keys, validation, Arc::clone(&clock))));
        Ok(BearerConfig {
            verifier,
            store: None,
            clock,
            leeway,
        })
    }

    /// Checks revocations in `store` for every token, and marks `jti`s there
    /// on [`Policy::CONSUME`] routes. Share the store (same Redis and
    /// namespace) with tokensmith, and a token consumed or revoked there is
    /// refused here too: marks use the same `jti:<jti>` keys.
    pub fn with_store<S: Store>(mut self, store: Arc<S>) -> BearerConfig {
        self.store = Some(store);
        self
    }

    /// Verifies `token` for a route with policy `P`.
    pub async fn check<P: Policy>(&self, token: &str) -> Result<Claims, BearerRejection> {
        let claims = self.verifier.verify(token).await.map_err(BearerRejection::Rejected)?;
        if let Some(missing) = P::SCOPES.iter().find(|s| !claims.has_scope(s)) {
            return Err(BearerRejection::Rejected(Rejection::InsufficientScope {
                missing: (*missing).to_owned(),
            })
            .with_scopes(P::SCOPES));
        }
        let now = self.clock.now();
        let Some(store) = &self.store else {
            return if P::CONSUME {
                Err(BearerRejection::NoStore)
            } else {
                Ok(claims)
            };
        };
        if !P::CONSUME {
            if store.is_revoked(&claims, now).await.map_err(BearerRejection::Store)? {
                return Err(BearerRejection::Rejected(Rejection::Revoked));
            }
            return Ok(claims);
        }
        // The revocation check and the mark in one atomic step: a revocation
        // cannot land between them. The mark lasts as long as the token could
        // still be accepted, under the key tokensmith itself uses.
        let until = claims.exp.saturating_add(self.leeway);
        let mark_key = format!("jti:{}", claims.jti);
        match store.consume(&claims, &mark_key, until, now).await {
            Ok(ConsumeOutcome::FirstUse) => {}
            Ok(ConsumeOutcome::Replayed) => return Err(BearerRejection::Rejected(Rejection::Replayed)),
            Ok(ConsumeOutcome::Revoked) => return Err(BearerRejection::Rejected(Rejection::Revoked)),
            Err(e) => return Err(BearerRejection::Store(e)),
        }
        Ok(claims)
    }
}

fn checked(v: &Validation) -> Result<i64, BearerConfigError> {
    if v.audience.as_deref().is_none_or(str::is_empty) {
        return Err(BearerConfigError::NoAudience);
    }
    Ok(v.leeway)
}

impl<S, P> FromRequestParts<S> for Bearer<P>
where
    BearerConfig: FromRef<S>,
    S: Send + Sync,
    P: Policy,
{
    type Rejection = BearerRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?;
        let config = BearerConfig::from_ref(state);
        let claims = config.check::<P>(token).await?;
        Ok(Bearer {
            claims,
            policy: PhantomData,
        })
    }
}

/// Why a request was refused; answers as the module doc's table says.
#[derive(Debug)]
pub enum BearerRejection {
    /// No `Authorization` header, or one of another scheme.
    Missing,
    /// An `Authorization: Bearer` header that breaks RFC 6750 §2.1.
    InvalidRequest(&'static str),
    /// The token was refused, and why.
    Rejected(Rejection),
    /// A scope is missing; carries the route's scopes for the challenge.
    InsufficientScope {
        missing: String,
        scopes: &'static [&'static str],
    },
    /// The store could not answer: nothing is let through unchecked.
    Store(StoreError),
    /// A consuming route without a store: a setup mistake, refused.
    NoStore,
}

impl BearerRejection {
    fn with_scopes(self, scopes: &'static [&'static str]) -> BearerRejection {
        match self {
            BearerRejection::Rejected(Rejection::InsufficientScope { missing }) => {
                BearerRejection::InsufficientScope { missing, scopes }
            }
            other => other,
        }
    }

    /// Status and stable `error` code.
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            BearerRejection::Missing => (StatusCode::UNAUTHORIZED, "invalid_token"),
            BearerRejection::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            BearerRejection::Rejected(r @ Rejection::InsufficientScope { .. }) => (StatusCode::FORBIDDEN, r.code()),
            BearerRejection::Rejected(r) => (StatusCode::UNAUTHORIZED, r.code()),
            BearerRejection::InsufficientScope { .. } => (StatusCode::FORBIDDEN, "insufficient_scope"),
            BearerRejection::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            BearerRejection::NoStore => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }

    fn description(&self) -> String {
        match self {
            BearerRejection::Missing => "the request carries no bearer token".into(),
            BearerRejection::InvalidRequest(why) => (*why).into(),
            BearerRejection::Rejected(r) => r.to_string(),
            BearerRejection::InsufficientScope { missing, .. } => Rejection::InsufficientScope {
                missing: missing.clone(),
            }
            .to_string(),
            BearerRejection::Store(_) => "the shared store cannot be reached; nothing was checked".into(),
            BearerRejection::NoStore => "internal error".into(),
        }
    }

    /// The `WWW-Authenticate` value, if this refusal carries one.
    fn challenge(&self) -> Option<String> {
        match self {
            BearerRejection::Missing => Some("Bearer".into()),
            BearerRejection::InvalidRequest(_) => Some("Bearer error=\"invalid_request\"".into()),
            BearerRejection::Rejected(r @ Rejection::InsufficientScope { .. }) => Some(format!(
                "Bearer error=\"insufficient_scope\", error_description=\"{}\"",
                r.code()
            )),
            // The code, never the description: it could echo parts of the token.
            BearerRejection::Rejected(r) => Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                r.code()
            )),
            BearerRejection::InsufficientScope { scopes, .. } => {
                let mut v = String::from("Bearer error=\"insufficient_scope\"");
                // RFC 6750 §3: scope tokens are NQCHARs, space-separated.
                let nqchar = |s: &&&str| {
                    s.bytes()
                        .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
                };
                let listed: Vec<&str> = scopes.iter().filter(nqchar).copied().collect();
                if !listed.is_empty() {
                    v.push_str(&format!(", scope=\"{}\"", listed.join(" ")));
                }
                Some(v)
            }
            BearerRejection::Store(_) | BearerRejection::NoStore => None,
        }
    }
}

impl fmt::Display for BearerRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status_code().1, self.description())
    }
}

impl std::error::Error for BearerRejection {}

impl IntoResponse for BearerRejection {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        match &self {
            BearerRejection::Store(cause) => tracing::warn!(error = %cause, "bearer check: store unavailable"),
            BearerRejection::NoStore => {
                tracing::error!("a route consumes tokens but the BearerConfig has no store (BearerConfig::with_store)")
            }
            _ => tracing::debug!(code, "bearer token refused"),
        }
        let body = serde_json::json!({ "error": code, "error_description": self.description() });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(v) = self.challenge().and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        response
    }
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1): exactly
/// one such header; the scheme in any case; one or more spaces; one token
/// of `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"` followed by any
/// `=` padding; nothing after it but whitespace.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, BearerRejection> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(BearerRejection::Missing);
    };
    if values.next().is_some() {
        return Err(BearerRejection::InvalidRequest("more than one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| BearerRejection::InvalidRequest("the Authorization header is not ASCII"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme (Basic, …): no Bearer credentials at all (§3.1).
        return Err(BearerRejection::Missing);
    }
    let token = rest.trim_start_matches(' ').trim_end_matches([' ', '\t']);
    if token.is_empty() {
        return Err(BearerRejection::InvalidRequest("no token after \"Bearer\""));
    }
    if !is_b64token(token) {
        return Err(BearerRejection::InvalidRequest(
            "the bearer token must be one b64token (RFC 6750 §2.1)",
        ));
    }
    Ok(token)
}

fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::clock::ManualClock;
    use crate::jose::{Algorithm, VerifyingKey};
    use crate::store::memory::MemoryStore;
    use crate::verifier::StaticKeys;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::{get, post};
    use axum::Router;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    const NOW: i64 = 1_800_000_000;
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn parse(values: &[&str]) -> Result<String, &'static str> {
        bearer_token(&headers(values))
            .map(str::to_owned)
            .map_err(|e| e.status_code().1)
    }

    #[test]
    fn bearer_header_parsing_follows_rfc_6750() {
        assert_eq!(parse(&["Bearer abc.DEF-_~+/=="]), Ok("abc.DEF-_~+/==".into()));
        assert_eq!(parse(&["bearer a.b.c"]), Ok("a.b.c".into()));
        assert_eq!(parse(&["BEARER a.b.c"]), Ok("a.b.c".into()));
        assert_eq!(parse(&["Bearer   a.b.c "]), Ok("a.b.c".into()));
        assert_eq!(parse(&[]), Err("invalid_token"));
        assert_eq!(parse(&["Basic dXNlcjpwYXNz"]), Err("invalid_token"));
        assert_eq!(parse(&["Bearerabc"]), Err("invalid_token"));
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer \"a\"",
            "Bearer a=b",
            "Bearer ===",
            "Bearer a\tb",
        ] {
            assert_eq!(parse(&[bad]), Err("invalid_request"), "{bad:?}");
        }
        assert_eq!(parse(&["Bearer a", "Bearer b"]), Err("invalid_request"));
    }

    /// An HS256 token over `claims` (the unit tests' key source is one secret).
    fn token(claims: Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg":"HS256","typ":"JWT"}).to_string());
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{payload}");
        let sig = crate::jose::alg::hmac_sha256(SECRET, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn claims(scopes: &[&str], jti: &str) -> Value {
        json!({"iss":"https://issuer.test","sub":"u1","aud":"plugin","iat":NOW,"exp":NOW+300,"jti":jti,"scopes":scopes})
    }

    struct Read;
    impl Policy for Read {
        const SCOPES: &'static [&'static str] = &["read:orders"];
    }
    struct WriteOnce;
    impl Policy for WriteOnce {
        const SCOPES: &'static [&'static str] = &["write:orders"];
        const CONSUME: bool = true;
    }

    #[derive(Clone)]
    struct AppState {
        auth: BearerConfig,
    }
    impl FromRef<AppState> for BearerConfig {
        fn from_ref(s: &AppState) -> BearerConfig {
            s.auth.clone()
        }
    }

    fn config(store: Option<Arc<MemoryStore>>) -> BearerConfig {
        let keys = StaticKeys::single(VerifyingKey::hmac(SECRET).unwrap());
        assert_eq!(keys.algorithms(), [Algorithm::HS256]);
        let validation = Validation {
            audience: Some("plugin".into()),
            ..Validation::new("https://issuer.test")
        };
        let c = BearerConfig::local(keys, validation, ManualClock::new(NOW)).unwrap();
        match store {
            Some(s) => c.with_store(s),
            None => c,
        }
    }

    fn router(auth: BearerConfig) -> Router {
        Router::new()
            .route("/any", get(|b: Bearer| async move { b.sub.clone() }))
            .route("/read", get(|b: Bearer<Read>| async move { b.claims.sub }))
            .route(
                "/write",
                post(|b: Bearer<WriteOnce>| async move { b.into_claims().jti }),
            )
            .with_state(AppState { auth })
    }

    async fn call(r: &Router, method: &str, path: &str, auth: Option<&str>) -> (StatusCode, Option<String>, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let resp = r.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let challenge = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, challenge, body)
    }

    #[tokio::test]
    async fn refusals_carry_status_challenge_and_code() {
        let r = router(config(None));
        let good = format!("Bearer {}", token(claims(&["read:orders"], "j1")));
        let (s, _, body) = call(&r, "GET", "/read", Some(&good)).await;
        assert_eq!((s, body), (StatusCode::OK, Value::String("u1".into())));

        let (s, ch, body) = call(&r, "GET", "/read", None).await;
        assert_eq!((s, ch.as_deref()), (StatusCode::UNAUTHORIZED, Some("Bearer")));
        assert_eq!(body["error"], "invalid_token");

        let (s, ch, body) = call(&r, "GET", "/read", Some("Bearer a b")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(ch.as_deref(), Some("Bearer error=\"invalid_request\""));
        assert_eq!(body["error"], "invalid_request");

        let mut forged = token(claims(&["read:orders"], "j1"));
        forged.push('A');
        let (s, ch, body) = call(&r, "GET", "/read", Some(&format!("Bearer {forged}"))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(
            ch.unwrap(),
            "Bearer error=\"invalid_token\", error_description=\"bad_signature\""
        );
        assert_eq!(body["error"], "bad_signature");
        assert!(body["error_description"].as_str().unwrap().contains("signature"));

        let mut wrong_aud = claims(&["read:orders"], "j1");
        wrong_aud["aud"] = json!("someone-else");
        let (s, _, body) = call(&r, "GET", "/any", Some(&format!("Bearer {}", token(wrong_aud)))).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("wrong_audience"))
        );

        let mut expired = claims(&[], "j1");
        expired["iat"] = json!(NOW - 1000);
        expired["exp"] = json!(NOW - 100);
        let (s, _, body) = call(&r, "GET", "/any", Some(&format!("Bearer {}", token(expired)))).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("token_expired"))
        );

        let chat_only = format!("Bearer {}", token(claims(&["chat"], "j2")));
        let (s, _, _) = call(&r, "GET", "/any", Some(&chat_only)).await;
        assert_eq!(s, StatusCode::OK);
        let (s, ch, body) = call(&r, "GET", "/read", Some(&chat_only)).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(
            ch.unwrap(),
            "Bearer error=\"insufficient_scope\", scope=\"read:orders\""
        );
        assert_eq!(body["error"], "insufficient_scope");
    }

    #[tokio::test]
    async fn consume_refuses_a_second_use_and_needs_a_store() {
        let store = Arc::new(MemoryStore::new(1000));
        let r = router(config(Some(Arc::clone(&store))));
        let write = format!("Bearer {}", token(claims(&["write:orders"], "once")));
        let (s, _, body) = call(&r, "POST", "/write", Some(&write)).await;
        assert_eq!((s, body), (StatusCode::OK, Value::String("once".into())));
        let (s, ch, body) = call(&r, "POST", "/write", Some(&write)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "token_replayed");
        assert!(ch.unwrap().starts_with("Bearer error=\"invalid_token\""));
        // A token missing the scope is refused before it is consumed.
        let read = format!("Bearer {}", token(claims(&["read:orders"], "other")));
        assert_eq!(call(&r, "POST", "/write", Some(&read)).await.0, StatusCode::FORBIDDEN);
        assert!(Store::mark_once(&*store, "jti:other", NOW + 400, NOW).await.unwrap());
        // Reusable routes never consume.
        let (s, _, _) = call(&r, "GET", "/any", Some(&write)).await;
        assert_eq!(s, StatusCode::OK);
        // Revoked tokens are refused on every route once a store is configured.
        Store::revoke_jti(&*store, "rv", NOW + 400, NOW).await.unwrap();
        let revoked = format!("Bearer {}", token(claims(&[], "rv")));
        let (s, _, body) = call(&r, "GET", "/any", Some(&revoked)).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("token_revoked"))
        );
        let revoked_write = format!("Bearer {}", token(claims(&["write:orders"], "rv")));
        let (s, _, body) = call(&r, "POST", "/write", Some(&revoked_write)).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("token_revoked"))
        );

        let no_store = router(config(None));
        let fresh = format!("Bearer {}", token(claims(&["write:orders"], "x")));
        let (s, _, body) = call(&no_store, "POST", "/write", Some(&fresh)).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, Some("server_error"))
        );
    }

    #[test]
    fn a_config_without_audience_is_refused() {
        let keys = StaticKeys::single(VerifyingKey::hmac(SECRET).unwrap());
        let err = BearerConfig::local(keys, Validation::new("https://issuer.test"), ManualClock::new(NOW)).unwrap_err();
        assert_eq!(err, BearerConfigError::NoAudience);
    }
}
