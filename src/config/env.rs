//! The `TOKENSMITH_*` environment overlay.
//!
//! This module owns which variables exist and how each is written into the
//! TOML table before it is read, so that one set of checks serves the file
//! and the environment alike, and a message can name the variable a value
//! came from. It must never read the process environment (the variables
//! arrive as a parameter) nor judge a value; `[[clients]]` cannot be set
//! from here at all.

use super::{join, ConfigError};

const ENV_PREFIX: &str = "TOKENSMITH_";
/// The log filter: read by the binary's logging set-up, not by this module.
const ENV_LOG: &str = "TOKENSMITH_LOG";
/// The address `serve --dev` writes into `keys/dev.env` for a shell to
/// `source`: for curl and the examples, not a setting of this process. A
/// command run in that shell must not refuse it as unknown.
const ENV_URL: &str = "TOKENSMITH_URL";

#[derive(Clone, Copy)]
enum EnvKind {
    Text,
    Integer,
    /// Text, or digits alone meaning seconds (`TOKENSMITH_TOKENS_DEFAULT_TTL=300`).
    Duration,
    /// `true` or `false`.
    Bool,
    /// Comma-separated text (`TOKENSMITH_STORE_REDIS_CLUSTER=redis://a:1,redis://b:2`).
    List,
}

/// Every setting a variable may override: (section, key, kind). Keys contain
/// underscores, so a variable is matched against these whole names rather
/// than split at an underscore. `[[clients]]` is deliberately absent.
const ENV_SETTINGS: [(&str, &str, EnvKind); 35] = [
    ("", "issuer", EnvKind::Text),
    ("", "listen", EnvKind::Text),
    ("keys", "dir", EnvKind::Text),
    ("keys", "algorithm", EnvKind::Text),
    ("keys", "rsa_bits", EnvKind::Integer),
    ("keys", "rotate_every", EnvKind::Duration),
    ("keys", "publish_ahead", EnvKind::Duration),
    ("tokens", "default_ttl", EnvKind::Duration),
    ("tokens", "max_ttl", EnvKind::Duration),
    ("tokens", "leeway", EnvKind::Duration),
    ("store", "backend", EnvKind::Text),
    ("store", "redis_url", EnvKind::Text),
    ("store", "capacity", EnvKind::Integer),
    ("store", "timeout", EnvKind::Duration),
    ("store", "redis_cluster", EnvKind::List),
    ("store", "redis_wait_replicas", EnvKind::Integer),
    ("store", "redis_ca_file", EnvKind::Text),
    ("store", "redis_client_cert_file", EnvKind::Text),
    ("store", "redis_client_key_file", EnvKind::Text),
    ("server", "header_read_timeout", EnvKind::Duration),
    ("server", "idle_timeout", EnvKind::Duration),
    ("server", "max_connections", EnvKind::Integer),
    ("server", "shutdown_grace", EnvKind::Duration),
    ("server", "metrics_listen", EnvKind::Text),
    ("server", "publish_scopes", EnvKind::Bool),
    ("session", "check_url", EnvKind::Text),
    ("session", "client", EnvKind::Text),
    ("session", "timeout", EnvKind::Duration),
    ("session", "cache_ttl", EnvKind::Duration),
    ("session", "allow_http", EnvKind::Bool),
    ("dpop", "iat_window", EnvKind::Duration),
    ("dpop", "require_nonce", EnvKind::Bool),
    ("dpop", "nonce_secret", EnvKind::Text),
    ("dpop", "nonce_lifetime", EnvKind::Duration),
    ("dpop", "external_url", EnvKind::Text),
];

fn env_var_name(section: &str, key: &str) -> String {
    if section.is_empty() {
        format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
    } else {
        format!(
            "{ENV_PREFIX}{}_{}",
            section.to_ascii_uppercase(),
            key.to_ascii_uppercase()
        )
    }
}

