//! `sluice apply CHANGE_ID [--unit U]` (stage 7 from the command line).
//!
//! For each stack, in the order [`ApplyRun`] gives (upstream first; the first failure stops
//! the run and skips the rest):
//!
//! 1. settle the stack's lock (a holder whose lease ran out mid-apply was killed: the stack is
//!    marked degraded with what is known);
//! 2. the model's apply gate over what is recorded: the plan passed and is this plan, policy
//!    did not deny, every approval requirement is met by approvals bound to this exact plan and
//!    decision digest (each re-verified against the approver's key registered in the base
//!    revision's `people:`), the merge precondition of `apply.merge`, the plan never used, the
//!    stack healthy. A refusal is recorded as an event and nothing else happens;
//! 3. the state-domain lock, with a fencing token; a lock held by another change queues this
//!    one (FIFO) and stops;
//! 4. the stored plan file, decrypted and checked against the approved digest, in an export of
//!    the stack at the planned commit; `init` unless the plan needs no provider and keeps its
//!    state in a local file (`sluice_iac::planfile`);
//! 5. the plan claimed (a plan applies at most once, even across racing appliers), the lock
//!    moved to *applying*, its lease renewed by heartbeat while the engine runs `apply PLANFILE`;
//! 6. the model's `after_apply`: applied (healthy, lock released), stale (nothing changed, plan
//!    spent, lock released, plan again) or failed (degraded, lock kept);
//! 7. an `apply` statement: plan digest applied, engine version, state serial and lineage before
//!    and after, fencing token, outputs' digest (never values), result.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sluice_evidence::approval::{verify_approval, verify_review_approval};
use sluice_evidence::dsse::Envelope;
use sluice_evidence::statement::{Outcome, Subject as StatementSubject};
use sluice_iac::apply::{ApplyEngine, EngineEnd, FailureKind, StateInfo};
use sluice_iac::config::PlanConfig;
use sluice_iac::planfile::PlanFacts;
use sluice_iac::store::{Digest as PlanDigest, FsPlanStore, PlanStore};
use sluice_model::apply::{
    ApplyEnd, ApplyErrorClass, ApplyRun, Degradation, EngineReport, GateInput, GateRefusal,
    LockAfter, MergeRule, PrState, ResourcesChanged, StackHealth, after_apply, gate,
};
use sluice_model::binding::Applying;
use sluice_model::binding::vouched::{Admitted, Vouched, Voucher, admit};
use sluice_model::breakglass::{self, BreakGlassGrant, GrantUse};
use sluice_model::change::UnitKind;
use sluice_model::exception::Timestamp;
use sluice_model::lock::{Acquired, FencingToken, Settled};
use sluice_model::redact::RedactionRules;
use sluice_model::stage::{Authority, Stage};
use sluice_recorder::evidence::{
    ChangeSubject, EvidenceService, Identity, RecorderOptions, StageEntry, StageEvent,
};
use sluice_store::{
    AnyStore, BreakGlassStore, ChangeStore, EventRecord, LockStore, PlanUseRow, ReleaseStore,
    StoreError,
};

use crate::approve::{APPROVER_ENVELOPE_DETAIL, REVIEW_ENVELOPE_DETAIL};
use crate::context::{ChangeContext, Governance};
use crate::error::{ReleaseError, Result};
use sluice_flow::error::PipelineError;

pub struct ApplyRequest {
    pub repo: PathBuf,
    /// One change id, or the prefix shared by a PR commit's changes (`repo#pr@sha7`).
    pub change_id: String,
    /// Only this stack of the change.
    pub unit: Option<String>,
    pub options: RecorderOptions,
    /// The plan store (default `<repo>/.sluice`).
    pub plan_store: Option<PathBuf>,
    /// The lock's lease, renewed every third of it while the engine runs.
    pub lease: Duration,
    /// The default branch, for the merge precondition.
    pub default_branch: String,
    /// PATH for the engine (`None`: the process's).
    pub path_var: Option<OsString>,
    /// Apply under this break-glass grant (`--break-glass GRANT`): missing approvals (and an
    /// `after_merge` PR not merged yet) are waived, nothing else; each use is recorded.
    pub break_glass: Option<String>,
}

pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// One stack's apply.
#[derive(Debug, Clone, Serialize)]
pub struct StackApplied {
    pub change_id: String,
    pub unit: String,
    /// `applied`.
    pub result: &'static str,
    pub plan_digest: String,
    pub decision_digest: String,
    pub engine: String,
    pub fencing_token: FencingToken,
    pub state_before: Option<StateInfo>,
    pub state_after: Option<StateInfo>,
    /// The approvers whose approvals bound to this plan.
    pub approved_by: Vec<String>,
    /// The break-glass grant the apply ran under instead of approvals, if any.
    pub break_glass: Option<GrantUse>,
    pub apply_ms: u64,
    pub total_ms: u64,
    /// Where `total_ms` went (`sluice bench apply` reports them).
    pub phases: Phases,
}

/// Milliseconds per phase of one stack's apply.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    /// Settling the lock, approvals re-verified, the gate.
    pub gate_ms: u64,
    /// Acquiring the state-domain lock.
    pub lock_ms: u64,
    /// The plan file read and checked, the export, the engine found, `init` if needed, the
    /// plan claimed and the lock moved to applying.
    pub prepare_ms: u64,
    /// The engine: the state before, `apply PLANFILE`, the state after.
    pub engine_ms: u64,
    /// Health, plan use and lock updated; the signed `apply` statement recorded.
    pub record_ms: u64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// Opening the store, loading the changes, the governance and the org at the head.
    pub load_ms: u64,
    pub order: Vec<String>,
    pub applied: Vec<StackApplied>,
    pub outcomes: Vec<sluice_model::apply::StackOutcome>,
}

pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_unix(d.as_secs() as i64, d.subsec_nanos())
}

