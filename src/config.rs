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

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::claims::is_reserved;
use crate::clients::{self, Client, ClientError, ClientRegistry, OriginPattern};
use crate::jose::Algorithm;
use crate::units::{parse_duration, RateLimit};

/// The file read when no explicit path is given, relative to the working directory.
pub const DEFAULT_PATH: &str = "tokensmith.toml";

const ENV_PREFIX: &str = "TOKENSMITH_";
/// The log filter: read by the binary's logging set-up, not by this module.
const ENV_LOG: &str = "TOKENSMITH_LOG";

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

/// Clock skew beyond this is a broken clock, not skew; accepting it would
/// stretch every token's life by as much.
const MAX_LEEWAY: Duration = Duration::from_secs(HOUR);
/// A cached session answer outlives a logout by up to this long.
const MAX_SESSION_CACHE_TTL: Duration = Duration::from_secs(10);
const RSA_BITS: [u32; 3] = [2048, 3072, 4096];
const MAX_CLIENT_ID_LEN: usize = 64;

/// The checked configuration. Built only by [`Config::load`],
/// [`Config::from_toml_str`] or [`Config::embedded`], so every value in it has
/// passed the start-up checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The `iss` claim and the discovery issuer. Default `http://127.0.0.1:8080`.
    pub issuer: String,
    /// Where `serve` listens. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    pub keys: KeysConfig,
    pub tokens: TokensConfig,
    pub store: StoreConfig,
    /// Present when the file has a `[session]` table (or a `TOKENSMITH_SESSION_*` variable is set).
    pub session: Option<SessionConfig>,
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
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read.
    Read { path: PathBuf, reason: String },
    /// The file is not TOML.
    Syntax {
        file: String,
        line: usize,
        column: usize,
        reason: String,
    },
    /// A `TOKENSMITH_*` variable that names no setting.
    Env { var: String, reason: String },
    /// A value is wrong; `key` is its path (`clients[1] (shop_123).max_ttl`),
    /// `env` the variable it came from, if it came from one.
    Invalid {
        key: String,
        env: Option<String>,
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
            },
            session: None,
            clients: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------
// Raw shapes: exactly what the file may say, nothing checked yet.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: Option<String>,
    listen: Option<String>,
    #[serde(default)]
    keys: RawKeys,
    #[serde(default)]
    tokens: RawTokens,
    #[serde(default)]
    store: RawStore,
    session: Option<RawSession>,
    // Kept as TOML values and read one by one, so that an error can name
    // the client by index and id: toml's own error path says only `clients`.
    #[serde(default)]
    clients: Vec<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    dir: Option<String>,
    algorithm: Option<String>,
    rsa_bits: Option<u32>,
    rotate_every: Option<RawDuration>,
    publish_ahead: Option<RawDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    default_ttl: Option<RawDuration>,
    max_ttl: Option<RawDuration>,
    leeway: Option<RawDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    backend: Option<String>,
    redis_url: Option<String>,
    capacity: Option<usize>,
    timeout: Option<RawDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSession {
    check_url: Option<String>,
    client: Option<String>,
    timeout: Option<RawDuration>,
    cache_ttl: Option<RawDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawClient {
    id: Option<String>,
    audience: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    api_keys: Vec<String>,
    public_key: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    max_ttl: Option<RawDuration>,
    #[serde(default)]
    claims: Map<String, Value>,
    #[serde(default)]
    allowed_claims: Vec<String>,
    rate_limit: Option<String>,
    #[serde(default)]
    guest_scopes: Vec<String>,
    refresh_ttl: Option<RawDuration>,
    refresh_family_ttl: Option<RawDuration>,
    #[serde(default)]
    config: Map<String, Value>,
}

/// A duration as written: text (`"5m"`) or a whole number of seconds.
enum RawDuration {
    Text(String),
    Secs(u64),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"5m\" or a whole number of seconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(s.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Secs(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawDuration, E> {
                u64::try_from(n)
                    .map(RawDuration::Secs)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// Environment overrides.

#[derive(Clone, Copy)]
enum EnvKind {
    Text,
    Integer,
    /// Text, or digits alone meaning seconds (`TOKENSMITH_TOKENS_DEFAULT_TTL=300`).
    Duration,
}

/// Every setting a variable may override: (section, key, kind). Keys contain
/// underscores, so a variable is matched against these whole names rather
/// than split at an underscore. `[[clients]]` is deliberately absent.
const ENV_SETTINGS: [(&str, &str, EnvKind); 18] = [
    ("", "issuer", EnvKind::Text),
    ("", "listen", EnvKind::Text),
    ("keys", "dir", EnvKind::Text),
    ("keys", "algorithm", EnvKind::Text),
    ("keys", "rsa_bits", EnvKind::Integer),
    ("keys", "rotate_every", EnvKind::Duration),
    ("keys", "publish_ahead", EnvKind::Duration),
    ("tokens", "default_ttl", EnvKind::Duration),
    ("tokens", "max_ttl", EnvKind::Duration),
    ("tokens", "leeway", EnvKind::Duration),
    ("store", "backend", EnvKind::Text),
    ("store", "redis_url", EnvKind::Text),
    ("store", "capacity", EnvKind::Integer),
    ("store", "timeout", EnvKind::Duration),
    ("session", "check_url", EnvKind::Text),
    ("session", "client", EnvKind::Text),
    ("session", "timeout", EnvKind::Duration),
    ("session", "cache_ttl", EnvKind::Duration),
];

fn env_var_name(section: &str, key: &str) -> String {
    if section.is_empty() {
        format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
    } else {
        format!(
            "{ENV_PREFIX}{}_{}",
            section.to_ascii_uppercase(),
            key.to_ascii_uppercase()
        )
    }
}

/// Writes the `TOKENSMITH_*` variables of `env` into `table`; returns which
/// key each came from, so that an error about the value can name the variable.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name != ENV_LOG)
        .collect();
    // Sorted so that with several bad variables the same one is reported every time.
    vars.sort();
    let mut applied = Vec::new();
    for (var, text) in vars {
        let Some(&(section, key, kind)) = ENV_SETTINGS.iter().find(|(s, k, _)| env_var_name(s, k) == var) else {
            return Err(unknown_env(var));
        };
        let path = join(section, key);
        let value = env_value(kind, &text).map_err(|reason| ConfigError::Invalid {
            key: path.clone(),
            env: Some(var.clone()),
            reason,
        })?;
        let target = if section.is_empty() {
            &mut *table
        } else {
            match table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                toml::Value::Table(t) => t,
                // The file says `keys = 3`: reading it reports that, naming the key.
                _ => continue,
            }
        };
        target.insert(key.to_owned(), value);
        applied.push((path, var));
    }
    Ok(applied)
}

