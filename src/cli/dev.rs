//! `serve --dev`: a `dev` client with a fresh API key and public key,
//! printed once at start-up, so the service is usable with no config.
//!
//! The keys go to stdout (never the logs) and to `dev.env` in the keys
//! folder (mode 0600, next to the private keys it is no more secret than),
//! so that a second terminal can `source keys/dev.env`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

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

    /// The lines of `dev.env`: shell assignments a second terminal can
    /// `source` (every value is base64url or a URL: nothing to quote).
    fn env_lines(&self, addr: &SocketAddr) -> String {
        format!(
            "export TOKENSMITH_URL=http://{addr}\nexport DEV_API_KEY={}\nexport DEV_PUBLIC_KEY={}\n",
            self.api_key,
            self.client.public_key.as_deref().unwrap_or("")
        )
    }

    /// Writes `dev.env` into `keys_dir`, replacing the last run's, with mode
    /// 0600 from its creation. Returns its path.
    pub fn write_env(&self, keys_dir: &Path, addr: &SocketAddr) -> std::io::Result<PathBuf> {
        let path = keys_dir.join("dev.env");
        let tmp = keys_dir.join(".dev.env.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(self.env_lines(addr).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Prints the keys once, on stdout (never in the logs), with a line to
    /// copy and the file a second terminal can `source`.
    pub fn announce(&self, addr: &SocketAddr, env_file: Option<&Path>) {
        println!("tokensmith --dev on http://{addr}");
        println!("  client:     dev (audience \"dev\", any scope, origins http://localhost:* and http://127.0.0.1:*)");
        println!("  API key:    {}", self.api_key);
        println!("  public key: {}", self.client.public_key.as_deref().unwrap_or(""));
        println!("  export DEV_API_KEY={}", self.api_key);
        if let Some(path) = env_file {
            println!("  in another terminal: source {}", path.display());
        }
        println!("  try: curl -s http://{addr}/v1/tokens -H \"Authorization: Bearer $DEV_API_KEY\" \\");
        println!("         -H 'Content-Type: application/json' -d '{{\"sub\":\"user-1\"}}'");
    }
}
