//! Approvals signed by the approver (stage 6, issue 11): the model's [`Approval`] record as the
//! payload of a DSSE envelope signed with the approver's own ed25519 key, the key registered
//! for them under `people:` in `sluice.yaml`.
//!
//! The envelope is carried inside the `approve` stage statement (which sluice's evidence key
//! signs and the transparency log holds), so an auditor can check two things apart: that the
//! evidence service recorded the approval, and that the registered person made it. The
//! approver's key file is read here: an OpenSSH private key as `ssh-keygen -t ed25519` writes
//! it (unencrypted), or a PKCS#8 PEM private key.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sluice_model::binding::Approval;
use sluice_model::binding::vouched::ReviewApproval;
use sluice_model::people::PublicKey;

use crate::dsse::{self, DsseError, Envelope};
use crate::keys::EvidenceKey;

/// The payload type of an approver-signed approval.
pub const APPROVAL_PAYLOAD_TYPE: &str = "application/vnd.sluice.approval+json";

/// The payload type of a GitHub review's approval (or dismissal) as a server signed it: a
/// type of its own, so that a server's signature can never pass for a person's.
pub const REVIEW_APPROVAL_PAYLOAD_TYPE: &str = "application/vnd.sluice.review-approval+json";

#[derive(Debug, thiserror::Error)]
pub enum ApprovalKeyError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("the approval is not signed by a key registered for {approver}: {source}")]
    Signature {
        approver: String,
        #[source]
        source: DsseError,
    },
    #[error("the signed approval does not parse: {0}")]
    Payload(String),
    #[error("{approver} has no usable key under `people:` in sluice.yaml")]
    NoKey { approver: String },
}

fn file_error(path: &Path, message: impl Into<String>) -> ApprovalKeyError {
    ApprovalKeyError::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads an approver's private key file (OpenSSH `openssh-key-v1`, unencrypted, or PKCS#8
/// PEM). The file's bytes are never echoed in an error.
pub fn load_approver_key(path: &Path) -> Result<EvidenceKey, ApprovalKeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))?;
    let text = text.trim();
    if text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        return openssh_private(text)
            .map(EvidenceKey::from_signing_key)
            .map_err(|m| file_error(path, m));
    }
    if text.starts_with("-----BEGIN PRIVATE KEY-----") {
        return EvidenceKey::from_pkcs8_pem(text, path)
            .map_err(|e| file_error(path, e.to_string()));
    }
    Err(file_error(
        path,
        "not a private key: expected an OpenSSH ed25519 key (`ssh-keygen -t ed25519`) or a PKCS#8 PEM ed25519 key",
    ))
}

