//! Log checkpoints: C2SP tlog-checkpoint bodies carried in C2SP signed notes (Ed25519).
//!
//! A signed note is its text (UTF-8 lines, each ending in a newline), a blank line, then one line
//! per signature: `— <key name> <base64(4-byte key id ‖ 64-byte signature)>` with the em dash
//! U+2014. The key id is the first four bytes of SHA-256(key name ‖ "\n" ‖ 0x01 ‖ public key); the
//! signature covers the text including its final newline. A checkpoint's text is
//! `origin\nsize\nbase64(root)\n` followed by optional extension lines.
//!
//! Verification follows the reference (golang.org/x/mod/sumdb/note): signatures by unknown keys
//! are ignored, a signature by a known key that does not verify is an error, and at least one
//! known key must have signed.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use thiserror::Error;

use crate::merkle::Hash;

/// C2SP signed-note algorithm byte for Ed25519.
pub const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";
/// The reference verifier refuses notes with more signatures than this; so do we.
const MAX_SIGNATURES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("note is malformed: {0}")]
    Shape(String),
    #[error("invalid key name {0:?}: must be non-empty, without spaces, newlines or '+'")]
    KeyName(String),
    #[error("invalid verifier key: {0}")]
    VerifierKey(String),
    #[error("signature by unknown key (signers: {})", signers.join(", "))]
    UnknownKey { signers: Vec<String> },
    #[error("signature by key {name} ({key_id}) is invalid")]
    InvalidSignature { name: String, key_id: String },
    #[error("checkpoint line {line}: {reason}")]
    Checkpoint { line: usize, reason: String },
}

/// Key id of an Ed25519 note key: SHA-256(name ‖ "\n" ‖ 0x01 ‖ key)[..4].
pub fn note_key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut buf = Vec::with_capacity(name.len() + 2 + 32);
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.push(ALG_ED25519);
    buf.extend_from_slice(key.as_bytes());
    let digest = crate::sha256(&buf);
    [digest[0], digest[1], digest[2], digest[3]]
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// A trusted note key: a name and an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    id: [u8; 4],
}

impl NoteVerifier {
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::KeyName(name.to_string()));
        }
        Ok(Self {
            name: name.to_string(),
            id: note_key_id(name, &key),
            key,
        })
    }

    /// Parses the verifier key text `<name>+<hex key id>+<base64(0x01 ‖ public key)>`; the key id
    /// must match the name and key.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let bad = |why: &str| NoteError::VerifierKey(format!("{why} in {vkey:?}"));
        // The base64 part may itself contain '+': split off the name and id only.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected <name>+<keyid>+<key>"));
        };
        if !valid_key_name(name) {
            return Err(NoteError::KeyName(name.to_string()));
        }
        if id_hex.len() != 8
            || !id_hex
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad("key id must be 8 lowercase hex digits"));
        }
        let raw = B64
            .decode(key_b64)
            .map_err(|e| bad(&format!("key is not base64 ({e})")))?;
        let Some((&alg, key_bytes)) = raw.split_first() else {
            return Err(bad("empty key"));
        };
        if alg != ALG_ED25519 {
            return Err(bad(&format!("unsupported key algorithm {alg:#04x}")));
        }
        let bytes: [u8; 32] = key_bytes
            .try_into()
            .map_err(|_| bad("Ed25519 key must be 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not an Ed25519 point"))?;
        let verifier = Self::new(name, key)?;
        if hex::encode(verifier.id) != id_hex {
            return Err(bad("key id does not match the name and key"));
        }
        Ok(verifier)
    }

    /// The verifier key text `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    pub fn vkey(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    pub fn key_id(&self) -> [u8; 4] {
        self.id
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: [u8; 4],
    pub signature: Vec<u8>,
}

/// A parsed (not yet verified) signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, including its final newline.
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

/// Checks that `text` can be a note's text: non-empty, newline-terminated, no ASCII control
/// characters but newlines (the reference verifier's rule). Returns the 1-based line of the
/// first problem.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() {
        return Err(NoteError::Shape("empty text".into()));
    }
    if !text.ends_with('\n') {
        return Err(NoteError::Shape("text must end with a newline".into()));
    }
    for (i, line) in text[..text.len() - 1].split('\n').enumerate() {
        if let Some(c) = line.chars().find(|c| u32::from(*c) < 0x20) {
            return Err(NoteError::Malformed {
                line: i + 1,
                reason: format!("control character {c:?} in note text"),
            });
        }
    }
    Ok(())
}

