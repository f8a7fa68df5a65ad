//! The integration suite: one binary, one module per subject.

mod common;
