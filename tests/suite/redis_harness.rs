//! A real `redis-server` for tests, one per test: on a free loopback port,
//! with no persistence (unless a test asks for it with
//! [`RedisServer::start_with`]), in its own temporary directory, killed on
//! drop.
//!
//! If `redis-server` is not on PATH, starting one fails the test with the
//! command that installs it: Redis tests never skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const INSTALL_HINT: &str = "redis-server was not found on PATH; the Redis tests need a real one. \
Install it with `apt-get install -y redis-server` (Debian/Ubuntu) or `brew install redis` (macOS).";

/// How long a freshly spawned server may take to answer PING.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A running `redis-server`.
pub struct RedisServer {
    /// `redis://127.0.0.1:<port>/`
    pub url: String,
    pub port: u16,
    binary: String,
    /// Arguments after the defaults (a later one overrides an earlier one).
    extra: Vec<String>,
    child: Option<Child>,
    paused: bool,
    /// Working directory and log; removed after the server is killed.
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` from PATH.
    pub fn start() -> RedisServer {
        RedisServer::start_binary("redis-server")
    }

    /// Starts `redis-server` from PATH with `extra` arguments after the
    /// defaults, e.g. `["--appendonly", "yes"]`; restarts keep them.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        RedisServer::start_binary_with("redis-server", extra)
    }

    /// Starts the given binary; panics with [`INSTALL_HINT`] if it is missing.
    pub fn start_binary(binary: &str) -> RedisServer {
        RedisServer::start_binary_with(binary, &[])
    }

    fn start_binary_with(binary: &str, extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        let dir = tempfile::tempdir().expect("a temporary directory for redis-server");
        let mut failures = Vec::new();
        // A port found free can be taken by someone else before Redis binds
        // it; then Redis exits and another port is tried.
        for _ in 0..5 {
            let port = free_port();
            match spawn(binary, port, dir.path(), &extra) {
                Ok(child) => {
                    return RedisServer {
                        url: format!("redis://127.0.0.1:{port}/"),
                        port,
                        binary: binary.to_owned(),
                        extra,
                        child: Some(child),
                        paused: false,
                        dir,
                    }
                }
                Err(why) => failures.push(why),
            }
        }
        panic!("redis-server did not start: {failures:?}");
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit, so
    /// its port is free again.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Stops the server if it runs (SIGKILL) and starts a new one on the
    /// same port, in the same directory: empty unless this server was
    /// started with persistence.
    pub fn restart(&mut self) {
        self.stop();
        match spawn(&self.binary, self.port, self.dir.path(), &self.extra) {
            Ok(child) => self.child = Some(child),
            Err(why) => panic!("redis-server did not restart on port {}: {why}", self.port),
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&mut self) {
        self.signal("-STOP");
        self.paused = true;
    }

    /// Undoes [`pause`](RedisServer::pause).
    pub fn resume(&mut self) {
        self.signal("-CONT");
        self.paused = false;
    }

    /// A client for inspecting the server directly (INFO, PTTL, KEYS).
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url.as_str()).expect("a client for the test redis-server")
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {} failed", child.id());
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port nobody listened on a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Spawns `binary` on `port` and waits (bounded) until it answers PING.
fn spawn(binary: &str, port: u16, dir: &Path, extra: &[String]) -> Result<Child, String> {
    let log = dir.join(format!("redis-{port}.log"));
    let spawned = Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        // A replica's first sync starts at once, not after the default 5 s
        // a master waits for more replicas to share a diskless transfer.
        .args(["--repl-diskless-sync-delay", "0"])
        .args(extra)
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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT} ({binary}: {e})"),
        Err(e) => panic!("could not run {binary}: {e}. {INSTALL_HINT}"),
    };
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("redis-server on port {port} exited with {status}: {log}"));
        }
        if answers_ping(port) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "redis-server on port {port} did not answer PING within {READY_WITHIN:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 16];
    matches!(stream.read(&mut reply), Ok(n) if reply[..n].starts_with(b"+PONG"))
}

/// `INFO commandstats` as command → calls: what the round-trip tests count.
pub async fn commandstats(conn: &mut redis::aio::MultiplexedConnection) -> std::collections::HashMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// How many times the command `name` ran between two [`commandstats`]
/// readings, as a function of the name.
pub fn ran_between<'a>(
    before: &'a std::collections::HashMap<String, u64>,
    after: &'a std::collections::HashMap<String, u64>,
) -> impl Fn(&str) -> u64 + 'a {
    move |name| after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0)
}

/// The key of the mark of `key` in `namespace`, computed here apart from the
/// store ("Marks" in `src/store/redis/layout.rs`): `ts:<id>:<digest>` on one
/// Redis, `ts:{<bucket>}<digest>` on a cluster, `<digest>` the first 21
/// base64url characters of a SHA-256 of the namespace and the key.
pub fn mark_name(namespace: &str, key: &str, cluster: bool) -> String {
    use base64::Engine as _;
    let mut input = b"tokensmith mark\0".to_vec();
    input.extend_from_slice(&u64::try_from(namespace.len()).unwrap().to_be_bytes());
    input.extend_from_slice(namespace.as_bytes());
    input.extend_from_slice(key.as_bytes());
    let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tokensmith::jose::alg::sha256(&input));
    let digest = &digest[..21];
    if cluster {
        format!("ts:{{{}}}{digest}", crate::cluster_harness::mark_bucket(key))
    } else {
        format!("ts:{}:{digest}", tokensmith::store::redis::namespace_id(namespace))
    }
}
