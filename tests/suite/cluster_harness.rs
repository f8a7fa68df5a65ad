//! A real Redis Cluster for tests: `redis-server --cluster-enabled yes` ×6
//! on free loopback ports (3 masters, 3 replicas), joined with
//! `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`, ready
//! once every node reports `cluster_state:ok`.
//!
//! [`shared_seeds`] is the one cluster the store and fleet suites share:
//! the one `scripts/test` started (its seed list in
//! `TS_TEST_REDIS_CLUSTER`), or else one started here on first use.
//! A shared cluster started here outlives every test of the process, so
//! each of its nodes runs under a small shell that kills it (SIGKILL) once
//! the test process is gone: nothing is left behind. Tests on the shared
//! cluster keep to their own namespace.
//!
//! [`RedisCluster::start`] is a cluster of the test's own (the failover test
//! kills its nodes), killed on drop; [`RedisCluster::start_masters`] one of
//! masters alone, for the fault tests that change the slot map.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::redis_harness::{free_port, INSTALL_HINT};

/// A free port for a cluster node: a node also listens on its port + 10000
/// (the cluster bus), so both must be free and the bus port must exist
/// (an ephemeral port above 55535 has none, and the node would not start).
fn node_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55535 && std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port + 10000)).is_ok() {
            return port;
        }
    }
}

/// The seed list `scripts/test` passes: comma-separated `redis://` URLs.
pub const CLUSTER_ENV: &str = "TS_TEST_REDIS_CLUSTER";

/// How long a new cluster may take to reach `cluster_state:ok`.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// One node of a cluster.
pub struct Node {
    pub port: u16,
    child: Option<Child>,
}

impl Node {
    /// Kills the node (SIGKILL, like a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// A cluster of the test's own, killed on drop.
pub struct RedisCluster {
    pub nodes: Vec<Node>,
    node_timeout_ms: u64,
    extra: Vec<String>,
    dir: Option<tempfile::TempDir>,
}

impl RedisCluster {
    /// Six nodes, 3 masters and 3 replicas, with `cluster-node-timeout`
    /// `node_timeout_ms` and `extra` arguments for every node.
    pub fn start(node_timeout_ms: u64, extra: &[&str]) -> RedisCluster {
        let dir = tempfile::tempdir().expect("a temporary directory for the cluster");
        let nodes = start_nodes(dir.path(), 6, node_timeout_ms, extra, None);
        let cluster = RedisCluster {
            nodes,
            node_timeout_ms,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            dir: Some(dir),
        };
        create(&cluster.ports(), 1);
        cluster
    }

    /// `masters` nodes, each a master of an equal share of the slots, no
    /// replicas; `cluster-node-timeout` `node_timeout_ms` and `extra`
    /// arguments for every node.
    pub fn start_masters(masters: usize, node_timeout_ms: u64, extra: &[&str]) -> RedisCluster {
        let dir = tempfile::tempdir().expect("a temporary directory for the cluster");
        let nodes = start_nodes(dir.path(), masters, node_timeout_ms, extra, None);
        let cluster = RedisCluster {
            nodes,
            node_timeout_ms,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            dir: Some(dir),
        };
        create(&cluster.ports(), 0);
        cluster
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// Starts the node on `port` again (after [`Node::kill`]), in its own
    /// folder: it rejoins with its `nodes.conf`, empty of data.
    pub fn restart(&mut self, port: u16) {
        let dir = self.dir.as_ref().unwrap().path().to_owned();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let child = spawn(&dir, port, self.node_timeout_ms, &extra, None).unwrap();
        self.node(port).child = Some(child);
    }

    /// The node serving `port`.
    pub fn node(&mut self, port: u16) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.port == port).unwrap()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        // The folder goes after the nodes.
        drop(self.dir.take());
    }
}

/// A name for this test process, for its namespaces on the shared cluster:
/// its process id and the nanosecond it first asked. The id alone repeats:
/// ids are reused (`pid_max` is 32768 on some machines), and under
/// `scripts/mutants` each test process is the first of a PID namespace of
/// its own (so that what it started dies with it), where its id is 1. A
/// repeat would hand one process the marks another left behind.
pub fn process_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{nanos}", std::process::id())
    })
}

