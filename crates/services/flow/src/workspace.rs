//! A repository opened at one or two revisions, with its `sluice.yaml` loaded: the common
//! starting point of `affected`, `validate`, `graph` and `pr`.

use std::path::Path;
use std::sync::Arc;

use sluice_git::git::{GitRepo, Snapshot};
use sluice_model::config::OrgConfig;
use sluice_org::config as org_config;
use sluice_org::discovery::{self, Org};

use crate::error::PipelineError;

/// One revision of the platform repository with its configuration.
pub struct Revision {
    pub snapshot: Snapshot,
    pub config: OrgConfig,
}

pub fn open(repo: &Path) -> Result<Arc<GitRepo>, PipelineError> {
    Ok(Arc::new(GitRepo::open(repo)?))
}

/// Resolve `rev`, list its tree and load its `sluice.yaml`.
pub fn revision(repo: &Arc<GitRepo>, rev: &str) -> Result<Revision, PipelineError> {
    let commit = repo.resolve(rev)?;
    let snapshot = repo.snapshot(commit)?;
    let config = load_config(&snapshot, rev)?;
    Ok(Revision { snapshot, config })
}

/// Resolve and list a revision without requiring a valid configuration (validation reports
/// configuration errors as findings instead of stopping).
pub fn snapshot(repo: &Arc<GitRepo>, rev: &str) -> Result<Snapshot, PipelineError> {
    let commit = repo.resolve(rev)?;
    Ok(repo.snapshot(commit)?)
}

/// The two sides of a change `base...head`: the head revision and the snapshot of the point
/// where head branched off base (their merge base), so that commits landing on base after the
/// branch was cut are not mistaken for part of the change — the diff GitHub shows for a PR.
/// Unrelated histories fall back to base itself.
pub fn change(
    repo: &Arc<GitRepo>,
    base: &str,
    head: &str,
) -> Result<(Snapshot, Revision), PipelineError> {
    let (base_snap, head_snap) = change_snapshots(repo, base, head)?;
    let config = load_config(&head_snap, head)?;
    Ok((
        base_snap,
        Revision {
            snapshot: head_snap,
            config,
        },
    ))
}

/// The snapshots of `change` without loading any configuration.
pub fn change_snapshots(
    repo: &Arc<GitRepo>,
    base: &str,
    head: &str,
) -> Result<(Snapshot, Snapshot), PipelineError> {
    let base_commit = repo.resolve(base)?;
    let head_commit = repo.resolve(head)?;
    let fork = repo
        .merge_base(base_commit, head_commit)?
        .unwrap_or(base_commit);
    let (base_snap, head_snap) = rayon::join(|| repo.snapshot(fork), || repo.snapshot(head_commit));
    Ok((base_snap?, head_snap?))
}

pub fn load_config(snapshot: &Snapshot, rev: &str) -> Result<OrgConfig, PipelineError> {
    let bytes =
        snapshot
            .read_file(org_config::FILE_NAME)?
            .ok_or_else(|| PipelineError::MissingConfig {
                file: org_config::FILE_NAME.into(),
                rev: rev.to_string(),
            })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        PipelineError::Config(vec![org_config::ConfigError {
            file: org_config::FILE_NAME.into(),
            line: 1,
            col: 1,
            message: format!("not UTF-8 text: {e}"),
            hint: None,
        }])
    })?;
    org_config::load(org_config::FILE_NAME, text).map_err(PipelineError::Config)
}

impl Revision {
    /// Full discovery: stacks with their evaluated references, apps, graph, owners.
    pub fn discover(&self) -> Org {
        discovery::discover(&self.config, &self.snapshot, self.snapshot.files())
    }

    pub fn commit(&self) -> String {
        self.snapshot.commit.to_string()
    }
}
