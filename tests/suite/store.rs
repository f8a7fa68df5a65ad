//! The store suite: the same cases against [`MemoryStore`] and against
//! [`RedisStore`] on a real `redis-server`, then what only one backend has
//! (capacity and sweeping; key expiry, round trips, outages).
//!
//! Times are the real clock plus offsets: Redis expires keys by its own
//! clock, so every expiry handed to it must lie in the real future.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokensmith::store::redis::RedisStore;
use tokensmith::store::{Consume, ConsumeOutcome, RefreshRecord, SpendOutcome, Store};
use tokensmith::{Clock, SystemClock};

use crate::redis_harness::RedisServer;

/// Redis answers on loopback in well under a millisecond; the margin is for
/// a loaded CI machine.
const TIMEOUT: Duration = Duration::from_secs(2);

fn now() -> i64 {
    SystemClock.now()
}

/// A store whose epoch is an hour ago: the shared cases consume tokens
/// issued up to a few minutes before `now()`.
async fn connect(server: &RedisServer, namespace: &str, timeout: Duration) -> RedisStore {
    RedisStore::connect(&server.url, namespace, timeout, now() - 3600)
        .await
        .expect("connect to the test redis-server")
}

/// A store on the shared Redis Cluster, in a namespace of its own, epoch an
/// hour ago (as [`connect`]).
async fn connect_cluster(namespace: &str) -> RedisStore {
    let seeds = crate::cluster_harness::shared_seeds();
    let namespace = format!("{namespace}-{}", crate::cluster_harness::process_name());
    RedisStore::connect_cluster(&seeds, &namespace, TIMEOUT, now() - 3600)
        .await
        .expect("connect to the test Redis Cluster")
}

/// Runs each case once per backend, as `store::memory::<case>`,
/// `store::redis::<case>` and `store::cluster::<case>` (the shared
/// Redis Cluster, see `cluster_harness.rs`). The memory and single-Redis
/// stores are reached through `AnyStore`, as the server reaches them, so
/// its dispatch is under test too; the cluster store directly.
macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store = tokensmith::store::memory::MemoryStore::start(100_000);
                    let store: tokensmith::store::AnyStore = store.into();
                    super::$case(std::sync::Arc::new(store)).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let server = crate::redis_harness::RedisServer::start();
                    let store = super::connect(&server, "suite", super::TIMEOUT).await;
                    let store: tokensmith::store::AnyStore = store.into();
                    super::$case(std::sync::Arc::new(store)).await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store = super::connect_cluster(concat!("suite-", stringify!($case))).await;
                    super::$case(std::sync::Arc::new(store)).await;
                }
            )*
        }
    };
}

both_backends!(
    mark_once_first_then_refused,
    marks_kept_until_expiry_then_forgotten,
    revoke_by_jti,
    revoke_by_sub_covers_tokens_issued_until_then,
    rate_limit_fixed_window_and_retry_after,
    refresh_chain_over_five_steps,
    refresh_peek_reads_without_spending,
    refresh_reuse_revokes_the_whole_family,
    refresh_concurrent_spends_exactly_one_wins,
    mark_once_concurrent_exactly_one_wins,
    refresh_expired_or_unknown,
    consume_first_use_then_replayed,
    consume_of_a_token_revoked_by_jti_marks_nothing,
    consume_of_a_token_revoked_by_sub_depends_on_iat,
    consume_concurrent_exactly_one_first_use,
    consume_races_with_revocations_never_marks_a_revoked_token,
    consume_with_a_retry_key_answers_retried_to_that_key_only,
    // OAuth 2.0 (issue 11)
    refresh_revoke_family_ends_every_token_of_it,
    opaque_tokens_kept_until_expiry_removed_at_once,
    refresh_live_is_what_a_spend_would_accept,
    refresh_spend_never_overwrites_a_stored_hash,
);

// --- OAuth 2.0 (issue 11) ---

/// `refresh_live` answers the record exactly while `refresh_spend` would
/// spend the token, and changes nothing.
async fn refresh_live_is_what_a_spend_would_accept<S: Store>(s: Arc<S>) {
    let t = now();
    assert_eq!(s.refresh_live("live-none", t).await, Ok(None));
    let first = chain(&*s, "live", t, 1).await; // token 0 spent at t+10; token 1 live until t+110
    chain(&*s, "live-other", t, 0).await;
    assert_eq!(s.refresh_live(&h("live", 0), t + 20).await, Ok(None), "spent");
    let expected = RefreshRecord {
        expires_at: t + 110,
        ..first
    };
    for _ in 0..2 {
        assert_eq!(s.refresh_live(&h("live", 1), t + 20).await, Ok(Some(expected.clone())));
    }
    // Its own expiry.
    assert_eq!(s.refresh_live(&h("live", 1), t + 110).await, Ok(None), "expired");
    // A revoked family.
    s.refresh_revoke_family("live", t + 1000, t + 20).await.unwrap();
    assert_eq!(s.refresh_live(&h("live", 1), t + 21).await, Ok(None), "revoked");
    assert!(s.refresh_live(&h("live-other", 0), t + 21).await.unwrap().is_some());
    // A reuse ends the family: its live successor is no longer live.
    let out = s
        .refresh_spend(&h("live-other", 0), &h("live-other", 1), t + 22)
        .await
        .unwrap();
    assert!(matches!(out, SpendOutcome::Spent(_)), "{out:?}");
    assert!(s.refresh_live(&h("live-other", 1), t + 23).await.unwrap().is_some());
    let out = s.refresh_spend(&h("live-other", 0), "live-x", t + 23).await;
    assert_eq!(out, Ok(SpendOutcome::Reused));
    assert_eq!(s.refresh_live(&h("live-other", 1), t + 24).await, Ok(None), "reused");
    // The family's own end, whatever the token's.
    let mut short = record("live-short", t);
    short.family_expires_at = t + 50;
    s.refresh_insert("live-short-0", &short, t).await.unwrap();
    assert!(s.refresh_live("live-short-0", t + 49).await.unwrap().is_some());
    assert_eq!(s.refresh_live("live-short-0", t + 50).await, Ok(None), "family expired");
}

/// A spend whose successor hash is already stored (another family's token,
/// or the presented token itself) fails and changes nothing: overwriting
/// would erase a live token or the memory of a spent one.
async fn refresh_spend_never_overwrites_a_stored_hash<S: Store>(s: Arc<S>) {
    let t = now();
    chain(&*s, "ow-a", t, 0).await;
    chain(&*s, "ow-b", t, 0).await;
    for taken in [h("ow-b", 0), h("ow-a", 0)] {
        let out = s.refresh_spend(&h("ow-a", 0), &taken, t + 1).await;
        assert!(out.is_err(), "successor {taken}: {out:?}");
    }
    let b = s.refresh_live(&h("ow-b", 0), t + 1).await.unwrap();
    assert_eq!(
        b.map(|r| r.family),
        Some("ow-b".to_owned()),
        "the other family's token is intact"
    );
    let out = s.refresh_spend(&h("ow-a", 0), &h("ow-a", 1), t + 2).await.unwrap();
    assert!(matches!(out, SpendOutcome::Spent(_)), "still unspent: {out:?}");
}

async fn opaque_tokens_kept_until_expiry_removed_at_once<S: Store>(s: Arc<S>) {
    let t = now();
    assert_eq!(s.opaque_get("op-none", t).await, Ok(None));
    s.opaque_insert("op-1", b"[\"claims\"]", t + 2, t).await.unwrap();
    s.opaque_insert("op-2", b"two", t + 100, t).await.unwrap();
    // A hash is stored once.
    assert!(s.opaque_insert("op-1", b"other", t + 100, t).await.is_err());
    // Redis keeps it until the real second t+2 begins: an answer after that
    // proves nothing.
    let got = s.opaque_get("op-1", t + 1).await;
    if now() < t + 2 {
        assert_eq!(got, Ok(Some(b"[\"claims\"]".to_vec())));
    }
    // Already expired on arrival: nothing kept.
    s.opaque_insert("op-3", b"x", t, t).await.unwrap();
    assert_eq!(s.opaque_get("op-3", t).await, Ok(None));
    // Removed: gone at once; the other stays.
    s.opaque_remove("op-2", t + 1).await.unwrap();
    assert_eq!(s.opaque_get("op-2", t + 1).await, Ok(None));
    s.opaque_remove("op-none", t + 1).await.unwrap();
    // Past its expiry (Redis expires it by its own clock: wait for it).
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.opaque_get("op-1", t + 2).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "an opaque token outlived its expiry");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn refresh_revoke_family_ends_every_token_of_it<S: Store>(s: Arc<S>) {
    let t = now();
    chain(&*s, "rv", t, 2).await; // tokens 0, 1 spent; token 2 live
    chain(&*s, "rv-other", t, 1).await;
    // An expiry already past keeps nothing and changes nothing.
    s.refresh_revoke_family("rv", t - 1, t).await.unwrap();
    let out = s
        .refresh_spend(&h("rv-other", 1), &h("rv-other", 2), t + 30)
        .await
        .unwrap();
    assert!(matches!(out, SpendOutcome::Spent(_)), "{out:?}");
    s.refresh_revoke_family("rv", t + 1000, t + 30).await.unwrap();
    // Revoking again with an earlier end never shortens it.
    s.refresh_revoke_family("rv", t + 50, t + 30).await.unwrap();
    for n in [0, 2] {
        let out = s.refresh_spend(&h("rv", n), &format!("rv-again-{n}"), t + 31).await;
        assert_eq!(out, Ok(SpendOutcome::Revoked), "token {n}");
    }
    let out = s.refresh_spend(&h("rv", 2), "rv-late", t + 60).await;
    assert_eq!(out, Ok(SpendOutcome::Revoked), "after the earlier end");
    // Another family is untouched.
    let out = s
        .refresh_spend(&h("rv-other", 2), &h("rv-other", 3), t + 32)
        .await
        .unwrap();
    assert!(matches!(out, SpendOutcome::Spent(_)), "{out:?}");
}

