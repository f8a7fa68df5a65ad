//! An identity backend: the app a user signs in to, which hands a chatbot
//! widget a short-lived token from tokensmith.
//!
//! `POST /login` with `{"user": "alice"}` signs in (a demo: no password) and
//! sets a session cookie. `GET /chat` answers, for a signed-in user, a page
//! that embeds the chatbot with a token for that user (or JSON with
//! `Accept: application/json`). The token comes from tokensmith's
//! `POST /v1/tokens` through a [`TokenCache`] keyed by user, so a user who
//! reloads the page gets the same token until it is due for renewal, and
//! with `REDIS_URL` set every instance of this backend shares those tokens.
//!
//! It is also the host of the browser SDK demo (`sdk/README.md`): `GET /`
//! is the host page (sign in, a session token through `sessionTokens`, the
//! widget in an iframe), `GET /widget` the widget (`widgetAuth`; `?guest`
//! for a guest), and the two endpoints those flows need, for the signed-in
//! user: `POST /api/widget-auth` answers `{token, expires_in, expires_at}`
//! fresh from `POST /v1/tokens` (the SDK caches it, so this does not), and
//! `POST /api/visitor-token` answers a single-use visitor token
//! (`"purpose": "exchange"`) as text, which the widget exchanges at
//! tokensmith's `/v1/exchange`. `POST /logout` ends the session.
//!
//! ```text
//! cargo run -- serve --dev                  # prints DEV_API_KEY once
//! ISSUER_API_KEY=sk_... cargo run --release -p tokensmith-examples --example identity_backend
//! curl -si localhost:3000/login -H 'content-type: application/json' -d '{"user":"alice"}'
//! curl -s localhost:3000/chat -H 'cookie: sid=...' -H 'accept: application/json'
//! ```
//!
//! Settings (environment):
//! - `ISSUER_URL`: tokensmith's base URL. Default `http://127.0.0.1:8080`.
//! - `ISSUER_API_KEY`: the client's API key (`sk_…`). Required.
//! - `LISTEN`: the address to serve on. Default `127.0.0.1:3000` (`:0` picks a port).
//! - `CHAT_SCOPES`: space-separated scopes asked for. Default `chat`.
//! - `REDIS_URL`: share cached tokens with other instances through Redis. Default: none.
//! - `ISSUER_PUBLIC_KEY`: the client's public key (`pk_…`), for the demo widget. Default: none
//!   (the widget page then says it is not configured).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokensmith::client::cache::{CacheOptions, IssueToken, Issued, SharedRedis, TokenCache};
use tokensmith::{SharedClock, SystemClock};

/// Asks tokensmith for a token for one user.
#[derive(Clone)]
struct ChatTokens {
    http: reqwest::Client,
    url: String,
    api_key: String,
    scopes: Vec<String>,
}

/// Why tokensmith gave no token: it could not be reached (or answered
/// nonsense), or it refused, with its `error` code. The two need different
/// fixes (is tokensmith up? is `ISSUER_API_KEY` right?), so the log line and
/// the browser's answer say which.
#[derive(Debug, Clone)]
enum IssueFailure {
    Unreachable(String),
    Refused { status: u16, code: String },
}

impl IssueFailure {
    /// The answer to the browser: 502 either way, with what it was.
    fn response(&self) -> Response {
        let (code, text) = match self {
            IssueFailure::Unreachable(_) => ("issuer_unavailable", "tokensmith could not be reached".to_owned()),
            IssueFailure::Refused { status, code } => {
                ("issuer_refused", format!("tokensmith answered {status} {code}"))
            }
        };
        error(StatusCode::BAD_GATEWAY, code, &text)
    }
}

impl std::fmt::Display for IssueFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssueFailure::Unreachable(why) => write!(f, "tokensmith could not be reached: {why}"),
            IssueFailure::Refused { status, code } => {
                write!(f, "tokensmith refused: {status} {code}")?;
                if code == "invalid_api_key" {
                    f.write_str(" (check ISSUER_API_KEY)")?;
                }
                Ok(())
            }
        }
    }
}

