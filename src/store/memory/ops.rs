//! The embedded store's operations, on its tables behind their locks: what
//! each [`Store`](crate::store::Store) method does, synchronously (no await
//! happens while a lock is held).

use super::*;

impl Inner {
    /// Records a caller's `now`; the sweeper's clock only moves forward.
    pub(super) fn observe(&self, now: i64) {
        self.latest_now.fetch_max(now, Ordering::AcqRel);
    }

    /// Entries whose expiry is at or before this are reclaimed.
    pub(super) fn horizon(&self) -> i64 {
        self.latest_now.load(Ordering::Acquire).saturating_sub(SWEEP_GRACE)
    }

    /// Takes one slot of the mark budget, or reports that there is none.
    pub(super) fn reserve_mark(&self) -> bool {
        self.mark_count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    pub(super) fn release_marks(&self, n: usize) {
        self.mark_count.fetch_sub(n, Ordering::AcqRel);
    }

    /// Shard by shard, so only one shard is locked at a time.
    pub(super) fn sweep_marks(&self) {
        let horizon = self.horizon();
        for shard in &self.marks {
            let removed = lock(shard).sweep(horizon);
            self.release_marks(removed);
        }
    }

    pub(super) fn sweep_all(&self) {
        self.sweep_marks();
        let horizon = self.horizon();
        write(&self.revocations).sweep(horizon);
        lock(&self.rates).retain(|_, c| c.end > horizon);
        lock(&self.refresh).sweep(horizon);
        lock(&self.opaque).retain(|_, (_, until)| *until > horizon);
    }

    pub(super) fn mark_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        self.observe(now);
        Ok(self.mark(key, None, expires_at, now)? == Marked::First)
    }

    /// The check-and-insert of [`mark_once`](Inner::mark_once), placing the
    /// mark with `retry_key` if given. Locks mark shards only (one at a
    /// time), so a consume may call it while holding the revocations lock.
    pub(super) fn mark(
        &self,
        key: &str,
        retry_key: Option<&str>,
        expires_at: i64,
        now: i64,
    ) -> Result<Marked, StoreError> {
        let key = compact(key);
        let retry_key = retry_key.map(compact);
        let until = expires_at.max(now.saturating_add(1));
        let shard = &self.marks[usize::from(key[0]) % SHARDS];
        for attempt in 0..2 {
            {
                let mut shard = lock(shard);
                match shard.map.get_mut(&key) {
                    Some(old) if *old > now => {
                        let same = retry_key.is_some() && shard.retry_keys.get(&key) == retry_key.as_ref();
                        return Ok(if same { Marked::Retried } else { Marked::Already });
                    }
                    Some(old) => {
                        // Expired but not yet swept: the slot is reused.
                        *old = until;
                        shard.set_retry_key(key, retry_key);
                        return Ok(Marked::First);
                    }
                    None => {}
                }
                if shard.map.len() == shard.map.capacity() {
                    // About to grow: reclaim expired marks first, so the
                    // table grows for live marks only.
                    let removed = shard.sweep(self.horizon());
                    self.release_marks(removed);
                }
                if self.reserve_mark() {
                    shard.map.insert(key, until);
                    shard.set_retry_key(key, retry_key);
                    return Ok(Marked::First);
                }
            }
            // Full. Sweep every shard (this one's lock is released: the
            // sweep takes each in turn) and try once more.
            if attempt == 0 {
                self.sweep_marks();
            }
        }
        Err(StoreError::Full {
            capacity: self.capacity,
        })
    }

    pub(super) fn revoke_jti(&self, jti: &str, until: i64, now: i64) -> Result<(), StoreError> {
        self.observe(now);
        if until <= now {
            return Ok(());
        }
        let key = compact(jti);
        let mut r = write(&self.revocations);
        if let Some(old) = r.jti.get_mut(&key) {
            *old = (*old).max(until);
            return Ok(());
        }
        r.reserve(self.capacity, self.horizon())?;
        r.jti.insert(key, until);
        Ok(())
    }

    pub(super) fn revoke_sub(&self, sub: &str, revoked_at: i64, until: i64, now: i64) -> Result<(), StoreError> {
        self.observe(now);
        if until <= now {
            return Ok(());
        }
        let key = compact(sub);
        let mut r = write(&self.revocations);
        if let Some(old) = r.sub.get_mut(&key) {
            // Keep the later of each: a revocation is never narrowed.
            old.revoked_at = old.revoked_at.max(revoked_at);
            old.until = old.until.max(until);
            return Ok(());
        }
        r.reserve(self.capacity, self.horizon())?;
        r.sub.insert(key, SubRevocation { revoked_at, until });
        Ok(())
    }

    pub(super) fn is_revoked(&self, jti: &str, sub: &str, iat: i64, now: i64) -> bool {
        self.observe(now);
        read(&self.revocations).covers(&compact(jti), &compact(sub), iat, now)
    }