async fn mark_once_first_then_refused<S: Store>(s: Arc<S>) {
    let t = now();
    s.ping().await.unwrap();
    assert_eq!(s.mark_once("jti-a", t + 300, t).await, Ok(true));
    assert_eq!(s.mark_once("jti-a", t + 300, t).await, Ok(false));
    assert_eq!(s.mark_once("jti-a", t + 300, t + 299).await, Ok(false));
    assert_eq!(
        s.mark_once("jti-a", t + 900, t + 10).await,
        Ok(false),
        "a new expiry does not reset a mark"
    );
    assert_eq!(s.mark_once("jti-b", t + 300, t).await, Ok(true), "keys are independent");
    // A revocation under the same string is not a mark.
    s.revoke_jti("jti-c", t + 300, t).await.unwrap();
    assert_eq!(s.mark_once("jti-c", t + 300, t).await, Ok(true));
}

async fn marks_kept_until_expiry_then_forgotten<S: Store>(s: Arc<S>) {
    // Time only moves forward here, as it does for real callers: the memory
    // store reclaims by the latest `now` it has been given.
    //
    // Redis expires with its own clock, and these marks are kept until the
    // real second t+1. Answers that arrived after it began prove nothing, so
    // those steps run again with a fresh `t` and fresh keys; answers that
    // arrived before it must be exactly these.
    let mut attempt = 0;
    let (t, short) = loop {
        let t = now();
        let (late, short) = (format!("late-{attempt}"), format!("short-{attempt}"));
        let answers = [
            // An expiry already past is still kept a second.
            s.mark_once(&late, t - 5, t).await,
            s.mark_once(&late, t - 5, t).await,
            s.mark_once(&short, t + 1, t).await,
            s.mark_once(&short, t + 1, t).await,
        ];
        if now() < t + 1 {
            assert_eq!(answers, [Ok(true), Ok(false), Ok(true), Ok(false)], "t = {t}");
            break (t, short);
        }
        attempt += 1;
        assert!(attempt < 20, "never four answers within one second: {answers:?}");
    };
    assert_eq!(s.mark_once("long", t + 60, t).await, Ok(true));
    // Forgotten once expired. The memory store decides with the `now` it is
    // given; Redis with its own clock, so this polls it (bounded) until the
    // real second t+1 has begun.
    let deadline = Instant::now() + Duration::from_secs(5);
    let at = loop {
        let at = (t + 1).max(now());
        if s.mark_once(&short, at + 60, at).await.unwrap() {
            break at;
        }
        assert!(
            Instant::now() < deadline,
            "a mark that expired at {} was still held at {}",
            t + 1,
            now()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(s.mark_once(&short, at + 60, at).await, Ok(false), "the new mark holds");
    assert_eq!(
        s.mark_once("long", t + 60, at).await,
        Ok(false),
        "the long mark is still held"
    );
    assert_eq!(
        s.mark_once("long", t + 60, t + 59).await,
        Ok(false),
        "forgotten before expires_at"
    );
}

async fn revoke_by_jti<S: Store>(s: Arc<S>) {
    let t = now();
    assert_eq!(s.is_revoked("j1", "alice", t - 10, t).await, Ok(false));
    s.revoke_jti("j1", t + 300, t).await.unwrap();
    assert_eq!(s.is_revoked("j1", "alice", t - 10, t).await, Ok(true));
    assert_eq!(
        s.is_revoked("j1", "bob", t + 5, t + 200).await,
        Ok(true),
        "by jti, whatever sub and iat"
    );
    assert_eq!(s.is_revoked("j2", "alice", t - 10, t).await, Ok(false), "only that jti");
    assert_eq!(
        s.is_revoked("j1", "alice", t - 10, t + 300).await,
        Ok(false),
        "kept until `until`, not after"
    );
    // Revoking again with an earlier `until` does not shorten it.
    s.revoke_jti("j1", t + 100, t).await.unwrap();
    assert_eq!(s.is_revoked("j1", "alice", t - 10, t + 200).await, Ok(true));
}

async fn revoke_by_sub_covers_tokens_issued_until_then<S: Store>(s: Arc<S>) {
    let t = now();
    s.revoke_sub("alice", t, t + 600, t).await.unwrap();
    assert_eq!(
        s.is_revoked("any", "alice", t - 100, t).await,
        Ok(true),
        "issued before"
    );
    assert_eq!(
        s.is_revoked("any", "alice", t, t).await,
        Ok(true),
        "issued at revoked_at"
    );
    assert_eq!(
        s.is_revoked("any", "alice", t + 1, t + 1).await,
        Ok(false),
        "issued after"
    );
    assert_eq!(s.is_revoked("any", "bob", t - 100, t).await, Ok(false), "another sub");
    assert_eq!(
        s.is_revoked("any", "alice", t - 100, t + 600).await,
        Ok(false),
        "kept until `until` only"
    );
    // An older revoked_at (a slow clock elsewhere) does not narrow it ...
    s.revoke_sub("alice", t - 50, t + 60, t).await.unwrap();
    assert_eq!(s.is_revoked("any", "alice", t, t + 100).await, Ok(true));
    // ... and a newer one widens it.
    s.revoke_sub("alice", t + 10, t + 600, t + 10).await.unwrap();
    assert_eq!(s.is_revoked("any", "alice", t + 5, t + 10).await, Ok(true));
    assert_eq!(s.is_revoked("any", "alice", t + 11, t + 11).await, Ok(false));
}

pub(crate) async fn rate_limit_fixed_window_and_retry_after<S: Store>(s: Arc<S>) {
    // The next whole minute: aligned, and in Redis's future.
    let t = now();
    let start = t - t.rem_euclid(60) + 60;
    for i in 0..3 {
        let d = s.rate_hit("client-a", 3, 60, start + i * 10).await.unwrap();
        assert!(d.allowed, "hit {} of 3", i + 1);
    }
    let d = s.rate_hit("client-a", 3, 60, start + 30).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, 30);
    let d = s.rate_hit("client-a", 3, 60, start + 59).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, 1);
    assert!(
        s.rate_hit("client-b", 3, 60, start + 30).await.unwrap().allowed,
        "counters are per key"
    );
    assert!(
        s.rate_hit("client-a", 3, 60, start + 60).await.unwrap().allowed,
        "a new window starts afresh"
    );
    let d = s.rate_hit("client-c", 0, 60, start).await.unwrap();
    assert!(!d.allowed, "a limit of 0 allows nothing");
    assert_eq!(d.retry_after, 60);
}

fn record(family: &str, t: i64) -> RefreshRecord {
    let mut claims = serde_json::Map::new();
    claims.insert("storeId".into(), serde_json::json!("st_1"));
    claims.insert("big".into(), serde_json::json!(9_007_199_254_740_993_u64));
    claims.insert("empty".into(), serde_json::json!([]));
    RefreshRecord {
        family: family.into(),
        client: "shop_123".into(),
        sub: "guest:abc".into(),
        scopes: vec!["chat".into(), "read:orders".into()],
        claims,
        ttl: 100,
        expires_at: t + 100,
        family_expires_at: t + 1000,
        created_at: t,
    }
}

fn h(family: &str, n: u32) -> String {
    format!("{family}-token-{n}")
}

/// Spends tokens 0..n of a fresh family, one step every 10 seconds.
async fn chain<S: Store>(s: &S, family: &str, t: i64, steps: u32) -> RefreshRecord {
    let first = record(family, t);
    s.refresh_insert(&h(family, 0), &first, t).await.unwrap();
    for step in 0..steps {
        let at = t + 10 * (i64::from(step) + 1);
        let out = s
            .refresh_spend(&h(family, step), &h(family, step + 1), at)
            .await
            .unwrap();
        // Token `step` was made at t + 10*step with a lifetime of 100 s.
        let expected = RefreshRecord {
            expires_at: t + 10 * i64::from(step) + 100,
            ..first.clone()
        };
        assert_eq!(out, SpendOutcome::Spent(expected), "step {}", step + 1);
    }
    first
}

pub(crate) async fn refresh_chain_over_five_steps<S: Store>(s: Arc<S>) {
    let t = now();
    chain(&*s, "fam", t, 5).await;
    // Each spent token is refused; the last successor is live.
    assert_eq!(
        s.refresh_spend(&h("fam", 6), &h("fam", 7), t + 60).await,
        Ok(SpendOutcome::Unknown)
    );
    let out = s.refresh_spend(&h("fam", 5), &h("fam", 6), t + 60).await.unwrap();
    assert!(
        matches!(out, SpendOutcome::Spent(ref r) if r.expires_at == t + 150),
        "{out:?}"
    );
}

async fn refresh_peek_reads_without_spending<S: Store>(s: Arc<S>) {
    let t = now();
    assert_eq!(s.refresh_peek("peek-none").await, Ok(None));
    let first = record("peek", t);
    s.refresh_insert("peek-0", &first, t).await.unwrap();
    // Peeking twice changes nothing: the token still spends once.
    for _ in 0..2 {
        assert_eq!(s.refresh_peek("peek-0").await, Ok(Some(first.clone())));
    }
    let out = s.refresh_spend("peek-0", "peek-1", t + 10).await.unwrap();
    assert!(matches!(out, SpendOutcome::Spent(_)), "{out:?}");
    // The successor reads with its own expiry, the spent one still reads.
    let next = s.refresh_peek("peek-1").await.unwrap().unwrap();
    assert_eq!(
        (next.expires_at, next.created_at, next.sub.as_str()),
        (t + 110, t, "guest:abc")
    );
    assert!(s.refresh_peek("peek-0").await.unwrap().is_some());
}

async fn refresh_reuse_revokes_the_whole_family<S: Store>(s: Arc<S>) {
    let t = now();
    chain(&*s, "fam", t, 4).await; // tokens 0..3 spent, token 4 live
    chain(&*s, "other", t, 1).await;
    // Token 1 (spent at step 2) comes back after step 4, past its own expiry
    // (t+110) but within the family's: someone kept a copy.
    assert_eq!(
        s.refresh_spend(&h("fam", 1), "thief-next", t + 120).await,
        Ok(SpendOutcome::Reused)
    );
    // Steps 3 to 5 now fail, the legitimate holder's live token included.
    for n in [2, 3, 4] {
        let out = s.refresh_spend(&h("fam", n), &format!("again-{n}"), t + 121).await;
        assert_eq!(out, Ok(SpendOutcome::Revoked), "token {n}");
    }
    assert_eq!(
        s.refresh_spend(&h("fam", 1), "x", t + 122).await,
        Ok(SpendOutcome::Revoked)
    );
    assert_eq!(
        s.refresh_spend("thief-next", "y", t + 122).await,
        Ok(SpendOutcome::Unknown),
        "no successor for a reuse"
    );
    // Another family is untouched.
    let out = s.refresh_spend(&h("other", 1), &h("other", 2), t + 30).await.unwrap();
    assert!(matches!(out, SpendOutcome::Spent(_)), "{out:?}");
}

