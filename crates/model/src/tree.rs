//! Read access to the files of one revision: what adapters take instead of a git type.
//!
//! Parsers, discovery, render, policy and the IaC export read a revision's files through this
//! trait, so only the git adapter knows about git; tests and generators hand them an in-memory
//! tree instead. Paths are repo-relative with `/` separators and no leading slash; the root is
//! `""`. Symbolic links are never followed: they read as absent, and [`Tree::is_symlink`] lets a
//! message say why a reference through one is missing.

use std::sync::Arc;

/// Reading a file of a revision failed (the object store, not the path, is at fault).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TreeError(Box<dyn std::error::Error + Send + Sync>);

impl TreeError {
    pub fn new(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TreeError {
        TreeError(cause.into())
    }
}

/// Something a reader of a revision could not decide statically, or a reference to something
/// missing, at a 1-based position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Warning {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

/// The files of one revision.
pub trait Tree: Sync {
    /// The revision these files are of (a commit id when read from git), for messages and
    /// records.
    fn revision(&self) -> String;

    /// Regular files below `dir` (recursively; `""` is the whole tree), in path order.
    fn files_under<'a>(&'a self, dir: &'a str) -> Box<dyn Iterator<Item = &'a str> + 'a>;

    /// File content, `None` if absent or not a regular file.
    fn read(&self, path: &str) -> Option<Arc<[u8]>>;

    /// Like [`Tree::read`], but a failure to read an existing file is an error, not absence.
    fn read_file(&self, path: &str) -> Result<Option<Arc<[u8]>>, TreeError> {
        Ok(self.read(path))
    }

    fn is_file(&self, path: &str) -> bool;

    fn is_dir(&self, path: &str) -> bool;

    /// Immediate child file names (not directories) of `dir`, sorted.
    fn list_dir(&self, dir: &str) -> Vec<String>;

    /// Whether `path` is a symbolic link. Links are never followed, so a reference through
    /// one reads as missing; this lets the warning say why.
    fn is_symlink(&self, _path: &str) -> bool {
        false
    }
}
