//! JSON Web Keys (RFC 7517) and their RFC 7638 thumbprints.
//!
//! Only public keys are written, and a JWK that carries private members is
//! refused when read: a JWKS is public, and a private key found in one is a
//! leak somewhere else that must not be used.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::alg::{sha256, Algorithm, PublicKey, VerifyingKey};
use super::JoseError;

/// Members that only a private (or symmetric) key has.
const PRIVATE_MEMBERS: [&str; 9] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"];

/// One JSON Web Key. Unknown members are kept so that a round trip loses
/// nothing, but they are never interpreted (`x5u`, `x5c` are not followed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Jwk {
    /// The key type: `RSA`, `EC` or `OKP`.
    pub kty: String,
    /// `use`: `sig` for signing keys; keys for other uses are skipped.
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// The one algorithm the key is for (`RS256`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// The key id; for keys of this crate, the RFC 7638 thumbprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The curve of an `EC` or `OKP` key: `P-256`, `Ed25519`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// RSA modulus, base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent, base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC x coordinate, or the Ed25519 public key, base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate, base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Every other member, kept as read. Only `key_ops` (which must allow
    /// `verify`) and private members (refused) are looked at.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// A JWK Set: `{"keys": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JwkSet {
    /// The keys, in the issuer's order (newest first for this crate's).
    pub keys: Vec<Jwk>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn member<'a>(v: &'a Option<String>, name: &str) -> Result<&'a str, JoseError> {
    v.as_deref()
        .ok_or_else(|| JoseError::InvalidKey(format!("JWK has no {name:?}")))
}

fn decode_member(v: &Option<String>, name: &str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD
        .decode(member(v, name)?)
        .map_err(|_| JoseError::InvalidKey(format!("JWK member {name:?} is not base64url")))
}

fn fixed32(v: &Option<String>, name: &str) -> Result<[u8; 32], JoseError> {
    decode_member(v, name)?
        .try_into()
        .map_err(|_| JoseError::InvalidKey(format!("JWK member {name:?} is not 32 bytes")))
}

impl Jwk {
    /// The public JWK of `public` for signing with `alg`, with `use: sig`
    /// and `kid` set to the RFC 7638 thumbprint.
    pub fn from_public(alg: Algorithm, public: &PublicKey) -> Jwk {
        let mut jwk = Jwk {
            kty: alg.key_type().to_owned(),
            use_: Some("sig".to_owned()),
            alg: Some(alg.as_str().to_owned()),
            kid: None,
            crv: None,
            n: None,
            e: None,
            x: None,
            y: None,
            other: BTreeMap::new(),
        };
        match public {
            PublicKey::Rsa { n, e } => {
                jwk.n = Some(b64(n));
                jwk.e = Some(b64(e));
            }
            PublicKey::P256 { x, y } => {
                jwk.crv = Some("P-256".to_owned());
                jwk.x = Some(b64(x));
                jwk.y = Some(b64(y));
            }
            PublicKey::Ed25519(x) => {
                jwk.crv = Some("Ed25519".to_owned());
                jwk.x = Some(b64(x));
            }
        }
        jwk.kid = jwk.thumbprint().ok();
        jwk
    }

    /// The RFC 7638 SHA-256 thumbprint: the required members in
    /// lexicographic order, no white space, hashed, base64url.
    pub fn thumbprint(&self) -> Result<String, JoseError> {
        Ok(b64(&sha256(self.thumbprint_input()?.as_bytes())))
    }

