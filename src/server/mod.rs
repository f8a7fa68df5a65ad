//! The HTTP service: a thin shell over the [`Authority`].
//!
//! [`app`] builds the router from an [`AppState`]; [`serve`] runs it on a
//! listener until a shutdown future resolves, then drains, through
//! [`listener`], which bounds connections (a cap, header and idle
//! timeouts, a drain deadline); [`metrics_app`] is `/metrics` alone, for
//! `server.metrics_listen`. The `tokensmith` binary owns the command line,
//! logging, signals, the descriptor limit and binding. Handlers
//! parse, call one method of the authority and map the result through
//! [`error::ApiError`], the only `IntoResponse` for errors. Nothing here
//! knows RSA, and no policy lives here.
//!
//! The key ring is read through an `ArcSwap` snapshot: a background task
//! ([`spawn_key_watcher`]) reloads it when `keyring.json` changes (another
//! process rotated), rotates on `rotate_every`, and prunes retiring keys past
//! their time, all off the request path. A folder that `KeyDir::ensure`
//! found read-only is only reloaded.

mod auth;
mod dpop;
pub(crate) use dpop::proof_header as dpop_proof_header;
pub mod error;
pub mod fdlimit;
pub mod listener;
mod logthrottle;
pub mod metrics;
// OAuth 2.0 (issue 11).
mod oauth;
mod sdk;
mod tokens;
mod verify;
mod wellknown;
mod widget;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::authority::{Authority, AuthorityError};
use crate::clients::ClientRegistry;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::keys::disk::KeyDir;
use crate::keys::{KeyError, KeyRing, RingPolicy, SharedKeys};
use crate::store::AnyStore;
use error::ApiError;
use metrics::Metrics;
use wellknown::Discovery;

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 64 * 1024;

/// Everything a request may need, shared by every handler.
pub struct AppState {
    /// Every policy decision.
    pub authority: Arc<Authority>,
    /// The checked configuration the service runs with.
    pub config: Arc<Config>,
    /// The key ring snapshot the authority signs and verifies with.
    pub keys: SharedKeys,
    /// The well-known documents of the current snapshot.
    discovery: ArcSwap<Discovery>,
    /// Counters and latency histograms for `/metrics`.
    pub metrics: Metrics,
    /// When keys are published, rotated and pruned.
    pub policy: RingPolicy,
    /// `Cache-Control: max-age` of the well-known documents: half of `publish_ahead`.
    jwks_max_age: u64,
}

/// Why an [`AppState`] could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum StateError {
    /// The key ring has no usable signing key.
    Keys(KeyError),
    /// The authority refused the clients.
    Authority(AuthorityError),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Keys(e) => write!(f, "{e}"),
            StateError::Authority(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateError::Keys(e) => Some(e),
            StateError::Authority(e) => Some(e),
        }
    }
}

impl From<KeyError> for StateError {
    fn from(e: KeyError) -> Self {
        StateError::Keys(e)
    }
}

impl From<AuthorityError> for StateError {
    fn from(e: AuthorityError) -> Self {
        StateError::Authority(e)
    }
}

impl AppState {
    /// Builds the state over a loaded key ring. `config.issuer` must be the
    /// issuer actually served.
    pub fn new(
        config: Config,
        ring: &KeyRing,
        clients: ClientRegistry,
        store: AnyStore,
        clock: SharedClock,
    ) -> Result<AppState, StateError> {
        let snapshot = ring.snapshot()?;
        let keys: SharedKeys = Arc::new(ArcSwap::from_pointee(snapshot));
        let authority = Authority::new(&config, Arc::clone(&keys), clients, store, clock)?;
        let discovery = Discovery::from_snapshot(&config, &keys.load(), authority.clients());
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let policy = RingPolicy {
            publish_ahead: secs(config.keys.publish_ahead),
            retire_after: secs(config.tokens.max_ttl).saturating_add(authority.leeway()),
            rotate_every: secs(config.keys.rotate_every),
        };
        let metrics = Metrics::default();
        metrics
            .next_rotation_at
            .store(ring.scheduled_rotation_at(&policy).unwrap_or(0), Ordering::Relaxed);
        Ok(AppState {
            authority: Arc::new(authority),
            jwks_max_age: (config.keys.publish_ahead.as_secs() / 2).max(1),
            discovery: ArcSwap::from_pointee(discovery),
            config: Arc::new(config),
            keys,
            metrics,
            policy,
        })
    }