async fn refresh_concurrent_spends_exactly_one_wins<S: Store>(s: Arc<S>) {
    let t = now();
    s.refresh_insert("race-0", &record("race", t), t).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2 {
        let s = Arc::clone(&s);
        tasks.spawn(async move {
            s.refresh_spend("race-0", &format!("race-next-{i}"), t + 1)
                .await
                .unwrap()
        });
    }
    let outcomes = tasks.join_all().await;
    let spent = outcomes.iter().filter(|o| matches!(o, SpendOutcome::Spent(_))).count();
    assert_eq!(spent, 1, "{outcomes:?}");
    assert!(
        outcomes.contains(&SpendOutcome::Reused),
        "the loser is a reuse: {outcomes:?}"
    );
    // And the reuse revoked the winner's successor.
    for i in 0..2 {
        let out = s.refresh_spend(&format!("race-next-{i}"), "z", t + 2).await.unwrap();
        assert!(matches!(out, SpendOutcome::Revoked | SpendOutcome::Unknown), "{out:?}");
        assert!(!matches!(out, SpendOutcome::Spent(_)));
    }
}

async fn mark_once_concurrent_exactly_one_wins<S: Store>(s: Arc<S>) {
    let t = now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let s = Arc::clone(&s);
        tasks.spawn(async move { s.mark_once("contended", t + 300, t).await.unwrap() });
    }
    let wins = tasks.join_all().await.into_iter().filter(|won| *won).count();
    assert_eq!(wins, 1);
}

async fn refresh_expired_or_unknown<S: Store>(s: Arc<S>) {
    let t = now();
    assert_eq!(s.refresh_spend("never-issued", "n", t).await, Ok(SpendOutcome::Unknown));

    s.refresh_insert("exp-0", &record("exp", t), t).await.unwrap();
    assert_eq!(
        s.refresh_spend("exp-0", "exp-1", t + 100).await,
        Ok(SpendOutcome::Unknown),
        "at expires_at"
    );
    assert_eq!(
        s.refresh_spend("exp-0", "exp-1", t + 500).await,
        Ok(SpendOutcome::Unknown)
    );
    // Presenting an expired token spent nothing: it still works in its lifetime.
    let out = s.refresh_spend("exp-0", "exp-1", t + 99).await.unwrap();
    assert!(matches!(out, SpendOutcome::Spent(_)), "{out:?}");

    // Successors never outlive the family. (Later than every `now` above:
    // the memory store reclaims by the latest `now` it has seen.)
    let t = t + 1_000;
    let capped = RefreshRecord {
        family_expires_at: t + 150,
        ..record("cap", t)
    };
    s.refresh_insert("cap-0", &capped, t).await.unwrap();
    let out = s.refresh_spend("cap-0", "cap-1", t + 90).await.unwrap();
    assert!(matches!(out, SpendOutcome::Spent(_)), "{out:?}");
    let out = s.refresh_spend("cap-1", "cap-2", t + 149).await.unwrap();
    assert!(
        matches!(out, SpendOutcome::Spent(ref r) if r.expires_at == t + 150),
        "{out:?}"
    );
    assert_eq!(
        s.refresh_spend("cap-2", "cap-3", t + 150).await,
        Ok(SpendOutcome::Unknown),
        "family expired"
    );
    assert_eq!(
        s.refresh_spend("cap-1", "cap-3", t + 150).await,
        Ok(SpendOutcome::Unknown),
        "family expired"
    );
}

pub(crate) async fn consume_first_use_then_replayed<S: Store>(s: Arc<S>) {
    let t = now();
    assert_eq!(
        s.consume(Consume::new("c1", "alice", t - 10, "jti:c1", t + 300), t)
            .await,
        Ok(ConsumeOutcome::FirstUse)
    );
    assert_eq!(
        s.consume(Consume::new("c1", "alice", t - 10, "jti:c1", t + 300), t)
            .await,
        Ok(ConsumeOutcome::Replayed)
    );
    assert_eq!(
        s.consume(Consume::new("c1", "alice", t - 10, "jti:c1", t + 900), t + 299)
            .await,
        Ok(ConsumeOutcome::Replayed),
        "kept until expires_at; a new expiry does not reset it"
    );
    // The same marks as mark_once, both ways.
    assert_eq!(s.mark_once("jti:c1", t + 300, t).await, Ok(false));
    assert_eq!(s.mark_once("jti:c2", t + 300, t).await, Ok(true));
    assert_eq!(
        s.consume(Consume::new("c2", "alice", t - 10, "jti:c2", t + 300), t)
            .await,
        Ok(ConsumeOutcome::Replayed)
    );
    // An expiry already past is still kept a second, as with mark_once. At
    // the latest `now` this store has seen (t + 299, above): a memory
    // store's background sweep removes what expired before it, at any time.
    let t3 = t + 299;
    assert_eq!(
        s.consume(Consume::new("c3", "alice", t - 10, "jti:c3", t3 - 5), t3)
            .await,
        Ok(ConsumeOutcome::FirstUse)
    );
    assert_eq!(s.mark_once("jti:c3", t3 + 300, t3).await, Ok(false));
    // Revocations of other tokens do not matter.
    s.revoke_jti("other", t + 300, t).await.unwrap();
    s.revoke_sub("bob", t, t + 300, t).await.unwrap();
    assert_eq!(
        s.consume(Consume::new("c4", "alice", t - 10, "jti:c4", t + 300), t)
            .await,
        Ok(ConsumeOutcome::FirstUse)
    );
}

pub(crate) async fn consume_of_a_token_revoked_by_jti_marks_nothing<S: Store>(s: Arc<S>) {
    let t = now();
    s.revoke_jti("r1", t + 300, t).await.unwrap();
    assert_eq!(
        s.consume(Consume::new("r1", "alice", t - 10, "jti:r1", t + 300), t)
            .await,
        Ok(ConsumeOutcome::Revoked)
    );
    // Checked after one consume: a second one must not be what removes a
    // mark the first left.
    assert_eq!(
        s.mark_once("jti:r1", t + 300, t).await,
        Ok(true),
        "a revoked consume created a mark"
    );
    // A revocation wins over an existing mark (the one just placed), every
    // time.
    for _ in 0..2 {
        assert_eq!(
            s.consume(Consume::new("r1", "alice", t - 10, "jti:r1", t + 300), t)
                .await,
            Ok(ConsumeOutcome::Revoked)
        );
    }
    // Revocations are kept until `until` only (memory decides with `now`;
    // Redis's key has not expired yet, the script compares with `now` too).
    s.revoke_jti("r2", t + 100, t).await.unwrap();
    assert_eq!(
        s.consume(Consume::new("r2", "alice", t - 10, "jti:r2", t + 300), t + 100)
            .await,
        Ok(ConsumeOutcome::FirstUse)
    );
}

pub(crate) async fn consume_of_a_token_revoked_by_sub_depends_on_iat<S: Store>(s: Arc<S>) {
    let t = now();
    s.revoke_sub("carol", t, t + 600, t).await.unwrap();
    assert_eq!(
        s.consume(Consume::new("s1", "carol", t - 100, "jti:s1", t + 300), t)
            .await,
        Ok(ConsumeOutcome::Revoked),
        "issued before"
    );
    assert_eq!(
        s.consume(Consume::new("s2", "carol", t, "jti:s2", t + 300), t).await,
        Ok(ConsumeOutcome::Revoked),
        "issued at revoked_at"
    );
    for key in ["jti:s1", "jti:s2"] {
        assert_eq!(s.mark_once(key, t + 300, t).await, Ok(true), "{key} was marked");
    }
    assert_eq!(
        s.consume(Consume::new("s3", "carol", t + 1, "jti:s3", t + 300), t + 1)
            .await,
        Ok(ConsumeOutcome::FirstUse),
        "issued after"
    );
    assert_eq!(
        s.consume(Consume::new("s3", "carol", t + 1, "jti:s3", t + 300), t + 1)
            .await,
        Ok(ConsumeOutcome::Replayed)
    );
    assert_eq!(
        s.consume(Consume::new("s4", "dave", t - 100, "jti:s4", t + 300), t)
            .await,
        Ok(ConsumeOutcome::FirstUse),
        "another sub"
    );
    assert_eq!(
        s.consume(Consume::new("s5", "carol", t - 100, "jti:s5", t + 900), t + 600)
            .await,
        Ok(ConsumeOutcome::FirstUse),
        "kept until `until` only"
    );
    // A newer revocation widens it, as with is_revoked.
    s.revoke_sub("carol", t + 10, t + 600, t + 10).await.unwrap();
    assert_eq!(
        s.consume(Consume::new("s6", "carol", t + 5, "jti:s6", t + 300), t + 10)
            .await,
        Ok(ConsumeOutcome::Revoked)
    );
}

async fn consume_concurrent_exactly_one_first_use<S: Store>(s: Arc<S>) {
    let t = now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let s = Arc::clone(&s);
        tasks.spawn(async move {
            s.consume(Consume::new("hot", "alice", t - 10, "jti:hot", t + 300), t)
                .await
                .unwrap()
        });
    }
    let outcomes = tasks.join_all().await;
    let first = outcomes.iter().filter(|o| **o == ConsumeOutcome::FirstUse).count();
    let replayed = outcomes.iter().filter(|o| **o == ConsumeOutcome::Replayed).count();
    assert_eq!((first, replayed), (1, 63), "{outcomes:?}");
}

