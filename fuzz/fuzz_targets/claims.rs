//! Claims parsing (`Claims::from_payload`) and `Validation::check`.
//!
//! Input: an optional first line holding a number of seconds, then the
//! payload. The number moves "now" away from the token's `iat`, so that
//! the fuzzer reaches both sides of every time rule. Invariants:
//! - `from_payload` is no looser than the strict JSON reader: what it
//!   accepts is one strict object whose registered claims it reports;
//! - accepted claims written with `to_json` read back to the same claims
//!   (less a `scope` member, which `to_json` writes as `scopes`);
//! - `check` accepts only claims that meet every rule of API.md's "Tokens"
//!   section (checked here independently), a token is expired from
//!   `exp + leeway` on, and every refusal has a code and a description.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokensmith::fuzzing::{parse_object, Claims, Rejection, Validation};
use tokensmith_fuzz::same_map;

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "api";

/// What `check` must have made sure of when it accepts.
fn assert_meets_rules(v: &Validation, c: &Claims, now: i64, audience: Option<&str>, scopes: &[String]) {
    let leeway = i128::from(v.leeway);
    let (now, exp, iat) = (i128::from(now), i128::from(c.exp), i128::from(c.iat));
    assert!(now < exp + leeway, "accepted an expired token");
    assert!(iat <= now + leeway, "accepted a token issued in the future");
    if let Some(nbf) = c.nbf {
        assert!(i128::from(nbf) <= now + leeway, "accepted a token before its nbf");
    }
    assert!(exp - iat <= i128::from(v.max_ttl), "accepted a lifetime over max_ttl");
    assert_eq!(c.iss, v.issuer, "accepted another issuer");
    match audience {
        Some(aud) => assert!(c.aud.iter().any(|a| a == aud), "accepted another audience"),
        None => assert!(v.any_audience, "accepted a token with no audience to check"),
    }
    assert!(!c.sub.is_empty() && !c.jti.is_empty(), "accepted an empty sub or jti");
    for s in scopes {
        assert!(c.scopes.contains(s), "accepted a token without the scope {s:?}");
    }
}

fn described(r: &Rejection) {
    assert!(!r.code().is_empty());
    assert!(!r.to_string().is_empty(), "a rejection without a description");
}

fn check(v: &Validation, c: &Claims, now: i64) {
    match v.check(c, now) {
        Ok(()) => assert_meets_rules(v, c, now, v.audience.as_deref(), &v.required_scopes),
        Err(r) => described(&r),
    }
    // The request's own audience and no scopes: the path of /v1/verify.
    let aud = c.aud.first().map(String::as_str);
    match v.check_for(c, now, aud, &[]) {
        Ok(()) => assert_meets_rules(v, c, now, aud, &[]),
        Err(r) => described(&r),
    }
    let expiry = c.exp.saturating_add(v.leeway);
    match v.check(c, expiry) {
        Err(r @ Rejection::Expired { .. }) => described(&r),
        other => panic!("at exp + leeway the answer was {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let (offset, payload) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => match std::str::from_utf8(&data[..i]).ok().and_then(|s| s.parse::<i64>().ok()) {
            Some(n) => (n, &data[i + 1..]),
            None => (0, data),
        },
        None => (0, data),
    };
    let strict = parse_object(payload, "the claims");
    let claims = match Claims::from_payload(payload) {
        Ok(c) => c,
        Err(r) => {
            described(&r);
            return;
        }
    };
    let object = strict.expect("from_payload accepted what the strict JSON reader refuses");
    assert_eq!(object.get("iss"), Some(&Value::String(claims.iss.clone())));
    assert_eq!(object.get("sub"), Some(&Value::String(claims.sub.clone())));
    assert_eq!(object.get("jti"), Some(&Value::String(claims.jti.clone())));
    for name in ["iat", "exp"] {
        assert!(object.get(name).is_some_and(Value::is_number), "{name} is not a number");
    }

    let written = claims.to_json();
    let read = Claims::from_payload(&written).expect("to_json wrote claims from_payload refuses");
    let mut expected = claims.clone();
    expected.extra.remove("scope");
    // Extra claims compared as JSON, floats to within an ulp (see `same_json`).
    assert!(
        same_map(&read.extra, &expected.extra),
        "extra claims changed in a round trip: {read:?}"
    );
    expected.extra = read.extra.clone();
    assert_eq!(read, expected, "claims changed in a round trip through to_json");
    assert_ne!(claims.to_value(), Value::Null);

    let now = claims.iat.saturating_add(offset);
    let strict_v = Validation::new(ISSUER).audience(AUDIENCE).scopes(["read"]);
    // The token's own issuer, so that the later rules are reached too.
    let loose_v = Validation::new(claims.iss.clone()).any_audience();
    for v in [&strict_v, &loose_v] {
        check(v, &claims, now);
    }
});
