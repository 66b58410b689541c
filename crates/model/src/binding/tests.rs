use proptest::prelude::*;

use super::*;
use crate::approval::Source;

const PLATFORM: &str = "@acme/platform";
const SECURITY: &str = "@acme/security";

fn pid(name: &str) -> PersonId {
    PersonId::new(name)
}

fn target() -> Binding {
    Binding {
        repo: "infra-live".into(),
        pr: Some(1),
        commit: "9f3a12c0ffee".into(),
        env: "prod".into(),
        unit: "prod/eu-west-1/network".into(),
        subject: Subject::Plan("sha256:aaaa".into()),
        decision_digest: "sha256:dddd".into(),
    }
}

/// alice: platform; bob: platform + security; carol: security; dave: the author, platform.
fn membership() -> Membership {
    let mut m = Membership::default();
    for (who, groups) in [
        ("alice", &[PLATFORM][..]),
        ("bob", &[PLATFORM, SECURITY][..]),
        ("carol", &[SECURITY][..]),
        ("dave", &[PLATFORM][..]),
    ] {
        m.add(&format!("@{who}"), &pid(who));
        m.add(&format!("{who}@acme.example"), &pid(who));
        for g in groups {
            m.add(g, &pid(who));
        }
    }
    m
}

fn approval(who: &str, groups: &[&str]) -> Approval {
    Approval {
        binding: target(),
        approver: pid(who),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        state: ApprovalState::Given,
    }
}

fn req(approvers: &[&str], count: u32) -> Requirement {
    Requirement {
        approvers: approvers.iter().map(|a| a.to_string()).collect(),
        count,
        source: Source::Risk {
            risk: RiskLevel::R3,
            configured: RiskLevel::R3,
        },
    }
}

const AUTHORS: &[&str] = &["dave"];

fn eval_with(
    applying: &Binding,
    reqs: &[Requirement],
    approvals: &[Approval],
    m: &Membership,
    counting: Counting,
) -> Evaluation {
    let authors: Vec<PersonId> = AUTHORS.iter().map(|a| pid(a)).collect();
    evaluate(
        Applying {
            binding: applying,
            authors: &authors,
        },
        reqs,
        approvals,
        m,
        counting,
    )
}

fn eval(reqs: &[Requirement], approvals: &[Approval], counting: Counting) -> Evaluation {
    eval_with(&target(), reqs, approvals, &membership(), counting)
}

fn who(f: &Fulfilment) -> Vec<&str> {
    f.signoffs().iter().map(|s| s.person.as_str()).collect()
}

fn void_reasons(s: &Standing) -> &[Void] {
    match s {
        Standing::Void { reasons } => reasons,
        Standing::Binds { .. } => panic!("expected void, got {s:?}"),
    }
}

#[test]
fn a_binding_approval_meets_its_requirement_and_names_the_digest() {
    let e = eval(
        &[req(&[PLATFORM], 1)],
        &[approval("alice", &[PLATFORM])],
        Counting::PerRequirement,
    );
    assert!(e.all_met());
    assert_eq!(
        e.requirements[0],
        Fulfilment::Met {
            by: vec![Signoff {
                person: pid("alice"),
                via: PLATFORM.into(),
                subject: Subject::Plan("sha256:aaaa".into()),
            }]
        }
    );
    assert_eq!(
        e.approvals[0],
        Standing::Binds {
            counts_for: vec![PLATFORM.into()],
            left: vec![]
        }
    );
    assert_eq!(e.binding(), vec![0]);
}

#[test]
fn no_approval_means_missing_with_the_count_still_needed() {
    let e = eval(&[req(&[PLATFORM], 2)], &[], Counting::PerRequirement);
    assert!(!e.all_met());
    assert_eq!(e.missing(), vec![0]);
    assert_eq!(
        e.requirements[0],
        Fulfilment::Missing {
            by: vec![],
            needed: 2
        }
    );
}

