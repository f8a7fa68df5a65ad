//! The compact-JWS decoder and verification with fixed keys.
//!
//! Input: a token (UTF-8; anything else is not a token). Invariants:
//! - what `decode` accepts is exactly three canonical base64url parts: each
//!   re-encodes to the same text, so the token re-encodes to itself (no two
//!   spellings of one token), and its header is one strict JSON object whose
//!   `alg`, `kid`, `typ` are what `decode` reported, without `crit`;
//! - what `decode` refuses, no key verifies;
//! - what a key verifies names that key's algorithm, and for the
//!   deterministic algorithms (HS256, EdDSA) its signature is exactly the
//!   one the key makes over the signing input: no second valid signature.
//!
//! The keys are published test keys (RFC 7515 A.1-A.3, RFC 8037 A, and the
//! Wycheproof JWS groups), so the seed tokens in `fuzz/corpus/jws/` verify.
#![no_main]

use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokensmith::fuzzing::{
    hmac_sha256, jws_decode, jws_verify, parse_object, Algorithm, Jwk, SigningKey, VerifyingKey, MAX_TOKEN_LEN,
};

/// RFC 7515 A.1.1: the HS256 key.
const RFC7515_A1_K: &str = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
/// Wycheproof `json_web_signature_test.json`, group "hs256".
const WYCHEPROOF_HS256_K: &str = "-ebuDNsVZ2iJtoZ-akfXTSCt4UO2cruLCsbWlBinggE";
/// RFC 7515 A.2.1, public half.
const RFC7515_A2_JWK: &str = concat!(
    r#"{"kty":"RSA","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-"#,
    r#"SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7"#,
    r#"WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk"#,
    r#"2PAcDTW9gb54h4FRWyuXpoQ","e":"AQAB"}"#,
);
/// RFC 7515 A.3.1, public half.
const RFC7515_A3_JWK: &str = concat!(
    r#"{"kty":"EC","crv":"P-256","#,
    r#""x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#,
);
/// Wycheproof, group "rs256" (the first), public half.
const WYCHEPROOF_RS256_JWK: &str = concat!(
    r#"{"kty":"RSA","n":"kqGboBfAWttWPCA-0cGRgsY6SaYoIARt0B_PkaEcIq9HPYNdu9n6UuWHuuTHrjF_ZoQW97r5HaAorNvrMEGTGdxCHZdEtkHvNVVmrtxTBLiQCbCozXhF"#,
    r#"oIrVcr3qUBrdGnNn_M3jJi7Wg7p_-x62nS5gNG875oyheRkutHsQXikFZwsN3q_TsPNOVlCiHy8mxzaFTUQGm-X8UYexFyAivlDSjgDJLAZSWfxd7k9Gxuwa3AUfQqQc"#,
    r#"VcegmgKGCaErQ3qQbh1x7WB6iopE3_-GZ8HMAVtR9AmrVscqYsnjhaCehfAI0iKKs8zXr8tISc0ORbaalrkk03H1ZrsEnDKEWQ","e":"AQAB"}"#,
);
/// Wycheproof, group "es256", public half.
const WYCHEPROOF_ES256_JWK: &str = concat!(
    r#"{"kty":"EC","crv":"P-256","x":"04N0xi21hshyvBp7I167sbE_bXqyqkAPfefdklMO7wY","#,
    r#""y":"UI8exy-C06a7DUnjIdENkxeFtHM4-l_41LqEw9nVgmw"}"#,
);
/// RFC 8037 A.1: the Ed25519 private seed.
const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";

enum Resign {
    /// HS256: the signature must be HMAC-SHA256 of the signing input.
    Hmac(Vec<u8>),
    /// EdDSA: Ed25519 is deterministic; the signature must be ours.
    Ed25519(SigningKey),
    /// RSA and ECDSA keys here are public only.
    No,
}

struct Key {
    verifier: VerifyingKey,
    resign: Resign,
}

fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("a test key in base64url")
}