/// The shared cluster's seed list; started on first use when
/// `TS_TEST_REDIS_CLUSTER` is not set.
pub fn shared_seeds() -> Vec<String> {
    static SHARED: OnceLock<Vec<String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            if let Ok(list) = std::env::var(CLUSTER_ENV) {
                let seeds: Vec<String> = list
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
                assert!(!seeds.is_empty(), "{CLUSTER_ENV} is set but empty");
                return seeds;
            }
            // Kept for the life of the process; the nodes' watchdogs end
            // them after it. The folder is left to the OS's temp cleaning
            // (a few kB of node configs), since nothing drops it.
            let dir = tempfile::tempdir()
                .expect("a temporary directory for the cluster")
                .keep();
            let nodes = start_nodes(&dir, 6, 2000, &[], Some(std::process::id()));
            let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
            create(&ports, 1);
            let seeds = nodes.iter().map(Node::url).collect();
            // The watchdog shells own the servers now.
            std::mem::forget(nodes);
            seeds
        })
        .clone()
}

fn start_nodes(dir: &Path, count: usize, node_timeout_ms: u64, extra: &[&str], watch_pid: Option<u32>) -> Vec<Node> {
    let mut nodes = Vec::new();
    for _ in 0..count {
        let mut failures = Vec::new();
        let node = (0..5).find_map(|_| {
            let port = node_port();
            match spawn(dir, port, node_timeout_ms, extra, watch_pid) {
                Ok(child) => Some(Node {
                    port,
                    child: Some(child),
                }),
                Err(why) => {
                    failures.push(why);
                    None
                }
            }
        });
        match node {
            Some(node) => nodes.push(node),
            None => panic!("a cluster node did not start: {failures:?}"),
        }
    }
    nodes
}

