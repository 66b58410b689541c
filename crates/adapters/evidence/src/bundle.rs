//! Change evidence bundles (`sluice.evidence.bundle/v1`): one JSON file holding a change's
//! manifest envelope, its stage envelopes, the manifest's inclusion proof, a signed checkpoint,
//! the public keys and the evidence summary, and the offline verifier that checks every link and
//! names the first one that is broken.
//!
//! The chain, from the outside in: a checkpoint signed by a trusted key commits to a tree head;
//! the inclusion proof puts the manifest envelope's digest in that tree; the manifest (signed)
//! lists each stage envelope's digest in order; each stage envelope is signed; the statements
//! agree on one change and one commit, and the approval, plan and apply bind one plan digest.
//! docs/evidence.md documents the format for independent verifiers.

use std::fmt::Write as _;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sluice_model::stage::{Stage, contract};
use thiserror::Error;

use crate::checkpoint::{Checkpoint, NoteError, NoteVerifier, parse_note};
use crate::dsse::Envelope;
use crate::keys::{self, key_id, public_key_pem};
use crate::merkle::{self, Hash, MerkleError, SubtreeHashes, leaf_hash};
use crate::statement::{
    ChangeRef, ManifestPredicate, StagePredicate, StatementError, Subject, detail, digest_string,
    input, manifest_subjects, open_statement, parse_digest, stage_name,
};
use crate::summary::{EvidenceSummary, summarize};

pub const BUNDLE_SCHEMA: &str = "sluice.evidence.bundle/v1";

/// The bundle file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bundle {
    pub schema: String,
    pub change_id: String,
    /// Derived from the signed statements; the verifier recomputes it.
    pub evidence: EvidenceSummary,
    pub manifest: Envelope,
    /// Stage envelopes in manifest order.
    pub stages: Vec<BundleStage>,
    pub log: LogProof,
    /// Public keys that signed, for convenience: verification trusts only the caller's keys.
    pub keys: Vec<BundleKey>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleStage {
    pub stage: String,
    pub envelope: Envelope,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogProof {
    pub origin: String,
    pub leaf_index: u64,
    pub tree_size: u64,
    /// RFC 6962 audit path, lowercase hex, leaf's sibling first.
    pub inclusion_proof: Vec<String>,
    /// The signed checkpoint (C2SP signed note) for `tree_size`.
    pub checkpoint: String,
    /// Optional consistency proof from an earlier tree size to `tree_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<ConsistencyProof>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistencyProof {
    pub from_size: u64,
    /// The tree head at `from_size`, lowercase hex: with it the proof is checkable on its own.
    pub from_root: String,
    /// RFC 6962 PROOF(from_size, D[tree_size]), lowercase hex.
    pub proof: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleKey {
    /// Hex SHA-256 of the raw public key.
    pub key_id: String,
    pub public_key_pem: String,
    /// C2SP verifier key, when this key signed the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vkey: Option<String>,
}

/// Why a bundle did not verify: the first broken link.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum VerifyError {
    #[error("bundle: line {line}, column {column}: {message}")]
    Parse {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("bundle: {0}")]
    Format(String),
    #[error("no trusted keys given: pass the evidence public key")]
    NoTrustedKeys,
    #[error("checkpoint: {0}")]
    Checkpoint(NoteError),
    #[error("checkpoint: {0}")]
    CheckpointMismatch(String),
    #[error("previous checkpoint: {0}")]
    PreviousCheckpoint(NoteError),
    #[error("consistency: {0}")]
    Consistency(String),
    #[error("inclusion: {0}")]
    Inclusion(MerkleError),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("stage {stage}: {problem}")]
    Stage {
        stage: String,
        problem: StageProblem,
    },
    #[error("binding: {0}")]
    Binding(String),
    #[error("keys: {0}")]
    Keys(String),
    #[error("evidence summary: {0}")]
    Summary(String),
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum StageProblem {
    #[error("listed in the manifest ({listed}) but missing from the bundle")]
    Missing { listed: String },
    #[error("envelope digest {found} does not match the manifest's {listed}")]
    DigestMismatch { found: String, listed: String },
    #[error(
        "envelope is manifest entry #{listed_at}, found at position #{found_at}: stages reordered"
    )]
    Reordered { found_at: usize, listed_at: usize },
    #[error("envelope {found} is not listed in the manifest")]
    NotListed { found: String },
    #[error("{0}")]
    Statement(StatementError),
    #[error("{0}")]
    Mismatch(String),
}

