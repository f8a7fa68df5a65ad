//! An axum extractor for plugin backends: a handler that takes a
//! [`Bearer<P>`] runs only for a request carrying a valid tokensmith token,
//! and gets its verified [`Claims`].
//!
//! This module reads `Authorization: Bearer <token>` strictly (RFC 6750
//! §2.1: scheme case-insensitive, one token of the b64token alphabet, one
//! header), or `Authorization: DPoP <token>` with one `DPoP: <proof>`
//! header (RFC 9449 §7.1, with [`BearerConfig::with_dpop`]); everything else
//! is shared with the tokensmith service itself, so a token cannot be
//! accepted here and refused there:
//!
//! - the signature and claims: a [`Verifier`] or [`RemoteVerifier`];
//! - revocation (by `jti` and by `sub`, within the client the token was
//!   issued to) and single use: [`Authority::admit`];
//! - DPoP: a bound token only with a proof by its key for this request
//!   (method, and URL = the configured external base URL + the path), with
//!   `ath`, its `jti` spent in the store; a bound token sent as `Bearer` is
//!   refused: [`Authority::admit_dpop`];
//! - opaque tokens (`token_format = "opaque"`), whose claims are in the
//!   shared store: [`Authority::opaque_claims`], with a store only;
//! - the answer to a refusal: [`ApiError`], the service's own mapping
//!   (status, `WWW-Authenticate: Bearer` challenge, `{error, error_description}`).
//!
//! | case | status | challenge |
//! |---|---|---|
//! | no credentials, or another scheme | 401 `invalid_token` | `Bearer` (no error, §3.1) |
//! | a malformed `Authorization` header | 400 `invalid_request` | `Bearer error="invalid_request"` |
//! | a rejected token (expired, bad signature, wrong audience, …, replayed, revoked, issued before the store lost its state) | 401 with its code | `Bearer error="invalid_token"` |
//! | a scope the route requires is missing | 403 `insufficient_scope` | `Bearer error="insufficient_scope", scope="…"` |
//! | a DPoP-bound token without a valid proof, or as `Bearer`; a proof for another key, request or token; a reused proof | 401 `invalid_dpop_proof` | `DPoP error="invalid_dpop_proof", algs="…"` |
//! | a proof without the server nonce (`require_nonce`) | 401 `use_dpop_nonce` + `DPoP-Nonce` | `DPoP error="use_dpop_nonce", algs="…"` |
//! | the shared store cannot be reached (or did not answer a consume: its outcome is unknown) | 503 `store_unavailable` | none |
//! | the memory store is full | 503 `store_full` | none |
//!
//! What a route requires is a type: `Bearer<P>` for a [`Policy`] `P` that
//! names the scopes and whether the token is single-use there
//! ([`Policy::CONSUME`]: its `jti` is marked in the shared store, and a
//! second use answers 401 `token_replayed`). The configuration
//! ([`BearerConfig`]: key source, validation, optional store) comes from
//! the router's state through `FromRef`.
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
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::authority::{Authority, AuthorityError, Presentation};
use crate::claims::{Claims, Rejection, Validation};
use crate::clock::SharedClock;
use crate::dpop::{DpopError, DpopRules, ProofRequest};
use crate::jwks::{RemoteJwks, RemoteVerifier};
use crate::server::error::ApiError;
use crate::store::Store;
use crate::verifier::{KeySource, Verifier};

/// What a route requires of a token, as a type.
///
/// ```
/// use tokensmith::Policy;
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
    /// The token's verified claims.
    pub claims: Claims,
    policy: PhantomData<fn() -> P>,
}

impl<P: Policy> Bearer<P> {
    /// The claims, owned.
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

/// Token in, claims out, for one request's scopes: over fetched keys or
/// keys in memory.
trait VerifyToken: Send + Sync {
    fn verify<'a>(&'a self, token: &'a str, scopes: &'a [String]) -> BoxFuture<'a, Result<Claims, Rejection>>;
    /// The rules every token must pass (opaque tokens too).
    fn rules(&self) -> &Validation;
}

impl VerifyToken for RemoteVerifier {
    fn verify<'a>(&'a self, token: &'a str, scopes: &'a [String]) -> BoxFuture<'a, Result<Claims, Rejection>> {
        Box::pin(self.verify_for(token, self.validation().audience.as_deref(), scopes))
    }
    fn rules(&self) -> &Validation {
        self.validation()
    }
}

