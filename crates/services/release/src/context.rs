//! What stages 6 and 7 read before deciding: the change as recorded (its plan and policy
//! results, the approval requirements its decision was signed with), and the governance that
//! applies to it (`people:` and `apply:` from the base revision, the change's authors).

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use sluice_git::git::GitRepo;
use sluice_model::apply::{PlanResult, PolicyResult};
use sluice_model::approval::Requirement;
use sluice_model::binding::{Binding, Counting, Subject};
use sluice_model::change::{ChangeId, UnitKind};
use sluice_model::config::{ApplyConfig, OrgConfig};
use sluice_model::exception::Timestamp;
use sluice_model::people::{People, PersonId};
use sluice_model::risk::{PolicyOutcome, RiskLevel};
use sluice_store::{AnyStore, ChangeRecord, ChangeStore, StageOutcome, StageResultRecord};

use crate::error::{ReleaseError, Result};

/// A recorded change as stages 6 and 7 see it.
#[derive(Debug, Clone)]
pub struct ChangeContext {
    pub id: ChangeId,
    pub record: ChangeRecord,
    pub plan: PlanResult,
    pub policy: PolicyResult,
    pub risk: Option<RiskLevel>,
    /// From the policy statement's `approvals` (the requirements its decision was made with).
    pub requirements: Vec<Requirement>,
}

impl ChangeContext {
    pub async fn load(store: &AnyStore, change_id: &str) -> Result<ChangeContext> {
        let record = store
            .change(change_id)
            .await?
            .ok_or_else(|| ReleaseError::UnknownChange(change_id.to_string()))?;
        let results = store.stage_results(change_id).await?;
        let last = |stage: &str| results.iter().rev().find(|r| r.stage == stage);
        let plan = plan_result(record.unit_kind, last("plan"));
        let policy_row = last("policy");
        let policy = policy_result(policy_row);
        let details = policy_row.map(|r| &r.detail["details"]);
        let risk = details
            .and_then(|d| d.get("risk"))
            .and_then(|r| r.get("risk"))
            .and_then(|r| serde_json::from_value(r.clone()).ok());
        let requirements = details
            .and_then(|d| d.get("approvals"))
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default();
        Ok(ChangeContext {
            id: ChangeId {
                repo: record.repo.clone(),
                pr: record.pr,
                commit: record.head.clone(),
                env: record.env.clone(),
                unit: record.unit.clone(),
            },
            record,
            plan,
            policy,
            risk,
            requirements,
        })
    }

    pub fn change_id(&self) -> &str {
        &self.record.change_id
    }

    /// The plan (or rendered) digest the plan stage produced, if it passed.
    pub fn subject(&self) -> Option<&Subject> {
        match &self.plan {
            PlanResult::Passed { subject, .. } => Some(subject),
            _ => None,
        }
    }

    pub fn decision_digest(&self) -> Option<&str> {
        match &self.policy {
            PolicyResult::Evaluated {
                decision_digest, ..
            } => Some(decision_digest),
            PolicyResult::NotEvaluated => None,
        }
    }

    /// What an approval of this change binds to (and what an apply of it applies), when the
    /// plan passed and policy was evaluated.
    pub fn binding(&self) -> Option<Binding> {
        Some(Binding::new(
            &self.id,
            self.subject()?.clone(),
            self.decision_digest()?,
        ))
    }

    pub fn counting(&self) -> Counting {
        self.risk
            .map(Counting::for_risk)
            .unwrap_or(Counting::PerRequirement)
    }

    /// The lock owner: the PR (`repo#pr`) so that a push keeps the change's place in the
    /// queue, or the change id when there is no PR.
    pub fn lock_owner(&self) -> String {
        lock_owner(&self.record)
    }
}

/// The lock owner of a recorded change: its PR (`repo#pr`), or the change id without one.
pub fn lock_owner(record: &ChangeRecord) -> String {
    match record.pr {
        Some(pr) => format!("{}#{pr}", record.repo),
        None => record.change_id.clone(),
    }
}

fn millis(ms: i64) -> Timestamp {
    Timestamp::from_unix(
        ms.div_euclid(1000),
        (ms.rem_euclid(1000) as u32) * 1_000_000,
    )
}

