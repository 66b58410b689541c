//! DSSE envelopes (Dead Simple Signing Envelope, v1) signed with Ed25519.
//!
//! The signature covers PAE(payloadType, payload) =
//! `"DSSEv1" SP len(type) SP type SP len(body) SP body`, lengths in ASCII decimal. A signature's
//! `keyid` is only a hint for humans and error messages: verification tries every trusted key
//! and never selects or trusts a key because of its `keyid`.
//!
//! An envelope's bytes, for digests and the transparency log, are its canonical JSON
//! (see [`crate::canonical`]).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE as B64_URL};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::keys::{EvidenceKey, key_id};
use crate::merkle::Hash;

/// The payload type of an in-toto Statement.
pub const PAYLOAD_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 of the payload bytes.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// A hint only (sluice writes the hex SHA-256 of the public key); never trusted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    /// Base64 of the 64-byte Ed25519 signature over the PAE.
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DsseError {
    #[error("payload is not base64")]
    PayloadEncoding,
    #[error("payload type is {found:?}, expected {expected:?}")]
    PayloadType { found: String, expected: String },
    #[error("envelope has no signatures")]
    NoSignatures,
    #[error("envelope signature invalid (keyid hint {keyid:?})")]
    SignatureInvalid { keyid: String },
    #[error("envelope signed by an unknown key (keyid hint {keyid:?})")]
    UnknownKey { keyid: String },
}

/// DSSE v1 pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// Signs `payload` into a new envelope.
pub fn sign(payload_type: &str, payload: &[u8], key: &EvidenceKey) -> Envelope {
    let signature = key.sign(&pae(payload_type, payload));
    Envelope {
        payload_type: payload_type.to_string(),
        payload: B64.encode(payload),
        signatures: vec![EnvelopeSignature {
            keyid: key.key_id(),
            sig: B64.encode(signature.to_bytes()),
        }],
    }
}

/// What verification established: the payload and which trusted key signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPayload {
    pub payload: Vec<u8>,
    /// Key id (hex SHA-256 of the public key) of the trusted key whose signature verified.
    pub key_id: String,
}

/// Base64 as DSSE allows it: standard or URL-safe alphabet.
fn decode_b64(text: &str) -> Option<Vec<u8>> {
    B64.decode(text).or_else(|_| B64_URL.decode(text)).ok()
}

