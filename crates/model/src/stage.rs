//! The change flow's stage contracts (DESIGN.md §2) as data, and the one gate every stage start
//! asks: one table that `sluice stages` prints, and [`may_start`], which the PR path, the
//! evidence recorder and the commands run on their own (`plan`, `check`, `validate` with
//! `--record`) call before a stage starts, and which the server and runners will call too.
//!
//! The gate is a pure function of the stage table, what the change's stages concluded so far
//! ([`Progress`]) and the authorities the caller holds: a stage starts only when every input it
//! requires exists and passed, and only for a caller holding the stage's authority.

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

// The unit kind is the change's (`crate::change`); the gate reads it from there.
pub use crate::change::UnitKind;

/// Who may run a stage (the "authority" column of DESIGN.md §2), as a type the gate checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Authority {
    /// The human author of the change.
    Author,
    /// CI with read-only credentials.
    Ci,
    /// The read-only plan identity.
    PlanIdentity,
    PolicyEngine,
    /// CODEOWNERS / approver groups.
    Approver,
    /// The scoped apply identity.
    ApplyIdentity,
    Observer,
    EvidenceService,
}

impl Authority {
    pub const ALL: [Authority; 8] = [
        Authority::Author,
        Authority::Ci,
        Authority::PlanIdentity,
        Authority::PolicyEngine,
        Authority::Approver,
        Authority::ApplyIdentity,
        Authority::Observer,
        Authority::EvidenceService,
    ];

    /// What the PR path (`sluice pr`, and `plan`/`check`/`validate` on their own) holds: it
    /// witnesses the proposal as git recorded it (the author's claim, named as such in the
    /// evidence) and runs validation, plans and policy itself. It never approves or applies.
    pub const PR_PIPELINE: &'static [Authority] = &[
        Authority::Author,
        Authority::Ci,
        Authority::PlanIdentity,
        Authority::PolicyEngine,
    ];
}

#[derive(Debug, Clone, Serialize)]
pub struct StageContract {
    pub number: u8,
    pub stage: Stage,
    pub input: &'static str,
    pub output: &'static str,
    pub authority: &'static str,
    /// The authority the gate requires of whoever starts the stage.
    pub runs_as: Authority,
    /// The units the stage applies to: a stack has nothing to render, so stage 3 is an app's
    /// only, and a stage that requires it does not wait for it on a stack.
    pub applies_to: &'static [UnitKind],
    pub events: &'static [&'static str],
    pub on_failure: &'static str,
    /// Stages whose success this stage requires before it may start.
    pub requires: &'static [Stage],
    /// Of `requires`, the stages an app does not wait for. An app's rendered diff uses no
    /// privileged credential, so it is made and shown even while validation blocks; a stack's
    /// plan does use one, and waits (DESIGN.md §2; approval still waits for both).
    pub apps_skip: &'static [Stage],
}

