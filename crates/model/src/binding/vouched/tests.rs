use super::*;
use crate::approval::{Requirement, Source};
use crate::binding::{
    Applying, ApprovalState, Binding, Counting, Evaluation, Standing, Subject, Void, evaluate,
};
use crate::people::Person;
use crate::risk::RiskLevel;

const PLATFORM: &str = "@acme/platform";
const SECURITY: &str = "@acme/security";

fn pid(name: &str) -> PersonId {
    PersonId::new(name)
}

fn target() -> Binding {
    Binding {
        repo: "infra-live".into(),
        pr: Some(7),
        commit: "9f3a12c0ffee".into(),
        env: "prod".into(),
        unit: "prod/eu-west-1/network".into(),
        subject: Subject::Plan("sha256:aaaa".into()),
        decision_digest: "sha256:dddd".into(),
    }
}

/// `people:` with alice (platform) and carol (security); dave authored the change's commits.
fn people() -> People {
    let person = |email: &str, groups: &[&str]| Person {
        emails: vec![email.into()],
        groups: groups.iter().map(|g| g.to_string()).collect(),
        keys: vec![],
    };
    People::new([
        (pid("alice"), person("alice@acme.example", &[PLATFORM])),
        (pid("carol"), person("carol@acme.example", &[SECURITY])),
        (pid("dave"), person("dave@acme.example", &[PLATFORM])),
    ])
}

fn approval(who: &str, groups: &[&str], binding: Binding, state: ApprovalState) -> Approval {
    Approval {
        binding,
        approver: pid(who),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        state,
    }
}

fn signed(who: &str, groups: &[&str]) -> Vouched {
    Vouched {
        approval: approval(who, groups, target(), ApprovalState::Given),
        voucher: Voucher::Person,
    }
}

fn review_of(who: &str, groups: &[&str], binding: Binding, state: ApprovalState) -> Vouched {
    Vouched {
        approval: approval(who, groups, binding, state),
        voucher: Voucher::Server {
            pr_author: pid("github:octocat"),
        },
    }
}

fn review(who: &str, groups: &[&str]) -> Vouched {
    review_of(who, groups, target(), ApprovalState::Given)
}

