//! The encrypted form of a stored plan artifact (AES-256-GCM through aws-lc-rs, envelope
//! encryption: a random data key per artifact, wrapped by a [`KeyProvider`]).
//!
//! Layout (all lengths fixed or prefixed, so parsing never guesses):
//!
//! ```text
//! "SLUICE-ENC\x01"            11 bytes  magic and format version
//! key id length (u8), key id            the key-encryption key's public id
//! wrapped key length (u16 BE), bytes    the data key, wrapped by that key
//! nonce                       12 bytes  random, for the data key
//! ciphertext || tag                     AES-256-GCM of the plaintext
//! ```
//!
//! The associated data is everything before the ciphertext plus the plaintext's SHA-256, so
//! the header cannot be swapped and a blob cannot pass for another digest. The artifact's
//! name stays the digest of the plaintext, so evidence that names a plan digest is unchanged.

use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use zeroize::Zeroizing;

use crate::keys::{KEY_LEN, KeyError, KeyProvider, WrappedKey};

/// The first bytes of every encrypted artifact.
pub const MAGIC: &[u8] = b"SLUICE-ENC\x01";

/// Why an artifact could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the encrypted artifact is truncated or its header is malformed")]
    Malformed,
    #[error("the encrypted artifact does not open with its data key: it was tampered with")]
    Tampered,
}

/// Whether stored bytes are an encrypted artifact (as opposed to a plaintext blob written
/// before encryption at rest existed).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Encrypt `plain`, whose SHA-256 is `digest` (raw 32 bytes).
pub fn seal(keys: &dyn KeyProvider, plain: &[u8], digest: &[u8; 32]) -> Result<Vec<u8>, SealError> {
    let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
    aws_lc_rs::rand::fill(&mut data_key[..]).map_err(|_| KeyError::Random)?;
    let wrapped = keys.wrap(&data_key)?;
    let key_id = wrapped.key_id.as_bytes();
    let id_len = u8::try_from(key_id.len()).map_err(|_| SealError::Malformed)?;
    let wrapped_len = u16::try_from(wrapped.bytes.len()).map_err(|_| SealError::Malformed)?;
    let mut header = Vec::with_capacity(MAGIC.len() + 3 + key_id.len() + wrapped.bytes.len());
    header.extend_from_slice(MAGIC);
    header.push(id_len);
    header.extend_from_slice(key_id);
    header.extend_from_slice(&wrapped_len.to_be_bytes());
    header.extend_from_slice(&wrapped.bytes);

    let sealer =
        RandomizedNonceKey::new(&AES_256_GCM, &data_key[..]).map_err(|_| KeyError::Random)?;
    let mut body = plain.to_vec();
    let nonce = sealer
        .seal_in_place_append_tag(Aad::from(aad(&header, digest)), &mut body)
        .map_err(|_| KeyError::Random)?;
    let mut out = header;
    out.reserve(nonce.as_ref().len() + body.len());
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decrypt an artifact sealed by [`seal`] for the plaintext digest `digest`.
pub fn open(
    keys: &dyn KeyProvider,
    sealed: &[u8],
    digest: &[u8; 32],
) -> Result<Vec<u8>, SealError> {
    let rest = sealed.strip_prefix(MAGIC).ok_or(SealError::Malformed)?;
    let (&id_len, rest) = rest.split_first().ok_or(SealError::Malformed)?;
    let (key_id, rest) = split(rest, id_len as usize)?;
    let key_id = std::str::from_utf8(key_id).map_err(|_| SealError::Malformed)?;
    let (len, rest) = split(rest, 2)?;
    let (wrapped, rest) = split(rest, u16::from_be_bytes([len[0], len[1]]) as usize)?;
    let header_len = sealed.len() - rest.len();
    let (nonce, body) = split(rest, AES_256_GCM.nonce_len())?;
    if body.len() < AES_256_GCM.tag_len() {
        return Err(SealError::Malformed);
    }
    let data_key = keys.unwrap(&WrappedKey {
        key_id: key_id.to_string(),
        bytes: wrapped.to_vec(),
    })?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Malformed)?;
    let opener =
        RandomizedNonceKey::new(&AES_256_GCM, &data_key[..]).map_err(|_| KeyError::Random)?;
    let mut buf = body.to_vec();
    let plain_len = opener
        .open_in_place(
            nonce,
            Aad::from(aad(&sealed[..header_len], digest)),
            &mut buf,
        )
        .map_err(|_| SealError::Tampered)?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

fn split(bytes: &[u8], n: usize) -> Result<(&[u8], &[u8]), SealError> {
    if bytes.len() < n {
        return Err(SealError::Malformed);
    }
    Ok(bytes.split_at(n))
}

fn aad(header: &[u8], digest: &[u8; 32]) -> Vec<u8> {
    let mut a = Vec::with_capacity(header.len() + 32);
    a.extend_from_slice(header);
    a.extend_from_slice(digest);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeySource, LocalKeys, generate_key};

    fn keys() -> LocalKeys {
        LocalKeys::new(KeySource::Inline(generate_key().unwrap()))
    }

    #[test]
    fn round_trip_and_every_flipped_byte_fails() {
        let k = keys();
        let plain = b"{\"variables\":{\"db_password\":{\"value\":\"CANARY-hunter2\"}}}";
        let digest = [9u8; 32];
        let sealed = seal(&k, plain, &digest).unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(6).any(|w| w == b"CANARY"));
        assert_eq!(open(&k, &sealed, &digest).unwrap(), plain);
        // Two seals of the same bytes differ (fresh data key and nonce).
        assert_ne!(seal(&k, plain, &digest).unwrap(), sealed);
        for i in MAGIC.len()..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            assert!(open(&k, &bad, &digest).is_err(), "byte {i}");
        }
        // Bound to its digest.
        assert!(matches!(
            open(&k, &sealed, &[8u8; 32]),
            Err(SealError::Tampered)
        ));
        for n in 0..sealed.len() {
            assert!(open(&k, &sealed[..n], &digest).is_err(), "truncated to {n}");
        }
        // Another key: unknown key id.
        assert!(matches!(
            open(&keys(), &sealed, &digest),
            Err(SealError::Key(KeyError::UnknownKey { .. }))
        ));
    }
}
