//! The command line: `serve`, `keys`, `jwks`, `issue`, `verify`, `apikey`.
//!
//! Thin: each subcommand parses, calls the library, and prints. Exit status
//! is 0 on success, 1 when a token is rejected or an operation fails, 2 on
//! bad usage; every failure is one stderr line `error: <code>: <text>`, and
//! every warning one line `warning: <text>`. No secret (key, API key, token)
//! ever goes to stderr.
//!
//! Every command that uses a keys folder checks its permissions first
//! ([`KeyDir::check_permissions`]): a folder writable by group or others is
//! refused unless `--insecure-permissions` is given, and loose modes are
//! warned about.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use serde_json::{Map, Value};

use tokensmith::claims::{is_reserved, Rejection, Validation};
use tokensmith::clients::{self, ClientRegistry};
use tokensmith::config::{self, Config};
use tokensmith::jose::JwkSet;
use tokensmith::keys::disk::KeyDir;
use tokensmith::keys::{KeyRecord, RingPolicy};
use tokensmith::server::StateError;
use tokensmith::store::memory::MemoryStore;
use tokensmith::{Authority, AuthorityError, Clock, SharedClock, StaticKeys, SystemClock, TokenSpec, Verifier};

mod args;
mod dev;
mod dpop;
mod serve;

pub(crate) use args::ServeArgs;
use args::{ApikeyCommand, Cli, Command, DirArg, DpopCommand, IssueArgs, KeysCommand, VerifyArgs};

/// `println!` that reports a closed or failing standard output as an error
/// line instead of panicking (`tokensmith jwks | head -1`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
            .map_err(|e| CliError::new("output_failed", format!("standard output: {e}")))
    }};
}

/// A failure with its stable code.
#[derive(Debug)]
pub struct CliError {
    pub code: &'static str,
    pub message: String,
}

impl CliError {
    pub fn new(code: &'static str, message: impl Into<String>) -> CliError {
        CliError {
            code,
            message: message.into(),
        }
    }
}

impl CliError {
    /// The error line of a service that could not be built.
    fn from_state(e: StateError) -> CliError {
        match e {
            StateError::Keys(e) => e.into(),
            StateError::Authority(e) => e.into(),
            other => CliError::new("internal", other.to_string()),
        }
    }
}

impl From<tokensmith::keys::KeyError> for CliError {
    fn from(e: tokensmith::keys::KeyError) -> Self {
        CliError::new(e.code(), e.to_string())
    }
}

impl From<AuthorityError> for CliError {
    fn from(e: AuthorityError) -> Self {
        CliError::new(e.code(), e.to_string())
    }
}

impl From<Rejection> for CliError {
    fn from(e: Rejection) -> Self {
        CliError::new(e.code(), e.to_string())
    }
}

impl From<config::ConfigError> for CliError {
    fn from(e: config::ConfigError) -> Self {
        CliError::new("invalid_config", e.to_string())
    }
}

/// Parses the process arguments and runs; the exit code follows API.md.
pub(crate) fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version, and a bare `keys`/`apikey`, which shows its help.
        Err(e) if !e.use_stderr() || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
        Err(e) => {
            eprintln!("error: bad_usage: {}", usage_line(&e));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}: {}", e.code, e.message);
            ExitCode::from(1)
        }
    }
}

/// clap's message on one line, as every error is: its own "error: " prefix,
/// the usage block and the "try --help" hint dropped.
fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect();
    format!("{} (see --help)", parts.join(" "))
}

fn load_config(path: Option<&Path>) -> Result<Config, CliError> {
    Ok(Config::load(path, utf8_env())?)
}

/// The environment, without variables that are not UTF-8 (`std::env::vars`
/// would panic on them; none of ours can be such).
pub fn utf8_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

fn policy(cfg: &Config) -> RingPolicy {
    RingPolicy {
        publish_ahead: cfg.keys.publish_ahead.as_secs() as i64,
        retire_after: (cfg.tokens.max_ttl + cfg.tokens.leeway).as_secs() as i64,
        rotate_every: cfg.keys.rotate_every.as_secs() as i64,
    }
}

/// Where the configuration came from, as a key command says it: the file
/// (given, or `./tokensmith.toml`), or the embedded defaults, and the
/// `TOKENSMITH_*` variables that override it.
fn config_source(path: Option<&Path>) -> String {
    let file = match path {
        Some(p) => p.display().to_string(),
        None if Path::new(config::DEFAULT_PATH).exists() => format!("./{}", config::DEFAULT_PATH),
        None => "the embedded defaults".to_owned(),
    };
    let mut vars: Vec<String> = utf8_env()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("TOKENSMITH_") && k != "TOKENSMITH_LOG")
        .collect();
    vars.sort();
    if vars.is_empty() {
        file
    } else {
        format!("{file} and {}", vars.join(", "))
    }
}

/// The timing policy a key command applies, and its source, so that a
/// rotation refused (or allowed) is never a surprise: the first line of its
/// output, or the end of its error line.
fn policy_text(cfg: &Config, path: Option<&Path>) -> String {
    let h = |d: std::time::Duration| humantime::format_duration(d).to_string();
    format!(
        "policy: publish_ahead {}, max_ttl {} + leeway {} (from {})",
        h(cfg.keys.publish_ahead),
        h(cfg.tokens.max_ttl),
        h(cfg.tokens.leeway),
        config_source(path)
    )
}

