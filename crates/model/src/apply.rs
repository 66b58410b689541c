//! Stage 7's decisions (DESIGN.md §2, issue 11): the gate an apply must pass, what a failed or
//! stale apply leaves behind (a degraded stack, a used plan, a kept lock), how a degraded stack
//! recovers, and in which order a multi-stack change applies.
//!
//! The gate refuses unless the plan stage passed, policy did not deny, every approval
//! requirement is met by approvals bound to this exact plan and decision digest, the merge
//! precondition holds, the plan was never used and the stack is healthy (or recovering with a
//! plan made after its refresh). Taking the lock and running the engine are the caller's; this
//! module only decides.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::approval::Requirement;
use crate::binding::{self, Applying, Approval, Counting, Evaluation, Membership, Subject};
use crate::exception::Timestamp;
use crate::graph::StackGraph;
use crate::lock::FencingToken;
use crate::redact::RedactionRules;
use crate::risk::PolicyOutcome;

// ---------------------------------------------------------------------------------------------
// Inputs of the gate
// ---------------------------------------------------------------------------------------------

/// When an apply may run relative to the PR's merge (`sluice.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeRule {
    /// Apply from the open PR, then merge (what was applied is what gets merged).
    BeforeMerge,
    /// Apply only once the PR is merged into the default branch.
    AfterMerge,
}

/// The PR as the VCS host reports it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum PrState {
    Open,
    Merged { into_default_branch: bool },
    Closed,
}

/// The plan stage's result for the unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum PlanResult {
    NotRun,
    /// Failed with the stage's classification (auth, module, state, engine).
    Failed {
        class: String,
    },
    Passed {
        subject: Subject,
        planned_at: Timestamp,
    },
}

/// The policy stage's result for the unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum PolicyResult {
    NotEvaluated,
    Evaluated {
        outcome: PolicyOutcome,
        decision_digest: String,
    },
}

/// Whether a plan was used: a plan applies at most once, whatever the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanUse {
    Unused,
    Applied,
    /// An apply of it failed or was interrupted (it may have changed resources).
    Failed,
    /// The engine refused it because the state moved since it was made.
    Stale,
}

// ---------------------------------------------------------------------------------------------
// Stack health: degraded and recovery
// ---------------------------------------------------------------------------------------------

/// How an apply failed, as far as the engine driver could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyErrorClass {
    Auth,
    Provider,
    State,
    Engine,
    /// The process died or its lease ran out mid-apply: nothing was reported.
    Killed,
}

impl fmt::Display for ApplyErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApplyErrorClass::Auth => "auth",
            ApplyErrorClass::Provider => "provider",
            ApplyErrorClass::State => "state",
            ApplyErrorClass::Engine => "engine",
            ApplyErrorClass::Killed => "killed",
        })
    }
}

/// Which resources the failed apply changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "addresses")]
pub enum ResourcesChanged {
    Known(Vec<String>),
    /// A killed apply reports nothing; a refresh-only plan will show what changed.
    Unknown,
}

/// What the engine reported about a failed apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineReport {
    pub changed: ResourcesChanged,
    pub error: ApplyErrorClass,
    /// The engine's error output (unredacted: [`Degradation::new`] redacts it).
    pub output: String,
}

/// A degraded stack: a failed or interrupted apply, with what the engine reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Degradation {
    /// The change whose apply failed, and the lock token it applied under.
    pub change: String,
    pub token: FencingToken,
    pub at: Timestamp,
    pub changed: ResourcesChanged,
    pub error: ApplyErrorClass,
    /// The end of the engine's output, redacted and at most [`EXCERPT_CHARS`] characters.
    pub excerpt: String,
}

/// Length of a degradation's excerpt: enough for the engine's final error, small enough for a
/// PR comment.
pub const EXCERPT_CHARS: usize = 2_000;

