//! Exporting a stack from the head revision into an isolated working directory.
//!
//! The engine must plan exactly what the PR contains, never whatever the runner's checkout
//! happens to hold, and parallel runs must not share `.terraform/` or `.terragrunt-cache/`
//! directories. So each stack gets a fresh directory with the repository layout preserved
//! (`<root>/<repo path>`): the stack directory plus every local input its static evaluation
//! found (included and read configs, `terraform { source }`, local modules, var files) and the
//! directories of its Terragrunt dependencies, read from git objects. Relative paths in the
//! code (`../../modules/vpc`, `find_in_parent_folders()`) therefore resolve as in the repo.
//! Symlinks are not exported (git symlinks are never followed by sluice) and the executable
//! bit is not kept.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use sluice_model::tree::Tree;

/// A repo path the stack needs: one file, or a directory and everything under it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Input {
    pub path: String,
    pub is_dir: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("{path}: path escapes the export directory")]
    Escapes { path: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{dir}: the stack directory has no files at this revision")]
    Empty { dir: String },
}

/// Write the stack and its inputs under `root`; returns the stack's directory in the export
/// and the number of files written.
pub fn export_stack(
    tree: &dyn Tree,
    stack_dir: &str,
    inputs: &[Input],
    root: &Path,
) -> Result<(PathBuf, usize), ExportError> {
    let mut files: BTreeSet<String> = tree.files_under(stack_dir).map(str::to_string).collect();
    if files.is_empty() {
        return Err(ExportError::Empty {
            dir: stack_dir.to_string(),
        });
    }
    for input in inputs {
        if input.is_dir {
            files.extend(tree.files_under(&input.path).map(str::to_string));
        } else if tree.is_file(&input.path) {
            files.insert(input.path.clone());
        }
    }
    for path in &files {
        let dest = safe_join(root, path)?;
        let bytes = tree.read(path).ok_or_else(|| ExportError::Io {
            path: path.clone(),
            message: "listed but cannot be read".into(),
        })?;
        if let Some(parent) = dest.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| io(path, e))?;
        }
        fs::write(&dest, &bytes).map_err(|e| io(path, e))?;
    }
    let dir = safe_join(root, stack_dir)?;
    Ok((dir, files.len()))
}

fn io(path: &str, e: std::io::Error) -> ExportError {
    ExportError::Io {
        path: path.to_string(),
        message: e.to_string(),
    }
}

/// `root/path` for a repo-relative path; anything absolute or with `..` is refused.
pub fn safe_join(root: &Path, path: &str) -> Result<PathBuf, ExportError> {
    let rel = Path::new(path);
    let ok = !path.is_empty()
        && rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !ok {
        return Err(ExportError::Escapes {
            path: path.to_string(),
        });
    }
    Ok(root.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    struct Mem(BTreeMap<String, Vec<u8>>);

    impl Tree for Mem {
        fn revision(&self) -> String {
            "memory".to_string()
        }
        fn files_under<'a>(&'a self, dir: &'a str) -> Box<dyn Iterator<Item = &'a str> + 'a> {
            let prefix = format!("{dir}/");
            Box::new(
                self.0
                    .keys()
                    .filter(move |k| k.starts_with(&prefix))
                    .map(String::as_str),
            )
        }
        fn is_dir(&self, path: &str) -> bool {
            let prefix = format!("{path}/");
            self.0.keys().any(|k| k.starts_with(&prefix))
        }
        fn list_dir(&self, dir: &str) -> Vec<String> {
            self.0
                .keys()
                .filter(|k| sluice_model::path::parent(k) == dir)
                .map(|k| sluice_model::path::file_name(k).to_string())
                .collect()
        }
        fn read(&self, path: &str) -> Option<Arc<[u8]>> {
            self.0.get(path).map(|b| Arc::from(b.as_slice()))
        }
        fn is_file(&self, path: &str) -> bool {
            self.0.contains_key(path)
        }
    }

    #[test]
    fn exports_stack_and_inputs_with_layout() {
        let mut m = BTreeMap::new();
        for (p, c) in [
            (
                "live/prod/app/main.tf",
                "module \"m\" { source = \"../../../modules/m\" }",
            ),
            ("live/prod/app/sub/extra.tf", "# nested"),
            ("live/prod/other/main.tf", "# not needed"),
            ("modules/m/main.tf", "# module"),
            ("live/prod/env.hcl", "locals {}"),
            ("README.md", "not needed"),
        ] {
            m.insert(p.to_string(), c.as_bytes().to_vec());
        }
        let tree = Mem(m);
        let dir = tempfile::tempdir().unwrap();
        let inputs = vec![
            Input {
                path: "modules/m".into(),
                is_dir: true,
            },
            Input {
                path: "live/prod/env.hcl".into(),
                is_dir: false,
            },
            Input {
                path: "live/prod/missing.hcl".into(),
                is_dir: false,
            },
        ];
        let (stack, n) = export_stack(&tree, "live/prod/app", &inputs, dir.path()).unwrap();
        assert_eq!(n, 4);
        assert_eq!(stack, dir.path().join("live/prod/app"));
        assert!(stack.join("sub/extra.tf").is_file());
        assert!(dir.path().join("modules/m/main.tf").is_file());
        assert!(dir.path().join("live/prod/env.hcl").is_file());
        assert!(!dir.path().join("live/prod/other").exists());
        assert!(!dir.path().join("README.md").exists());
        let err = export_stack(&tree, "live/none", &[], dir.path()).unwrap_err();
        assert!(matches!(err, ExportError::Empty { .. }));
    }

    #[test]
    fn refuses_escapes() {
        let root = Path::new("/tmp/x");
        assert!(safe_join(root, "a/b").is_ok());
        for bad in ["../a", "/etc/passwd", "a/../../b", ""] {
            assert!(safe_join(root, bad).is_err(), "{bad}");
        }
    }
}
