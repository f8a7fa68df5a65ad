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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::dpop::{make_proof, Nonces};
    use crate::jose::{Algorithm, Jwk, SigningKey};
    use crate::store::memory::MemoryStore;

    const NOW: i64 = 1_800_000_000;
    const URL: &str = "https://rs.test/orders";

    fn proof(jkt: &str, jti: &str) -> Proof {
        Proof {
            jkt: jkt.into(),
            jti: jti.into(),
            iat: NOW,
        }
    }

    fn rules() -> DpopRules {
        DpopRules {
            iat_window: 60,
            require_nonce: false,
            nonces: Nonces::from_secret(b"test", 300),
        }
    }

    /// A token whose `cnf.jkt` is `jkt` (none: unbound).
    fn claims(jkt: Option<&str>) -> Claims {
        let mut extra = Map::new();
        if let Some(jkt) = jkt {
            extra.insert(CNF.into(), json!({ "jkt": jkt }));
        }
        Claims {
            iss: "https://issuer.test".into(),
            sub: "alice".into(),
            aud: vec!["api".into()],
            iat: NOW,
            exp: NOW + 60,
            nbf: None,
            jti: "t1".into(),
            scopes: vec![],
            extra,
        }
    }

    fn new_key() -> (SigningKey, String) {
        let key = SigningKey::generate(Algorithm::EdDSA, 0).unwrap().0;
        let jkt = Jwk::from_public(key.algorithm(), key.public_key())
            .thumbprint()
            .unwrap();
        (key, jkt)
    }

    fn code(r: Result<(), AuthorityError>) -> &'static str {
        match r {
            Ok(()) => "ok",
            Err(e) => e.code(),
        }
    }

    /// A proof's mark is named by its key and its `jti` together, in 128
    /// bits: the same `jti` under two keys, or two `jti`s of one key, are
    /// two marks.
    #[test]
    fn a_mark_is_named_by_the_key_and_the_jti() {
        let a = mark_key(&proof("k1", "j1"));
        assert!(a.starts_with("dpop:"), "{a}");
        assert_eq!(a.len(), "dpop:".len() + 22);
        assert_eq!(a, mark_key(&proof("k1", "j1")));
        assert_ne!(a, mark_key(&proof("k2", "j1")));
        assert_ne!(a, mark_key(&proof("k1", "j2")));
        // The separator keeps ("k1j", "1") apart from ("k1", "j1").
        assert_ne!(a, mark_key(&proof("k1j", "1")));
    }

    /// An authority of `toml` on a memory store and a clock stopped at `NOW`.
    fn authority(dir: &std::path::Path, toml: &str) -> Authority {
        crate::authority::test_authority(dir, toml, &[Client::new("shop", "api")], NOW)
    }

    /// Proofs name the URL a client addresses: the issuer's, or
    /// `dpop.external_url` when this service is reached through another.
    #[test]
    fn a_proofs_url_is_the_issuers_or_the_external_one() {
        let t = tempfile::tempdir().unwrap();
        let direct = authority(&t.path().join("a"), r#"issuer = "https://issuer.test""#);
        assert_eq!(direct.dpop_url("/v1/guest"), "https://issuer.test/v1/guest");
        let proxied = authority(
            &t.path().join("b"),
            "issuer = \"https://issuer.test\"\n[dpop]\nexternal_url = \"https://edge.example.com/\"\n",
        );
        assert_eq!(
            proxied.dpop_url("/oauth2/token"),
            "https://edge.example.com/oauth2/token"
        );
    }

    /// A token request's proof is checked against this service's URL for
    /// the path, and spent.
    #[tokio::test]
    async fn a_token_requests_proof_is_checked_for_the_url_and_spent() {
        let t = tempfile::tempdir().unwrap();
        let a = authority(t.path(), r#"issuer = "https://issuer.test""#);
        let (key, jkt) = new_key();
        let p = make_proof(&key, "POST", "https://issuer.test/v1/guest", NOW, None, None).unwrap();
        let checked = a.dpop_proof(&p, "POST", "/v1/guest").await.unwrap();
        assert_eq!((checked.jkt.as_str(), checked.iat), (jkt.as_str(), NOW));
        let again = a.dpop_proof(&p, "POST", "/v1/guest").await.unwrap_err();
        assert_eq!(again.code(), "invalid_dpop_proof");
        let elsewhere = make_proof(&key, "POST", "https://issuer.test/v1/guest", NOW, None, None).unwrap();
        let e = a.dpop_proof(&elsewhere, "POST", "/v1/refresh").await.unwrap_err();
        assert_eq!(e.code(), "invalid_dpop_proof");
    }

    /// A proof's `jti` is spent once per key; the same `jti` of another key
    /// is another proof.
    #[tokio::test]
    async fn a_proof_is_spent_once() {
        let store = MemoryStore::new(100);
        assert_eq!(code(spend(&store, &proof("k1", "j1"), 60, NOW).await), "ok");
        assert_eq!(
            code(spend(&store, &proof("k1", "j1"), 60, NOW + 1).await),
            "invalid_dpop_proof"
        );
        assert_eq!(code(spend(&store, &proof("k2", "j1"), 60, NOW + 1).await), "ok");
    }

    /// A proof binds the token and, for a page, the family to its key; with
    /// no proof nothing is added.
    #[test]
    fn a_proof_binds_the_token_and_the_family_to_its_key() {
        let mut spec = TokenSpec::default();
        bind(&mut spec, None);
        assert!(spec.extra.is_empty());
        bind(&mut spec, Some(&proof("k1", "j1")));
        assert_eq!(Value::Object(spec.extra), json!({ "cnf": { "jkt": "k1" } }));

        let mut kept = Map::new();
        kept.insert("tier".into(), json!("gold"));
        assert_eq!(family_claims(&kept, None), kept);
        let bound = family_claims(&kept, Some(&proof("k1", "j1")));
        assert_eq!(
            Value::Object(bound.clone()),
            json!({ "tier": "gold", "cnf": { "jkt": "k1" } })
        );
        assert_eq!(family_jkt(&bound), Some("k1"));
        assert_eq!(family_jkt(&kept), None);
        // A cnf of another shape is bound to no key anyone has.
        kept.insert(CNF.into(), json!("k1"));
        assert_eq!(family_jkt(&kept), Some(""));
    }

    /// `dpop = "required"` refuses a request without a proof; the default
    /// takes either.
    #[test]
    fn a_client_that_requires_dpop_gets_nothing_without_a_proof() {
        let optional = Client::new("shop", "api");
        let mut required = optional.clone();
        required.oauth.dpop = DpopMode::Required;
        let p = proof("k1", "j1");
        assert_eq!(code(Authority::dpop_allowed(&optional, None)), "ok");
        assert_eq!(code(Authority::dpop_allowed(&optional, Some(&p))), "ok");
        assert_eq!(code(Authority::dpop_allowed(&required, Some(&p))), "ok");
        assert_eq!(code(Authority::dpop_allowed(&required, None)), "invalid_dpop_proof");
    }

    /// A bound family is renewed only with a proof by its key; an unbound
    /// one with or without a proof.
    #[test]
    fn a_bound_family_is_renewed_only_with_a_proof_by_its_key() {
        let unbound = Map::new();
        let bound = family_claims(&Map::new(), Some(&proof("k1", "j1")));
        let by = |jkt: &str| proof(jkt, "j2");
        assert_eq!(code(Authority::dpop_refresh_allowed(&unbound, None)), "ok");
        assert_eq!(code(Authority::dpop_refresh_allowed(&unbound, Some(&by("k2")))), "ok");
        assert_eq!(code(Authority::dpop_refresh_allowed(&bound, Some(&by("k1")))), "ok");
        for p in [None, Some(by("k2"))] {
            assert_eq!(
                code(Authority::dpop_refresh_allowed(&bound, p.as_ref())),
                "invalid_dpop_proof",
                "{p:?}"
            );
        }
    }

    /// A bound token only as `DPoP`, an unbound one only as `Bearer`.
    #[test]
    fn a_token_is_presented_by_the_scheme_of_its_binding() {
        let bound = claims(Some("k1"));
        let unbound = claims(None);
        assert_eq!(code(Authority::dpop_presentation(&bound, true)), "ok");
        assert_eq!(code(Authority::dpop_presentation(&unbound, false)), "ok");
        assert_eq!(code(Authority::dpop_presentation(&bound, false)), "invalid_dpop_proof");
        assert_eq!(code(Authority::dpop_presentation(&unbound, true)), "invalid_dpop_proof");
    }

    /// Using a bound token: a proof by its key, for this request, carrying
    /// the hash of this token, once. A proof by another key, or with the
    /// hash of another token, is refused.
    #[tokio::test]
    async fn a_bound_token_is_admitted_with_a_proof_by_its_key_once() {
        let store = MemoryStore::new(100);
        let rules = rules();
        let (key, jkt) = new_key();
        let (other, _) = new_key();
        let bound = claims(Some(&jkt));
        let admit = |proof: String, claims: Claims| {
            let store = &store;
            let rules = &rules;
            async move {
                let req = ProofRequest {
                    proof: &proof,
                    method: "GET",
                    url: URL,
                    access_token: None,
                };
                code(Authority::admit_dpop(store, rules, &claims, "the-token", Presentation::Dpop(req), NOW).await)
            }
        };
        let good = make_proof(&key, "GET", URL, NOW, Some("the-token"), None).unwrap();
        assert_eq!(admit(good.clone(), bound.clone()).await, "ok");
        assert_eq!(admit(good, bound.clone()).await, "invalid_dpop_proof", "spent");
        let by_other = make_proof(&other, "GET", URL, NOW, Some("the-token"), None).unwrap();
        assert_eq!(admit(by_other, bound.clone()).await, "invalid_dpop_proof");
        let other_token = make_proof(&key, "GET", URL, NOW, Some("another-token"), None).unwrap();
        assert_eq!(admit(other_token, bound.clone()).await, "invalid_dpop_proof");
        let no_ath = make_proof(&key, "GET", URL, NOW, None, None).unwrap();
        assert_eq!(admit(no_ath, bound.clone()).await, "invalid_dpop_proof");
        // An unbound token is refused under DPoP, admitted as Bearer.
        let fresh = make_proof(&key, "GET", URL, NOW, Some("the-token"), None).unwrap();
        assert_eq!(admit(fresh, claims(None)).await, "invalid_dpop_proof");
        let bearer = Authority::admit_dpop(&store, &rules, &claims(None), "t", Presentation::Bearer, NOW).await;
        assert_eq!(code(bearer), "ok");
    }
}
