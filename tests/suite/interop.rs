//! Interoperability with an independent implementation: `josekit` (over
//! OpenSSL) for RS256, PS256, ES256, EdDSA and HS256.
//!
//! josekit verifies what we sign knowing only the JWK we publish; we verify
//! what josekit signs with the same fixture keys, knowing only our JWK; the
//! public members we publish are the ones josekit derives from the private
//! key, so the `kid` (the RFC 7638 thumbprint) is the same whoever computes it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jwk::KeyPair;
use josekit::jws::{JwsHeader, JwsSigner, JwsVerifier};
use tokensmith::jose::alg::{hmac_sha256, sha256};
use tokensmith::jose::{jws, Algorithm, JoseError, Jwk, SigningKey, VerifyingKey};

use crate::common::{fixture, pkcs8};

const PAYLOAD: &[u8] = br#"{"iss":"https://issuer.example","sub":"alice","exp":4102444800}"#;

/// The fixture (file stem) holding the private key for `alg`.
fn stem(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 | Algorithm::PS256 => "rsa2048",
        Algorithm::ES256 => "p256",
        Algorithm::EdDSA => "ed25519",
        Algorithm::HS256 => unreachable!("HS256 has no key file"),
    }
}

fn our_signer(alg: Algorithm) -> SigningKey {
    SigningKey::from_pkcs8(alg, &pkcs8(stem(alg))).unwrap()
}

/// The JWK we publish for `key`, as JSON text.
fn published_jwk(key: &SigningKey) -> String {
    serde_json::to_string(&Jwk::from_public(key.algorithm(), key.public_key())).unwrap()
}

fn josekit_verifier(alg: Algorithm, jwk: &josekit::jwk::Jwk) -> Box<dyn JwsVerifier> {
    match alg {
        Algorithm::RS256 => Box::new(josekit::jws::RS256.verifier_from_jwk(jwk).unwrap()),
        Algorithm::PS256 => Box::new(josekit::jws::PS256.verifier_from_jwk(jwk).unwrap()),
        Algorithm::ES256 => Box::new(josekit::jws::ES256.verifier_from_jwk(jwk).unwrap()),
        Algorithm::EdDSA => Box::new(josekit::jws::EdDSA.verifier_from_jwk(jwk).unwrap()),
        Algorithm::HS256 => unreachable!(),
    }
}

/// josekit's signer for `alg` from the fixture's PEM, or its PKCS#8 DER when `der`.
fn josekit_signer(alg: Algorithm, der: bool) -> Box<dyn JwsSigner> {
    let file = if der {
        pkcs8(stem(alg))
    } else {
        fixture(&format!("{}.pem", stem(alg)))
    };
    macro_rules! load {
        ($alg:expr) => {
            Box::new(
                if der {
                    $alg.signer_from_der(&file)
                } else {
                    $alg.signer_from_pem(&file)
                }
                .unwrap(),
            )
        };
    }
    match alg {
        Algorithm::RS256 => load!(josekit::jws::RS256),
        // josekit's PS256 loader takes only keys marked RSA-PSS in their
        // PKCS#8; an rsaEncryption key reaches it through its private JWK.
        Algorithm::PS256 => {
            use josekit::jwk::alg::rsa::RsaKeyPair;
            let pair = if der {
                RsaKeyPair::from_der(&file)
            } else {
                RsaKeyPair::from_pem(&file)
            }
            .unwrap();
            Box::new(josekit::jws::PS256.signer_from_jwk(&pair.to_jwk_private_key()).unwrap())
        }
        Algorithm::ES256 => load!(josekit::jws::ES256),
        Algorithm::EdDSA => load!(josekit::jws::EdDSA),
        Algorithm::HS256 => unreachable!(),
    }
}

/// josekit's own public JWK for the fixture key of `alg`.
fn josekit_public_jwk(alg: Algorithm) -> josekit::jwk::Jwk {
    let der = pkcs8(stem(alg));
    match alg {
        Algorithm::RS256 => josekit::jws::RS256.key_pair_from_der(&der).unwrap().to_jwk_public_key(),
        Algorithm::PS256 => josekit::jws::PS256.key_pair_from_der(&der).unwrap().to_jwk_public_key(),
        Algorithm::ES256 => josekit::jws::ES256.key_pair_from_der(&der).unwrap().to_jwk_public_key(),
        Algorithm::EdDSA => josekit::jws::EdDSA.key_pair_from_der(&der).unwrap().to_jwk_public_key(),
        Algorithm::HS256 => unreachable!(),
    }
}

