//! Key-encryption keys for plan artifacts at rest.
//!
//! Every stored plan file and plan JSON is encrypted with its own random 256-bit data key
//! ([`crate::seal`]); the data key is wrapped by a key-encryption key (KEK) from a
//! [`KeyProvider`]. The trait is small on purpose: a cloud KMS implements it with its own
//! wrap/unwrap calls, and nothing else in sluice changes.
//!
//! [`LocalKeys`] is the built-in provider. Its keys come from, in this order:
//! 1. `SLUICE_ARTIFACT_KEY`: one or more base64 keys (32 bytes each), separated by commas or
//!    whitespace;
//! 2. a key file: `--artifact-key-file PATH`, else `SLUICE_ARTIFACT_KEY_FILE`, else the
//!    platform data directory (`$XDG_DATA_HOME/sluice/artifact-keys`, by default
//!    `~/.local/share/sluice/artifact-keys`), which is created with a fresh key (mode 0600 in a
//!    0700 directory) the first time an artifact is stored.
//!
//! The first key encrypts new artifacts; every key listed decrypts. Rotating is adding a new
//! key at the top and keeping the old ones below it until no artifact needs them
//! (docs/artifact-keys.md).
//!
//! Like signing keys, the key file lives outside the work tree by default. A key file that
//! others can read, or one inside a git work tree that is not under an ignored `.sluice/`, is
//! refused with a message that says how to fix it.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// Environment variable holding the key(s) themselves (base64).
pub const KEY_ENV: &str = "SLUICE_ARTIFACT_KEY";
/// Environment variable naming the key file.
pub const KEY_FILE_ENV: &str = "SLUICE_ARTIFACT_KEY_FILE";
/// The key file's name in the platform data directory.
pub const KEY_FILE_NAME: &str = "artifact-keys";

/// Length of a data key and of a key-encryption key (AES-256).
pub const KEY_LEN: usize = 32;

/// A data key, wiped from memory when dropped.
pub type DataKey = Zeroizing<[u8; KEY_LEN]>;

/// A data key as wrapped by a [`KeyProvider`], with the id of the key that wrapped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// Names the wrapping key (not secret); at most 255 bytes.
    pub key_id: String,
    pub bytes: Vec<u8>,
}

/// Why a key could not be found, read or used. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no artifact key: {wanted}; set {KEY_ENV} (base64 of 32 random bytes) or \
         {KEY_FILE_ENV}, or pass --artifact-key-file (docs/artifact-keys.md)"
    )]
    Missing { wanted: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{place}: line {line}: not an artifact key (expected base64 of {KEY_LEN} bytes)")]
    Malformed { place: String, line: usize },
    #[error(
        "{path}: the artifact key file is readable by others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error(
        "{path}: the artifact key file is inside the git work tree {repo}, where `git add` could \
         commit it; move it outside (the default is {default}) or under {repo}/.sluice/ with a \
         .gitignore containing `*`"
    )]
    InWorkTree {
        path: PathBuf,
        repo: PathBuf,
        default: String,
    },
    #[error(
        "this artifact was encrypted with key {key_id}, which is not among the keys configured \
         ({available}); add the old key below the current one (docs/artifact-keys.md)"
    )]
    UnknownKey { key_id: String, available: String },
    #[error("the data key wrapped by key {key_id} does not open: wrong key or tampered artifact")]
    Unwrap { key_id: String },
    #[error("the platform's cryptographic random source failed")]
    Random,
}

/// Wraps and unwraps data keys. A KMS-backed provider implements the same three calls.
pub trait KeyProvider: Send + Sync {
    /// Wrap a fresh data key with the current key-encryption key.
    fn wrap(&self, data_key: &[u8; KEY_LEN]) -> Result<WrappedKey, KeyError>;
    /// Unwrap a data key; fails when the named key is unknown or the bytes do not open.
    fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, KeyError>;
    /// Where keys come from, for messages (never key material).
    fn describe(&self) -> String;
}

