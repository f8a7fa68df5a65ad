//! Several instances as one (ARCHITECTURE.md, "Scale"): two real
//! `tokensmith serve` processes on the same keys folder and the same config,
//! with `[store] backend = "redis"` pointing at one real `redis-server`.
//!
//! Both instances use the same `issuer` (A's address), so a token minted by
//! either verifies on both and both share one Redis namespace. Every test
//! starts its own Redis and instances on free ports and kills them on drop;
//! every wait is a poll with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{base_config, binary, free_port, Spawned, OTHER_KEY, SHOP_KEY};
use crate::redis_harness::{commandstats, mark_name, RedisServer};

/// The base config's `[tokens] leeway`, in seconds.
const LEEWAY: i64 = 60;

/// The instances log only errors: the outage test makes them warn a lot.
const QUIET: [(&str, &str); 1] = [("TOKENSMITH_LOG", "error")];

fn unix_ms() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(d.as_millis()).unwrap()
}

/// The base config with the fleet's issuer, keys folder and Redis store, and
/// `shop_123`'s rate limit replaced by `rate_limit`.
fn fleet_config(issuer: &str, redis_url: &str, keys: &Path, rate_limit: &str) -> String {
    let base = base_config();
    let with_issuer = base.replace("issuer = \"https://issuer.test\"", &format!("issuer = \"{issuer}\""));
    let text = with_issuer.replace("rate_limit = \"1000/s\"", &format!("rate_limit = \"{rate_limit}\""));
    assert!(
        with_issuer != base && (text != with_issuer || rate_limit == "1000/s"),
        "the base config changed shape: {base}"
    );
    let keys = keys.to_str().unwrap();
    format!(
        "{text}\n[keys]\ndir = {keys:?}\n\n[store]\nbackend = \"redis\"\nredis_url = {redis_url:?}\ntimeout = \"300ms\"\n"
    )
}

/// A plain-HTTP client that opens a fresh connection per request, so an
/// instance restarted on the same port never meets a stale pooled one.
fn http_client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(tokensmith::jose::alg::tls_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// One HTTP answer, read whole.
#[derive(Debug, Clone)]
struct Reply {
    status: StatusCode,
    body: Value,
    retry_after: Option<String>,
}

impl Reply {
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
}

async fn read(resp: reqwest::Response) -> Result<Reply, String> {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = resp.bytes().await.map_err(|e| format!("reading the body: {e}"))?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        body,
        retry_after,
    })
}

/// POSTs JSON with `Authorization: Bearer <key>`; a transport error is an `Err`.
async fn try_post(http: &reqwest::Client, url: &str, key: &str, body: &Value) -> Result<Reply, String> {
    let resp = http
        .post(url)
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        // Debug, not Display: the cause (refused, reset, timed out) is in the source chain.
        .map_err(|e| format!("POST {url}: {e:?}"))?;
    read(resp).await
}

/// A token as `/v1/tokens` answers it.
#[derive(Debug, Clone)]
struct Issued {
    token: String,
    jti: String,
    exp: i64,
}

impl Issued {
    /// The `kid` of the token's protected header.
    fn kid(&self) -> String {
        let header = self.token.split('.').next().unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap();
        let header: Value = serde_json::from_slice(&bytes).unwrap();
        header["kid"].as_str().unwrap().to_owned()
    }
}

/// Which of the two instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    A,
    B,
}

use Node::{A, B};