fn details(row: &StageResultRecord) -> &Value {
    &row.detail["details"]
}

fn plan_result(kind: UnitKind, row: Option<&StageResultRecord>) -> PlanResult {
    let Some(row) = row else {
        return PlanResult::NotRun;
    };
    match row.outcome {
        StageOutcome::Passed => {
            let d = details(row);
            let digest = match kind {
                UnitKind::Stack => d.get("plan_digest"),
                UnitKind::App => d.get("rendered_digest"),
            };
            match digest.and_then(Value::as_str) {
                Some(digest) => PlanResult::Passed {
                    subject: match kind {
                        UnitKind::Stack => Subject::Plan(digest.to_string()),
                        UnitKind::App => Subject::Rendered(digest.to_string()),
                    },
                    planned_at: millis(row.recorded_at),
                },
                None => PlanResult::Failed {
                    class: "the recorded plan names no digest".into(),
                },
            }
        }
        StageOutcome::Failed | StageOutcome::Blocked => PlanResult::Failed {
            class: details(row)
                .get("class")
                .and_then(Value::as_str)
                .unwrap_or("failed")
                .to_string(),
        },
        StageOutcome::NotRun => PlanResult::NotRun,
    }
}

fn policy_result(row: Option<&StageResultRecord>) -> PolicyResult {
    let Some(row) = row.filter(|r| r.outcome != StageOutcome::NotRun) else {
        return PolicyResult::NotEvaluated;
    };
    let d = details(row);
    let Some(digest) = d.get("decision_digest").and_then(Value::as_str) else {
        return PolicyResult::NotEvaluated;
    };
    let outcome = d
        .get("decision")
        .and_then(Value::as_str)
        .and_then(PolicyOutcome::parse)
        .unwrap_or(if row.outcome == StageOutcome::Passed {
            PolicyOutcome::Allow
        } else {
            PolicyOutcome::Deny
        });
    PolicyResult::Evaluated {
        outcome,
        decision_digest: digest.to_string(),
    }
}

/// The governance an approval or apply of a change is judged under.
pub struct Governance {
    /// `people:` of the base revision.
    pub people: People,
    pub apply: ApplyConfig,
    pub config: OrgConfig,
    /// The revision the governance was read from (the change's base).
    pub base: String,
    /// The registered people who authored commits of the change (barred from approving).
    pub authors: Vec<PersonId>,
    pub repo: Arc<GitRepo>,
}

/// Most commits a change's authors are looked for in.
const AUTHOR_WALK_LIMIT: usize = 10_000;

impl Governance {
    /// Reads `sluice.yaml` at the change's base (its merge base with the head, as recorded)
    /// and the authors of the commits between base and head.
    pub fn load(repo_path: &Path, record: &ChangeRecord) -> Result<Governance> {
        let repo = sluice_flow::workspace::open(repo_path)?;
        let base = record.base.clone().ok_or_else(|| {
            ReleaseError::Usage(format!(
                "change {} was recorded without a base revision: who may approve is read from \
                 the base's sluice.yaml; record it with `sluice pr --base … --head …`",
                record.change_id
            ))
        })?;
        let base_rev = sluice_flow::workspace::revision(&repo, &base)?;
        let head = repo
            .resolve(&record.head)
            .map_err(sluice_flow::error::PipelineError::from)?;
        let base_id = base_rev.snapshot.commit;
        let fork = repo
            .merge_base(base_id, head)
            .map_err(sluice_flow::error::PipelineError::from)?
            .unwrap_or(base_id);
        let people = base_rev.config.people.clone();
        let mut authors: Vec<PersonId> = Vec::new();
        for a in repo
            .authors_between(Some(fork), head, AUTHOR_WALK_LIMIT)
            .map_err(sluice_flow::error::PipelineError::from)?
        {
            for p in people.author(&a.email).candidates() {
                if !authors.contains(p) {
                    authors.push(p.clone());
                }
            }
        }
        Ok(Governance {
            apply: base_rev.config.apply.clone(),
            people,
            config: base_rev.config,
            base,
            authors,
            repo,
        })
    }
}
