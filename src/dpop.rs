//! DPoP proofs (RFC 9449 §4): is this proof JWT, for this request, made by
//! the key it carries?
//!
//! This module owns the stateless part of checking a proof: its shape
//! (`typ: dpop+jwt`, an asymmetric `alg` of [`DPOP_ALGS`], a public `jwk`
//! in the header), its signature by that key, the request it names (`htm`,
//! `htu` compared without query and fragment after RFC 3986 §6.2.2/§6.2.3
//! normalisation), its age (`iat` within the window of [`DpopRules`]), the
//! hash of the access token it comes with (`ath`), and server nonces
//! ([`Nonces`]: stateless, HMAC over a time bucket, so every instance that
//! shares the secret accepts every other's).
//!
//! It never touches the store: the single use of a proof's `jti` and the
//! rules binding a token to a key are the authority's
//! (`Authority::dpop_proof`, `Authority::admit_dpop`). Time is a parameter.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize as _;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::jose::alg::{hmac_sha256, random_bytes, sha256};
use crate::jose::json::parse_object_split;
use crate::jose::{jws, Algorithm, JoseError, Jwk};

mod keys;

/// The `alg`s a proof may use, in the order `algs="…"` lists them. Never
/// `none`, never a symmetric algorithm: the proof's key is public.
pub const DPOP_ALGS: [Algorithm; 4] = [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256, Algorithm::PS256];

/// [`DPOP_ALGS`] as the `algs` parameter of a `WWW-Authenticate: DPoP`
/// challenge and `dpop_signing_alg_values_supported`.
pub const DPOP_ALGS_TEXT: &str = "ES256 EdDSA RS256 PS256";

/// The `alg` a proof's header (or its `jwk`) names: one of [`DPOP_ALGS`],
/// or `Ed25519`, RFC 9864's fully-specified name of EdDSA with an Ed25519
/// key, the only Edwards curve verified here (what panva's `dpop` 2.x
/// writes for an Ed25519 key). Never `none`, never HS256.
fn proof_alg(name: &str) -> Option<Algorithm> {
    match name {
        "Ed25519" => Some(Algorithm::EdDSA),
        other => Algorithm::from_name(other).filter(|a| DPOP_ALGS.contains(a)),
    }
}

/// The default accepted distance of a proof's `iat` from now, in seconds.
pub const DEFAULT_IAT_WINDOW: i64 = 60;

/// The default lifetime of a server nonce's time bucket, in seconds: a nonce
/// is accepted during its bucket and the next.
pub const DEFAULT_NONCE_LIFETIME: i64 = 300;

/// The longest `jti` a proof may carry, in bytes.
pub const MAX_PROOF_JTI_LEN: usize = 256;

/// Whether a client's tokens may be, or must be, DPoP-bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DpopMode {
    /// A token request with a proof gets a bound token, one without a
    /// Bearer token (the default).
    #[default]
    Optional,
    /// Every token request must carry a proof.
    Required,
}

/// Why a proof was refused (RFC 9449 §7.1 error codes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpopError {
    /// `invalid_dpop_proof`: missing, malformed, badly signed, for another
    /// request, too old, replayed, or for another key or token.
    Invalid(String),
    /// `use_dpop_nonce`: the server wants a nonce, and this is a fresh one.
    UseNonce {
        /// The nonce to send back in the `DPoP-Nonce` header.
        nonce: String,
    },
}

impl DpopError {
    /// The RFC 9449 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            DpopError::Invalid(_) => "invalid_dpop_proof",
            DpopError::UseNonce { .. } => "use_dpop_nonce",
        }
    }

    fn invalid(why: impl Into<String>) -> DpopError {
        DpopError::Invalid(why.into())
    }
}

impl fmt::Display for DpopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpopError::Invalid(why) => write!(f, "invalid DPoP proof: {why}"),
            DpopError::UseNonce { .. } => f.write_str("the DPoP proof must carry the server's nonce (DPoP-Nonce)"),
        }
    }
}

impl std::error::Error for DpopError {}

