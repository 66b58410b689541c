//! The encrypted form of a stored artifact (a plan, a state version): AES-256-GCM through
//! aws-lc-rs, envelope encryption (a random data key per artifact, wrapped by a
//! [`KeyProvider`]), of the artifact compressed with zstd when that makes it smaller.
//!
//! Layout (all lengths fixed or prefixed, so parsing never guesses):
//!
//! ```text
//! "SLUICE-ENC\x02"            11 bytes  magic and format version
//! encoding (u8)                         0: the plaintext as is; 1: a zstd frame of it
//! key id length (u8), key id            the key-encryption key's public id
//! wrapped key length (u16 BE), bytes    the data key, wrapped by that key
//! nonce                       12 bytes  random, for the data key
//! ciphertext || tag                     AES-256-GCM of the (encoded) plaintext
//! ```
//!
//! Version 1 (`"SLUICE-ENC\x01"`) is the same without the encoding byte (never compressed);
//! it still opens. The associated data is everything before the nonce plus the plaintext's
//! SHA-256, so the header (the encoding included) cannot be swapped and a blob cannot pass for
//! another digest. The artifact's name stays the digest of the plaintext, so evidence that names
//! a plan or state digest is unchanged.
//!
//! Why compress: Terraform states and plan JSON are repetitive JSON that zstd's fastest level
//! shrinks 5 to 25 times in about half a millisecond per megabyte, while every stored byte is
//! written to the database's log, synced, and read back on every `GET`. The cost: a blob's
//! stored size says how compressible its plaintext was (length is not hidden by encryption
//! either way; compression makes it depend on content).

use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use zeroize::Zeroizing;

use crate::keys::{KEY_LEN, KeyError, KeyProvider, WrappedKey};

/// The first bytes of every artifact sealed now.
pub const MAGIC: &[u8] = b"SLUICE-ENC\x02";
/// The first bytes of an artifact sealed by format version 1 (no encoding byte).
const MAGIC_V1: &[u8] = b"SLUICE-ENC\x01";

/// The largest plaintext a compressed artifact may claim: far above any plan or state the
/// stores accept, it bounds what opening a forged frame could allocate.
const MAX_PLAIN: u64 = 4 << 30;

/// zstd's fastest level: compression stays well under a millisecond per megabyte.
const ZSTD_LEVEL: i32 = 1;

/// How the plaintext is stored inside the encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Plain = 0,
    Zstd = 1,
}

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
    bytes.starts_with(MAGIC) || bytes.starts_with(MAGIC_V1)
}

/// A plaintext in the form it is sealed in ([`encode`]), not yet encrypted.
pub struct Encoded {
    encoding: Encoding,
    payload: Vec<u8>,
}

/// The plaintext as it is sealed: compressed when that saves at least an eighth of it (a plan
/// file is a zip already, and gains nothing). The first half of [`seal`]: it needs no key and
/// no digest, so a caller may run it beside the hashing of the same plaintext.
pub fn encode(plain: &[u8]) -> Encoded {
    if let Ok(packed) = zstd::bulk::compress(plain, ZSTD_LEVEL)
        && packed.len() <= plain.len() - plain.len() / 8
    {
        return Encoded {
            encoding: Encoding::Zstd,
            payload: packed,
        };
    }
    Encoded {
        encoding: Encoding::Plain,
        payload: plain.to_vec(),
    }
}

/// The plaintext back from its sealed encoding.
fn decode(encoding: Encoding, payload: Vec<u8>) -> Result<Vec<u8>, SealError> {
    match encoding {
        Encoding::Plain => Ok(payload),
        Encoding::Zstd => {
            let size = zstd::zstd_safe::get_frame_content_size(&payload)
                .ok()
                .flatten()
                .filter(|&n| n <= MAX_PLAIN)
                .ok_or(SealError::Malformed)?;
            let size = usize::try_from(size).map_err(|_| SealError::Malformed)?;
            let plain = zstd::bulk::decompress(&payload, size).map_err(|_| SealError::Malformed)?;
            if plain.len() != size {
                return Err(SealError::Malformed);
            }
            Ok(plain)
        }
    }
}

/// Encrypt `plain`, whose SHA-256 is `digest` (raw 32 bytes).
pub fn seal(keys: &dyn KeyProvider, plain: &[u8], digest: &[u8; 32]) -> Result<Vec<u8>, SealError> {
    seal_encoded(keys, encode(plain), digest)
}

/// The second half of [`seal`]: encrypts what [`encode`] made of a plaintext whose SHA-256 is
/// `digest`.
pub fn seal_encoded(
    keys: &dyn KeyProvider,
    encoded: Encoded,
    digest: &[u8; 32],
) -> Result<Vec<u8>, SealError> {
    seal_payload(keys, MAGIC, Some(encoded.encoding), encoded.payload, digest)
}

