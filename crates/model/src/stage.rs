//! The change flow's stage contracts (DESIGN.md §2) as data: one table that `sluice stages`
//! prints and that the pipeline consults before starting a stage.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Propose,
    Validate,
    Render,
    Plan,
    Policy,
    Approve,
    Apply,
    Verify,
    Archive,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageContract {
    pub number: u8,
    pub stage: Stage,
    pub input: &'static str,
    pub output: &'static str,
    pub authority: &'static str,
    pub events: &'static [&'static str],
    pub on_failure: &'static str,
    /// Stages whose success this stage requires before it may start.
    pub requires: &'static [Stage],
}

pub const STAGES: &[StageContract] = &[
    StageContract {
        number: 1,
        stage: Stage::Propose,
        input: "branch change",
        output: "PR / change record, correlation ID",
        authority: "human author",
        events: &["change.proposed"],
        on_failure: "-",
        requires: &[],
    },
    StageContract {
        number: 2,
        stage: Stage::Validate,
        input: "PR revision",
        output: "findings (syntax, schema, secrets, pinning, mutable tags)",
        authority: "CI, read-only",
        events: &["change.validated"],
        on_failure: "blocks 3-7; precise error; no privileged credential issued",
        requires: &[Stage::Propose],
    },
    StageContract {
        number: 3,
        stage: Stage::Render,
        input: "source config",
        output: "rendered manifests + their digest",
        authority: "CI, read-only",
        events: &["change.rendered"],
        on_failure: "blocks",
        requires: &[Stage::Validate],
    },
    StageContract {
        number: 4,
        stage: Stage::Plan,
        input: "revision, state snapshot, provider read",
        output: "plan artifact (digest), plan JSON, rendered diff",
        authority: "plan identity (read-only)",
        events: &["change.planned"],
        on_failure: "classified (auth / module / state / engine); no approval possible",
        requires: &[Stage::Validate, Stage::Render],
    },
    StageContract {
        number: 5,
        stage: Stage::Policy,
        input: "rendered manifests, plan JSON, metadata, exceptions",
        output: "allow / deny / warn / require-approval per rule, decision record",
        authority: "policy engine",
        events: &["change.policy_evaluated"],
        on_failure: "deny blocks apply; explain rule, link docs, allow exception request",
        requires: &[Stage::Plan],
    },
    StageContract {
        number: 6,
        stage: Stage::Approve,
        input: "PR, plan digest, policy decision",
        output: "approval records bound to commit + plan digest + env + stack",
        authority: "CODEOWNERS / approver groups by risk",
        events: &["change.approved"],
        on_failure: "stale binding is void",
        requires: &[Stage::Policy],
    },
    StageContract {
        number: 7,
        stage: Stage::Apply,
        input: "approved plan, or merged revision",
        output: "state update / sync result",
        authority: "scoped apply identity",
        events: &["change.applied", "app.synced"],
        on_failure: "partial: stack degraded, lock kept, recovery required",
        requires: &[Stage::Approve],
    },
    StageContract {
        number: 8,
        stage: Stage::Verify,
        input: "runtime state",
        output: "health result, drift check",
        authority: "observer",
        events: &["change.verified"],
        on_failure: "blocks promotion",
        requires: &[Stage::Apply],
    },
    StageContract {
        number: 9,
        stage: Stage::Archive,
        input: "all events of the change",
        output: "evidence bundle (offline-verifiable)",
        authority: "evidence service",
        events: &["change.archived"],
        on_failure: "-",
        requires: &[],
    },
];

pub fn contract(stage: Stage) -> &'static StageContract {
    STAGES
        .iter()
        .find(|c| c.stage == stage)
        .expect("every stage has a contract")
}

/// Whether `stage` may start given the stages that have passed so far; on refusal, the first
/// missing prerequisite.
pub fn may_start(stage: Stage, passed: &[Stage]) -> Result<(), Stage> {
    match contract(stage)
        .requires
        .iter()
        .find(|r| !passed.contains(r))
    {
        Some(missing) => Err(*missing),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_ordered_and_complete() {
        for (i, c) in STAGES.iter().enumerate() {
            assert_eq!(c.number as usize, i + 1);
            for r in c.requires {
                assert!(
                    contract(*r).number < c.number,
                    "{:?} requires a later stage",
                    c.stage
                );
            }
        }
    }

    #[test]
    fn plan_requires_validate() {
        assert_eq!(
            may_start(Stage::Plan, &[Stage::Propose]),
            Err(Stage::Validate)
        );
        assert_eq!(
            may_start(Stage::Plan, &[Stage::Validate, Stage::Render]),
            Ok(())
        );
    }
}