impl VerifyError {
    fn stage(stage: impl Into<String>, problem: StageProblem) -> Self {
        VerifyError::Stage {
            stage: stage.into(),
            problem,
        }
    }
}

/// A stage statement that verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedStage {
    pub stage: Stage,
    /// SHA-256 of the envelope's canonical bytes.
    pub digest: Hash,
    /// Key id of the trusted key that signed it.
    pub key_id: String,
    pub subjects: Vec<Subject>,
    pub predicate: StagePredicate,
}

/// What a verified bundle establishes.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedBundle {
    pub change: ChangeRef,
    pub manifest_digest: Hash,
    pub manifest_version: u32,
    pub previous_manifest: Option<String>,
    pub manifest_key_id: String,
    pub origin: String,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub root: Hash,
    /// Names of the trusted keys that signed the checkpoint.
    pub checkpoint_signers: Vec<String>,
    /// The size of the previously seen (trusted) checkpoint the log was proven to extend.
    pub consistent_with: Option<u64>,
    /// The earlier size of the consistency proof the bundle carries (checked against its own
    /// `fromRoot`; trust in that root comes only from a previous checkpoint).
    pub carried_consistency_from: Option<u64>,
    pub stages: Vec<VerifiedStage>,
    pub summary: EvidenceSummary,
}

impl VerifiedBundle {
    /// A human-readable account of what was verified.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "bundle verified: {}", self.change.id);
        let _ = writeln!(
            out,
            "  checkpoint: {} size {} root {} signed by {}",
            self.origin,
            self.tree_size,
            hex::encode(self.root),
            self.checkpoint_signers.join(", ")
        );
        match (self.consistent_with, self.carried_consistency_from) {
            (Some(size), _) => {
                let _ = writeln!(
                    out,
                    "  consistency: extends the previously seen checkpoint of size {size}"
                );
            }
            (None, Some(size)) => {
                let _ = writeln!(
                    out,
                    "  consistency: the bundle's proof from size {size} holds; no earlier \
                     checkpoint given to anchor it"
                );
            }
            (None, None) => {
                let _ = writeln!(out, "  consistency: no earlier checkpoint given");
            }
        }
        let _ = writeln!(
            out,
            "  inclusion: manifest v{} {} is leaf {} of {}",
            self.manifest_version,
            digest_string(&self.manifest_digest),
            self.leaf_index,
            self.tree_size
        );
        if let Some(prev) = &self.previous_manifest {
            let _ = writeln!(out, "  previous manifest: {prev}");
        }
        for s in &self.stages {
            let _ = writeln!(
                out,
                "  stage {:>2} {:<9} {:<8} {} by {} ({})",
                sluice_model::stage::contract(s.stage).number,
                stage_name(s.stage),
                s.predicate.outcome.as_str(),
                digest_string(&s.digest),
                s.predicate.actor,
                s.predicate.identity
            );
        }
        for st in &self.summary.stages {
            if st.status == crate::summary::NOT_RUN {
                let _ = writeln!(out, "  not run: {}", st.stage);
            }
        }
        out
    }
}

/// A previously seen checkpoint to check the bundle's log against.
#[derive(Debug, Clone, Copy)]
pub struct PreviousCheckpoint<'a> {
    /// The signed checkpoint text.
    pub checkpoint: &'a str,
    /// PROOF(previous size, D[bundle size]); `None` to use the one the bundle carries.
    pub proof: Option<&'a [Hash]>,
}

fn parse_hashes(field: &str, items: &[String]) -> Result<Vec<Hash>, VerifyError> {
    items
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let ok = h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            let mut out = [0u8; 32];
            if !ok || hex::decode_to_slice(h, &mut out).is_err() {
                return Err(VerifyError::Format(format!(
                    "{field}[{i}] is not a 32-byte lowercase hex hash: {h:?}"
                )));
            }
            Ok(out)
        })
        .collect()
}

