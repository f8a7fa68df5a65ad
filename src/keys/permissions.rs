//! Who may read and write a keys folder: the check every command that uses
//! one runs first ([`KeyDir::check_permissions`](super::disk::KeyDir::check_permissions)).
//!
//! A key file that group or others can read leaks a signing key: a warning.
//! A folder that group or others can write lets anyone replace the keys, and
//! so sign any token: refused unless the operator allows it
//! (`--insecure-permissions`), then a warning. On a read-only mount the write
//! bits mean nothing (a Kubernetes secret volume is mode 1777 on a read-only
//! tmpfs), so they are not held against the folder there.
//!
//! It never changes a mode: a chmod is the operator's to make. It reads only
//! modes and the file names `keyring.json` lists, never a key.

use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::KeyError;

/// Something about a keys folder's permissions that is used, but should not be so.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PermissionWarning {
    /// The folder is writable by group or others; used because the
    /// operator allowed it.
    FolderWritable {
        /// The folder or file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A key file can be read or written by group or others.
    KeyFileOpen {
        /// The folder or file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// `keyring.json` can be written by group or others.
    ManifestWritable {
        /// The folder or file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
}

impl fmt::Display for PermissionWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PermissionWarning::FolderWritable { path, mode } => write!(
                f,
                "keys folder {} is writable by group or others (mode {mode:04o}); anyone who can write there can replace the signing keys (chmod 700 it)",
                path.display()
            ),
            PermissionWarning::KeyFileOpen { path, mode } => write!(
                f,
                "key file {} is readable or writable by group or others (mode {mode:04o}); it should be 0600",
                path.display()
            ),
            PermissionWarning::ManifestWritable { path, mode } => write!(
                f,
                "{} is writable by group or others (mode {mode:04o}); it should be 0600",
                path.display()
            ),
        }
    }
}

/// The permission bits of a mode, with setuid, setgid and sticky.
fn bits(mode: u32) -> u32 {
    mode & 0o7777
}

/// Whether group or others can write, where writing is possible at all.
fn others_can_write(mode: u32, read_only_mount: bool) -> bool {
    mode & 0o022 != 0 && !read_only_mount
}

/// Whether group or others have any access to a key file.
fn others_can_open(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// Whether `path` is on a file system mounted read-only. When this cannot
/// be told, the answer is "no": the stricter rules then apply.
fn on_read_only_mount(path: &Path) -> bool {
    rustix::fs::statvfs(path).is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Checks `dir`, whose `keyring.json` (if any) lists `key_files`. A folder
/// that does not exist yet has nothing to check (it is made 0700); a file
/// that cannot be read is left to the load that follows, which names it.
pub(super) fn check(
    dir: &Path,
    manifest: &Path,
    key_files: &[PathBuf],
    allow_insecure: bool,
) -> Result<Vec<PermissionWarning>, KeyError> {
    let Ok(meta) = fs::metadata(dir) else {
        return Ok(Vec::new());
    };
    let read_only = on_read_only_mount(dir);
    let mut warnings = Vec::new();
    let mode = bits(meta.mode());
    if others_can_write(mode, read_only) {
        if !allow_insecure {
            return Err(KeyError::InsecurePermissions {
                path: dir.to_path_buf(),
                mode,
            });
        }
        warnings.push(PermissionWarning::FolderWritable {
            path: dir.to_path_buf(),
            mode,
        });
    }
    if let Ok(meta) = fs::metadata(manifest) {
        let mode = bits(meta.mode());
        if others_can_write(mode, read_only) {
            warnings.push(PermissionWarning::ManifestWritable {
                path: manifest.to_path_buf(),
                mode,
            });
        }
    }
    for file in key_files {
        if let Ok(meta) = fs::metadata(file) {
            let mode = bits(meta.mode());
            if others_can_open(mode) {
                warnings.push(PermissionWarning::KeyFileOpen {
                    path: file.clone(),
                    mode,
                });
            }
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn write_bits_count_only_where_writing_is_possible() {
        for mode in [0o777, 0o770, 0o720, 0o702, 0o1777, 0o2770] {
            assert!(others_can_write(mode, false), "{mode:o}");
            assert!(!others_can_write(mode, true), "{mode:o} on a read-only mount");
        }
        for mode in [0o700, 0o750, 0o755, 0o1755, 0o500] {
            assert!(!others_can_write(mode, false), "{mode:o}");
        }
        for mode in [0o640, 0o604, 0o644, 0o660, 0o610] {
            assert!(others_can_open(mode), "{mode:o}");
        }
        assert!(!others_can_open(0o600));
        assert!(!others_can_open(0o400));
    }

    #[test]
    fn a_writable_mount_is_not_read_only() {
        let t = tempfile::tempdir().unwrap();
        assert!(!on_read_only_mount(t.path()));
        assert!(!on_read_only_mount(&t.path().join("missing")));
    }
}
