//! Turning the raw shapes into a checked [`Config`]: every rule a value must
//! pass before start-up, and every default filled in.
//!
//! This module owns the rules, each refusing with a message that names the
//! key, and the checks of each `[[clients]]` entry, from which it builds the
//! [`Client`]; that ids, public keys and API keys each name one client is
//! the [`ClientRegistry`]'s rule, asked here entry by entry. It must never
//! echo a secret: a key pasted where a hash or public key belongs is refused
//! without being quoted, and URLs are shown with their userinfo masked.

use std::path::PathBuf;
use std::time::Duration;

use crate::claims::is_reserved;
use crate::clients::{self, Client, ClientError, ClientRegistry, OriginPattern};
use crate::jose::Algorithm;
use crate::jwks::secure_transport;
use crate::units::{parse_duration, RateLimit};

use super::raw::{serde_error, RawClient, RawConfig, RawDuration, RawKeys, RawServer, RawSession, RawStore, RawTokens};
use super::{
    invalid, redact_url, Config, ConfigError, KeysConfig, ServerConfig, SessionConfig, StoreBackend, StoreConfig,
    TokensConfig, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_ISSUER, DEFAULT_KEYS_DIR, DEFAULT_LEEWAY,
    DEFAULT_LISTEN, DEFAULT_MAX_TTL, DEFAULT_PUBLISH_AHEAD, DEFAULT_REDIS_URL, DEFAULT_ROTATE_EVERY, DEFAULT_RSA_BITS,
    DEFAULT_SESSION_CACHE_TTL, DEFAULT_SESSION_TIMEOUT, DEFAULT_SHUTDOWN_GRACE, DEFAULT_STORE_CAPACITY,
    DEFAULT_STORE_TIMEOUT, DEFAULT_TTL, HOUR,
};

/// Clock skew beyond this is a broken clock, not skew; accepting it would
/// stretch every token's life by as much.
const MAX_LEEWAY: Duration = Duration::from_secs(HOUR);
/// A cached session answer outlives a logout by up to this long.
const MAX_SESSION_CACHE_TTL: Duration = Duration::from_secs(10);
/// A few hundred bytes of headers take milliseconds on any real link; a
/// peer slower than this is indistinguishable from one holding the
/// connection on purpose (slowloris).
const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const RSA_BITS: [u32; 3] = [2048, 3072, 4096];
const MAX_CLIENT_ID_LEN: usize = 64;

pub(super) fn check(raw: RawConfig) -> Result<Config, ConfigError> {
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
    let server = check_server(raw.server, listen)?;
    let clients = check_clients(raw.clients, &max_ttl, &issuer)?;
    let session = raw.session.map(|s| check_session(s, &clients)).transpose()?;
    let dpop = super::dpop::check_dpop(raw.dpop)?;
    Ok(Config {
        issuer,
        listen,
        keys,
        tokens,
        store,
        server,
        session,
        dpop,
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
    let redis_cluster = raw.redis_cluster.unwrap_or_default();
    for (i, seed) in redis_cluster.iter().enumerate() {
        // A cluster node is reached over TCP: no unix sockets.
        let scheme = seed.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("redis" | "rediss")) {
            return Err(invalid(
                "store.redis_cluster",
                format!("seed {} is not a redis:// or rediss:// URL", i + 1),
            ));
        }
    }
    let tls: Vec<bool> = redis_cluster.iter().map(|s| s.starts_with("rediss://")).collect();
    if tls.iter().any(|&t| t) && !tls.iter().all(|&t| t) {
        return Err(invalid(
            "store.redis_cluster",
            "mixes redis:// and rediss:// seeds; a cluster is reached with TLS everywhere or nowhere",
        ));
    }
    let insecure = |url: &str| {
        url.split_once('#')
            .is_some_and(|(_, f)| f.eq_ignore_ascii_case("insecure"))
    };
    if insecure(&redis_url) {
        return Err(invalid(
            "store.redis_url",
            "ends in #insecure, which turns off the server's certificate check: not supported (set store.redis_ca_file to trust a private CA)",
        ));
    }
    if let Some(i) = redis_cluster.iter().position(|s| insecure(s)) {
        return Err(invalid(
            "store.redis_cluster",
            format!("seed {} ends in #insecure, which turns off the server's certificate check: not supported (set store.redis_ca_file to trust a private CA)", i + 1),
        ));
    }
    let redis_ca_file = raw.redis_ca_file.map(PathBuf::from);
    let redis_client_cert_file = raw.redis_client_cert_file.map(PathBuf::from);
    let redis_client_key_file = raw.redis_client_key_file.map(PathBuf::from);
    if backend == StoreBackend::Redis {
        // Read and parsed now, so a bad file stops the start-up with its
        // setting named; the store reads them again when it connects.
        let files = crate::store::redis::RedisTls::from_files(
            redis_ca_file.as_deref(),
            redis_client_cert_file.as_deref(),
            redis_client_key_file.as_deref(),
        )
        .map_err(|e| invalid(format!("store.{}", e.setting), e.reason))?;
        let uses_tls = if redis_cluster.is_empty() {
            redis_url.starts_with("rediss://")
        } else {
            tls.iter().all(|&t| t)
        };
        if files.is_custom() && !uses_tls {
            let setting = if redis_ca_file.is_some() {
                "store.redis_ca_file"
            } else {
                "store.redis_client_cert_file"
            };
            let url = if redis_cluster.is_empty() {
                "store.redis_url is not rediss://"
            } else {
                "the store.redis_cluster seeds are not rediss://"
            };
            return Err(invalid(
                setting,
                format!("is set but {url}: TLS settings need TLS (never plain text instead)"),
            ));
        }
    }
    let redis_wait_replicas = raw.redis_wait_replicas.unwrap_or(0);
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
        redis_cluster,
        redis_wait_replicas,
        redis_ca_file,
        redis_client_cert_file,
        redis_client_key_file,
    })
}

