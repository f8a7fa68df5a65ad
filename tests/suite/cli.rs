//! The command line, run as a real process: exit status (0 ok, 1 refused or
//! failed, 2 bad usage), the one-line `error: <code>: …` on stderr, and what
//! each subcommand prints and leaves on disk.
//!
//! Every command runs in its own temporary working directory with no
//! inherited `TOKENSMITH_*` variable, so neither the repository's files nor
//! the caller's environment leak in. Key dirs are EdDSA or ES256 wherever the
//! algorithm is not the point: RSA key generation is the slow part.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::harness;

/// What a finished command left behind.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Asserts exit 0 and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success; stderr: {}", self.stderr);
        &self.stdout
    }

    /// Asserts exit 1 with exactly one stderr line `error: <code>: …`, free
    /// of key material; returns that line.
    #[track_caller]
    pub fn fails(&self, code: &str) -> &str {
        assert_eq!(
            self.code, 1,
            "expected exit 1 ({code}); stdout: {} stderr: {}",
            self.stdout, self.stderr
        );
        self.one_line(code)
    }

    /// Asserts exit 2 (bad usage) with one `error: bad_usage: …` line.
    #[track_caller]
    pub fn bad_usage(&self) -> &str {
        assert_eq!(self.code, 2, "expected exit 2; stderr: {}", self.stderr);
        self.one_line("bad_usage")
    }

    #[track_caller]
    fn one_line(&self, code: &str) -> &str {
        let line = self.stderr.strip_suffix('\n').unwrap_or(&self.stderr);
        assert!(!line.contains('\n'), "stderr is not one line: {:?}", self.stderr);
        assert!(
            line.starts_with(&format!("error: {code}: ")),
            "expected `error: {code}: …`, got {line:?}"
        );
        assert!(!line.contains("PRIVATE KEY"), "{line}");
        line
    }
}

