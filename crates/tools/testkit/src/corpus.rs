//! The shared corpus of public fixtures (`../shared/corpus` beside the workspace root), read in
//! place and never copied into the repository.

use std::path::{Path, PathBuf};

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
    Requirement::Corpus.missing(&format!(
        "corpus entry {rel} not found at {}",
        path.display()
    ))
}

/// Every file under `dir` whose name ends in `.{extension}`, recursively, in sorted path order.
pub fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    let mut out = Vec::new();
    for p in entries {
        if p.is_dir() {
            out.extend(files_with_extension(&p, extension));
        } else if p.extension().is_some_and(|e| e == extension) {
            out.push(p);
        }
    }
    out
}
