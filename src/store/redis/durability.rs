//! What the Redis store does at connect so that lost replay state is
//! detected or at least announced: it records the namespace's epoch (see
//! "Lost state" in the parent module), and it reads Redis's persistence and
//! eviction settings and logs one warning naming every way this Redis can
//! forget marks.
//!
//! It never refuses to start because of a setting: a Redis without
//! persistence is a deployment's choice (the epoch makes it safe, at the
//! price of refusing older tokens after a restart), and a managed Redis may
//! forbid `CONFIG` altogether, which is logged and tolerated.

use std::collections::HashMap;
use std::time::Duration;

use ::redis::{RedisResult, Script};
use tokio::task::JoinSet;

use super::conn::AnyConn;
use super::layout::{Layout, BUCKETS};
use super::scripts::EPOCH_INIT_LUA;
use super::MAX_UNIX_SECS;
use crate::store::StoreError;

/// Records `epoch` as the namespace's epoch unless it has one (and holds the
/// previous layouts' epochs far in the future: see `layout.rs`), and answers
/// the epoch in force. Within `timeout`.
pub(super) async fn init_epoch(
    conn: &AnyConn,
    layout: &Layout,
    epoch: i64,
    timeout: Duration,
) -> Result<i64, StoreError> {
    let key = layout.epoch_of("");
    let script = Script::new(EPOCH_INIT_LUA);
    let mut call = script.prepare_invoke();
    call.key(&key)
        .key(&layout.previous_epochs(None))
        .arg(epoch)
        .arg(MAX_UNIX_SECS);
    let mut conn = conn.clone();
    let exchange = call.invoke_async::<(i64, Option<String>)>(&mut conn);
    let (written, stored) = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => return Err(StoreError::Unavailable(format!("redis epoch: {e}"))),
        Err(_) => {
            return Err(StoreError::Unavailable(format!(
                "redis epoch: no answer within {timeout:?}"
            )))
        }
    };
    let Some(in_force) = stored.as_deref().and_then(|s| s.parse::<i64>().ok()) else {
        return Err(StoreError::Unavailable(format!(
            "redis epoch: unreadable epoch {stored:?} under {key}"
        )));
    };
    if written == 1 {
        tracing::info!(
            key,
            epoch = in_force,
            "redis: recorded the replay epoch (a new namespace, one whose Redis lost its state, or one \
             moving from the previous key layout); tokens issued before it cannot be consumed"
        );
    }
    Ok(in_force)
}

/// Records `ts:ns:<id>` → the namespace (see `layout.rs`) unless it is
/// there, and refuses a namespace whose id another namespace holds on this
/// Redis: they would share marks and revocations. Within `timeout`.
pub(super) async fn register_namespace(
    conn: &AnyConn,
    layout: &Layout,
    namespace: &str,
    timeout: Duration,
) -> Result<(), StoreError> {
    let key = layout.registry();
    let mut cmd = ::redis::cmd("SET");
    cmd.arg(&key).arg(namespace).arg("NX").arg("GET");
    let mut conn = conn.clone();
    let exchange = cmd.query_async::<Option<String>>(&mut conn);
    let held = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(held)) => held,
        Ok(Err(e)) => return Err(StoreError::Unavailable(format!("redis namespace {key}: {e}"))),
        Err(_) => {
            return Err(StoreError::Unavailable(format!(
                "redis namespace {key}: no answer within {timeout:?}"
            )))
        }
    };
    match held {
        Some(other) if other != namespace => Err(StoreError::Unavailable(format!(
            "redis: namespace {namespace:?} has the key id {} of namespace {other:?} ({key}), which this Redis \
             already holds: the two would share replay marks; give them separate Redis databases or servers",
            layout.id()
        ))),
        _ => {
            tracing::info!(
                namespace,
                id = layout.id(),
                "redis: keys of this namespace are ts:<id>:… ({key} names it)"
            );
            Ok(())
        }
    }
}

/// How long the 1,024 bucket epochs of a cluster may take at connect, as a
/// whole: each is one call, and a call may take `timeout`; they share a
/// connection per master, so under load the last answers well after the
/// first. Bounded, so a start-up never hangs.
fn bucket_init_bound(timeout: Duration) -> Duration {
    (timeout * 10).max(Duration::from_secs(5))
}

/// One bucket's answer to [`EPOCH_INIT_LUA`]: its epoch key, and the
/// script's reply (1 if it wrote the epoch, and the epoch in force).
type BucketEpoch = (String, RedisResult<(i64, Option<String>)>);

