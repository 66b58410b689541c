//! Errors of pipeline runs and the exit codes the CLI maps them to.

use sluice_git::git::GitError;
use sluice_org::config::ConfigError;

/// Exit codes shared by every command (documented in the README).
pub mod exit {
    /// Success: nothing blocks.
    pub const OK: i32 = 0;
    /// The command ran and found something blocking (validation findings, a blocked change).
    pub const BLOCKED: i32 = 1;
    /// Usage or configuration error (bad flags, invalid `sluice.yaml`).
    pub const USAGE: i32 = 2;
    /// The repository could not be read (not a git repository, unknown revision).
    pub const REPO: i32 = 3;
    /// The org's definition is inconsistent (dependency cycle, layer rule violation, a stack
    /// config that does not parse).
    pub const GRAPH: i32 = 4;
    /// Anything else (IO failure writing output, internal error).
    pub const INTERNAL: i32 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ConfigError>),
    #[error(
        "{file}: not found at revision {rev}; every sluice repository has one at its root (see docs/config.md)"
    )]
    MissingConfig { file: String, rev: String },
    #[error("{0}")]
    Graph(String),
    #[error("{0}")]
    Io(String),
}

impl PipelineError {
    pub fn exit_code(&self) -> i32 {
        match self {
            PipelineError::Git(_) => exit::REPO,
            PipelineError::Config(_) | PipelineError::MissingConfig { .. } => exit::USAGE,
            PipelineError::Graph(_) => exit::GRAPH,
            PipelineError::Io(_) => exit::INTERNAL,
        }
    }
}