#[test]
fn josekit_verifies_our_tokens_knowing_only_our_published_jwk() {
    for alg in Algorithm::ASYMMETRIC {
        let signer = our_signer(alg);
        let jwk_text = published_jwk(&signer);
        let jwk = josekit::jwk::Jwk::from_bytes(jwk_text.as_bytes()).unwrap();
        assert!(jwk.parameter("d").is_none(), "{alg}: the published JWK is public");
        let verifier = josekit_verifier(alg, &jwk);

        let kid = jwk.key_id().unwrap().to_owned();
        let token = jws::sign(&jws::header_segment(alg, &kid), PAYLOAD, &signer).unwrap();
        let (payload, header) = josekit::jws::deserialize_compact(&token, &*verifier).unwrap();
        assert_eq!(payload, PAYLOAD, "{alg}");
        assert_eq!(header.algorithm(), Some(alg.as_str()));
        assert_eq!(header.key_id(), Some(kid.as_str()));
        assert_eq!(header.token_type(), Some("JWT"));

        // Control: josekit is not accepting anything.
        let tampered = token.replacen(&URL_SAFE_NO_PAD.encode(PAYLOAD), &URL_SAFE_NO_PAD.encode(b"{}"), 1);
        assert!(
            josekit::jws::deserialize_compact(&tampered, &*verifier).is_err(),
            "{alg}"
        );
    }
}

#[test]
fn we_verify_josekit_tokens_signed_with_the_same_keys_from_pem_and_der() {
    for alg in Algorithm::ASYMMETRIC {
        let ours = Jwk::from_public(alg, our_signer(alg).public_key());
        let key = ours.verifying_key().unwrap();
        for der in [false, true] {
            let signer = josekit_signer(alg, der);
            let mut header = JwsHeader::new();
            header.set_token_type("JWT");
            header.set_key_id(ours.kid.clone().unwrap());
            let token = josekit::jws::serialize_compact(PAYLOAD, &header, &*signer).unwrap();

            let decoded = jws::decode(&token).unwrap();
            assert_eq!(decoded.header.alg, alg.as_str());
            assert_eq!(decoded.header.kid, ours.kid);
            assert_eq!(decoded.header.typ.as_deref(), Some("JWT"));
            assert_eq!(jws::verify(&token, &key).unwrap(), PAYLOAD, "{alg} der={der}");
        }
    }
}

#[test]
fn a_josekit_token_does_not_verify_under_a_different_alg_for_the_same_rsa_key() {
    let token =
        josekit::jws::serialize_compact(PAYLOAD, &JwsHeader::new(), &*josekit_signer(Algorithm::PS256, false)).unwrap();
    let rs256 = our_signer(Algorithm::RS256).verifying_key().unwrap();
    assert!(matches!(
        jws::verify(&token, &rs256),
        Err(JoseError::AlgMismatch { .. })
    ));
    let ps256 = our_signer(Algorithm::PS256).verifying_key().unwrap();
    assert_eq!(jws::verify(&token, &ps256).unwrap(), PAYLOAD);
}

#[test]
fn hs256_interoperates_both_ways_with_a_32_byte_secret() {
    let secret: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
    let ours = VerifyingKey::hmac(&secret).unwrap();

    // Ours to josekit: the issuer-side HS256 construction used by our tools.
    let input = format!(
        "{}.{}",
        jws::header_segment(Algorithm::HS256, "hs"),
        URL_SAFE_NO_PAD.encode(PAYLOAD)
    );
    let token = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(hmac_sha256(&secret, input.as_bytes()))
    );
    let verifier = josekit::jws::HS256.verifier_from_bytes(&secret).unwrap();
    let (payload, header) = josekit::jws::deserialize_compact(&token, &verifier).unwrap();
    assert_eq!(payload, PAYLOAD);
    assert_eq!(header.key_id(), Some("hs"));

    // josekit to ours.
    let signer = josekit::jws::HS256.signer_from_bytes(&secret).unwrap();
    let token = josekit::jws::serialize_compact(PAYLOAD, &JwsHeader::new(), &signer).unwrap();
    assert_eq!(jws::verify(&token, &ours).unwrap(), PAYLOAD);
    let other = VerifyingKey::hmac(&[0u8; 32]).unwrap();
    assert_eq!(jws::verify(&token, &other), Err(JoseError::BadSignature));
}

/// RFC 7638 §3.2: the required members, sorted, no white space, SHA-256.
fn thumbprint_of(jwk: &josekit::jwk::Jwk) -> String {
    let required: &[&str] = match jwk.key_type() {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        other => panic!("kty {other}"),
    };
    let members: BTreeMap<&str, &serde_json::Value> = required
        .iter()
        .map(|&name| (name, jwk.parameter(name).unwrap()))
        .collect();
    URL_SAFE_NO_PAD.encode(sha256(serde_json::to_string(&members).unwrap().as_bytes()))
}

#[test]
fn our_kid_is_the_rfc7638_thumbprint_of_the_public_key_josekit_derives() {
    // josekit has no thumbprint function: compute RFC 7638 over its JWK.
    for alg in Algorithm::ASYMMETRIC {
        let theirs = josekit_public_jwk(alg);
        let ours = Jwk::from_public(alg, our_signer(alg).public_key());
        for member in ["kty", "crv", "n", "e", "x", "y"] {
            let mine = serde_json::to_value(&ours).unwrap().get(member).cloned();
            assert_eq!(mine.as_ref(), theirs.parameter(member), "{alg}: member {member}");
        }
        assert_eq!(ours.kid.as_deref(), Some(thumbprint_of(&theirs).as_str()), "{alg}");
    }
}
