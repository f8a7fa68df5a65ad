//! `TokenCache`: one issuance for many callers, renewal ahead of expiry on
//! an injected clock, the old token and a backoff when the issuer fails, and
//! one issuance per lifetime across instances sharing a real Redis.
//!
//! The issuer is a fake that counts its calls, can be made to fail, and can
//! be held at a gate, so "while a renewal is in flight" is a state the test
//! builds rather than a race it hopes for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokensmith::client::cache::{CacheError, CacheOptions, IssueToken, Issued, SharedRedis, TokenCache};
use tokensmith::{Clock, ManualClock};

use crate::redis_harness::RedisServer;
use crate::remote_jwks::poll_until;

const NOW: i64 = 1_800_000_000;
const WITHIN: Duration = Duration::from_secs(10);

/// A fake issuer: tokens `<key>-<call number>` living `lifetime` seconds.
struct FakeState {
    name: &'static str,
    clock: Arc<ManualClock>,
    lifetime: i64,
    calls: AtomicU64,
    fail: AtomicBool,
    /// Calls wait here while it is false.
    gate: tokio::sync::watch::Sender<bool>,
}

#[derive(Clone)]
struct Fake(Arc<FakeState>);

impl Fake {
    fn new(name: &'static str, clock: &Arc<ManualClock>, lifetime: i64) -> Fake {
        Fake(Arc::new(FakeState {
            name,
            clock: Arc::clone(clock),
            lifetime,
            calls: AtomicU64::new(0),
            fail: AtomicBool::new(false),
            gate: tokio::sync::watch::channel(true).0,
        }))
    }
    fn calls(&self) -> u64 {
        self.0.calls.load(Ordering::SeqCst)
    }
    fn fail(&self, yes: bool) {
        self.0.fail.store(yes, Ordering::SeqCst);
    }
    fn hold(&self) {
        self.0.gate.send_replace(false);
    }
    fn release(&self) {
        self.0.gate.send_replace(true);
    }
}

impl IssueToken for Fake {
    type Error = String;
    fn issue(&self, key: &str) -> impl Future<Output = Result<Issued, String>> + Send {
        let st = Arc::clone(&self.0);
        let key = key.to_owned();
        async move {
            let n = st.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let mut open = st.gate.subscribe();
            let _ = open.wait_for(|o| *o).await;
            if st.fail.load(Ordering::SeqCst) {
                return Err(format!("{} is down (call {n})", st.name));
            }
            let now = st.clock.now();
            Ok(Issued {
                token: format!("{}:{key}-{n}", st.name),
                issued_at: now,
                expires_at: now + st.lifetime,
            })
        }
    }
}

fn cache(fake: &Fake, clock: &Arc<ManualClock>) -> Arc<TokenCache<Fake>> {
    Arc::new(TokenCache::new(fake.clone(), clock.clone(), CacheOptions::default()))
}

#[tokio::test]
async fn a_hundred_concurrent_callers_cause_one_issuance() {
    let clock = ManualClock::new(NOW);
    let fake = Fake::new("iss", &clock, 300);
    let cache = cache(&fake, &clock);
    fake.hold();
    let started = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (c, s) = (Arc::clone(&cache), Arc::clone(&started));
        set.spawn(async move {
            s.fetch_add(1, Ordering::SeqCst);
            c.get("svc").await
        });
    }
    // All 100 are waiting while the one issuance is held.
    poll_until(WITHIN, "100 callers and one issuance", || {
        started.load(Ordering::SeqCst) == 100 && fake.calls() == 1
    })
    .await;
    fake.release();
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap().unwrap().token, "iss:svc-1");
    }
    assert_eq!(fake.calls(), 1);
    assert_eq!(cache.stats().issue_calls, 1);
    // Another key is another token.
    assert_eq!(cache.get("other").await.unwrap().token, "iss:other-2");
}