fn env_value(kind: EnvKind, text: &str) -> Result<toml::Value, String> {
    let all_digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match kind {
        EnvKind::Text => Ok(toml::Value::String(text.to_owned())),
        EnvKind::Duration if !all_digits => Ok(toml::Value::String(text.to_owned())),
        EnvKind::Integer | EnvKind::Duration => text
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("{text:?} is not a whole number")),
    }
}

fn unknown_env(var: String) -> ConfigError {
    let rest = var.strip_prefix(ENV_PREFIX).unwrap_or(&var);
    if rest.starts_with("CLIENTS") {
        let reason = "[[clients]] cannot be set by environment variables; write them in the config file".to_owned();
        return ConfigError::Env { var, reason };
    }
    let section = ["keys", "tokens", "store", "session"]
        .into_iter()
        .find(|s| rest.starts_with(&format!("{}_", s.to_ascii_uppercase())));
    let reason = match section {
        Some(section) => {
            let known: Vec<String> = ENV_SETTINGS
                .iter()
                .filter(|(s, _, _)| *s == section)
                .map(|(s, k, _)| env_var_name(s, k))
                .collect();
            format!("unknown setting; [{section}] takes {}", known.join(", "))
        }
        None => "unknown setting; known are TOKENSMITH_ISSUER, TOKENSMITH_LISTEN, TOKENSMITH_LOG and \
                 TOKENSMITH_<SECTION>_<KEY> for [keys], [tokens], [store] and [session]"
            .to_owned(),
    };
    ConfigError::Env { var, reason }
}

// ---------------------------------------------------------------------------
// Reading and checking.

fn parse(text: &str, env: impl IntoIterator<Item = (String, String)>, file: &str) -> Result<Config, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| syntax_error(text, file, &e))?;
    let from_env = apply_env(&mut table, env)?;
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
    let raw: RawConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e| annotate(serde_error("", &e)))?;
    check(raw).map_err(annotate)
}

fn syntax_error(text: &str, file: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map_or(0, |s| s.start).min(text.len());
    let before = text.get(..at).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ConfigError::Syntax {
        file: file.to_owned(),
        line,
        column,
        reason: e.message().trim().to_owned(),
    }
}

/// Turns toml's "message\nin `path`" into an error that names the key.
fn serde_error(prefix: &str, e: &toml::de::Error) -> ConfigError {
    let text = e.to_string();
    let mut reason = String::new();
    let mut path = "";
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(p) = line.strip_prefix("in `").and_then(|l| l.strip_suffix('`')) {
            path = p;
        } else {
            if !reason.is_empty() {
                reason.push_str("; ");
            }
            reason.push_str(line);
        }
    }
    let mut key = join(prefix, path);
    if let Some((name, rest)) = reason.strip_prefix("unknown field `").and_then(|r| r.split_once('`')) {
        key = join(&key, name);
        reason = format!("unknown key{rest}");
    }
    // serde names our private raw types ("expected struct RawKeys"); a user wrote a table.
    if let Some(at) = reason.find("struct Raw") {
        let end = reason[at..].find([';', ',']).map_or(reason.len(), |n| at + n);
        reason.replace_range(at..end, "a table");
    }
    invalid(key, reason)
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

fn check(raw: RawConfig) -> Result<Config, ConfigError> {
    let issuer = raw.issuer.unwrap_or_else(|| DEFAULT_ISSUER.to_owned());
    check_http_url(&issuer, false).map_err(|why| invalid("issuer", format!("{:?} {why}", redact_url(&issuer))))?;
    let listen = match raw.listen {
        None => DEFAULT_LISTEN,
        Some(s) => s
            .parse()
            .map_err(|_| invalid("listen", format!("{s:?} is not a socket address like 127.0.0.1:8080")))?,
    };
    let keys = check_keys(raw.keys)?;
    let (tokens, max_ttl) = check_tokens(raw.tokens)?;
    let store = check_store(raw.store)?;
    let clients = check_clients(raw.clients, &max_ttl, &issuer)?;
    let session = raw.session.map(|s| check_session(s, &clients)).transpose()?;
    Ok(Config {
        issuer,
        listen,
        keys,
        tokens,
        store,
        session,
        clients,
    })
}

/// A duration with the text it was written as, for messages.
struct Dur {
    value: Duration,
    text: String,
}

fn duration(key: &str, raw: Option<RawDuration>, default: (Duration, &str)) -> Result<Dur, ConfigError> {
    match raw {
        None => Ok(Dur {
            value: default.0,
            text: default.1.to_owned(),
        }),
        Some(RawDuration::Secs(n)) => Ok(Dur {
            value: Duration::from_secs(n),
            text: format!("{n}s"),
        }),
        Some(RawDuration::Text(s)) => match parse_duration(&s) {
            Ok(value) => Ok(Dur { value, text: s }),
            Err(why) => Err(invalid(key, why)),
        },
    }
}

/// A lifetime that ends up in a JWT NumericDate: whole seconds, above zero.
fn lifetime(key: &str, raw: Option<RawDuration>, default: (Duration, &str)) -> Result<Dur, ConfigError> {
    let d = duration(key, raw, default)?;
    if d.value.is_zero() {
        return Err(invalid(key, "must be above zero"));
    }
    whole_seconds(key, &d)?;
    Ok(d)
}

fn whole_seconds(key: &str, d: &Dur) -> Result<(), ConfigError> {
    if d.value.subsec_nanos() != 0 {
        return Err(invalid(key, format!("{} is not a whole number of seconds", d.text)));
    }
    Ok(())
}

fn check_keys(raw: RawKeys) -> Result<KeysConfig, ConfigError> {
    let dir = raw.dir.unwrap_or_else(|| DEFAULT_KEYS_DIR.to_owned());
    if dir.trim().is_empty() {
        return Err(invalid("keys.dir", "is empty"));
    }
    let algorithm_set = raw.algorithm.is_some();
    let algorithm = match raw.algorithm {
        None => Algorithm::RS256,
        Some(name) => Algorithm::from_name(&name)
            .filter(|a| Algorithm::ASYMMETRIC.contains(a))
            .ok_or_else(|| {
                invalid(
                    "keys.algorithm",
                    format!("{name:?} is not one of RS256, PS256, ES256, EdDSA"),
                )
            })?,
    };
    let rsa_bits = raw.rsa_bits.unwrap_or(DEFAULT_RSA_BITS);
    if !RSA_BITS.contains(&rsa_bits) {
        return Err(invalid(
            "keys.rsa_bits",
            format!("{rsa_bits} is not 2048, 3072 or 4096"),
        ));
    }
    let rotate_every = lifetime("keys.rotate_every", raw.rotate_every, DEFAULT_ROTATE_EVERY)?;
    let publish_ahead = duration("keys.publish_ahead", raw.publish_ahead, DEFAULT_PUBLISH_AHEAD)?;
    whole_seconds("keys.publish_ahead", &publish_ahead)?;
    if publish_ahead.value >= rotate_every.value {
        // A key must sign for a while after it is published, or rotation
        // would pile up unpublished keys.
        let why = format!(
            "{} is not below keys.rotate_every {}",
            publish_ahead.text, rotate_every.text
        );
        return Err(invalid("keys.publish_ahead", why));
    }
    Ok(KeysConfig {
        dir: PathBuf::from(dir),
        algorithm,
        algorithm_set,
        rsa_bits,
        rotate_every: rotate_every.value,
        publish_ahead: publish_ahead.value,
    })
}

