//! What a live mark costs in Redis (issue 13): `MEMORY USAGE` of the mark a
//! consume of a JWT leaves (a 22-character `jti`), on one Redis and on the
//! shared Redis Cluster. The bar is 100 bytes; on Redis 7.0.15
//! (jemalloc 5.3.0) a mark costs 72 bytes on one Redis and 88 on a cluster
//! (see "Memory" in `src/store/redis/layout.rs`). Each test prints the
//! figure beside that of a mark named as the layout before named it.

use tokensmith::store::redis::namespace_id;
use tokensmith::store::{Consume, ConsumeOutcome, Store};

use super::{connect, connect_cluster, now, TIMEOUT};
use crate::cluster_harness::{cli, mark_bucket, mark_slot, master_of_slot};
use crate::redis_harness::{mark_name, RedisServer};

/// A JWT's `jti`: 22 base64url characters (128 random bits).
const JTI: &str = "W3kJ9xZq_Lm2Pa8T-vB4cQ";

/// `MEMORY USAGE` of `key` on the Redis at `port` (`SAMPLES 0`: all of it).
fn memory_usage(port: u16, key: &str) -> i64 {
    let out = cli(port, &["MEMORY", "USAGE", key, "SAMPLES", "0"]).expect("MEMORY USAGE");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("MEMORY USAGE {key}: {out:?}"))
}

#[tokio::test]
async fn a_mark_costs_at_most_100_bytes_on_one_redis() {
    let server = RedisServer::start();
    let s = connect(&server, "https://issuer.test", TIMEOUT).await;
    let (t, key) = (now(), format!("jti:{JTI}"));
    assert_eq!(
        s.consume(Consume::new(JTI, "u", t, &key, t + 300), t).await,
        Ok(ConsumeOutcome::FirstUse)
    );
    let mark = mark_name("https://issuer.test", &key, false);
    let bytes = memory_usage(server.port, &mark);
    // The layout before named the same mark `ts:<id>:m:jti:<jti>`.
    let before = format!("ts:{}:m:{key}", namespace_id("https://issuer.test"));
    cli(server.port, &["SET", &before, "1", "PX", "300000"]).expect("SET");
    let old = memory_usage(server.port, &before);
    println!("MEMORY USAGE of a mark, one Redis: {bytes} bytes ({mark}); the layout before: {old} bytes ({before})");
    assert!(bytes <= 100, "{mark}: {bytes} bytes");
    assert!(bytes <= old, "{bytes} bytes now, {old} before");
}

#[tokio::test]
async fn a_mark_costs_at_most_100_bytes_on_the_cluster() {
    let s = connect_cluster("mark-memory").await;
    let namespace = s.namespace().to_owned();
    let (t, key) = (now(), format!("jti:{JTI}"));
    assert_eq!(
        s.consume(Consume::new(JTI, "u", t, &key, t + 300), t).await,
        Ok(ConsumeOutcome::FirstUse)
    );
    let seed = crate::cluster_harness::shared_seeds()[0].clone();
    let any_port: u16 = seed.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
    let port = master_of_slot(any_port, mark_slot(&key));
    let mark = mark_name(&namespace, &key, true);
    let bytes = memory_usage(port, &mark);
    // The layout before named it `ts:{<bucket>}:<id>:m:jti:<jti>`, same slot.
    let before = format!("ts:{{{}}}:{}:m:{key}", mark_bucket(&key), namespace_id(&namespace));
    cli(port, &["SET", &before, "1", "PX", "300000"]).expect("SET");
    let old = memory_usage(port, &before);
    println!("MEMORY USAGE of a mark, cluster: {bytes} bytes ({mark}); the layout before: {old} bytes ({before})");
    assert!(bytes <= 100, "{mark}: {bytes} bytes");
    assert!(bytes <= old, "{bytes} bytes now, {old} before");
}
