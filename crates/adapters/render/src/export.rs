//! Export what an app's build reads from git objects into a temporary directory, keeping
//! repository-relative paths, so that Kustomize and Helm see exactly the revision being
//! rendered (never the work tree) including bases and components outside the app folder.

use std::collections::BTreeSet;
use std::path::Path;

use sluice_model::kustomize::AppRef;
use sluice_model::tree::Tree;
use tempfile::TempDir;

use crate::error::RenderError;

/// Files written for one app.
pub struct Exported {
    pub dir: TempDir,
    pub files: Vec<String>,
    pub bytes: u64,
}

/// The repository files an app's build needs: everything under its folder and under every
/// folder it references, and every referenced file.
pub fn files_for(snapshot: &dyn Tree, app_path: &str, refs: &[AppRef]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = snapshot.files_under(app_path).map(String::from).collect();
    for r in refs {
        if r.is_dir {
            out.extend(snapshot.files_under(&r.path).map(String::from));
        } else if snapshot.is_file(&r.path) || snapshot.is_symlink(&r.path) {
            out.insert(r.path.clone());
        }
    }
    out
}

/// A repository path is safe to join below the export root: relative, no `..`, no empties.
pub fn is_safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// Write `files` of `snapshot` below a fresh temporary directory.
pub fn export(snapshot: &dyn Tree, files: &BTreeSet<String>) -> Result<Exported, RenderError> {
    let dir = tempfile::Builder::new()
        .prefix("sluice-render-")
        .tempdir()
        .map_err(|e| RenderError::Io(format!("creating a temporary directory: {e}")))?;
    let mut bytes = 0u64;
    let mut written = Vec::with_capacity(files.len());
    for path in files {
        if !is_safe_path(path) {
            return Err(RenderError::Io(format!(
                "refusing to export `{path}`: not a plain repository path"
            )));
        }
        // Symlinks read as absent: they are never followed out of the revision.
        let Some(content) = snapshot.read_file(path)? else {
            continue;
        };
        write_file(dir.path(), path, &content)?;
        bytes += content.len() as u64;
        written.push(path.clone());
    }
    Ok(Exported {
        dir,
        files: written,
        bytes,
    })
}

fn write_file(root: &Path, path: &str, content: &[u8]) -> Result<(), RenderError> {
    let target = root.join(path);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| RenderError::Io(format!("exporting {path}: {e}")))?;
    }
    std::fs::write(&target, content).map_err(|e| RenderError::Io(format!("exporting {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_safe() {
        assert!(is_safe_path("env-gitops/base/app/deploy.yaml"));
        for bad in ["", "/etc/passwd", "a/../b", "../x", "a//b", "./a", "a\\b"] {
            assert!(!is_safe_path(bad), "{bad}");
        }
    }
}
