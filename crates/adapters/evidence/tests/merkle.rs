//! The Merkle log against the published RFC 6962 test vectors (Certificate Transparency /
//! Trillian reference data) and, by property tests, against a naive recursive recomputation of
//! RFC 6962 §2.1 written straight from the text.

use proptest::prelude::*;
use sluice_evidence::merkle::{
    CompactRange, EMPTY_ROOT, Hash, MemoryTree, MerkleError, SubtreeHashes, completed_subtrees,
    consistency_proof, inclusion_proof, leaf_hash, node_hash, root, root_from, verify_consistency,
    verify_inclusion,
};

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Roots of the trees of the first 1..=8 leaves.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index, tree size, audit path).
const INCLUSION: &[(u64, u64, &[&str])] = &[
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, consistency proof).
const CONSISTENCY: &[(u64, u64, &[&str])] = &[
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

fn h(text: &str) -> Hash {
    hex::decode(text).unwrap().try_into().unwrap()
}

fn hs(items: &[&str]) -> Vec<Hash> {
    items.iter().map(|t| h(t)).collect()
}

fn vector_tree() -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in LEAVES {
        tree.push_entry(&hex::decode(leaf).unwrap());
    }
    tree
}

#[test]
fn roots_match_the_published_vectors() {
    let tree = vector_tree();
    assert_eq!(tree.root_at(0).unwrap(), EMPTY_ROOT);
    for (i, want) in ROOTS.iter().enumerate() {
        let size = i as u64 + 1;
        assert_eq!(tree.root_at(size).unwrap(), h(want), "size {size}");
        let leaves: Vec<Hash> = (0..size).map(|j| tree.leaf(j).unwrap()).collect();
        assert_eq!(root(&leaves), h(want), "streamed root, size {size}");
    }
    assert_eq!(
        leaf_hash(b""),
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    );
}

#[test]
fn inclusion_proofs_match_the_published_vectors() {
    let tree = vector_tree();
    for (index, size, path) in INCLUSION {
        let proof = tree.inclusion_proof(*index, *size).unwrap();
        assert_eq!(proof, hs(path), "leaf {index} of {size}");
        let leaf = tree.leaf(*index).unwrap();
        let root = h(ROOTS[*size as usize - 1]);
        verify_inclusion(&leaf, *index, *size, &proof, &root).unwrap();
    }
}

#[test]
fn consistency_proofs_match_the_published_vectors() {
    let tree = vector_tree();
    for (old, new, path) in CONSISTENCY {
        let proof = tree.consistency_proof(*old, *new).unwrap();
        assert_eq!(proof, hs(path), "{old} → {new}");
        let (r1, r2) = (h(ROOTS[*old as usize - 1]), h(ROOTS[*new as usize - 1]));
        verify_consistency(*old, *new, &r1, &r2, &proof).unwrap();
    }
}

#[test]
fn tampered_vector_proofs_fail_with_precise_errors() {
    let tree = vector_tree();
    let root8 = h(ROOTS[7]);
    let leaf5 = tree.leaf(5).unwrap();
    let mut proof = tree.inclusion_proof(5, 8).unwrap();
    proof[1][0] ^= 1;
    assert!(matches!(
        verify_inclusion(&leaf5, 5, 8, &proof, &root8),
        Err(MerkleError::RootMismatch { .. })
    ));
    let proof = tree.inclusion_proof(5, 8).unwrap();
    assert!(matches!(
        verify_inclusion(&leaf5, 5, 8, &proof[..2], &root8),
        Err(MerkleError::ProofLength {
            expected: 3,
            actual: 2
        })
    ));
    assert!(matches!(
        verify_inclusion(&leaf5, 8, 8, &proof, &root8),
        Err(MerkleError::LeafIndexOutOfRange { .. })
    ));
    // The right proof for another leaf does not prove this one.
    assert!(verify_inclusion(&leaf5, 4, 8, &proof, &root8).is_err());

    let proof = tree.consistency_proof(6, 8).unwrap();
    let (r6, r7) = (h(ROOTS[5]), h(ROOTS[6]));
    assert!(matches!(
        verify_consistency(6, 8, &r7, &root8, &proof),
        Err(MerkleError::OldRootMismatch { .. })
    ));
    assert!(matches!(
        verify_consistency(6, 8, &r6, &r7, &proof),
        Err(MerkleError::RootMismatch { .. })
    ));
    assert!(matches!(
        verify_consistency(8, 6, &root8, &r6, &proof),
        Err(MerkleError::SizesOutOfOrder { .. })
    ));
    assert!(matches!(
        verify_consistency(8, 8, &root8, &r7, &[]),
        Err(MerkleError::DifferentRootsSameSize)
    ));
    // An empty log is a prefix of every log; the proof must be empty.
    verify_consistency(0, 8, &EMPTY_ROOT, &root8, &[]).unwrap();
    assert!(verify_consistency(0, 8, &EMPTY_ROOT, &root8, &proof).is_err());
}

