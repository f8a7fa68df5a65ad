//! TLS to Redis (issue 13, item 3): `rediss://` to a real `redis-server`
//! listening with `--tls-port` only, with a CA, server and client
//! certificates made here by the `openssl` command; a Redis Cluster whose
//! nodes speak TLS only, on the client and the cluster bus alike.
//!
//! Like the other Redis tests these never skip: `redis-server` is taken
//! from PATH (see `redis_harness.rs`), and so are `openssl` and (for the
//! cluster) `redis-cli`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use tokensmith::config::Config;
use tokensmith::store::redis::{RedisStore, RedisTls};
use tokensmith::store::{AnyStore, Consume, ConsumeOutcome, Store, StoreError};
use tokensmith::{Clock, SystemClock};

use crate::harness::{base_config, Resp, TestApp, SHOP_KEY};
use crate::redis_harness::{free_port, INSTALL_HINT};

const TIMEOUT: Duration = Duration::from_secs(2);
/// How long a freshly spawned server may take to be ready.
const READY_WITHIN: Duration = Duration::from_secs(10);

fn now() -> i64 {
    SystemClock.now()
}

// ---------------------------------------------------------------------------
// Certificates

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client
/// certificate, all signed by it; and a second CA with its own server
/// certificate for the same names, which the first CA does not vouch for.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki { dir };
        for ca in ["ca", "other-ca"] {
            pki.openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=tokensmith test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
        }
        pki.leaf(
            "server",
            "ca",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
        );
        pki.leaf(
            "other-server",
            "other-ca",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
        );
        pki.leaf("client", "ca", "extendedKeyUsage=clientAuth");
        // The nodes of a TLS cluster talk to each other as both.
        pki.leaf(
            "node",
            "ca",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth",
        );
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn leaf(&self, name: &str, ca: &str, ext: &str) {
        let ext_file = format!("{name}.ext");
        std::fs::write(self.path(&ext_file), format!("basicConstraints=CA:FALSE\n{ext}\n")).unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext_file,
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| {
                panic!("could not run openssl ({e}); the TLS tests need it: apt-get install -y openssl")
            });
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Verifies the server against `ca`, with the client certificate when
    /// `client` is set.
    fn tls(&self, ca: &str, client: bool) -> RedisTls {
        let (cert, key) = (self.path("client.pem"), self.path("client.key"));
        let client = client.then_some((cert.as_path(), key.as_path()));
        RedisTls::from_files(
            Some(&self.path(&format!("{ca}.pem"))),
            client.map(|c| c.0),
            client.map(|c| c.1),
        )
        .unwrap()
    }
}

// ---------------------------------------------------------------------------
// A TLS-only redis-server

