//! The authority: the one home of every decision about who may get, use,
//! consume or revoke a token.
//!
//! [`Authority`] is built once from a checked [`Config`], the key ring, the
//! clients and the shared store. The HTTP handlers, the `tokensmith` CLI and
//! the [`Bearer`](crate::Bearer) extractor are adapters: they parse, call
//! one method here, and map the answer. A rule that two entry points need is
//! a method of this type, so that it cannot drift between them (it did:
//! revocation by `sub` once reached the server but not plugin backends).
//!
//! It owns:
//! - issuing: a client's request cut to its policy ([`policy`]), `client_id`
//!   stamping (RFC 9068), the size cap, signing ([`Authority::issue`],
//!   [`Authority::sign`]);
//! - the widget and session flows: guest, exchange, refresh, session token,
//!   with their Origin rules and rate limits (`flows.rs`);
//! - using a verified token: revocation by `jti` and by `sub` within the
//!   client that issued it, and single use ([`Authority::admit`], shared
//!   with the `Bearer` extractor);
//! - revoking: only the caller's own tokens ([`Authority::revoke`]).
//!
//! It never logs a token, a refresh token, an API key or a cookie: only
//! `jti`, `kid` and client ids.

mod consume;
// DPoP (issue 14): binding tokens to a key, and using bound tokens.
mod dpop;
mod error;
mod flows;
pub mod policy;
// OAuth 2.0 (issue 11): the standard endpoints' rules; token formats.
mod format;
mod oauth;
mod oauth_error;
mod reload;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::claims::{Claims, Rejection, Validation, CLIENT_ID};
use crate::clients::{Client, ClientRegistry};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::issuer::{IssuedToken, Issuer, TokenSpec};
use crate::keys::SharedKeys;
use crate::session::{OwnCredentials, SessionChecker};
use crate::store::{AnyStore, Store, StoreError};
use crate::verifier::Verifier;

pub use consume::MAX_IDEMPOTENCY_KEY_LEN;
pub use dpop::Presentation;
pub use error::AuthorityError;
pub use flows::{Grant, Presenter};
pub use format::looks_opaque;
pub use oauth::OAuthGrant;
pub use oauth_error::OAuthError;
pub use policy::{
    apply_policy, exchange_audience, Audience, GlobalLimits, PolicyError, Purpose, TokenRequest, EXCHANGE_TTL_MAX,
    MAX_ID_LEN,
};
pub use reload::ClientsChange;

/// How `POST /v1/verify` (and [`Authority::verify`]) checks a token for a caller.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// The audience the token must carry. Default: the caller's audience.
    /// Another audience is allowed only if it is one of the caller's, or if
    /// the token was issued to the caller itself (its own visitor token).
    pub audience: Option<String>,
    /// Scopes the token must carry. Default: none.
    pub scopes: Vec<String>,
    /// Mark the `jti` as used until the token expires; a second consume of
    /// the same token, on any instance sharing the store, is `token_replayed`.
    pub consume: bool,
    /// The caller's `Idempotency-Key` for this consume: a retry with the same
    /// key by the same client answers as the first attempt did, so a
    /// consume whose answer was lost (a 503 after a timeout) can be retried.
    /// Generate it per logical request in the caller; never take it from the
    /// party presenting the token. Ignored without `consume`.
    pub idempotency_key: Option<String>,
    /// The DPoP proof the token was presented with, and the request it was
    /// presented in (`method`, `url`); `None`: presented as a Bearer token.
    /// A DPoP-bound token needs one ([`Authority::admit_dpop`]).
    pub dpop: Option<DpopPresented>,
}

/// A DPoP proof as a resource server received it, for `/v1/verify`.
#[derive(Clone, Debug, Default)]
pub struct DpopPresented {
    /// The `DPoP` header.
    pub proof: String,
    /// The method of the request the token came with.
    pub method: String,
    /// The URL of that request as the client addressed it.
    pub url: String,
}

/// What a client revokes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// One token, by its `jti`: only a token issued to the revoking client
    /// is affected (a `jti` of another client's token is accepted and has no
    /// effect, exactly as an unknown one).
    Jti(String),
    /// Every token and every refresh-token family of this subject that the
    /// revoking client was issued up to now.
    Sub(String),
}

