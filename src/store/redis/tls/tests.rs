#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use super::{use_crate_provider, RedisTls, TlsFileError};

fn suites(p: &rustls::crypto::CryptoProvider) -> Vec<rustls::CipherSuite> {
    p.cipher_suites.iter().map(|s| s.suite()).collect()
}

fn groups(p: &rustls::crypto::CryptoProvider) -> Vec<rustls::NamedGroup> {
    p.kx_groups.iter().map(|g| g.name()).collect()
}

/// The `redis` crate takes the process's default provider: after
/// `use_crate_provider` that is this crate's own. Nothing else in the lib's
/// tests installs a default, so without the call there would be none.
#[test]
fn the_process_default_provider_is_the_crate_s() {
    use_crate_provider();
    let installed = rustls::crypto::CryptoProvider::get_default().expect("a default provider is installed");
    let ours = crate::jose::alg::tls_provider();
    assert_eq!(suites(installed), suites(&ours));
    assert_eq!(groups(installed), groups(&ours));
    // A second call changes nothing and does not fail.
    use_crate_provider();
    let again = rustls::crypto::CryptoProvider::get_default().unwrap();
    assert!(std::sync::Arc::ptr_eq(installed, again));
}

fn err(r: Result<RedisTls, TlsFileError>) -> TlsFileError {
    match r {
        Ok(t) => panic!("accepted: {t:?}"),
        Err(e) => e,
    }
}

#[test]
fn none_is_the_default() {
    let t = RedisTls::from_files(None, None, None).unwrap();
    assert!(!t.is_custom());
    assert_eq!(format!("{t:?}"), "RedisTls { ca: None, client_certificate: false }");
    let c = t.certificates();
    assert!(c.root_cert.is_none() && c.client_tls.is_none());
}

#[test]
fn a_missing_or_non_pem_ca_file_is_an_error_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let e = err(RedisTls::from_files(Some(&dir.path().join("nope.pem")), None, None));
    assert_eq!(e.setting, "redis_ca_file");
    assert!(e.reason.starts_with("cannot read "), "{e}");
    assert!(e.to_string().starts_with("store.redis_ca_file: cannot read "), "{e}");

    let text = dir.path().join("text.pem");
    std::fs::write(&text, "just some words\n").unwrap();
    let e = err(RedisTls::from_files(Some(&text), None, None));
    assert_eq!(e.setting, "redis_ca_file");
    assert!(e.reason.contains("no PEM certificate"), "{e}");

    let broken = dir.path().join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
    let e = err(RedisTls::from_files(Some(&broken), None, None));
    assert!(e.reason.contains("not a PEM file"), "{e}");

    // A directory cannot be read as a file.
    let e = err(RedisTls::from_files(Some(dir.path()), None, None));
    assert!(e.reason.starts_with("cannot read "), "{e}");
}

#[test]
fn a_client_certificate_needs_its_key_and_the_other_way_round() {
    let p = Path::new("/nonexistent/x.pem");
    assert_eq!(
        err(RedisTls::from_files(None, Some(p), None)).setting,
        "redis_client_key_file"
    );
    assert_eq!(
        err(RedisTls::from_files(None, None, Some(p))).setting,
        "redis_client_cert_file"
    );
}

/// A key file that is not a key is refused without quoting it.
#[test]
fn a_bad_key_file_is_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    // Any certificate will do to reach the key check: the key is read
    // after the chain parses. A DER body need not be valid X.509 here.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let key = dir.path().join("key.pem");
    let secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldC1zZWNyZXQ=\n-----BEGIN OOPS\n";
    std::fs::write(&key, secret).unwrap();
    let e = err(RedisTls::from_files(None, Some(&cert), Some(&key)));
    assert_eq!(e.setting, "redis_client_key_file");
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("c2VjcmV0"), "{shown}");
    assert!(!shown.contains("OOPS"), "{shown}");
}
