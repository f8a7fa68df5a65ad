//! Bad input and faults of a Redis Cluster store (issue 13), on real
//! `tokensmith serve` processes and private throwaway clusters (3 masters,
//! no replicas, `cluster_harness.rs`): a seed list whose first seed is
//! down, one whose seeds are all down, and a slot that no master serves.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::{Fleet, Issued, Node, Reply, A, B};
use crate::cluster_harness::{cli, mark_slot, RedisCluster};
use crate::harness::{base_config, binary, free_port, SHOP_KEY};

/// A loopback port nothing listens on (bound, then released).
fn closed_port_seed() -> String {
    format!("redis://127.0.0.1:{}", free_port())
}

/// The first seed is down (its port closed), the others up: both instances
/// start, are ready, and consume once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seed_list_whose_first_seed_is_down_still_works() {
    let cluster = RedisCluster::start_masters(3, 1000, &[]);
    let mut seeds = vec![closed_port_seed()];
    seeds.extend(cluster.seeds());
    let f = Fleet::start_with("1000/s", Some(seeds));
    for n in [A, B] {
        let r = f.get(n, "/readyz").await;
        assert_eq!(r.status, StatusCode::OK, "{n:?}: {r:?}");
    }
    let token = f.issue(A, SHOP_KEY, "alice").await;
    let r = f.verify(B, SHOP_KEY, &token, true).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = f.verify(A, SHOP_KEY, &token, true).await;
    assert_eq!((r.status, r.error()), (StatusCode::UNAUTHORIZED, "token_replayed"));
}

/// Every seed down: `serve` exits (no hang, well within a few store
/// timeouts) with a non-zero status and a message naming the store and the
/// reason.
#[test]
fn a_seed_list_with_every_seed_down_fails_start_up_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let seeds = vec![closed_port_seed(), closed_port_seed()];
    let config = dir.path().join("tokensmith.toml");
    let text = format!(
        "{}\n[keys]\ndir = {:?}\n\n[store]\nbackend = \"redis\"\nredis_cluster = {seeds:?}\ntimeout = \"300ms\"\n",
        base_config(),
        keys.to_str().unwrap()
    );
    std::fs::write(&config, text).unwrap();
    let started = Instant::now();
    let mut child = Command::new(binary())
        .current_dir(dir.path())
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .env("TOKENSMITH_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("serve hung with every seed down");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("store_unavailable") && stderr.contains("redis cluster connect"),
        "unclear message: {stderr}"
    );
}

/// A slot nobody serves (`CLUSTER DELSLOTS` on every node, the cluster
/// running with `cluster-require-full-coverage no` so the other slots stay
/// up): a consume whose mark is in one of those slots answers 503
/// `store_unavailable`, never 200; `/readyz` is not ready; tokens whose
/// marks are elsewhere are consumed once as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unassigned_slot_answers_503_and_is_not_ready() {
    let cluster = RedisCluster::start_masters(3, 1000, &["--cluster-require-full-coverage", "no"]);
    let f = Fleet::start_with("1000/s", Some(cluster.seeds()));
    assert_eq!(f.get(A, "/readyz").await.status, StatusCode::OK);
    // An eighth of the buckets' slots: one token in eight has its mark
    // there. Not the slot of alice's revocation key, which every consume
    // of hers reads.
    let sub_slot = mark_slot("shop_123:alice");
    let dropped: Vec<u16> = (0..1024u32)
        .filter(|b| b % 8 == 0)
        .map(|b| crate::cluster_harness::slot(&format!("{{{b}}}")))
        .filter(|&s| s != sub_slot)
        .collect();
    for port in cluster.ports() {
        let mut args = vec!["CLUSTER".to_owned(), "DELSLOTS".to_owned()];
        args.extend(dropped.iter().map(u16::to_string));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(cli(port, &args).unwrap_or_default().trim(), "OK", "DELSLOTS on {port}");
    }
    for port in cluster.ports() {
        let info = cli(port, &["CLUSTER", "INFO"]).unwrap();
        assert!(info.contains("cluster_state:ok"), "the other slots stay up: {info}");
    }
    for n in [A, B] {
        let r = f.get(n, "/readyz").await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            "{n:?}: {r:?}"
        );
    }
    // The rate counter of a second may be in a dropped slot too (503, and
    // nothing consumed): those calls are polled past.
    let (mut refused, mut served) = (0, 0);
    for i in 0..400 {
        if refused >= 3 && served >= 3 {
            break;
        }
        let token = until_not_503(&f, if i % 2 == 0 { A } else { B }, None).await.unwrap();
        let unserved = dropped.contains(&mark_slot(&format!("jti:{}", token.jti)))
            || dropped.contains(&mark_slot(&format!("shop_123:{}", token.jti)));
        if unserved {
            for n in [B, A] {
                let r = f.verify(n, SHOP_KEY, &token, true).await;
                assert_eq!(
                    (r.status, r.error()),
                    (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
                    "a mark or revocation in an unserved slot: {r:?}"
                );
            }
            refused += 1;
        } else {
            let r = until_not_503(&f, B, Some(&token)).await.unwrap_err();
            assert_eq!(r.status, StatusCode::OK, "{r:?}");
            let again = until_not_503(&f, A, Some(&token)).await.unwrap_err();
            assert_eq!(
                (again.status, again.error()),
                (StatusCode::UNAUTHORIZED, "token_replayed")
            );
            served += 1;
        }
    }
    assert!(refused >= 3 && served >= 3, "refused {refused}, served {served}");
}

/// Issues (no token given) or consumes `token` on `n`, polling past 503
/// `store_unavailable` for up to 10 s: `Ok` is an issued token, `Err` a
/// consume's answer other than 503.
async fn until_not_503(f: &Fleet, n: Node, token: Option<&Issued>) -> Result<Issued, Reply> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = match token {
            None => match f.try_issue(n, SHOP_KEY, "alice").await {
                Ok(t) => return Ok(t),
                Err(r) => r,
            },
            Some(t) => {
                let r = f.verify(n, SHOP_KEY, t, true).await;
                if r.status != StatusCode::SERVICE_UNAVAILABLE {
                    return Err(r);
                }
                r
            }
        };
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            "{r:?}"
        );
        assert!(Instant::now() < deadline, "still 503 after 10 s: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
