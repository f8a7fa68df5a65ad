//! ECDSA malleability: `(r, s)` and `(r, n - s)` are both valid signatures
//! of one message, so an ES256 token has a second spelling that anyone can
//! make without the key. We sign low-S only, we still accept high-S (other
//! signers' tokens are valid ECDSA), and nothing keys on the token string:
//! the second spelling is the same token to every single-use check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use tokensmith::clients::ClientRegistry;
use tokensmith::config::Config;
use tokensmith::jose::{Algorithm, SigningKey};
use tokensmith::keys::{KeyRing, KeyState, RingKey};
use tokensmith::server::{app, AppState};
use tokensmith::store::memory::MemoryStore;
use tokensmith::store::AnyStore;
use tokensmith::{ManualClock, SharedClock};

use crate::common::pkcs8;
use crate::harness::{base_config, TestApp, NOW, SHOP_KEY};

/// The P-256 group order, big-endian (SEC 2 §2.4.2), written out here
/// rather than taken from the crate under test.
const N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
const HALF_N: &str = "7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8";

/// The service with an ES256 ring (the `p256` fixture active, a fresh next key).
fn es256_app() -> TestApp {
    let cfg = Config::from_toml_str(&base_config(), Vec::<(String, String)>::new()).unwrap();
    let clients = ClientRegistry::from_clients(&cfg.clients).unwrap();
    let active = SigningKey::from_pkcs8(Algorithm::ES256, &pkcs8("p256")).unwrap();
    let next = SigningKey::generate(Algorithm::ES256, 0).unwrap().0;
    let ring = KeyRing::from_keys(vec![
        RingKey::fresh(active, KeyState::Active, NOW).unwrap(),
        RingKey::fresh(next, KeyState::Next, NOW).unwrap(),
    ])
    .unwrap();
    let clock = ManualClock::new(NOW);
    let shared: SharedClock = clock.clone();
    let store = AnyStore::Memory(MemoryStore::new(1_000));
    let state = Arc::new(AppState::new(cfg, &ring, clients, store, shared).unwrap());
    let router = app(Arc::clone(&state));
    TestApp { state, clock, router }
}

fn unhex(s: &str) -> Vec<u8> {
    crate::common::hex(s)
}

/// The token with its signature's `s` replaced by `n - s`.
fn other_spelling(token: &str) -> String {
    let (signing_input, sig) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    assert_eq!(sig.len(), 64);
    let n = unhex(N);
    let mut s = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(n[i]) - i16::from(sig[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        s[i] = (d + 256 * borrow) as u8;
    }
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode([&sig[..32], &s[..]].concat())
    )
}

fn s_of(token: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(token.rsplit_once('.').unwrap().1).unwrap()[32..].to_vec()
}

async fn verify(app: &TestApp, token: &str, consume: bool) -> (StatusCode, Value) {
    let r = app
        .post(
            "/v1/verify",
            Some(SHOP_KEY),
            &json!({ "token": token, "consume": consume }),
        )
        .await;
    (r.status, r.json())
}

#[tokio::test]
async fn issued_es256_tokens_are_low_s_and_their_high_s_spelling_is_the_same_token() {
    let app = es256_app();
    let half = unhex(HALF_N);
    let mut tokens = Vec::new();
    // About half of these would be high-S without normalisation.
    for i in 0..64 {
        let token = app.token(&json!({ "sub": format!("user-{i}") })).await;
        assert!(s_of(&token) <= half, "token {i} is high-S: {token}");
        tokens.push(token);
    }

    let token = &tokens[0];
    let high = other_spelling(token);
    assert_ne!(&high, token);
    assert!(s_of(&high) > half);
    // Another signer's high-S token is valid ECDSA: it verifies, with the same claims.
    let (st, low_answer) = verify(&app, token, false).await;
    assert_eq!(st, StatusCode::OK, "{low_answer}");
    let (st, high_answer) = verify(&app, &high, false).await;
    assert_eq!(st, StatusCode::OK, "{high_answer}");
    assert_eq!(high_answer, low_answer);

    // Single use keys on the `jti`, not on the string: consuming one
    // spelling consumes the other, in either order.
    let (st, v) = verify(&app, &high, true).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = verify(&app, token, true).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_replayed"))
    );
    let second = &tokens[1];
    let (st, v) = verify(&app, second, true).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = verify(&app, &other_spelling(second), true).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_replayed"))
    );
}
