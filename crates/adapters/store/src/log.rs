//! The transparency log on the store: proofs read from stored subtree hashes, tree heads, and
//! checkpoints.
//!
//! The Merkle algorithms are sluice-evidence's and read the tree through its synchronous
//! [`SubtreeHashes`] trait, while the store is async. The bridge: run the algorithm once against
//! a recorder to learn which perfect subtrees it will read (they depend only on the sizes and
//! the index, never on hash values), fetch exactly those in one round trip, then run it against
//! the fetched [`LogSnapshot`]. A proof costs O(log n) indexed look-ups and no rehashing.

use std::cell::RefCell;
use std::collections::HashMap;

use sluice_evidence::checkpoint::{Checkpoint, parse_note};
use sluice_evidence::merkle::{self, Hash, MerkleError, SubtreeHashes};

use crate::error::{Result, StoreError};
use crate::records::{CheckpointRecord, end_leaf, now_millis};
use crate::store::Store;

/// Subtree hashes of a log prefix of `size` leaves, fetched from the store. Anything not fetched,
/// or not wholly inside the prefix, is reported missing.
#[derive(Debug, Clone, Default)]
pub struct LogSnapshot {
    size: u64,
    nodes: HashMap<(u8, u64), Hash>,
}

impl LogSnapshot {
    pub(crate) fn from_pairs(
        size: u64,
        pairs: impl IntoIterator<Item = ((u8, u64), Option<Hash>)>,
    ) -> LogSnapshot {
        LogSnapshot {
            size,
            nodes: pairs
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
        }
    }

