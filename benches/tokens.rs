#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What a token costs: our issue and verify against the raw signature of
//! both providers and against the `jsonwebtoken` crate, on one token and one
//! set of claims per algorithm. See `benches/README.md` for what each row
//! means and how to read the ratios.
//!
//! Every input is made once, before measuring: keys are parsed, the token is
//! issued, and each path is checked to accept it, so a row can never measure
//! a fast rejection. After criterion's rows, the ratios the project holds
//! itself to are measured once more in alternation (see [`paired`]).

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::signature::{self as lc, KeyPair as _};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use criterion::{BatchSize, Criterion};
use ring::signature::{self as rg, KeyPair as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};

use tokensmith::claims::{Claims, Validation};
use tokensmith::dpop::{make_proof, DpopRules, Nonces, ProofRequest};
use tokensmith::jose::{jws, Algorithm, PublicKey, SigningKey};
use tokensmith::keys::{KeyRing, KeyState, RingKey, SharedKeys};
use tokensmith::{
    Authority, Clock, Issuer, KeySource, ManualClock, MemoryStore, Presentation, SharedClock, SystemClock, TokenSpec,
    Verifier,
};

// The `.pem` files, not the `.der`: only the PEMs are all PKCS#8
// (`rsa2048.der` is PKCS#1 and `p256.der` is SEC1).
const RSA_PEM: &str = include_str!("../tests/fixtures/rsa2048.pem");
const P256_PEM: &str = include_str!("../tests/fixtures/p256.pem");
const ED25519_PEM: &str = include_str!("../tests/fixtures/ed25519.pem");
/// The DPoP client's RSA key (RS256 proofs): not the issuer's.
const RSA_B_PEM: &str = include_str!("../tests/fixtures/rsa2048_b.pem");

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