impl<K: KeySource + 'static> VerifyToken for Verifier<K> {
    fn verify<'a>(&'a self, token: &'a str, scopes: &'a [String]) -> BoxFuture<'a, Result<Claims, Rejection>> {
        let audience = self.validation().audience.as_deref();
        Box::pin(std::future::ready(self.verify_for(token, audience, scopes)))
    }
    fn rules(&self) -> &Validation {
        self.validation()
    }
}

/// [`Authority::admit`] over some [`Store`], object-safe.
trait Admit: Send + Sync {
    fn admit<'a>(
        &'a self,
        claims: &'a Claims,
        consume: bool,
        leeway: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<(), AuthorityError>>;

    /// [`Authority::admit_dpop`] over this store.
    fn admit_dpop<'a>(
        &'a self,
        rules: &'a DpopRules,
        claims: &'a Claims,
        token: &'a str,
        presented: Presentation<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<(), AuthorityError>>;

    /// [`Authority::opaque_claims`]: an opaque token's claims from the store.
    fn opaque<'a>(
        &'a self,
        token: &'a str,
        validation: &'a Validation,
        now: i64,
        scopes: &'a [String],
    ) -> BoxFuture<'a, Result<Claims, AuthorityError>>;
}

impl<S: Store> Admit for S {
    fn admit<'a>(
        &'a self,
        claims: &'a Claims,
        consume: bool,
        leeway: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<(), AuthorityError>> {
        Box::pin(Authority::admit(self, claims, consume, leeway, now))
    }

    fn admit_dpop<'a>(
        &'a self,
        rules: &'a DpopRules,
        claims: &'a Claims,
        token: &'a str,
        presented: Presentation<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<(), AuthorityError>> {
        Box::pin(Authority::admit_dpop(self, rules, claims, token, presented, now))
    }

    fn opaque<'a>(
        &'a self,
        token: &'a str,
        validation: &'a Validation,
        now: i64,
        scopes: &'a [String],
    ) -> BoxFuture<'a, Result<Claims, AuthorityError>> {
        let audience = validation.audience.as_deref();
        Box::pin(Authority::opaque_claims(self, token, validation, now, audience, scopes))
    }
}

/// How [`Bearer`] checks tokens. Put it in the router's state (or derive it
/// with `FromRef` from yours); cloning is cheap.
///
/// A route that needs a scope and takes each token once, with the issuer's
/// Redis shared so that a token revoked or used there is refused here too:
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::{sync::Arc, time::Duration};
/// use axum::{routing::post, Router};
/// use tokensmith::{Bearer, BearerConfig, Policy, RedisStore, RemoteJwks, Validation};
///
/// struct PlaceOrder;
/// impl Policy for PlaceOrder {
///     const SCOPES: &'static [&'static str] = &["write:orders"];
///     const CONSUME: bool = true;
/// }
/// async fn place_order(token: Bearer<PlaceOrder>) -> String {
///     format!("order placed for {}", token.sub)
/// }
///
/// let jwks = Arc::new(RemoteJwks::from_url("https://auth.example.com/.well-known/jwks.json")?);
/// let validation = Validation::new("https://auth.example.com").audience("orders-api");
/// // The last argument is the store's epoch: see `RedisStore::connect`.
/// let store = RedisStore::connect("redis://127.0.0.1:6379", "https://auth.example.com", Duration::from_secs(2), 0).await?;
/// let bearer = BearerConfig::from_remote(jwks, validation)?.with_store(Arc::new(store));
/// let app: Router = Router::new().route("/orders", post(place_order)).with_state(bearer);
/// # let _ = app; Ok(()) }
/// ```
#[derive(Clone)]
pub struct BearerConfig {
    verifier: Arc<dyn VerifyToken>,
    store: Option<Arc<dyn Admit>>,
    clock: SharedClock,
    leeway: i64,
    dpop: Option<Arc<DpopResource>>,
}

/// How a resource server checks DPoP proofs: the rules, and the URL its
/// clients address it at.
#[derive(Debug)]
struct DpopResource {
    rules: DpopRules,
    base_url: String,
}

