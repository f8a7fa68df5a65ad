//! Tests of `cli`.

#![allow(clippy::unwrap_used)]
use super::args::parse_listen;
use super::*;

#[test]
fn times_read_as_rfc3339_and_relative() {
    let now = 1_800_000_000;
    assert_eq!(when(now, now), "2027-01-15T08:00:00Z (now)");
    assert_eq!(when(now - 59, now), "2027-01-15T07:59:01Z (59s ago)");
    assert_eq!(relative(60), "in 1m");
    assert_eq!(relative(3 * 3600 + 59), "in 3h");
    assert_eq!(relative(-2 * 86_400), "2d ago");
    assert_eq!(relative(-86_399), "23h ago");
    assert_eq!(when(-5, 0), "-5 (5s ago)");
}

#[test]
fn listen_takes_host_names() {
    assert_eq!(parse_listen("127.0.0.1:8080").unwrap().port(), 8080);
    assert!(parse_listen("localhost:8081").unwrap().ip().is_loopback());
    assert!(parse_listen("[::1]:1").unwrap().is_ipv6());
    assert!(parse_listen("localhost").is_err());
    assert!(parse_listen("no-such-host.invalid:80").is_err());
}
