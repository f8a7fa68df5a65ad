//! Lost replay state (issue 10, item 7) at the store: the epoch before
//! which a store refuses to consume, how each backend sets and moves it, and
//! what the Redis store says at connect about persistence.

use std::io::Write;
use std::sync::{Arc, Mutex};

use redis::AsyncCommands;
use tokensmith::store::memory::MemoryStore;
use tokensmith::store::redis::{namespace_id, RedisStore};
use tokensmith::store::{Consume, ConsumeOutcome, Store, StoreError};

use super::{connect, now, TIMEOUT};
use crate::cluster_harness::{cli, mark_bucket, master_of_slot, slot};
use crate::redis_harness::RedisServer;

const T: i64 = 1_000_000;

fn token(jti: &str, iat: i64) -> Consume<'_> {
    Consume::new(jti, "u", iat, jti, iat + 300)
}

// ---------------------------------------------------------------------------
// Memory: the epoch is the process's.

#[tokio::test]
async fn memory_refuses_tokens_issued_before_its_epoch() {
    let s = MemoryStore::new(10).with_epoch(T);
    assert_eq!(s.epoch(), T);
    assert_eq!(s.consume(token("old", T - 1), T).await, Ok(ConsumeOutcome::StateLost));
    assert_eq!(
        s.consume(token("old", T - 1), T + 5).await,
        Ok(ConsumeOutcome::StateLost),
        "refused for good, not marked"
    );
    assert_eq!(s.stats().marks, 0, "nothing was marked");
    assert_eq!(s.consume(token("new", T), T).await, Ok(ConsumeOutcome::FirstUse));
    assert_eq!(s.consume(token("new", T), T).await, Ok(ConsumeOutcome::Replayed));
    // A revocation is the more precise answer.
    s.revoke_jti("gone", T + 100, T).await.unwrap();
    assert_eq!(s.consume(token("gone", T - 1), T).await, Ok(ConsumeOutcome::Revoked));
    // Only consume knows an iat: a plain mark is unaffected.
    assert_eq!(s.mark_once("old", T + 10, T).await, Ok(true));
}

#[tokio::test]
async fn memory_without_an_epoch_consumes_any_iat() {
    let s = MemoryStore::new(10);
    assert_eq!(s.epoch(), i64::MIN);
    assert_eq!(s.consume(token("a", 0), T).await, Ok(ConsumeOutcome::FirstUse));
}

/// Retry keys live and die with their marks: a reused slot takes the new
/// consume's key (or none), and a sweep forgets them.
#[tokio::test]
async fn memory_retry_keys_are_forgotten_with_their_marks() {
    let s = MemoryStore::new(10);
    let c = Consume::new("a", "u", T, "jti:a", T + 10);
    assert_eq!(s.consume(c.with_retry_key("k"), T).await, Ok(ConsumeOutcome::FirstUse));
    assert_eq!(s.stats().retry_keys, 1);
    // Expired, not yet swept: a consume without a key takes the slot.
    let later = Consume::new("a", "u", T, "jti:a", T + 100);
    assert_eq!(s.consume(later, T + 20).await, Ok(ConsumeOutcome::FirstUse));
    assert_eq!(s.stats().retry_keys, 0, "the old key went with the old mark");
    assert_eq!(
        s.consume(later.with_retry_key("k"), T + 21).await,
        Ok(ConsumeOutcome::Replayed),
        "the old key does not retry the new mark"
    );
    // A sweep takes the key with the mark.
    let b = Consume::new("b", "u", T, "jti:b", T + 30);
    assert_eq!(
        s.consume(b.with_retry_key("k"), T + 21).await,
        Ok(ConsumeOutcome::FirstUse)
    );
    assert_eq!(s.stats().retry_keys, 1);
    assert_eq!(s.is_revoked("x", "y", T, T + 200).await, Ok(false)); // time passes
    s.sweep();
    assert_eq!(s.stats(), Default::default(), "everything swept: {:?}", s.stats());
}

