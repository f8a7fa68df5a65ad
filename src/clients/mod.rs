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
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

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

mod keys;
mod origin;

pub(crate) use keys::check_public_key;
pub use keys::{api_key_hash, hash_line, new_api_key, new_public_key, parse_hash_line, NewApiKey};
use origin::Origin;
pub use origin::OriginPattern;
#[cfg(test)]
mod tests;