fn dismissal(who: &str, groups: &[&str]) -> Vouched {
    review_of(who, groups, target(), ApprovalState::Dismissed)
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

/// Admit `records` and evaluate them against the target, as the apply gate does.
fn judge(records: &[Vouched], reqs: &[Requirement], counting: Counting) -> (Admitted, Evaluation) {
    let admitted = admit(records, &people(), &[pid("dave")]);
    let e = evaluate(
        Applying {
            binding: &target(),
            authors: &admitted.authors,
        },
        reqs,
        &admitted.approvals,
        &admitted.membership,
        counting,
    );
    (admitted, e)
}

fn met_by(e: &Evaluation, r: usize) -> Vec<String> {
    e.requirements[r]
        .signoffs()
        .iter()
        .map(|s| s.person.to_string())
        .collect()
}

fn reasons(s: &Standing) -> Vec<Void> {
    match s {
        Standing::Void { reasons } => reasons.clone(),
        Standing::Binds { .. } => panic!("expected void, got {s:?}"),
    }
}

#[test]
fn a_registered_persons_signed_approval_counts_for_their_current_groups() {
    let (a, e) = judge(
        &[signed("alice", &[PLATFORM])],
        &[req(&[PLATFORM], 1)],
        Counting::PerRequirement,
    );
    assert!(a.rejected.is_empty());
    assert!(e.all_met());
    assert_eq!(met_by(&e, 0), ["alice"]);
}

#[test]
fn a_person_signed_record_of_an_unregistered_name_is_rejected() {
    let (a, e) = judge(
        &[signed("mallory", &[PLATFORM])],
        &[req(&[PLATFORM], 1)],
        Counting::PerRequirement,
    );
    assert_eq!(
        a.rejected,
        [(
            0,
            Rejection::UnknownPerson {
                approver: pid("mallory")
            }
        )]
    );
    assert!(a.approvals.is_empty());
    assert!(!e.all_met());
}

#[test]
fn a_server_vouches_only_for_github_reviewers_never_for_registered_people() {
    // A server key standing in for alice's own signature would make `people:` keys pointless.
    let mut forged = review("alice", &[PLATFORM]);
    forged.approval.approver = pid("alice");
    let (a, e) = judge(&[forged], &[req(&[PLATFORM], 1)], Counting::PerRequirement);
    assert_eq!(
        a.rejected,
        [(
            0,
            Rejection::NotAReviewer {
                approver: pid("alice")
            }
        )]
    );
    assert!(!e.all_met());
    assert!(
        !a.authors.contains(&pid("github:octocat")),
        "a rejected record adds nothing"
    );
}

#[test]
fn a_review_counts_for_the_teams_github_reported_and_for_the_login() {
    let (a, e) = judge(
        &[review("github:erin", &[PLATFORM])],
        &[req(&[PLATFORM], 1), req(&["@erin"], 1)],
        Counting::PerRequirement,
    );
    assert!(a.membership.holds(&pid("github:erin"), PLATFORM));
    assert!(a.membership.holds(&pid("github:erin"), "@erin"));
    assert!(e.all_met(), "{e:?}");
    assert_eq!(met_by(&e, 0), ["github:erin"]);
    assert_eq!(met_by(&e, 1), ["github:erin"]);
}

#[test]
fn a_review_cannot_claim_a_team_github_did_not_report() {
    // erin is not in security (GitHub said so by leaving it out); nor does alice's `people:`
    // entry lend its groups to github:alice.
    let (a, e) = judge(
        &[review("github:erin", &[]), review("github:alice", &[])],
        &[req(&[SECURITY], 1), req(&[PLATFORM], 1)],
        Counting::PerRequirement,
    );
    assert!(!a.membership.holds(&pid("github:alice"), PLATFORM));
    assert_eq!(e.missing(), vec![0, 1]);
}

#[test]
fn a_dismissal_recorded_after_the_approval_voids_it() {
    let (a, e) = judge(
        &[
            review("github:erin", &[PLATFORM]),
            dismissal("github:erin", &[PLATFORM]),
        ],
        &[req(&[PLATFORM], 1)],
        Counting::PerRequirement,
    );
    assert_eq!(a.approvals.len(), 1, "one record per approver and binding");
    assert_eq!(a.approvals[0].state, ApprovalState::Dismissed);
    assert!(!e.all_met());
    assert_eq!(reasons(&e.approvals[0]), [Void::Dismissed]);
}

#[test]
fn a_new_approval_after_a_dismissal_counts_again() {
    let (_, e) = judge(
        &[
            review("github:erin", &[PLATFORM]),
            dismissal("github:erin", &[PLATFORM]),
            review("github:erin", &[PLATFORM]),
        ],
        &[req(&[PLATFORM], 1)],
        Counting::PerRequirement,
    );
    assert!(e.all_met());
}

#[test]
fn a_dismissal_of_a_review_of_another_commit_leaves_this_approval_standing() {
    let older = Binding {
        commit: "0ld".into(),
        ..target()
    };
    let (a, e) = judge(
        &[
            review("github:erin", &[PLATFORM]),
            review_of("github:erin", &[PLATFORM], older, ApprovalState::Dismissed),
        ],
        &[req(&[PLATFORM], 1)],
        Counting::PerRequirement,
    );
    assert_eq!(a.approvals.len(), 2);
    assert!(e.all_met());
    assert_eq!(e.binding(), vec![0]);
}

#[test]
fn a_persons_approval_is_not_dismissed_by_a_review_dismissal() {
    let (_, e) = judge(
        &[
            signed("alice", &[PLATFORM]),
            review("github:erin", &[PLATFORM]),
            dismissal("github:erin", &[PLATFORM]),
        ],
        &[req(&[PLATFORM], 1)],
        Counting::PerRequirement,
    );
    assert!(e.all_met());
    assert_eq!(met_by(&e, 0), ["alice"]);
}

#[test]
fn the_pr_author_named_in_a_signed_review_cannot_approve() {
    let (a, e) = judge(
        &[review("github:octocat", &[PLATFORM])],
        &[req(&[PLATFORM], 1)],
        Counting::PerRequirement,
    );
    assert!(a.authors.contains(&pid("github:octocat")));
    assert!(a.authors.contains(&pid("dave")), "the commit authors stay");
    assert!(!e.all_met());
    assert_eq!(reasons(&e.approvals[0]), [Void::SelfApproval]);
}

#[test]
fn a_commit_author_among_people_still_cannot_approve_next_to_reviews() {
    let (_, e) = judge(
        &[signed("dave", &[PLATFORM]), review("github:erin", &[])],
        &[req(&[PLATFORM], 1)],
        Counting::PerRequirement,
    );
    assert!(!e.all_met());
    assert!(reasons(&e.approvals[0]).contains(&Void::SelfApproval));
}

#[test]
fn teams_come_from_the_reviewers_latest_review() {
    // GitHub said erin was in platform at the first review and in no team at the second (of
    // another commit): she left, so her first approval no longer counts for platform.
    let other = Binding {
        commit: "newer".into(),
        ..target()
    };
    let (a, e) = judge(
        &[
            review("github:erin", &[PLATFORM]),
            review_of("github:erin", &[], other, ApprovalState::Given),
        ],
        &[req(&[PLATFORM], 1)],
        Counting::PerRequirement,
    );
    assert!(!a.membership.holds(&pid("github:erin"), PLATFORM));
    assert!(!e.all_met());
    assert_eq!(
        reasons(&e.approvals[0]),
        [Void::LeftGroups {
            groups: vec![PLATFORM.into()]
        }]
    );
}

#[test]
fn every_binding_rule_voids_a_review_approval() {
    type Change = fn(&mut Binding);
    type Expect = fn(&Void) -> bool;
    let cases: [(Change, Expect); 6] = [
        (
            |b| b.commit = "other".into(),
            |v| matches!(v, Void::CommitDiffers { .. }),
        ),
        (
            |b| b.subject = Subject::Plan("sha256:bbbb".into()),
            |v| matches!(v, Void::SubjectDiffers { .. }),
        ),
        (
            |b| b.decision_digest = "sha256:eeee".into(),
            |v| matches!(v, Void::DecisionDiffers { .. }),
        ),
        (
            |b| b.env = "dev".into(),
            |v| matches!(v, Void::EnvDiffers { .. }),
        ),
        (
            |b| b.unit = "prod/eu-west-1/db".into(),
            |v| matches!(v, Void::UnitDiffers { .. }),
        ),
        (
            |b| b.pr = Some(8),
            |v| matches!(v, Void::OtherChange { .. }),
        ),
    ];
    for (change, expected) in cases {
        let mut approved = target();
        change(&mut approved);
        let (_, e) = judge(
            &[review_of(
                "github:erin",
                &[PLATFORM],
                approved,
                ApprovalState::Given,
            )],
            &[req(&[PLATFORM], 1)],
            Counting::PerRequirement,
        );
        assert!(!e.all_met());
        let r = reasons(&e.approvals[0]);
        assert!(r.len() == 1 && expected(&r[0]), "{r:?}");
    }
}

#[test]
fn distinct_groups_need_distinct_people_across_sources() {
    let reqs = [req(&[PLATFORM], 1), req(&[SECURITY], 1)];
    // One reviewer in both teams fills one slot only.
    let (_, e) = judge(
        &[review("github:erin", &[PLATFORM, SECURITY])],
        &reqs,
        Counting::DistinctPeople,
    );
    assert_eq!(e.missing().len(), 1);
    // A reviewer and a registered person fill both.
    let (_, e) = judge(
        &[
            review("github:erin", &[PLATFORM, SECURITY]),
            signed("carol", &[SECURITY]),
        ],
        &reqs,
        Counting::DistinctPeople,
    );
    assert!(e.all_met(), "{e:?}");
    assert_eq!(met_by(&e, 0), ["github:erin"]);
    assert_eq!(met_by(&e, 1), ["carol"]);
}

#[test]
fn one_reviewer_counts_once_however_many_reviews() {
    let (_, e) = judge(
        &[
            review("github:erin", &[PLATFORM]),
            review("github:Erin", &[PLATFORM]),
        ],
        &[req(&[PLATFORM], 2)],
        Counting::PerRequirement,
    );
    assert!(!e.all_met());
    assert_eq!(met_by(&e, 0), ["github:erin"]);
}

#[test]
fn nothing_recorded_admits_people_membership_only() {
    let a = admit(&[], &people(), &[pid("dave")]);
    assert!(a.approvals.is_empty() && a.rejected.is_empty());
    assert_eq!(a.authors, [pid("dave")]);
    assert_eq!(a.membership, people().membership());
}
