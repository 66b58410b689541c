//! Content-addressed storage of plan files and plan JSON, encrypted at rest.
//!
//! Both hold secrets (a saved plan carries every variable and attribute value in clear), so
//! each is encrypted with its own data key ([`crate::seal`], keys from [`crate::keys`]) and
//! written as a secret: directories `0700`, files `0600`, never printed. Each blob is named by
//! the SHA-256 of its *plaintext* (evidence names plans by that digest) and written
//! create-only (temp file, fsync, rename, fsync of the directory), so a crash leaves either
//! the whole blob or nothing and a digest always names the same content. Reading needs the
//! key; a wrong key or a tampered blob is an error, never wrong bytes.
//!
//! The [`PlanStore`] trait is the seam for the general artifact store (SQLite/PostgreSQL
//! records with local or S3-compatible blobs, DESIGN.md §6); [`FsPlanStore`] is the embedded
//! default under `.sluice/blobs/sha256/`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::keys::{KeyError, KeyProvider, LocalKeys, WrappedKey};
use crate::seal::{self, SealError};

/// A SHA-256 digest, rendered `sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(hex::encode(Sha256::digest(bytes)))
    }

    /// Parse `sha256:<hex>` or bare hex.
    pub fn parse(text: &str) -> Option<Digest> {
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Digest(hex.to_ascii_lowercase()))
    }

    pub fn hex(&self) -> &str {
        &self.0
    }

    fn raw(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.0, &mut out).expect("a digest is 64 hex digits");
        out
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    Corrupt { digest: Digest, actual: Digest },
    #[error("plan artifact keys ({place}): {source}")]
    Key {
        place: String,
        #[source]
        source: KeyError,
    },
    #[error("plan artifact {digest}: {source}")]
    Sealed {
        digest: Digest,
        #[source]
        source: SealError,
    },
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Where plan artifacts go. Implementations must be create-only and content-addressed.
pub trait PlanStore: Send + Sync {
    /// Store secret bytes; returns their digest. Storing the same bytes twice is a no-op.
    fn put_secret(&self, bytes: &[u8]) -> Result<Digest, StoreError>;
    /// Read a blob back, verifying its digest.
    fn get(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError>;
    /// A human description of where blobs go (for messages, never a credential).
    fn describe(&self) -> String;
}

/// Encrypted blobs on local disk under `<root>/blobs/sha256/<2 hex>/<62 hex>`.
#[derive(Clone)]
pub struct FsPlanStore {
    root: PathBuf,
    keys: Arc<dyn KeyProvider>,
}

impl std::fmt::Debug for FsPlanStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsPlanStore")
            .field("root", &self.root)
            .field("keys", &self.keys.describe())
            .finish()
    }
}

/// A provider for when no key source could even be named (no HOME): every use says why.
struct NoKeys(String);

impl KeyProvider for NoKeys {
    fn wrap(&self, _: &[u8; crate::keys::KEY_LEN]) -> Result<WrappedKey, KeyError> {
        Err(KeyError::Missing {
            wanted: self.0.clone(),
        })
    }
    fn unwrap(&self, _: &WrappedKey) -> Result<crate::keys::DataKey, KeyError> {
        Err(KeyError::Missing {
            wanted: self.0.clone(),
        })
    }
    fn describe(&self) -> String {
        "no key source".into()
    }
}

impl FsPlanStore {
    /// `root` is the `.sluice` directory; it is created (0700) on first write. Keys come
    /// from the environment or the default key file ([`LocalKeys::from_env`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let keys: Arc<dyn KeyProvider> = match LocalKeys::from_env(None) {
            Ok(k) => Arc::new(k),
            Err(e) => Arc::new(NoKeys(e.to_string())),
        };
        Self::with_keys(root, keys)
    }

    /// A store whose artifacts are wrapped by `keys` (a KMS, or keys given explicitly).
    pub fn with_keys(root: impl Into<PathBuf>, keys: Arc<dyn KeyProvider>) -> Self {
        FsPlanStore {
            root: root.into(),
            keys,
        }
    }

    fn key_error(&self, source: KeyError) -> StoreError {
        StoreError::Key {
            place: self.keys.describe(),
            source,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path a digest is stored at.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join("sha256")
            .join(&hex[..2])
            .join(&hex[2..])
    }
}

fn create_private_dirs(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io(dir, e))
}

