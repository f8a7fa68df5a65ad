//! Wycheproof vectors (tests/vectors/wycheproof, Apache-2.0, see LICENSE there)
//! run through the jose layer.
//!
//! `json_web_signature_test.json` goes through the whole path a token takes:
//! `jws::decode`, then `Jws::verify` with a key built from the group's JWK.
//! The four primitive files go straight to `VerifyingKey::verify`. Every
//! `valid` case must be accepted and every `invalid` one rejected; the few
//! cases where we differ on purpose are listed below with the reason, and the
//! test checks that they still differ in exactly that way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use tokensmith::jose::{jws, Algorithm, JoseError, Jwk, PublicKey, VerifyingKey};

use crate::common::{hex, wycheproof};

/// Valid JWS cases we reject because the header's `alg` is not the key's:
/// the RFC 7520 figure 20 key is published with `"alg":"PS256"` while the
/// token says PS384. We pin the algorithm to the key (`AlgMismatch`); a
/// library that takes `alg` from the token accepts.
const ALG_PINNED: [u64; 2] = [346, 350];

/// Valid JWS cases we reject because our base64url decoding is strict:
/// a lenient decoder skips the `?` inserted into the segment; we accept only
/// the unpadded base64url alphabet, so the token is `Malformed`.
const STRICT_BASE64URL: [u64; 2] = [372, 373];

/// Invalid JWS cases we accept because the vector is defective: its comment
/// promises bad padding, but the token is byte-for-byte the valid tcId 357.
const SAME_AS_VALID_357: [u64; 2] = [367, 370];

/// Valid JWS cases signed with an algorithm this crate does not implement
/// (RS384, RS512, PS384, PS512, and RFC 7520's P-521 key whose JWK says
/// `"alg":"ES521"`). The key cannot even be built from the JWK
/// (`UnsupportedAlg`), so every case of those groups is rejected.
const UNSUPPORTED_VALID: [u64; 18] = [
    264, 265, 266, 267, 268, 269, 270, 271, 320, 321, 322, 323, 325, 326, 327, 328, 347, 351,
];

/// The verifier for one JWS test group: the HMAC secret of an `oct` key;
/// otherwise the group's public JWK, after checking that it is the private
/// JWK with the private members stripped, and that our `Jwk` refuses the
/// private JWK as it stands.
fn group_key(group: &Value) -> Result<VerifyingKey, JoseError> {
    let private = group["private"].as_object().unwrap();
    if private["kty"] == "oct" {
        let alg = private.get("alg").and_then(Value::as_str).unwrap_or_default();
        if alg != Algorithm::HS256.as_str() {
            return Err(JoseError::UnsupportedAlg(alg.to_owned()));
        }
        let secret = URL_SAFE_NO_PAD.decode(private["k"].as_str().unwrap()).unwrap();
        return VerifyingKey::hmac(&secret);
    }
    let as_is: Jwk = serde_json::from_value(Value::Object(private.clone())).unwrap();
    assert!(
        matches!(as_is.public_key(), Err(JoseError::InvalidKey(_))),
        "a private JWK is refused"
    );
    let mut stripped = private.clone();
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
        stripped.remove(member);
    }
    let stripped: Jwk = serde_json::from_value(Value::Object(stripped)).unwrap();
    let public: Jwk = serde_json::from_value(group["public"].clone()).unwrap();
    let components = |k: &Jwk| {
        (
            k.kty.clone(),
            k.crv.clone(),
            k.n.clone(),
            k.e.clone(),
            k.x.clone(),
            k.y.clone(),
        )
    };
    assert_eq!(components(&stripped), components(&public), "{}", group["comment"]);
    // The public JWK, not the stripped one: their key_ops differ (the
    // private one may sign), and a verifier is given the public one.
    public.verifying_key()
}