fn spawn(dir: &Path, port: u16, node_timeout_ms: u64, extra: &[&str], watch_pid: Option<u32>) -> Result<Child, String> {
    let node_dir: PathBuf = dir.join(port.to_string());
    std::fs::create_dir_all(&node_dir).unwrap();
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        &node_timeout_ms.to_string(),
        // A replica's first sync (and a resync after failover) starts at
        // once, not after the default 5 s wait for more replicas.
        "--repl-diskless-sync-delay",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.push("--dir".into());
    args.push(node_dir.to_str().unwrap().to_owned());
    args.push("--logfile".into());
    args.push(node_dir.join("redis.log").to_str().unwrap().to_owned());
    let mut command = match watch_pid {
        None => {
            let mut c = Command::new("redis-server");
            c.args(&args);
            c
        }
        // `exec`s nothing: the shell stays to kill the server once `pid`
        // (the test process) is gone.
        Some(pid) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(
                    "redis-server \"$@\" & s=$!; while kill -0 \"$WATCH\" 2>/dev/null && kill -0 $s 2>/dev/null; \
                     do sleep 1; done; kill -9 $s 2>/dev/null",
                )
                .arg("sh")
                .args(&args)
                .env("WATCH", pid.to_string());
            c
        }
    };
    let spawned = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => panic!("could not run redis-server: {e}. {INSTALL_HINT}"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(node_dir.join("redis.log")).unwrap_or_default();
            return Err(format!("cluster node on port {port} exited with {status}: {log}"));
        }
        if cli(port, &["PING"]).is_some_and(|r| r.trim() == "PONG") {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("cluster node on port {port} did not answer PING"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `redis-cli -p port args…`, its stdout if it ran.
pub fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Joins the nodes into one cluster, `replicas` per master (with 1, the
/// first half are the masters), and waits until every node says
/// `cluster_state:ok` (and, with replicas, until they have synced).
fn create(ports: &[u16], replicas: u32) {
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli --cluster create");
    assert!(
        out.status.success(),
        "redis-cli --cluster create failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_ok(ports, READY_WITHIN);
    if replicas > 0 {
        wait_replicas_online(ports, READY_WITHIN);
    }
}

/// Polls until every master has a replica that finished its first sync
/// (`cluster_state:ok` comes before that): until then `WAIT 1` cannot be
/// met.
pub fn wait_replicas_online(ports: &[u16], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let online = ports.iter().all(|&p| {
            cli(p, &["INFO", "replication"]).is_some_and(|i| {
                !i.contains("role:master") || (i.contains("connected_slaves:1") && i.contains("state=online"))
            })
        });
        if online {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas of {ports:?} did not come online"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls until every node in `ports` reports `cluster_state:ok`; panics
/// after `within`.
pub fn wait_ok(ports: &[u16], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let ok = ports
            .iter()
            .all(|&p| cli(p, &["CLUSTER", "INFO"]).is_some_and(|i| i.contains("cluster_state:ok")));
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster on {ports:?} did not reach cluster_state:ok"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The port of the master that serves `slot`, from `CLUSTER SHARDS`-free
/// `CLUSTER SLOTS` as seen by `any_port`.
pub fn master_of_slot(any_port: u16, slot: u16) -> u16 {
    let out = cli(any_port, &["CLUSTER", "SLOTS"]).expect("CLUSTER SLOTS");
    // redis-cli prints each range as: start, end, then per node ip, port, id.
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let mut i = 0;
    while i + 3 < lines.len() {
        if let (Ok(start), Ok(end)) = (lines[i].parse::<u16>(), lines[i + 1].parse::<u16>()) {
            if lines[i + 2] == "127.0.0.1" && (start..=end).contains(&slot) {
                return lines[i + 3].parse().unwrap();
            }
        }
        i += 1;
    }
    panic!("no master for slot {slot} in {out}");
}

/// The slot Redis Cluster gives a key: CRC16 (XMODEM) of its hash tag.
pub fn slot(key: &str) -> u16 {
    let tag = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for b in tag.bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// The bucket of the mark `mark_key` on a cluster: FNV-1a mod 1024 (see
/// `layout.rs`).
pub fn mark_bucket(mark_key: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in mark_key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % 1024
}

/// The slot of the mark `mark_key`, as the store names it on a cluster
/// (`ts:{<bucket>}<digest>`, see `layout.rs`).
pub fn mark_slot(mark_key: &str) -> u16 {
    slot(&format!("{{{}}}", mark_bucket(mark_key)))
}

/// Moves `slot` from the master on `from` to the one on `to` by hand, the
/// way `redis-cli --cluster reshard` does: `SETSLOT IMPORTING`/`MIGRATING`,
/// then `MIGRATE` of its keys `batch` at a time, calling `between` after
/// each batch (so a test can keep the slot half-moved under load), then
/// `SETSLOT NODE` on every node in `all`. Answers how many keys moved.
pub fn move_slot(all: &[u16], from: u16, to: u16, slot: u16, batch: usize, mut between: impl FnMut()) -> usize {
    let (from_id, to_id) = (node_id(from), node_id(to));
    let s = slot.to_string();
    let ok = |port: u16, args: &[&str]| {
        let out = cli(port, args).unwrap_or_default();
        assert!(out.trim() == "OK" || out.trim() == "NOKEY", "{args:?} on {port}: {out}");
    };
    ok(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
    ok(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
    let mut moved = 0;
    loop {
        let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", &s, &batch.to_string()]).expect("GETKEYSINSLOT");
        let keys: Vec<&str> = keys.lines().map(str::trim).filter(|k| !k.is_empty()).collect();
        if keys.is_empty() {
            break;
        }
        let to_port = to.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
        args.extend(keys.iter().copied());
        ok(from, &args);
        moved += keys.len();
        between();
    }
    // The new owner first, then the old one (which then redirects), then
    // the rest, as redis-cli does.
    ok(to, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
    ok(from, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
    for &p in all.iter().filter(|&&p| p != from && p != to) {
        ok(p, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
    }
    moved
}

/// `CLUSTER MYID` of the node on `port`.
pub fn node_id(port: u16) -> String {
    cli(port, &["CLUSTER", "MYID"]).expect("CLUSTER MYID").trim().to_owned()
}
