//! RFC 6962 Merkle tree hashing for the transparency log: leaf and node hashes, tree heads,
//! inclusion and consistency proofs, and their verification (RFC 9162 §2.1.3.2 / §2.1.4.2).
//!
//! Proof generation reads the tree through [`SubtreeHashes`]: hashes of perfect, aligned
//! subtrees. That is what a log persists (every node is written once, when its subtree fills up),
//! so a store answers any proof with O(log n) lookups and never rehashes leaves. [`MemoryTree`]
//! is the in-memory implementation used by tests, by the bundle writer and by audits.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A SHA-256 digest: a leaf hash, a node hash or a tree head.
pub type Hash = [u8; 32];

/// The tree head of the empty tree: SHA-256 of the empty string (RFC 6962 §2.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MerkleError {
    #[error("leaf index {index} is outside a tree of size {size}")]
    LeafIndexOutOfRange { index: u64, size: u64 },
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizesOutOfOrder { old: u64, new: u64 },
    #[error("tree size {size} is too large for a 64-level tree")]
    TreeTooLarge { size: u64 },
    #[error("subtree at level {level}, index {index} is not available")]
    MissingSubtree { level: u8, index: u64 },
    #[error("proof has {actual} hashes, expected {expected}")]
    ProofLength { expected: usize, actual: usize },
    #[error("root mismatch: proof yields {computed}, expected {expected}")]
    RootMismatch { computed: String, expected: String },
    #[error("old root mismatch: proof yields {computed}, expected {expected}")]
    OldRootMismatch { computed: String, expected: String },
    #[error("equal tree sizes but different roots")]
    DifferentRootsSameSize,
    #[error("leaf index {index} does not follow the last leaf index {expected}")]
    AppendOutOfOrder { index: u64, expected: u64 },
}

/// Hashes of perfect, aligned subtrees of the log: the subtree of 2^level leaves starting at leaf
/// index << level. Level 0 holds the leaf hashes themselves.
pub trait SubtreeHashes {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, MerkleError>;
}

/// RFC 6962 leaf hash: SHA-256(0x00 ‖ entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    if entry.len() + 1 < SHORT_MAX {
        return sha256_short(&[&[0u8], entry]);
    }
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256_short(&[&[1u8], left, right])
}

/// The longest message [`sha256_short`] takes plus one: two blocks less the padding's 9 bytes.
const SHORT_MAX: usize = 2 * 64 - 9 + 1;