fn from_jwk(json: &str) -> Key {
    let jwk: Jwk = serde_json::from_str(json).expect("a test JWK");
    Key {
        verifier: jwk.verifying_key().expect("a usable test JWK"),
        resign: Resign::No,
    }
}

fn hmac(k: &str) -> Key {
    let secret = b64(k);
    Key {
        verifier: VerifyingKey::hmac(&secret).expect("an HS256 test key"),
        resign: Resign::Hmac(secret),
    }
}

fn ed25519() -> Key {
    // PKCS#8 v1 (RFC 8410) around the 32-byte seed.
    let mut pkcs8 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    pkcs8.extend(b64(RFC8037_D));
    let signer = SigningKey::from_pkcs8(Algorithm::EdDSA, &pkcs8).expect("the RFC 8037 key");
    Key {
        verifier: signer.verifying_key().expect("its public half"),
        resign: Resign::Ed25519(signer),
    }
}

static KEYS: LazyLock<Vec<Key>> = LazyLock::new(|| {
    vec![
        hmac(RFC7515_A1_K),
        hmac(WYCHEPROOF_HS256_K),
        from_jwk(RFC7515_A2_JWK),
        from_jwk(WYCHEPROOF_RS256_JWK),
        from_jwk(RFC7515_A3_JWK),
        from_jwk(WYCHEPROOF_ES256_JWK),
        ed25519(),
    ]
});

/// Decodes one part, asserting that its spelling is the canonical one.
fn canonical_part(part: &str) -> Vec<u8> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .expect("decode accepted a part that is not unpadded base64url");
    assert_eq!(
        URL_SAFE_NO_PAD.encode(&bytes),
        part,
        "a non-canonical base64url part was accepted"
    );
    bytes
}

fn check_decoded(token: &str) {
    let Ok(jws) = jws_decode(token) else {
        return;
    };
    assert!(token.len() <= MAX_TOKEN_LEN);
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "decode accepted {} parts", parts.len());
    let header = canonical_part(parts[0]);
    let payload = canonical_part(parts[1]);
    let signature = canonical_part(parts[2]);
    assert_eq!(payload, jws.payload(), "the payload is not the second part");
    let reencoded = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(&header),
        URL_SAFE_NO_PAD.encode(jws.payload()),
        URL_SAFE_NO_PAD.encode(&signature)
    );
    assert_eq!(reencoded, token, "a decoded token does not re-encode to itself");

    // The header is what a strict JSON reader sees in it, members and all.
    let object = parse_object(&header, "the header").expect("decode accepted a header the strict parser refuses");
    let text = |name: &str| match object.get(name) {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => panic!("decode accepted a non-string {name:?}: {other}"),
    };
    assert_eq!(text("alg"), Some(jws.header.alg.as_str()));
    assert_eq!(text("kid"), jws.header.kid.as_deref());
    assert_eq!(text("typ"), jws.header.typ.as_deref());
    assert!(!object.contains_key("crit"), "decode accepted a crit header");
}

fn check_verified(token: &str, key: &Key) {
    let result = jws_verify(token, &key.verifier);
    let Ok(payload) = result else {
        return;
    };
    let jws = jws_decode(token).expect("verify accepted what decode refuses");
    assert_eq!(
        jws.header.alg,
        key.verifier.algorithm().as_str(),
        "alg is not pinned to the key"
    );
    assert_eq!(payload, jws.payload());
    let Some((signing_input, signature)) = token.rsplit_once('.') else {
        panic!("a verified token without parts");
    };
    let signature = canonical_part(signature);
    match &key.resign {
        Resign::Hmac(secret) => assert_eq!(
            hmac_sha256(secret, signing_input.as_bytes()),
            signature,
            "an HS256 signature that is not the HMAC was accepted"
        ),
        Resign::Ed25519(signer) => assert_eq!(
            signer.sign(signing_input.as_bytes()).expect("Ed25519 signing"),
            signature,
            "a second Ed25519 signature of one message was accepted"
        ),
        Resign::No => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    check_decoded(token);
    for key in KEYS.iter() {
        check_verified(token, key);
    }
});
