//! One test per rule of [`check`]: each fails if its check is removed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};

use super::*;
use crate::jose::SigningKey;

const NOW: i64 = 1_800_000_000;
const URL: &str = "https://auth.example.com/v1/guest";

fn key(alg: Algorithm) -> SigningKey {
    SigningKey::generate(alg, 2048).unwrap().0
}

fn rules() -> DpopRules {
    DpopRules {
        iat_window: 60,
        require_nonce: false,
        nonces: Nonces::from_secret(b"s", 300),
    }
}

fn public_jwk(key: &SigningKey) -> Value {
    let mut v = serde_json::to_value(Jwk::from_public(key.algorithm(), key.public_key())).unwrap();
    v.as_object_mut().unwrap().remove("kid");
    v
}

/// A proof of `header` and `claims` signed by `key` (as given: no checks).
fn forge(key: &SigningKey, header: Value, claims: Value) -> String {
    let segment = URL_SAFE_NO_PAD.encode(header.to_string());
    jws::sign(&segment, claims.to_string().as_bytes(), key).unwrap()
}

fn header(key: &SigningKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": key.algorithm().as_str(), "jwk": public_jwk(key)})
}

fn claims() -> Value {
    json!({"jti": "j-1", "htm": "POST", "htu": URL, "iat": NOW})
}

fn req(proof: &str) -> ProofRequest<'_> {
    ProofRequest {
        proof,
        method: "POST",
        url: URL,
        access_token: None,
    }
}

fn refused(proof: &str) -> String {
    match check(&req(proof), &rules(), NOW) {
        Err(DpopError::Invalid(why)) => why,
        other => panic!("accepted or wrong error: {other:?}"),
    }
}

#[test]
fn every_algorithm_is_accepted_and_jkt_is_the_thumbprint() {
    for alg in DPOP_ALGS {
        let k = key(alg);
        let proof = forge(&k, header(&k), claims());
        let p = check(&req(&proof), &rules(), NOW).unwrap();
        assert_eq!(p.jkt, Jwk::from_public(alg, k.public_key()).thumbprint().unwrap());
        assert_eq!((p.jti.as_str(), p.iat), ("j-1", NOW));
    }
    let k = key(Algorithm::ES256);
    let made = make_proof(&k, "POST", URL, NOW, None, None).unwrap();
    check(&req(&made), &rules(), NOW).unwrap();
}

#[test]
fn typ_must_be_dpop_jwt() {
    let k = key(Algorithm::ES256);
    let mut h = header(&k);
    h["typ"] = json!("JWT");
    assert!(refused(&forge(&k, h, claims())).contains("typ"));
}

#[test]
fn alg_none_and_symmetric_algs_are_refused() {
    let k = key(Algorithm::ES256);
    for alg in ["none", "HS256"] {
        let mut h = header(&k);
        h["alg"] = json!(alg);
        let proof = forge(&k, h, claims());
        assert!(refused(&proof).contains("alg"), "{alg}");
    }
    // An unsigned proof of alg none.
    let h = URL_SAFE_NO_PAD.encode(json!({"typ": "dpop+jwt", "alg": "none", "jwk": public_jwk(&k)}).to_string());
    let c = URL_SAFE_NO_PAD.encode(claims().to_string());
    assert!(refused(&format!("{h}.{c}.")).contains("alg") || check(&req(&format!("{h}.{c}.")), &rules(), NOW).is_err());
}

#[test]
fn a_private_key_in_the_jwk_is_refused() {
    let k = key(Algorithm::ES256);
    let mut h = header(&k);
    h["jwk"]["d"] = json!("AAAA");
    assert!(refused(&forge(&k, h, claims())).contains("private"));
}

#[test]
fn the_signature_must_be_by_the_header_key() {
    let k = key(Algorithm::ES256);
    let other = key(Algorithm::ES256);
    assert!(refused(&forge(&other, header(&k), claims())).contains("signature"));
    let mut no_jwk = header(&k);
    no_jwk.as_object_mut().unwrap().remove("jwk");
    assert!(refused(&forge(&k, no_jwk, claims())).contains("jwk"));
}

#[test]
fn htm_must_be_the_method() {
    let k = key(Algorithm::ES256);
    let mut c = claims();
    c["htm"] = json!("GET");
    assert!(refused(&forge(&k, header(&k), c)).contains("htm"));
}

