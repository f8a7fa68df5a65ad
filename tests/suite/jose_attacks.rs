//! Known attacks on JWS verifiers, each aimed at one check of the jose layer.
//!
//! Every forged token here is otherwise as good as the attacker can make it
//! (signed, where a signature is possible, with a key whose use the attack
//! needs), so the test fails if the check it names were removed: `alg` pinned
//! to the key (`none`, HS256 with the RSA public key as secret), key headers
//! never followed (`jwk`, `jku`, `x5u`, `x5c`), `crit` refused, strict
//! base64url, exactly three segments, no duplicate header members, bounded
//! JSON nesting, and the 8 KiB size cap.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use josekit::jwk::KeyPair;
use tokensmith::jose::alg::hmac_sha256;
use tokensmith::jose::jws::{self, MAX_TOKEN_LEN};
use tokensmith::jose::{Algorithm, JoseError, Jwk, SigningKey, VerifyingKey};

use crate::common::pkcs8;

const PAYLOAD: &[u8] = br#"{"sub":"alice","admin":false}"#;
const FORGED_PAYLOAD: &[u8] = br#"{"sub":"alice","admin":true}"#;

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn key(alg: Algorithm, stem: &str) -> SigningKey {
    SigningKey::from_pkcs8(alg, &pkcs8(stem)).unwrap()
}

/// Our RS256 key (the victim's) and the attacker's own RS256 key.
fn ours() -> SigningKey {
    key(Algorithm::RS256, "rsa2048")
}

fn attackers() -> SigningKey {
    key(Algorithm::RS256, "rsa2048_b")
}

fn kid(key: &SigningKey) -> String {
    Jwk::from_public(key.algorithm(), key.public_key()).kid.unwrap()
}

/// A token whose header is exactly `header` (raw JSON text), signed by `key`.
fn signed_with_header(header: &str, payload: &[u8], key: &SigningKey) -> String {
    jws::sign(&b64(header), payload, key).unwrap()
}

/// A normal token from `key`, as the issuer makes them.
fn normal_token(key: &SigningKey, payload: &[u8]) -> String {
    jws::sign(&jws::header_segment(key.algorithm(), &kid(key)), payload, key).unwrap()
}

/// One verifier of each kind: RS256, PS256, ES256, EdDSA, HS256.
fn all_verifiers() -> Vec<VerifyingKey> {
    let mut keys: Vec<VerifyingKey> = [
        (Algorithm::RS256, "rsa2048"),
        (Algorithm::PS256, "rsa2048"),
        (Algorithm::ES256, "p256"),
        (Algorithm::EdDSA, "ed25519"),
    ]
    .into_iter()
    .map(|(alg, stem)| key(alg, stem).verifying_key().unwrap())
    .collect();
    keys.push(VerifyingKey::hmac(&[0x5a; 32]).unwrap());
    keys
}

