//! JWK and JWKS parsing, `StaticKeys::from_jwks`, and RFC 7638 thumbprints.
//!
//! Input: JSON bytes, read both as a `JwkSet` and as one `Jwk`. Invariants:
//! - a parsed JWK or JWKS serialises and parses back to itself;
//! - the thumbprint is stable: it depends only on the members RFC 7638
//!   names (not `alg`, `kid`, `use` or any other member), and a usable key
//!   re-made from its public components has the same thumbprint as its `kid`;
//! - a verifying key comes only from a JWK for signatures, without private
//!   members, with the JWK's own algorithm;
//! - `StaticKeys::from_jwks` refuses a set in which a signing key carries
//!   private members or no key is usable, holds one key per usable `kid`
//!   (the last one written), and answers `key_for` with that key; with no
//!   `kid` in the set, it holds the one key there is, or refuses the set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokensmith::fuzzing::{Jwk, JwkSet, KeySource, StaticKeys, VerifyingKey};
use tokensmith_fuzz::same_map;

/// Equal, with the unknown members compared as JSON (floats to within an
/// ulp: see `same_json`).
fn same_jwk(a: &Jwk, b: &Jwk) -> bool {
    same_map(
        &a.other.clone().into_iter().collect(),
        &b.other.clone().into_iter().collect(),
    ) && Jwk {
        other: Default::default(),
        ..a.clone()
    } == Jwk {
        other: Default::default(),
        ..b.clone()
    }
}

fn round_trips(jwk: &Jwk) {
    let text = serde_json::to_vec(jwk).expect("a parsed JWK serialises");
    let again: Jwk = serde_json::from_slice(&text).expect("a serialised JWK parses");
    assert!(same_jwk(&again, jwk), "a JWK changed in a round trip: {again:?}");
}

fn set_round_trips(set: &JwkSet) {
    let text = serde_json::to_vec(set).expect("a parsed JWKS serialises");
    let again: JwkSet = serde_json::from_slice(&text).expect("a serialised JWKS parses");
    assert_eq!(again.keys.len(), set.keys.len());
    assert!(
        again.keys.iter().zip(&set.keys).all(|(a, b)| same_jwk(a, b)),
        "a JWKS changed in a round trip"
    );
}

fn check_jwk(jwk: &Jwk) {
    round_trips(jwk);
    let thumbprint = jwk.thumbprint();
    let mut bare = jwk.clone();
    bare.alg = None;
    bare.kid = None;
    bare.use_ = None;
    bare.other.clear();
    assert_eq!(
        bare.thumbprint(),
        thumbprint,
        "the thumbprint depends on a member RFC 7638 leaves out"
    );
    if let Ok(t) = &thumbprint {
        assert_eq!(t.len(), 43, "a SHA-256 thumbprint is 43 base64url characters");
    }
    if let Ok(public) = jwk.public_key() {
        assert!(!jwk.has_private_members(), "public_key read a JWK with private members");
        if let Ok(alg) = jwk.algorithm() {
            let made = Jwk::from_public(alg, &public);
            let t = thumbprint
                .as_ref()
                .expect("a key with public components has a thumbprint");
            assert_eq!(
                made.kid.as_ref(),
                Some(t),
                "the kid we would publish is not the thumbprint"
            );
            assert_eq!(made.public_key().as_ref(), Ok(&public));
            assert_eq!(made.algorithm(), Ok(alg));
        }
    }
    if let Ok(key) = jwk.verifying_key() {
        assert!(jwk.is_for_signing(), "a JWK not for signatures became a verifier");
        assert!(
            !jwk.has_private_members(),
            "a JWK with private members became a verifier"
        );
        assert_eq!(
            jwk.algorithm(),
            Ok(key.algorithm()),
            "the verifier's algorithm is not the JWK's"
        );
    }
}

fn check_set(set: &JwkSet) {
    set_round_trips(set);
    for jwk in &set.keys {
        check_jwk(jwk);
    }
    let signing: Vec<&Jwk> = set.keys.iter().filter(|k| k.is_for_signing()).collect();
    let leaked = signing.iter().any(|k| k.has_private_members());
    let usable: Vec<(&Jwk, VerifyingKey)> = signing
        .iter()
        .filter_map(|k| k.verifying_key().ok().map(|v| (*k, v)))
        .collect();
    let named = usable.iter().any(|(k, _)| k.kid.is_some());
    let keys = StaticKeys::from_jwks(set);
    // With no kid anywhere, a token can only be checked against a lone key;
    // several unnamed keys leave nothing a token could use.
    if leaked || usable.is_empty() || (!named && usable.len() > 1) {
        assert!(
            keys.is_err(),
            "from_jwks accepted a leaked private key, or a set no token can use"
        );
        return;
    }
    let keys = keys.expect("a set with a usable key and no leak is accepted");
    assert!(!keys.is_empty());
    assert!(keys.len() <= usable.len());
    assert_eq!(keys.algorithms().len(), keys.len());
    if let [(jwk, only)] = usable.as_slice() {
        if jwk.kid.is_none() {
            let found = keys.key_for(Some("any kid")).expect("the single key answers every kid");
            assert_eq!(found.algorithm(), only.algorithm());
            return;
        }
    }
    assert!(
        keys.key_for(None).is_err(),
        "a token without kid found a key among named ones"
    );
    for (jwk, _) in &usable {
        let Some(kid) = &jwk.kid else {
            continue;
        };
        let last = usable
            .iter()
            .rev()
            .find(|(k, _)| k.kid.as_ref() == Some(kid))
            .map(|(_, v)| v.algorithm());
        let found = keys.key_for(Some(kid)).expect("a usable kid is found");
        assert_eq!(Some(found.algorithm()), last, "kid {kid:?} found another key");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = serde_json::from_slice::<JwkSet>(data) {
        check_set(&set);
    }
    if let Ok(jwk) = serde_json::from_slice::<Jwk>(data) {
        check_jwk(&jwk);
    }
});
