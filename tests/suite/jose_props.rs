//! Property tests of the jose layer's decoder and verifier: arbitrary input,
//! and arbitrary small mutations of genuine RS256, ES256 and EdDSA tokens
//! (flip, insert or delete a byte, swap two segments), never panic and never
//! verify.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use proptest::prelude::*;
use tokensmith::jose::jws;
use tokensmith::jose::{Algorithm, SigningKey, VerifyingKey};

use crate::common::pkcs8;

/// A genuine token and the key that verifies it.
struct Genuine {
    token: String,
    key: VerifyingKey,
}

fn genuine() -> &'static [Genuine] {
    static TOKENS: OnceLock<Vec<Genuine>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        [
            (Algorithm::RS256, "rsa2048"),
            (Algorithm::ES256, "p256"),
            (Algorithm::EdDSA, "ed25519"),
        ]
        .into_iter()
        .map(|(alg, stem)| {
            let signer = SigningKey::from_pkcs8(alg, &pkcs8(stem)).unwrap();
            let header = jws::header_segment(alg, "kid-1");
            let token = jws::sign(&header, br#"{"sub":"alice","scopes":["read"]}"#, &signer).unwrap();
            let key = signer.verifying_key().unwrap();
            jws::verify(&token, &key).unwrap();
            Genuine { token, key }
        })
        .collect()
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Insert { at: usize, byte: u8 },
    Delete { at: usize },
    SwapSegments { a: usize, b: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Delete { at }),
        (0usize..3, 1usize..3).prop_map(|(a, step)| Mutation::SwapSegments { a, b: (a + step) % 3 }),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    match *mutation {
        Mutation::Flip { at, bit } if !bytes.is_empty() => {
            let at = at % bytes.len();
            bytes[at] ^= 1 << bit;
        }
        Mutation::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), byte),
        Mutation::Delete { at } if !bytes.is_empty() => {
            let at = at % bytes.len();
            bytes.remove(at);
        }
        Mutation::SwapSegments { a, b } => {
            let mut segments: Vec<Vec<u8>> = bytes.split(|&c| c == b'.').map(<[u8]>::to_vec).collect();
            if a < segments.len() && b < segments.len() {
                segments.swap(a, b);
                *bytes = segments.join(&b'.');
            }
        }
        Mutation::Flip { .. } | Mutation::Delete { .. } => {}
    }
}

/// Verifies `input` with every genuine token's key; none may accept it.
fn assert_refused_by_every_key(input: &str) -> Result<(), TestCaseError> {
    for g in genuine() {
        prop_assert!(jws::verify(input, &g.key).is_err(), "verified: {input:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_and_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        assert_refused_by_every_key(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn arbitrary_three_segment_base64url_never_verifies(
        token in "[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,400}"
    ) {
        assert_refused_by_every_key(&token)?;
    }

    #[test]
    fn a_genuine_token_with_a_random_header_or_signature_never_verifies(
        which in 0usize..3,
        header in proptest::collection::vec(any::<u8>(), 0..200),
        signature in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let g = &genuine()[which];
        let parts: Vec<&str> = g.token.split('.').collect();
        let new_header = format!("{}.{}.{}", b64(&header), parts[1], parts[2]);
        let new_signature = format!("{}.{}.{}", parts[0], parts[1], b64(&signature));
        prop_assert!(jws::verify(&new_header, &g.key).is_err());
        prop_assert!(jws::verify(&new_signature, &g.key).is_err());
    }

    #[test]
    fn mutated_genuine_tokens_never_panic_and_never_verify(
        which in 0usize..3,
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let g = &genuine()[which];
        let mut bytes = g.token.clone().into_bytes();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        // Two mutations may cancel out (flip a bit twice); that is not a forgery.
        prop_assume!(mutated != g.token);
        assert_refused_by_every_key(&mutated)?;
    }
}
