//! The Origin pattern parser (`OriginPattern::parse`) and matching
//! (`OriginPattern::matches`, `Client::origin_allowed`).
//!
//! Input: lines; the first is a configured pattern, the second a presented
//! `Origin`, the third (if any) a label put in place of a wildcard.
//! Invariants:
//! - a pattern prints as lowercase ASCII and re-parses to itself;
//! - an origin that matches is a valid serialized origin (RFC 6454 §6.2:
//!   `scheme "://" host [ ":" port ]`, checked here independently), is itself
//!   a pattern without wildcards that matches it, and its normalised
//!   spelling matches too; case never changes the answer;
//! - `Client::origin_allowed` is "any pattern matches";
//! - `*.example.com` matches exactly one label in front: not the bare
//!   domain, not two labels; `:*` matches every port.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokensmith::fuzzing::{Client, OriginPattern};

/// RFC 6454 §6.2, as browsers send it (but with any case): http or https,
/// a host, an optional port without leading zero; nothing else.
fn is_serialized_origin(o: &str) -> bool {
    let lower = o.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")) else {
        return false;
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => (addr, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (addr, Some(p)),
                None => return false,
            },
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let host_ok = rest.starts_with('[')
        || (!host.is_empty()
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')));
    let port_ok = port.is_none_or(|p| {
        !p.is_empty() && !p.starts_with('0') && p.len() <= 5 && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
    });
    host_ok && port_ok
}

fn check_pattern(pattern: &OriginPattern) {
    let printed = pattern.to_string();
    assert!(
        printed.is_ascii() && printed == printed.to_ascii_lowercase(),
        "{printed:?}"
    );
    assert_eq!(
        OriginPattern::parse(&printed).as_ref(),
        Ok(pattern),
        "{printed:?} re-parses differently"
    );

    // The wildcard's contract, on the printed form.
    let Some((scheme, rest)) = printed.split_once("://*.") else {
        return;
    };
    let (suffix, port) = match rest.strip_suffix(":*") {
        Some(s) => (s, ":8443"),
        None => (rest, ""),
    };
    let origin = |host: &str| format!("{scheme}://{host}{port}");
    assert!(
        pattern.matches(&origin(&format!("a.{suffix}"))),
        "one label in front does not match"
    );
    assert!(!pattern.matches(&origin(suffix)), "the bare domain matches a wildcard");
    assert!(
        !pattern.matches(&origin(&format!("a.b.{suffix}"))),
        "two labels match a one-label wildcard"
    );
}

fn check_match(pattern: &OriginPattern, origin: &str) {
    let matched = pattern.matches(origin);
    assert_eq!(
        pattern.matches(&origin.to_ascii_uppercase()),
        matched,
        "case changed the answer"
    );
    assert_eq!(
        pattern.matches(&origin.to_ascii_lowercase()),
        matched,
        "case changed the answer"
    );
    let client = Client {
        allowed_origins: vec![pattern.clone()],
        ..Client::new("fuzz", "fuzz")
    };
    assert_eq!(
        client.origin_allowed(origin),
        matched,
        "origin_allowed is not the pattern's answer"
    );
    if !matched {
        return;
    }
    assert!(
        is_serialized_origin(origin),
        "{origin:?} is not an origin, yet it matched"
    );
    assert!(!origin.contains('*'), "a wildcard in a presented origin matched");
    let exact = OriginPattern::parse(origin).expect("a matching origin is a pattern");
    assert!(exact.matches(origin), "an origin does not match itself");
    assert!(
        pattern.matches(&exact.to_string()),
        "the normalised origin does not match"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let pattern_text = lines.next().unwrap_or("");
    let origin = lines.next().unwrap_or("");
    let label = lines.next();
    let Ok(pattern) = OriginPattern::parse(pattern_text) else {
        return;
    };
    check_pattern(&pattern);
    check_match(&pattern, origin);
    // The pattern with its wildcards filled in, which often matches.
    if let Some(label) = label {
        let filled = pattern_text.replacen('*', label, 1).replace(":*", ":8080");
        check_match(&pattern, &filled);
    }
});