fn hashes_to_hex(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

/// Parses bundle bytes; errors carry the JSON position.
pub fn parse_bundle(bytes: &[u8]) -> Result<Bundle, VerifyError> {
    let bundle: Bundle = serde_json::from_slice(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "truncated file",
            serde_json::error::Category::Syntax => "malformed JSON",
            _ => "not a bundle",
        };
        // serde_json appends " at line L column C"; the position is reported separately.
        let text = e.to_string();
        let detail = text
            .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
            .unwrap_or(&text);
        VerifyError::Parse {
            line: e.line(),
            column: e.column(),
            message: format!("{what}: {detail}"),
        }
    })?;
    if bundle.schema != BUNDLE_SCHEMA {
        return Err(VerifyError::Format(format!(
            "schema is {:?}, this verifier reads {BUNDLE_SCHEMA:?}",
            bundle.schema
        )));
    }
    Ok(bundle)
}

/// Labels of the manifest's stages: the stage name, with `#n` when a stage occurs more than
/// once (several approvals).
fn stage_labels(stages: &[Stage]) -> Vec<String> {
    stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let total = stages.iter().filter(|x| *x == s).count();
            if total == 1 {
                stage_name(*s).to_string()
            } else {
                let nth = stages[..=i].iter().filter(|x| *x == s).count();
                format!("{}#{nth}", stage_name(*s))
            }
        })
        .collect()
}

/// Verifies a bundle offline against trusted public keys and, optionally, a previously seen
/// checkpoint. Checks run in chain order and stop at the first broken link.
pub fn verify_bundle(
    bytes: &[u8],
    trusted_keys: &[VerifyingKey],
    previous: Option<PreviousCheckpoint<'_>>,
) -> Result<VerifiedBundle, VerifyError> {
    let bundle = parse_bundle(bytes)?;
    if trusted_keys.is_empty() {
        return Err(VerifyError::NoTrustedKeys);
    }

    // 1. The checkpoint: signed by a trusted key, for the tree the bundle claims.
    let note = parse_note(&bundle.log.checkpoint).map_err(VerifyError::Checkpoint)?;
    let checkpoint_signers = note
        .verify_with_keys(trusted_keys)
        .map_err(VerifyError::Checkpoint)?;
    let checkpoint = Checkpoint::parse(&note.text).map_err(VerifyError::Checkpoint)?;
    if checkpoint.origin != bundle.log.origin {
        return Err(VerifyError::CheckpointMismatch(format!(
            "origin {:?} differs from the bundle's log origin {:?}",
            checkpoint.origin, bundle.log.origin
        )));
    }
    if checkpoint.size != bundle.log.tree_size {
        return Err(VerifyError::CheckpointMismatch(format!(
            "tree size {} differs from the bundle's proof tree size {}",
            checkpoint.size, bundle.log.tree_size
        )));
    }

    // 2. Consistency: the proof the bundle carries holds, and the log only grew since a
    //    checkpoint seen before.
    if let Some(c) = &bundle.log.consistency {
        check_carried_consistency(c, &checkpoint)?;
    }
    let consistent_with = match previous {
        None => None,
        Some(prev) => Some(check_previous(&bundle, &checkpoint, trusted_keys, prev)?),
    };

    // 3. Inclusion: the manifest envelope's digest is a leaf of that tree.
    let manifest_digest = bundle.manifest.digest();
    let proof = parse_hashes("log.inclusionProof", &bundle.log.inclusion_proof)?;
    merkle::verify_inclusion(
        &leaf_hash(&manifest_digest),
        bundle.log.leaf_index,
        bundle.log.tree_size,
        &proof,
        &checkpoint.root,
    )
    .map_err(VerifyError::Inclusion)?;

    // 4. The manifest: signed, well-formed, about the bundle's change.
    let opened = open_statement(&bundle.manifest, trusted_keys)
        .map_err(|e| VerifyError::Manifest(e.to_string()))?;
    let manifest = opened
        .manifest_predicate()
        .map_err(|e| VerifyError::Manifest(e.to_string()))?;
    check_manifest(&manifest, &opened.statement.subject)?;
    if bundle.change_id != manifest.change.id {
        return Err(VerifyError::Binding(format!(
            "bundle changeId {:?} differs from the signed manifest's {:?}",
            bundle.change_id, manifest.change.id
        )));
    }

    // 5. Each stage envelope: the one the manifest lists at its position, and signed.
    let stages = verify_stages(&bundle, &manifest, trusted_keys)?;

    // 6. Cross-bindings between the statements.
    check_bindings(&manifest.change, &stages)?;

    // 7. The public keys listed are what they claim to be.
    check_keys(&bundle.keys)?;

    // 8. The summary says exactly what the signed statements say.
    let predicates: Vec<StagePredicate> = stages.iter().map(|s| s.predicate.clone()).collect();
    let summary = summarize(&manifest.change, &predicates);
    if summary != bundle.evidence {
        let want = serde_json::to_value(&summary).unwrap_or_default();
        let got = serde_json::to_value(&bundle.evidence).unwrap_or_default();
        let field = first_difference(&want, &got, "evidence");
        return Err(VerifyError::Summary(format!(
            "{field} does not match the signed statements"
        )));
    }

    Ok(VerifiedBundle {
        change: manifest.change,
        manifest_digest,
        manifest_version: manifest.version,
        previous_manifest: manifest.previous,
        manifest_key_id: opened.key_id,
        origin: checkpoint.origin,
        leaf_index: bundle.log.leaf_index,
        tree_size: checkpoint.size,
        root: checkpoint.root,
        checkpoint_signers,
        consistent_with,
        carried_consistency_from: bundle.log.consistency.as_ref().map(|c| c.from_size),
        stages,
        summary,
    })
}

