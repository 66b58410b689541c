use proptest::prelude::*;

use super::*;
use crate::approval::Source;
use crate::binding::{ApprovalState, Binding, Fulfilment};
use crate::people::PersonId;
use crate::risk::RiskLevel;

const PLATFORM: &str = "@acme/platform";

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix(1_800_000_000 + secs, 0)
}

fn plan(d: &str) -> Subject {
    Subject::Plan(d.into())
}

/// Owns everything a [`GateInput`] borrows; starts as an apply the gate allows.
struct Fixture {
    applying: Binding,
    authors: Vec<PersonId>,
    plan: PlanResult,
    policy: PolicyResult,
    requirements: Vec<Requirement>,
    approvals: Vec<Approval>,
    membership: Membership,
    merge_rule: MergeRule,
    pr: PrState,
    plan_use: PlanUse,
    health: StackHealth,
}

impl Fixture {
    fn new() -> Self {
        let applying = Binding {
            repo: "infra-live".into(),
            pr: Some(1),
            commit: "c0ffee".into(),
            env: "prod".into(),
            unit: "prod/network".into(),
            subject: plan("sha256:p1"),
            decision_digest: "sha256:d1".into(),
        };
        let mut membership = Membership::default();
        membership.add(PLATFORM, &PersonId::new("alice"));
        membership.add(PLATFORM, &PersonId::new("bob"));
        Fixture {
            approvals: vec![Approval {
                binding: applying.clone(),
                approver: PersonId::new("alice"),
                groups: vec![PLATFORM.into()],
                state: ApprovalState::Given,
            }],
            applying,
            authors: vec![PersonId::new("bob")],
            plan: PlanResult::Passed {
                subject: plan("sha256:p1"),
                planned_at: at(0),
            },
            policy: PolicyResult::Evaluated {
                outcome: PolicyOutcome::RequireApproval,
                decision_digest: "sha256:d1".into(),
            },
            requirements: vec![Requirement {
                approvers: vec![PLATFORM.into()],
                count: 1,
                source: Source::Risk {
                    risk: RiskLevel::R3,
                    configured: RiskLevel::R3,
                },
            }],
            membership,
            merge_rule: MergeRule::BeforeMerge,
            pr: PrState::Open,
            plan_use: PlanUse::Unused,
            health: StackHealth::Healthy,
        }
    }

    fn gate(&self) -> GateDecision {
        gate(GateInput {
            applying: Applying {
                binding: &self.applying,
                authors: &self.authors,
            },
            plan: &self.plan,
            policy: &self.policy,
            requirements: &self.requirements,
            approvals: &self.approvals,
            membership: &self.membership,
            counting: Counting::PerRequirement,
            merge_rule: self.merge_rule,
            pr: self.pr,
            plan_use: self.plan_use,
            health: &self.health,
        })
    }

    fn refusals(&self) -> Vec<GateRefusal> {
        self.gate().refusals
    }
}

fn degradation(at_: Timestamp) -> Degradation {
    Degradation::new(
        "infra-live#1",
        FencingToken(4),
        at_,
        EngineReport {
            changed: ResourcesChanged::Known(vec!["terraform_data.a".into()]),
            error: ApplyErrorClass::Provider,
            output: "Error: boom".into(),
        },
        &RedactionRules::default(),
    )
}

#[test]
fn a_complete_change_passes() {
    let d = Fixture::new().gate();
    assert!(d.allows(), "{:?}", d.refusals);
    assert!(d.evaluation.all_met());
}

