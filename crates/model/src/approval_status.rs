//! What `sluice pr` (and the check run) says of each approval requirement of a recorded
//! change: met, by whom and for which plan digest, or missing and how many more are needed;
//! plus the recorded approvals that do not count, with why. A pure summary of
//! [`crate::binding::evaluate`]'s answer, so that the report and the apply gate can never
//! disagree about who counted.

use serde::Serialize;

use crate::approval::Requirement;
use crate::binding::{Approval, Evaluation, Fulfilment, Standing};

/// The approval requirements of one change against its recorded approvals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalStatus {
    /// The plan (or rendered) digest the approvals were judged against: the one an apply
    /// would apply.
    pub digest: String,
    pub decision_digest: String,
    pub all_met: bool,
    /// In the order of the decision's `approvals`.
    pub requirements: Vec<RequirementStatus>,
    /// Recorded approvals that count for nothing, with why (another plan, self-approval, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub void: Vec<VoidApproval>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Met {
    Met,
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequirementStatus {
    /// The requirement's approvers (any of them), as the decision lists them.
    pub approvers: Vec<String>,
    pub count: u32,
    pub status: Met,
    /// Who counted towards it (at most `count`).
    pub by: Vec<MetBy>,
    /// How many more approvals it needs (0 when met).
    pub needed: u32,
}

/// One person counted towards a requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetBy {
    pub person: String,
    /// The approver entry they counted as (a team, `@login` or email).
    pub via: String,
    /// What they approved: always the digest being judged (only binding approvals count).
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoidApproval {
    pub person: String,
    /// Each reason in words.
    pub reasons: Vec<String>,
}

/// Summarise `evaluation` (the answer of `evaluate` over `requirements` and `approvals`, in
/// that order) for the report.
pub fn summarise(
    requirements: &[Requirement],
    approvals: &[Approval],
    evaluation: &Evaluation,
    digest: &str,
    decision_digest: &str,
) -> ApprovalStatus {
    let requirements: Vec<RequirementStatus> = requirements
        .iter()
        .zip(&evaluation.requirements)
        .map(|(r, f)| {
            let (status, needed) = match f {
                Fulfilment::Met { .. } => (Met::Met, 0),
                Fulfilment::Missing { needed, .. } => (Met::Missing, *needed),
            };
            RequirementStatus {
                approvers: r.approvers.clone(),
                count: r.count,
                status,
                by: f
                    .signoffs()
                    .iter()
                    .map(|s| MetBy {
                        person: s.person.as_str().to_string(),
                        via: s.via.clone(),
                        digest: s.subject.digest().to_string(),
                    })
                    .collect(),
                needed,
            }
        })
        .collect();
    let void = approvals
        .iter()
        .zip(&evaluation.approvals)
        .filter_map(|(a, s)| match s {
            Standing::Void { reasons } => Some(VoidApproval {
                person: a.approver.as_str().to_string(),
                reasons: reasons.iter().map(ToString::to_string).collect(),
            }),
            Standing::Binds { .. } => None,
        })
        .collect();
    ApprovalStatus {
        digest: digest.to_string(),
        decision_digest: decision_digest.to_string(),
        all_met: requirements.iter().all(|r| r.status == Met::Met),
        requirements,
        void,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::Source;
    use crate::binding::{
        Applying, ApprovalState, Binding, Counting, Membership, Subject, evaluate,
    };
    use crate::people::PersonId;
    use crate::risk::RiskLevel;

    fn target(digest: &str) -> Binding {
        Binding {
            repo: "infra-live".into(),
            pr: Some(1),
            commit: "9f3a12c0ffee".into(),
            env: "dev".into(),
            unit: "dev/eu-west-1/app".into(),
            subject: Subject::Plan(digest.into()),
            decision_digest: "sha256:dddd".into(),
        }
    }

    fn req(group: &str) -> Requirement {
        Requirement {
            approvers: vec![group.to_string()],
            count: 1,
            source: Source::Risk {
                risk: RiskLevel::R3,
                configured: RiskLevel::R3,
            },
        }
    }

    fn approval(who: &str, group: &str, digest: &str) -> Approval {
        Approval {
            binding: target(digest),
            approver: PersonId::new(who),
            groups: vec![group.to_string()],
            state: ApprovalState::Given,
        }
    }

    fn status(approvals: &[Approval]) -> ApprovalStatus {
        let mut m = Membership::default();
        m.add("@acme/platform", &PersonId::new("alice"));
        m.add("@acme/platform", &PersonId::new("bob"));
        m.add("@acme/security", &PersonId::new("carol"));
        let reqs = [req("@acme/platform"), req("@acme/security")];
        let applying = target("sha256:aaaa");
        let authors = [PersonId::new("bob")];
        let evaluation = evaluate(
            Applying {
                binding: &applying,
                authors: &authors,
            },
            &reqs,
            approvals,
            &m,
            Counting::PerRequirement,
        );
        summarise(&reqs, approvals, &evaluation, "sha256:aaaa", "sha256:dddd")
    }

    #[test]
    fn met_names_the_person_and_the_digest_missing_says_how_many() {
        let s = status(&[approval("alice", "@acme/platform", "sha256:aaaa")]);
        assert!(!s.all_met);
        assert_eq!(s.requirements[0].status, Met::Met);
        assert_eq!(
            s.requirements[0].by,
            vec![MetBy {
                person: "alice".into(),
                via: "@acme/platform".into(),
                digest: "sha256:aaaa".into(),
            }]
        );
        assert_eq!(s.requirements[0].needed, 0);
        assert_eq!(s.requirements[1].status, Met::Missing);
        assert!(s.requirements[1].by.is_empty());
        assert_eq!(s.requirements[1].needed, 1);
        assert!(s.void.is_empty());
    }

    #[test]
    fn approvals_of_another_plan_or_by_the_author_are_listed_as_void() {
        let s = status(&[
            approval("carol", "@acme/security", "sha256:old"),
            approval("bob", "@acme/platform", "sha256:aaaa"),
        ]);
        assert!(s.requirements.iter().all(|r| r.status == Met::Missing));
        let void: Vec<(&str, usize)> = s
            .void
            .iter()
            .map(|v| (v.person.as_str(), v.reasons.len()))
            .collect();
        assert_eq!(void, vec![("carol", 1), ("bob", 1)]);
        assert!(s.void[0].reasons[0].contains("a new plan needs a new approval"));
        assert!(s.void[1].reasons[0].contains("authored"));
    }

    #[test]
    fn all_met_when_every_requirement_is() {
        let s = status(&[
            approval("alice", "@acme/platform", "sha256:aaaa"),
            approval("carol", "@acme/security", "sha256:aaaa"),
        ]);
        assert!(s.all_met);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["requirements"][1]["status"], "met");
        assert_eq!(json["requirements"][1]["by"][0]["person"], "carol");
        assert!(json.get("void").is_none());
    }
}
