//! Content-addressed storage of plan files and plan JSON.
//!
//! Both hold secrets (a saved plan carries every variable and attribute value in clear), so
//! they are written as secrets: directories `0700`, files `0600`, never printed. Each blob is
//! named by the SHA-256 of its bytes and written create-only (temp file, fsync, rename, fsync
//! of the directory), so a crash leaves either the whole blob or nothing and a digest always
//! names the same bytes.
//!
//! The [`PlanStore`] trait is the seam for the general artifact store (SQLite/PostgreSQL
//! records with local or S3-compatible blobs, DESIGN.md §6); [`FsPlanStore`] is the embedded
//! default under `.sluice/blobs/sha256/`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

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

/// Blobs on local disk under `<root>/blobs/sha256/<2 hex>/<62 hex>`.
#[derive(Debug, Clone)]
pub struct FsPlanStore {
    root: PathBuf,
}

impl FsPlanStore {
    /// `root` is the `.sluice` directory; it is created (0700) on first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsPlanStore { root: root.into() }
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
            f.write_all(bytes)?;
            f.sync_all()?;
            Ok(())
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io(&tmp, e));
        }
        // rename over an existing identical blob is harmless (same content, same digest).
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
            Ok(bytes) => {
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
        format!("{}/blobs/sha256", self.root.display())
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

    #[test]
    fn put_get_modes_and_idempotence() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsPlanStore::new(dir.path().join(".sluice"));
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
    fn corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsPlanStore::new(dir.path());
        let d = store.put_secret(b"abc").unwrap();
        let path = store.blob_path(&d);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, b"abd").unwrap();
        assert!(matches!(store.get(&d), Err(StoreError::Corrupt { .. })));
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
