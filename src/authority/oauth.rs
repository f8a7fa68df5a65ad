//! The rules of the OAuth 2.0 endpoints: which client a credential opens,
//! what each grant yields, and who may introspect or revoke which token.
//!
//! Every rule here is the authority's own, shared with the `/v1` API where
//! both have it: `client_credentials` is [`Authority::issue`] for
//! `sub` = the client; the refresh grant is [`Authority::refresh_as`] and the
//! exchange of a visitor token [`Authority::exchange_as`], the code of
//! `/v1/refresh` and `/v1/exchange`; a token is visible to a client exactly
//! when [`Authority::verify`] would let it verify it (issued to it, or meant
//! for one of its audiences), and [`Authority::admit`] decides revocation.
//!
//! Client authentication: a client id with one of the client's API keys
//! (found by hash and compared in constant time by the registry), or a
//! `private_key_jwt` assertion (RFC 7523) signed by a key of the client's
//! `jwks`/`jwks_uri`, for this issuer, at most five minutes long, and used
//! once (its `jti` is marked in the store: a replay is `invalid_client`).
//!
//! Nothing here logs a secret, an assertion or a token.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use super::flows::{Flow, Presenter};
use super::OAuthError;
use super::{Audience, Authority, AuthorityError, Grant, Revocation, TokenRequest};
use crate::claims::{Claims, Validation};
use crate::clients::Client;
use crate::jose::{jws, VerifyingKey};
use crate::jwks::{JwksOptions, RemoteJwks};
use crate::oauth::request::ExchangeRequest;
use crate::oauth::{
    endpoint, ClientAuth, ClientJwks, Introspection, TokenGrant, ASSERTION_MAX_AHEAD, TOKEN_PATH,
    TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT,
};
use crate::refresh::{RefreshError, REFRESH_TOKEN_LEN};
use crate::session::Identity;
use crate::store::Store;
use crate::verifier::{KeySource, StaticKeys};

/// State the OAuth 2.0 rules keep between requests.
#[derive(Default)]
pub(super) struct OAuthState {
    /// The `jwks_uri` keys of each client, fetched on first use and cached
    /// by [`RemoteJwks`]'s rules; keyed by client id, replaced when the
    /// client's URL changes (a reload). A std Mutex: held for a lookup only.
    remote: Mutex<HashMap<String, Arc<RemoteJwks>>>,
}

/// What the token endpoint hands out.
#[derive(Debug)]
pub struct OAuthGrant {
    /// The token and, for grants that keep a refresh family, its refresh token.
    pub grant: Grant,
    /// `issued_token_type` (RFC 8693 §2.2.1), for token exchange only.
    pub issued_token_type: Option<&'static str>,
}

fn invalid_client(why: impl Into<String>) -> OAuthError {
    OAuthError::InvalidClient(why.into())
}

impl Authority {
    /// The client a request's credentials open, after one hit on its rate
    /// limit. Every failure is `invalid_client` (but an unreachable store).
    pub async fn oauth_client(&self, auth: &ClientAuth) -> Result<Arc<Client>, OAuthError> {
        match auth {
            ClientAuth::Secret { client_id, secret, .. } => {
                let client = self.authenticate(secret).await.map_err(|e| match e {
                    AuthorityError::InvalidApiKey => invalid_client("the client id or secret is wrong"),
                    e => OAuthError::from(e),
                })?;
                // Ids are not secret: an ordinary comparison.
                if client.id != *client_id {
                    return Err(invalid_client("the client id or secret is wrong"));
                }
                Ok(client)
            }
            ClientAuth::Assertion { client_id, assertion } => {
                self.assertion_client(client_id.as_deref(), assertion).await
            }
        }
    }

