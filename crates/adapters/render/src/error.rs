//! Why a render failed, with the file and position (or the tool's own message), and the exit
//! code each failure maps to (docs/render.md).

use crate::object::{Identity, Source};

/// Exit codes, consistent with `sluice_flow::error::exit`.
pub mod exit {
    /// The change does not render or does not validate: it is blocked (like blocking findings).
    pub const BLOCKED: i32 = 1;
    /// Usage: unknown app, bad flags.
    pub const USAGE: i32 = 2;
    /// The repository could not be read.
    pub const REPO: i32 = 3;
    /// The machine lacks a tool the app needs, or IO failed.
    pub const INTERNAL: i32 = 5;
}

/// Two objects with one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub identity: Identity,
    pub first: Source,
    pub second: Source,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Invalid YAML or JSON: syntax, duplicate keys, alias bombs.
    #[error("{file}:{line}:{col}: {message}")]
    Syntax {
        file: String,
        line: u32,
        col: u32,
        message: String,
    },
    /// A document that is not a Kubernetes object (no apiVersion, kind or name; not a mapping).
    #[error("{file}:{line}: document {}: {message}", document + 1)]
    Manifest {
        file: String,
        document: usize,
        line: u32,
        message: String,
    },
    #[error(
        "{file}:{line}: document {} is {bytes} bytes, over the {cap}-byte cap per document",
        document + 1
    )]
    Oversized {
        file: String,
        document: usize,
        line: u32,
        bytes: usize,
        cap: usize,
    },
    #[error("{} is defined twice: at {} and at {}", .0.identity, .0.first, .0.second)]
    Duplicate(Box<Duplicate>),
    /// The render tool ran and failed; `message` is its trimmed stderr.
    #[error("{tool} failed for {path}: {message}")]
    Tool {
        tool: String,
        path: String,
        message: String,
    },
    #[error("{tool} not found on PATH: {hint}")]
    ToolMissing { tool: String, hint: String },
    #[error("app `{app}` not found at this revision{}", suggestion(known))]
    UnknownApp { app: String, known: Vec<String> },
    #[error("{0}")]
    Repo(String),
    #[error("{0}")]
    Io(String),
}

fn suggestion(known: &[String]) -> String {
    match known.len() {
        0 => "; discovery found no apps (see `apps` in sluice.yaml)".into(),
        n if n <= 10 => format!("; known apps: {}", known.join(", ")),
        n => format!(
            "; {n} apps are known, e.g. {} (list them with `sluice stacks`)",
            known[..5].join(", ")
        ),
    }
}

impl RenderError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RenderError::Syntax { .. }
            | RenderError::Manifest { .. }
            | RenderError::Oversized { .. }
            | RenderError::Duplicate(_)
            | RenderError::Tool { .. } => exit::BLOCKED,
            RenderError::UnknownApp { .. } => exit::USAGE,
            RenderError::Repo(_) => exit::REPO,
            RenderError::ToolMissing { .. } | RenderError::Io(_) => exit::INTERNAL,
        }
    }

    /// A stable rule id for reports (`render/syntax`, `render/duplicate`, ...).
    pub fn rule(&self) -> &'static str {
        match self {
            RenderError::Syntax { .. } => "render/syntax",
            RenderError::Manifest { .. } => "render/manifest",
            RenderError::Oversized { .. } => "render/oversized",
            RenderError::Duplicate(_) => "render/duplicate",
            RenderError::Tool { .. } => "render/tool-failed",
            RenderError::ToolMissing { .. } => "render/tool-missing",
            RenderError::UnknownApp { .. } => "render/unknown-app",
            RenderError::Repo(_) => "render/repo",
            RenderError::Io(_) => "render/io",
        }
    }
}

impl From<sluice_model::tree::TreeError> for RenderError {
    fn from(e: sluice_model::tree::TreeError) -> Self {
        RenderError::Repo(e.to_string())
    }
}
