//! Building the store that `[store]` describes. It lives with the
//! configuration (an inherent method of [`AnyStore`] may sit anywhere in the
//! crate) so that the store module never imports the configuration: the
//! configuration reads the store's TLS files at load, so the reverse would
//! make the two modules import each other.

use crate::clock::Clock;
use crate::store::memory::MemoryStore;
use crate::store::{redis, AnyStore, StoreError};

use super::{StoreBackend, StoreConfig};

impl AnyStore {
    /// The store `[store]` describes: memory (with its background sweeper),
    /// or Redis with keys namespaced by `namespace` (the issuer).
    ///
    /// Its epoch is the second after `clock`'s now, for a memory store (a
    /// new process knows nothing of what an earlier one consumed) and for a
    /// Redis namespace that has none yet (it cannot tell a new namespace
    /// from one whose Redis lost its state); an existing Redis epoch is
    /// kept. Returns once `clock` has reached the epoch (at most about a
    /// second), so every token issued after this returns can be consumed.
    pub async fn from_config(cfg: &StoreConfig, namespace: &str, clock: &dyn Clock) -> Result<AnyStore, StoreError> {
        let epoch = clock.now().saturating_add(1);
        let tls = || {
            redis::RedisTls::from_files(
                cfg.redis_ca_file.as_deref(),
                cfg.redis_client_cert_file.as_deref(),
                cfg.redis_client_key_file.as_deref(),
            )
            // Checked when the config was loaded; a file changed since.
            .map_err(|e| StoreError::Unavailable(format!("redis TLS: {e}")))
        };
        let store = match cfg.backend {
            StoreBackend::Memory => AnyStore::Memory(MemoryStore::start(cfg.capacity).with_epoch(epoch)),
            StoreBackend::Redis if cfg.redis_cluster.is_empty() => AnyStore::Redis(
                redis::RedisStore::connect_with_tls(&cfg.redis_url, &tls()?, namespace, cfg.timeout, epoch)
                    .await?
                    .with_wait_replicas(cfg.redis_wait_replicas),
            ),
            StoreBackend::Redis => AnyStore::Redis(
                redis::RedisStore::connect_cluster_with_tls(&cfg.redis_cluster, &tls()?, namespace, cfg.timeout, epoch)
                    .await?
                    .with_wait_replicas(cfg.redis_wait_replicas),
            ),
        };
        store.wait_for_epoch(clock).await;
        Ok(store)
    }
}