/// A key-encryption key with its id.
struct Kek {
    id: String,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl Kek {
    fn new(key: [u8; KEY_LEN]) -> Kek {
        Kek {
            id: key_id(&key),
            key: Zeroizing::new(key),
        }
    }
}

/// The public id of a key: 16 hex digits of a domain-separated SHA-256 of it.
pub fn key_id(key: &[u8; KEY_LEN]) -> String {
    let mut h = Sha256::new();
    h.update(b"sluice artifact key id v1\0");
    h.update(key);
    hex::encode(&h.finalize()[..8])
}

/// A fresh random key, base64 encoded (what a key file line holds).
pub fn generate_key() -> Result<String, KeyError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    aws_lc_rs::rand::fill(&mut key[..]).map_err(|_| KeyError::Random)?;
    Ok(B64.encode(&key[..]))
}

/// Where [`LocalKeys`] reads its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Keys given inline (from `SLUICE_ARTIFACT_KEY`).
    Inline(String),
    /// A key file; `create` says whether a missing file may be created with a fresh key
    /// (the default location only: a file the user named must exist).
    File { path: PathBuf, create: bool },
}

impl KeySource {
    /// The source the environment and an optional `--artifact-key-file` select.
    pub fn from_env(flag: Option<&Path>) -> Result<KeySource, KeyError> {
        if let Some(p) = flag {
            return Ok(KeySource::File {
                path: p.to_path_buf(),
                create: false,
            });
        }
        if let Ok(keys) = std::env::var(KEY_ENV)
            && !keys.trim().is_empty()
        {
            return Ok(KeySource::Inline(keys));
        }
        if let Some(p) = std::env::var_os(KEY_FILE_ENV).filter(|p| !p.is_empty()) {
            return Ok(KeySource::File {
                path: PathBuf::from(p),
                create: false,
            });
        }
        match default_key_file() {
            Some(path) => Ok(KeySource::File { path, create: true }),
            None => Err(KeyError::Missing {
                wanted: "neither XDG_DATA_HOME nor HOME is set, so there is no default key file"
                    .into(),
            }),
        }
    }
}

/// `$XDG_DATA_HOME/sluice/artifact-keys`, else `$HOME/.local/share/sluice/artifact-keys`.
pub fn default_key_file() -> Option<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let data = non_empty("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data.join("sluice").join(KEY_FILE_NAME))
}

/// The built-in provider: keys from the environment or a local key file (module docs).
pub struct LocalKeys {
    source: KeySource,
    /// Loaded on first use, so that a command that stores nothing never touches the key.
    loaded: Mutex<Option<std::sync::Arc<Vec<Kek>>>>,
}

impl fmt::Debug for LocalKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKeys")
            .field("source", &self.describe())
            .finish_non_exhaustive()
    }
}

impl LocalKeys {
    pub fn new(source: KeySource) -> LocalKeys {
        LocalKeys {
            source,
            loaded: Mutex::new(None),
        }
    }

    /// Keys as the environment (and an optional `--artifact-key-file`) configure them.
    pub fn from_env(flag: Option<&Path>) -> Result<LocalKeys, KeyError> {
        Ok(LocalKeys::new(KeySource::from_env(flag)?))
    }

    /// Load the keys now, creating the default key file if it is missing, so that a command
    /// fails before it plans anything rather than when it stores the first artifact.
    /// Returns the ids, current first.
    pub fn ensure(&self) -> Result<Vec<String>, KeyError> {
        Ok(self.keys(true)?.iter().map(|k| k.id.clone()).collect())
    }

    /// The ids of the configured keys, current first (for `describe` and messages).
    pub fn key_ids(&self) -> Result<Vec<String>, KeyError> {
        Ok(self.keys(false)?.iter().map(|k| k.id.clone()).collect())
    }

    fn keys(&self, create: bool) -> Result<std::sync::Arc<Vec<Kek>>, KeyError> {
        let mut slot = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = slot.as_ref() {
            return Ok(k.clone());
        }
        let keys = std::sync::Arc::new(match &self.source {
            KeySource::Inline(text) => parse_keys(text, KEY_ENV)?,
            KeySource::File { path, create: may } => load_file(path, create && *may)?,
        });
        *slot = Some(keys.clone());
        Ok(keys)
    }
}