/// Every policy decision of the service. Cheap to share (`Arc<Authority>`);
/// the clients can be swapped at run time ([`Authority::replace_clients`]).
///
/// Embedded, it issues for a client under that client's policy and
/// verifies with revocation and single use, as the server does:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("tokensmith-doc-authority-{}", std::process::id()));
/// use tokensmith::{Algorithm, Authority, Client, ClientRegistry, Config, KeyDir, MemoryStore, SystemClock};
/// use tokensmith::{TokenRequest, VerifyOptions};
/// let cfg = Config::from_toml_str(r#"issuer = "https://auth.example.com""#, [])?;
/// let ring = KeyDir::new(&dir).ensure(Algorithm::EdDSA, 0, 0)?.0;
/// let clients = ClientRegistry::from_clients(&[Client::new("shop", "chatbot")])?;
/// let store = MemoryStore::new(100_000).into();
/// let authority = Authority::new(&cfg, ring.shared()?, clients, store, SystemClock::shared())?;
///
/// let shop = authority.clients().by_id("shop").ok_or("no client shop")?;
/// let issued = authority.issue(&shop, TokenRequest { sub: "alice".into(), ..Default::default() }).await?;
/// let once = VerifyOptions { consume: true, ..Default::default() };
/// assert_eq!(authority.verify(&shop, &issued.token, &once).await?.sub, "alice");
/// let again = authority.verify(&shop, &issued.token, &once).await.unwrap_err();
/// assert_eq!(again.code(), "token_replayed");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub struct Authority {
    issuer: Issuer,
    verifier: Verifier<SharedKeys>,
    /// Swapped whole on reload, so a request never sees half a reload.
    clients: ArcSwap<ClientRegistry>,
    store: AnyStore,
    clock: SharedClock,
    limits: GlobalLimits,
    /// Clock skew allowed, in seconds.
    leeway: i64,
    /// The longest any of our tokens can still verify after it was issued:
    /// `max_ttl + leeway`. Revocations by `jti` are kept this long.
    retire_after: i64,
    /// The audience of visitor tokens, for the issuer actually served.
    exchange_audience: String,
    session: Option<SessionChecker>,
    /// OAuth 2.0: the fetched JWKS of clients with a `jwks_uri`.
    oauth: oauth::OAuthState,
    /// DPoP: how proofs are judged, and the URL they name.
    dpop: dpop::DpopState,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("issuer", &self.issuer.issuer())
            .field("clients", &self.clients.load())
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Whether `s` has the shape of the `jti`s this service issues: 128 bits in
/// 22 base64url characters. Checked before a revocation touches the store.
fn is_our_jti(s: &str) -> bool {
    s.len() == 22 && URL_SAFE_NO_PAD.decode(s).is_ok_and(|b| b.len() == 16)
}

/// The key a revocation is kept under: the `jti` or `sub` within the client
/// the token was issued to, so that one client can neither revoke another's
/// tokens nor users. Client ids cannot contain `:` (config), so the key is
/// unambiguous. A token without `client_id` (issued by the CLI) is keyed
/// under the empty client, which no API caller is.
fn client_key(client_id: &str, id: &str) -> String {
    format!("{client_id}:{id}")
}

/// The key under which the access tokens of a refresh family are revoked
/// (a revocation by `jti`, in the family's client): `fam:` cannot start a
/// `jti` of ours, which has no `:`.
fn family_key(client_id: &str, family: &str) -> String {
    client_key(client_id, &format!("fam:{family}"))
}

/// The revocation keys of a verified token: by `jti`, by `sub`.
fn revocation_keys(claims: &Claims) -> (String, String) {
    let client = claims.client_id().unwrap_or_default();
    (client_key(client, &claims.jti), client_key(client, &claims.sub))
}

