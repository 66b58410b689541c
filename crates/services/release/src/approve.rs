//! `sluice approve CHANGE_ID --as NAME --key KEYFILE` (stage 6 from the command line).
//!
//! The approver's identity comes from the key, never from the flag: `--as` names whom to
//! check the key against, and the key must be one registered for that person under
//! `people:` in the base revision's `sluice.yaml`. In order, before anything is signed: the
//! change must have a passed plan and a policy decision that does not deny; the person must be
//! registered and must not have authored a commit of the change; the key must be theirs. Then
//! the approval (change, commit, plan digest, decision digest, environment, unit, approver and
//! groups) is signed with the key, checked against the registered key, and recorded as the
//! `approve` statement of the change in the evidence log (which sluice's evidence key signs),
//! with the approver's envelope inside it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::json;
use sluice_evidence::approval::{
    load_approver_key, sign_approval, sign_review_approval, verify_approval,
};
use sluice_evidence::dsse::Envelope;
use sluice_evidence::statement::{Outcome, Subject};
use sluice_model::apply::{PlanResult, PolicyResult};
use sluice_model::binding::Approval;
use sluice_model::binding::vouched::ReviewApproval;
use sluice_model::people::PublicKey;
use sluice_model::risk::PolicyOutcome;
use sluice_model::stage::{Authority, Stage};
use sluice_recorder::evidence::{
    ChangeSubject, EvidenceService, Identity, RecordedChange, RecorderOptions, StageEntry,
    StageEvent,
};
use sluice_store::{ApprovalRow, Digest, ReleaseStore};

use crate::context::{ChangeContext, Governance};
use crate::error::{ReleaseError, Result};

pub struct ApproveRequest {
    pub repo: PathBuf,
    pub change_id: String,
    /// The `people:` name the key must belong to.
    pub name: String,
    pub key_file: PathBuf,
    pub options: RecorderOptions,
}

/// What `sluice approve` recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Approved {
    pub change_id: String,
    pub approval: Approval,
    /// `SHA256:…` of the key that signed it, as `ssh-keygen -l` prints it.
    pub key_fingerprint: String,
    /// Digest of the approver-signed envelope.
    pub approval_envelope: String,
    pub recorded: RecordedChange,
}

/// The statement details of an approval: what the bundle and the apply read.
pub const APPROVAL_DETAIL: &str = "approval";
pub const APPROVER_ENVELOPE_DETAIL: &str = "approver_envelope";
/// The statement detail (and index field) holding a GitHub review's approval as the server
/// signed it (`sluice_evidence::approval::sign_review_approval`).
pub const REVIEW_ENVELOPE_DETAIL: &str = "review_envelope";

pub async fn approve(req: ApproveRequest) -> Result<Approved> {
    let mut options = req.options.clone();
    options.existing_only = true;
    options.authorities = Some(vec![Authority::Approver]);
    let service = EvidenceService::open(&options).await?;
    let store = service.store();
    let ctx = ChangeContext::load(store, &req.change_id).await?;
    let binding = approvable(&ctx)?;
    let governance = Governance::load(&req.repo, &ctx.record)?;
    // Identity and self-approval first: refused before the key is even read.
    let approval = governance
        .people
        .approval(&req.name, &binding, &governance.authors)?;
    let person = governance
        .people
        .get(&req.name)
        .expect("approval() found the person");
    let key = load_approver_key(&req.key_file)?;
    let public = PublicKey(*key.verifying_key().as_bytes());
    let registered = person.public_keys();
    if !registered.contains(&public) {
        return Err(ReleaseError::KeyNotRegistered {
            person: approval.approver.to_string(),
            fingerprint: public.fingerprint(),
            base: governance.base.clone(),
        });
    }
    let envelope = sign_approval(&approval, &key);
    // What an auditor will do: check it against the registered key.
    verify_approval(&envelope, approval.approver.as_str(), &registered)?;
    let envelope_digest = envelope.digest();
    let envelope_text = sluice_evidence::statement::digest_string(&envelope_digest);
    let recorded = record_approval(
        &service,
        &ctx,
        ApprovalEntry {
            approval: &approval,
            binding: &binding,
            who: Identity {
                actor: approval.approver.to_string(),
                identity: format!("sluice-people-key:{}", public.fingerprint()),
            },
            details: json!({
                APPROVER_ENVELOPE_DETAIL: envelope,
                "key_fingerprint": public.fingerprint(),
                "governance_revision": governance.base,
            }),
            row: json!({ APPROVER_ENVELOPE_DETAIL: envelope }),
            digest: envelope_digest,
        },
    )
    .await?;
    Ok(Approved {
        change_id: ctx.change_id().to_string(),
        approval,
        key_fingerprint: public.fingerprint(),
        approval_envelope: envelope_text,
        recorded,
    })
}

