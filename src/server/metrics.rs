//! Prometheus text metrics, kept by hand: a few counters and one latency
//! histogram per route. Labels are client ids, result codes and route
//! templates: never a token, a key or a subject.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds. The finest is a
/// quarter of a millisecond (a verify or an introspection takes about that
/// long); 3 ms is the p99 objective of introspection, so an alert can read
/// the share of requests that met it from one bucket.
const BUCKETS: [f64; 14] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The service's metrics. Each map sits behind a std `Mutex`: held for a
/// map update only, never across an `.await`.
#[derive(Default)]
pub struct Metrics {
    issued: Mutex<BTreeMap<String, u64>>,
    verifications: Mutex<BTreeMap<&'static str, u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Unix time of the next scheduled rotation, 0 when unknown.
    pub next_rotation_at: AtomicI64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock leaves counts that are still
    // counts; keep serving them.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// Counts a token issued to the client with id `client`.
    pub fn token_issued(&self, client: &str) {
        *lock(&self.issued).entry(client.to_owned()).or_default() += 1;
    }

    /// `result` is `valid` or a rejection code.
    pub fn verification(&self, result: &'static str) {
        *lock(&self.verifications).entry(result).or_default() += 1;
    }

    /// Adds one request to `route`'s latency histogram.
    pub fn observe(&self, route: &str, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut map = lock(&self.latency);
        let h = map.entry(route.to_owned()).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, now: i64) -> String {
        let mut out = String::new();
        out.push_str("# HELP tokensmith_tokens_issued_total Tokens issued, by client.\n");
        out.push_str("# TYPE tokensmith_tokens_issued_total counter\n");
        for (client, n) in lock(&self.issued).iter() {
            let _ = writeln!(
                out,
                "tokensmith_tokens_issued_total{{client=\"{}\"}} {n}",
                escape(client)
            );
        }
        out.push_str("# HELP tokensmith_verifications_total Token verifications, by result.\n");
        out.push_str("# TYPE tokensmith_verifications_total counter\n");
        for (result, n) in lock(&self.verifications).iter() {
            let _ = writeln!(out, "tokensmith_verifications_total{{result=\"{result}\"}} {n}");
        }
        out.push_str("# HELP tokensmith_request_duration_seconds Request latency, by route.\n");
        out.push_str("# TYPE tokensmith_request_duration_seconds histogram\n");
        for (route, h) in lock(&self.latency).iter() {
            let route = escape(route);
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tokensmith_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "tokensmith_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "tokensmith_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "tokensmith_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        let next = self.next_rotation_at.load(Ordering::Relaxed);
        out.push_str("# HELP tokensmith_seconds_until_rotation Seconds until the next scheduled key rotation.\n");
        out.push_str("# TYPE tokensmith_seconds_until_rotation gauge\n");
        let _ = writeln!(
            out,
            "tokensmith_seconds_until_rotation {}",
            if next == 0 { 0 } else { next - now }
        );
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_the_rotation_gauge() {
        let m = Metrics::default();
        m.token_issued("shop\"1");
        m.token_issued("shop\"1");
        m.verification("valid");
        m.observe("/v1/tokens", Duration::from_micros(700));
        m.observe("/oauth2/introspect", Duration::from_micros(3000));
        m.observe("/oauth2/introspect", Duration::from_micros(250));
        m.next_rotation_at.store(1_000, Ordering::Relaxed);
        let text = m.render(400);
        // A bucket holds what is at most its bound: 3 ms exactly meets the objective.
        for (le, n) in [("0.00025", 1), ("0.0025", 1), ("0.003", 2), ("+Inf", 2)] {
            let line = format!("route=\"/oauth2/introspect\",le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(
            text.contains("tokensmith_tokens_issued_total{client=\"shop\\\"1\"} 2"),
            "{text}"
        );
        assert!(text.contains("tokensmith_verifications_total{result=\"valid\"} 1"));
        assert!(text.contains("route=\"/v1/tokens\",le=\"0.0005\"} 0"));
        assert!(text.contains("route=\"/v1/tokens\",le=\"0.001\"} 1"));
        assert!(text.contains("tokensmith_seconds_until_rotation 600"));
    }
}
