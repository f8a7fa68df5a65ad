//! The keys folder under the conditions of real deployments, through the
//! real binary: a folder the server cannot write (a mounted secret), the
//! leftovers of interrupted rotations, and loose permissions.
//!
//! A read-only folder is made two ways. Always: a `.lock` that cannot be
//! opened for writing even by root (a symlink to a read-only sysctl), which
//! is what a read-only mount looks like to the lock. Where the machine
//! allows it: a real read-only bind mount in a private mount namespace
//! (`unshare --mount`), seen only by the server, with the Kubernetes secret
//! volume's mode 1777, while the test rotates the folder from outside.
//! Every wait is a bounded poll of something the server must do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokensmith::jose::{Algorithm, Jwk, SigningKey};
use tokensmith::keys::disk::encode_pem;

use crate::cli::{self, init_keys, kid_in, list, run};
use crate::harness::{self, Spawned, SHOP_KEY};

const WITHIN: Duration = Duration::from_secs(10);
const DAY: i64 = 86_400;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Polls `f` every 50 ms until it gives `Some`, for at most [`WITHIN`].
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Lines of a child's output, read on a thread.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn new(r: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx, seen: Vec::new() }
    }

    /// Waits for a line matching `pred`; every line read is kept in `seen`.
    fn wait_for(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) => panic!("no matching line ({e}); saw {:#?}", self.seen),
            }
        }
    }
}

/// A keys folder of three ES256 keys (next, active, retiring) whose every
/// timestamp is 60 days old: the server's schedule wants to rotate it and to
/// prune its retiring key at once, wherever it is allowed to.
fn overdue_keys(cwd: &Path) -> PathBuf {
    let dir = init_keys(cwd, "keys", "ES256");
    run(cwd, &["keys", "rotate", "--dir", s(&dir), "--now"]).ok();
    let path = dir.join("keyring.json");
    let mut ring: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let old = unix_now() - 60 * DAY;
    for record in ring["keys"].as_array_mut().unwrap() {
        for field in ["created_at", "published_at", "activated_at", "deactivated_at"] {
            if record.get(field).is_some() {
                record[field] = json!(old);
            }
        }
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&ring).unwrap()).unwrap();
    chmod(&path, 0o600);
    dir
}

/// The suite's base config served on `port`, keys in `keys`.
fn config(cwd: &Path, port: u16, keys: &Path) -> PathBuf {
    let text = harness::base_config().replace(
        "issuer = \"https://issuer.test\"",
        &format!("issuer = \"http://127.0.0.1:{port}\""),
    );
    let path = cwd.join("server.toml");
    std::fs::write(&path, format!("{text}\n[keys]\ndir = \"{}\"\n", s(keys))).unwrap();
    path
}

/// Runs `cmd` (which ends in the binary's `serve`) on `port`, logs at info
/// captured; waits until `/healthz` answers.
fn serve(mut cmd: Command, port: u16) -> (Spawned, Lines) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TOKENSMITH_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("TOKENSMITH_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let logs = Lines::new(child.stderr.take().unwrap());
    let proc = Spawned {
        child,
        base: format!("http://127.0.0.1:{port}"),
        port,
    };
    poll("/healthz", || {
        (http(port, "GET", "/healthz", None, None).0 == 200).then_some(())
    });
    (proc, logs)
}

