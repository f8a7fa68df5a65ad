//! The keys folder on disk: one PKCS#8 PEM per key (mode 0600) and
//! `keyring.json`, the list of keys and their states.
//!
//! Every write is write-temp + fsync + rename + fsync of the folder, and
//! every change happens under an exclusive lock on `.lock`, so two rotators
//! never interleave and a killed rotation leaves the previous ring usable: a
//! new key file is written before the `keyring.json` that names it, and a key
//! file is never overwritten. Nothing is deleted or rewritten because it
//! failed to load; only `prune` deletes: keys it has just dropped, and the
//! leftovers of interrupted operations (`leftovers.rs`), never a file the
//! ring names.
//!
//! Reading needs no lock (every write is a rename, and a key file never
//! changes), so a folder where the lock cannot be taken because it cannot
//! be written (a read-only mount, such as a Kubernetes secret, or a folder
//! that is not ours) can still be served: [`KeyDir::ensure`] then returns a
//! read-only `KeyDir`, which the server reloads but never rotates or prunes.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::permissions::{self, PermissionWarning};
use super::{leftovers, KeyError, KeyRecord, KeyRing, KeyState, RingKey, RingPolicy};
use crate::jose::{Algorithm, SigningKey};

/// The manifest's file name.
pub const KEYRING_FILE: &str = "keyring.json";
const LOCK_FILE: &str = ".lock";
const PEM_LABEL: &str = "PRIVATE KEY";
/// How long a key operation waits for another one to finish.
const LOCK_WAIT: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: u32,
    keys: Vec<KeyRecord>,
}

/// A keys folder: what `tokensmith keys init` makes and `serve` signs with.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("tokensmith-doc-keydir-{}", std::process::id()));
/// use tokensmith::{Algorithm, Clock, KeyDir, SystemClock};
/// let keys = KeyDir::new(&dir);
/// let ring = keys.init(Algorithm::ES256, 0, SystemClock.now())?; // an active key and a next one
/// assert_eq!(keys.load()?.active().map(|k| &k.record.kid), ring.active().map(|k| &k.record.kid));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct KeyDir {
    dir: PathBuf,
    /// Why the lock could not be taken, when [`KeyDir::ensure`] found the
    /// folder unwritable and loaded it without.
    read_only: Option<Arc<std::io::Error>>,
}

/// What a rotate or prune did to the folder.
#[derive(Debug)]
pub struct Changed {
    /// The ring as written.
    pub ring: KeyRing,
    /// The keys `prune` dropped; their files are deleted.
    pub pruned: Vec<KeyRecord>,
    /// Names of files left by interrupted key operations, now removed.
    pub leftovers: Vec<String>,
}

