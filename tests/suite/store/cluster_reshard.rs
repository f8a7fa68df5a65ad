//! A MOVED/ASK storm (issue 13): slots that hold marks are moved between
//! masters by hand (`SETSLOT IMPORTING`/`MIGRATING`, `MIGRATE` a key at a
//! time, `SETSLOT NODE`: what `redis-cli --cluster reshard` does) while
//! consumes of fresh tokens and replays of consumed ones run on those very
//! slots. On a private cluster of 3 masters. Every answer is a first use,
//! a replay, or an error (503 over HTTP); no fresh token is accepted twice,
//! no consumed one again, no epoch is lost; afterwards every mark is where
//! a replay finds it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokensmith::store::redis::RedisStore;
use tokensmith::store::{Consume, ConsumeOutcome, Store, StoreError};

use super::now;
use crate::cluster_harness::{mark_slot, master_of_slot, move_slot, slot, RedisCluster};

#[derive(Default)]
struct Log {
    /// First uses per mark key: must never exceed 1.
    firsts: HashMap<String, u32>,
    /// Consumed before the storm and answered a first use during it.
    replays_accepted: Vec<String>,
    /// Anything but a first use, a replay or `Unavailable`.
    wrong: Vec<String>,
    errors: u64,
}

/// `count` mark keys (`jti:<prefix><i>`, as the authority names a JWT's)
/// whose slots are in `slots`.
fn keys_in(slots: &[u16], prefix: &str, count: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("jti:{prefix}{i}"))
        .filter(|k| slots.contains(&mark_slot(k)))
        .take(count)
        .collect()
}

fn consume<'a>(key: &'a str, t: i64) -> Consume<'a> {
    Consume::new(&key[4..], "u", t - 5, key, t + 600)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reshard_under_load_loses_no_mark_and_accepts_no_replay() {
    let cluster = RedisCluster::start_masters(3, 1000, &[]);
    let ports = cluster.ports();
    let store = RedisStore::connect_cluster(&cluster.seeds(), "reshard", Duration::from_secs(1), now() - 3600)
        .await
        .expect("connect to the private cluster");
    let store = Arc::new(store);
    // Four bucket slots, each moved to the next master.
    let slots: Vec<u16> = [3u32, 200, 517, 900]
        .iter()
        .map(|b| slot(&format!("{{{b}}}")))
        .collect();
    let t = now();
    let consumed = keys_in(&slots, "old-", 120);
    for key in &consumed {
        assert_eq!(
            store.consume(consume(key, t), t).await,
            Ok(ConsumeOutcome::FirstUse),
            "{key}"
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let log = Arc::new(Mutex::new(Log::default()));
    let fresh = Arc::new(keys_in(&slots, "new-", 1500));
    let mut workers = Vec::new();
    for w in 0..8usize {
        let (store, stop, ops, log) = (
            Arc::clone(&store),
            Arc::clone(&stop),
            Arc::clone(&ops),
            Arc::clone(&log),
        );
        let (fresh, consumed) = (Arc::clone(&fresh), consumed.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w;
            // Until the storm is over; past the end of the fresh keys, they
            // come round again (as replays).
            while !stop.load(Ordering::Acquire) {
                // Each fresh key is consumed twice (by two workers), and
                // every other call replays a key consumed before.
                let (key, old) = if i % 2 == 0 {
                    (&fresh[(i / 2) % fresh.len()], false)
                } else {
                    (&consumed[i % consumed.len()], true)
                };
                let t = now();
                let r = store.consume(consume(key, t), t).await;
                let mut log = log.lock().unwrap();
                match r {
                    Ok(ConsumeOutcome::FirstUse) if old => log.replays_accepted.push(key.clone()),
                    Ok(ConsumeOutcome::FirstUse) => *log.firsts.entry(key.clone()).or_default() += 1,
                    Ok(ConsumeOutcome::Replayed) => {}
                    Err(StoreError::Unavailable(_)) => log.errors += 1,
                    other => log.wrong.push(format!("{key}: {other:?}")),
                }
                drop(log);
                ops.fetch_add(1, Ordering::AcqRel);
                i += 4;
            }
        }));
    }

    // The storm: each slot moves a key at a time, and between two keys the
    // load makes progress (polled, with a deadline).
    let moved = {
        let (ops, ports, slots) = (Arc::clone(&ops), ports.clone(), slots.clone());
        tokio::task::spawn_blocking(move || {
            let mut moved = 0;
            for &s in &slots {
                let from = master_of_slot(ports[0], s);
                let to = *ports.iter().find(|&&p| p != from).unwrap();
                moved += move_slot(&ports, from, to, s, 1, || {
                    let (seen, deadline) = (ops.load(Ordering::Acquire), Instant::now() + Duration::from_secs(5));
                    while ops.load(Ordering::Acquire) < seen + 8 && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                });
            }
            moved
        })
        .await
        .unwrap()
    };
    stop.store(true, Ordering::Release);
    for w in workers {
        w.await.unwrap();
    }
    assert!(
        moved >= consumed.len(),
        "the moved slots held the marks: {moved} keys moved"
    );
    for &s in &slots {
        let owner = master_of_slot(ports[0], s);
        for &p in &ports {
            assert_eq!(master_of_slot(p, s), owner, "every node agrees on slot {s}");
        }
    }

    let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
    assert!(
        log.wrong.is_empty(),
        "answers that are neither: {:?}",
        &log.wrong[..log.wrong.len().min(5)]
    );
    assert!(
        log.replays_accepted.is_empty(),
        "replays accepted: {:?}",
        log.replays_accepted
    );
    let twice: Vec<_> = log.firsts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "fresh tokens accepted twice: {twice:?}");
    assert!(!log.firsts.is_empty(), "the load consumed nothing");
    eprintln!(
        "reshard: {moved} keys moved, {} fresh first uses, {} errors (503)",
        log.firsts.len(),
        log.errors
    );

    // Afterwards every mark is present: each replay is refused.
    let t = now();
    for key in consumed.iter().chain(log.firsts.keys()) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match store.consume(consume(key, t), t).await {
                Ok(ConsumeOutcome::Replayed) => break,
                Err(StoreError::Unavailable(e)) if Instant::now() < deadline => {
                    eprintln!("after the reshard, {key}: {e}; again");
                }
                other => panic!("after the reshard, a replay of {key}: {other:?}"),
            }
        }
    }
}
