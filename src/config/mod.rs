//! Configuration: `tokensmith.toml`, `TOKENSMITH_*` environment overrides,
//! the embedded defaults, and every check that must pass before start-up.
//!
//! This module owns turning text into a checked [`Config`], once. A bad value
//! stops start-up with a message that names the key
//! (`keys.rotate_every: invalid duration "3x"`); nothing falls back silently
//! to a default. The environment arrives as a parameter, so nothing here reads
//! the process environment or holds global state, and tests are pure.
//!
//! It must never print a secret: API keys exist here only as their SHA-256
//! (and a raw key pasted by mistake into `api_keys` is refused without being
//! echoed), and URLs that may carry credentials are shown with their userinfo
//! masked, in `Debug` and in error messages alike.
//!
//! One file per step: `env.rs` writes the `TOKENSMITH_*` variables into the
//! TOML table, `raw.rs` reads the table into shapes that refuse unknown
//! keys, and `check.rs` turns those into the checked types of this file,
//! filling in the defaults below.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clients::Client;
use crate::jose::Algorithm;

pub use dpop::DpopConfig;

mod check;
mod dpop;
mod env;
mod oauth;
mod raw;
mod store;
#[cfg(test)]
mod tests;

/// The file read when no explicit path is given, relative to the working directory.
pub const DEFAULT_PATH: &str = "tokensmith.toml";

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

// The embedded defaults of API.md. Durations carry the text they are written
// as, so that a message about a default shows what the documentation says.
const DEFAULT_ISSUER: &str = "http://127.0.0.1:8080";
const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8080));
const DEFAULT_KEYS_DIR: &str = "keys";
const DEFAULT_RSA_BITS: u32 = 2048;
const DEFAULT_ROTATE_EVERY: (Duration, &str) = (Duration::from_secs(30 * DAY), "30d");
const DEFAULT_PUBLISH_AHEAD: (Duration, &str) = (Duration::from_secs(HOUR), "1h");
const DEFAULT_TTL: (Duration, &str) = (Duration::from_secs(300), "5m");
const DEFAULT_MAX_TTL: (Duration, &str) = (Duration::from_secs(DAY), "24h");
const DEFAULT_LEEWAY: (Duration, &str) = (Duration::from_secs(60), "60s");
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
const DEFAULT_STORE_CAPACITY: usize = 1_000_000;
const DEFAULT_STORE_TIMEOUT: (Duration, &str) = (Duration::from_millis(500), "500ms");
const DEFAULT_SESSION_TIMEOUT: (Duration, &str) = (Duration::from_secs(2), "2s");
const DEFAULT_SESSION_CACHE_TTL: (Duration, &str) = (Duration::ZERO, "0s");
const DEFAULT_HEADER_READ_TIMEOUT: (Duration, &str) = (Duration::from_secs(10), "10s");
const DEFAULT_IDLE_TIMEOUT: (Duration, &str) = (Duration::from_secs(60), "60s");
const DEFAULT_SHUTDOWN_GRACE: (Duration, &str) = (Duration::from_secs(10), "10s");

/// The checked configuration. Built only by [`Config::load`],
/// [`Config::from_toml_str`] or [`Config::embedded`], so every value in it has
/// passed the start-up checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The `iss` claim and the discovery issuer. Default `http://127.0.0.1:8080`.
    pub issuer: String,
    /// Where `serve` listens. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// `[keys]`: the keys folder and rotation.
    pub keys: KeysConfig,
    /// `[tokens]`: lifetimes and leeway.
    pub tokens: TokensConfig,
    /// `[store]`: where replay marks, revocations and counters live.
    pub store: StoreConfig,
    /// `[server]`: timeouts, the connection cap, the drain, the metrics listener.
    pub server: ServerConfig,
    /// Present when the file has a `[session]` table (or a `TOKENSMITH_SESSION_*` variable is set).
    pub session: Option<SessionConfig>,
    /// `[dpop]`: DPoP proofs (RFC 9449).
    pub dpop: DpopConfig,
    /// `[[clients]]`, checked. Default: none.
    pub clients: Vec<Client>,
}

/// `[keys]`: the key ring.
#[derive(Clone, Debug, PartialEq)]
pub struct KeysConfig {
    /// The key folder, relative to the working directory. Default `keys`.
    pub dir: PathBuf,
    /// Algorithm of new keys. Default RS256; never HS256.
    pub algorithm: Algorithm,
    /// True when `algorithm` was written in the config or the environment:
    /// rotation then moves the ring to it. Otherwise a rotation keeps the
    /// active key's algorithm, so a ring made with `keys init --alg EdDSA`
    /// stays EdDSA under the embedded defaults.
    pub algorithm_set: bool,
    /// Size of new RSA keys: 2048 (default), 3072 or 4096.
    pub rsa_bits: u32,
    /// The server rotates by itself this often. Default 30d.
    pub rotate_every: Duration,
    /// A new key is published this long before it signs. Default 1h; below `rotate_every`.
    pub publish_ahead: Duration,
}