pub const STAGES: &[StageContract] = &[
    StageContract {
        number: 1,
        stage: Stage::Propose,
        input: "branch change",
        output: "PR / change record, correlation ID",
        authority: "human author",
        runs_as: Authority::Author,
        applies_to: &[UnitKind::Stack, UnitKind::App],
        events: &["change.proposed"],
        on_failure: "-",
        requires: &[],
        apps_skip: &[],
    },
    StageContract {
        number: 2,
        stage: Stage::Validate,
        input: "PR revision",
        output: "findings (syntax, schema, secrets, pinning, mutable tags)",
        authority: "CI, read-only",
        runs_as: Authority::Ci,
        applies_to: &[UnitKind::Stack, UnitKind::App],
        events: &["change.validated"],
        on_failure: "blocks 3-7; precise error; no privileged credential issued",
        requires: &[Stage::Propose],
        apps_skip: &[],
    },
    StageContract {
        number: 3,
        stage: Stage::Render,
        input: "source config",
        output: "rendered manifests + their digest",
        authority: "CI, read-only",
        runs_as: Authority::Ci,
        applies_to: &[UnitKind::App],
        events: &["change.rendered"],
        on_failure: "blocks",
        requires: &[Stage::Propose],
        apps_skip: &[],
    },
    StageContract {
        number: 4,
        stage: Stage::Plan,
        input: "revision, state snapshot, provider read",
        output: "plan artifact (digest), plan JSON, rendered diff",
        authority: "plan identity (read-only)",
        runs_as: Authority::PlanIdentity,
        applies_to: &[UnitKind::Stack, UnitKind::App],
        events: &["change.planned"],
        on_failure: "classified (auth / module / state / engine); no approval possible",
        requires: &[Stage::Validate, Stage::Render],
        apps_skip: &[Stage::Validate],
    },
    StageContract {
        number: 5,
        stage: Stage::Policy,
        input: "rendered manifests, plan JSON, metadata, exceptions",
        output: "allow / deny / warn / require-approval per rule, decision record",
        authority: "policy engine",
        runs_as: Authority::PolicyEngine,
        applies_to: &[UnitKind::Stack, UnitKind::App],
        events: &["change.policy_evaluated"],
        on_failure: "deny blocks apply; explain rule, link docs, allow exception request",
        requires: &[Stage::Plan],
        apps_skip: &[],
    },
    StageContract {
        number: 6,
        stage: Stage::Approve,
        input: "PR, plan digest, policy decision",
        output: "approval records bound to commit + plan digest + env + stack",
        authority: "CODEOWNERS / approver groups by risk",
        runs_as: Authority::Approver,
        applies_to: &[UnitKind::Stack, UnitKind::App],
        events: &["change.approved"],
        on_failure: "stale binding is void",
        requires: &[Stage::Validate, Stage::Policy],
        apps_skip: &[],
    },
    StageContract {
        number: 7,
        stage: Stage::Apply,
        input: "approved plan, or merged revision",
        output: "state update / sync result",
        authority: "scoped apply identity",
        runs_as: Authority::ApplyIdentity,
        applies_to: &[UnitKind::Stack, UnitKind::App],
        events: &["change.applied", "app.synced"],
        on_failure: "partial: stack degraded, lock kept, recovery required",
        requires: &[Stage::Approve],
        apps_skip: &[],
    },
    StageContract {
        number: 8,
        stage: Stage::Verify,
        input: "runtime state",
        output: "health result, drift check",
        authority: "observer",
        runs_as: Authority::Observer,
        applies_to: &[UnitKind::Stack, UnitKind::App],
        events: &["change.verified"],
        on_failure: "blocks promotion",
        requires: &[Stage::Apply],
        apps_skip: &[],
    },
    StageContract {
        number: 9,
        stage: Stage::Archive,
        input: "all events of the change",
        output: "evidence bundle (offline-verifiable)",
        authority: "evidence service",
        runs_as: Authority::EvidenceService,
        applies_to: &[UnitKind::Stack, UnitKind::App],
        events: &["change.archived"],
        on_failure: "-",
        requires: &[],
        apps_skip: &[],
    },
];

pub fn contract(stage: Stage) -> &'static StageContract {
    STAGES
        .iter()
        .find(|c| c.stage == stage)
        .expect("every stage has a contract")
}

/// What a stage concluded for a change, as the gate reads it (the latest result per stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Passed,
    /// Ran and failed, or was blocked.
    Failed,
    /// Recorded as not run.
    NotRun,
}

/// The latest result of each stage of one change, as far as it is known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    marks: [Option<Mark>; 9],
}

impl Progress {
    pub fn new() -> Progress {
        Progress::default()
    }

    /// Progress where `passed` passed and nothing else has a result.
    pub fn passed(passed: &[Stage]) -> Progress {
        let mut p = Progress::new();
        for s in passed {
            p.set(*s, Mark::Passed);
        }
        p
    }

    /// Records `stage`'s latest result (a later result replaces an earlier one).
    pub fn set(&mut self, stage: Stage, mark: Mark) {
        self.marks[contract(stage).number as usize - 1] = Some(mark);
    }

    pub fn get(&self, stage: Stage) -> Option<Mark> {
        self.marks[contract(stage).number as usize - 1]
    }
}

/// Why the gate refused to start a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "stage {} cannot start: its input from stage {} does not exist (no result yet)",
        contract(*.stage).name(),
        contract(*.input).name()
    )]
    InputMissing { stage: Stage, input: Stage },
    #[error(
        "stage {} cannot start: its input from stage {} did not pass ({})",
        contract(*.stage).name(),
        contract(*.input).name(),
        match .mark { Mark::Failed => "it failed", Mark::NotRun => "it did not run", Mark::Passed => "passed" }
    )]
    InputNotPassed {
        stage: Stage,
        input: Stage,
        mark: Mark,
    },
    #[error(
        "stage {} cannot start: it runs as {:?}, which the caller does not hold",
        contract(*.stage).name(),
        .needs
    )]
    NotAuthorised { stage: Stage, needs: Authority },
}

