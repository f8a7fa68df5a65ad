//! DPoP (RFC 9449) end to end, in-process: the token endpoints bind tokens
//! to a proof's key, `/v1/verify` and the `Bearer` extractor require a
//! proof by that key, public clients' refresh tokens stay with the key, and
//! proofs made by an independent implementation (the `dpop` npm package)
//! are accepted. One test per refusal rule at the HTTP edge; the rules of
//! the proof itself have their own unit tests (`src/dpop/tests.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokensmith::dpop::{make_proof, DpopRules, Nonces};
use tokensmith::jose::{Algorithm, SigningKey};
use tokensmith::store::memory::MemoryStore;
use tokensmith::{Bearer, BearerConfig, SharedClock, Validation};
use tower::ServiceExt;

use super::harness::{base_config, Resp, TestApp, NOW, SHOP_KEY};

const ISSUER: &str = "https://issuer.test";

fn es256() -> SigningKey {
    SigningKey::generate(Algorithm::ES256, 0).unwrap().0
}

fn proof(key: &SigningKey, method: &str, path: &str, token: Option<&str>) -> String {
    make_proof(key, method, &format!("{ISSUER}{path}"), NOW, token, None).unwrap()
}

async fn post_with(app: &TestApp, path: &str, api_key: Option<&str>, dpop: Option<&str>, body: &Value) -> Resp {
    let mut req = Request::post(path).header("content-type", "application/json");
    if let Some(k) = api_key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if let Some(p) = dpop {
        req = req.header("dpop", p);
    }
    if path != "/v1/tokens" {
        req = req.header("origin", "https://shop.example.com");
    }
    app.send(req.body(Body::from(body.to_string())).unwrap()).await
}

/// A DPoP-bound token for `shop_123`, bound to `key`.
async fn bound_token(app: &TestApp, key: &SigningKey) -> String {
    let r = post_with(
        app,
        "/v1/tokens",
        Some(SHOP_KEY),
        Some(&proof(key, "POST", "/v1/tokens", None)),
        &json!({"sub": "alice"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["token_type"], "DPoP");
    r.json()["token"].as_str().unwrap().to_owned()
}

fn resource_url() -> String {
    "https://api.example.com/orders".into()
}

async fn verify_with(app: &TestApp, token: &str, dpop: Option<Value>) -> Resp {
    let mut body = json!({ "token": token });
    if let Some(d) = dpop {
        body["dpop"] = d;
    }
    app.post("/v1/verify", Some(SHOP_KEY), &body).await
}

fn resource_proof(key: &SigningKey, token: &str) -> Value {
    let p = make_proof(key, "GET", &resource_url(), NOW, Some(token), None).unwrap();
    json!({"proof": p, "method": "GET", "url": resource_url()})
}

fn assert_dpop_refused(r: &Resp, code: &str) {
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.error(), code);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(&format!("DPoP error=\"{code}\""))
            && challenge.contains("algs=\"ES256 EdDSA RS256 PS256\""),
        "{challenge}"
    );
}

fn jkt(key: &SigningKey) -> String {
    tokensmith::Jwk::from_public(key.algorithm(), key.public_key())
        .thumbprint()
        .unwrap()
}

