//! The DPoP binding rules (RFC 9449): which tokens are bound to a key, and
//! what a bound token needs to be used.
//!
//! The stateless check of one proof is [`crate::dpop`]'s; this module adds
//! what needs the store and the policy:
//!
//! - a proof's `jti` is used once: marked in the store under a `dpop:` key
//!   (never colliding with token marks, `jti:`) for as long as its `iat`
//!   window accepts it; a store that cannot answer refuses the request
//!   (503), exactly as a token consume;
//! - a token request with a valid proof gets a token with
//!   `cnf: {"jkt": …}`; a client with `dpop = "required"` gets nothing
//!   without one;
//! - the refresh family of a public client (guest, `/v1/exchange`) started
//!   with a proof is bound to its key: refreshing needs a proof by the same
//!   key, checked before the refresh token is spent;
//! - using a token ([`Authority::admit_dpop`], shared by `/v1/verify` and the
//!   `Bearer` extractor): a bound token needs a proof by its key, for this
//!   request, with `ath` = its hash; an unbound token is not accepted under
//!   the `DPoP` scheme.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{Authority, AuthorityError};
use crate::claims::{Claims, CNF};
use crate::clients::Client;
use crate::config::DpopConfig;
use crate::dpop::{self, DpopError, DpopMode, DpopRules, Nonces, Proof, ProofRequest};
use crate::issuer::TokenSpec;
use crate::jose::alg::sha256;
use crate::jose::JoseError;
use crate::store::Store;

/// How a token was presented to a resource.
#[derive(Clone, Copy, Debug)]
pub enum Presentation<'a> {
    /// `Authorization: Bearer`, or `/v1/verify` without `dpop`.
    Bearer,
    /// `Authorization: DPoP` with this proof (its `access_token` is set by
    /// [`Authority::admit_dpop`]).
    Dpop(ProofRequest<'a>),
}

/// The authority's DPoP settings: the rules proofs are judged by, and the
/// URL clients address this service at.
#[derive(Clone, Debug)]
pub(super) struct DpopState {
    pub(super) rules: DpopRules,
    /// `dpop.external_url`, or the issuer: `htu` of the `/v1/*` and
    /// `/oauth2/*` endpoints is this plus their path.
    pub(super) base_url: String,
}

impl DpopState {
    pub(super) fn from_config(cfg: &DpopConfig, issuer: &str) -> Result<DpopState, JoseError> {
        let lifetime = i64::try_from(cfg.nonce_lifetime.as_secs()).unwrap_or(i64::MAX);
        let nonces = match &cfg.nonce_secret {
            Some(secret) => Nonces::from_secret(secret.as_bytes(), lifetime),
            None => Nonces::random(lifetime)?,
        };
        Ok(DpopState {
            rules: DpopRules {
                iat_window: i64::try_from(cfg.iat_window.as_secs()).unwrap_or(i64::MAX),
                require_nonce: cfg.require_nonce,
                nonces,
            },
            base_url: cfg
                .external_url
                .clone()
                .unwrap_or_else(|| issuer.to_owned())
                .trim_end_matches('/')
                .to_owned(),
        })
    }
}

/// The store key of a proof's single-use mark: `dpop:` and 128 bits of a
/// hash of the key's thumbprint and the `jti`, so that the `jti`s of two
/// keys never collide and what the store holds is bounded.
fn mark_key(proof: &Proof) -> String {
    let mut input = Vec::with_capacity(proof.jkt.len() + 1 + proof.jti.len());
    input.extend_from_slice(proof.jkt.as_bytes());
    input.push(0);
    input.extend_from_slice(proof.jti.as_bytes());
    format!("dpop:{}", URL_SAFE_NO_PAD.encode(&sha256(&input)[..16]))
}

/// Marks `proof`'s `jti` used until its `iat` window closes. A second use
/// is `invalid_dpop_proof`; a store that cannot answer is an error.
async fn spend<S: Store>(store: &S, proof: &Proof, window: i64, now: i64) -> Result<(), AuthorityError> {
    let until = proof
        .iat
        .saturating_add(window)
        .saturating_add(1)
        .max(now.saturating_add(1));
    if store.mark_once(&mark_key(proof), until, now).await? {
        Ok(())
    } else {
        Err(DpopError::Invalid("the proof's jti was used before".into()).into())
    }
}

/// `spec` bound to the key of `proof`, when there is one.
pub(super) fn bind(spec: &mut TokenSpec, proof: Option<&Proof>) {
    if let Some(p) = proof {
        spec.extra.insert(CNF.to_owned(), json!({ "jkt": p.jkt }));
    }
}

/// The claims a refresh family keeps: `claims`, and the key the family is
/// bound to when it is started by a page with a proof (a public client).
pub(super) fn family_claims(claims: &Map<String, Value>, proof: Option<&Proof>) -> Map<String, Value> {
    let mut out = claims.clone();
    if let Some(p) = proof {
        out.insert(CNF.to_owned(), json!({ "jkt": p.jkt }));
    }
    out
}