/// The key a single-use mark is kept under. The `jti` is ours (the
/// signature was checked), 128 random bits: no namespace is needed.
/// For tests: an authority of the config `toml` with `clients`, its keys
/// made in `dir`, on a memory store, its clock stopped at `now`.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
fn test_authority(dir: &std::path::Path, toml: &str, clients: &[Client], now: i64) -> Authority {
    let cfg = Config::from_toml_str(toml, []).unwrap();
    let ring = crate::keys::disk::KeyDir::new(dir)
        .init(crate::jose::Algorithm::EdDSA, 0, 0)
        .unwrap();
    let clients = ClientRegistry::from_clients(clients).unwrap();
    let store = crate::store::memory::MemoryStore::new(1000).into();
    Authority::new(
        &cfg,
        ring.shared().unwrap(),
        clients,
        store,
        crate::clock::ManualClock::new(now),
    )
    .unwrap()
}

fn mark_key(claims: &Claims) -> String {
    format!("jti:{}", claims.jti)
}

impl Authority {
    /// The authority `cfg` describes, over the shared key ring `keys`, the
    /// clients `clients` (the config's, plus any added at start-up), the
    /// store and the clock. `cfg.issuer` must be the issuer actually served.
    /// Refuses clients that [`replace_clients`](Authority::replace_clients) would.
    pub fn new(
        cfg: &Config,
        keys: SharedKeys,
        clients: ClientRegistry,
        store: AnyStore,
        clock: SharedClock,
    ) -> Result<Authority, AuthorityError> {
        let limits = GlobalLimits {
            default_ttl: secs(cfg.tokens.default_ttl),
            max_ttl: secs(cfg.tokens.max_ttl),
        };
        let leeway = secs(cfg.tokens.leeway);
        let validation = Validation {
            leeway,
            max_ttl: limits.max_ttl,
            // Every caller names its audience per request (`verify_for`).
            ..Validation::new(cfg.issuer.clone()).any_audience()
        };
        let own = OwnCredentials::new(Arc::clone(&keys), cfg.issuer.clone());
        let session = cfg.session.as_ref().map(|s| SessionChecker::from_config(s, own));
        let authority = Authority {
            issuer: Issuer::new(Arc::clone(&keys), cfg.issuer.clone(), Arc::clone(&clock)),
            verifier: Verifier::new(keys, validation, Arc::clone(&clock)),
            clients: ArcSwap::from_pointee(ClientRegistry::default()),
            store,
            clock,
            limits,
            leeway,
            retire_after: limits.max_ttl.saturating_add(leeway),
            exchange_audience: exchange_audience(&cfg.issuer),
            session,
            oauth: oauth::OAuthState::default(),
            dpop: dpop::DpopState::from_config(&cfg.dpop, &cfg.issuer).map_err(AuthorityError::Random)?,
        };
        authority.replace_clients(clients)?;
        Ok(authority)
    }

    /// Swaps in a new client set (a reload), after checking it, and says
    /// what changed: no client may issue for the audience of visitor tokens
    /// of the issuer served (that would let it mint long-lived "visitor"
    /// tokens), the `[session]` client must exist, and a set with no client
    /// cannot replace one with clients (an empty or truncated config file
    /// would turn every API key away; stop the service to do that). On
    /// error the old clients stay.
    pub fn replace_clients(&self, clients: ClientRegistry) -> Result<ClientsChange, AuthorityError> {
        let old = self.clients.load_full();
        if clients.is_empty() && !old.is_empty() {
            return Err(AuthorityError::Misconfigured(format!(
                "the new configuration has no client; a reload that would remove all {} clients is refused",
                old.len()
            )));
        }
        for client in clients.iter() {
            if client.audience_allowed(&self.exchange_audience) {
                return Err(AuthorityError::Misconfigured(format!(
                    "client {}: the audience {:?} is reserved for visitor tokens (\"purpose\": \"exchange\")",
                    client.id, self.exchange_audience
                )));
            }
        }
        if let Some(session) = &self.session {
            if clients.by_id(session.client_id()).is_none() {
                return Err(AuthorityError::Misconfigured(format!(
                    "session.client {:?} names no client",
                    session.client_id()
                )));
            }
        }
        let change = ClientsChange::between(&old, &clients);
        self.clients.store(Arc::new(clients));
        Ok(change)
    }

    /// The current clients.
    pub fn clients(&self) -> Arc<ClientRegistry> {
        self.clients.load_full()
    }

    /// The `iss` of every token this authority issues and accepts.
    pub fn issuer(&self) -> &str {
        self.issuer.issuer()
    }

    /// The shared key ring it signs and verifies with.
    pub fn keys(&self) -> &SharedKeys {
        self.issuer.keys()
    }