/// Each bound field, changed on the applying side, voids the approval with its own reason.
#[test]
fn every_bound_field_voids_when_it_differs() {
    type Mutation = (&'static str, fn(&mut Binding), fn(&Void) -> bool);
    let cases: &[Mutation] = &[
        (
            "repo",
            |b| b.repo = "other".into(),
            |v| matches!(v, Void::OtherChange { .. }),
        ),
        (
            "pr",
            |b| b.pr = Some(2),
            |v| matches!(v, Void::OtherChange { approved, applying } if approved == "infra-live#1" && applying == "infra-live#2"),
        ),
        (
            "no pr",
            |b| b.pr = None,
            |v| matches!(v, Void::OtherChange { .. }),
        ),
        (
            "commit",
            |b| b.commit = "0000new".into(),
            |v| matches!(v, Void::CommitDiffers { approved, applying } if approved == "9f3a12c0ffee" && applying == "0000new"),
        ),
        (
            "env",
            |b| b.env = "stage".into(),
            |v| matches!(v, Void::EnvDiffers { .. }),
        ),
        (
            "unit",
            |b| b.unit = "prod/eu-west-1/data".into(),
            |v| matches!(v, Void::UnitDiffers { .. }),
        ),
        (
            "plan digest",
            |b| b.subject = Subject::Plan("sha256:bbbb".into()),
            |v| matches!(v, Void::SubjectDiffers { applying: Subject::Plan(d), .. } if d == "sha256:bbbb"),
        ),
        (
            "rendered instead of plan",
            |b| b.subject = Subject::Rendered("sha256:aaaa".into()),
            |v| {
                matches!(
                    v,
                    Void::SubjectDiffers {
                        approved: Subject::Plan(_),
                        applying: Subject::Rendered(_)
                    }
                )
            },
        ),
        (
            "decision digest",
            |b| b.decision_digest = "sha256:eeee".into(),
            |v| matches!(v, Void::DecisionDiffers { .. }),
        ),
    ];
    for (field, mutate, expected) in cases {
        let mut applying = target();
        mutate(&mut applying);
        let e = eval_with(
            &applying,
            &[req(&[PLATFORM], 1)],
            &[approval("alice", &[PLATFORM])],
            &membership(),
            Counting::PerRequirement,
        );
        assert!(!e.all_met(), "{field}: a void approval must not count");
        let reasons = void_reasons(&e.approvals[0]);
        assert_eq!(reasons.len(), 1, "{field}: {reasons:?}");
        assert!(expected(&reasons[0]), "{field}: {reasons:?}");
        assert!(e.binding().is_empty());
    }
}

#[test]
fn rendered_digests_bind_like_plan_digests() {
    let mut applying = target();
    applying.subject = Subject::Rendered("sha256:r1".into());
    let mut a = approval("alice", &[PLATFORM]);
    a.binding.subject = Subject::Rendered("sha256:r1".into());
    let m = membership();
    let ok = eval_with(
        &applying,
        &[req(&[PLATFORM], 1)],
        &[a.clone()],
        &m,
        Counting::PerRequirement,
    );
    assert!(ok.all_met());
    a.binding.subject = Subject::Rendered("sha256:r0".into());
    let stale = eval_with(
        &applying,
        &[req(&[PLATFORM], 1)],
        &[a],
        &m,
        Counting::PerRequirement,
    );
    assert!(matches!(
        void_reasons(&stale.approvals[0]),
        [Void::SubjectDiffers { .. }]
    ));
}

#[test]
fn a_dismissed_approval_is_void() {
    let mut a = approval("alice", &[PLATFORM]);
    a.state = ApprovalState::Dismissed;
    let e = eval(&[req(&[PLATFORM], 1)], &[a], Counting::PerRequirement);
    assert!(!e.all_met());
    assert_eq!(void_reasons(&e.approvals[0]), &[Void::Dismissed]);
}

#[test]
fn a_later_dismissal_voids_the_approval_it_follows() {
    let given = approval("alice", &[PLATFORM]);
    let dismissed = Approval {
        state: ApprovalState::Dismissed,
        ..given.clone()
    };
    let reqs = [req(&[PLATFORM], 1)];
    let now = current(&[given.clone(), dismissed.clone()]);
    assert_eq!(now, vec![dismissed.clone()]);
    let e = eval(&reqs, &now, Counting::PerRequirement);
    assert!(!e.all_met());
    assert_eq!(void_reasons(&e.approvals[0]), &[Void::Dismissed]);
    // Approved again after the dismissal: it counts again.
    let again = current(&[given.clone(), dismissed, given.clone()]);
    assert_eq!(again, vec![given.clone()]);
    assert!(eval(&reqs, &again, Counting::PerRequirement).all_met());
    // A dismissal of another binding (an older commit's review) leaves this one standing.
    let older = Approval {
        binding: Binding {
            commit: "0ld".into(),
            ..target()
        },
        state: ApprovalState::Dismissed,
        ..given.clone()
    };
    let both = current(&[given.clone(), older.clone()]);
    assert_eq!(both, vec![given, older]);
    assert!(eval(&reqs, &both, Counting::PerRequirement).all_met());
}

#[test]
fn the_author_cannot_approve_their_own_change() {
    let e = eval(
        &[req(&[PLATFORM], 1)],
        &[approval("dave", &[PLATFORM])],
        Counting::PerRequirement,
    );
    assert!(!e.all_met());
    assert_eq!(void_reasons(&e.approvals[0]), &[Void::SelfApproval]);
    // Spelling the name differently does not make another person.
    let e = eval(
        &[req(&[PLATFORM], 1)],
        &[approval("DAVE", &[PLATFORM])],
        Counting::PerRequirement,
    );
    assert_eq!(void_reasons(&e.approvals[0]), &[Void::SelfApproval]);
}

#[test]
fn an_approver_who_left_every_group_is_void() {
    let mut m = membership();
    m.remove(PLATFORM, &pid("alice"));
    let e = eval_with(
        &target(),
        &[req(&[PLATFORM], 1)],
        &[approval("alice", &[PLATFORM])],
        &m,
        Counting::PerRequirement,
    );
    assert!(!e.all_met());
    assert_eq!(
        void_reasons(&e.approvals[0]),
        &[Void::LeftGroups {
            groups: vec![PLATFORM.into()]
        }]
    );
}

#[test]
fn an_approver_who_left_one_group_still_counts_for_the_other() {
    let mut m = membership();
    m.remove(SECURITY, &pid("bob"));
    let reqs = [req(&[SECURITY], 1), req(&[PLATFORM], 1)];
    let e = eval_with(
        &target(),
        &reqs,
        &[approval("bob", &[PLATFORM, SECURITY])],
        &m,
        Counting::PerRequirement,
    );
    assert_eq!(
        e.approvals[0],
        Standing::Binds {
            counts_for: vec![PLATFORM.into()],
            left: vec![SECURITY.into()]
        }
    );
    assert!(
        !e.requirements[0].is_met(),
        "left security: no longer counts for it"
    );
    assert!(e.requirements[1].is_met());
}

#[test]
fn an_approval_counts_only_for_the_teams_it_was_given_for() {
    // bob is in security, but approved only as platform.
    let e = eval(
        &[req(&[SECURITY], 1)],
        &[approval("bob", &[PLATFORM])],
        Counting::PerRequirement,
    );
    assert!(!e.all_met());
}

#[test]
fn joining_a_group_after_approving_does_not_count_for_it() {
    // carol claims platform although she was never in it: the claim is not honoured.
    let e = eval(
        &[req(&[PLATFORM], 1)],
        &[approval("carol", &[PLATFORM, SECURITY])],
        Counting::PerRequirement,
    );
    assert!(!e.all_met());
    assert!(
        matches!(&e.approvals[0], Standing::Binds { left, .. } if left == &vec![PLATFORM.to_string()])
    );
}

#[test]
fn all_void_reasons_are_listed_together() {
    let mut a = approval("dave", &[PLATFORM]);
    a.state = ApprovalState::Dismissed;
    a.binding.commit = "old".into();
    a.binding.decision_digest = "sha256:old".into();
    let e = eval(&[req(&[PLATFORM], 1)], &[a], Counting::PerRequirement);
    let reasons = void_reasons(&e.approvals[0]);
    assert!(matches!(
        reasons,
        [
            Void::CommitDiffers { .. },
            Void::DecisionDiffers { .. },
            Void::Dismissed,
            Void::SelfApproval
        ]
    ));
}

#[test]
fn one_person_counts_once_even_in_several_groups() {
    // Two approvals from platform or security: bob is in both and approved twice.
    let reqs = [req(&[PLATFORM, SECURITY], 2)];
    let e = eval(
        &reqs,
        &[
            approval("bob", &[PLATFORM, SECURITY]),
            approval("bob", &[SECURITY]),
        ],
        Counting::PerRequirement,
    );
    assert_eq!(
        e.requirements[0],
        Fulfilment::Missing {
            by: vec![Signoff {
                person: pid("bob"),
                via: PLATFORM.into(),
                subject: target().subject
            }],
            needed: 1
        }
    );
    let e = eval(
        &reqs,
        &[
            approval("bob", &[PLATFORM, SECURITY]),
            approval("carol", &[SECURITY]),
        ],
        Counting::PerRequirement,
    );
    assert!(e.all_met());
    assert_eq!(who(&e.requirements[0]), vec!["bob", "carol"]);
}

#[test]
fn distinct_groups_need_distinct_people_at_high_risk() {
    let reqs = [req(&[PLATFORM], 1), req(&[SECURITY], 1)];
    let bob = approval("bob", &[PLATFORM, SECURITY]);
    // Per requirement (R1–R3): bob meets both.
    assert!(
        eval(
            &reqs,
            std::slice::from_ref(&bob),
            Counting::for_risk(RiskLevel::R3)
        )
        .all_met()
    );
    // Distinct people (R4/R5): bob fills one slot, the other is missing.
    let e = eval(
        &reqs,
        std::slice::from_ref(&bob),
        Counting::for_risk(RiskLevel::R4),
    );
    assert_eq!(e.missing().len(), 1);
    // alice (platform only) arrives: bob moves to security, both are met.
    let e = eval(
        &reqs,
        &[bob, approval("alice", &[PLATFORM])],
        Counting::for_risk(RiskLevel::R5),
    );
    assert!(e.all_met());
    assert_eq!(who(&e.requirements[0]), vec!["alice"]);
    assert_eq!(who(&e.requirements[1]), vec!["bob"]);
}

#[test]
fn a_policy_require_approval_names_the_group_that_must_approve() {
    let policy = Requirement {
        approvers: vec![SECURITY.into()],
        count: 1,
        source: Source::Policy {
            rule: "sg_open_ingress".into(),
            message: "open ingress".into(),
        },
    };
    let reqs = [policy];
    let e = eval(
        &reqs,
        &[approval("alice", &[PLATFORM])],
        Counting::PerRequirement,
    );
    assert!(!e.all_met(), "platform cannot stand in for security");
    let e = eval(
        &reqs,
        &[approval("carol", &[SECURITY])],
        Counting::PerRequirement,
    );
    assert!(e.all_met());
}

#[test]
fn codeowners_users_and_emails_name_one_person() {
    let reqs = [req(&["@alice"], 1), req(&["carol@acme.example"], 1)];
    // Personal entries need no team claim.
    let e = eval(
        &reqs,
        &[approval("alice", &[]), approval("carol", &[])],
        Counting::PerRequirement,
    );
    assert!(e.all_met());
    assert_eq!(e.requirements[0].signoffs()[0].via, "@alice");
    let e = eval(
        &reqs,
        &[approval("bob", &[PLATFORM])],
        Counting::PerRequirement,
    );
    assert_eq!(e.missing(), vec![0, 1]);
}

#[test]
fn degenerate_requirements() {
    let e = eval(
        &[req(&[PLATFORM], 0), req(&[], 1)],
        &[approval("alice", &[PLATFORM])],
        Counting::DistinctPeople,
    );
    assert_eq!(e.requirements[0], Fulfilment::Met { by: vec![] });
    assert_eq!(
        e.requirements[1],
        Fulfilment::Missing {
            by: vec![],
            needed: 1
        }
    );
}

#[test]
fn void_reasons_read_as_sentences() {
    let mut applying = target();
    applying.commit = "new".into();
    applying.subject = Subject::Plan("sha256:bbbb".into());
    let reasons = target().differences(&applying);
    let text: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![
            "approves commit 9f3a12c0ffee, but new is being applied (a push voids approvals)",
            "approves plan sha256:aaaa, but plan sha256:bbbb is being applied (a new plan needs a new approval)",
        ]
    );
    assert_eq!(
        Void::LeftGroups {
            groups: vec![PLATFORM.into(), SECURITY.into()]
        }
        .to_string(),
        "the approver no longer belongs to @acme/platform, @acme/security"
    );
}

