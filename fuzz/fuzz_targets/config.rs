//! The config loader: `Config::from_toml_str` with arbitrary text and
//! environment variables.
//!
//! Input: TOML text, then optionally a NUL byte and `NAME=VALUE` lines (the
//! environment). Invariants:
//! - the answer does not depend on the order of the variables;
//! - an accepted config keeps every promise of the checks: default TTL
//!   within max TTL, leeway at most 1h, a positive capacity and timeouts,
//!   each client within the token limits with guest scopes among its
//!   scopes and no reserved claim, origin patterns that print and re-parse
//!   to themselves, a session naming a client, and a client registry that
//!   builds from it;
//! - `Debug` of an accepted config never shows a credential that the redis
//!   client or the HTTP client would read from `store.redis_url` or
//!   `session.check_url` (userinfo, or redis's `?user=…&pass=…`);
//! - a refusal has a description.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokensmith::fuzzing::{ClientRegistry, Config, OriginPattern};

/// The claims no client may fix (API.md: registered claims and `client_id`).
const RESERVED: [&str; 10] = [
    "iss",
    "sub",
    "aud",
    "iat",
    "exp",
    "nbf",
    "jti",
    "scopes",
    "scope",
    "client_id",
];

fn env_pairs(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Names of query parameters that carry credentials: the redis client reads
/// a Unix socket's user and password from `?user=…&pass=…`.
const QUERY_CREDENTIALS: [&str; 2] = ["user", "pass"];

/// `url` as a URL parser (the one reqwest and redis use) reads it, with every
/// credential in it (userinfo, and the query parameters above) set to `value`.
fn with_credentials(url: &str, value: &str) -> Option<String> {
    let mut parsed = url::Url::parse(url).ok()?;
    if !parsed.username().is_empty() {
        parsed.set_username(value).ok()?;
    }
    if parsed.password().is_some() {
        parsed.set_password(Some(value)).ok()?;
    }
    let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    if pairs.iter().any(|(k, _)| QUERY_CREDENTIALS.contains(&k.as_str())) {
        let pairs = pairs.into_iter().map(|(k, v)| {
            let v = if QUERY_CREDENTIALS.contains(&k.as_str()) {
                value.to_owned()
            } else {
                v
            };
            (k, v)
        });
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Some(parsed.to_string())
}

/// The config's `Debug` does not depend on the credentials of the URL that
/// `set` puts in it: the same URL with two different credentials shows the
/// same. (Comparing two spellings a URL parser made, rather than looking
/// for the secret's text, keeps a secret that is also, say, the host or a
/// client id from being reported.)
fn assert_masked(config: &Config, url: &str, set: impl Fn(&mut Config, String)) {
    let (Some(a), Some(b)) = (with_credentials(url, "hunter2a"), with_credentials(url, "hunter2b")) else {
        return;
    };
    let mut with_a = config.clone();
    set(&mut with_a, a);
    let mut with_b = config.clone();
    set(&mut with_b, b);
    let (shown_a, shown_b) = (format!("{with_a:?}"), format!("{with_b:?}"));
    assert_eq!(shown_a, shown_b, "Debug shows a credential of a URL");
}

fn check_accepted(config: &Config) {
    let tokens = &config.tokens;
    assert!(!tokens.default_ttl.is_zero() && tokens.default_ttl <= tokens.max_ttl);
    assert!(tokens.leeway <= Duration::from_secs(3600));
    assert!(config.store.capacity > 0);
    assert!(!config.store.timeout.is_zero());
    for client in &config.clients {
        assert!(!client.max_ttl.is_zero() && client.max_ttl <= tokens.max_ttl);
        assert!(!client.refresh_ttl.is_zero() && client.refresh_ttl <= client.refresh_family_ttl);
        assert!(client.guest_scopes.iter().all(|s| client.scopes.contains(s)));
        assert!(RESERVED.iter().all(|r| !client.claims.contains_key(*r)));
        assert!(client.allowed_claims.iter().all(|c| !RESERVED.contains(&c.as_str())));
        for pattern in &client.allowed_origins {
            let printed = pattern.to_string();
            assert_eq!(
                OriginPattern::parse(&printed).as_ref(),
                Ok(pattern),
                "{printed:?} re-parses differently"
            );
        }
    }
    if let Some(session) = &config.session {
        assert!(config.clients.iter().any(|c| c.id == session.client));
        assert!(!session.timeout.is_zero());
        assert!(session.cache_ttl <= Duration::from_secs(10));
    }
    if let Err(e) = ClientRegistry::from_clients(&config.clients) {
        panic!("an accepted config's clients do not make a registry: {e}");
    }

    assert_masked(config, &config.store.redis_url, |c, url| c.store.redis_url = url);
    if let Some(session) = &config.session {
        assert_masked(config, &session.check_url, |c, url| {
            if let Some(s) = c.session.as_mut() {
                s.check_url = url;
            }
        });
    }
}

fuzz_target!(|data: &[u8]| {
    let (text, env) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let env = env_pairs(&String::from_utf8_lossy(env));
    let result = Config::from_toml_str(text, env.clone());
    let reversed: Vec<_> = env.into_iter().rev().collect();
    assert_eq!(
        Config::from_toml_str(text, reversed),
        result,
        "the order of the variables changed the answer"
    );
    match result {
        Ok(config) => check_accepted(&config),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