    /// `private_key_jwt` (RFC 7523 §3): the assertion names its client in
    /// `sub` (and `iss`); its signature is checked with that client's keys,
    /// then its claims, then its `jti` is spent.
    async fn assertion_client(&self, client_id: Option<&str>, assertion: &str) -> Result<Arc<Client>, OAuthError> {
        let bad = |why: &str| invalid_client(format!("client_assertion: {why}"));
        let jws = jws::decode(assertion).map_err(|e| bad(&e.to_string()))?;
        // Read before the signature is checked only to find whose keys must
        // check it; nothing else is believed until then.
        let named = Claims::from_payload(jws.payload()).map_err(|e| bad(e.code()))?;
        if client_id.is_some_and(|c| c != named.sub) {
            return Err(bad("client_id is not the assertion's sub"));
        }
        let client = self
            .clients
            .load()
            .by_id(&named.sub)
            .ok_or_else(|| bad("no such client"))?;
        let key = self.assertion_key(&client, jws.header.kid.as_deref()).await?;
        let now = self.clock.now();
        let validation = Validation {
            leeway: self.leeway,
            max_ttl: i64::MAX,
            ..Validation::new(client.id.clone()).any_audience()
        };
        let claims = crate::verifier::check(&jws, &key, &validation, now, None, &[]).map_err(|e| bad(e.code()))?;
        let token_endpoint = endpoint(self.issuer(), TOKEN_PATH);
        if !claims.aud.iter().any(|a| *a == token_endpoint || a == self.issuer()) {
            return Err(bad("aud must be the token endpoint URL or the issuer"));
        }
        if claims.exp > now.saturating_add(ASSERTION_MAX_AHEAD) {
            return Err(bad("exp is more than 5 minutes ahead"));
        }
        if claims.jti.len() > super::MAX_ID_LEN {
            return Err(bad("jti is too long"));
        }
        self.charge_client(&client, Flow::Api).await?;
        let mark = format!("assertion:{}:{}", client.id, claims.jti);
        if !self
            .store
            .mark_once(&mark, claims.exp.saturating_add(self.leeway), now)
            .await
            .map_err(AuthorityError::from)?
        {
            tracing::warn!(client = %client.id, "a client assertion was presented twice");
            return Err(bad("this assertion has been used already"));
        }
        Ok(client)
    }

    /// The key of `client` named `kid`, from its inline `jwks` or its
    /// `jwks_uri` (fetched and cached; an unknown kid refetches within
    /// [`RemoteJwks`]'s cooldown).
    async fn assertion_key(&self, client: &Client, kid: Option<&str>) -> Result<Arc<VerifyingKey>, OAuthError> {
        let no_key = || invalid_client("client_assertion: no key of this client verifies it");
        match &client.oauth.jwks {
            None => Err(invalid_client(
                "this client has no jwks or jwks_uri for private_key_jwt",
            )),
            Some(ClientJwks::Inline(set)) => {
                let keys = StaticKeys::from_jwks(set).map_err(|_| no_key())?;
                keys.key_for(kid).map_err(|_| no_key())
            }
            Some(ClientJwks::Uri(url)) => {
                let jwks = self.remote_jwks(client, url)?;
                jwks.key(kid).await.map_err(|_| no_key())
            }
        }
    }

    /// The cached [`RemoteJwks`] of `client` at `url`.
    fn remote_jwks(&self, client: &Client, url: &str) -> Result<Arc<RemoteJwks>, OAuthError> {
        let mut remote = self.oauth.remote.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(j) = remote.get(&client.id).filter(|j| j.url() == url) {
            return Ok(Arc::clone(j));
        }
        let jwks = RemoteJwks::new(url, JwksOptions::default(), Arc::clone(&self.clock))
            .map_err(|e| invalid_client(format!("jwks_uri: {e}")))?;
        let jwks = Arc::new(jwks);
        remote.insert(client.id.clone(), Arc::clone(&jwks));
        Ok(jwks)
    }

    /// `POST /oauth2/token`: authenticates the client, then grants; with a
    /// checked DPoP `proof` the access token is bound to its key.
    pub async fn oauth_token(
        &self,
        auth: &ClientAuth,
        grant: TokenGrant,
        ip: Option<IpAddr>,
        proof: Option<&crate::dpop::Proof>,
    ) -> Result<OAuthGrant, OAuthError> {
        let client = self.oauth_client(auth).await?;
        let grant_type = grant.grant_type();
        if !client.oauth.grant_types.contains(&grant_type) {
            return Err(OAuthError::UnauthorizedClient(format!(
                "this client may not use the grant type {} (its grant_types)",
                grant_type.as_str()
            )));
        }
        match grant {
            TokenGrant::ClientCredentials { scope, audience } => {
                // None: the client's audience. One audience or a list of one
                // are the same to the policy.
                let aud = (!audience.is_empty()).then_some(Audience::Many(audience));
                let req = TokenRequest {
                    sub: client.id.clone(),
                    aud,
                    scopes: scope,
                    ..TokenRequest::default()
                };
                let token = self.issue_bound(&client, req, proof).await?;
                Ok(OAuthGrant {
                    grant: Grant {
                        token,
                        refresh_token: None,
                    },
                    issued_token_type: None,
                })
            }
            TokenGrant::RefreshToken { refresh_token, scope } => {
                let grant = self
                    .refresh_as(&refresh_token, Presenter::Client(&client), scope.as_deref(), ip, proof)
                    .await
                    .map_err(OAuthError::grant)?;
                Ok(OAuthGrant {
                    grant,
                    issued_token_type: None,
                })
            }
            TokenGrant::TokenExchange(req) => self.token_exchange(&client, req, ip, proof).await,
        }
    }