/// On a cluster: records `epoch` in every bucket that has none (see "Redis
/// Cluster" in the parent module), all buckets at once, within
/// [`bucket_init_bound`] (and holds the previous layouts' bucket epochs far
/// in the future: see `layout.rs`);
/// answers the latest epoch in force, the one a token must reach to be
/// consumable in every bucket.
pub(super) async fn init_bucket_epochs(
    conn: &AnyConn,
    layout: &Layout,
    epoch: i64,
    timeout: Duration,
) -> Result<i64, StoreError> {
    let script = std::sync::Arc::new(Script::new(EPOCH_INIT_LUA));
    let mut calls = JoinSet::new();
    for b in 0..BUCKETS {
        let (mut conn, script, key) = (conn.clone(), std::sync::Arc::clone(&script), layout.bucket_epoch(b));
        let previous = layout.previous_epochs(Some(b));
        calls.spawn(async move {
            let mut call = script.prepare_invoke();
            call.key(&key).key(&previous).arg(epoch).arg(MAX_UNIX_SECS);
            let reply: RedisResult<(i64, Option<String>)> = call.invoke_async(&mut conn).await;
            (key, reply)
        });
    }
    let (latest, written) = gather_bucket_epochs(calls, timeout).await?;
    if written > 0 {
        tracing::info!(
            id = layout.id(),
            buckets = written,
            epoch = latest,
            "redis cluster: recorded the replay epoch of buckets that had none (a new namespace, or a \
             master that lost its state); tokens issued before it cannot be consumed in those buckets"
        );
    }
    Ok(latest)
}

/// Waits for every bucket's answer, for at most [`bucket_init_bound`] in
/// all; answers the latest epoch in force and how many buckets had none.
/// Any failure, or an answer missing at the bound, fails the start.
async fn gather_bucket_epochs(mut calls: JoinSet<BucketEpoch>, timeout: Duration) -> Result<(i64, u32), StoreError> {
    let all = async {
        let (mut latest, mut written) = (i64::MIN, 0u32);
        while let Some(joined) = calls.join_next().await {
            let (key, reply) = joined.map_err(|e| StoreError::Unavailable(format!("redis epoch: {e}")))?;
            let (w, stored) = reply.map_err(|e| StoreError::Unavailable(format!("redis epoch {key}: {e}")))?;
            let Some(in_force) = stored.as_deref().and_then(|s| s.parse::<i64>().ok()) else {
                return Err(StoreError::Unavailable(format!(
                    "redis epoch: unreadable epoch {stored:?} under {key}"
                )));
            };
            latest = latest.max(in_force);
            written += u32::from(w == 1);
        }
        Ok((latest, written))
    };
    let bound = bucket_init_bound(timeout);
    match tokio::time::timeout(bound, all).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Unavailable(format!(
            "redis epoch: the cluster did not answer for every bucket within {bound:?}"
        ))),
    }
}

/// The settings that decide whether Redis can forget a mark; `None` where
/// Redis did not say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Durability {
    pub appendonly: Option<String>,
    pub save: Option<String>,
    pub maxmemory: Option<String>,
    pub maxmemory_policy: Option<String>,
}

impl Durability {
    /// Every way a Redis with these settings can forget a mark, in words for
    /// the log; empty when none is known.
    pub(super) fn risks(&self) -> Vec<String> {
        let mut risks = Vec::new();
        if self.appendonly.as_deref() == Some("no") {
            match self.save.as_deref() {
                Some("") => risks.push(
                    "nothing is persisted (appendonly no, save \"\"): a restart forgets every mark and \
                     revocation (detected: tokens issued before the restart cannot be consumed)"
                        .to_owned(),
                ),
                Some(save) => risks.push(format!(
                    "only RDB snapshots are persisted (appendonly no, save \"{save}\"): a restart restores \
                     the last snapshot and forgets the marks and revocations written since, undetected"
                )),
                None => {}
            }
        }
        let limited = self.maxmemory.as_deref().is_some_and(|m| m != "0");
        match self.maxmemory_policy.as_deref() {
            Some(policy) if limited && policy != "noeviction" => risks.push(format!(
                "maxmemory-policy {policy} with maxmemory {}: a full Redis evicts marks, undetected",
                self.maxmemory.as_deref().unwrap_or_default()
            )),
            _ => {}
        }
        risks
    }
}

/// Reads the settings with `CONFIG GET` (one pipeline, within `timeout`).
async fn read(conn: &AnyConn, timeout: Duration) -> Result<Durability, String> {
    let mut conn = conn.clone();
    let mut pipe = ::redis::pipe();
    for name in ["appendonly", "save", "maxmemory", "maxmemory-policy"] {
        pipe.cmd("CONFIG").arg("GET").arg(name);
    }
    type Settings = HashMap<String, String>;
    let exchange = pipe.query_async::<(Settings, Settings, Settings, Settings)>(&mut conn);
    let (mut a, mut s, mut m, mut p) = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("no answer within {timeout:?}")),
    };
    Ok(Durability {
        appendonly: a.remove("appendonly"),
        save: s.remove("save"),
        maxmemory: m.remove("maxmemory"),
        maxmemory_policy: p.remove("maxmemory-policy"),
    })
}

