//! Approval records and the binding rules (DESIGN.md §3 "Approval", stage 6): an approval
//! counts only for the exact thing it approved — the change, commit, plan or rendered digest,
//! policy decision digest, environment and unit — and only while its approver still holds the
//! groups it counted for. [`evaluate`] says, for every requirement of [`crate::approval`],
//! whether it is met (by whom, for which digest) or missing, and for every approval why it is
//! void, so the PR report, the check run and the apply gate all read one answer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::approval::Requirement;
use crate::change::ChangeId;
use crate::people::PersonId;
use crate::risk::RiskLevel;

/// What an approval is of: a stack's saved plan file or an app's rendered manifests, each
/// identified by its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "digest")]
pub enum Subject {
    Plan(String),
    Rendered(String),
}

impl Subject {
    pub fn digest(&self) -> &str {
        match self {
            Subject::Plan(d) | Subject::Rendered(d) => d,
        }
    }

    fn noun(&self) -> &'static str {
        match self {
            Subject::Plan(_) => "plan",
            Subject::Rendered(_) => "rendered manifests",
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.noun(), self.digest())
    }
}

/// Everything an approval is bound to; the same shape describes what is being applied, so
/// "does it bind" is a field-by-field comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Binding {
    pub repo: String,
    /// The PR; `None` for a change without one (break-glass, a local run).
    pub pr: Option<u64>,
    pub commit: String,
    pub env: String,
    pub unit: String,
    pub subject: Subject,
    /// Digest of the policy decision record the approver saw.
    pub decision_digest: String,
}

impl Binding {
    pub fn new(change: &ChangeId, subject: Subject, decision_digest: impl Into<String>) -> Self {
        Binding {
            repo: change.repo.clone(),
            pr: change.pr,
            commit: change.commit.clone(),
            env: change.env.clone(),
            unit: change.unit.clone(),
            subject,
            decision_digest: decision_digest.into(),
        }
    }

    pub fn change_id(&self) -> ChangeId {
        ChangeId {
            repo: self.repo.clone(),
            pr: self.pr,
            commit: self.commit.clone(),
            env: self.env.clone(),
            unit: self.unit.clone(),
        }
    }

    /// Every way an approval of `self` fails to bind to `applying`, in a fixed order. Empty
    /// when they are the same.
    pub fn differences(&self, applying: &Binding) -> Vec<Void> {
        let mut out = Vec::new();
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        if (&self.repo, self.pr) != (&applying.repo, applying.pr) {
            let (approved, applying) = pair(&change_of(self), &change_of(applying));
            out.push(Void::OtherChange { approved, applying });
        }
        if self.commit != applying.commit {
            let (approved, applying) = pair(&self.commit, &applying.commit);
            out.push(Void::CommitDiffers { approved, applying });
        }
        if self.env != applying.env {
            let (approved, applying) = pair(&self.env, &applying.env);
            out.push(Void::EnvDiffers { approved, applying });
        }
        if self.unit != applying.unit {
            let (approved, applying) = pair(&self.unit, &applying.unit);
            out.push(Void::UnitDiffers { approved, applying });
        }
        if self.subject != applying.subject {
            out.push(Void::SubjectDiffers {
                approved: self.subject.clone(),
                applying: applying.subject.clone(),
            });
        }
        if self.decision_digest != applying.decision_digest {
            let (approved, applying) = pair(&self.decision_digest, &applying.decision_digest);
            out.push(Void::DecisionDiffers { approved, applying });
        }
        out
    }
}

fn change_of(b: &Binding) -> String {
    match b.pr {
        Some(pr) => format!("{}#{pr}", b.repo),
        None => format!("{} (no PR)", b.repo),
    }
}

/// Whether the approval still stands on its source (a GitHub review can be dismissed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Given,
    Dismissed,
}

/// One approval record: the body of a signed `approve` statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub binding: Binding,
    pub approver: PersonId,
    /// The teams (`@acme/platform`) the approver held and approved for. It counts for a team
    /// only while the approver still holds it.
    pub groups: Vec<String>,
    pub state: ApprovalState,
}