/// Stateless server nonces: `base64url(bucket || HMAC(secret, bucket)[..16])`
/// with `bucket = now / lifetime`. A nonce is accepted in its own bucket and
/// the next one. Instances sharing the secret share the nonces.
#[derive(Clone)]
pub struct Nonces {
    key: [u8; 32],
    lifetime: i64,
}

impl fmt::Debug for Nonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nonces")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

const NONCE_MAC_LEN: usize = 16;

impl Nonces {
    /// Nonces made with `secret` (any length; it is hashed), in buckets of
    /// `lifetime` seconds (at least 1).
    pub fn from_secret(secret: &[u8], lifetime: i64) -> Nonces {
        let mut input = b"tokensmith dpop nonce\0".to_vec();
        input.extend_from_slice(secret);
        Nonces {
            key: sha256(&input),
            lifetime: lifetime.max(1),
        }
    }

    /// Nonces with a random secret: one instance only (another instance
    /// would refuse them).
    pub fn random(lifetime: i64) -> Result<Nonces, JoseError> {
        let mut secret = [0u8; 32];
        random_bytes(&mut secret)?;
        Ok(Nonces::from_secret(&secret, lifetime))
    }

    fn mac(&self, bucket: i64) -> [u8; NONCE_MAC_LEN] {
        let full = hmac_sha256(&self.key, &bucket.to_be_bytes());
        let mut out = [0u8; NONCE_MAC_LEN];
        out.copy_from_slice(&full[..NONCE_MAC_LEN]);
        out
    }

    /// The nonce to hand out at `now`.
    pub fn current(&self, now: i64) -> String {
        let bucket = now.div_euclid(self.lifetime);
        let mut bytes = bucket.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.mac(bucket));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Whether `nonce` is one of ours, of the current or the previous bucket.
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        if bytes.len() != 8 + NONCE_MAC_LEN {
            return false;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[..8]);
        let bucket = i64::from_be_bytes(b);
        let current = now.div_euclid(self.lifetime);
        if bucket != current && bucket != current.saturating_sub(1) {
            return false;
        }
        bool::from(self.mac(bucket).ct_eq(&bytes[8..]))
    }
}

/// How proofs are judged: the `iat` window and whether a server nonce is
/// required.
#[derive(Clone, Debug)]
pub struct DpopRules {
    /// A proof's `iat` may be this many seconds before or after now.
    pub iat_window: i64,
    /// Every proof must carry a nonce of [`DpopRules::nonces`].
    pub require_nonce: bool,
    /// The nonces handed out and accepted.
    pub nonces: Nonces,
}

impl DpopRules {
    /// The defaults: ±60 s, no nonce required, nonces with a random secret.
    pub fn new() -> Result<DpopRules, JoseError> {
        Ok(DpopRules {
            iat_window: DEFAULT_IAT_WINDOW,
            require_nonce: false,
            nonces: Nonces::random(DEFAULT_NONCE_LIFETIME)?,
        })
    }
}

/// A proof and the request it arrived with.
#[derive(Clone, Copy, Debug)]
pub struct ProofRequest<'a> {
    /// The `DPoP` header: a compact JWS.
    pub proof: &'a str,
    /// The request's method (`POST`).
    pub method: &'a str,
    /// The request's URL as the client addressed it (behind a proxy: the
    /// external URL); query and fragment are ignored.
    pub url: &'a str,
    /// The access token presented with the proof, when there is one: the
    /// proof's `ath` must be its hash.
    pub access_token: Option<&'a str>,
}

/// A proof that passed every stateless check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The RFC 7638 thumbprint of the proof's key: `cnf.jkt` of the tokens
    /// bound to it.
    pub jkt: String,
    /// The proof's `jti`: single use (the authority marks it).
    pub jti: String,
    /// The proof's `iat`.
    pub iat: i64,
}

/// `ath`: base64url(SHA-256(access token)).
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(access_token.as_bytes()))
}

