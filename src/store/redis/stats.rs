//! Latency and errors of the Redis store's calls, by operation, for
//! `/metrics`: what an operator needs to see a slow shard, a failover
//! (`connection`, `redirect`) or replicas that lag (`replicas`).
//!
//! Labels are operation names and error kinds, never a key.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use ::redis::{ErrorKind, RedisError};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

#[derive(Default)]
struct Op {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    errors: BTreeMap<&'static str, u64>,
}

/// One map behind a std `Mutex`, held for an update only, never across an
/// `.await`.
#[derive(Default)]
pub(super) struct Stats {
    ops: Mutex<BTreeMap<&'static str, Op>>,
}

/// The kind of a failed call, as counted.
pub(super) fn kind_of(e: &RedisError) -> &'static str {
    match e.kind() {
        ErrorKind::Moved | ErrorKind::Ask | ErrorKind::TryAgain | ErrorKind::ClusterDown | ErrorKind::MasterDown => {
            "redirect"
        }
        _ if e.is_timeout() => "timeout",
        _ if super::conn::is_connection_error(e) => "connection",
        _ => "server",
    }
}

impl Stats {
    fn with(&self, what: &'static str, f: impl FnOnce(&mut Op)) {
        // A panic while holding the lock leaves counts that are still counts.
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        f(ops.entry(what).or_default());
    }

    /// One call of `what` that took `elapsed`, failed with `error` if any.
    pub(super) fn observe(&self, what: &'static str, elapsed: Duration, error: Option<&'static str>) {
        let secs = elapsed.as_secs_f64();
        self.with(what, |op| {
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    op.counts[i] += 1;
                }
            }
            op.count += 1;
            op.sum += secs;
            if let Some(kind) = error {
                *op.errors.entry(kind).or_default() += 1;
            }
        });
    }

    /// A decision refused because too few replicas confirmed it.
    pub(super) fn replicas_short(&self, what: &'static str) {
        self.with(what, |op| *op.errors.entry("replicas").or_default() += 1);
    }

    /// Prometheus text: `tokensmith_store_duration_seconds` (histogram) and
    /// `tokensmith_store_errors_total`, by `op` (and `kind`).
    pub(super) fn render(&self, out: &mut String) {
        let ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP tokensmith_store_duration_seconds Redis store call latency, by operation.\n");
        out.push_str("# TYPE tokensmith_store_duration_seconds histogram\n");
        for (what, op) in ops.iter() {
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tokensmith_store_duration_seconds_bucket{{op=\"{what}\",le=\"{bound}\"}} {}",
                    op.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "tokensmith_store_duration_seconds_bucket{{op=\"{what}\",le=\"+Inf\"}} {}",
                op.count
            );
            let _ = writeln!(out, "tokensmith_store_duration_seconds_sum{{op=\"{what}\"}} {}", op.sum);
            let _ = writeln!(
                out,
                "tokensmith_store_duration_seconds_count{{op=\"{what}\"}} {}",
                op.count
            );
        }
        out.push_str("# HELP tokensmith_store_errors_total Redis store calls that failed, by operation and kind.\n");
        out.push_str("# TYPE tokensmith_store_errors_total counter\n");
        for (what, op) in ops.iter() {
            for (kind, n) in &op.errors {
                let _ = writeln!(
                    out,
                    "tokensmith_store_errors_total{{op=\"{what}\",kind=\"{kind}\"}} {n}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_latency_and_errors_by_operation() {
        let s = Stats::default();
        s.observe("consume", Duration::from_micros(300), None);
        s.observe("consume", Duration::from_millis(600), Some("timeout"));
        s.replicas_short("consume");
        let mut text = String::new();
        s.render(&mut text);
        assert!(
            text.contains("tokensmith_store_duration_seconds_bucket{op=\"consume\",le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tokensmith_store_duration_seconds_count{op=\"consume\"} 2"),
            "{text}"
        );
        // Buckets are cumulative: the slow call is only in the wide ones.
        let bucket = |le: &str| format!("tokensmith_store_duration_seconds_bucket{{op=\"consume\",le=\"{le}\"}} ");
        for (le, n) in [("0.0002", 0), ("0.0005", 1), ("0.5", 1), ("+Inf", 2)] {
            assert!(text.contains(&format!("{}{n}\n", bucket(le))), "{le}: {text}");
        }
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("tokensmith_store_duration_seconds_sum{op=\"consume\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        assert!((sum - 0.6003).abs() < 1e-9, "{sum}: {text}");
        assert!(
            text.contains("tokensmith_store_errors_total{op=\"consume\",kind=\"timeout\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tokensmith_store_errors_total{op=\"consume\",kind=\"replicas\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn failures_are_counted_by_kind() {
        use std::io;
        let io = |kind: io::ErrorKind| RedisError::from(io::Error::new(kind, "test"));
        let cases = [
            (RedisError::from((ErrorKind::Moved, "test")), "redirect"),
            (RedisError::from((ErrorKind::Ask, "test")), "redirect"),
            (RedisError::from((ErrorKind::TryAgain, "test")), "redirect"),
            (RedisError::from((ErrorKind::ClusterDown, "test")), "redirect"),
            (RedisError::from((ErrorKind::MasterDown, "test")), "redirect"),
            (io(io::ErrorKind::TimedOut), "timeout"),
            (io(io::ErrorKind::ConnectionRefused), "connection"),
            (
                RedisError::from((ErrorKind::ClusterConnectionNotFound, "test")),
                "connection",
            ),
            (RedisError::from((ErrorKind::ResponseError, "test")), "server"),
            (RedisError::from((ErrorKind::NoScriptError, "test")), "server"),
        ];
        for (e, kind) in cases {
            assert_eq!(kind_of(&e), kind, "{e:?}");
        }
    }
}