impl PlanStore for FsPlanStore {
    fn put_secret(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(bytes);
        let path = self.blob_path(&digest);
        let dir = path.parent().expect("blob paths have a parent");
        if path.exists() {
            return Ok(digest);
        }
        let sealed = seal::seal(self.keys.as_ref(), bytes, &digest.raw()).map_err(|e| match e {
            SealError::Key(k) => self.key_error(k),
            other => StoreError::Sealed {
                digest: digest.clone(),
                source: other,
            },
        })?;
        create_private_dirs(dir)?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}-{}",
            &digest.hex()[..12],
            std::process::id(),
            unique()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            // The umask cannot widen 0600, but an inherited ACL or odd umask could narrow it
            // oddly; set it explicitly.
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            f.write_all(&sealed)?;
            f.sync_all()?;
            Ok(())
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io(&tmp, e));
        }
        // rename over an existing blob is harmless (same plaintext, same digest).
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(io(&path, e));
        }
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(dir, e))?;
        Ok(digest)
    }

    fn get(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.blob_path(digest);
        match fs::read(&path) {
            Ok(stored) => {
                // Blobs written before encryption at rest are plaintext; their digest still
                // vouches for them.
                let bytes = if seal::is_sealed(&stored) {
                    seal::open(self.keys.as_ref(), &stored, &digest.raw()).map_err(|e| match e {
                        SealError::Key(k @ KeyError::Unwrap { .. }) => StoreError::Sealed {
                            digest: digest.clone(),
                            source: SealError::Key(k),
                        },
                        SealError::Key(k) => self.key_error(k),
                        other => StoreError::Sealed {
                            digest: digest.clone(),
                            source: other,
                        },
                    })?
                } else {
                    stored
                };
                let actual = Digest::of(&bytes);
                if &actual != digest {
                    return Err(StoreError::Corrupt {
                        digest: digest.clone(),
                        actual,
                    });
                }
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}/blobs/sha256 (encrypted, keys: {})",
            self.root.display(),
            self.keys.describe()
        )
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeySource, generate_key};

    fn keys() -> Arc<dyn KeyProvider> {
        Arc::new(LocalKeys::new(KeySource::Inline(generate_key().unwrap())))
    }

    #[test]
    fn put_get_modes_and_idempotence() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsPlanStore::with_keys(dir.path().join(".sluice"), keys());
        let d = store.put_secret(b"plan bytes").unwrap();
        assert_eq!(d, Digest::of(b"plan bytes"));
        assert_eq!(d.to_string(), format!("sha256:{}", d.hex()));
        assert_eq!(d.hex().len(), 64);
        let path = store.blob_path(&d);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        assert_eq!(store.put_secret(b"plan bytes").unwrap(), d);
        assert_eq!(store.get(&d).unwrap().unwrap(), b"plan bytes");
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(store.get(&Digest::of(b"other")).unwrap().is_none());
    }

    #[test]
    fn stored_encrypted_and_unreadable_without_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let k = keys();
        let store = FsPlanStore::with_keys(dir.path(), k.clone());
        let secret = b"{\"password\": \"CANARY-at-rest-1234\"}";
        let d = store.put_secret(secret).unwrap();
        // Named by the plaintext's digest, holding ciphertext.
        assert_eq!(d, Digest::of(secret));
        let on_disk = fs::read(store.blob_path(&d)).unwrap();
        assert!(seal::is_sealed(&on_disk));
        assert!(!on_disk.windows(6).any(|w| w == b"CANARY"));
        assert_eq!(store.get(&d).unwrap().unwrap(), secret);
        // Another key: a clear error naming the key id needed, not bytes.
        let other = FsPlanStore::with_keys(dir.path(), keys());
        let err = other.get(&d).unwrap_err();
        assert!(
            err.to_string().contains("not among the keys configured"),
            "{err}"
        );
        // Tampered ciphertext.
        let path = store.blob_path(&d);
        let mut bad = on_disk.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        fs::write(&path, &bad).unwrap();
        let err = store.get(&d).unwrap_err();
        assert!(err.to_string().contains("tampered"), "{err}");
        // A plaintext blob from before encryption is read when its digest holds.
        let legacy = b"legacy plan";
        let ld = Digest::of(legacy);
        let lpath = store.blob_path(&ld);
        fs::create_dir_all(lpath.parent().unwrap()).unwrap();
        fs::write(&lpath, legacy).unwrap();
        assert_eq!(store.get(&ld).unwrap().unwrap(), legacy);
        fs::write(&lpath, b"legacy plam").unwrap();
        assert!(matches!(store.get(&ld), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn a_sealed_blob_cannot_pass_for_another_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsPlanStore::with_keys(dir.path(), keys());
        let a = store.put_secret(b"plan a").unwrap();
        let b = store.put_secret(b"plan b").unwrap();
        fs::copy(store.blob_path(&a), store.blob_path(&b)).unwrap();
        assert!(matches!(store.get(&b), Err(StoreError::Sealed { .. })));
    }

    #[test]
    fn digest_parse() {
        let d = Digest::of(b"x");
        assert_eq!(Digest::parse(&d.to_string()), Some(d.clone()));
        assert_eq!(Digest::parse(d.hex()), Some(d));
        assert_eq!(Digest::parse("sha256:xyz"), None);
        // Known vector: SHA-256 of "abc".
        assert_eq!(
            Digest::of(b"abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
