//! The authority's rules, through every entry point that accepts tokens.
//!
//! The shared table runs the same revocation / consume / replay cases
//! through `POST /v1/verify`, the `Bearer` extractor of a plugin backend
//! (its own connection to the same real Redis) and the library call
//! `Authority::verify`, and expects the same answer from each: a rule
//! written once cannot differ by entry point. The other tests pin the
//! defects the authority redesign fixed, each failing without its fix.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRef;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokensmith::client::extract::{Bearer, BearerConfig, Policy};
use tokensmith::clients::ClientRegistry;
use tokensmith::config::Config;
use tokensmith::server::AppState;
use tokensmith::store::memory::MemoryStore;
use tokensmith::store::redis::RedisStore;
use tokensmith::store::AnyStore;
use tokensmith::SharedClock;
use tokensmith::TokenSpec;
use tokensmith::{exchange_audience, Validation, VerifyOptions};
use tower::ServiceExt;

use super::harness::{base_config, fixture_ring, Resp, TestApp, NOW, OTHER_KEY, SHOP_KEY};
use super::redis_harness::RedisServer;

const ISSUER: &str = "https://issuer.test";
const SHOP_ORIGIN: &str = "https://shop.example.com";
const SHOP_PK: &str = "pk_test_shop_123";

async fn redis_store(server: &RedisServer) -> RedisStore {
    // Epoch 0: no token of these tests predates the store.
    RedisStore::connect(&server.url, ISSUER, Duration::from_secs(2), 0)
        .await
        .unwrap()
}

/// A plugin backend's routes behind the `Bearer` extractor.
#[derive(Clone)]
struct Plugin {
    auth: BearerConfig,
}

impl FromRef<Plugin> for BearerConfig {
    fn from_ref(p: &Plugin) -> BearerConfig {
        p.auth.clone()
    }
}

struct Once;
impl Policy for Once {
    const CONSUME: bool = true;
}

/// The plugin backend of the table: it verifies offline with the issuer's
/// keys, for audience `chatbot`, and shares the issuer's Redis.
fn plugin(app: &TestApp, store: RedisStore) -> Router {
    let clock: SharedClock = app.clock.clone();
    let auth = BearerConfig::local(
        Arc::clone(&app.state.keys),
        Validation::new(ISSUER).audience("chatbot"),
        clock,
    )
    .unwrap()
    .with_store(Arc::new(store));
    Router::new()
        .route("/any", get(|b: Bearer| async move { b.claims.sub }))
        .route("/once", post(|b: Bearer<Once>| async move { b.claims.sub }))
        .with_state(Plugin { auth })
}

#[derive(Clone, Copy, Debug)]
enum Entry {
    Http,
    Extractor,
    Library,
}

/// One use of `token` through `entry`: `Ok` or the `error` code.
async fn use_token(app: &TestApp, plugin: &Router, entry: Entry, token: &str, consume: bool) -> Result<(), String> {
    match entry {
        Entry::Http => {
            let r = app
                .post(
                    "/v1/verify",
                    Some(SHOP_KEY),
                    &json!({"token": token, "consume": consume}),
                )
                .await;
            if r.status == StatusCode::OK {
                Ok(())
            } else {
                Err(r.error())
            }
        }
        Entry::Extractor => {
            let req = Request::builder()
                .method(if consume { "POST" } else { "GET" })
                .uri(if consume { "/once" } else { "/any" })
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            let resp = plugin.clone().oneshot(req).await.unwrap();
            let ok = resp.status() == StatusCode::OK;
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
            if ok {
                Ok(())
            } else {
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                Err(v["error"].as_str().unwrap().to_owned())
            }
        }
        Entry::Library => {
            let shop = app.state.authority.clients().by_id("shop_123").unwrap();
            let opts = VerifyOptions {
                consume,
                ..VerifyOptions::default()
            };
            app.state
                .authority
                .verify(&shop, token, &opts)
                .await
                .map(|_| ())
                .map_err(|e| e.code().to_owned())
        }
    }
}

