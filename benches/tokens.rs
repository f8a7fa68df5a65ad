#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What a token costs: our issue and verify against the raw signature of
//! both providers and against the `jsonwebtoken` crate, on one token and one
//! set of claims per algorithm. See `benches/README.md` for what each row
//! means and how to read the ratios.
//!
//! Every input is made once, before measuring: keys are parsed, the token is
//! issued, and each path is checked to accept it, so a row can never measure
//! a fast rejection.

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::signature::{self as lc, KeyPair as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ring::signature::{self as rg, KeyPair as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};

use tokensmith::claims::{Claims, Validation};
use tokensmith::clock::{Clock, ManualClock, SharedClock, SystemClock};
use tokensmith::issuer::{Issuer, TokenSpec};
use tokensmith::jose::{jws, Algorithm, PublicKey, SigningKey};
use tokensmith::keys::{KeyRing, KeyState, RingKey, SharedKeys};
use tokensmith::verifier::{KeySource, Verifier};

// The `.pem` files, not the `.der`: only the PEMs are all PKCS#8
// (`rsa2048.der` is PKCS#1 and `p256.der` is SEC1).
const RSA_PEM: &str = include_str!("../tests/fixtures/rsa2048.pem");
const P256_PEM: &str = include_str!("../tests/fixtures/p256.pem");
const ED25519_PEM: &str = include_str!("../tests/fixtures/ed25519.pem");

const ISS: &str = "https://auth.example.com";
const AUD: &str = "chatbot";
/// Long enough that no token expires during a run, short enough for the
/// default `max_ttl`.
const TTL: i64 = 3600;

/// The claims `jsonwebtoken` reads and writes: the same members as ours.
#[derive(Debug, Serialize, Deserialize)]
struct JwtClaims {
    iss: String,
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    scopes: Vec<String>,
    #[serde(rename = "storeId")]
    store_id: String,
    #[serde(rename = "appId")]
    app_id: String,
}

/// One algorithm's issuer, verifier and a token they made.
struct Setup {
    keys: SharedKeys,
    issuer: Issuer,
    verifier: Verifier<SharedKeys>,
    validation: Validation,
    clock: SharedClock,
    spec: TokenSpec,
    token: String,
}

impl Setup {
    fn new(alg: Algorithm, pkcs8: &[u8], clock: &SharedClock) -> Setup {
        let key = SigningKey::from_pkcs8(alg, pkcs8).unwrap();
        let ring = KeyRing::from_keys(vec![RingKey::fresh(key, KeyState::Active, clock.now()).unwrap()]).unwrap();
        let keys: SharedKeys = Arc::new(ArcSwap::from_pointee(ring.snapshot().unwrap()));
        let issuer = Issuer::new(Arc::clone(&keys), ISS, Arc::clone(clock));
        let validation = Validation {
            audience: Some(AUD.into()),
            ..Validation::new(ISS)
        };
        let verifier = Verifier::new(Arc::clone(&keys), validation.clone(), Arc::clone(clock));
        let spec = spec();
        let token = issuer.issue(spec.clone()).unwrap().token;
        let claims = verifier.verify(&token).unwrap();
        assert_eq!(claims.scopes, ["read:orders"]);
        Setup {
            keys,
            issuer,
            verifier,
            validation,
            clock: Arc::clone(clock),
            spec,
            token,
        }
    }

    fn signing_input(&self) -> &[u8] {
        let end = self.token.rfind('.').unwrap();
        &self.token.as_bytes()[..end]
    }

    fn signature(&self) -> Vec<u8> {
        let start = self.token.rfind('.').unwrap() + 1;
        URL_SAFE_NO_PAD.decode(&self.token[start..]).unwrap()
    }

    fn public_key(&self) -> PublicKey {
        self.keys.load().signer.key.public_key().clone()
    }

    fn kid(&self) -> String {
        self.keys.load().signer.kid.clone()
    }
}

/// The DER inside a `-----BEGIN PRIVATE KEY-----` (PKCS#8) PEM.
fn pkcs8(pem: &str) -> Vec<u8> {
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

fn spec() -> TokenSpec {
    let mut extra = Map::new();
    extra.insert("storeId".into(), json!("st_8842"));
    extra.insert("appId".into(), json!("app_chatbot"));
    TokenSpec {
        sub: "user_1234".into(),
        aud: vec![AUD.into()],
        scopes: vec!["read:orders".into()],
        ttl: TTL,
        extra,
    }
}

/// The `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`: `jsonwebtoken`
/// takes RSA private keys only in that form (without its `use_pem` feature).
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> &[u8] {
    fn tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, first) = (input[0], input[1]);
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let n = usize::from(first & 0x7f);
            (
                input[2..2 + n].iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b)),
                2 + n,
            )
        };
        (tag, &input[header..header + len], &input[header + len..])
    }
    let (seq, info, _) = tlv(pkcs8);
    assert_eq!(seq, 0x30);
    let (_version, _, rest) = tlv(info);
    let (_alg_id, _, rest) = tlv(rest);
    let (octets, key, _) = tlv(rest);
    assert_eq!(octets, 0x04);
    key
}