/// Two instances on one keys folder and one Redis. Field order is drop
/// order: the instances die before Redis, and both before the folder goes.
struct Fleet {
    a: Spawned,
    b: Spawned,
    redis: RedisServer,
    config: PathBuf,
    keys: PathBuf,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Fleet {
    /// Redis, then A alone (it makes the keys in the empty folder), then B
    /// on the same folder.
    fn start(rate_limit: &str) -> Fleet {
        Fleet::start_with(rate_limit, None)
    }

    /// As [`start`](Fleet::start), the store on the shared Redis Cluster
    /// (`cluster_harness.rs`; the issuer, A's address, is the namespace).
    fn start_cluster(rate_limit: &str) -> Fleet {
        Fleet::start_with(rate_limit, Some(crate::cluster_harness::shared_seeds()))
    }

    /// The issuer is A's address, so A's port is in the config: an instance
    /// that does not start (its port taken by another test's server between
    /// `free_port` and its bind) is tried again on fresh ports, up to three
    /// times.
    fn start_with(rate_limit: &str, cluster: Option<Vec<String>>) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisServer::start();
        let keys = dir.path().join("keys");
        let config = dir.path().join("tokensmith.toml");
        std::fs::create_dir(&keys).unwrap();
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port_a = free_port();
            let mut port_b = free_port();
            while port_b == port_a {
                port_b = free_port();
            }
            let issuer = format!("http://127.0.0.1:{port_a}");
            let mut text = fleet_config(&issuer, &redis.url, &keys, rate_limit);
            if let Some(seeds) = &cluster {
                text.push_str(&format!("redis_cluster = {seeds:?}\n"));
            }
            std::fs::write(&config, text).unwrap();
            let a = match Spawned::try_start(dir.path(), &config, port_a, &QUIET) {
                Ok(a) => a,
                Err(why) => {
                    failures.push(why);
                    continue;
                }
            };
            assert!(
                keys.join(tokensmith::keys::disk::KEYRING_FILE).is_file(),
                "A did not make the keys in {}",
                keys.display()
            );
            let b = match Spawned::try_start(dir.path(), &config, port_b, &QUIET) {
                Ok(b) => b,
                Err(why) => {
                    failures.push(why);
                    continue;
                }
            };
            return Fleet {
                a,
                b,
                redis,
                config,
                keys,
                http: http_client(),
                dir,
            };
        }
        panic!("the fleet did not start: {failures:?}");
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.a.port)
    }

    fn node(&self, n: Node) -> &Spawned {
        match n {
            A => &self.a,
            B => &self.b,
        }
    }

    fn url(&self, n: Node, path: &str) -> String {
        self.node(n).url(path)
    }

    async fn post(&self, n: Node, path: &str, key: &str, body: &Value) -> Reply {
        try_post(&self.http, &self.url(n, path), key, body).await.unwrap()
    }

    async fn get(&self, n: Node, path: &str) -> Reply {
        let url = self.url(n, path);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        read(resp).await.unwrap()
    }

    /// Mints a token on `n` for the client of `key`; panics unless 200.
    async fn try_issue(&self, n: Node, key: &str, sub: &str) -> Result<Issued, Reply> {
        let r = self.post(n, "/v1/tokens", key, &json!({ "sub": sub })).await;
        if r.status != StatusCode::OK {
            return Err(r);
        }
        Ok(Issued {
            token: r.body["token"].as_str().unwrap().to_owned(),
            jti: r.body["jti"].as_str().unwrap().to_owned(),
            exp: r.body["expires_at"].as_i64().unwrap(),
        })
    }

    async fn issue(&self, n: Node, key: &str, sub: &str) -> Issued {
        self.try_issue(n, key, sub)
            .await
            .unwrap_or_else(|r| panic!("issuing on {n:?} for {sub}: {r:?}"))
    }

    /// `POST /v1/verify`, with or without `consume`.
    async fn verify(&self, n: Node, key: &str, token: &Issued, consume: bool) -> Reply {
        let body = json!({ "token": token.token, "consume": consume });
        self.post(n, "/v1/verify", key, &body).await
    }

    /// A raw connection to the fleet's Redis, for inspection.
    async fn redis_conn(&self) -> redis::aio::MultiplexedConnection {
        self.redis.client().get_multiplexed_async_connection().await.unwrap()
    }

    /// Runs the CLI against the fleet's config, in the fleet's folder.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new(binary())
            .current_dir(self.dir.path())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("TOKENSMITH_LOG", "error")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tokensmith {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `keys list --json`: kid by state (`next`, `active`, `retiring`).
    fn key_states(&self) -> Vec<(String, String)> {
        let keys = self.keys.to_str().unwrap();
        let out = self.cli(&["keys", "list", "--dir", keys, "--json"]);
        let records: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        records
            .iter()
            .map(|r| {
                (
                    r["state"].as_str().unwrap().to_owned(),
                    r["kid"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn kid_in_state(&self, state: &str) -> String {
        let states = self.key_states();
        let found: Vec<&String> = states.iter().filter(|(s, _)| s == state).map(|(_, k)| k).collect();
        assert_eq!(found.len(), 1, "one {state} key expected: {states:?}");
        found[0].clone()
    }

    /// Asserts both processes are still running.
    fn assert_alive(&mut self) {
        for (name, s) in [("A", &mut self.a), ("B", &mut self.b)] {
            let status = s.child.try_wait().unwrap();
            assert!(status.is_none(), "instance {name} exited: {status:?}");
        }
    }
}

/// What changed between two `commandstats`, without our own `INFO`.
fn stats_diff(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> HashMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .filter_map(|(name, &n)| {
            let grew = n - before.get(name).copied().unwrap_or(0);
            (grew > 0).then(|| (name.clone(), grew))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Replay across instances.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jti_is_consumed_once_across_the_fleet() {
    a_jti_is_consumed_once_across_the_fleet_on(Fleet::start("1000/s")).await;
}

/// The same with the store on the shared Redis Cluster. (It once met a
/// connection reset on A's first request in the full suite: the harness
/// took any TCP connect on A's port for a started instance, but A binds
/// before its store connects, and a start-up that then failed, such as the
/// 1,024 bucket epochs not written within one 300 ms store timeout on a
/// loaded machine, reset the waiting request; so could another process
/// on the port. The harness now waits for A's own `/healthz`, and the
/// bucket epochs have a start-up bound of their own.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jti_is_consumed_once_across_the_fleet_on_a_cluster() {
    a_jti_is_consumed_once_across_the_fleet_on(Fleet::start_cluster("1000/s")).await;
}

async fn a_jti_is_consumed_once_across_the_fleet_on(f: Fleet) {
    for round in 0..3 {
        let minted_on = if round % 2 == 0 { A } else { B };
        let token = f.issue(minted_on, SHOP_KEY, "alice").await;
        let barrier = Arc::new(tokio::sync::Barrier::new(64));
        let mut tasks = Vec::new();
        for i in 0..64 {
            let node = if i % 2 == 0 { A } else { B };
            let url = f.url(node, "/v1/verify");
            let http = f.http.clone();
            let body = json!({ "token": token.token, "consume": true });
            let barrier = Arc::clone(&barrier);
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                (node, try_post(&http, &url, SHOP_KEY, &body).await)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            let (node, reply) = task.await.unwrap();
            let reply = reply.unwrap();
            match reply.status {
                StatusCode::OK => {
                    assert_eq!(reply.body["claims"]["jti"], json!(token.jti));
                    winners.push(node);
                }
                StatusCode::UNAUTHORIZED => assert_eq!(reply.error(), "token_replayed", "{reply:?}"),
                other => panic!("round {round}: unexpected {other} from {node:?}: {:?}", reply.body),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one of 64 consumes may win, got {winners:?}"
        );
        // And later, from either side, it stays spent.
        for n in [A, B] {
            let r = f.verify(n, SHOP_KEY, &token, true).await;
            assert_eq!((r.status, r.error()), (StatusCode::UNAUTHORIZED, "token_replayed"));
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Revocation on one instance holds on the other.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_on_one_instance_holds_on_the_other() {
    a_revocation_on_one_instance_holds_on_the_other_on(Fleet::start("1000/s")).await;
}

/// The same with the store on the shared Redis Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_on_one_instance_holds_on_the_other_on_a_cluster() {
    a_revocation_on_one_instance_holds_on_the_other_on(Fleet::start_cluster("1000/s")).await;
}

async fn a_revocation_on_one_instance_holds_on_the_other_on(f: Fleet) {
    let revoked = f.issue(B, SHOP_KEY, "alice").await;
    let alice_other = f.issue(B, SHOP_KEY, "alice").await;
    let control = f.issue(B, SHOP_KEY, "carol").await;
    for n in [A, B] {
        assert_eq!(f.verify(n, SHOP_KEY, &revoked, false).await.status, StatusCode::OK);
    }

    // By jti, on A.
    let r = f.post(A, "/v1/revoke", SHOP_KEY, &json!({ "jti": revoked.jti })).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    for n in [B, A] {
        for consume in [false, true] {
            let r = f.verify(n, SHOP_KEY, &revoked, consume).await;
            assert_eq!(
                (r.status, r.error()),
                (StatusCode::UNAUTHORIZED, "token_revoked"),
                "{n:?} consume={consume}"
            );
        }
        // Only that jti: the same user's other token still verifies.
        assert_eq!(f.verify(n, SHOP_KEY, &alice_other, false).await.status, StatusCode::OK);
    }

    // By sub, on A: tokens of bob minted on either instance.
    let bob_a = f.issue(A, SHOP_KEY, "bob").await;
    let bob_b = f.issue(B, SHOP_KEY, "bob").await;
    let r = f.post(A, "/v1/revoke", SHOP_KEY, &json!({ "sub": "bob" })).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    for n in [B, A] {
        for t in [&bob_a, &bob_b] {
            for consume in [false, true] {
                let r = f.verify(n, SHOP_KEY, t, consume).await;
                assert_eq!(
                    (r.status, r.error()),
                    (StatusCode::UNAUTHORIZED, "token_revoked"),
                    "{n:?} consume={consume}"
                );
            }
        }
        let r = f.verify(n, SHOP_KEY, &control, false).await;
        assert_eq!(r.status, StatusCode::OK, "another sub is untouched: {r:?}");
    }

    // Only tokens issued up to the revocation: once the second has passed,
    // a new token for bob (minted on B) verifies on both.
    let deadline = Instant::now() + Duration::from_secs(5);
    let fresh = loop {
        let t = f.issue(B, SHOP_KEY, "bob").await;
        let r = f.verify(A, SHOP_KEY, &t, false).await;
        if r.status == StatusCode::OK {
            break t;
        }
        assert_eq!(r.error(), "token_revoked", "{r:?}");
        assert!(Instant::now() < deadline, "no new token for bob verified within 5s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(f.verify(B, SHOP_KEY, &fresh, true).await.status, StatusCode::OK);
    let r = f.verify(B, SHOP_KEY, &bob_a, false).await;
    assert_eq!(r.error(), "token_revoked", "the old ones stay revoked");
}

// ---------------------------------------------------------------------------
// 3. One rate limit for the whole fleet.

/// Waits for the next whole second and returns its start (Unix ms), or
/// `None` if the poll woke up too late into it to call it aligned.
async fn next_second_start() -> Option<i64> {
    let target = (unix_ms() / 1000 + 1) * 1000;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let now = unix_ms();
        if now >= target {
            return (now - target < 50).then_some(target);
        }
        assert!(Instant::now() < deadline, "the clock did not reach the next second");
        let wait = u64::try_from((target - now).clamp(1, 100)).unwrap();
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rate_limit_is_shared_by_the_fleet() {
    the_rate_limit_is_shared_by_the_fleet_on(Fleet::start("5/s")).await;
}

/// The same with the store on the shared Redis Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rate_limit_is_shared_by_the_fleet_on_a_cluster() {
    the_rate_limit_is_shared_by_the_fleet_on(Fleet::start_cluster("5/s")).await;
}

async fn the_rate_limit_is_shared_by_the_fleet_on(f: Fleet) {
    const LIMIT: usize = 5;
    const BURST: usize = 16;
    let mut aligned_bursts = 0;
    for attempt in 0..5 {
        let Some(second) = next_second_start().await else {
            continue;
        };
        let started = unix_ms();
        let mut tasks = Vec::new();
        for i in 0..BURST {
            let node = if i % 2 == 0 { A } else { B };
            let url = f.url(node, "/v1/tokens");
            let http = f.http.clone();
            tasks.push(tokio::spawn(async move {
                (node, try_post(&http, &url, SHOP_KEY, &json!({ "sub": "u" })).await)
            }));
        }
        let mut ok = HashMap::from([("A", 0usize), ("B", 0usize)]);
        let mut limited = 0;
        for task in tasks {
            let (node, reply) = task.await.unwrap();
            let reply = reply.unwrap();
            match reply.status {
                StatusCode::OK => *ok.get_mut(if node == A { "A" } else { "B" }).unwrap() += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    limited += 1;
                    assert_eq!(reply.error(), "rate_limited");
                    let retry: u64 = reply
                        .retry_after
                        .as_deref()
                        .unwrap_or_else(|| panic!("429 without Retry-After: {reply:?}"))
                        .parse()
                        .unwrap();
                    assert_eq!(retry, 1, "a 1s window ends within a second");
                }
                other => panic!("unexpected {other}: {:?}", reply.body),
            }
        }
        let finished = unix_ms();
        let total = ok["A"] + ok["B"];
        assert_eq!(total + limited, BURST);
        // Whatever the timing, at most two windows were touched.
        assert!(total <= 2 * LIMIT, "{total} successes over at most two windows: {ok:?}");
        if finished / 1000 == second / 1000 {
            // Every hit fell in one window: the fleet's bound, not each instance's.
            assert_eq!(total, LIMIT, "attempt {attempt}: one window, {ok:?} succeeded");
            aligned_bursts += 1;
            break;
        }
        eprintln!("fleet: burst {attempt} straddled a second ({started}..{finished} ms); {total} succeeded");
    }
    assert!(
        aligned_bursts > 0,
        "no burst of {BURST} fitted in one second in 5 tries"
    );

    // The next window admits again, on either instance.
    for n in [A, B] {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match f.try_issue(n, SHOP_KEY, "u").await {
                Ok(_) => break,
                Err(r) => assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{r:?}"),
            }
            assert!(Instant::now() < deadline, "{n:?} never admitted a request again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// 4. Rotation by the CLI, picked up by both.

async fn jwks_kids(f: &Fleet, n: Node) -> Vec<String> {
    let r = f.get(n, "/.well-known/jwks.json").await;
    assert_eq!(r.status, StatusCode::OK);
    r.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_by_the_cli_is_picked_up_by_both() {
    let f = Fleet::start("1000/s");
    let old_active = f.kid_in_state("active");
    let old_next = f.kid_in_state("next");
    let mut before = Vec::new();
    for n in [A, B] {
        let mut kids = jwks_kids(&f, n).await;
        kids.sort();
        let mut expected = vec![old_active.clone(), old_next.clone()];
        expected.sort();
        assert_eq!(kids, expected, "{n:?} publishes the ring A made");
        let t = f.issue(n, SHOP_KEY, "alice").await;
        assert_eq!(t.kid(), old_active);
        before.push(t);
    }

    let keys = f.keys.to_str().unwrap();
    f.cli(&["keys", "rotate", "--dir", keys, "--now"]);
    let rotated = Instant::now();
    assert_eq!(f.kid_in_state("active"), old_next, "next became active");
    assert_eq!(f.kid_in_state("retiring"), old_active, "active became retiring");
    let new_next = f.kid_in_state("next");
    assert!(new_next != old_active && new_next != old_next);

    for n in [A, B] {
        let deadline = rotated + Duration::from_secs(5);
        loop {
            let kids = jwks_kids(&f, n).await;
            let t = f.issue(n, SHOP_KEY, "alice").await;
            let published = [&old_active, &old_next, &new_next].iter().all(|k| kids.contains(k));
            if published && t.kid() == old_next {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{n:?} did not pick up the rotation within 5s: JWKS {kids:?}, signing with {}",
                t.kid()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!(
        "fleet: both instances picked up the rotation {:?} after it",
        rotated.elapsed()
    );

    // Tokens from before the rotation (now `retiring`) and after it verify
    // on both instances, whichever minted them.
    let after = [f.issue(A, SHOP_KEY, "bob").await, f.issue(B, SHOP_KEY, "bob").await];
    for n in [A, B] {
        for t in before.iter().chain(after.iter()) {
            let r = f.verify(n, SHOP_KEY, t, false).await;
            assert_eq!(r.status, StatusCode::OK, "{n:?} kid {}: {r:?}", t.kid());
        }
    }
}

// ---------------------------------------------------------------------------
// 5. Redis goes away under load, and comes back.

#[derive(Debug)]
struct Outcome {
    node: Node,
    /// Sent after `RedisServer::stop` had returned.
    sent_after_stop: bool,
    result: Result<Reply, String>,
    elapsed: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_fails_closed_and_the_fleet_recovers() {
    let mut f = Fleet::start("1000/s");
    // Tokens of a rate-limited client (its rate hit is the first store call)
    // and of one without a limit (the revocation check and the mark are).
    let mut pool = VecDeque::new();
    for i in 0..80 {
        let (n, key) = if i % 2 == 0 { (A, SHOP_KEY) } else { (B, OTHER_KEY) };
        pool.push_back((key, f.issue(n, key, &format!("user{i}")).await));
    }
    let mut spare: VecDeque<_> = pool.split_off(50);
    let queue = Arc::new(Mutex::new(pool));
    let stopped = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));

    let mut workers = Vec::new();
    for w in 0..6 {
        let node = if w % 2 == 0 { A } else { B };
        let url = f.url(node, "/v1/verify");
        let (http, queue, stopped, outcomes) = (
            f.http.clone(),
            Arc::clone(&queue),
            Arc::clone(&stopped),
            Arc::clone(&outcomes),
        );
        workers.push(tokio::spawn(async move {
            let mut after_stop = 0;
            while after_stop < 4 {
                let Some((key, token)) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let sent_after_stop = stopped.load(Ordering::SeqCst);
                let started = Instant::now();
                let body = json!({ "token": token.token, "consume": true });
                let result = try_post(&http, &url, key, &body).await;
                outcomes.lock().unwrap().push(Outcome {
                    node,
                    sent_after_stop,
                    result,
                    elapsed: started.elapsed(),
                });
                if sent_after_stop {
                    after_stop += 1;
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    // Let traffic flow, then kill Redis under it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while outcomes.lock().unwrap().len() < 8 {
        assert!(Instant::now() < deadline, "no traffic before the outage");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    f.redis.stop();
    stopped.store(true, Ordering::SeqCst);
    let outage_began = Instant::now();
    for w in workers {
        tokio::time::timeout(Duration::from_secs(20), w)
            .await
            .expect("the workers finish")
            .unwrap();
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let (mut ok_before, mut unavailable, mut slowest_503) = (0, 0, Duration::ZERO);
    for o in &outcomes {
        let reply = o
            .result
            .as_ref()
            .unwrap_or_else(|e| panic!("no HTTP answer from {:?} (crashed?): {e}", o.node));
        match (reply.status, o.sent_after_stop) {
            (StatusCode::OK, false) => ok_before += 1,
            (StatusCode::SERVICE_UNAVAILABLE, _) => {
                assert_eq!(reply.error(), "store_unavailable", "{reply:?}");
                unavailable += 1;
                slowest_503 = slowest_503.max(o.elapsed);
            }
            (status, after) => panic!(
                "a consume {} the outage answered {status}: {:?}",
                if after { "sent during" } else { "in flight at" },
                reply.body
            ),
        }
    }
    let sent_during = outcomes.iter().filter(|o| o.sent_after_stop).count();
    assert!(ok_before > 0, "no consume succeeded before the outage");
    assert!(
        sent_during >= 20,
        "only {sent_during} consumes were sent during the outage"
    );
    assert!(
        slowest_503 < Duration::from_secs(3),
        "a 503 took {slowest_503:?}: store calls must be bounded by the 300ms timeout"
    );
    f.assert_alive();
    for n in [A, B] {
        let r = f.get(n, "/readyz").await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            "{n:?} /readyz during the outage"
        );
        assert_eq!(f.get(n, "/healthz").await.status, StatusCode::OK, "{n:?} is still live");
    }
    eprintln!(
        "fleet: outage: {ok_before} ok before, {unavailable} store_unavailable, {sent_during} sent during, \
         slowest 503 {slowest_503:?}, outage lasted {:?}",
        outage_began.elapsed()
    );

    // Back on the same port (empty). Tokens issued before are refused: the
    // store cannot know which were consumed (see `lost_state`). Each
    // instance consumes a token issued after the restart.
    f.redis.restart();
    let restarted = Instant::now();
    let mut recovered = Vec::new();
    for n in [A, B] {
        let deadline = restarted + Duration::from_secs(5);
        let mut refused = 0;
        loop {
            let (key, old) = spare.pop_front().expect("enough spare tokens");
            let r = f.verify(n, key, &old, true).await;
            if r.status == StatusCode::UNAUTHORIZED {
                assert_eq!(r.error(), "replay_state_lost", "{n:?}: {r:?}");
                let fresh = f.issue(n, key, "after").await;
                let r = f.verify(n, key, &fresh, true).await;
                if r.status == StatusCode::OK {
                    recovered.push((n, key, fresh));
                    break;
                }
                // Issued in the second the loss was seen: refused as well.
                assert_eq!(r.error(), "replay_state_lost", "{n:?}: {r:?}");
            } else {
                assert_eq!(
                    (r.status, r.error()),
                    (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
                    "{n:?} after the restart"
                );
            }
            refused += 1;
            assert!(
                Instant::now() < deadline,
                "{n:?} did not recover within 5s of the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "fleet: {n:?} consumed again {:?} after the restart, after {refused} refusals",
            restarted.elapsed()
        );
    }
    // The store really works again: each mark is seen by the other instance.
    for (n, key, token) in &recovered {
        let other = if *n == A { B } else { A };
        let r = f.verify(other, key, token, true).await;
        assert_eq!((r.status, r.error()), (StatusCode::UNAUTHORIZED, "token_replayed"));
    }
    for n in [A, B] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = f.get(n, "/readyz").await;
            if r.status == StatusCode::OK {
                break;
            }
            assert!(Instant::now() < deadline, "{n:?} /readyz stayed {r:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    f.assert_alive();
}

// ---------------------------------------------------------------------------
// 6. Marks live in Redis, not in the process.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn marks_survive_a_restart_of_an_instance() {
    let mut f = Fleet::start("1000/s");
    let token = f.issue(B, SHOP_KEY, "alice").await;
    let r = f.verify(A, SHOP_KEY, &token, true).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    let port = f.a.port;
    let _ = f.a.child.kill();
    let _ = f.a.child.wait();
    let dir = f.dir.path().to_owned();
    f.a = Spawned::start(&dir, &f.config, port, &QUIET);

    for n in [A, B] {
        let r = f.verify(n, SHOP_KEY, &token, true).await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::UNAUTHORIZED, "token_replayed"),
            "{n:?} after A restarted"
        );
    }
    // The restarted A works: a fresh token is consumed once.
    let fresh = f.issue(A, SHOP_KEY, "alice").await;
    assert_eq!(f.verify(A, SHOP_KEY, &fresh, true).await.status, StatusCode::OK);
    assert_eq!(f.verify(B, SHOP_KEY, &fresh, true).await.error(), "token_replayed");
}

// ---------------------------------------------------------------------------
// 7. Everything the fleet writes to Redis expires.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn marks_expire_with_the_token_in_redis() {
    let f = Fleet::start("1000/s");
    let token = f.issue(A, SHOP_KEY, "alice").await;
    let r = f.verify(B, SHOP_KEY, &token, true).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    let mut conn = f.redis_conn().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    let id = tokensmith::store::redis::namespace_id(&f.issuer());
    let mark = mark_name(&f.issuer(), &format!("jti:{}", token.jti), false);
    // A mark is `ts:<id>:` and a digest with no `:`: every other key has a
    // kind followed by `:`, or is an epoch.
    let marks: Vec<&String> = keys
        .iter()
        .filter(|k| {
            k.strip_prefix(&format!("ts:{id}:"))
                .is_some_and(|rest| !rest.contains(':') && !rest.ends_with("epoch"))
        })
        .collect();
    assert_eq!(marks, vec![&mark], "one mark, under the shared namespace: {keys:?}");
    let pxat = (token.exp + LEEWAY) * 1000;
    let before = unix_ms();
    let pttl: i64 = redis::cmd("PTTL").arg(marks[0]).query_async(&mut conn).await.unwrap();
    let after = unix_ms();
    assert!(pttl > 0, "the mark has no expiry: PTTL {pttl}");
    assert!(
        pttl <= pxat - before,
        "PTTL {pttl} outlives exp + leeway ({} ms from now)",
        pxat - before
    );
    assert!(
        pttl >= pxat - after,
        "PTTL {pttl} ends before exp + leeway ({} ms from now): a replay hole",
        pxat - after
    );

    // Revocations and rate counters expire too: nothing is kept for ever.
    let r = f.post(A, "/v1/revoke", SHOP_KEY, &json!({ "jti": token.jti })).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = f.post(B, "/v1/revoke", SHOP_KEY, &json!({ "sub": "alice" })).await;
    assert_eq!(r.status, StatusCode::OK);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    assert!(keys.contains(&mark), "the mark went away: {keys:?}");
    for kind in [":revoked-jti:", ":revoked-sub:", ":rate:"] {
        assert!(keys.iter().any(|k| k.contains(kind)), "no {kind} key in {keys:?}");
    }
    // But four: the namespace's epoch, which must outlive every mark, its
    // name, and the previous layouts' epochs, held shut.
    let forever = [
        format!("ts:{id}:mark-epoch"),
        format!("ts:ns:{id}"),
        format!("ts:{id}:epoch"),
        format!("tokensmith:{}:epoch", f.issuer()),
    ];
    for key in &keys {
        let pttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut conn).await.unwrap();
        if forever.contains(key) {
            assert_eq!(pttl, -1, "{key} never expires");
        } else {
            assert!(pttl > 0, "{key} does not expire (PTTL {pttl})");
        }
    }
}

// ---------------------------------------------------------------------------
// 8. Round trips per consume.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consume_costs_one_round_trip() {
    const N: u64 = 20;
    let f = Fleet::start("1000/s");
    // `other` has no rate limit; `shop_123` has one (a rate hit per API call).
    let mut plain = Vec::new();
    let mut limited = Vec::new();
    for i in 0..N {
        let n = if i % 2 == 0 { A } else { B };
        plain.push(f.issue(n, OTHER_KEY, &format!("p{i}")).await);
        limited.push(f.issue(n, SHOP_KEY, &format!("l{i}")).await);
    }
    // The first script call on a fresh Redis loads the script (NOSCRIPT, then
    // SCRIPT LOAD and a second EVALSHA): warm both instances up first.
    for n in [A, B] {
        let t = f.issue(n, OTHER_KEY, "warm").await;
        assert_eq!(f.verify(n, OTHER_KEY, &t, true).await.status, StatusCode::OK);
        let t = f.issue(n, SHOP_KEY, "warm").await;
        assert_eq!(f.verify(n, SHOP_KEY, &t, true).await.status, StatusCode::OK);
    }
    let mut conn = f.redis_conn().await;

    let s0 = commandstats(&mut conn).await;
    for (i, t) in plain.iter().enumerate() {
        let n = if i % 2 == 0 { B } else { A };
        assert_eq!(f.verify(n, OTHER_KEY, t, true).await.status, StatusCode::OK);
    }
    let s1 = commandstats(&mut conn).await;
    for (i, t) in limited.iter().enumerate() {
        let n = if i % 2 == 0 { B } else { A };
        assert_eq!(f.verify(n, SHOP_KEY, t, true).await.status, StatusCode::OK);
    }
    let s2 = commandstats(&mut conn).await;

    let plain_cost = stats_diff(&s0, &s1);
    let limited_cost = stats_diff(&s1, &s2);
    eprintln!("fleet: {N} consumes without a rate limit: {plain_cost:?}");
    eprintln!("fleet: {N} consumes with a client rate limit: {limited_cost:?}");
    // Commands a script runs inside Redis are counted too, but are no round trips.
    let round_trips = |cost: &HashMap<String, u64>| -> u64 {
        cost.iter()
            .filter(|(name, _)| !matches!(name.as_str(), "incr" | "pexpireat" | "mget" | "set"))
            .map(|(_, n)| n)
            .sum()
    };

    // The consume itself: one EVALSHA whose script reads both revocation keys
    // (MGET) and sets the mark (SET NX PXAT).
    assert_eq!(plain_cost.get("evalsha"), Some(&N), "{plain_cost:?}");
    assert_eq!(plain_cost.get("set"), Some(&N), "{plain_cost:?}");
    assert_eq!(plain_cost.get("mget"), Some(&N), "{plain_cost:?}");
    assert_eq!(
        round_trips(&plain_cost),
        N,
        "one round trip per consume: {plain_cost:?}"
    );

    // A client with a rate limit adds its rate hit: one more EVALSHA.
    assert_eq!(limited_cost.get("evalsha"), Some(&(2 * N)), "{limited_cost:?}");
    assert_eq!(limited_cost.get("set"), Some(&N), "{limited_cost:?}");
    assert_eq!(round_trips(&limited_cost), 2 * N, "{limited_cost:?}");
}

// ---------------------------------------------------------------------------
// 5b. A Redis that hangs (SIGSTOP) instead of going away: the timeout bounds
// every call, nothing is consumed unchecked, and the fleet recovers.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_redis_times_out_closed_and_the_fleet_recovers() {
    let mut f = Fleet::start("1000/s");
    let mut pool = VecDeque::new();
    for i in 0..30 {
        let (n, key) = if i % 2 == 0 { (A, SHOP_KEY) } else { (B, OTHER_KEY) };
        pool.push_back((key, f.issue(n, key, &format!("user{i}")).await));
    }
    f.redis.pause();
    let mut slowest = Duration::ZERO;
    for n in [A, B, A, B] {
        let (key, token) = pool.pop_front().unwrap();
        let started = Instant::now();
        let r = f.verify(n, key, &token, true).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            "{n:?} while Redis hangs"
        );
        let r = f.get(n, "/readyz").await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{n:?} /readyz while Redis hangs"
        );
    }
    // 300ms per store call; a verify makes at most three of them.
    assert!(
        slowest < Duration::from_secs(2),
        "a 503 took {slowest:?} while Redis hung"
    );
    f.assert_alive();

    f.redis.resume();
    let resumed = Instant::now();
    for n in [A, B] {
        let deadline = resumed + Duration::from_secs(5);
        loop {
            let (key, token) = pool.pop_front().expect("enough spare tokens");
            let r = f.verify(n, key, &token, true).await;
            if r.status == StatusCode::OK {
                break;
            }
            assert_eq!(r.error(), "store_unavailable", "{n:?} after Redis resumed: {r:?}");
            assert!(
                Instant::now() < deadline,
                "{n:?} did not recover within 5s of the resume"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(f.get(n, "/readyz").await.status, StatusCode::OK);
    }
    eprintln!(
        "fleet: hung Redis: slowest 503 {slowest:?}; both consumed again {:?} after the resume",
        resumed.elapsed()
    );
}

mod cluster_faults;
mod lost_state;
