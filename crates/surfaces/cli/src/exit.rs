//! Exit codes (the README's table) and the one place errors and outcomes are mapped to them:
//! services and adapters return errors that keep their cause, and only this surface decides
//! what each means to a shell.

use sluice_flow::check::{CheckError, CheckReport};
use sluice_flow::decide::Status;
use sluice_flow::error::PipelineError;
use sluice_flow::pr::Verdict;
use sluice_policy::PolicyError;
use sluice_recorder::evidence::EvidenceError;
use sluice_render::error::RenderError;
use sluice_store::StoreError;

/// Success: nothing blocks.
pub const OK: i32 = 0;
/// The command ran and found something blocking (validation findings, a policy deny, a
/// broken evidence link).
pub const BLOCKED: i32 = 1;
/// Usage or configuration error (bad flags, invalid `sluice.yaml`, a bad bundle or key).
pub const USAGE: i32 = 2;
/// The repository could not be read (not a git repository, unknown revision).
pub const REPO: i32 = 3;
/// The org's definition is inconsistent (dependency cycle, layer rule violation).
pub const GRAPH: i32 = 4;
/// Anything else (IO failure writing output, internal error).
pub const INTERNAL: i32 = 5;
/// A stack could not be planned (`sluice plan`, `sluice pr`): the engine failed, or a plan
/// file could not be read.
pub const PLAN_FAILED: i32 = 6;
/// `sluice approve` refused before signing: the person is not registered, authored the
/// change, the key is not theirs, or there is nothing to approve (no passed plan, a deny).
pub const APPROVAL_REFUSED: i32 = 7;
/// `sluice apply` refused by the gate (approval missing or bound to another plan, plan used,
/// stale, denied, not merged as `apply.merge` requires, stack degraded) or by the plan file's
/// digest: nothing was applied.
pub const APPLY_REFUSED: i32 = 8;
/// The stack's state lock is held by another change; this one is queued.
pub const LOCKED: i32 = 9;
/// The engine apply failed: the stack is degraded and its lock kept (recovery required).
pub const APPLY_FAILED: i32 = 10;
/// `sluice break-glass` / `sluice backports resolve` refused: not a member of the break-glass
/// group, not registered, a key not theirs, a grant already ended, a PR that does not resolve
/// the backport item. Nothing was written.
pub const BREAK_GLASS_REFUSED: i32 = 11;
/// `sluice runner`: the server refused the runner's credentials (401) or its trust policy
/// refused the runner a job (403). Nothing was run.
pub const RUNNER_REFUSED: i32 = 12;
/// `sluice runner --once`: the server did not answer its claim (unreachable, or a 5xx) in
/// `runner_loop::ONCE_ATTEMPTS` tries spread over about 30 s. Nothing was run.
pub const RUNNER_UNREACHABLE: i32 = 13;

/// Stages 6 and 7 (`approve`, `apply`, `locks`, `unlock`, `recover`).
pub fn release(e: &sluice_release::ReleaseError) -> i32 {
    use sluice_release::ReleaseError as E;
    match e {
        E::Evidence(e) => evidence(e),
        E::Store(e) if e.is_fatal() => INTERNAL,
        E::Store(_) => INTERNAL,
        E::Pipeline(e) => pipeline(e),
        E::UnknownChange(_) | E::Usage(_) | E::Recovery(_) => USAGE,
        E::NotApprovable { .. } | E::Approve(_) | E::Key(_) | E::KeyNotRegistered { .. } => {
            APPROVAL_REFUSED
        }
        E::Gate { .. } | E::Lock { .. } | E::PlanFile { .. } | E::StalePlan { .. } => APPLY_REFUSED,
        E::Locked { .. } => LOCKED,
        E::ApplyFailed { .. } => APPLY_FAILED,
        E::Engine(_) | E::Internal(_) => INTERNAL,
        E::GrantUnusable { .. } => APPLY_REFUSED,
        E::BreakGlass(e) => break_glass(e),
    }
}