/// The keys folder `dir` names (default `keys.dir`), once its permissions
/// pass: see [`checked_dir`].
fn key_dir(cfg: &Config, dir: &DirArg, insecure: bool) -> Result<KeyDir, CliError> {
    checked_dir(
        KeyDir::new(dir.dir.clone().unwrap_or_else(|| cfg.keys.dir.clone())),
        insecure,
    )
}

/// `dir`, after its permission check: refused when group or others can
/// write it (unless `insecure`), and one `warning: …` line on stderr for
/// each loose mode.
fn checked_dir(dir: KeyDir, insecure: bool) -> Result<KeyDir, CliError> {
    for warning in dir.check_permissions(insecure)? {
        eprintln!("warning: {warning}");
    }
    Ok(dir)
}

fn print_json(v: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| CliError::new("internal", e.to_string()))?;
    out!("{text}")
}

/// Runs a parsed command line.
fn run(cli: Cli) -> Result<(), CliError> {
    let clock = SystemClock;
    let cfg = load_config(cli.config.as_deref())?;
    let insecure = cli.insecure_permissions;
    match cli.command {
        Command::Serve(args) => serve::run(cfg, args, cli.config, insecure),
        Command::Keys(KeysCommand::Init { dir, alg, bits }) => {
            let alg = alg.unwrap_or(cfg.keys.algorithm);
            let bits = bits.and_then(|b| b.parse().ok()).unwrap_or(cfg.keys.rsa_bits);
            let kd = key_dir(&cfg, &dir, insecure)?;
            let ring = kd.init(alg, bits, clock.now())?;
            print_records(&ring.records())
        }
        Command::Keys(KeysCommand::Rotate { dir, now }) => {
            let applied = policy_text(&cfg, cli.config.as_deref());
            let kd = key_dir(&cfg, &dir, insecure)?;
            let changed = kd
                .rotate(
                    &policy(&cfg),
                    |a| cfg.keys.rotation_algorithm(a),
                    cfg.keys.rsa_bits,
                    clock.now(),
                    now,
                )
                .map_err(|e| {
                    let mut e = CliError::from(e);
                    e.message = format!("{}; {applied}", e.message);
                    e
                })?;
            out!("{applied}")?;
            print_records(&changed.ring.records())?;
            print_leftovers(&changed.leftovers)
        }
        Command::Keys(KeysCommand::List { dir, json }) => {
            let ring = key_dir(&cfg, &dir, insecure)?.load()?;
            if json {
                print_json(&ring.records())
            } else {
                print_records(&ring.records())
            }
        }
        Command::Keys(KeysCommand::Prune { dir }) => {
            out!("{}", policy_text(&cfg, cli.config.as_deref()))?;
            let changed = key_dir(&cfg, &dir, insecure)?.prune(&policy(&cfg), clock.now())?;
            for r in &changed.pruned {
                out!("pruned {} ({})", r.kid, r.alg)?;
            }
            if changed.pruned.is_empty() {
                out!("nothing to prune")?;
            }
            print_leftovers(&changed.leftovers)
        }
        Command::Jwks(dir) => {
            let ring = key_dir(&cfg, &dir, insecure)?.load()?;
            print_json(&ring.snapshot()?.jwks)
        }
        Command::Issue(args) => issue(&cfg, args, insecure),
        Command::Verify(args) => verify(&cfg, args, insecure),
        Command::Dpop(DpopCommand::Proof(args)) => dpop::proof(args),
        Command::Apikey(ApikeyCommand::Create { client }) => {
            let key = clients::new_api_key().map_err(|e| CliError::new("internal", e.to_string()))?;
            out!("API key for client {client:?} (shown once, store it now):")?;
            out!("{}", key.key)?;
            out!()?;
            out!("In tokensmith.toml, under the [[clients]] entry with id = {client:?}:")?;
            out!("api_keys = [\"{}\"]", key.hash_line)
        }
    }
}

fn print_leftovers(names: &[String]) -> Result<(), CliError> {
    for name in names {
        out!("removed leftover {name} (from an interrupted key operation)")?;
    }
    Ok(())
}

fn print_records(records: &[KeyRecord]) -> Result<(), CliError> {
    print_records_at(records, SystemClock.now())
}

/// The table of `keys list` (and what `init`/`rotate` leave): times as
/// RFC 3339 and relative to `now`; `--json` gives the raw Unix seconds.
fn print_records_at(records: &[KeyRecord], now: i64) -> Result<(), CliError> {
    out!(
        "{:<44} {:<6} {:<9} {:<31} {:<31} retired",
        "kid",
        "alg",
        "state",
        "published",
        "activated"
    )?;
    let t = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| when(v, now));
    for r in records {
        out!(
            "{:<44} {:<6} {:<9} {:<31} {:<31} {}",
            r.kid,
            r.alg.as_str(),
            r.state.as_str(),
            when(r.published_at, now),
            t(r.activated_at),
            t(r.deactivated_at)
        )?;
    }
    Ok(())
}

