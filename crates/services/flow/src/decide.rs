//! The decision for one stack's change (stages 4–6 of DESIGN.md §2 for a stack): what the plan
//! does, what policy decided, what risk the change carries and who must approve it, and the
//! resulting status (allowed / approvals required / denied).
//!
//! Everything here is pure: the plan, the decision record, the org's risk rules, approval
//! matrix and CODEOWNERS come in, a [`StackDecision`] comes out. Evaluating the policy engine
//! and reading files live in [`crate::check`] (one plan) and [`crate::pr`] (a whole change);
//! `sluice-report` renders a decision the same way for both, so `sluice check` and `sluice pr`
//! say the same thing about the same plan.
//!
//! Nothing a report shows of a decision carries a value from the plan: the summary holds addresses, actions
//! and reasons only, and policy messages were produced over the redacted plan (and are passed
//! through the redaction rules once more before they are kept).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sluice_model::approval::{self, ApprovalMatrix, PolicyRequest, Requirement};
use sluice_model::baseline::{Baseline, PreexistingPolicy};
use sluice_model::codeowners::CodeOwners;
use sluice_model::plan::{Action, Plan, PlanSummary, ResourceChange};
use sluice_model::record::{Decision, DecisionRecord, Outcome, RuleResult};
use sluice_model::redact::RedactionRules;
use sluice_model::risk::{
    self, ChangeAction, PolicyOutcome, ResourceFact, RiskAssessment, RiskInput, RiskRule,
};

/// Whether a stack's change may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing blocks and nobody needs to approve.
    Allowed,
    /// Allowed once the listed approvals are given.
    ApprovalsRequired,
    /// A policy denies the change (or could not be evaluated and failed closed).
    Denied,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Allowed => "allowed",
            Status::ApprovalsRequired => "approvals required",
            Status::Denied => "denied",
        }
    }
}

/// The policy stage's result for the stack: the decision record and its digest (what
/// approvals bind to).
#[derive(Debug, Clone, Serialize)]
pub struct PolicySection {
    /// `sha256:` of the record's canonical JSON.
    pub decision_digest: String,
    #[serde(flatten)]
    pub record: DecisionRecord,
}

/// Everything a reviewer needs to decide about one stack's plan.
#[derive(Debug, Clone, Serialize)]
pub struct StackDecision {
    pub stack: String,
    pub env: String,
    pub production: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_id: Option<String>,
    pub plan: PlanSummary,
    pub policy: PolicySection,
    pub risk: RiskAssessment,
    /// Every approval requirement with its source (risk matrix, CODEOWNERS, policy).
    pub approvals: Vec<Requirement>,
    pub status: Status,
    /// How the policy results relate to the change (each result's own class is in the record,
    /// `policy.results[].baseline`).
    pub policy_baseline: PlanBaseline,
}

/// A stack's policy results judged against the resources its plan leaves unchanged.
///
/// A plan is itself a comparison: the engine diffs the configuration at the head with the
/// real state, which is what the merge base's configuration produced (drift aside). A
/// resource the plan leaves as it is (`no-op`, or identical `before` and `after`) is the same
/// at the merge base and at the head, so a finding on it was there before the change:
/// `pre_existing`. Every other result is `new`: it is on something the change creates,
/// updates, replaces, moves with changes, imports or deletes, or on no resource at all.
/// Planning the merge base as well would cost a second engine run per stack to learn the
/// same thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanBaseline {
    /// What the results were judged against: `plan_no_op` (see above).
    pub basis: &'static str,
    /// Results that are not passes and that the change brought.
    pub new: usize,
    /// Results on resources the plan leaves unchanged.
    pub preexisting: usize,
    /// Pre-existing results that block anyway (`policy.preexisting: block`).
    pub preexisting_blocking: usize,
    /// Denied rules that block the change (new denials, and pre-existing ones the org
    /// blocks), sorted and unique.
    pub blocking_denials: Vec<String>,
}

/// Addresses of the resources a plan leaves as they are: `no-op` (an import or a move
/// changes the resource's management, so neither counts), or an update whose `before` and
/// `after` are identical.
pub fn unchanged_addresses(plan: &Plan) -> BTreeSet<String> {
    plan.resource_changes
        .iter()
        .filter(|rc| rc.deposed.is_none() && rc.change.importing.is_none())
        .filter(|rc| {
            rc.previous_address
                .as_ref()
                .is_none_or(|p| p == &rc.address)
        })
        .filter(|rc| match rc.change.actions {
            Action::NoOp => true,
            Action::Update => rc.change.before == rc.change.after && !rc.change.before.is_null(),
            _ => false,
        })
        .map(|rc| rc.address.clone())
        .collect()
}