/// A command of the binary in `cwd`, with every inherited `TOKENSMITH_*`
/// variable removed.
pub fn tokensmith(cwd: &Path) -> Command {
    let mut cmd = Command::new(harness::binary());
    cmd.current_dir(cwd).stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TOKENSMITH_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs `cmd`, feeding `stdin` when given.
pub fn finish(mut cmd: Command, stdin: Option<&str>) -> Out {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `tokensmith ARGS` in `cwd`.
pub fn run(cwd: &Path, args: &[&str]) -> Out {
    let mut cmd = tokensmith(cwd);
    cmd.args(args);
    finish(cmd, None)
}

/// `tokensmith ARGS` in `cwd` with extra environment variables.
fn run_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = tokensmith(cwd);
    cmd.args(args).envs(env.iter().copied());
    finish(cmd, None)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `keys init --dir <cwd>/<name> --alg <alg>`; returns the dir.
pub fn init_keys(cwd: &Path, name: &str, alg: &str) -> PathBuf {
    let dir = cwd.join(name);
    run(cwd, &["keys", "init", "--dir", s(&dir), "--alg", alg]).ok();
    dir
}

/// `keys list --dir D --json`.
pub fn list(cwd: &Path, dir: &Path) -> Vec<Value> {
    let out = run(cwd, &["keys", "list", "--dir", s(dir), "--json"]);
    serde_json::from_str::<Value>(out.ok())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The kid of the key in `state`, from `keys list --json`.
pub fn kid_in(records: &[Value], state: &str) -> String {
    let found: Vec<_> = records.iter().filter(|r| r["state"] == state).collect();
    assert_eq!(found.len(), 1, "one {state} key expected in {records:?}");
    found[0]["kid"].as_str().unwrap().to_owned()
}

fn states(records: &[Value]) -> Vec<&str> {
    records.iter().map(|r| r["state"].as_str().unwrap()).collect()
}

fn read_keyring(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("keyring.json")).unwrap()).unwrap()
}

/// Rewrites `keyring.json`, changing the records `edit` is given.
fn edit_keyring(dir: &Path, edit: impl Fn(&mut Value)) {
    let mut ring = read_keyring(dir);
    for record in ring["keys"].as_array_mut().unwrap() {
        edit(record);
    }
    std::fs::write(dir.join("keyring.json"), serde_json::to_vec_pretty(&ring).unwrap()).unwrap();
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The decoded JSON of a token's header (part 0) or payload (part 1).
pub fn token_part(token: &str, part: usize) -> Value {
    let seg = token.trim().split('.').nth(part).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
}

fn pem_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .collect();
    v.sort();
    v
}

/// A token for the active key of an EdDSA `dir`, signed by josekit with the
/// PEM on disk, so that any claims (an `exp` in the past) can be set.
fn craft_eddsa(dir: &Path, claims: &Value) -> String {
    let records = read_keyring(dir)["keys"].as_array().unwrap().clone();
    let active = records.iter().find(|r| r["state"] == "active").unwrap();
    let pem = std::fs::read_to_string(dir.join(active["file"].as_str().unwrap())).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    // Our files are PKCS#8 v2 (with the public key), which josekit does not
    // read: rewrap the 32-byte seed as v1.
    let at = der.windows(4).position(|w| w == [0x04, 0x22, 0x04, 0x20]).unwrap() + 4;
    let mut v1 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    v1.extend_from_slice(&der[at..at + 32]);
    let signer = josekit::jws::EdDSA.signer_from_der(&v1).unwrap();
    let mut header = josekit::jws::JwsHeader::new();
    header.set_token_type("JWT");
    header.set_key_id(active["kid"].as_str().unwrap());
    josekit::jws::serialize_compact(claims.to_string().as_bytes(), &header, &signer).unwrap()
}

#[test]
fn keys_init_makes_two_private_keys_and_refuses_a_second_time() {
    let t = tempfile::tempdir().unwrap();
    let dir = init_keys(t.path(), "keys", "EdDSA");
    let pems = pem_files(&dir);
    assert_eq!(pems.len(), 2);
    for p in &pems {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
        let text = std::fs::read_to_string(p).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{}", p.display());
    }
    let records = list(t.path(), &dir);
    assert_eq!(states(&records), ["next", "active"]);
    for r in &records {
        assert_eq!(r["alg"], "EdDSA");
        assert!(dir.join(r["file"].as_str().unwrap()).exists());
    }
    // The default dir is `keys` in the working directory.
    assert_eq!(list(t.path(), Path::new("keys")), records);

    let before = std::fs::read(dir.join("keyring.json")).unwrap();
    let line = run(t.path(), &["keys", "init", "--dir", s(&dir), "--alg", "EdDSA"])
        .fails("keys_exist")
        .to_owned();
    assert!(line.contains(s(&dir)), "{line}");
    assert_eq!(std::fs::read(dir.join("keyring.json")).unwrap(), before);
    assert_eq!(pem_files(&dir), pems);
}

#[test]
fn keys_init_takes_every_asymmetric_algorithm_and_rsa_size() {
    let t = tempfile::tempdir().unwrap();
    for alg in ["ES256", "EdDSA"] {
        let dir = init_keys(t.path(), alg, alg);
        let records = list(t.path(), &dir);
        assert!(records.iter().all(|r| r["alg"] == alg), "{records:?}");
    }
    // One RSA ring covers both PS256 and a non-default size.
    let dir = t.path().join("ps");
    run(
        t.path(),
        &["keys", "init", "--dir", s(&dir), "--alg", "PS256", "--bits", "3072"],
    )
    .ok();
    let jwks: Value = serde_json::from_str(run(t.path(), &["jwks", "--dir", s(&dir)]).ok()).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for k in keys {
        assert_eq!(k["alg"], "PS256");
        assert_eq!(k["kty"], "RSA");
        let n = URL_SAFE_NO_PAD.decode(k["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len() * 8, 3072);
    }
}

#[test]
fn keys_init_refuses_hmac_and_short_rsa_as_bad_usage() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("keys");
    let out = run(t.path(), &["keys", "init", "--dir", s(&dir), "--alg", "HS256"]);
    assert!(out.bad_usage().contains("HS256"), "{}", out.stderr);
    let out = run(t.path(), &["keys", "init", "--dir", s(&dir), "--bits", "1024"]);
    assert!(out.bad_usage().contains("1024"), "{}", out.stderr);
    assert!(!dir.exists(), "a refused init must not create the dir");
}

#[test]
fn rotate_right_after_init_is_too_early_then_now_forces_it() {
    let t = tempfile::tempdir().unwrap();
    let dir = init_keys(t.path(), "keys", "EdDSA");
    let before = list(t.path(), &dir);
    let manifest = std::fs::read(dir.join("keyring.json")).unwrap();

    let out = run(t.path(), &["keys", "rotate", "--dir", s(&dir)]);
    let line = out.fails("rotation_too_early");
    // It says when: in about an hour (publish_ahead's default), and at what time.
    let secs: i64 = line
        .split("allowed in ")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `allowed in Ns` in {line:?}"));
    assert!((3590..=3600).contains(&secs), "{line}");
    let published = before[0]["published_at"].as_i64().unwrap();
    assert!(line.contains(&format!("(at {})", published + 3600)), "{line}");
    assert!(line.contains("--now"), "{line}");
    assert_eq!(std::fs::read(dir.join("keyring.json")).unwrap(), manifest);
    assert_eq!(pem_files(&dir).len(), 2);

    run(t.path(), &["keys", "rotate", "--dir", s(&dir), "--now"]).ok();
    let after = list(t.path(), &dir);
    assert_eq!(states(&after), ["next", "active", "retiring"]);
    assert_eq!(kid_in(&after, "active"), kid_in(&before, "next"));
    assert_eq!(kid_in(&after, "retiring"), kid_in(&before, "active"));
    assert!(after[2]["deactivated_at"].as_i64().is_some());
    assert!(after[1]["activated_at"].as_i64().unwrap() >= published);
    let new_next = kid_in(&after, "next");
    assert!(before.iter().all(|r| r["kid"] != new_next.as_str()));
    assert_eq!(pem_files(&dir).len(), 3);
}

#[test]
fn rotate_follows_publish_ahead_from_the_config() {
    let t = tempfile::tempdir().unwrap();
    let dir = init_keys(t.path(), "keys", "EdDSA");
    // `next` published 5 s ago: too early for the default 1h ...
    let back_date = |secs: i64| {
        let at = unix_now() - secs;
        edit_keyring(&dir, |r| {
            if r["state"] == "next" {
                r["published_at"] = json!(at);
            }
        })
    };
    back_date(5);
    let line = run(t.path(), &["keys", "rotate", "--dir", s(&dir)])
        .fails("rotation_too_early")
        .to_owned();
    assert!(
        line.ends_with("policy: publish_ahead 1h, max_ttl 1day + leeway 1m (from the embedded defaults)"),
        "{line}"
    );

    // ... but long enough for `publish_ahead = "1s"`, from --config FILE.
    let conf = t.path().join("fast.toml");
    std::fs::write(&conf, "[keys]\nalgorithm = \"EdDSA\"\npublish_ahead = \"1s\"\n").unwrap();
    let old_next = kid_in(&list(t.path(), &dir), "next");
    let out = run(t.path(), &["--config", s(&conf), "keys", "rotate", "--dir", s(&dir)]);
    assert!(
        out.ok().starts_with(&format!(
            "policy: publish_ahead 1s, max_ttl 1day + leeway 1m (from {})",
            conf.display()
        )),
        "{}",
        out.stdout
    );
    let after = list(t.path(), &dir);
    assert_eq!(kid_in(&after, "active"), old_next);
    assert_eq!(after[0]["alg"], "EdDSA", "the new key follows keys.algorithm");

    // The same from ./tokensmith.toml in the working directory.
    let cwd = t.path().join("work");
    std::fs::create_dir(&cwd).unwrap();
    back_date(2);
    run(&cwd, &["keys", "rotate", "--dir", s(&dir)]).fails("rotation_too_early");
    std::fs::copy(&conf, cwd.join("tokensmith.toml")).unwrap();
    let old_next = kid_in(&list(t.path(), &dir), "next");
    let out = run(&cwd, &["keys", "rotate", "--dir", s(&dir)]);
    assert!(
        out.ok().contains("publish_ahead 1s") && out.stdout.contains("(from ./tokensmith.toml)"),
        "{}",
        out.stdout
    );
    assert_eq!(kid_in(&list(t.path(), &dir), "active"), old_next);

    // And with the default publish_ahead, once next is an hour old.
    back_date(3601);
    let out = run_env(
        t.path(),
        &["keys", "rotate", "--dir", s(&dir)],
        &[("TOKENSMITH_KEYS_ALGORITHM", "EdDSA")],
    );
    assert!(
        out.ok()
            .contains("(from the embedded defaults and TOKENSMITH_KEYS_ALGORITHM)"),
        "{}",
        out.stdout
    );
    assert_eq!(
        states(&list(t.path(), &dir)),
        ["next", "active", "retiring", "retiring", "retiring"]
    );
}

#[test]
fn prune_removes_only_retiring_keys_past_their_time() {
    let t = tempfile::tempdir().unwrap();
    let dir = init_keys(t.path(), "keys", "EdDSA");
    let env = [("TOKENSMITH_KEYS_ALGORITHM", "EdDSA")];
    let rotate = || run_env(t.path(), &["keys", "rotate", "--dir", s(&dir), "--now"], &env).code;
    assert_eq!(rotate(), 0);
    assert_eq!(rotate(), 0);
    let records = list(t.path(), &dir);
    assert_eq!(states(&records), ["next", "active", "retiring", "retiring"]);
    let (old, recent) = (records[3]["kid"].clone(), records[2]["kid"].clone());
    let old_file = dir.join(records[3]["file"].as_str().unwrap());
    let recent_file = dir.join(records[2]["file"].as_str().unwrap());

    // Nothing is past max_ttl (24h) + leeway (60s) yet.
    let out = run(t.path(), &["keys", "prune", "--dir", s(&dir)]);
    assert!(out.ok().contains("nothing to prune"), "{}", out.stdout);
    assert_eq!(list(t.path(), &dir).len(), 4);

    // One key past its time by 10 s, the other 10 min short of it.
    let retire_after = 24 * 3600 + 60;
    let now = unix_now();
    edit_keyring(&dir, |r| {
        if r["kid"] == old {
            r["deactivated_at"] = json!(now - retire_after - 10);
        } else if r["kid"] == recent {
            r["deactivated_at"] = json!(now - retire_after + 600);
        }
    });
    let out = run(t.path(), &["keys", "prune", "--dir", s(&dir)]);
    assert!(out.ok().contains(old.as_str().unwrap()), "{}", out.stdout);
    assert!(!out.stdout.contains(recent.as_str().unwrap()), "{}", out.stdout);
    let after = list(t.path(), &dir);
    assert_eq!(states(&after), ["next", "active", "retiring"]);
    assert_eq!(after[2]["kid"], recent);
    assert!(!old_file.exists(), "the pruned key's PEM is deleted");
    assert!(recent_file.exists());
    assert_eq!(pem_files(&dir).len(), 3);

    let jwks: Value = serde_json::from_str(run(t.path(), &["jwks", "--dir", s(&dir)]).ok()).unwrap();
    let kids: Vec<_> = jwks["keys"].as_array().unwrap().iter().map(|k| &k["kid"]).collect();
    assert!(!kids.contains(&&old) && kids.contains(&&recent), "{kids:?}");
}

#[test]
fn jwks_publishes_the_kids_of_keys_list() {
    let t = tempfile::tempdir().unwrap();
    let dir = init_keys(t.path(), "keys", "ES256");
    run_env(
        t.path(),
        &["keys", "rotate", "--dir", s(&dir), "--now"],
        &[("TOKENSMITH_KEYS_ALGORITHM", "ES256")],
    )
    .ok();
    let records = list(t.path(), &dir);
    let jwks: Value = serde_json::from_str(run(t.path(), &["jwks", "--dir", s(&dir)]).ok()).unwrap();
    let jwk_kids: Vec<_> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    let list_kids: Vec<_> = records.iter().map(|r| r["kid"].clone()).collect();
    assert_eq!(jwk_kids, list_kids);
    for k in jwks["keys"].as_array().unwrap() {
        assert_eq!(k["kty"], "EC");
        assert!(k.get("d").is_none(), "no private member in a JWKS: {k}");
    }
}

#[test]
fn issue_then_verify_by_dir_by_jwks_file_and_from_stdin() {
    let t = tempfile::tempdir().unwrap();
    let dir = init_keys(t.path(), "keys", "EdDSA");
    let out = run(
        t.path(),
        &[
            "issue",
            "--sub",
            "alice",
            "--aud",
            "chatbot",
            "--scope",
            "read",
            "--scope",
            "write",
            "--dir",
            s(&dir),
        ],
    );
    let token = out.ok().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let header = token_part(&token, 0);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"].as_str().unwrap(), kid_in(&list(t.path(), &dir), "active"));

    let check = |out: &Out| {
        let claims: Value = serde_json::from_str(out.ok()).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], "chatbot");
        assert_eq!(claims["iss"], "http://127.0.0.1:8080");
        assert_eq!(claims["scopes"], json!(["read", "write"]));
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);
        assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
    };
    check(&run(
        t.path(),
        &[
            "verify",
            &token,
            "--dir",
            s(&dir),
            "--aud",
            "chatbot",
            "--scope",
            "read",
        ],
    ));

    let jwks = t.path().join("jwks.json");
    std::fs::write(&jwks, run(t.path(), &["jwks", "--dir", s(&dir)]).ok()).unwrap();
    check(&run(
        t.path(),
        &["verify", &token, "--jwks", s(&jwks), "--aud", "chatbot"],
    ));

    let mut cmd = tokensmith(t.path());
    cmd.args(["verify", "-", "--dir", s(&dir), "--any-aud"]);
    check(&finish(cmd, Some(&format!("{token}\n"))));

    // Neither --jwks nor --dir is bad usage; so is neither --aud nor
    // --any-aud (a token meant for someone else must not pass unnoticed),
    // and both at once.
    run(t.path(), &["verify", &token, "--aud", "chatbot"]).bad_usage();
    let line = run(t.path(), &["verify", &token, "--dir", s(&dir)])
        .bad_usage()
        .to_owned();
    assert!(line.contains("--aud"), "{line}");
    run(
        t.path(),
        &["verify", &token, "--dir", s(&dir), "--aud", "chatbot", "--any-aud"],
    )
    .bad_usage();
}

