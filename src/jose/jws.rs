//! Compact JWS (RFC 7515 §7.1): strict decoding, signing, verification.
//!
//! Decoding refuses anything a lenient parser might read differently from
//! us: more or fewer than three parts, padding or characters outside the
//! base64url alphabet (and non-canonical trailing bits), a header that is not
//! one JSON object without duplicate members, a `crit` header (we implement no
//! extension, so RFC 7515 §4.1.11 says reject), and tokens over
//! [`MAX_TOKEN_LEN`]. Headers that name where to fetch a key (`jku`, `x5u`,
//! `jwk`, `x5c`) are never read. Verification pins `alg` to the key.
//!
//! The payload comes out as bytes: this layer knows nothing about claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::alg::{Algorithm, SigningKey, VerifyingKey};
use super::json::parse_object_split;
use super::JoseError;

/// The largest compact token accepted, in bytes (8 KiB).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The protected header members this crate reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The `alg` exactly as written; checked against the key, never trusted.
    pub alg: String,
    /// The key id: a name looked up in the verifier's own keys, nothing more.
    pub kid: Option<String>,
    /// The media type (`JWT` on tokens this crate signs); not checked on verify.
    pub typ: Option<String>,
}

/// A decoded, not yet verified, compact JWS.
#[derive(Debug)]
pub struct Jws<'a> {
    /// The protected header, parsed strictly.
    pub header: Header,
    /// The header's other members, parsed as strictly and never read here
    /// (see [`Jws::header_member`]).
    other: serde_json::Map<String, Value>,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

fn decode_part(part: &str, what: &'static str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JoseError::Malformed(format!("{what} is not unpadded base64url")))
}

/// The header members `decode` reads, in slot order.
const HEADER_NAMES: [&str; 4] = ["alg", "kid", "typ", "crit"];

fn optional_string(value: Option<Value>, name: &str) -> Result<Option<String>, JoseError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JoseError::Malformed(format!("header {name:?} is not a string"))),
    }
}

/// The three parts of a compact JWS, within the size cap.
fn split(token: &str) -> Result<(&str, &str, &str), JoseError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JoseError::TooLarge {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JoseError::Malformed("a compact JWS has exactly three parts".into()));
    };
    if h.is_empty() {
        return Err(JoseError::Malformed("the header is empty".into()));
    }
    Ok((h, p, s))
}

/// Splits and decodes a compact JWS without checking its signature.
pub fn decode(token: &str) -> Result<Jws<'_>, JoseError> {
    let (h, p, s) = split(token)?;
    // The members this layer reads are parsed into slots; any other member
    // (`jku`, `x5u`, `jwk`, `x5c` among them) is checked for strictness and
    // otherwise never looked at.
    let split = parse_object_split(&decode_part(h, "the header")?, "the header", &HEADER_NAMES)?;
    let [alg, kid, typ, crit] = split.slots;
    if crit.is_some() {
        return Err(JoseError::Malformed(
            "the crit header names extensions this verifier does not implement".into(),
        ));
    }
    let alg = match alg {
        Some(Value::String(a)) => a,
        Some(_) => return Err(JoseError::Malformed("header \"alg\" is not a string".into())),
        None => return Err(JoseError::Malformed("the header has no \"alg\"".into())),
    };
    let header = Header {
        alg,
        kid: optional_string(kid, "kid")?,
        typ: optional_string(typ, "typ")?,
    };
    let payload = decode_part(p, "the payload")?;
    let signature = decode_part(s, "the signature")?;
    Ok(Jws {
        header,
        other: split.rest,
        signing_input: &token[..h.len() + 1 + p.len()],
        payload,
        signature,
    })
}

/// [`decode`] for a token whose header segment (the text before its first
/// `.`) is byte for byte `segment`, which [`decode`] already turned into
/// `header`: the payload and signature are decoded, the header is not
/// again. Refuses a token whose header segment is not `segment`. The
/// header's other members are not kept ([`Jws::header_member`] is `None`):
/// the caller read what it needed when it decoded `segment`.
pub(crate) fn decode_with_header<'a>(token: &'a str, segment: &str, header: Header) -> Result<Jws<'a>, JoseError> {
    let (h, p, s) = split(token)?;
    if h != segment {
        return Err(JoseError::Malformed("not the header segment decoded before".into()));
    }
    let payload = decode_part(p, "the payload")?;
    let signature = decode_part(s, "the signature")?;
    Ok(Jws {
        header,
        other: serde_json::Map::new(),
        signing_input: &token[..h.len() + 1 + p.len()],
        payload,
        signature,
    })
}

