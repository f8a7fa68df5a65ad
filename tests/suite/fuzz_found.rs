//! What the fuzz targets in `fuzz/` found, kept as tests so that the fixes
//! stay. Each test names the target, the input, and what was wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tokensmith::config::Config;
use tokensmith::jose::{JoseError, JwkSet};
use tokensmith::{Claims, Rejection, Validation};
use tokensmith::{KeySource, StaticKeys};

/// `claims`: a token with `"exp": -9223372036854775808` made the description
/// of its expiry compute `now - exp` with overflow: a panic where overflow
/// checks are on (debug and test builds), a negative number of seconds in a
/// release build. The other two time descriptions had the same subtraction.
#[test]
fn descriptions_of_extreme_dates_do_not_overflow() {
    let claims =
        Claims::from_payload(br#"{"iss":"a","sub":"s","iat":0,"exp":-9223372036854775808,"jti":"j"}"#).unwrap();
    let refused = Validation::new("a").any_audience().check(&claims, 0).unwrap_err();
    assert_eq!(refused, Rejection::Expired { exp: i64::MIN, now: 0 });
    assert_eq!(refused.to_string(), format!("expired {}s ago", i64::MAX));

    let not_yet = Rejection::NotYetValid { nbf: i64::MAX, now: -1 };
    assert_eq!(not_yet.to_string(), format!("not valid for another {}s", i64::MAX));
    let future = Rejection::IssuedInFuture { iat: i64::MAX, now: -1 };
    assert_eq!(future.to_string(), format!("issued {}s in the future", i64::MAX));
}

/// `config`: the redis client reads a Unix socket's password from the
/// query (`redis+unix:///path?pass=…`, `unix:///path?pass=…`), and `Debug`
/// masked only `user:password@`, so the password showed in the config's
/// `Debug`. The query of a session check URL may carry a secret as well.
#[test]
fn debug_masks_credentials_in_a_url_query() {
    for url in [
        "redis+unix:///run/redis/redis.sock?db=2&pass=hunter2",
        "unix:///run/redis/redis.sock?user=app&pass=hunter2",
        "rediss://:hunter2@redis.internal:6380/0?protocol=resp3",
    ] {
        let text = format!("[store]\nbackend = \"redis\"\nredis_url = \"{url}\"\n");
        let config = Config::from_toml_str(&text, Vec::new()).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let store = format!("{:?}", config.store);
        assert!(!store.contains("hunter2"), "{store}");
    }
    let config = Config::from_toml_str(
        "[session]\ncheck_url = \"https://app.example.com/api/whoami?token=hunter3\"\nclient = \"a\"\n\
         [[clients]]\nid = \"a\"\naudience = \"chatbot\"\n",
        Vec::new(),
    )
    .unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter3"), "{shown}");
    assert!(shown.contains("https://app.example.com/api/whoami?***"), "{shown}");
}

/// The RFC 7515 A.3 key, without `kid`.
const A3_JWK: &str = concat!(
    r#"{"kty":"EC","crv":"P-256","#,
    r#""x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#,
);
/// The RFC 7638 key, its `kid` renamed `kid0` by the fuzzer.
const RSA_JWK_KID0: &str = concat!(
    r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjB"#,
    "ZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8",
    "KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_",
    "xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    r#"","e":"AQAB","alg":"RS256","kid0":"2011-04-29"}"#,
);

/// `jwks`: `{"keys":[A3_JWK, RSA_JWK_KID0]}`, two usable keys and no `kid`,
/// gave a `StaticKeys` that held no key at all: every token then failed with
/// `unknown_kid`, and `verify --jwks` or `RemoteJwks` never said why. Such a
/// set is refused, as a set with no usable key is; one key without `kid` is
/// still the key for every token.
#[test]
fn a_jwks_of_keys_without_kid_holds_its_one_key_or_is_refused() {
    let set: JwkSet = serde_json::from_str(&format!(r#"{{"keys":[{A3_JWK},{RSA_JWK_KID0}]}}"#)).unwrap();
    let refused = StaticKeys::from_jwks(&set).unwrap_err();
    assert!(matches!(refused, JoseError::InvalidKey(_)), "{refused:?}");
    assert!(refused.to_string().contains("none has a kid"), "{refused}");

    let one: JwkSet = serde_json::from_str(&format!(r#"{{"keys":[{A3_JWK}]}}"#)).unwrap();
    let keys = StaticKeys::from_jwks(&one).unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys.key_for(Some("any kid")).is_ok());
    assert!(keys.key_for(None).is_ok());
}