/// The DER inside a `-----BEGIN PRIVATE KEY-----` (PKCS#8) PEM.
fn pkcs8(pem: &str) -> Vec<u8> {
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
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

/// One algorithm's issuer, verifier and a token they made.
struct Setup {
    keys: SharedKeys,
    issuer: Issuer,
    verifier: Verifier<SharedKeys>,
    validation: Validation,
    clock: SharedClock,
    spec: TokenSpec,
    token: String,
    /// The token's signing input (`header.payload`) and decoded signature,
    /// for the raw rows.
    msg: Vec<u8>,
    sig: Vec<u8>,
}

impl Setup {
    fn new(alg: Algorithm, pkcs8: &[u8], clock: &SharedClock) -> Setup {
        let key = SigningKey::from_pkcs8(alg, pkcs8).unwrap();
        let ring = KeyRing::from_keys(vec![RingKey::fresh(key, KeyState::Active, clock.now()).unwrap()]).unwrap();
        let keys: SharedKeys = ring.shared().unwrap();
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
        let dot = token.rfind('.').unwrap();
        let msg = token.as_bytes()[..dot].to_vec();
        let sig = URL_SAFE_NO_PAD.decode(&token[dot + 1..]).unwrap();
        Setup {
            keys,
            issuer,
            verifier,
            validation,
            clock: Arc::clone(clock),
            spec,
            token,
            msg,
            sig,
        }
    }

    fn issue(&self, spec: TokenSpec) {
        black_box(self.issuer.issue(spec).unwrap());
    }

    fn verify(&self) {
        black_box(self.verifier.verify(black_box(&self.token)).unwrap());
    }
}

/// RS256 through every implementation, on the same key, claims and token.
struct Rs256 {
    s: Setup,
    lc_pair: lc::RsaKeyPair,
    lc_rng: aws_lc_rs::rand::SystemRandom,
    lc_parsed: lc::ParsedPublicKey,
    lc_unparsed: lc::UnparsedPublicKey<Vec<u8>>,
    rg_pair: rg::RsaKeyPair,
    rg_rng: ring::rand::SystemRandom,
    rg_unparsed: rg::UnparsedPublicKey<Vec<u8>>,
    jwt_claims: JwtClaims,
    jwt_header: jsonwebtoken::Header,
    jwt_encoding: jsonwebtoken::EncodingKey,
    jwt_decoding: jsonwebtoken::DecodingKey,
    jwt_validation: jsonwebtoken::Validation,
}

impl Rs256 {
    fn new(clock: &SharedClock) -> Rs256 {
        let der = pkcs8(RSA_PEM);
        let s = Setup::new(Algorithm::RS256, &der, clock);
        let PublicKey::Rsa { n, e } = s.keys.load().signer.key.public_key().clone() else {
            unreachable!()
        };

        let lc_pair = lc::RsaKeyPair::from_pkcs8(&der).unwrap();
        let lc_public = lc_pair.public_key().as_ref().to_vec();
        let lc_parsed = lc::ParsedPublicKey::new(&lc::RSA_PKCS1_2048_8192_SHA256, &lc_public).unwrap();
        let lc_unparsed = lc::UnparsedPublicKey::new(&lc::RSA_PKCS1_2048_8192_SHA256, lc_public);

        let rg_pair = rg::RsaKeyPair::from_pkcs8(&der).unwrap();
        let rg_public = rg_pair.public_key().as_ref().to_vec();
        let rg_unparsed = rg::UnparsedPublicKey::new(&rg::RSA_PKCS1_2048_8192_SHA256, rg_public);

        let jwt_claims: JwtClaims = serde_json::from_slice(jws::decode(&s.token).unwrap().payload()).unwrap();
        let mut jwt_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        jwt_header.kid = Some(s.keys.load().signer.kid.clone());
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

        let rs = Rs256 {
            s,
            lc_pair,
            lc_rng: aws_lc_rs::rand::SystemRandom::new(),
            lc_parsed,
            lc_unparsed,
            rg_pair,
            rg_rng: ring::rand::SystemRandom::new(),
            rg_unparsed,
            jwt_claims,
            jwt_header,
            jwt_encoding,
            jwt_decoding,
            jwt_validation,
        };
        // Every row accepts its input, and their token verifies with us: the
        // rows compare like with like.
        rs.verify_raw_aws_lc();
        rs.verify_raw_aws_lc_unparsed();
        rs.verify_raw_ring();
        rs.decode_jsonwebtoken();
        let theirs = jsonwebtoken::encode(&rs.jwt_header, &rs.jwt_claims, &rs.jwt_encoding).unwrap();
        rs.s.verifier.verify(&theirs).unwrap();
        rs
    }

    fn sign_raw_aws_lc(&self) {
        let mut out = vec![0u8; self.lc_pair.public_modulus_len()];
        self.lc_pair
            .sign(&lc::RSA_PKCS1_SHA256, &self.lc_rng, black_box(&self.s.msg), &mut out)
            .unwrap();
        black_box(out);
    }

    fn sign_raw_ring(&self) {
        let mut out = vec![0u8; self.rg_pair.public().modulus_len()];
        self.rg_pair
            .sign(&rg::RSA_PKCS1_SHA256, &self.rg_rng, black_box(&self.s.msg), &mut out)
            .unwrap();
        black_box(out);
    }

    fn encode_jsonwebtoken(&self) {
        black_box(jsonwebtoken::encode(&self.jwt_header, black_box(&self.jwt_claims), &self.jwt_encoding).unwrap());
    }

    fn verify_raw_aws_lc(&self) {
        self.lc_parsed
            .verify_sig(black_box(&self.s.msg), black_box(&self.s.sig))
            .unwrap();
    }

    fn verify_raw_aws_lc_unparsed(&self) {
        self.lc_unparsed
            .verify(black_box(&self.s.msg), black_box(&self.s.sig))
            .unwrap();
    }

    fn verify_raw_ring(&self) {
        self.rg_unparsed
            .verify(black_box(&self.s.msg), black_box(&self.s.sig))
            .unwrap();
    }

    fn decode_jsonwebtoken(&self) {
        let token = black_box(&self.s.token);
        black_box(jsonwebtoken::decode::<JwtClaims>(token, &self.jwt_decoding, &self.jwt_validation).unwrap());
    }
}

fn rs256(c: &mut Criterion, rs: &Rs256) {
    let mut g = c.benchmark_group("rs256/sign");
    g.bench_function("raw-aws-lc", |b| b.iter(|| rs.sign_raw_aws_lc()));
    g.bench_function("raw-ring", |b| b.iter(|| rs.sign_raw_ring()));
    g.bench_function("tokensmith", |b| {
        b.iter_batched(|| rs.s.spec.clone(), |spec| rs.s.issue(spec), BatchSize::SmallInput)
    });
    g.bench_function("jsonwebtoken", |b| b.iter(|| rs.encode_jsonwebtoken()));
    g.finish();

    let mut g = c.benchmark_group("rs256/verify");
    g.bench_function("raw-aws-lc", |b| b.iter(|| rs.verify_raw_aws_lc()));
    g.bench_function("raw-aws-lc-unparsed", |b| b.iter(|| rs.verify_raw_aws_lc_unparsed()));
    g.bench_function("raw-ring", |b| b.iter(|| rs.verify_raw_ring()));
    g.bench_function("tokensmith", |b| b.iter(|| rs.s.verify()));
    g.bench_function("jsonwebtoken", |b| b.iter(|| rs.decode_jsonwebtoken()));
    g.finish();
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
    let pair = lc::EcdsaKeyPair::from_pkcs8(&lc::ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let parsed = lc::ParsedPublicKey::new(&lc::ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref()).unwrap();
    parsed.verify_sig(&s.msg, &s.sig).unwrap();

    let mut g = c.benchmark_group("es256/sign");
    g.bench_function("raw-aws-lc", |b| b.iter(|| pair.sign(&rng, black_box(&s.msg)).unwrap()));
    g.bench_function("tokensmith", |b| {
        b.iter_batched(|| s.spec.clone(), |spec| s.issue(spec), BatchSize::SmallInput)
    });
    g.finish();
    let mut g = c.benchmark_group("es256/verify");
    g.bench_function("raw-aws-lc", |b| {
        b.iter(|| parsed.verify_sig(black_box(&s.msg), black_box(&s.sig)).unwrap())
    });
    g.bench_function("tokensmith", |b| b.iter(|| s.verify()));
    g.finish();
}

fn eddsa(c: &mut Criterion, clock: &SharedClock) {
    let der = pkcs8(ED25519_PEM);
    let s = Setup::new(Algorithm::EdDSA, &der, clock);
    let pair = lc::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).unwrap();
    let parsed = lc::ParsedPublicKey::new(&lc::ED25519, pair.public_key().as_ref()).unwrap();
    parsed.verify_sig(&s.msg, &s.sig).unwrap();

    let mut g = c.benchmark_group("eddsa/sign");
    g.bench_function("raw-aws-lc", |b| b.iter(|| pair.sign(black_box(&s.msg))));
    g.bench_function("tokensmith", |b| {
        b.iter_batched(|| s.spec.clone(), |spec| s.issue(spec), BatchSize::SmallInput)
    });
    g.finish();
    let mut g = c.benchmark_group("eddsa/verify");
    g.bench_function("raw-aws-lc", |b| {
        b.iter(|| parsed.verify_sig(black_box(&s.msg), black_box(&s.sig)).unwrap())
    });
    g.bench_function("tokensmith", |b| b.iter(|| s.verify()));
    g.finish();
}

/// Rounds of [`paired`]; odd, so that the median is one of them.
const ROUNDS: usize = 201;

/// The median over [`ROUNDS`] of `time(a) / time(b)`, each round timing
/// `iters` calls of each back to back, in alternating order. On a machine
/// whose speed drifts (other jobs, frequency scaling), rows that criterion
/// measured a minute apart can differ by more than the ratios we care
/// about; two sides timed within a millisecond of each other drift alike.
/// Blocks of about half a millisecond are rarely cut by the scheduler, and
/// the median drops the rounds that were.
fn paired(iters: u32, a: impl Fn(), b: impl Fn()) -> f64 {
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        start.elapsed().as_secs_f64()
    };
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|round| {
            if round % 2 == 0 {
                let ta = time(&a);
                ta / time(&b)
            } else {
                let tb = time(&b);
                time(&a) / tb
            }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ROUNDS / 2]
}