fn jti_of(app: &TestApp, token: &str) -> String {
    let keys = Arc::clone(&app.state.keys);
    let v = tokensmith::Verifier::new(keys, Validation::new(ISSUER).any_audience(), app.clock.clone());
    v.verify(token).unwrap().jti
}

async fn revoke(app: &TestApp, key: &str, body: Value) {
    let r = app.post("/v1/revoke", Some(key), &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_point_gives_the_same_answers() {
    let server = RedisServer::start();
    let app = TestApp::with_store(&base_config(), AnyStore::Redis(redis_store(&server).await));
    let plugin = plugin(&app, redis_store(&server).await);
    for entry in [Entry::Http, Entry::Extractor, Entry::Library] {
        let sub = |case: &str| format!("{case}-{entry:?}");
        let token = |s: String| {
            let app = &app;
            async move { app.token(&json!({"sub": s})).await }
        };
        let check = |t: String, consume: bool| {
            let (app, plugin) = (&app, &plugin);
            async move { use_token(app, plugin, entry, &t, consume).await }
        };

        let fresh = token(sub("fresh")).await;
        assert_eq!(check(fresh.clone(), false).await, Ok(()), "{entry:?} fresh");
        assert_eq!(check(fresh.clone(), false).await, Ok(()), "{entry:?} reusable");

        let once = token(sub("once")).await;
        assert_eq!(check(once.clone(), true).await, Ok(()), "{entry:?} first consume");
        assert_eq!(
            check(once.clone(), true).await,
            Err("token_replayed".into()),
            "{entry:?} replay"
        );
        assert_eq!(
            check(once, false).await,
            Ok(()),
            "{entry:?} a consumed token still verifies"
        );

        // Consumed through another entry point: the same mark.
        let elsewhere = token(sub("elsewhere")).await;
        let other = if matches!(entry, Entry::Library) {
            Entry::Http
        } else {
            Entry::Library
        };
        assert_eq!(use_token(&app, &plugin, other, &elsewhere, true).await, Ok(()));
        assert_eq!(
            check(elsewhere, true).await,
            Err("token_replayed".into()),
            "{entry:?} consumed elsewhere"
        );

        let by_jti = token(sub("jti")).await;
        revoke(&app, SHOP_KEY, json!({"jti": jti_of(&app, &by_jti)})).await;
        assert_eq!(
            check(by_jti.clone(), false).await,
            Err("token_revoked".into()),
            "{entry:?} jti"
        );
        assert_eq!(
            check(by_jti, true).await,
            Err("token_revoked".into()),
            "{entry:?} jti consume"
        );

        let by_sub = token(sub("sub")).await;
        revoke(&app, SHOP_KEY, json!({"sub": sub("sub")})).await;
        assert_eq!(
            check(by_sub.clone(), false).await,
            Err("token_revoked".into()),
            "{entry:?} sub"
        );
        assert_eq!(
            check(by_sub, true).await,
            Err("token_revoked".into()),
            "{entry:?} sub consume"
        );

        // Another client's revocations touch none of shop's tokens.
        let foreign = token(sub("foreign")).await;
        revoke(&app, OTHER_KEY, json!({"jti": jti_of(&app, &foreign)})).await;
        revoke(&app, OTHER_KEY, json!({"sub": sub("foreign")})).await;
        assert_eq!(
            check(foreign.clone(), false).await,
            Ok(()),
            "{entry:?} foreign revocation"
        );
        assert_eq!(
            check(foreign, true).await,
            Ok(()),
            "{entry:?} foreign revocation, consume"
        );
    }
    // A token issued after its subject was revoked is good.
    revoke(&app, SHOP_KEY, json!({"sub": "later"})).await;
    app.clock.advance(1);
    let later = app.token(&json!({"sub": "later"})).await;
    for entry in [Entry::Http, Entry::Extractor, Entry::Library] {
        assert_eq!(
            use_token(&app, &plugin, entry, &later, false).await,
            Ok(()),
            "{entry:?} later"
        );
    }
}

#[tokio::test]
async fn revocations_take_only_well_formed_identifiers_and_spend_no_room_when_refused() {
    let app = TestApp::with_store(&base_config(), AnyStore::Memory(MemoryStore::new(2)));
    for bad in [
        json!({"jti": "j1"}),
        json!({"jti": "A".repeat(60_000)}),
        json!({"jti": "AAAAAAAAAAAAAAAAAAAAA+"}),
        json!({"jti": ""}),
        json!({"sub": ""}),
        json!({"sub": "u".repeat(257)}),
        json!({"jti": "AAAAAAAAAAAAAAAAAAAAAA", "sub": "u"}),
        json!({}),
    ] {
        let r = app.post("/v1/revoke", Some(SHOP_KEY), &bad).await;
        assert_eq!(
            (r.status, r.error().as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{bad}"
        );
    }
    // Nothing above took a slot: both fit.
    revoke(&app, SHOP_KEY, json!({"jti": "AAAAAAAAAAAAAAAAAAAAAA"})).await;
    revoke(&app, SHOP_KEY, json!({"sub": "u".repeat(256)})).await;
}

async fn post_from(app: &TestApp, path: &str, body: &Value) -> Resp {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .header("origin", SHOP_ORIGIN)
        .body(Body::from(body.to_string()))
        .unwrap();
    app.send(req).await
}

fn field(r: &Resp, name: &str) -> String {
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    r.json()[name].as_str().unwrap().to_owned()
}

/// A visitor token for `sub`, exchanged: (access token, refresh token).
async fn exchanged(app: &TestApp, sub: &str) -> (String, String) {
    let visitor = app.token(&json!({"sub": sub, "purpose": "exchange"})).await;
    let r = post_from(app, "/v1/exchange", &json!({"token": visitor})).await;
    (field(&r, "token"), field(&r, "refresh_token"))
}

#[tokio::test]
async fn revoking_a_subject_ends_its_refresh_families_until_it_signs_in_again() {
    let app = TestApp::base();
    let (access, refresh) = exchanged(&app, "dave").await;
    let refreshed = post_from(&app, "/v1/refresh", &json!({"refresh_token": refresh})).await;
    let refresh = field(&refreshed, "refresh_token");
    revoke(&app, SHOP_KEY, json!({"sub": "dave"})).await;
    let r = post_from(&app, "/v1/refresh", &json!({"refresh_token": refresh})).await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_refresh_token")
    );
    let r = app.post("/v1/verify", Some(SHOP_KEY), &json!({"token": access})).await;
    assert_eq!(r.error(), "token_revoked");
    // Still refused long after every access token has expired: the
    // revocation lasts as long as the client's refresh families.
    app.clock.advance(25 * 3600);
    let r = post_from(&app, "/v1/refresh", &json!({"refresh_token": refresh})).await;
    assert_eq!(r.error(), "invalid_refresh_token");
    // A family started after the revocation lives.
    let (_, fresh) = exchanged(&app, "dave").await;
    let r = post_from(&app, "/v1/refresh", &json!({"refresh_token": fresh})).await;
    field(&r, "token");
    // Another client's revocation of the same name ends nothing of shop's.
    revoke(&app, OTHER_KEY, json!({"sub": "dave"})).await;
    let r = post_from(
        &app,
        "/v1/refresh",
        &json!({"refresh_token": field(&r, "refresh_token")}),
    )
    .await;
    field(&r, "token");
}

#[tokio::test]
async fn refresh_and_exchange_spend_the_client_rate_and_burn_nothing_when_refused() {
    let app = TestApp::new(&base_config().replace("rate_limit = \"1000/s\"", "rate_limit = \"3/m\""));
    let guest = post_from(&app, "/v1/guest", &json!({"client_key": SHOP_PK})).await;
    let mut refresh = field(&guest, "refresh_token");
    for _ in 0..3 {
        let r = post_from(&app, "/v1/refresh", &json!({"refresh_token": refresh})).await;
        refresh = field(&r, "refresh_token");
    }
    let r = post_from(&app, "/v1/refresh", &json!({"refresh_token": refresh})).await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!(r.header("retry-after").is_some());

    // The visitor tokens are minted through the API key (its own counter,
    // also 3 a minute: the fourth in the next window).
    let mut visitors = Vec::new();
    for i in 0..4 {
        if i == 3 {
            app.clock.advance(60);
        }
        visitors.push(app.token(&json!({"sub": format!("v{i}"), "purpose": "exchange"})).await);
    }
    for v in &visitors[..3] {
        field(&post_from(&app, "/v1/exchange", &json!({"token": v})).await, "token");
    }
    let r = post_from(&app, "/v1/exchange", &json!({"token": visitors[3]})).await;
    assert_eq!(r.error(), "rate_limited");

    // A new window: the refused refresh token and visitor token were not spent.
    app.clock.advance(60);
    field(
        &post_from(&app, "/v1/refresh", &json!({"refresh_token": refresh})).await,
        "token",
    );
    field(
        &post_from(&app, "/v1/exchange", &json!({"token": visitors[3]})).await,
        "token",
    );
}

#[tokio::test]
async fn the_issuer_never_signs_what_its_verifier_refuses() {
    let app = TestApp::base();
    let r = app
        .post(
            "/v1/tokens",
            Some(SHOP_KEY),
            &json!({"sub": "u", "claims": {"tier": "x".repeat(7000)}}),
        )
        .await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let why = r.json()["error_description"].as_str().unwrap().to_owned();
    assert!(why.contains("8192"), "{why}");
    // Just under the cap is issued, and verifies.
    let r = app
        .post(
            "/v1/tokens",
            Some(SHOP_KEY),
            &json!({"sub": "u", "claims": {"tier": "x".repeat(5500)}}),
        )
        .await;
    let token = field(&r, "token");
    assert!(token.len() > 7000, "{}", token.len());
    let r = app.post("/v1/verify", Some(SHOP_KEY), &json!({"token": token})).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn the_visitor_audience_is_reserved_against_the_issuer_actually_served() {
    // The config is checked against its own issuer; `serve` then names the
    // address it bound: the authority checks again, against that one.
    let toml = base_config().replace(
        "audiences = [\"chatbot-admin\"]",
        "audiences = [\"http://127.0.0.1:18085/v1/exchange\"]",
    );
    let mut cfg = Config::from_toml_str(&toml, Vec::<(String, String)>::new()).unwrap();
    cfg.issuer = "http://127.0.0.1:18085".into();
    let clients = ClientRegistry::from_clients(&cfg.clients).unwrap();
    let store = AnyStore::Memory(MemoryStore::new(10));
    let clock: SharedClock = tokensmith::ManualClock::new(NOW);
    let Err(err) = AppState::new(cfg, &fixture_ring(NOW), clients, store, clock) else {
        panic!("a client with the served issuer's visitor audience was accepted");
    };
    assert!(err.to_string().contains("reserved for visitor tokens"), "{err}");

    // A reload that would bring such a client is refused; the old clients stay.
    let app = TestApp::base();
    let elsewhere = base_config()
        .replace(
            "issuer = \"https://issuer.test\"",
            "issuer = \"https://elsewhere.test\"",
        )
        .replace(
            "audiences = [\"chatbot-admin\"]",
            "audiences = [\"https://issuer.test/v1/exchange\"]",
        );
    let cfg = Config::from_toml_str(&elsewhere, Vec::<(String, String)>::new()).unwrap();
    let mut registry = ClientRegistry::from_clients(&cfg.clients).unwrap();
    let err = app.state.authority.replace_clients(registry.clone()).unwrap_err();
    assert_eq!(err.code(), "invalid_config");
    assert_eq!(app.state.authority.clients().len(), 2);
    // One without it is taken.
    let mut cfg = cfg;
    cfg.clients.retain(|c| c.id != "shop_123");
    registry = ClientRegistry::from_clients(&cfg.clients).unwrap();
    app.state.authority.replace_clients(registry).unwrap();
    assert_eq!(app.state.authority.clients().len(), 1);

    // And whatever carries the audience, a long-lived token is no visitor token.
    let app = TestApp::base();
    let spec = TokenSpec {
        sub: "mallory".into(),
        aud: vec![exchange_audience(ISSUER)],
        ttl: 86_400,
        ..TokenSpec::default()
    };
    let long = app.state.authority.sign(Some("shop_123"), spec).unwrap().token;
    let r = post_from(&app, "/v1/exchange", &json!({"token": long})).await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (StatusCode::UNAUTHORIZED, "ttl_too_long")
    );
}

#[tokio::test]
async fn duplicate_members_in_a_request_are_refused() {
    let app = TestApp::base();
    for body in [
        r#"{"sub":"a","sub":"admin"}"#,
        r#"{"sub":"a","claims":{"tier":"free","tier":"gold"}}"#,
        r#"{"sub":"a","claims":{"tier":{"x":1,"x":2}}}"#,
    ] {
        let req = Request::post("/v1/tokens")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {SHOP_KEY}"))
            .body(Body::from(body))
            .unwrap();
        let r = app.send(req).await;
        assert_eq!(
            (r.status, r.error().as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{body}"
        );
        assert!(
            r.json()["error_description"].as_str().unwrap().contains("duplicate"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn the_operator_cannot_stamp_a_client_id() {
    let app = TestApp::base();
    let mut extra = serde_json::Map::new();
    extra.insert("client_id".into(), json!("shop_123"));
    let spec = TokenSpec {
        sub: "op".into(),
        aud: vec!["chatbot".into()],
        ttl: 60,
        extra,
        ..TokenSpec::default()
    };
    let issued = app.state.authority.sign(None, spec).unwrap();
    assert_eq!(issued.claims.client_id(), None);
    // So shop cannot consume or revoke it as its own.
    let r = app
        .post(
            "/v1/verify",
            Some(OTHER_KEY),
            &json!({"token": issued.token, "audience": "chatbot"}),
        )
        .await;
    assert_eq!(r.error(), "wrong_audience");
}

#[test]
fn a_reload_says_what_changed_and_never_removes_every_client() {
    let app = TestApp::base();
    let authority = &app.state.authority;
    let load = |toml: &str| {
        let cfg = Config::from_toml_str(toml, Vec::<(String, String)>::new()).unwrap();
        ClientRegistry::from_clients(&cfg.clients).unwrap()
    };
    // An empty config (a truncated file, a wrong path) would turn every API
    // key away: refused, and the clients stay.
    let err = authority.replace_clients(load("")).unwrap_err();
    assert_eq!(err.code(), "invalid_config");
    assert!(err.to_string().contains("remove all 2 clients"), "{err}");
    assert_eq!(authority.clients().len(), 2);
    assert!(authority.clients().by_id("shop_123").is_some());

    // A reload that keeps some says which by id.
    let changed = base_config()
        .replace("rate_limit = \"1000/s\"", "rate_limit = \"999/s\"")
        .replace("id = \"other\"", "id = \"third\"");
    let change = authority.replace_clients(load(&changed)).unwrap();
    assert_eq!(
        change.to_string(),
        "1 added (third), 1 removed (other), 1 changed (shop_123), 0 unchanged"
    );
    assert_eq!(authority.clients().len(), 2);
    let same = authority.replace_clients(load(&changed)).unwrap();
    assert!(same.is_empty());
    assert_eq!(same.unchanged, 2);

    // From no clients, no clients is no loss.
    let cfg = Config::from_toml_str("", Vec::<(String, String)>::new()).unwrap();
    let keys = std::sync::Arc::clone(authority.keys());
    let empty = tokensmith::Authority::new(
        &cfg,
        keys,
        ClientRegistry::default(),
        MemoryStore::new(10).into(),
        authority.clock().clone(),
    )
    .unwrap();
    assert!(empty.replace_clients(ClientRegistry::default()).unwrap().is_empty());
}