    /// Fetches the subtrees `keys` of the prefix of `size` leaves.
    pub async fn load<S: Store + ?Sized>(
        store: &S,
        size: u64,
        keys: &[(u8, u64)],
    ) -> Result<LogSnapshot> {
        let wanted: Vec<(u8, u64)> = keys
            .iter()
            .copied()
            .filter(|&(level, index)| level < 63 && end_leaf(level, index) < size)
            .collect();
        let hashes = store.subtrees(&wanted).await?;
        Ok(LogSnapshot::from_pairs(
            size,
            wanted.into_iter().zip(hashes),
        ))
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

impl SubtreeHashes for LogSnapshot {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, MerkleError> {
        if level >= 63 || end_leaf(level, index) >= self.size {
            return Err(MerkleError::MissingSubtree { level, index });
        }
        self.nodes
            .get(&(level, index))
            .copied()
            .ok_or(MerkleError::MissingSubtree { level, index })
    }
}

/// Learns which subtrees an algorithm reads, answering with placeholders.
#[derive(Default)]
struct Recorder(RefCell<Vec<(u8, u64)>>);

impl SubtreeHashes for Recorder {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, MerkleError> {
        self.0.borrow_mut().push((level, index));
        Ok([0; 32])
    }
}

/// Runs `algorithm` over the stored log prefix of `size` leaves: recorder pass, one fetch, real
/// pass.
async fn over_store<S, T>(
    store: &S,
    size: u64,
    algorithm: impl Fn(&dyn SubtreeHashes) -> Result<T, MerkleError>,
) -> Result<T>
where
    S: Store + ?Sized,
{
    let recorder = Recorder::default();
    algorithm(&recorder).map_err(|e| StoreError::Log(e.to_string()))?;
    let keys = recorder.0.into_inner();
    let snapshot = LogSnapshot::load(store, size, &keys).await?;
    match algorithm(&snapshot) {
        Ok(value) => Ok(value),
        Err(MerkleError::MissingSubtree { level, index }) => {
            let stored = store.log_size().await?;
            Err(if size > stored {
                StoreError::Log(format!(
                    "tree size {size} is larger than the log ({stored} leaves)"
                ))
            } else {
                StoreError::Log(format!(
                    "the stored log lacks subtree (level {level}, index {index}) of a tree of \
                     size {size}; run the audit"
                ))
            })
        }
        Err(e) => Err(StoreError::Log(e.to_string())),
    }
}

/// The tree head of the first `size` leaves.
pub async fn root_at<S: Store + ?Sized>(store: &S, size: u64) -> Result<Hash> {
    over_store(store, size, |nodes| merkle::root_from(size, nodes)).await
}

/// RFC 6962 inclusion proof of leaf `leaf_index` in the tree of `tree_size` leaves.
pub async fn inclusion_proof<S: Store + ?Sized>(
    store: &S,
    leaf_index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>> {
    over_store(store, tree_size, |nodes| {
        merkle::inclusion_proof(leaf_index, tree_size, nodes)
    })
    .await
}

/// RFC 6962 consistency proof between the trees of `old_size` and `new_size` leaves.
pub async fn consistency_proof<S: Store + ?Sized>(
    store: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>> {
    over_store(store, new_size, |nodes| {
        merkle::consistency_proof(old_size, new_size, nodes)
    })
    .await
}

/// Signs checkpoint bodies. sluice-evidence's checkpoint key implements it; the store only needs
/// the signed note text back.
pub trait CheckpointSigner: Send + Sync {
    /// The log's origin line (its unique name, e.g. `sluice.example/acme/evidence`).
    fn origin(&self) -> &str;

    /// Returns the whole C2SP signed note for `body` (`body`, a blank line, signature lines).
    fn sign(&self, body: &str) -> std::result::Result<String, String>;
}

/// A [`CheckpointSigner`] from an origin and a signing function, e.g.
/// `FnSigner::new(origin, |body| checkpoint::sign_note(body, origin, &key).map_err(|e| e.to_string()))`.
pub struct FnSigner<F> {
    origin: String,
    sign: F,
}

impl<F> FnSigner<F>
where
    F: Fn(&str) -> std::result::Result<String, String> + Send + Sync,
{
    pub fn new(origin: impl Into<String>, sign: F) -> FnSigner<F> {
        FnSigner {
            origin: origin.into(),
            sign,
        }
    }
}

impl<F> CheckpointSigner for FnSigner<F>
where
    F: Fn(&str) -> std::result::Result<String, String> + Send + Sync,
{
    fn origin(&self) -> &str {
        &self.origin
    }

    fn sign(&self, body: &str) -> std::result::Result<String, String> {
        (self.sign)(body)
    }
}

/// The C2SP tlog-checkpoint body: origin, decimal size, base64 root, each ending in a newline.
pub fn checkpoint_body(origin: &str, size: u64, root: &Hash) -> String {
    Checkpoint::new(origin, size, *root).to_text()
}

/// The (origin, size, root) a signed note's body states, or what is wrong with it. Parses the
/// note strictly (sluice-evidence's C2SP parser); does not verify signatures.
pub fn parse_checkpoint_note(note: &str) -> std::result::Result<(String, u64, Hash), String> {
    let parsed = parse_note(note).map_err(|e| e.to_string())?;
    let checkpoint = Checkpoint::parse(&parsed.text).map_err(|e| e.to_string())?;
    Ok((checkpoint.origin, checkpoint.size, checkpoint.root))
}

/// Creates (or returns, if one exists at the current size) a signed checkpoint of the whole log.
pub async fn create_checkpoint<S: Store + ?Sized>(
    store: &S,
    signer: &dyn CheckpointSigner,
) -> Result<CheckpointRecord> {
    let size = store.log_size().await?;
    if let Some(latest) = store.latest_checkpoint().await?
        && latest.size == size
        && latest.origin == signer.origin()
    {
        return Ok(latest);
    }
    let root = root_at(store, size).await?;
    let body = checkpoint_body(signer.origin(), size, &root);
    let note = signer.sign(&body).map_err(StoreError::Signer)?;
    // The signer must sign what it was given: a note with another body would bind nothing.
    if !note.starts_with(&body) || !note[body.len()..].starts_with('\n') {
        return Err(StoreError::Signer(
            "the signed note does not start with the checkpoint body".into(),
        ));
    }
    parse_checkpoint_note(&note).map_err(StoreError::Signer)?;
    let record = CheckpointRecord {
        size,
        root,
        origin: signer.origin().to_string(),
        note,
        created_at: now_millis(),
    };
    store.put_checkpoint(&record).await?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn body_and_parse_agree() {
        let root = sluice_evidence::sha256(b"root");
        let body = checkpoint_body("example.com/log", 42, &root);
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let note = sluice_evidence::checkpoint::sign_note(&body, "example.com/log", &key).unwrap();
        assert_eq!(
            parse_checkpoint_note(&note).unwrap(),
            ("example.com/log".to_string(), 42, root)
        );
    }

    #[test]
    fn bad_notes_are_refused() {
        let root = sluice_evidence::sha256(b"root");
        let body = checkpoint_body("o", 12, &root);
        let sig = "\n\u{2014} k AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";
        assert!(
            parse_checkpoint_note(&body)
                .unwrap_err()
                .contains("blank line")
        );
        let bad_size = body.replace("\n12\n", "\n012\n");
        assert!(
            parse_checkpoint_note(&format!("{bad_size}{sig}"))
                .unwrap_err()
                .contains("line 2")
        );
        let bad_root = "o\n1\nAAAA\n";
        assert!(
            parse_checkpoint_note(&format!("{bad_root}{sig}"))
                .unwrap_err()
                .contains("line 3")
        );
        assert!(parse_checkpoint_note(&format!("{body}\n")).is_err());
    }

    #[test]
    fn snapshot_refuses_subtrees_outside_its_prefix() {
        let snap = LogSnapshot::from_pairs(5, [((2, 1), Some([1; 32])), ((0, 4), Some([2; 32]))]);
        // (2, 1) covers leaves 4..8, not inside a 5-leaf prefix.
        assert!(snap.subtree(2, 1).is_err());
        assert_eq!(snap.subtree(0, 4).unwrap(), [2; 32]);
        assert!(snap.subtree(1, 0).is_err());
    }

    proptest! {
        #[test]
        fn note_parser_never_panics(s in "\\PC{0,200}") {
            let _ = parse_checkpoint_note(&s);
        }

        // The recorder learns every subtree the real pass reads, for any shape of tree.
        #[test]
        fn recorder_covers_the_real_pass(size in 1u64..2000, leaf in 0u64..2000, old in 0u64..2000) {
            let leaf = leaf % size;
            let old = old % (size + 1);
            let tree = merkle::MemoryTree::from_leaves((0..size).map(|i| merkle::leaf_hash(&i.to_be_bytes())));
            for run in 0..2 {
                let rec = Recorder::default();
                let _ = if run == 0 {
                    merkle::inclusion_proof(leaf, size, &rec)
                } else {
                    merkle::consistency_proof(old, size, &rec)
                };
                let keys = rec.0.into_inner();
                let snap = LogSnapshot::from_pairs(size, keys.iter().map(|&(l, i)| ((l, i), tree.subtree(l, i).ok())));
                if run == 0 {
                    prop_assert_eq!(merkle::inclusion_proof(leaf, size, &snap).unwrap(), tree.inclusion_proof(leaf, size).unwrap());
                } else {
                    prop_assert_eq!(merkle::consistency_proof(old, size, &snap).unwrap(), tree.consistency_proof(old, size).unwrap());
                }
            }
        }
    }
}
