//! The flows a browser starts, and the rate limits of every flow.
//!
//! Guest, exchange, refresh and session tokens are asked for by a page, not
//! by a client's backend: the credential is a public key plus an `Origin`,
//! a visitor token, a refresh token, or the app's session. Each flow checks,
//! in this order:
//!
//! 1. what can be checked without the store (shapes, signatures);
//! 2. the caller's address: its share of the client's rate;
//! 3. the credential itself;
//! 4. the client's own rate, so that requests without a valid credential
//!    never spend the budget of the client they name;
//! 5. the single-use step (consume a visitor token, spend a refresh token),
//!    so that a request refused above burns nothing.
//!
//! `Origin` can be forged by anything but a browser: it guards against other
//! web pages, not against a thief of the token.

use std::fmt;
use std::net::IpAddr;

use serde_json::{Map, Value};

use super::{Authority, AuthorityError};
use crate::claims::{Rejection, CLIENT_ID, SID};
use crate::clients::Client;
use crate::dpop::Proof;
use crate::issuer::IssuedToken;
use crate::refresh::{self, InvalidReason, RefreshError};
use crate::session::Identity;
use crate::store::Store;

/// A client IP gets this share of the client's rate in the browser flows:
/// one page cannot spend everything the client may have. Behind a proxy
/// every request shares the proxy's address (`X-Forwarded-For` is not
/// trusted), and the share becomes a fleet-wide limit.
const IP_SHARE: u32 = 10;

/// Which counter a request is charged to: each flow has its own, with the
/// client's `rate_limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flow {
    /// A call authenticated by an API key.
    Api,
    Guest,
    Session,
    Exchange,
    Refresh,
}

impl Flow {
    fn name(self) -> &'static str {
        match self {
            Flow::Api => "client",
            Flow::Guest => "guest",
            Flow::Session => "session",
            Flow::Exchange => "exchange",
            Flow::Refresh => "refresh",
        }
    }
}

/// A token handed out by a flow, with the refresh token that renews it.
pub struct Grant {
    /// The access token and its claims.
    pub token: IssuedToken,
    /// The refresh token, for flows that start or continue a family.
    pub refresh_token: Option<String>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("jti", &self.token.claims.jti)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Who presents a grant (a visitor token, a refresh token): a browser page
/// (`/v1/exchange`, `/v1/refresh`), judged by its `Origin`, or an
/// authenticated OAuth 2.0 client, which must be the one the grant was
/// issued to. Either is checked after the grant is spent.
#[derive(Clone, Copy, Debug)]
pub enum Presenter<'a> {
    /// A page, with the request's `Origin` if it sent one.
    Page {
        /// The `Origin` header.
        origin: Option<&'a str>,
    },
    /// An authenticated client.
    Client(&'a Client),
}

impl Presenter<'_> {
    /// `Ok` when this presenter may hold a grant of `client`.
    fn check(&self, client: &Client) -> Result<(), AuthorityError> {
        match self {
            Presenter::Page { origin } => Authority::check_origin(client, *origin, false),
            Presenter::Client(c) if c.id == client.id => Ok(()),
            Presenter::Client(_) => Err(AuthorityError::GrantOfOtherClient),
        }
    }
}

/// `identity` with only the scopes of `narrow`, which must all be among its
/// own (RFC 6749 §6, RFC 8693 §2.1): a grant never widens.
fn narrowed(mut identity: Identity, narrow: Option<&[String]>) -> Result<Identity, AuthorityError> {
    if let Some(asked) = narrow {
        if let Some(extra) = asked.iter().find(|s| !identity.scopes.contains(s)) {
            return Err(crate::authority::PolicyError::ScopeNotAllowed(extra.clone()).into());
        }
        identity.scopes.retain(|s| asked.contains(s));
    }
    Ok(identity)
}

/// The rate-limit key of an address: IPv4 as is, IPv6 by its /64, since one
/// host commonly holds a whole /64.
pub(super) fn ip_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

impl From<RefreshError> for AuthorityError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Invalid(why) => {
                if why == InvalidReason::Reused {
                    // Two holders of one token: a theft, or a client that refreshes twice.
                    tracing::warn!("a spent refresh token was presented again; its family is revoked");
                } else {
                    tracing::debug!(reason = why.as_str(), "refresh token refused");
                }
                AuthorityError::Rejected(Rejection::InvalidRefreshToken)
            }
            RefreshError::Store(e) => AuthorityError::Store(e),
            RefreshError::Random(e) => AuthorityError::Random(e),
        }
    }
}