/// Writes the `TOKENSMITH_*` variables of `env` into `table`; returns which
/// key each came from, so that an error about the value can name the variable.
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name != ENV_LOG && name != ENV_URL)
        .collect();
    // Sorted so that with several bad variables the same one is reported every time.
    vars.sort();
    let mut applied = Vec::new();
    for (var, text) in vars {
        let Some(&(section, key, kind)) = ENV_SETTINGS.iter().find(|(s, k, _)| env_var_name(s, k) == var) else {
            return Err(unknown_env(var));
        };
        let path = join(section, key);
        let value = env_value(kind, &text).map_err(|reason| ConfigError::Invalid {
            key: path.clone(),
            env: Some(var.clone()),
            reason,
        })?;
        let target = if section.is_empty() {
            &mut *table
        } else {
            match table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                toml::Value::Table(t) => t,
                // The file says `keys = 3`: reading it reports that, naming the key.
                _ => continue,
            }
        };
        target.insert(key.to_owned(), value);
        applied.push((path, var));
    }
    Ok(applied)
}

fn env_value(kind: EnvKind, text: &str) -> Result<toml::Value, String> {
    let all_digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match kind {
        EnvKind::Text => Ok(toml::Value::String(text.to_owned())),
        EnvKind::List => Ok(toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        )),
        EnvKind::Duration if !all_digits => Ok(toml::Value::String(text.to_owned())),
        EnvKind::Bool => match text {
            "true" => Ok(toml::Value::Boolean(true)),
            "false" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("{text:?} is not true or false")),
        },
        EnvKind::Integer | EnvKind::Duration => text
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("{text:?} is not a whole number")),
    }
}

