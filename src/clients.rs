//! The client registry: who may ask for tokens, and how each is recognised.
//!
//! This module owns [`Client`], the one type for a client and its policy
//! (the config check builds it, requests read it); finding a client by API
//! key (by the key's SHA-256, confirmed with a constant-time comparison), by
//! public key and by id, and the rule that each of these names one client;
//! the format of API keys, public keys and their `sha256:` hash lines; and
//! the matching of a browser's `Origin` header against a client's allowlist.
//! A [`ClientRegistry`] never changes once built: a reload builds a new one
//! and the server swaps the `Arc`, so a request never sees half a reload.
//!
//! It must never store, log or print an API key: only SHA-256 hashes are
//! kept, nothing here logs, and [`NewApiKey`]'s `Debug` hides the key it
//! was made to hand out once. Policy (which scopes, audiences and lifetimes
//! a request gets) is applied elsewhere, from the [`Client`] found here.
//! It never imports `config`: the config check depends on this module, not
//! the other way round.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::jose::alg::{random_bytes, sha256};
use crate::jose::JoseError;
use crate::units::RateLimit;

/// Every API key starts with this; anything else is refused before hashing.
const API_KEY_PREFIX: &str = "sk_";
/// What `apikey create` and `serve --dev` make.
const NEW_API_KEY_PREFIX: &str = "sk_live_";
const NEW_PUBLIC_KEY_PREFIX: &str = "pk_live_";
const PUBLIC_KEY_PREFIX: &str = "pk_";
/// Far above a real key (51 bytes); caps the work an attacker can ask for.
const MAX_API_KEY_LEN: usize = 256;
const PUBLIC_KEY_LEN: std::ops::RangeInclusive<usize> = 8..=128;
const HASH_LINE_PREFIX: &str = "sha256:";
/// Far above any real `scheme://host:port` (a host is at most 253 bytes).
const MAX_ORIGIN_LEN: usize = 512;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;
/// The embedded `tokens.max_ttl`, which a client's `max_ttl` defaults to.
const EMBEDDED_MAX_TTL: Duration = Duration::from_secs(DAY);
/// A client's refresh-token lifetimes where its entry names none, with the
/// text the documentation writes them as, for messages about a default.
pub(crate) const DEFAULT_REFRESH_TTL: (Duration, &str) = (Duration::from_secs(DAY), "24h");
pub(crate) const DEFAULT_REFRESH_FAMILY_TTL: (Duration, &str) = (Duration::from_secs(30 * DAY), "30d");

/// A client and its policy: one `[[clients]]` entry, checked, with its
/// origin patterns parsed. The config check builds these; requests see them
/// through the [`ClientRegistry`].
#[derive(Clone, PartialEq)]
pub struct Client {
    /// The client's id: stamped as `client_id` on its tokens; no `:` in it.
    pub id: String,
    /// The default `aud` of this client's tokens.
    pub audience: String,
    /// Extension: further audiences a request may ask for.
    pub audiences: Vec<String>,
    /// SHA-256 of each API key, from `"sha256:<64 hex>"` lines.
    pub api_keys: Vec<[u8; 32]>,
    /// `pk_…`: names the client to widgets; not a secret.
    pub public_key: Option<String>,
    /// Browser origins its widgets may call from (guest, exchange,
    /// refresh, config). Default: none.
    pub allowed_origins: Vec<OriginPattern>,
    /// The most a token of this client may carry.
    pub scopes: Vec<String>,
    /// Default `tokens.max_ttl`; never above it.
    pub max_ttl: Duration,
    /// Fixed claims of every token of this client; never a registered claim.
    pub claims: Map<String, Value>,
    /// Extension: names of extra claims a request may set.
    pub allowed_claims: Vec<String>,
    /// Requests per window for this client, shared by every instance on
    /// Redis. Default: none (no limit).
    pub rate_limit: Option<RateLimit>,
    /// Scopes of guest tokens: a subset of `scopes`.
    pub guest_scopes: Vec<String>,
    /// Lifetime of one refresh token. Default 24h.
    pub refresh_ttl: Duration,
    /// Absolute lifetime of a refresh-token family. Default 30d; not below `refresh_ttl`.
    pub refresh_family_ttl: Duration,
    /// Public bootstrap config served to widgets.
    pub config: Map<String, Value>,
    /// OAuth 2.0 options: token format and profile, `private_key_jwt` keys.
    pub oauth: crate::oauth::ClientOAuth,
}

