//! The reference architecture's evidence fields for one change (changeId, source repo and
//! commit, plan hash and artifact, policy version and decision, approvals, runner, identity and
//! result, runtime verification and drift), derived from the signed stage predicates only.
//!
//! A stage with no statement is recorded as `"not_run"`; a field the statements do not carry is
//! `null`. Nothing is filled in from anywhere else, so the verifier can recompute the summary
//! and refuse a bundle whose summary says more than its signatures do.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sluice_model::stage::{STAGES, Stage};

use crate::statement::{ChangeRef, Outcome, StagePredicate, detail, stage_name};

/// The marker for a stage that has no statement.
pub const NOT_RUN: &str = "not_run";

/// Either the evidence of a stage that ran or the `"not_run"` marker.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded<T> {
    NotRun,
    Ran(T),
}

impl<T: Serialize> Serialize for Recorded<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Recorded::NotRun => s.serialize_str(NOT_RUN),
            Recorded::Ran(t) => t.serialize(s),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Recorded<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        if v.as_str() == Some(NOT_RUN) {
            return Ok(Recorded::NotRun);
        }
        serde_json::from_value(v)
            .map(Recorded::Ran)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvidenceSummary {
    pub change_id: String,
    pub source: SourceEvidence,
    /// Every stage of the stage table in order, with its last outcome or `not_run`.
    pub stages: Vec<StageStatus>,
    pub proposal: Recorded<ProposalEvidence>,
    pub render: Recorded<RenderEvidence>,
    pub plan: Recorded<PlanEvidence>,
    pub policy: Recorded<PolicyEvidence>,
    pub approval: Recorded<ApprovalEvidence>,
    pub execution: Recorded<ExecutionEvidence>,
    pub runtime: Recorded<RuntimeEvidence>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceEvidence {
    pub repo: String,
    pub pr: Option<u64>,
    pub commit: String,
    pub environment: String,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageStatus {
    pub stage: String,
    /// `passed`, `failed`, `partial` or `not_run`.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProposalEvidence {
    pub author: String,
    pub at: String,
    pub pr_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenderEvidence {
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanEvidence {
    pub hash: Option<String>,
    pub artifact: Option<String>,
    pub summary: Option<Value>,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyEvidence {
    pub version: Option<String>,
    pub decision: Option<String>,
    pub decision_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalEvidence {
    /// Who approved (each passed approve statement's actor, in order, once each).
    pub approvers: Vec<String>,
    /// Approver groups the approvals count for.
    pub groups: Vec<String>,
    pub plan_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecutionEvidence {
    pub runner: String,
    pub identity: String,
    /// `success`, `failed` or `partial`.
    pub result: String,
    pub plan_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeEvidence {
    /// `passed` or `failed`.
    pub verification: String,
    pub drift: Option<String>,
}

fn last(stages: &[StagePredicate], stage: Stage) -> Option<&StagePredicate> {
    stages.iter().rev().find(|p| p.stage == stage)
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_string)
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_string());
    }
}

/// Derives the summary from the change and its stage predicates (in manifest order).
pub fn summarize(change: &ChangeRef, stages: &[StagePredicate]) -> EvidenceSummary {
    let statuses = STAGES
        .iter()
        .map(|c| StageStatus {
            stage: stage_name(c.stage).to_string(),
            status: last(stages, c.stage)
                .map_or(NOT_RUN, |p| p.outcome.as_str())
                .to_string(),
        })
        .collect();

    let proposal = match last(stages, Stage::Propose) {
        None => Recorded::NotRun,
        Some(p) => Recorded::Ran(ProposalEvidence {
            author: p.actor.clone(),
            at: p.recorded_at.clone(),
            pr_url: owned(p.detail_str(detail::PR_URL)),
        }),
    };
    let render = match last(stages, Stage::Render) {
        None => Recorded::NotRun,
        Some(p) => Recorded::Ran(RenderEvidence {
            digest: owned(p.detail_str(detail::RENDERED_DIGEST)),
        }),
    };
    let plan = match last(stages, Stage::Plan) {
        None => Recorded::NotRun,
        Some(p) => Recorded::Ran(PlanEvidence {
            hash: owned(p.detail_str(detail::PLAN_DIGEST)),
            artifact: owned(p.detail_str(detail::PLAN_ARTIFACT)),
            summary: p.details.get(detail::PLAN_SUMMARY).cloned(),
            outcome: p.outcome.as_str().to_string(),
        }),
    };
    let policy = match last(stages, Stage::Policy) {
        None => Recorded::NotRun,
        Some(p) => Recorded::Ran(PolicyEvidence {
            version: owned(p.detail_str(detail::POLICY_VERSION)),
            decision: owned(p.detail_str(detail::DECISION)),
            decision_digest: owned(p.detail_str(detail::DECISION_DIGEST)),
        }),
    };
    // Only approvals of the plan that counts are evidence of it: the one applied, or (before an
    // apply) the last one planned, under the last policy decision. An approval of a superseded
    // plan listed beside them would tell an auditor it approved what ran.
    let target_plan = last(stages, Stage::Apply)
        .and_then(|p| p.detail_str(detail::PLAN_DIGEST))
        .or_else(|| last(stages, Stage::Plan).and_then(|p| p.detail_str(detail::PLAN_DIGEST)));
    let target_decision =
        last(stages, Stage::Policy).and_then(|p| p.detail_str(detail::DECISION_DIGEST));
    let approvals: Vec<&StagePredicate> = stages
        .iter()
        .filter(|p| p.stage == Stage::Approve)
        .collect();
    let binds = |p: &StagePredicate| {
        let plan = p.detail_str(detail::PLAN_DIGEST);
        let decision = p.detail_str(detail::DECISION_DIGEST);
        (plan.is_none() || target_plan.is_none() || plan == target_plan)
            && (decision.is_none() || target_decision.is_none() || decision == target_decision)
    };
    let approval = if approvals.is_empty() {
        Recorded::NotRun
    } else {
        let mut approvers = Vec::new();
        let mut groups = Vec::new();
        let counted: Vec<&&StagePredicate> = approvals
            .iter()
            .filter(|p| p.outcome == Outcome::Passed && binds(p))
            .collect();
        for p in &counted {
            push_unique(&mut approvers, &p.actor);
            for g in p
                .details
                .get(detail::GROUPS)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                push_unique(&mut groups, g);
            }
        }
        Recorded::Ran(ApprovalEvidence {
            approvers,
            groups,
            plan_hash: owned(
                counted
                    .last()
                    .and_then(|p| p.detail_str(detail::PLAN_DIGEST))
                    .or_else(|| {
                        approvals
                            .last()
                            .and_then(|p| p.detail_str(detail::PLAN_DIGEST))
                    }),
            ),
        })
    };
    let execution = match last(stages, Stage::Apply) {
        None => Recorded::NotRun,
        Some(p) => Recorded::Ran(ExecutionEvidence {
            runner: p.actor.clone(),
            identity: p.identity.clone(),
            result: match p.outcome {
                Outcome::Passed => "success",
                Outcome::Failed => "failed",
                Outcome::Partial => "partial",
            }
            .to_string(),
            plan_hash: owned(p.detail_str(detail::PLAN_DIGEST)),
        }),
    };
    let runtime = match last(stages, Stage::Verify) {
        None => Recorded::NotRun,
        Some(p) => Recorded::Ran(RuntimeEvidence {
            verification: p.outcome.as_str().to_string(),
            drift: owned(p.detail_str(detail::DRIFT)),
        }),
    };

    EvidenceSummary {
        change_id: change.id.clone(),
        source: SourceEvidence {
            repo: change.repo.clone(),
            pr: change.pr,
            commit: change.commit.clone(),
            environment: change.env.clone(),
            unit: change.unit.clone(),
        },
        stages: statuses,
        proposal,
        render,
        plan,
        policy,
        approval,
        execution,
        runtime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn change() -> ChangeRef {
        ChangeRef {
            id: "infra-live#412@9f3a12c/prod/ap-southeast-1/network".into(),
            repo: "infra-live".into(),
            pr: Some(412),
            commit: "9f3a12c".into(),
            env: "prod".into(),
            unit: "prod/ap-southeast-1/network".into(),
        }
    }

    fn pred(stage: Stage, actor: &str, outcome: Outcome, details: Value) -> StagePredicate {
        StagePredicate {
            change_id: change().id,
            commit: "9f3a12c".into(),
            stage,
            actor: actor.into(),
            identity: format!("id:{actor}"),
            input_digests: BTreeMap::new(),
            outcome,
            recorded_at: "2026-07-03T10:00:00Z".into(),
            details,
        }
    }

    #[test]
    fn stages_without_statements_are_not_run_never_invented() {
        let s = summarize(
            &change(),
            &[pred(Stage::Propose, "alice", Outcome::Passed, json!({}))],
        );
        assert_eq!(s.plan, Recorded::NotRun);
        assert_eq!(s.execution, Recorded::NotRun);
        assert_eq!(s.stages[0].status, "passed");
        assert!(s.stages[1..].iter().all(|st| st.status == NOT_RUN));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["plan"], "not_run");
        assert_eq!(v["runtime"], "not_run");
        let back: EvidenceSummary = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn missing_details_are_null_not_guessed() {
        let s = summarize(
            &change(),
            &[pred(Stage::Plan, "planner", Outcome::Passed, json!({}))],
        );
        let Recorded::Ran(plan) = s.plan else {
            panic!()
        };
        assert_eq!(plan.hash, None);
        assert_eq!(plan.artifact, None);
    }

    #[test]
    fn approvals_collect_passed_approvers_once() {
        let s = summarize(
            &change(),
            &[
                pred(
                    Stage::Approve,
                    "bob",
                    Outcome::Passed,
                    json!({"groups": ["platform"]}),
                ),
                pred(
                    Stage::Approve,
                    "eve",
                    Outcome::Failed,
                    json!({"groups": ["x"]}),
                ),
                pred(
                    Stage::Approve,
                    "carol",
                    Outcome::Passed,
                    json!({"groups": ["security", "platform"]}),
                ),
                pred(Stage::Approve, "bob", Outcome::Passed, json!({})),
            ],
        );
        let Recorded::Ran(a) = s.approval else {
            panic!()
        };
        assert_eq!(a.approvers, vec!["bob", "carol"]);
        assert_eq!(a.groups, vec!["platform", "security"]);
    }

    #[test]
    fn only_approvals_of_the_applied_plan_are_listed() {
        let plan = |d: &str| {
            pred(
                Stage::Plan,
                "ci",
                Outcome::Passed,
                json!({"plan_digest": d}),
            )
        };
        let approve = |who: &str, d: &str| {
            pred(
                Stage::Approve,
                who,
                Outcome::Passed,
                json!({"plan_digest": d, "groups": [format!("@acme/{who}")]}),
            )
        };
        let stages = vec![
            plan("sha256:old"),
            approve("bob", "sha256:old"),
            plan("sha256:new"),
            approve("carol", "sha256:new"),
            pred(
                Stage::Apply,
                "runner",
                Outcome::Passed,
                json!({"plan_digest": "sha256:new"}),
            ),
        ];
        let s = summarize(&change(), &stages);
        let Recorded::Ran(a) = s.approval else {
            panic!("approvals ran")
        };
        assert_eq!(a.approvers, vec!["carol"]);
        assert_eq!(a.groups, vec!["@acme/carol"]);
        assert_eq!(a.plan_hash.as_deref(), Some("sha256:new"));
    }
}