fn check_tokens(raw: RawTokens) -> Result<(TokensConfig, Dur), ConfigError> {
    let max_ttl = lifetime("tokens.max_ttl", raw.max_ttl, DEFAULT_MAX_TTL)?;
    let default_ttl = lifetime("tokens.default_ttl", raw.default_ttl, DEFAULT_TTL)?;
    if default_ttl.value > max_ttl.value {
        let why = format!("{} is above tokens.max_ttl {}", default_ttl.text, max_ttl.text);
        return Err(invalid("tokens.default_ttl", why));
    }
    let leeway = duration("tokens.leeway", raw.leeway, DEFAULT_LEEWAY)?;
    whole_seconds("tokens.leeway", &leeway)?;
    if leeway.value > MAX_LEEWAY {
        let why = format!(
            "{} is absurd: at most 1h; more is a broken clock, not skew",
            leeway.text
        );
        return Err(invalid("tokens.leeway", why));
    }
    let tokens = TokensConfig {
        default_ttl: default_ttl.value,
        max_ttl: max_ttl.value,
        leeway: leeway.value,
    };
    Ok((tokens, max_ttl))
}

fn check_store(raw: RawStore) -> Result<StoreConfig, ConfigError> {
    let backend = match raw.backend.as_deref() {
        None | Some("memory") => StoreBackend::Memory,
        Some("redis") => StoreBackend::Redis,
        Some(other) => return Err(invalid("store.backend", format!("{other:?} is not memory or redis"))),
    };
    let redis_url = raw.redis_url.unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned());
    let scheme = redis_url.split_once("://").map(|(s, _)| s);
    if !matches!(scheme, Some("redis" | "rediss" | "redis+unix" | "unix")) {
        // Not echoed: a malformed URL may still hold a password.
        return Err(invalid(
            "store.redis_url",
            "is not a redis://, rediss://, redis+unix:// or unix:// URL",
        ));
    }
    let capacity = raw.capacity.unwrap_or(DEFAULT_STORE_CAPACITY);
    if capacity == 0 {
        return Err(invalid("store.capacity", "must be above zero"));
    }
    let timeout = duration("store.timeout", raw.timeout, DEFAULT_STORE_TIMEOUT)?;
    if timeout.value.is_zero() {
        return Err(invalid("store.timeout", "must be above zero"));
    }
    Ok(StoreConfig {
        backend,
        redis_url,
        capacity,
        timeout: timeout.value,
    })
}

fn check_session(raw: RawSession, clients: &[Client]) -> Result<SessionConfig, ConfigError> {
    let check_url = raw
        .check_url
        .ok_or_else(|| invalid("session.check_url", "missing: [session] needs check_url"))?;
    check_http_url(&check_url, true)
        .map_err(|why| invalid("session.check_url", format!("{:?} {why}", redact_url(&check_url))))?;
    let client = raw
        .client
        .ok_or_else(|| invalid("session.client", "missing: [session] needs client"))?;
    if !clients.iter().any(|c| c.id == client) {
        return Err(invalid(
            "session.client",
            format!("{client:?} names no client in [[clients]]"),
        ));
    }
    let timeout = duration("session.timeout", raw.timeout, DEFAULT_SESSION_TIMEOUT)?;
    if timeout.value.is_zero() {
        return Err(invalid("session.timeout", "must be above zero"));
    }
    let cache_ttl = duration("session.cache_ttl", raw.cache_ttl, DEFAULT_SESSION_CACHE_TTL)?;
    if cache_ttl.value > MAX_SESSION_CACHE_TTL {
        let why = format!(
            "{} is above 10s: a signed-out session must stop working quickly",
            cache_ttl.text
        );
        return Err(invalid("session.cache_ttl", why));
    }
    Ok(SessionConfig {
        check_url,
        client,
        timeout: timeout.value,
        cache_ttl: cache_ttl.value,
    })
}

/// `Ok` for an absolute `http(s)://host…` URL. `credentials_and_query`
/// allows userinfo and a query, which an issuer must not have (OpenID
/// Connect Discovery §3) but a session-check endpoint may.
fn check_http_url(url: &str, credentials_and_query: bool) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("is not an http(s) URL")?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters");
    }
    if rest.contains('#') {
        return Err("must not have a fragment");
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = match authority.rsplit_once('@') {
        Some(_) if !credentials_and_query => return Err("must not carry credentials"),
        Some((_, host)) => host,
        None => authority,
    };
    if host.is_empty() || host.starts_with(':') {
        return Err("has no host");
    }
    if !credentials_and_query && rest.contains('?') {
        return Err("must not have a query");
    }
    Ok(())
}

/// `url` with any userinfo (`user:password@`) masked.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{tail}"),
        None => url.to_owned(),
    }
}

fn check_clients(raw: Vec<toml::Value>, max_ttl: &Dur, issuer: &str) -> Result<Vec<Client>, ConfigError> {
    let mut out: Vec<Client> = Vec::with_capacity(raw.len());
    // Built only for its uniqueness checks, client by client, so that the
    // first entry that repeats an earlier one is the one reported.
    let mut registry = ClientRegistry::default();
    for (i, value) in raw.into_iter().enumerate() {
        let label = client_label(i, &value);
        let rc: RawClient = value.try_into().map_err(|e| serde_error(&label, &e))?;
        let c = check_client(&label, rc, max_ttl, issuer)?;
        registry
            .insert(c.clone())
            .map_err(|e| duplicate_error(&label, &e, &out))?;
        out.push(c);
    }
    Ok(out)
}