/// `url` normalised for comparison as RFC 9449 §4.3 asks (scheme and host
/// lower case, default port dropped, dot segments removed, an empty path
/// as `/`), without query and fragment. Only `http` and `https`.
pub fn normalize_htu(url: &str) -> Result<String, DpopError> {
    let mut u = url::Url::parse(url).map_err(|e| DpopError::invalid(format!("htu is not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(DpopError::invalid("htu must be an http or https URL"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(DpopError::invalid("htu must not carry user information"));
    }
    u.set_query(None);
    u.set_fragment(None);
    Ok(u.to_string())
}

/// The claims a proof's rules read, in slot order: parsed once, strictly,
/// without a map entry for any of them.
const PROOF_CLAIMS: [&str; 6] = ["htm", "htu", "iat", "jti", "nonce", "ath"];

fn claim_str<'a>(value: &'a Option<Value>, name: &str) -> Result<&'a str, DpopError> {
    match value {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(DpopError::invalid(format!("{name} is not a string"))),
        None => Err(DpopError::invalid(format!("no {name} claim"))),
    }
}

/// The key in the proof's header (`jwk`, as [`jws::decode`] parsed it): a
/// public JWK of a type that fits `alg`.
fn header_key(jwk: Option<&Value>, alg: Algorithm) -> Result<Jwk, DpopError> {
    let jwk = jwk.ok_or_else(|| DpopError::invalid("no jwk in the header"))?;
    if !jwk.is_object() {
        return Err(DpopError::invalid("jwk is not a JSON object"));
    }
    let jwk = Jwk::deserialize(jwk).map_err(|e| DpopError::invalid(format!("jwk: {e}")))?;
    if jwk.has_private_members() {
        return Err(DpopError::invalid("the jwk carries a private key"));
    }
    if jwk.kty != alg.key_type() {
        return Err(DpopError::invalid(format!(
            "a {} key cannot make {alg} signatures",
            jwk.kty
        )));
    }
    if jwk.alg.as_deref().is_some_and(|a| proof_alg(a) != Some(alg)) {
        return Err(DpopError::invalid("the jwk's alg is not the proof's"));
    }
    Ok(jwk)
}

/// Whether the proof's `htu` names `expected`, the request's URL as
/// [`normalize_htu`] wrote it. A client that writes the URL as we do (every
/// SDK does) matches byte for byte without its query and fragment, and its
/// `htu` is not parsed: a URL in that form normalises to itself, so the
/// comparison of the normalised forms could only agree.
fn htu_matches(htu: &str, expected: &str) -> Result<bool, DpopError> {
    let bare = htu.split(['?', '#']).next().unwrap_or_default();
    if bare == expected {
        return Ok(true);
    }
    Ok(normalize_htu(htu)? == expected)
}

/// The header checks of a proof: `typ`, `alg`, and the `jwk` it carries.
fn check_header(jws: &jws::Jws<'_>) -> Result<(Algorithm, Jwk), DpopError> {
    if !jws
        .header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err(DpopError::invalid("typ must be dpop+jwt"));
    }
    let alg = proof_alg(&jws.header.alg).ok_or_else(|| {
        DpopError::invalid(format!(
            "alg {:?} is not one of {DPOP_ALGS_TEXT} Ed25519",
            jws.header.alg
        ))
    })?;
    Ok((alg, header_key(jws.header_member("jwk"), alg)?))
}