/// A consume placed with a retry key is that consume again when retried with
/// the same key (its answer was lost), and a replay for anyone else.
async fn consume_with_a_retry_key_answers_retried_to_that_key_only<S: Store>(s: Arc<S>) {
    let t = now();
    let c = Consume::new("k1", "alice", t - 10, "jti:k1", t + 300);
    assert_eq!(
        s.consume(c.with_retry_key("rk-a"), t).await,
        Ok(ConsumeOutcome::FirstUse)
    );
    for later in [t, t + 1, t + 299] {
        assert_eq!(
            s.consume(c.with_retry_key("rk-a"), later).await,
            Ok(ConsumeOutcome::Retried),
            "the same key, at {later}"
        );
    }
    assert_eq!(
        s.consume(c.with_retry_key("rk-b"), t).await,
        Ok(ConsumeOutcome::Replayed)
    );
    assert_eq!(s.consume(c, t).await, Ok(ConsumeOutcome::Replayed), "no key");
    assert_eq!(s.mark_once("jti:k1", t + 300, t).await, Ok(false), "an ordinary mark");

    // A mark placed without a key is no one's: no key retries it, not even
    // one that looks like the plain mark.
    let d = Consume::new("k2", "alice", t - 10, "jti:k2", t + 300);
    assert_eq!(s.consume(d, t).await, Ok(ConsumeOutcome::FirstUse));
    for key in ["1", "r:1", ""] {
        assert_eq!(
            s.consume(d.with_retry_key(key), t).await,
            Ok(ConsumeOutcome::Replayed),
            "{key:?}"
        );
    }
    assert!(s.mark_once("jti:k3", t + 300, t).await.unwrap());
    let e = Consume::new("k3", "alice", t - 10, "jti:k3", t + 300);
    assert_eq!(s.consume(e.with_retry_key("1"), t).await, Ok(ConsumeOutcome::Replayed));

    // A revocation wins over a retry, as over any mark.
    s.revoke_jti("k1", t + 300, t).await.unwrap();
    assert_eq!(
        s.consume(c.with_retry_key("rk-a"), t).await,
        Ok(ConsumeOutcome::Revoked)
    );
}

/// Consumes of many tokens of one `sub` race with a revocation of that
/// `sub`: a token that came out `Revoked` must never have been marked, and
/// after the revocation every consume is `Revoked`.
async fn consume_races_with_revocations_never_marks_a_revoked_token<S: Store>(s: Arc<S>) {
    let t = now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let task_store = Arc::clone(&s);
        tasks.spawn(async move {
            let key = format!("jti:race{i}");
            let out = task_store
                .consume(Consume::new(&format!("race{i}"), "erin", t - 10, &key, t + 300), t)
                .await;
            (key, out.unwrap())
        });
        if i == 32 {
            s.revoke_sub("erin", t, t + 600, t).await.unwrap();
        }
    }
    for (key, out) in tasks.join_all().await {
        let marked = !s.mark_once(&key, t + 300, t).await.unwrap();
        match out {
            ConsumeOutcome::FirstUse => assert!(marked, "{key}: FirstUse without a mark"),
            ConsumeOutcome::Revoked => assert!(!marked, "{key}: Revoked but marked"),
            other => panic!("{key}: {other:?} on its only consume"),
        }
    }
    assert_eq!(
        s.consume(Consume::new("race-late", "erin", t - 10, "jti:race-late", t + 300), t)
            .await,
        Ok(ConsumeOutcome::Revoked)
    );
}

/// What only the memory store has: a capacity, and sweeping.
mod memory_only {
    use std::sync::Arc;
    use std::time::Duration;

    use tokensmith::store::memory::{MemoryStats, MemoryStore};
    use tokensmith::store::{Consume, ConsumeOutcome, Store, StoreError};

    use super::record;

    const T: i64 = 1_000_000;

    #[tokio::test]
    async fn ping_reports_full_while_the_marks_are_at_capacity() {
        let s = MemoryStore::new(3);
        assert_eq!(s.ping().await, Ok(()));
        s.mark_once("a", T + 10, T).await.unwrap();
        assert_eq!(
            s.consume(Consume::new("b", "u", T, "b", T + 10), T).await,
            Ok(ConsumeOutcome::FirstUse)
        );
        assert_eq!(s.ping().await, Ok(()), "one slot left");
        s.mark_once("c", T + 1000, T).await.unwrap();
        assert_eq!(s.ping().await, Err(StoreError::Full { capacity: 3 }));
        assert_eq!(
            s.consume(Consume::new("d", "u", T, "d", T + 10), T).await,
            Err(StoreError::Full { capacity: 3 }),
            "what readiness predicted"
        );
        assert_eq!(s.stats().marks, 3);
        // Once a caller's clock shows the short marks expired, ping sweeps
        // them and is ready again, without any new mark.
        assert_eq!(s.is_revoked("x", "y", T, T + 100).await, Ok(false));
        assert_eq!(s.ping().await, Ok(()));
        assert_eq!(s.stats().marks, 1, "the live mark is kept");
        assert_eq!(s.mark_once("c", T + 1000, T + 100).await, Ok(false));
        // A store with room for nothing is never ready, also as the server
        // holds it.
        assert_eq!(MemoryStore::new(0).ping().await, Err(StoreError::Full { capacity: 0 }));
        let any: tokensmith::store::AnyStore = MemoryStore::new(0).into();
        assert_eq!(any.ping().await, Err(StoreError::Full { capacity: 0 }));
    }

    /// A full rate table makes room by dropping windows that ended at or
    /// before the latest `now` less the grace, exactly.
    #[tokio::test]
    async fn a_full_rate_table_drops_windows_ended_at_the_grace() {
        let s = MemoryStore::new(1);
        s.rate_hit("r1", 5, 10, T).await.unwrap(); // window [T, T+10)
        assert_eq!(
            s.rate_hit("r2", 5, 10, T + 11).await,
            Err(StoreError::Full { capacity: 1 })
        );
        assert!(s.rate_hit("r2", 5, 10, T + 12).await.unwrap().allowed);
        assert_eq!(s.stats().rate_counters, 1);
    }

    /// A key's counter belongs to one window: the same key counted over a
    /// window of another length starts afresh, even from the same start.
    #[tokio::test]
    async fn a_new_window_length_starts_a_new_count() {
        let s = MemoryStore::new(10);
        let at = T - T.rem_euclid(60) + 5; // 60 s and 30 s windows both start at at - 5
        for _ in 0..2 {
            assert!(s.rate_hit("k", 2, 60, at).await.unwrap().allowed);
        }
        assert!(!s.rate_hit("k", 2, 60, at).await.unwrap().allowed);
        let d = s.rate_hit("k", 2, 30, at).await.unwrap();
        assert_eq!((d.allowed, d.retry_after), (true, 25));
    }

    /// A full revocation table makes room by dropping what expired before
    /// the latest `now` less the grace.
    #[tokio::test]
    async fn a_full_revocation_table_drops_expired_entries_for_a_new_one() {
        let s = MemoryStore::new(1);
        s.revoke_jti("old", T + 10, T).await.unwrap();
        assert_eq!(
            s.revoke_jti("new", T + 100, T + 5).await,
            Err(StoreError::Full { capacity: 1 })
        );
        assert_eq!(s.revoke_sub("new", T + 12, T + 100, T + 12).await, Ok(()));
        assert_eq!(s.is_revoked("x", "new", T + 12, T + 12).await, Ok(true));
        assert_eq!(s.stats().revocations, 1);
    }

    /// A full refresh-token table makes room by dropping families that
    /// ended before the latest `now` less the grace.
    #[tokio::test]
    async fn a_full_refresh_table_drops_ended_families_for_a_new_one() {
        let s = MemoryStore::new(1);
        let mut old = record("old", T);
        (old.expires_at, old.family_expires_at) = (T + 10, T + 10);
        s.refresh_insert("old-0", &old, T).await.unwrap();
        assert_eq!(
            s.refresh_insert("new-0", &record("new", T + 5), T + 5).await,
            Err(StoreError::Full { capacity: 1 })
        );
        assert_eq!(s.refresh_insert("new-0", &record("new", T + 12), T + 12).await, Ok(()));
        assert!(s.refresh_live("new-0", T + 12).await.unwrap().is_some());
        assert_eq!(s.stats().refresh_tokens, 1);
    }

    /// Below capacity a readiness probe answers at once: it scans no table
    /// (the marks that expired are reclaimed by the sweeper, or when a
    /// table is about to grow).
    #[tokio::test]
    async fn ping_below_capacity_sweeps_nothing() {
        let s = MemoryStore::new(10);
        s.mark_once("short", T + 1, T).await.unwrap();
        assert_eq!(s.is_revoked("x", "y", T, T + 100).await, Ok(false));
        assert_eq!(s.ping().await, Ok(()));
        assert_eq!(s.stats().marks, 1, "not swept by the probe");
        s.sweep();
        assert_eq!(s.stats().marks, 0);
    }

    /// `ready_at` is `ping` with the caller's clock: the time it is given
    /// is what sweeps the expired marks (a readiness probe alone makes a
    /// full store ready again once its marks expire).
    #[tokio::test]
    async fn ready_at_records_the_time_before_it_judges() {
        let s = MemoryStore::new(2);
        assert_eq!(s.ready_at(T), Ok(()));
        s.mark_once("a", T + 10, T).await.unwrap();
        s.mark_once("b", T + 1000, T).await.unwrap();
        assert_eq!(s.ready_at(T + 5), Err(StoreError::Full { capacity: 2 }));
        assert_eq!(s.stats().marks, 2);
        // "a" expired at T + 10; past the sweep's grace it is gone.
        assert_eq!(s.ready_at(T + 100), Ok(()));
        assert_eq!(s.stats().marks, 1);
        assert_eq!(
            s.mark_once("b", T + 1000, T + 100).await,
            Ok(false),
            "the live mark is kept"
        );
        // Its debug form says what it is and how large, nothing it holds.
        let debug = format!("{s:?}");
        assert!(
            debug.starts_with("MemoryStore {") && debug.contains("capacity: 2") && !debug.contains("\"b\""),
            "{debug}"
        );
    }