    /// RFC 8693 token exchange for `caller`: a visitor token goes through
    /// [`exchange_as`](Authority::exchange_as) (single use, a new refresh
    /// family); any other token of this issuer that `caller` may see (as
    /// [`verify`](Authority::verify) decides) becomes a token for the same
    /// `sub`, cut to the caller's policy, narrowed to what is asked, and
    /// living no longer than the subject token.
    async fn token_exchange(
        &self,
        caller: &Client,
        req: ExchangeRequest,
        ip: Option<IpAddr>,
        proof: Option<&crate::dpop::Proof>,
    ) -> Result<OAuthGrant, OAuthError> {
        if ![TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT].contains(&req.subject_token_type.as_str()) {
            return Err(OAuthError::InvalidRequest(format!(
                "subject_token_type must be {TOKEN_TYPE_ACCESS_TOKEN} or {TOKEN_TYPE_JWT}"
            )));
        }
        let issued_token_type = match req.requested_token_type.as_deref() {
            None | Some(TOKEN_TYPE_ACCESS_TOKEN) => TOKEN_TYPE_ACCESS_TOKEN,
            Some(TOKEN_TYPE_JWT) => TOKEN_TYPE_JWT,
            Some(_) => {
                return Err(OAuthError::InvalidRequest(format!(
                    "requested_token_type must be {TOKEN_TYPE_ACCESS_TOKEN} or {TOKEN_TYPE_JWT}"
                )))
            }
        };
        if let Some(bad) = req.audience.iter().find(|a| !caller.audience_allowed(a)) {
            return Err(OAuthError::InvalidTarget(format!(
                "this client may not get tokens for the audience {bad:?}"
            )));
        }
        let claims = self
            .claims_of(&req.subject_token, None, &[])
            .await
            .map_err(OAuthError::subject)?;
        if claims.aud.contains(&self.exchange_audience) {
            if req.audience.iter().any(|a| *a != caller.audience) {
                return Err(OAuthError::InvalidTarget(
                    "a visitor token is exchanged for a token of the client's own audience".into(),
                ));
            }
            let grant = self
                .exchange_as(
                    &req.subject_token,
                    Presenter::Client(caller),
                    req.scope.as_deref(),
                    ip,
                    proof,
                )
                .await
                .map_err(|e| match e {
                    AuthorityError::GrantOfOtherClient
                    | AuthorityError::Policy(_)
                    | AuthorityError::RateLimited { .. } => OAuthError::from(e),
                    e => OAuthError::subject(e),
                })?;
            return Ok(OAuthGrant {
                grant,
                issued_token_type: Some(issued_token_type),
            });
        }
        if !self.visible_to(caller, &claims) {
            return Err(OAuthError::InvalidRequest(
                "subject_token was neither issued to this client nor meant for one of its audiences".into(),
            ));
        }
        self.charge_client(caller, Flow::Exchange).await?;
        Self::admit(&self.store, &claims, false, self.leeway, self.clock.now())
            .await
            .map_err(OAuthError::subject)?;
        let identity = Identity::from_visitor(&claims).cut_to(caller);
        if let Some(asked) = &req.scope {
            if let Some(extra) = asked.iter().find(|s| !identity.scopes.contains(s)) {
                return Err(OAuthError::InvalidScope(format!(
                    "the scope {extra:?} is not in the subject token, or not this client's to grant"
                )));
            }
        }
        let identity = Identity {
            scopes: req.scope.unwrap_or(identity.scopes),
            ..identity
        };
        let mut spec = identity.token_spec(caller, self.limits);
        if !req.audience.is_empty() {
            spec.aud = req.audience;
        }
        // Never outlives the token it came from.
        let left = claims.exp.saturating_sub(self.clock.now());
        spec.ttl = spec.ttl.min(left).max(1);
        Self::dpop_allowed(caller, proof)?;
        super::dpop::bind(&mut spec, proof);
        let token = self.mint(caller, spec).await?;
        Ok(OAuthGrant {
            grant: Grant {
                token,
                refresh_token: None,
            },
            issued_token_type: Some(issued_token_type),
        })
    }