impl KeysConfig {
    /// The algorithm of the key a rotation makes, given the active key's.
    pub fn rotation_algorithm(&self, active: Algorithm) -> Algorithm {
        if self.algorithm_set {
            self.algorithm
        } else {
            active
        }
    }
}

/// `[tokens]`: lifetimes.
#[derive(Clone, Debug, PartialEq)]
pub struct TokensConfig {
    /// Lifetime of a token whose request names none. Default 5m; at most `max_ttl`.
    pub default_ttl: Duration,
    /// Hard cap for every client. Default 24h.
    pub max_ttl: Duration,
    /// Clock skew allowed on `exp`/`nbf`/`iat`. Default 60s; at most 1h.
    pub leeway: Duration,
}

/// Which store keeps replay marks, revocations, refresh tokens and rate counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreBackend {
    /// In this process only: the default, for a single instance.
    Memory,
    /// Shared by every instance that points at the same Redis.
    Redis,
}

/// `[store]`.
#[derive(Clone, PartialEq)]
pub struct StoreConfig {
    /// Default `memory`.
    pub backend: StoreBackend,
    /// Default `redis://127.0.0.1:6379`. May carry a password: `Debug` masks it.
    pub redis_url: String,
    /// Bound of the memory store, in entries. Default 1,000,000.
    pub capacity: usize,
    /// Limit on one store call. Default 500ms.
    pub timeout: Duration,
    /// Seed nodes of a Redis Cluster (`redis://` or `rediss://` URLs); when
    /// not empty the Redis store talks to that cluster and `redis_url` is
    /// not used. Default empty. May carry passwords: `Debug` masks them.
    pub redis_cluster: Vec<String>,
    /// Replicas that must confirm (`WAIT`) a single-use decision before it
    /// is reported; fewer within half the timeout is 503. Default 0.
    pub redis_wait_replicas: u32,
    /// PEM CA bundle that verifies a `rediss://` server instead of the
    /// system's roots. Checked (read and parsed) at load.
    pub redis_ca_file: Option<PathBuf>,
    /// PEM certificate chain sent to a `rediss://` server (mutual TLS);
    /// set together with `redis_client_key_file`.
    pub redis_client_cert_file: Option<PathBuf>,
    /// PEM private key of `redis_client_cert_file`. Only its path is kept
    /// here; the key is read when the store connects, and never logged.
    pub redis_client_key_file: Option<PathBuf>,
}

/// `[server]`: how the HTTP listener treats connections. Every bound here
/// exists so that slow or idle peers cannot hold the service's connections
/// (and file descriptors) away from everyone else.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// A request head must arrive whole within this long: counted from the
    /// connection's opening for its first request, from the first byte for
    /// later ones. A request body must arrive within as long again after its
    /// head. Default 10s; at most 10s.
    pub header_read_timeout: Duration,
    /// A keep-alive connection that starts no new request for this long is
    /// closed. Default 60s; keep it above the idle timeout of a load
    /// balancer in front, so that the balancer is the one to close.
    pub idle_timeout: Duration,
    /// The most connections served at once. At the cap, a new connection
    /// closes the one idle the longest; when none is idle it gets `503
    /// server_busy`. Default (`None`): three quarters of the file-descriptor
    /// limit the process has at start-up, leaving the rest for the store,
    /// the session check and key files.
    pub max_connections: Option<usize>,
    /// After SIGTERM, requests in flight get this long to finish; then
    /// every connection is closed and the process exits 0. Default 10s.
    pub shutdown_grace: Duration,
    /// When set, `/metrics` is served on this address only (and answers
    /// 404 on `listen`), so that it can stay off the public interface.
    /// Default: none, `/metrics` on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// List the union of the clients' scopes as `scopes_supported` in the
    /// OAuth 2.0 metadata documents. Default true; false keeps scope names private.
    pub publish_scopes: bool,
}

/// `[session]`: exchanging an existing app session for a token.
#[derive(Clone, PartialEq)]
pub struct SessionConfig {
    /// Gets the caller's `Cookie` and `Authorization`. May carry credentials: `Debug` masks them.
    pub check_url: String,
    /// The id of the client whose policy session tokens follow.
    pub client: String,
    /// Limit on one session check. Default 2s.
    pub timeout: Duration,
    /// How long an answer is reused. Default 0 (no cache); at most 10s.
    pub cache_ttl: Duration,
    /// Allows a plain `http://` `check_url` off loopback. Default false: the
    /// check carries the caller's cookies, so it must be https unless it
    /// stays on this machine (the rule `RemoteJwks` follows).
    pub allow_http: bool,
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The file is not TOML.
    Syntax {
        /// The file's name as shown (`config` for a string).
        file: String,
        /// Where, from 1.
        line: usize,
        /// Where, from 1.
        column: usize,
        /// The parser's reason.
        reason: String,
    },
    /// A `TOKENSMITH_*` variable that names no setting.
    Env {
        /// The variable.
        var: String,
        /// Why it is refused.
        reason: String,
    },
    /// A value is wrong; `key` is its path (`clients[1] (shop_123).max_ttl`),
    /// `env` the variable it came from, if it came from one.
    Invalid {
        /// The setting's path.
        key: String,
        /// The `TOKENSMITH_*` variable it came from, if any.
        env: Option<String>,
        /// Why it is refused.
        reason: String,
    },
}