impl Degradation {
    /// Redaction happens here so that an unredacted excerpt cannot reach the PR comment, the
    /// check run or the evidence log that show a degradation.
    pub fn new(
        change: impl Into<String>,
        token: FencingToken,
        at: Timestamp,
        report: EngineReport,
        rules: &RedactionRules,
    ) -> Self {
        let redacted = rules.redact_text(&report.output);
        // The engine's final error is at the end of its output: keep the tail.
        let skip = redacted.chars().count().saturating_sub(EXCERPT_CHARS);
        Degradation {
            change: change.into(),
            token,
            at,
            changed: report.changed,
            error: report.error,
            excerpt: redacted.chars().skip(skip).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "health")]
pub enum StackHealth {
    Healthy,
    /// Recovery required: a refresh-only plan (or an admin `sluice recover`).
    Degraded {
        degradation: Degradation,
    },
    /// A refresh-only plan showed what changed; a plan made after it may be approved and
    /// applied to recover.
    Recovering {
        degradation: Degradation,
        refreshed_at: Timestamp,
    },
}

/// How an apply ended, as the engine driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyEnd {
    Applied,
    /// The engine refused the plan as stale before changing anything.
    StalePlan,
    Failed(EngineReport),
}

/// What happens to the lock after an apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockAfter {
    Release,
    /// Kept for recovery ([`crate::lock::Lock::fail`]).
    Keep,
}

/// Everything an apply's end decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Aftermath {
    pub health: StackHealth,
    pub plan: PlanUse,
    pub lock: LockAfter,
}

/// The apply of `change` under `token` ended with `end` at `at`. Any failure degrades the stack
/// and keeps the lock; a stale plan changed nothing, so the stack keeps its health and the
/// lock is released, but the plan (and with it every approval of it) is spent.
pub fn after_apply(
    health: &StackHealth,
    change: &str,
    token: FencingToken,
    at: Timestamp,
    end: ApplyEnd,
    rules: &RedactionRules,
) -> Aftermath {
    match end {
        ApplyEnd::Applied => Aftermath {
            health: StackHealth::Healthy,
            plan: PlanUse::Applied,
            lock: LockAfter::Release,
        },
        ApplyEnd::StalePlan => Aftermath {
            health: health.clone(),
            plan: PlanUse::Stale,
            lock: LockAfter::Release,
        },
        ApplyEnd::Failed(report) => Aftermath {
            health: StackHealth::Degraded {
                degradation: Degradation::new(change, token, at, report, rules),
            },
            plan: PlanUse::Failed,
            lock: LockAfter::Keep,
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    #[error("the stack is not degraded; there is nothing to recover")]
    NotDegraded,
    #[error("`sluice recover` needs a reason (it is recorded in the audit log)")]
    ReasonRequired,
}

impl StackHealth {
    /// A refresh-only plan finished at `at`: plans made after it may recover the stack.
    pub fn refreshed(&self, at: Timestamp) -> Result<StackHealth, RecoveryError> {
        match self {
            StackHealth::Healthy => Err(RecoveryError::NotDegraded),
            StackHealth::Degraded { degradation } | StackHealth::Recovering { degradation, .. } => {
                Ok(StackHealth::Recovering {
                    degradation: degradation.clone(),
                    refreshed_at: at,
                })
            }
        }
    }

    /// `sluice recover UNIT --reason`: an admin declares the stack healthy (the lock is
    /// unlocked with the same reason).
    pub fn recovered_by_admin(&self, reason: &str) -> Result<StackHealth, RecoveryError> {
        if reason.trim().is_empty() {
            return Err(RecoveryError::ReasonRequired);
        }
        match self {
            StackHealth::Healthy => Err(RecoveryError::NotDegraded),
            _ => Ok(StackHealth::Healthy),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The gate
// ---------------------------------------------------------------------------------------------

/// Everything the gate looks at.
#[derive(Debug, Clone, Copy)]
pub struct GateInput<'a> {
    /// What would be applied (the saved plan's digest, the decision digest it is applied
    /// under) and who authored it.
    pub applying: Applying<'a>,
    pub plan: &'a PlanResult,
    pub policy: &'a PolicyResult,
    pub requirements: &'a [Requirement],
    pub approvals: &'a [Approval],
    pub membership: &'a Membership,
    pub counting: Counting,
    pub merge_rule: MergeRule,
    pub pr: PrState,
    pub plan_use: PlanUse,
    pub health: &'a StackHealth,
}

/// One approval requirement the gate found missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingApproval {
    pub approvers: Vec<String>,
    pub needed: u32,
}

impl fmt::Display for MissingApproval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.approvers.is_empty() {
            write!(f, "{} from (no approver named)", self.needed)
        } else {
            write!(f, "{} from {}", self.needed, self.approvers.join(" or "))
        }
    }
}

/// Why the gate refuses an apply. Each says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum GateRefusal {
    #[error("no plan: run the plan stage first")]
    PlanNotRun,
    #[error("the plan failed ({class}): fix the cause and plan again")]
    PlanFailed { class: String },
    #[error("{applying} is not what the plan stage produced ({planned}): apply the recorded plan")]
    NotThePlan { planned: Subject, applying: Subject },
    #[error("policy was not evaluated: run the policy stage first")]
    PolicyNotEvaluated,
    #[error(
        "policy denies this plan (decision {decision_digest}): fix the violation or request an exception"
    )]
    PolicyDenied { decision_digest: String },
    #[error("the apply names policy decision {applying}, but the current decision is {evaluated}")]
    DecisionDiffers { evaluated: String, applying: String },
    #[error("approvals missing for {subject}: {}", joined(.missing))]
    ApprovalsMissing {
        subject: Subject,
        missing: Vec<MissingApproval>,
    },
    #[error("this stack applies after merge: merge the PR into the default branch first")]
    NotMerged,
    #[error(
        "the PR was merged into a branch other than the default branch; apply-after-merge applies only from the default branch"
    )]
    MergedElsewhere,
    #[error(
        "the PR is already merged; this stack applies before merge, so open a new PR for further changes"
    )]
    AlreadyMerged,
    #[error("the PR is closed")]
    Closed,
    #[error("this plan was already applied; a plan applies at most once")]
    PlanAlreadyApplied,
    #[error("an apply of this plan failed; plan again (approvals do not carry over)")]
    PlanAlreadyFailed,
    #[error("the state moved since this plan was made: plan again (approvals do not carry over)")]
    PlanStale,
    #[error(
        "the stack is degraded since {at}: the apply of {change} failed ({error}); run a refresh-only plan, or an admin runs `sluice recover UNIT --reason`"
    )]
    Degraded {
        change: String,
        at: Timestamp,
        error: ApplyErrorClass,
    },
    #[error(
        "the stack is recovering: this plan ({planned_at}) predates the refresh-only plan ({refreshed_at}); plan again"
    )]
    PlanPredatesRefresh {
        planned_at: Timestamp,
        refreshed_at: Timestamp,
    },
}