fn verify_token(token: &Value, key: &VerifyingKey) -> Result<(), JoseError> {
    // Every case is a string today; anything else (a JSON object where a
    // token is expected) must be refused the same way.
    let text = match token {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    jws::decode(&text)?.verify(key)
}

#[derive(Debug, Default)]
struct Tally {
    valid_accepted: usize,
    invalid_rejected: usize,
    acceptable_accepted: usize,
    acceptable_rejected: usize,
    listed: usize,
    disagreements: Vec<String>,
}

impl Tally {
    fn record(&mut self, tc_id: u64, result: &str, accepted: bool, comment: &str) {
        match (result, accepted) {
            ("valid", true) => self.valid_accepted += 1,
            ("invalid", false) => self.invalid_rejected += 1,
            ("acceptable", true) => self.acceptable_accepted += 1,
            ("acceptable", false) => self.acceptable_rejected += 1,
            _ => self.disagreements.push(format!(
                "tcId {tc_id} ({comment}): expected {result}, we accepted={accepted}"
            )),
        }
    }

    fn total(&self) -> usize {
        self.valid_accepted + self.invalid_rejected + self.acceptable_accepted + self.acceptable_rejected + self.listed
    }

    fn assert_complete(&self, file: &Value, what: &str) {
        assert!(
            self.disagreements.is_empty(),
            "{what}: {} cases disagree with Wycheproof:\n{}",
            self.disagreements.len(),
            self.disagreements.join("\n")
        );
        assert!(self.valid_accepted > 0, "{what}: no valid case was accepted: {self:?}");
        assert!(
            self.invalid_rejected > 0,
            "{what}: no invalid case was rejected: {self:?}"
        );
        let declared = file["numberOfTests"].as_u64().unwrap() as usize;
        assert_eq!(self.total(), declared, "{what}: not every case was run: {self:?}");
        println!("{what}: {self:?}");
    }
}

fn tests_of(group: &Value) -> &Vec<Value> {
    group["tests"].as_array().unwrap()
}

fn tc_id(case: &Value) -> u64 {
    case["tcId"].as_u64().unwrap()
}

#[test]
fn json_web_signature_vectors_agree_except_the_listed_cases() {
    let file = wycheproof("json_web_signature_test.json");
    let mut tally = Tally::default();
    let mut unsupported_valid = Vec::new();
    let mut listed = BTreeMap::new();
    let all_cases: BTreeMap<u64, &Value> = file["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(tests_of)
        .map(|case| (tc_id(case), case))
        .collect();

    for group in file["testGroups"].as_array().unwrap() {
        let key = group_key(group);
        let unsupported = matches!(key, Err(JoseError::UnsupportedAlg(_)));
        for case in tests_of(group) {
            let id = tc_id(case);
            let result = case["result"].as_str().unwrap();
            let outcome = match &key {
                Ok(k) => verify_token(&case["jws"], k),
                Err(e) => Err(e.clone()),
            };
            if unsupported {
                assert!(outcome.is_err(), "tcId {id}: accepted under an unsupported algorithm");
                if result == "valid" {
                    unsupported_valid.push(id);
                }
                tally.listed += 1;
            } else if [ALG_PINNED, STRICT_BASE64URL, SAME_AS_VALID_357].concat().contains(&id) {
                listed.insert(id, outcome);
                tally.listed += 1;
            } else {
                tally.record(
                    id,
                    result,
                    outcome.is_ok(),
                    case["comment"].as_str().unwrap_or_default(),
                );
            }
        }
    }

    assert_eq!(
        unsupported_valid, UNSUPPORTED_VALID,
        "valid cases under unsupported algorithms"
    );
    for id in ALG_PINNED {
        assert_eq!(all_cases[&id]["result"], "valid", "tcId {id}");
        assert!(
            matches!(&listed[&id], Err(JoseError::AlgMismatch { header, key: Algorithm::PS256 }) if header == "PS384"),
            "tcId {id}: {:?}",
            listed[&id]
        );
    }
    for id in STRICT_BASE64URL {
        assert_eq!(all_cases[&id]["result"], "valid", "tcId {id}");
        assert!(
            matches!(listed[&id], Err(JoseError::Malformed(_))),
            "tcId {id}: {:?}",
            listed[&id]
        );
    }
    for id in SAME_AS_VALID_357 {
        assert_eq!(all_cases[&id]["result"], "invalid", "tcId {id}");
        assert_eq!(all_cases[&357]["result"], "valid");
        assert_eq!(
            all_cases[&id]["jws"], all_cases[&357]["jws"],
            "tcId {id} is no longer tcId 357's token"
        );
        assert_eq!(listed[&id], Ok(()), "tcId {id}: tcId 357's valid token must verify");
    }
    tally.assert_complete(&file, "json_web_signature");
}

/// Runs one primitive-level Wycheproof file: each group's public key, built
/// by `public_key`, verifies each case's `msg` and `sig`.
fn run_primitive(name: &str, alg: Algorithm, public_key: fn(&Value) -> PublicKey) {
    let file = wycheproof(name);
    let mut tally = Tally::default();
    for group in file["testGroups"].as_array().unwrap() {
        let key = VerifyingKey::from_public(alg, &public_key(group));
        let key = key.unwrap_or_else(|e| panic!("{name}: group key refused: {e}"));
        for case in tests_of(group) {
            let msg = hex(case["msg"].as_str().unwrap());
            let sig = hex(case["sig"].as_str().unwrap());
            let accepted = key.verify(&msg, &sig).is_ok();
            let comment = case["comment"].as_str().unwrap_or_default();
            tally.record(tc_id(case), case["result"].as_str().unwrap(), accepted, comment);
        }
    }
    tally.assert_complete(&file, name);
}

/// A big-endian integer from Wycheproof hex, without sign-padding zeros.
fn unsigned(hex_str: &str) -> Vec<u8> {
    let bytes = hex(hex_str);
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    bytes[skip..].to_vec()
}

fn rsa_key(group: &Value) -> PublicKey {
    PublicKey::Rsa {
        n: unsigned(group["publicKey"]["modulus"].as_str().unwrap()),
        e: unsigned(group["publicKey"]["publicExponent"].as_str().unwrap()),
    }
}

#[test]
fn rs256_primitive_agrees_with_rsa_signature_2048_sha256() {
    run_primitive("rsa_signature_2048_sha256_test.json", Algorithm::RS256, rsa_key);
}

#[test]
fn ps256_primitive_agrees_with_rsa_pss_2048_sha256_mgf1_32() {
    let file = wycheproof("rsa_pss_2048_sha256_mgf1_32_test.json");
    for group in file["testGroups"].as_array().unwrap() {
        assert_eq!(
            (group["sha"].as_str(), group["mgfSha"].as_str()),
            (Some("SHA-256"), Some("SHA-256"))
        );
        assert_eq!(group["sLen"], 32, "PS256 uses a 32-byte salt");
    }
    run_primitive("rsa_pss_2048_sha256_mgf1_32_test.json", Algorithm::PS256, rsa_key);
}

#[test]
fn es256_primitive_agrees_with_ecdsa_secp256r1_sha256_p1363() {
    run_primitive("ecdsa_secp256r1_sha256_p1363_test.json", Algorithm::ES256, |group| {
        let point = hex(group["publicKey"]["uncompressed"].as_str().unwrap());
        assert_eq!((point.len(), point[0]), (65, 0x04), "an uncompressed P-256 point");
        PublicKey::P256 {
            x: point[1..33].try_into().unwrap(),
            y: point[33..].try_into().unwrap(),
        }
    });
}

#[test]
fn eddsa_primitive_agrees_with_ed25519() {
    run_primitive("ed25519_test.json", Algorithm::EdDSA, |group| {
        PublicKey::Ed25519(hex(group["publicKey"]["pk"].as_str().unwrap()).try_into().unwrap())
    });
}
