//! A plugin backend: an API that trusts tokens from tokensmith and nothing
//! else, checking them itself against the published JWKS.
//!
//! The keys are found by discovery (`ISSUER_URL/.well-known/openid-configuration`)
//! and kept by a [`RemoteJwks`] (refetched on rotation). Every route takes a
//! [`Bearer`] extractor, so a handler only runs with verified claims:
//! - `GET /orders` needs the scope `read:orders`;
//! - `POST /orders` needs `read:orders` and `write:orders`, and consumes the
//!   token: its `jti` is marked in the store, and a second use is refused
//!   with 401 `token_replayed`.
//!
//! ```text
//! cargo run -- serve --dev
//! cargo run --release -p tokensmith-examples --example plugin_backend
//! TOKEN=$(curl -s localhost:8080/v1/tokens -H "authorization: Bearer $DEV_API_KEY" \
//!   -H 'content-type: application/json' -d '{"sub":"alice","scopes":["read:orders"]}' | jq -r .token)
//! curl -s localhost:3001/orders -H "authorization: Bearer $TOKEN"
//! ```
//!
//! Settings (environment):
//! - `ISSUER_URL`: tokensmith's issuer URL (its `issuer` setting). Default `http://127.0.0.1:8080`.
//! - `AUDIENCE`: the audience tokens must be for. Default `dev` (the `serve --dev` client's).
//! - `LISTEN`: the address to serve on. Default `127.0.0.1:3001` (`:0` picks a port).
//! - `REDIS_URL`: keep consumed `jti`s in Redis, shared with tokensmith (same
//!   namespace: the issuer URL), so a token consumed by either is refused by
//!   both. Default: in memory.
//! - `PUBLIC_URL`: the base URL clients address this API at, for the `htu`
//!   of DPoP proofs (`Authorization: DPoP <token>` + `DPoP: <proof>`; a
//!   DPoP-bound token sent as Bearer is refused). Default `http://<LISTEN>`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokensmith::claims::Validation;
use tokensmith::client::extract::{Bearer, BearerConfig, Policy};
use tokensmith::client::jwks::{JwksOptions, RemoteJwks};
use tokensmith::store::memory::MemoryStore;
use tokensmith::store::redis::RedisStore;
use tokensmith::store::AnyStore;
use tokensmith::{SharedClock, SystemClock};

struct ReadOrders;
impl Policy for ReadOrders {
    const SCOPES: &'static [&'static str] = &["read:orders"];
}

struct PlaceOrder;
impl Policy for PlaceOrder {
    const SCOPES: &'static [&'static str] = &["read:orders", "write:orders"];
    const CONSUME: bool = true;
}

#[derive(Clone)]
struct AppState {
    auth: BearerConfig,
}

impl FromRef<AppState> for BearerConfig {
    fn from_ref(s: &AppState) -> BearerConfig {
        s.auth.clone()
    }
}

async fn orders_list(Bearer { claims, .. }: Bearer<ReadOrders>) -> impl IntoResponse {
    Json(json!({
        "sub": claims.sub,
        "store": claims.extra.get("storeId"),
        "orders": [{"id": "ord_1", "total": 1200}, {"id": "ord_2", "total": 350}],
    }))
}

async fn orders_create(order: Bearer<PlaceOrder>) -> impl IntoResponse {
    let id: String = order.jti.chars().take(8).collect();
    (
        StatusCode::CREATED,
        Json(json!({ "id": format!("ord_{id}"), "sub": order.sub, "jti": order.jti })),
    )
}

fn app(state: AppState) -> Router {
    Router::new()
        .route("/orders", get(orders_list).post(orders_create))
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
            eprintln!("plugin_backend: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = env_or("ISSUER_URL", "http://127.0.0.1:8080");
    let audience = env_or("AUDIENCE", "dev");
    let listen = env_or("LISTEN", "127.0.0.1:3001");
    let clock: SharedClock = Arc::new(SystemClock);
    let jwks = RemoteJwks::discover(&issuer, JwksOptions::default(), Arc::clone(&clock))
        .await
        .map_err(|e| format!("discovery at {issuer}: {e}"))?;
    let validation = Validation {
        audience: Some(audience),
        ..Validation::new(issuer.clone())
    };
    // A token an earlier run of this process consumed must not be consumed
    // again: tokens issued before the second after this start cannot be
    // (a Redis namespace keeps the epoch tokensmith recorded).
    let epoch = clock.now() + 1;
    let store = match std::env::var("REDIS_URL") {
        Ok(url) => AnyStore::Redis(RedisStore::connect(&url, &issuer, Duration::from_secs(2), epoch).await?),
        Err(_) => AnyStore::Memory(MemoryStore::start(100_000).with_epoch(epoch)),
    };
    store.wait_for_epoch(&*clock).await;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let public_url = env_or("PUBLIC_URL", &format!("http://{}", listener.local_addr()?));
    let auth = BearerConfig::remote(Arc::new(jwks), validation, clock)?
        .with_store(Arc::new(store))
        .with_dpop(tokensmith::dpop::DpopRules::new()?, public_url);
    println!("plugin_backend listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(AppState { auth }))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