    /// The shared store.
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    /// The clock every decision is taken on.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The limits that hold for every client.
    pub fn limits(&self) -> GlobalLimits {
        self.limits
    }

    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub fn leeway(&self) -> i64 {
        self.leeway
    }

    /// The client an API key opens, after one hit on its rate limit.
    pub async fn authenticate(&self, api_key: &str) -> Result<Arc<Client>, AuthorityError> {
        let client = self
            .clients
            .load()
            .by_api_key(api_key)
            .ok_or(AuthorityError::InvalidApiKey)?;
        self.charge_client(&client, flows::Flow::Api).await?;
        Ok(client)
    }

    /// A token for `client`'s backend: the request cut to the client's
    /// policy (`policy::apply_policy`), then [`sign`](Authority::sign)ed.
    /// An opaque token when the client's `token_format` says so, except a
    /// visitor token, which is always a JWT (it is verified by signature).
    pub async fn issue(&self, client: &Client, req: TokenRequest) -> Result<IssuedToken, AuthorityError> {
        self.issue_bound(client, req, None).await
    }

    /// [`issue`](Authority::issue), the token bound to the key of `proof`
    /// (a checked DPoP proof, [`dpop_proof`](Authority::dpop_proof)) when
    /// given; a client with `dpop = "required"` needs one. A visitor token
    /// is never bound: the page that exchanges it brings its own key.
    pub async fn issue_bound(
        &self,
        client: &Client,
        req: TokenRequest,
        proof: Option<&crate::dpop::Proof>,
    ) -> Result<IssuedToken, AuthorityError> {
        let visitor = req.purpose == Some(Purpose::Exchange);
        let mut spec = apply_policy(client, req, self.limits, self.issuer())?;
        if visitor {
            return self.sign(Some(&client.id), spec);
        }
        Self::dpop_allowed(client, proof)?;
        dpop::bind(&mut spec, proof);
        self.mint(client, spec).await
    }

    /// Signs `spec`, stamped with `client_id` (RFC 9068) when the token is
    /// for a client: every token the service issues passes here. Without a
    /// client (`tokensmith issue`, an operator holding the keys) any
    /// `client_id` in the spec is dropped: only this method sets it. A token
    /// its verifiers would refuse for its size is never handed out.
    pub fn sign(&self, client_id: Option<&str>, mut spec: TokenSpec) -> Result<IssuedToken, AuthorityError> {
        spec.extra.remove(CLIENT_ID);
        if let Some(id) = client_id {
            spec.extra
                .insert(CLIENT_ID.to_owned(), serde_json::Value::String(id.to_owned()));
        }
        let issued = self.issuer.issue(spec)?;
        tracing::debug!(client = client_id.unwrap_or("-"), jti = %issued.claims.jti, kid = %self.keys().load().signer.kid, "token issued");
        Ok(issued)
    }

    /// Full verification for `caller`: signature and claims for the
    /// audience of `opts` (see [`VerifyOptions::audience`]), then
    /// [`admit`](Authority::admit). Nothing is consumed for a token that
    /// fails an earlier step.
    pub async fn verify(&self, caller: &Client, token: &str, opts: &VerifyOptions) -> Result<Claims, AuthorityError> {
        let audience = opts.audience.as_deref().unwrap_or(&caller.audience);
        let claims = self.claims_of(token, Some(audience), &opts.scopes).await?;
        // A caller may verify (and so consume, or probe) only tokens meant
        // for one of its audiences, or tokens issued to itself.
        if !caller.audience_allowed(audience) && claims.client_id() != Some(caller.id.as_str()) {
            return Err(Rejection::WrongAudience {
                expected: audience.to_owned(),
            }
            .into());
        }
        let presented = match &opts.dpop {
            None => Presentation::Bearer,
            Some(p) => Presentation::Dpop(crate::dpop::ProofRequest {
                proof: &p.proof,
                method: &p.method,
                url: &p.url,
                access_token: None,
            }),
        };
        let now = self.clock.now();
        Self::admit_dpop(&self.store, &self.dpop.rules, &claims, token, presented, now).await?;
        let retry_key = match &opts.idempotency_key {
            Some(key) if opts.consume => Some(consume::retry_key(&caller.id, key)?),
            _ => None,
        };
        consume::admit(
            &self.store,
            &claims,
            opts.consume,
            retry_key.as_deref(),
            self.leeway,
            self.clock.now(),
        )
        .await?;
        Ok(claims)
    }

