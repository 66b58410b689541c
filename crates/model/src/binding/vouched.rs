//! Which recorded approvals an apply may count, and under which membership (issue 11 item 1).
//!
//! Approvals reach the store from two sources, each vouched for by a different signature, which
//! the evidence adapter checks before anything here runs:
//!
//! - **a person**: `sluice approve --as NAME --key FILE`, signed with a key registered for NAME
//!   under `people:` in the base revision's `sluice.yaml`; NAME's groups are what `people:`
//!   says *now*;
//! - **a trusted server**: a GitHub review (`pull_request_review` submitted or dismissed) that
//!   `sluice serve` recorded and signed with its evidence key, a key the apply trusts (the
//!   evidence key of the log it records into, or one listed in `apply.review_signers`). The
//!   approver is `github:<login>`; the groups are the teams GitHub reported the reviewer in when
//!   the review was recorded, and the signed record names the PR's author, who can never count.
//!
//! [`admit`] turns the verified records into the three inputs of
//! [`crate::binding::evaluate`]: the approvals as they stand (the latest record per approver and
//! binding, so a later dismissal voids an approval: [`crate::binding::current`]), the membership
//! they are judged under, and the authors barred from approving. Every binding rule (commit,
//! plan digest, decision digest, environment, unit, self-approval, groups left, distinct people
//! for R4/R5) is then `evaluate`'s, the same for both sources.

use serde::{Deserialize, Serialize};

use crate::binding::{Approval, Membership, current};
use crate::people::{People, PersonId};

/// The prefix of approvers that come from GitHub reviews.
pub const GITHUB_PREFIX: &str = "github:";

/// What a server signs for a GitHub review: the approval (or its dismissal) and the PR author
/// GitHub named, so that an apply run far from GitHub still bars the author.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewApproval {
    pub approval: Approval,
    /// `github:<login>` of the pull request's author.
    pub pr_author: PersonId,
    /// GitHub's review id.
    pub review: u64,
}

/// Who vouches for an approval record (its signature already verified by the adapter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Voucher {
    /// Signed by the approver's own key registered under `people:`.
    Person,
    /// Signed by a trusted server recording a GitHub review.
    Server { pr_author: PersonId },
}

/// One verified approval record, in the order it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouched {
    pub approval: Approval,
    pub voucher: Voucher,
}

/// Why a verified record is still not admitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Rejection {
    /// A person-signed record for a name `people:` does not register (any more).
    #[error("{approver} is not registered under `people:` in the base revision's sluice.yaml")]
    UnknownPerson { approver: PersonId },
    /// A server vouches only for GitHub reviewers: anything else would let a server key stand
    /// in for a registered person's own signature.
    #[error(
        "a server-signed approval must name a GitHub reviewer (`github:<login>`), not {approver}"
    )]
    NotAReviewer { approver: PersonId },
}

/// What an apply judges approvals with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admitted {
    /// The records that stand ([`current`] over the admitted records, in record order).
    pub approvals: Vec<Approval>,
    /// `people:` membership now, plus each GitHub reviewer's `@login` and the teams GitHub
    /// reported them in at their latest recorded review.
    pub membership: Membership,
    /// The change's authors: the ones given, and every PR author a server-signed record names.
    pub authors: Vec<PersonId>,
    /// Records left out, by index into the input, with why.
    pub rejected: Vec<(usize, Rejection)>,
}

/// The approvals, membership and authors an apply (or `sluice pr`) evaluates, from verified
/// `records` in record order, the base revision's `people` and the authors found from commit
/// emails (`authors`).
pub fn admit(records: &[Vouched], people: &People, authors: &[PersonId]) -> Admitted {
    let mut out = Admitted {
        membership: people.membership(),
        authors: authors.to_vec(),
        ..Admitted::default()
    };
    let mut admitted: Vec<Approval> = Vec::new();
    // Latest record per GitHub reviewer: the freshest word from GitHub on their teams.
    let mut latest_review: Vec<&Approval> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let approver = &record.approval.approver;
        match &record.voucher {
            Voucher::Person => {
                if people.get(approver.as_str()).is_none() {
                    let approver = approver.clone();
                    out.rejected
                        .push((i, Rejection::UnknownPerson { approver }));
                    continue;
                }
            }
            Voucher::Server { pr_author } => {
                if !approver.as_str().starts_with(GITHUB_PREFIX) {
                    let approver = approver.clone();
                    out.rejected.push((i, Rejection::NotAReviewer { approver }));
                    continue;
                }
                if !out.authors.contains(pr_author) {
                    out.authors.push(pr_author.clone());
                }
                latest_review.retain(|a| a.approver != *approver);
                latest_review.push(&record.approval);
            }
        }
        admitted.push(record.approval.clone());
    }
    for review in latest_review {
        let login = &review.approver.as_str()[GITHUB_PREFIX.len()..];
        out.membership.add(&format!("@{login}"), &review.approver);
        for g in &review.groups {
            out.membership.add(g, &review.approver);
        }
    }
    out.approvals = current(&admitted);
    out
}

#[cfg(test)]
mod tests;