/// The key a refresh family is bound to, if it is.
fn family_jkt(claims: &Map<String, Value>) -> Option<&str> {
    let cnf = claims.get(CNF)?;
    Some(cnf.get("jkt").and_then(Value::as_str).unwrap_or_default())
}

impl Authority {
    /// The rules proofs are judged by here.
    pub fn dpop_rules(&self) -> &DpopRules {
        &self.dpop.rules
    }

    /// The URL a client addresses `path` of this service at: `htu` of its
    /// proofs (`dpop.external_url`, or the issuer, plus the path).
    pub fn dpop_url(&self, path: &str) -> String {
        format!("{}{path}", self.dpop.base_url)
    }

    /// The proof of a token request (`DPoP` header) to `path` with
    /// `method`: checked, and its `jti` spent. The token of the request is
    /// then bound to the proof's key.
    pub async fn dpop_proof(&self, proof: &str, method: &str, path: &str) -> Result<Proof, AuthorityError> {
        let now = self.clock.now();
        let url = self.dpop_url(path);
        let req = ProofRequest {
            proof,
            method,
            url: &url,
            access_token: None,
        };
        let checked = dpop::check(&req, &self.dpop.rules, now)?;
        spend(&self.store, &checked, self.dpop.rules.iat_window, now).await?;
        Ok(checked)
    }

    /// `client` may get a token with `proof` (or without one): a client with
    /// `dpop = "required"` gets nothing without.
    pub(super) fn dpop_allowed(client: &Client, proof: Option<&Proof>) -> Result<(), AuthorityError> {
        if client.oauth.dpop == DpopMode::Required && proof.is_none() {
            return Err(DpopError::Invalid(format!("client {} requires a DPoP proof", client.id)).into());
        }
        Ok(())
    }

    /// A refresh family bound to a key (see [`family_claims`]) is renewed
    /// only with a proof by that key.
    pub(super) fn dpop_refresh_allowed(
        family: &Map<String, Value>,
        proof: Option<&Proof>,
    ) -> Result<(), AuthorityError> {
        match (family_jkt(family), proof) {
            (None, _) => Ok(()),
            (Some(bound), Some(p)) if p.jkt == bound => Ok(()),
            (Some(_), Some(_)) => Err(DpopError::Invalid("the refresh token is bound to another key".into()).into()),
            (Some(_), None) => {
                Err(DpopError::Invalid("the refresh token is DPoP-bound: a proof is required".into()).into())
            }
        }
    }

    /// The DPoP rules of using a verified token, shared by `/v1/verify` and
    /// the `Bearer` extractor: a bound token (`cnf.jkt`) only with a proof
    /// by its key, for this request, carrying its hash (`ath`), whose `jti`
    /// is spent here; an unbound one only as a Bearer token. Call before a
    /// consume, so that a refused proof burns nothing.
    pub async fn admit_dpop<S: Store>(
        store: &S,
        rules: &DpopRules,
        claims: &Claims,
        token: &str,
        presented: Presentation<'_>,
        now: i64,
    ) -> Result<(), AuthorityError> {
        Self::dpop_presentation(claims, matches!(presented, Presentation::Dpop(_)))?;
        let (Some(jkt), Presentation::Dpop(req)) = (claims.cnf_jkt(), presented) else {
            return Ok(());
        };
        let req = ProofRequest {
            access_token: Some(token),
            ..req
        };
        let proof = dpop::check(&req, rules, now)?;
        if proof.jkt != jkt {
            return Err(DpopError::Invalid("the token is bound to another key".into()).into());
        }
        spend(store, &proof, rules.iat_window, now).await
    }

    /// How a verified token may be presented, before any proof is read: a
    /// bound one (`cnf.jkt`) only with `Authorization: DPoP`, an unbound one
    /// only as a Bearer token. Part of [`admit_dpop`](Authority::admit_dpop);
    /// on its own for a `Bearer` extractor that takes no DPoP at all.
    pub fn dpop_presentation(claims: &Claims, as_dpop: bool) -> Result<(), AuthorityError> {
        match (claims.cnf_jkt().is_some(), as_dpop) {
            (false, false) | (true, true) => Ok(()),
            (true, false) => Err(DpopError::Invalid(
                "the token is DPoP-bound: present it with Authorization: DPoP and a proof".into(),
            )
            .into()),
            (false, true) => {
                Err(DpopError::Invalid("the token is not DPoP-bound: present it as a Bearer token".into()).into())
            }
        }
    }
}

impl From<DpopError> for AuthorityError {
    fn from(e: DpopError) -> Self {
        AuthorityError::Dpop(e)
    }
}