#[test]
fn htu_must_be_the_url_without_query_and_fragment() {
    let k = key(Algorithm::ES256);
    let mut c = claims();
    c["htu"] = json!("https://auth.example.com/v1/refresh");
    assert!(refused(&forge(&k, header(&k), c)).contains("htu"));
    let mut c = claims();
    c["htu"] = json!("https://evil.example.com/v1/guest");
    assert!(refused(&forge(&k, header(&k), c)).contains("htu"));
    // Normalised: case of scheme and host, default port, query, fragment.
    let mut c = claims();
    c["htu"] = json!("HTTPS://Auth.Example.com:443/v1/guest?x=1#f");
    check(&req(&forge(&k, header(&k), c)), &rules(), NOW).unwrap();
}

#[test]
fn iat_must_be_within_the_window() {
    let k = key(Algorithm::ES256);
    for iat in [NOW - 61, NOW + 61] {
        let mut c = claims();
        c["iat"] = json!(iat);
        assert!(refused(&forge(&k, header(&k), c)).contains("iat"), "{iat}");
    }
    for iat in [NOW - 60, NOW + 60] {
        let mut c = claims();
        c["iat"] = json!(iat);
        check(&req(&forge(&k, header(&k), c)), &rules(), NOW).unwrap();
    }
}

#[test]
fn jti_is_required() {
    let k = key(Algorithm::ES256);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("jti");
    assert!(refused(&forge(&k, header(&k), c)).contains("jti"));
}

#[test]
fn ath_must_hash_the_access_token() {
    let k = key(Algorithm::ES256);
    let mut c = claims();
    c["ath"] = json!(ath("the-token"));
    let proof = forge(&k, header(&k), c);
    let with = |token| ProofRequest {
        access_token: Some(token),
        ..req(&proof)
    };
    check(&with("the-token"), &rules(), NOW).unwrap();
    let e = check(&with("another-token"), &rules(), NOW).unwrap_err();
    assert!(matches!(&e, DpopError::Invalid(why) if why.contains("ath")), "{e:?}");
    let bare = forge(&k, header(&k), claims());
    let e = check(
        &ProofRequest {
            access_token: Some("the-token"),
            ..req(&bare)
        },
        &rules(),
        NOW,
    )
    .unwrap_err();
    assert!(matches!(&e, DpopError::Invalid(why) if why.contains("ath")), "{e:?}");
}

#[test]
fn nonces_are_required_when_configured() {
    let k = key(Algorithm::ES256);
    let strict = DpopRules {
        require_nonce: true,
        ..rules()
    };
    let proof = forge(&k, header(&k), claims());
    let Err(DpopError::UseNonce { nonce }) = check(&req(&proof), &strict, NOW) else {
        panic!("no use_dpop_nonce");
    };
    let mut c = claims();
    c["nonce"] = json!(nonce);
    check(&req(&forge(&k, header(&k), c.clone())), &strict, NOW).unwrap();
    // Two buckets later it is stale; another secret never made it.
    let mut later = c.clone();
    later["iat"] = json!(NOW + 600);
    assert!(matches!(
        check(&req(&forge(&k, header(&k), later)), &strict, NOW + 600),
        Err(DpopError::UseNonce { .. })
    ));
    let other = DpopRules {
        nonces: Nonces::from_secret(b"other", 300),
        ..strict
    };
    assert!(matches!(
        check(&req(&forge(&k, header(&k), c)), &other, NOW),
        Err(DpopError::UseNonce { .. })
    ));
}

#[test]
fn nonce_buckets() {
    let n = Nonces::from_secret(b"s", 300);
    let at = n.current(NOW);
    assert!(n.accepts(&at, NOW));
    assert!(n.accepts(&at, NOW + 300));
    assert!(!n.accepts(&at, NOW + 600));
    assert!(!n.accepts("garbage", NOW));
}

#[test]
fn ed25519_is_eddsa_by_its_fully_specified_name() {
    // RFC 9864: `Ed25519` names EdDSA with an Ed25519 key (panva's `dpop`
    // 2.x writes nothing else for such a key).
    let ed = key(Algorithm::EdDSA);
    let mut h = header(&ed);
    h["alg"] = json!("Ed25519");
    let p = check(&req(&forge(&ed, h.clone(), claims())), &rules(), NOW).unwrap();
    assert_eq!(
        p.jkt,
        Jwk::from_public(Algorithm::EdDSA, ed.public_key())
            .thumbprint()
            .unwrap()
    );
    // The jwk may name it either way; never another algorithm.
    for (jwk_alg, ok) in [("Ed25519", true), ("EdDSA", true), ("ES256", false)] {
        let mut h = h.clone();
        h["jwk"]["alg"] = json!(jwk_alg);
        let r = check(&req(&forge(&ed, h, claims())), &rules(), NOW);
        assert_eq!(r.is_ok(), ok, "{jwk_alg}: {r:?}");
    }
    // The name fits Ed25519 keys only: an EC key under it is refused.
    let ec = key(Algorithm::ES256);
    let mut h = header(&ec);
    h["alg"] = json!("Ed25519");
    assert!(refused(&forge(&ec, h, claims())).contains("EC key"));
    // Other fully-specified names are not accepted (Ed448 is not verified here).
    let mut h = header(&ed);
    h["alg"] = json!("Ed448");
    assert!(refused(&forge(&ed, h, claims())).contains("alg"));
}