fn rs256(c: &mut Criterion, clock: &SharedClock) {
    let der = pkcs8(RSA_PEM);
    let s = Setup::new(Algorithm::RS256, &der, clock);
    let msg = s.signing_input().to_vec();
    let sig = s.signature();
    let PublicKey::Rsa { n, e } = s.public_key() else {
        unreachable!()
    };

    // aws-lc-rs, called directly.
    let lc_pair = lc::RsaKeyPair::from_pkcs8(&der).unwrap();
    let lc_rng = aws_lc_rs::rand::SystemRandom::new();
    let lc_public = lc_pair.public_key().as_ref().to_vec();
    let lc_parsed = lc::ParsedPublicKey::new(&lc::RSA_PKCS1_2048_8192_SHA256, &lc_public).unwrap();
    let lc_unparsed = lc::UnparsedPublicKey::new(&lc::RSA_PKCS1_2048_8192_SHA256, &lc_public);
    lc_parsed.verify_sig(&msg, &sig).unwrap();
    lc_unparsed.verify(&msg, &sig).unwrap();

    // ring, called directly.
    let rg_pair = rg::RsaKeyPair::from_pkcs8(&der).unwrap();
    let rg_rng = ring::rand::SystemRandom::new();
    let rg_public = rg_pair.public_key().as_ref().to_vec();
    let rg_unparsed = rg::UnparsedPublicKey::new(&rg::RSA_PKCS1_2048_8192_SHA256, &rg_public);
    rg_unparsed.verify(&msg, &sig).unwrap();

    // jsonwebtoken, with the same key, header members and claims.
    let jwt_claims: JwtClaims = serde_json::from_slice(jws::decode(&s.token).unwrap().payload()).unwrap();
    let mut jwt_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    jwt_header.kid = Some(s.kid());
    let jwt_encoding = jsonwebtoken::EncodingKey::from_rsa_der(pkcs1_from_pkcs8(&der));
    // From the JWKS members, as a verifier that fetched our JWKS would build it.
    let jwt_decoding = jsonwebtoken::DecodingKey::from_rsa_raw_components(&n, &e);
    let mut jwt_validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    jwt_validation.set_audience(&[AUD]);
    jwt_validation.set_issuer(&[ISS]);
    jwt_validation.required_spec_claims = ["exp", "iss", "sub", "aud"]
        .map(String::from)
        .into_iter()
        .collect::<HashSet<_>>();
    let decoded = jsonwebtoken::decode::<JwtClaims>(&s.token, &jwt_decoding, &jwt_validation).unwrap();
    assert_eq!(decoded.claims.jti, jwt_claims.jti);
    // Their token verifies with us and ours with them: the rows compare like with like.
    let theirs = jsonwebtoken::encode(&jwt_header, &jwt_claims, &jwt_encoding).unwrap();
    s.verifier.verify(&theirs).unwrap();

    let mut g = c.benchmark_group("rs256/sign");
    let mut out = vec![0u8; lc_pair.public_modulus_len()];
    g.bench_function("raw-aws-lc", |b| {
        b.iter(|| {
            lc_pair
                .sign(&lc::RSA_PKCS1_SHA256, &lc_rng, black_box(&msg), &mut out)
                .unwrap()
        });
    });
    let mut out = vec![0u8; rg_pair.public().modulus_len()];
    g.bench_function("raw-ring", |b| {
        b.iter(|| {
            rg_pair
                .sign(&rg::RSA_PKCS1_SHA256, &rg_rng, black_box(&msg), &mut out)
                .unwrap()
        });
    });
    g.bench_function("tokensmith", |b| {
        b.iter_batched(
            || s.spec.clone(),
            |spec| s.issuer.issue(spec).unwrap(),
            BatchSize::SmallInput,
        );
    });
    g.bench_function("jsonwebtoken", |b| {
        b.iter(|| jsonwebtoken::encode(&jwt_header, black_box(&jwt_claims), &jwt_encoding).unwrap());
    });
    g.finish();

    let mut g = c.benchmark_group("rs256/verify");
    g.bench_function("raw-aws-lc", |b| {
        b.iter(|| lc_parsed.verify_sig(black_box(&msg), black_box(&sig)).unwrap())
    });
    g.bench_function("raw-aws-lc-unparsed", |b| {
        b.iter(|| lc_unparsed.verify(black_box(&msg), black_box(&sig)).unwrap());
    });
    g.bench_function("raw-ring", |b| {
        b.iter(|| rg_unparsed.verify(black_box(&msg), black_box(&sig)).unwrap())
    });
    g.bench_function("tokensmith", |b| {
        b.iter(|| s.verifier.verify(black_box(&s.token)).unwrap())
    });
    g.bench_function("jsonwebtoken", |b| {
        b.iter(|| jsonwebtoken::decode::<JwtClaims>(black_box(&s.token), &jwt_decoding, &jwt_validation).unwrap());
    });
    g.finish();

    verify_steps(c, &s);
}