/// The registry's refusal, said about the entry `label` and the earlier
/// entry it repeats.
fn duplicate_error(label: &str, e: &ClientError, earlier: &[Client]) -> ConfigError {
    // Every earlier entry passed its checks, so its label has its id.
    let label_of = |id: &str| match earlier.iter().position(|c| c.id == id) {
        Some(j) => format!("clients[{j}] ({id})"),
        None => id.to_owned(),
    };
    match e {
        ClientError::DuplicateId(id) => invalid(format!("{label}.id"), format!("duplicate of {}", label_of(id))),
        ClientError::DuplicatePublicKey { other, .. } => invalid(
            format!("{label}.public_key"),
            format!("same public key as {}", label_of(other)),
        ),
        ClientError::DuplicateApiKey { client, other, index } if client == other => {
            invalid(format!("{label}.api_keys[{index}]"), "listed twice")
        }
        ClientError::DuplicateApiKey { other, index, .. } => invalid(
            format!("{label}.api_keys[{index}]"),
            format!("same key as {}", label_of(other)),
        ),
    }
}

/// `clients[1] (shop_123)`, or `clients[1]` while the id is missing or unprintable.
fn client_label(i: usize, value: &toml::Value) -> String {
    match value.get("id").and_then(toml::Value::as_str) {
        Some(id) if valid_client_id(id) => format!("clients[{i}] ({id})"),
        _ => format!("clients[{i}]"),
    }
}