/// Mark every result that is not a pass `new` or `pre_existing` (on the record, so that the
/// decision record says which is which) and decide which denials block: a new one always, a
/// pre-existing one as `policy.preexisting` says (default: not). A result the engine could
/// not evaluate is always new: it fails closed.
pub fn judge_results(
    record: &mut DecisionRecord,
    unchanged: &BTreeSet<String>,
    policy: &PreexistingPolicy,
    env: &str,
) -> PlanBaseline {
    let mut out = PlanBaseline {
        basis: "plan_no_op",
        new: 0,
        preexisting: 0,
        preexisting_blocking: 0,
        blocking_denials: Vec::new(),
    };
    let mut denials = BTreeSet::new();
    for r in record
        .results
        .iter_mut()
        .filter(|r| r.outcome != Outcome::Pass)
    {
        let pre = !r.error && r.resource.as_ref().is_some_and(|a| unchanged.contains(a));
        let class = if pre {
            Baseline::PreExisting
        } else {
            Baseline::New
        };
        r.baseline = Some(class);
        let blocks = policy.blocks(class, &r.rule, Some(env));
        if pre {
            out.preexisting += 1;
            if blocks && r.outcome == Outcome::Deny {
                out.preexisting_blocking += 1;
            }
        } else {
            out.new += 1;
        }
        if blocks && r.outcome == Outcome::Deny {
            denials.insert(r.rule.clone());
        }
    }
    out.blocking_denials = denials.into_iter().collect();
    out
}

/// The inputs of [`decide`].
pub struct DecideInput<'a> {
    pub stack: &'a str,
    pub env: &'a str,
    pub production: bool,
    pub change_id: Option<String>,
    pub summary: PlanSummary,
    /// From [`resource_facts`] of the same plan.
    pub facts: &'a [ResourceFact],
    pub record: DecisionRecord,
    pub risk_rules: &'a [RiskRule],
    pub matrix: &'a ApprovalMatrix,
    pub codeowners: &'a CodeOwners,
    /// Repository paths the change touches for this stack (CODEOWNERS is matched on them).
    pub paths: &'a [String],
    /// Approvers for a policy `require_approval` that names no group: the stack's owners.
    pub owners: &'a [String],
    /// Applied to policy messages before they are kept.
    pub redaction: &'a RedactionRules,
    /// From [`unchanged_addresses`] of the same plan.
    pub unchanged: &'a BTreeSet<String>,
    /// `policy.preexisting`: what a result on an unchanged resource does.
    pub preexisting: &'a PreexistingPolicy,
}

/// Put the stages' results together: risk from the rules over the plan's resource changes and
/// the policy outcome, approvals from the matrix, CODEOWNERS and policy requests.
pub fn decide(input: DecideInput<'_>) -> StackDecision {
    let mut record = input.record;
    for r in &mut record.results {
        if !r.message.is_empty() {
            r.message = input.redaction.redact_text(&r.message);
        }
    }
    let baseline = judge_results(&mut record, input.unchanged, input.preexisting, input.env);
    let denied = !baseline.blocking_denials.is_empty();
    // A denial that does not block (every denied result pre-existing) reads as a warning to
    // the risk rules, as for apps.
    let outcome = match record.outcome {
        Decision::Deny if !denied => PolicyOutcome::Warn,
        d => policy_outcome(d),
    };
    let risk = risk::classify(
        input.risk_rules,
        &RiskInput {
            env: input.env,
            stack: input.stack,
            resources: input.facts,
            policy: Some(outcome),
        },
    );
    let requests = policy_requests(&record, input.owners);
    let approvals = approval::requirements(
        risk.risk,
        input.matrix,
        input.codeowners,
        input.paths,
        &requests,
    );
    let status = status(denied, &approvals);
    StackDecision {
        stack: input.stack.to_string(),
        env: input.env.to_string(),
        production: input.production,
        change_id: input.change_id,
        plan: input.summary,
        policy: PolicySection {
            decision_digest: record.digest(),
            record,
        },
        risk,
        approvals,
        status,
        policy_baseline: baseline,
    }
}

