//! The shared corpus of public fixtures (`../shared/corpus` beside the workspace root), read in
//! place and never copied into the repository.

use std::path::PathBuf;

use crate::require::Requirement;

/// The corpus directory, or `None` (with a notice) when it is absent; a failure instead under
/// `SLUICE_REQUIRE_CORPUS=1`.
#[track_caller]
pub fn corpus_root() -> Option<PathBuf> {
    let root = crate::workspace_root().join("../shared/corpus");
    if root.is_dir() {
        return Some(root);
    }
    Requirement::Corpus.missing(&format!("corpus not found at {}", root.display()))
}

/// A file or directory inside the corpus (`rel` relative to its root), or `None` (with a
/// notice) when it is absent; a failure instead under `SLUICE_REQUIRE_CORPUS=1`.
#[track_caller]
pub fn corpus(rel: &str) -> Option<PathBuf> {
    let path = corpus_root()?.join(rel);
    if path.exists() {
        return Some(path);
    }
    Requirement::Corpus.missing(&format!("corpus entry {rel} not found at {}", path.display()))
}