// --- the naive reference: RFC 6962 §2.1 recursions over a slice of leaf hashes -------------

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => EMPTY_ROOT,
        1 => d[0],
        n => {
            let k = split(n);
            node_hash(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
    if d.len() <= 1 {
        return vec![];
    }
    let k = split(d.len());
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

#[test]
fn every_pair_of_sizes_up_to_70_matches_the_reference() {
    let all = leaves(70);
    let tree = MemoryTree::from_leaves(all.iter().copied());
    for new in 1..=70usize {
        let root_new = mth(&all[..new]);
        assert_eq!(tree.root_at(new as u64).unwrap(), root_new);
        for old in 1..=new {
            let proof = tree.consistency_proof(old as u64, new as u64).unwrap();
            let want = if old == new {
                vec![]
            } else {
                subproof(old, &all[..new], true)
            };
            assert_eq!(proof, want, "{old} → {new}");
            verify_consistency(old as u64, new as u64, &mth(&all[..old]), &root_new, &proof)
                .unwrap_or_else(|e| panic!("{old} → {new}: {e}"));
        }
        for m in 0..new {
            let proof = tree.inclusion_proof(m as u64, new as u64).unwrap();
            assert_eq!(proof, path(m, &all[..new]), "leaf {m} of {new}");
            verify_inclusion(&all[m], m as u64, new as u64, &proof, &root_new).unwrap();
        }
    }
}

/// Reads subtrees from a naive recomputation, to check the proof builders against a
/// SubtreeHashes that is not MemoryTree.
struct Naive(Vec<Hash>);

impl SubtreeHashes for Naive {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, MerkleError> {
        let width = 1usize << level;
        let start = index as usize * width;
        if start + width > self.0.len() {
            return Err(MerkleError::MissingSubtree { level, index });
        }
        Ok(mth(&self.0[start..start + width]))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn roots_and_proofs_agree_with_the_reference(n in 1usize..300, a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let all = leaves(n);
        let tree = MemoryTree::from_leaves(all.iter().copied());
        let naive = Naive(all.clone());
        let r = mth(&all);
        prop_assert_eq!(tree.root(), r);
        prop_assert_eq!(root(&all), r);
        prop_assert_eq!(root_from(n as u64, &naive).unwrap(), r);

        let m = a.index(n);
        let proof = inclusion_proof(m as u64, n as u64, &tree).unwrap();
        prop_assert_eq!(&proof, &path(m, &all));
        prop_assert_eq!(&inclusion_proof(m as u64, n as u64, &naive).unwrap(), &proof);
        prop_assert!(verify_inclusion(&all[m], m as u64, n as u64, &proof, &r).is_ok());

        let old = b.index(n) + 1;
        let cproof = consistency_proof(old as u64, n as u64, &tree).unwrap();
        prop_assert_eq!(&consistency_proof(old as u64, n as u64, &naive).unwrap(), &cproof);
        prop_assert!(verify_consistency(old as u64, n as u64, &mth(&all[..old]), &r, &cproof).is_ok());
    }

    #[test]
    fn any_wrong_inclusion_proof_fails(n in 2usize..200, a in any::<prop::sample::Index>(), which in any::<prop::sample::Index>(), bit in 0u8..8) {
        let all = leaves(n);
        let tree = MemoryTree::from_leaves(all.iter().copied());
        let r = tree.root();
        let m = a.index(n);
        let mut proof = tree.inclusion_proof(m as u64, n as u64).unwrap();
        prop_assume!(!proof.is_empty());
        let i = which.index(proof.len());
        proof[i][i % 32] ^= 1 << bit;
        prop_assert!(verify_inclusion(&all[m], m as u64, n as u64, &proof, &r).is_err());
        // A proof for leaf m checked as another leaf fails too.
        let proof = tree.inclusion_proof(m as u64, n as u64).unwrap();
        let other = (m + 1) % n;
        prop_assert!(verify_inclusion(&all[m], other as u64, n as u64, &proof, &r).is_err());
        // Dropping or adding a hash fails.
        prop_assert!(verify_inclusion(&all[m], m as u64, n as u64, &proof[1..], &r).is_err());
        let mut longer = proof.clone();
        longer.push([0; 32]);
        prop_assert!(verify_inclusion(&all[m], m as u64, n as u64, &longer, &r).is_err());
    }

    #[test]
    fn any_wrong_consistency_proof_fails(n in 2usize..200, a in any::<prop::sample::Index>(), which in any::<prop::sample::Index>(), bit in 0u8..8) {
        let all = leaves(n);
        let tree = MemoryTree::from_leaves(all.iter().copied());
        let old = a.index(n - 1) + 1; // 1..n-1, so the proof is non-empty
        let (r_old, r_new) = (mth(&all[..old]), tree.root());
        let mut proof = tree.consistency_proof(old as u64, n as u64).unwrap();
        prop_assert!(!proof.is_empty());
        let i = which.index(proof.len());
        proof[i][31 - i % 32] ^= 1 << bit;
        prop_assert!(verify_consistency(old as u64, n as u64, &r_old, &r_new, &proof).is_err());
        let proof = tree.consistency_proof(old as u64, n as u64).unwrap();
        // A log that rewrote any leaf of the old tree cannot prove consistency.
        let mut forked = all.clone();
        forked[which.index(old)][0] ^= 0x80;
        let r_forked = mth(&forked[..old]);
        prop_assert!(verify_consistency(old as u64, n as u64, &r_forked, &r_new, &proof).is_err());
        prop_assert!(verify_consistency(old as u64, n as u64, &r_old, &r_new, &proof[1..]).is_err());
    }

    #[test]
    fn compact_range_and_completed_subtrees_track_the_tree(n in 1usize..300) {
        let all = leaves(n);
        let mut tree = MemoryTree::new();
        let mut range = CompactRange::default();
        for (i, leaf) in all.iter().enumerate() {
            // What a store would persist for this append, computed from the nodes before it.
            let rows = completed_subtrees(i as u64, *leaf, &tree).unwrap();
            tree.push_leaf_hash(*leaf);
            for (level, index, hash) in rows {
                prop_assert_eq!(tree.subtree(level, index).unwrap(), hash);
            }
            range.push(*leaf);
            prop_assert_eq!(range.size(), i as u64 + 1);
        }
        prop_assert_eq!(range.root(), mth(&all));
    }
}

#[test]
fn proofs_beyond_the_tree_are_refused() {
    let tree = MemoryTree::from_leaves(leaves(5));
    assert!(matches!(
        tree.inclusion_proof(5, 5),
        Err(MerkleError::LeafIndexOutOfRange { index: 5, size: 5 })
    ));
    assert!(tree.inclusion_proof(0, 6).is_err());
    assert!(matches!(
        tree.consistency_proof(4, 3),
        Err(MerkleError::SizesOutOfOrder { old: 4, new: 3 })
    ));
    // Asking the free functions for a bigger tree than the nodes hold names the missing node.
    assert!(matches!(
        inclusion_proof(0, 8, &tree),
        Err(MerkleError::MissingSubtree { .. })
    ));
}