/// The plan's resource changes as risk rules see them. No-op and read entries that neither
/// move nor import are left out: they change nothing.
pub fn resource_facts(plan: &Plan) -> Vec<ResourceFact> {
    plan.resource_changes
        .iter()
        .filter_map(|rc| {
            let actions = risk_actions(rc);
            (!actions.is_empty()).then(|| ResourceFact {
                address: rc.address.clone(),
                resource_type: rc.resource_type.clone(),
                actions,
            })
        })
        .collect()
}

/// A resource change's actions in the risk rules' vocabulary: the three replace orders are
/// `replace` (create-then-forget is a replace that also forgets the old object), an import or
/// a move (a `previous_address` other than the address) adds `import` / `move`.
pub fn risk_actions(rc: &ResourceChange) -> Vec<ChangeAction> {
    let mut out = match rc.change.actions {
        Action::NoOp => vec![],
        Action::Create => vec![ChangeAction::Create],
        Action::Read => vec![ChangeAction::Read],
        Action::Update => vec![ChangeAction::Update],
        Action::Delete => vec![ChangeAction::Delete],
        Action::DeleteThenCreate | Action::CreateThenDelete => vec![ChangeAction::Replace],
        Action::Forget => vec![ChangeAction::Forget],
        Action::CreateThenForget => vec![ChangeAction::Replace, ChangeAction::Forget],
    };
    if rc.change.importing.is_some() {
        out.push(ChangeAction::Import);
    }
    if rc
        .previous_address
        .as_ref()
        .is_some_and(|p| p != &rc.address)
    {
        out.push(ChangeAction::Move);
    }
    out
}

/// The decision record's final outcome as risk rules see it.
pub fn policy_outcome(d: Decision) -> PolicyOutcome {
    match d {
        Decision::Allow => PolicyOutcome::Allow,
        Decision::Warn => PolicyOutcome::Warn,
        Decision::RequireApproval => PolicyOutcome::RequireApproval,
        Decision::Deny => PolicyOutcome::Deny,
    }
}

/// The approvals policies ask for: one request per rule and approver set (a rule that fires on
/// 300 resources asks once, naming the first resource and the count), in rule order. A request
/// that names no group falls back to `owners` (the stack's owners).
pub fn policy_requests(record: &DecisionRecord, owners: &[String]) -> Vec<PolicyRequest> {
    let mut grouped: BTreeMap<(String, Vec<String>), (String, usize)> = BTreeMap::new();
    for r in record
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::RequireApproval)
    {
        let mut groups = if r.groups.is_empty() {
            owners.to_vec()
        } else {
            r.groups.clone()
        };
        groups.sort();
        groups.dedup();
        let entry = grouped
            .entry((r.rule.clone(), groups))
            .or_insert_with(|| (result_text(r), 0));
        entry.1 += 1;
    }
    grouped
        .into_iter()
        .map(|((rule, groups), (first, n))| PolicyRequest {
            rule,
            message: if n > 1 {
                format!("{first} (and {} more)", n - 1)
            } else {
                first
            },
            groups,
        })
        .collect()
}

fn result_text(r: &RuleResult) -> String {
    match (&r.resource, r.message.is_empty()) {
        (_, false) => r.message.clone(),
        (Some(a), true) => a.clone(),
        (None, true) => r.rule.clone(),
    }
}