    pub(super) fn consume(&self, c: Consume<'_>, now: i64) -> Result<ConsumeOutcome, StoreError> {
        self.observe(now);
        // Held until the mark is placed: a revocation takes the write lock,
        // so it lands wholly before the check (Revoked, nothing marked) or
        // wholly after the mark, never in between.
        let revocations = read(&self.revocations);
        if revocations.covers(&compact(c.jti), &compact(c.sub), c.iat, now) {
            return Ok(ConsumeOutcome::Revoked);
        }
        if c.iat < self.epoch.load(Ordering::Acquire) {
            return Ok(ConsumeOutcome::StateLost);
        }
        let marked = self.mark(c.mark_key, c.retry_key, c.expires_at, now)?;
        drop(revocations);
        Ok(match marked {
            Marked::First => ConsumeOutcome::FirstUse,
            Marked::Retried => ConsumeOutcome::Retried,
            Marked::Already => ConsumeOutcome::Replayed,
        })
    }

    /// Ready unless the mark table is full of live marks: then every first
    /// use would be refused, and a load balancer should send traffic to
    /// another instance. What is live is judged by the latest `now` seen.
    pub(super) fn ready(&self) -> Result<(), StoreError> {
        if self.mark_count.load(Ordering::Acquire) < self.capacity {
            return Ok(());
        }
        self.sweep_marks();
        if self.mark_count.load(Ordering::Acquire) < self.capacity {
            return Ok(());
        }
        Err(StoreError::Full {
            capacity: self.capacity,
        })
    }

    pub(super) fn rate_hit(
        &self,
        key: &str,
        limit: u32,
        window_secs: u32,
        now: i64,
    ) -> Result<RateDecision, StoreError> {
        self.observe(now);
        let (start, end) = rate_window(window_secs, now);
        let key = compact(key);
        let mut rates = lock(&self.rates);
        if !rates.contains_key(&key) && rates.len() >= self.capacity {
            let horizon = self.horizon();
            rates.retain(|_, c| c.end > horizon);
            if rates.len() >= self.capacity {
                return Err(StoreError::Full {
                    capacity: self.capacity,
                });
            }
        }
        let counter = rates.entry(key).or_insert(RateCounter { start, end, count: 0 });
        if counter.start != start || counter.end != end {
            *counter = RateCounter { start, end, count: 0 };
        }
        counter.count = counter.count.saturating_add(1);
        Ok(rate_decision(u64::from(counter.count), limit, end, now))
    }

    pub(super) fn refresh_insert(&self, hash: &str, record: &RefreshRecord, now: i64) -> Result<(), StoreError> {
        self.observe(now);
        if record.family_expires_at <= now {
            // Expired on arrival: presenting it will answer Unknown.
            return Ok(());
        }
        let mut r = lock(&self.refresh);
        if r.tokens.contains_key(hash) {
            return Err(StoreError::Unavailable("refresh token hash is already stored".into()));
        }
        r.reserve(self.capacity, self.horizon())?;
        let entry = TokenEntry {
            record: Arc::new(record.clone()),
            expires_at: record.expires_at.min(record.family_expires_at),
            spent: false,
        };
        r.tokens.insert(hash.to_owned(), entry);
        Ok(())
    }

    pub(super) fn refresh_spend(&self, hash: &str, successor_hash: &str, now: i64) -> Result<SpendOutcome, StoreError> {
        self.observe(now);
        let mut r = lock(&self.refresh);
        let Some(entry) = r.tokens.get(hash) else {
            return Ok(SpendOutcome::Unknown);
        };
        let (record, expires_at, spent) = (Arc::clone(&entry.record), entry.expires_at, entry.spent);
        if r.revoked_families.contains_key(&record.family) {
            return Ok(SpendOutcome::Revoked);
        }
        if record.family_expires_at <= now {
            return Ok(SpendOutcome::Unknown);
        }
        if spent {
            r.revoked_families
                .insert(record.family.clone(), record.family_expires_at);
            return Ok(SpendOutcome::Reused);
        }
        if expires_at <= now {
            return Ok(SpendOutcome::Unknown);
        }
        if successor_hash == hash || r.tokens.contains_key(successor_hash) {
            return Err(StoreError::Unavailable(
                "refresh successor hash is already stored".into(),
            ));
        }
        r.reserve(self.capacity, self.horizon())?;
        // The sweep in `reserve` only removes families expired before the
        // latest `now`, which can be later than this caller's: look again.
        let Some(entry) = r.tokens.get_mut(hash) else {
            return Ok(SpendOutcome::Unknown);
        };
        entry.spent = true;
        let successor = TokenEntry {
            record: Arc::clone(&record),
            expires_at: now.saturating_add(record.ttl).min(record.family_expires_at),
            spent: false,
        };
        r.tokens.insert(successor_hash.to_owned(), successor);
        Ok(SpendOutcome::Spent(RefreshRecord {
            expires_at,
            ..(*record).clone()
        }))
    }
}