// ---------------------------------------------------------------------------
// Redis: the epoch is the namespace's, and outlives no data.

/// What a store of the new layout, connected at `t + 1` over what an
/// earlier layout left (its epoch `earlier`, and the mark of `used`), must
/// show: a new epoch, `used` (issued before it) refused however often, and a
/// token issued after it consumed once.
async fn started_a_new_epoch(s: &RedisStore, t: i64, earlier: &str) {
    assert_eq!(s.epoch(), t + 1, "the new layout starts a new epoch (over {earlier})");
    for _ in 0..2 {
        assert_eq!(s.consume(token("used", t - 10), t).await, Ok(ConsumeOutcome::StateLost));
    }
    assert_eq!(
        s.consume(token("new", t + 1), t + 1).await,
        Ok(ConsumeOutcome::FirstUse)
    );
    assert_eq!(
        s.consume(token("new", t + 1), t + 1).await,
        Ok(ConsumeOutcome::Replayed)
    );
}

async fn get_epoch(server: &RedisServer, namespace: &str) -> Option<String> {
    let mut conn = server.client().get_multiplexed_async_connection().await.unwrap();
    conn.get(format!("ts:{}:mark-epoch", namespace_id(namespace)))
        .await
        .unwrap()
}

#[tokio::test]
async fn connect_records_the_epoch_once() {
    let server = RedisServer::start();
    let e = now() - 100;
    let first = RedisStore::connect(&server.url, "n", TIMEOUT, e).await.unwrap();
    assert_eq!(first.epoch(), e);
    assert_eq!(get_epoch(&server, "n").await, Some(e.to_string()));
    // A later instance keeps it: it does not move the namespace's epoch.
    let second = RedisStore::connect(&server.url, "n", TIMEOUT, e + 50).await.unwrap();
    assert_eq!(second.epoch(), e);
    assert_eq!(get_epoch(&server, "n").await, Some(e.to_string()));
    let t = now();
    for s in [&first, &second] {
        assert_eq!(
            s.consume(token("before", e - 1), t).await,
            Ok(ConsumeOutcome::StateLost)
        );
    }
    assert_eq!(first.consume(token("at", e), t).await, Ok(ConsumeOutcome::FirstUse));
    assert_eq!(second.consume(token("at", e), t).await, Ok(ConsumeOutcome::Replayed));
    // Namespaces are apart: another one has its own epoch.
    let other = RedisStore::connect(&server.url, "m", TIMEOUT, e - 1000).await.unwrap();
    assert_eq!(other.epoch(), e - 1000);
    assert_eq!(
        other.consume(token("before", e - 1), t).await,
        Ok(ConsumeOutcome::FirstUse)
    );
}

/// 9999-12-31T23:59:59Z: an epoch no token reaches.
const HELD_SHUT: &str = "253402300799";

/// The mark layout changed twice (`tokensmith:<ns>:mark:<key>` →
/// `ts:<id>:m:<key>` → `ts:<id>:<digest>`): on a live Redis of either
/// earlier layout, a token consumed under the old names is not consumable
/// under the new ones (it predates the new epoch), newer tokens are
/// consumed normally, and every earlier epoch is held at 9999-12-31, so an
/// instance of an earlier version refuses every consume from then on.
#[tokio::test]
async fn a_token_consumed_under_an_earlier_layout_stays_spent() {
    let id = namespace_id("n");
    let earlier_epochs = ["tokensmith:n:epoch".to_owned(), format!("ts:{id}:epoch")];
    let earlier_marks = ["tokensmith:n:mark:".to_owned(), format!("ts:{id}:m:")];
    for (old_epoch, old_marks) in earlier_epochs.iter().zip(&earlier_marks) {
        let server = RedisServer::start();
        let mut conn = server.client().get_multiplexed_async_connection().await.unwrap();
        let t = now();
        // What the earlier version left: its epoch, and the mark of `used`.
        let () = conn.set(old_epoch, t - 3600).await.unwrap();
        let () = conn.set(format!("{old_marks}used"), 1).await.unwrap();
        let s = RedisStore::connect(&server.url, "n", TIMEOUT, t + 1).await.unwrap();
        started_a_new_epoch(&s, t, old_epoch).await;
        for held in &earlier_epochs {
            let value: String = conn.get(held).await.unwrap();
            assert_eq!(value, HELD_SHUT, "{held} is held shut");
        }
        // The earlier version's consume script, on its own keys: nothing is
        // consumable, a token issued after the switch included.
        let old_consume = redis::Script::new(
            "local e = redis.call('GET', KEYS[1]) if tonumber(ARGV[1]) < tonumber(e) then return 'lost' end \
             return redis.call('SET', KEYS[2], 1, 'NX') and 'first' or 'replayed'",
        );
        let outcome: String = old_consume
            .key(old_epoch)
            .key(format!("{old_marks}new"))
            .arg(t + 1)
            .invoke_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(outcome, "lost", "{old_epoch}");
        // A second instance of the new layout keeps the new epoch.
        let again = RedisStore::connect(&server.url, "n", TIMEOUT, t + 50).await.unwrap();
        assert_eq!(again.epoch(), t + 1);
    }
}

