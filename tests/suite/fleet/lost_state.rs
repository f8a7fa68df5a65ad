//! Faults that used to re-open replays or lie about them (issue 10, items 7
//! and 8), on real processes: a Redis killed and restarted without
//! persistence, a tokensmith with a memory store restarted, and a consume
//! whose answer is lost to a hung Redis.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{read, Fleet, Issued, Reply, A, B, QUIET};
use crate::harness::{base_config, free_port, Spawned, OTHER_KEY, SHOP_KEY};

/// Polls a consume of `token` on `n` while the store reconnects (503) and
/// returns the first other answer.
async fn consume_once_reachable(f: &Fleet, n: super::Node, key: &str, token: &Issued) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = f.verify(n, key, token, true).await;
        if r.status != StatusCode::SERVICE_UNAVAILABLE {
            return r;
        }
        assert_eq!(r.error(), "store_unavailable", "{r:?}");
        assert!(Instant::now() < deadline, "{n:?}: the store did not come back in 5s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issues on `n` until a token is consumed on `on` (a token issued in the
/// second the loss was seen is refused too), within a few seconds.
async fn fresh_token_consumed(f: &Fleet, n: super::Node, on: super::Node) -> Issued {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let fresh = f.issue(n, SHOP_KEY, "fresh").await;
        let r = f.verify(on, SHOP_KEY, &fresh, true).await;
        if r.status == StatusCode::OK {
            return fresh;
        }
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::UNAUTHORIZED, "replay_state_lost"),
            "{r:?}"
        );
        assert!(Instant::now() < deadline, "no fresh token was consumed within 5s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `redis-server --save "" --appendonly no`, killed (SIGKILL) and started
/// again empty: no token consumed before is accepted again, on either
/// instance; tokens issued after are consumed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_without_persistence_never_reopens_replays() {
    let mut f = Fleet::start("1000/s");
    let mut used = Vec::new();
    for i in 0..8 {
        let (minted, consumed) = if i % 2 == 0 { (A, B) } else { (B, A) };
        let t = f.issue(minted, SHOP_KEY, &format!("user{i}")).await;
        assert_eq!(f.verify(consumed, SHOP_KEY, &t, true).await.status, StatusCode::OK);
        used.push(t);
    }
    let unused = f.issue(A, SHOP_KEY, "never-consumed").await;

    f.redis.restart();

    for (i, t) in used.iter().enumerate() {
        for n in [A, B] {
            let r = consume_once_reachable(&f, n, SHOP_KEY, t).await;
            assert_eq!(
                (r.status, r.error()),
                (StatusCode::UNAUTHORIZED, "replay_state_lost"),
                "token {i} consumed before the crash, on {n:?}: {r:?}"
            );
        }
    }
    // One never consumed is refused too: the store cannot tell it apart.
    let r = consume_once_reachable(&f, B, SHOP_KEY, &unused).await;
    assert_eq!(r.error(), "replay_state_lost", "{r:?}");
    // But it still verifies without consuming.
    assert_eq!(f.verify(B, SHOP_KEY, &unused, false).await.status, StatusCode::OK);

    let fresh = fresh_token_consumed(&f, A, B).await;
    for n in [A, B] {
        let r = f.verify(n, SHOP_KEY, &fresh, true).await;
        assert_eq!((r.status, r.error()), (StatusCode::UNAUTHORIZED, "token_replayed"));
    }
    let mut conn = f.redis_conn().await;
    let epoch: Option<i64> = redis::cmd("GET")
        .arg(format!(
            "ts:{}:mark-epoch",
            tokensmith::store::redis::namespace_id(&f.issuer())
        ))
        .query_async(&mut conn)
        .await
        .unwrap();
    let epoch = epoch.expect("the new epoch is recorded");
    assert!(epoch > used.iter().map(|t| t.exp - 300).max().unwrap(), "epoch {epoch}");
    f.assert_alive();
}

/// `POST /v1/verify` with `consume` and an `Idempotency-Key` header.
async fn consume_with_key(f: &Fleet, n: super::Node, key: &str, token: &Issued, idem: &str) -> Reply {
    let resp = f
        .http
        .post(f.url(n, "/v1/verify"))
        .bearer_auth(key)
        .header("idempotency-key", idem)
        .json(&json!({ "token": token.token, "consume": true }))
        .send()
        .await
        .unwrap();
    read(resp).await.unwrap()
}

fn description(r: &Reply) -> &str {
    r.body["error_description"].as_str().unwrap_or_default()
}