#[test]
fn alg_none_in_any_capitalisation_is_refused_by_every_key_with_or_without_signature() {
    let genuine_signature = normal_token(&ours(), PAYLOAD).rsplit('.').next().unwrap().to_owned();
    for none in ["none", "None", "NONE", "nOnE"] {
        assert_eq!(Algorithm::from_name(none), None);
        let header = b64(format!(r#"{{"alg":"{none}","typ":"JWT"}}"#));
        for signature in ["", "c2ln", genuine_signature.as_str()] {
            let token = format!("{header}.{}.{signature}", b64(FORGED_PAYLOAD));
            for verifier in all_verifiers() {
                let err = jws::verify(&token, &verifier).unwrap_err();
                assert!(
                    matches!(&err, JoseError::AlgMismatch { header, .. } if header == none),
                    "{none} / {signature:?} / {verifier:?}: {err:?}"
                );
            }
        }
    }
}

#[test]
fn alg_in_the_wrong_case_is_not_the_keys_alg() {
    let ours = ours();
    let token = signed_with_header(r#"{"alg":"rs256"}"#, PAYLOAD, &ours);
    let err = jws::verify(&token, &ours.verifying_key().unwrap()).unwrap_err();
    assert!(matches!(err, JoseError::AlgMismatch { .. }), "{err:?}");
}

#[test]
fn an_empty_signature_is_refused_by_every_key() {
    let signers = [
        key(Algorithm::RS256, "rsa2048"),
        key(Algorithm::PS256, "rsa2048"),
        key(Algorithm::ES256, "p256"),
        key(Algorithm::EdDSA, "ed25519"),
    ];
    for signer in &signers {
        let token = normal_token(signer, PAYLOAD);
        let unsigned = &token[..=token.rfind('.').unwrap()];
        let verifier = signer.verifying_key().unwrap();
        jws::verify(&token, &verifier).unwrap();
        assert_eq!(
            jws::verify(unsigned, &verifier),
            Err(JoseError::BadSignature),
            "{signer:?}"
        );
    }
    let secret = [0x5a; 32];
    let hs = VerifyingKey::hmac(&secret).unwrap();
    let token = format!("{}.{}.", jws::header_segment(Algorithm::HS256, "k"), b64(PAYLOAD));
    assert_eq!(jws::verify(&token, &hs), Err(JoseError::BadSignature));
}

/// Every form in which an RSA public key is published, each a plausible
/// "secret" for a verifier that builds HS256 keys from whatever it holds.
fn rsa_public_key_forms(key: &SigningKey) -> Vec<(&'static str, Vec<u8>)> {
    let pair = josekit::jws::RS256.key_pair_from_der(pkcs8("rsa2048")).unwrap();
    let spki_pem = pair.to_pem_public_key();
    let pkcs1_pem = pair.to_traditional_pem_public_key();
    let ours = Jwk::from_public(key.algorithm(), key.public_key());
    let trimmed = |pem: &[u8]| String::from_utf8(pem.to_vec()).unwrap().trim_end().as_bytes().to_vec();
    vec![
        ("SPKI PEM", spki_pem.clone()),
        ("SPKI PEM without final newline", trimmed(&spki_pem)),
        ("PKCS#1 PEM", pkcs1_pem.clone()),
        ("PKCS#1 PEM without final newline", trimmed(&pkcs1_pem)),
        ("SPKI DER", pair.to_der_public_key()),
        ("PKCS#1 DER", pair.to_raw_public_key()),
        (
            "SPKI DER, standard base64",
            STANDARD.encode(pair.to_der_public_key()).into_bytes(),
        ),
        ("our JWK JSON", serde_json::to_vec(&ours).unwrap()),
        ("josekit's JWK JSON", pair.to_jwk_public_key().to_string().into_bytes()),
        (
            "n, raw",
            match key.public_key() {
                tokensmith::jose::PublicKey::Rsa { n, .. } => n.clone(),
                other => panic!("{other:?}"),
            },
        ),
    ]
}

#[test]
fn hs256_signed_with_the_rsa_public_key_as_secret_is_refused_by_the_rsa_key() {
    let ours = ours();
    let rsa_verifier = ours.verifying_key().unwrap();
    let header = jws::header_segment(Algorithm::HS256, &kid(&ours));
    let forms = rsa_public_key_forms(&ours);
    assert!(forms[0].1.starts_with(b"-----BEGIN PUBLIC KEY-----"));
    assert!(forms[2].1.starts_with(b"-----BEGIN RSA PUBLIC KEY-----"));
    for (form, secret) in forms {
        let input = format!("{header}.{}", b64(FORGED_PAYLOAD));
        let token = format!("{input}.{}", b64(hmac_sha256(&secret, input.as_bytes())));
        // The forgery is a genuine HS256 token under that secret...
        assert_eq!(
            jws::verify(&token, &VerifyingKey::hmac(&secret).unwrap()).unwrap(),
            FORGED_PAYLOAD
        );
        // ...and the RSA key refuses it for its alg, before any MAC is computed.
        let err = jws::verify(&token, &rsa_verifier).unwrap_err();
        assert_eq!(
            err,
            JoseError::AlgMismatch {
                header: "HS256".into(),
                key: Algorithm::RS256
            },
            "{form}"
        );
    }
}

#[test]
fn an_hs256_verifier_is_never_built_from_a_public_key() {
    let ours = ours();
    assert!(matches!(
        VerifyingKey::from_public(Algorithm::HS256, ours.public_key()),
        Err(JoseError::InvalidKey(_))
    ));
    let mut jwk = Jwk::from_public(Algorithm::RS256, ours.public_key());
    jwk.alg = Some("HS256".into());
    assert!(matches!(jwk.verifying_key(), Err(JoseError::InvalidKey(_))));
    jwk.kty = "oct".into();
    assert!(
        jwk.verifying_key().is_err(),
        "an oct JWK is a secret, never read from a JWKS"
    );
    assert!(SigningKey::from_pkcs8(Algorithm::HS256, &pkcs8("rsa2048")).is_err());
}

#[test]
fn a_jwk_published_for_encryption_cannot_verify() {
    let good = Jwk::from_public(Algorithm::RS256, ours().public_key());
    good.verifying_key().unwrap();
    let mut enc = good.clone();
    enc.use_ = Some("enc".into());
    assert!(matches!(enc.verifying_key(), Err(JoseError::InvalidKey(_))));
    let mut wrap = good.clone();
    wrap.other
        .insert("key_ops".into(), serde_json::json!(["encrypt", "wrapKey"]));
    assert!(matches!(wrap.verifying_key(), Err(JoseError::InvalidKey(_))));
    let mut verify = good;
    verify.other.insert("key_ops".into(), serde_json::json!(["verify"]));
    verify.verifying_key().unwrap();
}

#[test]
fn an_embedded_jwk_header_is_not_used_to_verify() {
    let (ours, attacker) = (ours(), attackers());
    let attacker_jwk = serde_json::to_string(&Jwk::from_public(Algorithm::RS256, attacker.public_key())).unwrap();
    for member in ["jwk", "x5c"] {
        let value = match member {
            "jwk" => attacker_jwk.clone(),
            _ => format!(r#"["{}"]"#, STANDARD.encode(b"attacker certificate")),
        };
        let header = format!(r#"{{"alg":"RS256","kid":"{}","{member}":{value}}}"#, kid(&ours));
        let forged = signed_with_header(&header, FORGED_PAYLOAD, &attacker);
        // The attacker's key accepts it, ours does not.
        jws::verify(&forged, &attacker.verifying_key().unwrap()).unwrap();
        assert_eq!(
            jws::verify(&forged, &ours.verifying_key().unwrap()),
            Err(JoseError::BadSignature)
        );
    }
}

#[test]
fn jku_and_x5u_headers_are_ignored_and_the_signature_must_still_be_ours() {
    let (ours, attacker) = (ours(), attackers());
    let verifier = ours.verifying_key().unwrap();
    for member in ["jku", "x5u"] {
        let header = format!(
            r#"{{"alg":"RS256","kid":"{}","{member}":"https://attacker.example/keys"}}"#,
            kid(&ours)
        );
        let forged = signed_with_header(&header, FORGED_PAYLOAD, &attacker);
        assert_eq!(
            jws::verify(&forged, &verifier),
            Err(JoseError::BadSignature),
            "{member}"
        );
        let genuine = signed_with_header(&header, PAYLOAD, &ours);
        assert_eq!(
            jws::verify(&genuine, &verifier).unwrap(),
            PAYLOAD,
            "{member} is ignored"
        );
    }
}

#[test]
fn a_crit_header_is_refused_even_when_the_signature_is_ours() {
    let ours = ours();
    let verifier = ours.verifying_key().unwrap();
    for header in [
        r#"{"alg":"RS256","crit":["exp"],"exp":1363284000}"#,
        r#"{"alg":"RS256","crit":["b64"],"b64":false}"#,
        r#"{"alg":"RS256","crit":[]}"#,
        r#"{"alg":"RS256","crit":"exp"}"#,
    ] {
        let token = signed_with_header(header, PAYLOAD, &ours);
        assert!(
            matches!(jws::verify(&token, &verifier), Err(JoseError::Malformed(_))),
            "{header}"
        );
    }
}

#[test]
fn padded_base64_is_refused_in_every_segment() {
    let ours = ours();
    let verifier = ours.verifying_key().unwrap();
    // 22 bytes of JSON: not a multiple of 3, so its segment would need padding.
    let payload = br#"{"sub":"alice","n":12}"#;
    let token = normal_token(&ours, payload);
    jws::verify(&token, &verifier).unwrap();
    let segments: Vec<&str> = token.split('.').collect();
    let mut padded_any = 0;
    for i in 0..3 {
        let pad = (4 - segments[i].len() % 4) % 4;
        let mut forms = vec![format!("{}=", segments[i]), format!("{}==", segments[i])];
        if pad > 0 {
            padded_any += 1;
            forms.push(format!("{}{}", segments[i], "=".repeat(pad)));
        }
        for form in forms {
            let mut parts = segments.clone();
            parts[i] = &form;
            let token = parts.join(".");
            assert!(
                matches!(jws::verify(&token, &verifier), Err(JoseError::Malformed(_))),
                "{token}"
            );
        }
    }
    assert!(
        padded_any >= 2,
        "the payload and the RSA signature segments need padding"
    );
}

#[test]
fn standard_base64_plus_and_slash_are_refused() {
    let ours = ours();
    let verifier = ours.verifying_key().unwrap();
    let token = normal_token(&ours, PAYLOAD);
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        signature.contains('-') && signature.contains('_'),
        "the fixture's RS256 signature has both"
    );
    for (url, standard) in [('-', "+"), ('_', "/")] {
        for (at, _) in token.match_indices(url) {
            let mut forged = token.clone();
            forged.replace_range(at..=at, standard);
            // The same bytes under standard base64: a lenient decoder would verify it.
            assert!(
                matches!(jws::verify(&forged, &verifier), Err(JoseError::Malformed(_))),
                "{forged}"
            );
        }
    }
}

#[test]
fn json_serialization_polyglots_are_refused() {
    let ours = ours();
    let verifier = ours.verifying_key().unwrap();
    let token = normal_token(&ours, PAYLOAD);
    let (h, rest) = token.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let evil = b64(FORGED_PAYLOAD);
    let flattened = format!(r#"{{"protected":"{h}","payload":"{p}","signature":"{s}"}}"#);
    let general = format!(r#"{{"payload":"{p}","signatures":[{{"protected":"{h}","signature":"{s}"}}]}}"#);
    let polyglots = [
        // CVE-2022-39227 shape: a JSON object whose first key is the compact
        // token's signing input, the real fields carrying another payload.
        format!(r#"{{"  {h}.{p}.":"","protected":"{h}","payload":"{evil}","signature":"{s}"}}"#),
        format!("{token}{flattened}"),
        format!("{token}.{flattened}"),
        format!("{token}{general}"),
        format!("{h}.{evil}.{s}{flattened}"),
        flattened,
        general,
    ];
    for polyglot in polyglots {
        assert!(
            matches!(jws::verify(&polyglot, &verifier), Err(JoseError::Malformed(_))),
            "{polyglot}"
        );
    }
}

#[test]
fn a_duplicate_header_member_is_refused_even_when_the_signature_is_ours() {
    let ours = ours();
    let verifier = ours.verifying_key().unwrap();
    for header in [
        r#"{"alg":"HS256","alg":"RS256"}"#,
        r#"{"alg":"RS256","alg":"RS256"}"#,
        r#"{"alg":"RS256","alg":"none"}"#,
        r#"{"alg":"RS256","\u0061lg":"RS256"}"#,
        r#"{"alg":"RS256","kid":"a","kid":"b"}"#,
    ] {
        let token = signed_with_header(header, PAYLOAD, &ours);
        assert!(
            matches!(jws::verify(&token, &verifier), Err(JoseError::Malformed(_))),
            "{header}"
        );
    }
}

fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn nested_objects(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

#[test]
fn ten_thousand_levels_of_json_nesting_are_an_error_not_a_stack_overflow() {
    let ours = ours();
    let verifier = ours.verifying_key().unwrap();
    for deep in [nested_arrays(10_000), nested_objects(10_000)] {
        // As a token, the header and the payload are both far over the cap
        // (the parser on its own: `jose::json`'s unit tests).
        let object = format!(r#"{{"alg":"RS256","x":{deep}}}"#);
        let in_header = signed_with_header(&object, PAYLOAD, &ours);
        let in_payload = normal_token(&ours, format!(r#"{{"sub":"a","x":{deep}}}"#).as_bytes());
        for token in [in_header, in_payload] {
            assert!(matches!(jws::decode(&token), Err(JoseError::TooLarge { .. })));
        }
    }
    // As deep as fits under the cap: refused by the parser's depth limit.
    for deep in [nested_arrays(2_800), nested_objects(800)] {
        let header = format!(r#"{{"alg":"RS256","x":{deep}}}"#);
        let token = signed_with_header(&header, PAYLOAD, &ours);
        assert!(token.len() <= MAX_TOKEN_LEN, "{}", token.len());
        assert!(matches!(jws::verify(&token, &verifier), Err(JoseError::Malformed(_))));
    }
}

/// A genuine EdDSA token of exactly `len` bytes.
fn token_of_len(key: &SigningKey, len: usize) -> String {
    const SIGNATURE_LEN: usize = 86; // 64 bytes, unpadded base64url
    for kid_len in 1..4 {
        let header = jws::header_segment(Algorithm::EdDSA, &"k".repeat(kid_len));
        let payload_len = len - header.len() - 2 - SIGNATURE_LEN;
        if payload_len % 4 == 1 {
            continue; // no byte string encodes to 4k + 1 characters
        }
        let filler = payload_len * 3 / 4 - br#"{"sub":"a","pad":""}"#.len();
        let payload = format!(r#"{{"sub":"a","pad":"{}"}}"#, "x".repeat(filler));
        let token = jws::sign(&header, payload.as_bytes(), key).unwrap();
        assert_eq!(token.len(), len);
        return token;
    }
    panic!("no token of {len} bytes");
}

#[test]
fn a_token_of_8_kib_is_accepted_and_one_byte_more_is_too_large() {
    let key = key(Algorithm::EdDSA, "ed25519");
    let verifier = key.verifying_key().unwrap();
    let at_cap = token_of_len(&key, MAX_TOKEN_LEN);
    assert_eq!((at_cap.len(), MAX_TOKEN_LEN), (8192, 8192));
    assert!(jws::verify(&at_cap, &verifier).is_ok());
    let over = token_of_len(&key, MAX_TOKEN_LEN + 1);
    assert_eq!(
        jws::verify(&over, &verifier),
        Err(JoseError::TooLarge { len: 8193, max: 8192 })
    );
}