/// `url: error: cause: cause`, for a request that did not get an answer.
fn unreachable(url: &str, e: &reqwest::Error) -> IssueFailure {
    let mut text = format!("{url}: {e}");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    IssueFailure::Unreachable(text)
}

impl ChatTokens {
    /// POSTs `body` to `/v1/tokens`; the answer, or why there is none.
    async fn ask(&self, body: Value) -> Result<Value, IssueFailure> {
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable(&self.url, &e))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| unreachable(&self.url, &e))?;
        if !status.is_success() {
            return Err(IssueFailure::Refused {
                status: status.as_u16(),
                code: body["error"].as_str().unwrap_or("(no error code)").to_owned(),
            });
        }
        Ok(body)
    }
}

impl IssueToken for ChatTokens {
    type Error = IssueFailure;

    fn issue(&self, user: &str) -> impl Future<Output = Result<Issued, IssueFailure>> + Send {
        let body = json!({ "sub": user, "scopes": self.scopes });
        async move {
            let body = self.ask(body).await?;
            let (Some(token), Some(expires_at), Some(expires_in)) = (
                body["token"].as_str(),
                body["expires_at"].as_i64(),
                body["expires_in"].as_i64(),
            ) else {
                return Err(IssueFailure::Unreachable(format!(
                    "{}: the answer has no token",
                    self.url
                )));
            };
            Ok(Issued {
                token: token.to_owned(),
                issued_at: expires_at - expires_in,
                expires_at,
            })
        }
    }
}

struct App {
    tokens: TokenCache<ChatTokens>,
    /// The same requests, uncached: for the demo's endpoints, whose caller
    /// (the browser SDK) caches and renews by itself.
    direct: ChatTokens,
    /// tokensmith's base URL and the client's public key, for the demo pages.
    issuer: String,
    public_key: Option<String>,
    /// Session id -> user. A std Mutex: never held across an await.
    sessions: Mutex<HashMap<String, String>>,
}

type Shared = Arc<App>;

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login(State(app): State<Shared>, Json(login): Json<Login>) -> Response {
    let user = login.user.trim().to_owned();
    if user.is_empty() || user.len() > 64 {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_request"}))).into_response();
    }
    let Ok(sid) = tokensmith::claims::new_jti() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    app.sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(sid.clone(), user.clone());
    let cookie = format!("sid={sid}; Path=/; HttpOnly; SameSite=Lax");
    let mut resp = Json(json!({ "user": user })).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("sid="))
}

fn session_user(app: &App, headers: &HeaderMap) -> Option<String> {
    let sid = session_id(headers)?;
    app.sessions.lock().unwrap_or_else(|e| e.into_inner()).get(sid).cloned()
}

async fn chat(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let Some(user) = session_user(&app, &headers) else {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "not_signed_in"}))).into_response();
    };
    let issued = match app.tokens.get(&user).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("identity_backend: no chatbot token for a user: {e}");
            return match e {
                tokensmith::client::cache::CacheError::Issue(f) => f.response(),
                _ => error(StatusCode::BAD_GATEWAY, "issuer_unavailable", "no token could be had"),
            };
        }
    };
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let mut resp = if wants_json {
        Json(json!({ "user": user, "token": issued.token, "expires_at": issued.expires_at })).into_response()
    } else {
        Html(page(&user, &issued)).into_response()
    };
    // The page carries a credential: never cached.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Text made safe for HTML content and double-quoted attributes.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(user: &str, issued: &Issued) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Support chat</title></head>
<body>
<p>Signed in as {user}.</p>
<div id="chatbot" data-token="{token}" data-expires-at="{exp}"></div>
<script>/* the widget reads its token from #chatbot[data-token] */</script>
</body></html>
"#,
        user = escape(user),
        token = escape(&issued.token),
        exp = issued.expires_at
    )
}

// ---------------------------------------------------------------------------
// The browser SDK demo: two pages and the host-side endpoints of its flows.

/// An error answer in tokensmith's shape, which the SDK reports as is.
fn error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = json!({ "error": code, "error_description": description });
    (status, Json(body)).into_response()
}