impl Envelope {
    /// The canonical JSON bytes: what the manifest lists and the log commits to.
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        crate::canonical::to_vec(self).expect("an envelope always serialises")
    }

    /// SHA-256 of the canonical bytes.
    pub fn digest(&self) -> Hash {
        crate::sha256(&self.to_canonical_bytes())
    }

    /// The decoded payload, unverified.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, DsseError> {
        decode_b64(&self.payload).ok_or(DsseError::PayloadEncoding)
    }

    /// Verifies that a trusted key signed this envelope with the expected payload type.
    pub fn verify(
        &self,
        expected_payload_type: &str,
        trusted: &[VerifyingKey],
    ) -> Result<VerifiedPayload, DsseError> {
        if self.payload_type != expected_payload_type {
            return Err(DsseError::PayloadType {
                found: self.payload_type.clone(),
                expected: expected_payload_type.to_string(),
            });
        }
        let payload = self.payload_bytes()?;
        let message = pae(&self.payload_type, &payload);
        let Some(first) = self.signatures.first() else {
            return Err(DsseError::NoSignatures);
        };
        for sig in &self.signatures {
            let Some(bytes) = decode_b64(&sig.sig) else {
                continue;
            };
            let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
                continue;
            };
            let signature = Signature::from_bytes(&bytes);
            if let Some(key) = trusted
                .iter()
                .find(|k| k.verify_strict(&message, &signature).is_ok())
            {
                return Ok(VerifiedPayload {
                    payload,
                    key_id: key_id(key),
                });
            }
        }
        // Nothing verified. The keyid hint only chooses the wording: a hint naming a trusted
        // key means the signature itself is bad; otherwise the signer is not trusted.
        let trusted_ids: Vec<String> = trusted.iter().map(key_id).collect();
        match self
            .signatures
            .iter()
            .find(|s| trusted_ids.contains(&s.keyid))
        {
            Some(s) => Err(DsseError::SignatureInvalid {
                keyid: s.keyid.clone(),
            }),
            None if first.keyid.is_empty() => Err(DsseError::SignatureInvalid {
                keyid: String::new(),
            }),
            None => Err(DsseError::UnknownKey {
                keyid: first.keyid.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // DSSE protocol.md: PAE("http://example.com/HelloWorld", "hello world").
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn sign_then_verify_and_detect_tampering() {
        let key = EvidenceKey::from_seed(&[1; 32]);
        let env = sign(PAYLOAD_TYPE_IN_TOTO, b"{\"a\":1}", &key);
        let ok = env
            .verify(PAYLOAD_TYPE_IN_TOTO, &[key.verifying_key()])
            .unwrap();
        assert_eq!(ok.payload, b"{\"a\":1}");
        assert_eq!(ok.key_id, key.key_id());

        let mut tampered = env.clone();
        tampered.payload = B64.encode(b"{\"a\":2}");
        assert!(matches!(
            tampered.verify(PAYLOAD_TYPE_IN_TOTO, &[key.verifying_key()]),
            Err(DsseError::SignatureInvalid { .. })
        ));

        // The payload type is authenticated too.
        let mut retyped = env.clone();
        retyped.payload_type = "text/plain".into();
        assert!(matches!(
            retyped.verify("text/plain", &[key.verifying_key()]),
            Err(DsseError::SignatureInvalid { .. })
        ));
        assert!(matches!(
            env.verify("text/plain", &[key.verifying_key()]),
            Err(DsseError::PayloadType { .. })
        ));
    }

    #[test]
    fn keyid_is_never_trusted() {
        let signer = EvidenceKey::from_seed(&[1; 32]);
        let trusted = EvidenceKey::from_seed(&[2; 32]);
        let mut env = sign(PAYLOAD_TYPE_IN_TOTO, b"x", &signer);
        // Claiming the trusted key's id does not make the signature trusted.
        env.signatures[0].keyid = trusted.key_id();
        assert!(matches!(
            env.verify(PAYLOAD_TYPE_IN_TOTO, &[trusted.verifying_key()]),
            Err(DsseError::SignatureInvalid { .. })
        ));
        // A wrong or missing keyid does not stop a valid signature from verifying.
        env.signatures[0].keyid = "nonsense".into();
        assert!(
            env.verify(PAYLOAD_TYPE_IN_TOTO, &[signer.verifying_key()])
                .is_ok()
        );
        env.signatures[0].keyid.clear();
        assert!(
            env.verify(PAYLOAD_TYPE_IN_TOTO, &[signer.verifying_key()])
                .is_ok()
        );
    }

    #[test]
    fn unknown_signer_is_reported_as_such() {
        let signer = EvidenceKey::from_seed(&[1; 32]);
        let trusted = EvidenceKey::from_seed(&[2; 32]);
        let env = sign(PAYLOAD_TYPE_IN_TOTO, b"x", &signer);
        let err = env
            .verify(PAYLOAD_TYPE_IN_TOTO, &[trusted.verifying_key()])
            .unwrap_err();
        assert!(matches!(err, DsseError::UnknownKey { .. }), "{err}");
    }

    #[test]
    fn canonical_bytes_have_sorted_keys() {
        let key = EvidenceKey::from_seed(&[1; 32]);
        let env = sign(PAYLOAD_TYPE_IN_TOTO, b"x", &key);
        let text = String::from_utf8(env.to_canonical_bytes()).unwrap();
        assert!(
            text.starts_with("{\"payload\":\"eA==\",\"payloadType\":"),
            "{text}"
        );
        assert_eq!(env.digest(), crate::sha256(text.as_bytes()));
    }
}