    /// The JSON whose SHA-256 is the [`thumbprint`](Jwk::thumbprint): the
    /// key type's required public members, in lexicographic order, without
    /// whitespace (RFC 7638 §3.2). Two JWKs with the same input are the same
    /// public key.
    pub fn thumbprint_input(&self) -> Result<String, JoseError> {
        let s = |v: &Option<String>, name: &str| -> Result<String, JoseError> {
            Ok(serde_json::to_string(member(v, name)?).unwrap_or_default())
        };
        let canonical = match self.kty.as_str() {
            "RSA" => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, s(&self.e, "e")?, s(&self.n, "n")?),
            "EC" => format!(
                r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
                s(&self.crv, "crv")?,
                s(&self.x, "x")?,
                s(&self.y, "y")?
            ),
            "OKP" => format!(
                r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
                s(&self.crv, "crv")?,
                s(&self.x, "x")?
            ),
            other => return Err(JoseError::InvalidKey(format!("no thumbprint for kty {other:?}"))),
        };
        Ok(canonical)
    }

    /// True when the key may verify signatures: its `use` is `sig` or absent,
    /// and its `key_ops`, if present, lists `verify` (RFC 7517 §4.2, §4.3).
    pub fn is_for_signing(&self) -> bool {
        let use_ok = self.use_.as_deref().is_none_or(|u| u == "sig");
        let ops_ok = match self.other.get("key_ops") {
            None => true,
            Some(Value::Array(ops)) => ops.iter().any(|op| op.as_str() == Some("verify")),
            Some(_) => false,
        };
        use_ok && ops_ok
    }

    /// The algorithm this key verifies: its `alg` member, or the only one its
    /// type allows (an RSA key without `alg` is taken as RS256, as OpenID
    /// Connect providers publish them).
    pub fn algorithm(&self) -> Result<Algorithm, JoseError> {
        if let Some(name) = &self.alg {
            let alg = Algorithm::from_name(name).ok_or_else(|| JoseError::UnsupportedAlg(name.clone()))?;
            if alg.key_type() != self.kty {
                return Err(JoseError::InvalidKey(format!(
                    "alg {name} does not fit kty {:?}",
                    self.kty
                )));
            }
            return Ok(alg);
        }
        match (self.kty.as_str(), self.crv.as_deref()) {
            ("RSA", _) => Ok(Algorithm::RS256),
            ("EC", Some("P-256")) => Ok(Algorithm::ES256),
            ("OKP", Some("Ed25519")) => Ok(Algorithm::EdDSA),
            (kty, crv) => Err(JoseError::InvalidKey(format!(
                "unsupported key type {kty:?} / curve {crv:?}"
            ))),
        }
    }

    /// True when the JWK carries members only a private or symmetric key has.
    pub fn has_private_members(&self) -> bool {
        PRIVATE_MEMBERS.iter().any(|m| self.other.contains_key(*m))
    }

    /// The public key components. Refuses private members, unknown curves,
    /// and coordinates of the wrong length.
    pub fn public_key(&self) -> Result<PublicKey, JoseError> {
        if let Some(name) = PRIVATE_MEMBERS.iter().find(|m| self.other.contains_key(**m)) {
            return Err(JoseError::InvalidKey(format!(
                "JWK carries the private member {name:?}"
            )));
        }
        match (self.kty.as_str(), self.crv.as_deref()) {
            ("RSA", _) => Ok(PublicKey::Rsa {
                n: decode_member(&self.n, "n")?,
                e: decode_member(&self.e, "e")?,
            }),
            ("EC", Some("P-256")) => Ok(PublicKey::P256 {
                x: fixed32(&self.x, "x")?,
                y: fixed32(&self.y, "y")?,
            }),
            ("OKP", Some("Ed25519")) => Ok(PublicKey::Ed25519(fixed32(&self.x, "x")?)),
            (kty, crv) => Err(JoseError::InvalidKey(format!(
                "unsupported key type {kty:?} / curve {crv:?}"
            ))),
        }
    }

    /// A verifier pinned to this key's algorithm. A key published for
    /// another purpose (`use: enc`, `key_ops` without `verify`) is refused.
    pub fn verifying_key(&self) -> Result<VerifyingKey, JoseError> {
        if !self.is_for_signing() {
            return Err(JoseError::InvalidKey(
                "JWK is not for signatures: its use or key_ops excludes verify".into(),
            ));
        }
        VerifyingKey::from_public(self.algorithm()?, &self.public_key()?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// RFC 7638 §3.1.
    #[test]
    fn rfc7638_thumbprint() {
        let jwk: Jwk = serde_json::from_str(
            r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
        )
        .unwrap();
        assert_eq!(jwk.thumbprint().unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(jwk.algorithm().unwrap(), Algorithm::RS256);
        jwk.verifying_key().unwrap();
    }

    #[test]
    fn private_members_and_mismatched_algs_are_refused() {
        let (key, _) = crate::jose::SigningKey::generate(Algorithm::EdDSA, 0).unwrap();
        let good = Jwk::from_public(Algorithm::EdDSA, key.public_key());
        good.verifying_key().unwrap();
        let mut private = good.clone();
        private.other.insert("d".into(), Value::String("AAAA".into()));
        assert!(private.verifying_key().is_err());
        let mut wrong_alg = good.clone();
        wrong_alg.alg = Some("RS256".into());
        assert!(wrong_alg.verifying_key().is_err());
        let mut hs = good.clone();
        hs.alg = Some("HS256".into());
        assert!(hs.verifying_key().is_err());
        assert!(!good.has_private_members());
        for name in PRIVATE_MEMBERS {
            let mut private = good.clone();
            private.other.insert(name.into(), Value::String("AAAA".into()));
            assert!(private.has_private_members(), "{name}");
            assert!(private.public_key().is_err(), "{name}");
        }
    }

    /// A key's JWK gives back that key, component for component, for every
    /// key type, and verifies its signatures.
    #[test]
    fn public_keys_round_trip_through_their_jwk() {
        for (alg, der) in crate::jose::FIXTURE_KEYS {
            let key = crate::jose::SigningKey::from_pkcs8(alg, der).unwrap();
            let jwk = Jwk::from_public(alg, key.public_key());
            assert_eq!(&jwk.public_key().unwrap(), key.public_key(), "{alg}");
            assert_eq!(jwk.kid, Some(jwk.thumbprint().unwrap()), "{alg}");
            let sig = key.sign(b"message").unwrap();
            jwk.verifying_key().unwrap().verify(b"message", &sig).unwrap();
        }
    }

    /// `use` and `key_ops` decide whether a key may verify (RFC 7517 §4.2,
    /// §4.3): both must allow it.
    #[test]
    fn only_keys_for_signatures_verify() {
        let (key, _) = crate::jose::SigningKey::generate(Algorithm::EdDSA, 0).unwrap();
        let good = Jwk::from_public(Algorithm::EdDSA, key.public_key());
        let with = |use_: Option<&str>, ops: Option<Value>| {
            let mut jwk = good.clone();
            jwk.use_ = use_.map(str::to_owned);
            if let Some(ops) = ops {
                jwk.other.insert("key_ops".into(), ops);
            }
            jwk
        };
        let ops = |ops: &[&str]| Some(Value::from(ops.to_vec()));
        for (jwk, ok) in [
            (with(Some("sig"), None), true),
            (with(None, None), true),
            (with(Some("enc"), None), false),
            (with(None, ops(&["verify"])), true),
            (with(Some("sig"), ops(&["sign", "verify"])), true),
            (with(None, ops(&["sign"])), false),
            (with(None, ops(&[])), false),
            (with(None, Some(Value::from("verify"))), false),
            (with(Some("enc"), ops(&["verify"])), false),
        ] {
            assert_eq!(jwk.is_for_signing(), ok, "{jwk:?}");
            assert_eq!(jwk.verifying_key().is_ok(), ok, "{jwk:?}");
        }
    }
}