/// DPoP: a plain RS256 verification against a DPoP-bound one (the same
/// RS256 verification of a token with `cnf.jkt`, then a proof (ES256 or
/// EdDSA) checked with `ath`, and its `jti` marked in a memory store),
/// through `Authority::admit_dpop` as `/v1/verify` and the extractor run it.
/// Each bound verification takes the next of a pool of proofs made
/// beforehand (a proof is single use), so making them is not measured.
/// `raw_proof_verify` is the floor of the proof's own cost: aws-lc checking
/// one proof's signature with a parsed key, nothing else.
struct Dpop {
    plain: Setup,
    raw_proof: (lc::ParsedPublicKey, Vec<u8>, Vec<u8>),
    bound_token: String,
    proofs: Vec<String>,
    next: std::cell::Cell<usize>,
    store: MemoryStore,
    rules: DpopRules,
    rt: tokio::runtime::Runtime,
}

const DPOP_URL: &str = "https://api.example.com/orders";

impl Dpop {
    fn new(rs: &Rs256, clock: &SharedClock, pool: usize, proof_alg: Algorithm) -> Dpop {
        let plain = Setup::new(Algorithm::RS256, &pkcs8(RSA_PEM), clock);
        let (pem, raw_alg): (&str, &'static dyn lc::VerificationAlgorithm) = match proof_alg {
            Algorithm::ES256 => (P256_PEM, &lc::ECDSA_P256_SHA256_FIXED),
            Algorithm::EdDSA => (ED25519_PEM, &lc::ED25519),
            Algorithm::RS256 => (RSA_B_PEM, &lc::RSA_PKCS1_2048_8192_SHA256),
            other => panic!("no DPoP bench for {other}"),
        };
        let client = SigningKey::from_pkcs8(proof_alg, &pkcs8(pem)).unwrap();
        let jkt = tokensmith::Jwk::from_public(proof_alg, client.public_key())
            .thumbprint()
            .unwrap();
        let mut spec = spec();
        spec.extra.insert("cnf".into(), json!({ "jkt": jkt }));
        let bound_token = rs.s.issuer.issue(spec).unwrap().token;
        let now = clock.now();
        let proofs: Vec<String> = (0..pool)
            .map(|_| make_proof(&client, "GET", DPOP_URL, now, Some(&bound_token), None).unwrap())
            .collect();
        let raw_proof = {
            let (input, sig) = proofs[0].rsplit_once('.').unwrap();
            let point = match client.public_key() {
                PublicKey::P256 { x, y } => [&[4u8][..], x, y].concat(),
                PublicKey::Ed25519(x) => x.to_vec(),
                PublicKey::Rsa { .. } => lc::RsaKeyPair::from_pkcs8(&pkcs8(pem))
                    .unwrap()
                    .public_key()
                    .as_ref()
                    .to_vec(),
            };
            let parsed = lc::ParsedPublicKey::new(raw_alg, &point).unwrap();
            let (msg, sig) = (input.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(sig).unwrap());
            parsed.verify_sig(&msg, &sig).unwrap();
            (parsed, msg, sig)
        };
        let d = Dpop {
            plain,
            raw_proof,
            bound_token,
            proofs,
            next: std::cell::Cell::new(0),
            store: MemoryStore::new(pool * 2 + 16),
            rules: DpopRules {
                iat_window: 60,
                require_nonce: false,
                nonces: Nonces::from_secret(b"bench", 300),
            },
            rt: tokio::runtime::Builder::new_current_thread().build().unwrap(),
        };
        d.verify_bound();
        d
    }

