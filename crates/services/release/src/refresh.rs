//! `sluice recover UNIT --refresh-only`: the first step of recovering a degraded stack (§14.4).
//!
//! A failed or killed apply leaves the stack degraded: what the engine changed before it
//! stopped is not known for sure. A refresh-only plan (`plan -refresh-only`) of the stack, in
//! an export of the revision whose apply failed, asks the engine to compare the recorded state
//! with the real infrastructure and shows what changed (drifted resources, output changes),
//! without proposing any change and without writing the state. When it succeeds the stack is
//! *recovering* (`StackHealth::refreshed`): a plan made after it, approved and applied, makes
//! the stack healthy again; older plans stay refused. The kept lock is not touched (the change
//! that failed keeps its place for that new plan).
//!
//! The refresh-only plan file and its JSON are kept in the plan store under their digests, and
//! the run is recorded in the stack's audit log as `stack.refreshed` (beside `stack.degraded`
//! and `stack.recovered`) with the plan digest, the engine, the revision and what changed:
//! addresses and actions, never values.

use std::ffi::OsString;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::json;
use sluice_iac::config::PlanConfig;
use sluice_iac::driver::{Driver, Outcome};
use sluice_iac::store::FsPlanStore;
use sluice_model::apply::StackHealth;
use sluice_model::plan::{Drifted, OutputChange};
use sluice_recorder::evidence::{EvidenceService, RecorderOptions};
use sluice_store::{AnyStore, ChangeStore, EventRecord, ReleaseStore};

use crate::apply::{now, settle};
use crate::error::{ReleaseError, Result};
use sluice_flow::error::PipelineError;

pub struct RefreshRequest {
    pub repo: PathBuf,
    pub unit: String,
    pub options: RecorderOptions,
    /// The plan store (default `<repo>/.sluice`).
    pub plan_store: Option<PathBuf>,
    /// PATH for the engine (`None`: the process's).
    pub path_var: Option<OsString>,
}

/// What the refresh-only plan showed.
#[derive(Debug, Clone, Serialize)]
pub struct Refreshed {
    pub unit: String,
    /// The change whose apply degraded the stack, and the revision refreshed.
    pub change_id: String,
    pub commit: String,
    pub engine: String,
    /// The refresh-only plan file's digest (kept in the plan store).
    pub plan_digest: String,
    /// Whether the engine found anything that changed outside the recorded state.
    pub has_changes: bool,
    pub drifted: Vec<Drifted>,
    pub outputs: Vec<OutputChange>,
    /// `recovering` from now on.
    pub health: StackHealth,
}

/// The refresh-only plan of a degraded (or already recovering) stack.
pub async fn refresh_only(req: RefreshRequest) -> Result<Refreshed> {
    let mut options = req.options.clone();
    options.existing_only = true;
    let service = EvidenceService::open(&options).await?;
    let store = service.store().clone();
    let unit = req.unit.as_str();
    let rules = sluice_model::redact::RedactionRules::default();
    settle(&store, unit, &rules).await?;
    let health = store.health(unit).await?;
    // Refused before the engine runs: only a degraded or recovering stack is refreshed.
    health.refreshed(now())?;
    let (StackHealth::Degraded { degradation } | StackHealth::Recovering { degradation, .. }) =
        &health
    else {
        unreachable!("refreshed() accepts only degraded or recovering stacks");
    };
    let change = degraded_change(&store, unit, &degradation.change).await?;

    let repo = sluice_flow::workspace::open(&req.repo)?;
    let revision = sluice_flow::workspace::revision(&repo, &change.head)?;
    let org = revision.discover();
    let stack = org.stacks.iter().find(|s| s.id == unit).ok_or_else(|| {
        ReleaseError::Usage(format!("stack {unit} is not found at {}", change.head))
    })?;
    let mut config = PlanConfig::from_section(revision.config.sections.get("plan"))
        .map_err(|e| ReleaseError::Pipeline(PipelineError::PlanConfig(e)))?;
    config.refresh_only = true;
    let store_root = req
        .plan_store
        .clone()
        .unwrap_or_else(|| req.repo.join(".sluice"));
    sluice_evidence::location::prepare_state_dir(&store_root)
        .map_err(|e| PipelineError::failed("preparing the state folder", e))?;
    let plans = FsPlanStore::new(&store_root);
    let work = tempfile::Builder::new()
        .prefix("refresh-")
        .tempdir_in(&store_root)
        .map_err(|e| PipelineError::io(&store_root, e))?;
    let driver = Driver {
        config: &config,
        store: &plans,
        rules: config.redaction_rules(),
        path_var: req.path_var.clone(),
        engine_env: None,
        work_root: work.path().join("work"),
        plugin_cache: match &config.plugin_cache_dir {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => store_root.join(p),
            None => store_root.join("plugin-cache"),
        },
    };
    let spec = sluice_flow::stack_spec::stack_spec(stack);
    let result = tokio::task::block_in_place(|| {
        driver
            .plan_stacks(&revision.snapshot, std::slice::from_ref(&spec))
            .pop()
    })
    .ok_or_else(|| ReleaseError::Internal("the engine returned no result".into()))?;
    let engine = result
        .engine
        .as_ref()
        .map_or_else(|| "engine".to_string(), |e| e.label());
    let planned = match result.outcome {
        Outcome::Planned(p) => p,
        Outcome::Failed(f) => {
            return Err(ReleaseError::Engine(format!(
                "the refresh-only plan of {unit} failed ({}): {}\n{}\nthe stack stays degraded",
                f.class.as_str(),
                f.message,
                f.stderr_excerpt.join("\n")
            )));
        }
    };
    let recovering = health.refreshed(now())?;
    store.set_health(unit, &recovering).await?;
    let done = Refreshed {
        unit: unit.to_string(),
        change_id: change.change_id.clone(),
        commit: change.head.clone(),
        engine,
        plan_digest: planned.plan_digest.to_string(),
        has_changes: planned.summary.has_changes,
        drifted: planned.summary.drifted.clone(),
        outputs: planned.summary.outputs.clone(),
        health: recovering,
    };
    store
        .append_event(&EventRecord::new(
            format!("lock:{unit}"),
            "stack.refreshed",
            json!({
                "refreshed": done,
                "plan_json_digest": planned.plan_json.to_string(),
                "identity": sluice_recorder::evidence::Identity::from_env(),
            }),
        ))
        .await?;
    Ok(done)
}

/// The recorded change a degradation names: itself (a failed apply names its change id), or
/// for an interrupted apply, which names its lock owner (`repo#pr`), the last change of the
/// stack that owner recorded.
async fn degraded_change(
    store: &AnyStore,
    unit: &str,
    named: &str,
) -> Result<sluice_store::ChangeRecord> {
    if let Some(c) = store.change(named).await? {
        return Ok(c);
    }
    store
        .changes(100_000)
        .await?
        .into_iter()
        .filter(|c| c.unit == unit)
        .filter(|c| c.pr.is_some_and(|pr| format!("{}#{pr}", c.repo) == named))
        .max_by_key(|c| c.created_at)
        .ok_or_else(|| {
            ReleaseError::Usage(format!(
                "{unit} was degraded by {named}, which names no recorded change of this stack"
            ))
        })
}
