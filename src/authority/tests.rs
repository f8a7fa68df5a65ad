//! Tests of the authority as a whole (each rule's own tests are beside it).

#![allow(clippy::unwrap_used)]

use crate::clients::Client;

/// The authority's debug form says which issuer, clients and store it
/// serves; of the clients' API keys, only how many (they are hashes, and
/// even those stay out of logs).
#[test]
fn debug_names_the_issuer_clients_and_store_and_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut shop = Client::new("shop", "https://api.shop.test");
    shop.api_keys = vec![[7; 32]];
    let a = super::test_authority(dir.path(), "issuer = \"https://issuer.test\"", &[shop], 1_800_000_000);
    let debug = format!("{a:?}");
    for part in [
        "Authority {",
        "\"https://issuer.test\"",
        "\"shop\"",
        "api_keys: 1",
        "MemoryStore",
    ] {
        assert!(debug.contains(part), "{part} in {debug}");
    }
    assert!(!debug.contains("7, 7"), "{debug}");
}