/// Each precondition broken alone gives exactly its own refusal.
#[test]
fn every_precondition_has_its_refusal() {
    type Break = (&'static str, fn(&mut Fixture), fn(&GateRefusal) -> bool);
    let cases: &[Break] = &[
        (
            "plan not run",
            |f| f.plan = PlanResult::NotRun,
            |r| *r == GateRefusal::PlanNotRun,
        ),
        (
            "plan failed",
            |f| {
                f.plan = PlanResult::Failed {
                    class: "state".into(),
                }
            },
            |r| matches!(r, GateRefusal::PlanFailed { class } if class == "state"),
        ),
        (
            "another plan file",
            |f| {
                f.plan = PlanResult::Passed {
                    subject: plan("sha256:p2"),
                    planned_at: at(0),
                }
            },
            |r| matches!(r, GateRefusal::NotThePlan { .. }),
        ),
        (
            "policy not run",
            |f| f.policy = PolicyResult::NotEvaluated,
            |r| *r == GateRefusal::PolicyNotEvaluated,
        ),
        (
            "policy denies",
            |f| {
                f.policy = PolicyResult::Evaluated {
                    outcome: PolicyOutcome::Deny,
                    decision_digest: "sha256:d1".into(),
                }
            },
            |r| matches!(r, GateRefusal::PolicyDenied { .. }),
        ),
        (
            "policy decided again",
            |f| {
                f.policy = PolicyResult::Evaluated {
                    outcome: PolicyOutcome::Allow,
                    decision_digest: "sha256:d2".into(),
                }
            },
            |r| matches!(r, GateRefusal::DecisionDiffers { evaluated, .. } if evaluated == "sha256:d2"),
        ),
        (
            "no approval",
            |f| f.approvals.clear(),
            |r| matches!(r, GateRefusal::ApprovalsMissing { missing, .. } if missing == &vec![MissingApproval { approvers: vec![PLATFORM.into()], needed: 1 }]),
        ),
        (
            "approval of an older plan",
            |f| f.approvals[0].binding.subject = plan("sha256:p0"),
            |r| matches!(r, GateRefusal::ApprovalsMissing { .. }),
        ),
        (
            "approval of an older commit",
            |f| f.approvals[0].binding.commit = "0ld".into(),
            |r| matches!(r, GateRefusal::ApprovalsMissing { .. }),
        ),
        (
            "self-approval",
            |f| f.authors = vec![PersonId::new("alice")],
            |r| matches!(r, GateRefusal::ApprovalsMissing { .. }),
        ),
        (
            "merged before a before-merge apply",
            |f| {
                f.pr = PrState::Merged {
                    into_default_branch: true,
                }
            },
            |r| *r == GateRefusal::AlreadyMerged,
        ),
        (
            "closed",
            |f| f.pr = PrState::Closed,
            |r| *r == GateRefusal::Closed,
        ),
        (
            "not merged for an after-merge apply",
            |f| f.merge_rule = MergeRule::AfterMerge,
            |r| *r == GateRefusal::NotMerged,
        ),
        (
            "merged elsewhere",
            |f| {
                f.merge_rule = MergeRule::AfterMerge;
                f.pr = PrState::Merged {
                    into_default_branch: false,
                };
            },
            |r| *r == GateRefusal::MergedElsewhere,
        ),
        (
            "closed after merge rule",
            |f| {
                f.merge_rule = MergeRule::AfterMerge;
                f.pr = PrState::Closed;
            },
            |r| *r == GateRefusal::Closed,
        ),
        (
            "applied twice",
            |f| f.plan_use = PlanUse::Applied,
            |r| *r == GateRefusal::PlanAlreadyApplied,
        ),
        (
            "after a failed apply",
            |f| f.plan_use = PlanUse::Failed,
            |r| *r == GateRefusal::PlanAlreadyFailed,
        ),
        (
            "stale plan",
            |f| f.plan_use = PlanUse::Stale,
            |r| *r == GateRefusal::PlanStale,
        ),
        (
            "degraded",
            |f| {
                f.health = StackHealth::Degraded {
                    degradation: degradation(at(5)),
                }
            },
            |r| {
                matches!(
                    r,
                    GateRefusal::Degraded {
                        error: ApplyErrorClass::Provider,
                        ..
                    }
                )
            },
        ),
        (
            "recovering with a plan from before the refresh",
            |f| {
                f.health = StackHealth::Recovering {
                    degradation: degradation(at(-10)),
                    refreshed_at: at(0),
                }
            },
            |r| matches!(r, GateRefusal::PlanPredatesRefresh { .. }),
        ),
    ];
    for (what, brk, expected) in cases {
        let mut f = Fixture::new();
        brk(&mut f);
        let refusals = f.refusals();
        assert_eq!(refusals.len(), 1, "{what}: {refusals:?}");
        assert!(expected(&refusals[0]), "{what}: {refusals:?}");
    }
}

#[test]
fn after_merge_on_the_default_branch_passes() {
    let mut f = Fixture::new();
    f.merge_rule = MergeRule::AfterMerge;
    f.pr = PrState::Merged {
        into_default_branch: true,
    };
    assert!(f.gate().allows());
}

#[test]
fn every_refusal_is_listed_in_stage_order() {
    let mut f = Fixture::new();
    f.plan = PlanResult::NotRun;
    f.policy = PolicyResult::Evaluated {
        outcome: PolicyOutcome::Deny,
        decision_digest: "sha256:d1".into(),
    };
    f.approvals.clear();
    f.plan_use = PlanUse::Applied;
    let r = f.refusals();
    assert!(matches!(
        r.as_slice(),
        [
            GateRefusal::PlanNotRun,
            GateRefusal::PolicyDenied { .. },
            GateRefusal::ApprovalsMissing { .. },
            GateRefusal::PlanAlreadyApplied
        ]
    ));
}

#[test]
fn refusals_say_what_to_do() {
    let mut f = Fixture::new();
    f.approvals.clear();
    f.requirements.push(Requirement {
        approvers: vec!["@acme/security".into(), "@carol".into()],
        count: 2,
        source: Source::Policy {
            rule: "r".into(),
            message: "m".into(),
        },
    });
    assert_eq!(
        f.refusals()[0].to_string(),
        "approvals missing for plan sha256:p1: 1 from @acme/platform; 2 from @acme/security or @carol"
    );
    assert_eq!(
        GateRefusal::PlanStale.to_string(),
        "the state moved since this plan was made: plan again (approvals do not carry over)"
    );
}

#[test]
fn a_failed_apply_degrades_and_keeps_the_lock_with_a_redacted_tail() {
    let canary = "hunter2-canary-7f3a";
    let noise = "x".repeat(5_000);
    let report = EngineReport {
        changed: ResourcesChanged::Known(vec!["terraform_data.a".into()]),
        error: ApplyErrorClass::Provider,
        output: format!("{noise}\nError: bad request\n  password = \"{canary}\"\n"),
    };
    let after = after_apply(
        &StackHealth::Healthy,
        "infra-live#1",
        FencingToken(3),
        at(9),
        ApplyEnd::Failed(report),
        &RedactionRules::default(),
    );
    assert_eq!(after.plan, PlanUse::Failed);
    assert_eq!(after.lock, LockAfter::Keep);
    let StackHealth::Degraded { degradation } = &after.health else {
        panic!("{after:?}")
    };
    assert_eq!(degradation.token, FencingToken(3));
    assert_eq!(degradation.at, at(9));
    assert!(
        !degradation.excerpt.contains(canary),
        "{}",
        degradation.excerpt
    );
    assert!(degradation.excerpt.contains("Error: bad request"));
    assert!(degradation.excerpt.chars().count() <= EXCERPT_CHARS);
    assert!(!serde_json::to_string(&after).unwrap().contains(canary));
}

#[test]
fn a_stale_plan_spends_the_plan_but_not_the_stack() {
    for health in [
        StackHealth::Healthy,
        StackHealth::Recovering {
            degradation: degradation(at(0)),
            refreshed_at: at(1),
        },
    ] {
        let after = after_apply(
            &health,
            "c",
            FencingToken(1),
            at(2),
            ApplyEnd::StalePlan,
            &RedactionRules::default(),
        );
        assert_eq!(after.health, health);
        assert_eq!(after.plan, PlanUse::Stale);
        assert_eq!(after.lock, LockAfter::Release);
    }
}

#[test]
fn a_killed_apply_reports_unknown_changes() {
    let after = after_apply(
        &StackHealth::Healthy,
        "c",
        FencingToken(1),
        at(2),
        ApplyEnd::Failed(EngineReport {
            changed: ResourcesChanged::Unknown,
            error: ApplyErrorClass::Killed,
            output: String::new(),
        }),
        &RedactionRules::default(),
    );
    assert!(matches!(
        after.health,
        StackHealth::Degraded { ref degradation } if degradation.changed == ResourcesChanged::Unknown
    ));
    assert_eq!(after.lock, LockAfter::Keep);
}

/// Fail, refuse, refresh, refuse the old plan, plan again, approve, apply, healthy.
#[test]
fn recovery_walks_through_a_refresh_and_a_new_plan() {
    let mut f = Fixture::new();
    let after = after_apply(
        &f.health,
        "infra-live#1",
        FencingToken(1),
        at(10),
        ApplyEnd::Failed(EngineReport {
            changed: ResourcesChanged::Known(vec![]),
            error: ApplyErrorClass::State,
            output: "Error: state lock".into(),
        }),
        &RedactionRules::default(),
    );
    f.health = after.health;
    f.plan_use = after.plan;
    assert!(f.refusals().contains(&GateRefusal::PlanAlreadyFailed));
    assert!(matches!(f.refusals()[1], GateRefusal::Degraded { .. }));
    f.health = f.health.refreshed(at(20)).unwrap();
    f.plan_use = PlanUse::Unused;
    assert!(matches!(
        f.refusals().as_slice(),
        [GateRefusal::PlanPredatesRefresh { .. }]
    ));
    // A new plan after the refresh, and an approval of that plan.
    f.plan = PlanResult::Passed {
        subject: plan("sha256:p2"),
        planned_at: at(30),
    };
    f.applying.subject = plan("sha256:p2");
    assert!(
        matches!(
            f.refusals().as_slice(),
            [GateRefusal::ApprovalsMissing { .. }]
        ),
        "the old approval does not carry over"
    );
    f.approvals[0].binding.subject = plan("sha256:p2");
    assert!(f.gate().allows());
    let after = after_apply(
        &f.health,
        "infra-live#1",
        FencingToken(2),
        at(40),
        ApplyEnd::Applied,
        &RedactionRules::default(),
    );
    assert_eq!(after.health, StackHealth::Healthy);
    assert_eq!(after.plan, PlanUse::Applied);
    assert_eq!(after.lock, LockAfter::Release);
}

#[test]
fn admin_recovery_needs_a_reason_and_a_degraded_stack() {
    let degraded = StackHealth::Degraded {
        degradation: degradation(at(0)),
    };
    assert_eq!(
        degraded.recovered_by_admin(" "),
        Err(RecoveryError::ReasonRequired)
    );
    assert_eq!(
        degraded.recovered_by_admin("fixed by hand"),
        Ok(StackHealth::Healthy)
    );
    assert_eq!(
        StackHealth::Healthy.recovered_by_admin("why"),
        Err(RecoveryError::NotDegraded)
    );
    assert_eq!(
        StackHealth::Healthy.refreshed(at(1)),
        Err(RecoveryError::NotDegraded)
    );
}

#[test]
fn evaluation_in_the_gate_reports_who_met_what() {
    let d = Fixture::new().gate();
    assert!(matches!(
        &d.evaluation.requirements[0],
        Fulfilment::Met { by } if by[0].person.as_str() == "alice" && by[0].subject == plan("sha256:p1")
    ));
}

// ---------------------------------------------------------------------------------------------
// Multi-stack order

fn graph(ids: &[&str], edges: &[(&str, &str)]) -> StackGraph {
    let mut g = StackGraph::new(ids.iter().map(|s| s.to_string()));
    for (s, u) in edges {
        let (s, u) = (g.index_of(s).unwrap(), g.index_of(u).unwrap());
        g.add_edge(s, u);
    }
    g
}

fn all(g: &StackGraph) -> Vec<usize> {
    (0..g.len()).collect()
}

#[test]
fn stacks_apply_upstream_first() {
    // app -> data -> network; cluster -> network
    let g = graph(
        &["app", "cluster", "data", "network"],
        &[("app", "data"), ("data", "network"), ("cluster", "network")],
    );
    let run = ApplyRun::new(&g, &all(&g)).unwrap();
    assert_eq!(run.order, vec!["network", "cluster", "data", "app"]);
}

#[test]
fn order_follows_dependencies_through_untouched_stacks() {
    // app -> data -> network, but data is not part of the change.
    let g = graph(
        &["app", "data", "network"],
        &[("app", "data"), ("data", "network")],
    );
    let (app, net) = (g.index_of("app").unwrap(), g.index_of("network").unwrap());
    let run = ApplyRun::new(&g, &[app, net]).unwrap();
    assert_eq!(run.order, vec!["network", "app"]);
}

#[test]
fn the_first_failure_stops_the_run_and_names_the_failed_upstream() {
    let g = graph(
        &["a-network", "b-cluster", "c-data", "d-app"],
        &[("c-data", "a-network"), ("d-app", "c-data")],
    );
    let mut run = ApplyRun::new(&g, &all(&g)).unwrap();
    assert_eq!(run.order, vec!["a-network", "b-cluster", "c-data", "d-app"]);
    assert_eq!(run.next(), Some("a-network"));
    run.record("a-network", false).unwrap();
    assert_eq!(run.next(), None);
    assert_eq!(
        run.outcomes,
        vec![
            StackOutcome::Failed,
            StackOutcome::Skipped(Skip::RunStopped {
                after: "a-network".into()
            }),
            StackOutcome::Skipped(Skip::UpstreamFailed {
                upstream: "a-network".into()
            }),
            StackOutcome::Skipped(Skip::UpstreamFailed {
                upstream: "a-network".into()
            }),
        ]
    );
    assert!(
        run.record("b-cluster", true).is_err(),
        "nothing runs after the stop"
    );
}

#[test]
fn stacks_are_recorded_only_in_order() {
    let g = graph(&["a", "b"], &[("b", "a")]);
    let mut run = ApplyRun::new(&g, &all(&g)).unwrap();
    assert_eq!(
        run.record("b", true),
        Err(OrderError::OutOfOrder {
            stack: "b".into(),
            expected: Some("a".into())
        })
    );
    run.record("a", true).unwrap();
    run.record("b", true).unwrap();
    assert_eq!(run.next(), None);
    assert_eq!(run.outcomes, vec![StackOutcome::Applied; 2]);
}

#[test]
fn cycles_and_unknown_stacks_cannot_be_ordered() {
    let g = graph(&["x", "y", "z"], &[("x", "y"), ("y", "x")]);
    assert_eq!(
        ApplyRun::new(&g, &all(&g)),
        Err(OrderError::Cycle {
            stacks: vec!["x".into(), "y".into()]
        })
    );
    assert_eq!(ApplyRun::new(&g, &[7]), Err(OrderError::UnknownStack(7)));
}

proptest! {
    /// In any acyclic graph: every stack comes after everything it depends on (transitively);
    /// after a failure nothing applies; a skipped dependent names the failed stack.
    #[test]
    fn order_respects_dependencies_and_failure_stops(
        n in 1usize..10,
        raw in proptest::collection::vec((0usize..10, 0usize..10), 0..25),
        pick in proptest::collection::vec(any::<bool>(), 10),
        fail_at in 0usize..10,
    ) {
        // Edges only from higher to lower index: acyclic by construction.
        let mut g = StackGraph::new((0..n).map(|i| format!("s{i}")));
        for (a, b) in raw {
            if a < n && b < a {
                g.add_edge(a, b);
            }
        }
        let chosen: Vec<usize> = (0..n).filter(|i| pick[*i]).collect();
        let mut run = ApplyRun::new(&g, &chosen).unwrap();
        prop_assert_eq!(run.order.len(), chosen.len());
        let pos = |id: &str| run.order.iter().position(|o| o == id);
        let chosen_set: BTreeSet<usize> = chosen.iter().copied().collect();
        for &s in &chosen {
            for u in reachable_upstream(&g, s, &chosen_set) {
                prop_assert!(pos(g.id(u)) < pos(g.id(s)), "{} before its upstream {}", g.id(s), g.id(u));
            }
        }
        let mut step = 0;
        while let Some(next) = run.next().map(str::to_string) {
            run.record(&next, step != fail_at).unwrap();
            step += 1;
        }
        let failed = run.outcomes.iter().position(|o| *o == StackOutcome::Failed);
        for (i, o) in run.outcomes.iter().enumerate() {
            match failed {
                Some(f) if i > f => {
                    let s = g.index_of(&run.order[i]).unwrap();
                    let depends = reachable_upstream(&g, s, &chosen_set).contains(&g.index_of(&run.order[f]).unwrap());
                    let expected = if depends {
                        Skip::UpstreamFailed { upstream: run.order[f].clone() }
                    } else {
                        Skip::RunStopped { after: run.order[f].clone() }
                    };
                    prop_assert_eq!(o, &StackOutcome::Skipped(expected));
                }
                Some(f) if i == f => {}
                _ => prop_assert_eq!(o, &StackOutcome::Applied),
            }
        }
    }
}

/// The issue's CLI scenario, decisions only: apply refused without approval, bob (the author)
/// cannot approve, alice can, the plan applies once, and a new commit needs a new approval.
#[test]
fn the_cli_scenario_in_pure_form() {
    use crate::people::{AuthorLookup, People};
    let people: People = serde_json::from_value(serde_json::json!({
        "alice": { "emails": ["alice@acme.example"], "groups": [PLATFORM], "keys": ["ssh-ed25519 AAAA alice"] },
        "bob": { "emails": ["bob@acme.example"], "groups": [PLATFORM], "keys": ["ssh-ed25519 AAAA bob"] }
    }))
    .unwrap();
    let mut f = Fixture::new();
    f.membership = people.membership();
    f.authors = people
        .author("bob@acme.example")
        .candidates()
        .into_iter()
        .cloned()
        .collect();
    assert!(matches!(
        people.author("bob@acme.example"),
        AuthorLookup::Person(_)
    ));
    f.approvals.clear();
    assert!(matches!(
        f.refusals().as_slice(),
        [GateRefusal::ApprovalsMissing { .. }]
    ));
    assert!(people.approval("bob", &f.applying, &f.authors).is_err());
    let alice = people.approval("alice", &f.applying, &f.authors).unwrap();
    f.approvals.push(alice);
    assert!(f.gate().allows());
    let after = after_apply(
        &f.health,
        "infra-live#1",
        FencingToken(1),
        at(5),
        ApplyEnd::Applied,
        &RedactionRules::default(),
    );
    f.plan_use = after.plan;
    assert_eq!(f.refusals(), vec![GateRefusal::PlanAlreadyApplied]);
    // A new commit on the PR: new plan, same policy outcome, the old approval does not bind.
    f.applying.commit = "beef01".into();
    f.applying.subject = plan("sha256:p9");
    f.plan = PlanResult::Passed {
        subject: plan("sha256:p9"),
        planned_at: at(10),
    };
    f.plan_use = PlanUse::Unused;
    let d = f.gate();
    assert!(matches!(
        d.refusals.as_slice(),
        [GateRefusal::ApprovalsMissing { .. }]
    ));
    assert!(d.evaluation.binding().is_empty());
}

proptest! {
    /// Broken preconditions never mask each other: each one broken adds exactly one refusal,
    /// and the gate allows exactly when none is broken.
    #[test]
    fn each_broken_precondition_adds_one_refusal(
        plan_bad in 0usize..4,
        policy_bad in 0usize..4,
        approvals_bad in 0usize..3,
        merge_bad in 0usize..5,
        use_bad in 0usize..4,
        health_bad in 0usize..3,
    ) {
        let mut f = Fixture::new();
        match plan_bad {
            1 => f.plan = PlanResult::NotRun,
            2 => f.plan = PlanResult::Failed { class: "auth".into() },
            3 => f.plan = PlanResult::Passed { subject: plan("sha256:other"), planned_at: at(0) },
            _ => {}
        }
        match policy_bad {
            1 => f.policy = PolicyResult::NotEvaluated,
            2 => f.policy = PolicyResult::Evaluated { outcome: PolicyOutcome::Deny, decision_digest: "sha256:d1".into() },
            3 => f.policy = PolicyResult::Evaluated { outcome: PolicyOutcome::Warn, decision_digest: "sha256:d7".into() },
            _ => {}
        }
        match approvals_bad {
            1 => f.approvals[0].state = ApprovalState::Dismissed,
            2 => f.approvals[0].binding.unit = "prod/other".into(),
            _ => {}
        }
        match merge_bad {
            1 => f.pr = PrState::Closed,
            2 => f.pr = PrState::Merged { into_default_branch: true },
            3 => f.merge_rule = MergeRule::AfterMerge,
            4 => {
                f.merge_rule = MergeRule::AfterMerge;
                f.pr = PrState::Merged { into_default_branch: false };
            }
            _ => {}
        }
        match use_bad {
            1 => f.plan_use = PlanUse::Applied,
            2 => f.plan_use = PlanUse::Failed,
            3 => f.plan_use = PlanUse::Stale,
            _ => {}
        }
        let mut health_broken = health_bad == 1;
        match (health_bad, &f.plan) {
            (1, _) => f.health = StackHealth::Degraded { degradation: degradation(at(1)) },
            // Only a passed plan can predate a refresh.
            (2, PlanResult::Passed { .. }) => {
                health_broken = true;
                f.health = StackHealth::Recovering { degradation: degradation(at(-5)), refreshed_at: at(1) }
            }
            _ => {}
        }
        let broken = [plan_bad, policy_bad, approvals_bad, merge_bad, use_bad]
            .iter()
            .filter(|b| **b > 0)
            .count()
            + usize::from(health_broken);
        let d = f.gate();
        prop_assert_eq!(d.refusals.len(), broken, "{:?}", d.refusals);
        prop_assert_eq!(d.allows(), broken == 0);
    }
}
