//! What only a Redis Cluster has: a master killed under a consume load
//! (issue 13). On a cluster of its own (3 masters, 3 replicas,
//! `cluster-node-timeout` 1 s), with `wait_replicas = 1`: while the dead
//! master's slots are unserved every consume there fails (503), never
//! answers a first use for a token consumed before; once its replica is
//! promoted (and the old master is back as the new master's replica, so
//! `WAIT 1` can be met again) service resumes, and no token consumed before
//! the kill is accepted again.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokensmith::store::redis::RedisStore;
use tokensmith::store::{Consume, ConsumeOutcome, Store};

use super::now;
use crate::cluster_harness::{cli, mark_slot, master_of_slot, RedisCluster};

#[derive(Default)]
struct Log {
    /// Marks that were answered `FirstUse`, with when.
    accepted: Vec<(String, Instant)>,
    /// A replay answered `FirstUse`: must stay empty.
    replays_accepted: Vec<String>,
    /// Consumes on the dead master's slots that failed, and when.
    failed_on_victim: Vec<Instant>,
    /// First uses on the dead master's slots, and when.
    served_on_victim: Vec<Instant>,
    /// The first few errors, for the failure message.
    errors: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_never_lets_a_replay_through() {
    let mut cluster = RedisCluster::start(1000, &[]);
    let seeds = cluster.seeds();
    let store = RedisStore::connect_cluster(&seeds, "failover", Duration::from_millis(600), now() - 3600)
        .await
        .expect("connect to the failover cluster")
        .with_wait_replicas(1);
    let store = Arc::new(store);
    let victim = master_of_slot(cluster.ports()[0], mark_slot("victim-probe"));
    let survivor = *cluster.ports().iter().find(|&&p| p != victim).unwrap();
    let victim_slots: Vec<(u16, u16)> = {
        let out = cli(survivor, &["CLUSTER", "SLOTS"]).unwrap();
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        let mut ranges = Vec::new();
        for i in 0..lines.len().saturating_sub(3) {
            if let (Ok(a), Ok(b)) = (lines[i].parse::<u16>(), lines[i + 1].parse::<u16>()) {
                if lines[i + 2] == "127.0.0.1" && lines[i + 3] == victim.to_string() {
                    ranges.push((a, b));
                }
            }
        }
        ranges
    };
    assert!(!victim_slots.is_empty(), "the victim {victim} serves no slot");
    let on_victim = move |key: &str| {
        let s = mark_slot(key);
        victim_slots.iter().any(|&(a, b)| (a..=b).contains(&s))
    };

    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (store, log, stop, on_victim) = (
            Arc::clone(&store),
            Arc::clone(&log),
            Arc::clone(&stop),
            on_victim.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Every fourth call replays a token accepted earlier.
                let replay = i
                    .is_multiple_of(4)
                    .then(|| {
                        let l = log.lock().unwrap();
                        l.accepted
                            .get((i as usize * 7 + w) % l.accepted.len().max(1))
                            .map(|(k, _)| k.clone())
                    })
                    .flatten();
                let key = replay.clone().unwrap_or_else(|| format!("w{w}-{i}"));
                let t = now();
                let outcome = store.consume(Consume::new(&key, "sub", t - 1, &key, t + 600), t).await;
                let at = Instant::now();
                {
                    let mut l = log.lock().unwrap();
                    match (outcome, &replay) {
                        (Ok(ConsumeOutcome::FirstUse), Some(_)) => l.replays_accepted.push(key.clone()),
                        (Ok(ConsumeOutcome::FirstUse), None) => {
                            if on_victim(&key) {
                                l.served_on_victim.push(at);
                            }
                            l.accepted.push((key, at));
                        }
                        (Ok(_), _) => {}
                        (Err(e), _) => {
                            if l.errors.len() < 5 {
                                l.errors.push(e.to_string());
                            }
                            if on_victim(&key) {
                                l.failed_on_victim.push(at);
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }

    // Load before the kill.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_kill: HashSet<String> = log.lock().unwrap().accepted.iter().map(|(k, _)| k.clone()).collect();
    assert!(
        before_kill.len() > 100,
        "too little load before the kill: {} ({:?})",
        before_kill.len(),
        log.lock().unwrap().errors
    );
    cluster.node(victim).kill();
    let killed_at = Instant::now();
    // Not ready while the dead master's slots are unserved (`/readyz`
    // calls `ping`).
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().await.is_ok() {
        assert!(Instant::now() < deadline, "still ready 10 s after a master was killed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Wait (poll) until a survivor names another master for the victim's slots.
    let probe = mark_slot("victim-probe");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let master = cli(survivor, &["CLUSTER", "SLOTS"]).map(|_| master_of_slot(survivor, probe));
        if master.is_some_and(|m| m != victim) {
            break;
        }
        assert!(Instant::now() < deadline, "no replica was promoted within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let promoted_at = Instant::now();

    // The old master comes back empty and becomes the new master's replica:
    // WAIT 1 can be met again on those slots.
    cluster.restart(victim);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resumed = log.lock().unwrap().served_on_victim.iter().any(|&t| t > promoted_at);
        if resumed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "service on the failed slots did not resume within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    let log = std::mem::take(&mut *log.lock().unwrap());
    assert!(
        log.replays_accepted.is_empty(),
        "replays accepted: {:?}",
        log.replays_accepted
    );
    let failed_during = log.failed_on_victim.iter().filter(|&&t| t > killed_at).count();
    assert!(
        failed_during > 0,
        "no consume on the dead master's slots failed: the kill was not exercised"
    );
    let first_after = log
        .served_on_victim
        .iter()
        .filter(|&&t| t > killed_at)
        .min()
        .copied()
        .unwrap();
    let last_before = log.served_on_victim.iter().filter(|&&t| t < killed_at).max().copied();
    // Ready again once every master serves its slots.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = store.ping().await {
        assert!(Instant::now() < deadline, "not ready 30 s after the failover: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every token accepted before the kill is refused now, on every slot.
    let t = now();
    for key in &before_kill {
        let outcome = store.consume(Consume::new(key, "sub", t - 1, key, t + 600), t).await;
        assert_eq!(outcome, Ok(ConsumeOutcome::Replayed), "{key} after the failover");
    }
    println!(
        "failover: {} consumes accepted before the kill, {} failed (503) on the dead master's slots; \
         promotion after {:.2} s; no service on the failed slots for {:.2} s (last first use before the kill \
         {:.2} s before it)",
        before_kill.len(),
        failed_during,
        promoted_at.duration_since(killed_at).as_secs_f64(),
        first_after.duration_since(killed_at).as_secs_f64(),
        last_before.map_or(0.0, |t| killed_at.duration_since(t).as_secs_f64()),
    );
}

/// A slot that no master serves makes the store not ready (`/readyz` 503),
/// and a consume on it fails (503), never answers from a guess. The cluster
/// runs with `cluster-require-full-coverage no`, so it still reports
/// `cluster_state:ok`: only `cluster_slots_ok` tells.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unassigned_slot_is_not_ready_and_fails_closed() {
    let cluster = RedisCluster::start(1000, &["--cluster-require-full-coverage", "no"]);
    let store = RedisStore::connect_cluster(&cluster.seeds(), "unassigned", Duration::from_millis(600), now() - 3600)
        .await
        .expect("connect to the cluster");
    store.ping().await.expect("ready while every slot is served");
    let key = "jti:unassigned-probe";
    let slot = mark_slot(key);
    let master = master_of_slot(cluster.ports()[0], slot);
    for &p in &cluster.ports() {
        // Every node forgets who serves the slot.
        cli(p, &["CLUSTER", "DELSLOTS", &slot.to_string()]);
    }
    for &p in &cluster.ports() {
        let info = cli(p, &["CLUSTER", "INFO"]).unwrap_or_default();
        assert!(info.contains("cluster_state:ok"), "node {p}: {info}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().await.is_ok() {
        assert!(Instant::now() < deadline, "still ready with slot {slot} unassigned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = now();
    let outcome = store.consume(Consume::new(key, "sub", t - 1, key, t + 60), t).await;
    assert!(outcome.is_err(), "a consume on an unassigned slot answered {outcome:?}");
    // Given back, the slot serves again.
    cli(master, &["CLUSTER", "ADDSLOTS", &slot.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Err(e) = store.ping().await {
        assert!(Instant::now() < deadline, "not ready after the slot came back: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = now();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match store.consume(Consume::new(key, "sub", t - 1, key, t + 60), t).await {
            Ok(outcome) => {
                assert_eq!(outcome, ConsumeOutcome::FirstUse);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "the slot did not serve again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With `wait_replicas`, a first use on a cluster stands only once enough
/// replicas of the mark's master confirmed it (here more than it has:
/// never), and says so; a replay needs no replica to stay a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_use_on_a_cluster_waits_for_its_replicas() {
    let seeds = crate::cluster_harness::shared_seeds();
    let namespace = format!("wait-more-{}", crate::cluster_harness::process_name());
    let connect = || RedisStore::connect_cluster(&seeds, &namespace, Duration::from_secs(2), now() - 3600);
    let plain = connect().await.expect("connect to the test Redis Cluster");
    let waiting = connect().await.unwrap().with_wait_replicas(2);
    let t = now();
    // The script is loaded on the mark's master first (a consume in the
    // same bucket): a NOSCRIPT retry would run `WAIT`'s bound twice.
    let bucket = crate::cluster_harness::mark_bucket("jti:w");
    let neighbour = (0..)
        .map(|i| format!("jti:n{i}"))
        .find(|k| crate::cluster_harness::mark_bucket(k) == bucket)
        .unwrap();
    let first = plain.consume(Consume::new("n", "u", t, &neighbour, t + 60), t).await;
    assert_eq!(first, Ok(ConsumeOutcome::FirstUse));
    let consume = || Consume::new("w", "u", t, "jti:w", t + 60);
    let r = waiting.consume(consume(), t).await;
    assert!(
        matches!(&r, Err(tokensmith::store::StoreError::Unavailable(why))
            if why.starts_with("redis consume: written on the master but confirmed by")
                && why.contains(" of 2 replicas")),
        "{r:?}"
    );
    assert_eq!(waiting.consume(consume(), t).await, Ok(ConsumeOutcome::Replayed));
}