fn unknown_env(var: String) -> ConfigError {
    let rest = var.strip_prefix(ENV_PREFIX).unwrap_or(&var);
    if rest.starts_with("CLIENTS") {
        let reason = "[[clients]] cannot be set by environment variables; write them in the config file".to_owned();
        return ConfigError::Env { var, reason };
    }
    let section = ["keys", "tokens", "store", "server", "session", "dpop"]
        .into_iter()
        .find(|s| rest.starts_with(&format!("{}_", s.to_ascii_uppercase())));
    let reason = match section {
        Some(section) => {
            let known: Vec<String> = ENV_SETTINGS
                .iter()
                .filter(|(s, _, _)| *s == section)
                .map(|(s, k, _)| env_var_name(s, k))
                .collect();
            format!("unknown setting; [{section}] takes {}", known.join(", "))
        }
        None => "unknown setting; known are TOKENSMITH_ISSUER, TOKENSMITH_LISTEN, TOKENSMITH_LOG and \
                 TOKENSMITH_<SECTION>_<KEY> for [keys], [tokens], [store], [server], [session] and [dpop]"
            .to_owned(),
    };
    ConfigError::Env { var, reason }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::config::tests::{client, env};
    use crate::config::{Config, StoreBackend};

    #[test]
    fn environment_overrides_the_file() {
        let text = "issuer = \"https://file.example\"\n[tokens]\ndefault_ttl = \"1m\"\n";
        let c = Config::from_toml_str(
            text,
            env(&[
                ("TOKENSMITH_ISSUER", "https://auth.example.com"),
                ("TOKENSMITH_LISTEN", "0.0.0.0:9000"),
                ("TOKENSMITH_KEYS_RSA_BITS", "4096"),
                ("TOKENSMITH_KEYS_ROTATE_EVERY", "7d"),
                ("TOKENSMITH_TOKENS_DEFAULT_TTL", "10m"),
                ("TOKENSMITH_TOKENS_LEEWAY", "30"),
                ("TOKENSMITH_STORE_BACKEND", "redis"),
                ("TOKENSMITH_STORE_REDIS_URL", "rediss://:hunter2@redis.internal:6380"),
                ("TOKENSMITH_STORE_CAPACITY", "5000"),
                ("TOKENSMITH_LOG", "debug"),
                ("TOKENSMITH_URL", "http://127.0.0.1:8080"),
                ("PATH", "/usr/bin"),
                ("tokensmith_issuer", "ignored: names are case-sensitive"),
            ]),
        )
        .unwrap();
        assert_eq!(c.issuer, "https://auth.example.com");
        assert_eq!(c.listen, "0.0.0.0:9000".parse::<SocketAddr>().unwrap());
        assert_eq!(c.keys.rsa_bits, 4096);
        assert_eq!(c.keys.rotate_every, Duration::from_secs(7 * 86400));
        assert_eq!(c.tokens.default_ttl, Duration::from_secs(600));
        assert_eq!(c.tokens.leeway, Duration::from_secs(30));
        assert_eq!(c.store.backend, StoreBackend::Redis);
        assert_eq!(c.store.redis_url, "rediss://:hunter2@redis.internal:6380");
        assert_eq!(c.store.capacity, 5000);
        assert!(c.session.is_none());
    }

    #[test]
    fn environment_can_make_the_session_section() {
        let vars = env(&[
            ("TOKENSMITH_SESSION_CHECK_URL", "https://app.example.com/me"),
            ("TOKENSMITH_SESSION_CLIENT", "a"),
        ]);
        let c = Config::from_toml_str(&client(""), vars).unwrap();
        assert_eq!(c.session.unwrap().check_url, "https://app.example.com/me");
        // Half a session is an error naming the missing key.
        let e = Config::from_toml_str(&client(""), env(&[("TOKENSMITH_SESSION_CLIENT", "a")])).unwrap_err();
        assert!(e.to_string().starts_with("session.check_url: missing"), "{e}");
    }

    #[test]
    fn a_cluster_seed_list_from_the_environment() {
        let vars = env(&[
            (
                "TOKENSMITH_STORE_REDIS_CLUSTER",
                "rediss://a:7000, rediss://:pw@b:7000,",
            ),
            ("TOKENSMITH_STORE_REDIS_WAIT_REPLICAS", "1"),
        ]);
        let c = Config::from_toml_str("", vars).unwrap();
        assert_eq!(c.store.redis_cluster, ["rediss://a:7000", "rediss://:pw@b:7000"]);
        assert_eq!(c.store.redis_wait_replicas, 1);
        assert!(!format!("{:?}", c.store).contains("pw"), "a seed's password is masked");
        // Every seed is a TCP URL, and TLS is all or nothing.
        for (list, why) in [
            (
                "redis://a:1,unix:///tmp/r.sock",
                "seed 2 is not a redis:// or rediss:// URL",
            ),
            ("redis://a:1,rediss://b:2", "mixes redis:// and rediss://"),
        ] {
            let e = Config::from_toml_str("", env(&[("TOKENSMITH_STORE_REDIS_CLUSTER", list)])).unwrap_err();
            assert!(e.to_string().contains(why), "{list}: {e}");
        }
    }

    #[test]
    fn every_env_setting_is_a_known_key() {
        let value = |key: &str| match key {
            "issuer" => "https://x.example",
            "listen" => "127.0.0.1:1",
            "dir" => "k",
            "algorithm" => "ES256",
            "rsa_bits" => "3072",
            "backend" => "memory",
            "redis_url" => "redis://r",
            "redis_cluster" => "redis://a:7000, redis://b:7000",
            "redis_wait_replicas" => "1",
            "capacity" => "10",
            "check_url" => "https://x.example/me",
            "client" => "a",
            "cache_ttl" => "5s",
            "header_read_timeout" => "5s",
            "max_connections" => "100",
            "metrics_listen" => "127.0.0.1:9090",
            "allow_http" | "publish_scopes" => "true",
            "publish_ahead" => "2h",
            "leeway" => "30s",
            "iat_window" => "30s",
            "require_nonce" => "true",
            "nonce_secret" => "0123456789abcdef",
            "external_url" => "https://x.example",
            _ => "3h",
        };
        for (section, key, _) in ENV_SETTINGS {
            let mut vars = vec![(env_var_name(section, key), value(key).to_owned())];
            if section == "session" && key != "check_url" {
                vars.push((
                    "TOKENSMITH_SESSION_CHECK_URL".to_owned(),
                    "https://x.example/me".to_owned(),
                ));
            }
            if section == "session" && key != "client" {
                vars.push(("TOKENSMITH_SESSION_CLIENT".to_owned(), "a".to_owned()));
            }
            if let Err(e) = Config::from_toml_str(&client(""), vars) {
                panic!("{section}.{key}: {e}");
            }
        }
    }

    #[test]
    fn environment_sets_the_server_section_and_allow_http() {
        let c = Config::from_toml_str(
            &client(""),
            env(&[
                ("TOKENSMITH_SERVER_HEADER_READ_TIMEOUT", "3"),
                ("TOKENSMITH_SERVER_IDLE_TIMEOUT", "2m"),
                ("TOKENSMITH_SERVER_MAX_CONNECTIONS", "64"),
                ("TOKENSMITH_SERVER_SHUTDOWN_GRACE", "1s"),
                ("TOKENSMITH_SERVER_METRICS_LISTEN", "127.0.0.1:9464"),
                ("TOKENSMITH_SERVER_PUBLISH_SCOPES", "false"),
                ("TOKENSMITH_SESSION_CHECK_URL", "http://app.internal/me"),
                ("TOKENSMITH_SESSION_CLIENT", "a"),
                ("TOKENSMITH_SESSION_ALLOW_HTTP", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(3));
        assert_eq!(c.server.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.server.max_connections, Some(64));
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(1));
        assert_eq!(c.server.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(!c.server.publish_scopes);
        assert!(c.session.unwrap().allow_http);
        // The variable overrides the file, both ways.
        let on = Config::from_toml_str(
            "[server]\npublish_scopes = false\n",
            env(&[("TOKENSMITH_SERVER_PUBLISH_SCOPES", "true")]),
        )
        .unwrap();
        assert!(on.server.publish_scopes);
        let e = Config::from_toml_str("", env(&[("TOKENSMITH_SERVER_PUBLISH_SCOPES", "no")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "server.publish_scopes (from TOKENSMITH_SERVER_PUBLISH_SCOPES): \"no\" is not true or false"
        );

        let e = Config::from_toml_str(&client(""), env(&[("TOKENSMITH_SESSION_ALLOW_HTTP", "yes")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "session.allow_http (from TOKENSMITH_SESSION_ALLOW_HTTP): \"yes\" is not true or false"
        );
        let e = Config::from_toml_str("", env(&[("TOKENSMITH_SERVER_HEADER_READ_TIMEOUT", "30")])).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "server.header_read_timeout (from TOKENSMITH_SERVER_HEADER_READ_TIMEOUT): 30s is above 10s"
            ),
            "{e}"
        );
        let e = Config::from_toml_str("", env(&[("TOKENSMITH_SERVER_IDLE", "1s")])).unwrap_err();
        assert!(e.to_string().contains("TOKENSMITH_SERVER_IDLE_TIMEOUT"), "{e}");
    }

    #[test]
    fn bad_environment_names_the_variable() {
        let e = Config::from_toml_str("", env(&[("TOKENSMITH_KEYS_ROTATE", "1d")])).unwrap_err();
        assert_eq!(e.key(), Some("TOKENSMITH_KEYS_ROTATE"));
        assert!(
            e.to_string().starts_with("TOKENSMITH_KEYS_ROTATE: unknown setting"),
            "{e}"
        );
        assert!(e.to_string().contains("TOKENSMITH_KEYS_ROTATE_EVERY"), "{e}");

        let e = Config::from_toml_str("", env(&[("TOKENSMITH_ISSUR", "x")])).unwrap_err();
        assert!(e.to_string().starts_with("TOKENSMITH_ISSUR: unknown setting"), "{e}");

        let e = Config::from_toml_str("", env(&[("TOKENSMITH_CLIENTS_0_ID", "x")])).unwrap_err();
        assert!(e.to_string().contains("[[clients]] cannot be set"), "{e}");

        let e = Config::from_toml_str("", env(&[("TOKENSMITH_KEYS_RSA_BITS", "big")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "keys.rsa_bits (from TOKENSMITH_KEYS_RSA_BITS): \"big\" is not a whole number"
        );

        let e = Config::from_toml_str("", env(&[("TOKENSMITH_KEYS_ROTATE_EVERY", "3x")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("keys.rotate_every (from TOKENSMITH_KEYS_ROTATE_EVERY): invalid duration \"3x\""),
            "{e}"
        );

        let e = Config::from_toml_str("", env(&[("TOKENSMITH_STORE_CAPACITY", "-1")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("store.capacity (from TOKENSMITH_STORE_CAPACITY): invalid value"),
            "{e}"
        );

        let e = Config::from_toml_str("", env(&[("TOKENSMITH_KEYS_RSA_BITS", "1024")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("keys.rsa_bits (from TOKENSMITH_KEYS_RSA_BITS): 1024"),
            "{e}"
        );
    }
}