    /// Revoked refresh families count against the capacity like every
    /// other kind of entry: a full table refuses a new family (and keeps the
    /// ones it has), and makes room once a family's tokens have expired.
    #[tokio::test]
    async fn revoked_families_are_bounded_and_swept() {
        let s = MemoryStore::new(2);
        s.refresh_revoke_family("f1", T + 10, T).await.unwrap();
        s.refresh_revoke_family("f2", T + 1000, T).await.unwrap();
        assert_eq!(
            s.refresh_revoke_family("f3", T + 1000, T).await,
            Err(StoreError::Full { capacity: 2 })
        );
        assert_eq!(s.stats().revoked_families, 2);
        // An existing family still moves its end later.
        s.refresh_revoke_family("f1", T + 20, T).await.unwrap();
        // Once f1's tokens expired (past the grace), f3 takes its place.
        assert_eq!(s.refresh_revoke_family("f3", T + 1000, T + 100).await, Ok(()));
        assert_eq!(s.stats().revoked_families, 2);
        assert_eq!(
            s.refresh_revoke_family("f4", T + 1000, T + 100).await,
            Err(StoreError::Full { capacity: 2 })
        );
    }

    /// Opaque tokens are bounded by the capacity too. A full table sweeps
    /// what expired more than the grace (two seconds) before the latest
    /// `now`, exactly at that bound, and refuses a new token only when
    /// nothing could be swept; live tokens are never evicted.
    #[tokio::test]
    async fn opaque_tokens_are_bounded_and_swept_at_the_grace() {
        let s = MemoryStore::new(2);
        s.opaque_insert("h1", b"one", T + 10, T).await.unwrap();
        s.opaque_insert("h2", b"two", T + 1000, T).await.unwrap();
        assert_eq!(
            s.opaque_insert("h3", b"three", T + 1000, T).await,
            Err(StoreError::Full { capacity: 2 })
        );
        // At T + 11, h1 expired one second ago: within the grace, kept.
        assert_eq!(
            s.opaque_insert("h3", b"three", T + 1000, T + 11).await,
            Err(StoreError::Full { capacity: 2 })
        );
        // At T + 12 it is past the grace: swept, and h3 takes its place.
        assert_eq!(s.opaque_insert("h3", b"three", T + 1000, T + 12).await, Ok(()));
        assert_eq!(
            s.opaque_insert("h4", b"four", T + 1000, T + 12).await,
            Err(StoreError::Full { capacity: 2 })
        );
        assert_eq!(s.opaque_get("h2", T + 12).await, Ok(Some(b"two".to_vec())));
        assert_eq!(s.opaque_get("h3", T + 12).await, Ok(Some(b"three".to_vec())));
    }

    #[tokio::test]
    async fn a_consume_of_a_revoked_token_is_revoked_even_when_full() {
        let s = MemoryStore::new(1);
        s.mark_once("a", T + 100, T).await.unwrap();
        s.revoke_jti("j", T + 100, T).await.unwrap();
        assert_eq!(
            s.consume(Consume::new("j", "u", T, "jti:j", T + 100), T).await,
            Ok(ConsumeOutcome::Revoked)
        );
        assert_eq!(
            s.consume(Consume::new("a", "u", T, "a", T + 100), T).await,
            Ok(ConsumeOutcome::Replayed),
            "a replay is known without room"
        );
    }

    /// Consumes (which hold the revocations lock while locking mark
    /// shards, and sweep every shard when full), revocations (write lock),
    /// marks and full sweeps, on many threads at once against a small
    /// store: all of it must finish. Plain threads, so a deadlock shows as
    /// a timeout here instead of a hung runtime; a worker that panics
    /// fails the test at once (it would otherwise wait out the timeout).
    #[test]
    fn consumes_revocations_and_sweeps_together_do_not_deadlock() {
        /// Tells the test that a worker ended, and whether by a panic.
        struct Ended(std::sync::mpsc::Sender<(i64, bool)>, i64);
        impl Drop for Ended {
            fn drop(&mut self) {
                let _ = self.0.send((self.1, std::thread::panicking()));
            }
        }
        let s = Arc::new(MemoryStore::new(64));
        let (done, finished) = std::sync::mpsc::channel();
        for worker in 0..8_i64 {
            let s = Arc::clone(&s);
            let ended = Ended(done.clone(), worker);
            std::thread::spawn(move || {
                let _ended = ended;
                let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                rt.block_on(async {
                    for i in 0..2_000_i64 {
                        let now = T + i / 10;
                        let key = format!("w{worker}-{i}");
                        match (worker + i) % 4 {
                            0 => s
                                .revoke_sub(&format!("u{}", i % 7), now, now + 5, now)
                                .await
                                .map(|_| ()),
                            1 => s.mark_once(&key, now + 2, now).await.map(|_| ()),
                            2 => {
                                s.sweep();
                                s.ping().await.or(Ok(()))
                            }
                            _ => s
                                .consume(Consume::new(&key, &format!("u{}", i % 7), now, &key, now + 2), now)
                                .await
                                .map(|_| ()),
                        }
                        .or_else(|e| {
                            if matches!(e, StoreError::Full { .. }) {
                                Ok(())
                            } else {
                                Err(e)
                            }
                        })
                        .unwrap();
                    }
                });
            });
        }
        for _ in 0..8 {
            let (worker, panicked) = finished
                .recv_timeout(Duration::from_secs(60))
                .expect("a worker did not finish: deadlock");
            assert!(!panicked, "worker {worker} panicked");
        }
        assert!(s.stats().marks <= 64);
    }

    #[tokio::test]
    async fn full_refuses_new_marks_without_evicting_live_ones() {
        let s = MemoryStore::new(4);
        for i in 0..4 {
            assert_eq!(s.mark_once(&format!("k{i}"), T + 100, T).await, Ok(true));
        }
        assert_eq!(
            s.mark_once("k4", T + 100, T).await,
            Err(StoreError::Full { capacity: 4 })
        );
        for i in 0..4 {
            assert_eq!(
                s.mark_once(&format!("k{i}"), T + 100, T + 99).await,
                Ok(false),
                "k{i} was evicted"
            );
        }
        assert_eq!(s.stats().marks, 4);
        // Once two of them have expired, a new mark sweeps them and fits.
        let s = MemoryStore::new(4);
        for (i, until) in [T + 10, T + 10, T + 500, T + 500].into_iter().enumerate() {
            assert_eq!(s.mark_once(&format!("k{i}"), until, T).await, Ok(true));
        }
        assert_eq!(s.mark_once("k4", T + 500, T + 100).await, Ok(true));
        assert_eq!(s.mark_once("k5", T + 500, T + 100).await, Ok(true));
        assert_eq!(
            s.mark_once("k6", T + 500, T + 100).await,
            Err(StoreError::Full { capacity: 4 })
        );
        for key in ["k2", "k3", "k4", "k5"] {
            assert_eq!(s.mark_once(key, T + 500, T + 100).await, Ok(false), "{key} was evicted");
        }
    }

    #[tokio::test]
    async fn full_applies_to_revocations_rate_counters_and_refresh_tokens() {
        let s = MemoryStore::new(2);
        s.revoke_jti("a", T + 100, T).await.unwrap();
        s.revoke_sub("b", T, T + 100, T).await.unwrap();
        assert_eq!(
            s.revoke_jti("c", T + 100, T).await,
            Err(StoreError::Full { capacity: 2 })
        );
        assert_eq!(s.is_revoked("a", "b", T, T).await, Ok(true));
        s.revoke_jti("a", T + 200, T).await.unwrap(); // an existing entry still updates

        s.rate_hit("r1", 5, 60, T).await.unwrap();
        s.rate_hit("r2", 5, 60, T).await.unwrap();
        assert_eq!(s.rate_hit("r3", 5, 60, T).await, Err(StoreError::Full { capacity: 2 }));
        // A key already counted keeps counting while the table is full: its
        // hits 2 to 5 are allowed, the sixth is not.
        for hit in 2..=6 {
            let d = s.rate_hit("r1", 5, 60, T + 1).await.unwrap();
            assert_eq!(d.allowed, hit <= 5, "hit {hit}");
        }
        assert!(
            s.rate_hit("r3", 5, 60, T + 120).await.unwrap().allowed,
            "ended windows are swept"
        );

        s.refresh_insert("t0", &record("f", T), T).await.unwrap();
        s.refresh_insert("u0", &record("g", T), T).await.unwrap();
        assert_eq!(
            s.refresh_insert("v0", &record("h", T), T).await,
            Err(StoreError::Full { capacity: 2 })
        );
        // A spend needs room for the successor; refused, it spends nothing.
        assert_eq!(
            s.refresh_spend("t0", "t1", T + 1).await,
            Err(StoreError::Full { capacity: 2 })
        );
        assert_eq!(s.stats().revoked_families, 0);
    }

    #[tokio::test]
    async fn expired_entries_are_swept_by_the_latest_now() {
        let s = MemoryStore::new(1000);
        for i in 0..10 {
            s.mark_once(&format!("short{i}"), T + 10, T).await.unwrap();
        }
        for i in 0..5 {
            s.mark_once(&format!("long{i}"), T + 1000, T).await.unwrap();
        }
        s.revoke_jti("j", T + 10, T).await.unwrap();
        s.revoke_sub("u", T, T + 1000, T).await.unwrap();
        s.rate_hit("r", 5, 10, T).await.unwrap();
        s.refresh_insert("t0", &record("f", T), T).await.unwrap(); // family ends at T+1000
        s.sweep();
        let before = s.stats();
        assert_eq!(
            before,
            MemoryStats {
                marks: 15,
                retry_keys: 0,
                revocations: 2,
                rate_counters: 1,
                refresh_tokens: 1,
                revoked_families: 0,
                opaque_tokens: 0
            }
        );
        // A caller at T+100: the short-lived entries are gone after a sweep.
        assert_eq!(s.is_revoked("x", "y", T, T + 100).await, Ok(false));
        s.sweep();
        assert_eq!(
            s.stats(),
            MemoryStats {
                marks: 5,
                retry_keys: 0,
                revocations: 1,
                rate_counters: 0,
                refresh_tokens: 1,
                revoked_families: 0,
                opaque_tokens: 0
            }
        );
        for i in 0..5 {
            assert_eq!(s.mark_once(&format!("long{i}"), T + 1000, T + 100).await, Ok(false));
        }
        assert_eq!(s.is_revoked("x", "u", T, T + 100).await, Ok(true));
        // After the family's end, its tokens go too.
        assert_eq!(s.ping().await, Ok(()));
        s.mark_once("later", T + 5000, T + 2000).await.unwrap();
        s.sweep();
        assert_eq!(
            s.stats(),
            MemoryStats {
                marks: 1,
                ..MemoryStats::default()
            }
        );
    }