/// Signs `text` as a note by `name` with `key`, returning the full note.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> Result<String, NoteError> {
    check_text(text)?;
    let verifier = NoteVerifier::new(name, key.verifying_key())?;
    let signature: Signature = ed25519_dalek::Signer::sign(key, text.as_bytes());
    let mut blob = verifier.id.to_vec();
    blob.extend_from_slice(&signature.to_bytes());
    Ok(format!("{text}\n{SIG_PREFIX}{name} {}\n", B64.encode(blob)))
}

/// Parses a signed note strictly; errors name the offending line.
pub fn parse_note(note: &str) -> Result<SignedNote, NoteError> {
    // The signature block starts after the last blank line: signature lines are never blank.
    let Some(split) = note.rfind("\n\n") else {
        return Err(NoteError::Shape(
            "no blank line separating the text from the signatures".into(),
        ));
    };
    let text = &note[..split + 1];
    check_text(text)?;
    let first_sig_line = text.matches('\n').count() + 2;
    let block = &note[split + 2..];
    if block.is_empty() {
        return Err(NoteError::Shape("no signature lines".into()));
    }
    if !block.ends_with('\n') {
        return Err(NoteError::Malformed {
            line: first_sig_line + block.matches('\n').count(),
            reason: "signature line must end with a newline".into(),
        });
    }
    let mut signatures = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in block[..block.len() - 1].split('\n').enumerate() {
        let line_no = first_sig_line + i;
        let bad = |reason: String| NoteError::Malformed {
            line: line_no,
            reason,
        };
        let Some(rest) = line.strip_prefix(SIG_PREFIX) else {
            return Err(bad(format!(
                "signature line must start with \"\u{2014} \" (em dash, space): {line:?}"
            )));
        };
        let Some((name, b64)) = rest.split_once(' ') else {
            return Err(bad(
                "signature line must be \"\u{2014} <name> <base64>\"".into()
            ));
        };
        if !valid_key_name(name) {
            return Err(bad(format!("invalid key name {name:?}")));
        }
        let blob = B64
            .decode(b64)
            .map_err(|e| bad(format!("signature is not base64: {e}")))?;
        if blob.len() < 5 {
            return Err(bad("signature is shorter than a key id and one byte".into()));
        }
        let key_id = [blob[0], blob[1], blob[2], blob[3]];
        if !seen.insert((name.to_string(), key_id)) {
            return Err(bad(format!("second signature by key {name}")));
        }
        signatures.push(NoteSignature {
            name: name.to_string(),
            key_id,
            signature: blob[4..].to_vec(),
        });
        if signatures.len() > MAX_SIGNATURES {
            return Err(bad(format!("more than {MAX_SIGNATURES} signatures")));
        }
    }
    Ok(SignedNote {
        text: text.to_string(),
        signatures,
    })
}

impl SignedNote {
    /// Verifies the note against trusted verifiers; returns the names of the keys whose
    /// signatures verified.
    pub fn verify(&self, verifiers: &[NoteVerifier]) -> Result<Vec<String>, NoteError> {
        let mut verified = Vec::new();
        for sig in &self.signatures {
            let Some(v) = verifiers
                .iter()
                .find(|v| v.name == sig.name && v.id == sig.key_id)
            else {
                continue;
            };
            let ok = <[u8; 64]>::try_from(sig.signature.as_slice())
                .map(|bytes| Signature::from_bytes(&bytes))
                .is_ok_and(|s| v.key.verify_strict(self.text.as_bytes(), &s).is_ok());
            if !ok {
                return Err(NoteError::InvalidSignature {
                    name: sig.name.clone(),
                    key_id: hex::encode(sig.key_id),
                });
            }
            verified.push(sig.name.clone());
        }
        if verified.is_empty() {
            return Err(NoteError::UnknownKey {
                signers: self
                    .signatures
                    .iter()
                    .map(|s| format!("{}+{}", s.name, hex::encode(s.key_id)))
                    .collect(),
            });
        }
        Ok(verified)
    }

    /// Verifies against bare public keys: each signature line's own name is paired with each
    /// key, so a key is trusted under whatever name it signed with (the name is bound into the
    /// key id, hence into what was checked).
    pub fn verify_with_keys(&self, keys: &[VerifyingKey]) -> Result<Vec<String>, NoteError> {
        let verifiers: Vec<NoteVerifier> = self
            .signatures
            .iter()
            .flat_map(|s| {
                keys.iter()
                    .filter_map(|k| NoteVerifier::new(&s.name, *k).ok())
            })
            .collect();
        self.verify(&verifiers)
    }
}

