//! Consume throughput of the Redis store, one Redis or a cluster (issue 13):
//! C tasks consume fresh marks back to back for D seconds through
//! `RedisStore::consume`, then it prints consumes/s and the p50/p99 latency
//! of one consume. (`MEMORY USAGE` of a mark is read by `benches/load.sh`
//! and by the `store::mark_memory` tests, not here.)
//!
//! ```text
//! cargo run --release --example consume_rate -- redis://127.0.0.1:6379 64 5 0
//! cargo run --release --example consume_rate -- cluster:redis://127.0.0.1:7000,redis://127.0.0.1:7001 64 5 1
//! ```
//!
//! The last argument is `wait_replicas`.

use std::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokensmith::store::redis::RedisStore;
use tokensmith::store::{Consume, ConsumeOutcome, Store};
use tokensmith::{Clock, SystemClock};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 5 {
        return Err("usage: consume_rate (URL | cluster:SEED,SEED,…) CONCURRENCY SECONDS WAIT_REPLICAS".into());
    }
    let concurrency: usize = a[2].parse()?;
    let seconds: u64 = a[3].parse()?;
    let wait: u32 = a[4].parse()?;
    let now = SystemClock.now();
    let namespace = format!("bench-{}", std::process::id());
    let timeout = Duration::from_secs(2);
    let store = match a[1].strip_prefix("cluster:") {
        Some(seeds) => {
            let seeds: Vec<String> = seeds.split(',').map(str::to_owned).collect();
            RedisStore::connect_cluster(&seeds, &namespace, timeout, now - 60).await?
        }
        None => RedisStore::connect(&a[1], &namespace, timeout, now - 60).await?,
    };
    let store = Arc::new(store.with_wait_replicas(wait));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // 22 characters, like a real jti.
                let jti = format!("{t:06}-{i:015}");
                let key = format!("jti:{jti}");
                let now = SystemClock.now();
                let started = Instant::now();
                match store
                    .consume(Consume::new(&jti, "bench", now - 1, &key, now + 300), now)
                    .await
                {
                    Ok(ConsumeOutcome::FirstUse) => latencies.push(started.elapsed()),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await?;
        all.extend(l);
        errors += e;
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
    };
    println!(
        "{} consumes in {seconds}s: {:.0}/s, p50 {:?}, p99 {:?}, errors {errors} (concurrency {concurrency}, wait_replicas {wait}, namespace {namespace})",
        all.len(),
        all.len() as f64 / seconds as f64,
        pct(0.5).unwrap_or_default(),
        pct(0.99).unwrap_or_default(),
    );
    Ok(())
}