impl Client {
    /// A client with an id and an audience, and for everything else what a
    /// config entry that names nothing else gets under the embedded
    /// defaults: no API keys, public key, origins, scopes or claims, no
    /// rate limit, `max_ttl` 24h, refresh tokens of 24h in families of 30d.
    /// For clients made in code (`serve --dev`, tests): set the rest by
    /// struct update. Nothing is checked here; a config entry is checked
    /// where the config is read.
    pub fn new(id: impl Into<String>, audience: impl Into<String>) -> Client {
        Client {
            id: id.into(),
            audience: audience.into(),
            audiences: Vec::new(),
            api_keys: Vec::new(),
            public_key: None,
            allowed_origins: Vec::new(),
            scopes: Vec::new(),
            max_ttl: EMBEDDED_MAX_TTL,
            claims: Map::new(),
            allowed_claims: Vec::new(),
            rate_limit: None,
            guest_scopes: Vec::new(),
            refresh_ttl: DEFAULT_REFRESH_TTL.0,
            refresh_family_ttl: DEFAULT_REFRESH_FAMILY_TTL.0,
            config: Map::new(),
            oauth: crate::oauth::ClientOAuth::default(),
        }
    }

    /// Whether a presented `Origin` header value is in this client's allowlist.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        // Parsed once, not once per pattern.
        match Origin::parse(origin) {
            Ok(o) => self.allowed_origins.iter().any(|p| p.matches_origin(&o)),
            Err(_) => false,
        }
    }

    /// Whether a request may ask for `aud`: the client's audience or one of its further audiences.
    pub fn audience_allowed(&self, aud: &str) -> bool {
        self.audience == aud || self.audiences.iter().any(|a| a == aud)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("audience", &self.audience)
            .field("audiences", &self.audiences)
            .field("api_keys", &ShortHashes(&self.api_keys))
            .field("public_key", &self.public_key)
            .field("allowed_origins", &self.allowed_origins)
            .field("scopes", &self.scopes)
            .field("max_ttl", &self.max_ttl)
            .field("claims", &self.claims)
            .field("allowed_claims", &self.allowed_claims)
            .field("rate_limit", &self.rate_limit)
            .field("guest_scopes", &self.guest_scopes)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("refresh_family_ttl", &self.refresh_family_ttl)
            .field("config", &self.config)
            .field("oauth", &self.oauth)
            .finish()
    }
}

/// Shows each API key hash by its first four bytes: enough to tell keys apart.
struct ShortHashes<'a>(&'a [[u8; 32]]);

impl fmt::Debug for ShortHashes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|h| {
                let [a, b, c, d, ..] = *h;
                format!("sha256:{a:02x}{b:02x}{c:02x}{d:02x}…")
            }))
            .finish()
    }
}

