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
mod tests;
