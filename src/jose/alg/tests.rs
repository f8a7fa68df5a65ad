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

const RSA_DER: &[u8] = include_bytes!("../../../tests/fixtures/rsa2048.der");

#[test]
fn names_types_and_display_agree() {
    let names = ["RS256", "PS256", "ES256", "EdDSA", "HS256"];
    assert_eq!(Algorithm::ALL.map(|a| a.to_string()), names);
    assert_eq!(
        Algorithm::ALL.map(Algorithm::key_type),
        ["RSA", "RSA", "EC", "OKP", "oct"]
    );
    for (alg, name) in Algorithm::ALL.into_iter().zip(names) {
        assert_eq!(name.parse::<Algorithm>(), Ok(alg));
    }
    assert_eq!(
        "none".parse::<Algorithm>(),
        Err(JoseError::UnsupportedAlg("none".into()))
    );
}

/// `Debug` names the algorithm and the key's type and size, never key
/// material.
#[test]
fn debug_shows_no_key_material() {
    let rsa = SigningKey::from_pkcs8(Algorithm::RS256, RSA_DER).unwrap();
    assert_eq!(
        format!("{rsa:?}"),
        "SigningKey { alg: RS256, public: PublicKey::Rsa(2048 bits), .. }"
    );
    assert_eq!(
        format!("{:?}", rsa.verifying_key().unwrap()),
        "VerifyingKey { alg: RS256, .. }"
    );
    let ec = SigningKey::generate(Algorithm::ES256, 0).unwrap().0;
    assert_eq!(format!("{:?}", ec.public_key()), "PublicKey::P256");
    let ed = SigningKey::generate(Algorithm::EdDSA, 0).unwrap().0;
    assert_eq!(format!("{:?}", ed.public_key()), "PublicKey::Ed25519");
}

/// One RSA key signs RS256 and PS256, each with its own padding: neither
/// signature verifies as the other algorithm.
#[test]
fn rsa_keys_sign_with_the_padding_of_their_algorithm() {
    let rs = SigningKey::from_pkcs8(Algorithm::RS256, RSA_DER).unwrap();
    let ps = SigningKey::from_pkcs8(Algorithm::PS256, RSA_DER).unwrap();
    let (rs_v, ps_v) = (rs.verifying_key().unwrap(), ps.verifying_key().unwrap());
    let rs_sig = rs.sign(b"message").unwrap();
    let ps_sig = ps.sign(b"message").unwrap();
    assert_eq!((rs_sig.len(), ps_sig.len()), (256, 256));
    rs_v.verify(b"message", &rs_sig).unwrap();
    ps_v.verify(b"message", &ps_sig).unwrap();
    assert_eq!(rs_v.verify(b"message", &ps_sig), Err(JoseError::BadSignature));
    assert_eq!(ps_v.verify(b"message", &rs_sig), Err(JoseError::BadSignature));
    // PKCS#1 v1.5 is deterministic; PSS is salted.
    assert_eq!(rs.sign(b"message").unwrap(), rs_sig);
    assert_ne!(ps.sign(b"message").unwrap(), ps_sig);
}

/// RSA keys are made at the size asked, and only at 2048, 3072 or 4096
/// bits; keys over 2048 bits load and verify too.
#[test]
fn rsa_keys_are_generated_at_the_size_asked() {
    for bits in [1024, 2047, 2049, 8192] {
        assert_eq!(
            SigningKey::generate(Algorithm::RS256, bits).unwrap_err(),
            JoseError::InvalidKey(format!("RSA keys are 2048, 3072 or 4096 bits, not {bits}"))
        );
    }
    for bits in [2048, 3072] {
        let (key, der) = SigningKey::generate(Algorithm::PS256, bits).unwrap();
        let PublicKey::Rsa { n, .. } = key.public_key() else {
            panic!("{:?}", key.public_key());
        };
        assert_eq!(n.len() * 8, bits as usize);
        let again = SigningKey::from_pkcs8(Algorithm::PS256, &der).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let sig = key.sign(b"message").unwrap();
        again.verifying_key().unwrap().verify(b"message", &sig).unwrap();
    }
}

/// The 2048-bit floor counts the bits of `n`, not its bytes: 2047 bits in
/// 256 bytes are refused.
#[test]
fn rsa_public_keys_under_2048_bits_are_refused() {
    let mut n = vec![0xff; 256];
    n[0] = 0x7f;
    let short = PublicKey::Rsa { n, e: vec![1, 0, 1] };
    assert_eq!(
        VerifyingKey::from_public(Algorithm::RS256, &short).unwrap_err(),
        JoseError::InvalidKey("RSA key of 2047 bits: at least 2048 are required".into())
    );
}

/// Only the provider's PKCS#8 v2 layout is rewritten; anything else is an
/// error, not a key made of the wrong bytes.
#[test]
fn ed25519_v1_rewrite_takes_only_the_v2_layout() {
    let v2 = sig::Ed25519KeyPair::generate_pkcs8(&rand::SystemRandom::new()).unwrap();
    let v1 = ed25519_pkcs8_v1(v2.as_ref()).unwrap();
    assert_eq!(v1.len(), 48);
    assert_eq!(v1[16..], v2.as_ref()[16..48]);
    for bad in [&v1[..], &[0x30; 48], &v2.as_ref()[..47], &[]] {
        assert!(ed25519_pkcs8_v1(bad).is_err(), "{bad:?}");
    }
}

/// A P-256 public key is taken only as an uncompressed point of 65 bytes.
#[test]
fn p256_points_are_uncompressed_and_65_bytes() {
    let key = SigningKey::generate(Algorithm::ES256, 0).unwrap().0;
    let PublicKey::P256 { x, y } = key.public_key() else {
        panic!("{:?}", key.public_key());
    };
    let point = [&[4u8][..], x, y].concat();
    assert_eq!(&p256_from_point(&point).unwrap(), key.public_key());
    let longer = [&point[..], &[0]].concat();
    let compressed = [&[2u8][..], x].concat();
    for bad in [&point[..64], &longer[..], &compressed[..], &[4u8; 33], &[]] {
        assert!(p256_from_point(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn random_bytes_are_random() {
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    random_bytes(&mut a).unwrap();
    random_bytes(&mut b).unwrap();
    assert_ne!(a, [0u8; 32]);
    assert_ne!(a, b);
}
