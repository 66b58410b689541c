//! Change bundles end to end: a change built from real data (a GitHub pull_request webhook
//! payload and a Terraform 1.x plan JSON from ../shared/corpus) is signed, logged, bundled and
//! verified offline; then every kind of tampering is shown to be detected with the error naming
//! the first broken link.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use proptest::prelude::*;
use serde_json::{Value, json};
use sluice_evidence::bundle::{
    Bundle, BundleInput, BundleStage, LogProof, PreviousCheckpoint, StageProblem, VerifyError,
    assemble_bundle, verify_bundle, write_bundle,
};
use sluice_evidence::checkpoint::{Checkpoint, NoteError};
use sluice_evidence::dsse::{self, DsseError, Envelope, PAYLOAD_TYPE_IN_TOTO};
use sluice_evidence::keys::EvidenceKey;
use sluice_evidence::merkle::{MemoryTree, MerkleError};
use sluice_evidence::statement::{
    ChangeRef, ManifestEntry, ManifestPredicate, Outcome, StagePredicate, StatementError, Subject,
    detail, digest_string, manifest_statement, sign_statement, stage_statement,
};
use sluice_evidence::summary::Recorded;
use sluice_evidence::{canonical, sha256};
use sluice_model::stage::Stage;

const ORIGIN: &str = "sluice.example/acme/evidence";
const T0: &str = "2026-07-03T10:00:00Z";

fn corpus(rel: &str) -> Option<Vec<u8>> {
    sluice_testkit::corpus(rel).map(|p| std::fs::read(p).expect("read corpus file"))
}

/// The facts of one change, taken from real inputs.
struct Facts {
    change: ChangeRef,
    author: String,
    pr_url: String,
    plan_digest: String,
    plan_summary: Value,
    decision_digest: String,
}

