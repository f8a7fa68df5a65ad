//! Tests of `alg`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;

#[test]
fn names_are_case_sensitive_and_none_is_not_an_algorithm() {
    assert_eq!(Algorithm::from_name("RS256"), Some(Algorithm::RS256));
    assert_eq!(Algorithm::from_name("EdDSA"), Some(Algorithm::EdDSA));
    for bad in ["rs256", "none", "None", "NONE", "nOnE", "", "HS384", "ES256K"] {
        assert_eq!(Algorithm::from_name(bad), None, "{bad}");
    }
}

#[test]
fn ec_and_ed_keys_sign_and_verify_their_own_signatures() {
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let (key, der) = SigningKey::generate(alg, 0).unwrap();
        let again = SigningKey::from_pkcs8(alg, &der).unwrap();
        assert_eq!(key.public_key(), again.public_key());
        let sig = key.sign(b"message").unwrap();
        let v = key.verifying_key().unwrap();
        v.verify(b"message", &sig).unwrap();
        assert!(v.verify(b"messagf", &sig).is_err());
    }
}

/// `n - s` over 32-byte big-endian numbers, written apart from `low_s`.
fn negate(s: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = (d + 256 * borrow) as u8;
    }
    out
}

#[test]
fn es256_signs_low_s_and_still_verifies_high_s() {
    let (key, _) = SigningKey::generate(Algorithm::ES256, 0).unwrap();
    let v = key.verifying_key().unwrap();
    // Without normalisation about half of these would be high-S.
    for i in 0..200u32 {
        let msg = i.to_be_bytes();
        let sig = key.sign(&msg).unwrap();
        assert_eq!(sig.len(), 64);
        assert!(sig[32..] <= P256_HALF_N[..], "signature {i} is high-S");
        v.verify(&msg, &sig).unwrap();
        // The other spelling, as another signer may produce it, verifies too.
        let high = [&sig[..32], &negate(&sig[32..])].concat();
        assert!(high[32..] > P256_HALF_N[..]);
        v.verify(&msg, &high).unwrap();
    }
}

#[test]
fn low_s_flips_exactly_the_values_above_half_n() {
    let sig = |s: &[u8]| [&[1u8; 32][..], s].concat();
    // n/2 itself is low and stays.
    let mut at_half = sig(&P256_HALF_N);
    low_s(&mut at_half).unwrap();
    assert_eq!(at_half[32..], P256_HALF_N);
    // n/2 + 1 is high: n - (n/2 + 1) = n/2, n being odd.
    let mut above = P256_HALF_N;
    above[31] += 1;
    let mut s = sig(&above);
    low_s(&mut s).unwrap();
    assert_eq!(s[32..], P256_HALF_N);
    assert_eq!(s[..32], [1u8; 32], "r is never touched");
    // n - 1 becomes 1, across every borrow.
    let mut n_minus_1 = P256_N;
    n_minus_1[31] -= 1;
    let mut s = sig(&n_minus_1);
    low_s(&mut s).unwrap();
    let mut one = [0u8; 32];
    one[31] = 1;
    assert_eq!(s[32..], one);
    assert_eq!(negate(&one), n_minus_1);
    // Not an `r || s` pair.
    assert!(low_s(&mut [0u8; 63]).is_err());
}

#[test]
fn ed25519_keys_are_written_as_pkcs8_v1() {
    let (key, der) = SigningKey::generate(Algorithm::EdDSA, 0).unwrap();
    assert_eq!(der.len(), 48);
    assert_eq!(der[..5], [0x30, 0x2e, 0x02, 0x01, 0x00]);
    let again = SigningKey::from_pkcs8(Algorithm::EdDSA, &der).unwrap();
    assert_eq!(key.public_key(), again.public_key());
}

#[test]
fn a_key_loads_only_for_its_own_kind_of_algorithm() {
    let (_, ec) = SigningKey::generate(Algorithm::ES256, 0).unwrap();
    assert!(SigningKey::from_pkcs8(Algorithm::RS256, &ec).is_err());
    assert!(SigningKey::from_pkcs8(Algorithm::EdDSA, &ec).is_err());
    assert!(SigningKey::from_pkcs8(Algorithm::HS256, &ec).is_err());
    let ed = SigningKey::generate(Algorithm::EdDSA, 0).unwrap().0;
    assert!(VerifyingKey::from_public(Algorithm::ES256, ed.public_key()).is_err());
}

#[test]
fn hmac_refuses_short_secrets_and_checks_tags() {
    assert!(VerifyingKey::hmac(&[7u8; 31]).is_err());
    let secret = [7u8; 32];
    let v = VerifyingKey::hmac(&secret).unwrap();
    let tag = hmac_sha256(&secret, b"abc");
    v.verify(b"abc", &tag).unwrap();
    assert!(v.verify(b"abd", &tag).is_err());
    assert!(v.verify(b"abc", &tag[..31]).is_err());
}

#[test]
fn sha256_matches_the_fips_180_vector() {
    let d = sha256(b"abc");
    assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]);
    assert_eq!(d[28..], [0xf2, 0x00, 0x15, 0xad]);
}
