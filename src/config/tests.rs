//! Tests of the whole path: text and variables in, a checked `Config` or
//! the message that names the key out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::clients::{api_key_hash, ClientRegistry, OriginPattern};
use crate::units::RateLimit;

/// `sha256:` line of the key `sk_live_example`.
const EXAMPLE_KEY: &str = "sk_live_example";
const EXAMPLE_HASH: &str = "sha256:edc0244907453860f53b31a05089a2a9f0fdb349e3610b2ab88a36fd9719d7fa";

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

pub(super) fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn err(text: &str) -> String {
    match Config::from_toml_str(text, no_env()) {
        Ok(c) => panic!("accepted {text:?}: {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// A valid client the validation cases extend.
pub(super) fn client(extra: &str) -> String {
    format!("[[clients]]\nid = \"a\"\naudience = \"chatbot\"\n{extra}\n")
}

fn session(body: &str) -> String {
    format!("[session]\n{body}\n{}", client(""))
}

/// The API.md example, with real hash lines. API.md's `session.client`
/// names a client `app` it does not define, so one is added.
fn example() -> String {
    format!(
        r##"
issuer = "http://127.0.0.1:8080"   # the iss claim, and the discovery issuer
listen = "127.0.0.1:8080"

[keys]
dir = "keys"
algorithm = "RS256"
rsa_bits = 2048
rotate_every = "30d"      # the server rotates by itself on this schedule
publish_ahead = "1h"      # a new key is in the JWKS this long before it signs

[tokens]
default_ttl = "5m"
max_ttl = "24h"           # hard cap for every client
leeway = "60s"            # clock skew allowed on exp/nbf/iat

[store]                   # jti replay marks, revocations, refresh tokens, rate limits
backend = "memory"        # memory | redis
redis_url = "redis://127.0.0.1:6379"

[session]                 # optional: exchange an existing app session for a token
check_url = "https://app.example.com/api/whoami"   # gets the caller's Cookie and Authorization headers
client = "app"

[[clients]]
id = "shop_123"
audience = "chatbot"                 # default aud of tokens for this client
api_keys = ["{EXAMPLE_HASH}"]              # hashes printed by `tokensmith apikey create`
public_key = "pk_live_shop123pub"             # for guest tokens and the public config
allowed_origins = ["https://shop.example.com"]
scopes = ["read:orders", "write:orders", "chat"]   # the most a token of this client may carry
max_ttl = "30m"
claims = {{ storeId = "st_1", appId = "app_9", installationId = "in_4" }}
rate_limit = "20/s"                  # N/s, N/m or N/h; shared by all instances on Redis
guest_scopes = ["chat"]              # scopes of guest tokens (subset of scopes)
refresh_ttl = "24h"                  # lifetime of one refresh token
refresh_family_ttl = "30d"           # absolute lifetime of a refresh-token family
config = {{ displayName = "Support", color = "#3366ff" }}  # public bootstrap config

[[clients]]
id = "app"
audience = "app"
"##
    )
}

#[test]
fn embedded_defaults_are_api_md() {
    let c = Config::embedded();
    assert_eq!(c.issuer, "http://127.0.0.1:8080");
    assert_eq!(c.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(c.keys.dir, PathBuf::from("keys"));
    assert_eq!(c.keys.algorithm, Algorithm::RS256);
    assert_eq!(c.keys.rsa_bits, 2048);
    assert_eq!(c.keys.rotate_every, Duration::from_secs(30 * 86400));
    assert_eq!(c.keys.publish_ahead, Duration::from_secs(3600));
    assert_eq!(c.tokens.default_ttl, Duration::from_secs(300));
    assert_eq!(c.tokens.max_ttl, Duration::from_secs(86400));
    assert_eq!(c.tokens.leeway, Duration::from_secs(60));
    assert_eq!(c.store.backend, StoreBackend::Memory);
    assert_eq!(c.store.redis_url, "redis://127.0.0.1:6379");
    assert_eq!(c.store.capacity, 1_000_000);
    assert_eq!(c.store.timeout, Duration::from_millis(500));
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.server.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.server.max_connections, None);
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(10));
    assert_eq!(c.server.metrics_listen, None);
    assert!(c.session.is_none());
    assert!(c.clients.is_empty());
    // An empty file is exactly the embedded defaults.
    assert_eq!(Config::from_toml_str("", no_env()).unwrap(), c);
    // The documented defaults written out say the same.
    let text: String = example().split("[session]").next().unwrap().to_owned();
    let mut written = c.clone();
    written.keys.algorithm_set = true;
    assert_eq!(Config::from_toml_str(&text, no_env()).unwrap(), written);
}

#[test]
fn the_api_md_example_parses() {
    let c = Config::from_toml_str(&example(), no_env()).unwrap();
    let s = c.session.as_ref().unwrap();
    assert_eq!(s.check_url, "https://app.example.com/api/whoami");
    assert_eq!(s.client, "app");
    assert_eq!(s.timeout, Duration::from_secs(2));
    assert_eq!(s.cache_ttl, Duration::ZERO);
    assert_eq!(c.clients.len(), 2);
    let shop = &c.clients[0];
    assert_eq!(shop.id, "shop_123");
    assert_eq!(shop.audience, "chatbot");
    assert_eq!(shop.api_keys, vec![api_key_hash(EXAMPLE_KEY)]);
    assert_eq!(shop.public_key.as_deref(), Some("pk_live_shop123pub"));
    assert_eq!(
        shop.allowed_origins,
        vec![OriginPattern::parse("https://shop.example.com").unwrap()]
    );
    assert_eq!(shop.max_ttl, Duration::from_secs(1800));
    assert_eq!(shop.claims["storeId"], "st_1");
    assert_eq!(shop.claims["installationId"], "in_4");
    assert_eq!(
        shop.rate_limit,
        Some(RateLimit {
            count: 20,
            per: Duration::from_secs(1)
        })
    );
    assert_eq!(shop.guest_scopes, vec!["chat"]);
    assert_eq!(shop.refresh_ttl, Duration::from_secs(86400));
    assert_eq!(shop.refresh_family_ttl, Duration::from_secs(30 * 86400));
    assert_eq!(shop.config["color"], "#3366ff");
    // Defaults of a client.
    let app = &c.clients[1];
    assert_eq!(app.max_ttl, c.tokens.max_ttl);
    assert_eq!(app.refresh_ttl, Duration::from_secs(86400));
    assert!(app.api_keys.is_empty() && app.rate_limit.is_none() && app.claims.is_empty());
    // The registry accepts what the config accepted.
    let reg = ClientRegistry::from_clients(&c.clients).unwrap();
    assert_eq!(reg.by_api_key(EXAMPLE_KEY).unwrap().id, "shop_123");
    assert!(reg
        .by_public_key("pk_live_shop123pub")
        .unwrap()
        .origin_allowed("https://shop.example.com"));
}

#[test]
fn a_client_in_code_has_the_defaults_of_a_bare_entry() {
    let c = Config::from_toml_str(&client(""), no_env()).unwrap();
    assert_eq!(c.clients, vec![Client::new("a", "chatbot")]);
}

#[test]
fn uppercase_hex_and_extensions_parse() {
    let upper = EXAMPLE_HASH.to_ascii_uppercase().replace("SHA256:", "sha256:");
    let text = client(&format!(
        "api_keys = [\"{upper}\"]\naudiences = [\"other\"]\nallowed_claims = [\"plan\"]\nmax_ttl = 600\n\
         claims = {{ nested = {{ a = [1, 2] }}, when = 1979-05-27 }}"
    ));
    let c = Config::from_toml_str(&text, no_env()).unwrap();
    let a = &c.clients[0];
    assert_eq!(a.api_keys, vec![api_key_hash(EXAMPLE_KEY)]);
    assert_eq!(a.audiences, vec!["other"]);
    assert_eq!(a.allowed_claims, vec!["plan"]);
    assert_eq!(a.max_ttl, Duration::from_secs(600));
    assert_eq!(a.claims["nested"]["a"][1], 2);
    assert_eq!(a.claims["when"], "1979-05-27");
}

/// Every rule: (file, the start of the message, a part of the rest).
#[test]
fn every_rule_names_its_key() {
    let long = "x".repeat(65);
    #[rustfmt::skip]
    let cases: Vec<(String, &str, &str)> = vec![
        // unknown keys, anywhere
        ("colour = 1".into(), "colour: unknown key", "expected"),
        ("[sesion]\nclient = \"a\"".into(), "sesion: unknown key", ""),
        ("[keys]\nrotat = \"1d\"".into(), "keys.rotat: unknown key", "rotate_every"),
        ("[store]\nbackend = \"memory\"\nsize = 3".into(), "store.size: unknown key", ""),
        (client("colour = \"red\""), "clients[0] (a).colour: unknown key", "audience"),
        (format!("{}[[clients]]\nid = \"b\"\naudience = \"x\"\nfoo = 1", client("")), "clients[1] (b).foo: unknown key", ""),
        // types
        ("[keys]\nrsa_bits = \"big\"".into(), "keys.rsa_bits: invalid type", "u32"),
        ("keys = 3".into(), "keys: invalid type", "a table"),
        (client("scopes = \"read\""), "clients[0] (a).scopes: invalid type", ""),
        ("[tokens]\nmax_ttl = true".into(), "tokens.max_ttl: invalid type", "a duration"),
        ("[tokens]\nmax_ttl = -5".into(), "tokens.max_ttl: invalid value", ""),
        // durations
        ("[keys]\nrotate_every = \"3x\"".into(), "keys.rotate_every: invalid duration \"3x\"", ""),
        ("[tokens]\ndefault_ttl = \"\"".into(), "tokens.default_ttl: empty duration", ""),
        ("[tokens]\nmax_ttl = \"0s\"".into(), "tokens.max_ttl: must be above zero", ""),
        ("[tokens]\ndefault_ttl = \"1500ms\"".into(), "tokens.default_ttl: 1500ms is not a whole number", ""),
        ("[tokens]\ndefault_ttl = \"25h\"".into(), "tokens.default_ttl: 25h is above tokens.max_ttl 24h", ""),
        ("[tokens]\nleeway = \"2h\"".into(), "tokens.leeway: 2h is absurd", ""),
        ("[keys]\npublish_ahead = \"30d\"".into(), "keys.publish_ahead: 30d is not below keys.rotate_every 30d", ""),
        ("[keys]\nrotate_every = \"1h\"\npublish_ahead = \"2h\"".into(), "keys.publish_ahead: 2h is not below", ""),
        // keys
        ("[keys]\nrsa_bits = 1024".into(), "keys.rsa_bits: 1024 is not 2048, 3072 or 4096", ""),
        ("[keys]\nalgorithm = \"HS256\"".into(), "keys.algorithm: \"HS256\" is not one of", "EdDSA"),
        ("[keys]\nalgorithm = \"none\"".into(), "keys.algorithm: \"none\"", ""),
        ("[keys]\nalgorithm = \"rs256\"".into(), "keys.algorithm: \"rs256\"", ""),
        ("[keys]\ndir = \"\"".into(), "keys.dir: is empty", ""),
        // issuer and listen
        ("issuer = \"ftp://auth.example\"".into(), "issuer: \"ftp://auth.example\" is not an http(s) URL", ""),
        ("issuer = \"auth.example\"".into(), "issuer: ", "http(s)"),
        ("issuer = \"https://\"".into(), "issuer: ", "no host"),
        ("issuer = \"https://a.example/?x=1\"".into(), "issuer: ", "query"),
        ("issuer = \"https://u:p@a.example\"".into(), "issuer: ", "credentials"),
        ("issuer = \"https://a example\"".into(), "issuer: ", "whitespace"),
        ("listen = \"localhost:8080\"".into(), "listen: \"localhost:8080\" is not a socket address", ""),
        ("listen = \"8080\"".into(), "listen: ", "socket address"),
        // store
        ("[store]\nbackend = \"mysql\"".into(), "store.backend: \"mysql\" is not memory or redis", ""),
        ("[store]\ncapacity = 0".into(), "store.capacity: must be above zero", ""),
        ("[store]\ntimeout = \"0ms\"".into(), "store.timeout: must be above zero", ""),
        ("[store]\nredis_url = \"http://:hunter2@r\"".into(), "store.redis_url: is not a redis://", ""),
        // session
        (session("check_url = \"https://a.example/me\"\nclient = \"nobody\""), "session.client: \"nobody\" names no client", ""),
        (session("client = \"a\""), "session.check_url: missing", ""),
        (session("check_url = \"https://a.example/me\""), "session.client: missing", ""),
        (session("check_url = \"a.example/me\"\nclient = \"a\""), "session.check_url: ", "http(s)"),
        (session("check_url = \"https://a.example/me\"\nclient = \"a\"\ncache_ttl = \"30s\""), "session.cache_ttl: 30s is above 10s", ""),
        (session("check_url = \"https://a.example/me\"\nclient = \"a\"\ntimeout = \"0s\""), "session.timeout: must be above zero", ""),
        (session("check_url = \"http://app.example.com/me\"\nclient = \"a\""), "session.check_url: \"http://app.example.com/me\" must use https", "session.allow_http = true"),
        (session("check_url = \"http://10.0.0.1/me\"\nclient = \"a\"\nallow_http = false"), "session.check_url: ", "must use https"),
        (session("check_url = \"http://localhost.evil.com/me\"\nclient = \"a\""), "session.check_url: ", "must use https"),
        (session("check_url = \"https://a.example:99999/me\"\nclient = \"a\""), "session.check_url: ", "must use https"),
        (session("check_url = \"https://a.example/me\"\nclient = \"a\"\nallow_http = \"yes\""), "session.allow_http: invalid type", ""),
        // server
        ("[server]\nheader_read_timeout = \"11s\"".into(), "server.header_read_timeout: 11s is above 10s", ""),
        ("[server]\nheader_read_timeout = \"0s\"".into(), "server.header_read_timeout: must be above zero", ""),
        ("[server]\nheader_read_timeout = \"soon\"".into(), "server.header_read_timeout: invalid duration", ""),
        ("[server]\nidle_timeout = \"0s\"".into(), "server.idle_timeout: must be above zero", ""),
        ("[server]\nmax_connections = 0".into(), "server.max_connections: must be above zero", ""),
        ("[server]\nmax_connections = -3".into(), "server.max_connections: invalid value", ""),
        ("[server]\nshutdown_grace = \"1x\"".into(), "server.shutdown_grace: invalid duration", ""),
        ("[server]\nmetrics_listen = \"localhost:9090\"".into(), "server.metrics_listen: \"localhost:9090\" is not a socket address", ""),
        ("[server]\nmetrics_listen = \"127.0.0.1:8080\"".into(), "server.metrics_listen: 127.0.0.1:8080 is the main listen address", ""),
        ("[server]\nkeepalive = \"5s\"".into(), "server.keepalive: unknown key", "idle_timeout"),
        // clients
        ("[[clients]]\naudience = \"x\"".into(), "clients[0].id: missing", ""),
        (format!("[[clients]]\nid = \"{long}\"\naudience = \"x\""), "clients[0].id: ", "1 to 64"),
        ("[[clients]]\nid = \"a b\"\naudience = \"x\"".into(), "clients[0].id: \"a b\" is not", ""),
        ("[[clients]]\nid = \"a\"".into(), "clients[0] (a).audience: missing", ""),
        ("[[clients]]\nid = \"a\"\naudience = \"\"".into(), "clients[0] (a).audience: is empty", ""),
        (client("audiences = [\"\"]"), "clients[0] (a).audiences[0]: is empty", ""),
        (client("audiences = [\"http://127.0.0.1:8080/v1/exchange\"]"), "clients[0] (a).audiences[0]: ", "reserved"),
        (format!("{}[[clients]]\nid = \"shop_123\"\naudience = \"x\"\nmax_ttl = \"48h\"", client("")), "clients[1] (shop_123).max_ttl: 48h is above tokens.max_ttl 24h", ""),
        (client("max_ttl = \"0s\""), "clients[0] (a).max_ttl: must be above zero", ""),
        (client("scopes = [\"read\"]\nguest_scopes = [\"admin\"]"), "clients[0] (a).guest_scopes: \"admin\" is not in scopes", ""),
        (client("scopes = [\"read orders\"]"), "clients[0] (a).scopes[0]: \"read orders\" is not a scope", ""),
        (format!("{}{}", client(""), client("")), "clients[1] (a).id: duplicate of clients[0] (a)", ""),
        (format!("{}[[clients]]\nid = \"b\"\naudience = \"x\"\npublic_key = \"pk_live_same\"\n", client("public_key = \"pk_live_same\"")), "clients[1] (b).public_key: same public key as clients[0] (a)", ""),
        (client("public_key = \"pub/../x\""), "clients[0] (a).public_key: ", "pk_"),
        (format!("{}[[clients]]\nid = \"b\"\naudience = \"x\"\napi_keys = [\"{EXAMPLE_HASH}\"]\n", client(&format!("api_keys = [\"{EXAMPLE_HASH}\"]"))), "clients[1] (b).api_keys[0]: same key as clients[0] (a)", ""),
        (client(&format!("api_keys = [\"{EXAMPLE_HASH}\", \"{EXAMPLE_HASH}\"]")), "clients[0] (a).api_keys[1]: listed twice", ""),
        (client(&format!("api_keys = [\"{}\"]", &EXAMPLE_HASH[7..])), "clients[0] (a).api_keys[0]: expected \"sha256:\"", ""),
        (client("api_keys = [\"sha256:edc0\"]"), "clients[0] (a).api_keys[0]: expected 64 hex digits", ""),
        (client(&format!("api_keys = [\"{}\"]", EXAMPLE_HASH.replace('e', "g"))), "clients[0] (a).api_keys[0]: ", "non-hex"),
        (client("allowed_origins = [\"https://shop.example.com/\"]"), "clients[0] (a).allowed_origins[0]: ", "no path"),
        (client("allowed_origins = [\"null\"]"), "clients[0] (a).allowed_origins[0]: \"null\" is never allowed", ""),
        (client("allowed_origins = [\"https://*.com\"]"), "clients[0] (a).allowed_origins[0]: ", "two labels"),
        (client("claims = { sub = \"x\" }"), "clients[0] (a).claims.sub: \"sub\" is a registered claim", ""),
        (client("claims = { scopes = [\"x\"] }"), "clients[0] (a).claims.scopes: ", "registered"),
        (client("claims = { iss = \"x\" }"), "clients[0] (a).claims.iss: ", "registered"),
        (client("claims = { jti = \"x\" }"), "clients[0] (a).claims.jti: ", "registered"),
        (client("claims = { client_id = \"x\" }"), "clients[0] (a).claims.client_id: ", "registered"),
        (client("allowed_claims = [\"client_id\"]"), "clients[0] (a).allowed_claims[0]: ", "registered"),
        (client("allowed_claims = [\"exp\"]"), "clients[0] (a).allowed_claims[0]: \"exp\" is a registered claim", ""),
        (client("claims = { plan = \"x\" }\nallowed_claims = [\"plan\"]"), "clients[0] (a).allowed_claims[0]: ", "fixed"),
        (client("rate_limit = \"0/s\""), "clients[0] (a).rate_limit: \"0/s\" allows nothing", ""),
        (client("rate_limit = \"20/d\""), "clients[0] (a).rate_limit: \"20/d\" is not a rate", ""),
        (client("rate_limit = \"fast\""), "clients[0] (a).rate_limit: ", "20/s"),
        (client("rate_limit = \"99999999999/s\""), "clients[0] (a).rate_limit: ", "too large"),
        (client("refresh_ttl = \"40d\""), "clients[0] (a).refresh_ttl: 40d is above refresh_family_ttl 30d", ""),
        (client("refresh_family_ttl = \"nope\""), "clients[0] (a).refresh_family_ttl: invalid duration", ""),
    ];
    for (text, start, part) in cases {
        let msg = err(&text);
        assert!(
            msg.starts_with(start),
            "for {text:?}\n  got:      {msg}\n  expected: {start}…"
        );
        assert!(msg.contains(part), "for {text:?}\n  got: {msg}\n  lacks: {part}");
    }
}

#[test]
fn messages_never_echo_secrets() {
    let msg = err(&client(
        "api_keys = [\"sk_live_THISISASECRETKEYTHISISASECRETKEY12345678\"]",
    ));
    assert!(
        msg.starts_with("clients[0] (a).api_keys[0]: this is an API key itself"),
        "{msg}"
    );
    assert!(!msg.contains("THISISASECRET"), "{msg}");
    let msg = err(&client("public_key = \"sk_live_THISISASECRETKEY\""));
    assert!(
        msg.starts_with("clients[0] (a).public_key: this is an API key"),
        "{msg}"
    );
    assert!(!msg.contains("THISISASECRET"), "{msg}");
    let msg = err("issuer = \"https://u:hunter2@a.example\"");
    assert!(!msg.contains("hunter2"), "{msg}");
    let msg = err("[store]\nredis_url = \"http://:hunter2@r\"");
    assert!(!msg.contains("hunter2"), "{msg}");
    let msg = err(&format!(
        "[session]\ncheck_url = \"ftp://u:hunter2@a.example\"\nclient = \"a\"\n{}",
        client("")
    ));
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[test]
fn the_server_section_reads_every_key() {
    let text = "[server]\nheader_read_timeout = \"2500ms\"\nidle_timeout = \"75s\"\nmax_connections = 500\n\
                shutdown_grace = \"0s\"\nmetrics_listen = \"127.0.0.1:9090\"\n";
    let s = Config::from_toml_str(text, no_env()).unwrap().server;
    assert_eq!(s.header_read_timeout, Duration::from_millis(2500));
    assert_eq!(s.idle_timeout, Duration::from_secs(75));
    assert_eq!(s.max_connections, Some(500));
    // No grace at all is allowed: connections close at once.
    assert_eq!(s.shutdown_grace, Duration::ZERO);
    assert_eq!(s.metrics_listen, Some("127.0.0.1:9090".parse().unwrap()));
    // The bound itself is allowed.
    let s = Config::from_toml_str("[server]\nheader_read_timeout = 10\n", no_env())
        .unwrap()
        .server;
    assert_eq!(s.header_read_timeout, Duration::from_secs(10));
}

#[test]
fn a_cleartext_session_check_needs_loopback_or_allow_http() {
    for url in [
        "https://app.example.com/me",
        "http://127.0.0.1:3000/me",
        "http://[::1]/me",
        "http://localhost/me",
    ] {
        let c = Config::from_toml_str(&session(&format!("check_url = \"{url}\"\nclient = \"a\"")), no_env()).unwrap();
        assert!(!c.session.unwrap().allow_http, "{url}");
    }
    let text = session("check_url = \"http://app.internal/me\"\nclient = \"a\"\nallow_http = true");
    let c = Config::from_toml_str(&text, no_env()).unwrap();
    let s = c.session.unwrap();
    assert!(s.allow_http);
    assert_eq!(s.check_url, "http://app.internal/me");
    // The refusal masks credentials, as every message about this URL does.
    let msg = err(&session(
        "check_url = \"http://svc:hunter2@app.example.com/me\"\nclient = \"a\"",
    ));
    assert!(msg.contains("must use https") && !msg.contains("hunter2"), "{msg}");
}

#[test]
fn syntax_errors_say_where() {
    let e = Config::from_toml_str("issuer = \"x\"\nlisten = \n", no_env()).unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e:?}");
    assert!(e.to_string().starts_with("config: line 2, column "), "{e}");
}

#[test]
fn load_reads_the_given_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, "[tokens]\ndefault_ttl = \"2m\"\n").unwrap();
    let c = Config::load(Some(&path), no_env()).unwrap();
    assert_eq!(c.tokens.default_ttl, Duration::from_secs(120));

    std::fs::write(&path, "[tokens]\ndefault_ttl = \"2x\"\n").unwrap();
    let e = Config::load(Some(&path), no_env()).unwrap_err();
    assert!(e.to_string().starts_with("tokens.default_ttl: invalid duration"), "{e}");

    std::fs::write(&path, "[tokens\n").unwrap();
    let e = Config::load(Some(&path), no_env()).unwrap_err();
    assert!(e.to_string().starts_with(&format!("{}: line 1", path.display())), "{e}");

    // An explicit file that is missing is an error, not the defaults.
    let e = Config::load(Some(&dir.path().join("missing.toml")), no_env()).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("missing.toml"), "{e}");
}

#[test]
fn debug_keeps_credentials_and_hashes_out() {
    let mut c = Config::from_toml_str(&example(), no_env()).unwrap();
    c.store.redis_url = "redis://:hunter2@r:6379/0".to_owned();
    c.session.as_mut().unwrap().check_url = "https://svc:hunter3@app.example.com/me".to_owned();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2") && !dbg.contains("hunter3"), "{dbg}");
    assert!(dbg.contains("redis://***@r:6379/0"), "{dbg}");
    assert!(!dbg.contains(&EXAMPLE_HASH["sha256:".len()..]), "{dbg}");
    assert!(dbg.contains("sha256:edc02449…"), "{dbg}");
}
