//! The command line: `serve`, `keys`, `jwks`, `issue`, `verify`, `apikey`.
//!
//! Thin: each subcommand parses, calls the library, and prints. Exit status
//! is 0 on success, 1 when a token is rejected or an operation fails, 2 on
//! bad usage; every failure is one stderr line `error: <code>: <text>`. No
//! secret (key, API key, token) ever goes to stderr.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use arc_swap::ArcSwap;
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};

use tokensmith::claims::{is_reserved, Rejection, Validation};
use tokensmith::clients::{self, ClientRegistry};
use tokensmith::clock::{Clock, SharedClock, SystemClock};
use tokensmith::config::{self, Config};
use tokensmith::issuer::TokenSpec;
use tokensmith::jose::{Algorithm, JwkSet};
use tokensmith::keys::disk::KeyDir;
use tokensmith::keys::{KeyRecord, RingPolicy};
use tokensmith::server::StateError;
use tokensmith::store::memory::MemoryStore;
use tokensmith::verifier::{StaticKeys, Verifier};
use tokensmith::{Authority, AuthorityError};

mod dev;
mod serve;

/// `println!` that reports a closed or failing standard output as an error
/// line instead of panicking (`tokensmith jwks | head -1`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
            .map_err(|e| CliError::new("output_failed", format!("standard output: {e}")))
    }};
}

#[derive(Parser, Debug)]
#[command(
    name = "tokensmith",
    version,
    about = "Issues short-lived JWTs, publishes and rotates their keys, verifies tokens."
)]
struct Cli {
    /// Configuration file (default: ./tokensmith.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Manage the key ring.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the JWKS of the key ring.
    Jwks(DirArg),
    /// Sign a token with the active key.
    Issue(IssueArgs),
    /// Verify a token and print its claims.
    Verify(VerifyArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
}

/// `tokensmith serve`'s options.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (overrides `listen`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Keys folder (overrides `keys.dir`).
    #[arg(long, value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// Development mode: add a `dev` client and print its keys once.
    #[arg(long)]
    pub dev: bool,
}