    /// A sweep reclaims what expired at or before the latest `now` less the
    /// grace (2 s), and keeps what expires a second later.
    #[tokio::test]
    async fn a_sweep_reclaims_exactly_at_the_grace() {
        let s = MemoryStore::new(1000);
        // Rate windows [T, T+10) and [T+10, T+20).
        s.rate_hit("ended", 5, 10, T).await.unwrap();
        s.rate_hit("open", 5, 10, T + 10).await.unwrap();
        s.opaque_insert("at-grace", b"a", T + 10, T).await.unwrap();
        s.opaque_insert("after-grace", b"b", T + 11, T).await.unwrap();
        s.opaque_insert("long", b"c", T + 1000, T).await.unwrap();
        s.mark_once("m-at-grace", T + 10, T).await.unwrap();
        s.mark_once("m-after-grace", T + 11, T).await.unwrap();
        s.revoke_jti("j-at-grace", T + 10, T).await.unwrap();
        s.revoke_jti("j-after-grace", T + 11, T).await.unwrap();
        s.revoke_sub("s-at-grace", T, T + 10, T).await.unwrap();
        s.revoke_sub("s-after-grace", T, T + 11, T).await.unwrap();
        for (family, end) in [("f-at-grace", T + 10), ("f-after-grace", T + 11)] {
            let mut r = record(family, T);
            (r.expires_at, r.family_expires_at) = (end, end);
            s.refresh_insert(family, &r, T).await.unwrap();
            s.refresh_revoke_family(family, end, T).await.unwrap();
        }
        // Rate counters, opaque tokens, marks, revocations, refresh tokens,
        // revoked families.
        let sizes = |s: &MemoryStore| {
            let n = s.stats();
            [
                n.rate_counters,
                n.opaque_tokens,
                n.marks,
                n.revocations,
                n.refresh_tokens,
                n.revoked_families,
            ]
        };
        s.sweep();
        assert_eq!(sizes(&s), [2, 3, 2, 4, 2, 2]);
        // A caller at T+12: the horizon is T+10.
        assert_eq!(s.is_revoked("x", "y", T, T + 12).await, Ok(false));
        s.sweep();
        assert_eq!(sizes(&s), [1, 2, 1, 2, 1, 1], "{:?}", s.stats());
        assert_eq!(s.opaque_get("long", T + 12).await, Ok(Some(b"c".to_vec())));
        // The open window still counts its hit: four more, then refused.
        for _ in 0..4 {
            s.rate_hit("open", 5, 10, T + 12).await.unwrap();
        }
        assert!(!s.rate_hit("open", 5, 10, T + 12).await.unwrap().allowed);
    }

    #[tokio::test]
    async fn without_a_sweeper_expired_marks_are_reclaimed_before_the_table_grows() {
        let s = MemoryStore::new(1_000_000);
        assert!(!s.is_sweeping());
        // 100 rounds of 1,000 marks, each round expiring before the next:
        // without reclaiming, 100,000 would be held.
        for round in 0..100_i64 {
            let now = T + round * 10;
            for i in 0..1000 {
                assert_eq!(s.mark_once(&format!("r{round}-{i}"), now + 5, now).await, Ok(true));
            }
        }
        let held = s.stats().marks;
        assert!(held < 10_000, "{held} marks held");
    }

    /// On the current-thread runtime the sweeper runs only when the test
    /// yields, so this needs no sleep and no timer.
    #[tokio::test]
    async fn background_sweeper_sweeps_and_stops_when_the_store_is_dropped() {
        let metrics = tokio::runtime::Handle::current().metrics();
        let tasks_before = metrics.num_alive_tasks();
        let s = MemoryStore::start(100);
        assert!(s.is_sweeping());
        for i in 0..10 {
            s.mark_once(&format!("k{i}"), T + 10, T).await.unwrap();
        }
        s.mark_once("long", T + 1000, T).await.unwrap();
        // The store learns the time only from its callers.
        assert_eq!(s.is_revoked("x", "y", T, T + 100).await, Ok(false));
        assert_eq!(s.stats().marks, 11);
        for _ in 0..100 {
            if s.stats().marks == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(s.stats().marks, 1, "the background task did not sweep");
        assert_eq!(metrics.num_alive_tasks(), tasks_before + 1);
        drop(s);
        for _ in 0..100 {
            if metrics.num_alive_tasks() == tasks_before {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            metrics.num_alive_tasks(),
            tasks_before,
            "the sweeper outlived its store"
        );
    }

    #[test]
    fn start_outside_a_runtime_does_without_a_sweeper() {
        let s = MemoryStore::start(10);
        assert!(!s.is_sweeping());
    }

    #[tokio::test]
    async fn start_inside_a_runtime_runs_a_sweeper() {
        let s = MemoryStore::start(10);
        assert!(s.is_sweeping());
        assert_eq!(s.capacity(), 10);
    }
}

/// What only the Redis store has: keys with PXAT, one round trip per mark,
/// persistence across reconnection, and outages.
mod redis_only {
    use std::time::{Duration, Instant};

    use redis::AsyncCommands;
    use tokensmith::store::redis::{namespace_id, RedisStore};
    use tokensmith::store::{Consume, ConsumeOutcome, SpendOutcome, Store, StoreError};

    use super::{connect, now, record, TIMEOUT};
    use crate::redis_harness::{commandstats, free_port, mark_name, ran_between, RedisServer, INSTALL_HINT};

    fn unix_ms() -> i64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        i64::try_from(d.as_millis()).unwrap()
    }

    async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
        server.client().get_multiplexed_async_connection().await.unwrap()
    }

    #[tokio::test]
    async fn a_mark_is_one_key_under_the_namespace_with_pxat() {
        let server = RedisServer::start();
        let s = connect(&server, "issuer-a", TIMEOUT).await;
        let t = now();
        let expires_at = t + 300;
        assert_eq!(s.mark_once("jti-x", expires_at, t).await, Ok(true));
        let mut conn = raw(&server).await;
        let mut keys: Vec<String> = conn.keys("*").await.unwrap();
        keys.sort();
        let id = namespace_id("issuer-a");
        let mark = mark_name("issuer-a", "jti-x", false);
        let mut expected = [
            format!("ts:{id}:mark-epoch"),
            mark.clone(),
            format!("ts:ns:{id}"),
            format!("ts:{id}:epoch"),
            "tokensmith:issuer-a:epoch".to_owned(),
        ];
        expected.sort();
        assert_eq!(
            keys, expected,
            "the mark, the namespace's epoch and name, and the previous layouts' epochs held shut"
        );
        assert!(mark.len() <= 30, "{mark}");
        let name: String = conn.get(format!("ts:ns:{id}")).await.unwrap();
        assert_eq!(name, "issuer-a");
        let before = unix_ms();
        let pttl: i64 = conn.pttl(&mark).await.unwrap();
        assert!(pttl > 0, "no expiry set: PTTL {pttl}");
        assert!(pttl <= expires_at * 1000 - before, "PTTL {pttl} runs past expires_at");
        assert!(
            pttl > (expires_at - t - 5) * 1000,
            "PTTL {pttl} is much shorter than asked"
        );
    }

    #[tokio::test]
    async fn every_key_expires_with_what_it_guards() {
        let server = RedisServer::start();
        let s = connect(&server, "n", TIMEOUT).await;
        let t = now();
        let window = t - t.rem_euclid(60) + 60;
        s.refresh_insert("h0", &record("fam", t), t).await.unwrap(); // family ends at t+1000
        assert!(matches!(
            s.refresh_spend("h0", "h1", t + 1).await,
            Ok(SpendOutcome::Spent(_))
        ));
        assert_eq!(s.refresh_spend("h0", "h2", t + 2).await, Ok(SpendOutcome::Reused));
        s.revoke_jti("j", t + 300, t).await.unwrap();
        s.revoke_sub("u", t, t + 600, t).await.unwrap();
        s.rate_hit("c", 5, 60, window).await.unwrap();
        s.mark_once("m", t + 30, t).await.unwrap();
        let id = namespace_id("n");
        let expected = [
            (format!("ts:{id}:refresh:h0"), t + 1000),
            (format!("ts:{id}:refresh:h1"), t + 1000),
            (format!("ts:{id}:family:fam"), t + 1000),
            (format!("ts:{id}:revoked-jti:j"), t + 300),
            (format!("ts:{id}:revoked-sub:u"), t + 600),
            (format!("ts:{id}:rate:c:{window}"), window + 60),
            (mark_name("n", "m", false), t + 30),
        ];
        let mut conn = raw(&server).await;
        let mut keys: Vec<String> = conn.keys("*").await.unwrap();
        keys.sort();
        let mut names: Vec<String> = expected.iter().map(|(k, _)| k.clone()).collect();
        let forever = [
            format!("ts:{id}:mark-epoch"),
            format!("ts:ns:{id}"),
            format!("ts:{id}:epoch"),
            "tokensmith:n:epoch".to_owned(),
        ];
        names.extend(forever.iter().cloned());
        names.sort();
        assert_eq!(keys, names, "nothing else is stored");
        // Four keys per namespace never expire: the epoch must outlive
        // every mark, or its absence would read as lost state; the name and
        // the previous layouts' epochs (held shut) are one key each.
        for key in forever {
            let pttl: i64 = conn.pttl(&key).await.unwrap();
            assert_eq!(pttl, -1, "{key} has no expiry");
        }
        for (key, until) in expected {
            let before = unix_ms();
            let pttl: i64 = conn.pttl(&key).await.unwrap();
            assert!(pttl > 0, "{key} has no expiry: PTTL {pttl}");
            assert!(pttl <= until * 1000 - before, "{key} outlives {until}: PTTL {pttl}");
            assert!(
                pttl > (until - t - 5) * 1000,
                "{key} expires well before {until}: PTTL {pttl}"
            );
        }
    }