impl Jws<'_> {
    /// Checks the signature with `key`. The header's `alg` must name the
    /// key's algorithm exactly; nothing else about the key comes from the token.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), JoseError> {
        if self.header.alg != key.algorithm().as_str() {
            return Err(JoseError::AlgMismatch {
                header: self.header.alg.clone(),
                key: key.algorithm(),
            });
        }
        key.verify(self.signing_input.as_bytes(), &self.signature)
    }

    /// A header member other than `alg`, `kid`, `typ` and `crit`, as parsed
    /// by [`decode`]: for a profile whose rules read more of the header (a
    /// DPoP proof's `jwk`), so that it is not parsed twice. Verification
    /// never looks at these.
    pub fn header_member(&self, name: &str) -> Option<&Value> {
        self.other.get(name)
    }

    /// The payload bytes; trust them only after [`Jws::verify`] succeeded.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the payload out, for the caller that has verified it.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }
}

/// Decodes and verifies in one step, returning the payload.
pub fn verify(token: &str, key: &VerifyingKey) -> Result<Vec<u8>, JoseError> {
    let jws = decode(token)?;
    jws.verify(key)?;
    Ok(jws.into_payload())
}

/// The base64url header segment for tokens signed with `alg` and `kid`,
/// computed once per key and reused for every token it signs.
pub fn header_segment(alg: Algorithm, kid: &str) -> String {
    header_segment_typ(alg, kid, "JWT")
}

/// [`header_segment`] with another `typ` (`at+jwt`, RFC 9068 §2.1).
pub fn header_segment_typ(alg: Algorithm, kid: &str, typ: &str) -> String {
    let header = serde_json::json!({ "alg": alg.as_str(), "typ": typ, "kid": kid });
    URL_SAFE_NO_PAD.encode(header.to_string())
}

