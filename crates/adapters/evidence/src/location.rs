//! Where sluice keeps local state and the evidence signing key, so that neither ends up in a
//! commit: `git add -A` in a work tree must never pick up the evidence database or, worse, the
//! private key.
//!
//! - [`prepare_state_dir`]: creates `.sluice/` and, inside a git work tree, writes
//!   `.sluice/.gitignore` containing `*` (the folder ignores itself, whatever the repository's
//!   own ignore files say).
//! - [`key_dir`]: the generated key lives outside the work tree by default, in the platform's
//!   data directory (`$XDG_DATA_HOME/sluice/keys/<repo>-<hash>`, else
//!   `~/.local/share/sluice/keys/...`), or in `SLUICE_KEY_DIR`. A key an older sluice left in
//!   `<repo>/.sluice/keys` is still used when git ignores it.
//! - [`check_key_path`]: a key file inside a work tree that git does not ignore is refused, with
//!   the fix in the message.
//!
//! Ignore rules are read from the `.gitignore` files between the work tree's root and the key
//! and from `.git/info/exclude`, with the common subset of gitignore patterns (`*`, `?`, `**`,
//! anchoring, directory-only patterns). A negated pattern (`!…`) in any of them makes the answer
//! "not ignored": refusing a safe key is a nuisance, accepting a committed one is a leak.

use std::path::{Component, Path, PathBuf};

use crate::keys::KEY_FILE;

/// The body of the `.gitignore` sluice writes into a state folder it creates in a work tree.
pub const STATE_GITIGNORE: &str =
    "# Written by sluice: local state (evidence store, plans, keys) is never committed.\n*\n";

#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: the evidence signing key is inside the git work tree {work_tree} and git does not \
         ignore it, so `git add -A` would commit it; move it out of the work tree (and pass \
         --evidence-key PATH or set SLUICE_EVIDENCE_KEY), or ignore it: \
         `echo '*' > {ignore}`"
    )]
    KeyNotIgnored {
        path: PathBuf,
        work_tree: PathBuf,
        ignore: PathBuf,
    },
    #[error(
        "no place for the evidence signing key: neither XDG_DATA_HOME nor HOME is set; set \
         SLUICE_KEY_DIR to a directory outside the repository, or pass --evidence-key PATH"
    )]
    NoDataDir,
}