fn check_previous(
    bundle: &Bundle,
    current: &Checkpoint,
    trusted_keys: &[VerifyingKey],
    prev: PreviousCheckpoint<'_>,
) -> Result<u64, VerifyError> {
    let note = parse_note(prev.checkpoint).map_err(VerifyError::PreviousCheckpoint)?;
    note.verify_with_keys(trusted_keys)
        .map_err(VerifyError::PreviousCheckpoint)?;
    let old = Checkpoint::parse(&note.text).map_err(VerifyError::PreviousCheckpoint)?;
    if old.origin != current.origin {
        return Err(VerifyError::Consistency(format!(
            "previous checkpoint is for log {:?}, the bundle's for {:?}",
            old.origin, current.origin
        )));
    }
    if old.size > current.size {
        return Err(VerifyError::Consistency(format!(
            "previous checkpoint has size {}, larger than the bundle's {}: the log shrank or \
             the bundle is older than the checkpoint",
            old.size, current.size
        )));
    }
    let carried;
    let proof: &[Hash] = match (prev.proof, &bundle.log.consistency) {
        (Some(p), _) => p,
        (None, Some(c)) if c.from_size == old.size => {
            if c.from_root != hex::encode(old.root) {
                return Err(VerifyError::Consistency(format!(
                    "the previous checkpoint's root at size {} differs from the one the \
                     bundle's log had: the log was rewritten",
                    old.size
                )));
            }
            carried = parse_hashes("log.consistency.proof", &c.proof)?;
            &carried
        }
        (None, _) if old.size == current.size || old.size == 0 => &[],
        (None, Some(c)) => {
            return Err(VerifyError::Consistency(format!(
                "the bundle's proof starts at size {}, the previous checkpoint has size {}; \
                 pass a proof from size {}",
                c.from_size, old.size, old.size
            )));
        }
        (None, None) => {
            return Err(VerifyError::Consistency(format!(
                "no proof from size {} to {}: pass one or use a bundle that carries it",
                old.size, current.size
            )));
        }
    };
    merkle::verify_consistency(old.size, current.size, &old.root, &current.root, proof)
        .map_err(|e| VerifyError::Consistency(e.to_string()))?;
    Ok(old.size)
}