/// One HTTP/1.1 request on a fresh connection; the status and the body
/// (JSON, or `null`). Status 0 when the server does not answer.
fn http(port: u16, method: &str, path: &str, auth: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, Value::Null);
    };
    conn.set_read_timeout(Some(WITHIN)).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(key) = auth {
        req.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    if conn.write_all(req.as_bytes()).is_err() {
        return (0, Value::Null);
    }
    let mut resp = String::new();
    let _ = conn.read_to_string(&mut resp);
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The records of `keys/keyring.json`, newest first (as the JWKS lists them).
fn records(keys: &Path) -> Vec<Value> {
    let ring: Value = serde_json::from_slice(&std::fs::read(keys.join("keyring.json")).unwrap()).unwrap();
    ring["keys"].as_array().unwrap().clone()
}

fn jwks_kids(proc: &Spawned) -> Vec<String> {
    let (status, v) = http(proc.port, "GET", "/.well-known/jwks.json", None, None);
    assert_eq!(status, 200, "{v}");
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn record_kids(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["kid"].as_str().unwrap().to_owned()).collect()
}

/// A token from `/v1/tokens`; its header's `kid`.
fn issue_kid(proc: &Spawned) -> String {
    let (status, v) = http(
        proc.port,
        "POST",
        "/v1/tokens",
        Some(SHOP_KEY),
        Some(&json!({ "sub": "alice" })),
    );
    assert_eq!(status, 200, "{v}");
    cli::token_part(v["token"].as_str().unwrap(), 0)["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The scenario both read-only tests share: the server serves the overdue
/// ring as it is (no rotation, no prune, one start-up line saying why),
/// and picks up a rotation made elsewhere. `rotate_elsewhere` rotates the
/// folder from where it is writable.
fn serves_read_only_and_follows_rotations_made_elsewhere(
    keys: &Path,
    proc: &Spawned,
    logs: &mut Lines,
    rotate_elsewhere: impl FnOnce(),
) {
    let before = records(keys);
    let manifest = std::fs::read(keys.join("keyring.json")).unwrap();
    assert_eq!(jwks_kids(proc), record_kids(&before));
    assert_eq!(issue_kid(proc), kid_in(&before, "active"));

    rotate_elsewhere();
    let after = records(keys);
    assert_eq!(after.len(), 4, "the rotation elsewhere added one key and pruned none");
    poll("the server to reload the ring", || {
        (jwks_kids(proc) == record_kids(&after)).then_some(())
    });
    assert_eq!(issue_kid(proc), kid_in(&after, "active"));
    assert_ne!(std::fs::read(keys.join("keyring.json")).unwrap(), manifest);

    // The server neither rotated nor pruned: on a read-only folder it
    // would have failed, every second, before reloading anything.
    let line = logs.wait_for(|l| l.contains("key ring reloaded"));
    assert!(line.contains(&kid_in(&after, "active")), "{line}");
    let read_only: Vec<_> = logs.seen.iter().filter(|l| l.contains("read-only")).collect();
    assert_eq!(read_only.len(), 1, "{:#?}", logs.seen);
    assert!(read_only[0].contains("WARN"), "{}", read_only[0]);
    assert!(read_only[0].contains("without rotating or pruning"), "{}", read_only[0]);
    assert!(
        !logs.seen.iter().any(|l| l.contains("failed") || l.contains("rotated")),
        "{:#?}",
        logs.seen
    );
}

#[test]
fn a_folder_whose_lock_cannot_be_taken_is_served_read_only() {
    let cwd = tempfile::tempdir().unwrap();
    let keys = overdue_keys(cwd.path());
    let lock = keys.join(".lock");
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink("/proc/sys/kernel/ostype", &lock).unwrap();
    let port = harness::free_port();
    let conf = config(cwd.path(), port, &keys);
    let mut cmd = cli::tokensmith(cwd.path());
    cmd.args(["--config", s(&conf), "serve", "--listen", &format!("127.0.0.1:{port}")]);
    let (proc, mut logs) = serve(cmd, port);

    // The CLI cannot rotate it either, and says why.
    let refused = run(cwd.path(), &["keys", "rotate", "--dir", s(&keys), "--now"]);
    let line = refused.fails("keys_read_only");
    assert!(line.contains(".lock"), "{line}");

    serves_read_only_and_follows_rotations_made_elsewhere(&keys, &proc, &mut logs, || {
        // Where the lock can be taken (here: the same folder, for a moment).
        std::fs::remove_file(&lock).unwrap();
        run(cwd.path(), &["keys", "rotate", "--dir", s(&keys), "--now"]).ok();
        std::fs::remove_file(&lock).unwrap();
        std::os::unix::fs::symlink("/proc/sys/kernel/ostype", &lock).unwrap();
    });
}

/// Whether this machine lets a test make a private mount namespace.
fn private_mounts() -> Result<(), String> {
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

#[test]
fn a_read_only_mount_with_a_secret_volumes_mode_is_served() {
    if let Err(why) = private_mounts() {
        // Not a pass in disguise: the `.lock` test above covers the same
        // code path on every machine; this one adds a real mount where allowed.
        eprintln!("skipped: no private mount namespace here ({why})");
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let keys = overdue_keys(cwd.path());
    // A Kubernetes secret volume: mode 1777, on a read-only mount.
    chmod(&keys, 0o1777);
    let port = harness::free_port();
    let conf = config(cwd.path(), port, &keys);
    let mut cmd = Command::new("unshare");
    cmd.current_dir(cwd.path())
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind -o ro "$0" "$0" && exec "$@""#)
        .arg(&keys)
        .arg(harness::binary())
        .args(["--config", s(&conf), "serve", "--listen", &format!("127.0.0.1:{port}")]);
    let (proc, mut logs) = serve(cmd, port);
    // No refusal and no warning about the mode: nobody can write there.
    assert!(!logs.seen.iter().any(|l| l.contains("mode 1777")), "{:#?}", logs.seen);

    serves_read_only_and_follows_rotations_made_elsewhere(&keys, &proc, &mut logs, || {
        // Outside the server's namespace the folder is writable, so mode 1777 counts.
        let refused = run(cwd.path(), &["keys", "rotate", "--dir", s(&keys), "--now"]);
        refused.fails("insecure_permissions");
        let out = run(
            cwd.path(),
            &["keys", "rotate", "--dir", s(&keys), "--now", "--insecure-permissions"],
        );
        out.ok();
        assert!(out.stderr.contains("warning: keys folder"), "{}", out.stderr);
    });
    assert!(!logs.seen.iter().any(|l| l.contains("mode 1777")), "{:#?}", logs.seen);
}

/// A key file of ours that no manifest names, as a killed rotation leaves it.
fn orphan_key(dir: &Path) -> String {
    let (key, der) = SigningKey::generate(Algorithm::ES256, 0).unwrap();
    let kid = Jwk::from_public(key.algorithm(), key.public_key()).kid.unwrap();
    let name = format!("{kid}.pem");
    std::fs::write(dir.join(&name), encode_pem(&der)).unwrap();
    chmod(&dir.join(&name), 0o600);
    name
}

#[test]
fn prune_and_rotate_remove_the_leftovers_of_interrupted_rotations() {
    let cwd = tempfile::tempdir().unwrap();
    let keys = init_keys(cwd.path(), "keys", "ES256");
    let records = list(cwd.path(), &keys);
    let orphan = orphan_key(&keys);
    let temp = ".keyring.json.4242.0123456789abcdef.tmp";
    std::fs::write(keys.join(temp), "{\"version\":1,").unwrap();
    std::fs::write(keys.join("notes.pem"), "mine").unwrap();

    let out = run(cwd.path(), &["keys", "prune", "--dir", s(&keys)]);
    let mut removed = [temp.to_owned(), orphan.clone()];
    removed.sort();
    let mut expected = vec![
        "policy: publish_ahead 1h, max_ttl 1day + leeway 1m (from the embedded defaults)".to_owned(),
        "nothing to prune".to_owned(),
    ];
    expected.extend(
        removed
            .iter()
            .map(|name| format!("removed leftover {name} (from an interrupted key operation)")),
    );
    assert_eq!(out.ok().lines().collect::<Vec<_>>(), expected);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    assert!(!keys.join(&orphan).exists() && !keys.join(temp).exists());
    assert_eq!(std::fs::read_to_string(keys.join("notes.pem")).unwrap(), "mine");
    assert_eq!(list(cwd.path(), &keys), records);

    let orphan = orphan_key(&keys);
    let out = run(cwd.path(), &["keys", "rotate", "--dir", s(&keys), "--now"]);
    assert!(
        out.ok().ends_with(&format!(
            "removed leftover {orphan} (from an interrupted key operation)\n"
        )),
        "{}",
        out.stdout
    );
    assert!(!keys.join(&orphan).exists());
    assert_eq!(list(cwd.path(), &keys).len(), 3);
}

/// Every command that reads or writes a keys folder, against `keys`;
/// `token` is one its keys signed, for `verify`.
fn key_commands(keys: &Path, token: &str) -> Vec<Vec<String>> {
    let k = s(keys).to_owned();
    let v = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    vec![
        v(&["keys", "list", "--dir", &k]),
        v(&["keys", "list", "--dir", &k, "--json"]),
        v(&["jwks", "--dir", &k]),
        v(&["issue", "--dir", &k, "--sub", "a", "--aud", "x"]),
        v(&["verify", "--dir", &k, "--aud", "x", token]),
        v(&["keys", "prune", "--dir", &k]),
        v(&["keys", "rotate", "--dir", &k, "--now"]),
    ]
}

fn run_args(cwd: &Path, args: &[String]) -> cli::Out {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(cwd, &args)
}

#[test]
fn every_key_command_warns_on_loose_modes_and_refuses_a_folder_others_can_write() {
    let cwd = tempfile::tempdir().unwrap();
    let keys = init_keys(cwd.path(), "keys", "EdDSA");
    let records = list(cwd.path(), &keys);
    let key_file = keys.join(records[0]["file"].as_str().unwrap());
    let token = run(cwd.path(), &["issue", "--dir", s(&keys), "--sub", "a", "--aud", "x"])
        .ok()
        .trim()
        .to_owned();
    chmod(&key_file, 0o644);
    let key_warning = format!(
        "warning: key file {} is readable or writable by group or others (mode 0644); it should be 0600\n",
        key_file.display()
    );
    for args in key_commands(&keys, &token) {
        let out = run_args(cwd.path(), &args);
        out.ok();
        assert_eq!(out.stderr, key_warning, "{args:?}");
    }

    chmod(&key_file, 0o600);
    for mode in [0o777, 0o770] {
        chmod(&keys, mode);
        for args in key_commands(&keys, &token) {
            let line = run_args(cwd.path(), &args).fails("insecure_permissions").to_owned();
            assert!(line.contains(&format!("(mode {mode:04o})")), "{line}");
            assert!(line.contains("--insecure-permissions"), "{line}");
            // Allowed: used, with one warning line. The flag is global:
            // before the command or after it.
            let mut before = vec!["--insecure-permissions".to_owned()];
            before.extend(args.iter().cloned());
            let mut after = args.clone();
            after.push("--insecure-permissions".to_owned());
            for allowed in [before, after] {
                let out = run_args(cwd.path(), &allowed);
                out.ok();
                assert_eq!(
                    out.stderr,
                    format!(
                        "warning: keys folder {} is writable by group or others (mode {mode:04o}); anyone who can write there can replace the signing keys (chmod 700 it)\n",
                        keys.display()
                    ),
                    "{allowed:?}"
                );
            }
        }
    }
    // Readable by others, as a folder: its names are public kids; no warning.
    chmod(&keys, 0o755);
    let out = run(cwd.path(), &["keys", "list", "--dir", s(&keys)]);
    out.ok();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn serve_refuses_a_folder_others_can_write_and_logs_loose_key_files() {
    let cwd = tempfile::tempdir().unwrap();
    let keys = init_keys(cwd.path(), "keys", "EdDSA");
    let port = harness::free_port();
    let conf = config(cwd.path(), port, &keys);
    chmod(&keys, 0o777);
    let serve_args = ["--config", s(&conf), "serve", "--listen", &format!("127.0.0.1:{port}")];
    let out = run(cwd.path(), &serve_args);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: insecure_permissions: keys folder"),
        "{}",
        out.stderr
    );

    chmod(&keys, 0o700);
    let records = list(cwd.path(), &keys);
    let key_file = keys.join(records[0]["file"].as_str().unwrap());
    chmod(&key_file, 0o640);
    let mut cmd = cli::tokensmith(cwd.path());
    cmd.args(serve_args);
    let (_proc, mut logs) = serve(cmd, port);
    let line = logs.wait_for(|l| l.contains("key file"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(&format!("{} is readable or writable", key_file.display())),
        "{line}"
    );
    assert!(line.contains("(mode 0640)"), "{line}");

    // A ring reloaded while running is checked again.
    chmod(&key_file, 0o604);
    run(cwd.path(), &["keys", "rotate", "--dir", s(&keys), "--now"]).ok();
    logs.wait_for(|l| l.contains("key ring reloaded"));
    let line = logs.wait_for(|l| l.contains("key file"));
    assert!(line.contains("WARN") && line.contains("(mode 0604)"), "{line}");
}
