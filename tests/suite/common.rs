//! Helpers shared by the suite's modules: fixtures and a fixed clock.

#![allow(dead_code)]

use std::path::PathBuf;

/// The folder of test fixtures.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Reads a fixture file (`rsa2048.der`, `p256.pem`, ...).
#[allow(clippy::panic)]
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Reads and parses one Wycheproof vector file from `tests/vectors/wycheproof`.
#[allow(clippy::panic)]
pub fn wycheproof(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/wycheproof")
        .join(name);
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Decodes lowercase or uppercase hex; panics on anything else.
#[allow(clippy::panic)]
pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}")))
        .collect()
}

/// The PKCS#8 DER of fixture key `stem` (`rsa2048`, `p256`, ...), decoded
/// from its `.pem`, whose `-----BEGIN PRIVATE KEY-----` form is PKCS#8.
#[allow(clippy::panic)]
pub fn pkcs8(stem: &str) -> Vec<u8> {
    use base64::Engine;
    let pem = String::from_utf8(fixture(&format!("{stem}.pem"))).unwrap_or_else(|e| panic!("{stem}.pem: {e}"));
    let body: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "{stem}.pem is not PKCS#8"
    );
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap_or_else(|e| panic!("{stem}.pem: {e}"))
}