impl ConfigError {
    /// The key or variable the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Env { var, .. } => Some(var),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, reason } => write!(f, "cannot read {}: {reason}", path.display()),
            ConfigError::Syntax {
                file,
                line,
                column,
                reason,
            } => {
                write!(f, "{file}: line {line}, column {column}: {reason}")
            }
            ConfigError::Env { var, reason } => write!(f, "{var}: {reason}"),
            ConfigError::Invalid { key, env: None, reason } => write!(f, "{key}: {reason}"),
            ConfigError::Invalid {
                key,
                env: Some(var),
                reason,
            } => write!(f, "{key} (from {var}): {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads `path`, or `./tokensmith.toml` if there is one, or else starts
    /// from the embedded defaults; then applies `env` and checks everything.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let (file, text) = match path {
            Some(p) => (p, std::fs::read_to_string(p)),
            None => match std::fs::read_to_string(DEFAULT_PATH) {
                // No file is not an error without --config: the embedded
                // defaults plus the environment are a complete configuration.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Config::from_toml_str("", env),
                read => (Path::new(DEFAULT_PATH), read),
            },
        };
        let text = text.map_err(|e| ConfigError::Read {
            path: file.to_path_buf(),
            reason: e.to_string(),
        })?;
        parse(&text, env, &file.display().to_string())
    }

    /// Checks `text` (TOML) with `env` applied over it.
    pub fn from_toml_str(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        parse(text, env, "config")
    }

    /// The embedded defaults of API.md, with no clients and no session.
    pub fn embedded() -> Config {
        Config {
            issuer: DEFAULT_ISSUER.to_owned(),
            listen: DEFAULT_LISTEN,
            keys: KeysConfig {
                dir: PathBuf::from(DEFAULT_KEYS_DIR),
                algorithm: Algorithm::RS256,
                algorithm_set: false,
                rsa_bits: DEFAULT_RSA_BITS,
                rotate_every: DEFAULT_ROTATE_EVERY.0,
                publish_ahead: DEFAULT_PUBLISH_AHEAD.0,
            },
            tokens: TokensConfig {
                default_ttl: DEFAULT_TTL.0,
                max_ttl: DEFAULT_MAX_TTL.0,
                leeway: DEFAULT_LEEWAY.0,
            },
            store: StoreConfig {
                backend: StoreBackend::Memory,
                redis_url: DEFAULT_REDIS_URL.to_owned(),
                capacity: DEFAULT_STORE_CAPACITY,
                timeout: DEFAULT_STORE_TIMEOUT.0,
                redis_cluster: Vec::new(),
                redis_wait_replicas: 0,
                redis_ca_file: None,
                redis_client_cert_file: None,
                redis_client_key_file: None,
            },
            server: ServerConfig {
                header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT.0,
                idle_timeout: DEFAULT_IDLE_TIMEOUT.0,
                max_connections: None,
                shutdown_grace: DEFAULT_SHUTDOWN_GRACE.0,
                metrics_listen: None,
                publish_scopes: true,
            },
            session: None,
            dpop: DpopConfig::default(),
            clients: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------
// Reading: text and variables in, a checked Config out.

fn parse(text: &str, env: impl IntoIterator<Item = (String, String)>, file: &str) -> Result<Config, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| raw::syntax_error(text, file, &e))?;
    let from_env = env::apply_env(&mut table, env)?;
    // An error about a value that came from a variable names the variable too.
    let annotate = |e: ConfigError| match e {
        ConfigError::Invalid { key, env: None, reason } => {
            let env = from_env
                .iter()
                .find(|(path, _)| *path == key)
                .map(|(_, var)| var.clone());
            ConfigError::Invalid { key, env, reason }
        }
        other => other,
    };
    let raw: raw::RawConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e| annotate(raw::serde_error("", &e)))?;
    check::check(raw).map_err(annotate)
}

fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}.{key}"),
    }
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        env: None,
        reason: reason.into(),
    }
}

/// `url` with any userinfo (`user:password@`) and any query masked: both
/// may carry a credential.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    // Redis reads a Unix socket's password from `?pass=`.
    let tail = match tail.split_once('?') {
        Some((path, _)) => format!("{path}?***"),
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

// ---------------------------------------------------------------------------
// Debug that keeps credentials out of logs.

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("backend", &self.backend)
            .field("redis_url", &redact_url(&self.redis_url))
            .field("capacity", &self.capacity)
            .field("timeout", &self.timeout)
            .field(
                "redis_cluster",
                &self.redis_cluster.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
            )
            .field("redis_wait_replicas", &self.redis_wait_replicas)
            .field("redis_ca_file", &self.redis_ca_file)
            .field("redis_client_cert_file", &self.redis_client_cert_file)
            .field("redis_client_key_file", &self.redis_client_key_file)
            .finish()
    }
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("check_url", &redact_url(&self.check_url))
            .field("client", &self.client)
            .field("timeout", &self.timeout)
            .field("cache_ttl", &self.cache_ttl)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}