/// A blocking denial ⇒ denied; otherwise any requirement ⇒ approvals required; else allowed.
pub fn status(denied: bool, approvals: &[Requirement]) -> Status {
    if denied {
        Status::Denied
    } else if approvals.is_empty() {
        Status::Allowed
    } else {
        Status::ApprovalsRequired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use sluice_model::approval::Approver;
    use sluice_model::approval::Source;
    use sluice_model::record::{BundleRef, EngineRef};
    use sluice_model::risk::RiskLevel;

    fn result(rule: &str, outcome: Outcome, resource: Option<&str>, groups: &[&str]) -> RuleResult {
        RuleResult {
            rule: rule.into(),
            outcome,
            message: format!("{rule} fired"),
            resource: resource.map(str::to_string),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            waived: None,
            exception: None,
            expired_exceptions: vec![],
            docs: None,
            severity: None,
            bundle: "builtin".into(),
            source: "data.x".into(),
            error: false,
            baseline: None,
        }
    }

    fn record(results: Vec<RuleResult>) -> DecisionRecord {
        let mut r = DecisionRecord {
            schema: "sluice.decision/v1".into(),
            engine: EngineRef {
                name: "regorus".into(),
                version: "0".into(),
            },
            bundles: vec![BundleRef {
                name: "builtin".into(),
                version: "sha256:00".into(),
            }],
            input_digest: "sha256:11".into(),
            results,
            exceptions_applied: vec![],
            exceptions_expired: vec![],
            outcome: Decision::Allow,
        };
        r.normalize();
        r
    }

    fn plan(json: &str) -> Plan {
        Plan::parse("t.json", json.as_bytes()).unwrap()
    }

    const PLAN: &str = r#"{"format_version":"1.2","resource_changes":[
      {"address":"aws_db_instance.replica[1]","mode":"managed","type":"aws_db_instance","name":"replica","change":{"actions":["create"],"before":null,"after":{}}},
      {"address":"aws_db_instance.primary","mode":"managed","type":"aws_db_instance","name":"primary","change":{"actions":["no-op"],"before":{},"after":{}}},
      {"address":"aws_iam_role.new","previous_address":"aws_iam_role.old","mode":"managed","type":"aws_iam_role","name":"new","change":{"actions":["no-op"],"before":{},"after":{}}},
      {"address":"aws_s3_bucket.logs","mode":"managed","type":"aws_s3_bucket","name":"logs","change":{"actions":["create","forget"],"before":{},"after":{}}},
      {"address":"aws_kms_key.k","mode":"managed","type":"aws_kms_key","name":"k","change":{"actions":["no-op"],"before":{},"after":{},"importing":{"id":"abc"}}}
    ]}"#;

    /// Only the read replica: a production database topology change.
    const REPLICA_PLAN: &str = r#"{"format_version":"1.2","resource_changes":[
      {"address":"aws_db_instance.replica[1]","mode":"managed","type":"aws_db_instance","name":"replica","change":{"actions":["create"],"before":null,"after":{}}},
      {"address":"aws_db_instance.primary","mode":"managed","type":"aws_db_instance","name":"primary","change":{"actions":["no-op"],"before":{},"after":{}}}
    ]}"#;

    #[test]
    fn facts_follow_the_plan_actions() {
        let facts = resource_facts(&plan(PLAN));
        let got: Vec<(&str, Vec<ChangeAction>)> = facts
            .iter()
            .map(|f| (f.address.as_str(), f.actions.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("aws_db_instance.replica[1]", vec![ChangeAction::Create]),
                ("aws_iam_role.new", vec![ChangeAction::Move]),
                (
                    "aws_s3_bucket.logs",
                    vec![ChangeAction::Replace, ChangeAction::Forget]
                ),
                ("aws_kms_key.k", vec![ChangeAction::Import]),
            ]
        );
    }

    fn matrix() -> ApprovalMatrix {
        let mut levels = BTreeMap::new();
        levels.insert(RiskLevel::R1, vec![Approver::Codeowners]);
        levels.insert(
            RiskLevel::R3,
            vec![Approver::Group {
                group: "@acme/platform".into(),
                count: 1,
            }],
        );
        ApprovalMatrix { levels }
    }

    fn run(p: &Plan, rec: DecisionRecord, env: &str, co: &CodeOwners) -> StackDecision {
        let facts = resource_facts(p);
        let rules = risk::default_rules(&["prod".into()]);
        let paths = vec!["infra/prod/db/main.tf".to_string()];
        decide(DecideInput {
            stack: "prod/db",
            env,
            production: env == "prod",
            change_id: None,
            summary: p.summary(),
            facts: &facts,
            record: rec,
            risk_rules: &rules,
            matrix: &matrix(),
            codeowners: co,
            paths: &paths,
            owners: &["@acme/db-owners".to_string()],
            redaction: &RedactionRules::default(),
            unchanged: &unchanged_addresses(p),
            preexisting: &PreexistingPolicy::default(),
        })
    }

    #[test]
    fn production_database_change_is_r3_with_sources() {
        let (co, _) = CodeOwners::parse("/infra/prod/ @acme/sre\n");
        let rec = record(vec![
            result("db-backup-retention", Outcome::Pass, None, &[]),
            result(
                "stateful-destroy",
                Outcome::RequireApproval,
                Some("a.b"),
                &["@acme/dba"],
            ),
            result(
                "stateful-destroy",
                Outcome::RequireApproval,
                Some("a.c"),
                &["@acme/dba"],
            ),
        ]);
        let d = run(&plan(REPLICA_PLAN), rec, "prod", &co);
        assert_eq!(d.risk.risk, RiskLevel::R3);
        assert_eq!(d.status, Status::ApprovalsRequired);
        let sources: Vec<&Source> = d.approvals.iter().map(|a| &a.source).collect();
        assert!(matches!(
            sources[0],
            Source::Risk {
                risk: RiskLevel::R3,
                configured: RiskLevel::R3
            }
        ));
        assert!(matches!(sources[1], Source::Codeowners { line: 1, .. }));
        assert!(
            matches!(sources[2], Source::Policy { rule, message } if rule == "stateful-destroy" && message.ends_with("(and 1 more)"))
        );
        assert_eq!(d.approvals.len(), 3, "two results of one rule ask once");
        // The full plan also replaces a bucket in production: destructive, R4.
        let d = run(&plan(PLAN), record(vec![]), "prod", &co);
        assert_eq!(d.risk.risk, RiskLevel::R4);
        assert_eq!(d.risk.reasons[0].addresses, vec!["aws_s3_bucket.logs"]);
    }

    #[test]
    fn deny_wins_and_dev_is_r1() {
        let rec = record(vec![result(
            "db-public-access",
            Outcome::Deny,
            Some("aws_db_instance.replica[1]"),
            &[],
        )]);
        let d = run(&plan(PLAN), rec, "dev", &CodeOwners::empty());
        assert_eq!(d.status, Status::Denied);
        assert_eq!(d.risk.risk, RiskLevel::R1);
        assert_eq!(
            d.policy.record.results[0].resource.as_deref(),
            Some("aws_db_instance.replica[1]")
        );
    }

    #[test]
    fn unchanged_resources_are_no_ops_that_neither_move_nor_import() {
        let got = unchanged_addresses(&plan(PLAN));
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            ["aws_db_instance.primary"]
        );
        let same = plan(
            r#"{"format_version":"1.2","resource_changes":[
              {"address":"a.same","mode":"managed","type":"a","name":"same","change":{"actions":["update"],"before":{"x":1},"after":{"x":1}}},
              {"address":"a.other","mode":"managed","type":"a","name":"other","change":{"actions":["update"],"before":{"x":1},"after":{"x":2}}}
            ]}"#,
        );
        assert_eq!(
            unchanged_addresses(&same).into_iter().collect::<Vec<_>>(),
            ["a.same"]
        );
    }

    #[test]
    fn denials_on_unchanged_resources_are_pre_existing_and_do_not_block_by_default() {
        let pre = |rule: &str, outcome: Outcome, resource: &str| {
            result(rule, outcome, Some(resource), &[])
        };
        let rec = || {
            record(vec![
                pre("custom-tags", Outcome::Deny, "aws_db_instance.primary"),
                pre("custom-tags", Outcome::Warn, "aws_iam_role.new"),
                pre("custom-kms", Outcome::Deny, "aws_kms_key.k"),
            ])
        };
        // Only the unchanged primary's denial: pre-existing, not blocking.
        let only_pre = record(vec![pre(
            "custom-tags",
            Outcome::Deny,
            "aws_db_instance.primary",
        )]);
        let d = run(&plan(PLAN), only_pre, "dev", &CodeOwners::empty());
        assert_eq!(d.status, Status::Allowed);
        assert_eq!(
            d.policy.record.outcome,
            Decision::Deny,
            "the engine's outcome is kept"
        );
        assert_eq!(
            d.policy.record.results[0].baseline,
            Some(Baseline::PreExisting)
        );
        assert_eq!(
            (d.policy_baseline.new, d.policy_baseline.preexisting),
            (0, 1)
        );
        assert!(d.policy_baseline.blocking_denials.is_empty());
        // The record says which is which, and the digest covers it.
        let json = d.policy.record.to_canonical_json();
        assert!(json.contains(r#""baseline":"pre_existing""#), "{json}");

        // A denial on an imported key is new: the change brings it under management.
        let d = run(&plan(PLAN), rec(), "dev", &CodeOwners::empty());
        assert_eq!(d.status, Status::Denied);
        assert_eq!(d.policy_baseline.blocking_denials, ["custom-kms"]);
        let classes: Vec<(&str, Option<Baseline>)> = d
            .policy
            .record
            .results
            .iter()
            .map(|r| (r.resource.as_deref().unwrap(), r.baseline))
            .collect();
        assert!(classes.contains(&("aws_db_instance.primary", Some(Baseline::PreExisting))));
        assert!(classes.contains(&("aws_iam_role.new", Some(Baseline::New))));
        assert!(classes.contains(&("aws_kms_key.k", Some(Baseline::New))));

        // `policy.preexisting: block` makes the old denial block again.
        let mut r = record(vec![pre(
            "custom-tags",
            Outcome::Deny,
            "aws_db_instance.primary",
        )]);
        let block = PreexistingPolicy::from_json(&json!("block")).unwrap();
        let b = judge_results(&mut r, &unchanged_addresses(&plan(PLAN)), &block, "dev");
        assert_eq!(b.blocking_denials, ["custom-tags"]);
        assert_eq!(b.preexisting_blocking, 1);
        // A result the engine could not evaluate is never excused.
        let mut failed = pre("custom-tags", Outcome::Deny, "aws_db_instance.primary");
        failed.error = true;
        let mut r = record(vec![failed]);
        let b = judge_results(
            &mut r,
            &unchanged_addresses(&plan(PLAN)),
            &PreexistingPolicy::default(),
            "dev",
        );
        assert_eq!(b.blocking_denials, ["custom-tags"]);
    }

    #[test]
    fn require_without_groups_falls_back_to_owners() {
        let rec = record(vec![result(
            "main.require",
            Outcome::RequireApproval,
            None,
            &[],
        )]);
        let req = policy_requests(&rec, &["@acme/owners".into()]);
        assert_eq!(req.len(), 1);
        assert_eq!(req[0].groups, vec!["@acme/owners".to_string()]);
    }

    #[test]
    fn messages_are_redacted_before_they_are_kept() {
        let mut r = result("main.deny", Outcome::Deny, None, &[]);
        r.message = "db password = hunter2-canary-value".into();
        let d = run(&plan(PLAN), record(vec![r]), "dev", &CodeOwners::empty());
        let text = serde_json::to_string(&d).unwrap();
        assert!(!text.contains("hunter2-canary-value"), "{text}");
    }

    fn outcome_strategy() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::Pass),
            Just(Outcome::Warn),
            Just(Outcome::Deny),
            Just(Outcome::RequireApproval),
            Just(Outcome::Excepted),
        ]
    }

    proptest! {
        /// Status follows the record: any deny denies; otherwise approvals are required exactly
        /// when some requirement exists, and every require_approval result yields one.
        #[test]
        fn status_follows_outcomes(outcomes in proptest::collection::vec(outcome_strategy(), 0..12), owners in proptest::bool::ANY) {
            let results: Vec<RuleResult> = outcomes.iter().enumerate().map(|(i, o)| result(&format!("r{}", i % 3), *o, Some(&format!("a.b{i}")), &[])).collect();
            let rec = record(results);
            let co = if owners { CodeOwners::parse("* @acme/all\n").0 } else { CodeOwners::empty() };
            let d = run(&plan(PLAN), rec, "dev", &co);
            let deny = outcomes.contains(&Outcome::Deny);
            let requires = outcomes.contains(&Outcome::RequireApproval);
            prop_assert_eq!(d.status == Status::Denied, deny);
            if !deny {
                prop_assert_eq!(d.status == Status::ApprovalsRequired, owners || requires);
            }
            let policy_reqs = d.approvals.iter().filter(|a| matches!(a.source, Source::Policy { .. })).count();
            let rules_requiring: std::collections::BTreeSet<usize> = outcomes.iter().enumerate().filter(|(_, o)| **o == Outcome::RequireApproval).map(|(i, _)| i % 3).collect();
            prop_assert_eq!(policy_reqs, rules_requiring.len());
        }

        /// Every resource change that changes something becomes one fact; no-ops do not.
        #[test]
        fn facts_cover_every_changing_resource(n in 0usize..20, kinds in proptest::collection::vec(0usize..4, 20)) {
            let actions = [r#"["create"]"#, r#"["no-op"]"#, r#"["delete","create"]"#, r#"["read"]"#];
            let items: Vec<String> = (0..n).map(|i| format!(r#"{{"address":"aws_instance.i{i}","mode":"managed","type":"aws_instance","name":"i{i}","change":{{"actions":{},"before":{{}},"after":{{}}}}}}"#, actions[kinds[i]])).collect();
            let p = plan(&format!(r#"{{"format_version":"1.2","resource_changes":[{}]}}"#, items.join(",")));
            let facts = resource_facts(&p);
            let expected = (0..n).filter(|i| kinds[*i] != 1).count();
            prop_assert_eq!(facts.len(), expected);
            prop_assert!(facts.iter().all(|f| !f.actions.is_empty()));
        }
    }
}