    #[tokio::test]
    async fn mark_once_is_exactly_one_set_command() {
        let server = RedisServer::start();
        let s = connect(&server, "n", TIMEOUT).await;
        s.ping().await.unwrap(); // connection set-up done before counting
        let mut conn = raw(&server).await;
        let before = commandstats(&mut conn).await;
        let t = now();
        for i in 0..5 {
            assert_eq!(s.mark_once(&format!("k{i}"), t + 60, t).await, Ok(true));
            assert_eq!(s.mark_once(&format!("k{i}"), t + 60, t).await, Ok(false));
        }
        let after = commandstats(&mut conn).await;
        let delta = ran_between(&before, &after);
        assert_eq!(delta("set"), 10, "one SET per mark_once: {before:?} → {after:?}");
        let others: u64 = after
            .keys()
            .filter(|n| *n != "set" && *n != "info")
            .map(|n| delta(n))
            .sum();
        assert_eq!(others, 0, "no other command: {before:?} → {after:?}");
        // The store times each call it made, for /metrics.
        let mut metrics = String::new();
        s.render_metrics(&mut metrics);
        assert!(
            metrics.contains("tokensmith_store_duration_seconds_count{op=\"mark_once\"} 10\n"),
            "{metrics}"
        );
        // A revocation check is one MGET of both entries (a cluster, whose
        // slots differ, sends two GETs).
        let before = commandstats(&mut conn).await;
        assert_eq!(s.is_revoked("k0", "u", t, t).await, Ok(false));
        let after = commandstats(&mut conn).await;
        let delta = ran_between(&before, &after);
        assert_eq!((delta("mget"), delta("get")), (1, 0), "{before:?} → {after:?}");
    }

    /// One consume is one round trip: one EVALSHA. The script's own
    /// commands are counted by Redis too (one MGET, and one SET unless the
    /// token is revoked) but cost no round trip.
    #[tokio::test]
    async fn a_consume_is_exactly_one_evalsha() {
        let server = RedisServer::start();
        let s = connect(&server, "n", TIMEOUT).await;
        let t = now();
        // The first run on a fresh Redis loads the scripts (NOSCRIPT, then
        // SCRIPT LOAD and EVALSHA again): done before counting.
        assert_eq!(
            s.consume(Consume::new("warm", "u", t, "jti:warm", t + 60), t).await,
            Ok(ConsumeOutcome::FirstUse)
        );
        s.revoke_jti("gone", t + 60, t).await.unwrap();
        let mut conn = raw(&server).await;
        let before = commandstats(&mut conn).await;
        for i in 0..5 {
            let key = format!("jti:k{i}");
            assert_eq!(
                s.consume(Consume::new(&format!("k{i}"), "u", t, &key, t + 60), t).await,
                Ok(ConsumeOutcome::FirstUse)
            );
            assert_eq!(
                s.consume(Consume::new(&format!("k{i}"), "u", t, &key, t + 60), t).await,
                Ok(ConsumeOutcome::Replayed)
            );
        }
        assert_eq!(
            s.consume(Consume::new("gone", "u", t, "jti:gone", t + 60), t).await,
            Ok(ConsumeOutcome::Revoked)
        );
        let after = commandstats(&mut conn).await;
        let delta = ran_between(&before, &after);
        assert_eq!(delta("evalsha"), 11, "one EVALSHA per consume: {before:?} → {after:?}");
        assert_eq!(delta("mget"), 11, "inside the script: {before:?} → {after:?}");
        assert_eq!(
            delta("set"),
            10,
            "inside the script, not for the revoked one: {before:?} → {after:?}"
        );
        let others: u64 = after
            .keys()
            .filter(|n| !matches!(n.as_str(), "evalsha" | "mget" | "set" | "info"))
            .map(|n| delta(n))
            .sum();
        assert_eq!(others, 0, "no other command: {before:?} → {after:?}");
        // The mark is the one mark_once makes: same key, same expiry.
        let before = unix_ms();
        let pttl: i64 = conn.pttl(mark_name("n", "jti:k0", false)).await.unwrap();
        assert!(pttl > 0 && pttl <= (t + 60) * 1000 - before, "PTTL {pttl}");
        let exists: bool = conn.exists(mark_name("n", "jti:gone", false)).await.unwrap();
        assert!(!exists, "a revoked token was marked");
    }

    #[tokio::test]
    async fn consume_loads_its_script_again_after_redis_forgets_it() {
        let server = RedisServer::start();
        let s = connect(&server, "n", TIMEOUT).await;
        let t = now();
        assert_eq!(
            s.consume(Consume::new("a", "u", t, "jti:a", t + 60), t).await,
            Ok(ConsumeOutcome::FirstUse)
        );
        let mut conn = raw(&server).await;
        let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
        let before = commandstats(&mut conn).await;
        assert_eq!(
            s.consume(Consume::new("b", "u", t, "jti:b", t + 60), t).await,
            Ok(ConsumeOutcome::FirstUse)
        );
        let after = commandstats(&mut conn).await;
        let delta = ran_between(&before, &after);
        assert_eq!(
            (delta("evalsha"), delta("script|load")),
            (2, 1),
            "NOSCRIPT, load, run: {before:?} → {after:?}"
        );
        assert_eq!(
            s.consume(Consume::new("b", "u", t, "jti:b", t + 60), t).await,
            Ok(ConsumeOutcome::Replayed)
        );
        assert!(!s.is_reconnecting(), "NOSCRIPT is no connection failure");
    }

    #[tokio::test]
    async fn consume_fails_closed_on_an_unreadable_revocation() {
        let server = RedisServer::start();
        let s = connect(&server, "n", TIMEOUT).await;
        let t = now();
        let mut conn = raw(&server).await;
        let id = namespace_id("n");
        for (key, sub) in [
            (format!("ts:{id}:revoked-sub:mallory"), "mallory"),
            (format!("ts:{id}:revoked-jti:g2"), "u"),
        ] {
            let () = conn.set(key, "not a revocation").await.unwrap();
            let jti = if sub == "u" { "g2" } else { "g1" };
            let mark = format!("jti:{jti}");
            let r = s.consume(Consume::new(jti, sub, t, &mark, t + 60), t).await;
            assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
            let r = s.is_revoked(jti, sub, t, t).await;
            assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
            assert_eq!(s.mark_once(&mark, t + 60, t).await, Ok(true), "{jti} was marked");
        }
        assert!(!s.is_reconnecting(), "a script error is no connection failure");
        s.ping().await.unwrap();
    }