impl Authority {
    /// One hit on `client`'s counter for `flow`, when it has a rate limit.
    pub(super) async fn charge_client(&self, client: &Client, flow: Flow) -> Result<(), AuthorityError> {
        let Some(limit) = &client.rate_limit else {
            return Ok(());
        };
        let key = format!("{}:{}", flow.name(), client.id);
        self.charge(&key, limit.count, limit.per.as_secs()).await
    }

    /// One hit on the counter of `ip` for `flow` of `client`: [`IP_SHARE`]
    /// of the client's rate, in the same window. Nothing when the client
    /// has no limit or the address is unknown (an in-process router).
    async fn charge_ip(&self, client: &Client, flow: Flow, ip: Option<IpAddr>) -> Result<(), AuthorityError> {
        let (Some(limit), Some(ip)) = (&client.rate_limit, ip) else {
            return Ok(());
        };
        let key = format!("{}-ip:{}:{}", flow.name(), client.id, ip_key(ip));
        self.charge(&key, (limit.count / IP_SHARE).max(1), limit.per.as_secs())
            .await
    }

    async fn charge(&self, key: &str, count: u32, window: u64) -> Result<(), AuthorityError> {
        let window = u32::try_from(window.max(1)).unwrap_or(u32::MAX);
        let decision = self.store.rate_hit(key, count, window, self.clock.now()).await?;
        if decision.allowed {
            Ok(())
        } else {
            Err(AuthorityError::RateLimited {
                retry_after: decision.retry_after.max(1),
            })
        }
    }

    /// `Ok` when `origin` is allowed for `client`; a missing origin passes
    /// only where the flow does not require one (a request without one is
    /// not from a browser page, and CORS does not concern it).
    fn check_origin(client: &Client, origin: Option<&str>, required: bool) -> Result<(), AuthorityError> {
        match origin {
            None if !required => Ok(()),
            Some(o) if client.origin_allowed(o) => Ok(()),
            _ => Err(AuthorityError::OriginNotAllowed),
        }
    }

    /// Whether some client allows `origin`: the CORS answer where the client
    /// is not known from the request line (guest, exchange, refresh).
    pub fn origin_allowed_by_any(&self, origin: &str) -> bool {
        self.clients.load().any_origin_allowed(origin)
    }

    /// Whether the client with public key `public_key` allows `origin`.
    pub fn origin_allowed_for(&self, public_key: &str, origin: &str) -> bool {
        self.clients
            .load()
            .by_public_key(public_key)
            .is_some_and(|c| c.origin_allowed(origin))
    }

    /// The public bootstrap config of the client with `public_key`, for one
    /// of its own origins only.
    pub fn client_config(&self, public_key: &str, origin: Option<&str>) -> Result<Map<String, Value>, AuthorityError> {
        let client = self
            .clients
            .load()
            .by_public_key(public_key)
            .ok_or(AuthorityError::UnknownClient)?;
        Self::check_origin(&client, origin, true)?;
        Ok(client.config.clone())
    }

    /// A token for `identity`, cut to `client`'s policy, in its format;
    /// stamped with the refresh family it comes from (`sid`), if any, so
    /// that it dies with the family.
    async fn grant(
        &self,
        client: &Client,
        identity: &Identity,
        family: Option<&str>,
        refresh_token: Option<String>,
        proof: Option<&Proof>,
    ) -> Result<Grant, AuthorityError> {
        let mut spec = identity.token_spec(client, self.limits);
        if let Some(family) = family {
            spec.extra.insert(SID.to_owned(), Value::String(family.to_owned()));
        }
        super::dpop::bind(&mut spec, proof);
        Ok(Grant {
            token: self.mint(client, spec).await?,
            refresh_token,
        })
    }

    /// Starts a refresh family for `identity` (cut to `client`) and signs its
    /// first token, bound to the key of `proof` when given. A family started
    /// by a page (a public client) with a proof is bound to its key too.
    async fn grant_with_new_family(
        &self,
        client: &Client,
        identity: &Identity,
        presenter: Presenter<'_>,
        proof: Option<&Proof>,
    ) -> Result<Grant, AuthorityError> {
        let cut = identity.cut_to(client);
        let now = self.clock.now();
        let public = matches!(presenter, Presenter::Page { .. });
        let claims = super::dpop::family_claims(&cut.claims, proof.filter(|_| public));
        let family = refresh::issue_family(&self.store, client, &cut.sub, &cut.scopes, &claims, now).await?;
        tracing::debug!(client = %client.id, family = %family.record.family, "refresh family started");
        self.grant(client, &cut, Some(&family.record.family), Some(family.token), proof)
            .await
    }