/// Checks `req` at `now` by `rules`: everything but the single use of its
/// `jti`, which the caller must mark (see the module docs).
pub fn check(req: &ProofRequest<'_>, rules: &DpopRules, now: i64) -> Result<Proof, DpopError> {
    let segment = req.proof.split('.').next().unwrap_or_default();
    let (jws, key) = match keys::PROOF_HEADERS.cached(segment) {
        // The same header text as a proof checked before: the same header,
        // key and thumbprint (see `keys`).
        Some(hit) => (
            jws::decode_with_header(req.proof, segment, hit.header.clone())
                .map_err(|e| DpopError::invalid(e.to_string()))?,
            hit,
        ),
        None => {
            let mut jws = jws::decode(req.proof).map_err(|e| DpopError::invalid(e.to_string()))?;
            let (alg, jwk) = check_header(&jws)?;
            // `Ed25519` is EdDSA by another name: the signature is checked
            // as EdDSA (with an OKP Ed25519 key only: `header_key` and
            // `public_key` see to it).
            alg.as_str().clone_into(&mut jws.header.alg);
            let key = keys::PROOF_HEADERS
                .keep(segment, &jws.header, alg, &jwk)
                .map_err(|e| DpopError::invalid(e.to_string()))?;
            (jws, key)
        }
    };
    jws.verify(&key.key)
        .map_err(|_| DpopError::invalid("the signature does not verify with the jwk"))?;
    let [htm, htu, iat, jti, nonce, ath_claim] = parse_object_split(jws.payload(), "the payload", &PROOF_CLAIMS)
        .map_err(|e| DpopError::invalid(e.to_string()))?
        .slots;

    if claim_str(&htm, "htm")? != req.method {
        return Err(DpopError::invalid("htm is not the request's method"));
    }
    if !htu_matches(claim_str(&htu, "htu")?, &normalize_htu(req.url)?)? {
        return Err(DpopError::invalid("htu is not the request's URL"));
    }
    let iat = iat
        .as_ref()
        .and_then(Value::as_i64)
        .ok_or_else(|| DpopError::invalid("iat is missing or not an integer"))?;
    if now.abs_diff(iat) > rules.iat_window.unsigned_abs() {
        return Err(DpopError::invalid(format!(
            "iat is {}s from now, outside the ±{}s window",
            now.saturating_sub(iat),
            rules.iat_window
        )));
    }
    let jti = claim_str(&jti, "jti")?;
    if jti.is_empty() || jti.len() > MAX_PROOF_JTI_LEN {
        return Err(DpopError::invalid(format!(
            "jti must be 1 to {MAX_PROOF_JTI_LEN} bytes"
        )));
    }
    if rules.require_nonce {
        let ok = match &nonce {
            Some(Value::String(n)) => rules.nonces.accepts(n, now),
            _ => false,
        };
        if !ok {
            return Err(DpopError::UseNonce {
                nonce: rules.nonces.current(now),
            });
        }
    }
    if let Some(token) = req.access_token {
        let expected = ath(token);
        match &ath_claim {
            Some(Value::String(a)) if bool::from(a.as_bytes().ct_eq(expected.as_bytes())) => {}
            Some(_) => return Err(DpopError::invalid("ath is not the hash of the access token")),
            None => {
                return Err(DpopError::invalid(
                    "no ath: a proof with an access token must carry its hash",
                ))
            }
        }
    }
    Ok(Proof {
        jkt: key.jkt.clone(),
        jti: jti.to_owned(),
        iat,
    })
}

/// Makes a proof with `key` for `method` and `url` at `iat` (and `ath` of
/// `access_token`, `nonce` when given): for the CLI helper, tests and
/// benches. `jti` is 128 random bits.
pub fn make_proof(
    key: &crate::jose::SigningKey,
    method: &str,
    url: &str,
    iat: i64,
    access_token: Option<&str>,
    nonce: Option<&str>,
) -> Result<String, JoseError> {
    let jwk = Jwk::from_public(key.algorithm(), key.public_key());
    let mut public = serde_json::to_value(&jwk).map_err(|e| JoseError::Malformed(e.to_string()))?;
    if let Some(o) = public.as_object_mut() {
        for m in ["kid", "use", "alg"] {
            o.remove(m);
        }
    }
    let header = serde_json::json!({ "typ": "dpop+jwt", "alg": key.algorithm().as_str(), "jwk": public });
    let mut jti = [0u8; 16];
    random_bytes(&mut jti)?;
    let mut claims = serde_json::json!({
        "jti": URL_SAFE_NO_PAD.encode(jti), "htm": method, "htu": url, "iat": iat,
    });
    if let Some(t) = access_token {
        claims["ath"] = Value::String(ath(t));
    }
    if let Some(n) = nonce {
        claims["nonce"] = Value::String(n.to_owned());
    }
    let segment = URL_SAFE_NO_PAD.encode(header.to_string());
    jws::sign(&segment, claims.to_string().as_bytes(), key)
}

#[cfg(test)]
mod tests;