fn check_carried_consistency(
    c: &ConsistencyProof,
    current: &Checkpoint,
) -> Result<(), VerifyError> {
    let from_root = parse_hashes(
        "log.consistency.fromRoot",
        std::slice::from_ref(&c.from_root),
    )?[0];
    let proof = parse_hashes("log.consistency.proof", &c.proof)?;
    merkle::verify_consistency(c.from_size, current.size, &from_root, &current.root, &proof)
        .map_err(|e| {
            VerifyError::Consistency(format!(
                "the bundle's proof from size {} does not hold: {e}",
                c.from_size
            ))
        })
}

fn check_manifest(manifest: &ManifestPredicate, subjects: &[Subject]) -> Result<(), VerifyError> {
    let bad = |m: String| Err(VerifyError::Manifest(m));
    match (manifest.version, &manifest.previous) {
        (0, _) => return bad("version 0 is invalid; versions start at 1".into()),
        (1, Some(_)) => return bad("version 1 cannot have a previous manifest".into()),
        (v, None) if v > 1 => {
            return bad(format!("version {v} does not name its previous manifest"));
        }
        _ => {}
    }
    if subjects != manifest_subjects(&manifest.stages).as_slice() {
        return bad("subjects do not mirror the listed stage envelopes".into());
    }
    // Stages may repeat (several approvals, a re-plan after a stale approval) and may be
    // skipped (no render for a stack), but none comes before a stage it requires that the
    // change did run.
    let listed: Vec<Stage> = manifest.stages.iter().map(|e| e.stage).collect();
    for (i, stage) in listed.iter().enumerate() {
        for required in contract(*stage).requires {
            if listed.contains(required) && !listed[..i].contains(required) {
                return bad(format!(
                    "stage {} is listed before {}, which it requires",
                    stage_name(*stage),
                    stage_name(*required)
                ));
            }
        }
    }
    Ok(())
}

fn verify_stages(
    bundle: &Bundle,
    manifest: &ManifestPredicate,
    trusted_keys: &[VerifyingKey],
) -> Result<Vec<VerifiedStage>, VerifyError> {
    let listed: Vec<String> = manifest.stages.iter().map(|e| e.envelope.clone()).collect();
    let labels = stage_labels(&manifest.stages.iter().map(|e| e.stage).collect::<Vec<_>>());
    let digests: Vec<Hash> = bundle.stages.iter().map(|s| s.envelope.digest()).collect();
    let mut out = Vec::with_capacity(listed.len());
    for (i, item) in bundle.stages.iter().enumerate() {
        let digest = digests[i];
        let found = digest_string(&digest);
        let Some(want) = listed.get(i) else {
            return Err(VerifyError::stage(
                item.stage.clone(),
                StageProblem::NotListed { found },
            ));
        };
        let label = &labels[i];
        if *want != found {
            // Tell a reorder (the expected envelope is further on) from a deletion (it is
            // nowhere) from a modification (this envelope is not listed at all).
            let expected_later = digests[i + 1..].iter().any(|d| digest_string(d) == *want);
            let problem = match listed.iter().position(|l| *l == found) {
                Some(j) if expected_later => StageProblem::Reordered {
                    found_at: i + 1,
                    listed_at: j + 1,
                },
                Some(_) => StageProblem::Missing {
                    listed: want.clone(),
                },
                None => StageProblem::DigestMismatch {
                    found,
                    listed: want.clone(),
                },
            };
            return Err(VerifyError::stage(label.clone(), problem));
        }
        let expected_stage = manifest.stages[i].stage;
        if item.stage != stage_name(expected_stage) {
            return Err(VerifyError::stage(
                label.clone(),
                StageProblem::Mismatch(format!("bundle labels it {:?}", item.stage)),
            ));
        }
        let opened = open_statement(&item.envelope, trusted_keys)
            .map_err(|e| VerifyError::stage(label.clone(), StageProblem::Statement(e)))?;
        let predicate = opened
            .stage_predicate()
            .map_err(|e| VerifyError::stage(label.clone(), StageProblem::Statement(e)))?;
        if predicate.stage != expected_stage {
            return Err(VerifyError::stage(
                label.clone(),
                StageProblem::Mismatch(format!(
                    "statement is for stage {}",
                    stage_name(predicate.stage)
                )),
            ));
        }
        out.push(VerifiedStage {
            stage: expected_stage,
            digest,
            key_id: opened.key_id,
            subjects: opened.statement.subject,
            predicate,
        });
    }
    if let Some(missing) = listed.get(bundle.stages.len()) {
        return Err(VerifyError::stage(
            labels[bundle.stages.len()].clone(),
            StageProblem::Missing {
                listed: missing.clone(),
            },
        ));
    }
    Ok(out)
}

