//! Tests of `jwks`.

#![allow(clippy::unwrap_used)]
use super::*;

#[test]
fn https_is_required_off_loopback() {
    assert!(check_url("https://issuer.example.com/jwks").is_ok());
    assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
    assert!(check_url("http://127.9.9.9/jwks").is_ok());
    assert!(check_url("http://[::1]:80/jwks").is_ok());
    assert!(check_url("http://localhost:1/jwks").is_ok());
    assert!(check_url("http://issuer.example.com/jwks").is_err());
    assert!(check_url("http://localhost.evil.com/jwks").is_err());
    assert!(check_url("http://10.0.0.1/jwks").is_err());
    assert!(check_url("file:///etc/passwd").is_err());
    assert!(check_url("not a url").is_err());
}

#[test]
fn from_url_keeps_the_url_rules_and_the_default_options() {
    let err = RemoteJwks::from_url("http://issuer.example.com/jwks").unwrap_err();
    assert_eq!(err.code(), "invalid_request");
    let jwks = RemoteJwks::from_url("https://issuer.example.com/jwks").unwrap();
    assert_eq!(jwks.url(), "https://issuer.example.com/jwks");
    assert_eq!(jwks.opts.stale_for, JwksOptions::default().stale_for);
}

#[test]
fn cache_control_max_age() {
    assert_eq!(max_age("public, max-age=1800"), Some(1800));
    assert_eq!(max_age("max-age=\"60\""), Some(60));
    assert_eq!(max_age("no-store"), Some(0));
    assert_eq!(max_age("public"), None);
    assert_eq!(max_age("max-age=abc"), None);
}