/// Held while a key operation runs; the lock is released when it drops
/// (closing the file releases the `flock`).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The error for a failure to make the folder or open its lock: the folder
/// cannot be written here (a read-only file system, or permission denied,
/// which is also what an immutable file gives) or another I/O error.
fn lock_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| match source.kind() {
        ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => KeyError::ReadOnly {
            path: path.to_path_buf(),
            source,
        },
        _ => KeyError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Whether `name` may be a file of the folder: a plain name, not hidden.
/// The names come from our own manifest, but a hand-edited one must not
/// point outside the folder.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

impl KeyDir {
    /// The folder `dir`; nothing is read or made until asked.
    pub fn new(dir: impl Into<PathBuf>) -> KeyDir {
        KeyDir {
            dir: dir.into(),
            read_only: None,
        }
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Why this folder is served read-only ([`KeyDir::ensure`] could not
    /// take its lock), or `None` when it can be rotated and pruned.
    pub fn read_only(&self) -> Option<&std::io::Error> {
        self.read_only.as_deref()
    }

    fn create_dir(&self) -> Result<(), KeyError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(lock_err(&self.dir))
    }

    /// Checks who may read and write the folder and the files its
    /// `keyring.json` names (see [`permissions`]):
    /// refuses a folder writable by group or others unless
    /// `allow_insecure`, and returns what should be warned about.
    pub fn check_permissions(&self, allow_insecure: bool) -> Result<Vec<PermissionWarning>, KeyError> {
        let key_files: Vec<PathBuf> = self
            .read_manifest()
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|v| {
                v.get("keys")?.as_array().map(|keys| {
                    keys.iter()
                        .filter_map(|k| k.get("file")?.as_str())
                        .filter(|f| plain_file_name(f))
                        .map(|f| self.dir.join(f))
                        .collect()
                })
            })
            .unwrap_or_default();
        permissions::check(&self.dir, &self.dir.join(KEYRING_FILE), &key_files, allow_insecure)
    }

    /// Takes the folder's exclusive lock, waiting up to 10 s for another
    /// key operation to finish.
    pub fn lock(&self) -> Result<DirLock, KeyError> {
        self.create_dir()?;
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(lock_err(&path))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(DirLock { _file: file }),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(fs::TryLockError::WouldBlock) => return Err(KeyError::Locked { path }),
                Err(fs::TryLockError::Error(source)) => return Err(KeyError::Io { path, source }),
            }
        }
    }

    /// The raw bytes of `keyring.json`, or `None` when there is none. The
    /// server compares these to notice a rotation made by another process.
    pub fn read_manifest(&self) -> Result<Option<Vec<u8>>, KeyError> {
        let path = self.dir.join(KEYRING_FILE);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeyError::Io { path, source }),
        }
    }

    /// Loads the ring, or fails with `no_keys` when the folder has none.
    pub fn load(&self) -> Result<KeyRing, KeyError> {
        match self.read_manifest()? {
            Some(bytes) => self.load_manifest(&bytes),
            None => Err(KeyError::NotInitialised { path: self.dir.clone() }),
        }
    }

    /// Loads the ring that `bytes` (a `keyring.json`) describes.
    pub fn load_manifest(&self, bytes: &[u8]) -> Result<KeyRing, KeyError> {
        let path = self.dir.join(KEYRING_FILE);
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| KeyError::Corrupt {
            path: path.clone(),
            why: e.to_string(),
        })?;
        if manifest.version != 1 {
            return Err(KeyError::Corrupt {
                path,
                why: format!("unsupported version {}", manifest.version),
            });
        }
        let keys = manifest
            .keys
            .into_iter()
            .map(|record| self.load_key(record))
            .collect::<Result<Vec<_>, _>>()?;
        KeyRing::from_keys(keys).map_err(|e| match e {
            KeyError::Corrupt { why, .. } => KeyError::Corrupt {
                path: self.dir.join(KEYRING_FILE),
                why,
            },
            other => other,
        })
    }

    fn key_path(&self, record: &KeyRecord) -> Result<PathBuf, KeyError> {
        if !plain_file_name(&record.file) {
            return Err(KeyError::Corrupt {
                path: self.dir.join(KEYRING_FILE),
                why: format!("key file name {:?} is not a plain file name", record.file),
            });
        }
        Ok(self.dir.join(&record.file))
    }

    fn load_key(&self, record: KeyRecord) -> Result<RingKey, KeyError> {
        let path = self.key_path(&record)?;
        let pem = fs::read_to_string(&path).map_err(io_err(&path))?;
        let der = decode_pem(&pem).map_err(|why| KeyError::Corrupt {
            path: path.clone(),
            why,
        })?;
        let signing = SigningKey::from_pkcs8(record.alg, &der).map_err(|e| KeyError::Corrupt {
            path: path.clone(),
            why: e.to_string(),
        })?;
        RingKey::new(record, signing).map_err(|e| match e {
            KeyError::Corrupt { why, .. } => KeyError::Corrupt { path, why },
            other => other,
        })
    }

    /// Makes an active and a next key. Refuses a folder that has a ring.
    pub fn init(&self, alg: Algorithm, rsa_bits: u32, now: i64) -> Result<KeyRing, KeyError> {
        let _lock = self.lock()?;
        if self.read_manifest()?.is_some() {
            return Err(KeyError::AlreadyInitialised { path: self.dir.clone() });
        }
        self.init_locked(alg, rsa_bits, now)
    }

    /// Loads the ring, making one first if the folder has none (what
    /// `serve` does on embedded defaults), and returns it with the folder
    /// to serve from. A folder that cannot be written here is loaded
    /// without the lock, and the `KeyDir` returned says why it is
    /// [`read_only`](KeyDir::read_only); one that has no ring is `no_keys`.
    pub fn ensure(&self, alg: Algorithm, rsa_bits: u32, now: i64) -> Result<(KeyRing, KeyDir), KeyError> {
        let _lock = match self.lock() {
            Ok(lock) => lock,
            Err(KeyError::ReadOnly { source, .. }) => {
                let dir = KeyDir {
                    dir: self.dir.clone(),
                    read_only: Some(Arc::new(source)),
                };
                return Ok((dir.load()?, dir));
            }
            Err(e) => return Err(e),
        };
        let ring = match self.read_manifest()? {
            Some(bytes) => self.load_manifest(&bytes)?,
            None => self.init_locked(alg, rsa_bits, now)?,
        };
        Ok((ring, self.clone()))
    }

    fn init_locked(&self, alg: Algorithm, rsa_bits: u32, now: i64) -> Result<KeyRing, KeyError> {
        let active = self.new_key(alg, rsa_bits, KeyState::Active, now)?;
        let next = self.new_key(alg, rsa_bits, KeyState::Next, now)?;
        let ring = KeyRing::from_keys(vec![active, next])?;
        self.write_manifest(&ring)?;
        Ok(ring)
    }

    /// Rotates under the lock: checks the timing first (no key is made for a
    /// rotation that would be refused, and nothing on disk changes), removes
    /// the leftovers of interrupted operations, writes the new key's file,
    /// then the new manifest. `alg` maps the active key's algorithm to the
    /// new key's (see `KeysConfig::rotation_algorithm`).
    pub fn rotate(
        &self,
        policy: &RingPolicy,
        alg: impl FnOnce(Algorithm) -> Algorithm,
        rsa_bits: u32,
        now: i64,
        force: bool,
    ) -> Result<Changed, KeyError> {
        let _lock = self.lock()?;
        let ring = self.load()?;
        ring.check_rotation(policy, now, force)?;
        let leftovers = leftovers::remove(&self.dir, &ring);
        let alg = alg(ring.active().ok_or(KeyError::NoActiveKey)?.record.alg);
        let next = self.new_key(alg, rsa_bits, KeyState::Next, now)?;
        let ring = ring.rotate(policy, now, force, next)?;
        self.write_manifest(&ring)?;
        Ok(Changed {
            ring,
            pruned: Vec::new(),
            leftovers,
        })
    }

    /// Drops retiring keys past their time (the manifest first, then their
    /// files) and removes the leftovers of interrupted operations.
    pub fn prune(&self, policy: &RingPolicy, now: i64) -> Result<Changed, KeyError> {
        let _lock = self.lock()?;
        let loaded = self.load()?;
        let leftovers = leftovers::remove(&self.dir, &loaded);
        let (ring, pruned) = loaded.prune(policy, now);
        if !pruned.is_empty() {
            self.write_manifest(&ring)?;
        }
        for record in &pruned {
            let path = self.key_path(record)?;
            if let Err(e) = fs::remove_file(&path) {
                // The manifest no longer names it; a leftover file is harmless.
                tracing::warn!(file = %path.display(), error = %e, "could not delete a pruned key file");
            }
        }
        Ok(Changed {
            ring,
            pruned,
            leftovers,
        })
    }

    fn new_key(&self, alg: Algorithm, rsa_bits: u32, state: KeyState, now: i64) -> Result<RingKey, KeyError> {
        let (signing, der) = SigningKey::generate(alg, rsa_bits)?;
        let key = RingKey::fresh(signing, state, now)?;
        let pem = encode_pem(&der);
        write_new_file(&self.dir, &key.record.file, pem.as_bytes())?;
        Ok(key)
    }

    fn write_manifest(&self, ring: &KeyRing) -> Result<(), KeyError> {
        let manifest = Manifest {
            version: 1,
            keys: ring.records(),
        };
        let mut bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| KeyError::Corrupt {
            path: self.dir.join(KEYRING_FILE),
            why: e.to_string(),
        })?;
        bytes.push(b'\n');
        replace_file(&self.dir, KEYRING_FILE, &bytes)
    }
}

