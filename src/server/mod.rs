//! The HTTP service: a thin shell over the library.
//!
//! [`app`] builds the router from an [`AppState`]; [`serve`] runs it on a
//! listener with graceful shutdown; [`run_blocking`] is `tokensmith serve`.
//! Handlers parse, call one library function and map the result through
//! [`error::ApiError`], the only `IntoResponse` for errors. Nothing here
//! knows RSA, and no policy lives here.
//!
//! The key ring is read through an `ArcSwap` snapshot: a background task
//! reloads it when `keyring.json` changes (another process rotated), rotates
//! on `rotate_every`, and prunes retiring keys past their time, all off the
//! request path.

pub mod auth;
pub mod error;
pub mod metrics;
pub mod sdk;
pub mod tokens;
pub mod verify;
pub mod wellknown;
pub mod widget;

use std::net::SocketAddr;
use std::path::PathBuf;
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

use crate::claims::{Claims, Rejection, Validation};
use crate::clients::{Client, ClientRegistry};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::issuer::{GlobalLimits, IssuedToken, Issuer, TokenSpec};
use crate::keys::disk::KeyDir;
use crate::keys::{KeyRing, RingPolicy, SharedKeys};
use crate::session::SessionChecker;
use crate::store::{AnyStore, ConsumeOutcome, Store, StoreError};
use crate::verifier::Verifier;
use error::ApiError;
use metrics::Metrics;
use wellknown::Discovery;

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 64 * 1024;

/// Everything a request may need, shared by every handler.
pub struct AppState {
    pub config: Arc<Config>,
    pub keys: SharedKeys,
    pub discovery: ArcSwap<Discovery>,
    pub issuer: Issuer,
    pub verifier: Verifier<SharedKeys>,
    /// Swapped whole on SIGHUP.
    pub clients: ArcSwap<ClientRegistry>,
    pub store: AnyStore,
    pub clock: SharedClock,
    pub metrics: Metrics,
    pub limits: GlobalLimits,
    pub policy: RingPolicy,
    /// `Cache-Control: max-age` of the well-known documents: half of `publish_ahead`.
    pub jwks_max_age: u64,
    /// The session check, when `[session]` is configured.
    pub session: Option<SessionChecker>,
}

impl AppState {
    /// Builds the state over a loaded key ring.
    pub fn new(
        config: Config,
        ring: &KeyRing,
        clients: ClientRegistry,
        store: AnyStore,
        clock: SharedClock,
    ) -> Result<AppState, crate::keys::KeyError> {
        let snapshot = ring.snapshot()?;
        let discovery = Discovery::from_snapshot(&config.issuer, &snapshot);
        let keys: SharedKeys = Arc::new(ArcSwap::from_pointee(snapshot));
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let limits = GlobalLimits {
            default_ttl: secs(config.tokens.default_ttl),
            max_ttl: secs(config.tokens.max_ttl),
        };
        let leeway = secs(config.tokens.leeway);
        let validation = Validation {
            issuer: config.issuer.clone(),
            audience: None,
            leeway,
            max_ttl: limits.max_ttl,
            required_scopes: Vec::new(),
        };
        let policy = RingPolicy {
            publish_ahead: secs(config.keys.publish_ahead),
            retire_after: limits.max_ttl.saturating_add(leeway),
            rotate_every: secs(config.keys.rotate_every),
        };
        let metrics = Metrics::default();
        metrics
            .next_rotation_at
            .store(ring.scheduled_rotation_at(&policy).unwrap_or(0), Ordering::Relaxed);
        Ok(AppState {
            issuer: Issuer::new(Arc::clone(&keys), config.issuer.clone(), Arc::clone(&clock)),
            verifier: Verifier::new(Arc::clone(&keys), validation, Arc::clone(&clock)),
            jwks_max_age: (config.keys.publish_ahead.as_secs() / 2).max(1),
            session: config.session.as_ref().map(SessionChecker::from_config),
            discovery: ArcSwap::from_pointee(discovery),
            clients: ArcSwap::from_pointee(clients),
            config: Arc::new(config),
            keys,
            store,
            clock,
            metrics,
            limits,
            policy,
        })
    }

