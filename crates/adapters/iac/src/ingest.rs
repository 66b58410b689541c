//! `sluice ingest-plan`: accept a plan made in the user's own CI.
//!
//! The plan JSON is validated with the same model as a plan sluice made itself, then the JSON
//! and (when given) the binary plan file are stored as secrets. Nothing is stored unless the
//! JSON parses: a malformed or unsupported plan leaves no partial artifact behind.

use sluice_model::plan::{Plan, PlanError};

use crate::driver::Planned;
use crate::store::{PlanStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("storing the plan: {0}")]
    Store(#[from] StoreError),
}

/// Validate and store a plan. `json_name` names the JSON in errors (its path as given).
pub fn ingest(
    store: &dyn PlanStore,
    json_name: &str,
    plan_json: &[u8],
    plan_file: Option<&[u8]>,
) -> Result<Planned, IngestError> {
    let plan = Plan::parse(json_name, plan_json)?;
    let plan_json_digest = store.put_secret(plan_json)?;
    let plan_file_digest = plan_file.map(|b| store.put_secret(b)).transpose()?;
    Ok(Planned {
        plan_digest: plan_file_digest
            .clone()
            .unwrap_or_else(|| plan_json_digest.clone()),
        plan_file: plan_file_digest,
        plan_json: plan_json_digest,
        exit_code: None,
        summary: plan.summary(),
        plan,
    })
}