/// SHA-256's initial hash value (FIPS 180-4 §5.3.3).
const SHA256_H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// SHA-256 of the concatenation of `parts` (together shorter than [`SHORT_MAX`]), padded
/// here and compressed in one call. Every log leaf and node is hashed this way, and the
/// streaming hasher's buffering cost as much as the compression of such short messages.
fn sha256_short(parts: &[&[u8]]) -> Hash {
    let mut blocks = [[0u8; 64]; 2];
    let flat = blocks.as_flattened_mut();
    let mut len = 0;
    for part in parts {
        flat[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    debug_assert!(len < SHORT_MAX);
    flat[len] = 0x80;
    let n = if len + 9 <= 64 { 1 } else { 2 };
    flat[n * 64 - 8..n * 64].copy_from_slice(&((len as u64) * 8).to_be_bytes());
    let mut state = SHA256_H0;
    sha2::block_api::compress256(&mut state, &blocks[..n]);
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// The Merkle tree hash (MTH) over `leaves`, which are already leaf hashes. Streams the leaves
/// through a stack of perfect subtrees, so it hashes each node once and holds O(log n) hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    let mut range = CompactRange::default();
    for leaf in leaves {
        range.push(*leaf);
    }
    range.root()
}

/// The perfect subtrees covering the leaves appended so far, largest (leftmost) first: the
/// "compact range" of a log prefix. Pushing a leaf merges equal-sized neighbours.
#[derive(Debug, Default, Clone)]
pub struct CompactRange {
    size: u64,
    /// (level, hash), strictly decreasing levels.
    stack: Vec<(u8, Hash)>,
}

impl CompactRange {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u8, leaf);
        while let Some(&(level, left)) = self.stack.last() {
            if level != node.0 {
                break;
            }
            self.stack.pop();
            node = (level + 1, node_hash(&left, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// The tree head: the perfect subtrees folded from the right (RFC 6962's recursion puts the
    /// largest perfect subtree on the left of every split).
    pub fn root(&self) -> Hash {
        fold_right(self.stack.iter().map(|(_, h)| *h).collect())
    }
}

/// Folds perfect-subtree hashes listed left to right into the hash of the range they cover.
fn fold_right(hashes: Vec<Hash>) -> Hash {
    let mut iter = hashes.into_iter().rev();
    let Some(mut acc) = iter.next() else {
        return EMPTY_ROOT;
    };
    for left in iter {
        acc = node_hash(&left, &acc);
    }
    acc
}

/// Largest power of two strictly smaller than `n` (n ≥ 2): RFC 6962's split point k.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Hash of the leaf range [start, start + len), where `start` is aligned to the power of two at
/// or above `len` (true of every range RFC 6962's recursion produces). The range decomposes into
/// perfect subtrees by the bits of `len`, largest first: O(log n) lookups.
fn range_hash(start: u64, len: u64, nodes: &dyn SubtreeHashes) -> Result<Hash, MerkleError> {
    if len == 0 {
        return Ok(EMPTY_ROOT);
    }
    let mut parts = Vec::with_capacity(len.count_ones() as usize);
    let mut offset = start;
    for level in (0..64u8).rev() {
        let width = 1u64 << level;
        if len & width != 0 {
            parts.push(nodes.subtree(level, offset >> level)?);
            offset += width;
        }
    }
    Ok(fold_right(parts))
}

fn check_size(size: u64) -> Result<(), MerkleError> {
    // Level numbers are u8 and perfect subtrees above level 63 cannot be addressed.
    if size > 1u64 << 63 {
        return Err(MerkleError::TreeTooLarge { size });
    }
    Ok(())
}

/// The tree head of the first `tree_size` leaves, folded from at most 64 stored subtrees.
pub fn root_from(tree_size: u64, nodes: &dyn SubtreeHashes) -> Result<Hash, MerkleError> {
    check_size(tree_size)?;
    range_hash(0, tree_size, nodes)
}

/// RFC 6962 §2.1.1 PATH(m, D[n]): the audit path of leaf `leaf_index` in the tree of
/// `tree_size` leaves, ordered from the leaf's sibling up to the root's child.
pub fn inclusion_proof(
    leaf_index: u64,
    tree_size: u64,
    nodes: &dyn SubtreeHashes,
) -> Result<Vec<Hash>, MerkleError> {
    check_size(tree_size)?;
    if leaf_index >= tree_size {
        return Err(MerkleError::LeafIndexOutOfRange {
            index: leaf_index,
            size: tree_size,
        });
    }
    // Walk down from the root, collecting the sibling of each range the leaf falls in; the
    // recursion appends siblings on the way back up, so reverse at the end.
    let mut top_down = Vec::new();
    let (mut start, mut len, mut m) = (0u64, tree_size, leaf_index);
    while len > 1 {
        let k = split_point(len);
        if m < k {
            top_down.push(range_hash(start + k, len - k, nodes)?);
            len = k;
        } else {
            top_down.push(nodes.subtree(k.trailing_zeros() as u8, start / k)?);
            start += k;
            len -= k;
            m -= k;
        }
    }
    top_down.reverse();
    Ok(top_down)
}

/// RFC 6962 §2.1.2 PROOF(m, D[n]): the consistency proof between the tree of `old_size` leaves
/// and the tree of `new_size` leaves. Empty when the sizes are equal or the old tree is empty.
pub fn consistency_proof(
    old_size: u64,
    new_size: u64,
    nodes: &dyn SubtreeHashes,
) -> Result<Vec<Hash>, MerkleError> {
    check_size(new_size)?;
    if old_size > new_size {
        return Err(MerkleError::SizesOutOfOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start..start+len], b), iteratively: each step records one sibling hash and
    // narrows the range; it ends when m == len (the old tree's last subtree is reached).
    let mut top_down = Vec::new();
    let (mut start, mut len, mut m, mut whole_old_tree) = (0u64, new_size, old_size, true);
    while m != len {
        let k = split_point(len);
        if m <= k {
            top_down.push(range_hash(start + k, len - k, nodes)?);
            len = k;
        } else {
            top_down.push(nodes.subtree(k.trailing_zeros() as u8, start / k)?);
            start += k;
            len -= k;
            m -= k;
            whole_old_tree = false;
        }
    }
    if !whole_old_tree {
        // The old tree's right edge is an interior subtree: the verifier needs its hash.
        top_down.push(range_hash(start, len, nodes)?);
    }
    top_down.reverse();
    Ok(top_down)
}

/// The number of hashes in PATH(leaf_index, D[tree_size]).
pub fn inclusion_proof_len(leaf_index: u64, tree_size: u64) -> usize {
    let (mut len, mut m, mut count) = (tree_size, leaf_index, 0);
    while len > 1 {
        let k = split_point(len);
        if m < k {
            len = k;
        } else {
            len -= k;
            m -= k;
        }
        count += 1;
    }
    count
}

/// The number of hashes in PROOF(old_size, D[new_size]) (0 < old_size ≤ new_size).
pub fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    if old_size == 0 || old_size >= new_size {
        return 0;
    }
    let (mut len, mut m, mut count, mut whole) = (new_size, old_size, 0, true);
    while m != len {
        let k = split_point(len);
        if m <= k {
            len = k;
        } else {
            len -= k;
            m -= k;
            whole = false;
        }
        count += 1;
    }
    count + usize::from(!whole)
}

fn hex_of(h: &Hash) -> String {
    hex::encode(h)
}

/// RFC 9162 §2.1.3.2: verifies that `leaf_hash` is leaf `leaf_index` of the tree of `tree_size`
/// leaves whose head is `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    leaf_index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if leaf_index >= tree_size {
        return Err(MerkleError::LeafIndexOutOfRange {
            index: leaf_index,
            size: tree_size,
        });
    }
    let expected = inclusion_proof_len(leaf_index, tree_size);
    if proof.len() != expected {
        return Err(MerkleError::ProofLength {
            expected,
            actual: proof.len(),
        });
    }
    let computed = root_from_inclusion(leaf_hash, leaf_index, tree_size, proof)?;
    if &computed != root {
        return Err(MerkleError::RootMismatch {
            computed: hex_of(&computed),
            expected: hex_of(root),
        });
    }
    Ok(())
}

/// The root an inclusion proof implies, following RFC 9162 §2.1.3.2 step by step.
fn root_from_inclusion(
    leaf_hash: &Hash,
    leaf_index: u64,
    tree_size: u64,
    proof: &[Hash],
) -> Result<Hash, MerkleError> {
    let (mut f, mut s) = (leaf_index, tree_size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if s == 0 {
            return Err(MerkleError::ProofLength {
                expected: inclusion_proof_len(leaf_index, tree_size),
                actual: proof.len(),
            });
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(MerkleError::ProofLength {
            expected: inclusion_proof_len(leaf_index, tree_size),
            actual: proof.len(),
        });
    }
    Ok(r)
}

/// RFC 9162 §2.1.4.2: verifies that the tree of `new_size` leaves with head `new_root` extends
/// the tree of `old_size` leaves with head `old_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizesOutOfOrder {
            old: old_size,
            new: new_size,
        });
    }
    let expected = consistency_proof_len(old_size, new_size);
    if proof.len() != expected {
        return Err(MerkleError::ProofLength {
            expected,
            actual: proof.len(),
        });
    }
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(MerkleError::DifferentRootsSameSize)
        };
    }
    if old_size == 0 {
        // Every tree extends the empty tree.
        return Ok(());
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if s == 0 {
            return Err(MerkleError::ProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(MerkleError::ProofLength {
            expected,
            actual: proof.len(),
        });
    }
    if &fr != old_root {
        return Err(MerkleError::OldRootMismatch {
            computed: hex_of(&fr),
            expected: hex_of(old_root),
        });
    }
    if &sr != new_root {
        return Err(MerkleError::RootMismatch {
            computed: hex_of(&sr),
            expected: hex_of(new_root),
        });
    }
    Ok(())
}

/// The perfect subtrees that become complete when leaf `leaf_index` (with hash `leaf`) is
/// appended, as (level, index, hash), level 0 first. A store persists exactly these rows per
/// append; the left siblings it needs are read from `nodes` (the subtrees stored before).
pub fn completed_subtrees(
    leaf_index: u64,
    leaf: Hash,
    nodes: &dyn SubtreeHashes,
) -> Result<Vec<(u8, u64, Hash)>, MerkleError> {
    let mut out = vec![(0u8, leaf_index, leaf)];
    let (mut level, mut index, mut hash) = (0u8, leaf_index, leaf);
    // A right child (odd index) completes its parent; keep climbing while that holds.
    while index & 1 == 1 {
        let left = nodes.subtree(level, index - 1)?;
        hash = node_hash(&left, &hash);
        level += 1;
        index >>= 1;
        out.push((level, index, hash));
    }
    Ok(out)
}

/// An append-only Merkle tree in memory that keeps every perfect subtree hash per level (the
/// "stored levels" layout a persistent log uses), so proofs and heads cost O(log n) lookups.
#[derive(Debug, Default, Clone)]
pub struct MemoryTree {
    /// levels[l][i] = hash of the perfect subtree of 2^l leaves starting at leaf i << l.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a tree from leaf hashes.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = Self::new();
        for leaf in leaves {
            tree.push_leaf_hash(leaf);
        }
        tree
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends an entry (hashed as a leaf) and returns its leaf index.
    pub fn push_entry(&mut self, entry: &[u8]) -> u64 {
        self.push_leaf_hash(leaf_hash(entry))
    }

    /// Appends a leaf hash and returns its leaf index.
    pub fn push_leaf_hash(&mut self, leaf: Hash) -> u64 {
        let index = self.size();
        let mut level = 0usize;
        let mut hash = leaf;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            let len = row.len();
            if len % 2 == 1 {
                break;
            }
            hash = node_hash(&row[len - 2], &row[len - 1]);
            level += 1;
        }
        index
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels
            .first()?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    /// The current tree head.
    pub fn root(&self) -> Hash {
        root_from(self.size(), self).expect("a memory tree holds all its subtrees")
    }

    pub fn root_at(&self, size: u64) -> Result<Hash, MerkleError> {
        if size > self.size() {
            return Err(MerkleError::SizesOutOfOrder {
                old: self.size(),
                new: size,
            });
        }
        root_from(size, self)
    }

    pub fn inclusion_proof(
        &self,
        leaf_index: u64,
        tree_size: u64,
    ) -> Result<Vec<Hash>, MerkleError> {
        self.check_available(tree_size)?;
        inclusion_proof(leaf_index, tree_size, self)
    }

    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, MerkleError> {
        self.check_available(new_size)?;
        consistency_proof(old_size, new_size, self)
    }

    fn check_available(&self, tree_size: u64) -> Result<(), MerkleError> {
        if tree_size > self.size() {
            return Err(MerkleError::SizesOutOfOrder {
                old: self.size(),
                new: tree_size,
            });
        }
        Ok(())
    }
}

impl SubtreeHashes for MemoryTree {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, MerkleError> {
        self.levels
            .get(level as usize)
            .and_then(|row| row.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(MerkleError::MissingSubtree { level, index })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// The one-call hash of short messages is SHA-256, at every length it takes, split
        /// anywhere.
        #[test]
        fn short_messages_hash_as_sha256(
            bytes in proptest::collection::vec(any::<u8>(), 0..SHORT_MAX),
            cut in any::<prop::sample::Index>(),
        ) {
            let at = cut.index(bytes.len() + 1);
            let want: Hash = Sha256::digest(&bytes).into();
            prop_assert_eq!(sha256_short(&[&bytes[..at], &bytes[at..]]), want);
        }
    }

    #[test]
    fn leaf_hashes_of_long_entries_use_the_streaming_hasher() {
        for len in [SHORT_MAX - 2, SHORT_MAX - 1, SHORT_MAX, 1000] {
            let entry = vec![7u8; len];
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(&entry);
            let want: Hash = h.finalize().into();
            assert_eq!(leaf_hash(&entry), want, "entry of {len} bytes");
        }
    }

    use super::*;

    #[test]
    fn split_point_is_largest_power_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        let h: Hash = Sha256::digest(b"").into();
        assert_eq!(h, EMPTY_ROOT);
        assert_eq!(root(&[]), EMPTY_ROOT);
        assert_eq!(MemoryTree::new().root(), EMPTY_ROOT);
    }

    #[test]
    fn memory_tree_reports_missing_subtrees() {
        let tree = MemoryTree::from_leaves([leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")]);
        assert_eq!(
            tree.subtree(1, 1),
            Err(MerkleError::MissingSubtree { level: 1, index: 1 })
        );
        assert!(tree.inclusion_proof(0, 4).is_err());
    }
}