fn joined(missing: &[MissingApproval]) -> String {
    let parts: Vec<String> = missing.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// The gate's answer: the approval evaluation (for the report) and every reason to refuse
/// (empty when the apply may proceed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateDecision {
    pub evaluation: Evaluation,
    pub refusals: Vec<GateRefusal>,
}

impl GateDecision {
    pub fn allows(&self) -> bool {
        self.refusals.is_empty()
    }
}

/// Decide whether `input.applying` may be applied now. Every refusal is listed, in the order
/// of the stage flow, so one run tells the user everything that stands in the way.
pub fn gate(input: GateInput<'_>) -> GateDecision {
    let applying = input.applying.binding;
    let evaluation = binding::evaluate(
        input.applying,
        input.requirements,
        input.approvals,
        input.membership,
        input.counting,
    );
    let mut refusals = Vec::new();
    refusals.extend(plan_refusal(input.plan, &applying.subject));
    refusals.extend(policy_refusals(input.policy, &applying.decision_digest));
    refusals.extend(approvals_refusal(
        input.requirements,
        &evaluation,
        &applying.subject,
    ));
    refusals.extend(merge_refusal(input.merge_rule, input.pr));
    refusals.extend(use_refusal(input.plan_use));
    refusals.extend(health_refusal(input.health, input.plan));
    GateDecision {
        evaluation,
        refusals,
    }
}

fn plan_refusal(plan: &PlanResult, applying: &Subject) -> Option<GateRefusal> {
    match plan {
        PlanResult::NotRun => Some(GateRefusal::PlanNotRun),
        PlanResult::Failed { class } => Some(GateRefusal::PlanFailed {
            class: class.clone(),
        }),
        PlanResult::Passed { subject, .. } => {
            (subject != applying).then(|| GateRefusal::NotThePlan {
                planned: subject.clone(),
                applying: applying.clone(),
            })
        }
    }
}

