//! The cluster-only steps of the Redis store: the two-step consume, the
//! readiness of every slot, and the refresh-token index that finds a
//! token's family slot (see "Redis Cluster" in the module docs).

use ::redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use ::redis::{FromRedisValue, Value};

use super::{bad_reply, evalsha, outcome_of, pxat, texts, RedisStore};
use crate::store::{Consume, ConsumeOutcome, StoreError};

impl RedisStore {
    /// A cluster's consume: the mark script on the mark's slot, then the
    /// revocations (see "Redis Cluster" in the module docs for the order).
    pub(super) async fn consume_on_cluster(
        &self,
        c: Consume<'_>,
        mark: &str,
        now: i64,
    ) -> Result<ConsumeOutcome, StoreError> {
        let mark_key = self.inner.keys.mark(c.mark_key);
        let epoch_key = self.inner.keys.epoch_of(c.mark_key);
        let mut cmd = evalsha(&self.inner.consume_mark, &[&mark_key, &epoch_key]);
        cmd.arg(now)
            .arg(c.iat)
            .arg(pxat(c.expires_at.max(now.saturating_add(1))))
            .arg(mark);
        let (reply, acked) = self
            .decide("consume", cmd, Some(&self.inner.consume_mark), self.inner.wait_replicas)
            .await?;
        let (outcome, reset, epoch) = <(String, i64, i64)>::from_redis_value(&reply)
            .map_err(|e| StoreError::Unavailable(format!("redis consume: {e}")))?;
        self.saw_epoch(epoch, reset, &epoch_key);
        let revoked = Self::revoked_by(&self.revocations(c.jti, c.sub).await?, c.iat, now)?;
        if revoked {
            if outcome == "first" {
                // Best effort: a mark left on a revoked token refuses
                // nothing that the revocation does not refuse already.
                let mut unmark = self.inner.unmark.prepare_invoke();
                unmark.key(&mark_key).arg(mark);
                if let Err(e) = self.eval::<i64>("consume (unmark)", unmark).await {
                    tracing::warn!(error = %e, "redis: could not remove the mark of a revoked token");
                }
            }
            return Ok(ConsumeOutcome::Revoked);
        }
        let outcome = outcome_of(&outcome)?;
        if outcome == ConsumeOutcome::FirstUse {
            self.replicated("consume", acked)?;
        }
        Ok(outcome)
    }

    /// Ready when every master answers `CLUSTER INFO` with
    /// `cluster_state:ok` and `cluster_slots_ok:16384`: every slot assigned
    /// to a master that no node suspects. The state alone is not enough: a
    /// cluster run with `cluster-require-full-coverage no` stays `ok` with
    /// slots nobody serves, and a consume whose mark is in one of them
    /// cannot be decided (it fails, 503).
    pub(super) async fn cluster_ready(&self) -> Result<(), StoreError> {
        let Some(mut conn) = self.inner.conn.cluster_conn() else {
            return Ok(());
        };
        let mut cmd = ::redis::cmd("CLUSTER");
        cmd.arg("INFO");
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let reply = self
            .bounded("ping", None, async move { conn.route_command(&cmd, routing).await })
            .await?;
        let mut infos = Vec::new();
        texts(&reply, &mut infos);
        if infos.is_empty() {
            return Err(bad_reply("ping", reply));
        }
        for info in &infos {
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
                    .unwrap_or("(missing)")
                    .to_owned()
            };
            let (state, slots_ok) = (field("cluster_state"), field("cluster_slots_ok"));
            if state != "ok" || slots_ok != "16384" {
                return Err(StoreError::Unavailable(format!(
                    "redis cluster: a master reports cluster_state:{state}, cluster_slots_ok:{slots_ok} \
                     (cluster_slots_assigned:{}): some slot is unserved, and consumes of marks there fail",
                    field("cluster_slots_assigned")
                )));
            }
        }
        Ok(())
    }

    /// The family whose slot holds refresh token `hash`'s keys: found by its
    /// index on a cluster (`None`: no such token), `""` on one Redis.
    pub(super) async fn family_slot_of(&self, what: &'static str, hash: &str) -> Result<Option<String>, StoreError> {
        if !self.is_cluster() {
            return Ok(Some(String::new()));
        }
        Ok(self.family_of(what, hash).await?.map(|(family, _)| family))
    }

    /// The family of refresh token `hash` and the family's expiry (ms), from
    /// its index (a cluster).
    pub(super) async fn family_of(&self, what: &'static str, hash: &str) -> Result<Option<(String, i64)>, StoreError> {
        let key = self.key("refresh-of", hash);
        let mut pipe = ::redis::pipe();
        pipe.cmd("GET").arg(&key).cmd("PEXPIRETIME").arg(&key);
        let h = self.inner.conn.handle();
        let mut conn = h.conn;
        let (family, expires): (Option<String>, i64) = self
            .bounded(what, h.used.as_ref(), async move { pipe.query_async(&mut conn).await })
            .await?;
        Ok(family.map(|f| (f, expires)))
    }

    /// Indexes a successor `hash` under `family` (a cluster): true if it is
    /// now indexed there (written, or already so), false if another family
    /// holds it.
    pub(super) async fn index_successor(&self, hash: &str, family: &str, pxat_ms: i64) -> Result<bool, StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key("refresh-of", hash))
            .arg(family)
            .arg("NX")
            .arg("PXAT")
            .arg(pxat_ms)
            .arg("GET");
        // SET … NX GET answers the old value (nil when it wrote).
        let old: Option<String> = self.query("refresh_spend", cmd).await?;
        Ok(old.is_none_or(|old| old == family))
    }

    /// Writes the index of refresh token `hash` (a cluster): `SET NX`, so a
    /// hash is indexed once.
    pub(super) async fn index_refresh(
        &self,
        what: &'static str,
        hash: &str,
        family: &str,
        pxat_ms: i64,
    ) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key("refresh-of", hash))
            .arg(family)
            .arg("NX")
            .arg("PXAT")
            .arg(pxat_ms);
        match self.query::<Value>(what, cmd).await? {
            Value::Okay => Ok(()),
            Value::Nil => Err(StoreError::Unavailable(format!(
                "redis {what}: the refresh token hash is already stored"
            ))),
            other => Err(bad_reply(what, other)),
        }
    }
}