/// Break-glass refusals (11); a missing configuration, a bad request or an unknown grant is
/// a usage error (2).
pub fn break_glass(e: &sluice_release::breakglass::BreakGlassError) -> i32 {
    use sluice_model::breakglass::OpenError;
    use sluice_release::breakglass::BreakGlassError as E;
    match e {
        E::NotConfigured { .. } | E::UnknownGrant(_) | E::UnknownBackport(_) => USAGE,
        E::Open(
            OpenError::ReasonMissing | OpenError::TtlNotPositive | OpenError::TtlTooLong { .. },
        ) => USAGE,
        E::Open(OpenError::NotInGroup { .. })
        | E::NotRegistered { .. }
        | E::KeyNotRegistered { .. }
        | E::AlreadyEnded { .. }
        | E::Resolve { .. } => BREAK_GLASS_REFUSED,
        E::Contended(_) => INTERNAL,
    }
}

/// `graph`, `affected`, `stacks`: a stack config that does not parse leaves that stack's
/// edges unknown, so the org as read is inconsistent (4), unless `--allow-errors` accepts it.
pub fn unparsed_stacks(count: usize, allowed: bool) -> i32 {
    if count == 0 || allowed { OK } else { GRAPH }
}

/// `sluice pr`, after its report: 4 when the org is inconsistent at head, else the verdict's.
pub fn pr_report(r: &sluice_flow::pr::PrReport) -> i32 {
    if r.org_errors.is_empty() {
        verdict(r.verdict)
    } else {
        GRAPH
    }
}

pub fn pipeline(e: &PipelineError) -> i32 {
    match e {
        PipelineError::Git(_) => REPO,
        PipelineError::Policy(PolicyError::Input(_)) => INTERNAL,
        PipelineError::Config(_)
        | PipelineError::MissingConfig { .. }
        | PipelineError::PlanConfig(_)
        | PipelineError::Policy(_) => USAGE,
        PipelineError::Graph(_) | PipelineError::Glob(_) => GRAPH,
        PipelineError::Io { .. } | PipelineError::Failed { .. } | PipelineError::Internal(_) => {
            INTERNAL
        }
    }
}

/// `sluice check`: bad input is a usage error, a repository that cannot be read keeps its code.
pub fn check(e: &CheckError) -> i32 {
    match e {
        CheckError::Pipeline(e) => pipeline(e),
        _ => USAGE,
    }
}

/// 0 allowed (approvals may be required), 1 denied.
pub fn check_report(r: &CheckReport) -> i32 {
    if r.decision.status == Status::Denied {
        BLOCKED
    } else {
        OK
    }
}

/// 0 allowed (approvals may be required, or plans were not given), 1 blocked, 6 a plan failed.
pub fn verdict(v: Verdict) -> i32 {
    if v.blocks() {
        BLOCKED
    } else if v == Verdict::PlanFailed {
        PLAN_FAILED
    } else {
        OK
    }
}

/// 1 a change that does not render or validate, 2 an unknown app, 3 an unreadable repository,
/// 5 a missing tool or IO.
pub fn render(e: &RenderError) -> i32 {
    match e {
        RenderError::Syntax { .. }
        | RenderError::Manifest { .. }
        | RenderError::Oversized { .. }
        | RenderError::Duplicate(_)
        | RenderError::Tool { .. } => BLOCKED,
        RenderError::UnknownApp { .. } => USAGE,
        RenderError::Repo(_) => REPO,
        RenderError::ToolMissing { .. } | RenderError::Io { .. } | RenderError::Refused(_) => {
            INTERNAL
        }
    }
}

/// 1 a broken link or tampered evidence, 2 bad or unreadable input, 5 internal and
/// durability failures.
/// `sluice serve`: configuration and store problems are the user's to fix (2, or as for the
/// evidence store); a port that cannot be bound or a failing listener is 5.
pub fn serve(e: &sluice_server::ServeError) -> i32 {
    use sluice_server::ServeError;
    match e {
        ServeError::Config(_) => USAGE,
        ServeError::Evidence(e) => evidence(e),
        ServeError::Keys(_) | ServeError::Trust(_) => USAGE,
        ServeError::Bind { .. } | ServeError::Io(_) => INTERNAL,
    }
}