/// A GitHub review's approval (or dismissal) signed with `service`'s evidence key: what a
/// server puts under [`REVIEW_ENVELOPE_DETAIL`] so that an apply trusting the key counts it.
pub fn sign_review(service: &EvidenceService, review: &ReviewApproval) -> Envelope {
    sign_review_approval(review, service.evidence_key())
}

/// One approval (or dismissal) to record, and what its source adds to it.
pub struct ApprovalEntry<'a> {
    pub approval: &'a Approval,
    /// What it approves: the plan (or rendered) digest and decision digest of the statement.
    pub binding: &'a sluice_model::binding::Binding,
    /// Who the statement says gave it.
    pub who: Identity,
    /// Statement details beside the approval, its digests and groups: the source's own proof
    /// (the approver's signed envelope, or the GitHub review).
    pub details: serde_json::Value,
    /// What the approvals index keeps beside the approval.
    pub row: serde_json::Value,
    /// Identifies the record in the index (recording the same digest again adds no row): the
    /// approver's envelope digest, or a digest of the review and what happened to it.
    pub digest: [u8; 32],
}

/// Records `entry` as the change's signed `approve` statement (signed by `service`'s evidence
/// key; its gate must allow the approver authority) and indexes it for the apply gate. The
/// command line's approvals and the server's GitHub reviews both come through here.
pub async fn record_approval(
    service: &EvidenceService,
    ctx: &ChangeContext,
    entry: ApprovalEntry<'_>,
) -> Result<RecordedChange> {
    let binding = entry.binding;
    let approval = entry.approval;
    let mut inputs = BTreeMap::new();
    inputs.insert("plan".to_string(), binding.subject.digest().to_string());
    inputs.insert(
        "policy_decision".to_string(),
        binding.decision_digest.clone(),
    );
    let hex = binding
        .subject
        .digest()
        .strip_prefix("sha256:")
        .unwrap_or(binding.subject.digest());
    let stem = ctx.record.unit.replace('/', "__");
    let mut details = json!({
        APPROVAL_DETAIL: approval,
        "plan_digest": binding.subject.digest(),
        "decision_digest": binding.decision_digest,
        "groups": approval.groups,
    });
    let mut row = json!({ APPROVAL_DETAIL: approval });
    for (extra, into) in [(&entry.details, &mut details), (&entry.row, &mut row)] {
        if let (Some(extra), Some(into)) = (extra.as_object(), into.as_object_mut()) {
            into.extend(extra.clone());
        }
    }
    let event = StageEvent {
        stage: Stage::Approve,
        who: entry.who,
        input_digests: inputs,
        subjects: vec![Subject::sha256(&format!("{stem}.tfplan"), hex)],
        outcome: Outcome::Passed,
        details,
    };
    let subject = ChangeSubject {
        id: ctx.id.clone(),
        base: ctx.record.base.clone(),
        kind: ctx.record.unit_kind,
    };
    let recorded = service
        .record_stage(&subject, StageEntry::Ran(event))
        .await?;
    service
        .store()
        .put_approval(&ApprovalRow {
            change_id: ctx.change_id().to_string(),
            approver: approval.approver.to_string(),
            body: row,
            envelope: Digest(entry.digest),
            created_at: sluice_store::now_millis(),
        })
        .await?;
    recorded
        .changes
        .into_iter()
        .next()
        .ok_or_else(|| ReleaseError::Internal("the approval was not recorded".into()))
}

/// The binding an approval of `ctx` would have, or why there is nothing to approve.
pub fn approvable(ctx: &ChangeContext) -> Result<sluice_model::binding::Binding> {
    let refuse = |reason: &str| ReleaseError::NotApprovable {
        change_id: ctx.change_id().to_string(),
        reason: reason.to_string(),
    };
    match &ctx.plan {
        PlanResult::NotRun => return Err(refuse("no plan was recorded (stage 4)")),
        PlanResult::Failed { class } => {
            return Err(refuse(&format!("its plan failed ({class})")));
        }
        PlanResult::Passed { .. } => {}
    }
    match &ctx.policy {
        PolicyResult::NotEvaluated => {
            return Err(refuse("policy was not evaluated (stage 5)"));
        }
        PolicyResult::Evaluated {
            outcome: PolicyOutcome::Deny,
            ..
        } => return Err(refuse("policy denies its plan")),
        PolicyResult::Evaluated { .. } => {}
    }
    ctx.binding()
        .ok_or_else(|| refuse("the plan or the decision has no digest"))
}