impl StageContract {
    /// The stage's snake_case name (`plan`, `policy`, ...), as stored and printed.
    pub fn name(&self) -> &'static str {
        match self.stage {
            Stage::Propose => "propose",
            Stage::Validate => "validate",
            Stage::Render => "render",
            Stage::Plan => "plan",
            Stage::Policy => "policy",
            Stage::Approve => "approve",
            Stage::Apply => "apply",
            Stage::Verify => "verify",
            Stage::Archive => "archive",
        }
    }

    pub fn applies(&self, unit: UnitKind) -> bool {
        self.applies_to.contains(&unit)
    }

    /// The stages whose results this stage takes as input for `unit`, in table order.
    pub fn inputs(&self, unit: UnitKind) -> impl Iterator<Item = Stage> + '_ {
        self.requires.iter().copied().filter(move |r| {
            contract(*r).applies(unit) && !(unit == UnitKind::App && self.apps_skip.contains(r))
        })
    }
}

/// The stage gate: whether `stage` may start for a `unit` whose stages concluded as `progress`
/// says, for a caller holding `held`. Every input the stage requires (that applies to the unit)
/// must exist and have passed, and the caller must hold the stage's authority. On refusal, the
/// first reason in table order.
pub fn may_start(
    stage: Stage,
    unit: UnitKind,
    progress: &Progress,
    held: &[Authority],
) -> Result<(), Refusal> {
    gate_inputs(stage, unit, progress, held, |_| false)
}

/// Whether an open break-glass grant (§15.3) stands in for `input` of `stage`: for the approve
/// stage's result of an apply, and for nothing else (an apply still needs everything the approve
/// stage needs, and a grant never stands in for a plan, a policy decision or a lock).
pub fn grant_stands_in_for(stage: Stage, input: Stage) -> bool {
    stage == Stage::Apply && input == Stage::Approve
}

/// The stage gate for a stage run under a break-glass grant: [`may_start`], with the inputs
/// [`grant_stands_in_for`] names not required.
pub fn may_start_under_grant(
    stage: Stage,
    unit: UnitKind,
    progress: &Progress,
    held: &[Authority],
) -> Result<(), Refusal> {
    gate_inputs(stage, unit, progress, held, |input| {
        grant_stands_in_for(stage, input)
    })
}