#[test]
fn approvals_round_trip_through_json() {
    let a = approval("alice", &[PLATFORM]);
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["binding"]["subject"]["kind"], "plan");
    assert_eq!(json["approver"], "alice");
    let back: Approval = serde_json::from_value(json).unwrap();
    assert_eq!(back, a);
    let change = target().change_id();
    assert_eq!(
        Binding::new(&change, target().subject, "sha256:dddd"),
        target()
    );
}

// ---------------------------------------------------------------------------------------------
// Properties over random approvals, membership and requirements.

const PEOPLE: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
const PRINCIPALS: [&str; 5] = [
    PLATFORM,
    SECURITY,
    "@acme/dba",
    "@erin",
    "carol@acme.example",
];

fn arb_membership() -> impl Strategy<Value = Membership> {
    proptest::collection::vec((0usize..5, 0usize..5), 0..16).prop_map(|pairs| {
        let mut m = Membership::default();
        for (p, g) in pairs {
            m.add(PRINCIPALS[g], &pid(PEOPLE[p]));
        }
        m
    })
}

fn arb_binding() -> impl Strategy<Value = Binding> {
    // Mostly the target; sometimes off in one field.
    (0usize..12).prop_map(|k| {
        let mut b = target();
        match k {
            0 => b.commit = "other".into(),
            1 => b.subject = Subject::Plan("sha256:other".into()),
            2 => b.decision_digest = "sha256:other".into(),
            3 => b.env = "dev".into(),
            _ => {}
        }
        b
    })
}

