//! The Rust `oauth2` crate (a client that knows nothing of tokensmith) gets
//! tokens from a tokensmith serving on a loopback socket: the
//! client-credentials grant with Basic and with POST client authentication,
//! and its error type for a wrong secret.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{AuthType, ClientId, ClientSecret, RequestTokenError, Scope, TokenResponse, TokenUrl};
use serde_json::json;

use super::harness::{TestApp, SHOP_KEY};

#[tokio::test]
async fn the_oauth2_crate_gets_client_credentials_tokens() {
    let app = TestApp::base();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(tokensmith::server::serve(
        Arc::clone(&app.state),
        listener,
        std::future::pending(),
    ));
    let http = tokensmith::client::jwks::http_client(Duration::from_secs(5)).unwrap();
    let token_url = TokenUrl::new(format!("http://{addr}/oauth2/token")).unwrap();
    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let client = BasicClient::new(ClientId::new("shop_123".into()))
            .set_client_secret(ClientSecret::new(SHOP_KEY.into()))
            .set_token_uri(token_url.clone())
            .set_auth_type(auth.clone());
        let token = client
            .exchange_client_credentials()
            .add_scope(Scope::new("chat".into()))
            .add_scope(Scope::new("read:orders".into()))
            .request_async(&http)
            .await
            .unwrap_or_else(|e| panic!("{auth:?}: {e:?}"));
        assert_eq!(
            token.scopes().unwrap().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            ["chat", "read:orders"]
        );
        assert_eq!(token.expires_in(), Some(Duration::from_secs(300)));
        let r = app
            .post(
                "/v1/verify",
                Some(SHOP_KEY),
                &json!({ "token": token.access_token().secret(), "scopes": ["chat"] }),
            )
            .await;
        assert_eq!(r.json()["claims"]["sub"], "shop_123");
    }
    let wrong = BasicClient::new(ClientId::new("shop_123".into()))
        .set_client_secret(ClientSecret::new("sk_live_wrong".into()))
        .set_token_uri(token_url);
    match wrong.exchange_client_credentials().request_async(&http).await {
        Err(RequestTokenError::ServerResponse(e)) => {
            assert_eq!(*e.error(), BasicErrorResponseType::InvalidClient)
        }
        other => panic!("{other:?}"),
    }
    server.abort();
}