/// A plan-like digest detail, validated when present.
fn digest_detail(s: &VerifiedStage, key: &str) -> Result<Option<String>, VerifyError> {
    match s.predicate.details.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(d)) => {
            parse_digest(key, d)
                .map_err(|e| VerifyError::Binding(format!("stage {}: {e}", stage_name(s.stage))))?;
            Ok(Some(d.clone()))
        }
        Some(other) => Err(VerifyError::Binding(format!(
            "stage {}: details.{key} must be a string, found {other}",
            stage_name(s.stage)
        ))),
    }
}

fn check_bindings(change: &ChangeRef, stages: &[VerifiedStage]) -> Result<(), VerifyError> {
    let bad = |m: String| Err(VerifyError::Binding(m));
    for s in stages {
        let name = stage_name(s.stage);
        if s.predicate.change_id != change.id {
            return bad(format!(
                "stage {name} is for change {:?}, the manifest for {:?}",
                s.predicate.change_id, change.id
            ));
        }
        if s.predicate.commit != change.commit {
            return bad(format!(
                "stage {name} ran on commit {}, the manifest's change is commit {}",
                s.predicate.commit, change.commit
            ));
        }
        for subject in &s.subjects {
            if let Some(commit) = subject.digest.get("gitCommit")
                && *commit != change.commit
            {
                return bad(format!(
                    "stage {name} subject {} is commit {commit}, the change is commit {}",
                    subject.name, change.commit
                ));
            }
        }
    }
    // Approval and apply bind to the plan (and decision) they follow.
    let mut plan: Option<String> = None;
    let mut decision: Option<String> = None;
    let mut approved_plan: Option<String> = None;
    for s in stages {
        let name = stage_name(s.stage);
        let plan_digest = digest_detail(s, detail::PLAN_DIGEST)?;
        let decision_digest = digest_detail(s, detail::DECISION_DIGEST)?;
        match s.stage {
            Stage::Plan => {
                plan = plan_digest;
                approved_plan = None;
            }
            Stage::Policy => {
                // The decision must be about the plan the plan stage produced.
                if let (Some(p), Some(i)) = (&plan, s.predicate.input_digests.get(input::PLAN))
                    && p != i
                {
                    return bad(format!(
                        "policy decision was made over plan {i}, the plan stage produced {p}"
                    ));
                }
                decision = decision_digest;
            }
            Stage::Approve => {
                if let (Some(p), Some(a)) = (&plan, &plan_digest)
                    && p != a
                {
                    return bad(format!(
                        "approval by {} is for plan {a}, the plan stage produced {p}",
                        s.predicate.actor
                    ));
                }
                if let (Some(d), Some(a)) = (&decision, &decision_digest)
                    && d != a
                {
                    return bad(format!(
                        "approval by {} is for policy decision {a}, the policy stage recorded {d}",
                        s.predicate.actor
                    ));
                }
                if plan_digest.is_some() {
                    approved_plan = plan_digest;
                }
            }
            Stage::Apply => {
                if let (Some(p), Some(a)) = (&plan, &plan_digest)
                    && p != a
                {
                    return bad(format!(
                        "{name} applied plan {a}, the plan stage produced {p}"
                    ));
                }
                if let (Some(p), Some(a)) = (&approved_plan, &plan_digest)
                    && p != a
                {
                    return bad(format!("{name} applied plan {a}, the approval is for {p}"));
                }
                // Applied under a break-glass grant: the grant stands in for the approval,
                // and must name who opened it, why, and this very plan.
                let grant = break_glass_grant(s, plan_digest.as_deref())?;
                // Applied means approved (or break-glassed): a passed apply needs an approval
                // of its plan or a grant that names it.
                if s.predicate.outcome == crate::statement::Outcome::Passed
                    && plan_digest.is_some()
                    && approved_plan.is_none()
                    && grant.is_none()
                {
                    return bad(format!(
                        "{name} applied plan {}, but no approval of it is in the bundle",
                        plan_digest.as_deref().unwrap_or_default()
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The break-glass grant an `apply` statement ran under (`details.break_glass`), checked: a
/// grant id, the requester and the reason must be non-empty strings and its `plan_digest` must
/// be the applied plan. `None` when the apply names no grant.
fn break_glass_grant(
    s: &VerifiedStage,
    applied: Option<&str>,
) -> Result<Option<String>, VerifyError> {
    let bad = |m: String| VerifyError::Binding(format!("stage apply: details.break_glass: {m}"));
    let Some(bg) = s.predicate.details.get("break_glass") else {
        return Ok(None);
    };
    if bg.is_null() {
        return Ok(None);
    }
    let field = |name: &str| -> Result<String, VerifyError> {
        match bg.get(name).and_then(serde_json::Value::as_str) {
            Some(v) if !v.trim().is_empty() => Ok(v.to_string()),
            _ => Err(bad(format!("`{name}` must be a non-empty string"))),
        }
    };
    let grant = field("grant")?;
    field("requester")?;
    field("reason")?;
    let digest = field("plan_digest")?;
    if applied != Some(digest.as_str()) {
        return Err(bad(format!(
            "grant {grant} names plan {digest}, the apply applied {}",
            applied.unwrap_or("no plan")
        )));
    }
    Ok(Some(grant))
}

fn check_keys(keys_listed: &[BundleKey]) -> Result<(), VerifyError> {
    for (i, k) in keys_listed.iter().enumerate() {
        let key = keys::parse_public_key(&k.public_key_pem)
            .map_err(|e| VerifyError::Keys(format!("keys[{i}]: {e}")))?;
        // Exactly the PEM sluice writes: no other text rides along unchecked.
        if public_key_pem(&key) != k.public_key_pem {
            return Err(VerifyError::Keys(format!(
                "keys[{i}]: publicKeyPem is not in canonical form"
            )));
        }
        if key_id(&key) != k.key_id {
            return Err(VerifyError::Keys(format!(
                "keys[{i}]: keyId {} is not the SHA-256 of its public key",
                k.key_id
            )));
        }
        if let Some(vkey) = &k.vkey {
            let v = NoteVerifier::from_vkey(vkey)
                .map_err(|e| VerifyError::Keys(format!("keys[{i}]: {e}")))?;
            if *v.key() != key || v.vkey() != *vkey {
                return Err(VerifyError::Keys(format!(
                    "keys[{i}]: vkey is for a different public key"
                )));
            }
        }
    }
    Ok(())
}

/// The JSON path of the first difference between two values, for a precise error.
fn first_difference(want: &serde_json::Value, got: &serde_json::Value, path: &str) -> String {
    use serde_json::Value::{Array, Object};
    match (want, got) {
        (Object(a), Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) if vb == va => {}
                    Some(vb) => return first_difference(va, vb, &format!("{path}.{k}")),
                    None => return format!("{path}.{k}"),
                }
            }
            match b.keys().find(|k| !a.contains_key(*k)) {
                Some(k) => format!("{path}.{k}"),
                None => path.to_string(),
            }
        }
        (Array(a), Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find(|(_, (x, y))| x != y)
            .map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]")))
            .unwrap_or_else(|| path.to_string()),
        _ => path.to_string(),
    }
}

/// What a bundle is made of.
pub struct BundleInput<'a> {
    /// The change manifest's envelope: its digest is the log leaf entry.
    pub manifest: &'a Envelope,
    /// The stage envelopes, in the manifest's order.
    pub stages: &'a [Envelope],
    /// Where the manifest's digest sits in the log.
    pub leaf_index: u64,
    /// The signed checkpoint to prove inclusion against (its size is the proof's tree size).
    pub checkpoint: &'a str,
    /// The log's subtree hashes, to build the proofs from.
    pub log: &'a dyn SubtreeHashes,
    /// The public keys that signed the statements and the checkpoint.
    pub public_keys: &'a [VerifyingKey],
    /// Include a consistency proof from this earlier tree size.
    pub consistency_from: Option<u64>,
}

#[derive(Debug, Error)]
pub enum BundleError {
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] NoteError),
    #[error("log: {0}")]
    Log(#[from] MerkleError),
    #[error("{what}: {error}")]
    Statement { what: String, error: StatementError },
    #[error("the bundle does not verify with its own keys: {0}")]
    SelfCheck(VerifyError),
}

/// Assembles a bundle from its parts without verifying it (see [`write_bundle`]).
pub fn assemble_bundle(input: &BundleInput<'_>) -> Result<Bundle, BundleError> {
    let note = parse_note(input.checkpoint)?;
    let signers = note.verify_with_keys(input.public_keys)?;
    let checkpoint = Checkpoint::parse(&note.text)?;
    let proof = merkle::inclusion_proof(input.leaf_index, checkpoint.size, input.log)?;
    let consistency = match input.consistency_from {
        None => None,
        Some(from) => Some(ConsistencyProof {
            from_size: from,
            from_root: hex::encode(merkle::root_from(from, input.log)?),
            proof: hashes_to_hex(&merkle::consistency_proof(
                from,
                checkpoint.size,
                input.log,
            )?),
        }),
    };

    let statement_err = |what: String| move |error| BundleError::Statement { what, error };
    let manifest = open_statement(input.manifest, input.public_keys)
        .map_err(statement_err("manifest".into()))?
        .manifest_predicate()
        .map_err(statement_err("manifest".into()))?;
    let mut stages = Vec::with_capacity(input.stages.len());
    let mut predicates = Vec::with_capacity(input.stages.len());
    for (i, env) in input.stages.iter().enumerate() {
        let what = format!("stage #{}", i + 1);
        let p = open_statement(env, input.public_keys)
            .map_err(statement_err(what.clone()))?
            .stage_predicate()
            .map_err(statement_err(what))?;
        stages.push(BundleStage {
            stage: stage_name(p.stage).to_string(),
            envelope: env.clone(),
        });
        predicates.push(p);
    }

    let keys = input
        .public_keys
        .iter()
        .map(|k| BundleKey {
            key_id: key_id(k),
            public_key_pem: public_key_pem(k),
            // The verifier key of the checkpoint signature this key made, if any.
            vkey: note
                .signatures
                .iter()
                .filter(|s| signers.contains(&s.name))
                .filter_map(|s| {
                    NoteVerifier::new(&s.name, *k)
                        .ok()
                        .filter(|v| v.key_id() == s.key_id)
                })
                .map(|v| v.vkey())
                .next(),
        })
        .collect();

    Ok(Bundle {
        schema: BUNDLE_SCHEMA.to_string(),
        change_id: manifest.change.id.clone(),
        evidence: summarize(&manifest.change, &predicates),
        manifest: input.manifest.clone(),
        stages,
        log: LogProof {
            origin: checkpoint.origin,
            leaf_index: input.leaf_index,
            tree_size: checkpoint.size,
            inclusion_proof: hashes_to_hex(&proof),
            checkpoint: input.checkpoint.to_string(),
            consistency,
        },
        keys,
    })
}

/// Assembles a bundle, serialises it (pretty JSON) and verifies the bytes with the bundle's own
/// keys before returning them: a bundle that would not verify is never written.
pub fn write_bundle(input: &BundleInput<'_>) -> Result<Vec<u8>, BundleError> {
    let bundle = assemble_bundle(input)?;
    let mut bytes = serde_json::to_vec_pretty(&bundle).expect("a bundle always serialises");
    bytes.push(b'\n');
    verify_bundle(&bytes, input.public_keys, None).map_err(BundleError::SelfCheck)?;
    Ok(bytes)
}
