//! Published examples from the RFCs, run through the jose layer: RFC 7515
//! Appendix A.1-A.3 (HS256, RS256, ES256), RFC 8037 Appendix A (Ed25519 key,
//! thumbprint and signature) and RFC 7638 §3.1 (the RSA key thumbprint).
//!
//! Each example verifies as published, and changing any one character of the
//! token makes it fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use tokensmith::jose::{jws, Algorithm, Jwk, JwkSet, SigningKey, VerifyingKey};

/// The JWS Payload of RFC 7515 Appendix A.1-A.3, CR LF line breaks and all.
const RFC7515_PAYLOAD: &[u8] = b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";

/// RFC 7515 Appendix A.1: HS256 with the 64-byte key of A.1.1.
const A1_KEY: &str = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
const A1_TOKEN: &str = concat!(
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9",
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
);

/// RFC 7515 Appendix A.2: RS256, the public half of the A.2.1 key.
const A2_JWK: &str = concat!(
    r#"{"kty":"RSA","#,
    r#""n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-"#,
    r#"SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7"#,
    r#"WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk"#,
    r#"2PAcDTW9gb54h4FRWyuXpoQ","e":"AQAB"}"#,
);
const A2_TOKEN: &str = concat!(
    "eyJhbGciOiJSUzI1NiJ9",
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
    ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CU",
    "Ar7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--",
    "xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_Io",
    "ypGlUPQGe77Rw",
);

/// RFC 7515 Appendix A.3: ES256, the public half of the A.3.1 key.
const A3_JWK: &str = concat!(
    r#"{"kty":"EC","crv":"P-256","#,
    r#""x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#,
);
const A3_TOKEN: &str = concat!(
    "eyJhbGciOiJFUzI1NiJ9",
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
    ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q",
);

/// RFC 8037 Appendix A.1/A.2: the Ed25519 private seed and public key.
const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC8037_JWK: &str = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
/// RFC 8037 Appendix A.3: that key's RFC 7638 thumbprint.
const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
/// RFC 8037 Appendix A.4: "Example of Ed25519 signing", signed.
const RFC8037_TOKEN: &str = concat!(
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc",
    ".hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg",
);

/// RFC 7638 §3.1: the RFC 7517 Appendix A.1 RSA key and its thumbprint.
const RFC7638_JWK: &str = concat!(
    r#"{"kty":"RSA","#,
    r#""n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4"#,
    r#"n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgd"#,
    r#"AZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-k"#,
    r#"EgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
);
const RFC7638_THUMBPRINT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

fn jwk_key(json: &str) -> VerifyingKey {
    serde_json::from_str::<Jwk>(json).unwrap().verifying_key().unwrap()
}

/// Asserts that replacing any single character of `token` (separators
/// included) stops it from verifying.
fn assert_every_one_char_change_fails(token: &str, key: &VerifyingKey) {
    for i in 0..token.len() {
        let original = token.as_bytes()[i];
        let replacement = if original == b'A' { 'B' } else { 'A' };
        let mut changed = token.to_owned();
        changed.replace_range(i..=i, &replacement.to_string());
        assert!(
            jws::verify(&changed, key).is_err(),
            "changing byte {i} ({:?}) still verifies",
            original as char
        );
    }
}

#[test]
fn rfc7515_a1_hs256_example_verifies_and_any_change_fails() {
    let key = VerifyingKey::hmac(&URL_SAFE_NO_PAD.decode(A1_KEY).unwrap()).unwrap();
    assert_eq!(jws::verify(A1_TOKEN, &key).unwrap(), RFC7515_PAYLOAD);
    assert_eq!(jws::decode(A1_TOKEN).unwrap().header.typ.as_deref(), Some("JWT"));
    assert_every_one_char_change_fails(A1_TOKEN, &key);
}

#[test]
fn rfc7515_a2_rs256_example_verifies_with_its_jwk_and_any_change_fails() {
    let jwk: Jwk = serde_json::from_str(A2_JWK).unwrap();
    assert_eq!(
        jwk.algorithm().unwrap(),
        Algorithm::RS256,
        "an RSA JWK without alg is RS256"
    );
    let key = jwk.verifying_key().unwrap();
    assert_eq!(jws::verify(A2_TOKEN, &key).unwrap(), RFC7515_PAYLOAD);
    assert_every_one_char_change_fails(A2_TOKEN, &key);
}