    /// `POST /v1/guest`: an anonymous visitor of the client whose public key
    /// is given, from one of its origins, with a new refresh family; with a
    /// DPoP `proof` the token and the family are bound to its key.
    pub async fn guest(
        &self,
        client_key: &str,
        origin: Option<&str>,
        ip: Option<IpAddr>,
        proof: Option<&Proof>,
    ) -> Result<Grant, AuthorityError> {
        let client = self
            .clients
            .load()
            .by_public_key(client_key)
            .ok_or(AuthorityError::UnknownClient)?;
        self.charge_ip(&client, Flow::Guest, ip).await?;
        Self::check_origin(&client, origin, true)?;
        Self::dpop_allowed(&client, proof)?;
        self.charge_client(&client, Flow::Guest).await?;
        let identity = Identity::guest(&client).map_err(AuthorityError::Random)?;
        self.grant_with_new_family(&client, &identity, Presenter::Page { origin }, proof)
            .await
    }

    /// `POST /v1/exchange`: a visitor token (single use, at most 5 min
    /// long: `EXCHANGE_TTL_MAX`) for a session
    /// token of the same subject and client, with a new refresh family. The
    /// visitor token is consumed before the Origin is checked: a token
    /// presented from a page the client does not allow is as good as
    /// stolen, and burning it is the safe way.
    pub async fn exchange(
        &self,
        token: &str,
        origin: Option<&str>,
        ip: Option<IpAddr>,
        proof: Option<&Proof>,
    ) -> Result<Grant, AuthorityError> {
        self.exchange_as(token, Presenter::Page { origin }, None, ip, proof)
            .await
    }

    /// [`exchange`](Authority::exchange) for any [`Presenter`], the scopes
    /// narrowed to `narrow` when given: the one code path of `/v1/exchange`
    /// and of RFC 8693 token exchange of a visitor token. With a DPoP
    /// `proof` the token is bound to its key (and the family, for a page).
    pub async fn exchange_as(
        &self,
        token: &str,
        presenter: Presenter<'_>,
        narrow: Option<&[String]>,
        ip: Option<IpAddr>,
        proof: Option<&Proof>,
    ) -> Result<Grant, AuthorityError> {
        let claims = self.verifier.verify_for(token, Some(&self.exchange_audience), &[])?;
        // Whatever carries the audience, a visitor token is short: a
        // long-lived token is never one, however it was made.
        let ttl = claims.exp.saturating_sub(claims.iat);
        if ttl > super::EXCHANGE_TTL_MAX {
            return Err(Rejection::TtlTooLong {
                ttl,
                max: super::EXCHANGE_TTL_MAX,
            }
            .into());
        }
        let client_id = claims.client_id().ok_or(Rejection::MissingClaim(CLIENT_ID))?;
        let client = self
            .clients
            .load()
            .by_id(client_id)
            .ok_or(AuthorityError::UnknownClient)?;
        // Refused before the visitor token is consumed: a request without
        // the proof its client requires burns nothing.
        Self::dpop_allowed(&client, proof)?;
        self.charge_ip(&client, Flow::Exchange, ip).await?;
        self.charge_client(&client, Flow::Exchange).await?;
        Self::admit(&self.store, &claims, true, self.leeway, self.clock.now()).await?;
        presenter.check(&client)?;
        let identity = narrowed(Identity::from_visitor(&claims).cut_to(&client), narrow)?;
        self.grant_with_new_family(&client, &identity, presenter, proof).await
    }

    /// `POST /v1/refresh`: spends the refresh token and grants a new token
    /// and the successor refresh token. Reuse of a spent one revokes the
    /// family; a family whose subject was revoked since it started is
    /// refused (and not spent). What is renewed is cut again to the
    /// client's current policy.
    pub async fn refresh(
        &self,
        presented: &str,
        origin: Option<&str>,
        ip: Option<IpAddr>,
        proof: Option<&Proof>,
    ) -> Result<Grant, AuthorityError> {
        self.refresh_as(presented, Presenter::Page { origin }, None, ip, proof)
            .await
    }