/// `args[0] key args[1..]` with `redis-cli` on the master of `key`'s slot.
fn on_master_of(any_port: u16, key: &str, args: &[&str]) -> String {
    let port = master_of_slot(any_port, slot(key));
    let mut all = vec![args[0], key];
    all.extend_from_slice(&args[1..]);
    cli(port, &all).unwrap_or_else(|| panic!("{all:?} on {port}"))
}

/// The same on a cluster, bucket by bucket: a token consumed under the
/// layout before (`ts:{<bucket>}:<id>:m:<key>`, its bucket's epoch
/// `ts:{<bucket>}:<id>:epoch`) predates the new epoch of its bucket, and
/// every bucket holds both earlier epochs shut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_every_bucket_starts_a_new_epoch_and_holds_the_earlier_ones() {
    let seeds = crate::cluster_harness::shared_seeds();
    let any_port: u16 = seeds[0]
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let namespace = format!("layout-{}", crate::cluster_harness::process_name());
    let id = namespace_id(&namespace);
    let t = now();
    let on_master = |key: &str, args: &[&str]| on_master_of(any_port, key, args);
    // What the earlier version left for `used`: its bucket's epoch, its mark.
    let b = mark_bucket("used");
    let old_epoch = format!("ts:{{{b}}}:{id}:epoch");
    on_master(&old_epoch, &["SET", &(t - 3600).to_string()]);
    on_master(&format!("ts:{{{b}}}:{id}:m:used"), &["SET", "1", "PX", "600000"]);

    let s = RedisStore::connect_cluster(&seeds, &namespace, TIMEOUT, t + 1)
        .await
        .unwrap();
    started_a_new_epoch(&s, t, "the cluster's").await;
    for b in [0, 1, b, mark_bucket("new"), 511, 1023] {
        let epoch = on_master(&format!("ts:{{{b}}}:{id}:mark-epoch"), &["GET"]);
        assert_eq!(epoch.trim(), (t + 1).to_string(), "bucket {b}");
        for held in [
            format!("ts:{{{b}}}:{id}:epoch"),
            format!("tokensmith:{{{b}}}:{namespace}:epoch"),
        ] {
            assert_eq!(on_master(&held, &["GET"]).trim(), HELD_SHUT, "{held}");
        }
    }
}

/// A cluster namespace's first start records every bucket's epoch and says
/// so, once; a later start finds them all and says nothing of it.
#[tokio::test]
async fn on_a_cluster_the_first_start_records_the_epochs_and_says_so() {
    let seeds = crate::cluster_harness::shared_seeds();
    let namespace = format!("epochs-log-{}", crate::cluster_harness::process_name());
    let id = namespace_id(&namespace);
    let log = durability_log();
    let t = now();
    for (start, expected) in [("first", 1), ("second", 0)] {
        let before = log.text().len();
        RedisStore::connect_cluster(&seeds, &namespace, TIMEOUT, t)
            .await
            .unwrap();
        let text = log.text();
        let recorded: Vec<&str> = text[before..]
            .lines()
            .filter(|l| l.contains("recorded the replay epoch of buckets that had none"))
            .filter(|l| l.contains(&format!("id=\"{id}\"")))
            .collect();
        assert_eq!(recorded.len(), expected, "{start} start: {text}");
        assert!(recorded.iter().all(|l| l.contains("buckets=1024")), "{text}");
    }
}