/// Why a client cannot join a registry: something that must name one
/// client names another already.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// Two clients have this id.
    DuplicateId(String),
    /// `client` has the public key of `other`.
    DuplicatePublicKey {
        /// The client that joins.
        client: String,
        /// The client that had the public key already.
        other: String,
    },
    /// `client`'s `api_keys[index]` is also a key of `other` (which is
    /// `client` itself when the client lists the hash twice).
    DuplicateApiKey {
        /// The client that joins.
        client: String,
        /// The client that had the key already.
        other: String,
        /// The position of the key in `client`'s `api_keys`.
        index: usize,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::DuplicateId(id) => write!(f, "client {id}: the id is used twice"),
            ClientError::DuplicatePublicKey { client, other } => {
                write!(f, "client {client}: same public key as client {other}")
            }
            ClientError::DuplicateApiKey { client, other, .. } => {
                write!(f, "client {client}: an API key hash is also listed for client {other}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// One registered API key: its hash and the client it opens.
#[derive(Clone)]
struct KeyEntry {
    hash: [u8; 32],
    client: Arc<Client>,
}

/// The clients, indexed for the three ways a request names one.
#[derive(Clone, Default)]
pub struct ClientRegistry {
    by_id: HashMap<String, Arc<Client>>,
    by_public_key: HashMap<String, Arc<Client>>,
    /// API key hashes bucketed by their first 8 bytes. The bucket is found by
    /// an ordinary, variable-time map lookup, which can tell an attacker at
    /// most something about the SHA-256 of a key they chose; the full 32
    /// bytes are then compared in constant time.
    by_key_prefix: HashMap<[u8; 8], Vec<KeyEntry>>,
}

impl fmt::Debug for ClientRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&str> = self.by_id.keys().map(String::as_str).collect();
        ids.sort_unstable();
        let keys: usize = self.by_key_prefix.values().map(Vec::len).sum();
        f.debug_struct("ClientRegistry")
            .field("clients", &ids)
            .field("api_keys", &keys)
            .finish()
    }
}

fn key_prefix(hash: &[u8; 32]) -> [u8; 8] {
    let [a, b, c, d, e, f, g, h, ..] = *hash;
    [a, b, c, d, e, f, g, h]
}

impl ClientRegistry {
    /// The registry of `clients`, each found by its id, its public key and
    /// its API keys. Ids, public keys and API key hashes must each be unique.
    pub fn from_clients(clients: &[Client]) -> Result<ClientRegistry, ClientError> {
        let mut registry = ClientRegistry::default();
        for client in clients {
            registry.insert(client.clone())?;
        }
        Ok(registry)
    }

    /// Adds `client`, or leaves the registry unchanged if its id, its public
    /// key or one of its API key hashes is taken. The one place that checks
    /// uniqueness: the config check calls it client by client, so that its
    /// message names the entry that repeats.
    pub(crate) fn insert(&mut self, client: Client) -> Result<(), ClientError> {
        if self.by_id.contains_key(&client.id) {
            return Err(ClientError::DuplicateId(client.id));
        }
        if let Some(other) = client.public_key.as_ref().and_then(|pk| self.by_public_key.get(pk)) {
            return Err(ClientError::DuplicatePublicKey {
                client: client.id,
                other: other.id.clone(),
            });
        }
        for (index, hash) in client.api_keys.iter().enumerate() {
            // One hash must name one client, or a key would sign in as either.
            let other = match self.entry(hash) {
                Some(entry) => entry.client.id.clone(),
                None if client.api_keys.iter().take(index).any(|h| h == hash) => client.id.clone(),
                None => continue,
            };
            return Err(ClientError::DuplicateApiKey {
                client: client.id,
                other,
                index,
            });
        }
        let client = Arc::new(client);
        for hash in &client.api_keys {
            self.add_key(*hash, &client);
        }
        self.add_client(client);
        Ok(())
    }

    /// Adds `client` with the one API key `api_key_hash` (its `api_keys` are
    /// not read), replacing any client of the same id
    /// and any other holder of the same public key or key hash. For
    /// `serve --dev`, which makes a fresh client at start-up.
    pub fn with_client(mut self, client: Client, api_key_hash: [u8; 32]) -> Self {
        let client = Arc::new(client);
        if let Some(old) = self.by_id.remove(&client.id) {
            if let Some(pk) = &old.public_key {
                self.by_public_key.remove(pk);
            }
            for bucket in self.by_key_prefix.values_mut() {
                bucket.retain(|e| e.client.id != old.id);
            }
        }
        if let Some(bucket) = self.by_key_prefix.get_mut(&key_prefix(&api_key_hash)) {
            bucket.retain(|e| e.hash != api_key_hash);
        }
        self.by_key_prefix.retain(|_, bucket| !bucket.is_empty());
        self.add_key(api_key_hash, &client);
        self.add_client(client);
        self
    }

    fn add_client(&mut self, client: Arc<Client>) {
        if let Some(pk) = &client.public_key {
            self.by_public_key.insert(pk.clone(), Arc::clone(&client));
        }
        self.by_id.insert(client.id.clone(), client);
    }

    fn add_key(&mut self, hash: [u8; 32], client: &Arc<Client>) {
        let entry = KeyEntry {
            hash,
            client: Arc::clone(client),
        };
        self.by_key_prefix.entry(key_prefix(&hash)).or_default().push(entry);
    }

    /// The entry with exactly this hash; for building, not for requests.
    fn entry(&self, hash: &[u8; 32]) -> Option<&KeyEntry> {
        self.by_key_prefix
            .get(&key_prefix(hash))?
            .iter()
            .find(|e| e.hash == *hash)
    }

    /// The client a presented API key opens, if any.
    pub fn by_api_key(&self, presented: &str) -> Option<Arc<Client>> {
        // Refused before hashing: no work for what cannot be a key.
        if !presented.starts_with(API_KEY_PREFIX) || presented.len() > MAX_API_KEY_LEN {
            return None;
        }
        let hash = api_key_hash(presented);
        let bucket = self.by_key_prefix.get(&key_prefix(&hash))?;
        // Every entry of the bucket is compared, with no early exit, so the
        // time taken does not say how far a near-miss got.
        let mut found = None;
        for entry in bucket {
            if bool::from(entry.hash[..].ct_eq(&hash[..])) {
                found = Some(Arc::clone(&entry.client));
            }
        }
        found
    }

    /// The client a `pk_…` public key names, if any. Not a secret, so an
    /// ordinary lookup.
    pub fn by_public_key(&self, pk: &str) -> Option<Arc<Client>> {
        self.by_public_key.get(pk).cloned()
    }

    /// The client with id `id`, if any.
    pub fn by_id(&self, id: &str) -> Option<Arc<Client>> {
        self.by_id.get(id).cloned()
    }

    /// Whether any client allows `origin` (the CORS answer where the client
    /// is not known from the request line).
    pub fn any_origin_allowed(&self, origin: &str) -> bool {
        self.by_id.values().any(|c| c.origin_allowed(origin))
    }

    /// Every client, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.by_id.values()
    }

    /// How many clients.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when there is no client.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// A fresh API key, to be shown once: `key` to the operator, `hash_line` for
/// the config file. The key itself is never stored.
#[derive(Clone)]
pub struct NewApiKey {
    /// `sk_live_` + base64url of 32 random bytes.
    pub key: String,
    /// `sha256:` + lowercase hex of the SHA-256 of the whole `key`.
    pub hash_line: String,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("key", &"<redacted>")
            .field("hash_line", &self.hash_line)
            .finish()
    }
}