#[test]
fn the_jwk_must_be_a_public_key_object_that_fits_alg() {
    let k = key(Algorithm::ES256);
    let mut h = header(&k);
    h["jwk"] = json!("not an object");
    assert!(refused(&forge(&k, h, claims())).contains("jwk is not a JSON object"));
    // An RSA key under alg ES256.
    let rsa = key(Algorithm::RS256);
    let mut h = header(&k);
    h["jwk"] = public_jwk(&rsa);
    assert!(refused(&forge(&k, h, claims())).contains("cannot make ES256"));
    // A jwk naming another alg than the proof's.
    let mut h = header(&k);
    h["jwk"]["alg"] = json!("RS256");
    assert!(refused(&forge(&k, h, claims())).contains("jwk's alg"));
    let mut h = header(&k);
    h["jwk"]["alg"] = json!("ES256");
    check(&req(&forge(&k, h, claims())), &rules(), NOW).unwrap();
}

#[test]
fn htu_matches_a_request_url_given_in_another_form() {
    let k = key(Algorithm::ES256);
    // The request's URL is normalised too: the proof's htu as we write it
    // matches a request URL written otherwise.
    let proof = forge(&k, header(&k), claims());
    let odd = ProofRequest {
        url: "HTTPS://AUTH.example.com:443/v1/x/../guest",
        ..req(&proof)
    };
    check(&odd, &rules(), NOW).unwrap();
    // A URL with user information is never one.
    let mut c = claims();
    c["htu"] = json!("https://user@auth.example.com/v1/guest");
    assert!(refused(&forge(&k, header(&k), c)).contains("user information"));
    let mut c = claims();
    c["htu"] = json!("ftp://auth.example.com/v1/guest");
    assert!(refused(&forge(&k, header(&k), c)).contains("http or https"));
    let mut c = claims();
    c["htu"] = json!("not a url");
    assert!(refused(&forge(&k, header(&k), c)).contains("not a URL"));
}

#[test]
fn claims_of_the_wrong_type_or_size_are_refused() {
    let k = key(Algorithm::ES256);
    for (name, value, says) in [
        ("htm", json!(1), "htm is not a string"),
        ("htu", json!(null), "htu is not a string"),
        ("iat", json!("1800000000"), "iat"),
        ("iat", json!(1.8e9), "iat"),
        ("jti", json!(""), "jti must be"),
        ("jti", json!("j".repeat(MAX_PROOF_JTI_LEN + 1)), "jti must be"),
    ] {
        let mut c = claims();
        c[name] = value;
        let why = refused(&forge(&k, header(&k), c));
        assert!(why.contains(says), "{name}: {why}");
    }
    let mut c = claims();
    c["jti"] = json!("j".repeat(MAX_PROOF_JTI_LEN));
    check(&req(&forge(&k, header(&k), c)), &rules(), NOW).unwrap();
    let mut c = claims();
    c.as_object_mut().unwrap().remove("htm");
    assert!(refused(&forge(&k, header(&k), c)).contains("no htm"));
}

#[test]
fn errors_say_their_rfc_9449_code_and_why_and_nonces_hide_their_key() {
    let invalid = DpopError::Invalid("htm is not the request's method".into());
    assert_eq!(invalid.code(), "invalid_dpop_proof");
    assert_eq!(
        invalid.to_string(),
        "invalid DPoP proof: htm is not the request's method"
    );
    let nonce = DpopError::UseNonce { nonce: "n".into() };
    assert_eq!(nonce.code(), "use_dpop_nonce");
    assert!(nonce.to_string().contains("DPoP-Nonce"), "{nonce}");
    // The HMAC key never shows in a log line; the lifetime does.
    let n = Nonces::from_secret(b"s", 300);
    let shown = format!("{n:?}");
    assert!(shown.contains("lifetime: 300") && !shown.contains("key"), "{shown}");
}
