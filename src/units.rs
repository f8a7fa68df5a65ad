//! Units written in text: durations (`90s`, `5m`, `24h`, `30d`), a request's
//! `ttl`, and rates (`20/s`).
//!
//! This module owns only the parsing and printing of these values, so that
//! `config`, `clients` and `issuer` can all read them without importing one
//! another. It must never depend on another module of this crate, nor decide
//! whether a value makes sense for a setting: zero, or a limit too large, is
//! the caller's call.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

const HOUR: u64 = 3600;

/// Parses a duration written like `90s`, `5m`, `24h`, `30d`, `1h30m` or
/// `500ms`. Zero is accepted here; whether it makes sense is the caller's call.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim().is_empty() {
        return Err("empty duration (write e.g. 90s, 5m, 24h, 30d)".to_owned());
    }
    humantime::parse_duration(s).map_err(|_| format!("invalid duration {s:?} (write e.g. 90s, 5m, 24h, 30d)"))
}

/// A request's `ttl`: a duration string (`"10m"`) or a non-negative integer
/// number of seconds.
pub fn parse_ttl(v: &Value) -> Result<Duration, String> {
    match v {
        Value::String(s) => parse_duration(s),
        Value::Number(n) => match n.as_u64() {
            Some(secs) => Ok(Duration::from_secs(secs)),
            None => Err(format!("ttl {n} is not a whole, non-negative number of seconds")),
        },
        _ => Err("ttl must be a duration like \"10m\" or a number of seconds".to_owned()),
    }
}

/// A rate: `count` requests per `per`, written `20/s`, `100/m` or `1000/h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window; above zero.
    pub count: u32,
    /// The window: one second, minute or hour.
    pub per: Duration,
}

impl RateLimit {
    /// Parses `N/s`, `N/m` or `N/h` with `N` above zero.
    pub fn parse(s: &str) -> Result<RateLimit, String> {
        let form = || format!("{s:?} is not a rate like 20/s, 100/m or 1000/h");
        let (count, unit) = s.split_once('/').ok_or_else(form)?;
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(form());
        }
        let count: u32 = count.parse().map_err(|_| format!("{s:?}: the count is too large"))?;
        let per = match unit {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(HOUR),
            _ => return Err(form()),
        };
        if count == 0 {
            return Err(format!("{s:?} allows nothing: remove rate_limit for no limit"));
        }
        Ok(RateLimit { count, per })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            HOUR => "h",
            _ => return write!(f, "{}/{}s", self.count, self.per.as_secs()),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("90s", 90),
            ("5m", 300),
            ("24h", 86400),
            ("30d", 30 * 86400),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("0s", 0),
        ];
        for (s, secs) in ok {
            assert_eq!(parse_duration(s), Ok(Duration::from_secs(secs)), "{s}");
        }
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for s in ["", " ", "3x", "5", "-5m", "m", "5 minutes ago", "1e3s"] {
            let e = parse_duration(s).unwrap_err();
            assert!(e.contains("duration"), "{s}: {e}");
        }
        assert_eq!(
            parse_duration("3x").unwrap_err(),
            "invalid duration \"3x\" (write e.g. 90s, 5m, 24h, 30d)"
        );
    }

    #[test]
    fn ttl_values() {
        use serde_json::json;
        assert_eq!(parse_ttl(&json!("10m")), Ok(Duration::from_secs(600)));
        assert_eq!(parse_ttl(&json!(600)), Ok(Duration::from_secs(600)));
        assert_eq!(parse_ttl(&json!(0)), Ok(Duration::ZERO));
        for bad in [
            json!(-1),
            json!(1.5),
            json!("3x"),
            json!(""),
            json!(true),
            json!(null),
            json!([60]),
            json!({"s": 1}),
        ] {
            assert!(parse_ttl(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_limits() {
        let ok = [
            ("20/s", 20, 1),
            ("100/m", 100, 60),
            ("1000/h", 1000, 3600),
            ("1/s", 1, 1),
        ];
        for (s, count, per) in ok {
            let r = RateLimit::parse(s).unwrap();
            assert_eq!(
                r,
                RateLimit {
                    count,
                    per: Duration::from_secs(per)
                }
            );
            assert_eq!(r.to_string(), s);
        }
        for s in [
            "",
            "/s",
            "20",
            "20/",
            "20/d",
            "0/s",
            "-1/s",
            "+5/s",
            "20/S",
            " 20/s",
            "20 /s",
            "1.5/s",
            "20/s/m",
            "4294967296/s",
        ] {
            assert!(RateLimit::parse(s).is_err(), "{s:?}");
        }
    }
}