fn not_signed_in() -> Response {
    error(StatusCode::UNAUTHORIZED, "not_signed_in", "sign in to the shop first")
}

/// Never cached: the answer is a credential.
fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn logout(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(sid) = session_id(&headers) {
        app.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(sid);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("sid=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    resp
}

/// `POST /api/widget-auth`: a fresh token for the signed-in user, with
/// `expires_in` (seconds from now), which the SDK measures from its own
/// clock: a device clock far off the server's does not matter.
async fn widget_auth(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let Some(user) = session_user(&app, &headers) else {
        return not_signed_in();
    };
    match app.direct.issue(&user).await {
        Ok(t) => no_store(
            Json(json!({
                "token": t.token,
                "expires_in": t.expires_at - t.issued_at,
                "expires_at": t.expires_at,
            }))
            .into_response(),
        ),
        Err(e) => {
            eprintln!("identity_backend: no token for a user: {e}");
            e.response()
        }
    }
}

/// `POST /api/visitor-token`: a single-use visitor token for the signed-in
/// user (at most five minutes), as text, for the widget to exchange.
async fn visitor_token(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let Some(user) = session_user(&app, &headers) else {
        return not_signed_in();
    };
    let d = &app.direct;
    let asked = d
        .ask(json!({ "sub": user, "scopes": d.scopes, "purpose": "exchange" }))
        .await;
    match asked.as_ref().map(|b| b["token"].as_str()) {
        Ok(Some(t)) => no_store(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], t.to_owned()).into_response()),
        Ok(None) => error(
            StatusCode::BAD_GATEWAY,
            "issuer_unavailable",
            "tokensmith's answer has no token",
        ),
        Err(e) => {
            eprintln!("identity_backend: no visitor token: {e}");
            e.response()
        }
    }
}

/// A demo page with tokensmith's address and the client's public key filled in.
fn demo_page(app: &App, template: &str) -> Html<String> {
    Html(
        template
            .replace("{{ISSUER}}", &escape(&app.issuer))
            .replace("{{CLIENT_KEY}}", &escape(app.public_key.as_deref().unwrap_or_default())),
    )
}

async fn demo_host(State(app): State<Shared>) -> Html<String> {
    demo_page(&app, include_str!("demo/host.html"))
}

async fn demo_widget(State(app): State<Shared>) -> Html<String> {
    demo_page(&app, include_str!("demo/widget.html"))
}

fn app(state: Shared) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/chat", get(chat))
        .route("/logout", post(logout))
        .route("/", get(demo_host))
        .route("/widget", get(demo_widget))
        .route("/api/widget-auth", post(widget_auth))
        .route("/api/visitor-token", post(visitor_token))
        .with_state(state)
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, with the address or URL and the cause: not a Debug dump.
            eprintln!("identity_backend: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = env_or("ISSUER_URL", "http://127.0.0.1:8080");
    let api_key = std::env::var("ISSUER_API_KEY").map_err(|_| "set ISSUER_API_KEY to the client's API key (sk_…)")?;
    let listen = env_or("LISTEN", "127.0.0.1:3000");
    let scopes = env_or("CHAT_SCOPES", "chat")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let http = tokensmith::client::jwks::http_client(Duration::from_secs(5))?;
    let issue = ChatTokens {
        http,
        url: format!("{}/v1/tokens", issuer.trim_end_matches('/')),
        api_key,
        scopes,
    };
    let issue_direct = issue.clone();
    let clock: SharedClock = Arc::new(SystemClock);
    let mut tokens = TokenCache::new(issue, clock, CacheOptions::default());
    if let Ok(url) = std::env::var("REDIS_URL") {
        tokens = tokens.with_redis(SharedRedis::connect(&url, "identity_backend", Duration::from_secs(2)).await?);
    }
    let state = Arc::new(App {
        tokens,
        direct: issue_direct,
        issuer: issuer.trim_end_matches('/').to_owned(),
        public_key: std::env::var("ISSUER_PUBLIC_KEY").ok().filter(|k| !k.is_empty()),
        sessions: Mutex::new(HashMap::new()),
    });
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("identity_backend listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