/// Makes a new API key from the system CSPRNG.
pub fn new_api_key() -> Result<NewApiKey, JoseError> {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes)?;
    let key = format!("{NEW_API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash_line = hash_line(&api_key_hash(&key));
    Ok(NewApiKey { key, hash_line })
}

/// Makes a new public key: `pk_live_` + base64url of 16 random bytes.
pub fn new_public_key() -> Result<String, JoseError> {
    let mut bytes = [0u8; 16];
    random_bytes(&mut bytes)?;
    Ok(format!("{NEW_PUBLIC_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// SHA-256 of the whole key string, as the config stores it.
pub fn api_key_hash(key: &str) -> [u8; 32] {
    sha256(key.as_bytes())
}

/// `sha256:` + lowercase hex: the line to paste into `api_keys`.
pub fn hash_line(hash: &[u8; 32]) -> String {
    let mut line = String::with_capacity(HASH_LINE_PREFIX.len() + 64);
    line.push_str(HASH_LINE_PREFIX);
    for b in hash {
        line.push_str(&format!("{b:02x}"));
    }
    line
}

/// Reads a `sha256:<64 hex>` line (either case of hex). The value is never
/// echoed in the error: it might be a key pasted in the wrong place.
pub fn parse_hash_line(line: &str) -> Result<[u8; 32], String> {
    if line.starts_with(API_KEY_PREFIX) {
        return Err(
            "this is an API key itself, not its hash: put the \"sha256:…\" line from \
                    `tokensmith apikey create` here, and treat this key as exposed"
                .to_owned(),
        );
    }
    let hex = line
        .strip_prefix(HASH_LINE_PREFIX)
        .ok_or_else(|| "expected \"sha256:\" followed by 64 hex digits".to_owned())?;
    if hex.len() != 64 {
        return Err(format!(
            "expected 64 hex digits after \"sha256:\", found {} characters",
            hex.chars().count()
        ));
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        match pair {
            [hi, lo] => match (digit(*hi), digit(*lo)) {
                (Some(hi), Some(lo)) => *byte = (hi * 16 + lo) as u8,
                _ => return Err("expected 64 hex digits after \"sha256:\"; found a non-hex character".to_owned()),
            },
            _ => return Err("expected 64 hex digits after \"sha256:\"".to_owned()),
        }
    }
    Ok(out)
}

/// A public key is `pk_…`, and it appears in URL paths
/// (`/v1/clients/{public_key}/config`), so it is URL-safe.
pub(crate) fn check_public_key(pk: &str) -> Result<(), String> {
    if pk.starts_with(API_KEY_PREFIX) {
        // Not echoed: a secret key in the public slot is about to be published.
        return Err(
            "this is an API key, not a public key: it would be shown to browsers; make a new one \
                    with `tokensmith apikey create` and treat this one as exposed"
                .to_owned(),
        );
    }
    let url_safe = pk.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !pk.starts_with(PUBLIC_KEY_PREFIX) || !PUBLIC_KEY_LEN.contains(&pk.len()) || !url_safe {
        return Err(format!(
            "{pk:?} is not \"pk_\" and 5 to 125 letters, digits, '_' or '-'"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Origins (RFC 6454).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// Lowercase; an IPv6 literal in its canonical bracketed form.
    Exact(String),
    /// `*.example.com`: one label, any, in front of this (lowercase) suffix.
    OneLabelUnder(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortPattern {
    Exact(u16),
    Any,
}

/// A configured allowed origin: `scheme://host[:port]`, where `*` may be the
/// whole leftmost host label (`https://*.example.com`: exactly one label) or
/// the whole port (`http://localhost:*`: any port, the default one included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: Scheme,
    host: HostPattern,
    port: PortPattern,
}

/// A presented `Origin`, normalised: lowercase, port made explicit.
struct Origin {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl Origin {
    fn parse(s: &str) -> Result<Origin, String> {
        let (scheme, host, port) = split_origin(s, false)?;
        match (host, port) {
            (HostPattern::Exact(host), PortPattern::Exact(port)) => Ok(Origin { scheme, host, port }),
            // Not produced without wildcards; refused rather than trusted.
            _ => Err("wildcards are only for configured patterns".to_owned()),
        }
    }
}

impl OriginPattern {
    /// Parses a configured pattern; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<OriginPattern, String> {
        let (scheme, host, port) = split_origin(s, true)?;
        Ok(OriginPattern { scheme, host, port })
    }

    /// Whether a presented `Origin` header value matches. Anything that is
    /// not exactly a serialized origin (path, userinfo, whitespace,
    /// non-ASCII, `null`) matches nothing.
    pub fn matches(&self, origin: &str) -> bool {
        Origin::parse(origin).is_ok_and(|o| self.matches_origin(&o))
    }

    fn matches_origin(&self, o: &Origin) -> bool {
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Exact(p) => p == o.port,
        };
        let host_ok = match &self.host {
            HostPattern::Exact(h) => *h == o.host,
            // The part in front of ".suffix" must be one whole label: the
            // host was checked label by label, so "no dot" is enough.
            HostPattern::OneLabelUnder(suffix) => o
                .host
                .strip_suffix(suffix.as_str())
                .and_then(|front| front.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        };
        self.scheme == o.scheme && port_ok && host_ok
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        match &self.host {
            HostPattern::Exact(h) => f.write_str(h)?,
            HostPattern::OneLabelUnder(suffix) => write!(f, "*.{suffix}")?,
        }
        match self.port {
            PortPattern::Any => f.write_str(":*"),
            PortPattern::Exact(p) if p == self.scheme.default_port() => Ok(()),
            PortPattern::Exact(p) => write!(f, ":{p}"),
        }
    }
}

/// The one parser for presented origins and configured patterns; wildcards
/// only when `wildcards`.
fn split_origin(s: &str, wildcards: bool) -> Result<(Scheme, HostPattern, PortPattern), String> {
    if s.is_empty() {
        return Err("is empty".to_owned());
    }
    if s == "null" {
        return Err("\"null\" is never allowed: sandboxed frames and local files all send it".to_owned());
    }
    if s.len() > MAX_ORIGIN_LEN {
        return Err("is too long".to_owned());
    }
    if !s.is_ascii() {
        return Err("is not ASCII: write an internationalised domain in punycode (xn--…)".to_owned());
    }
    if s.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err("contains whitespace or control characters".to_owned());
    }
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| "is not scheme://host[:port]".to_owned())?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err("the scheme is not http or https".to_owned()),
    };
    if rest.contains(['/', '?', '#', '@', '\\']) {
        return Err(
            "must be scheme://host[:port] alone: no path (not even a trailing /), query, fragment \
                    or user@"
                .to_owned(),
        );
    }
    let (host, port) = split_host_port(rest)?;
    let port = match port {
        None => PortPattern::Exact(scheme.default_port()),
        Some("*") if wildcards => PortPattern::Any,
        Some(p) => PortPattern::Exact(parse_port(p)?),
    };
    Ok((scheme, parse_host(host, wildcards)?, port))
}

fn split_host_port(rest: &str) -> Result<(&str, Option<&str>), String> {
    if rest.starts_with('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| "an IPv6 address lacks its ']'".to_owned())?;
        let (host, after) = rest.split_at(end + 1);
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("unexpected text after the IPv6 address".to_owned()),
            },
        };
    }
    match rest.split_once(':') {
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((rest, None)),
    }
}

/// Only the canonical spelling: what a browser sends (no sign, no leading zero).
fn parse_port(p: &str) -> Result<u16, String> {
    let bad = || format!("port {p:?} is not a number from 1 to 65535");
    if p.is_empty() || p.len() > 5 || p.starts_with('0') || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    p.parse::<u16>().map_err(|_| bad())
}

fn parse_host(host: &str, wildcards: bool) -> Result<HostPattern, String> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let addr: Ipv6Addr = inner.parse().map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        return Ok(HostPattern::Exact(format!("[{addr}]")));
    }
    let host = host.to_ascii_lowercase();
    if host.is_empty() || host.len() > 253 {
        return Err("the host is empty or longer than 253 characters".to_owned());
    }
    let labels: Vec<&str> = host.split('.').collect();
    let wildcard = wildcards && labels.first() == Some(&"*");
    let rest = if wildcard {
        labels.get(1..).unwrap_or(&[])
    } else {
        &labels[..]
    };
    if rest.iter().any(|l| l.contains('*')) {
        return Err("'*' may only be the whole leftmost label (https://*.example.com) or the whole port".to_owned());
    }
    if let Some(l) = rest.iter().find(|l| !valid_label(l)) {
        return Err(format!(
            "{l:?} is not a DNS label (letters, digits, '-', '_'; punycode for others)"
        ));
    }
    if !wildcard {
        return Ok(HostPattern::Exact(host));
    }
    // `*.com` or `*.0.1` would allow far more than anyone means.
    let numeric_tld = rest.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if rest.len() < 2 || numeric_tld {
        return Err("'*.' must be followed by a domain of at least two labels, such as *.example.com".to_owned());
    }
    Ok(HostPattern::OneLabelUnder(rest.join(".")))
}