#[tokio::test]
async fn a_token_request_with_a_proof_gets_a_token_bound_to_its_key() {
    let app = TestApp::base();
    let key = es256();
    let token = bound_token(&app, &key).await;
    let r = verify_with(&app, &token, Some(resource_proof(&key, &token))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["claims"]["cnf"]["jkt"], jkt(&key));
    // Without a proof, the same endpoint answers Bearer tokens as before.
    let plain = app.token(&json!({"sub": "bob"})).await;
    assert_eq!(verify_with(&app, &plain, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_bound_token_presented_as_bearer_is_refused() {
    let app = TestApp::base();
    let key = es256();
    let token = bound_token(&app, &key).await;
    assert_dpop_refused(&verify_with(&app, &token, None).await, "invalid_dpop_proof");
}

#[tokio::test]
async fn an_unbound_token_presented_with_a_proof_is_refused() {
    let app = TestApp::base();
    let plain = app.token(&json!({"sub": "bob"})).await;
    let r = verify_with(&app, &plain, Some(resource_proof(&es256(), &plain))).await;
    assert_dpop_refused(&r, "invalid_dpop_proof");
}

#[tokio::test]
async fn a_token_bound_to_another_key_is_refused() {
    let app = TestApp::base();
    let token = bound_token(&app, &es256()).await;
    let thief = es256();
    assert_dpop_refused(
        &verify_with(&app, &token, Some(resource_proof(&thief, &token))).await,
        "invalid_dpop_proof",
    );
}

#[tokio::test]
async fn a_proof_jti_is_single_use() {
    let app = TestApp::base();
    let key = es256();
    let token = bound_token(&app, &key).await;
    let once = resource_proof(&key, &token);
    assert_eq!(
        verify_with(&app, &token, Some(once.clone())).await.status,
        StatusCode::OK
    );
    assert_dpop_refused(&verify_with(&app, &token, Some(once)).await, "invalid_dpop_proof");
    // A token request's proof too.
    let p = proof(&key, "POST", "/v1/tokens", None);
    let body = json!({"sub": "alice"});
    assert_eq!(
        post_with(&app, "/v1/tokens", Some(SHOP_KEY), Some(&p), &body)
            .await
            .status,
        StatusCode::OK
    );
    let again = post_with(&app, "/v1/tokens", Some(SHOP_KEY), Some(&p), &body).await;
    assert_dpop_refused(&again, "invalid_dpop_proof");
}

#[tokio::test]
async fn a_proof_for_another_method_or_url_is_refused() {
    let app = TestApp::base();
    let key = es256();
    let token = bound_token(&app, &key).await;
    let mut wrong_method = resource_proof(&key, &token);
    wrong_method["method"] = json!("POST");
    assert_dpop_refused(
        &verify_with(&app, &token, Some(wrong_method)).await,
        "invalid_dpop_proof",
    );
    let mut wrong_url = resource_proof(&key, &token);
    wrong_url["url"] = json!("https://api.example.com/admin");
    assert_dpop_refused(&verify_with(&app, &token, Some(wrong_url)).await, "invalid_dpop_proof");
    // A token request's proof names the token endpoint at the issuer.
    let elsewhere = proof(&key, "POST", "/v1/guest", None);
    let r = post_with(
        &app,
        "/v1/tokens",
        Some(SHOP_KEY),
        Some(&elsewhere),
        &json!({"sub": "a"}),
    )
    .await;
    assert_dpop_refused(&r, "invalid_dpop_proof");
}

#[tokio::test]
async fn an_old_proof_is_refused() {
    let app = TestApp::base();
    let key = es256();
    let token = bound_token(&app, &key).await;
    let p = resource_proof(&key, &token);
    app.clock.advance(61);
    assert_dpop_refused(&verify_with(&app, &token, Some(p)).await, "invalid_dpop_proof");
}

#[tokio::test]
async fn a_proof_for_another_token_is_refused() {
    let app = TestApp::base();
    let key = es256();
    let token = bound_token(&app, &key).await;
    let other = bound_token(&app, &key).await;
    assert_dpop_refused(
        &verify_with(&app, &token, Some(resource_proof(&key, &other))).await,
        "invalid_dpop_proof",
    );
}

#[tokio::test]
async fn a_public_clients_refresh_token_stays_with_its_key() {
    let app = TestApp::base();
    let key = es256();
    let guest = |k: &SigningKey| proof(k, "POST", "/v1/guest", None);
    let r = post_with(
        &app,
        "/v1/guest",
        None,
        Some(&guest(&key)),
        &json!({"client_key": "pk_test_shop_123"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["token_type"], "DPoP");
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_owned();
    let body = json!({ "refresh_token": refresh });
    // Without a proof, or with another key: refused, and nothing is spent.
    let none = post_with(&app, "/v1/refresh", None, None, &body).await;
    assert_dpop_refused(&none, "invalid_dpop_proof");
    let thief = post_with(
        &app,
        "/v1/refresh",
        None,
        Some(&proof(&es256(), "POST", "/v1/refresh", None)),
        &body,
    )
    .await;
    assert_dpop_refused(&thief, "invalid_dpop_proof");
    let ok = post_with(
        &app,
        "/v1/refresh",
        None,
        Some(&proof(&key, "POST", "/v1/refresh", None)),
        &body,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json()["token_type"], "DPoP");
}

#[tokio::test]
async fn a_client_that_requires_dpop_gets_nothing_without_a_proof() {
    let cfg = base_config().replace(
        "guest_scopes = [\"chat\"]",
        "guest_scopes = [\"chat\"]\ndpop = \"required\"",
    );
    let app = TestApp::new(&cfg);
    let r = post_with(&app, "/v1/tokens", Some(SHOP_KEY), None, &json!({"sub": "a"})).await;
    assert_dpop_refused(&r, "invalid_dpop_proof");
    let r = post_with(
        &app,
        "/v1/guest",
        None,
        None,
        &json!({"client_key": "pk_test_shop_123"}),
    )
    .await;
    assert_dpop_refused(&r, "invalid_dpop_proof");
    // OAuth 2.0: 400 invalid_dpop_proof (RFC 9449 §5), then a bound token.
    let form = "grant_type=client_credentials";
    let oauth = |dpop: Option<String>| {
        let mut req = Request::post("/oauth2/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {}", basic("shop_123", SHOP_KEY)));
        if let Some(p) = dpop {
            req = req.header("dpop", p);
        }
        req.body(Body::from(form)).unwrap()
    };
    let r = app.send(oauth(None)).await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_dpop_proof")
    );
    let r = app
        .send(oauth(Some(proof(&es256(), "POST", "/oauth2/token", None))))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["token_type"], "DPoP");
}

/// `/oauth2/token` (client credentials, Basic `shop_123`) with `dpop`.
async fn oauth_token(app: &TestApp, dpop: Option<String>) -> Resp {
    let mut req = Request::post("/oauth2/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {}", basic("shop_123", SHOP_KEY)));
    if let Some(p) = dpop {
        req = req.header("dpop", p);
    }
    app.send(req.body(Body::from("grant_type=client_credentials")).unwrap())
        .await
}

async fn introspect(app: &TestApp, token: &str) -> Value {
    let req = Request::post("/oauth2/introspect")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {}", basic("shop_123", SHOP_KEY)))
        .body(Body::from(format!("token={token}")))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[tokio::test]
async fn the_token_endpoint_and_introspection_say_dpop_and_the_key_of_a_bound_token() {
    let app = TestApp::base();
    let key = es256();
    // RFC 9449 §5: token_type DPoP for a bound token, Bearer otherwise.
    let r = oauth_token(&app, Some(proof(&key, "POST", "/oauth2/token", None))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["token_type"], "DPoP");
    let bound = r.json()["access_token"].as_str().unwrap().to_owned();
    let r = oauth_token(&app, None).await;
    assert_eq!(r.json()["token_type"], "Bearer");
    let plain = r.json()["access_token"].as_str().unwrap().to_owned();

    // RFC 9449 §6.2, RFC 7662: the binding is in the introspection answer.
    let i = introspect(&app, &bound).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["token_type"], "DPoP");
    assert_eq!(i["cnf"], json!({ "jkt": jkt(&key) }));
    // A token bound through /v1/tokens says the same.
    let v1 = bound_token(&app, &key).await;
    let i = introspect(&app, &v1).await;
    assert_eq!(
        (&i["token_type"], &i["cnf"]["jkt"]),
        (&json!("DPoP"), &json!(jkt(&key)))
    );
    let i = introspect(&app, &plain).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["token_type"], "Bearer");
    assert!(i.get("cnf").is_none(), "{i}");
}

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}