    fn verify_plain(&self) {
        self.plain.verify();
    }

    /// The floor of a bound verification: the plain one and the proof's
    /// raw signature check.
    fn verify_floor(&self) {
        self.plain.verify();
        let (key, msg, sig) = &self.raw_proof;
        key.verify_sig(black_box(msg), black_box(sig)).unwrap();
    }

    fn verify_bound(&self) {
        let i = self.next.get();
        self.next.set(i + 1);
        let proof = &self.proofs[i % self.proofs.len()];
        let claims = self.plain.verifier.verify(black_box(&self.bound_token)).unwrap();
        let req = ProofRequest {
            proof,
            method: "GET",
            url: DPOP_URL,
            access_token: None,
        };
        let now = self.plain.clock.now();
        let admitted = self.rt.block_on(Authority::admit_dpop(
            &self.store,
            &self.rules,
            &claims,
            &self.bound_token,
            Presentation::Dpop(req),
            now,
        ));
        // Past the pool, proofs repeat and are refused: never measured so.
        assert!(admitted.is_ok() || i >= self.proofs.len(), "{admitted:?}");
        black_box(admitted.ok());
    }
}

fn dpop(c: &mut Criterion, d: &Dpop, ed: &Dpop, rsa: &Dpop) {
    let mut g = c.benchmark_group("dpop/verify");
    g.bench_function("rs256-plain", |b| b.iter(|| d.verify_plain()));
    // Past its pool of proofs this row replays them: refused at the mark,
    // after the same work. The paired ratio below uses fresh proofs only.
    g.bench_function("rs256-bound-es256-proof", |b| b.iter(|| d.verify_bound()));
    g.bench_function("rs256-bound-eddsa-proof", |b| b.iter(|| ed.verify_bound()));
    g.bench_function("rs256-bound-rs256-proof", |b| b.iter(|| rsa.verify_bound()));
    g.finish();
}

