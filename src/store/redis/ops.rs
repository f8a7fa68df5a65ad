//! The [`Store`] operations of [`RedisStore`]: each one a script, a
//! pipeline or a single command, on one Redis or on the cluster's slot.

use super::*;

impl Store for RedisStore {
    async fn mark_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.inner.keys.mark(key))
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(pxat(expires_at.max(now.saturating_add(1))));
        match self.decide("mark_once", cmd, None, self.inner.wait_replicas).await? {
            (Value::Okay, acked) => self.replicated("mark_once", acked).map(|()| true),
            (Value::Nil, _) => Ok(false),
            (other, _) => Err(bad_reply("mark_once", other)),
        }
    }

    async fn revoke_jti(&self, jti: &str, until: i64, now: i64) -> Result<(), StoreError> {
        self.revoke(self.key("revoked-jti", jti), now, until, now).await
    }

    async fn revoke_sub(&self, sub: &str, revoked_at: i64, until: i64, now: i64) -> Result<(), StoreError> {
        self.revoke(self.key("revoked-sub", sub), revoked_at, until, now).await
    }

    async fn is_revoked(&self, jti: &str, sub: &str, iat: i64, now: i64) -> Result<bool, StoreError> {
        Self::revoked_by(&self.revocations(jti, sub).await?, iat, now)
    }

    async fn consume(&self, c: Consume<'_>, now: i64) -> Result<ConsumeOutcome, StoreError> {
        let mark = match c.retry_key {
            // Prefixed, so no retry key can equal the plain mark `1`.
            Some(retry_key) => format!("r:{retry_key}"),
            None => "1".to_owned(),
        };
        if self.is_cluster() {
            return self.consume_on_cluster(c, &mark, now).await;
        }
        let epoch_key = self.inner.keys.epoch_of(c.mark_key);
        let mut cmd = evalsha(
            &self.inner.consume,
            &[
                &self.key("revoked-jti", c.jti),
                &self.key("revoked-sub", c.sub),
                &self.inner.keys.mark(c.mark_key),
                &epoch_key,
            ],
        );
        cmd.arg(now)
            .arg(c.iat)
            .arg(pxat(c.expires_at.max(now.saturating_add(1))))
            .arg(mark);
        let (reply, acked) = self
            .decide("consume", cmd, Some(&self.inner.consume), self.inner.wait_replicas)
            .await?;
        let (outcome, reset, epoch) = <(String, i64, i64)>::from_redis_value(&reply)
            .map_err(|e| StoreError::Unavailable(format!("redis consume: {e}")))?;
        self.saw_epoch(epoch, reset, &epoch_key);
        let outcome = outcome_of(&outcome)?;
        if outcome == ConsumeOutcome::FirstUse {
            self.replicated("consume", acked)?;
        }
        Ok(outcome)
    }

    async fn rate_hit(&self, key: &str, limit: u32, window_secs: u32, now: i64) -> Result<RateDecision, StoreError> {
        let (start, end) = rate_window(window_secs, now);
        let mut script = self.inner.rate.prepare_invoke();
        script.key(self.key("rate", &format!("{key}:{start}"))).arg(pxat(end));
        let count: i64 = self.eval("rate_hit", script).await?;
        let count = u64::try_from(count).map_err(|_| bad_reply("rate_hit", count))?;
        Ok(rate_decision(count, limit, end, now))
    }

    async fn refresh_insert(&self, hash: &str, record: &RefreshRecord, now: i64) -> Result<(), StoreError> {
        if record.family_expires_at <= now {
            // Expired on arrival: presenting it will answer Unknown.
            return Ok(());
        }
        let json = serde_json::to_string(record)
            .map_err(|e| StoreError::Unavailable(format!("redis refresh_insert: cannot encode the record: {e}")))?;
        let family_expires_at = record.family_expires_at.min(MAX_UNIX_SECS);
        if self.is_cluster() {
            self.index_refresh("refresh_insert", hash, &record.family, pxat(family_expires_at))
                .await?;
        }
        let mut script = self.inner.refresh_insert.prepare_invoke();
        script
            .key(self.inner.keys.in_family("refresh", hash, &record.family))
            .arg(json)
            .arg(&record.family)
            .arg(record.expires_at.min(family_expires_at))
            .arg(family_expires_at)
            .arg(record.ttl)
            .arg(pxat(family_expires_at));
        self.eval::<Value>("refresh_insert", script).await.map(|_| ())
    }

    async fn refresh_spend(&self, hash: &str, successor_hash: &str, now: i64) -> Result<SpendOutcome, StoreError> {
        let (family, taken) = if self.is_cluster() {
            let Some((family, expires_ms)) = self.family_of("refresh_spend", hash).await? else {
                return Ok(SpendOutcome::Unknown);
            };
            // The successor's index first: a spend that stops after it
            // leaves an index to a family without that token (Unknown),
            // never a stored token nobody can find. An index to another
            // family fails the spend (in the script, so that a token that
            // is not spendable still answers why).
            let taken = !self.index_successor(successor_hash, &family, expires_ms.max(1)).await?;
            (family, taken)
        } else {
            (String::new(), false)
        };
        let keys = &self.inner.keys;
        let mut cmd = evalsha(
            &self.inner.refresh_spend,
            &[
                &keys.in_family("refresh", hash, &family),
                &keys.in_family("refresh", successor_hash, &family),
            ],
        );
        cmd.arg(now).arg(keys.family_prefix(&family));
        if taken {
            cmd.arg("taken");
        }
        let (reply, acked) = self
            .decide(
                "refresh_spend",
                cmd,
                Some(&self.inner.refresh_spend),
                self.inner.wait_replicas,
            )
            .await?;
        let reply = Vec::<String>::from_redis_value(&reply)
            .map_err(|e| StoreError::Unavailable(format!("redis refresh_spend: {e}")))?;
        let words: Vec<&str> = reply.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["unknown"] => Ok(SpendOutcome::Unknown),
            ["revoked"] => Ok(SpendOutcome::Revoked),
            ["reused"] => Ok(SpendOutcome::Reused),
            ["spent", json, expires_at] => {
                self.replicated("refresh_spend", acked)?;
                let mut record: RefreshRecord = serde_json::from_str(json).map_err(|e| {
                    StoreError::Unavailable(format!("redis refresh_spend: unreadable refresh record: {e}"))
                })?;
                record.expires_at = expires_at.parse().map_err(|_| bad_reply("refresh_spend", expires_at))?;
                Ok(SpendOutcome::Spent(record))
            }
            _ => Err(bad_reply("refresh_spend", &reply)),
        }
    }

    async fn refresh_peek(&self, hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
        let Some(family) = self.family_slot_of("refresh_peek", hash).await? else {
            return Ok(None);
        };
        let mut cmd = ::redis::cmd("HMGET");
        cmd.arg(self.inner.keys.in_family("refresh", hash, &family))
            .arg("rec")
            .arg("exp");
        let (json, expires_at): (Option<String>, Option<i64>) = self.query("refresh_peek", cmd).await?;
        let (Some(json), Some(expires_at)) = (json, expires_at) else {
            return Ok(None);
        };
        let record: RefreshRecord = serde_json::from_str(&json)
            .map_err(|e| StoreError::Unavailable(format!("redis refresh_peek: unreadable refresh record: {e}")))?;
        Ok(Some(RefreshRecord { expires_at, ..record }))
    }

    // --- OAuth 2.0 (issue 11) ---

    async fn refresh_revoke_family(&self, family: &str, until: i64, now: i64) -> Result<(), StoreError> {
        if until <= now {
            return Ok(());
        }
        // Sent as text (a rare call): set, or move the expiry later only
        // (GT), so a second revocation never shortens the first.
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(REVOKE_FAMILY_LUA)
            .arg(1)
            .arg(self.inner.keys.in_family("family", family, family))
            .arg(pxat(until.min(MAX_UNIX_SECS)));
        let (_, acked) = self
            .decide("refresh_revoke_family", cmd, None, self.inner.wait_replicas)
            .await?;
        self.replicated("refresh_revoke_family", acked)
    }

    async fn opaque_insert(&self, hash: &str, value: &[u8], expires_at: i64, now: i64) -> Result<(), StoreError> {
        if expires_at <= now {
            return Ok(());
        }
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key("opaque", hash))
            .arg(value)
            .arg("NX")
            .arg("PXAT")
            .arg(pxat(expires_at.min(MAX_UNIX_SECS)));
        match self.query::<Value>("opaque_insert", cmd).await? {
            Value::Okay => Ok(()),
            Value::Nil => Err(StoreError::Unavailable(
                "redis opaque_insert: the token hash is already stored".into(),
            )),
            other => Err(bad_reply("opaque_insert", other)),
        }
    }

    async fn opaque_get(&self, hash: &str, _now: i64) -> Result<Option<Vec<u8>>, StoreError> {
        // Redis expires the key at `expires_at` by its own clock.
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(self.key("opaque", hash));
        self.query("opaque_get", cmd).await
    }

    async fn opaque_remove(&self, hash: &str, _now: i64) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(self.key("opaque", hash));
        self.query::<Value>("opaque_remove", cmd).await.map(|_| ())
    }

    async fn refresh_live(&self, hash: &str, now: i64) -> Result<Option<RefreshRecord>, StoreError> {
        // Single-key reads, no script: introspection need not be atomic. On
        // a cluster the token's keys live in its family's slot, found first.
        let Some(family) = self.family_slot_of("refresh_live", hash).await? else {
            return Ok(None);
        };
        let mut cmd = ::redis::cmd("HMGET");
        cmd.arg(self.inner.keys.in_family("refresh", hash, &family))
            .arg("rec")
            .arg("exp")
            .arg("fexp")
            .arg("spent");
        let (json, exp, fexp, spent): (Option<String>, Option<i64>, Option<i64>, Option<String>) =
            self.query("refresh_live", cmd).await?;
        let (Some(json), Some(exp), Some(fexp)) = (json, exp, fexp) else {
            return Ok(None);
        };
        if spent.is_some() || exp <= now || fexp <= now {
            return Ok(None);
        }
        let record: RefreshRecord = serde_json::from_str(&json)
            .map_err(|e| StoreError::Unavailable(format!("redis refresh_live: unreadable refresh record: {e}")))?;
        let mut cmd = ::redis::cmd("EXISTS");
        cmd.arg(self.inner.keys.in_family("family", &record.family, &record.family));
        let revoked: i64 = self.query("refresh_live", cmd).await?;
        Ok((revoked == 0).then_some(RefreshRecord {
            expires_at: exp,
            ..record
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.is_cluster() {
            return self.cluster_ready().await;
        }
        let pong: String = self.query("ping", ::redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(bad_reply("ping", pong))
        }
    }
}