/// Ids appear in logs, metrics labels and `apikey create --client ID`.
fn valid_client_id(id: &str) -> bool {
    (1..=MAX_CLIENT_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// An OAuth scope token (RFC 6749 §3.3): printable ASCII without space, `"` or `\`.
fn valid_scope(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

fn check_client(label: &str, raw: RawClient, tokens_max: &Dur, issuer: &str) -> Result<Client, ConfigError> {
    let key = |k: &str| format!("{label}.{k}");
    let id = raw.id.ok_or_else(|| invalid(key("id"), "missing"))?;
    if !valid_client_id(&id) {
        let why = format!("{id:?} is not 1 to {MAX_CLIENT_ID_LEN} letters, digits, '_', '-' or '.'");
        return Err(invalid(key("id"), why));
    }

    let audience = raw
        .audience
        .ok_or_else(|| invalid(key("audience"), "missing: the default aud of its tokens"))?;
    // The exchange endpoint's audience marks visitor tokens; a client that
    // could ask for it would mint them without the single-use rules.
    let reserved = [
        format!("{issuer}/v1/exchange"),
        format!("{}/v1/exchange", issuer.trim_end_matches('/')),
    ];
    let check_audience = |k: String, aud: &str| {
        if aud.trim().is_empty() {
            return Err(invalid(k, "is empty"));
        }
        if reserved.iter().any(|r| r == aud) {
            return Err(invalid(
                k,
                format!("{aud:?} is reserved for visitor tokens (\"purpose\": \"exchange\")"),
            ));
        }
        Ok(())
    };
    check_audience(key("audience"), &audience)?;
    for (j, aud) in raw.audiences.iter().enumerate() {
        check_audience(key(&format!("audiences[{j}]")), aud)?;
    }

    let mut api_keys = Vec::with_capacity(raw.api_keys.len());
    for (j, line) in raw.api_keys.iter().enumerate() {
        api_keys.push(clients::parse_hash_line(line).map_err(|why| invalid(key(&format!("api_keys[{j}]")), why))?);
    }
    if let Some(pk) = &raw.public_key {
        clients::check_public_key(pk).map_err(|why| invalid(key("public_key"), why))?;
    }
    let mut allowed_origins = Vec::with_capacity(raw.allowed_origins.len());
    for (j, origin) in raw.allowed_origins.iter().enumerate() {
        allowed_origins
            .push(OriginPattern::parse(origin).map_err(|why| invalid(key(&format!("allowed_origins[{j}]")), why))?);
    }

    for (name, list) in [("scopes", &raw.scopes), ("guest_scopes", &raw.guest_scopes)] {
        if let Some((j, s)) = list.iter().enumerate().find(|(_, s)| !valid_scope(s)) {
            let why = format!("{s:?} is not a scope: printable ASCII without spaces, '\"' or '\\'");
            return Err(invalid(key(&format!("{name}[{j}]")), why));
        }
    }
    if let Some(s) = raw.guest_scopes.iter().find(|s| !raw.scopes.contains(s)) {
        return Err(invalid(key("guest_scopes"), format!("{s:?} is not in scopes")));
    }

    let max_ttl = lifetime(&key("max_ttl"), raw.max_ttl, (tokens_max.value, &tokens_max.text))?;
    if max_ttl.value > tokens_max.value {
        let why = format!("{} is above tokens.max_ttl {}", max_ttl.text, tokens_max.text);
        return Err(invalid(key("max_ttl"), why));
    }

    if let Some(name) = raw.claims.keys().find(|k| is_reserved(k)) {
        return Err(invalid(
            key(&format!("claims.{name}")),
            format!("{name:?} is a registered claim the service sets"),
        ));
    }
    for (j, name) in raw.allowed_claims.iter().enumerate() {
        let k = key(&format!("allowed_claims[{j}]"));
        if name.is_empty() {
            return Err(invalid(k, "is empty"));
        }
        if is_reserved(name) {
            return Err(invalid(k, format!("{name:?} is a registered claim the service sets")));
        }
        if raw.claims.contains_key(name) {
            return Err(invalid(k, format!("{name:?} is one of this client's fixed claims")));
        }
    }

    let rate_limit = raw
        .rate_limit
        .as_deref()
        .map(RateLimit::parse)
        .transpose()
        .map_err(|why| invalid(key("rate_limit"), why))?;

    let refresh_ttl = lifetime(&key("refresh_ttl"), raw.refresh_ttl, clients::DEFAULT_REFRESH_TTL)?;
    let refresh_family_ttl = lifetime(
        &key("refresh_family_ttl"),
        raw.refresh_family_ttl,
        clients::DEFAULT_REFRESH_FAMILY_TTL,
    )?;
    if refresh_ttl.value > refresh_family_ttl.value {
        let why = format!(
            "{} is above refresh_family_ttl {}",
            refresh_ttl.text, refresh_family_ttl.text
        );
        return Err(invalid(key("refresh_ttl"), why));
    }

    Ok(Client {
        id,
        audience,
        audiences: raw.audiences,
        api_keys,
        public_key: raw.public_key,
        allowed_origins,
        scopes: raw.scopes,
        max_ttl: max_ttl.value,
        claims: raw.claims,
        allowed_claims: raw.allowed_claims,
        rate_limit,
        guest_scopes: raw.guest_scopes,
        refresh_ttl: refresh_ttl.value,
        refresh_family_ttl: refresh_family_ttl.value,
        config: raw.config,
    })
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
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::clients::api_key_hash;

    /// `sha256:` line of the key `sk_live_example`.
    const EXAMPLE_KEY: &str = "sk_live_example";
    const EXAMPLE_HASH: &str = "sha256:edc0244907453860f53b31a05089a2a9f0fdb349e3610b2ab88a36fd9719d7fa";

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn err(text: &str) -> String {
        match Config::from_toml_str(text, no_env()) {
            Ok(c) => panic!("accepted {text:?}: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// A valid client the validation cases extend.
    fn client(extra: &str) -> String {
        format!("[[clients]]\nid = \"a\"\naudience = \"chatbot\"\n{extra}\n")
    }

    fn session(body: &str) -> String {
        format!("[session]\n{body}\n{}", client(""))
    }

    /// The API.md example, with real hash lines. API.md's `session.client`
    /// names a client `app` it does not define, so one is added.
    fn example() -> String {
        format!(
            r##"
issuer = "http://127.0.0.1:8080"   # the iss claim, and the discovery issuer
listen = "127.0.0.1:8080"

[keys]
dir = "keys"
algorithm = "RS256"
rsa_bits = 2048
rotate_every = "30d"      # the server rotates by itself on this schedule
publish_ahead = "1h"      # a new key is in the JWKS this long before it signs

[tokens]
default_ttl = "5m"
max_ttl = "24h"           # hard cap for every client
leeway = "60s"            # clock skew allowed on exp/nbf/iat

[store]                   # jti replay marks, revocations, refresh tokens, rate limits
backend = "memory"        # memory | redis
redis_url = "redis://127.0.0.1:6379"

[session]                 # optional: exchange an existing app session for a token
check_url = "https://app.example.com/api/whoami"   # gets the caller's Cookie and Authorization headers
client = "app"

[[clients]]
id = "shop_123"
audience = "chatbot"                 # default aud of tokens for this client
api_keys = ["{EXAMPLE_HASH}"]              # hashes printed by `tokensmith apikey create`
public_key = "pk_live_shop123pub"             # for guest tokens and the public config
allowed_origins = ["https://shop.example.com"]
scopes = ["read:orders", "write:orders", "chat"]   # the most a token of this client may carry
max_ttl = "30m"
claims = {{ storeId = "st_1", appId = "app_9", installationId = "in_4" }}
rate_limit = "20/s"                  # N/s, N/m or N/h; shared by all instances on Redis
guest_scopes = ["chat"]              # scopes of guest tokens (subset of scopes)
refresh_ttl = "24h"                  # lifetime of one refresh token
refresh_family_ttl = "30d"           # absolute lifetime of a refresh-token family
config = {{ displayName = "Support", color = "#3366ff" }}  # public bootstrap config

[[clients]]
id = "app"
audience = "app"
"##
        )
    }

    #[test]
    fn embedded_defaults_are_api_md() {
        let c = Config::embedded();
        assert_eq!(c.issuer, "http://127.0.0.1:8080");
        assert_eq!(c.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
        assert_eq!(c.keys.dir, PathBuf::from("keys"));
        assert_eq!(c.keys.algorithm, Algorithm::RS256);
        assert_eq!(c.keys.rsa_bits, 2048);
        assert_eq!(c.keys.rotate_every, Duration::from_secs(30 * 86400));
        assert_eq!(c.keys.publish_ahead, Duration::from_secs(3600));
        assert_eq!(c.tokens.default_ttl, Duration::from_secs(300));
        assert_eq!(c.tokens.max_ttl, Duration::from_secs(86400));
        assert_eq!(c.tokens.leeway, Duration::from_secs(60));
        assert_eq!(c.store.backend, StoreBackend::Memory);
        assert_eq!(c.store.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(c.store.capacity, 1_000_000);
        assert_eq!(c.store.timeout, Duration::from_millis(500));
        assert!(c.session.is_none());
        assert!(c.clients.is_empty());
        // An empty file is exactly the embedded defaults.
        assert_eq!(Config::from_toml_str("", no_env()).unwrap(), c);
        // The documented defaults written out say the same.
        let text: String = example().split("[session]").next().unwrap().to_owned();
        let mut written = c.clone();
        written.keys.algorithm_set = true;
        assert_eq!(Config::from_toml_str(&text, no_env()).unwrap(), written);
    }

    #[test]
    fn the_api_md_example_parses() {
        let c = Config::from_toml_str(&example(), no_env()).unwrap();
        let s = c.session.as_ref().unwrap();
        assert_eq!(s.check_url, "https://app.example.com/api/whoami");
        assert_eq!(s.client, "app");
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(s.cache_ttl, Duration::ZERO);
        assert_eq!(c.clients.len(), 2);
        let shop = &c.clients[0];
        assert_eq!(shop.id, "shop_123");
        assert_eq!(shop.audience, "chatbot");
        assert_eq!(shop.api_keys, vec![api_key_hash(EXAMPLE_KEY)]);
        assert_eq!(shop.public_key.as_deref(), Some("pk_live_shop123pub"));
        assert_eq!(
            shop.allowed_origins,
            vec![OriginPattern::parse("https://shop.example.com").unwrap()]
        );
        assert_eq!(shop.max_ttl, Duration::from_secs(1800));
        assert_eq!(shop.claims["storeId"], "st_1");
        assert_eq!(shop.claims["installationId"], "in_4");
        assert_eq!(
            shop.rate_limit,
            Some(RateLimit {
                count: 20,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(shop.guest_scopes, vec!["chat"]);
        assert_eq!(shop.refresh_ttl, Duration::from_secs(86400));
        assert_eq!(shop.refresh_family_ttl, Duration::from_secs(30 * 86400));
        assert_eq!(shop.config["color"], "#3366ff");
        // Defaults of a client.
        let app = &c.clients[1];
        assert_eq!(app.max_ttl, c.tokens.max_ttl);
        assert_eq!(app.refresh_ttl, Duration::from_secs(86400));
        assert!(app.api_keys.is_empty() && app.rate_limit.is_none() && app.claims.is_empty());
        // The registry accepts what the config accepted.
        let reg = ClientRegistry::from_clients(&c.clients).unwrap();
        assert_eq!(reg.by_api_key(EXAMPLE_KEY).unwrap().id, "shop_123");
        assert!(reg
            .by_public_key("pk_live_shop123pub")
            .unwrap()
            .origin_allowed("https://shop.example.com"));
    }

    #[test]
    fn a_client_in_code_has_the_defaults_of_a_bare_entry() {
        let c = Config::from_toml_str(&client(""), no_env()).unwrap();
        assert_eq!(c.clients, vec![Client::new("a", "chatbot")]);
    }

    #[test]
    fn uppercase_hex_and_extensions_parse() {
        let upper = EXAMPLE_HASH.to_ascii_uppercase().replace("SHA256:", "sha256:");
        let text = client(&format!(
            "api_keys = [\"{upper}\"]\naudiences = [\"other\"]\nallowed_claims = [\"plan\"]\nmax_ttl = 600\n\
             claims = {{ nested = {{ a = [1, 2] }}, when = 1979-05-27 }}"
        ));
        let c = Config::from_toml_str(&text, no_env()).unwrap();
        let a = &c.clients[0];
        assert_eq!(a.api_keys, vec![api_key_hash(EXAMPLE_KEY)]);
        assert_eq!(a.audiences, vec!["other"]);
        assert_eq!(a.allowed_claims, vec!["plan"]);
        assert_eq!(a.max_ttl, Duration::from_secs(600));
        assert_eq!(a.claims["nested"]["a"][1], 2);
        assert_eq!(a.claims["when"], "1979-05-27");
    }

    #[test]
    fn environment_overrides_the_file() {
        let text = "issuer = \"https://file.example\"\n[tokens]\ndefault_ttl = \"1m\"\n";
        let c = Config::from_toml_str(
            text,
            env(&[
                ("TOKENSMITH_ISSUER", "https://auth.example.com"),
                ("TOKENSMITH_LISTEN", "0.0.0.0:9000"),
                ("TOKENSMITH_KEYS_RSA_BITS", "4096"),
                ("TOKENSMITH_KEYS_ROTATE_EVERY", "7d"),
                ("TOKENSMITH_TOKENS_DEFAULT_TTL", "10m"),
                ("TOKENSMITH_TOKENS_LEEWAY", "30"),
                ("TOKENSMITH_STORE_BACKEND", "redis"),
                ("TOKENSMITH_STORE_REDIS_URL", "rediss://:hunter2@redis.internal:6380"),
                ("TOKENSMITH_STORE_CAPACITY", "5000"),
                ("TOKENSMITH_LOG", "debug"),
                ("PATH", "/usr/bin"),
                ("tokensmith_issuer", "ignored: names are case-sensitive"),
            ]),
        )
        .unwrap();
        assert_eq!(c.issuer, "https://auth.example.com");
        assert_eq!(c.listen, "0.0.0.0:9000".parse::<SocketAddr>().unwrap());
        assert_eq!(c.keys.rsa_bits, 4096);
        assert_eq!(c.keys.rotate_every, Duration::from_secs(7 * 86400));
        assert_eq!(c.tokens.default_ttl, Duration::from_secs(600));
        assert_eq!(c.tokens.leeway, Duration::from_secs(30));
        assert_eq!(c.store.backend, StoreBackend::Redis);
        assert_eq!(c.store.redis_url, "rediss://:hunter2@redis.internal:6380");
        assert_eq!(c.store.capacity, 5000);
        assert!(c.session.is_none());
    }

    #[test]
    fn environment_can_make_the_session_section() {
        let vars = env(&[
            ("TOKENSMITH_SESSION_CHECK_URL", "https://app.example.com/me"),
            ("TOKENSMITH_SESSION_CLIENT", "a"),
        ]);
        let c = Config::from_toml_str(&client(""), vars).unwrap();
        assert_eq!(c.session.unwrap().check_url, "https://app.example.com/me");
        // Half a session is an error naming the missing key.
        let e = Config::from_toml_str(&client(""), env(&[("TOKENSMITH_SESSION_CLIENT", "a")])).unwrap_err();
        assert!(e.to_string().starts_with("session.check_url: missing"), "{e}");
    }

    #[test]
    fn every_env_setting_is_a_known_key() {
        let value = |key: &str| match key {
            "issuer" => "https://x.example",
            "listen" => "127.0.0.1:1",
            "dir" => "k",
            "algorithm" => "ES256",
            "rsa_bits" => "3072",
            "backend" => "memory",
            "redis_url" => "redis://r",
            "capacity" => "10",
            "check_url" => "https://x.example/me",
            "client" => "a",
            "cache_ttl" => "5s",
            "publish_ahead" => "2h",
            "leeway" => "30s",
            _ => "3h",
        };
        for (section, key, _) in ENV_SETTINGS {
            let mut vars = vec![(env_var_name(section, key), value(key).to_owned())];
            if section == "session" && key != "check_url" {
                vars.push((
                    "TOKENSMITH_SESSION_CHECK_URL".to_owned(),
                    "https://x.example/me".to_owned(),
                ));
            }
            if section == "session" && key != "client" {
                vars.push(("TOKENSMITH_SESSION_CLIENT".to_owned(), "a".to_owned()));
            }
            if let Err(e) = Config::from_toml_str(&client(""), vars) {
                panic!("{section}.{key}: {e}");
            }
        }
    }

    #[test]
    fn bad_environment_names_the_variable() {
        let e = Config::from_toml_str("", env(&[("TOKENSMITH_KEYS_ROTATE", "1d")])).unwrap_err();
        assert_eq!(e.key(), Some("TOKENSMITH_KEYS_ROTATE"));
        assert!(
            e.to_string().starts_with("TOKENSMITH_KEYS_ROTATE: unknown setting"),
            "{e}"
        );
        assert!(e.to_string().contains("TOKENSMITH_KEYS_ROTATE_EVERY"), "{e}");

        let e = Config::from_toml_str("", env(&[("TOKENSMITH_ISSUR", "x")])).unwrap_err();
        assert!(e.to_string().starts_with("TOKENSMITH_ISSUR: unknown setting"), "{e}");

        let e = Config::from_toml_str("", env(&[("TOKENSMITH_CLIENTS_0_ID", "x")])).unwrap_err();
        assert!(e.to_string().contains("[[clients]] cannot be set"), "{e}");

        let e = Config::from_toml_str("", env(&[("TOKENSMITH_KEYS_RSA_BITS", "big")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "keys.rsa_bits (from TOKENSMITH_KEYS_RSA_BITS): \"big\" is not a whole number"
        );

        let e = Config::from_toml_str("", env(&[("TOKENSMITH_KEYS_ROTATE_EVERY", "3x")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("keys.rotate_every (from TOKENSMITH_KEYS_ROTATE_EVERY): invalid duration \"3x\""),
            "{e}"
        );

        let e = Config::from_toml_str("", env(&[("TOKENSMITH_STORE_CAPACITY", "-1")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("store.capacity (from TOKENSMITH_STORE_CAPACITY): invalid value"),
            "{e}"
        );

        let e = Config::from_toml_str("", env(&[("TOKENSMITH_KEYS_RSA_BITS", "1024")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("keys.rsa_bits (from TOKENSMITH_KEYS_RSA_BITS): 1024"),
            "{e}"
        );
    }

    /// Every rule: (file, the start of the message, a part of the rest).
    #[test]
    fn every_rule_names_its_key() {
        let long = "x".repeat(65);
        #[rustfmt::skip]
        let cases: Vec<(String, &str, &str)> = vec![
            // unknown keys, anywhere
            ("colour = 1".into(), "colour: unknown key", "expected"),
            ("[sesion]\nclient = \"a\"".into(), "sesion: unknown key", ""),
            ("[keys]\nrotat = \"1d\"".into(), "keys.rotat: unknown key", "rotate_every"),
            ("[store]\nbackend = \"memory\"\nsize = 3".into(), "store.size: unknown key", ""),
            (client("colour = \"red\""), "clients[0] (a).colour: unknown key", "audience"),
            (format!("{}[[clients]]\nid = \"b\"\naudience = \"x\"\nfoo = 1", client("")), "clients[1] (b).foo: unknown key", ""),
            // types
            ("[keys]\nrsa_bits = \"big\"".into(), "keys.rsa_bits: invalid type", "u32"),
            ("keys = 3".into(), "keys: invalid type", "a table"),
            (client("scopes = \"read\""), "clients[0] (a).scopes: invalid type", ""),
            ("[tokens]\nmax_ttl = true".into(), "tokens.max_ttl: invalid type", "a duration"),
            ("[tokens]\nmax_ttl = -5".into(), "tokens.max_ttl: invalid value", ""),
            // durations
            ("[keys]\nrotate_every = \"3x\"".into(), "keys.rotate_every: invalid duration \"3x\"", ""),
            ("[tokens]\ndefault_ttl = \"\"".into(), "tokens.default_ttl: empty duration", ""),
            ("[tokens]\nmax_ttl = \"0s\"".into(), "tokens.max_ttl: must be above zero", ""),
            ("[tokens]\ndefault_ttl = \"1500ms\"".into(), "tokens.default_ttl: 1500ms is not a whole number", ""),
            ("[tokens]\ndefault_ttl = \"25h\"".into(), "tokens.default_ttl: 25h is above tokens.max_ttl 24h", ""),
            ("[tokens]\nleeway = \"2h\"".into(), "tokens.leeway: 2h is absurd", ""),
            ("[keys]\npublish_ahead = \"30d\"".into(), "keys.publish_ahead: 30d is not below keys.rotate_every 30d", ""),
            ("[keys]\nrotate_every = \"1h\"\npublish_ahead = \"2h\"".into(), "keys.publish_ahead: 2h is not below", ""),
            // keys
            ("[keys]\nrsa_bits = 1024".into(), "keys.rsa_bits: 1024 is not 2048, 3072 or 4096", ""),
            ("[keys]\nalgorithm = \"HS256\"".into(), "keys.algorithm: \"HS256\" is not one of", "EdDSA"),
            ("[keys]\nalgorithm = \"none\"".into(), "keys.algorithm: \"none\"", ""),
            ("[keys]\nalgorithm = \"rs256\"".into(), "keys.algorithm: \"rs256\"", ""),
            ("[keys]\ndir = \"\"".into(), "keys.dir: is empty", ""),
            // issuer and listen
            ("issuer = \"ftp://auth.example\"".into(), "issuer: \"ftp://auth.example\" is not an http(s) URL", ""),
            ("issuer = \"auth.example\"".into(), "issuer: ", "http(s)"),
            ("issuer = \"https://\"".into(), "issuer: ", "no host"),
            ("issuer = \"https://a.example/?x=1\"".into(), "issuer: ", "query"),
            ("issuer = \"https://u:p@a.example\"".into(), "issuer: ", "credentials"),
            ("issuer = \"https://a example\"".into(), "issuer: ", "whitespace"),
            ("listen = \"localhost:8080\"".into(), "listen: \"localhost:8080\" is not a socket address", ""),
            ("listen = \"8080\"".into(), "listen: ", "socket address"),
            // store
            ("[store]\nbackend = \"mysql\"".into(), "store.backend: \"mysql\" is not memory or redis", ""),
            ("[store]\ncapacity = 0".into(), "store.capacity: must be above zero", ""),
            ("[store]\ntimeout = \"0ms\"".into(), "store.timeout: must be above zero", ""),
            ("[store]\nredis_url = \"http://:hunter2@r\"".into(), "store.redis_url: is not a redis://", ""),
            // session
            (session("check_url = \"https://a.example/me\"\nclient = \"nobody\""), "session.client: \"nobody\" names no client", ""),
            (session("client = \"a\""), "session.check_url: missing", ""),
            (session("check_url = \"https://a.example/me\""), "session.client: missing", ""),
            (session("check_url = \"a.example/me\"\nclient = \"a\""), "session.check_url: ", "http(s)"),
            (session("check_url = \"https://a.example/me\"\nclient = \"a\"\ncache_ttl = \"30s\""), "session.cache_ttl: 30s is above 10s", ""),
            (session("check_url = \"https://a.example/me\"\nclient = \"a\"\ntimeout = \"0s\""), "session.timeout: must be above zero", ""),
            // clients
            ("[[clients]]\naudience = \"x\"".into(), "clients[0].id: missing", ""),
            (format!("[[clients]]\nid = \"{long}\"\naudience = \"x\""), "clients[0].id: ", "1 to 64"),
            ("[[clients]]\nid = \"a b\"\naudience = \"x\"".into(), "clients[0].id: \"a b\" is not", ""),
            ("[[clients]]\nid = \"a\"".into(), "clients[0] (a).audience: missing", ""),
            ("[[clients]]\nid = \"a\"\naudience = \"\"".into(), "clients[0] (a).audience: is empty", ""),
            (client("audiences = [\"\"]"), "clients[0] (a).audiences[0]: is empty", ""),
            (client("audiences = [\"http://127.0.0.1:8080/v1/exchange\"]"), "clients[0] (a).audiences[0]: ", "reserved"),
            (format!("{}[[clients]]\nid = \"shop_123\"\naudience = \"x\"\nmax_ttl = \"48h\"", client("")), "clients[1] (shop_123).max_ttl: 48h is above tokens.max_ttl 24h", ""),
            (client("max_ttl = \"0s\""), "clients[0] (a).max_ttl: must be above zero", ""),
            (client("scopes = [\"read\"]\nguest_scopes = [\"admin\"]"), "clients[0] (a).guest_scopes: \"admin\" is not in scopes", ""),
            (client("scopes = [\"read orders\"]"), "clients[0] (a).scopes[0]: \"read orders\" is not a scope", ""),
            (format!("{}{}", client(""), client("")), "clients[1] (a).id: duplicate of clients[0] (a)", ""),
            (format!("{}[[clients]]\nid = \"b\"\naudience = \"x\"\npublic_key = \"pk_live_same\"\n", client("public_key = \"pk_live_same\"")), "clients[1] (b).public_key: same public key as clients[0] (a)", ""),
            (client("public_key = \"pub/../x\""), "clients[0] (a).public_key: ", "pk_"),
            (format!("{}[[clients]]\nid = \"b\"\naudience = \"x\"\napi_keys = [\"{EXAMPLE_HASH}\"]\n", client(&format!("api_keys = [\"{EXAMPLE_HASH}\"]"))), "clients[1] (b).api_keys[0]: same key as clients[0] (a)", ""),
            (client(&format!("api_keys = [\"{EXAMPLE_HASH}\", \"{EXAMPLE_HASH}\"]")), "clients[0] (a).api_keys[1]: listed twice", ""),
            (client(&format!("api_keys = [\"{}\"]", &EXAMPLE_HASH[7..])), "clients[0] (a).api_keys[0]: expected \"sha256:\"", ""),
            (client("api_keys = [\"sha256:edc0\"]"), "clients[0] (a).api_keys[0]: expected 64 hex digits", ""),
            (client(&format!("api_keys = [\"{}\"]", EXAMPLE_HASH.replace('e', "g"))), "clients[0] (a).api_keys[0]: ", "non-hex"),
            (client("allowed_origins = [\"https://shop.example.com/\"]"), "clients[0] (a).allowed_origins[0]: ", "no path"),
            (client("allowed_origins = [\"null\"]"), "clients[0] (a).allowed_origins[0]: \"null\" is never allowed", ""),
            (client("allowed_origins = [\"https://*.com\"]"), "clients[0] (a).allowed_origins[0]: ", "two labels"),
            (client("claims = { sub = \"x\" }"), "clients[0] (a).claims.sub: \"sub\" is a registered claim", ""),
            (client("claims = { scopes = [\"x\"] }"), "clients[0] (a).claims.scopes: ", "registered"),
            (client("claims = { iss = \"x\" }"), "clients[0] (a).claims.iss: ", "registered"),
            (client("claims = { jti = \"x\" }"), "clients[0] (a).claims.jti: ", "registered"),
            (client("claims = { client_id = \"x\" }"), "clients[0] (a).claims.client_id: ", "registered"),
            (client("allowed_claims = [\"client_id\"]"), "clients[0] (a).allowed_claims[0]: ", "registered"),
            (client("allowed_claims = [\"exp\"]"), "clients[0] (a).allowed_claims[0]: \"exp\" is a registered claim", ""),
            (client("claims = { plan = \"x\" }\nallowed_claims = [\"plan\"]"), "clients[0] (a).allowed_claims[0]: ", "fixed"),
            (client("rate_limit = \"0/s\""), "clients[0] (a).rate_limit: \"0/s\" allows nothing", ""),
            (client("rate_limit = \"20/d\""), "clients[0] (a).rate_limit: \"20/d\" is not a rate", ""),
            (client("rate_limit = \"fast\""), "clients[0] (a).rate_limit: ", "20/s"),
            (client("rate_limit = \"99999999999/s\""), "clients[0] (a).rate_limit: ", "too large"),
            (client("refresh_ttl = \"40d\""), "clients[0] (a).refresh_ttl: 40d is above refresh_family_ttl 30d", ""),
            (client("refresh_family_ttl = \"nope\""), "clients[0] (a).refresh_family_ttl: invalid duration", ""),
        ];
        for (text, start, part) in cases {
            let msg = err(&text);
            assert!(
                msg.starts_with(start),
                "for {text:?}\n  got:      {msg}\n  expected: {start}…"
            );
            assert!(msg.contains(part), "for {text:?}\n  got: {msg}\n  lacks: {part}");
        }
    }

    #[test]
    fn messages_never_echo_secrets() {
        let msg = err(&client(
            "api_keys = [\"sk_live_THISISASECRETKEYTHISISASECRETKEY12345678\"]",
        ));
        assert!(
            msg.starts_with("clients[0] (a).api_keys[0]: this is an API key itself"),
            "{msg}"
        );
        assert!(!msg.contains("THISISASECRET"), "{msg}");
        let msg = err(&client("public_key = \"sk_live_THISISASECRETKEY\""));
        assert!(
            msg.starts_with("clients[0] (a).public_key: this is an API key"),
            "{msg}"
        );
        assert!(!msg.contains("THISISASECRET"), "{msg}");
        let msg = err("issuer = \"https://u:hunter2@a.example\"");
        assert!(!msg.contains("hunter2"), "{msg}");
        let msg = err("[store]\nredis_url = \"http://:hunter2@r\"");
        assert!(!msg.contains("hunter2"), "{msg}");
        let msg = err(&format!(
            "[session]\ncheck_url = \"ftp://u:hunter2@a.example\"\nclient = \"a\"\n{}",
            client("")
        ));
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = Config::from_toml_str("issuer = \"x\"\nlisten = \n", no_env()).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e:?}");
        assert!(e.to_string().starts_with("config: line 2, column "), "{e}");
    }

    #[test]
    fn load_reads_the_given_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "[tokens]\ndefault_ttl = \"2m\"\n").unwrap();
        let c = Config::load(Some(&path), no_env()).unwrap();
        assert_eq!(c.tokens.default_ttl, Duration::from_secs(120));

        std::fs::write(&path, "[tokens]\ndefault_ttl = \"2x\"\n").unwrap();
        let e = Config::load(Some(&path), no_env()).unwrap_err();
        assert!(e.to_string().starts_with("tokens.default_ttl: invalid duration"), "{e}");

        std::fs::write(&path, "[tokens\n").unwrap();
        let e = Config::load(Some(&path), no_env()).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{}: line 1", path.display())), "{e}");

        // An explicit file that is missing is an error, not the defaults.
        let e = Config::load(Some(&dir.path().join("missing.toml")), no_env()).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
        assert!(e.to_string().contains("missing.toml"), "{e}");
    }

    #[test]
    fn debug_keeps_credentials_and_hashes_out() {
        let mut c = Config::from_toml_str(&example(), no_env()).unwrap();
        c.store.redis_url = "redis://:hunter2@r:6379/0".to_owned();
        c.session.as_mut().unwrap().check_url = "https://svc:hunter3@app.example.com/me".to_owned();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("hunter3"), "{dbg}");
        assert!(dbg.contains("redis://***@r:6379/0"), "{dbg}");
        assert!(!dbg.contains(&EXAMPLE_HASH["sha256:".len()..]), "{dbg}");
        assert!(dbg.contains("sha256:edc02449…"), "{dbg}");
    }
}