fn ratios(rs: &Rs256, clock: &SharedClock) {
    // A fresh store and a fresh proof for every bound verification.
    let d = Dpop::new(rs, clock, 10 * ROUNDS + 16, Algorithm::ES256);
    let ed = Dpop::new(rs, clock, 10 * ROUNDS + 16, Algorithm::EdDSA);
    let rsa = Dpop::new(rs, clock, 10 * ROUNDS + 16, Algorithm::RS256);
    let spec = || rs.s.spec.clone();
    let rows: [(&str, &str, f64); 12] = [
        (
            "rs256 verify: tokensmith / raw-aws-lc",
            "≤ 1.15",
            paired(20, || rs.s.verify(), || rs.verify_raw_aws_lc()),
        ),
        (
            "rs256 verify: tokensmith / jsonwebtoken",
            "≤ 1.00",
            paired(20, || rs.s.verify(), || rs.decode_jsonwebtoken()),
        ),
        (
            "rs256 sign: tokensmith / raw-aws-lc",
            "≤ 1.05",
            paired(2, || rs.s.issue(spec()), || rs.sign_raw_aws_lc()),
        ),
        (
            "rs256 sign: jsonwebtoken / raw-aws-lc",
            "",
            paired(2, || rs.encode_jsonwebtoken(), || rs.sign_raw_aws_lc()),
        ),
        (
            "rs256 sign: raw-ring / raw-aws-lc",
            "",
            paired(2, || rs.sign_raw_ring(), || rs.sign_raw_aws_lc()),
        ),
        (
            "rs256 verify: raw-ring / raw-aws-lc",
            "",
            paired(20, || rs.verify_raw_ring(), || rs.verify_raw_aws_lc()),
        ),
        // The issue's 2.2: two signature checks of one kind and a mark.
        (
            "dpop verify: bound (RS256 + RS256 proof + mark) / plain RS256",
            "≤ 2.20",
            paired(10, || rsa.verify_bound(), || rsa.verify_plain()),
        ),
        (
            "dpop verify: bound (RS256 proof) / (plain RS256 + raw RS256 verify)",
            "≤ 1.15",
            paired(10, || rsa.verify_bound(), || rsa.verify_floor()),
        ),
        (
            "dpop verify: bound (RS256 + ES256 proof + mark) / plain RS256",
            "reported",
            paired(10, || d.verify_bound(), || d.verify_plain()),
        ),
        // The floor: RS256 verify + the proof's raw signature check. What
        // is above it (decoding, key parsing, claims, thumbprint, mark) is
        // ours; see benches/README.md for why 2.2 cannot hold with ES256.
        (
            "dpop verify: bound (ES256 proof) / (plain RS256 + raw ES256 verify)",
            "≤ 1.15",
            paired(10, || d.verify_bound(), || d.verify_floor()),
        ),
        (
            "dpop verify: bound (RS256 + EdDSA proof + mark) / plain RS256",
            "",
            paired(10, || ed.verify_bound(), || ed.verify_plain()),
        ),
        (
            "dpop verify: bound (EdDSA proof) / (plain RS256 + raw EdDSA verify)",
            "≤ 1.15",
            paired(10, || ed.verify_bound(), || ed.verify_floor()),
        ),
    ];
    println!("\nPaired ratios (median of {ROUNDS} alternating rounds):\n");
    println!("| ratio | measured | target |");
    println!("|---|---|---|");
    for (name, target, ratio) in rows {
        println!("| {name} | {ratio:.3} | {target} |");
    }
}

fn main() {
    // Fixed at the real time, not at some constant: `jsonwebtoken` checks
    // `exp` against the system clock, and the tokens must pass both.
    let clock: SharedClock = ManualClock::new(SystemClock.now());
    let rs = Rs256::new(&clock);
    let mut c = Criterion::default().configure_from_args();
    rs256(&mut c, &rs);
    verify_steps(&mut c, &rs.s);
    es256(&mut c, &clock);
    eddsa(&mut c, &clock);
    dpop(
        &mut c,
        &Dpop::new(&rs, &clock, 256, Algorithm::ES256),
        &Dpop::new(&rs, &clock, 256, Algorithm::EdDSA),
        &Dpop::new(&rs, &clock, 256, Algorithm::RS256),
    );
    c.final_summary();
    // Only when benchmarking: `cargo test --benches` runs each row once, as a test.
    if std::env::args().any(|a| a == "--bench") {
        ratios(&rs, &clock);
    }
}
