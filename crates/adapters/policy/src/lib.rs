//! sluice's policy stage (DESIGN.md §2, stage 5): Rego evaluated in process with regorus.
//!
//! - [`bundle`]: policy bundles from disk or a revision's tree, versioned by commit + digest.
//! - [`builtin`]: the built-in pack shipped in the binary, with its catalog.
//! - [`engine`]: compile once, evaluate per input under time limits, fail closed.
//! - [`record`]: the decision record, byte-identical for the same input and bundles (its types
//!   live in `sluice_model::record`, re-exported here).
//! - [`exceptions`]: exception files with positions (the model lives in
//!   `sluice_model::exception`).
//! - [`config`]: the `policy:` section of `sluice.yaml`.
//! - [`gatekeeper`]: Gatekeeper ConstraintTemplates and constraints, and `suite.yaml` runs.
//! - [`testing`]: `sluice policy test`, running `test_*` rules like `opa test`.
//!
//! [`from_revision`] wires them for a platform repository revision.

pub mod builtin;
pub mod bundle;
pub mod config;
pub mod engine;
pub mod error;
pub mod exceptions;
pub mod gatekeeper;
pub mod input;
pub mod testing;

// The decision record and its canonical JSON are domain types (sluice-model); re-exported so
// the policy API keeps reading as one place.
use sluice_model::config::OrgConfig;
use sluice_model::exception::{self, Notice, Timestamp};
use sluice_model::tree::Tree;
pub use sluice_model::{canonical, record};

pub use bundle::Bundle;
pub use config::PolicyConfig;
pub use engine::{EngineOptions, EngineSpec, PolicyEngine};
pub use error::PolicyError;
pub use input::{AppContext, ChangeContext, EvalInput};
pub use record::{Decision, DecisionRecord, Outcome, RuleResult};

/// The logical repos the policy stage reads by default (DESIGN.md §5).
pub const POLICY_LIBRARY_REPO: &str = "policy-library";
pub const SECURITY_EXCEPTIONS_REPO: &str = "security-exceptions";

/// A ready engine plus what loading found about the exceptions.
#[derive(Debug)]
pub struct PolicySetup {
    pub engine: PolicyEngine,
    pub config: PolicyConfig,
    /// Expired, too-long-lived and unknown-policy exceptions (warnings), from
    /// [`exception::review`].
    pub notices: Vec<Notice>,
    /// Unknown fields in exception files and the like.
    pub warnings: Vec<exceptions::LoadError>,
}

/// Build the policy stage for one revision of the platform repository: the built-in pack as
/// configured, the configured bundles (default: the `policy-library` folder when it has Rego),
/// and the exceptions of the `security-exceptions` folder, judged at `now`.
///
/// Invalid exception files are an error (a typo must not silently leave a deny in force, nor an
/// intended waiver unreviewed); warnings are returned for the caller to show.
pub fn from_revision(
    snapshot: &dyn Tree,
    org: &OrgConfig,
    now: Timestamp,
) -> Result<PolicySetup, PolicyError> {
    let config = config::from_org(org)?;
    let bundles = revision_bundles(snapshot, org, &config)?;
    let loaded = revision_exceptions(snapshot, org, &config);
    assemble(config, bundles, loaded, now)
}

/// The bundles of a revision: `policy.bundles`, else the `policy-library` folder when it holds
/// Rego. A configured folder that is missing is an error.
pub fn revision_bundles(
    snapshot: &dyn Tree,
    org: &OrgConfig,
    config: &PolicyConfig,
) -> Result<Vec<Bundle>, PolicyError> {
    let mut dirs = config.bundles.clone();
    if dirs.is_empty()
        && let Some(dir) = org.repo_path(POLICY_LIBRARY_REPO)
        && snapshot.files_under(dir).any(|p| p.ends_with(".rego"))
    {
        dirs.push(dir.to_string());
    }
    let mut bundles = Vec::new();
    for dir in &dirs {
        if snapshot.files_under(dir).next().is_none() {
            return Err(PolicyError::Config {
                field: "policy.bundles".into(),
                message: format!("`{dir}` holds no files at revision {}", snapshot.revision()),
            });
        }
        bundles.push(Bundle::from_snapshot(snapshot, dir)?);
    }
    Ok(bundles)
}

/// The exception files of a revision: `policy.exceptions.path`, else the
/// `security-exceptions` folder (none when the org has neither).
pub fn revision_exceptions(
    snapshot: &dyn Tree,
    org: &OrgConfig,
    config: &PolicyConfig,
) -> exceptions::LoadedExceptions {
    let dir = config
        .exceptions_path
        .clone()
        .or_else(|| org.repo_path(SECURITY_EXCEPTIONS_REPO).map(str::to_string));
    match dir {
        Some(dir) => exceptions::load_snapshot(snapshot, &dir),
        None => exceptions::LoadedExceptions::default(),
    }
}

/// Build the policy stage from already loaded parts (the CLI's on-disk mode uses this too).
pub fn assemble(
    config: PolicyConfig,
    bundles: Vec<Bundle>,
    loaded: exceptions::LoadedExceptions,
    now: Timestamp,
) -> Result<PolicySetup, PolicyError> {
    if !loaded.errors.is_empty() {
        return Err(PolicyError::Exceptions(loaded.errors));
    }
    let engine = PolicyEngine::new(EngineSpec {
        builtin: config.builtin.clone(),
        bundles,
        exceptions: loaded.exceptions,
        now: Some(now),
        options: config.options.clone(),
    })?;
    let known = engine.known_rule_ids();
    let notices = exception::review(
        engine.exceptions(),
        Some(&known),
        now,
        config.exceptions_max_days,
    );
    if let Some(dup) = notices.iter().find(|n| n.kind.is_error()) {
        return Err(PolicyError::Exceptions(vec![exceptions::LoadError {
            file: dup.file.clone(),
            line: dup.line,
            col: 1,
            message: dup.message.clone(),
        }]));
    }
    Ok(PolicySetup {
        engine,
        config,
        notices,
        warnings: loaded.warnings,
    })
}

/// The current time as a [`Timestamp`] (the one place this crate reads the clock).
pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_unix(d.as_secs() as i64, d.subsec_nanos())
}