/// The ed25519 key of an unencrypted `openssh-key-v1` file (PROTOCOL.key in OpenSSH).
fn openssh_private(text: &str) -> Result<SigningKey, String> {
    let body: String = text
        .trim_start_matches("-----BEGIN OPENSSH PRIVATE KEY-----")
        .trim_end()
        .trim_end_matches("-----END OPENSSH PRIVATE KEY-----")
        .split_whitespace()
        .collect();
    let bytes = B64
        .decode(body)
        .map_err(|e| format!("the key is not valid base64: {e}"))?;
    let mut r = Reader(&bytes);
    if r.take(15)? != b"openssh-key-v1\0" {
        return Err("not an openssh-key-v1 private key".into());
    }
    let cipher = r.string()?;
    let kdf = r.string()?;
    let _kdf_options = r.string()?;
    if cipher != b"none" || kdf != b"none" {
        return Err(
            "the key is protected by a passphrase; sluice reads unencrypted keys only (use \
             `ssh-keygen -p -N '' -f KEY` on a copy kept for approvals, or a PKCS#8 PEM key)"
                .into(),
        );
    }
    if r.u32()? != 1 {
        return Err("the file holds more than one key".into());
    }
    let _public = r.string()?;
    let mut private = Reader(r.string()?);
    if private.u32()? != private.u32()? {
        return Err("the key's check bytes differ (corrupt file)".into());
    }
    let kind = private.string()?;
    if kind != b"ssh-ed25519" {
        return Err(format!(
            "key type `{}` is not supported; approvals are signed with ed25519",
            String::from_utf8_lossy(kind)
        ));
    }
    let public = private.string()?;
    let secret = private.string()?;
    if secret.len() != 64 || public.len() != 32 || &secret[32..] != public {
        return Err("the ed25519 key is malformed".into());
    }
    let seed: [u8; 32] = secret[..32].try_into().expect("checked length");
    Ok(SigningKey::from_bytes(&seed))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the key file is truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }

    fn string(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// The approver's public key in the form `people:` registers it (`ssh-ed25519 AAAA…`).
pub fn openssh_public(key: &VerifyingKey, comment: &str) -> String {
    let mut wire = Vec::with_capacity(51);
    wire.extend_from_slice(&11u32.to_be_bytes());
    wire.extend_from_slice(b"ssh-ed25519");
    wire.extend_from_slice(&32u32.to_be_bytes());
    wire.extend_from_slice(key.as_bytes());
    format!("ssh-ed25519 {} {comment}", B64.encode(wire))
        .trim_end()
        .to_string()
}

/// Registered keys as verifying keys (keys that do not parse were reported by the loader).
pub fn verifying_keys(keys: &[PublicKey]) -> Vec<VerifyingKey> {
    keys.iter()
        .filter_map(|k| VerifyingKey::from_bytes(&k.0).ok())
        .collect()
}

/// Signs `approval` with the approver's key: a DSSE envelope over its canonical JSON.
pub fn sign_approval(approval: &Approval, key: &EvidenceKey) -> Envelope {
    let payload = crate::canonical::to_vec(approval).expect("an approval always serialises");
    dsse::sign(APPROVAL_PAYLOAD_TYPE, &payload, key)
}

/// Verifies an approver-signed envelope against the approver's registered keys and returns
/// the approval it carries, which must name that approver.
pub fn verify_approval(
    envelope: &Envelope,
    approver: &str,
    registered: &[PublicKey],
) -> Result<Approval, ApprovalKeyError> {
    let keys = verifying_keys(registered);
    if keys.is_empty() {
        return Err(ApprovalKeyError::NoKey {
            approver: approver.to_string(),
        });
    }
    let verified = envelope
        .verify(APPROVAL_PAYLOAD_TYPE, &keys)
        .map_err(|source| ApprovalKeyError::Signature {
            approver: approver.to_string(),
            source,
        })?;
    let approval: Approval = serde_json::from_slice(&verified.payload)
        .map_err(|e| ApprovalKeyError::Payload(e.to_string()))?;
    if !approval.approver.as_str().eq_ignore_ascii_case(approver) {
        return Err(ApprovalKeyError::Payload(format!(
            "the approval names {}, not {approver}",
            approval.approver
        )));
    }
    Ok(approval)
}

/// Signs a GitHub review's approval with the server's evidence key.
pub fn sign_review_approval(review: &ReviewApproval, key: &EvidenceKey) -> Envelope {
    let payload = crate::canonical::to_vec(review).expect("a review approval always serialises");
    dsse::sign(REVIEW_APPROVAL_PAYLOAD_TYPE, &payload, key)
}

/// Verifies a server-signed review approval against the trusted server keys and returns it;
/// it must name `approver`, the approver the index row is filed under.
pub fn verify_review_approval(
    envelope: &Envelope,
    approver: &str,
    trusted: &[VerifyingKey],
) -> Result<ReviewApproval, ApprovalKeyError> {
    let verified = envelope
        .verify(REVIEW_APPROVAL_PAYLOAD_TYPE, trusted)
        .map_err(|source| ApprovalKeyError::Signature {
            approver: approver.to_string(),
            source,
        })?;
    let review: ReviewApproval = serde_json::from_slice(&verified.payload)
        .map_err(|e| ApprovalKeyError::Payload(e.to_string()))?;
    if !review
        .approval
        .approver
        .as_str()
        .eq_ignore_ascii_case(approver)
    {
        return Err(ApprovalKeyError::Payload(format!(
            "the review approval names {}, not {approver}",
            review.approval.approver
        )));
    }
    Ok(review)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::binding::{ApprovalState, Binding, Subject};
    use sluice_model::people::PersonId;

    /// Written by `ssh-keygen -t ed25519 -N '' -C alice` (a throwaway test key).
    fn write_openssh_key(dir: &Path) -> Option<(std::path::PathBuf, String)> {
        let path = dir.join("alice_ed25519");
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f"])
            .arg(&path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("ssh-keygen is not available; skipping the OpenSSH key test");
            return None;
        }
        let public = std::fs::read_to_string(dir.join("alice_ed25519.pub")).unwrap();
        Some((path, public))
    }

    fn approval(approver: &str) -> Approval {
        Approval {
            binding: Binding {
                repo: "infra-live".into(),
                pr: Some(1),
                commit: "c0ffee".into(),
                env: "prod".into(),
                unit: "prod/net".into(),
                subject: Subject::Plan("sha256:aa".into()),
                decision_digest: "sha256:dd".into(),
            },
            approver: PersonId::new(approver),
            groups: vec!["@acme/platform".into()],
            state: ApprovalState::Given,
        }
    }

    #[test]
    fn an_openssh_key_signs_what_its_public_line_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let Some((path, public)) = write_openssh_key(dir.path()) else {
            return;
        };
        let key = load_approver_key(&path).unwrap();
        let registered = PublicKey::parse(&public).unwrap();
        assert_eq!(registered.0, *key.verifying_key().as_bytes());
        assert_eq!(
            PublicKey::parse(&openssh_public(&key.verifying_key(), "alice")).unwrap(),
            registered
        );
        let envelope = sign_approval(&approval("alice"), &key);
        let back = verify_approval(&envelope, "alice", &[registered]).unwrap();
        assert_eq!(back, approval("alice"));
        // Another person's key does not verify it; a record naming someone else is refused.
        let other = PublicKey(*EvidenceKey::from_seed(&[7; 32]).verifying_key().as_bytes());
        assert!(matches!(
            verify_approval(&envelope, "alice", &[other]),
            Err(ApprovalKeyError::Signature { .. })
        ));
        assert!(matches!(
            verify_approval(&envelope, "bob", &[registered]),
            Err(ApprovalKeyError::Payload(_))
        ));
        // A tampered payload fails.
        let mut forged = envelope.clone();
        let mut a = approval("alice");
        a.binding.subject = Subject::Plan("sha256:bb".into());
        forged.payload = B64.encode(crate::canonical::to_vec(&a).unwrap());
        assert!(verify_approval(&forged, "alice", &[registered]).is_err());
    }

    #[test]
    fn a_server_signed_review_verifies_only_against_trusted_keys_and_never_as_a_persons() {
        let server = EvidenceKey::from_seed(&[3; 32]);
        let review = ReviewApproval {
            approval: approval("github:erin"),
            pr_author: PersonId::new("github:octocat"),
            review: 101,
        };
        let envelope = sign_review_approval(&review, &server);
        let trusted = [server.verifying_key()];
        assert_eq!(
            verify_review_approval(&envelope, "github:erin", &trusted).unwrap(),
            review
        );
        // An untrusted server, a row filed under another approver, a tampered payload.
        let other = EvidenceKey::from_seed(&[4; 32]).verifying_key();
        assert!(matches!(
            verify_review_approval(&envelope, "github:erin", &[other]),
            Err(ApprovalKeyError::Signature { .. })
        ));
        assert!(matches!(
            verify_review_approval(&envelope, "github:mallory", &trusted),
            Err(ApprovalKeyError::Payload(_))
        ));
        let mut forged = envelope.clone();
        let mut r = review.clone();
        r.pr_author = PersonId::new("github:someone-else");
        forged.payload = B64.encode(crate::canonical::to_vec(&r).unwrap());
        assert!(verify_review_approval(&forged, "github:erin", &trusted).is_err());
        // Even if the server's key were registered for a person, its review envelope is not a
        // person's approval (another payload type), nor the reverse.
        let as_person = PublicKey(*server.verifying_key().as_bytes());
        assert!(verify_approval(&envelope, "github:erin", &[as_person]).is_err());
        let personal = sign_approval(&approval("github:erin"), &server);
        assert!(verify_review_approval(&personal, "github:erin", &trusted).is_err());
    }

    #[test]
    fn pem_keys_load_and_other_files_are_refused_without_echo() {
        let dir = tempfile::tempdir().unwrap();
        let key = EvidenceKey::from_seed(&[9; 32]);
        let pem = dir.path().join("k.pem");
        std::fs::write(&pem, key.to_pkcs8_pem().as_bytes()).unwrap();
        assert_eq!(
            load_approver_key(&pem).unwrap().verifying_key(),
            key.verifying_key()
        );
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "hunter2-secret-canary").unwrap();
        let err = load_approver_key(&junk).unwrap_err().to_string();
        assert!(err.contains("not a private key"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
