//! The open connections of one listener: the cap, who is evicted past it,
//! and knowing when the last one is gone.
//!
//! This module owns [`Conn`], what a connection's task, its I/O and the
//! accept loop share about it, and [`Registry`], the set of them. A `Conn` is
//! written only from its own connection's task, so its fields are plain
//! atomics read by the accept loop without ordering needs. It must never
//! evict a connection with a request in a handler, nor hold its lock across
//! an await.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Limits, Phase};

/// Connections past the cap whose eviction is still under way; beyond this
/// a newcomer waits for them to go. Part of the descriptor reserve.
const EVICTION_SLACK: usize = 32;
/// How long, at most, a newcomer waits for one eviction, and how many times.
const ADMIT_WAIT: Duration = Duration::from_millis(100);
const ADMIT_TRIES: usize = 10;

/// What [`Registry::try_admit`] decided.
enum Admission {
    Admitted(Arc<Conn>),
    /// At the cap with every connection running a request.
    Full,
    /// Evictions are under way: wait for one to finish.
    Evicting,
}

/// "No deadline": a request is in a handler.
pub(super) const NEVER: u64 = u64::MAX;

/// One connection as its task, its I/O and the accept loop share it. Written
/// only from the connection's own task (so never concurrently); the accept
/// loop reads it to choose whom to evict.
pub(super) struct Conn {
    pub(super) id: u64,
    /// What times are counted from, in milliseconds: the registry's start.
    pub(super) epoch: Instant,
    pub(super) idle_timeout: Duration,
    /// A request is in a handler: from the service call to its response.
    pub(super) busy: AtomicBool,
    /// Requests answered so far: a change tells the I/O a new pause began.
    pub(super) finished: AtomicU64,
    /// When the connection last became idle (its opening, or the end of its
    /// last request), in milliseconds from `epoch`: the eviction order.
    pub(super) idle_since: AtomicU64,
    /// When the connection is closed unless a request starts, in
    /// milliseconds from `epoch`; [`NEVER`] while a request is in a handler.
    pub(super) due: AtomicU64,
    /// Chosen for eviction; it is not chosen twice.
    pub(super) evicted: AtomicBool,
    /// Wakes the connection's task to close: evicted, or the listener's
    /// phase changed.
    pub(super) close: Notify,
}

impl Conn {
    pub(super) fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(NEVER - 1)
    }

    pub(super) fn instant(&self, millis: u64) -> Instant {
        // An absurd idle_timeout must not overflow: a century is never.
        let century = Duration::from_secs(100 * 365 * 24 * 3600);
        self.epoch
            .checked_add(Duration::from_millis(millis).min(century))
            .unwrap_or(self.epoch)
    }

    pub(super) fn begin_request(&self) {
        self.busy.store(true, Ordering::Relaxed);
        self.due.store(NEVER, Ordering::Relaxed);
    }

    pub(super) fn end_request(&self) {
        let now = self.millis(Instant::now());
        let idle_ms = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(NEVER - 1);
        self.idle_since.store(now, Ordering::Relaxed);
        self.due
            .store(now.saturating_add(idle_ms).min(NEVER - 1), Ordering::Relaxed);
        self.finished.fetch_add(1, Ordering::Relaxed);
        self.busy.store(false, Ordering::Relaxed);
    }
}

pub(super) struct Registry {
    pub(super) limits: Limits,
    pub(super) epoch: Instant,
    pub(super) next_id: AtomicU64,
    /// A std Mutex: held for an insert, a removal or a scan for the idlest
    /// connection, never across an await.
    pub(super) conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Signalled whenever a connection goes.
    pub(super) removed: Notify,
    /// The listener's [`Phase`], as its `u8`.
    pub(super) phase: AtomicU8,
}

impl Registry {
    pub(super) fn new(limits: Limits) -> Registry {
        Registry {
            limits,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            removed: Notify::new(),
            phase: AtomicU8::new(Phase::Serving as u8),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Serving,
            1 => Phase::Draining,
            _ => Phase::Closing,
        }
    }

    /// Moves the listener to `phase` and wakes every connection to look at
    /// it. A connection admitted but not yet started keeps the wake-up.
    pub(super) fn enter(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
        for conn in self.lock().values() {
            conn.close.notify_one();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Registers a new connection, evicting the idlest one at the cap;
    /// `None` when the cap is reached and no connection is idle. While
    /// [`EVICTION_SLACK`] evictions are still under way, waits for them
    /// (bounded), which leaves further newcomers in the kernel's backlog.
    pub(super) async fn admit(&self) -> Option<Arc<Conn>> {
        for _ in 0..ADMIT_TRIES {
            let removed = self.removed.notified();
            let mut removed = pin!(removed);
            // Registered before the attempt, so a removal in between is not missed.
            removed.as_mut().enable();
            match self.try_admit() {
                Admission::Admitted(conn) => return Some(conn),
                Admission::Full => return None,
                Admission::Evicting => {
                    let _ = tokio::time::timeout(ADMIT_WAIT, removed).await;
                }
            }
        }
        None
    }

    fn try_admit(&self) -> Admission {
        let cap = self.limits.max_connections;
        let mut conns = self.lock();
        if conns.len() >= cap {
            if conns.len() >= cap + EVICTION_SLACK {
                return Admission::Evicting;
            }
            let victim = conns
                .values()
                .filter(|c| !c.busy.load(Ordering::Relaxed) && !c.evicted.load(Ordering::Relaxed))
                .min_by_key(|c| c.idle_since.load(Ordering::Relaxed));
            match victim {
                Some(v) => {
                    v.evicted.store(true, Ordering::Relaxed);
                    v.close.notify_one();
                }
                None => return Admission::Full,
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut conn = Conn {
            id,
            epoch: self.epoch,
            idle_timeout: self.limits.idle_timeout,
            busy: AtomicBool::new(false),
            finished: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            due: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            close: Notify::new(),
        };
        // The first request's head is due header_read_timeout after the opening.
        let now = Instant::now();
        *conn.idle_since.get_mut() = conn.millis(now);
        *conn.due.get_mut() = conn.millis(now + self.limits.header_read_timeout);
        let conn = Arc::new(conn);
        conns.insert(id, Arc::clone(&conn));
        Admission::Admitted(conn)
    }

    pub(super) fn remove(&self, id: u64) {
        self.lock().remove(&id);
        self.removed.notify_waiters();
    }

    /// Resolves once no connection is open.
    pub(super) async fn drained(&self) {
        loop {
            let notified = self.removed.notified();
            let mut notified = pin!(notified);
            // Registered before the check, so a removal in between is not missed.
            notified.as_mut().enable();
            if self.lock().is_empty() {
                return;
            }
            notified.await;
        }
    }
}