impl KeyProvider for LocalKeys {
    fn wrap(&self, data_key: &[u8; KEY_LEN]) -> Result<WrappedKey, KeyError> {
        let keys = self.keys(true)?;
        let kek = keys.first().ok_or_else(|| KeyError::Missing {
            wanted: format!("{} lists no key", self.describe()),
        })?;
        let sealer =
            RandomizedNonceKey::new(&AES_256_GCM, &kek.key[..]).map_err(|_| KeyError::Random)?;
        let mut buf = data_key.to_vec();
        let nonce = sealer
            .seal_in_place_append_tag(Aad::from(wrap_aad(&kek.id)), &mut buf)
            .map_err(|_| KeyError::Random)?;
        let mut bytes = nonce.as_ref().to_vec();
        bytes.extend_from_slice(&buf);
        Ok(WrappedKey {
            key_id: kek.id.clone(),
            bytes,
        })
    }

    fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, KeyError> {
        let keys = self.keys(false)?;
        let kek = keys
            .iter()
            .find(|k| k.id == wrapped.key_id)
            .ok_or_else(|| KeyError::UnknownKey {
                key_id: wrapped.key_id.clone(),
                available: keys
                    .iter()
                    .map(|k| k.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let bad = || KeyError::Unwrap {
            key_id: wrapped.key_id.clone(),
        };
        let nonce_len = AES_256_GCM.nonce_len();
        if wrapped.bytes.len() != nonce_len + KEY_LEN + AES_256_GCM.tag_len() {
            return Err(bad());
        }
        let (nonce, sealed) = wrapped.bytes.split_at(nonce_len);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let opener =
            RandomizedNonceKey::new(&AES_256_GCM, &kek.key[..]).map_err(|_| KeyError::Random)?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let plain = opener
            .open_in_place(nonce, Aad::from(wrap_aad(&kek.id)), &mut buf)
            .map_err(|_| bad())?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(plain);
        Ok(key)
    }

    fn describe(&self) -> String {
        match &self.source {
            KeySource::Inline(_) => format!("${KEY_ENV}"),
            KeySource::File { path, .. } => path.display().to_string(),
        }
    }
}

/// The wrapped data key is bound to the id of the key that wrapped it.
fn wrap_aad(key_id: &str) -> Vec<u8> {
    let mut aad = b"sluice data key v1\0".to_vec();
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

/// Keys from text: one base64 key per line (or comma/whitespace separated); `#` starts a
/// comment. `place` names the source in errors.
fn parse_keys(text: &str, place: &str) -> Result<Vec<Kek>, KeyError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for token in line.split([',', ' ', '\t']).filter(|t| !t.is_empty()) {
            let bytes = Zeroizing::new(B64.decode(token).map_err(|_| KeyError::Malformed {
                place: place.to_string(),
                line: i + 1,
            })?);
            let key: [u8; KEY_LEN] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| KeyError::Malformed {
                        place: place.to_string(),
                        line: i + 1,
                    })?;
            keys.push(Kek::new(key));
        }
    }
    if keys.is_empty() {
        return Err(KeyError::Missing {
            wanted: format!("{place} holds no key"),
        });
    }
    Ok(keys)
}

fn load_file(path: &Path, create: bool) -> Result<Vec<Kek>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    refuse_in_work_tree(path)?;
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => create_key_file(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyError::Missing {
                wanted: format!("{} does not exist", path.display()),
            });
        }
        Err(e) => return Err(io(e)),
    };
    let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    parse_keys(&text, &path.display().to_string())
}

