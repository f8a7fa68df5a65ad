//! What interrupted key operations leave in a keys folder, and its removal.
//!
//! A key operation that is killed, or runs out of space, can leave the
//! temporary file of an atomic write (`.<name>.<pid>.<random>.tmp`), or a
//! new key file (`<kid>.pem`) that no `keyring.json` names yet because the
//! manifest that would have was never written. Both hold a private key or a
//! manifest (mode 0600) that nothing will ever read.
//!
//! [`remove`] runs under the folder's lock, at the next rotate or prune:
//! every write to the folder happens under that lock, so no other process is
//! halfway through one. It removes only regular files that are ours by name,
//! and, for a key file, by content (a private key whose RFC 7638 thumbprint
//! is its name), that the ring does not name. A file the ring names, a
//! symlink, a folder, or anything named otherwise is never touched. One
//! consequence to know: a `keyring.json` restored alone, older than its
//! keys, leaves the newer key files unnamed, and the next rotate or prune
//! removes them; restore a keys folder as a whole.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use super::disk::{decode_pem, KEYRING_FILE};
use super::KeyRing;
use crate::jose::{Algorithm, Jwk, SigningKey};

/// Length of an RFC 7638 SHA-256 thumbprint in base64url: our `kid`s.
const KID_LEN: usize = 43;

fn is_base64url(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `<kid>.pem`: the name a key file of ours has; the `kid`.
pub(super) fn key_file_kid(name: &str) -> Option<&str> {
    let kid = name.strip_suffix(".pem")?;
    (kid.len() == KID_LEN && is_base64url(kid)).then_some(kid)
}

/// `.<target>.<pid>.<16 hex>.tmp`, where `target` is `keyring.json` or a key
/// file name: what `write_temp` makes.
pub(super) fn is_temp_name(name: &str) -> bool {
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    let mut parts = inner.rsplitn(3, '.');
    let (Some(random), Some(pid), Some(target)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    random.len() == 16
        && random.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && (target == KEYRING_FILE || key_file_kid(target).is_some())
}

/// Whether the file at `path` holds a private key whose thumbprint is `kid`.
fn holds_key(path: &Path, kid: &str) -> bool {
    let Ok(pem) = fs::read_to_string(path) else {
        return false;
    };
    let Ok(der) = decode_pem(&pem) else {
        return false;
    };
    // RS256 and PS256 keys have one thumbprint (it covers n and e only).
    [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
        .into_iter()
        .filter_map(|alg| SigningKey::from_pkcs8(alg, &der).ok())
        .any(|key| Jwk::from_public(key.algorithm(), key.public_key()).kid.as_deref() == Some(kid))
}

/// Removes the leftovers in `dir` that `ring` does not name; the names
/// removed. A file that cannot be removed is logged and left: it harms
/// nothing, and the operation that called this goes on.
pub(super) fn remove(dir: &Path, ring: &KeyRing) -> Vec<String> {
    let named: HashSet<&str> = ring.keys().iter().map(|k| k.record.file.as_str()).collect();
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // `file_type` does not follow symlinks: a link is never ours.
        if named.contains(name.as_str()) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        let ours = is_temp_name(&name) || key_file_kid(&name).is_some_and(|kid| holds_key(&path, kid));
        if !ours {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(file = %path.display(), "removed a leftover of an interrupted key operation");
                removed.push(name);
            }
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "could not remove a leftover file"),
        }
    }
    removed.sort_unstable();
    removed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const KID: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

    #[test]
    fn names_that_are_ours() {
        assert_eq!(key_file_kid(&format!("{KID}.pem")), Some(KID));
        for not_ours in [
            "notes.pem",
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9X.pem",
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs0.pem",
            "NzbLsXh8uDCcd+6MNwXF4W_7noWXFZAfHkxZsRGC9Xs.pem",
            KID,
            "",
        ] {
            assert_eq!(key_file_kid(not_ours), None, "{not_ours}");
        }
        assert!(is_temp_name(".keyring.json.4242.0123456789abcdef.tmp"));
        assert!(is_temp_name(&format!(".{KID}.pem.1.fedcba9876543210.tmp")));
        for not_ours in [
            "keyring.json.4242.0123456789abcdef.tmp",
            ".keyring.json.4242.0123456789abcdef",
            ".keyring.json.4242.0123456789abcde.tmp",
            ".keyring.json.4242.0123456789ABCDEF.tmp",
            ".keyring.json.42x.0123456789abcdef.tmp",
            ".keyring.json..0123456789abcdef.tmp",
            ".notes.txt.4242.0123456789abcdef.tmp",
            ".lock",
            ".tmp",
        ] {
            assert!(!is_temp_name(not_ours), "{not_ours}");
        }
    }
}