#[derive(Args, Debug)]
struct DirArg {
    /// Keys folder (default: `keys.dir`, `keys`).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Make an active and a next key in an empty folder.
    Init {
        #[command(flatten)]
        dir: DirArg,
        /// Signing algorithm (default: `keys.algorithm`).
        #[arg(long, value_parser = parse_alg)]
        alg: Option<Algorithm>,
        /// RSA modulus size (default: `keys.rsa_bits`).
        #[arg(long, value_parser = ["2048", "3072", "4096"])]
        bits: Option<String>,
    },
    /// Make `next` the signing key, retire the active one, publish a new next.
    Rotate {
        #[command(flatten)]
        dir: DirArg,
        /// Rotate even if `next` has been published for less than `publish_ahead`.
        #[arg(long)]
        now: bool,
    },
    /// List the keys and their states.
    List {
        #[command(flatten)]
        dir: DirArg,
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove retiring keys whose tokens have all expired.
    Prune {
        #[command(flatten)]
        dir: DirArg,
    },
}

#[derive(Args, Debug)]
struct IssueArgs {
    #[arg(long)]
    sub: String,
    #[arg(long)]
    aud: Vec<String>,
    #[arg(long)]
    scope: Vec<String>,
    /// Lifetime, e.g. 5m (default: `tokens.default_ttl`).
    #[arg(long, value_parser = parse_duration_arg)]
    ttl: Option<std::time::Duration>,
    /// An extra claim; V is JSON when it parses as JSON, a string otherwise.
    #[arg(long, value_name = "K=V")]
    claim: Vec<String>,
    /// Issuer URL (default: `issuer`).
    #[arg(long)]
    iss: Option<String>,
    #[command(flatten)]
    dir: DirArg,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// The token, or `-` (or nothing) to read it from standard input.
    token: Option<String>,
    /// A JWKS file (or URL) to verify against.
    #[arg(long, conflicts_with = "dir", required_unless_present = "dir")]
    jwks: Option<String>,
    /// A keys folder to verify against.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The audience the token must carry (or --any-aud, to inspect a token
    /// meant for anyone: never for a service that acts on it).
    #[arg(long, required_unless_present = "any_aud")]
    aud: Option<String>,
    /// Accept the token whatever its audience.
    #[arg(long, conflicts_with = "aud")]
    any_aud: bool,
    /// Expected issuer (default: `issuer`).
    #[arg(long)]
    iss: Option<String>,
    #[arg(long)]
    scope: Vec<String>,
    /// Clock skew allowed (default: `tokens.leeway`).
    #[arg(long, value_parser = parse_duration_arg)]
    leeway: Option<std::time::Duration>,
}

#[derive(Subcommand, Debug)]
enum ApikeyCommand {
    /// Print a new API key once, and the hash line for the config.
    Create {
        #[arg(long)]
        client: String,
    },
}

fn parse_alg(s: &str) -> Result<Algorithm, String> {
    match Algorithm::from_name(s) {
        Some(a) if a != Algorithm::HS256 => Ok(a),
        _ => Err(format!("{s:?} is not one of RS256, PS256, ES256, EdDSA")),
    }
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    tokensmith::units::parse_duration(s)
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

fn key_dir(cfg: &Config, dir: &DirArg) -> KeyDir {
    KeyDir::new(dir.dir.clone().unwrap_or_else(|| cfg.keys.dir.clone()))
}

fn print_json(v: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| CliError::new("internal", e.to_string()))?;
    out!("{text}")
}

/// Runs a parsed command line.
fn run(cli: Cli) -> Result<(), CliError> {
    let clock = SystemClock;
    let cfg = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Serve(args) => serve::run(cfg, args, cli.config),
        Command::Keys(KeysCommand::Init { dir, alg, bits }) => {
            let alg = alg.unwrap_or(cfg.keys.algorithm);
            let bits = bits.and_then(|b| b.parse().ok()).unwrap_or(cfg.keys.rsa_bits);
            let kd = key_dir(&cfg, &dir);
            let ring = kd.init(alg, bits, clock.now())?;
            print_records(&ring.records())
        }
        Command::Keys(KeysCommand::Rotate { dir, now }) => {
            let kd = key_dir(&cfg, &dir);
            let ring = kd.rotate(
                &policy(&cfg),
                |a| cfg.keys.rotation_algorithm(a),
                cfg.keys.rsa_bits,
                clock.now(),
                now,
            )?;
            print_records(&ring.records())
        }
        Command::Keys(KeysCommand::List { dir, json }) => {
            let ring = key_dir(&cfg, &dir).load()?;
            if json {
                print_json(&ring.records())
            } else {
                print_records(&ring.records())
            }
        }
        Command::Keys(KeysCommand::Prune { dir }) => {
            let (_, gone) = key_dir(&cfg, &dir).prune(&policy(&cfg), clock.now())?;
            for r in &gone {
                out!("pruned {} ({})", r.kid, r.alg)?;
            }
            if gone.is_empty() {
                out!("nothing to prune")?;
            }
            Ok(())
        }
        Command::Jwks(dir) => {
            let ring = key_dir(&cfg, &dir).load()?;
            print_json(&ring.snapshot()?.jwks)
        }
        Command::Issue(args) => issue(&cfg, args),
        Command::Verify(args) => verify(&cfg, args),
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

fn print_records(records: &[KeyRecord]) -> Result<(), CliError> {
    out!(
        "{:<44} {:<6} {:<9} {:>11} {:>11} {:>11}",
        "kid",
        "alg",
        "state",
        "published",
        "activated",
        "retired"
    )?;
    let t = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for r in records {
        out!(
            "{:<44} {:<6} {:<9} {:>11} {:>11} {:>11}",
            r.kid,
            r.alg.as_str(),
            r.state.as_str(),
            r.published_at,
            t(r.activated_at),
            t(r.deactivated_at)
        )?;
    }
    Ok(())
}

fn issue(cfg: &Config, args: IssueArgs) -> Result<(), CliError> {
    let ring = key_dir(cfg, &args.dir).load()?;
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
    let keys = Arc::new(ArcSwap::from_pointee(ring.snapshot()?));
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

fn verify(cfg: &Config, args: VerifyArgs) -> Result<(), CliError> {
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
            let ring = KeyDir::new(dir).load()?;
            let keys = Arc::new(ArcSwap::from_pointee(ring.snapshot()?));
            Verifier::new(keys, validation, clock).verify(&token)?
        }
        (None, None) => return Err(CliError::new("invalid_request", "give --jwks or --dir")),
    };
    print_json(&claims.to_value())
}

fn load_jwks(src: &str) -> Result<JwkSet, CliError> {
    if src.starts_with("http://") || src.starts_with("https://") {
        return tokensmith::client::jwks::fetch_blocking(src).map_err(|e| CliError::new(e.code(), e.to_string()));
    }
    let text = std::fs::read(src).map_err(|e| CliError::new("invalid_jwks", format!("{src}: {e}")))?;
    serde_json::from_slice(&text).map_err(|e| CliError::new("invalid_jwks", format!("{src}: {e}")))
}