/// A token as a request presented it.
#[derive(Clone, Copy, Debug)]
pub enum Presented<'a> {
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// `Authorization: DPoP <token>` with the request's `DPoP` proof.
    Dpop {
        /// The access token.
        token: &'a str,
        /// The `DPoP` header.
        proof: &'a str,
        /// The request's method.
        method: &'a str,
        /// The request's path (the URL is the configured base URL + this).
        path: &'a str,
    },
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
#[non_exhaustive]
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
    /// [`BearerConfig::remote`] on the clock of `jwks` (the system clock
    /// for [`RemoteJwks::from_url`]): the common case.
    pub fn from_remote(jwks: Arc<RemoteJwks>, validation: Validation) -> Result<BearerConfig, BearerConfigError> {
        let clock = Arc::clone(jwks.clock());
        BearerConfig::remote(jwks, validation, clock)
    }

    /// Tokens checked against the issuer's keys fetched from `jwks`
    /// (refetched on rotation), with `validation` (issuer, audience, leeway),
    /// revocations and single use judged on `clock`. Refused when
    /// `validation` names no audience.
    pub fn remote(
        jwks: Arc<RemoteJwks>,
        validation: Validation,
        clock: SharedClock,
    ) -> Result<BearerConfig, BearerConfigError> {
        let leeway = checked(&validation)?;
        Ok(BearerConfig {
            verifier: Arc::new(jwks.verifier(validation)),
            store: None,
            clock,
            leeway,
            dpop: None,
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
        let verifier = Arc::new(Verifier::new(keys, validation, Arc::clone(&clock)));
        Ok(BearerConfig {
            verifier,
            store: None,
            clock,
            leeway,
            dpop: None,
        })
    }

    /// Checks revocations in `store` for every token, and marks `jti`s there
    /// on [`Policy::CONSUME`] routes. Share the store (same Redis and
    /// namespace) with tokensmith, and a token consumed or revoked there
    /// (by `jti` or by `sub`) is refused here too: the rules and the keys
    /// are the service's own ([`Authority::admit`]).
    pub fn with_store<S: Store>(mut self, store: Arc<S>) -> BearerConfig {
        self.store = Some(store);
        self
    }

    /// Accepts `Authorization: DPoP` with a proof checked by `rules` (iat
    /// window, nonces: share `[dpop] nonce_secret` with tokensmith to
    /// require its nonces), for requests addressed at `base_url` (scheme,
    /// host and port the clients use, e.g. `https://api.example.com`; behind
    /// a proxy, the external one) plus the request's path. Needs a store
    /// ([`with_store`](BearerConfig::with_store)) for the proofs' `jti`s.
    /// Without it, DPoP-bound tokens are refused.
    pub fn with_dpop(mut self, rules: DpopRules, base_url: impl Into<String>) -> BearerConfig {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        self.dpop = Some(Arc::new(DpopResource { rules, base_url }));
        self
    }

    /// Verifies `token` for a route with policy `P`.
    pub async fn check<P: Policy>(&self, token: &str) -> Result<Claims, BearerRejection> {
        self.check_presented::<P>(Presented::Bearer(token)).await
    }

    /// Verifies a token presented as `presented` for a route with policy `P`.
    pub async fn check_presented<P: Policy>(&self, presented: Presented<'_>) -> Result<Claims, BearerRejection> {
        let token = match presented {
            Presented::Bearer(t) | Presented::Dpop { token: t, .. } => t,
        };
        let scopes: Vec<String> = P::SCOPES.iter().map(|s| (*s).to_owned()).collect();
        let refused = |e: AuthorityError| match e {
            AuthorityError::Rejected(Rejection::InsufficientScope { missing }) => ApiError::InsufficientScope {
                missing,
                scopes: scopes.clone(),
            },
            e => ApiError::from(e),
        };
        // An opaque token (no dots) can only be read where its claims are:
        // in the store shared with tokensmith.
        let claims = match &self.store {
            Some(store) if crate::authority::looks_opaque(token) => store
                .opaque(token, self.verifier.rules(), self.clock.now(), &scopes)
                .await
                .map_err(refused)?,
            _ => self
                .verifier
                .verify(token, &scopes)
                .await
                .map_err(|r| refused(r.into()))?,
        };
        self.dpop_check(&claims, presented).await?;
        match &self.store {
            Some(store) => store
                .admit(&claims, P::CONSUME, self.leeway, self.clock.now())
                .await
                .map_err(ApiError::from)?,
            None if P::CONSUME => {
                return Err(ApiError::Internal(
                    "a route consumes tokens but the BearerConfig has no store (BearerConfig::with_store)",
                )
                .into())
            }
            None => {}
        }
        Ok(claims)
    }
}

impl BearerConfig {
    /// [`Authority::admit_dpop`] for `presented`, before any consume.
    async fn dpop_check(&self, claims: &Claims, presented: Presented<'_>) -> Result<(), BearerRejection> {
        let refuse = |why: &str| BearerRejection(ApiError::from(AuthorityError::from(DpopError::Invalid(why.into()))));
        let (Some(dpop), Some(store)) = (&self.dpop, &self.store) else {
            return match presented {
                Presented::Bearer(_) => {
                    Authority::dpop_presentation(claims, false).map_err(|e| BearerRejection(ApiError::from(e)))
                }
                Presented::Dpop { .. } => Err(refuse("this resource does not accept DPoP")),
            };
        };
        let url;
        let presentation = match presented {
            Presented::Bearer(_) => Presentation::Bearer,
            Presented::Dpop {
                proof, method, path, ..
            } => {
                url = format!("{}{path}", dpop.base_url);
                Presentation::Dpop(ProofRequest {
                    proof,
                    method,
                    url: &url,
                    access_token: None,
                })
            }
        };
        let token = match presented {
            Presented::Bearer(t) | Presented::Dpop { token: t, .. } => t,
        };
        store
            .admit_dpop(&dpop.rules, claims, token, presentation, self.clock.now())
            .await
            .map_err(|e| BearerRejection(ApiError::from(e)))
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
        let (scheme, token) = authorization_token(&parts.headers)?;
        let presented = match scheme {
            Scheme::Bearer => Presented::Bearer(token),
            Scheme::Dpop => {
                let proof = crate::server::dpop_proof_header(&parts.headers)
                    .map_err(|e| BearerRejection(ApiError::from(AuthorityError::from(e))))?
                    .ok_or_else(|| {
                        BearerRejection(ApiError::from(AuthorityError::from(DpopError::Invalid(
                            "Authorization: DPoP needs a DPoP proof header".into(),
                        ))))
                    })?;
                Presented::Dpop {
                    token,
                    proof,
                    method: parts.method.as_str(),
                    path: parts.uri.path(),
                }
            }
        };
        let config = BearerConfig::from_ref(state);
        let claims = config.check_presented::<P>(presented).await?;
        Ok(Bearer {
            claims,
            policy: PhantomData,
        })
    }
}

/// Why a request was refused; answers as the module doc's table says,
/// through the service's own [`ApiError`].
#[derive(Debug)]
pub struct BearerRejection(ApiError);

impl BearerRejection {
    /// Status and stable `error` code.
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        self.0.status_code()
    }
}