#[tokio::test]
async fn server_nonces_are_asked_for_and_accepted() {
    let cfg = format!(
        "{}\n[dpop]\nrequire_nonce = true\nnonce_secret = \"0123456789abcdef0123\"\n",
        base_config()
    );
    let app = TestApp::new(&cfg);
    let key = es256();
    let r = post_with(
        &app,
        "/v1/tokens",
        Some(SHOP_KEY),
        Some(&proof(&key, "POST", "/v1/tokens", None)),
        &json!({"sub": "a"}),
    )
    .await;
    assert_dpop_refused(&r, "use_dpop_nonce");
    let nonce = r.header("dpop-nonce").unwrap().to_owned();
    let with_nonce = make_proof(&key, "POST", &format!("{ISSUER}/v1/tokens"), NOW, None, Some(&nonce)).unwrap();
    let r = post_with(
        &app,
        "/v1/tokens",
        Some(SHOP_KEY),
        Some(&with_nonce),
        &json!({"sub": "a"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test]
async fn a_store_that_cannot_mark_the_proof_refuses_it() {
    // A store with room for nothing: the mark fails, and the request with it.
    let app = TestApp::with_store(&base_config(), MemoryStore::new(1).into());
    let key = es256();
    let first = post_with(
        &app,
        "/v1/tokens",
        Some(SHOP_KEY),
        Some(&proof(&key, "POST", "/v1/tokens", None)),
        &json!({"sub": "a"}),
    )
    .await;
    let second = post_with(
        &app,
        "/v1/tokens",
        Some(SHOP_KEY),
        Some(&proof(&key, "POST", "/v1/tokens", None)),
        &json!({"sub": "a"}),
    )
    .await;
    let statuses = [first.status, second.status];
    assert!(statuses.contains(&StatusCode::SERVICE_UNAVAILABLE), "{statuses:?}");
}

// ---- The Bearer extractor of a plugin backend.

async fn orders(token: Bearer) -> String {
    token.sub.clone()
}

fn plugin(app: &TestApp) -> Router {
    let snapshot = app.state.authority.keys().load_full();
    let clock: SharedClock = app.clock.clone();
    let rules = DpopRules {
        iat_window: 60,
        require_nonce: false,
        nonces: Nonces::from_secret(b"plugin", 300),
    };
    let config = BearerConfig::local(snapshot, Validation::new(ISSUER).audience("chatbot"), clock)
        .unwrap()
        .with_store(Arc::new(MemoryStore::new(1000)))
        .with_dpop(rules, "https://api.example.com");
    Router::new().route("/orders", get(orders)).with_state(config)
}

async fn call(router: &Router, authorization: &str, dpop: Option<&str>) -> Resp {
    let mut req = Request::get("/orders").header("authorization", authorization);
    if let Some(p) = dpop {
        req = req.header("dpop", p);
    }
    let resp = router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Resp { status, headers, body }
}

#[tokio::test]
async fn the_extractor_takes_dpop_tokens_with_their_proof_only() {
    let app = TestApp::base();
    let router = plugin(&app);
    let key = es256();
    let token = bound_token(&app, &key).await;
    let p = make_proof(&key, "GET", &resource_url(), NOW, Some(&token), None).unwrap();
    let ok = call(&router, &format!("DPoP {token}"), Some(&p)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.body, b"alice");
    // Replayed proof, no proof, Bearer, another key.
    assert_dpop_refused(
        &call(&router, &format!("DPoP {token}"), Some(&p)).await,
        "invalid_dpop_proof",
    );
    assert_dpop_refused(
        &call(&router, &format!("DPoP {token}"), None).await,
        "invalid_dpop_proof",
    );
    assert_dpop_refused(
        &call(&router, &format!("Bearer {token}"), None).await,
        "invalid_dpop_proof",
    );
    let thief = make_proof(&es256(), "GET", &resource_url(), NOW, Some(&token), None).unwrap();
    assert_dpop_refused(
        &call(&router, &format!("DPoP {token}"), Some(&thief)).await,
        "invalid_dpop_proof",
    );
    // A plain token still goes as Bearer.
    let plain = app.token(&json!({"sub": "bob"})).await;
    assert_eq!(
        call(&router, &format!("Bearer {plain}"), None).await.status,
        StatusCode::OK
    );
}

// ---- An independent implementation: the `dpop` npm package.

/// A key held by `tests/browser/dpop-proofs.mjs` (the `dpop` npm package),
/// which makes proofs on request; `None` when the package is not installed
/// (`scripts/browser-test` installs it; `TS_REQUIRE_NPM_DPOP=1`
/// makes its absence a failure).
struct NpmKey {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    jkt: String,
}

impl NpmKey {
    fn new(alg: &str) -> Option<NpmKey> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        if !root.join("node_modules/dpop").is_dir() {
            assert!(
                std::env::var_os("TS_REQUIRE_NPM_DPOP").is_none(),
                "the dpop npm package is not installed: npm ci --prefix tests/browser"
            );
            eprintln!("skipped: the dpop npm package is not installed (npm ci --prefix tests/browser)");
            return None;
        }
        NpmKey::spawn(
            std::process::Command::new("node")
                .arg(root.join("dpop-proofs.mjs"))
                .current_dir(&root),
            alg,
        )
    }

    /// Proofs built by hand with Python's joserfc (`tests/oauth/dpop_joserfc.py`),
    /// when `python3` has it.
    fn joserfc(alg: &str) -> Option<NpmKey> {
        let has = std::process::Command::new("python3")
            .args(["-c", "import joserfc"])
            .status()
            .is_ok_and(|s| s.success());
        if !has {
            eprintln!("skipped: python3 has no joserfc");
            return None;
        }
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oauth/dpop_joserfc.py");
        NpmKey::spawn(std::process::Command::new("python3").arg(script), alg)
    }

    fn spawn(cmd: &mut std::process::Command, alg: &str) -> Option<NpmKey> {
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node");
        let stdin = child.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut key = NpmKey {
            child,
            stdin,
            stdout,
            jkt: String::new(),
        };
        key.jkt = key.ask(&json!({ "alg": alg }))["jkt"].as_str().unwrap().to_owned();
        Some(key)
    }

    fn ask(&mut self, msg: &Value) -> Value {
        use std::io::{BufRead as _, Write as _};
        writeln!(self.stdin, "{msg}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn proof(&mut self, htm: &str, htu: &str, token: Option<&str>) -> String {
        let mut msg = json!({ "htm": htm, "htu": htu });
        if let Some(t) = token {
            msg["accessToken"] = json!(t);
        }
        self.ask(&msg)["proof"].as_str().unwrap().to_owned()
    }
}

impl Drop for NpmKey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn proofs_of_the_dpop_npm_package_are_accepted() {
    // Ed25519: the package names it so (RFC 9864), never EdDSA.
    for alg in ["ES256", "RS256", "PS256", "Ed25519"] {
        let Some(key) = NpmKey::new(alg) else {
            return;
        };
        independent_proofs_are_accepted(alg, key).await;
    }
}

#[tokio::test]
async fn proofs_built_with_joserfc_are_accepted() {
    for alg in ["ES256", "PS256"] {
        let Some(key) = NpmKey::joserfc(alg) else {
            return;
        };
        independent_proofs_are_accepted(alg, key).await;
    }
}

async fn independent_proofs_are_accepted(alg: &str, mut key: NpmKey) {
    {
        // The package stamps iat with the real time: so does the app's clock here.
        let app = TestApp::base();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        app.clock.set(i64::try_from(now.as_secs()).unwrap());
        let p = key.proof("POST", &format!("{ISSUER}/v1/tokens"), None);
        let r = post_with(&app, "/v1/tokens", Some(SHOP_KEY), Some(&p), &json!({"sub": "alice"})).await;
        assert_eq!(r.status, StatusCode::OK, "{alg}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["token_type"], "DPoP");
        let token = r.json()["token"].as_str().unwrap().to_owned();
        let p = key.proof("GET", &resource_url(), Some(&token));
        let ok = verify_with(
            &app,
            &token,
            Some(json!({"proof": p, "method": "GET", "url": resource_url()})),
        )
        .await;
        assert_eq!(
            ok.status,
            StatusCode::OK,
            "{alg}: {}",
            String::from_utf8_lossy(&ok.body)
        );
        assert_eq!(ok.json()["claims"]["cnf"]["jkt"], key.jkt.as_str(), "{alg}");
        // Its proof for another URL, and a replay of its good proof: refused.
        let elsewhere = key.proof("GET", "https://api.example.com/admin", Some(&token));
        let r = verify_with(
            &app,
            &token,
            Some(json!({"proof": elsewhere, "method": "GET", "url": resource_url()})),
        )
        .await;
        assert_dpop_refused(&r, "invalid_dpop_proof");
        let r = verify_with(
            &app,
            &token,
            Some(json!({"proof": p, "method": "GET", "url": resource_url()})),
        )
        .await;
        assert_dpop_refused(&r, "invalid_dpop_proof");
    }
}