    /// With `wait_replicas`, a single-use decision stands only once enough
    /// replicas confirmed it: here a master with one replica. While the
    /// replica is frozen, a decision is refused after half the timeout
    /// (`WAIT`'s bound), saying so, though the master holds it (a failover
    /// could forget it). NOSCRIPT inside the pipeline with `WAIT` loads the
    /// script and runs it again; a script's own error is never taken for
    /// NOSCRIPT, with or without `WAIT`.
    #[tokio::test]
    async fn a_decision_stands_once_the_replicas_confirmed_it() {
        let server = RedisServer::start();
        let master = server.port.to_string();
        let mut replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master]);
        let mut conn = raw(&server).await;
        let synced = Instant::now();
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .unwrap();
            if info.contains("connected_slaves:1") && info.contains("state=online") {
                break;
            }
            assert!(
                synced.elapsed() < Duration::from_secs(10),
                "the replica did not sync: {info}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let waiting = connect(&server, "n", Duration::from_millis(2000))
            .await
            .with_wait_replicas(1);
        let plain = connect(&server, "n", TIMEOUT).await;
        let t = now();

        assert_eq!(waiting.mark_once("jti:m", t + 60, t).await, Ok(true));
        let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
        let before = commandstats(&mut conn).await;
        assert_eq!(
            waiting.consume(Consume::new("c", "u", t, "jti:c", t + 60), t).await,
            Ok(ConsumeOutcome::FirstUse)
        );
        let after = commandstats(&mut conn).await;
        let delta = ran_between(&before, &after);
        assert_eq!((delta("evalsha"), delta("script|load")), (2, 1), "NOSCRIPT, load, run");

        // An unreadable revocation fails the script: one run, nothing loaded.
        let id = namespace_id("n");
        let () = conn
            .set(format!("ts:{id}:revoked-jti:bad"), "not a revocation")
            .await
            .unwrap();
        for s in [&waiting, &plain] {
            let before = commandstats(&mut conn).await;
            let r = s.consume(Consume::new("bad", "u", t, "jti:bad", t + 60), t).await;
            assert!(
                matches!(&r, Err(StoreError::Unavailable(why)) if !why.contains("replicas")),
                "{r:?}"
            );
            let after = commandstats(&mut conn).await;
            let delta = ran_between(&before, &after);
            assert_eq!((delta("evalsha"), delta("script|load")), (1, 0), "{r:?}");
        }

        replica.pause();
        let started = Instant::now();
        let r = waiting.mark_once("jti:frozen", t + 60, t).await;
        let expected = "redis mark_once: written on the master but confirmed by 0 of 1 replicas within 1s";
        assert!(
            matches!(&r, Err(StoreError::Unavailable(why)) if why.starts_with(expected)),
            "{r:?}"
        );
        assert!(started.elapsed() >= Duration::from_secs(1), "WAIT ran its bound");
        assert_eq!(
            plain.mark_once("jti:frozen", t + 60, t).await,
            Ok(false),
            "the master has it"
        );
        // A first use is refused the same way; a replay needs no replica
        // to stay a replay.
        let r = waiting.consume(Consume::new("f", "u", t, "jti:f", t + 60), t).await;
        let expected = "redis consume: written on the master but confirmed by 0 of 1 replicas";
        assert!(
            matches!(&r, Err(StoreError::Unavailable(why)) if why.starts_with(expected)),
            "{r:?}"
        );
        assert_eq!(
            waiting.consume(Consume::new("c", "u", t, "jti:c", t + 60), t).await,
            Ok(ConsumeOutcome::Replayed)
        );
        replica.resume();

        let mut metrics = String::new();
        waiting.render_metrics(&mut metrics);
        let line = "tokensmith_store_errors_total{op=\"mark_once\",kind=\"replicas\"} 1\n";
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    /// A store's debug form names its namespace and database, never the
    /// URL (which may carry a password) nor the server's address.
    #[tokio::test]
    async fn debug_names_the_namespace_and_database_never_the_url() {
        let server = RedisServer::start();
        let url = format!("{}3", server.url);
        let s = RedisStore::connect(&url, "shop-ns", TIMEOUT, now()).await.unwrap();
        let debug = format!("{s:?}");
        assert!(
            debug.starts_with("RedisStore {")
                && debug.contains("namespace: \"shop-ns\"")
                && debug.contains("db: 3,")
                && debug.contains("cluster: false"),
            "{debug}"
        );
        assert!(!debug.contains(&server.port.to_string()), "{debug}");
    }

    #[tokio::test]
    async fn marks_survive_a_new_connection_and_namespaces_are_apart() {
        let server = RedisServer::start();
        let t = now();
        let first = connect(&server, "issuer-a", TIMEOUT).await;
        assert_eq!(first.mark_once("jti", t + 60, t).await, Ok(true));
        first.refresh_insert("h0", &record("f", t), t).await.unwrap();
        drop(first);
        let restarted = connect(&server, "issuer-a", TIMEOUT).await;
        assert_eq!(restarted.mark_once("jti", t + 60, t).await, Ok(false));
        assert!(matches!(
            restarted.refresh_spend("h0", "h1", t + 1).await,
            Ok(SpendOutcome::Spent(_))
        ));
        let other = connect(&server, "issuer-b", TIMEOUT).await;
        assert_eq!(other.namespace(), "issuer-b");
        assert_eq!(other.mark_once("jti", t + 60, t).await, Ok(true));
    }

    /// Every kind of call, each expected to fail with `Unavailable`, fast.
    async fn assert_all_unavailable(s: &RedisStore, within: Duration) {
        let t = now();
        let started = Instant::now();
        let results = [
            s.mark_once("down", t + 60, t).await.map(|_| ()),
            s.revoke_jti("down", t + 60, t).await,
            s.revoke_sub("down", t, t + 60, t).await,
            s.is_revoked("down", "down", t, t).await.map(|_| ()),
            s.rate_hit("down", 5, 60, t).await.map(|_| ()),
            s.refresh_insert("down", &record("down", t), t).await,
            s.refresh_spend("down", "down2", t).await.map(|_| ()),
            s.ping().await,
        ];
        for (i, r) in results.iter().enumerate() {
            assert!(matches!(r, Err(StoreError::Unavailable(_))), "call {i}: {r:?}");
        }
        let took = started.elapsed();
        assert!(took < within, "8 calls took {took:?}");
    }

    /// Polls (bounded) until the store works again.
    async fn assert_recovers(s: &RedisStore, within: Duration) {
        let started = Instant::now();
        loop {
            let t = now();
            if s.mark_once("back", t + 60, t).await == Ok(true) {
                break;
            }
            assert!(started.elapsed() < within, "not back after {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.ping().await.unwrap();
    }

    /// Polls Redis itself (bounded) until it answers PING.
    async fn wait_for_redis(server: &RedisServer, within: Duration) -> redis::aio::MultiplexedConnection {
        let started = Instant::now();
        loop {
            if let Ok(Ok(mut conn)) = tokio::time::timeout(
                Duration::from_millis(500),
                server.client().get_multiplexed_async_connection(),
            )
            .await
            {
                let pong: Result<Result<String, _>, _> =
                    tokio::time::timeout(Duration::from_millis(500), redis::cmd("PING").query_async(&mut conn)).await;
                if matches!(pong, Ok(Ok(ref p)) if p == "PONG") {
                    return conn;
                }
            }
            assert!(
                started.elapsed() < within,
                "redis did not answer PING within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// An outage is one warning however long it lasts; the retries back off
    /// (100 ms, doubling, at most 250 ms apart: a few attempts a second, not
    /// a busy loop), and the reconnection says how many attempts it took.
    /// Single-threaded, so that the reconnection task logs on this thread.
    #[tokio::test]
    async fn an_outage_is_one_warning_and_backed_off_attempts() {
        let (captured, subscriber) = super::lost_state::capture();
        let _guard = tracing::subscriber::set_default(subscriber);
        let mut server = RedisServer::start();
        let s = connect(&server, "n", Duration::from_millis(500)).await;
        let t = now();
        assert_eq!(s.mark_once("before", t + 60, t).await, Ok(true));
        server.stop();
        let down = Instant::now();
        assert!(s.mark_once("during", t + 60, t).await.is_err());
        assert!(s.is_reconnecting());
        tokio::time::sleep(Duration::from_millis(1200)).await;
        server.restart();
        wait_for_redis(&server, Duration::from_secs(5)).await;
        while s.is_reconnecting() {
            assert!(down.elapsed() < Duration::from_secs(10), "no reconnection");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let outage = down.elapsed();
        let log = captured.text();
        let warned = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("::conn:"))
            .count();
        assert_eq!(warned, 1, "{log}");
        assert!(
            log.contains("redis: unreachable; reconnecting in the background"),
            "{log}"
        );
        let attempts: u128 = log
            .lines()
            .find_map(|l| l.contains("redis: reconnected").then(|| l.split("attempts=").nth(1))?)
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no attempts in {log}"));
        // At least three failed attempts over 1.2 s (five when the machine is
        // quiet); at most one per 100 ms.
        assert!(
            (4..=2 + outage.as_millis() / 100).contains(&attempts),
            "{attempts} attempts over {outage:?}: {log}"
        );
        assert_eq!(
            s.mark_once("before", t + 60, t).await,
            Ok(true),
            "Redis came back empty"
        );
    }

    /// After an outage the store reconnects by itself: once Redis answers
    /// again, the store's very first call succeeds, with no failed call
    /// needed to trigger the reconnection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unavailable_while_redis_is_down_then_recovers_on_restart() {
        let mut server = RedisServer::start();
        let timeout = Duration::from_millis(500);
        let s = connect(&server, "n", timeout).await;
        let t = now();
        assert_eq!(s.mark_once("before", t + 60, t).await, Ok(true));
        assert!(!s.is_reconnecting());
        server.stop();
        // Refused connections fail at once; no call may take much longer than the timeout.
        assert_all_unavailable(&s, 8 * timeout).await;
        assert!(s.is_reconnecting(), "a refused call starts the reconnection task");
        // Still down, still refused fast, and still one task (the flag stays).
        assert_all_unavailable(&s, 8 * timeout).await;
        assert!(s.is_reconnecting());

        server.restart();
        let mut conn = wait_for_redis(&server, Duration::from_secs(5)).await;
        let back = Instant::now();
        // No call to the store: its own task must get a fresh connection
        // that answers, within one retry pause (250 ms) plus a connect.
        while s.is_reconnecting() {
            assert!(
                back.elapsed() < Duration::from_secs(2),
                "the store did not reconnect by itself within 2 s of Redis answering"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let recovered_in = back.elapsed();
        eprintln!("redis store: reconnected {recovered_in:?} after Redis answered PING");
        assert!(recovered_in < Duration::from_secs(1), "took {recovered_in:?}");
        let info: String = redis::cmd("INFO").arg("clients").query_async(&mut conn).await.unwrap();
        assert!(
            info.contains("connected_clients:2"),
            "the store's fresh connection and ours, and no other: {info}"
        );
        // The first call after the outage succeeds. Redis came back empty:
        // a token issued up to now cannot be consumed, a newer one can.
        let t = now();
        assert_eq!(s.mark_once("after", t + 60, t).await, Ok(true));
        assert_eq!(
            s.consume(Consume::new("c", "u", t, "jti:c", t + 60), t).await,
            Ok(ConsumeOutcome::StateLost)
        );
        assert_eq!(
            s.consume(Consume::new("d", "u", t + 1, "jti:d", t + 60), t + 1).await,
            Ok(ConsumeOutcome::FirstUse)
        );
        s.ping().await.unwrap();
        assert!(!s.is_reconnecting());
    }

    /// The reconnection task ends with its store, even while Redis is down.
    /// Nothing else runs on this test's runtime once the store is gone (its
    /// connection died with Redis), so every task must end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reconnection_task_ends_with_the_store() {
        let mut server = RedisServer::start();
        let metrics = tokio::runtime::Handle::current().metrics();
        let s = connect(&server, "n", Duration::from_millis(300)).await;
        server.stop();
        assert!(s.ping().await.is_err());
        assert!(s.is_reconnecting());
        assert!(metrics.num_alive_tasks() >= 1);
        drop(s);
        let started = Instant::now();
        while metrics.num_alive_tasks() > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{} tasks outlived the store",
                metrics.num_alive_tasks()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn timed_out_calls_do_not_wedge_the_connection() {
        let mut server = RedisServer::start();
        let timeout = Duration::from_millis(300);
        let s = connect(&server, "n", timeout).await;
        let t = now();
        assert_eq!(s.mark_once("before", t + 60, t).await, Ok(true));
        server.pause();
        let started = Instant::now();
        let r = s.mark_once("paused", t + 60, t).await;
        let took = started.elapsed();
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(
            took >= timeout / 2 && took < timeout + Duration::from_secs(1),
            "took {took:?}"
        );
        assert_all_unavailable(&s, 8 * (timeout + Duration::from_millis(200))).await;
        server.resume();
        assert_recovers(&s, Duration::from_secs(5)).await;
        assert_eq!(
            s.mark_once("before", t + 60, t).await,
            Ok(false),
            "the data was kept through the pause"
        );
    }

    #[tokio::test]
    async fn connect_is_bounded_by_the_timeout() {
        let timeout = Duration::from_millis(300);
        // Nothing listens: refused at once.
        let url = format!("redis://127.0.0.1:{}/", free_port());
        let started = Instant::now();
        let r = RedisStore::connect(&url, "n", timeout, 0).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(started.elapsed() < timeout + Duration::from_secs(1));
        // Something accepts the connection and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}/", silent.local_addr().unwrap());
        let started = Instant::now();
        let r = RedisStore::connect(&url, "n", timeout, 0).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(
            started.elapsed() < timeout + Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        // Not a URL.
        let r = RedisStore::connect("mysql://nope", "n", timeout, 0).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }

    #[test]
    fn a_missing_redis_server_fails_with_how_to_install_it() {
        let outcome = std::panic::catch_unwind(|| RedisServer::start_binary("tokensmith-test-no-such-redis-server"));
        let payload = outcome.err().expect("starting a missing binary must fail");
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        assert!(message.contains("apt-get install -y redis-server"), "{message}");
        assert!(INSTALL_HINT.contains("apt-get install -y redis-server"));
    }
}

mod cluster_failover;
mod cluster_reshard;
mod lost_state;
mod mark_memory;