fn valid_label(l: &str) -> bool {
    (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn registry() -> (ClientRegistry, String) {
        let key = new_api_key().unwrap();
        let shop = Client {
            api_keys: vec![api_key_hash(&key.key)],
            public_key: Some("pk_live_shop".into()),
            allowed_origins: ["https://shop.example.com", "http://localhost:*"]
                .into_iter()
                .map(|o| OriginPattern::parse(o).unwrap())
                .collect(),
            ..Client::new("shop", "chatbot")
        };
        let other = Client {
            audiences: vec!["reports".into()],
            ..Client::new("other", "other")
        };
        (ClientRegistry::from_clients(&[shop, other]).unwrap(), key.key)
    }

    fn is_base64url(s: &str) -> bool {
        s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    #[test]
    fn new_api_keys_have_the_documented_format() {
        let k = new_api_key().unwrap();
        let body = k.key.strip_prefix("sk_live_").unwrap();
        assert_eq!(body.len(), 43, "32 bytes in unpadded base64url");
        assert!(is_base64url(body));
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);

        let hex = k.hash_line.strip_prefix("sha256:").unwrap();
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(k.hash_line, hash_line(&api_key_hash(&k.key)));
        assert_eq!(parse_hash_line(&k.hash_line).unwrap(), api_key_hash(&k.key));

        assert_ne!(new_api_key().unwrap().key, k.key);
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(body), "{dbg}");
        assert!(dbg.contains(&k.hash_line), "{dbg}");
    }

    #[test]
    fn hash_lines_are_sha256_hex() {
        // sha256("sk_live_example"), as `sha256sum` prints it.
        let line = "sha256:edc0244907453860f53b31a05089a2a9f0fdb349e3610b2ab88a36fd9719d7fa";
        assert_eq!(hash_line(&api_key_hash("sk_live_example")), line);
        assert_eq!(
            parse_hash_line(&line.to_ascii_uppercase().replacen("SHA256", "sha256", 1)),
            parse_hash_line(line)
        );
        for bad in [
            "",
            "sha256:",
            "sha256:zz",
            "SHA256:00",
            "md5:00",
            &line[..70],
            &format!("{line}0"),
        ] {
            assert!(parse_hash_line(bad).is_err(), "{bad:?}");
        }
        let secret = "sk_live_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert!(!parse_hash_line(secret).unwrap_err().contains(secret));
    }

    #[test]
    fn new_public_keys_have_the_documented_format() {
        let pk = new_public_key().unwrap();
        let body = pk.strip_prefix("pk_live_").unwrap();
        assert_eq!(body.len(), 22, "16 bytes in unpadded base64url");
        assert!(is_base64url(body));
        assert!(check_public_key(&pk).is_ok());
        assert_ne!(new_public_key().unwrap(), pk);
    }

    #[test]
    fn lookup_by_api_key() {
        let (reg, key) = registry();
        assert_eq!(reg.len(), 2);
        assert!(!reg.is_empty());
        assert_eq!(reg.by_api_key(&key).unwrap().id, "shop");
        // Wrong, truncated, extended, differently cased, and empty keys.
        let mut wrong = key.clone();
        wrong.pop();
        assert!(reg.by_api_key(&wrong).is_none());
        assert!(reg.by_api_key(&format!("{key}x")).is_none());
        assert!(reg.by_api_key(&key.to_ascii_uppercase()).is_none());
        assert!(reg.by_api_key(&new_api_key().unwrap().key).is_none());
        assert!(reg.by_api_key("").is_none());
        assert!(reg.by_api_key("sk_").is_none());
    }

    #[test]
    fn keys_without_the_prefix_or_too_long_are_refused_before_lookup() {
        // Their hashes are registered, so only the early refusal stops them.
        let client = Client::new("c", "c");
        let long = format!("sk_{}", "a".repeat(254));
        let reg = ClientRegistry::default()
            .with_client(client.clone(), api_key_hash("pk_live_notakey"))
            .with_client(
                Client {
                    id: "d".into(),
                    ..client.clone()
                },
                api_key_hash(&long),
            );
        assert_eq!(long.len(), 257);
        assert!(reg.by_api_key("pk_live_notakey").is_none());
        assert!(reg.by_api_key(&long).is_none());
        let just_fits = format!("sk_{}", "a".repeat(253));
        let reg = reg.with_client(
            Client {
                id: "e".into(),
                ..client
            },
            api_key_hash(&just_fits),
        );
        assert_eq!(reg.by_api_key(&just_fits).unwrap().id, "e");
    }

    #[test]
    fn the_full_hash_is_compared_not_just_the_bucket() {
        // A stored hash that shares the 8-byte bucket prefix with the
        // presented key's hash but differs in its last byte must not match:
        // the map lookup only finds the bucket; the constant-time comparison
        // of all 32 bytes decides.
        let (reg, key) = registry();
        let shop = reg.by_id("shop").unwrap();
        let mut near = api_key_hash(&key);
        near[31] ^= 1;
        let reg = ClientRegistry::default().with_client((*shop).clone(), near);
        assert_eq!(
            reg.by_key_prefix.get(&key_prefix(&api_key_hash(&key))).map(Vec::len),
            Some(1)
        );
        assert!(reg.by_api_key(&key).is_none());
        // And the same bucket holding both finds the right one.
        let other = Client {
            id: "twin".into(),
            public_key: None,
            ..(*shop).clone()
        };
        let reg = reg.with_client(other, api_key_hash(&key));
        assert_eq!(reg.by_key_prefix.get(&key_prefix(&near)).map(Vec::len), Some(2));
        assert_eq!(reg.by_api_key(&key).unwrap().id, "twin");
    }

    #[test]
    fn lookup_by_public_key_and_id() {
        let (reg, _) = registry();
        assert_eq!(reg.by_public_key("pk_live_shop").unwrap().id, "shop");
        assert!(reg.by_public_key("pk_live_nope").is_none());
        assert_eq!(reg.by_id("other").unwrap().audience, "other");
        assert!(reg.by_id("nope").is_none());
        let other = reg.by_id("other").unwrap();
        assert!(other.audience_allowed("other") && other.audience_allowed("reports"));
        assert!(!other.audience_allowed("chatbot") && !other.audience_allowed(""));
    }

    #[test]
    fn with_client_adds_and_replaces() {
        let (reg, old_key) = registry();
        let mut dev = (*reg.by_id("shop").unwrap()).clone();
        dev.public_key = Some("pk_live_dev".into());
        let fresh = new_api_key().unwrap();
        let reg = reg.with_client(dev, api_key_hash(&fresh.key));
        assert_eq!(reg.len(), 2);
        assert_eq!(reg.by_api_key(&fresh.key).unwrap().id, "shop");
        // The replaced client's old key and public key are gone.
        assert!(reg.by_api_key(&old_key).is_none());
        assert!(reg.by_public_key("pk_live_shop").is_none());
        assert_eq!(reg.by_public_key("pk_live_dev").unwrap().id, "shop");
        let dbg = format!("{reg:?}");
        assert_eq!(dbg, "ClientRegistry { clients: [\"other\", \"shop\"], api_keys: 1 }");
    }

    #[test]
    fn registry_refuses_duplicates() {
        let mut twice = vec![Client::new("a", "a"), Client::new("a", "a")];
        assert_eq!(
            ClientRegistry::from_clients(&twice).unwrap_err(),
            ClientError::DuplicateId("a".into())
        );
        twice[1].id = "b".into();
        twice[0].public_key = Some("pk_live_x".into());
        twice[1].public_key = Some("pk_live_x".into());
        assert!(matches!(
            ClientRegistry::from_clients(&twice),
            Err(ClientError::DuplicatePublicKey { .. })
        ));
        twice[1].public_key = None;
        twice[0].api_keys = vec![[7; 32]];
        twice[1].api_keys = vec![[8; 32], [7; 32]];
        assert_eq!(
            ClientRegistry::from_clients(&twice).unwrap_err(),
            ClientError::DuplicateApiKey {
                client: "b".into(),
                other: "a".into(),
                index: 1
            }
        );
        // A hash listed twice by one client names that client.
        twice[1].api_keys = vec![[8; 32], [9; 32], [8; 32]];
        assert_eq!(
            ClientRegistry::from_clients(&twice).unwrap_err(),
            ClientError::DuplicateApiKey {
                client: "b".into(),
                other: "b".into(),
                index: 2
            }
        );
        // A refused client leaves nothing behind.
        let mut reg = ClientRegistry::from_clients(&twice[..1]).unwrap();
        assert!(reg.insert(twice[1].clone()).is_err());
        assert_eq!(reg.len(), 1);
        assert!(reg.by_id("b").is_none() && reg.entry(&[8; 32]).is_none());
        twice[1].api_keys = vec![[8; 32]];
        reg.insert(twice[1].clone()).unwrap();
        assert_eq!(reg.by_id("b").unwrap().api_keys, vec![[8; 32]]);
    }

    #[test]
    fn debug_shows_hashes_short() {
        let c = Client {
            api_keys: vec![api_key_hash("sk_live_example")],
            ..Client::new("a", "a")
        };
        let dbg = format!("{c:?}");
        assert!(dbg.contains("api_keys: [\"sha256:edc02449…\"]"), "{dbg}");
        assert!(!dbg.contains("edc0244907"), "{dbg}");
    }

    #[test]
    fn origin_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("https://shop.example.com", "https://shop.example.com", true),
            ("https://shop.example.com", "HTTPS://Shop.Example.COM", true),
            ("https://Shop.EXAMPLE.com", "https://shop.example.com", true),
            ("https://shop.example.com", "https://shop.example.com/", false),
            ("https://shop.example.com", "https://shop.example.com/path", false),
            ("https://shop.example.com", "https://shop.example.com?q=1", false),
            ("https://shop.example.com", "https://shop.example.com#f", false),
            ("https://shop.example.com", "https://shop.example.com:443", true),
            ("https://shop.example.com:443", "https://shop.example.com", true),
            ("https://shop.example.com", "https://shop.example.com:8443", false),
            ("https://shop.example.com", "https://shop.example.com:", false),
            ("https://shop.example.com", "https://shop.example.com:0443", false),
            ("https://shop.example.com", "http://shop.example.com", false),
            ("https://shop.example.com", "null", false),
            ("https://shop.example.com", "", false),
            ("https://shop.example.com", " https://shop.example.com", false),
            ("https://shop.example.com", "https://shop.example.com\t", false),
            ("https://shop.example.com", "https://shop.example.com.evil.com", false),
            ("https://shop.example.com", "https://evilshop.example.com", false),
            ("https://shop.example.com", "https://shop.example.com.", false),
            ("https://shop.example.com", "https://user@shop.example.com", false),
            ("https://shop.example.com", "https://evil.com@shop.example.com", false),
            ("https://shop.example.com", "https://shop.example.com\\@evil.com", false),
            ("https://shop.example.com", "shop.example.com", false),
            ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example", true),
            ("https://xn--bcher-kva.example", "https://bücher.example", false),
            ("http://localhost:*", "http://localhost:3000", true),
            ("http://localhost:*", "http://localhost:65535", true),
            ("http://localhost:*", "http://localhost", true),
            ("http://localhost:*", "http://localhost.evil.com:3000", false),
            ("http://localhost:*", "http://evil.localhost:3000", false),
            ("http://localhost:*", "https://localhost:3000", false),
            ("http://localhost:*", "http://localhost:*", false),
            ("http://localhost:*", "http://localhost:99999", false),
            ("http://localhost:3000", "http://localhost:3001", false),
            ("https://*.example.com", "https://a.example.com", true),
            ("https://*.example.com", "https://A-1.Example.com", true),
            ("https://*.example.com", "https://a.b.example.com", false),
            ("https://*.example.com", "https://example.com", false),
            ("https://*.example.com", "https://.example.com", false),
            ("https://*.example.com", "https://aexample.com", false),
            ("https://*.example.com", "https://a.example.com.evil.com", false),
            ("https://*.example.com", "https://*.example.com", false),
            ("https://*.example.com", "http://a.example.com", false),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080", true),
            ("http://[::1]:3000", "http://[0:0::1]:3000", true),
            ("http://[::1]:3000", "http://[::2]:3000", false),
        ];
        assert!(cases.len() >= 15);
        for &(pattern, origin, expected) in cases {
            let p = OriginPattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert_eq!(p.matches(origin), expected, "{pattern} vs {origin:?}");
        }
        // A client checks all of its patterns.
        let (reg, _) = registry();
        let shop = reg.by_id("shop").unwrap();
        assert!(shop.origin_allowed("https://shop.example.com"));
        assert!(shop.origin_allowed("http://localhost:5173"));
        assert!(!shop.origin_allowed("https://other.example.com"));
        assert!(!shop.origin_allowed("null"));
        assert!(!reg.by_id("other").unwrap().origin_allowed("https://shop.example.com"));
    }

    #[test]
    fn origin_patterns_refused() {
        let bad = [
            "null",
            "",
            "*",
            "https://*",
            "https://*.com",
            "https://*.0.1",
            "https://shop.*.com",
            "https://sh*p.example.com",
            "https://**.example.com",
            "https://shop.example.com/",
            "https://shop.example.com/app",
            "https://user@shop.example.com",
            "ftp://shop.example.com",
            "shop.example.com",
            "https://bücher.example",
            "https://shop.example.com:0",
            "https://shop.example.com:65536",
            "https://shop.example.com:*3",
            "https://shop..example.com",
            "https://[::1",
            "https://[nothex]",
            " https://shop.example.com",
        ];
        for s in bad {
            assert!(OriginPattern::parse(s).is_err(), "{s:?} was accepted");
        }
    }

    #[test]
    fn origin_patterns_display_normalised() {
        for (input, shown) in [
            ("HTTPS://Shop.Example.com:443", "https://shop.example.com"),
            ("http://localhost:*", "http://localhost:*"),
            ("https://*.Example.com", "https://*.example.com"),
            ("http://[0:0::1]:3000", "http://[::1]:3000"),
        ] {
            assert_eq!(OriginPattern::parse(input).unwrap().to_string(), shown);
        }
    }
}