    /// Whether `caller` may see a token with these claims: issued to it, or
    /// meant for one of its audiences ([`verify`](Authority::verify)'s rule).
    fn visible_to(&self, caller: &Client, claims: &Claims) -> bool {
        claims.client_id() == Some(caller.id.as_str()) || claims.aud.iter().any(|a| caller.audience_allowed(a))
    }

    /// `POST /oauth2/introspect` (RFC 7662): active only for a token this
    /// service issued, valid now, not revoked, that the caller may see. A
    /// refresh token is active to the client it was issued to only, while
    /// it could be spent (see `introspect_refresh`).
    /// An unreachable store is an error, never a guess either way.
    ///
    /// `token_type_hint` is not needed: a refresh token and an access token
    /// cannot be mistaken for each other.
    pub async fn introspect(&self, auth: &ClientAuth, token: &str) -> Result<Introspection, OAuthError> {
        let caller = self.oauth_client(auth).await?;
        if token.len() == REFRESH_TOKEN_LEN {
            return self.introspect_refresh(&caller, token).await;
        }
        let claims = match self.claims_of(token, None, &[]).await {
            Ok(claims) => claims,
            Err(AuthorityError::Rejected(_)) => return Ok(Introspection::inactive()),
            Err(e) => return Err(e.into()),
        };
        if !self.visible_to(&caller, &claims) {
            return Ok(Introspection::inactive());
        }
        match Self::admit(&self.store, &claims, false, self.leeway, self.clock.now()).await {
            Ok(()) => Ok(Introspection::active(&claims)),
            Err(AuthorityError::Rejected(_)) => Ok(Introspection::inactive()),
            Err(e) => Err(e.into()),
        }
    }

    /// Introspection of a refresh token for `caller`: active while
    /// [`refresh_as`](Authority::refresh_as) would accept it from `caller`
    /// (issued to it, unspent, neither it nor its family expired or
    /// revoked, its subject not revoked since the family started), with
    /// the scopes a refresh would renew now. Nothing is spent.
    async fn introspect_refresh(&self, caller: &Client, token: &str) -> Result<Introspection, OAuthError> {
        let now = self.clock.now();
        let Some(record) = crate::refresh::live(&self.store, token, now)
            .await
            .map_err(AuthorityError::from)?
        else {
            return Ok(Introspection::inactive());
        };
        if record.client != caller.id {
            return Ok(Introspection::inactive());
        }
        if self
            .family_revoked(&caller.id, &record.sub, record.created_at)
            .await
            .map_err(AuthorityError::from)?
        {
            return Ok(Introspection::inactive());
        }
        let scopes = Identity::from_refresh(&record).cut_to(caller).scopes;
        Ok(Introspection::refresh(&record, self.issuer(), &scopes))
    }

    /// `POST /oauth2/revoke` (RFC 7009): revokes the caller's own access
    /// token (by its `jti`) or refresh token (its whole family, and the
    /// access tokens issued from it: they carry its id as `sid`), at once.
    /// Anything else (unknown, expired, another client's) is accepted and
    /// changes nothing, as the RFC asks.
    ///
    /// `token_type_hint` is not needed: a refresh token and a JWT cannot be
    /// mistaken for each other, so both kinds are always looked for.
    pub async fn revoke_token(&self, auth: &ClientAuth, token: &str) -> Result<(), OAuthError> {
        let caller = self.oauth_client(auth).await?;
        if token.len() == REFRESH_TOKEN_LEN {
            let found = match crate::refresh::peek(&self.store, token).await {
                Ok(record) => Some(record),
                Err(RefreshError::Invalid(_)) => None,
                Err(e) => return Err(AuthorityError::from(e).into()),
            };
            if let Some(record) = found {
                if record.client == caller.id {
                    self.revoke_family(&caller.id, &record.family, record.family_expires_at)
                        .await?;
                }
                return Ok(());
            }
        }
        let claims = match self.claims_of(token, None, &[]).await {
            Ok(claims) => claims,
            Err(AuthorityError::Rejected(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if claims.client_id() == Some(caller.id.as_str()) {
            self.revoke(&caller, &Revocation::Jti(claims.jti.clone())).await?;
            self.forget_opaque(token).await?;
            tracing::info!(client = %caller.id, jti = %claims.jti, "revoked");
        }
        Ok(())
    }
}