    /// Publishes a new key ring: the snapshot and the discovery document.
    pub fn install(&self, ring: &KeyRing) -> Result<(), crate::keys::KeyError> {
        let snapshot = ring.snapshot()?;
        self.discovery
            .store(Arc::new(Discovery::from_snapshot(&self.config.issuer, &snapshot)));
        self.keys.store(Arc::new(snapshot));
        self.metrics
            .next_rotation_at
            .store(ring.scheduled_rotation_at(&self.policy).unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }

    /// One hit on a rate counter of `client`, when it has a limit.
    pub async fn rate_limit(&self, client: &Client, scope: &str, key: &str) -> Result<(), ApiError> {
        let Some(limit) = &client.rate_limit else {
            return Ok(());
        };
        let window = u32::try_from(limit.per.as_secs().max(1)).unwrap_or(u32::MAX);
        let key = format!("{scope}:{}:{key}", client.id);
        let decision = self.store.rate_hit(&key, limit.count, window, self.clock.now()).await?;
        if decision.allowed {
            Ok(())
        } else {
            Err(ApiError::RateLimited {
                retry_after: decision.retry_after.max(1),
            })
        }
    }

    /// Signs a token for `client_id`, stamps it with `client_id` (RFC 9068),
    /// and counts it. Every token the service issues passes here.
    pub fn issue(&self, client_id: &str, mut spec: TokenSpec) -> Result<IssuedToken, ApiError> {
        spec.extra.insert(
            crate::claims::CLIENT_ID.to_owned(),
            serde_json::Value::String(client_id.to_owned()),
        );
        let issued = self.issuer.issue(spec).map_err(|e| ApiError::Internal(e.to_string()))?;
        self.metrics.token_issued(client_id);
        tracing::debug!(client = client_id, jti = %issued.claims.jti, kid = %self.keys.load().signer.kid, "token issued");
        Ok(issued)
    }

    /// Full verification: signature and claims; when `issued_to` is given,
    /// the token must have been issued to that client (its `client_id`);
    /// then revocation, then (when asked) the single-use mark, which lasts
    /// until the token expires plus the leeway. Nothing is consumed for a
    /// token that fails an earlier step.
    pub async fn verify_token(
        &self,
        token: &str,
        audience: &str,
        scopes: &[String],
        consume: bool,
        issued_to: Option<&str>,
    ) -> Result<Claims, ApiError> {
        let result = self.verify_inner(token, audience, scopes, consume, issued_to).await;
        let label = match &result {
            Ok(_) => "valid",
            Err(ApiError::Rejected(r)) => r.code(),
            Err(_) => "error",
        };
        self.metrics.verification(label);
        result
    }

    async fn verify_inner(
        &self,
        token: &str,
        audience: &str,
        scopes: &[String],
        consume: bool,
        issued_to: Option<&str>,
    ) -> Result<Claims, ApiError> {
        let claims = self.verifier.verify_for(token, Some(audience), scopes)?;
        if issued_to.is_some_and(|c| claims.client_id() != Some(c)) {
            return Err(Rejection::WrongAudience {
                expected: audience.to_owned(),
            }
            .into());
        }
        let now = self.clock.now();
        let subject = revocation_subject(&claims);
        if !consume {
            if self.store.is_revoked(&claims.jti, &subject, claims.iat, now).await? {
                return Err(Rejection::Revoked.into());
            }
            return Ok(claims);
        }
        // Revocation check and single-use mark in one atomic store step (one
        // Redis round trip); the mark lasts as long as the token can verify.
        let until = claims.exp.saturating_add(self.verifier.validation().leeway);
        let mark = format!("jti:{}", claims.jti);
        match self
            .store
            .consume(&claims.jti, &subject, claims.iat, &mark, until, now)
            .await?
        {
            ConsumeOutcome::FirstUse => Ok(claims),
            ConsumeOutcome::Replayed => Err(Rejection::Replayed.into()),
            ConsumeOutcome::Revoked => Err(Rejection::Revoked.into()),
        }
    }

    /// Revokes by `jti`, or by `sub` among the tokens `client_id` was issued,
    /// until every token that could carry it has expired.
    pub async fn revoke(&self, client_id: &str, kind: &str, value: &str) -> Result<(), StoreError> {
        let now = self.clock.now();
        let until = now.saturating_add(self.policy.retire_after);
        match kind {
            "jti" => self.store.revoke_jti(value, until, now).await,
            _ => {
                self.store
                    .revoke_sub(&subject_key(client_id, value), now, until, now)
                    .await
            }
        }
    }
}

/// The key a revocation by `sub` is kept under: the subject within the
/// client that issued it, so that one client cannot revoke another's users.
/// Client ids cannot contain `:` (config.rs), so the key is unambiguous.
fn subject_key(client_id: &str, sub: &str) -> String {
    format!("{client_id}:{sub}")
}

fn revocation_subject(claims: &Claims) -> String {
    subject_key(claims.client_id().unwrap_or_default(), &claims.sub)
}

/// The router over `state`.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(wellknown::jwks_get))
        .route("/.well-known/openid-configuration", get(wellknown::discovery_get))
        .route("/v1/tokens", post(tokens::tokens_create))
        .route("/v1/verify", post(verify::tokens_verify))
        .route("/v1/revoke", post(verify::tokens_revoke))
        .route("/v1/session/token", post(widget::session_token_create))
        .route("/sdk/v1/tokensmith.js", get(sdk::sdk_js_get))
        .route("/sdk/v1/tokensmith.d.ts", get(sdk::sdk_types_get))
        .merge(widget_routes(Arc::clone(&state)))
        .route("/healthz", get(health_get))
        .route("/readyz", get(ready_get))
        .route("/metrics", get(metrics_get))
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
    let ready = match &state.store {
        // The memory store sweeps by the time callers give it; a probe is one.
        AnyStore::Memory(m) => m.ready_at(state.clock.now()),
        store => store.ping().await,
    };
    match ready {
        Ok(()) => Json(json!({ "status": "ready", "kid": state.keys.load().signer.kid })).into_response(),
        Err(e) => ApiError::Store(e).into_response(),
    }
}

