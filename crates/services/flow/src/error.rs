//! Errors of pipeline runs. Each keeps the error it came from (`#[source]`); which exit code
//! an error means is decided by the CLI (`crates/surfaces/cli/src/exit.rs`), not here.

use std::path::{Path, PathBuf};

use sluice_git::git::GitError;
use sluice_iac::config::ConfigFieldError;
use sluice_model::glob::GlobError;
use sluice_org::config::ConfigError;
use sluice_policy::PolicyError;

/// An error a cause is carried under, whatever its type.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

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
    /// The `plan:` section of `sluice.yaml`, by field.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    PlanConfig(Vec<ConfigFieldError>),
    /// A policy bundle, an exception file or the `policy:` section; the error names the file and
    /// position (or the field).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The org's definition is inconsistent: dependency cycles and layer-rule violations, one
    /// per line.
    #[error("{}", .0.join("\n"))]
    Graph(Vec<String>),
    /// A unit's path pattern does not compile.
    #[error(transparent)]
    Glob(#[from] GlobError),
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A step failed underneath: what was being done, and the error.
    #[error("{context}: {source}")]
    Failed {
        context: String,
        #[source]
        source: Cause,
    },
    /// A failure with no error underneath (a child process's exit status, a refusal).
    #[error("{0}")]
    Internal(String),
}

impl PipelineError {
    /// A file or folder at `path` that could not be read or written.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> PipelineError {
        PipelineError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// `context` failed because of `source`.
    pub fn failed(context: impl Into<String>, source: impl Into<Cause>) -> PipelineError {
        PipelineError::Failed {
            context: context.into(),
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn causes_are_kept() {
        let e = PipelineError::io(
            "plans/a.json",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert_eq!(e.to_string(), "plans/a.json: gone");
        assert_eq!(e.source().unwrap().to_string(), "gone");
        let inner = PipelineError::Internal("inner".into());
        let e = PipelineError::failed("the demo's evidence", inner);
        assert_eq!(e.to_string(), "the demo's evidence: inner");
        assert_eq!(e.source().unwrap().to_string(), "inner");
        let e = PipelineError::from(PolicyError::Bundle {
            bundle: "policy/acme".into(),
            message: "no rules".into(),
        });
        assert_eq!(e.to_string(), "bundle policy/acme: no rules");
    }
}
