//! Tests of the keys folder on disk: atomic writes, the lock, read-only
//! folders, leftovers and permissions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

const POLICY: RingPolicy = RingPolicy {
    publish_ahead: 3600,
    retire_after: 86_460,
    rotate_every: 2_592_000,
};

fn dir() -> (tempfile::TempDir, KeyDir) {
    let t = tempfile::tempdir().unwrap();
    let k = KeyDir::new(t.path().join("keys"));
    (t, k)
}

#[test]
fn init_writes_0600_keys_and_a_manifest_that_loads_back() {
    let (_t, kd) = dir();
    let ring = kd.init(Algorithm::ES256, 2048, 100).unwrap();
    assert_eq!(kd.init(Algorithm::ES256, 2048, 100).unwrap_err().code(), "keys_exist");
    for k in ring.keys() {
        let meta = fs::metadata(kd.path().join(&k.record.file)).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
    }
    let again = kd.load().unwrap();
    assert_eq!(again.records(), ring.records());
    assert_eq!(fs::metadata(kd.path()).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn rotate_refuses_early_and_changes_nothing_on_disk() {
    let (_t, kd) = dir();
    kd.init(Algorithm::EdDSA, 0, 0).unwrap();
    let before = kd.read_manifest().unwrap();
    let files_before = fs::read_dir(kd.path()).unwrap().count();
    let err = kd.rotate(&POLICY, |a| a, 0, 10, false).unwrap_err();
    assert_eq!(err.code(), "rotation_too_early");
    assert_eq!(kd.read_manifest().unwrap(), before);
    assert_eq!(fs::read_dir(kd.path()).unwrap().count(), files_before);
    let ring = kd.rotate(&POLICY, |a| a, 0, 3600, false).unwrap().ring;
    assert_eq!(ring.keys().len(), 3);
    // The new key keeps the ring's algorithm, or takes the one asked for.
    assert_eq!(ring.next().unwrap().record.alg, Algorithm::EdDSA);
    let ring = kd.rotate(&POLICY, |_| Algorithm::ES256, 0, 7200, false).unwrap().ring;
    assert_eq!(ring.next().unwrap().record.alg, Algorithm::ES256);
    assert_eq!(ring.active().unwrap().record.alg, Algorithm::EdDSA);
    assert_eq!(kd.load().unwrap().records(), ring.records());
}

#[test]
fn a_bad_key_file_is_an_error_naming_it_and_is_left_alone() {
    let (_t, kd) = dir();
    let ring = kd.init(Algorithm::EdDSA, 0, 0).unwrap();
    let file = kd.path().join(&ring.keys()[0].record.file);
    fs::write(&file, "not a key").unwrap();
    let err = kd.load().unwrap_err();
    assert_eq!(err.code(), "keyring_corrupt");
    assert!(err.to_string().contains(&ring.keys()[0].record.file), "{err}");
    // nothing was rewritten or deleted, and rotation refuses to proceed
    assert!(kd.rotate(&POLICY, |a| a, 0, 1 << 40, true).is_err());
    assert_eq!(fs::read_to_string(&file).unwrap(), "not a key");
    fs::remove_file(&file).unwrap();
    let err = kd.load().unwrap_err();
    assert_eq!(err.code(), "key_io");
    assert!(err.to_string().contains(&ring.keys()[0].record.file), "{err}");
}

#[test]
fn a_killed_rotation_leaves_the_previous_ring_usable() {
    let (_t, kd) = dir();
    let ring = kd.init(Algorithm::EdDSA, 0, 0).unwrap();
    // A rotation killed after writing the new key file and a temp
    // manifest, but before the rename.
    let (signing, der) = SigningKey::generate(Algorithm::EdDSA, 0).unwrap();
    let orphan = RingKey::fresh(signing, KeyState::Next, 5000).unwrap();
    write_new_file(kd.path(), &orphan.record.file, encode_pem(&der).as_bytes()).unwrap();
    write_temp(kd.path(), KEYRING_FILE, b"{\"version\":1,\"keys\":[").unwrap();
    assert_eq!(kd.load().unwrap().records(), ring.records());
    kd.rotate(&POLICY, |a| a, 0, 5000, false).unwrap();
}

#[test]
fn key_files_are_never_overwritten() {
    let (_t, kd) = dir();
    kd.create_dir().unwrap();
    write_new_file(kd.path(), "a.pem", b"one").unwrap();
    assert!(write_new_file(kd.path(), "a.pem", b"two").is_err());
    assert_eq!(fs::read(kd.path().join("a.pem")).unwrap(), b"one");
}

#[test]
fn manifest_cannot_point_outside_the_folder() {
    let (_t, kd) = dir();
    let ring = kd.init(Algorithm::EdDSA, 0, 0).unwrap();
    let text = String::from_utf8(kd.read_manifest().unwrap().unwrap()).unwrap();
    let evil = text.replace(&ring.keys()[0].record.file, "../../etc/passwd");
    let err = kd.load_manifest(evil.as_bytes()).unwrap_err();
    assert_eq!(err.code(), "keyring_corrupt");
}

#[test]
fn the_lock_is_exclusive() {
    let (_t, kd) = dir();
    let held = kd.lock().unwrap();
    let path = kd.path().join(LOCK_FILE);
    let other = OpenOptions::new().write(true).open(&path).unwrap();
    assert!(matches!(other.try_lock(), Err(fs::TryLockError::WouldBlock)));
    drop(held);
    other.try_lock().unwrap();
}

/// The folder's file names and contents, to see that nothing changed.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = fs::read(e.path()).unwrap_or_default();
            (e.file_name().into_string().unwrap(), bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_folder_that_cannot_be_written_is_read_only_and_any_other_lock_failure_is_io() {
    use std::io::Error;
    let path = Path::new("/keys/.lock");
    for unwritable in [
        Error::from(ErrorKind::ReadOnlyFilesystem),
        Error::from_raw_os_error(30), // EROFS
        Error::from_raw_os_error(13), // EACCES
        Error::from_raw_os_error(1),  // EPERM: an immutable file
    ] {
        let e = lock_err(path)(unwritable);
        assert_eq!(e.code(), "keys_read_only", "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
    for other in [
        Error::from_raw_os_error(28), // ENOSPC
        Error::from_raw_os_error(21), // EISDIR
        Error::from_raw_os_error(5),  // EIO
    ] {
        assert_eq!(lock_err(path)(other).code(), "key_io");
    }
}

/// A folder whose `.lock` cannot be opened for writing, even by root: a
/// symlink to a read-only sysctl (EACCES, or EROFS where /proc/sys is
/// mounted read-only). The folder itself stays writable by the test.
fn lock_refused(kd: &KeyDir) {
    std::os::unix::fs::symlink("/proc/sys/kernel/ostype", kd.path().join(LOCK_FILE)).unwrap();
}

#[test]
fn ensure_serves_a_folder_whose_lock_cannot_be_taken_read_only() {
    let (_t, kd) = dir();
    let ring = kd.init(Algorithm::EdDSA, 0, 0).unwrap();
    let (_, served) = kd.ensure(Algorithm::EdDSA, 0, 0).unwrap();
    assert!(served.read_only().is_none());
    fs::remove_file(kd.path().join(LOCK_FILE)).unwrap();
    lock_refused(&kd);
    let before = snapshot(kd.path());

    let (loaded, served) = kd.ensure(Algorithm::EdDSA, 0, 0).unwrap();
    assert_eq!(loaded.records(), ring.records());
    let why = served.read_only().expect("read-only");
    assert!(
        matches!(why.kind(), ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem),
        "{why}"
    );
    // Nothing that writes goes through, and nothing was written.
    assert_eq!(
        kd.rotate(&POLICY, |a| a, 0, 1 << 40, true).unwrap_err().code(),
        "keys_read_only"
    );
    assert_eq!(kd.prune(&POLICY, 1 << 40).unwrap_err().code(), "keys_read_only");
    assert_eq!(snapshot(kd.path()), before);
    // A read-only folder without a ring is no_keys, not a new ring.
    let (_t2, empty) = dir();
    empty.create_dir().unwrap();
    lock_refused(&empty);
    assert_eq!(empty.ensure(Algorithm::EdDSA, 0, 0).unwrap_err().code(), "no_keys");
    assert_eq!(fs::read_dir(empty.path()).unwrap().count(), 1);
}

/// What a rotation killed after writing its key file, or during a
/// write, leaves: a key file no manifest names, and a temp file.
fn leave_orphans(kd: &KeyDir) -> (String, PathBuf) {
    let (signing, der) = SigningKey::generate(Algorithm::ES256, 0).unwrap();
    let orphan = RingKey::fresh(signing, KeyState::Next, 5000).unwrap();
    write_new_file(kd.path(), &orphan.record.file, encode_pem(&der).as_bytes()).unwrap();
    let temp = write_temp(kd.path(), KEYRING_FILE, b"{\"version\":1,\"keys\":[").unwrap();
    (orphan.record.file, temp)
}

#[test]
fn rotate_and_prune_remove_leftovers_and_nothing_else() {
    let (_t, kd) = dir();
    let ring = kd.init(Algorithm::EdDSA, 0, 0).unwrap();
    let (orphan, temp) = leave_orphans(&kd);
    let p = |name: &str| kd.path().join(name);
    // Files that are not ours, or not leftovers, even if they look close.
    let other = SigningKey::generate(Algorithm::EdDSA, 0).unwrap().1;
    let not_ours = [
        ("notes.pem", encode_pem(&other)),
        // our name pattern, but not a key whose thumbprint is its name
        ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.pem", encode_pem(&other)),
        (
            "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB.pem",
            "not a key".to_owned(),
        ),
        (".backup.tmp", "x".to_owned()),
        ("keyring.json.bak", "{}".to_owned()),
    ];
    for (name, text) in &not_ours {
        fs::write(p(name), text).unwrap();
    }
    std::os::unix::fs::symlink(&temp, p(".keyring.json.1.0123456789abcdef.tmp")).unwrap();
    fs::create_dir(p(".keyring.json.2.0123456789abcdef.tmp")).unwrap();

    // A refused rotation changes nothing.
    assert_eq!(
        kd.rotate(&POLICY, |a| a, 0, 10, false).unwrap_err().code(),
        "rotation_too_early"
    );
    assert!(p(&orphan).exists() && temp.exists());

    let changed = kd.rotate(&POLICY, |a| a, 0, 3600, false).unwrap();
    let temp_name = temp.file_name().unwrap().to_str().unwrap().to_owned();
    let mut expected = vec![orphan.clone(), temp_name];
    expected.sort();
    assert_eq!(changed.leftovers, expected);
    assert!(!p(&orphan).exists() && !temp.exists());
    for k in changed.ring.keys() {
        assert!(p(&k.record.file).exists(), "{}", k.record.file);
    }
    for (name, text) in &not_ours {
        assert_eq!(fs::read_to_string(p(name)).unwrap(), *text, "{name}");
    }
    assert!(fs::symlink_metadata(p(".keyring.json.1.0123456789abcdef.tmp")).is_ok());
    assert!(p(".keyring.json.2.0123456789abcdef.tmp").is_dir());
    assert_eq!(kd.load().unwrap().records(), changed.ring.records());
    assert_eq!(changed.ring.keys().len(), ring.keys().len() + 1);

    // Prune cleans too, even with nothing to prune.
    let (orphan, temp) = leave_orphans(&kd);
    let changed = kd.prune(&POLICY, 3600).unwrap();
    assert!(changed.pruned.is_empty());
    assert_eq!(changed.leftovers.len(), 2);
    assert!(!p(&orphan).exists() && !temp.exists());
    assert_eq!(kd.load().unwrap().records(), changed.ring.records());
}

#[test]
fn permissions_warn_on_loose_files_and_refuse_a_folder_others_can_write() {
    let (_t, kd) = dir();
    let ring = kd.init(Algorithm::EdDSA, 0, 0).unwrap();
    assert_eq!(kd.check_permissions(false).unwrap(), []);
    let chmod = |path: &Path, mode: u32| fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();

    let key = kd.path().join(&ring.keys()[1].record.file);
    chmod(&key, 0o644);
    chmod(&kd.path().join(KEYRING_FILE), 0o664);
    chmod(kd.path(), 0o755);
    let warnings = kd.check_permissions(false).unwrap();
    assert_eq!(
        warnings,
        [
            PermissionWarning::ManifestWritable {
                path: kd.path().join(KEYRING_FILE),
                mode: 0o664
            },
            PermissionWarning::KeyFileOpen { path: key, mode: 0o644 }
        ]
    );
    assert!(warnings[1].to_string().contains("(mode 0644)"), "{}", warnings[1]);

    for mode in [0o777, 0o770, 0o1777, 0o702] {
        chmod(kd.path(), mode);
        let err = kd.check_permissions(false).unwrap_err();
        assert_eq!(err.code(), "insecure_permissions");
        assert!(err.to_string().contains(&format!("(mode {mode:04o})")), "{err}");
        let allowed = kd.check_permissions(true).unwrap();
        assert_eq!(
            allowed[0],
            PermissionWarning::FolderWritable {
                path: kd.path().to_path_buf(),
                mode
            }
        );
    }
    chmod(kd.path(), 0o700);
    // A folder that is not there yet has nothing to check.
    let (_t2, fresh) = dir();
    assert_eq!(fresh.check_permissions(false).unwrap(), []);
}

#[test]
fn pem_round_trip() {
    let der: Vec<u8> = (0..=255u8).collect();
    assert_eq!(decode_pem(&encode_pem(&der)).unwrap(), der);
    assert!(decode_pem("-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----").is_err());
    assert!(decode_pem("-----BEGIN RSA PRIVATE KEY-----\nAA\n-----END RSA PRIVATE KEY-----").is_err());
}
