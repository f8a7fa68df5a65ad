//! What code under test logs, for the unit tests that pin a log line (a
//! warning that must be written, a line that must be rate-limited or left
//! out). Test-only: compiled under `cfg(test)` and never linked into the
//! service.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

/// What a test subscriber wrote, shared with the writer it hands out.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The text `f` logs at WARN or above on this thread, without colours.
pub(crate) fn warnings(f: impl FnOnce()) -> String {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = out.0.lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::warnings;

    #[test]
    fn keeps_warnings_and_drops_what_is_below() {
        let text = warnings(|| {
            tracing::info!("not this");
            tracing::warn!(code = "x", "kept");
            tracing::error!("and this");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert!(lines[0].contains("WARN") && lines[0].contains("kept") && lines[0].contains("code=\"x\""));
        assert!(lines[1].contains("ERROR") && lines[1].contains("and this"));
        assert!(!text.contains('\u{1b}'), "no colour codes: {text:?}");
    }
}
