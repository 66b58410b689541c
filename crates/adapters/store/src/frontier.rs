//! The right edge of the log (its "compact range"): the perfect subtrees that cover the first
//! `size` leaves, largest first. Appending a leaf merges equal-sized neighbours, and every merge
//! is a perfect subtree that has just become complete: exactly the node rows an append must
//! persist. Pure; the store loads it once and keeps it in step with each committed append.

use sluice_evidence::merkle::{Hash, SubtreeHashes, leaf_hash, node_hash};

use crate::records::LogNode;

/// The compact range of a log prefix of `size` leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (level, hash), strictly decreasing levels; the subtree at position i starts where the
    /// previous ones end.
    stack: Vec<(u8, Hash)>,
}

/// The leaf and node rows one append produces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendRows {
    /// (index, entry, leaf hash) per appended leaf.
    pub leaves: Vec<(u64, Hash, Hash)>,
    /// Completed perfect subtrees of level ≥ 1, in the order they completed.
    pub nodes: Vec<LogNode>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtrees (level, index) that make up the compact range of `size` leaves,
    /// largest first: what [`Frontier::load`] must be given.
    pub fn keys(size: u64) -> Vec<(u8, u64)> {
        let mut keys = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            let width = 1u64 << level;
            if size & width != 0 {
                keys.push((level, start >> level));
                start += width;
            }
        }
        keys
    }

    /// Rebuilds the frontier of `size` leaves from stored subtree hashes.
    pub fn load(
        size: u64,
        nodes: &dyn SubtreeHashes,
    ) -> Result<Frontier, sluice_evidence::merkle::MerkleError> {
        let mut stack = Vec::new();
        for (level, index) in Frontier::keys(size) {
            stack.push((level, nodes.subtree(level, index)?));
        }
        Ok(Frontier { size, stack })
    }

    /// Appends `entries`, returning the rows to persist. `self` moves forward; callers that may
    /// fail to commit work on a clone and keep it only after the commit.
    pub fn append(&mut self, entries: &[Hash]) -> AppendRows {
        let mut rows = AppendRows {
            leaves: Vec::with_capacity(entries.len()),
            nodes: Vec::with_capacity(entries.len()),
        };
        for entry in entries {
            let index = self.size;
            let leaf = leaf_hash(entry);
            rows.leaves.push((index, *entry, leaf));
            let mut level = 0u8;
            let mut hash = leaf;
            while let Some(&(top_level, left)) = self.stack.last() {
                if top_level != level {
                    break;
                }
                self.stack.pop();
                hash = node_hash(&left, &hash);
                level += 1;
                rows.nodes.push(LogNode {
                    level,
                    index: index >> level,
                    hash,
                });
            }
            self.stack.push((level, hash));
            self.size += 1;
        }
        rows
    }

    /// The tree head of the current size (RFC 6962: fold the perfect subtrees from the right).
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return sluice_evidence::merkle::EMPTY_ROOT;
        };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sluice_evidence::merkle::{MemoryTree, root};

    fn entries(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| sluice_evidence::sha256(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn keys_follow_the_bits_of_the_size() {
        assert_eq!(Frontier::keys(0), vec![]);
        assert_eq!(Frontier::keys(1), vec![(0, 0)]);
        assert_eq!(Frontier::keys(6), vec![(2, 0), (1, 2)]);
        assert_eq!(Frontier::keys(7), vec![(2, 0), (1, 2), (0, 6)]);
        assert_eq!(Frontier::keys(8), vec![(3, 0)]);
    }

    #[test]
    fn appending_the_fourth_leaf_completes_two_nodes() {
        let mut f = Frontier::default();
        let rows = f.append(&entries(3));
        assert_eq!(
            rows.nodes
                .iter()
                .map(|n| (n.level, n.index))
                .collect::<Vec<_>>(),
            vec![(1, 0)]
        );
        let rows = f.append(&entries(4)[3..]);
        assert_eq!(
            rows.nodes
                .iter()
                .map(|n| (n.level, n.index, n.end_leaf()))
                .collect::<Vec<_>>(),
            vec![(1, 1, 3), (2, 0, 3)]
        );
    }

    proptest! {
        // Against the evidence crate's in-memory tree and its naive root: the same nodes, the
        // same heads, whatever the batch boundaries.
        #[test]
        fn matches_a_naive_tree(n in 0usize..300, cuts in proptest::collection::vec(0usize..300, 0..6)) {
            let all = entries(n);
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c <= n).collect();
            cuts.push(0);
            cuts.push(n);
            cuts.sort_unstable();
            let mut f = Frontier::default();
            let mut produced = Vec::new();
            for w in cuts.windows(2) {
                let rows = f.append(&all[w[0]..w[1]]);
                prop_assert_eq!(rows.leaves.len(), w[1] - w[0]);
                produced.extend(rows.nodes);
            }
            let leaves: Vec<Hash> = all.iter().map(|e| leaf_hash(e)).collect();
            prop_assert_eq!(f.size(), n as u64);
            prop_assert_eq!(f.root(), root(&leaves));
            let tree = MemoryTree::from_leaves(leaves.iter().copied());
            // Every produced node is the tree's perfect subtree, and the count is exact:
            // n - popcount(n) nodes of level >= 1 exist in a tree of n leaves.
            for node in &produced {
                prop_assert_eq!(tree.subtree(node.level, node.index).unwrap(), node.hash);
            }
            prop_assert_eq!(produced.len() as u64, n as u64 - (n as u64).count_ones() as u64);
            // Reloading from stored subtrees gives the same frontier.
            let reloaded = Frontier::load(n as u64, &tree).unwrap();
            prop_assert_eq!(&reloaded, &f);
        }
    }
}