#[test]
fn rfc7515_a2_token_does_not_verify_as_ps256_under_the_same_key() {
    let mut jwk: Jwk = serde_json::from_str(A2_JWK).unwrap();
    jwk.alg = Some("PS256".into());
    let err = jws::verify(A2_TOKEN, &jwk.verifying_key().unwrap()).unwrap_err();
    assert!(
        matches!(err, tokensmith::jose::JoseError::AlgMismatch { .. }),
        "{err:?}"
    );
}

#[test]
fn rfc7515_a3_es256_example_verifies_with_its_jwk_and_any_change_fails() {
    let key = jwk_key(A3_JWK);
    assert_eq!(key.algorithm(), Algorithm::ES256);
    assert_eq!(jws::verify(A3_TOKEN, &key).unwrap(), RFC7515_PAYLOAD);
    assert_every_one_char_change_fails(A3_TOKEN, &key);
}

#[test]
fn rfc8037_a4_ed25519_example_verifies_and_any_change_fails() {
    let key = jwk_key(RFC8037_JWK);
    assert_eq!(key.algorithm(), Algorithm::EdDSA);
    assert_eq!(jws::verify(RFC8037_TOKEN, &key).unwrap(), b"Example of Ed25519 signing");
    assert_every_one_char_change_fails(RFC8037_TOKEN, &key);
}

#[test]
fn rfc8037_a4_signing_with_the_rfc_seed_reproduces_the_published_signature() {
    // PKCS#8 v1 (RFC 8410) around the 32-byte seed of RFC 8037 A.1.
    let mut pkcs8 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    pkcs8.extend(URL_SAFE_NO_PAD.decode(RFC8037_D).unwrap());
    let key = SigningKey::from_pkcs8(Algorithm::EdDSA, &pkcs8).unwrap();
    let published: Jwk = serde_json::from_str(RFC8037_JWK).unwrap();
    assert_eq!(
        key.public_key(),
        &published.public_key().unwrap(),
        "A.1's d derives A.2's x"
    );
    // Ed25519 is deterministic, and the RFC's header segment is {"alg":"EdDSA"}.
    let token = jws::sign("eyJhbGciOiJFZERTQSJ9", b"Example of Ed25519 signing", &key).unwrap();
    assert_eq!(token, RFC8037_TOKEN);
}

#[test]
fn rfc8037_a3_thumbprint_is_the_kid_we_publish() {
    let published: Jwk = serde_json::from_str(RFC8037_JWK).unwrap();
    assert_eq!(published.thumbprint().unwrap(), RFC8037_THUMBPRINT);
    let ours = Jwk::from_public(Algorithm::EdDSA, &published.public_key().unwrap());
    assert_eq!(ours.kid.as_deref(), Some(RFC8037_THUMBPRINT));
}

#[test]
fn rfc7638_thumbprint_from_a_jwks_is_the_kid_we_publish() {
    let jwks: JwkSet = serde_json::from_str(&format!(r#"{{"keys":[{A3_JWK},{RFC7638_JWK}]}}"#)).unwrap();
    let jwk = jwks
        .keys
        .iter()
        .find(|k| k.kid.as_deref() == Some("2011-04-29"))
        .unwrap();
    assert_eq!(jwk.thumbprint().unwrap(), RFC7638_THUMBPRINT);
    // The thumbprint ignores alg, kid and use: only e, kty and n count.
    let ours = Jwk::from_public(Algorithm::RS256, &jwk.public_key().unwrap());
    assert_eq!(ours.kid.as_deref(), Some(RFC7638_THUMBPRINT));
    assert_eq!(
        (ours.n.as_deref(), ours.e.as_deref()),
        (jwk.n.as_deref(), jwk.e.as_deref())
    );
    // A JWKS we publish round-trips through JSON with the same kid.
    let text = serde_json::to_string(&JwkSet {
        keys: vec![ours.clone()],
    })
    .unwrap();
    let back: JwkSet = serde_json::from_str(&text).unwrap();
    assert_eq!(back.keys, vec![ours]);
    assert_eq!(back.keys[0].thumbprint().unwrap(), RFC7638_THUMBPRINT);
}