async fn metrics_get(State(state): State<Arc<AppState>>) -> Response {
    let mut r = state.metrics.render(state.clock.now()).into_response();
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
fn watch_once(state: &AppState, dir: &KeyDir, seen: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, crate::keys::KeyError> {
    let now = state.clock.now();
    let due = state.metrics.next_rotation_at.load(Ordering::Relaxed);
    if due != 0 && now >= due {
        let cfg = &state.config.keys;
        match dir.rotate(&state.policy, |a| cfg.rotation_algorithm(a), cfg.rsa_bits, now, false) {
            Ok(_) => tracing::info!("rotated the signing key on schedule"),
            // Another instance rotated first: its ring is picked up below.
            Err(crate::keys::KeyError::RotationTooEarly { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let has_expired_retiring = state.keys.load().records.iter().any(|r| {
        r.deactivated_at
            .is_some_and(|d| now >= d.saturating_add(state.policy.retire_after))
    });
    if has_expired_retiring {
        let (_, gone) = dir.prune(&state.policy, now)?;
        for r in gone {
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
    Ok(Some(bytes))
}

/// Serves `state` on `listener` until `shutdown` resolves, then drains
/// in-flight requests.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address feeds per-address limits (`/v1/guest`).
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown).await
}

/// Resolves on Ctrl-C or SIGTERM. `term` is registered by the caller before
/// the port is bound, so a SIGTERM that arrives during start-up is a clean
/// shutdown rather than the default action.
async fn shutdown_signal(term: Option<tokio::signal::unix::Signal>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match term {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}

/// Reloads the client registry on SIGHUP from the same config file.
fn spawn_sighup_reload(
    state: Arc<AppState>,
    hup: Option<tokio::signal::unix::Signal>,
    config_path: Option<PathBuf>,
    dev: Option<dev::DevClient>,
) {
    tokio::spawn(async move {
        let Some(mut hup) = hup else {
            return;
        };
        while hup.recv().await.is_some() {
            let loaded = Config::load(config_path.as_deref(), crate::cli::utf8_env())
                .map_err(|e| e.to_string())
                .and_then(|cfg| ClientRegistry::from_config(&cfg.clients).map_err(|e| e.to_string()));
            match loaded {
                Ok(mut registry) => {
                    if let Some(d) = &dev {
                        registry = d.add_to(registry);
                    }
                    tracing::info!(clients = registry.len(), "clients reloaded");
                    state.clients.store(Arc::new(registry));
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: the config did not load; keeping the current clients"),
            }
        }
    });
}

pub mod dev;

fn init_logging() {
    let filter = std::env::var("TOKENSMITH_LOG").unwrap_or_else(|_| "info".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// `tokensmith serve`: builds everything from the config and runs until
/// SIGTERM or Ctrl-C.
pub fn run_blocking(
    mut cfg: Config,
    args: crate::cli::ServeArgs,
    config_path: Option<PathBuf>,
) -> Result<(), crate::cli::CliError> {
    use crate::cli::CliError;
    init_logging();
    if let Some(listen) = args.listen {
        cfg.listen = listen;
    }
    if let Some(dir) = args.keys {
        cfg.keys.dir = dir;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new("runtime", e.to_string()))?;
    runtime.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // Registered before anything else, so that no signal meets the
        // default action once we are starting up.
        let term = signal(SignalKind::terminate()).ok();
        let hup = signal(SignalKind::hangup()).ok();
        let clock: SharedClock = Arc::new(SystemClock);
        let dir = KeyDir::new(cfg.keys.dir.clone());
        let (alg, bits, now) = (cfg.keys.algorithm, cfg.keys.rsa_bits, crate::clock::Clock::now(&SystemClock));
        let d = dir.clone();
        let ring = tokio::task::spawn_blocking(move || d.ensure(alg, bits, now))
            .await
            .map_err(|e| CliError::new("internal", e.to_string()))??;
        let mut registry = ClientRegistry::from_config(&cfg.clients).map_err(|e| CliError::new("invalid_config", e.to_string()))?;
        let dev_client = if args.dev {
            let d = dev::DevClient::new(&cfg).map_err(|e| CliError::new("internal", e.to_string()))?;
            registry = d.add_to(registry);
            Some(d)
        } else {
            None
        };
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| CliError::new("listen_failed", format!("{}: {e}", cfg.listen)))?;
        let addr = listener.local_addr().map_err(|e| CliError::new("listen_failed", e.to_string()))?;
        if cfg.issuer == Config::embedded().issuer && addr != Config::embedded().listen {
            // The issuer was left at its default: name the address actually served.
            cfg.issuer = format!("http://{addr}");
        }
        let store = AnyStore::from_config(&cfg.store, &cfg.issuer)
            .await
            .map_err(|e| CliError::new("store_unavailable", e.to_string()))?;
        let state = Arc::new(AppState::new(cfg, &ring, registry, store, clock)?);
        if let Some(d) = &dev_client {
            d.announce(&addr);
        }
        tracing::info!(%addr, issuer = %state.config.issuer, kid = %state.keys.load().signer.kid, "tokensmith listening");
        let watcher = spawn_key_watcher(Arc::clone(&state), dir, Duration::from_secs(1));
        spawn_sighup_reload(Arc::clone(&state), hup, config_path, dev_client);
        let result = serve(state, listener, shutdown_signal(term)).await;
        watcher.abort();
        result.map_err(|e| CliError::new("server_failed", e.to_string()))
    })
}
