//! The evidence signing key (Ed25519): generated on first use into a key directory
//! (`.sluice/keys/`, mode 0600, created atomically and never overwritten) or loaded from a
//! PKCS#8 PEM file an operator provides, plus public-key export and parsing.
//!
//! The secret never leaves this module in text form except through [`EvidenceKey::to_pkcs8_pem`]
//! (used only to write the key file); `Debug` and every error show the key id at most.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use thiserror::Error;

use crate::checkpoint;

/// File name of the generated key inside the key directory.
pub const KEY_FILE: &str = "evidence-ed25519.pem";

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a PKCS#8 Ed25519 private key in PEM form: {reason}")]
    PrivatePem { path: PathBuf, reason: String },
    #[error(
        "{path}: private key is accessible to group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("cannot obtain random bytes for a new key: {0}")]
    Random(String),
    #[error("not an Ed25519 public key: {0}")]
    PublicKey(String),
}

/// Where a key came from, so the CLI can say "generated a new evidence key" once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    Generated,
    Loaded,
}

/// An Ed25519 signing key for statements and checkpoints.
#[derive(Clone)]
pub struct EvidenceKey {
    signing: SigningKey,
}

impl fmt::Debug for EvidenceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvidenceKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl EvidenceKey {
    pub fn from_signing_key(signing: SigningKey) -> Self {
        Self { signing }
    }

    /// Builds a key from its 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(seed))
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        let key = Self::from_seed(&seed);
        seed.fill(0);
        Ok(key)
    }

    /// Parses a PKCS#8 PEM private key; `origin` names its file in errors.
    pub fn from_pkcs8_pem(text: &str, origin: &Path) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(text)
            .map(Self::from_signing_key)
            .map_err(|e| KeyError::PrivatePem {
                path: origin.to_path_buf(),
                reason: e.to_string(),
            })
    }

    /// The PKCS#8 PEM text of the private key: secret, for writing the key file only. The
    /// buffer is wiped when dropped.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        self.signing
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an Ed25519 key always encodes")
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Hex SHA-256 of the 32-byte public key.
    pub fn key_id(&self) -> String {
        key_id(&self.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }
}

/// Key id of a public key: hex SHA-256 of its 32 raw bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(crate::sha256(key.as_bytes()))
}

/// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block.
pub fn public_key_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("an Ed25519 public key always encodes")
}

/// The public key's 32 raw bytes in standard base64.
pub fn public_key_base64(key: &VerifyingKey) -> String {
    B64.encode(key.as_bytes())
}

/// Parses a public key given as PEM (`-----BEGIN PUBLIC KEY-----`), as a C2SP verifier key
/// (`name+keyid+base64`), as base64 of the 32 raw bytes, or as 64 hex digits.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(text)
            .map_err(|e| KeyError::PublicKey(format!("PEM: {e}")));
    }
    if text.contains('+') && text.split('+').count() >= 3 && !text.ends_with('=') {
        // A verifier key's name cannot be confused with base64 of 32 bytes (which is 44 chars
        // ending in '='), so the '+' test above is unambiguous.
        return checkpoint::NoteVerifier::from_vkey(text)
            .map(|v| *v.key())
            .map_err(|e| KeyError::PublicKey(e.to_string()));
    }
    let raw = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|e| KeyError::PublicKey(e.to_string()))?
    } else {
        B64.decode(text)
            .map_err(|e| KeyError::PublicKey(format!("base64: {e}")))?
    };
    let bytes: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::PublicKey(format!("expected 32 bytes, found {}", raw.len())))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| KeyError::PublicKey(e.to_string()))
}

/// Loads a private key from a PKCS#8 PEM file an operator provides.
pub fn load_pem_file(path: &Path) -> Result<EvidenceKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    EvidenceKey::from_pkcs8_pem(&text, path)
}