/// Why an approval does not count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Void {
    /// Another repository or PR.
    OtherChange {
        approved: String,
        applying: String,
    },
    CommitDiffers {
        approved: String,
        applying: String,
    },
    EnvDiffers {
        approved: String,
        applying: String,
    },
    UnitDiffers {
        approved: String,
        applying: String,
    },
    /// Another plan (or rendered) digest, or a plan where rendered manifests are applied.
    SubjectDiffers {
        approved: Subject,
        applying: Subject,
    },
    DecisionDiffers {
        approved: String,
        applying: String,
    },
    Dismissed,
    /// The approver authored the change.
    SelfApproval,
    /// The approver holds none of the groups the approval was given for any more.
    LeftGroups {
        groups: Vec<String>,
    },
}

impl fmt::Display for Void {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Void::OtherChange { approved, applying } => {
                write!(f, "approves {approved}, not {applying}")
            }
            Void::CommitDiffers { approved, applying } => write!(
                f,
                "approves commit {approved}, but {applying} is being applied (a push voids approvals)"
            ),
            Void::EnvDiffers { approved, applying } => write!(
                f,
                "approves environment `{approved}`, but `{applying}` is being applied"
            ),
            Void::UnitDiffers { approved, applying } => {
                write!(
                    f,
                    "approves `{approved}`, but `{applying}` is being applied"
                )
            }
            Void::SubjectDiffers { approved, applying } => write!(
                f,
                "approves {approved}, but {applying} is being applied (a new plan needs a new approval)"
            ),
            Void::DecisionDiffers { approved, applying } => write!(
                f,
                "approves policy decision {approved}, but the current decision is {applying}"
            ),
            Void::Dismissed => f.write_str("the approval was dismissed"),
            Void::SelfApproval => f.write_str("the approver authored the change"),
            Void::LeftGroups { groups } => {
                write!(f, "the approver no longer belongs to {}", groups.join(", "))
            }
        }
    }
}

/// One approval's standing against what is being applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "standing")]
pub enum Standing {
    /// It binds; it counts for the teams in `counts_for` (and for the approver personally);
    /// `left` are teams it was given for that the approver no longer holds.
    Binds {
        counts_for: Vec<String>,
        left: Vec<String>,
    },
    /// It does not count, for every reason listed (never empty).
    Void { reasons: Vec<Void> },
}

/// Current membership: principal (team `@org/team`, login `@name` or email) → the people who
/// hold it. Principals compare without regard to ASCII case, as GitHub compares them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    members: BTreeMap<String, BTreeSet<PersonId>>,
}

impl Membership {
    pub fn add(&mut self, principal: &str, person: &PersonId) {
        self.members
            .entry(principal.to_ascii_lowercase())
            .or_default()
            .insert(person.clone());
    }

    pub fn remove(&mut self, principal: &str, person: &PersonId) {
        if let Some(m) = self.members.get_mut(&principal.to_ascii_lowercase()) {
            m.remove(person);
        }
    }

    pub fn holds(&self, person: &PersonId, principal: &str) -> bool {
        self.members
            .get(&principal.to_ascii_lowercase())
            .is_some_and(|m| m.contains(person))
    }
}

/// A team as CODEOWNERS and the approval matrix write it (`@org/team`); anything else (`@login`,
/// an email) names one person.
fn is_team(principal: &str) -> bool {
    principal.starts_with('@') && principal.contains('/')
}

/// How approvals are counted across requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counting {
    /// A person counts once within each requirement, but one approval may meet several
    /// requirements (an owner who is also in the risk group meets both).
    PerRequirement,
    /// A person fills at most one slot over all requirements: `["@acme/platform",
    /// "@acme/security"]` then needs two different people even if one belongs to both.
    DistinctPeople,
}

impl Counting {
    /// R4 and R5 ask for distinct people; lower levels count per requirement.
    pub fn for_risk(level: RiskLevel) -> Self {
        if level >= RiskLevel::R4 {
            Counting::DistinctPeople
        } else {
            Counting::PerRequirement
        }
    }
}