/// A consume sent to a hung Redis (SIGSTOP) times out with an honest 503,
/// and Redis runs it when it resumes: the token *was* used. A retry with
/// the same `Idempotency-Key` by the same client, on either instance, gets
/// the first attempt's answer (200); anyone else gets `token_replayed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consume_retried_after_a_timeout_answers_as_the_first() {
    let mut f = Fleet::start("1000/s");
    // `other` has no rate limit: the consume is the request's first store call.
    let token = f.issue(A, OTHER_KEY, "alice").await;
    let plain = f.issue(A, OTHER_KEY, "bob").await;
    // The script is loaded on Redis before it hangs, so the consume sent
    // during the hang runs as soon as Redis resumes.
    let warm = f.issue(A, OTHER_KEY, "warm").await;
    assert_eq!(f.verify(A, OTHER_KEY, &warm, true).await.status, StatusCode::OK);

    f.redis.pause();
    let r = consume_with_key(&f, A, OTHER_KEY, &token, "order-17").await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        "{r:?}"
    );
    assert!(description(&r).contains("the token may have been used"), "{r:?}");
    assert!(description(&r).contains("same Idempotency-Key"), "{r:?}");
    // Without a key the answer is as honest, and has no key to mention.
    let r = f.verify(A, OTHER_KEY, &plain, true).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert!(description(&r).contains("the token may have been used"), "{r:?}");
    assert!(!description(&r).contains("Idempotency-Key"), "{r:?}");
    f.redis.resume();

    // The timed-out consume ran once Redis resumed: the mark is there.
    let mut conn = f.redis_conn().await;
    let mark = crate::redis_harness::mark_name(&f.issuer(), &format!("jti:{}", token.jti), false);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let exists: bool = redis::cmd("EXISTS").arg(&mark).query_async(&mut conn).await.unwrap();
        if exists {
            break;
        }
        assert!(Instant::now() < deadline, "the consume sent during the hang never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The retry, on the other instance, once its store answers again.
    let deadline = Instant::now() + Duration::from_secs(5);
    let retried = loop {
        let r = consume_with_key(&f, B, OTHER_KEY, &token, "order-17").await;
        if r.status != StatusCode::SERVICE_UNAVAILABLE {
            break r;
        }
        assert!(Instant::now() < deadline, "B did not recover within 5s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        retried.status,
        StatusCode::OK,
        "the first attempt's answer: {retried:?}"
    );
    assert_eq!(retried.body["claims"]["jti"], Value::from(token.jti.clone()));
    let again = consume_with_key(&f, A, OTHER_KEY, &token, "order-17").await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    // Anyone else: a replay.
    let r = f.verify(B, OTHER_KEY, &token, true).await;
    assert_eq!((r.status, r.error()), (StatusCode::UNAUTHORIZED, "token_replayed"));
    let r = consume_with_key(&f, A, OTHER_KEY, &token, "order-18").await;
    assert_eq!((r.status, r.error()), (StatusCode::UNAUTHORIZED, "token_replayed"));
}

/// A tokensmith with the memory store, restarted: the new process never
/// consumes a token issued before it started (its predecessor may have),
/// and consumes the tokens it issues from its first request on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_with_a_memory_store_refuses_older_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let config = dir.path().join("tokensmith.toml");
    let port = free_port();
    let text = format!(
        "{}\n[keys]\ndir = {:?}\n",
        base_config().replace("https://issuer.test", &format!("http://127.0.0.1:{port}")),
        keys.to_str().unwrap()
    );
    std::fs::write(&config, text).unwrap();
    std::fs::create_dir(&keys).unwrap();
    let f = LoneInstance {
        http: super::http_client(),
        node: Spawned::start(dir.path(), &config, port, &QUIET),
    };
    let used = f.issue().await;
    assert_eq!(f.consume(&used).await.status, StatusCode::OK);
    let unused = f.issue().await;

    let mut f = f;
    let _ = f.node.child.kill();
    let _ = f.node.child.wait();
    f.node = Spawned::start(dir.path(), &config, port, &QUIET);

    for t in [&used, &unused] {
        let r = f.consume(t).await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::UNAUTHORIZED, "replay_state_lost"),
            "{r:?}"
        );
    }
    // The first token the new process issues is consumed at once: it waited
    // for its epoch before serving.
    let fresh = f.issue().await;
    assert_eq!(f.consume(&fresh).await.status, StatusCode::OK);
    assert_eq!(f.consume(&fresh).await.error(), "token_replayed");
}

struct LoneInstance {
    http: reqwest::Client,
    node: Spawned,
}

impl LoneInstance {
    async fn issue(&self) -> Issued {
        let r = super::try_post(
            &self.http,
            &self.node.url("/v1/tokens"),
            SHOP_KEY,
            &json!({"sub": "alice"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        Issued {
            token: r.body["token"].as_str().unwrap().to_owned(),
            jti: r.body["jti"].as_str().unwrap().to_owned(),
            exp: r.body["expires_at"].as_i64().unwrap(),
        }
    }

    async fn consume(&self, t: &Issued) -> Reply {
        let body = json!({ "token": t.token, "consume": true });
        super::try_post(&self.http, &self.node.url("/v1/verify"), SHOP_KEY, &body)
            .await
            .unwrap()
    }
}