/// Loads the key in `dir` (see [`KEY_FILE`]), generating it on first use. The directory is
/// created with mode 0700 and the key file with 0600; an existing key with looser permissions
/// is refused rather than silently used.
pub fn load_or_generate(dir: &Path) -> Result<(EvidenceKey, KeyOrigin), KeyError> {
    let path = dir.join(KEY_FILE);
    match fs::metadata(&path) {
        Ok(_) => return load_private_key_file(&path).map(|k| (k, KeyOrigin::Loaded)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(KeyError::Io { path, source }),
    }
    create_dir_private(dir)?;
    let key = EvidenceKey::generate()?;
    match write_new_file(dir, KEY_FILE, key.to_pkcs8_pem().as_bytes())? {
        Written::Created => Ok((key, KeyOrigin::Generated)),
        // Another process generated the key first: use theirs, so every writer signs with one.
        Written::AlreadyExisted => load_private_key_file(&path).map(|k| (k, KeyOrigin::Loaded)),
    }
}

fn load_private_key_file(path: &Path) -> Result<EvidenceKey, KeyError> {
    check_private_mode(path)?;
    load_pem_file(path)
}

#[cfg(unix)]
fn check_private_mode(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_mode(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

fn create_dir_private(dir: &Path) -> Result<(), KeyError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| KeyError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

enum Written {
    Created,
    AlreadyExisted,
}

/// Writes `bytes` to `dir/name` atomically and without ever replacing an existing file: write a
/// private temp file, fsync it, hard-link it into place (linking fails if the name exists, where
/// a rename would overwrite), then fsync the directory so the new name survives a crash.
fn write_new_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<Written, KeyError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { path, source }
    };
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| KeyError::Random(e.to_string()))?;
    let tmp = dir.join(format!(".{name}.tmp-{}", hex::encode(nonce)));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
        file.write_all(bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        let target = dir.join(name);
        let outcome = match fs::hard_link(&tmp, &target) {
            Ok(()) => Written::Created,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Written::AlreadyExisted,
            Err(source) => {
                return Err(KeyError::Io {
                    path: target,
                    source,
                });
            }
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
        Ok(outcome)
    })();
    // The temp name is ours alone; remove it whatever happened (the link keeps the data).
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join(".sluice/keys");
        let (first, origin) = load_or_generate(&keys).unwrap();
        assert_eq!(origin, KeyOrigin::Generated);
        let (second, origin) = load_or_generate(&keys).unwrap();
        assert_eq!(origin, KeyOrigin::Loaded);
        assert_eq!(first.verifying_key(), second.verifying_key());
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(&keys)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![KEY_FILE.to_string()]);
    }

    #[cfg(unix)]
    #[test]
    fn key_file_and_directory_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        load_or_generate(&keys).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&keys.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&keys), 0o700);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_key_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        load_or_generate(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_generate(dir.path()).unwrap_err();
        assert!(
            matches!(err, KeyError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn never_overwrites_an_existing_key() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = load_or_generate(dir.path()).unwrap();
        let other = EvidenceKey::from_seed(&[7; 32]);
        let written =
            write_new_file(dir.path(), KEY_FILE, other.to_pkcs8_pem().as_bytes()).unwrap();
        assert!(matches!(written, Written::AlreadyExisted));
        let (again, _) = load_or_generate(dir.path()).unwrap();
        assert_eq!(again.verifying_key(), key.verifying_key());
    }

    #[test]
    fn pem_round_trip_and_clear_error_for_garbage() {
        let key = EvidenceKey::from_seed(&[1; 32]);
        let pem = key.to_pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = EvidenceKey::from_pkcs8_pem(&pem, Path::new("k.pem")).unwrap();
        assert_eq!(back.verifying_key(), key.verifying_key());

        let err = EvidenceKey::from_pkcs8_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            Path::new("bad.pem"),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("bad.pem: not a PKCS#8"),
            "{err}"
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let seed = [0x5a; 32];
        let key = EvidenceKey::from_seed(&seed);
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.key_id()));
        assert!(!shown.contains(&hex::encode(seed)));
        assert!(!shown.contains("5a, 5a"));
    }

    #[test]
    fn key_id_is_sha256_of_the_raw_public_key() {
        let key = EvidenceKey::from_seed(&[2; 32]);
        assert_eq!(
            key.key_id(),
            hex::encode(crate::sha256(&key.verifying_key().to_bytes()))
        );
    }

    #[test]
    fn parses_public_keys_in_every_exported_form() {
        let key = EvidenceKey::from_seed(&[3; 32]).verifying_key();
        assert_eq!(parse_public_key(&public_key_pem(&key)).unwrap(), key);
        assert_eq!(parse_public_key(&public_key_base64(&key)).unwrap(), key);
        assert_eq!(parse_public_key(&hex::encode(key.as_bytes())).unwrap(), key);
        let vkey = checkpoint::NoteVerifier::new("sluice.example/log", key)
            .unwrap()
            .vkey();
        assert_eq!(parse_public_key(&vkey).unwrap(), key);
        assert!(matches!(
            parse_public_key("AAAA"),
            Err(KeyError::PublicKey(m)) if m.contains("expected 32 bytes")
        ));
    }
}