#[tokio::test]
async fn renewal_happens_before_expiry_and_does_not_block_holders_of_a_valid_token() {
    let clock = ManualClock::new(NOW);
    let fake = Fake::new("iss", &clock, 300);
    let cache = cache(&fake, &clock);
    assert_eq!(cache.get("svc").await.unwrap().token, "iss:svc-1");
    // 5 minutes: renewed at 80 % = 60 s before expiry = 240 s.
    clock.advance(239);
    assert_eq!(cache.get("svc").await.unwrap().token, "iss:svc-1");
    assert_eq!(fake.calls(), 1);
    clock.advance(1);

    // While the renewal is held at the issuer, others get the old token at once.
    fake.hold();
    let renewing = {
        let c = Arc::clone(&cache);
        tokio::spawn(async move { c.get("svc").await })
    };
    poll_until(WITHIN, "the renewal to reach the issuer", || fake.calls() == 2).await;
    let meanwhile = tokio::time::timeout(WITHIN, cache.get("svc")).await.unwrap().unwrap();
    assert_eq!(meanwhile.token, "iss:svc-1");
    fake.release();
    let renewed = renewing.await.unwrap().unwrap();
    assert_eq!(renewed.token, "iss:svc-2");
    assert_eq!(renewed.expires_at, NOW + 240 + 300);
    assert_eq!(cache.get("svc").await.unwrap().token, "iss:svc-2");
    assert_eq!(fake.calls(), 2);

    // One hour: renewed at 80 % (2,880 s), well before 60 s before expiry.
    let long = Fake::new("long", &clock, 3600);
    let long_cache = cache_of(&long, &clock);
    let start = clock.now();
    long_cache.get("svc").await.unwrap();
    clock.set(start + 2879);
    long_cache.get("svc").await.unwrap();
    assert_eq!(long.calls(), 1);
    clock.set(start + 2880);
    assert_eq!(long_cache.get("svc").await.unwrap().token, "long:svc-2");
}

fn cache_of(fake: &Fake, clock: &Arc<ManualClock>) -> TokenCache<Fake> {
    TokenCache::new(fake.clone(), clock.clone(), CacheOptions::default())
}

#[tokio::test]
async fn a_failed_renewal_returns_the_valid_token_and_backs_off() {
    let clock = ManualClock::new(NOW);
    let fake = Fake::new("iss", &clock, 300);
    let cache = cache(&fake, &clock);
    cache.get("svc").await.unwrap();
    fake.fail(true);

    // (seconds after NOW, calls of the issuer so far): one attempt per
    // backoff step of 1, 2, 4, 8 s, however often the cache is asked.
    let schedule = [
        (240, 2),
        (240, 2),
        (241, 3),
        (242, 3),
        (243, 4),
        (246, 4),
        (247, 5),
        (254, 5),
    ];
    for (at, calls) in schedule {
        clock.set(NOW + at);
        for _ in 0..10 {
            assert_eq!(cache.get("svc").await.unwrap().token, "iss:svc-1", "at +{at}");
        }
        assert_eq!(fake.calls(), calls, "at +{at}");
    }
    fake.fail(false);
    clock.set(NOW + 255);
    assert_eq!(cache.get("svc").await.unwrap().token, "iss:svc-6");
    assert_eq!(fake.calls(), 6);

    // With no valid token left, the failure is the caller's, and the next
    // call during the backoff does not try again.
    fake.fail(true);
    clock.set(NOW + 255 + 300);
    match cache.get("svc").await {
        Err(CacheError::Issue(e)) => assert!(e.contains("down (call 7)"), "{e}"),
        other => panic!("expected the issuer's error, got {other:?}"),
    }
    match cache.get("svc").await {
        Err(CacheError::BackingOff { retry_at, last_error }) => {
            assert_eq!(retry_at, NOW + 255 + 300 + 1);
            assert!(last_error.contains("down"));
        }
        other => panic!("expected a backoff, got {other:?}"),
    }
    assert_eq!(fake.calls(), 7);
}

fn redis_key(ns: &str, kind: &str, key: &str) -> String {
    format!("tokensmith-cache:{ns}:{kind}:{key}")
}