fn gate_inputs(
    stage: Stage,
    unit: UnitKind,
    progress: &Progress,
    held: &[Authority],
    waived: impl Fn(Stage) -> bool,
) -> Result<(), Refusal> {
    let c = contract(stage);
    for input in c.inputs(unit).filter(|i| !waived(*i)) {
        match progress.get(input) {
            None => return Err(Refusal::InputMissing { stage, input }),
            Some(Mark::Passed) => {}
            Some(mark) => return Err(Refusal::InputNotPassed { stage, input, mark }),
        }
    }
    if !held.contains(&c.runs_as) {
        return Err(Refusal::NotAuthorised {
            stage,
            needs: c.runs_as,
        });
    }
    Ok(())
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

    const STACK: UnitKind = UnitKind::Stack;
    const APP: UnitKind = UnitKind::App;
    const ALL_AUTHORITIES: &[Authority] = &Authority::ALL;

    #[test]
    fn a_grant_stands_in_for_the_approval_of_an_apply_only() {
        use Stage::*;
        for stage in STAGES.iter().map(|c| c.stage) {
            for input in STAGES.iter().map(|c| c.stage) {
                assert_eq!(
                    grant_stands_in_for(stage, input),
                    stage == Apply && input == Approve,
                    "{stage:?} {input:?}"
                );
            }
        }
        // No approval recorded: refused normally, allowed under a grant.
        let mut p = Progress::passed(&[Propose, Validate, Plan, Policy]);
        assert_eq!(
            may_start(Apply, STACK, &p, ALL_AUTHORITIES),
            Err(Refusal::InputMissing {
                stage: Apply,
                input: Approve
            })
        );
        assert_eq!(
            may_start_under_grant(Apply, STACK, &p, ALL_AUTHORITIES),
            Ok(())
        );
        // A failed approval is not needed either; the authority still is.
        p.set(Approve, Mark::Failed);
        assert_eq!(
            may_start_under_grant(Apply, STACK, &p, ALL_AUTHORITIES),
            Ok(())
        );
        assert_eq!(
            may_start_under_grant(Apply, STACK, &p, &[Authority::Approver]),
            Err(Refusal::NotAuthorised {
                stage: Apply,
                needs: Authority::ApplyIdentity
            })
        );
        // Other stages keep every input.
        let p = Progress::passed(&[Propose]);
        assert_eq!(
            may_start_under_grant(Plan, STACK, &p, ALL_AUTHORITIES),
            may_start(Plan, STACK, &p, ALL_AUTHORITIES)
        );
        assert!(may_start_under_grant(Verify, STACK, &p, ALL_AUTHORITIES).is_err());
    }

    #[test]
    fn named_forbidden_transitions() {
        use Stage::*;
        let refuse = |stage, unit, progress: &Progress, held: &[Authority]| {
            may_start(stage, unit, progress, held).unwrap_err()
        };
        // Plan before validation has any result.
        assert_eq!(
            refuse(Plan, STACK, &Progress::passed(&[Propose]), ALL_AUTHORITIES),
            Refusal::InputMissing {
                stage: Plan,
                input: Validate
            }
        );
        // Plan after validation blocked the change.
        let mut p = Progress::passed(&[Propose]);
        p.set(Validate, Mark::Failed);
        assert_eq!(
            refuse(Plan, STACK, &p, ALL_AUTHORITIES),
            Refusal::InputNotPassed {
                stage: Plan,
                input: Validate,
                mark: Mark::Failed
            }
        );
        // An app's render and rendered diff need no privileged credential: they run while
        // validation blocks, so the reviewer sees the change; its approval still waits.
        let mut p = Progress::passed(&[Propose]);
        p.set(Validate, Mark::Failed);
        assert_eq!(may_start(Render, APP, &p, ALL_AUTHORITIES), Ok(()));
        p.set(Render, Mark::Passed);
        assert_eq!(may_start(Plan, APP, &p, ALL_AUTHORITIES), Ok(()));
        p.set(Plan, Mark::Passed);
        p.set(Policy, Mark::Passed);
        for unit in UnitKind::ALL {
            assert_eq!(
                refuse(Approve, unit, &p, ALL_AUTHORITIES),
                Refusal::InputNotPassed {
                    stage: Approve,
                    input: Validate,
                    mark: Mark::Failed
                }
            );
        }
        // An app's diff waits for its render; a stack's plan does not (nothing to render).
        let p = Progress::passed(&[Propose, Validate]);
        assert_eq!(
            refuse(Plan, APP, &p, ALL_AUTHORITIES),
            Refusal::InputMissing {
                stage: Plan,
                input: Render
            }
        );
        assert_eq!(may_start(Plan, STACK, &p, ALL_AUTHORITIES), Ok(()));
        // Policy over a plan that failed; approval of a change policy denied.
        let mut p = Progress::passed(&[Propose, Validate]);
        p.set(Plan, Mark::Failed);
        assert!(may_start(Policy, STACK, &p, ALL_AUTHORITIES).is_err());
        let mut p = Progress::passed(&[Propose, Validate, Plan]);
        p.set(Policy, Mark::Failed);
        assert!(may_start(Approve, STACK, &p, ALL_AUTHORITIES).is_err());
        // Apply without approval, even though policy passed.
        let p = Progress::passed(&[Propose, Validate, Plan, Policy]);
        assert_eq!(
            refuse(Apply, STACK, &p, ALL_AUTHORITIES),
            Refusal::InputMissing {
                stage: Apply,
                input: Approve
            }
        );
        // The PR pipeline plans and evaluates policy, but never approves or applies.
        let p = Progress::passed(&[Propose, Validate, Plan, Policy, Approve]);
        assert_eq!(
            refuse(Approve, STACK, &p, Authority::PR_PIPELINE),
            Refusal::NotAuthorised {
                stage: Approve,
                needs: Authority::Approver
            }
        );
        assert_eq!(
            refuse(Apply, STACK, &p, Authority::PR_PIPELINE),
            Refusal::NotAuthorised {
                stage: Apply,
                needs: Authority::ApplyIdentity
            }
        );
        // A later result replaces an earlier one: a re-plan that failed closes the gate again.
        let mut p = Progress::passed(&[Propose, Validate, Plan]);
        assert_eq!(may_start(Policy, STACK, &p, Authority::PR_PIPELINE), Ok(()));
        p.set(Plan, Mark::Failed);
        assert!(may_start(Policy, STACK, &p, Authority::PR_PIPELINE).is_err());
        let text = refuse(Policy, STACK, &p, ALL_AUTHORITIES).to_string();
        assert_eq!(
            text,
            "stage policy cannot start: its input from stage plan did not pass (it failed)"
        );
    }

    /// Every stage, unit kind, combination of its inputs' results (none, passed, failed, not run)
    /// and authority held: the gate opens exactly when every input that applies passed and the
    /// caller holds the stage's authority, and otherwise names the first reason.
    #[test]
    fn every_forbidden_transition_is_refused() {
        let marks = [
            None,
            Some(Mark::Passed),
            Some(Mark::Failed),
            Some(Mark::NotRun),
        ];
        let mut opened = 0;
        let mut refused = 0;
        for c in STAGES {
            for unit in UnitKind::ALL {
                let inputs: Vec<Stage> = c.inputs(unit).collect();
                let combos = marks.len().pow(inputs.len() as u32);
                for combo in 0..combos {
                    // Results for the stage's inputs, and every other stage passed, so that
                    // only the inputs can close the gate.
                    let mut progress =
                        Progress::passed(&STAGES.iter().map(|c| c.stage).collect::<Vec<_>>());
                    let mut rest = combo;
                    let mut first_bad = None;
                    for input in &inputs {
                        let mark = marks[rest % marks.len()];
                        rest /= marks.len();
                        match mark {
                            Some(m) => progress.set(*input, m),
                            None => progress.marks[contract(*input).number as usize - 1] = None,
                        }
                        if first_bad.is_none() && mark != Some(Mark::Passed) {
                            first_bad = Some((*input, mark));
                        }
                    }
                    for holder in Authority::ALL {
                        let got = may_start(c.stage, unit, &progress, &[holder]);
                        let expected = match first_bad {
                            Some((input, None)) => Err(Refusal::InputMissing {
                                stage: c.stage,
                                input,
                            }),
                            Some((input, Some(mark))) => Err(Refusal::InputNotPassed {
                                stage: c.stage,
                                input,
                                mark,
                            }),
                            None if holder != c.runs_as => Err(Refusal::NotAuthorised {
                                stage: c.stage,
                                needs: c.runs_as,
                            }),
                            None => Ok(()),
                        };
                        assert_eq!(
                            got, expected,
                            "{:?} for a {unit:?} held by {holder:?}",
                            c.stage
                        );
                        if got.is_ok() {
                            opened += 1;
                        } else {
                            refused += 1;
                        }
                    }
                }
            }
        }
        // One open combination per stage and unit (all inputs passed, the right holder).
        assert_eq!(opened, STAGES.len() * UnitKind::ALL.len());
        assert!(refused > opened * 10, "{refused}");
    }

    #[test]
    fn every_required_input_is_an_earlier_stage_and_render_is_apps_only() {
        for c in STAGES {
            for unit in UnitKind::ALL {
                for input in c.inputs(unit) {
                    assert!(contract(input).number < c.number);
                    assert!(contract(input).applies(unit));
                }
            }
        }
        assert!(!contract(Stage::Render).applies(UnitKind::Stack));
        assert_eq!(
            contract(Stage::Plan)
                .inputs(UnitKind::Stack)
                .collect::<Vec<_>>(),
            [Stage::Validate]
        );
        // An app's rendered diff waits for its render, not for validation (no credential).
        assert_eq!(
            contract(Stage::Plan)
                .inputs(UnitKind::App)
                .collect::<Vec<_>>(),
            [Stage::Render]
        );
        for c in STAGES {
            assert_eq!(
                serde_json::to_value(c.stage).unwrap(),
                serde_json::Value::from(c.name())
            );
        }
    }
}
