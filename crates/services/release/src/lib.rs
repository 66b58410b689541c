//! Stages 6 and 7 (DESIGN.md §2, issue 11): approvals signed by the registered approver and
//! bound to the exact plan, applies of exactly that plan under the stack's fenced state lock,
//! partial failure (a degraded stack, the lock kept) and the audited admin actions around
//! locks (unlock) and recovery.
//!
//! Every decision is the model's (`sluice_model::{binding, apply, lock, people}`): this crate
//! loads what the decisions need from the store, git and `sluice.yaml`, calls them, carries out
//! what they decide (sign, take the lock, run the engine) and records what happened as signed
//! statements in the evidence log.
//!
//! - [`approve`]: `sluice approve CHANGE_ID --as NAME --key KEYFILE`.
//! - [`apply`]: `sluice apply CHANGE_ID [--unit U]`, one stack or every stack of a PR commit
//!   in dependency order.
//! - [`breakglass`]: `sluice break-glass open|close|list`, `sluice backports [resolve]`;
//!   an apply under an open grant is [`apply`]'s.
//! - [`status`]: each approval requirement met (by whom, for which digest) or missing, for
//!   `sluice pr`.
//! - [`admin`]: `sluice locks`, `sluice unlock UNIT --reason`, `sluice recover UNIT --reason`.
//! - [`refresh`]: `sluice recover UNIT --refresh-only`, the refresh-only plan that shows what
//!   a failed apply changed and moves the stack to recovering.
//!
//! Who may approve is read from `people:` in the `sluice.yaml` of the change's *base*
//! revision, never from the change itself: a PR that adds its author's key to `people:` must
//! not be able to approve itself with it.

pub mod admin;
pub mod apply;
pub mod approve;
pub mod breakglass;
mod context;
pub mod error;
pub mod refresh;
pub mod status;

pub use context::{ChangeContext, lock_owner};
pub use error::ReleaseError;

/// The `sluice.yaml` `people:` and `apply:` of a revision, and the change's authors.
pub use context::Governance;
