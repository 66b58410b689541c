//! Errors of stages 6 and 7. Each keeps its cause; the CLI maps them to exit codes.

use sluice_model::apply::{Degradation, GateRefusal, RecoveryError};
use sluice_model::lock::Refusal;
use sluice_model::people::ApproveError;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Evidence(#[from] sluice_recorder::evidence::EvidenceError),
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
    #[error(transparent)]
    Pipeline(#[from] sluice_flow::error::PipelineError),
    #[error("change {0} is not recorded; run `sluice pr --record` first")]
    UnknownChange(String),
    /// The change cannot be approved yet (no passed plan, policy not evaluated or denied).
    #[error("change {change_id} cannot be approved: {reason}")]
    NotApprovable { change_id: String, reason: String },
    /// `sluice approve` refused before signing (not registered, self-approval).
    #[error("approval refused: {0}")]
    Approve(#[from] ApproveError),
    /// The key does not sign as the person, or cannot be read.
    #[error("approval refused: {0}")]
    Key(#[from] sluice_evidence::approval::ApprovalKeyError),
    #[error(
        "approval refused: the key {fingerprint} is not registered for {person} under `people:` in sluice.yaml (base revision {base})"
    )]
    KeyNotRegistered {
        person: String,
        fingerprint: String,
        base: String,
    },
    /// The apply gate refused; nothing was applied.
    #[error("apply of {change_id} refused:\n{}", list(.refusals))]
    Gate {
        change_id: String,
        refusals: Vec<GateRefusal>,
    },
    /// The stack is locked by another change; this one is queued.
    #[error(
        "{unit} is locked by {holder}; {change} is queued at position {position}: run `sluice apply` again when it is released (`sluice locks` shows the queue)"
    )]
    Locked {
        unit: String,
        change: String,
        holder: String,
        position: usize,
    },
    /// A lock operation was refused (a stale fencing token, a kept lock).
    #[error("lock of {unit}: {refusal}")]
    Lock { unit: String, refusal: Refusal },
    /// The stored plan file is missing or its digest differs from the approved one.
    #[error("plan file {digest}: {message}; nothing was applied")]
    PlanFile { digest: String, message: String },
    /// The engine refused the plan because the state moved since it was planned.
    #[error(
        "{unit}: the state moved since plan {digest} was made; nothing was applied. Plan again (`sluice pr --run-plans --record`): approvals do not carry over"
    )]
    StalePlan { unit: String, digest: String },
    /// The engine failed mid-apply: the stack is degraded and its lock kept.
    #[error("{unit}: the apply failed ({}); the stack is degraded and its lock is kept; recover with a refresh-only plan and a new approved plan, or `sluice recover {unit} --reason`", .degradation.error)]
    ApplyFailed {
        unit: String,
        degradation: Box<Degradation>,
    },
    /// The engine could not be found or initialised; nothing was applied.
    #[error("{0}")]
    Engine(String),
    #[error("{0}")]
    Recovery(#[from] RecoveryError),
    /// Break-glass refused (not configured, not in the group, a key not theirs, an unknown
    /// or ended grant, a backport that does not resolve).
    #[error(transparent)]
    BreakGlass(#[from] crate::breakglass::BreakGlassError),
    /// `sluice apply` named a break-glass grant that cannot be used (expired, closed, for
    /// another stack): nothing was applied.
    #[error("apply of {change_id} refused: {source}")]
    GrantUnusable {
        change_id: String,
        source: sluice_model::breakglass::UseError,
    },
    #[error("{0}")]
    Usage(String),
    /// An invariant broke, with no error underneath (a result the engine did not return, a
    /// record that was not written).
    #[error("{0}")]
    Internal(String),
}

fn list(refusals: &[GateRefusal]) -> String {
    refusals
        .iter()
        .map(|r| format!("  - {r}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub type Result<T, E = ReleaseError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn io_and_failed_keep_their_cause() {
        use sluice_flow::error::PipelineError;
        let gone = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = ReleaseError::from(PipelineError::io("/state/apply-x", gone));
        assert_eq!(e.to_string(), "/state/apply-x: gone");
        assert_eq!(e.source().unwrap().to_string(), "gone");
        let inner = ReleaseError::Internal("no result".into());
        let e = ReleaseError::from(PipelineError::failed("the apply task", inner));
        assert_eq!(e.to_string(), "the apply task: no result");
        assert_eq!(e.source().unwrap().to_string(), "no result");
    }
}