    /// Publishes a new key ring: the snapshot and the discovery document.
    pub fn install(&self, ring: &KeyRing) -> Result<(), KeyError> {
        let snapshot = ring.snapshot()?;
        self.discovery.store(Arc::new(Discovery::from_snapshot(
            &self.config,
            &snapshot,
            self.authority.clients(),
        )));
        self.keys.store(Arc::new(snapshot));
        self.metrics
            .next_rotation_at
            .store(ring.scheduled_rotation_at(&self.policy).unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }
}

/// The router over `state`. With `server.metrics_listen` set, `/metrics`
/// is not here (it answers 404): [`metrics_app`] serves it on that address.
pub fn app(state: Arc<AppState>) -> Router {
    let metrics_here = state.config.server.metrics_listen.is_none();
    let router = Router::new()
        .route("/.well-known/jwks.json", get(wellknown::jwks_get))
        .route("/.well-known/openid-configuration", get(wellknown::discovery_get))
        // OAuth 2.0 (issue 11).
        .route(
            "/.well-known/oauth-authorization-server",
            get(wellknown::oauth_metadata_get),
        )
        .route("/oauth2/token", post(oauth::oauth_token_create))
        .route("/oauth2/introspect", post(oauth::oauth_introspect))
        .route("/oauth2/revoke", post(oauth::oauth_revoke))
        .route("/v1/tokens", post(tokens::tokens_create))
        .route("/v1/verify", post(verify::tokens_verify))
        .route("/v1/revoke", post(verify::tokens_revoke))
        .route("/v1/session/token", post(widget::session_token_create))
        .route("/sdk/v1/tokensmith.js", get(sdk::sdk_js_get))
        .route("/sdk/v1/tokensmith.d.ts", get(sdk::sdk_types_get))
        .merge(widget_routes(Arc::clone(&state)))
        .route("/healthz", get(health_get))
        .route("/readyz", get(ready_get));
    let router = if metrics_here {
        router.route("/metrics", get(metrics_get))
    } else {
        router
    };
    with_edge(router, state)
}

/// `/metrics` alone, for the listener of `server.metrics_listen`.
pub fn metrics_app(state: Arc<AppState>) -> Router {
    with_edge(Router::new().route("/metrics", get(metrics_get)), state)
}

/// What every route shares: JSON 404/405, timing and `Cache-Control`, the body limit.
fn with_edge(router: Router<Arc<AppState>>, state: Arc<AppState>) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The routes a browser widget calls cross-origin, under the CORS layer.
fn widget_routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/guest", post(widget::guest_create).options(widget::preflight))
        .route("/v1/exchange", post(widget::exchange_create).options(widget::preflight))
        .route("/v1/refresh", post(widget::refresh_create).options(widget::preflight))
        .route(
            "/v1/clients/{public_key}/config",
            get(widget::client_config_get).options(widget::config_preflight),
        )
        .route_layer(middleware::from_fn_with_state(state, widget::cors))
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Times every request by route template and sets `Cache-Control: no-store`
/// on every response that did not choose its own caching (only the
/// well-known documents do).
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let mut resp = next.run(req).await;
    state.metrics.observe(&route, started.elapsed());
    resp.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

async fn health_get() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready_get(State(state): State<Arc<AppState>>) -> Response {
    match state.authority.ready().await {
        Ok(()) => Json(json!({ "status": "ready", "kid": state.keys.load().signer.kid })).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn metrics_get(State(state): State<Arc<AppState>>) -> Response {
    let mut text = state.metrics.render(state.authority.clock().now());
    if let crate::store::AnyStore::Redis(redis) = state.authority.store() {
        redis.render_metrics(&mut text);
    }
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// Watches the keys folder: reloads a ring rotated by another process,
/// rotates on schedule, prunes. Runs until the returned task is aborted.
pub fn spawn_key_watcher(state: Arc<AppState>, dir: KeyDir, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = dir.read_manifest().ok().flatten();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let st = Arc::clone(&state);
            let d = dir.clone();
            let prev = seen.clone();
            match tokio::task::spawn_blocking(move || watch_once(&st, &d, prev)).await {
                Ok(Ok(Some(bytes))) => seen = Some(bytes),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(code = e.code(), error = %e, "key ring check failed; keeping the current keys")
                }
                Err(e) => tracing::error!(error = %e, "key watcher task failed"),
            }
        }
    })
}

/// One pass of the watcher; returns the manifest bytes it installed, if any.
fn watch_once(state: &AppState, dir: &KeyDir, seen: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, KeyError> {
    let now = state.authority.clock().now();
    // A read-only folder is rotated and pruned elsewhere; here it is only reloaded.
    let writable = dir.read_only().is_none();
    let due = state.metrics.next_rotation_at.load(Ordering::Relaxed);
    if writable && due != 0 && now >= due {
        let cfg = &state.config.keys;
        match dir.rotate(&state.policy, |a| cfg.rotation_algorithm(a), cfg.rsa_bits, now, false) {
            Ok(_) => tracing::info!("rotated the signing key on schedule"),
            // Another instance rotated first: its ring is picked up below.
            Err(KeyError::RotationTooEarly { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let has_expired_retiring = state.keys.load().records.iter().any(|r| {
        r.deactivated_at
            .is_some_and(|d| now >= d.saturating_add(state.policy.retire_after))
    });
    if writable && has_expired_retiring {
        for r in dir.prune(&state.policy, now)?.pruned {
            tracing::info!(kid = %r.kid, "pruned a retired key");
        }
    }
    let current = dir.read_manifest()?;
    if current.is_none() || current == seen {
        return Ok(None);
    }
    let bytes = current.unwrap_or_default();
    let ring = dir.load_manifest(&bytes)?;
    state.install(&ring)?;
    tracing::info!(kid = %state.keys.load().signer.kid, "key ring reloaded");
    // A running server keeps serving; what start-up would refuse is a warning here.
    for warning in dir.check_permissions(true).unwrap_or_default() {
        tracing::warn!("{warning}");
    }
    Ok(Some(bytes))
}

/// Serves `state` on `listener` until `shutdown` resolves, then drains
/// in-flight requests for at most `server.shutdown_grace`. The connection
/// cap comes from `[server]` and the descriptor limit in force (see
/// [`listener::Limits::from_config`]); a cap the limit cannot hold is an
/// `InvalidInput` error. The binary, which also serves `metrics_listen`,
/// calls [`listener::run`] itself.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = listener::Limits::from_config(&state.config.server, fdlimit::current().soft)
        .map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidInput, why))?;
    listener::run(app(state), listener, limits, shutdown).await
}