    /// The rules for using a token whose signature and claims have been
    /// checked, shared by every entry point that accepts tokens (this
    /// authority, the `Bearer` extractor of plugin backends):
    ///
    /// - revoked by `jti`, or by `sub` for tokens issued up to the
    ///   revocation, or (a token with a `sid`) with its refresh family,
    ///   within the client the token names → `token_revoked`;
    /// - with `consume`, the `jti` is marked used until `exp + leeway`, in
    ///   the same atomic store step as the revocation check; a second
    ///   consume → `token_replayed`; a token issued before the store's
    ///   epoch (it may have forgotten a use) → `replay_state_lost`;
    /// - a store that cannot answer is an error: nothing passes unchecked
    ///   (a consume that got no answer may still have marked the token).
    pub async fn admit<S: Store>(
        store: &S,
        claims: &Claims,
        consume: bool,
        leeway: i64,
        now: i64,
    ) -> Result<(), AuthorityError> {
        consume::admit(store, claims, consume, None, leeway, now).await
    }

    /// Revokes, for `caller`, one of its tokens by `jti`, or every token and
    /// refresh family of one of its subjects. A `jti` revocation lasts as
    /// long as any token can verify; a `sub` revocation as long as that,
    /// or as long as the caller's refresh families, whichever is longer.
    pub async fn revoke(&self, caller: &Client, what: &Revocation) -> Result<(), AuthorityError> {
        let now = self.clock.now();
        match what {
            Revocation::Jti(jti) => {
                if !is_our_jti(jti) {
                    return Err(AuthorityError::InvalidRequest(
                        "jti must be one this service issues: 22 base64url characters".into(),
                    ));
                }
                let until = now.saturating_add(self.retire_after);
                self.store.revoke_jti(&client_key(&caller.id, jti), until, now).await?;
            }
            Revocation::Sub(sub) => {
                policy::check_subject(sub)?;
                let until = now.saturating_add(self.retire_after.max(secs(caller.refresh_family_ttl)));
                self.store
                    .revoke_sub(&client_key(&caller.id, sub), now, until, now)
                    .await?;
            }
        }
        Ok(())
    }

    /// Ends the refresh family `record` of `client_id` at once: its refresh
    /// tokens (spent or live) and the access tokens issued from it (they
    /// carry its id as `sid`, and [`admit`](Authority::admit) refuses them
    /// for as long as any of them can verify).
    async fn revoke_family(&self, client_id: &str, family: &str, family_expires_at: i64) -> Result<(), AuthorityError> {
        let now = self.clock.now();
        self.store.refresh_revoke_family(family, family_expires_at, now).await?;
        self.revoke_family_tokens(client_id, family).await
    }

    /// Revokes the access tokens issued from the refresh family `family`.
    async fn revoke_family_tokens(&self, client_id: &str, family: &str) -> Result<(), AuthorityError> {
        let now = self.clock.now();
        let until = now.saturating_add(self.retire_after);
        self.store
            .revoke_jti(&family_key(client_id, family), until, now)
            .await?;
        tracing::info!(client = %client_id, family = %family, "refresh family and its access tokens revoked");
        Ok(())
    }

    /// Whether a refresh family of `sub` of `client` started at `created_at`
    /// has been revoked with its subject.
    async fn family_revoked(&self, client: &str, sub: &str, created_at: i64) -> Result<bool, StoreError> {
        // No jti of ours is empty, so the jti key matches no revocation.
        self.store
            .is_revoked(
                &client_key(client, ""),
                &client_key(client, sub),
                created_at,
                self.clock.now(),
            )
            .await
    }

    /// Whether the store can serve (`/readyz`).
    pub async fn ready(&self) -> Result<(), StoreError> {
        match &self.store {
            // The memory store sweeps by the time callers give it; a probe is one.
            AnyStore::Memory(m) => m.ready_at(self.clock.now()),
            store => store.ping().await,
        }
    }
}

#[cfg(test)]
mod tests;