/// Two namespaces whose key ids collide on one Redis would share marks and
/// revocations: the second is refused at connect, with a message naming both.
#[tokio::test]
async fn a_namespace_whose_id_is_taken_is_refused() {
    let server = RedisServer::start();
    let mut conn = server.client().get_multiplexed_async_connection().await.unwrap();
    let () = conn
        .set(format!("ts:ns:{}", namespace_id("n")), "someone-else")
        .await
        .unwrap();
    match RedisStore::connect(&server.url, "n", TIMEOUT, now()).await {
        Err(StoreError::Unavailable(why)) => {
            // Both namespaces and the id they share, as it appears in key names.
            assert!(
                why.contains("\"someone-else\"")
                    && why.contains("\"n\"")
                    && why.contains(&format!("key id {} ", namespace_id("n"))),
                "{why}"
            )
        }
        other => panic!("connected: {other:?}"),
    }
    // The owner of the id connects as before.
    let () = conn.set(format!("ts:ns:{}", namespace_id("n")), "n").await.unwrap();
    assert!(RedisStore::connect(&server.url, "n", TIMEOUT, now()).await.is_ok());
}

/// A Redis that lost everything (here: flushed; the fleet suite kills and
/// restarts one without persistence) never consumes a token issued before
/// the loss was seen, whichever instance sees it first, and consumes newer
/// ones normally.
#[tokio::test]
async fn a_redis_that_lost_its_state_refuses_every_older_token() {
    // The test runtime is single-threaded: every call logs here.
    let (captured, subscriber) = capture();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = RedisServer::start();
    let a = connect(&server, "n", TIMEOUT).await;
    let b = connect(&server, "n", TIMEOUT).await;
    let t = now();
    assert_eq!(a.consume(token("used", t - 10), t).await, Ok(ConsumeOutcome::FirstUse));
    assert_eq!(b.consume(token("used", t - 10), t).await, Ok(ConsumeOutcome::Replayed));

    let mut conn = server.client().get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();

    // The replay is refused: the store cannot know it is one.
    assert_eq!(b.consume(token("used", t - 10), t).await, Ok(ConsumeOutcome::StateLost));
    assert_eq!(b.epoch(), t + 1, "the new epoch is the second after the loss was seen");
    assert_eq!(get_epoch(&server, "n").await, Some((t + 1).to_string()));
    // So is every token issued up to that second, on every instance, and
    // no later `now` moves the epoch again.
    assert_eq!(
        a.consume(token("unused", t), t + 5).await,
        Ok(ConsumeOutcome::StateLost)
    );
    assert_eq!(a.epoch(), t + 1);
    assert_eq!(get_epoch(&server, "n").await, Some((t + 1).to_string()));
    // Newer tokens are consumed once, as ever.
    assert_eq!(
        a.consume(token("fresh", t + 1), t + 1).await,
        Ok(ConsumeOutcome::FirstUse)
    );
    assert_eq!(
        b.consume(token("fresh", t + 1), t + 1).await,
        Ok(ConsumeOutcome::Replayed)
    );
    // Nothing was marked for the refused ones.
    assert_eq!(a.mark_once("used", t + 60, t).await, Ok(true));
    assert_eq!(a.mark_once("unused", t + 60, t).await, Ok(true));
    // The loss is logged once, as an error, by the instance that saw it.
    let log = captured.text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("replay state lost"), "{log}");
}

