//! `RemoteJwks`: a verifier's view of an issuer's JWKS over HTTP.
//!
//! What it promises, in the order a request meets it:
//! - the set is kept for the server's `Cache-Control: max-age`, clamped to
//!   [30 s, 1 h] (5 min without one), and revalidated with `If-None-Match`
//!   (a 304 keeps the keys);
//! - an unknown `kid` triggers a refetch only when the last fetch is a
//!   cooldown (30 s) old, so a flood of forged kids costs the issuer at most
//!   one request per cooldown;
//! - concurrent callers share one in-flight fetch (single flight);
//! - a failed refetch keeps serving the last good set for up to `stale_for`
//!   (stale-if-error) instead of dropping every key, and the next attempt
//!   waits out a backoff (1 s, 2 s, 4 s, … up to the cooldown) so a dead
//!   issuer is not asked on every verification; past `stale_for` the set is
//!   dropped and every token is refused (`unknown_kid`);
//! - only `use: sig` (or no `use`) keys of supported types are taken, and a
//!   set with private key members is refused;
//! - every fetch has a timeout and a size cap, follows no redirect, and
//!   requires https except to a loopback address.
//!
//! The token never chooses where keys come from: the URL is configuration.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use reqwest::header::{ACCEPT, CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use reqwest::{StatusCode, Url};

use crate::claims::{Claims, Rejection, Validation};
use crate::clock::{SharedClock, SystemClock};
use crate::jose::{jws, JwkSet, VerifyingKey};
use crate::verifier::{KeySource, StaticKeys};

/// Tunables; every field documents its default.
#[derive(Clone, Debug)]
pub struct JwksOptions {
    /// Per-request timeout, connect included. Default 5 s.
    pub timeout: Duration,
    /// The largest JWKS accepted, in bytes. Default 256 KiB.
    pub max_bytes: usize,
    /// The least time a fetched set is fresh, whatever its `max-age`, in seconds. Default 30.
    pub min_ttl: i64,
    /// The most time a fetched set is fresh, whatever its `max-age`, in seconds. Default 3600.
    pub max_ttl: i64,
    /// Freshness without a `max-age`, in seconds. Default 300.
    pub default_ttl: i64,
    /// The least time between two refetches caused by unknown kids, in seconds. Default 30.
    pub cooldown: i64,
    /// How long past freshness a set is still used while refetches fail, in seconds. Default 6 h.
    pub stale_for: i64,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            timeout: Duration::from_secs(5),
            max_bytes: 256 * 1024,
            min_ttl: 30,
            max_ttl: 3600,
            default_ttl: 300,
            cooldown: 30,
            stale_for: 6 * 3600,
        }
    }
}

/// Why a JWKS could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksError {
    /// Not a URL, or a scheme/host this client refuses (plain http off loopback).
    BadUrl(String),
    /// The issuer could not be reached, timed out, or answered an error status.
    Unavailable(String),
    /// The answer is not a usable JWKS (or discovery document).
    Invalid(String),
}

impl JwksError {
    /// The stable code the CLI prints.
    pub fn code(&self) -> &'static str {
        match self {
            JwksError::BadUrl(_) => "invalid_request",
            JwksError::Unavailable(_) => "jwks_unavailable",
            JwksError::Invalid(_) => "invalid_jwks",
        }
    }
}

impl std::fmt::Display for JwksError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksError::BadUrl(w) | JwksError::Unavailable(w) | JwksError::Invalid(w) => f.write_str(w),
        }
    }
}

impl std::error::Error for JwksError {}

/// https, or http to a loopback address only.
pub fn check_url(url: &str) -> Result<Url, JwksError> {
    let parsed = Url::parse(url).map_err(|e| JwksError::BadUrl(format!("{url:?} is not a URL: {e}")))?;
    match parsed.scheme() {
        "https" | "http" if secure_transport(&parsed) => Ok(parsed),
        "http" => Err(JwksError::BadUrl(format!(
            "{url} must use https (plain http is allowed for loopback only)"
        ))),
        other => Err(JwksError::BadUrl(format!("{url}: scheme {other:?} is not http(s)"))),
    }
}

/// The transport rule of every outgoing request that may carry something
/// worth protecting (a fetch of keys, the session check): https, or plain
/// http to a loopback address, which never leaves this machine.
pub(crate) fn secure_transport(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => is_loopback(url),
        _ => false,
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// An HTTP client for fetching public documents: rustls with this crate's
/// provider, system roots, a timeout, and no redirects (a redirect could
/// lead off https).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, JwksError> {
    let tls = rustls::ClientConfig::builder_with_provider(crate::jose::alg::tls_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| JwksError::Unavailable(format!("TLS set-up: {e}")))?
        .with_root_certificates(root_store())
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tokensmith/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| JwksError::Unavailable(format!("HTTP client set-up: {e}")))
}