/// `2026-11-28T21:04:07Z (3h ago)`, or `(in 2d)` for the future.
fn when(at: i64, now: i64) -> String {
    let stamp = u64::try_from(at)
        .ok()
        .and_then(|s| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(s)))
        .map_or_else(|| at.to_string(), |t| humantime::format_rfc3339_seconds(t).to_string());
    format!("{stamp} ({})", relative(at.saturating_sub(now)))
}

/// A signed offset in seconds as the largest whole unit: `in 3h`, `2d ago`, `now`.
fn relative(delta: i64) -> String {
    let n = delta.unsigned_abs();
    let amount = match n {
        0 => return "now".into(),
        1..=59 => format!("{n}s"),
        60..=3599 => format!("{}m", n / 60),
        3600..=86_399 => format!("{}h", n / 3600),
        _ => format!("{}d", n / 86_400),
    };
    if delta > 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

fn issue(cfg: &Config, args: IssueArgs, insecure: bool) -> Result<(), CliError> {
    let ring = key_dir(cfg, &args.dir, insecure)?.load()?;
    let ttl = args.ttl.unwrap_or(cfg.tokens.default_ttl);
    if ttl > cfg.tokens.max_ttl || ttl.as_secs() == 0 {
        return Err(CliError::new(
            "ttl_not_allowed",
            format!(
                "a lifetime of {}s is outside 1s..={}s (tokens.max_ttl)",
                ttl.as_secs(),
                cfg.tokens.max_ttl.as_secs()
            ),
        ));
    }
    let mut extra = Map::new();
    for kv in &args.claim {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| CliError::new("invalid_request", format!("--claim {kv:?} is not K=V")))?;
        if k.is_empty() || is_reserved(k) {
            return Err(CliError::new(
                "claim_not_allowed",
                format!("the claim {k:?} is set by the issuer"),
            ));
        }
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        extra.insert(k.to_owned(), value);
    }
    let keys = ring.shared()?;
    let clock: SharedClock = Arc::new(SystemClock);
    let mut cfg = cfg.clone();
    if let Some(iss) = args.iss {
        cfg.issuer = iss;
    }
    let registry =
        ClientRegistry::from_clients(&cfg.clients).map_err(|e| CliError::new("invalid_config", e.to_string()))?;
    // The operator's tokens go through the same signing rules as the
    // service's (size cap, reserved claims); no client: no `client_id`.
    let authority = Authority::new(&cfg, keys, registry, MemoryStore::new(1).into(), clock)?;
    let spec = TokenSpec {
        sub: args.sub,
        aud: args.aud,
        scopes: args.scope,
        ttl: ttl.as_secs() as i64,
        extra,
    };
    let issued = authority.sign(None, spec)?;
    out!("{}", issued.token)
}

fn read_token(arg: Option<String>) -> Result<String, CliError> {
    let raw = match arg.as_deref() {
        Some("-") | None => {
            let mut s = String::new();
            std::io::stdin()
                .take(64 * 1024)
                .read_to_string(&mut s)
                .map_err(|e| CliError::new("invalid_request", format!("standard input: {e}")))?;
            s
        }
        Some(t) => t.to_owned(),
    };
    Ok(raw.trim().to_owned())
}

fn verify(cfg: &Config, args: VerifyArgs, insecure: bool) -> Result<(), CliError> {
    let token = read_token(args.token)?;
    let validation = Validation {
        issuer: args.iss.unwrap_or_else(|| cfg.issuer.clone()),
        audience: args.aud,
        any_audience: args.any_aud,
        leeway: args.leeway.unwrap_or(cfg.tokens.leeway).as_secs() as i64,
        max_ttl: cfg.tokens.max_ttl.as_secs() as i64,
        required_scopes: args.scope,
        required_typ: None,
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let claims = match (args.jwks, args.dir) {
        (Some(src), _) => {
            let set = load_jwks(&src)?;
            let keys = StaticKeys::from_jwks(&set).map_err(|e| CliError::new("invalid_jwks", format!("{src}: {e}")))?;
            Verifier::new(keys, validation, clock).verify(&token)?
        }
        (None, Some(dir)) => {
            let ring = checked_dir(KeyDir::new(dir), insecure)?.load()?;
            Verifier::new(ring.shared()?, validation, clock).verify(&token)?
        }
        (None, None) => return Err(CliError::new("invalid_request", "give --jwks or --dir")),
    };
    print_json(&claims.to_value())
}

fn load_jwks(src: &str) -> Result<JwkSet, CliError> {
    if src.starts_with("http://") || src.starts_with("https://") {
        return tokensmith::jwks::fetch_blocking(src).map_err(|e| CliError::new(e.code(), e.to_string()));
    }
    let text = std::fs::read(src).map_err(|e| CliError::new("invalid_jwks", format!("{src}: {e}")))?;
    serde_json::from_slice(&text).map_err(|e| CliError::new("invalid_jwks", format!("{src}: {e}")))
}

#[cfg(test)]
mod tests;