#[tokio::test]
async fn an_unreadable_epoch_fails_closed() {
    let server = RedisServer::start();
    let s = connect(&server, "n", TIMEOUT).await;
    let mut conn = server.client().get_multiplexed_async_connection().await.unwrap();
    let () = conn
        .set(format!("ts:{}:mark-epoch", namespace_id("n")), "yesterday")
        .await
        .unwrap();
    let t = now();
    let r = s.consume(token("a", t), t).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert_eq!(s.mark_once("a", t + 60, t).await, Ok(true), "nothing was marked");
    // A new connection refuses it too, rather than trust or replace it.
    let r = RedisStore::connect(&server.url, "n", TIMEOUT, t).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
}

// ---------------------------------------------------------------------------
// Persistence settings, read at connect.

/// Log lines written while `f` runs on this thread, at INFO and above.
#[derive(Clone, Default)]
pub(super) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Connects to a Redis started with `args` and returns what the store
/// logged, after checking that a consume works on it.
async fn connect_and_log(args: &[&str]) -> String {
    let server = RedisServer::start_with(args);
    let (captured, subscriber) = capture();
    let t = now();
    {
        // The test runtime is single-threaded: the whole connect runs here.
        let _guard = tracing::subscriber::set_default(subscriber);
        let s = RedisStore::connect(&server.url, "n", TIMEOUT, t - 10).await.unwrap();
        assert_eq!(
            s.consume(token("a", t), t).await,
            Ok(ConsumeOutcome::FirstUse),
            "{args:?}"
        );
    }
    captured.text()
}

/// A subscriber writing INFO and above, without colours or times, into
/// what it returns with it.
pub(super) fn capture() -> (Captured, impl tracing::Subscriber + Send + Sync) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .without_time()
        .finish();
    (captured, subscriber)
}

/// What the durability module logged at INFO and above, on every thread of
/// this test binary that has no subscriber of its own, since the first call.
/// A global subscriber, not a thread-local one: a callsite first reached
/// while other tests swap their thread-local subscribers can miss one of
/// them, never the global one. Tests find their own lines by namespace id.
pub(super) fn durability_log() -> &'static Captured {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    static LOG: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let only = tracing_subscriber::filter::Targets::new()
            .with_target("tokensmith::store::redis::durability", tracing::Level::INFO);
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .with_filter(only);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("no other global subscriber in the test binary");
        captured
    })
}

impl Captured {
    pub(super) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn warnings(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("WARN")).collect()
}

#[tokio::test]
async fn connect_warns_once_when_nothing_is_persisted() {
    let log = connect_and_log(&[]).await;
    let warned = warnings(&log);
    assert_eq!(warned.len(), 1, "one warning: {log}");
    assert!(warned[0].contains("replay marks can be lost"), "{log}");
    assert!(warned[0].contains("nothing is persisted"), "{log}");
    assert!(log.contains("recorded the replay epoch"), "{log}");
}

#[tokio::test]
async fn connect_warns_about_snapshots_alone_and_eviction() {
    let log = connect_and_log(&[
        "--save",
        "900 1",
        "--maxmemory",
        "100mb",
        "--maxmemory-policy",
        "volatile-lru",
    ])
    .await;
    let warned = warnings(&log);
    assert_eq!(warned.len(), 1, "one warning, naming both: {log}");
    assert!(warned[0].contains("only RDB snapshots"), "{log}");
    assert!(warned[0].contains("volatile-lru"), "{log}");
}

#[tokio::test]
async fn connect_is_quiet_about_a_redis_that_keeps_its_marks() {
    let log = connect_and_log(&["--appendonly", "yes"]).await;
    assert_eq!(warnings(&log), Vec::<&str>::new(), "{log}");
}

/// Managed Redis services rename or deny `CONFIG`: the store says it could
/// not check, and works.
#[tokio::test]
async fn connect_tolerates_a_redis_without_config() {
    let log = connect_and_log(&["--rename-command", "CONFIG", ""]).await;
    assert_eq!(warnings(&log), Vec::<&str>::new(), "{log}");
    assert!(log.contains("cannot read the persistence settings"), "{log}");
}