/// One person counted towards a requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signoff {
    pub person: PersonId,
    /// The requirement's approver entry the person counted as (a team, `@login` or email).
    pub via: String,
    /// What they approved (always the subject being applied: only binding approvals count).
    pub subject: Subject,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Fulfilment {
    Met {
        by: Vec<Signoff>,
    },
    /// `by` counted so far; `needed` more are required.
    Missing {
        by: Vec<Signoff>,
        needed: u32,
    },
}

impl Fulfilment {
    pub fn is_met(&self) -> bool {
        matches!(self, Fulfilment::Met { .. })
    }

    pub fn signoffs(&self) -> &[Signoff] {
        match self {
            Fulfilment::Met { by } | Fulfilment::Missing { by, .. } => by,
        }
    }
}

/// What is being applied, and who wrote it (every author is barred from approving).
#[derive(Debug, Clone, Copy)]
pub struct Applying<'a> {
    pub binding: &'a Binding,
    pub authors: &'a [PersonId],
}

/// The answer of [`evaluate`]: `requirements[i]` is the fulfilment of the i-th requirement and
/// `approvals[i]` the standing of the i-th approval, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub requirements: Vec<Fulfilment>,
    pub approvals: Vec<Standing>,
}

impl Evaluation {
    pub fn all_met(&self) -> bool {
        self.requirements.iter().all(Fulfilment::is_met)
    }

    /// Indices of the requirements still missing.
    pub fn missing(&self) -> Vec<usize> {
        (0..self.requirements.len())
            .filter(|i| !self.requirements[*i].is_met())
            .collect()
    }

    /// Indices of the approvals that bind: the only ones evidence should list for this apply.
    pub fn binding(&self) -> Vec<usize> {
        (0..self.approvals.len())
            .filter(|i| matches!(self.approvals[*i], Standing::Binds { .. }))
            .collect()
    }
}

/// The standing of one approval against what is being applied and current membership.
pub fn standing(approval: &Approval, applying: Applying<'_>, membership: &Membership) -> Standing {
    let mut reasons = approval.binding.differences(applying.binding);
    if approval.state == ApprovalState::Dismissed {
        reasons.push(Void::Dismissed);
    }
    if applying.authors.contains(&approval.approver) {
        reasons.push(Void::SelfApproval);
    }
    let (held, left): (Vec<String>, Vec<String>) = approval
        .groups
        .iter()
        .cloned()
        .partition(|g| membership.holds(&approval.approver, g));
    if !approval.groups.is_empty() && held.is_empty() {
        reasons.push(Void::LeftGroups { groups: left });
        return Standing::Void { reasons };
    }
    if reasons.is_empty() {
        Standing::Binds {
            counts_for: held,
            left,
        }
    } else {
        Standing::Void { reasons }
    }
}

/// The approval records that stand, in record order: a later record by the same approver for
/// the same binding replaces an earlier one. A dismissal recorded after an approval (a GitHub
/// review dismissed) therefore voids it, and a new approval after a dismissal gives it again;
/// records for other bindings (an older commit's review) are kept and judged on their own.
pub fn current(records: &[Approval]) -> Vec<Approval> {
    let mut out: Vec<Approval> = Vec::new();
    for record in records {
        out.retain(|a| !(a.approver == record.approver && a.binding == record.binding));
        out.push(record.clone());
    }
    out
}

