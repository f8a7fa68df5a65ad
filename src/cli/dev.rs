//! `serve --dev`: a `dev` client with a fresh API key and public key,
//! printed once at start-up, so the service is usable with no config.

use std::net::SocketAddr;

use tokensmith::clients::{self, Client, ClientRegistry, OriginPattern};
use tokensmith::config::Config;
use tokensmith::jose::JoseError;

/// The dev client and the two keys to print once.
pub struct DevClient {
    client: Client,
    api_key: String,
    hash: [u8; 32],
}

impl DevClient {
    /// Audience `dev`, any scope, origins `http://localhost:*`, the global
    /// `max_ttl`, guest scope `dev` for the widget flows.
    pub fn new(cfg: &Config) -> Result<DevClient, JoseError> {
        let key = clients::new_api_key()?;
        let hash = clients::api_key_hash(&key.key);
        let allowed_origins = ["http://localhost:*", "http://127.0.0.1:*"]
            .into_iter()
            .map(OriginPattern::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(JoseError::InvalidKey)?;
        let client = Client {
            api_keys: vec![hash],
            public_key: Some(clients::new_public_key()?),
            allowed_origins,
            scopes: vec!["*".into()],
            max_ttl: cfg.tokens.max_ttl,
            guest_scopes: vec!["dev".into()],
            ..Client::new("dev", "dev")
        };
        Ok(DevClient {
            client,
            api_key: key.key,
            hash,
        })
    }

    /// The registry with the dev client added.
    pub fn add_to(&self, registry: ClientRegistry) -> ClientRegistry {
        registry.with_client(self.client.clone(), self.hash)
    }

    /// Prints the keys once, on stdout (never in the logs).
    pub fn announce(&self, addr: &SocketAddr) {
        println!("tokensmith --dev on http://{addr}");
        println!("  client:     dev (audience \"dev\", any scope, origins http://localhost:*)");
        println!("  API key:    {}", self.api_key);
        println!("  public key: {}", self.client.public_key.as_deref().unwrap_or(""));
        println!(
            "  try: curl -s http://{addr}/v1/tokens -H 'Authorization: Bearer {}' \\",
            self.api_key
        );
        println!("         -H 'Content-Type: application/json' -d '{{\"sub\":\"user-1\"}}'");
    }
}