fn policy_refusals(policy: &PolicyResult, applying: &str) -> Vec<GateRefusal> {
    let PolicyResult::Evaluated {
        outcome,
        decision_digest,
    } = policy
    else {
        return vec![GateRefusal::PolicyNotEvaluated];
    };
    let mut out = Vec::new();
    if *outcome == PolicyOutcome::Deny {
        out.push(GateRefusal::PolicyDenied {
            decision_digest: decision_digest.clone(),
        });
    }
    if decision_digest != applying {
        out.push(GateRefusal::DecisionDiffers {
            evaluated: decision_digest.clone(),
            applying: applying.to_string(),
        });
    }
    out
}

fn approvals_refusal(
    requirements: &[Requirement],
    evaluation: &Evaluation,
    subject: &Subject,
) -> Option<GateRefusal> {
    let missing: Vec<MissingApproval> = requirements
        .iter()
        .zip(&evaluation.requirements)
        .filter_map(|(r, f)| match f {
            binding::Fulfilment::Missing { needed, .. } => Some(MissingApproval {
                approvers: r.approvers.clone(),
                needed: *needed,
            }),
            binding::Fulfilment::Met { .. } => None,
        })
        .collect();
    (!missing.is_empty()).then(|| GateRefusal::ApprovalsMissing {
        subject: subject.clone(),
        missing,
    })
}

fn merge_refusal(rule: MergeRule, pr: PrState) -> Option<GateRefusal> {
    match (rule, pr) {
        (_, PrState::Closed) => Some(GateRefusal::Closed),
        (MergeRule::BeforeMerge, PrState::Open) => None,
        (MergeRule::BeforeMerge, PrState::Merged { .. }) => Some(GateRefusal::AlreadyMerged),
        (MergeRule::AfterMerge, PrState::Open) => Some(GateRefusal::NotMerged),
        (
            MergeRule::AfterMerge,
            PrState::Merged {
                into_default_branch,
            },
        ) => (!into_default_branch).then_some(GateRefusal::MergedElsewhere),
    }
}

fn use_refusal(plan_use: PlanUse) -> Option<GateRefusal> {
    match plan_use {
        PlanUse::Unused => None,
        PlanUse::Applied => Some(GateRefusal::PlanAlreadyApplied),
        PlanUse::Failed => Some(GateRefusal::PlanAlreadyFailed),
        PlanUse::Stale => Some(GateRefusal::PlanStale),
    }
}