/// Signs `payload` under a precomputed header segment and returns the
/// compact token. The header segment must have been made for `key`.
pub fn sign(header_segment: &str, payload: &[u8], key: &SigningKey) -> Result<String, JoseError> {
    let sig_len = match key.public_key() {
        super::PublicKey::Rsa { n, .. } => n.len(),
        _ => 64,
    };
    let mut token = String::with_capacity(header_segment.len() + 2 + payload.len() * 4 / 3 + 4 + sig_len * 4 / 3 + 4);
    token.push_str(header_segment);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn ed_key() -> SigningKey {
        SigningKey::generate(Algorithm::EdDSA, 0).unwrap().0
    }

    #[test]
    fn signs_and_verifies_and_pins_alg() {
        let key = ed_key();
        let hs = header_segment(Algorithm::EdDSA, "k1");
        let token = sign(&hs, br#"{"sub":"a"}"#, &key).unwrap();
        let v = key.verifying_key().unwrap();
        assert_eq!(verify(&token, &v).unwrap(), br#"{"sub":"a"}"#);
        let jws = decode(&token).unwrap();
        assert_eq!(jws.header.kid.as_deref(), Some("k1"));
        let other = VerifyingKey::hmac(&[1u8; 32]).unwrap();
        assert!(matches!(jws.verify(&other), Err(JoseError::AlgMismatch { .. })));
    }

    #[test]
    fn strict_structure() {
        let key = ed_key();
        let token = sign(&header_segment(Algorithm::EdDSA, "k"), b"{}", &key).unwrap();
        let v = key.verifying_key().unwrap();
        let (h, rest) = token.split_once('.').unwrap();
        for bad in [
            format!("{token}."),
            format!(".{token}"),
            h.to_owned(),
            format!("{h}.{rest}.x"),
            format!("{h}=.{rest}"),
            format!("{h}.{}", rest.replacen('.', "+.", 1)),
            format!(" {token}"),
        ] {
            assert!(verify(&bad, &v).is_err(), "{bad}");
        }
        let big = format!("{token}{}", "A".repeat(MAX_TOKEN_LEN));
        assert!(matches!(decode(&big), Err(JoseError::TooLarge { .. })));
    }

    /// A token decoded with a header already decoded from its segment is
    /// the one `decode` makes; another segment, a fourth part or a token
    /// over the cap is refused as by `decode`.
    #[test]
    fn decode_with_header_reuses_only_the_same_segment() {
        let key = ed_key();
        let hs = header_segment(Algorithm::EdDSA, "k");
        let token = sign(&hs, br#"{"sub":"a"}"#, &key).unwrap();
        let full = decode(&token).unwrap();
        let again = decode_with_header(&token, &hs, full.header.clone()).unwrap();
        assert_eq!(again.header, full.header);
        assert_eq!(again.payload(), full.payload());
        assert_eq!(again.signing_input, full.signing_input);
        again.verify(&key.verifying_key().unwrap()).unwrap();
        let other = header_segment(Algorithm::EdDSA, "k2");
        let refused = decode_with_header(&token, &other, full.header.clone());
        assert!(matches!(refused, Err(JoseError::Malformed(_))));
        for bad in [
            format!("{token}.x"),
            hs.clone(),
            format!("{token}{}", "A".repeat(MAX_TOKEN_LEN)),
        ] {
            assert!(decode_with_header(&bad, &hs, full.header.clone()).is_err(), "{bad}");
        }
        let forged = format!("{hs}.e30.{}", token.rsplit('.').next().unwrap());
        let jws = decode_with_header(&forged, &hs, full.header.clone()).unwrap();
        assert!(jws.verify(&key.verifying_key().unwrap()).is_err());
    }

    /// The cap is exact: a token of `MAX_TOKEN_LEN` bytes is decoded and
    /// verified, one of a byte more is refused before anything is parsed.
    #[test]
    fn tokens_are_taken_up_to_exactly_the_size_cap() {
        let key = ed_key();
        let v = key.verifying_key().unwrap();
        // The payload's length moves the token's by steps of 1 or 2 bytes,
        // the kid's by others: some pair lands exactly on the cap.
        let at_cap = (1..4)
            .flat_map(|k| (6_020..6_060).map(move |n| (k, n)))
            .map(|(k, n)| sign(&header_segment(Algorithm::EdDSA, &"k".repeat(k)), &vec![b'x'; n], &key).unwrap())
            .find(|t| t.len() == MAX_TOKEN_LEN)
            .expect("a token of exactly MAX_TOKEN_LEN bytes");
        assert!(verify(&at_cap, &v).is_ok());
        let over = format!("{at_cap}A");
        let err = decode(&over).unwrap_err();
        assert_eq!(
            err,
            JoseError::TooLarge {
                len: MAX_TOKEN_LEN + 1,
                max: MAX_TOKEN_LEN
            }
        );
        assert_eq!(err.to_string(), "token of 8193 bytes exceeds the 8192-byte limit");
    }

    /// Header members other than `alg`, `kid`, `typ` and `crit` are kept as
    /// parsed for a profile that reads them (a DPoP proof's `jwk`); the four
    /// this layer reads are not among them.
    #[test]
    fn other_header_members_are_kept_as_parsed() {
        let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let header = r#"{"alg":"EdDSA","typ":"dpop+jwt","jwk":{"kty":"OKP","crv":"Ed25519"}}"#;
        let t = format!("{}.{}.{}", enc(header), enc("{}"), enc("sig"));
        let jws = decode(&t).unwrap();
        assert_eq!(
            jws.header_member("jwk"),
            Some(&serde_json::json!({"kty": "OKP", "crv": "Ed25519"}))
        );
        assert_eq!(jws.header.typ.as_deref(), Some("dpop+jwt"));
        for absent in ["alg", "typ", "x5u"] {
            assert_eq!(jws.header_member(absent), None, "{absent}");
        }
    }

    /// `Jws::payload` hands the verifier exactly the decoded middle part,
    /// whatever its length (cargo-mutants replaced it with `[]` and `[0]`).
    #[test]
    fn payload_is_the_decoded_middle_part() {
        let key = ed_key();
        let hs = header_segment(Algorithm::EdDSA, "k");
        for payload in [&b""[..], b"\0", b"\x01", br#"{"sub":"a"}"#] {
            let token = sign(&hs, payload, &key).unwrap();
            let jws = decode(&token).unwrap();
            assert_eq!(jws.payload(), payload);
            assert_eq!(jws.into_payload(), payload);
        }
    }

    /// `sign` sizes the token in one allocation from the key's signature
    /// length: an RSA-2048 signature is 256 bytes, not the 64 of ES256 and
    /// EdDSA (cargo-mutants deleted the RSA arm and only the growth showed).
    #[test]
    fn sign_allocates_the_token_once_for_every_key_type() {
        for (alg, der) in crate::jose::FIXTURE_KEYS {
            let key = SigningKey::from_pkcs8(alg, der).unwrap();
            let token = sign(&header_segment(alg, "k"), &[b'x'; 300], &key).unwrap();
            assert!(verify(&token, &key.verifying_key().unwrap()).is_ok(), "{alg:?}");
            // The estimate rounds up by a few bytes per part; a second
            // allocation would at least double the capacity.
            let spare = token.capacity() - token.len();
            assert!(
                spare <= 16,
                "{alg:?}: {} bytes for a {}-byte token",
                token.capacity(),
                token.len()
            );
        }
    }

    #[test]
    fn crit_and_non_string_members_are_refused() {
        let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for header in [
            r#"{"alg":"EdDSA","crit":["exp"],"exp":1}"#,
            r#"{"alg":1}"#,
            r#"{"alg":"EdDSA","kid":7}"#,
            r#"{"kid":"k"}"#,
            r#"{"alg":"EdDSA","alg":"EdDSA"}"#,
        ] {
            let t = format!("{}.{}.{}", enc(header), enc("{}"), enc("sig"));
            assert!(matches!(decode(&t), Err(JoseError::Malformed(_))), "{header}");
        }
    }
}