fn temp_path(dir: &Path, name: &str) -> Result<PathBuf, KeyError> {
    let mut r = [0u8; 8];
    crate::jose::alg::random_bytes(&mut r)?;
    let suffix: String = r.iter().map(|b| format!("{b:02x}")).collect();
    Ok(dir.join(format!(".{name}.{}.{suffix}.tmp", std::process::id())))
}

/// Writes a temporary file with mode 0600 and fsyncs it.
fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, KeyError> {
    let tmp = temp_path(dir, name)?;
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    match result {
        Ok(()) => Ok(tmp),
        Err(source) => {
            let _ = fs::remove_file(&tmp);
            Err(KeyError::Io { path: tmp, source })
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Puts a new file in place atomically, refusing to overwrite one that
/// exists (a hard link fails where the name is taken).
fn write_new_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), KeyError> {
    let tmp = write_temp(dir, name, bytes)?;
    let target = dir.join(name);
    let linked = fs::hard_link(&tmp, &target);
    let _ = fs::remove_file(&tmp);
    linked.map_err(io_err(&target))?;
    sync_dir(dir)
}

/// Replaces a file atomically (rename over it).
fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), KeyError> {
    let tmp = write_temp(dir, name, bytes)?;
    let target = dir.join(name);
    if let Err(source) = fs::rename(&tmp, &target) {
        let _ = fs::remove_file(&tmp);
        return Err(KeyError::Io { path: target, source });
    }
    sync_dir(dir)
}

/// PKCS#8 DER as PEM (RFC 7468), 64 characters a line.
pub fn encode_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {PEM_LABEL}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    out
}

/// The DER inside a `PRIVATE KEY` PEM block. The error never contains key bytes.
pub fn decode_pem(pem: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let start = pem
        .find(&begin)
        // Worded without the PEM label: log scanners flag "PRIVATE KEY" as a leak.
        .ok_or("no PKCS#8 PEM block (convert with `openssl pkcs8 -topk8 -nocrypt`)")?;
    let body = &pem[start + begin.len()..];
    let stop = body.find(&end).ok_or("the PEM block is not terminated")?;
    let b64: String = body[..stop].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD
        .decode(b64)
        .map_err(|_| "the PEM block is not valid base64".to_owned())
}

#[cfg(test)]
mod tests;