/// A C2SP tlog-checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Optional extension lines (without newlines), kept in order.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Self {
            origin: origin.to_string(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text: `origin\nsize\nbase64(root)\n[extension\n]*`.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for ext in &self.extensions {
            text.push_str(ext);
            text.push('\n');
        }
        text
    }

    /// Parses a checkpoint body strictly (C2SP tlog-checkpoint).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = |line: usize, reason: String| NoteError::Checkpoint { line, reason };
        check_text(text)?;
        let lines: Vec<&str> = text[..text.len() - 1].split('\n').collect();
        if lines.len() < 3 {
            return Err(bad(
                lines.len() + 1,
                "a checkpoint needs an origin, a tree size and a root hash".into(),
            ));
        }
        let origin = lines[0];
        if origin.is_empty() {
            return Err(bad(1, "origin is empty".into()));
        }
        let size_text = lines[1];
        if size_text.is_empty()
            || !size_text.bytes().all(|b| b.is_ascii_digit())
            || (size_text.len() > 1 && size_text.starts_with('0'))
        {
            return Err(bad(
                2,
                format!("tree size {size_text:?} is not a decimal number without leading zeros"),
            ));
        }
        let size: u64 = size_text
            .parse()
            .map_err(|_| bad(2, format!("tree size {size_text} does not fit in 64 bits")))?;
        let root_raw = B64
            .decode(lines[2])
            .map_err(|e| bad(3, format!("root hash is not base64: {e}")))?;
        let root: Hash = root_raw.as_slice().try_into().map_err(|_| {
            bad(
                3,
                format!("root hash must be 32 bytes, found {}", root_raw.len()),
            )
        })?;
        let mut extensions = Vec::new();
        for (i, ext) in lines[3..].iter().enumerate() {
            if ext.is_empty() {
                return Err(bad(4 + i, "extension line is empty".into()));
            }
            extensions.push(ext.to_string());
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// The signed note of this checkpoint, signed by `name` (conventionally the origin).
    pub fn sign(&self, name: &str, key: &SigningKey) -> Result<String, NoteError> {
        sign_note(&self.to_text(), name, key)
    }
}

/// Parses and verifies a signed checkpoint against trusted public keys; returns it with the
/// names of the keys that signed it.
pub fn open_checkpoint(
    note: &str,
    keys: &[VerifyingKey],
) -> Result<(Checkpoint, Vec<String>), NoteError> {
    let parsed = parse_note(note)?;
    let signers = parsed.verify_with_keys(keys)?;
    Ok((Checkpoint::parse(&parsed.text)?, signers))
}

#[cfg(test)]
mod tests {
    use super::*;

    // golang.org/x/mod/sumdb/note's published example (note_test.go / package docs).
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                              then you don't know what your problem is.\n";
    const PETER_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
        then you don't know what your problem is.\n\
        \n\
        \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    // C2SP signed-note's example verifier key.
    const EXAMPLE_VKEY: &str =
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";

    fn peter_signing_key() -> SigningKey {
        let b64 = PETER_SKEY.splitn(5, '+').nth(4).unwrap();
        let raw = B64.decode(b64).unwrap();
        assert_eq!(raw[0], ALG_ED25519);
        SigningKey::from_bytes(&raw[1..].try_into().unwrap())
    }

    #[test]
    fn reproduces_the_published_go_note_byte_for_byte() {
        let key = peter_signing_key();
        assert_eq!(
            sign_note(PETER_TEXT, "PeterNeumann", &key).unwrap(),
            PETER_NOTE
        );
        let v = NoteVerifier::new("PeterNeumann", key.verifying_key()).unwrap();
        assert_eq!(v.vkey(), PETER_VKEY);
    }

    #[test]
    fn opens_the_published_note_with_its_vkey() {
        let v = NoteVerifier::from_vkey(PETER_VKEY).unwrap();
        let note = parse_note(PETER_NOTE).unwrap();
        assert_eq!(note.text, PETER_TEXT);
        assert_eq!(
            note.verify(std::slice::from_ref(&v)).unwrap(),
            vec!["PeterNeumann"]
        );
        let tampered = PETER_NOTE.replace("cryptography", "cryptographY");
        assert!(matches!(
            parse_note(&tampered).unwrap().verify(&[v]),
            Err(NoteError::InvalidSignature { .. })
        ));
    }