/// Applies the change (or each change of a PR commit, in dependency order).
pub async fn apply(req: ApplyRequest) -> Result<ApplyReport> {
    let started = std::time::Instant::now();
    let mut options = req.options.clone();
    options.existing_only = true;
    options.authorities = Some(vec![Authority::ApplyIdentity]);
    let service = EvidenceService::open(&options).await?;
    let store = service.store().clone();
    let ids = change_ids(&store, &req.change_id, req.unit.as_deref()).await?;
    let mut contexts = Vec::new();
    for id in &ids {
        contexts.push(ChangeContext::load(&store, id).await?);
    }
    let first = contexts.first().expect("change_ids never returns none");
    let governance = Governance::load(&req.repo, &first.record)?;
    let head = sluice_flow::workspace::revision(&governance.repo, &first.record.head)?;
    let org = head.discover();
    let indices: Vec<usize> = contexts
        .iter()
        .map(|c| {
            org.graph.index_of(&c.record.unit).ok_or_else(|| {
                ReleaseError::Usage(format!(
                    "{}: stack {} is not found at {}",
                    c.change_id(),
                    c.record.unit,
                    c.record.head
                ))
            })
        })
        .collect::<Result<_>>()?;
    let mut run =
        ApplyRun::new(&org.graph, &indices).map_err(|e| ReleaseError::Usage(e.to_string()))?;
    let plan_config = PlanConfig::from_section(head.config.sections.get("plan"))
        .map_err(|e| ReleaseError::Pipeline(PipelineError::PlanConfig(e)))?;
    let store_root = req
        .plan_store
        .clone()
        .unwrap_or_else(|| req.repo.join(".sluice"));
    let env = Env {
        service: &service,
        store: &store,
        governance: &governance,
        head: &head,
        org: &org,
        plan_config: &plan_config,
        rules: plan_config.redaction_rules(),
        store_root: &store_root,
        req: &req,
    };
    let load_ms = started.elapsed().as_millis() as u64;
    let mut applied = Vec::new();
    while let Some(next) = run.next().map(str::to_string) {
        let ctx = contexts
            .iter()
            .find(|c| c.record.unit == next)
            .expect("the run orders the changes given");
        match apply_one(&env, ctx).await {
            Ok(done) => {
                run.record(&next, true)
                    .map_err(|e| PipelineError::failed("recording the apply order", e))?;
                applied.push(done);
            }
            Err(e) => {
                run.record(&next, false)
                    .map_err(|e| PipelineError::failed("recording the apply order", e))?;
                for (unit, outcome) in run.order.iter().zip(&run.outcomes) {
                    if let sluice_model::apply::StackOutcome::Skipped(skip) = outcome {
                        eprintln!(
                            "skipped {unit}: {}",
                            serde_json::to_string(skip).unwrap_or_default()
                        );
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(ApplyReport {
        load_ms,
        order: run.order.clone(),
        applied,
        outcomes: run.outcomes.clone(),
    })
}

/// The change ids `arg` names: itself when recorded, else every recorded change whose id
/// starts with `arg/` (a PR commit's stacks), optionally only `unit`.
async fn change_ids(store: &AnyStore, arg: &str, unit: Option<&str>) -> Result<Vec<String>> {
    if let Some(c) = store.change(arg).await? {
        if unit.is_some_and(|u| u != c.unit) {
            return Err(ReleaseError::Usage(format!(
                "change {arg} is of stack {}, not {}",
                c.unit,
                unit.unwrap_or_default()
            )));
        }
        return Ok(vec![arg.to_string()]);
    }
    let prefix = format!("{arg}/");
    let mut out: Vec<String> = store
        .changes(100_000)
        .await?
        .into_iter()
        .filter(|c| c.change_id.starts_with(&prefix))
        .filter(|c| c.unit_kind == UnitKind::Stack)
        .filter(|c| unit.is_none_or(|u| u == c.unit))
        .map(|c| c.change_id)
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(ReleaseError::UnknownChange(arg.to_string()));
    }
    Ok(out)
}

struct Env<'a> {
    service: &'a EvidenceService,
    store: &'a AnyStore,
    governance: &'a Governance,
    head: &'a sluice_flow::workspace::Revision,
    org: &'a sluice_org::discovery::Org,
    plan_config: &'a PlanConfig,
    rules: RedactionRules,
    store_root: &'a Path,
    req: &'a ApplyRequest,
}

/// Settles the lock of `unit`; an apply whose lease ran out was interrupted (its applier
/// died), which degrades the stack if nothing recorded the failure yet.
pub async fn settle(store: &AnyStore, unit: &str, rules: &RedactionRules) -> Result<()> {
    let at = now();
    if let Some(Settled::Interrupted { change, token }) = store.settle(unit, at).await? {
        let health = store.health(unit).await?;
        if health == StackHealth::Healthy {
            let degradation = Degradation::new(
                change.clone(),
                token,
                at,
                EngineReport {
                    changed: ResourcesChanged::Unknown,
                    error: ApplyErrorClass::Killed,
                    output: format!(
                        "the apply under fencing token {token} stopped renewing its lease: its \
                         applier was killed or lost; a refresh-only plan shows what changed"
                    ),
                },
                rules,
            );
            store
                .set_health(unit, &StackHealth::Degraded { degradation })
                .await?;
            store
                .append_event(&EventRecord::new(
                    format!("lock:{unit}"),
                    "stack.degraded",
                    json!({"unit": unit, "holder": change, "token": token, "cause": "interrupted"}),
                ))
                .await?;
        }
    }
    Ok(())
}

/// The keys whose signed GitHub-review approvals count: the evidence key of the log this
/// service records into (a `sluice serve` sharing the store signs with it), and the keys the
/// base revision lists under `apply.review_signers` (replicas with keys of their own).
pub fn trusted_review_signers(
    service: &EvidenceService,
    governance: &Governance,
) -> Vec<sluice_evidence::VerifyingKey> {
    let mut keys = sluice_evidence::approval::verifying_keys(&governance.apply.review_signers);
    keys.push(service.public_key());
    keys
}

/// The approvals recorded for the change, each verified against who vouches for it (the
/// approver's key registered under `people:`, or a trusted server's key for a GitHub review),
/// then admitted by the model (`sluice_model::binding::vouched::admit`): the latest record
/// per approver and binding, the membership and the authors to judge them with. Records that
/// do not verify or are not admitted are reported and left out.
pub(crate) fn admitted_approvals(
    governance: &Governance,
    rows: &[sluice_store::ApprovalRow],
    trusted_servers: &[sluice_evidence::VerifyingKey],
) -> Admitted {
    let mut records = Vec::new();
    for row in rows {
        let envelope = |detail: &str| -> Option<Envelope> {
            row.body
                .get(detail)
                .and_then(|e| serde_json::from_value(e.clone()).ok())
        };
        let verified = if let Some(e) = envelope(REVIEW_ENVELOPE_DETAIL) {
            verify_review_approval(&e, &row.approver, trusted_servers).map(|r| Vouched {
                approval: r.approval,
                voucher: Voucher::Server {
                    pr_author: r.pr_author,
                },
            })
        } else if let Some(e) = envelope(APPROVER_ENVELOPE_DETAIL) {
            let keys = governance
                .people
                .get(&row.approver)
                .map(|p| p.public_keys())
                .unwrap_or_default();
            verify_approval(&e, &row.approver, &keys).map(|approval| Vouched {
                approval,
                voucher: Voucher::Person,
            })
        } else {
            eprintln!(
                "warning: approval by {} left out: no signed envelope",
                row.approver
            );
            continue;
        };
        match verified {
            Ok(v) => records.push(v),
            Err(e) => eprintln!("warning: approval by {} left out: {e}", row.approver),
        }
    }
    let admitted = admit(&records, &governance.people, &governance.authors);
    for (i, why) in &admitted.rejected {
        eprintln!(
            "warning: approval by {} left out: {why}",
            records[*i].approval.approver
        );
    }
    admitted
}

/// Whether the PR's head is already in the default branch.
fn pr_state(governance: &Governance, head: &str, default_branch: &str) -> PrState {
    let (Ok(head), Ok(main)) = (
        governance.repo.resolve(head),
        governance.repo.resolve(default_branch),
    ) else {
        return PrState::Open;
    };
    match governance.repo.merge_base(head, main) {
        Ok(Some(base)) if base == head => PrState::Merged {
            into_default_branch: true,
        },
        _ => PrState::Open,
    }
}

async fn refuse(env: &Env<'_>, ctx: &ChangeContext, refusals: Vec<GateRefusal>) -> ReleaseError {
    let _ = env
        .store
        .append_event(&EventRecord::new(
            ctx.change_id(),
            "change.apply_refused",
            json!({"unit": ctx.record.unit, "refusals": refusals}),
        ))
        .await;
    ReleaseError::Gate {
        change_id: ctx.change_id().to_string(),
        refusals,
    }
}

async fn apply_one(env: &Env<'_>, ctx: &ChangeContext) -> Result<StackApplied> {
    let started = std::time::Instant::now();
    let unit = ctx.record.unit.as_str();
    if ctx.record.unit_kind != UnitKind::Stack {
        return Err(ReleaseError::Usage(format!(
            "{} is an app: apps are synced by the GitOps controller, not applied",
            ctx.change_id()
        )));
    }
    let mut phases = Phases::default();
    let mut mark = std::time::Instant::now();
    let mut lap = || {
        let ms = mark.elapsed().as_millis() as u64;
        mark = std::time::Instant::now();
        ms
    };
    settle(env.store, unit, &env.rules).await?;

    // The gate.
    let Some(binding) = ctx.binding() else {
        let mut refusals = Vec::new();
        if ctx.subject().is_none() {
            refusals.push(match &ctx.plan {
                sluice_model::apply::PlanResult::Failed { class } => GateRefusal::PlanFailed {
                    class: class.clone(),
                },
                _ => GateRefusal::PlanNotRun,
            });
        }
        if ctx.decision_digest().is_none() {
            refusals.push(GateRefusal::PolicyNotEvaluated);
        }
        return Err(refuse(env, ctx, refusals).await);
    };
    let plan_digest = binding.subject.digest().to_string();
    let rows = env.store.approvals(ctx.change_id()).await?;
    let admitted = admitted_approvals(
        env.governance,
        &rows,
        &trusted_review_signers(env.service, env.governance),
    );
    let approvals = &admitted.approvals;
    let plan_use = env
        .store
        .plan_use(&plan_digest)
        .await?
        .map_or(sluice_model::apply::PlanUse::Unused, |u| u.state.plan_use());
    let health = env.store.health(unit).await?;
    let pr = pr_state(env.governance, &ctx.record.head, &env.req.default_branch);
    let decision = gate(GateInput {
        applying: Applying {
            binding: &binding,
            authors: &admitted.authors,
        },
        plan: &ctx.plan,
        policy: &ctx.policy,
        requirements: &ctx.requirements,
        approvals,
        membership: &admitted.membership,
        counting: ctx.counting(),
        merge_rule: env.governance.apply.merge,
        pr,
        plan_use,
        health: &health,
    });
    // Under a grant, what it waives is recorded instead of refusing; everything else stands.
    let grant = match &env.req.break_glass {
        Some(id) => Some(usable_grant(env, ctx, id).await?),
        None => None,
    };
    let (remaining, waived) = match &grant {
        Some(_) => breakglass::justify(decision.refusals.clone()),
        None => (decision.refusals.clone(), Vec::new()),
    };
    if !remaining.is_empty() {
        return Err(refuse(env, ctx, remaining).await);
    }
    let approved_by: Vec<String> = approvals
        .iter()
        .zip(&decision.evaluation.approvals)
        .filter(|(_, s)| matches!(s, sluice_model::binding::Standing::Binds { .. }))
        .map(|(a, _)| a.approver.to_string())
        .collect();

    phases.gate_ms = lap();

    // The lock.
    let owner = ctx.lock_owner();
    let token = match env
        .store
        .acquire(unit, &owner, now(), env.req.lease)
        .await?
    {
        Ok(Acquired::Granted { token, .. }) => token,
        Ok(Acquired::Queued { position, holder }) => {
            return Err(ReleaseError::Locked {
                unit: unit.to_string(),
                change: owner,
                holder,
                position,
            });
        }
        Err(refusal) => {
            return Err(ReleaseError::Lock {
                unit: unit.to_string(),
                refusal,
            });
        }
    };
    phases.lock_ms = lap();
    // Anything that fails before the engine runs gives the lock back untouched.
    let prepared = match prepare(env, ctx, &plan_digest).await {
        Ok(p) => p,
        Err(e) => {
            let _ = env.store.release(unit, token, now()).await;
            return Err(e);
        }
    };
    // The grant's use is recorded under the lock, before the plan is claimed: a use that
    // cannot be recorded (the grant ended meanwhile) applies nothing.
    let grant_use = match &grant {
        Some(g) => match record_use(env, ctx, g, &plan_digest, token, &waived).await {
            Ok(u) => Some(u),
            Err(e) => {
                let _ = env.store.release(unit, token, now()).await;
                return Err(e);
            }
        },
        None => None,
    };
    if let Some(used) = env
        .store
        .claim_plan(&plan_digest, ctx.change_id(), unit, token.0)
        .await?
    {
        let _ = env.store.release(unit, token, now()).await;
        return Err(refuse(env, ctx, vec![used_refusal(&used)]).await);
    }
    if let Err(refusal) = env.store.begin_apply(unit, token, now()).await? {
        return Err(ReleaseError::Lock {
            unit: unit.to_string(),
            refusal,
        });
    }

    phases.prepare_ms = lap();

    // The engine, with the lease renewed while it runs.
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let (store, unit, stop, lease) = (
            env.store.clone(),
            unit.to_string(),
            stop.clone(),
            env.req.lease,
        );
        tokio::spawn(async move {
            let every = (lease / 3).max(Duration::from_millis(100));
            loop {
                tokio::time::sleep(every).await;
                if stop.load(Ordering::SeqCst) {
                    return Ok::<(), StoreError>(());
                }
                // A refused heartbeat means the lock was taken from us (an admin unlock): the
                // engine's own state lock still guards the state; the end reports it.
                let _ = store.heartbeat(&unit, token, now(), lease).await?;
            }
        })
    };
    let engine = prepared.engine.clone();
    let (dir, plan_path, facts) = (
        prepared.dir.clone(),
        prepared.plan_path.clone(),
        prepared.facts.clone(),
    );
    let run = tokio::task::spawn_blocking(move || engine.apply(&dir, &plan_path, &facts))
        .await
        .map_err(|e| PipelineError::failed("the apply task", e))?;
    stop.store(true, Ordering::SeqCst);
    heartbeat.abort();
    drop(prepared.work);
    phases.engine_ms = lap();

    let at = now();
    let (end, run) = match run {
        Ok(run) => (
            match &run.end {
                EngineEnd::Applied => ApplyEnd::Applied,
                EngineEnd::Stale => ApplyEnd::StalePlan,
                EngineEnd::Failed { changed, class } => ApplyEnd::Failed(EngineReport {
                    changed: ResourcesChanged::Known(changed.clone()),
                    error: error_class(*class),
                    output: run.output.clone(),
                }),
            },
            Some(run),
        ),
        Err(e) => (
            ApplyEnd::Failed(EngineReport {
                changed: ResourcesChanged::Unknown,
                error: ApplyErrorClass::Engine,
                output: e.to_string(),
            }),
            None,
        ),
    };
    let aftermath = after_apply(&health, ctx.change_id(), token, at, end.clone(), &env.rules);
    env.store.set_health(unit, &aftermath.health).await?;
    if let (ApplyEnd::Failed(_), StackHealth::Degraded { degradation }) = (&end, &aftermath.health)
    {
        // In the stack's audit log beside interrupted applies; `sluice serve` tells the PR.
        env.store
            .append_event(&EventRecord::new(
                format!("lock:{unit}"),
                "stack.degraded",
                json!({"unit": unit, "holder": ctx.lock_owner(), "change_id": ctx.change_id(),
                    "token": token, "cause": "failed", "degradation": degradation}),
            ))
            .await?;
    }
    env.store.end_plan_use(&plan_digest, aftermath.plan).await?;
    let lock_result = match aftermath.lock {
        LockAfter::Release => env.store.release(unit, token, at).await?.map(|_| ()),
        LockAfter::Keep => env.store.fail(unit, token, at).await?,
    };
    if let Err(refusal) = &lock_result {
        eprintln!("warning: {unit}: the lock could not be updated after the apply: {refusal}");
    }

    let result = match &end {
        ApplyEnd::Applied => "applied",
        ApplyEnd::StalePlan => "stale_plan",
        ApplyEnd::Failed(_) => "failed",
    };
    let before = run.as_ref().and_then(|r| r.before.clone());
    let after = run.as_ref().and_then(|r| r.after.clone());
    let mut details = json!({
        "plan_digest": plan_digest,
        "decision_digest": binding.decision_digest,
        "engine": prepared.label,
        "state_before": state_json(&before),
        "state_after": state_json(&after),
        "outputs_digest": after.as_ref().map(|s| s.outputs_digest.clone()),
        "fencing_token": token,
        "result": result,
        "approved_by": approved_by,
        "stack": unit,
    });
    if let StackHealth::Degraded { degradation } = &aftermath.health {
        details["degradation"] = json!(degradation);
    }
    if let Some(u) = &grant_use {
        // What justified the apply instead of approvals; the bundle verifier reads it.
        details[BREAK_GLASS_DETAIL] = json!({
            "grant": u.grant,
            "requester": u.opened_by,
            "reason": u.reason,
            "plan_digest": plan_digest,
            "use": u.number,
            "at": u.at,
            "waived": waived,
        });
    }
    let hex = plan_digest.strip_prefix("sha256:").unwrap_or(&plan_digest);
    let event = StageEvent {
        stage: Stage::Apply,
        who: Identity::from_env(),
        input_digests: [
            ("plan".to_string(), plan_digest.clone()),
            (
                "policy_decision".to_string(),
                binding.decision_digest.clone(),
            ),
        ]
        .into_iter()
        .collect(),
        subjects: vec![StatementSubject::sha256(
            &format!("{}.tfplan", unit.replace('/', "__")),
            hex,
        )],
        outcome: if result == "applied" {
            Outcome::Passed
        } else {
            Outcome::Failed
        },
        details,
    };
    let subject = ChangeSubject {
        id: ctx.id.clone(),
        base: ctx.record.base.clone(),
        kind: ctx.record.unit_kind,
    };
    env.service
        .record_stage(&subject, StageEntry::Ran(event))
        .await?;

    phases.record_ms = lap();

    match (end, aftermath.health) {
        (ApplyEnd::Applied, _) => Ok(StackApplied {
            change_id: ctx.change_id().to_string(),
            unit: unit.to_string(),
            result,
            plan_digest,
            decision_digest: binding.decision_digest.clone(),
            engine: prepared.label,
            fencing_token: token,
            state_before: before,
            state_after: after,
            approved_by,
            break_glass: grant_use,
            apply_ms: run.as_ref().map_or(0, |r| r.apply_ms),
            total_ms: started.elapsed().as_millis() as u64,
            phases,
        }),
        (ApplyEnd::StalePlan, _) => Err(ReleaseError::StalePlan {
            unit: unit.to_string(),
            digest: plan_digest,
        }),
        (ApplyEnd::Failed(_), StackHealth::Degraded { degradation }) => {
            Err(ReleaseError::ApplyFailed {
                unit: unit.to_string(),
                degradation: Box::new(degradation),
            })
        }
        (ApplyEnd::Failed(_), _) => Err(ReleaseError::Internal(
            "a failed apply left the stack healthy".into(),
        )),
    }
}

/// The `apply` statement's detail naming the break-glass grant it ran under.
pub const BREAK_GLASS_DETAIL: &str = "break_glass";

/// The grant `id`, if it can justify an apply of `ctx` now; else why not (nothing applied).
async fn usable_grant(env: &Env<'_>, ctx: &ChangeContext, id: &str) -> Result<BreakGlassGrant> {
    let at = now();
    crate::breakglass::sweep(env.store, at).await?;
    let grant = env
        .store
        .grant(id)
        .await?
        .ok_or_else(|| crate::breakglass::BreakGlassError::UnknownGrant(id.to_string()))?;
    // A dry run of the use (the lock is taken later; the use is recorded under it).
    if let Err(source) = grant.clone().use_for(&ctx.record.unit, true, at) {
        let _ = env
            .store
            .append_event(&EventRecord::new(
                crate::breakglass::event_key(id),
                "breakglass.refused",
                json!({"change_id": ctx.change_id(), "unit": ctx.record.unit, "error": source.to_string()}),
            ))
            .await;
        return Err(ReleaseError::GrantUnusable {
            change_id: ctx.change_id().to_string(),
            source,
        });
    }
    Ok(grant)
}

/// Records one use of the grant (conditional on the grant as read, re-read on a race).
async fn record_use(
    env: &Env<'_>,
    ctx: &ChangeContext,
    grant: &BreakGlassGrant,
    plan_digest: &str,
    token: FencingToken,
    waived: &[GateRefusal],
) -> Result<GrantUse> {
    let mut before = grant.clone();
    for _ in 0..16 {
        let mut after = before.clone();
        let u = after
            .use_for(&ctx.record.unit, true, now())
            .map_err(|source| ReleaseError::GrantUnusable {
                change_id: ctx.change_id().to_string(),
                source,
            })?;
        let event = EventRecord::new(
            crate::breakglass::event_key(&u.grant),
            "breakglass.used",
            json!({
                "use": u,
                "change_id": ctx.change_id(),
                "plan_digest": plan_digest,
                "fencing_token": token,
                "waived": waived,
                "identity": Identity::from_env(),
            }),
        );
        if env
            .store
            .update_grant(&before, &after, None, &event)
            .await?
        {
            return Ok(u);
        }
        before =
            env.store.grant(&grant.id).await?.ok_or_else(|| {
                crate::breakglass::BreakGlassError::UnknownGrant(grant.id.clone())
            })?;
    }
    Err(crate::breakglass::BreakGlassError::Contended(grant.id.clone()).into())
}

fn state_json(s: &Option<StateInfo>) -> Value {
    match s {
        Some(s) => json!({"serial": s.serial, "lineage": s.lineage}),
        None => Value::Null,
    }
}

fn error_class(k: FailureKind) -> ApplyErrorClass {
    match k {
        FailureKind::Auth => ApplyErrorClass::Auth,
        FailureKind::Provider => ApplyErrorClass::Provider,
        FailureKind::State => ApplyErrorClass::State,
        FailureKind::Engine => ApplyErrorClass::Engine,
    }
}

fn used_refusal(used: &PlanUseRow) -> GateRefusal {
    match used.state.plan_use() {
        sluice_model::apply::PlanUse::Stale => GateRefusal::PlanStale,
        sluice_model::apply::PlanUse::Failed => GateRefusal::PlanAlreadyFailed,
        _ => GateRefusal::PlanAlreadyApplied,
    }
}

/// The stack exported at the planned commit, initialised if the plan needs it, with the
/// verified plan file in it.
struct Prepared {
    work: tempfile::TempDir,
    dir: PathBuf,
    plan_path: PathBuf,
    engine: ApplyEngine,
    label: String,
    facts: PlanFacts,
}

/// The engine versions `sluice apply` remembers per binary, in the plan store's root.
const ENGINE_VERSIONS: &str = "engine-versions.json";

async fn prepare(env: &Env<'_>, ctx: &ChangeContext, plan_digest: &str) -> Result<Prepared> {
    let plan_error = |message: String| ReleaseError::PlanFile {
        digest: plan_digest.to_string(),
        message,
    };
    let digest =
        PlanDigest::parse(plan_digest).ok_or_else(|| plan_error("not a sha256 digest".into()))?;
    let plans = FsPlanStore::new(env.store_root);
    let bytes = plans
        .get(&digest)
        .map_err(|e| plan_error(e.to_string()))?
        .ok_or_else(|| {
            plan_error(format!(
                "not in the plan store {} (plan again with --run-plans)",
                plans.describe()
            ))
        })?;
    // The store checks the digest when it opens the blob; checked again here because this is
    // the one property the whole stage rests on.
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    if actual != plan_digest {
        return Err(plan_error(format!(
            "the stored file hashes to {actual}, not the approved digest"
        )));
    }
    let stack = env
        .org
        .stacks
        .iter()
        .find(|s| s.id == ctx.record.unit)
        .ok_or_else(|| ReleaseError::Usage(format!("stack {} not found", ctx.record.unit)))?;
    let spec = sluice_flow::stack_spec::stack_spec(stack);
    sluice_evidence::location::prepare_state_dir(env.store_root)
        .map_err(|e| PipelineError::failed("preparing the state folder", e))?;
    let work = tempfile::Builder::new()
        .prefix("apply-")
        .tempdir_in(env.store_root)
        .map_err(|e| PipelineError::io(env.store_root, e))?;
    let (dir, _) = sluice_iac::export::export_stack(
        &env.head.snapshot,
        &spec.dir,
        &spec.inputs,
        &work.path().join("repo"),
    )
    .map_err(|e| PipelineError::failed(format!("exporting stack {}", stack.id), e))?;
    let plan_path = work.path().join("plan.tfplan");
    write_secret(&plan_path, &bytes)?;
    let plugin_cache = match &env.plan_config.plugin_cache_dir {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => env.store_root.join(p),
        None => env.store_root.join("plugin-cache"),
    };
    let engine = sluice_iac::apply::detect(
        env.plan_config,
        env.req.path_var.clone(),
        plugin_cache,
        Some(&env.store_root.join(ENGINE_VERSIONS)),
    )
    .map_err(|e| ReleaseError::Engine(format!("{e}; nothing was applied")))?;
    let label = engine.label();
    let facts = PlanFacts::read(&bytes);
    if !facts.needs_init(&dir) {
        return Ok(Prepared {
            work,
            dir,
            plan_path,
            engine,
            label,
            facts,
        });
    }
    let init_engine = engine.clone();
    let init_dir = dir.clone();
    tokio::task::spawn_blocking(move || init_engine.init(&init_dir))
        .await
        .map_err(|e| PipelineError::failed("the engine init task", e))?
        .map_err(|e| {
            let detail = match &e {
                sluice_iac::apply::ApplyError::Init { output, .. } => env.rules.redact_text(output),
                _ => String::new(),
            };
            ReleaseError::Engine(format!("{e}\n{}", tail(&detail, 2000)))
        })?;
    Ok(Prepared {
        work,
        dir,
        plan_path,
        engine,
        label,
        facts,
    })
}

fn tail(text: &str, chars: usize) -> String {
    let skip = text.chars().count().saturating_sub(chars);
    text.chars().skip(skip).collect()
}

fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| PipelineError::io(path, e))?;
    f.write_all(bytes)
        .map_err(|e| PipelineError::io(path, e).into())
}

/// The merge rule in words, for reports.
pub fn merge_rule_name(rule: MergeRule) -> &'static str {
    match rule {
        MergeRule::BeforeMerge => "before_merge",
        MergeRule::AfterMerge => "after_merge",
    }
}
