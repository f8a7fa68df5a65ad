//! The README, run: every shell block marked `<!-- readme-test: NAME -->`
//! runs with bash in a fresh temporary folder, against a `serve --dev` on a
//! free loopback port, and must succeed and print what the README says it
//! prints. A command that stops working, or an output that changes, fails
//! here before a user meets it.
//!
//! The blocks run as written, with only what a test must change: the
//! binaries are the ones this test run built (no `cargo build --release` /
//! `cargo run --release` inside a test), `/tmp` paths are the temporary
//! folder, and the examples listen on free ports.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{binary, free_port, Spawned};

/// The body of the block marked `<!-- readme-test: name -->`.
fn block(name: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let marker = format!("<!-- readme-test: {name} -->");
    let after = readme
        .split(&marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no block {name} in README.md"));
    let body = after
        .trim_start()
        .strip_prefix("```sh\n")
        .expect("the marker is followed by a ```sh block");
    body.split("\n```").next().unwrap().to_owned()
}

/// Runs `script` with bash (`-e`, `-o pipefail`) in `dir`; stdout and stderr.
fn bash(dir: &Path, script: &str, env: &[(&str, &str)]) -> (String, String) {
    let out = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", script])
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "README block failed ({}):\n{script}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    (stdout, stderr)
}

/// A folder laid out as the README expects after `cargo build --release`.
fn checkout() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("target/release")).unwrap();
    std::os::unix::fs::symlink(binary(), t.path().join("target/release/tokensmith")).unwrap();
    t
}

/// `serve --dev` in `dir` on a free port, once `keys/dev.env` is written.
fn serve_dev(dir: &Path) -> Spawned {
    let port = free_port();
    let child = Command::new(binary())
        .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env("TOKENSMITH_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let s = Spawned {
        child,
        base: format!("http://127.0.0.1:{port}"),
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("keys/dev.env").exists() {
        assert!(Instant::now() < deadline, "serve --dev wrote no keys/dev.env");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

#[test]
fn the_walkthrough_runs_as_written() {
    let t = checkout();
    let dir = t.path().display().to_string();
    let script = block("walkthrough")
        .replace("cargo build --release && ", "")
        .replace("/tmp/", &format!("{dir}/"));
    let (stdout, _) = bash(t.path(), &script, &[]);
    // `keys init` prints its table, then `verify` the claims.
    let json = &stdout[stdout.find("\n{").unwrap()..];
    let claims: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str()),
        (Some("user-1"), Some("chatbot"))
    );
    assert_eq!(claims["scopes"], serde_json::json!(["chat"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
}

#[test]
fn the_http_section_runs_as_written() {
    let t = checkout();
    let _server = serve_dev(t.path());
    let (stdout, _) = bash(t.path(), &block("http"), &[]);
    // curl prints each answer as it comes, with no newline between them.
    let answers: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    let [jwks, verified, revoked] = answers.as_slice() else {
        panic!("three answers expected: {stdout}");
    };
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["claims"]["sub"], "user-1", "{verified}");
    assert_eq!(
        verified["claims"]["scopes"],
        serde_json::json!(["read:orders"]),
        "{verified}"
    );
    assert_eq!(revoked, &serde_json::json!({"revoked": "sub"}));
}

#[test]
fn the_oauth_section_runs_as_written() {
    let t = checkout();
    let _server = serve_dev(t.path());
    let dir = t.path().display().to_string();
    let script = block("oauth").replace("/tmp/", &format!("{dir}/"));
    let (stdout, _) = bash(t.path(), &script, &[]);
    // The token, then two introspections; the revocation prints nothing.
    let answers: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    let [token, active, inactive] = answers.as_slice() else {
        panic!("three answers expected: {stdout}");
    };
    assert_eq!(
        (
            token["token_type"].as_str(),
            token["scope"].as_str(),
            token["expires_in"].as_i64()
        ),
        (Some("Bearer"), Some("read:orders"), Some(300)),
        "{token}"
    );
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(
        (
            active["client_id"].as_str(),
            active["sub"].as_str(),
            active["scope"].as_str()
        ),
        (Some("dev"), Some("dev"), Some("read:orders")),
        "{active}"
    );
    assert_eq!(inactive, &serde_json::json!({ "active": false }));
}

#[test]
fn the_dpop_section_runs_as_written() {
    let t = checkout();
    let server = serve_dev(t.path());
    let dir = t.path().display().to_string();
    let script = block("dpop").replace("/tmp/", &format!("{dir}/"));
    let path = format!("{dir}/target/release:{}", std::env::var("PATH").unwrap_or_default());
    let (stdout, _) = bash(t.path(), &script, &[("PATH", path.as_str())]);
    // Only the verification prints: the token request is captured.
    let verified: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["claims"]["sub"], "user-1", "{verified}");
    let jkt = verified["claims"]["cnf"]["jkt"].as_str().unwrap_or_default();
    assert_eq!(jkt.len(), 43, "{verified}");
    // What the comment promises: the same proof again is refused.
    let again = &script[script.rfind("curl -s $TOKENSMITH_URL/v1/verify").unwrap()..];
    let replay = format!("{}\n{again}", script.trim_end());
    let out = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &replay])
        .current_dir(t.path())
        .env("PATH", &path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"valid\":true"), "{stdout}");
    assert!(stdout.contains("invalid_dpop_proof"), "{stdout}");
    drop(server);
}

#[test]
fn the_examples_start_as_written() {
    let t = checkout();
    let _server = serve_dev(t.path());
    let examples = crate::examples::examples_dir();
    let (a, b) = (free_port(), free_port());
    let script = block("examples")
        .replace(
            "cargo run --release -p tokensmith-examples --example identity_backend",
            &format!("LISTEN=127.0.0.1:{a} {}", examples.join("identity_backend").display()),
        )
        .replace(
            "cargo run --release -p tokensmith-examples --example plugin_backend",
            &format!("LISTEN=127.0.0.1:{b} {}", examples.join("plugin_backend").display()),
        );
    // Then, as a user would: look at both, and stop them.
    let check = format!(
        "{script}\ntrap 'kill $(jobs -p)' EXIT\n\
         for i in $(seq 200); do curl -sf -o /dev/null http://127.0.0.1:{a}/ && break; sleep 0.05; done\n\
         for i in $(seq 200); do curl -s -o /dev/null http://127.0.0.1:{b}/orders && break; sleep 0.05; done\n\
         curl -s -o /dev/null -w '%{{http_code}}\\n' http://127.0.0.1:{a}/\n\
         curl -s -o /dev/null -w '%{{http_code}}\\n' http://127.0.0.1:{b}/orders\n"
    );
    let (stdout, _) = bash(t.path(), &check, &[]);
    let codes: Vec<&str> = stdout.lines().filter(|l| l.len() == 3).collect();
    assert_eq!(codes, ["200", "401"], "{stdout}");
}