impl From<ApiError> for BearerRejection {
    fn from(e: ApiError) -> Self {
        BearerRejection(e)
    }
}

impl fmt::Display for BearerRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BearerRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl IntoResponse for BearerRejection {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1): exactly
/// one such header; the scheme in any case; one or more spaces; one token
/// of `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"` followed by any
/// `=` padding; nothing after it but whitespace.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, BearerRejection> {
    match authorization_token(headers)? {
        (Scheme::Bearer, token) => Ok(token),
        (Scheme::Dpop, _) => Err(BearerRejection(ApiError::NoBearerToken)),
    }
}

/// The scheme of an `Authorization` header with a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `Bearer` (RFC 6750).
    Bearer,
    /// `DPoP` (RFC 9449 §7.1).
    Dpop,
}

/// The scheme and token of an `Authorization: Bearer` or `Authorization:
/// DPoP` header, read as [`bearer_token`] reads the first.
pub fn authorization_token(headers: &HeaderMap) -> Result<(Scheme, &str), BearerRejection> {
    let bad = |why| BearerRejection(ApiError::BadAuthorization(why));
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(BearerRejection(ApiError::NoBearerToken));
    };
    if values.next().is_some() {
        return Err(bad("more than one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| bad("the Authorization header is not ASCII"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        // Another scheme (Basic, …): no Bearer credentials at all (§3.1).
        return Err(BearerRejection(ApiError::NoBearerToken));
    };
    let token = rest.trim_start_matches(' ').trim_end_matches([' ', '\t']);
    if token.is_empty() {
        return Err(bad("no token after \"Bearer\""));
    }
    if !is_b64token(token) {
        return Err(bad("the bearer token must be one b64token (RFC 6750 §2.1)"));
    }
    Ok((scheme, token))
}

fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

#[cfg(test)]
mod tests;