/// Evaluate `approvals` against what is being applied, the `requirements` and current
/// `membership`. The result does not depend on the order of `approvals`.
pub fn evaluate(
    applying: Applying<'_>,
    requirements: &[Requirement],
    approvals: &[Approval],
    membership: &Membership,
    counting: Counting,
) -> Evaluation {
    let standings: Vec<Standing> = approvals
        .iter()
        .map(|a| standing(a, applying, membership))
        .collect();
    // One candidate per person, with the teams any of their binding approvals counts for:
    // several records by one person (a re-approval, a review and a CLI approval) are one person.
    let mut claims: BTreeMap<&PersonId, BTreeSet<String>> = BTreeMap::new();
    for (a, s) in approvals.iter().zip(&standings) {
        if let Standing::Binds { counts_for, .. } = s {
            claims
                .entry(&a.approver)
                .or_default()
                .extend(counts_for.iter().map(|g| g.to_ascii_lowercase()));
        }
    }
    let people: Vec<(&PersonId, &BTreeSet<String>)> = claims.iter().map(|(p, c)| (*p, c)).collect();
    // eligible[r] = (person index, the approver entry they count as), in person order.
    let eligible: Vec<Vec<(usize, &str)>> = requirements
        .iter()
        .map(|r| {
            people
                .iter()
                .enumerate()
                .filter_map(|(i, (person, claimed))| {
                    r.approvers
                        .iter()
                        .find(|p| {
                            membership.holds(person, p)
                                && (!is_team(p) || claimed.contains(&p.to_ascii_lowercase()))
                        })
                        .map(|p| (i, p.as_str()))
                })
                .collect()
        })
        .collect();
    let counted: Vec<Vec<(usize, &str)>> = match counting {
        Counting::PerRequirement => requirements
            .iter()
            .zip(&eligible)
            .map(|(r, e)| e.iter().take(r.count as usize).copied().collect())
            .collect(),
        Counting::DistinctPeople => distinct_assignment(requirements, &eligible, people.len()),
    };
    let fulfilment = requirements
        .iter()
        .zip(counted)
        .map(|(r, chosen)| {
            let by: Vec<Signoff> = chosen
                .into_iter()
                .map(|(i, via)| Signoff {
                    person: people[i].0.clone(),
                    via: via.to_string(),
                    subject: applying.binding.subject.clone(),
                })
                .collect();
            let have = by.len() as u32;
            if have >= r.count {
                Fulfilment::Met { by }
            } else {
                Fulfilment::Missing {
                    by,
                    needed: r.count - have,
                }
            }
        })
        .collect();
    Evaluation {
        requirements: fulfilment,
        approvals: standings,
    }
}

/// Give each requirement's slots distinct people, as many slots filled as possible. Slots are
/// filled in requirement order by augmenting paths (Kuhn's algorithm): once a slot is filled it
/// stays filled while later slots move people around, so an earlier requirement never loses
/// its approvals to a later one, and adding a person never empties a slot.
fn distinct_assignment<'r>(
    requirements: &[Requirement],
    eligible: &[Vec<(usize, &'r str)>],
    people: usize,
) -> Vec<Vec<(usize, &'r str)>> {
    // Slots beyond the number of people can never be filled; don't build them.
    let slots: Vec<usize> = requirements
        .iter()
        .enumerate()
        .flat_map(|(r, req)| std::iter::repeat_n(r, (req.count as usize).min(people)))
        .collect();
    let mut slot_of: Vec<Option<usize>> = vec![None; people];
    for s in 0..slots.len() {
        let mut seen = vec![false; people];
        augment(s, &slots, eligible, &mut slot_of, &mut seen);
    }
    let mut out: Vec<Vec<(usize, &str)>> = vec![Vec::new(); requirements.len()];
    for (person, slot) in slot_of.iter().enumerate() {
        if let Some(s) = slot {
            let r = slots[*s];
            let via = eligible[r]
                .iter()
                .find(|(i, _)| *i == person)
                .expect("assigned only where eligible")
                .1;
            out[r].push((person, via));
        }
    }
    out
}

fn augment(
    slot: usize,
    slots: &[usize],
    eligible: &[Vec<(usize, &str)>],
    slot_of: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    for &(person, _) in &eligible[slots[slot]] {
        if seen[person] {
            continue;
        }
        seen[person] = true;
        let free = match slot_of[person] {
            None => true,
            Some(other) => augment(other, slots, eligible, slot_of, seen),
        };
        if free {
            slot_of[person] = Some(slot);
            return true;
        }
    }
    false
}

pub mod vouched;

#[cfg(test)]
mod tests;