#[test]
fn verify_rejections_have_stable_codes() {
    let t = tempfile::tempdir().unwrap();
    let dir = init_keys(t.path(), "keys", "EdDSA");
    let issue = |dir: &Path| {
        run(
            t.path(),
            &[
                "issue",
                "--sub",
                "alice",
                "--aud",
                "chatbot",
                "--scope",
                "read",
                "--dir",
                s(dir),
            ],
        )
        .ok()
        .trim()
        .to_owned()
    };
    let token = issue(&dir);
    let verify = |token: &str, extra: &[&str]| {
        let mut args = vec!["verify", token, "--dir", s(&dir)];
        args.extend_from_slice(extra);
        if !extra.contains(&"--aud") {
            args.push("--any-aud");
        }
        run(t.path(), &args)
    };

    let line = verify(&token, &["--aud", "plugin"]).fails("wrong_audience").to_owned();
    assert!(line.contains("plugin"), "{line}");
    let line = verify(&token, &["--scope", "write"])
        .fails("insufficient_scope")
        .to_owned();
    assert!(line.contains("write"), "{line}");
    verify(&token, &["--iss", "https://elsewhere.example"]).fails("wrong_issuer");
    verify("not-a-token", &[]).fails("malformed_token");
    verify("a.b.c", &[]).fails("malformed_token");

    let other = init_keys(t.path(), "other", "EdDSA");
    let foreign = issue(&other);
    let line = verify(&foreign, &[]).fails("unknown_kid").to_owned();
    assert!(!line.contains(&foreign), "the token is not echoed: {line}");

    // A token that expired 42 s ago: accepted within the default 60 s
    // leeway, refused without one, and the message says by how much.
    let now = unix_now();
    let claims = json!({
        "iss": "http://127.0.0.1:8080", "sub": "alice", "aud": "chatbot",
        "iat": now - 100, "exp": now - 42, "jti": "j-expired",
    });
    let expired = craft_eddsa(&dir, &claims);
    verify(&expired, &[]).ok();
    let line = verify(&expired, &["--leeway", "0s"]).fails("token_expired").to_owned();
    let ago: i64 = line
        .strip_prefix("error: token_expired: expired ")
        .and_then(|r| r.strip_suffix("s ago"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not `expired Ns ago`: {line:?}"));
    assert!((42..=45).contains(&ago), "{line}");

    // A crafted token the issuer never signed: the same shape, another signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[2] = craft_eddsa(&other, &claims).rsplit('.').next().unwrap().to_owned();
    verify(&parts.join("."), &[]).fails("bad_signature");
}

#[test]
fn issue_refuses_registered_claims_and_ttls_over_the_cap_and_types_claims() {
    let t = tempfile::tempdir().unwrap();
    let dir = init_keys(t.path(), "keys", "EdDSA");
    let issue = |extra: &[&str]| {
        let mut args = vec!["issue", "--sub", "alice", "--dir", s(&dir)];
        args.extend_from_slice(extra);
        run(t.path(), &args)
    };
    for claim in ["sub=x", "iss=x", "exp=1", "jti=x", "scopes=[]"] {
        let line = issue(&["--claim", claim]).fails("claim_not_allowed").to_owned();
        assert!(line.contains(claim.split('=').next().unwrap()), "{line}");
    }
    let line = issue(&["--ttl", "48h"]).fails("ttl_not_allowed").to_owned();
    assert!(line.contains("86400"), "{line}");
    issue(&["--ttl", "0s"]).fails("ttl_not_allowed");
    issue(&["--ttl", "forever"]).bad_usage();

    let out = issue(&[
        "--claim",
        "tier=gold",
        "--claim",
        "n=5",
        "--claim",
        "flags=[1,2]",
        "--ttl",
        "10m",
    ]);
    let claims = token_part(out.ok(), 1);
    assert_eq!(claims["tier"], json!("gold"));
    assert_eq!(claims["n"], json!(5));
    assert_eq!(claims["flags"], json!([1, 2]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
}

#[test]
fn a_corrupt_key_file_is_named_and_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let dir = init_keys(t.path(), "keys", "EdDSA");
    let records = list(t.path(), &dir);
    let file = dir.join(records[1]["file"].as_str().unwrap());
    let original = std::fs::read_to_string(&file).unwrap();
    let body: String = original.lines().filter(|l| !l.starts_with("-----")).collect();
    let manifest = std::fs::read(dir.join("keyring.json")).unwrap();

    // Not base64; valid base64 of a truncated DER; valid PKCS#8 of another key.
    let truncated = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        &body[..body.len() / 8 * 4]
    );
    let other = init_keys(t.path(), "other", "EdDSA");
    let foreign = std::fs::read_to_string(&pem_files(&other)[0]).unwrap();
    let broken = original.replacen(&body[10..20], "!!!!!!!!!!", 1);
    for bad in [broken, truncated, foreign, "not a key\n".to_owned()] {
        std::fs::write(&file, &bad).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        for args in [
            vec!["keys", "list", "--dir", s(&dir)],
            vec!["jwks", "--dir", s(&dir)],
            vec!["issue", "--sub", "a", "--dir", s(&dir)],
        ] {
            let out = run(t.path(), &args);
            let line = out.fails("keyring_corrupt");
            assert!(line.contains(s(&file)), "names the file: {line}");
            for window in body.as_bytes().windows(12).chain(bad.as_bytes().windows(12)) {
                let w = std::str::from_utf8(window).unwrap();
                if !w.contains('-') && !w.contains('\n') {
                    assert!(!line.contains(w), "key material {w:?} in {line:?}");
                }
            }
            assert!(out.stdout.is_empty(), "{}", out.stdout);
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), bad, "the file is untouched");
        assert_eq!(std::fs::read(dir.join("keyring.json")).unwrap(), manifest);
    }
    // Put back, it loads again: nothing else was changed.
    std::fs::write(&file, &original).unwrap();
    assert_eq!(list(t.path(), &dir), records);
}

#[test]
fn apikey_create_prints_a_key_and_the_sha256_line() {
    let t = tempfile::tempdir().unwrap();
    let out = run(t.path(), &["apikey", "create", "--client", "shop"]);
    let text = out.ok();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let key = text
        .lines()
        .find(|l| l.starts_with("sk_live_"))
        .unwrap_or_else(|| panic!("no sk_live_ key in {text}"));
    let b64 = &key["sk_live_".len()..];
    assert_eq!(b64.len(), 43, "{key}");
    assert_eq!(URL_SAFE_NO_PAD.decode(b64).unwrap().len(), 32);
    let line = text.lines().find(|l| l.starts_with("api_keys = ")).unwrap();
    let hash = line
        .strip_prefix("api_keys = [\"sha256:")
        .and_then(|r| r.strip_suffix("\"]"))
        .unwrap_or_else(|| panic!("{line}"));
    let expected: String = ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hash, expected);
    assert_eq!(text.matches(key).count(), 1, "the key is printed once");

    let again = run(t.path(), &["apikey", "create", "--client", "shop"]);
    assert!(!again.ok().contains(key), "every key is new");
    run(t.path(), &["apikey", "create"]).bad_usage();
}