fn facts() -> Option<Facts> {
    let pr: Value = serde_json::from_slice(&corpus(
        "github-webhooks/payload-examples/api.github.com/pull_request/opened.payload.json",
    )?)
    .unwrap();
    let plan = corpus("tf-plans/terraform-json/testdata/120_basic/plan.json")?;
    let plan_json: Value = serde_json::from_slice(&plan).unwrap();
    let mut counts = BTreeMap::<String, u64>::new();
    for rc in plan_json["resource_changes"].as_array().unwrap() {
        for a in rc["change"]["actions"].as_array().unwrap() {
            *counts.entry(a.as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    let commit = pr["pull_request"]["head"]["sha"]
        .as_str()
        .unwrap()
        .to_string();
    let repo = pr["repository"]["name"].as_str().unwrap().to_string();
    let number = pr["number"].as_u64().unwrap();
    let change_id = sluice_model::change::ChangeId {
        repo: repo.clone(),
        pr: Some(number),
        commit: commit.clone(),
        env: "prod".into(),
        unit: "prod/ap-southeast-1/network".into(),
    };
    let decision_record = json!({
        "bundle_version": "policy-library@4e12aa0",
        "results": [{"rule": "prod-network-change", "result": "require_approval"}],
    });
    Some(Facts {
        change: ChangeRef::from(&change_id),
        author: pr["sender"]["login"].as_str().unwrap().to_string(),
        pr_url: pr["pull_request"]["html_url"].as_str().unwrap().to_string(),
        plan_digest: digest_string(&sha256(&plan)),
        plan_summary: serde_json::to_value(counts).unwrap(),
        decision_digest: digest_string(&sha256(&canonical::value_to_vec(&decision_record))),
    })
}

struct Keys {
    statements: EvidenceKey,
    log: EvidenceKey,
}

impl Keys {
    fn new() -> Self {
        Self {
            statements: EvidenceKey::from_seed(&[0x11; 32]),
            log: EvidenceKey::from_seed(&[0x22; 32]),
        }
    }

    fn trusted(&self) -> Vec<VerifyingKey> {
        vec![self.statements.verifying_key(), self.log.verifying_key()]
    }
}

fn predicate(
    f: &Facts,
    stage: Stage,
    actor: &str,
    identity: &str,
    details: Value,
) -> StagePredicate {
    StagePredicate {
        change_id: f.change.id.clone(),
        commit: f.change.commit.clone(),
        stage,
        actor: actor.into(),
        identity: identity.into(),
        input_digests: BTreeMap::from([(
            "commit".to_string(),
            format!("gitCommit:{}", f.change.commit),
        )]),
        outcome: Outcome::Passed,
        recorded_at: T0.into(),
        details,
    }
}

/// The stage statements of the change: everything but render (an IaC stack has nothing to
/// render) and archive (the bundle is the archive).
fn stage_predicates(f: &Facts) -> Vec<(Vec<Subject>, StagePredicate)> {
    let ci = "oidc:repo:acme/infra-live:pull_request";
    let commit_subject = Subject::git_commit(&f.change.repo, &f.change.commit);
    let plan_subject = Subject::sha256(
        "120_basic/plan.json",
        f.plan_digest.trim_start_matches("sha256:"),
    );
    vec![
        (
            vec![commit_subject.clone()],
            predicate(
                f,
                Stage::Propose,
                &f.author,
                &format!("github:{}", f.author),
                json!({ detail::PR_URL: f.pr_url }),
            ),
        ),
        (
            vec![commit_subject.clone()],
            predicate(f, Stage::Validate, "ci", ci, json!({"findings": 0})),
        ),
        (
            vec![plan_subject.clone()],
            predicate(
                f,
                Stage::Plan,
                "iac-plan-prod-network",
                "oidc:repo:acme/infra-live:env:prod:plan",
                json!({
                    detail::PLAN_DIGEST: f.plan_digest,
                    detail::PLAN_ARTIFACT: "plan-prod-network.tfplan",
                    detail::PLAN_SUMMARY: f.plan_summary,
                }),
            ),
        ),
        (
            vec![],
            predicate(
                f,
                Stage::Policy,
                "policy-engine",
                "sluice",
                json!({
                    detail::POLICY_VERSION: "policy-library@4e12aa0",
                    detail::DECISION: "require-approval",
                    detail::DECISION_DIGEST: f.decision_digest,
                }),
            ),
        ),
        (
            vec![plan_subject.clone()],
            predicate(
                f,
                Stage::Approve,
                "bob",
                "github:bob",
                json!({ detail::PLAN_DIGEST: f.plan_digest, detail::DECISION_DIGEST: f.decision_digest, detail::GROUPS: ["platform-network"] }),
            ),
        ),
        (
            vec![plan_subject.clone()],
            predicate(
                f,
                Stage::Approve,
                "carol",
                "github:carol",
                json!({ detail::PLAN_DIGEST: f.plan_digest, detail::GROUPS: ["security"] }),
            ),
        ),
        (
            vec![plan_subject],
            predicate(
                f,
                Stage::Apply,
                "iac-runner-prod-network",
                "oidc:repo:infra-live:env:prod",
                json!({ detail::PLAN_DIGEST: f.plan_digest }),
            ),
        ),
        (
            vec![],
            predicate(
                f,
                Stage::Verify,
                "observer",
                "sluice",
                json!({ detail::DRIFT: "none" }),
            ),
        ),
    ]
}

fn sign_stages(keys: &Keys, preds: &[(Vec<Subject>, StagePredicate)]) -> Vec<Envelope> {
    preds
        .iter()
        .map(|(subjects, p)| {
            sign_statement(&stage_statement(subjects.clone(), p), &keys.statements)
        })
        .collect()
}

fn manifest_for(f: &Facts, stages: &[(Stage, &Envelope)], key: &EvidenceKey) -> Envelope {
    let predicate = ManifestPredicate {
        change: f.change.clone(),
        version: 1,
        previous: None,
        stages: stages
            .iter()
            .map(|(s, e)| ManifestEntry {
                stage: *s,
                envelope: digest_string(&e.digest()),
            })
            .collect(),
        recorded_at: T0.into(),
    };
    sign_statement(&manifest_statement(&predicate), key)
}

/// A log with unrelated leaves around the manifest: 10 before, the manifest at index 10, 5 after.
struct Published {
    tree: MemoryTree,
    leaf_index: u64,
    checkpoint: String,
    /// A checkpoint signed when the log had 7 leaves.
    early_checkpoint: String,
}

fn publish(manifest: &Envelope, keys: &Keys) -> Published {
    let mut tree = MemoryTree::new();
    let mut early_checkpoint = String::new();
    for i in 0..10u64 {
        tree.push_entry(&sha256(format!("other change {i}").as_bytes()));
        if tree.size() == 7 {
            early_checkpoint = Checkpoint::new(ORIGIN, 7, tree.root())
                .sign(ORIGIN, keys.log.signing_key())
                .unwrap();
        }
    }
    let leaf_index = tree.push_entry(&manifest.digest());
    for i in 0..5u64 {
        tree.push_entry(&sha256(format!("later change {i}").as_bytes()));
    }
    let checkpoint = Checkpoint::new(ORIGIN, tree.size(), tree.root())
        .sign(ORIGIN, keys.log.signing_key())
        .unwrap();
    Published {
        tree,
        leaf_index,
        checkpoint,
        early_checkpoint,
    }
}

struct Built {
    keys: Keys,
    bytes: Vec<u8>,
    published: Published,
}

fn build_valid() -> Option<(Facts, Built)> {
    let f = facts()?;
    let keys = Keys::new();
    let preds = stage_predicates(&f);
    let stages = sign_stages(&keys, &preds);
    let listed: Vec<(Stage, &Envelope)> = preds.iter().map(|(_, p)| p.stage).zip(&stages).collect();
    let manifest = manifest_for(&f, &listed, &keys.statements);
    let published = publish(&manifest, &keys);
    let trusted = keys.trusted();
    let bytes = write_bundle(&BundleInput {
        manifest: &manifest,
        stages: &stages,
        leaf_index: published.leaf_index,
        checkpoint: &published.checkpoint,
        log: &published.tree,
        public_keys: &trusted,
        consistency_from: Some(7),
    })
    .unwrap();
    Some((
        f,
        Built {
            keys,
            bytes,
            published,
        },
    ))
}

/// Builds a bundle the way an insider holding the signing keys could, without write_bundle's
/// self-check: the stage list, the manifest, the log and the checkpoint all agree, and the
/// summary is copied from a valid bundle.
fn forge(f: &Facts, keys: &Keys, stages: Vec<(Stage, Envelope)>, summary_from: &[u8]) -> Vec<u8> {
    let listed: Vec<(Stage, &Envelope)> = stages.iter().map(|(s, e)| (*s, e)).collect();
    let manifest = manifest_for(f, &listed, &keys.statements);
    let published = publish(&manifest, keys);
    let valid: Bundle = serde_json::from_slice(summary_from).unwrap();
    let proof = published
        .tree
        .inclusion_proof(published.leaf_index, published.tree.size())
        .unwrap();
    let bundle = Bundle {
        manifest,
        stages: stages
            .into_iter()
            .map(|(s, envelope)| BundleStage {
                stage: sluice_evidence::statement::stage_name(s).to_string(),
                envelope,
            })
            .collect(),
        log: LogProof {
            origin: ORIGIN.into(),
            leaf_index: published.leaf_index,
            tree_size: published.tree.size(),
            inclusion_proof: proof.iter().map(hex::encode).collect(),
            checkpoint: published.checkpoint,
            consistency: None,
        },
        ..valid
    };
    serde_json::to_vec_pretty(&bundle).unwrap()
}

fn signed_stages(f: &Facts, keys: &Keys) -> Vec<(Stage, Envelope)> {
    let preds = stage_predicates(f);
    let stages = sign_stages(keys, &preds);
    preds.iter().map(|(_, p)| p.stage).zip(stages).collect()
}

fn edit(bytes: &[u8], change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    change(&mut v);
    serde_json::to_vec_pretty(&v).unwrap()
}

/// What the verifier says about the built bundle after `tamper`, which must make it fail.
fn rejected(built: &Built, tamper: impl FnOnce(&mut Value)) -> VerifyError {
    verify_bundle(&edit(&built.bytes, tamper), &built.keys.trusted(), None).unwrap_err()
}

fn flip_in_string(s: &str, at: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    // Swap to another base64/hex-safe character so the text stays well-formed.
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[test]
fn a_valid_bundle_verifies_and_reports_what_it_proves() {
    let Some((f, built)) = build_valid() else {
        return;
    };
    let v = verify_bundle(&built.bytes, &built.keys.trusted(), None).unwrap();
    assert_eq!(v.change, f.change);
    assert_eq!(v.leaf_index, 10);
    assert_eq!(v.tree_size, 16);
    assert_eq!(v.stages.len(), 8);
    assert_eq!(v.checkpoint_signers, vec![ORIGIN]);
    assert_eq!(v.manifest_key_id, built.keys.statements.key_id());
    assert_eq!(v.consistent_with, None);
    assert_eq!(v.carried_consistency_from, Some(7));
    assert!(
        v.stages
            .iter()
            .all(|s| s.key_id == built.keys.statements.key_id())
    );

    let Recorded::Ran(plan) = &v.summary.plan else {
        panic!("plan ran")
    };
    assert_eq!(plan.hash.as_deref(), Some(f.plan_digest.as_str()));
    assert_eq!(v.summary.render, Recorded::NotRun);
    assert_eq!(v.summary.source.commit, f.change.commit);

    insta::assert_snapshot!("verified_report", v.report());
    let bundle: Value = serde_json::from_slice(&built.bytes).unwrap();
    insta::assert_json_snapshot!("evidence_summary", bundle["evidence"]);
}

#[test]
fn bundle_lists_keys_and_the_checkpoint_vkey() {
    let Some((_, built)) = build_valid() else {
        return;
    };
    let bundle: Bundle = serde_json::from_slice(&built.bytes).unwrap();
    assert_eq!(bundle.keys.len(), 2);
    assert_eq!(bundle.keys[0].key_id, built.keys.statements.key_id());
    assert_eq!(
        bundle.keys[0].vkey, None,
        "the statement key did not sign the checkpoint"
    );
    let vkey = bundle.keys[1].vkey.as_deref().unwrap();
    assert!(vkey.starts_with(&format!("{ORIGIN}+")), "{vkey}");
    assert!(
        bundle.keys[1]
            .public_key_pem
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
}

#[test]
fn consistency_with_an_earlier_checkpoint() {
    let Some((_, built)) = build_valid() else {
        return;
    };
    let trusted = built.keys.trusted();
    let early = built.published.early_checkpoint.as_str();

    // The bundle carries PROOF(7, 16).
    let v = verify_bundle(
        &built.bytes,
        &trusted,
        Some(PreviousCheckpoint {
            checkpoint: early,
            proof: None,
        }),
    )
    .unwrap();
    assert_eq!(v.consistent_with, Some(7));

    // The caller may pass its own proof, e.g. from the log for another earlier size.
    let cp11 = Checkpoint::new(ORIGIN, 11, built.published.tree.root_at(11).unwrap())
        .sign(ORIGIN, built.keys.log.signing_key())
        .unwrap();
    let proof = built.published.tree.consistency_proof(11, 16).unwrap();
    let v = verify_bundle(
        &built.bytes,
        &trusted,
        Some(PreviousCheckpoint {
            checkpoint: &cp11,
            proof: Some(&proof),
        }),
    )
    .unwrap();
    assert_eq!(v.consistent_with, Some(11));

    // Without a proof from that size, it says what is missing.
    let err = verify_bundle(
        &built.bytes,
        &trusted,
        Some(PreviousCheckpoint {
            checkpoint: &cp11,
            proof: None,
        }),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("consistency: the bundle's proof starts at size 7"),
        "{err}"
    );

    // A checkpoint of a forked log (leaf 3 rewritten) is not consistent.
    let mut forked = MemoryTree::new();
    for i in 0..7u64 {
        let entry = if i == 3 {
            "rewritten".to_string()
        } else {
            format!("other change {i}")
        };
        forked.push_entry(&sha256(entry.as_bytes()));
    }
    let forked_cp = Checkpoint::new(ORIGIN, 7, forked.root())
        .sign(ORIGIN, built.keys.log.signing_key())
        .unwrap();
    let err = verify_bundle(
        &built.bytes,
        &trusted,
        Some(PreviousCheckpoint {
            checkpoint: &forked_cp,
            proof: None,
        }),
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::Consistency(_)), "{err}");
    assert!(err.to_string().contains("the log was rewritten"), "{err}");
    // Also with the proof from the log passed explicitly.
    let proof = built.published.tree.consistency_proof(7, 16).unwrap();
    let err = verify_bundle(
        &built.bytes,
        &trusted,
        Some(PreviousCheckpoint {
            checkpoint: &forked_cp,
            proof: Some(&proof),
        }),
    )
    .unwrap_err();
    assert!(err.to_string().contains("old root mismatch"), "{err}");

    // A previously seen larger tree means this bundle's log was rolled back (or is older).
    let bigger = Checkpoint::new(ORIGIN, 20, [7; 32])
        .sign(ORIGIN, built.keys.log.signing_key())
        .unwrap();
    let err = verify_bundle(
        &built.bytes,
        &trusted,
        Some(PreviousCheckpoint {
            checkpoint: &bigger,
            proof: None,
        }),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("larger than the bundle's 16"),
        "{err}"
    );

    // The previous checkpoint must itself be signed by a trusted key.
    let stranger = EvidenceKey::from_seed(&[0x99; 32]);
    let untrusted = Checkpoint::new(ORIGIN, 7, built.published.tree.root_at(7).unwrap())
        .sign(ORIGIN, stranger.signing_key())
        .unwrap();
    let err = verify_bundle(
        &built.bytes,
        &trusted,
        Some(PreviousCheckpoint {
            checkpoint: &untrusted,
            proof: None,
        }),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::PreviousCheckpoint(NoteError::UnknownKey { .. })
        ),
        "{err}"
    );
}

#[test]
fn tampered_stage_envelope_is_detected() {
    let Some((_, built)) = build_valid() else {
        return;
    };
    let err = rejected(&built, |v| {
        let p = v["stages"][2]["envelope"]["payload"]
            .as_str()
            .unwrap()
            .to_string();
        v["stages"][2]["envelope"]["payload"] = json!(flip_in_string(&p, 40));
    });
    assert!(
        matches!(&err, VerifyError::Stage { stage, problem: StageProblem::DigestMismatch { .. } } if stage == "plan"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("stage plan: envelope digest sha256:"),
        "{err}"
    );
}

#[test]
fn tampered_manifest_is_detected_by_inclusion() {
    let Some((_, built)) = build_valid() else {
        return;
    };
    let err = rejected(&built, |v| {
        let p = v["manifest"]["payload"].as_str().unwrap().to_string();
        v["manifest"]["payload"] = json!(flip_in_string(&p, 100));
    });
    assert!(
        matches!(
            err,
            VerifyError::Inclusion(MerkleError::RootMismatch { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("inclusion: root mismatch"),
        "{err}"
    );
}

#[test]
fn tampered_proof_hash_or_leaf_index_is_detected() {
    let Some((_, built)) = build_valid() else {
        return;
    };
    let err = rejected(&built, |v| {
        let h = v["log"]["inclusionProof"][1].as_str().unwrap().to_string();
        let first = if h.starts_with('0') { '1' } else { '0' };
        let flipped = format!("{first}{}", &h[1..]);
        v["log"]["inclusionProof"][1] = json!(flipped);
    });
    assert!(
        err.to_string().starts_with("inclusion: root mismatch"),
        "{err}"
    );

    let err = rejected(&built, |v| v["log"]["leafIndex"] = json!(11));
    assert!(matches!(err, VerifyError::Inclusion(_)), "{err}");

    let err = rejected(&built, |v| {
        v["log"]["inclusionProof"].as_array_mut().unwrap().pop();
    });
    assert_eq!(
        err,
        VerifyError::Inclusion(MerkleError::ProofLength {
            expected: 4,
            actual: 3
        })
    );

    let err = rejected(&built, |v| {
        v["log"]["inclusionProof"][0] = json!("ABCD");
    });
    assert!(
        err.to_string()
            .starts_with("bundle: log.inclusionProof[0] is not"),
        "{err}"
    );
}

#[test]
fn tampered_checkpoint_is_detected() {
    let Some((_, built)) = build_valid() else {
        return;
    };
    // Claim a different root: the signature no longer covers the text.
    let err = rejected(&built, |v| {
        let cp = v["log"]["checkpoint"].as_str().unwrap().to_string();
        let root_at = cp.find("\n16\n").unwrap() + 4;
        v["log"]["checkpoint"] = json!(flip_in_string(&cp, root_at + 3));
    });
    assert!(
        matches!(
            err,
            VerifyError::Checkpoint(NoteError::InvalidSignature { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("checkpoint: signature by key"),
        "{err}"
    );

    // Drop the signature line's em dash: a parse error naming the line.
    let err = rejected(&built, |v| {
        let cp = v["log"]["checkpoint"]
            .as_str()
            .unwrap()
            .replace('\u{2014}', "--");
        v["log"]["checkpoint"] = json!(cp);
    });
    assert!(err.to_string().starts_with("checkpoint: line 5:"), "{err}");

    // A truthful checkpoint for another size does not match the proof's tree size.
    let err = rejected(&built, |v| {
        v["log"]["checkpoint"] = json!(built.published.early_checkpoint);
    });
    assert!(matches!(err, VerifyError::CheckpointMismatch(_)), "{err}");
}

#[test]
fn deleted_stage_is_detected() {
    let Some((_, built)) = build_valid() else {
        return;
    };
    // Deleting the policy stage in the middle.
    let err = rejected(&built, |v| {
        v["stages"].as_array_mut().unwrap().remove(3);
    });
    assert!(
        matches!(&err, VerifyError::Stage { stage, problem: StageProblem::Missing { .. } } if stage == "policy"),
        "{err}"
    );
    // Deleting the last stage.
    let err = rejected(&built, |v| {
        v["stages"].as_array_mut().unwrap().pop();
    });
    assert!(
        err.to_string()
            .starts_with("stage verify: listed in the manifest"),
        "{err}"
    );
}

#[test]
fn reordered_stages_are_detected() {
    let Some((_, built)) = build_valid() else {
        return;
    };
    let err = rejected(&built, |v| {
        v["stages"].as_array_mut().unwrap().swap(4, 5);
    });
    assert!(
        matches!(&err, VerifyError::Stage { stage, problem: StageProblem::Reordered { found_at: 5, listed_at: 6 } } if stage == "approve#1"),
        "{err}"
    );
}

#[test]
fn wrong_key_is_detected() {
    let Some((_, built)) = build_valid() else {
        return;
    };
    let stranger = EvidenceKey::from_seed(&[0x99; 32]).verifying_key();
    let err = verify_bundle(&built.bytes, &[stranger], None).unwrap_err();
    assert!(
        matches!(err, VerifyError::Checkpoint(NoteError::UnknownKey { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("checkpoint: signature by unknown key"),
        "{err}"
    );

    // Trusting only the log key: the checkpoint verifies, the manifest's signer is unknown.
    let err = verify_bundle(&built.bytes, &[built.keys.log.verifying_key()], None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("manifest: envelope signed by an unknown key"),
        "{err}"
    );

    assert_eq!(
        verify_bundle(&built.bytes, &[], None).unwrap_err(),
        VerifyError::NoTrustedKeys
    );
}

#[test]
fn truncated_or_corrupt_json_is_a_parse_error_with_position() {
    let Some((_, built)) = build_valid() else {
        return;
    };
    let half = &built.bytes[..built.bytes.len() / 2];
    match verify_bundle(half, &built.keys.trusted(), None).unwrap_err() {
        VerifyError::Parse {
            line,
            column,
            message,
        } => {
            assert!(line > 1 && column > 0, "{line}:{column}");
            assert!(
                message.starts_with("truncated file: EOF while parsing"),
                "{message}"
            );
        }
        other => panic!("{other}"),
    }
    let err = verify_bundle(
        b"{\"schema\": \"sluice.evidence.bundle/v1\",\n  \"changeId\": 5}",
        &built.keys.trusted(),
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "bundle: line 2, column 15: not a bundle: invalid type: integer `5`, expected a string"
    );
    let err = verify_bundle(b"{\"schema\" \"x\"}", &built.keys.trusted(), None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("bundle: line 1, column 11: malformed JSON: expected `:`"),
        "{err}"
    );

    let other_schema = edit(&built.bytes, |v| {
        v["schema"] = json!("sluice.evidence.bundle/v9")
    });
    let err = verify_bundle(&other_schema, &built.keys.trusted(), None).unwrap_err();
    assert!(
        err.to_string()
            .contains("this verifier reads \"sluice.evidence.bundle/v1\""),
        "{err}"
    );

    let unknown_field = edit(&built.bytes, |v| v["log"]["note"] = json!("x"));
    let err = verify_bundle(&unknown_field, &built.keys.trusted(), None).unwrap_err();
    assert!(err.to_string().contains("unknown field `note`"), "{err}");
}

#[test]
fn unknown_predicate_type_is_rejected() {
    let Some((f, built)) = build_valid() else {
        return;
    };
    let mut stages = signed_stages(&f, &built.keys);
    let preds = stage_predicates(&f);
    let mut st = stage_statement(preds[6].0.clone(), &preds[6].1);
    st.predicate_type = "https://sluice.dev/predicates/deploy/v1".into();
    stages[6].1 = sign_statement(&st, &built.keys.statements);
    let bytes = forge(&f, &built.keys, stages, &built.bytes);
    let err = verify_bundle(&bytes, &built.keys.trusted(), None).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Stage {
            stage: "apply".into(),
            problem: StageProblem::Statement(StatementError::UnknownPredicateType(
                "https://sluice.dev/predicates/deploy/v1".into()
            ))
        }
    );
    assert_eq!(
        err.to_string(),
        "stage apply: unknown predicate type \"https://sluice.dev/predicates/deploy/v1\""
    );
}

#[test]
fn stage_signature_problems_are_named() {
    let Some((f, built)) = build_valid() else {
        return;
    };
    // A stage envelope whose signature was damaged before the manifest listed it.
    let mut stages = signed_stages(&f, &built.keys);
    let sig = stages[2].1.signatures[0].sig.clone();
    stages[2].1.signatures[0].sig = flip_in_string(&sig, 10);
    let bytes = forge(&f, &built.keys, stages, &built.bytes);
    let err = verify_bundle(&bytes, &built.keys.trusted(), None).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Stage { stage, problem: StageProblem::Statement(StatementError::Envelope(DsseError::SignatureInvalid { .. })) } if stage == "plan"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("stage plan: envelope signature invalid"),
        "{err}"
    );

    // A stage signed by a key nobody trusts.
    let mut stages = signed_stages(&f, &built.keys);
    let preds = stage_predicates(&f);
    let stranger = EvidenceKey::from_seed(&[0x99; 32]);
    stages[2].1 = sign_statement(&stage_statement(preds[2].0.clone(), &preds[2].1), &stranger);
    let bytes = forge(&f, &built.keys, stages, &built.bytes);
    let err = verify_bundle(&bytes, &built.keys.trusted(), None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("stage plan: envelope signed by an unknown key"),
        "{err}"
    );

    // An envelope that is not an in-toto statement at all.
    let mut stages = signed_stages(&f, &built.keys);
    stages[1].1 = dsse::sign("text/plain", b"validated", &built.keys.statements);
    let bytes = forge(&f, &built.keys, stages, &built.bytes);
    let err = verify_bundle(&bytes, &built.keys.trusted(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "stage validate: payload type is \"text/plain\", expected {PAYLOAD_TYPE_IN_TOTO:?}"
        )
    );
}

#[test]
fn cross_bindings_are_enforced() {
    let Some((f, built)) = build_valid() else {
        return;
    };
    let resign = |index: usize, change: &dyn Fn(&mut StagePredicate)| {
        let preds = stage_predicates(&f);
        let mut stages = signed_stages(&f, &built.keys);
        let (subjects, mut p) = preds[index].clone();
        change(&mut p);
        stages[index].1 = sign_statement(&stage_statement(subjects, &p), &built.keys.statements);
        let bytes = forge(&f, &built.keys, stages, &built.bytes);
        verify_bundle(&bytes, &built.keys.trusted(), None).unwrap_err()
    };
    let other_plan = digest_string(&[0xee; 32]);

    let err = resign(4, &|p| p.details[detail::PLAN_DIGEST] = json!(other_plan));
    assert!(
        err.to_string()
            .starts_with("binding: approval by bob is for plan sha256:eeee"),
        "{err}"
    );

    let err = resign(6, &|p| p.details[detail::PLAN_DIGEST] = json!(other_plan));
    assert!(
        err.to_string()
            .starts_with("binding: apply applied plan sha256:eeee"),
        "{err}"
    );

    let err = resign(4, &|p| {
        p.details[detail::DECISION_DIGEST] = json!(other_plan)
    });
    assert!(
        err.to_string()
            .contains("is for policy decision sha256:eeee"),
        "{err}"
    );

    let err = resign(6, &|p| {
        p.commit = "0000000000000000000000000000000000000000".into()
    });
    assert!(
        err.to_string()
            .starts_with("binding: stage apply ran on commit 0000"),
        "{err}"
    );

    let err = resign(1, &|p| p.change_id = "other#1@0000000/prod/x".into());
    assert!(
        err.to_string()
            .starts_with("binding: stage validate is for change \"other#1"),
        "{err}"
    );

    let err = resign(6, &|p| {
        p.details[detail::PLAN_DIGEST] = json!("sha256:not-hex")
    });
    assert!(
        err.to_string()
            .contains("is not a digest of the form sha256:"),
        "{err}"
    );
}

#[test]
fn a_summary_that_says_more_than_the_statements_is_refused() {
    let Some((_, built)) = build_valid() else {
        return;
    };
    let err = rejected(&built, |v| {
        v["evidence"]["policy"]["decision"] = json!("allow")
    });
    assert_eq!(
        err.to_string(),
        "evidence summary: evidence.policy.decision does not match the signed statements"
    );
    // Claiming a stage ran that did not.
    let err = rejected(&built, |v| {
        v["evidence"]["render"] = json!({"digest": null})
    });
    assert!(
        err.to_string()
            .starts_with("evidence summary: evidence.render"),
        "{err}"
    );
}

#[test]
fn changed_bundle_metadata_is_refused() {
    let Some((_, built)) = build_valid() else {
        return;
    };
    let trusted = built.keys.trusted();
    let bytes = edit(&built.bytes, |v| v["changeId"] = json!("other"));
    assert!(matches!(
        verify_bundle(&bytes, &trusted, None),
        Err(VerifyError::Binding(_))
    ));
    let err = rejected(&built, |v| v["stages"][0]["stage"] = json!("validate"));
    assert!(
        err.to_string()
            .starts_with("stage propose: bundle labels it \"validate\""),
        "{err}"
    );
    let bytes = edit(&built.bytes, |v| v["keys"][0]["keyId"] = json!("00"));
    assert!(matches!(
        verify_bundle(&bytes, &trusted, None),
        Err(VerifyError::Keys(_))
    ));
}

#[test]
fn write_bundle_refuses_parts_that_do_not_verify() {
    let Some((f, built)) = build_valid() else {
        return;
    };
    let stages: Vec<Envelope> = signed_stages(&f, &built.keys)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    let listed: Vec<(Stage, &Envelope)> = stage_predicates(&f)
        .iter()
        .map(|(_, p)| p.stage)
        .zip(&stages)
        .collect();
    let manifest = manifest_for(&f, &listed, &built.keys.statements);
    let published = publish(&manifest, &built.keys);
    let trusted = built.keys.trusted();
    fn parts<'a>(
        manifest: &'a Envelope,
        stages: &'a [Envelope],
        leaf_index: u64,
        published: &'a Published,
        trusted: &'a [VerifyingKey],
    ) -> BundleInput<'a> {
        BundleInput {
            manifest,
            stages,
            leaf_index,
            checkpoint: &published.checkpoint,
            log: &published.tree,
            public_keys: trusted,
            consistency_from: None,
        }
    }
    let input = |leaf_index, stages| parts(&manifest, stages, leaf_index, &published, &trusted);
    // The wrong leaf: the self-check fails on inclusion.
    let err = write_bundle(&input(9, &stages)).unwrap_err();
    assert!(
        err.to_string().contains("inclusion: root mismatch"),
        "{err}"
    );
    // A missing stage envelope.
    let err = write_bundle(&input(10, &stages[..7])).unwrap_err();
    assert!(
        err.to_string()
            .contains("stage verify: listed in the manifest"),
        "{err}"
    );
    // Assembling alone does not verify.
    assert!(assemble_bundle(&input(9, &stages)).is_ok());
}

/// The bundle with one byte XORed: every change of meaning must fail verification.
fn flipped(bytes: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at] ^= mask;
    out
}

fn shared() -> Option<&'static (Facts, Built)> {
    static BUILT: std::sync::OnceLock<Option<(Facts, Built)>> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_valid).as_ref()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_single_byte_change_is_detected(at in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let Some((_, built)) = shared() else { return Ok(()) };
        let i = at.index(built.bytes.len());
        let bytes = flipped(&built.bytes, i, mask);
        let original: Value = serde_json::from_slice(&built.bytes).unwrap();
        // Whitespace turned into other whitespace leaves the same document: nothing to detect.
        let same_meaning = serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| v == original);
        prop_assert!(
            same_meaning || verify_bundle(&bytes, &built.keys.trusted(), None).is_err(),
            "flipping byte {} ({:?}) with {:#04x} went unnoticed",
            i,
            built.bytes[i] as char,
            mask
        );
    }

    #[test]
    fn any_truncation_is_detected(at in any::<prop::sample::Index>()) {
        let Some((_, built)) = shared() else { return Ok(()) };
        // Dropping only the trailing newline leaves the same JSON document.
        let len = at.index(built.bytes.len() - 1);
        let err = verify_bundle(&built.bytes[..len], &built.keys.trusted(), None).unwrap_err();
        let is_parse = matches!(err, VerifyError::Parse { .. });
        prop_assert!(is_parse, "{}", err);
    }
}

#[test]
fn verification_uses_only_the_callers_keys() {
    let Some((_, built)) = build_valid() else {
        return;
    };
    // Swap in an attacker's keys in the bundle: nothing changes for a verifier with the real
    // keys, and a verifier that trusted the bundle's keys would be told the keys don't match.
    let stranger = EvidenceKey::from_seed(&[0x99; 32]);
    let err = rejected(&built, |v| {
        v["keys"][0]["publicKeyPem"] = json!(sluice_evidence::keys::public_key_pem(
            &stranger.verifying_key()
        ));
    });
    assert!(err.to_string().starts_with("keys: keys[0]: keyId"), "{err}");
    // The PEM must be exactly the canonical text (a CR for an LF would otherwise ride along).
    let err = rejected(&built, |v| {
        let pem = v["keys"][0]["publicKeyPem"]
            .as_str()
            .unwrap()
            .replacen('\n', "\r\n", 1);
        v["keys"][0]["publicKeyPem"] = json!(pem);
    });
    assert!(err.to_string().contains("not in canonical form"), "{err}");
}

#[test]
fn stage_order_follows_the_stage_table_but_allows_a_re_plan() {
    let Some((f, built)) = build_valid() else {
        return;
    };
    // Apply listed before the plan and approvals it requires.
    let mut stages = signed_stages(&f, &built.keys);
    let apply = stages.remove(6);
    stages.insert(2, apply);
    let bytes = forge(&f, &built.keys, stages, &built.bytes);
    let err = verify_bundle(&bytes, &built.keys.trusted(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "manifest: stage apply is listed before approve, which it requires"
    );

    // A stale approval, a new plan, a new approval, and the apply of the new plan: valid.
    let preds = stage_predicates(&f);
    let new_plan = digest_string(&[0x5e; 32]);
    let mut history: Vec<(Vec<Subject>, StagePredicate)> = preds[..5].to_vec();
    let (subjects, mut replan) = preds[2].clone();
    replan.details[detail::PLAN_DIGEST] = json!(new_plan);
    history.push((subjects, replan));
    let (subjects, mut approve) = preds[5].clone();
    approve.details[detail::PLAN_DIGEST] = json!(new_plan);
    history.push((subjects, approve));
    let (subjects, mut apply) = preds[6].clone();
    apply.details[detail::PLAN_DIGEST] = json!(new_plan);
    history.push((subjects, apply.clone()));
    let envelopes = sign_stages(&built.keys, &history);
    let listed: Vec<(Stage, &Envelope)> = history
        .iter()
        .map(|(_, p)| p.stage)
        .zip(&envelopes)
        .collect();
    let manifest = manifest_for(&f, &listed, &built.keys.statements);
    let published = publish(&manifest, &built.keys);
    let trusted = built.keys.trusted();
    let bytes = write_bundle(&BundleInput {
        manifest: &manifest,
        stages: &envelopes,
        leaf_index: published.leaf_index,
        checkpoint: &published.checkpoint,
        log: &published.tree,
        public_keys: &trusted,
        consistency_from: None,
    })
    .unwrap();
    let v = verify_bundle(&bytes, &trusted, None).unwrap();
    let Recorded::Ran(plan) = &v.summary.plan else {
        panic!("plan ran")
    };
    assert_eq!(plan.hash.as_deref(), Some(new_plan.as_str()));

    // Applying the first (stale) plan after the re-plan is refused.
    let mut stale = history.clone();
    stale.last_mut().unwrap().1.details[detail::PLAN_DIGEST] = json!(f.plan_digest);
    let stale_envelopes = sign_stages(&built.keys, &stale);
    let stages: Vec<(Stage, Envelope)> = stale
        .iter()
        .map(|(_, p)| p.stage)
        .zip(stale_envelopes)
        .collect();
    let bytes = forge(&f, &built.keys, stages, &built.bytes);
    let err = verify_bundle(&bytes, &built.keys.trusted(), None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("binding: apply applied plan {}", f.plan_digest)),
        "{err}"
    );
}

/// A bundle of `preds` made by `write_bundle` (which verifies what it writes).
fn bundle_of(
    f: &Facts,
    keys: &Keys,
    preds: &[(Vec<Subject>, StagePredicate)],
) -> Result<Vec<u8>, String> {
    let stages = sign_stages(keys, preds);
    let listed: Vec<(Stage, &Envelope)> = preds.iter().map(|(_, p)| p.stage).zip(&stages).collect();
    let manifest = manifest_for(f, &listed, &keys.statements);
    let published = publish(&manifest, keys);
    let trusted = keys.trusted();
    write_bundle(&BundleInput {
        manifest: &manifest,
        stages: &stages,
        leaf_index: published.leaf_index,
        checkpoint: &published.checkpoint,
        log: &published.tree,
        public_keys: &trusted,
        consistency_from: None,
    })
    .map_err(|e| e.to_string())
}

#[test]
fn an_apply_needs_an_approval_or_a_break_glass_grant_that_names_its_plan() {
    let Some(f) = facts() else {
        return;
    };
    let keys = Keys::new();
    // The change without its approvals.
    let without = |apply_details: Value| {
        let mut preds: Vec<_> = stage_predicates(&f)
            .into_iter()
            .filter(|(_, p)| p.stage != Stage::Approve)
            .collect();
        let apply = preds
            .iter_mut()
            .find(|(_, p)| p.stage == Stage::Apply)
            .unwrap();
        apply.1.details = apply_details;
        bundle_of(&f, &keys, &preds)
    };
    let grant = |plan: &str, reason: &str| {
        json!({
            detail::PLAN_DIGEST: f.plan_digest,
            "break_glass": {
                "grant": "bg-0123456789ab",
                "requester": "alice",
                "reason": reason,
                "plan_digest": plan,
                "use": 1,
            }
        })
    };
    // Neither an approval nor a grant: refused.
    let err = without(json!({ detail::PLAN_DIGEST: f.plan_digest })).unwrap_err();
    assert!(
        err.contains("but no approval of it is in the bundle"),
        "{err}"
    );
    // A grant that names the applied plan: accepted, and the bundle verifies offline.
    let bytes = without(grant(&f.plan_digest, "INC-42")).unwrap();
    verify_bundle(&bytes, &keys.trusted(), None).unwrap();
    // A grant for another plan, or without a reason: refused.
    let other = digest_string(&[0xee; 32]);
    let err = without(grant(&other, "INC-42")).unwrap_err();
    assert!(
        err.contains("grant bg-0123456789ab names plan sha256:eeee"),
        "{err}"
    );
    let err = without(grant(&f.plan_digest, " ")).unwrap_err();
    assert!(err.contains("`reason` must be a non-empty string"), "{err}");
}