fn check_server(raw: RawServer, listen: std::net::SocketAddr) -> Result<ServerConfig, ConfigError> {
    let header_read_timeout = duration(
        "server.header_read_timeout",
        raw.header_read_timeout,
        DEFAULT_HEADER_READ_TIMEOUT,
    )?;
    if header_read_timeout.value.is_zero() {
        return Err(invalid("server.header_read_timeout", "must be above zero"));
    }
    if header_read_timeout.value > MAX_HEADER_READ_TIMEOUT {
        let why = format!(
            "{} is above 10s: a peer that slow is holding the connection, not sending",
            header_read_timeout.text
        );
        return Err(invalid("server.header_read_timeout", why));
    }
    let idle_timeout = duration("server.idle_timeout", raw.idle_timeout, DEFAULT_IDLE_TIMEOUT)?;
    if idle_timeout.value.is_zero() {
        return Err(invalid("server.idle_timeout", "must be above zero"));
    }
    if raw.max_connections == Some(0) {
        return Err(invalid("server.max_connections", "must be above zero"));
    }
    let shutdown_grace = duration("server.shutdown_grace", raw.shutdown_grace, DEFAULT_SHUTDOWN_GRACE)?;
    let metrics_listen = match raw.metrics_listen {
        None => None,
        Some(s) => {
            let addr: std::net::SocketAddr = s.parse().map_err(|_| {
                invalid(
                    "server.metrics_listen",
                    format!("{s:?} is not a socket address like 127.0.0.1:9090"),
                )
            })?;
            if addr == listen {
                return Err(invalid(
                    "server.metrics_listen",
                    format!("{addr} is the main listen address; name another, or leave it out"),
                ));
            }
            Some(addr)
        }
    };
    Ok(ServerConfig {
        header_read_timeout: header_read_timeout.value,
        idle_timeout: idle_timeout.value,
        max_connections: raw.max_connections,
        shutdown_grace: shutdown_grace.value,
        metrics_listen,
        publish_scopes: raw.publish_scopes.unwrap_or(true),
    })
}

fn check_session(raw: RawSession, clients: &[Client]) -> Result<SessionConfig, ConfigError> {
    let check_url = raw
        .check_url
        .ok_or_else(|| invalid("session.check_url", "missing: [session] needs check_url"))?;
    check_http_url(&check_url, true)
        .map_err(|why| invalid("session.check_url", format!("{:?} {why}", redact_url(&check_url))))?;
    let allow_http = raw.allow_http.unwrap_or(false);
    if !allow_http {
        // The check gets the caller's cookies: they must not cross a network in clear.
        let secure = url::Url::parse(&check_url).is_ok_and(|u| secure_transport(&u));
        if !secure {
            let why = format!(
                "{:?} must use https: plain http is allowed to a loopback address only, or with session.allow_http = true",
                redact_url(&check_url)
            );
            return Err(invalid("session.check_url", why));
        }
    }
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
        allow_http,
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

    let dpop = super::dpop::check_client_dpop(&key("dpop"), raw.dpop.as_deref())?;
    let mut oauth = super::oauth::check_client_oauth(
        label,
        super::oauth::RawClientOAuth {
            token_format: raw.token_format,
            token_prefix: raw.token_prefix,
            jwt_profile: raw.jwt_profile,
            jwks_uri: raw.jwks_uri,
            jwks: raw.jwks,
            grant_types: raw.grant_types,
        },
    )?;
    oauth.dpop = dpop;
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
        oauth,
    })
}