fn health_refusal(health: &StackHealth, plan: &PlanResult) -> Option<GateRefusal> {
    match (health, plan) {
        (StackHealth::Healthy, _) => None,
        (StackHealth::Degraded { degradation }, _) => Some(GateRefusal::Degraded {
            change: degradation.change.clone(),
            at: degradation.at,
            error: degradation.error,
        }),
        // Only a plan made after the refresh-only plan has seen what the failed apply changed.
        (StackHealth::Recovering { refreshed_at, .. }, PlanResult::Passed { planned_at, .. })
            if planned_at <= refreshed_at =>
        {
            Some(GateRefusal::PlanPredatesRefresh {
                planned_at: *planned_at,
                refreshed_at: *refreshed_at,
            })
        }
        (StackHealth::Recovering { .. }, _) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Multi-stack changes
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the stacks {} depend on each other in a cycle; they cannot be applied in order", .stacks.join(", "))]
    Cycle { stacks: Vec<String> },
    #[error("stack index {0} is not in the stack graph")]
    UnknownStack(usize),
    #[error("`{stack}` is not the next stack to apply (expected {expected:?})")]
    OutOfOrder {
        stack: String,
        expected: Option<String>,
    },
}

/// Why a stack of a multi-stack change was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Skip {
    /// It depends (directly or through other stacks) on a stack whose apply failed.
    UpstreamFailed { upstream: String },
    /// The run stopped at the first failure.
    RunStopped { after: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum StackOutcome {
    Pending,
    Applied,
    Failed,
    Skipped(Skip),
}

/// A multi-stack change's apply: stacks in dependency order (upstream first), applied one by
/// one; the first failure stops the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyRun {
    /// Stack ids in the order they apply.
    pub order: Vec<String>,
    /// `upstream[i]`: positions in `order` of the stacks stack `i` depends on, directly or
    /// through stacks outside the change.
    #[serde(skip)]
    upstream: Vec<Vec<usize>>,
    pub outcomes: Vec<StackOutcome>,
}

impl ApplyRun {
    /// Order `stacks` (indices into `graph`) so that every stack comes after the stacks it
    /// depends on, even through stacks the change does not touch; ties break by id so the
    /// order is reproducible.
    pub fn new(graph: &StackGraph, stacks: &[usize]) -> Result<Self, OrderError> {
        if let Some(bad) = stacks.iter().find(|s| **s >= graph.len()) {
            return Err(OrderError::UnknownStack(*bad));
        }
        let chosen: BTreeSet<usize> = stacks.iter().copied().collect();
        let mut ups: Vec<(usize, BTreeSet<usize>)> = chosen
            .iter()
            .map(|&s| (s, reachable_upstream(graph, s, &chosen)))
            .collect();
        let mut order: Vec<usize> = Vec::with_capacity(ups.len());
        while !ups.is_empty() {
            let placed: BTreeSet<usize> = order.iter().copied().collect();
            let ready = ups
                .iter()
                .enumerate()
                .filter(|(_, (_, u))| u.is_subset(&placed))
                .min_by_key(|(_, (s, _))| graph.id(*s))
                .map(|(i, _)| i);
            match ready {
                Some(i) => order.push(ups.remove(i).0),
                None => {
                    let mut stacks: Vec<String> =
                        ups.iter().map(|(s, _)| graph.id(*s).to_string()).collect();
                    stacks.sort();
                    return Err(OrderError::Cycle { stacks });
                }
            }
        }
        let position = |s: usize| order.iter().position(|o| *o == s).expect("ordered");
        let upstream = order
            .iter()
            .map(|&s| {
                reachable_upstream(graph, s, &chosen)
                    .into_iter()
                    .map(position)
                    .collect()
            })
            .collect();
        Ok(ApplyRun {
            order: order.iter().map(|s| graph.id(*s).to_string()).collect(),
            upstream,
            outcomes: vec![StackOutcome::Pending; order.len()],
        })
    }

    /// The next stack to apply, or `None` when the run is over.
    pub fn next(&self) -> Option<&str> {
        self.outcomes
            .iter()
            .position(|o| *o == StackOutcome::Pending)
            .map(|i| self.order[i].as_str())
    }

    /// Record how the apply of `stack` (which must be [`ApplyRun::next`]) ended. On failure
    /// every remaining stack is skipped, with the failed upstream named where it has one.
    pub fn record(&mut self, stack: &str, applied: bool) -> Result<(), OrderError> {
        let Some(i) = self
            .outcomes
            .iter()
            .position(|o| *o == StackOutcome::Pending)
            .filter(|i| self.order[*i] == stack)
        else {
            return Err(OrderError::OutOfOrder {
                stack: stack.to_string(),
                expected: self.next().map(str::to_string),
            });
        };
        if applied {
            self.outcomes[i] = StackOutcome::Applied;
            return Ok(());
        }
        self.outcomes[i] = StackOutcome::Failed;
        for j in i + 1..self.order.len() {
            self.outcomes[j] = StackOutcome::Skipped(if self.upstream[j].contains(&i) {
                Skip::UpstreamFailed {
                    upstream: stack.to_string(),
                }
            } else {
                Skip::RunStopped {
                    after: stack.to_string(),
                }
            });
        }
        Ok(())
    }
}

/// The stacks of `chosen` that `stack` depends on, following upstream edges through any stack.
fn reachable_upstream(
    graph: &StackGraph,
    stack: usize,
    chosen: &BTreeSet<usize>,
) -> BTreeSet<usize> {
    let mut seen = vec![false; graph.len()];
    let mut todo = vec![stack];
    let mut out = BTreeSet::new();
    while let Some(v) = todo.pop() {
        for &u in graph.upstream_of(v) {
            if !seen[u] {
                seen[u] = true;
                if chosen.contains(&u) && u != stack {
                    out.insert(u);
                }
                todo.push(u);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
