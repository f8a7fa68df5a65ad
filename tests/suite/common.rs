//! Helpers shared by the suite's modules: fixtures and a fixed clock.

#![allow(dead_code)]

use std::path::PathBuf;

/// The folder of test fixtures.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}
