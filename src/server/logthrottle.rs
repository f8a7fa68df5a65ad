//! Rate-limited warnings: at most one line per cause per window (one
//! second at the edge), and the next line that is let through says how
//! many were held back. During a store outage every request fails the
//! same way; without this, each one would write the same WARN line
//! (thousands a second per instance), burying everything else in the log.
//!
//! This module owns the window arithmetic and the edge's one table
//! ([`edge`]). Keys are `&'static str` causes chosen by the code that logs
//! (an error kind), never text from a request, so no client can mint a new
//! key per request and the table stays as small as the list of causes.
//! Time is a parameter: tests pass instants and never sleep. It must never
//! log while holding its lock, and never drop the first line of a burst.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One cause's window: when it opened and how many lines it held back.
struct Window {
    key: &'static str,
    opened: Instant,
    suppressed: u64,
}

/// Admits one line per key per `window`.
pub struct LogThrottle {
    window: Duration,
    /// A std Mutex: held for a scan of a handful of entries, never across
    /// an await or a log call. A Vec, not a map: there are a few causes.
    windows: Mutex<Vec<Window>>,
}

/// The table the HTTP edge logs its per-request warnings through.
static EDGE: LogThrottle = LogThrottle::new(Duration::from_secs(1));

/// The edge's throttle: one line per cause per second.
pub fn edge() -> &'static LogThrottle {
    &EDGE
}

impl LogThrottle {
    /// A throttle that lets one line per key through per `window`.
    pub const fn new(window: Duration) -> LogThrottle {
        LogThrottle {
            window,
            windows: Mutex::new(Vec::new()),
        }
    }

    /// Whether a line for `key` at `now` is written: `Some(n)` when it is,
    /// `n` being how many lines of `key` were held back since the last one
    /// written; `None` when it is held back.
    pub fn admit(&self, key: &'static str, now: Instant) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(w) = windows.iter_mut().find(|w| w.key == key) else {
            windows.push(Window {
                key,
                opened: now,
                suppressed: 0,
            });
            return Some(0);
        };
        if now.saturating_duration_since(w.opened) < self.window {
            w.suppressed = w.suppressed.saturating_add(1);
            return None;
        }
        let held = w.suppressed;
        w.opened = now;
        w.suppressed = 0;
        Some(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_cause_per_window_with_a_count_of_the_rest() {
        let t = LogThrottle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // The first line of a burst is written at once.
        assert_eq!(t.admit("store", at(0)), Some(0));
        // 3,411 more within the second: all held back.
        for i in 1..3412 {
            assert_eq!(t.admit("store", at(i * 999 / 3412)), None);
        }
        // Another cause has its own window.
        assert_eq!(t.admit("session_check", at(500)), Some(0));
        assert_eq!(t.admit("session_check", at(600)), None);
        // At the end of the window, the next line carries the count.
        assert_eq!(t.admit("store", at(1000)), Some(3411));
        assert_eq!(t.admit("store", at(1001)), None);
        // A quiet cause starts over with nothing held back.
        assert_eq!(t.admit("store", at(5000)), Some(1));
        assert_eq!(t.admit("store", at(6000)), Some(0));
        assert_eq!(t.admit("session_check", at(1500)), Some(1));
    }

    /// The lines `f` logs at WARN or above, on this thread; and how long it took.
    fn logged(f: impl FnOnce()) -> (Vec<String>, Duration) {
        let mut took = Duration::ZERO;
        let text = crate::testlog::warnings(|| {
            let started = Instant::now();
            f();
            took = started.elapsed();
        });
        (text.lines().map(str::to_owned).collect(), took)
    }

    #[test]
    fn errors_at_the_edge_log_once_per_cause_per_second() {
        use axum::response::IntoResponse;

        use crate::server::error::ApiError;
        use crate::store::StoreError;

        const N: usize = 2000;
        // A cause no other test uses: the edge table is shared by the process.
        let (lines, took) = logged(|| {
            for _ in 0..N {
                let _ = ApiError::Internal("logthrottle test: a cause of its own").into_response();
            }
        });
        // One line per started second at most, whatever the machine's speed.
        let most = usize::try_from(took.as_secs()).unwrap_or(usize::MAX).saturating_add(1);
        assert!(
            !lines.is_empty() && lines.len() <= most,
            "{} lines in {took:?}",
            lines.len()
        );
        assert!(lines[0].contains("suppressed=0"), "{}", lines[0]);

        // A store outage: every request fails the same way.
        let (lines, took) = logged(|| {
            for _ in 0..N {
                let e = ApiError::from(StoreError::Unavailable("connection refused".into()));
                let _ = e.into_response();
            }
        });
        let most = usize::try_from(took.as_secs()).unwrap_or(usize::MAX).saturating_add(1);
        assert!(lines.len() <= most, "{} lines in {took:?}", lines.len());
        assert!(lines.iter().all(|l| l.contains("dependency unavailable")), "{lines:?}");
    }

    #[test]
    fn time_going_backwards_holds_lines_back_rather_than_flooding() {
        let t = LogThrottle::new(Duration::from_secs(1));
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(t.admit("k", t0), Some(0));
        assert_eq!(t.admit("k", t0 - Duration::from_secs(5)), None);
    }
}
