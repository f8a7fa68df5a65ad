//! `RemoteJwks` and the `Bearer` extractor against a real tokensmith on a
//! loopback socket.
//!
//! [`Served`] runs the in-process service (`server::app` over a
//! [`TestApp`]'s state) on `127.0.0.1:0` behind a small counting layer, so a
//! test knows how many JWKS requests reached the issuer and what it answered
//! (200 or 304), can stop and restart it on the same port, rotate its keys
//! with `state.install`, and hold a JWKS answer at a gate. The verifier and
//! the server share the test's `ManualClock`, so freshness, cooldowns and
//! backoffs are stepped over, never slept through.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokensmith::claims::{Rejection, Validation};
use tokensmith::client::extract::{Bearer, BearerConfig, Policy};
use tokensmith::client::jwks::{JwksError, JwksOptions, RemoteJwks, RemoteVerifier};
use tokensmith::jose::{jws, Algorithm, SigningKey};
use tokensmith::keys::{KeyRing, KeyState, RingKey};
use tokensmith::store::memory::MemoryStore;
use tokensmith::store::redis::RedisStore;
use tokensmith::store::AnyStore;
use tokensmith::{Clock, SharedClock, SystemClock};
use tower::ServiceExt;

use crate::common::pkcs8;
use crate::harness::{base_config, binary, fixture_ring, TestApp, NOW};

const JWKS_PATH: &str = "/.well-known/jwks.json";

/// What the issuer answered to JWKS requests, as seen on its socket.
#[derive(Default)]
pub struct Hits {
    pub ok: AtomicU64,
    pub not_modified: AtomicU64,
    pub other: AtomicU64,
    /// JWKS requests that reached the gate (answered or not yet).
    pub entered: AtomicU64,
}

impl Hits {
    pub fn total(&self) -> u64 {
        self.ok.load(Ordering::SeqCst) + self.not_modified.load(Ordering::SeqCst) + self.other.load(Ordering::SeqCst)
    }
}