fn root_store() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    roots
}

/// Reads a body up to `max` bytes.
async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, JwksError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(JwksError::Invalid(format!("the document is over {max} bytes")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| JwksError::Unavailable(e.to_string()))? {
        if body.len() + chunk.len() > max {
            return Err(JwksError::Invalid(format!("the document is over {max} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `max-age` from a Cache-Control value; `no-store`/`no-cache` count as 0.
fn max_age(value: &str) -> Option<i64> {
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(0);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            age = n.trim_matches('"').parse::<i64>().ok();
        }
    }
    age
}

struct Cached {
    keys: Arc<StaticKeys>,
    etag: Option<String>,
    fresh_until: i64,
    stale_until: i64,
}

/// What past fetches decide about the next one.
#[derive(Default)]
struct Attempts {
    /// When the last fetch was made, whatever its outcome: an unknown kid
    /// refetches only a cooldown after it, so a forged-kid flood costs the
    /// issuer at most one request per cooldown.
    last_at: Option<i64>,
    /// Failures in a row, for the retry backoff.
    failures: u32,
    /// After a failure, no fetch before this time: a dead issuer is not
    /// asked again on every verification.
    retry_at: i64,
    /// Why the last fetch failed, for callers that find no usable set.
    last_error: Option<JwksError>,
}

/// A remote JWKS, cached and refreshed as the [module doc](self) describes.
/// Share one per issuer (`Arc<RemoteJwks>`); verify through
/// [`RemoteJwks::verifier`] or the [`Bearer`](crate::Bearer) extractor.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use tokensmith::{RemoteJwks, Validation};
/// let jwks = Arc::new(RemoteJwks::from_url("https://auth.example.com/.well-known/jwks.json")?);
/// let verifier = jwks.verifier(Validation::new("https://auth.example.com").audience("orders-api"));
/// let claims = verifier.verify("eyJ…").await?;
/// # let _ = claims; Ok(()) }
/// ```
pub struct RemoteJwks {
    url: Url,
    http: reqwest::Client,
    opts: JwksOptions,
    clock: SharedClock,
    cached: ArcSwapOption<Cached>,
    /// Single flight: one fetch at a time; a tokio Mutex because the fetch
    /// awaits while holding it. Whoever waited on it decides again whether
    /// to fetch, so callers queued behind a fetch use its result.
    fetch_lock: tokio::sync::Mutex<()>,
    /// A std Mutex: never held across an await.
    attempts: Mutex<Attempts>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// A JWKS at `url`, with `opts`, on `clock`. Nothing is fetched until
    /// first needed. `url` must be https, or http to a loopback address.
    pub fn new(url: &str, opts: JwksOptions, clock: SharedClock) -> Result<RemoteJwks, JwksError> {
        let http = http_client(opts.timeout)?;
        RemoteJwks::with_http(url, opts, clock, http)
    }

    /// A JWKS at `url` with the default [`JwksOptions`], on the system clock.
    pub fn from_url(url: &str) -> Result<RemoteJwks, JwksError> {
        RemoteJwks::new(url, JwksOptions::default(), SystemClock::shared())
    }

    fn with_http(
        url: &str,
        opts: JwksOptions,
        clock: SharedClock,
        http: reqwest::Client,
    ) -> Result<RemoteJwks, JwksError> {
        let url = check_url(url)?;
        Ok(RemoteJwks {
            url,
            http,
            opts,
            clock,
            cached: ArcSwapOption::empty(),
            fetch_lock: tokio::sync::Mutex::new(()),
            attempts: Mutex::new(Attempts::default()),
            fetches: AtomicU64::new(0),
        })
    }

    /// Finds the JWKS from an issuer's `/.well-known/openid-configuration`.
    /// The discovery document's `issuer` must equal `issuer` (OpenID
    /// Connect Discovery §4.3), and its `jwks_uri` passes the same URL rules.
    pub async fn discover(issuer: &str, opts: JwksOptions, clock: SharedClock) -> Result<RemoteJwks, JwksError> {
        let base = check_url(issuer)?;
        let doc_url = format!(
            "{}/.well-known/openid-configuration",
            base.as_str().trim_end_matches('/')
        );
        let http = http_client(opts.timeout)?;
        let resp = http
            .get(&doc_url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable(&doc_url, &e))?;
        if resp.status() != StatusCode::OK {
            return Err(JwksError::Unavailable(format!("{doc_url} answered {}", resp.status())));
        }
        let body = read_capped(resp, opts.max_bytes).await?;
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| JwksError::Invalid(format!("discovery document: {e}")))?;
        if doc.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
            return Err(JwksError::Invalid("the discovery document names another issuer".into()));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| JwksError::Invalid("the discovery document has no jwks_uri".into()))?;
        RemoteJwks::with_http(jwks_uri, opts, clock, http)
    }

    /// The JWKS URL.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The clock freshness and cooldowns are judged on.
    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// How many HTTP fetches this instance has made (304s and failures included).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The current key set, fetching it first when missing or stale.
    pub async fn key_set(&self) -> Result<Arc<StaticKeys>, JwksError> {
        self.ensure(None).await?;
        self.cached
            .load_full()
            .map(|c| Arc::clone(&c.keys))
            .ok_or_else(|| JwksError::Unavailable("no key set".into()))
    }

    /// The key for `kid`, refetching on an unknown kid within the cooldown rules.
    pub async fn key(&self, kid: Option<&str>) -> Result<Arc<VerifyingKey>, Rejection> {
        // A fetch failure was logged where it happened; what is left is
        // whether the cached set (if any) holds the key.
        let _ = self.ensure(kid).await;
        self.cached_key(kid)
    }

    fn attempts(&self) -> std::sync::MutexGuard<'_, Attempts> {
        // The bookkeeping stays consistent even if a holder panicked.
        self.attempts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `kid` at `now` calls for a fetch: no set, a set past its
    /// freshness, or an unknown kid a cooldown after the last fetch; never
    /// while backing off after a failure.
    fn wants_fetch(&self, kid: Option<&str>, now: i64) -> bool {
        let attempts = self.attempts();
        if now < attempts.retry_at {
            return false;
        }
        match self.cached.load().as_ref() {
            None => true,
            Some(c) if now >= c.fresh_until => true,
            Some(c) => {
                kid.is_some()
                    && c.keys.key_for(kid).is_err()
                    && attempts
                        .last_at
                        .is_none_or(|t| now >= t.saturating_add(self.opts.cooldown))
            }
        }
    }

    /// Ok when the cached set may be used at `now`: fresh, or stale but
    /// within `stale_for`. Otherwise why not.
    fn usable(&self, now: i64) -> Result<(), JwksError> {
        if self.cached.load().as_ref().is_some_and(|c| now < c.stale_until) {
            return Ok(());
        }
        Err(self
            .attempts()
            .last_error
            .clone()
            .unwrap_or_else(|| JwksError::Unavailable(format!("no usable key set from {}", self.url))))
    }

    /// Makes sure the cache is usable for `kid`: fresh, or refetched.
    async fn ensure(&self, kid: Option<&str>) -> Result<(), JwksError> {
        if !self.wants_fetch(kid, self.clock.now()) {
            return self.usable(self.clock.now());
        }
        let _flight = self.fetch_lock.lock().await;
        // Decide again under the lock: the fetch we queued behind may have
        // brought the key, or started the cooldown or the backoff.
        let now = self.clock.now();
        if !self.wants_fetch(kid, now) {
            return self.usable(now);
        }
        self.attempts().last_at = Some(now);
        match self.fetch(now).await {
            Ok(()) => {
                let mut a = self.attempts();
                a.failures = 0;
                a.retry_at = 0;
                a.last_error = None;
                Ok(())
            }
            Err(e) => {
                let retry_at = {
                    let mut a = self.attempts();
                    a.failures = a.failures.saturating_add(1);
                    a.retry_at = now.saturating_add(self.backoff(a.failures));
                    a.last_error = Some(e.clone());
                    a.retry_at
                };
                let stale_ok = self.usable(now).is_ok();
                tracing::warn!(url = %self.url, error = %e, retry_at, stale_ok, "JWKS fetch failed");
                if stale_ok {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Seconds to wait after `failures` failed fetches in a row: 1, 2, 4, …
    /// up to the cooldown.
    fn backoff(&self, failures: u32) -> i64 {
        let exp = failures.saturating_sub(1).min(20);
        (1i64 << exp).min(self.opts.cooldown.max(1))
    }

    async fn fetch(&self, now: i64) -> Result<(), JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let previous = self.cached.load_full();
        let mut req = self.http.get(self.url.clone()).header(ACCEPT, "application/json");
        if let Some(etag) = previous.as_ref().and_then(|c| c.etag.as_deref()) {
            req = req.header(IF_NONE_MATCH, etag);
        }
        let resp = req.send().await.map_err(|e| unavailable(self.url.as_str(), &e))?;
        let ttl = resp
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(self.opts.default_ttl)
            .clamp(self.opts.min_ttl, self.opts.max_ttl);
        let etag = resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let fresh_until = now.saturating_add(ttl);
        let stale_until = fresh_until.saturating_add(self.opts.stale_for);
        match resp.status() {
            StatusCode::NOT_MODIFIED => {
                let prev = previous.ok_or_else(|| JwksError::Invalid("304 without a cached set".into()))?;
                let keys = Arc::clone(&prev.keys);
                let etag = etag.or_else(|| prev.etag.clone());
                self.cached.store(Some(Arc::new(Cached {
                    keys,
                    etag,
                    fresh_until,
                    stale_until,
                })));
                Ok(())
            }
            StatusCode::OK => {
                let body = read_capped(resp, self.opts.max_bytes).await?;
                let set: JwkSet =
                    serde_json::from_slice(&body).map_err(|e| JwksError::Invalid(format!("not a JWKS: {e}")))?;
                let keys = StaticKeys::from_jwks(&set).map_err(|e| JwksError::Invalid(e.to_string()))?;
                self.cached.store(Some(Arc::new(Cached {
                    keys: Arc::new(keys),
                    etag,
                    fresh_until,
                    stale_until,
                })));
                Ok(())
            }
            status => Err(JwksError::Unavailable(format!("{} answered {status}", self.url))),
        }
    }

    /// A verifier of this issuer's tokens with `validation`: the only way
    /// to verify against remote keys, and async, so that an unknown `kid`
    /// is fetched before the token is judged.
    pub fn verifier(self: &Arc<Self>, validation: Validation) -> RemoteVerifier {
        RemoteVerifier {
            jwks: Arc::clone(self),
            validation,
        }
    }
}

/// Verifies tokens against a [`RemoteJwks`], fetching keys as needed.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use tokensmith::{JwksOptions, RemoteJwks, SystemClock, Validation};
/// let jwks = RemoteJwks::discover("https://auth.example.com", JwksOptions::default(), SystemClock::shared()).await?;
/// let verifier = Arc::new(jwks).verifier(Validation::new("https://auth.example.com").audience("orders-api"));
/// let claims = verifier.verify("eyJ…").await?;
/// println!("{}", claims.sub);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RemoteVerifier {
    jwks: Arc<RemoteJwks>,
    validation: Validation,
}

impl RemoteVerifier {
    /// The validation every token must pass.
    pub fn validation(&self) -> &Validation {
        &self.validation
    }

    /// The keys it verifies with.
    pub fn jwks(&self) -> &Arc<RemoteJwks> {
        &self.jwks
    }

    /// Verifies `token` for the validation's audience and scopes.
    pub async fn verify(&self, token: &str) -> Result<Claims, Rejection> {
        let v = &self.validation;
        self.verify_for(token, v.audience.as_deref(), &v.required_scopes).await
    }

    /// Verifies `token` for one request's audience and scopes.
    pub async fn verify_for(
        &self,
        token: &str,
        audience: Option<&str>,
        scopes: &[String],
    ) -> Result<Claims, Rejection> {
        let jws = jws::decode(token)?;
        let key = self.jwks.key(jws.header.kid.as_deref()).await?;
        crate::verifier::check(&jws, &key, &self.validation, self.jwks.clock.now(), audience, scopes)
    }
}

/// A failed request as one line: the URL (configuration, not a secret),
/// then the error and every cause below it (`connection refused`, a TLS
/// alert, a timeout), which reqwest's own message leaves out.
fn unavailable(url: &str, e: &reqwest::Error) -> JwksError {
    JwksError::Unavailable(format!("{url}: {}", cause_chain(e)))
}

/// `e`'s message and its sources', joined with `: `, repeats dropped
/// (libraries often repeat their source's message in their own).
pub(crate) fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

impl RemoteJwks {
    /// The key for `kid` in the cached set only.
    ///
    /// A set past `stale_for` is no longer trusted: its keys may have been
    /// withdrawn long ago, so every kid is then unknown.
    fn cached_key(&self, kid: Option<&str>) -> Result<Arc<VerifyingKey>, Rejection> {
        match self.cached.load().as_ref() {
            Some(c) if self.clock.now() < c.stale_until => c.keys.key_for(kid),
            _ => Err(Rejection::UnknownKid(kid.map(str::to_owned))),
        }
    }
}

/// Fetches a JWKS once, for the command line (`verify --jwks URL`).
pub fn fetch_blocking(url: &str) -> Result<JwkSet, JwksError> {
    let url = check_url(url)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| JwksError::Unavailable(e.to_string()))?;
    rt.block_on(async {
        let opts = JwksOptions::default();
        let http = http_client(opts.timeout)?;
        let resp = http
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable(url.as_str(), &e))?;
        if resp.status() != StatusCode::OK {
            return Err(JwksError::Unavailable(format!("{url} answered {}", resp.status())));
        }
        let body = read_capped(resp, opts.max_bytes).await?;
        serde_json::from_slice(&body).map_err(|e| JwksError::Invalid(format!("not a JWKS: {e}")))
    })
}

#[cfg(test)]
mod tests;