#[test]
fn config_errors_name_the_key() {
    let t = tempfile::tempdir().unwrap();
    let dir = init_keys(t.path(), "keys", "EdDSA");
    let cwd = t.path().join("work");
    std::fs::create_dir(&cwd).unwrap();
    let args = ["keys", "list", "--dir", s(&dir)];

    std::fs::write(cwd.join("tokensmith.toml"), "[keys]\nbogus = 1\n").unwrap();
    let out = run(&cwd, &args);
    assert!(out.fails("invalid_config").contains("keys.bogus"), "{}", out.stderr);
    std::fs::remove_file(cwd.join("tokensmith.toml")).unwrap();

    let out = run_env(&cwd, &args, &[("TOKENSMITH_KEYS_ROTATE_EVERY", "3x")]);
    let line = out.fails("invalid_config");
    assert!(line.contains("keys.rotate_every"), "{line}");
    assert!(line.contains("TOKENSMITH_KEYS_ROTATE_EVERY"), "{line}");
    assert!(line.contains("\"3x\""), "{line}");

    let out = run_env(&cwd, &args, &[("TOKENSMITH_KEYS_ROTATE_EVRY", "1d")]);
    assert!(out.fails("invalid_config").contains("TOKENSMITH_KEYS_ROTATE_EVRY"));

    let missing = cwd.join("missing.toml");
    let out = run(&cwd, &["--config", s(&missing), "keys", "list", "--dir", s(&dir)]);
    assert!(out.fails("invalid_config").contains("missing.toml"), "{}", out.stderr);

    // The same file without the typo works, and a variable that is right too.
    std::fs::write(cwd.join("tokensmith.toml"), "[keys]\nrotate_every = \"7d\"\n").unwrap();
    run_env(&cwd, &args, &[("TOKENSMITH_TOKENS_LEEWAY", "30s")]).ok();
}