/// Seals `payload` under a header that starts with `magic` (and the `encoding` byte, which
/// format version 1 has not).
fn seal_payload(
    keys: &dyn KeyProvider,
    magic: &[u8],
    encoding: Option<Encoding>,
    mut payload: Vec<u8>,
    digest: &[u8; 32],
) -> Result<Vec<u8>, SealError> {
    let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
    aws_lc_rs::rand::fill(&mut data_key[..]).map_err(|_| KeyError::Random)?;
    let wrapped = keys.wrap(&data_key)?;
    let key_id = wrapped.key_id.as_bytes();
    let id_len = u8::try_from(key_id.len()).map_err(|_| SealError::Malformed)?;
    let wrapped_len = u16::try_from(wrapped.bytes.len()).map_err(|_| SealError::Malformed)?;
    let mut header = Vec::with_capacity(magic.len() + 4 + key_id.len() + wrapped.bytes.len());
    header.extend_from_slice(magic);
    if let Some(encoding) = encoding {
        header.push(encoding as u8);
    }
    header.push(id_len);
    header.extend_from_slice(key_id);
    header.extend_from_slice(&wrapped_len.to_be_bytes());
    header.extend_from_slice(&wrapped.bytes);

    let sealer =
        RandomizedNonceKey::new(&AES_256_GCM, &data_key[..]).map_err(|_| KeyError::Random)?;
    let nonce = sealer
        .seal_in_place_append_tag(Aad::from(aad(&header, digest)), &mut payload)
        .map_err(|_| KeyError::Random)?;
    let mut out = header;
    out.reserve(nonce.as_ref().len() + payload.len());
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decrypt an artifact sealed by [`seal`] (or by format version 1) for the plaintext digest
/// `digest`.
pub fn open(
    keys: &dyn KeyProvider,
    sealed: &[u8],
    digest: &[u8; 32],
) -> Result<Vec<u8>, SealError> {
    let (encoding, rest) = if let Some(rest) = sealed.strip_prefix(MAGIC) {
        let (&byte, rest) = rest.split_first().ok_or(SealError::Malformed)?;
        let encoding = match byte {
            0 => Encoding::Plain,
            1 => Encoding::Zstd,
            _ => return Err(SealError::Malformed),
        };
        (encoding, rest)
    } else {
        let rest = sealed.strip_prefix(MAGIC_V1).ok_or(SealError::Malformed)?;
        (Encoding::Plain, rest)
    };
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
    decode(encoding, buf)
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

    /// A Terraform-like JSON body of about `n` bytes.
    fn state_like(n: usize) -> Vec<u8> {
        let mut out = String::from("{\"version\":4,\"serial\":3,\"lineage\":\"l\",\"resources\":[");
        let mut i = 0u64;
        while out.len() < n {
            out.push_str(&format!(
                "{{\"type\":\"aws_instance\",\"name\":\"web{i}\",\"instances\":[{{\"attributes\":\
                 {{\"id\":\"i-{:016x}\",\"ami\":\"ami-0c55b159cbfafe1f0\",\"tags\":{{\"team\":\"net\"}}}}}}]}},",
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ));
            i += 1;
        }
        out.push_str("{}]}");
        out.into_bytes()
    }

    #[test]
    fn compressible_artifacts_are_stored_compressed_and_open_whole() {
        let k = keys();
        let plain = state_like(256 * 1024);
        let digest = [3u8; 32];
        let sealed = seal(&k, &plain, &digest).unwrap();
        assert_eq!(sealed[MAGIC.len()], Encoding::Zstd as u8);
        assert!(
            sealed.len() < plain.len() / 4,
            "{} sealed bytes for {} plain",
            sealed.len(),
            plain.len()
        );
        assert_eq!(open(&k, &sealed, &digest).unwrap(), plain);
        // The encoding byte is authenticated: switching it is tampering, not a misread.
        let mut switched = sealed.clone();
        switched[MAGIC.len()] = Encoding::Plain as u8;
        assert!(matches!(
            open(&k, &switched, &digest),
            Err(SealError::Tampered)
        ));
    }

    #[test]
    fn incompressible_artifacts_are_stored_as_they_are() {
        let k = keys();
        let mut plain = vec![0u8; 64 * 1024];
        aws_lc_rs::rand::fill(&mut plain).unwrap();
        let sealed = seal(&k, &plain, &[1u8; 32]).unwrap();
        assert_eq!(sealed[MAGIC.len()], Encoding::Plain as u8);
        assert_eq!(open(&k, &sealed, &[1u8; 32]).unwrap(), plain);
    }

    #[test]
    fn format_version_1_still_opens() {
        let k = keys();
        let plain = state_like(4096);
        let digest = [5u8; 32];
        let v1 = seal_payload(&k, MAGIC_V1, None, plain.clone(), &digest).unwrap();
        assert!(is_sealed(&v1));
        assert_eq!(open(&k, &v1, &digest).unwrap(), plain);
        // Read as version 2, its first header byte would be an encoding: it is not one.
        let mut relabelled = v1.clone();
        relabelled[MAGIC.len() - 1] = MAGIC[MAGIC.len() - 1];
        assert!(open(&k, &relabelled, &digest).is_err());
    }
}
