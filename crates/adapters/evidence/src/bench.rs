//! Measurements of the evidence hot paths at scale, for `sluice bench evidence` and the ignored
//! perf test: building a log in memory, recomputing a head from every entry (what an audit
//! does), inclusion and consistency proofs built and verified, and statement signing and
//! verification. Figures only; nothing here asserts a timing.

use std::fmt;
use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::keys::EvidenceKey;
use crate::merkle::{self, Hash, MemoryTree, leaf_hash};
use crate::statement::{Outcome, StagePredicate, open_statement, sign_statement, stage_statement};

#[derive(Debug, Clone)]
pub struct EvidenceBench {
    pub leaves: u64,
    /// Appending every entry to a MemoryTree (leaf hash + stored levels).
    pub build: Duration,
    /// Recomputing the head from the entries with a streaming compact range (the audit path).
    pub audit_recompute: Duration,
    /// Folding the head from stored subtrees (O(log n)).
    pub root_from_nodes: Duration,
    pub proof_samples: u32,
    /// Mean time to build and verify one inclusion proof at full size.
    pub inclusion_each: Duration,
    /// Mean time to build and verify one consistency proof to full size.
    pub consistency_each: Duration,
    pub statements: u32,
    /// Mean time to sign one stage statement (canonical JSON + DSSE + Ed25519).
    pub sign_each: Duration,
    /// Mean time to verify and parse one stage statement.
    pub verify_each: Duration,
}

/// The log entry of leaf `i`: the SHA-256 of a distinct envelope stand-in.
fn entry(i: u64) -> Hash {
    crate::sha256(&i.to_be_bytes())
}

/// A deterministic spread of sample indices below `n` (no RNG dependency).
fn sample(i: u64, n: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x1234_5678)
        % n
}

/// Runs the measurements on a log of `leaves` entries (≥ 2).
pub fn run(leaves: u64, proof_samples: u32, statements: u32) -> EvidenceBench {
    let leaves = leaves.max(2);
    let start = Instant::now();
    let mut tree = MemoryTree::new();
    for i in 0..leaves {
        tree.push_entry(&entry(i));
    }
    let build = start.elapsed();
    let head = tree.root();

    let start = Instant::now();
    let mut range = merkle::CompactRange::default();
    for i in 0..leaves {
        range.push(leaf_hash(&entry(i)));
    }
    let recomputed = range.root();
    let audit_recompute = start.elapsed();
    assert_eq!(
        recomputed, head,
        "audit recomputation disagrees with the tree"
    );

    let start = Instant::now();
    for _ in 0..proof_samples.max(1) {
        black_box(merkle::root_from(black_box(leaves), &tree).expect("tree holds its nodes"));
    }
    let root_from_nodes = start.elapsed() / proof_samples.max(1);

    let start = Instant::now();
    for s in 0..proof_samples {
        let index = sample(u64::from(s), leaves);
        let proof = tree
            .inclusion_proof(index, leaves)
            .expect("index is in range");
        let leaf = leaf_hash(&entry(index));
        merkle::verify_inclusion(&leaf, index, leaves, &proof, &head).expect("proof verifies");
    }
    let inclusion_each = start.elapsed() / proof_samples.max(1);

    let start = Instant::now();
    for s in 0..proof_samples {
        let old = sample(u64::from(s), leaves - 1) + 1;
        let old_root = tree.root_at(old).expect("old size is in range");
        let proof = tree
            .consistency_proof(old, leaves)
            .expect("sizes are ordered");
        merkle::verify_consistency(old, leaves, &old_root, &head, &proof).expect("proof verifies");
    }
    let consistency_each = start.elapsed() / proof_samples.max(1);

    let key = EvidenceKey::from_seed(&[0x42; 32]);
    let trusted = [key.verifying_key()];
    let predicates: Vec<StagePredicate> = (0..statements)
        .map(|i| StagePredicate {
            change_id: format!("infra-live#{i}@9f3a12c/prod/ap-southeast-1/network"),
            commit: "9f3a12c0ffee".into(),
            stage: sluice_model::stage::Stage::Plan,
            actor: "iac-plan-prod-network".into(),
            identity: "oidc:repo:infra-live:env:prod".into(),
            input_digests: Default::default(),
            outcome: Outcome::Passed,
            recorded_at: "2026-07-03T10:00:00Z".into(),
            details: json!({"plan_digest": format!("sha256:{}", hex::encode(entry(u64::from(i))))}),
        })
        .collect();
    let start = Instant::now();
    let envelopes: Vec<_> = predicates
        .iter()
        .map(|p| sign_statement(&stage_statement(vec![], p), &key))
        .collect();
    let sign_each = start.elapsed() / statements.max(1);
    let start = Instant::now();
    for env in &envelopes {
        let opened = open_statement(env, &trusted).expect("own statement verifies");
        black_box(opened.stage_predicate().expect("own predicate parses"));
    }
    let verify_each = start.elapsed() / statements.max(1);

    EvidenceBench {
        leaves,
        build,
        audit_recompute,
        root_from_nodes,
        proof_samples,
        inclusion_each,
        consistency_each,
        statements,
        sign_each,
        verify_each,
    }
}

impl fmt::Display for EvidenceBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_sec = |d: Duration| {
            if d.is_zero() {
                f64::INFINITY
            } else {
                1.0 / d.as_secs_f64()
            }
        };
        writeln!(f, "evidence log of {} leaves", self.leaves)?;
        writeln!(
            f,
            "  build (MemoryTree append)         {:>12.3?}",
            self.build
        )?;
        writeln!(
            f,
            "  audit: recompute head from entries {:>11.3?}",
            self.audit_recompute
        )?;
        writeln!(
            f,
            "  head from stored subtrees          {:>11.3?}",
            self.root_from_nodes
        )?;
        writeln!(
            f,
            "  inclusion proof build + verify     {:>11.3?} each ({} samples)",
            self.inclusion_each, self.proof_samples
        )?;
        writeln!(
            f,
            "  consistency proof build + verify   {:>11.3?} each ({} samples)",
            self.consistency_each, self.proof_samples
        )?;
        writeln!(
            f,
            "  sign stage statement               {:>11.3?} each ({:.0}/s, {} statements)",
            self.sign_each,
            per_sec(self.sign_each),
            self.statements
        )?;
        writeln!(
            f,
            "  verify stage statement             {:>11.3?} each ({:.0}/s)",
            self.verify_each,
            per_sec(self.verify_each)
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn small_run_reports_every_figure() {
        let b = super::run(100, 10, 5);
        let text = b.to_string();
        assert!(text.starts_with("evidence log of 100 leaves"));
        for label in ["audit", "inclusion", "consistency", "sign", "verify"] {
            assert!(text.contains(label), "{label} missing from {text}");
        }
    }
}