/// The root of the git work tree holding `path` (the nearest ancestor with a `.git` entry), if
/// any. A bare repository has no work tree: nothing in it can be committed by accident.
pub fn work_tree_root(path: &Path) -> Option<PathBuf> {
    let abs = absolute(path);
    abs.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

/// Create the state folder `dir` (e.g. `<repo>/.sluice`) if it does not exist; when sluice
/// creates it inside a git work tree, write `.gitignore` with `*` into it first.
pub fn prepare_state_dir(dir: &Path) -> Result<(), LocationError> {
    if dir.exists() {
        return Ok(());
    }
    let io = |source| LocationError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    if work_tree_root(dir).is_some() {
        let ignore = dir.join(".gitignore");
        std::fs::write(&ignore, STATE_GITIGNORE).map_err(|source| LocationError::Io {
            path: ignore,
            source,
        })?;
    }
    Ok(())
}

/// The directory of the generated evidence key for the repository at `repo`: a key an older
/// sluice generated in `<repo>/.sluice/keys` when git ignores it (its log is signed with it),
/// else `SLUICE_KEY_DIR`, else the platform data directory, one folder per repository (a log's
/// origin is named after its key, so two repositories must not share one).
pub fn key_dir(repo: &Path) -> Result<PathBuf, LocationError> {
    let legacy = repo.join(".sluice").join("keys");
    if legacy.join(KEY_FILE).exists() {
        check_key_path(&legacy.join(KEY_FILE))?;
        return Ok(legacy);
    }
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("SLUICE_KEY_DIR") {
        return Ok(dir);
    }
    let data = var("XDG_DATA_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| var("HOME").map(|h| h.join(".local").join("share")))
        .ok_or(LocationError::NoDataDir)?;
    Ok(data.join("sluice").join("keys").join(repo_folder(repo)))
}

/// `<folder name>-<12 hex of SHA-256 of the absolute path>`: readable and unique per checkout.
fn repo_folder(repo: &Path) -> String {
    let abs = absolute(repo);
    let name: String = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let digest = hex::encode(crate::sha256(abs.as_os_str().as_encoded_bytes()));
    format!("{name}-{}", &digest[..12])
}

/// Refuse a key file that sits in a git work tree without being ignored by git.
pub fn check_key_path(key: &Path) -> Result<(), LocationError> {
    let abs = absolute(key);
    let Some(root) = work_tree_root(&abs) else {
        return Ok(());
    };
    let Ok(rel) = abs.strip_prefix(&root) else {
        return Ok(());
    };
    if rel.components().next() == Some(Component::Normal(".git".as_ref())) {
        return Ok(());
    }
    if is_ignored(&root, rel) {
        return Ok(());
    }
    let dir = abs.parent().unwrap_or(&root);
    Err(LocationError::KeyNotIgnored {
        path: abs.clone(),
        work_tree: root.clone(),
        ignore: dir.join(".gitignore"),
    })
}

/// Whether git ignores `rel` (a path relative to the work tree `root`), by the ignore files
/// between the root and it and `.git/info/exclude`.
fn is_ignored(root: &Path, rel: &Path) -> bool {
    let parts: Vec<String> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    // (folder the patterns are relative to, as components; the ignore file's text)
    let mut files: Vec<(usize, String)> = Vec::new();
    if let Ok(t) = std::fs::read_to_string(root.join(".git").join("info").join("exclude")) {
        files.push((0, t));
    }
    let mut dir = root.to_path_buf();
    for (depth, part) in parts.iter().enumerate() {
        if let Ok(t) = std::fs::read_to_string(dir.join(".gitignore")) {
            files.push((depth, t));
        }
        dir.push(part);
    }
    let mut ignored = false;
    for (depth, text) in &files {
        for raw in text.lines() {
            let line = raw.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('!') {
                return false;
            }
            // Any prefix of the path below the ignore file's folder: a folder that is ignored
            // hides everything in it.
            for end in (*depth + 1)..=parts.len() {
                let is_dir = end < parts.len();
                if pattern_matches(line, &parts[*depth..end], is_dir) {
                    ignored = true;
                }
            }
        }
    }
    ignored
}

/// One gitignore pattern against a path (components relative to the ignore file's folder).
fn pattern_matches(pattern: &str, path: &[String], is_dir: bool) -> bool {
    let (pattern, dir_only) = match pattern.strip_suffix('/') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    if dir_only && !is_dir {
        return false;
    }
    let anchored = pattern.starts_with('/') || pattern.trim_start_matches('/').contains('/');
    let pattern = pattern.trim_start_matches('/');
    if anchored {
        wildcard(pattern.as_bytes(), path.join("/").as_bytes())
    } else {
        path.last()
            .is_some_and(|name| wildcard(pattern.as_bytes(), name.as_bytes()))
    }
}

/// Glob match: `*` and `?` stay within one path component, `**` crosses components.
fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match p {
        [] => s.is_empty(),
        [b'*', b'*', rest @ ..] => {
            let rest = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=s.len()).any(|i| wildcard(rest, &s[i..]))
        }
        [b'*', rest @ ..] => (0..=s.len())
            .take_while(|&i| i == 0 || s[i - 1] != b'/')
            .any(|i| wildcard(rest, &s[i..])),
        [b'?', rest @ ..] => s.first().is_some_and(|&c| c != b'/') && wildcard(rest, &s[1..]),
        [c, rest @ ..] => s.first() == Some(c) && wildcard(rest, &s[1..]),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| {
        // Not there yet: canonicalise the nearest existing ancestor and keep the rest.
        let base = std::env::current_dir().unwrap_or_default().join(path);
        let mut existing = base.as_path();
        let mut rest = Vec::new();
        while !existing.exists() {
            match (existing.parent(), existing.file_name()) {
                (Some(p), Some(n)) => {
                    rest.push(n.to_os_string());
                    existing = p;
                }
                _ => return base,
            }
        }
        let mut out = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
        out.extend(rest.iter().rev());
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        dir
    }

    #[test]
    fn a_state_dir_created_in_a_work_tree_ignores_itself() {
        let wt = work_tree();
        let state = wt.path().join(".sluice");
        prepare_state_dir(&state).unwrap();
        assert_eq!(
            std::fs::read_to_string(state.join(".gitignore")).unwrap(),
            STATE_GITIGNORE
        );
        // A key generated there afterwards is ignored by that file.
        let key = state.join("keys").join(KEY_FILE);
        std::fs::create_dir_all(key.parent().unwrap()).unwrap();
        std::fs::write(&key, "k").unwrap();
        check_key_path(&key).unwrap();
    }

    #[test]
    fn outside_a_work_tree_no_ignore_file_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".sluice");
        prepare_state_dir(&state).unwrap();
        assert!(state.is_dir());
        assert!(!state.join(".gitignore").exists());
    }

    #[test]
    fn an_unignored_key_in_a_work_tree_is_refused_with_the_fix() {
        let wt = work_tree();
        let key = wt.path().join(".sluice/keys").join(KEY_FILE);
        std::fs::create_dir_all(key.parent().unwrap()).unwrap();
        std::fs::write(&key, "k").unwrap();
        let err = check_key_path(&key).unwrap_err().to_string();
        assert!(err.contains("git does not ignore it"), "{err}");
        assert!(err.contains("--evidence-key"), "{err}");
        // The legacy location is refused the same way.
        assert!(key_dir(wt.path()).is_err());
        // Ignored by the repository's own .gitignore: accepted.
        std::fs::write(wt.path().join(".gitignore"), "/.sluice/\n").unwrap();
        check_key_path(&key).unwrap();
        assert_eq!(key_dir(wt.path()).unwrap(), wt.path().join(".sluice/keys"));
        // A negation anywhere makes sluice refuse rather than guess.
        std::fs::write(wt.path().join(".gitignore"), ".sluice/\n!keep.txt\n").unwrap();
        assert!(check_key_path(&key).is_err());
    }

    #[test]
    fn patterns_follow_gitignore() {
        let p = |s: &str| -> Vec<String> { s.split('/').map(str::to_string).collect() };
        assert!(pattern_matches("*.pem", &p("a/b/k.pem"), false));
        assert!(!pattern_matches("*.pem", &p("a/k.pem.txt"), false));
        assert!(pattern_matches("/keys", &p("keys"), true));
        assert!(!pattern_matches("/keys", &p("a/keys"), true));
        assert!(pattern_matches("keys/", &p("a/keys"), true));
        assert!(!pattern_matches("keys/", &p("keys"), false));
        assert!(pattern_matches("a/**/k.pem", &p("a/b/c/k.pem"), false));
        assert!(pattern_matches("a/**/k.pem", &p("a/k.pem"), false));
        assert!(!pattern_matches("a/*.pem", &p("a/b/k.pem"), false));
    }

    #[test]
    fn generated_keys_live_outside_the_repository_one_folder_per_repository() {
        let a = work_tree();
        let b = work_tree();
        let (da, db) = (repo_folder(a.path()), repo_folder(b.path()));
        assert_ne!(da, db);
        assert_eq!(da, repo_folder(a.path()));
    }
}