/// A `redis-server` with no plain port (`--port 0`), TLS on a free port,
/// killed on drop.
struct TlsRedis {
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    /// Serves `cert` (`<cert>.pem`, `<cert>.key` of `pki`); asks clients for
    /// a certificate signed by `ca` when `auth_clients`.
    fn start(pki: &Pki, cert: &str, auth_clients: bool, extra: &[&str]) -> TlsRedis {
        let dir = tempfile::tempdir().unwrap();
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            let mut args = tls_args(pki, cert, port, auth_clients);
            args.extend(extra.iter().map(|a| (*a).to_owned()));
            match spawn(&args, port, dir.path()) {
                Ok(child) => {
                    return TlsRedis {
                        port,
                        args,
                        child: Some(child),
                        dir,
                    }
                }
                Err(why) => failures.push(why),
            }
        }
        panic!("redis-server with TLS did not start: {failures:?}");
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port serving `cert`
    /// (as an attacker, or a botched certificate rotation, would).
    fn restart_serving(&mut self, pki: &Pki, cert: &str) {
        self.stop();
        let auth = self.args.iter().any(|a| a == "yes");
        self.args = tls_args(pki, cert, self.port, auth);
        match spawn(&self.args, self.port, self.dir.path()) {
            Ok(child) => self.child = Some(child),
            Err(why) => panic!("redis-server did not restart on port {}: {why}", self.port),
        }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tls_args(pki: &Pki, cert: &str, port: u16, auth_clients: bool) -> Vec<String> {
    let p = |name: String| pki.path(&name).display().to_string();
    vec![
        "--port".into(),
        "0".into(),
        "--tls-port".into(),
        port.to_string(),
        "--tls-cert-file".into(),
        p(format!("{cert}.pem")),
        "--tls-key-file".into(),
        p(format!("{cert}.key")),
        "--tls-ca-cert-file".into(),
        p("ca.pem".into()),
        "--tls-auth-clients".into(),
        if auth_clients { "yes" } else { "no" }.into(),
    ]
}

/// Spawns `redis-server` from PATH, as `redis_harness.rs` does, and waits
/// (bounded) until its log says it is ready and its TLS port accepts.
fn spawn(args: &[String], port: u16, dir: &Path) -> Result<Child, String> {
    let log = dir.join(format!("redis-{port}.log"));
    let _ = std::fs::remove_file(&log);
    let spawned = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => panic!("{INSTALL_HINT} (redis-server: {e})"),
    };
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("redis-server on port {port} exited with {status}: {log}"));
        }
        let ready = std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Ready to accept connections"));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if ready && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "redis-server on port {port} was not ready within {READY_WITHIN:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn connect(url: &str, tls: &RedisTls) -> Result<RedisStore, StoreError> {
    RedisStore::connect_with_tls(url, tls, "tls", TIMEOUT, now() - 3600).await
}

fn unavailable(r: Result<RedisStore, StoreError>) -> String {
    match r {
        Ok(_) => panic!("connected"),
        Err(StoreError::Unavailable(why)) => why,
        Err(other) => panic!("not Unavailable: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// One Redis

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_over_tls() {
    let pki = Pki::new();
    let server = TlsRedis::start(&pki, "server", false, &[]);
    let tls = pki.tls("ca", false);
    let store = Arc::new(connect(&server.url(), &tls).await.unwrap());
    crate::store::consume_first_use_then_replayed(Arc::clone(&store)).await;
    crate::store::consume_of_a_token_revoked_by_jti_marks_nothing(Arc::clone(&store)).await;
    crate::store::consume_of_a_token_revoked_by_sub_depends_on_iat(Arc::clone(&store)).await;
    crate::store::refresh_chain_over_five_steps(Arc::clone(&store)).await;
    crate::store::rate_limit_fixed_window_and_retry_after(store).await;
}

/// The configuration's path: `[store]` with `rediss://` and
/// `redis_ca_file`, as `serve` builds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_from_the_config_uses_the_ca_file() {
    let pki = Pki::new();
    let server = TlsRedis::start(&pki, "server", false, &[]);
    let config = |ca: &str| {
        let toml = format!(
            "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_ca_file = \"{}\"\n",
            server.url(),
            pki.path(ca).display()
        );
        Config::from_toml_str(&toml, Vec::<(String, String)>::new()).unwrap()
    };
    let cfg = config("ca.pem");
    let store = AnyStore::from_config(&cfg.store, "from-config", &SystemClock)
        .await
        .unwrap();
    let t = now();
    let consume = || Consume::new("j1", "alice", t, "jti:j1", t + 300);
    assert_eq!(store.consume(consume(), t).await, Ok(ConsumeOutcome::FirstUse));
    assert_eq!(store.consume(consume(), t).await, Ok(ConsumeOutcome::Replayed));
    // The same URL with a CA that did not sign the server's certificate.
    let cfg = config("other-ca.pem");
    match AnyStore::from_config(&cfg.store, "from-config", &SystemClock).await {
        Ok(_) => panic!("connected through a CA that did not sign the server's certificate"),
        Err(e) => assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_refused_at_connect() {
    let pki = Pki::new();
    let server = TlsRedis::start(&pki, "server", false, &[]);
    let why = unavailable(connect(&server.url(), &pki.tls("other-ca", false)).await);
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    // Nor do the system's roots vouch for a private CA.
    let why = unavailable(connect(&server.url(), &RedisTls::default()).await);
    assert!(why.to_lowercase().contains("certificate"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_redis_to_a_tls_port_fails_closed() {
    let pki = Pki::new();
    let server = TlsRedis::start(&pki, "server", false, &[]);
    let plain = format!("redis://127.0.0.1:{}/", server.port);
    let started = Instant::now();
    unavailable(RedisStore::connect(&plain, "tls", TIMEOUT, 0).await);
    assert!(started.elapsed() < TIMEOUT * 2, "{:?}", started.elapsed());
    // TLS files with a plain URL: refused before any connection.
    let why = unavailable(connect(&plain, &pki.tls("ca", false)).await);
    assert!(why.contains("not rediss://"), "{why}");
}

/// A running service whose Redis starts presenting a certificate its CA
/// did not sign (a man in the middle, a botched rotation) fails closed:
/// every consume is 503 `store_unavailable`, `/readyz` is 503, and it
/// recovers once the right certificate is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_redis_changes_certificate_fails_closed() {
    let pki = Pki::new();
    let mut server = TlsRedis::start(&pki, "server", false, &[]);
    let store = RedisStore::connect_with_tls(
        &server.url(),
        &pki.tls("ca", false),
        "svc",
        Duration::from_millis(500),
        0,
    )
    .await
    .unwrap();
    let app = TestApp::with_store(&base_config(), AnyStore::Redis(store));
    let first = app.token(&json!({"sub": "alice"})).await;
    assert_eq!(app_post(&app, &first).await.status, StatusCode::OK);
    let r = app_post(&app, &first).await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::UNAUTHORIZED, "token_replayed".to_owned())
    );

    let token = app.token(&json!({"sub": "bob"})).await;
    server.restart_serving(&pki, "other-server");
    // Reconnection is tried every quarter second at most: for a second and
    // a half, nothing gets through, issuance (it counts the rate limit in
    // the store) included.
    let r = app.post("/v1/tokens", Some(SHOP_KEY), &json!({"sub": "dave"})).await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable".to_owned())
    );
    let until = Instant::now() + Duration::from_millis(1500);
    let mut attempts = 0;
    while Instant::now() < until {
        let r = app_post(&app, &token).await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable".to_owned()),
            "a consume through an untrusted certificate"
        );
        let ready = app.get("/readyz").await;
        assert_eq!(
            ready.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "/readyz: {:?}",
            ready.json()
        );
        attempts += 1;
    }
    assert!(attempts > 1);

    server.restart_serving(&pki, "server");
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = app_post(&app, &token).await;
        if r.status != StatusCode::SERVICE_UNAVAILABLE {
            break r;
        }
        assert_eq!(r.error(), "store_unavailable", "{:?}", r.json());
        assert!(Instant::now() < deadline, "no recovery with the right certificate back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The restarts emptied Redis (no persistence): the token from before
    // is refused as such, and one issued from the new epoch on is consumed.
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::UNAUTHORIZED, "replay_state_lost".to_owned())
    );
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    app.clock.advance(1);
    let fresh = app.token(&json!({"sub": "carol"})).await;
    assert_eq!(app_post(&app, &fresh).await.status, StatusCode::OK);
}

async fn app_post(app: &TestApp, token: &str) -> Resp {
    app.post(
        "/v1/verify",
        Some(SHOP_KEY),
        &json!({ "token": token, "consume": true }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_sends_the_client_certificate() {
    let pki = Pki::new();
    let server = TlsRedis::start(&pki, "server", true, &[]);
    // Without a client certificate the server ends the handshake.
    unavailable(connect(&server.url(), &pki.tls("ca", false)).await);
    let tls = pki.tls("ca", true);
    // Its debug form says what is set, never what the files hold.
    let key = std::fs::read_to_string(pki.path("client.key")).unwrap();
    let body = key.lines().nth(1).unwrap();
    assert_eq!(
        format!("{tls:?}"),
        "RedisTls { ca: Some(\"custom\"), client_certificate: true }"
    );
    assert!(!format!("{tls:#?}").contains(body));
    let store = Arc::new(connect(&server.url(), &tls).await.unwrap());
    crate::store::consume_first_use_then_replayed(store).await;
}

// ---------------------------------------------------------------------------
// Configuration

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
    Config::from_toml_str(
        toml,
        env.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>(),
    )
    .map_err(|e| e.to_string())
}

#[test]
fn tls_settings_are_checked_at_load() {
    let pki = Pki::new();
    let redis = "[store]\nbackend = \"redis\"\nredis_url = \"rediss://127.0.0.1:6380\"\n";
    let ca = pki.path("ca.pem").display().to_string();
    let (cert, key) = (
        pki.path("client.pem").display().to_string(),
        pki.path("client.key").display().to_string(),
    );

    let ok = load(redis, &[("TOKENSMITH_STORE_REDIS_CA_FILE", &ca)]).unwrap();
    assert_eq!(ok.store.redis_ca_file.as_deref(), Some(pki.path("ca.pem").as_path()));
    let ok = load(
        &format!(
            "{redis}redis_ca_file = \"{ca}\"\nredis_client_cert_file = \"{cert}\"\nredis_client_key_file = \"{key}\"\n"
        ),
        &[],
    )
    .unwrap();
    assert_eq!(
        ok.store.redis_client_key_file.as_deref(),
        Some(pki.path("client.key").as_path())
    );
    // The key's path may be shown; its content never is.
    let shown = format!("{:?}", ok.store);
    let key_pem = std::fs::read_to_string(pki.path("client.key")).unwrap();
    let body = key_pem.lines().nth(1).unwrap();
    assert!(!shown.contains(body), "{shown}");

    let missing = pki.path("nope.pem").display().to_string();
    let e = load(redis, &[("TOKENSMITH_STORE_REDIS_CA_FILE", &missing)]).unwrap_err();
    assert!(
        e.contains("store.redis_ca_file") && e.contains("TOKENSMITH_STORE_REDIS_CA_FILE"),
        "{e}"
    );
    assert!(e.contains("cannot read"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    // A private key where the CA belongs: no certificate, and not quoted.
    let e = load(&format!("{redis}redis_ca_file = \"{key}\"\n"), &[]).unwrap_err();
    assert!(
        e.contains("store.redis_ca_file") && e.contains("no PEM certificate"),
        "{e}"
    );
    assert!(!e.contains(body), "{e}");
    // A client certificate with the wrong key.
    let other_key = pki.path("server.key").display().to_string();
    let e = load(
        &format!("{redis}redis_client_cert_file = \"{cert}\"\nredis_client_key_file = \"{other_key}\"\n"),
        &[],
    )
    .unwrap_err();
    assert!(e.contains("store.redis_client_key_file"), "{e}");
    let e = load(&format!("{redis}redis_client_cert_file = \"{cert}\"\n"), &[]).unwrap_err();
    assert!(e.contains("store.redis_client_key_file"), "{e}");

    // TLS files with a plain URL or plain seeds: never plain text instead.
    let plain = "[store]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\n";
    let e = load(plain, &[("TOKENSMITH_STORE_REDIS_CA_FILE", &ca)]).unwrap_err();
    assert!(e.contains("store.redis_ca_file") && e.contains("not rediss://"), "{e}");
    let e = load(
        "[store]\nbackend = \"redis\"\nredis_cluster = [\"redis://127.0.0.1:7000\"]\n",
        &[("TOKENSMITH_STORE_REDIS_CA_FILE", &ca)],
    )
    .unwrap_err();
    assert!(e.contains("not rediss://"), "{e}");
    let ok = load(
        "[store]\nbackend = \"redis\"\nredis_cluster = [\"rediss://127.0.0.1:7000\", \"rediss://127.0.0.1:7001\"]\n",
        &[("TOKENSMITH_STORE_REDIS_CA_FILE", &ca)],
    );
    assert!(ok.is_ok(), "{ok:?}");
    // Mixed seeds.
    let e = load(
        "[store]\nbackend = \"redis\"\nredis_cluster = [\"rediss://127.0.0.1:7000\", \"redis://127.0.0.1:7001\"]\n",
        &[],
    )
    .unwrap_err();
    assert!(e.contains("mixes redis:// and rediss://"), "{e}");
    // Certificate checks cannot be turned off.
    let e = load("[store]\nredis_url = \"rediss://127.0.0.1:6380/#insecure\"\n", &[]).unwrap_err();
    assert!(e.contains("store.redis_url") && e.contains("#insecure"), "{e}");
    let e = load(
        "[store]\nredis_cluster = [\"rediss://127.0.0.1:7000/#insecure\"]\n",
        &[],
    )
    .unwrap_err();
    assert!(e.contains("seed 1") && e.contains("#insecure"), "{e}");
}

// ---------------------------------------------------------------------------
// A Redis Cluster over TLS

/// Three masters without replicas, TLS only: clients, the cluster bus
/// (`--tls-cluster`) and replication (`--tls-replication`).
struct TlsCluster {
    nodes: Vec<TlsRedis>,
}

impl TlsCluster {
    fn start(pki: &Pki) -> TlsCluster {
        let nodes: Vec<TlsRedis> = (0..3)
            .map(|_| {
                TlsRedis::start(
                    pki,
                    "node",
                    false,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-node-timeout",
                        "2000",
                        "--tls-cluster",
                        "yes",
                        "--tls-replication",
                        "yes",
                    ],
                )
            })
            .collect();
        let ca = pki.path("ca.pem");
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(&ca)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("could not run redis-cli ({e}); it comes with redis-server. {INSTALL_HINT}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = TlsCluster { nodes };
        cluster.wait_ok(&ca);
        cluster
    }

    /// Until every node says `cluster_state:ok`.
    fn wait_ok(&self, ca: &Path) {
        let deadline = Instant::now() + READY_WITHIN;
        for node in &self.nodes {
            loop {
                let out = Command::new("redis-cli")
                    .args(["--tls", "--cacert"])
                    .arg(ca)
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {} never reported cluster_state:ok",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn seeds(&self, scheme: &str) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("{scheme}://127.0.0.1:{}", n.port))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_with_rediss_seeds() {
    let pki = Pki::new();
    let cluster = TlsCluster::start(&pki);
    let store = RedisStore::connect_cluster_with_tls(
        &cluster.seeds("rediss"),
        &pki.tls("ca", false),
        "tls-cluster",
        TIMEOUT,
        now() - 3600,
    )
    .await
    .unwrap();
    assert!(store.is_cluster());
    let store = Arc::new(store);
    // Enough keys to touch every master.
    crate::store::consume_first_use_then_replayed(Arc::clone(&store)).await;
    crate::store::consume_of_a_token_revoked_by_jti_marks_nothing(Arc::clone(&store)).await;
    crate::store::refresh_chain_over_five_steps(Arc::clone(&store)).await;
    let t = now();
    for i in 0..64 {
        let jti = format!("spread-{i}");
        let key = format!("jti:{jti}");
        let c = Consume::new(&jti, "alice", t, &key, t + 300);
        assert_eq!(store.consume(c, t).await, Ok(ConsumeOutcome::FirstUse), "{jti}");
    }

    // The wrong CA, plain seeds, mixed seeds: no connection.
    let wrong = RedisStore::connect_cluster_with_tls(
        &cluster.seeds("rediss"),
        &pki.tls("other-ca", false),
        "tls-cluster",
        TIMEOUT,
        0,
    )
    .await;
    unavailable(wrong);
    unavailable(RedisStore::connect_cluster(&cluster.seeds("redis"), "tls-cluster", TIMEOUT, 0).await);
    let mut mixed = cluster.seeds("rediss");
    mixed[1] = mixed[1].replacen("rediss", "redis", 1);
    let why = unavailable(
        RedisStore::connect_cluster_with_tls(&mixed, &pki.tls("ca", false), "tls-cluster", TIMEOUT, 0).await,
    );
    assert!(why.contains("mix"), "{why}");
}