    /// [`refresh`](Authority::refresh) for any [`Presenter`], the new
    /// token's scopes narrowed to `narrow` when given (the family keeps its
    /// own): the one code path of `/v1/refresh` and of the OAuth 2.0
    /// `refresh_token` grant. A family bound to a DPoP key is renewed only
    /// with a `proof` by that key (checked before anything is spent); the
    /// new token is bound to the proof's key.
    pub async fn refresh_as(
        &self,
        presented: &str,
        presenter: Presenter<'_>,
        narrow: Option<&[String]>,
        ip: Option<IpAddr>,
        proof: Option<&Proof>,
    ) -> Result<Grant, AuthorityError> {
        let record = refresh::peek(&self.store, presented).await?;
        // A client removed since: its families are dead.
        let client = self
            .clients
            .load()
            .by_id(&record.client)
            .ok_or(Rejection::InvalidRefreshToken)?;
        Self::dpop_refresh_allowed(&record.claims, proof)?;
        Self::dpop_allowed(&client, proof)?;
        self.charge_ip(&client, Flow::Refresh, ip).await?;
        self.charge_client(&client, Flow::Refresh).await?;
        if self.family_revoked(&client.id, &record.sub, record.created_at).await? {
            return Err(RefreshError::Invalid(InvalidReason::Revoked).into());
        }
        // Checked before the spend: a narrowing that cannot be granted
        // burns nothing.
        narrowed(Identity::from_refresh(&record).cut_to(&client), narrow)?;
        let next = match refresh::rotate(&self.store, presented, self.clock.now()).await {
            Ok(next) => next,
            Err(e @ RefreshError::Invalid(InvalidReason::Reused)) => {
                // The store has ended the family; its access tokens go too.
                self.revoke_family_tokens(&client.id, &record.family).await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        presenter.check(&client)?;
        let identity = narrowed(Identity::from_refresh(&next.record).cut_to(&client), narrow)?;
        self.grant(&client, &identity, Some(&next.record.family), Some(next.token), proof)
            .await
    }

    /// `POST /v1/session/token`: the app's session check vouches for the
    /// caller (`headers`: its `Cookie` and `Authorization`); the token
    /// follows the `[session]` client's policy.
    pub async fn session_token(
        &self,
        headers: &reqwest::header::HeaderMap,
        ip: Option<IpAddr>,
    ) -> Result<Grant, AuthorityError> {
        let checker = self.session.as_ref().ok_or(AuthorityError::NoSessionCheck)?;
        let client = self.clients.load().by_id(checker.client_id()).ok_or_else(|| {
            AuthorityError::Misconfigured(format!("session.client {:?} names no client", checker.client_id()))
        })?;
        self.charge_ip(&client, Flow::Session, ip).await?;
        let identity = checker.check(headers, self.clock.now()).await?;
        self.charge_client(&client, Flow::Session).await?;
        self.grant(&client, &identity, None, None, None).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::claims::Claims;
    use crate::clients::OriginPattern;
    use crate::store::StoreError;

    fn scopes(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    fn shop() -> Client {
        Client {
            allowed_origins: vec![OriginPattern::parse("https://shop.example.com").unwrap()],
            ..Client::new("shop", "chatbot")
        }
    }

    /// Each flow is charged to a counter of its own: no two share a name.
    #[test]
    fn each_flow_has_a_counter_of_its_own() {
        let flows = [Flow::Api, Flow::Guest, Flow::Session, Flow::Exchange, Flow::Refresh];
        for (i, a) in flows.iter().enumerate() {
            assert!(!a.name().is_empty(), "{a:?}");
            for b in &flows[i + 1..] {
                assert_ne!(a.name(), b.name(), "{a:?} and {b:?}");
            }
        }
    }

    /// A page is judged by its `Origin`; a client must be the one the
    /// grant was issued to.
    #[test]
    fn a_grant_is_held_by_its_own_client_or_a_page_it_allows() {
        let shop = shop();
        let other = Client::new("other", "chatbot");
        let code = |r: Result<(), AuthorityError>| r.map_or_else(|e| e.code(), |()| "ok");
        assert_eq!(code(Presenter::Client(&shop).check(&shop)), "ok");
        assert_eq!(code(Presenter::Client(&other).check(&shop)), "invalid_grant");
        let page = |origin| Presenter::Page { origin }.check(&shop);
        assert_eq!(code(page(Some("https://shop.example.com"))), "ok");
        assert_eq!(code(page(Some("https://evil.example.com"))), "origin_not_allowed");
        assert_eq!(code(page(None)), "ok");
    }

    /// An origin is required where the flow says so; a given one must be
    /// in the client's allowlist either way.
    #[test]
    fn an_origin_is_checked_and_required_where_the_flow_says() {
        let shop = shop();
        let code = |origin, required| match Authority::check_origin(&shop, origin, required) {
            Ok(()) => "ok",
            Err(e) => e.code(),
        };
        for required in [false, true] {
            assert_eq!(code(Some("https://shop.example.com"), required), "ok");
            assert_eq!(code(Some("https://other.example.com"), required), "origin_not_allowed");
        }
        assert_eq!(code(None, false), "ok");
        assert_eq!(code(None, true), "origin_not_allowed");
    }

    /// Narrowing keeps only the scopes asked for, all of which the grant
    /// must have: it never widens.
    #[test]
    fn narrowing_keeps_the_scopes_asked_and_never_widens() {
        let id = Identity {
            sub: "alice".into(),
            scopes: scopes(&["chat", "read", "write"]),
            claims: Map::new(),
        };
        assert_eq!(narrowed(id.clone(), None).unwrap().scopes, id.scopes);
        let asked = scopes(&["write", "chat"]);
        assert_eq!(
            narrowed(id.clone(), Some(&asked)).unwrap().scopes,
            scopes(&["chat", "write"])
        );
        let wider = scopes(&["chat", "admin"]);
        let e = narrowed(id, Some(&wider)).err().unwrap();
        assert_eq!(e.code(), "scope_not_allowed");
        assert!(e.to_string().contains("admin"), "{e}");
    }

    /// Every refused refresh token is the same `invalid_refresh_token`; a
    /// store or random failure keeps its kind.
    #[test]
    fn refresh_errors_become_one_refusal_or_keep_their_cause() {
        for why in [
            InvalidReason::Malformed,
            InvalidReason::Unknown,
            InvalidReason::Reused,
            InvalidReason::Revoked,
        ] {
            let e = AuthorityError::from(RefreshError::Invalid(why));
            assert!(
                matches!(e, AuthorityError::Rejected(Rejection::InvalidRefreshToken)),
                "{e:?}"
            );
        }
        let e = AuthorityError::from(RefreshError::Store(StoreError::Full { capacity: 1 }));
        assert!(
            matches!(e, AuthorityError::Store(StoreError::Full { capacity: 1 })),
            "{e:?}"
        );
        let e = AuthorityError::from(RefreshError::Random(crate::jose::JoseError::Crypto("rng")));
        assert_eq!(e.code(), "server_error");
    }

    const NOW: i64 = 1_800_000_000;
    const ISSUER: &str = "https://issuer.test";
    const ORIGIN: &str = "https://shop.example.com";

    /// An authority on a memory store and a stopped clock, with `client`.
    fn authority(dir: &std::path::Path, client: Client) -> Authority {
        use crate::config::Config;
        use crate::keys::disk::KeyDir;
        let cfg = Config::from_toml_str(&format!("issuer = {ISSUER:?}"), []).unwrap();
        let ring = KeyDir::new(dir).init(crate::jose::Algorithm::EdDSA, 0, 0).unwrap();
        let clients = crate::clients::ClientRegistry::from_clients(&[client]).unwrap();
        let store = crate::store::memory::MemoryStore::new(1000).into();
        Authority::new(
            &cfg,
            ring.shared().unwrap(),
            clients,
            store,
            crate::clock::ManualClock::new(NOW),
        )
        .unwrap()
    }

    fn public_shop() -> Client {
        Client {
            public_key: Some("pk_test_shop".into()),
            config: serde_json::json!({"theme": "dark"}).as_object().unwrap().clone(),
            ..shop()
        }
    }

    /// The guest flow's rate: an address gets a tenth of the client's
    /// (20/m: 2), other addresses go on until the client's own is spent.
    #[tokio::test]
    async fn an_address_gets_a_tenth_of_the_clients_rate_and_the_client_its_own() {
        let t = tempfile::tempdir().unwrap();
        let limited = Client {
            rate_limit: Some(crate::units::RateLimit::parse("20/m").unwrap()),
            ..public_shop()
        };
        let a = authority(t.path(), limited);
        let guest = |ip: [u8; 4]| {
            let a = &a;
            async move {
                match a
                    .guest("pk_test_shop", Some(ORIGIN), Some(IpAddr::from(ip)), None)
                    .await
                {
                    Ok(_) => "ok",
                    Err(e) => e.code(),
                }
            }
        };
        assert_eq!(guest([192, 0, 2, 1]).await, "ok");
        assert_eq!(guest([192, 0, 2, 1]).await, "ok");
        assert_eq!(guest([192, 0, 2, 1]).await, "rate_limited");
        let mut granted = 2;
        for host in 2..=30 {
            if guest([192, 0, 2, host]).await == "ok" {
                granted += 1;
            }
        }
        assert_eq!(granted, 20);
    }

    /// The CORS answers and the bootstrap config: for a client's own origins only.
    #[test]
    fn origins_are_allowed_by_the_client_that_lists_them() {
        let t = tempfile::tempdir().unwrap();
        let a = authority(t.path(), public_shop());
        assert!(a.origin_allowed_by_any(ORIGIN));
        assert!(!a.origin_allowed_by_any("https://evil.example.com"));
        assert!(a.origin_allowed_for("pk_test_shop", ORIGIN));
        assert!(!a.origin_allowed_for("pk_test_shop", "https://evil.example.com"));
        assert!(!a.origin_allowed_for("pk_test_other", ORIGIN));
        let config = a.client_config("pk_test_shop", Some(ORIGIN)).unwrap();
        assert_eq!(config["theme"], "dark");
        let code = |pk, origin| a.client_config(pk, origin).err().map(|e| e.code());
        assert_eq!(code("pk_test_shop", None), Some("origin_not_allowed"));
        assert_eq!(code("pk_test_other", Some(ORIGIN)), Some("unknown_client"));
    }

    /// A visitor token lives at most `EXCHANGE_TTL_MAX`: one of exactly
    /// that is exchanged, one a second longer is refused, whoever made it.
    #[tokio::test]
    async fn a_visitor_token_of_exactly_the_maximum_lifetime_is_exchanged() {
        let t = tempfile::tempdir().unwrap();
        let a = authority(t.path(), public_shop());
        let visitor = |ttl| {
            let spec = crate::issuer::TokenSpec {
                sub: "alice".into(),
                aud: vec![super::super::exchange_audience(ISSUER)],
                ttl,
                ..Default::default()
            };
            a.sign(Some("shop"), spec).unwrap().token
        };
        let (at_max, over) = (
            visitor(super::super::EXCHANGE_TTL_MAX),
            visitor(super::super::EXCHANGE_TTL_MAX + 1),
        );
        let granted = a.exchange(&at_max, Some(ORIGIN), None, None).await.unwrap();
        assert_eq!(granted.token.claims.sub, "alice");
        let refused = a.exchange(&over, Some(ORIGIN), None, None).await.unwrap_err();
        assert_eq!(refused.code(), "ttl_too_long");
    }

    /// What a test subscriber wrote, shared with the writer it hands out.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What converting `e` logs at WARN or above, on this thread.
    fn warned(e: RefreshError) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || drop(AuthorityError::from(e)));
        let text = String::from_utf8_lossy(&out.0.lock().unwrap()).into_owned();
        text
    }

    /// A spent refresh token presented again (two holders: a theft, or a
    /// client that refreshes twice) is the one refusal logged as a warning.
    #[test]
    fn only_a_reused_refresh_token_is_a_warning() {
        let reused = warned(RefreshError::Invalid(InvalidReason::Reused));
        assert!(
            reused.contains("WARN") && reused.contains("family is revoked"),
            "{reused:?}"
        );
        for why in [InvalidReason::Malformed, InvalidReason::Unknown, InvalidReason::Revoked] {
            assert_eq!(warned(RefreshError::Invalid(why)), "", "{why:?}");
        }
    }

    /// A grant's debug form names its token by `jti` and hides the refresh token.
    #[test]
    fn a_grants_debug_form_hides_the_refresh_token() {
        let claims = Claims {
            iss: "https://issuer.test".into(),
            sub: "alice".into(),
            aud: vec![],
            iat: 0,
            exp: 60,
            nbf: None,
            jti: "jti-1".into(),
            scopes: vec![],
            extra: Map::new(),
        };
        let grant = Grant {
            token: IssuedToken {
                token: "the.access.token".into(),
                claims,
            },
            refresh_token: Some("refresh-secret".into()),
        };
        let dbg = format!("{grant:?}");
        assert!(dbg.contains("jti-1") && dbg.contains("<redacted>"), "{dbg}");
        assert!(
            !dbg.contains("refresh-secret") && !dbg.contains("the.access.token"),
            "{dbg}"
        );
    }

    #[test]
    fn ipv6_is_limited_by_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        assert_eq!(ip_key("192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(ip_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
    }
}