    #[test]
    fn parses_the_c2sp_example_vkey() {
        let v = NoteVerifier::from_vkey(EXAMPLE_VKEY).unwrap();
        assert_eq!(v.name(), "example.com/foo");
        assert_eq!(v.vkey(), EXAMPLE_VKEY);
        // A wrong key id is refused.
        assert!(NoteVerifier::from_vkey(&EXAMPLE_VKEY.replace("530d903a", "530d903b")).is_err());
        assert!(NoteVerifier::from_vkey("example.com/foo+530d903a").is_err());
    }

    #[test]
    fn unknown_signers_are_ignored_but_one_known_is_required() {
        let peter = peter_signing_key();
        let other = SigningKey::from_bytes(&[9; 32]);
        let note = sign_note(PETER_TEXT, "PeterNeumann", &peter).unwrap();
        let other_note = sign_note(PETER_TEXT, "Other", &other).unwrap();
        // Combine both signature lines into one note.
        let both = format!("{}{}", note, other_note.split("\n\n").nth(1).unwrap());
        let parsed = parse_note(&both).unwrap();
        assert_eq!(parsed.signatures.len(), 2);
        assert_eq!(
            parsed.verify_with_keys(&[other.verifying_key()]).unwrap(),
            vec!["Other"]
        );
        let stranger = SigningKey::from_bytes(&[10; 32]).verifying_key();
        let err = parsed.verify_with_keys(&[stranger]).unwrap_err();
        assert!(matches!(err, NoteError::UnknownKey { .. }));
        assert!(err.to_string().starts_with("signature by unknown key"));
    }

    #[test]
    fn malformed_notes_name_the_line() {
        let cases = [
            (PETER_NOTE.replace('\u{2014}', "-"), "line 4"),
            (
                PETER_NOTE.replace("PeterNeumann x08", "PeterNeumann  x08"),
                "line 4",
            ),
            (PETER_NOTE.replace("nAM=", "nAM"), "line 4"),
            (format!("{PETER_NOTE}\u{2014} bad\n"), "line 5"),
            (
                PETER_NOTE.replace("problem,\n", "problem,\u{7}\n"),
                "line 1",
            ),
        ];
        for (note, want) in cases {
            let err = parse_note(&note).unwrap_err();
            assert!(err.to_string().starts_with(want), "{note:?} → {err}");
        }
        assert!(matches!(parse_note(PETER_TEXT), Err(NoteError::Shape(_))));
        assert!(matches!(
            parse_note(&PETER_NOTE[..PETER_NOTE.len() - 1]),
            Err(NoteError::Malformed { line: 4, .. })
        ));
    }

    #[test]
    fn duplicate_signature_lines_are_rejected() {
        let line = PETER_NOTE.split("\n\n").nth(1).unwrap();
        let doubled = format!("{PETER_NOTE}{line}");
        assert!(matches!(
            parse_note(&doubled),
            Err(NoteError::Malformed { line: 5, .. })
        ));
    }

    #[test]
    fn checkpoint_round_trip_and_c2sp_example() {
        // The body of C2SP tlog-checkpoint's example.
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let cp = Checkpoint::parse(text).unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20852163);
        assert_eq!(cp.to_text(), text);

        let mut with_ext = cp.clone();
        with_ext
            .extensions
            .push("Timestamp: 1689748607742585419".into());
        assert_eq!(Checkpoint::parse(&with_ext.to_text()).unwrap(), with_ext);

        let key = SigningKey::from_bytes(&[4; 32]);
        let note = cp.sign("example.com/behind-the-sofa", &key).unwrap();
        let (opened, signers) = open_checkpoint(&note, &[key.verifying_key()]).unwrap();
        assert_eq!(opened, cp);
        assert_eq!(signers, vec!["example.com/behind-the-sofa"]);
    }

    #[test]
    fn malformed_checkpoints_name_the_line() {
        let root = B64.encode([0u8; 32]);
        let cases = [
            (format!("\n5\n{root}\n"), 1),
            (format!("o\n05\n{root}\n"), 2),
            (format!("o\n-5\n{root}\n"), 2),
            (format!("o\n99999999999999999999\n{root}\n"), 2),
            ("o\n5\nAAAA\n".to_string(), 3),
            ("o\n5\n***\n".to_string(), 3),
            ("o\n5\n".to_string(), 3),
            (format!("o\n5\n{root}\n\n"), 4),
        ];
        for (text, line) in cases {
            match Checkpoint::parse(&text) {
                Err(NoteError::Checkpoint { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