/// Logs one warning if this Redis can forget marks, or one line saying the
/// settings could not be read (`CONFIG` renamed away, or denied by an ACL,
/// as managed Redis services do). Never fails.
pub(super) async fn warn_if_marks_can_be_lost(conn: &AnyConn, namespace: &str, timeout: Duration) {
    match read(conn, timeout).await {
        Ok(settings) => {
            let risks = settings.risks();
            if !risks.is_empty() {
                tracing::warn!(
                    namespace,
                    "redis: replay marks can be lost: {}; run Redis with appendonly yes and \
                     maxmemory-policy noeviction",
                    risks.join("; ")
                );
            }
        }
        Err(why) => tracing::info!(
            namespace,
            error = %why,
            "redis: cannot read the persistence settings (CONFIG GET); if this Redis does not persist \
             (appendonly yes) or evicts keys, it can forget marks: a restart that empties it is detected, \
             a rollback to an older snapshot or an eviction is not"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::task::JoinSet;
    use tokio::time::Instant;

    use super::{bucket_init_bound, gather_bucket_epochs, Durability};
    use crate::store::StoreError;

    /// The wait for a cluster's 1,024 bucket epochs at connect: ten
    /// timeouts, and never under five seconds.
    #[test]
    fn the_bucket_epochs_may_take_ten_timeouts_or_five_seconds() {
        let ms = Duration::from_millis;
        for (timeout, bound) in [
            (ms(0), ms(5_000)),
            (ms(100), ms(5_000)),
            (ms(499), ms(5_000)),
            (ms(500), ms(5_000)),
            (ms(501), ms(5_010)),
            (ms(1_000), ms(10_000)),
            (ms(2_000), ms(20_000)),
            (ms(30_000), ms(300_000)),
        ] {
            assert_eq!(bucket_init_bound(timeout), bound, "timeout {timeout:?}");
        }
    }

    /// 1,024 buckets whose answers (epoch 5, one written) arrive at
    /// `arrivals`, one after another.
    fn buckets_answering_at(arrivals: &[Duration]) -> JoinSet<super::BucketEpoch> {
        let mut calls = JoinSet::new();
        for b in 0..1024usize {
            let at = arrivals[b % arrivals.len()];
            calls.spawn(async move {
                tokio::time::sleep(at).await;
                (format!("bucket {b}"), Ok((i64::from(b == 0), Some("5".to_owned()))))
            });
        }
        calls
    }

    /// On tokio's paused clock: every bucket in by the bound starts the
    /// store; one bucket late by a millisecond fails it, at the bound and
    /// not later, whatever the other buckets did.
    #[tokio::test(start_paused = true)]
    async fn a_bucket_epoch_later_than_the_bound_fails_the_start() {
        let ms = Duration::from_millis;
        for (timeout, bound) in [(ms(100), ms(5_000)), (ms(1_000), ms(10_000))] {
            let started = Instant::now();
            let all_in = buckets_answering_at(&[ms(1), bound / 2, bound - ms(1)]);
            assert_eq!(gather_bucket_epochs(all_in, timeout).await, Ok((5, 1)));
            assert_eq!(started.elapsed(), bound - ms(1));

            let started = Instant::now();
            let one_late = buckets_answering_at(&[ms(1), bound + ms(1)]);
            let r = gather_bucket_epochs(one_late, timeout).await;
            let within = format!("within {bound:?}");
            assert!(
                matches!(&r, Err(StoreError::Unavailable(why)) if why.contains(&within)),
                "started with a bucket missing: {r:?}"
            );
            assert_eq!(started.elapsed(), bound, "failed at the bound");
        }
    }

    fn settings(appendonly: &str, save: &str, maxmemory: &str, policy: &str) -> Durability {
        Durability {
            appendonly: Some(appendonly.into()),
            save: Some(save.into()),
            maxmemory: Some(maxmemory.into()),
            maxmemory_policy: Some(policy.into()),
        }
    }

    #[test]
    fn aof_without_eviction_is_no_risk() {
        assert_eq!(settings("yes", "", "0", "noeviction").risks(), Vec::<String>::new());
        assert_eq!(
            settings("yes", "3600 1", "0", "allkeys-lru").risks(),
            Vec::<String>::new()
        );
        assert_eq!(settings("yes", "", "1gb", "noeviction").risks(), Vec::<String>::new());
    }

    #[test]
    fn no_persistence_is_a_risk() {
        let risks = settings("no", "", "0", "noeviction").risks();
        assert_eq!(risks.len(), 1, "{risks:?}");
        assert!(risks[0].contains("nothing is persisted"), "{risks:?}");
    }

    #[test]
    fn snapshots_alone_are_a_risk() {
        let risks = settings("no", "3600 1 300 100", "0", "noeviction").risks();
        assert_eq!(risks.len(), 1, "{risks:?}");
        assert!(risks[0].contains("only RDB snapshots"), "{risks:?}");
        assert!(risks[0].contains("3600 1 300 100"), "{risks:?}");
    }

    #[test]
    fn eviction_under_a_memory_limit_is_a_risk() {
        let risks = settings("yes", "", "100mb", "volatile-lru").risks();
        assert_eq!(risks.len(), 1, "{risks:?}");
        assert!(risks[0].contains("volatile-lru"), "{risks:?}");
        // Both at once are both named.
        assert_eq!(settings("no", "", "100mb", "allkeys-lru").risks().len(), 2);
    }

    #[test]
    fn unknown_settings_are_no_claim() {
        assert_eq!(Durability::default().risks(), Vec::<String>::new());
    }
}