/// A new key file holding one fresh key: 0700 directory, 0600 file, written create-only.
fn create_key_file(path: &Path) -> Result<String, KeyError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| KeyError::Io { path: p, source }
    };
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    let text = format!(
        "# sluice artifact keys: the first encrypts new plan artifacts, all decrypt.\n\
         # Rotate by adding a new key on top; keep old keys while artifacts need them.\n{}\n",
        *Zeroizing::new(generate_key()?)
    );
    let text = Zeroizing::new(text);
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(io(path))?;
            f.write_all(text.as_bytes()).map_err(io(path))?;
            f.sync_all().map_err(io(path))?;
            Ok(text.to_string())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            fs::read_to_string(path).map_err(io(path))
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// A key file inside a git work tree is refused unless it sits under that tree's `.sluice/`
/// directory and that directory's `.gitignore` ignores everything (`*`).
fn refuse_in_work_tree(path: &Path) -> Result<(), KeyError> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let Some(repo) = abs.ancestors().skip(1).find(|d| d.join(".git").exists()) else {
        return Ok(());
    };
    let dot_sluice = repo.join(".sluice");
    let ignored = abs.starts_with(&dot_sluice)
        && fs::read_to_string(dot_sluice.join(".gitignore"))
            .is_ok_and(|t| t.lines().any(|l| l.trim() == "*"));
    if ignored {
        return Ok(());
    }
    Err(KeyError::InWorkTree {
        path: abs.clone(),
        repo: repo.to_path_buf(),
        default: default_key_file()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("$XDG_DATA_HOME/sluice/{KEY_FILE_NAME}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(keys: &[&str]) -> LocalKeys {
        LocalKeys::new(KeySource::Inline(keys.join(",")))
    }

    #[test]
    fn wrap_unwrap_and_rotation() {
        let old = generate_key().unwrap();
        let new = generate_key().unwrap();
        let before = inline(&[&old]);
        let dk = [7u8; KEY_LEN];
        let w = before.wrap(&dk).unwrap();
        assert_eq!(w.key_id, before.key_ids().unwrap()[0]);
        // After rotation the new key wraps and the old one still unwraps.
        let after = inline(&[&new, &old]);
        assert_eq!(*after.unwrap(&w).unwrap(), dk);
        let w2 = after.wrap(&dk).unwrap();
        assert_ne!(w2.key_id, w.key_id);
        // Dropping the old key: a clear error naming the key that is needed.
        let dropped = inline(&[&new]);
        match dropped.unwrap(&w) {
            Err(KeyError::UnknownKey { key_id, .. }) => assert_eq!(key_id, w.key_id),
            other => panic!("{other:?}"),
        }
        // Tampered wrapped key.
        let mut bad = w.clone();
        let last = bad.bytes.len() - 1;
        bad.bytes[last] ^= 1;
        assert!(matches!(before.unwrap(&bad), Err(KeyError::Unwrap { .. })));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/sluice").join(KEY_FILE_NAME);
        let keys = LocalKeys::new(KeySource::File {
            path: path.clone(),
            create: true,
        });
        // Reading never creates a key.
        assert!(matches!(keys.key_ids(), Err(KeyError::Missing { .. })));
        let keys = LocalKeys::new(KeySource::File {
            path: path.clone(),
            create: true,
        });
        let w = keys.wrap(&[1u8; KEY_LEN]).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let again = LocalKeys::new(KeySource::File {
            path: path.clone(),
            create: false,
        });
        assert_eq!(*again.unwrap(&w).unwrap(), [1u8; KEY_LEN]);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let exposed = LocalKeys::new(KeySource::File {
            path,
            create: false,
        });
        let err = exposed.key_ids().unwrap_err();
        assert!(
            matches!(err, KeyError::Exposed { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn key_in_a_work_tree_is_refused_unless_ignored() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(".git")).unwrap();
        let path = dir.path().join("keys").join(KEY_FILE_NAME);
        let keys = LocalKeys::new(KeySource::File {
            path: path.clone(),
            create: true,
        });
        let err = keys.wrap(&[0u8; KEY_LEN]).unwrap_err();
        assert!(matches!(err, KeyError::InWorkTree { .. }), "{err}");
        assert!(!path.exists());
        let ignored = dir.path().join(".sluice").join(KEY_FILE_NAME);
        fs::create_dir(dir.path().join(".sluice")).unwrap();
        fs::write(dir.path().join(".sluice/.gitignore"), "*\n").unwrap();
        let keys = LocalKeys::new(KeySource::File {
            path: ignored,
            create: true,
        });
        keys.wrap(&[0u8; KEY_LEN]).unwrap();
    }

    #[test]
    fn malformed_keys_name_their_line_and_never_echo() {
        let good = generate_key().unwrap();
        let text = format!("# comment\n{good}\nnot-base64-secretish\n");
        let err = parse_keys(&text, "keys.txt").err().unwrap();
        assert!(err.to_string().contains("keys.txt: line 3"), "{err}");
        assert!(!err.to_string().contains("secretish"));
        let short = B64.encode([1u8; 16]);
        assert!(matches!(
            parse_keys(&short, KEY_ENV),
            Err(KeyError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            parse_keys("# only\n", KEY_ENV),
            Err(KeyError::Missing { .. })
        ));
    }
}