fn arb_approval() -> impl Strategy<Value = Approval> {
    (
        arb_binding(),
        0usize..5,
        proptest::collection::btree_set(0usize..3, 0..3),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(binding, p, groups, dismissed)| Approval {
            binding,
            approver: pid(PEOPLE[p]),
            groups: groups
                .into_iter()
                .map(|g| PRINCIPALS[g].to_string())
                .collect(),
            state: if dismissed {
                ApprovalState::Dismissed
            } else {
                ApprovalState::Given
            },
        })
}

fn arb_requirements() -> impl Strategy<Value = Vec<Requirement>> {
    proptest::collection::vec(
        (proptest::collection::btree_set(0usize..5, 1..3), 0u32..4),
        0..5,
    )
    .prop_map(|rs| {
        rs.into_iter()
            .map(|(ps, count)| {
                let names: Vec<&str> = ps.into_iter().map(|i| PRINCIPALS[i]).collect();
                req(&names, count)
            })
            .collect()
    })
}

fn arb_counting() -> impl Strategy<Value = Counting> {
    prop_oneof![
        Just(Counting::PerRequirement),
        Just(Counting::DistinctPeople)
    ]
}

proptest! {
    /// Adding an approval never un-meets a requirement when counting per requirement, nor
    /// when it comes from someone new; and it never turns "all met" into "not all met".
    ///
    /// (An extra approval from someone already counted, for another team, may move them to an
    /// earlier requirement under distinct counting: with one person and two requirements only
    /// one can be met, and which one cannot depend on the order the approvals arrived in.)
    #[test]
    fn adding_an_approval_never_unmeets(
        m in arb_membership(),
        reqs in arb_requirements(),
        approvals in proptest::collection::vec(arb_approval(), 0..6),
        extra in arb_approval(),
        at in 0usize..7,
        counting in arb_counting(),
    ) {
        let before = eval_with(&target(), &reqs, &approvals, &m, counting);
        let newcomer = approvals.iter().all(|a| a.approver != extra.approver);
        let mut more = approvals.clone();
        more.insert(at.min(more.len()), extra);
        let after = eval_with(&target(), &reqs, &more, &m, counting);
        prop_assert!(!before.all_met() || after.all_met());
        if counting == Counting::PerRequirement || newcomer {
            for (i, (b, a)) in before.requirements.iter().zip(&after.requirements).enumerate() {
                prop_assert!(!b.is_met() || a.is_met(), "requirement {} un-met: {:?} -> {:?}", i, b, a);
            }
        }
    }

    /// One person never fills two slots: within a requirement always, across requirements when
    /// counting distinct people.
    #[test]
    fn one_person_never_fills_two_slots(
        m in arb_membership(),
        reqs in arb_requirements(),
        approvals in proptest::collection::vec(arb_approval(), 0..8),
        counting in arb_counting(),
    ) {
        let e = eval_with(&target(), &reqs, &approvals, &m, counting);
        let mut everyone = BTreeSet::new();
        for (r, f) in reqs.iter().zip(&e.requirements) {
            let mut within = BTreeSet::new();
            prop_assert!(f.signoffs().len() as u32 <= r.count);
            for s in f.signoffs() {
                prop_assert!(within.insert(&s.person), "{} twice in one requirement", s.person);
                if counting == Counting::DistinctPeople {
                    prop_assert!(everyone.insert(&s.person), "{} in two requirements", s.person);
                }
            }
        }
    }

    /// Every signoff is backed by a binding approval of a non-author who holds the entry it
    /// counted as; a requirement is met exactly when it has `count` signoffs.
    #[test]
    fn every_signoff_is_justified(
        m in arb_membership(),
        reqs in arb_requirements(),
        approvals in proptest::collection::vec(arb_approval(), 0..8),
        counting in arb_counting(),
    ) {
        let e = eval_with(&target(), &reqs, &approvals, &m, counting);
        for (r, f) in reqs.iter().zip(&e.requirements) {
            prop_assert_eq!(f.is_met(), f.signoffs().len() as u32 >= r.count);
            for s in f.signoffs() {
                prop_assert!(r.approvers.contains(&s.via));
                prop_assert!(m.holds(&s.person, &s.via));
                prop_assert!(!AUTHORS.contains(&s.person.as_str()));
                prop_assert_eq!(&s.subject, &target().subject);
                let backed = approvals.iter().zip(&e.approvals).any(|(a, st)| {
                    a.approver == s.person
                        && a.binding == target()
                        && a.state == ApprovalState::Given
                        && matches!(st, Standing::Binds { .. })
                        && (!is_team(&s.via) || a.groups.contains(&s.via))
                });
                prop_assert!(backed, "{:?} not backed by a binding approval", s);
            }
        }
    }

    /// The order approvals arrive in does not change what is met.
    #[test]
    fn order_of_approvals_does_not_matter(
        m in arb_membership(),
        reqs in arb_requirements(),
        approvals in proptest::collection::vec(arb_approval(), 0..8),
        counting in arb_counting(),
    ) {
        let forward = eval_with(&target(), &reqs, &approvals, &m, counting);
        let mut reversed = approvals.clone();
        reversed.reverse();
        let backward = eval_with(&target(), &reqs, &reversed, &m, counting);
        prop_assert_eq!(forward.requirements, backward.requirements);
    }

    /// Distinct counting meets every requirement exactly when some assignment of distinct
    /// people to all slots exists (checked by brute force over small cases).
    #[test]
    fn distinct_counting_finds_an_assignment_when_one_exists(
        m in arb_membership(),
        reqs in arb_requirements(),
        approvals in proptest::collection::vec(arb_approval(), 0..8),
    ) {
        let e = eval_with(&target(), &reqs, &approvals, &m, Counting::DistinctPeople);
        let per = eval_with(&target(), &reqs, &approvals, &m, Counting::PerRequirement);
        // Who could count for each requirement, ignoring distinctness.
        let mut slots: Vec<BTreeSet<&PersonId>> = Vec::new();
        let eligible: Vec<BTreeSet<&PersonId>> = reqs
            .iter()
            .map(|r| {
                approvals
                    .iter()
                    .zip(&per.approvals)
                    .filter(|(_, s)| matches!(s, Standing::Binds { .. }))
                    .filter(|(a, s)| r.approvers.iter().any(|p| {
                        m.holds(&a.approver, p)
                            && (!is_team(p) || matches!(s, Standing::Binds { counts_for, .. } if counts_for.contains(p)))
                    }))
                    .map(|(a, _)| &a.approver)
                    .collect()
            })
            .collect();
        for (r, el) in reqs.iter().zip(&eligible) {
            for _ in 0..r.count {
                slots.push(el.clone());
            }
        }
        fn assign<'a>(slots: &[BTreeSet<&'a PersonId>], used: &mut Vec<&'a PersonId>) -> bool {
            let Some((first, rest)) = slots.split_first() else { return true };
            for p in first {
                if !used.contains(p) {
                    used.push(p);
                    if assign(rest, used) {
                        return true;
                    }
                    used.pop();
                }
            }
            false
        }
        let possible = slots.len() <= PEOPLE.len() && assign(&slots, &mut Vec::new());
        prop_assert_eq!(e.all_met(), possible);
    }

    /// Changing any one bound field of what is applied voids an approval of the original.
    #[test]
    fn changing_a_bound_field_voids(field in 0usize..7, value in "[a-z0-9]{1,8}") {
        let mut applying = target();
        match field {
            0 => applying.repo = format!("r-{value}"),
            1 => applying.pr = Some(100 + value.len() as u64),
            2 => applying.commit = format!("c-{value}"),
            3 => applying.env = format!("e-{value}"),
            4 => applying.unit = format!("u-{value}"),
            5 => applying.subject = Subject::Plan(format!("p-{value}")),
            _ => applying.decision_digest = format!("d-{value}"),
        }
        let authors = [pid("dave")];
        let s = standing(
            &approval("alice", &[PLATFORM]),
            Applying { binding: &applying, authors: &authors },
            &membership(),
        );
        prop_assert!(matches!(&s, Standing::Void { reasons } if reasons.len() == 1), "{:?}", s);
    }
}