/// The in-process tokensmith on a loopback socket.
pub struct Served {
    pub app: TestApp,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`: also the configured issuer.
    pub base: String,
    pub hits: Arc<Hits>,
    /// While false, JWKS requests wait at the gate.
    pub gate: Arc<tokio::sync::watch::Sender<bool>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    /// The base config (clients `shop_123`, `other`) with the issuer set to
    /// the address served.
    pub async fn start() -> Served {
        Served::start_inner(None).await
    }

    /// As [`Served::start`], with its replay/revocation store in the Redis
    /// at `redis_url`, namespaced by the issuer as `serve` does.
    pub async fn start_with_redis(redis_url: &str) -> Served {
        Served::start_inner(Some(redis_url)).await
    }

    async fn start_inner(redis_url: Option<&str>) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let toml = base_config().replace("issuer = \"https://issuer.test\"", &format!("issuer = \"{base}\""));
        let app = match redis_url {
            None => TestApp::new(&toml),
            Some(url) => {
                // Epoch 0: no token of these tests predates the store.
                let store = RedisStore::connect(url, &base, Duration::from_secs(2), 0)
                    .await
                    .unwrap();
                TestApp::with_store(&toml, AnyStore::Redis(store))
            }
        };
        let (gate, _) = tokio::sync::watch::channel(true);
        let mut s = Served {
            app,
            addr,
            base,
            hits: Arc::new(Hits::default()),
            gate: Arc::new(gate),
            stop: None,
            task: None,
        };
        s.serve_on(listener);
        s
    }

    fn serve_on(&mut self, listener: tokio::net::TcpListener) {
        let hits = Arc::clone(&self.hits);
        let gate = Arc::clone(&self.gate);
        let counting = middleware::from_fn(move |req: Request, next: Next| {
            let hits = Arc::clone(&hits);
            let mut open = gate.subscribe();
            async move {
                let jwks = req.uri().path() == JWKS_PATH;
                if jwks {
                    hits.entered.fetch_add(1, Ordering::SeqCst);
                    let _ = open.wait_for(|o| *o).await;
                }
                let resp: Response = next.run(req).await;
                if jwks {
                    let counter = match resp.status() {
                        StatusCode::OK => &hits.ok,
                        StatusCode::NOT_MODIFIED => &hits.not_modified,
                        _ => &hits.other,
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                resp
            }
        });
        let router = tokensmith::server::app(Arc::clone(&self.app.state)).layer(counting);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        }));
    }

    /// Stops serving: the port refuses connections until [`Served::restart`].
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the server drains within 10 s")
                .unwrap();
        }
    }

    /// Serves again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve_on(listener);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn clock(&self) -> SharedClock {
        self.app.clock.clone()
    }

    /// JWKS requests the service itself counted (its latency histogram).
    pub fn metric_jwks_requests(&self) -> u64 {
        let text = self.app.state.metrics.render(0);
        let prefix = format!("tokensmith_request_duration_seconds_count{{route=\"{JWKS_PATH}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    /// A token for `shop_123` (audience `chatbot`) with `scopes`, signed now.
    pub async fn token(&self, scopes: &[&str]) -> String {
        self.app.token(&json!({"sub": "user-1", "scopes": scopes})).await
    }

    /// A remote verifier of this issuer's tokens for audience `chatbot`,
    /// on the test clock.
    pub fn verifier(&self) -> Arc<RemoteVerifier> {
        let jwks = Arc::new(RemoteJwks::new(&self.url(JWKS_PATH), JwksOptions::default(), self.clock()).unwrap());
        Arc::new(jwks.verifier(self.validation()))
    }

    pub fn validation(&self) -> Validation {
        Validation {
            audience: Some("chatbot".into()),
            ..Validation::new(self.base.clone())
        }
    }

    /// Installs `ring` as the issuer's keys (what its key watcher does after
    /// a rotation on disk).
    pub fn install(&self, ring: &KeyRing) {
        self.app.state.install(ring).unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `f` until it holds, for at most `within`.
pub async fn poll_until(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn p256() -> SigningKey {
    SigningKey::from_pkcs8(Algorithm::ES256, &pkcs8("p256")).unwrap()
}

/// A token that looks like the issuer's, for audience `chatbot`, but is
/// signed by a key the issuer never published, under `kid`.
fn forged(base: &str, kid: &str, now: i64) -> String {
    let claims = json!({"iss": base, "sub": "mallory", "aud": "chatbot", "iat": now, "exp": now + 300, "jti": kid});
    jws::sign(
        &jws::header_segment(Algorithm::ES256, kid),
        claims.to_string().as_bytes(),
        &p256(),
    )
    .unwrap()
}

fn random_kid() -> String {
    tokensmith::claims::new_jti().unwrap()
}

/// The fixture ring after an emergency rotation at `now`: `rsa2048_b`
/// (published from the start) signs, `rsa2048` retires, and a P-256 key is
/// the new `next`. With `twice`, rotated once more: the P-256 key, unknown
/// to any verifier that fetched before, signs.
fn rotated(served: &Served, now: i64, twice: bool) -> KeyRing {
    let policy = served.app.state.policy;
    let ring = fixture_ring(NOW)
        .rotate(&policy, now, true, RingKey::fresh(p256(), KeyState::Next, now).unwrap())
        .unwrap();
    if !twice {
        return ring;
    }
    let third = SigningKey::from_pkcs8(Algorithm::EdDSA, &pkcs8("ed25519")).unwrap();
    ring.rotate(&policy, now, true, RingKey::fresh(third, KeyState::Next, now).unwrap())
        .unwrap()
}

fn kid_of(token: &str) -> String {
    jws::decode(token).unwrap().header.kid.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reaches_a_remote_verifier_without_a_restart() {
    let served = Served::start().await;
    let verifier = served.verifier();
    let before = served.token(&[]).await;
    verifier.verify(&before).await.unwrap();
    assert_eq!(verifier.jwks().fetch_count(), 1);

    // A scheduled-style rotation: the new signer was published ahead, so the
    // cached set already holds it and nothing is fetched.
    served.install(&rotated(&served, NOW, false));
    let after = served.token(&[]).await;
    assert_ne!(kid_of(&after), kid_of(&before));
    verifier.verify(&after).await.unwrap();
    verifier.verify(&before).await.unwrap();
    assert_eq!(verifier.jwks().fetch_count(), 1);

    // An emergency rotation to a key published just now: the unknown kid
    // makes the verifier refetch once the cooldown since its last fetch is
    // over, and the new tokens verify; the retiring key's tokens still do.
    served.install(&rotated(&served, NOW, true));
    let emergency = served.token(&[]).await;
    assert!(jws::decode(&emergency).unwrap().header.alg == "ES256");
    let early = verifier.verify(&emergency).await.unwrap_err();
    assert_eq!(early.code(), "unknown_kid");
    assert_eq!(verifier.jwks().fetch_count(), 1, "no refetch within the cooldown");
    served.app.clock.advance(30);
    let claims = verifier.verify(&served.token(&[]).await).await.unwrap();
    assert_eq!(claims.sub, "user-1");
    verifier.verify(&emergency).await.unwrap();
    verifier.verify(&after).await.unwrap();
    assert_eq!(verifier.jwks().fetch_count(), 2);
    assert_eq!(served.hits.ok.load(Ordering::SeqCst), 2);
    assert_eq!(served.metric_jwks_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_kid_flood_costs_at_most_one_fetch_per_cooldown() {
    let served = Served::start().await;
    let verifier = served.verifier();
    let kids: Vec<String> = (0..1000).map(|_| random_kid()).collect();
    let good = served.token(&[]).await;
    verifier.verify(&good).await.unwrap();
    assert_eq!(verifier.jwks().fetch_count(), 1);

    // Each round: 1,000 concurrent verifications of tokens with random kids,
    // then `step` seconds on the clock. The cooldown (30 s) counts from the
    // last fetch, whatever caused it.
    let mut per_round = Vec::new();
    for step in [0, 30, 10, 20, 29, 1] {
        served.app.clock.advance(step);
        let now = served.app.clock.now();
        let before = verifier.jwks().fetch_count();
        let mut set = tokio::task::JoinSet::new();
        for kid in &kids {
            let v = Arc::clone(&verifier);
            let t = forged(&served.base, kid, now);
            set.spawn(async move { v.verify(&t).await });
        }
        while let Some(r) = set.join_next().await {
            let refused = r.unwrap().unwrap_err();
            assert!(matches!(refused, Rejection::UnknownKid(Some(_))), "{refused:?}");
        }
        per_round.push(verifier.jwks().fetch_count() - before);
        // The real key still works in the middle of the flood.
        verifier.verify(&served.token(&[]).await).await.unwrap();
    }
    println!("JWKS fetches per round of 1,000 forged kids (clock steps 0,30,10,20,29,1 s): {per_round:?}");
    assert_eq!(per_round, [0, 1, 0, 1, 0, 1]);
    let fetches = verifier.jwks().fetch_count();
    assert_eq!(fetches, 4);
    assert_eq!(
        served.hits.total(),
        fetches,
        "the issuer saw exactly the verifier's fetches"
    );
    assert_eq!(served.metric_jwks_requests(), fetches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_callers_on_a_cold_cache_share_one_fetch() {
    let served = Served::start().await;
    let verifier = served.verifier();
    let token = served.token(&[]).await;
    served.gate.send_replace(false);
    let started = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (v, t, s) = (Arc::clone(&verifier), token.clone(), Arc::clone(&started));
        set.spawn(async move {
            s.fetch_add(1, Ordering::SeqCst);
            v.verify(&t).await
        });
    }
    // Every caller has started while the one fetch is held at the issuer.
    poll_until(Duration::from_secs(10), "50 callers and one JWKS request", || {
        started.load(Ordering::SeqCst) == 50 && served.hits.entered.load(Ordering::SeqCst) >= 1
    })
    .await;
    served.gate.send_replace(true);
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap().unwrap().sub, "user-1");
    }
    assert_eq!(served.hits.entered.load(Ordering::SeqCst), 1);
    assert_eq!(served.hits.ok.load(Ordering::SeqCst), 1);
    assert_eq!(verifier.jwks().fetch_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_outlive_an_issuer_outage_within_stale_for() {
    let mut served = Served::start().await;
    let verifier = served.verifier();
    verifier.verify(&served.token(&[]).await).await.unwrap();
    served.stop().await;

    // A minute past freshness (max-age is publish_ahead/2 = 1800 s): the
    // refetch fails, the cached keys still verify.
    served.app.clock.advance(1800 + 60);
    let token = served.token(&[]).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.jwks().fetch_count(), 2);
    // The dead issuer is not asked again on every verification: one attempt
    // per backoff step (1 s, then 2 s, ...).
    for _ in 0..100 {
        verifier.verify(&token).await.unwrap();
    }
    assert_eq!(verifier.jwks().fetch_count(), 2);
    served.app.clock.advance(1);
    verifier.verify(&token).await.unwrap();
    verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.jwks().fetch_count(), 3);
    served.app.clock.advance(1);
    verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.jwks().fetch_count(), 3, "the second backoff step is 2 s");
    assert_eq!(served.hits.total(), 1, "only the first fetch reached the issuer");

    // Past stale_for (6 h after freshness) the old set is no longer trusted.
    served.app.clock.advance(6 * 3600);
    let late = served.token(&[]).await;
    let err = verifier.verify(&late).await.unwrap_err();
    assert_eq!(err.code(), "unknown_kid");

    // The issuer comes back: the next attempt after the backoff succeeds.
    served.restart().await;
    served.app.clock.advance(60);
    let back = served.token(&[]).await;
    verifier.verify(&back).await.unwrap();
    assert_eq!(served.hits.total(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidation_gets_304_and_keeps_the_keys() {
    let served = Served::start().await;
    let verifier = served.verifier();
    verifier.verify(&served.token(&[]).await).await.unwrap();
    assert_eq!(served.hits.ok.load(Ordering::SeqCst), 1);

    served.app.clock.advance(1800);
    let token = served.token(&[]).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.jwks().fetch_count(), 2);
    assert_eq!(
        served.hits.not_modified.load(Ordering::SeqCst),
        1,
        "If-None-Match got 304"
    );
    assert_eq!(served.hits.ok.load(Ordering::SeqCst), 1);
    // Fresh again for another max-age: no request, and the keys still work.
    served.app.clock.advance(1799);
    verifier.verify(&served.token(&[]).await).await.unwrap();
    assert_eq!(verifier.jwks().fetch_count(), 2);

    // A changed set is a 200 with the new keys.
    served.install(&rotated(&served, served.app.clock.now(), true));
    served.app.clock.advance(1);
    verifier.verify(&served.token(&[]).await).await.unwrap();
    assert_eq!(served.hits.ok.load(Ordering::SeqCst), 2);
    assert_eq!(served.hits.not_modified.load(Ordering::SeqCst), 1);
    assert_eq!(served.metric_jwks_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_the_jwks_and_checks_the_issuer() {
    let served = Served::start().await;
    let jwks = RemoteJwks::discover(&served.base, JwksOptions::default(), served.clock())
        .await
        .unwrap();
    assert_eq!(jwks.url(), served.url(JWKS_PATH));
    let verifier = Arc::new(jwks).verifier(served.validation());
    let claims = verifier.verify(&served.token(&["chat"]).await).await.unwrap();
    assert_eq!(claims.scopes, ["chat"]);

    let other = RemoteJwks::discover(&format!("{}/", served.base), JwksOptions::default(), served.clock())
        .await
        .unwrap_err();
    assert!(
        matches!(other, JwksError::Invalid(ref w) if w.contains("another issuer")),
        "{other:?}"
    );
}

/// A hand-made "issuer" whose documents point where they should not.
async fn hostile_issuer() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let doc = json!({"issuer": base, "jwks_uri": "http://issuer.example.com/jwks.json"});
    let router = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc) }
            }),
        )
        .route(
            "/redirect/jwks.json",
            get(|| async { (StatusCode::FOUND, [("location", "https://evil.example.com/jwks.json")]) }),
        );
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (base, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_required_except_on_loopback_and_redirects_are_not_followed() {
    let clock: SharedClock = Arc::new(SystemClock);
    let opts = JwksOptions::default;
    for bad in [
        "http://issuer.example.com/jwks.json",
        "http://10.1.2.3/jwks.json",
        "ftp://127.0.0.1/jwks.json",
    ] {
        let err = RemoteJwks::new(bad, opts(), Arc::clone(&clock)).unwrap_err();
        assert_eq!(err.code(), "invalid_request", "{bad}");
    }
    let err = RemoteJwks::discover("http://issuer.example.com", opts(), Arc::clone(&clock))
        .await
        .unwrap_err();
    assert!(matches!(err, JwksError::BadUrl(_)), "{err:?}");
    for good in [
        "https://issuer.example.com/jwks.json",
        "http://127.0.0.1:1/jwks.json",
        "http://localhost:1/jwks.json",
        "http://[::1]:1/jwks.json",
    ] {
        assert!(RemoteJwks::new(good, opts(), Arc::clone(&clock)).is_ok(), "{good}");
    }

    let (base, task) = hostile_issuer().await;
    // Discovery over loopback is fine, but its jwks_uri is plain http elsewhere.
    let err = RemoteJwks::discover(&base, opts(), Arc::clone(&clock))
        .await
        .unwrap_err();
    assert!(
        matches!(err, JwksError::BadUrl(ref w) if w.contains("https")),
        "{err:?}"
    );
    // A redirect could lead off https: it is an error, never followed.
    let jwks = RemoteJwks::new(&format!("{base}/redirect/jwks.json"), opts(), clock).unwrap();
    let err = jwks.key_set().await.unwrap_err();
    assert!(
        matches!(err, JwksError::Unavailable(ref w) if w.contains("302")),
        "{err:?}"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_verifies_against_a_jwks_url() {
    let served = Served::start().await;
    // The command line verifies on the system clock: issue on it too.
    served.app.clock.set(SystemClock.now());
    let token = served.token(&["read:orders"]).await;
    let forged = forged(&served.base, &random_kid(), SystemClock.now());
    let jwks_url = served.url(JWKS_PATH);
    let base = served.base.clone();
    let run = move |token: String, url: String| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            let dir = tempfile::tempdir().unwrap();
            let mut cmd = std::process::Command::new(binary());
            cmd.current_dir(dir.path())
                .args(["verify", &token, "--jwks", &url, "--aud", "chatbot", "--iss", &base])
                .args(["--scope", "read:orders"]);
            for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TOKENSMITH_")) {
                cmd.env_remove(k);
            }
            cmd.output().unwrap()
        })
    };
    let ok = run(token, jwks_url.clone()).await.unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let claims: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["iss"], served.base.as_str());
    assert_eq!(served.hits.ok.load(Ordering::SeqCst), 1);

    let bad = run(forged, jwks_url).await.unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("error: unknown_kid"));

    let off_loopback = run("a.b.c".into(), "http://issuer.example.com/jwks.json".into())
        .await
        .unwrap();
    assert_eq!(off_loopback.status.code(), Some(1));
    let err = String::from_utf8_lossy(&off_loopback.stderr);
    assert!(
        err.starts_with("error: invalid_request") && err.contains("https"),
        "{err}"
    );
}

struct ReadOrders;
impl Policy for ReadOrders {
    const SCOPES: &'static [&'static str] = &["read:orders"];
}

struct PlaceOrder;
impl Policy for PlaceOrder {
    const SCOPES: &'static [&'static str] = &["write:orders"];
    const CONSUME: bool = true;
}

#[derive(Clone)]
struct PluginState {
    auth: BearerConfig,
}

impl FromRef<PluginState> for BearerConfig {
    fn from_ref(s: &PluginState) -> BearerConfig {
        s.auth.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extractor_over_remote_jwks_checks_scopes_and_consumes() {
    let served = Served::start().await;
    let jwks = Arc::new(RemoteJwks::new(&served.url(JWKS_PATH), JwksOptions::default(), served.clock()).unwrap());
    let auth = BearerConfig::remote(Arc::clone(&jwks), served.validation(), served.clock())
        .unwrap()
        .with_store(Arc::new(MemoryStore::new(10_000)));
    let router = Router::new()
        .route("/orders", get(|b: Bearer<ReadOrders>| async move { b.sub.clone() }))
        .route("/orders", post(|b: Bearer<PlaceOrder>| async move { b.jti.clone() }))
        .with_state(PluginState { auth });
    let call = |method: &'static str, token: Option<String>| {
        let router = router.clone();
        async move {
            let mut req = axum::http::Request::builder().method(method).uri("/orders");
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let resp = router
                .oneshot(req.body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap();
            let status = resp.status();
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
            (status, challenge, String::from_utf8_lossy(&body).into_owned())
        }
    };

    let (s, ch, _) = call("GET", None).await;
    assert_eq!((s, ch.as_deref()), (StatusCode::UNAUTHORIZED, Some("Bearer")));
    let (s, _, body) = call("GET", Some(served.token(&["read:orders"]).await)).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "user-1"));
    let (s, ch, body) = call("GET", Some(served.token(&["chat"]).await)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(ch.unwrap().contains("insufficient_scope"));
    assert!(body.contains("\"insufficient_scope\""));

    let write = served.token(&["write:orders"]).await;
    let (s, _, jti) = call("POST", Some(write.clone())).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(jti, jws_claim(&write, "jti"));
    let (s, ch, body) = call("POST", Some(write)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(ch.unwrap().starts_with("Bearer error=\"invalid_token\""));
    assert!(body.contains("\"token_replayed\""));

    let (s, _, body) = call("GET", Some(forged(&served.base, &random_kid(), NOW))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body.contains("\"unknown_kid\""));

    // After an emergency rotation (and the cooldown), new tokens pass.
    served.install(&rotated(&served, NOW, true));
    served.app.clock.advance(30);
    let (s, _, _) = call("GET", Some(served.token(&["read:orders"]).await)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(jwks.fetch_count(), 2);
}

fn jws_claim(token: &str, name: &str) -> String {
    let payload = jws::decode(token).unwrap().into_payload();
    let v: Value = serde_json::from_slice(&payload).unwrap();
    v[name].as_str().unwrap().to_owned()
}