async fn shared(redis: &RedisServer, ns: &str) -> SharedRedis {
    SharedRedis::connect(&redis.url, ns, Duration::from_secs(2))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_issue_once_per_lifetime() {
    let redis = RedisServer::start();
    let clock = ManualClock::new(NOW);
    let fake = Fake::new("iss", &clock, 300);
    // Two instances, each with its own cache and its own connection.
    let a = Arc::new(cache_of(&fake, &clock).with_redis(shared(&redis, "t").await));
    let b = Arc::new(cache_of(&fake, &clock).with_redis(shared(&redis, "t").await));

    fake.hold();
    let first = {
        let a = Arc::clone(&a);
        tokio::spawn(async move { a.get("svc").await })
    };
    poll_until(WITHIN, "A to hold the lock and call the issuer", || fake.calls() == 1).await;
    let second = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.get("svc").await })
    };
    // B finds the lock taken and no valid token: it waits on the cache.
    poll_until(WITHIN, "B to wait for A's token", || b.stats().waits > 0).await;
    fake.release();
    assert_eq!(first.await.unwrap().unwrap().token, "iss:svc-1");
    assert_eq!(second.await.unwrap().unwrap().token, "iss:svc-1");
    assert_eq!(b.stats().issue_calls, 0);
    assert!(b.stats().adopted >= 1);

    // In Redis with PX = the remaining lifetime.
    let mut con = redis.client().get_connection().unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(redis_key("t", "token", "svc"))
        .query(&mut con)
        .unwrap();
    assert!((290_000..=300_000).contains(&pttl), "PTTL {pttl}");
    let lock: Option<String> = redis::cmd("GET")
        .arg(redis_key("t", "lock", "svc"))
        .query(&mut con)
        .unwrap();
    assert_eq!(lock, None, "the lock is released with the write");

    // Many calls on both: still one issuance in this lifetime.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        let c = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        set.spawn(async move { c.get("svc").await.unwrap().token.clone() });
    }
    while let Some(t) = set.join_next().await {
        assert_eq!(t.unwrap(), "iss:svc-1");
    }
    assert_eq!(fake.calls(), 1);

    // At the renewal point both instances renew at once: one issuance.
    clock.advance(240);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        let c = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        set.spawn(async move { c.get("svc").await.unwrap().token.clone() });
    }
    while let Some(t) = set.join_next().await {
        let t = t.unwrap();
        assert!(t == "iss:svc-1" || t == "iss:svc-2", "{t}");
    }
    assert_eq!(fake.calls(), 2);
    assert_eq!(a.get("svc").await.unwrap().token, "iss:svc-2");
    assert_eq!(b.get("svc").await.unwrap().token, "iss:svc-2");
    assert_eq!(fake.calls(), 2);

    // Redis gone: each instance falls back to issuing on its own.
    let mut redis = redis;
    redis.stop();
    clock.advance(240);
    let t = a.get("svc").await.unwrap();
    assert_eq!(t.token, "iss:svc-3");
    assert_eq!(fake.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lock_holder_s_write_is_accepted() {
    let redis = RedisServer::start();
    let clock = ManualClock::new(NOW);
    let slow = Fake::new("slow", &clock, 300);
    let quick = Fake::new("quick", &clock, 300);
    let short_lock = CacheOptions {
        lock_ttl: Duration::from_millis(200),
        ..CacheOptions::default()
    };
    let a = Arc::new(TokenCache::new(slow.clone(), clock.clone(), short_lock).with_redis(shared(&redis, "f").await));
    let b = cache_of(&quick, &clock).with_redis(shared(&redis, "f").await);

    slow.hold();
    let stuck = {
        let a = Arc::clone(&a);
        tokio::spawn(async move { a.get("svc").await })
    };
    poll_until(WITHIN, "A to call its issuer", || slow.calls() == 1).await;
    // A's lock expires while A is still issuing; B takes over.
    let mut con = redis.client().get_connection().unwrap();
    let lock_key = redis_key("f", "lock", "svc");
    poll_until(WITHIN, "A's lock to expire", || {
        let exists: bool = redis::cmd("EXISTS").arg(&lock_key).query(&mut con).unwrap();
        !exists
    })
    .await;
    assert_eq!(b.get("svc").await.unwrap().token, "quick:svc-1");
    slow.release();
    // A's late token is A's alone: the shared one stays B's.
    assert_eq!(stuck.await.unwrap().unwrap().token, "slow:svc-1");
    let stored: String = redis::cmd("GET")
        .arg(redis_key("f", "token", "svc"))
        .query(&mut con)
        .unwrap();
    assert!(stored.contains("quick:svc-1"), "{stored}");
    // And A's next caller adopts B's token rather than issuing.
    assert_eq!(
        TokenCache::new(slow.clone(), clock.clone(), CacheOptions::default())
            .with_redis(shared(&redis, "f").await)
            .get("svc")
            .await
            .unwrap()
            .token,
        "quick:svc-1"
    );
    assert_eq!(slow.calls(), 1);
}