/// Our verify taken apart, in its order: what it spends besides the signature.
fn verify_steps(c: &mut Criterion, s: &Setup) {
    let jws = jws::decode(&s.token).unwrap();
    let key = s.keys.key_for(jws.header.kid.as_deref()).unwrap();
    let payload = jws.payload().to_vec();
    let claims = Claims::from_payload(&payload).unwrap();
    let now = s.clock.now();
    s.validation.check(&claims, now).unwrap();

    let mut g = c.benchmark_group("rs256/verify-steps");
    g.bench_function("1-jws-decode", |b| b.iter(|| jws::decode(black_box(&s.token)).unwrap()));
    g.bench_function("2-key-lookup", |b| {
        b.iter(|| s.keys.key_for(black_box(jws.header.kid.as_deref())).unwrap())
    });
    g.bench_function("3-signature", |b| b.iter(|| jws.verify(black_box(&key)).unwrap()));
    g.bench_function("4-claims-from-payload", |b| {
        b.iter(|| Claims::from_payload(black_box(&payload)).unwrap())
    });
    g.bench_function("5-validate", |b| {
        b.iter(|| s.validation.check(black_box(&claims), now).unwrap())
    });
    g.finish();
}

fn es256(c: &mut Criterion, clock: &SharedClock) {
    let der = pkcs8(P256_PEM);
    let s = Setup::new(Algorithm::ES256, &der, clock);
    let msg = s.signing_input().to_vec();
    let sig = s.signature();
    let pair = lc::EcdsaKeyPair::from_pkcs8(&lc::ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let parsed = lc::ParsedPublicKey::new(&lc::ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref()).unwrap();
    parsed.verify_sig(&msg, &sig).unwrap();

    let mut g = c.benchmark_group("es256/sign");
    g.bench_function("raw-aws-lc", |b| b.iter(|| pair.sign(&rng, black_box(&msg)).unwrap()));
    g.bench_function("tokensmith", |b| {
        b.iter_batched(
            || s.spec.clone(),
            |spec| s.issuer.issue(spec).unwrap(),
            BatchSize::SmallInput,
        );
    });
    g.finish();
    let mut g = c.benchmark_group("es256/verify");
    g.bench_function("raw-aws-lc", |b| {
        b.iter(|| parsed.verify_sig(black_box(&msg), black_box(&sig)).unwrap())
    });
    g.bench_function("tokensmith", |b| {
        b.iter(|| s.verifier.verify(black_box(&s.token)).unwrap())
    });
    g.finish();
}

fn eddsa(c: &mut Criterion, clock: &SharedClock) {
    let der = pkcs8(ED25519_PEM);
    let s = Setup::new(Algorithm::EdDSA, &der, clock);
    let msg = s.signing_input().to_vec();
    let sig = s.signature();
    let pair = lc::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).unwrap();
    let parsed = lc::ParsedPublicKey::new(&lc::ED25519, pair.public_key().as_ref()).unwrap();
    parsed.verify_sig(&msg, &sig).unwrap();

    let mut g = c.benchmark_group("eddsa/sign");
    g.bench_function("raw-aws-lc", |b| b.iter(|| pair.sign(black_box(&msg))));
    g.bench_function("tokensmith", |b| {
        b.iter_batched(
            || s.spec.clone(),
            |spec| s.issuer.issue(spec).unwrap(),
            BatchSize::SmallInput,
        );
    });
    g.finish();
    let mut g = c.benchmark_group("eddsa/verify");
    g.bench_function("raw-aws-lc", |b| {
        b.iter(|| parsed.verify_sig(black_box(&msg), black_box(&sig)).unwrap())
    });
    g.bench_function("tokensmith", |b| {
        b.iter(|| s.verifier.verify(black_box(&s.token)).unwrap())
    });
    g.finish();
}

fn tokens(c: &mut Criterion) {
    // Fixed at the real time, not at some constant: `jsonwebtoken` checks
    // `exp` against the system clock, and the tokens must pass both.
    let clock: SharedClock = ManualClock::new(SystemClock.now());
    rs256(c, &clock);
    es256(c, &clock);
    eddsa(c, &clock);
}

criterion_group!(benches, tokens);
criterion_main!(benches);