#[test]
fn every_subcommand_has_help_and_bad_usage_exits_2() {
    let t = tempfile::tempdir().unwrap();
    let commands: [&[&str]; 12] = [
        &[],
        &["serve"],
        &["keys"],
        &["keys", "init"],
        &["keys", "rotate"],
        &["keys", "list"],
        &["keys", "prune"],
        &["jwks"],
        &["issue"],
        &["verify"],
        &["apikey"],
        &["apikey", "create"],
    ];
    for cmd in commands {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = run(t.path(), &args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert!(out.stdout.contains("Usage: tokensmith"), "{args:?}: {}", out.stdout);
    }
    assert!(!t.path().join("keys").exists(), "--help does nothing");

    for args in [
        &["frobnicate"][..],
        &["keys", "list", "--frobnicate"],
        &["keys", "shuffle"],
        &["issue", "--aud", "x"],
        &["issue", "--sub", "a", "--ttl", "3x"],
        &["verify", "t", "--jwks", "j", "--dir", "d"],
        &["verify", "t", "--dir", "d", "--leeway", "soon"],
    ] {
        let out = run(t.path(), args);
        out.bad_usage();
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A bare group shows its help, still as bad usage.
    assert_eq!(run(t.path(), &["keys"]).code, 2);

    // Every option says what it is for; repeatable ones say so; the values
    // of --alg are listed; verify names both of its key sources.
    let help = |args: &[&str]| {
        let mut a = args.to_vec();
        a.push("--help");
        run(t.path(), &a).stdout
    };
    let issue = help(&["issue"]);
    for (flag, words) in [("--sub", "subject"), ("--aud", "repeat"), ("--scope", "repeat")] {
        let line = issue.lines().find(|l| l.trim_start().starts_with(flag)).unwrap();
        let text = format!(
            "{line} {}",
            issue.split(line).nth(1).unwrap().lines().nth(1).unwrap_or("")
        );
        assert!(text.contains(words), "issue {flag}: {text:?}");
    }
    let verify = help(&["verify"]);
    assert!(verify.contains("or --dir") && verify.contains("or --jwks"), "{verify}");
    assert!(verify.contains("--any-aud"), "{verify}");
    assert!(help(&["keys", "init"]).contains("RS256, PS256, ES256 or EdDSA"));
    assert!(help(&["apikey", "create"]).contains("[[clients]]"));
}

#[test]
fn an_unreachable_jwks_names_its_url_and_cause() {
    let t = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    let out = run(t.path(), &["verify", "a.b.c", "--jwks", &url, "--any-aud"]);
    let line = out.fails("jwks_unavailable");
    assert!(line.contains(&url), "{line}");
    assert!(line.to_lowercase().contains("refused"), "{line}");
}

#[test]
fn serve_listens_on_a_host_name() {
    let t = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let mut child = tokensmith(t.path())
        .args(["serve", "--dev", "--listen", &format!("localhost:{port}")])
        .env("TOKENSMITH_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut up = false;
    while std::time::Instant::now() < deadline && !up {
        up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            || std::net::TcpStream::connect(("::1", port)).is_ok();
        if !up {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "serve --listen localhost:{port} did not listen");
}

#[test]
fn a_closed_stdout_is_an_error_line_not_a_panic() {
    let t = tempfile::tempdir().unwrap();
    let dir = init_keys(t.path(), "keys", "EdDSA");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = tokensmith(t.path());
    cmd.args(["jwks", "--dir", s(&dir)])
        .stdout(writer)
        .stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: output_failed: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn serve_refuses_to_make_a_ring_in_a_missing_or_foreign_folder() {
    let t = tempfile::tempdir().unwrap();
    let serve = |keys: &Path| {
        run_env(
            t.path(),
            &["serve", "--listen", "127.0.0.1:0", "--keys", s(keys)],
            &[("TOKENSMITH_LOG", "error")],
        )
    };
    let missing = t.path().join("missing/path");
    let line = serve(&missing).fails("no_keys").to_owned();
    assert!(line.contains("missing/path") && line.contains("keys init"), "{line}");
    assert!(!missing.exists(), "nothing was created");

    let foreign = t.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "not a key ring").unwrap();
    let line = serve(&foreign).fails("no_keys").to_owned();
    assert!(line.contains("no keyring.json"), "{line}");
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1, "nothing was added");

    let file = t.path().join("afile");
    std::fs::write(&file, "x").unwrap();
    let line = serve(&file).fails("key_io").to_owned();
    assert!(line.contains("not a folder"), "{line}");
}

#[test]
fn serve_without_clients_warns_at_start() {
    use std::io::BufRead as _;
    let t = tempfile::tempdir().unwrap();
    let keys = t.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let mut child = tokensmith(t.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--keys", s(&keys)])
        .env("TOKENSMITH_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let found = std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("no clients are configured"));
        let _ = tx.send(found);
    });
    // Bounded: a server that never warns is killed, and its closed stderr ends the reader.
    let found = rx.recv_timeout(std::time::Duration::from_secs(20)).unwrap_or(false);
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "no warning about the missing clients");
}