pub fn evidence(e: &EvidenceError) -> i32 {
    use sluice_evidence::bundle::VerifyError;
    match e {
        EvidenceError::Store(e) if e.is_fatal() => INTERNAL,
        EvidenceError::Store(e) => store(e),
        EvidenceError::Key(_)
        | EvidenceError::Location(_)
        | EvidenceError::Input { .. }
        | EvidenceError::Usage(_) => USAGE,
        EvidenceError::Verify(
            VerifyError::Parse { .. } | VerifyError::Format(_) | VerifyError::NoTrustedKeys,
        ) => USAGE,
        EvidenceError::Verify(_) | EvidenceError::Bundle(_) | EvidenceError::Corrupt(_) => BLOCKED,
        // The stage gate refused: the change is blocked at that stage.
        EvidenceError::Gate { .. } => BLOCKED,
        EvidenceError::Runtime(_) | EvidenceError::Internal(_) => INTERNAL,
    }
}

/// A store error on its own: 2 for a store that cannot be used as given, 1 for corrupt or
/// conflicting records, 5 otherwise (durability failures included).
pub fn store(e: &StoreError) -> i32 {
    match e {
        e if e.is_fatal() => INTERNAL,
        StoreError::SchemaTooNew { .. }
        | StoreError::SchemaDirty { .. }
        | StoreError::BadLocation { .. }
        | StoreError::Migrate { .. }
        | StoreError::Invalid { .. }
        | StoreError::NotFound { .. } => USAGE,
        StoreError::BlobCorrupt { .. } | StoreError::Conflict { .. } => BLOCKED,
        _ => INTERNAL,
    }
}

/// `sluice state`: 1 a refused action (the unit is locked, a serial or lineage check) or a
/// stored version that fails its integrity check; 2 bad input (an unknown version, no reason);
/// 5 the store or the keys failed.
pub fn state(e: &sluice_state::StateError) -> i32 {
    use sluice_state::StateError as E;
    match e {
        E::Locked { .. } | E::LockConflict(_) | E::Tampered { .. } | E::Forbidden { .. } => BLOCKED,
        E::Refused(sluice_model::state::WriteRefusal::ReasonRequired) => USAGE,
        E::Refused(_) => BLOCKED,
        E::BadRequest(_) | E::BadBody(_) | E::NotFound(_) => USAGE,
        E::Store(s) => store(s),
        // Decryption failures that are not tampering: a missing or wrong key.
        E::Seal(_) => USAGE,
    }
}

/// `sluice state`: the store or the keys could not be opened.
pub fn state_open(e: &sluice_state::local::OpenError) -> i32 {
    use sluice_state::local::OpenError as E;
    match e {
        E::Store(s) => store(s),
        E::Keys(_) => USAGE,
        E::Runtime(_) => INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_plan_is_not_a_repository_error() {
        assert_eq!(verdict(Verdict::PlanFailed), PLAN_FAILED);
        assert_ne!(PLAN_FAILED, REPO);
        for v in [
            Verdict::ValidationBlocked,
            Verdict::Denied,
            Verdict::AppBlocked,
        ] {
            assert_eq!(verdict(v), BLOCKED, "{v:?}");
        }
        for v in [
            Verdict::Allowed,
            Verdict::ApprovalsRequired,
            Verdict::Undecided,
        ] {
            assert_eq!(verdict(v), OK, "{v:?}");
        }
    }

    #[test]
    fn every_code_is_distinct() {
        let mut codes = vec![
            OK,
            BLOCKED,
            USAGE,
            REPO,
            GRAPH,
            INTERNAL,
            PLAN_FAILED,
            APPROVAL_REFUSED,
            APPLY_REFUSED,
            LOCKED,
            APPLY_FAILED,
            BREAK_GLASS_REFUSED,
            RUNNER_REFUSED,
            RUNNER_UNREACHABLE,
        ];
        codes.sort_unstable();
        let listed = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), listed);
    }

    #[test]
    fn policy_setup_errors_are_usage_errors() {
        let bundle = PipelineError::Policy(PolicyError::Bundle {
            bundle: "policy/acme".into(),
            message: "no rules".into(),
        });
        assert_eq!(pipeline(&bundle), USAGE);
        let input = PipelineError::Policy(PolicyError::Input("not an object".into()));
        assert_eq!(pipeline(&input), INTERNAL);
        assert_eq!(pipeline(&PipelineError::Graph(vec!["cycle".into()])), GRAPH);
    }
}
