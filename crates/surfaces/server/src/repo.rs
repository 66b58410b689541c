//! The platform repository `sluice serve` reads revisions from: a local path (read in place), or
//! a git remote mirrored under `.sluice/repo.git` and fetched when a job names a commit the mirror
//! does not have yet (a webhook can arrive before a fetch would see its push).

use std::path::{Path, PathBuf};
use std::process::Command;

use tokio::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoSource {
    Local(PathBuf),
    Remote(String),
}

impl RepoSource {
    /// A URL (`https://…`, `ssh://…`, `git@host:path`, `file://…`) or a path that must exist.
    pub fn parse(text: &str, cwd: &Path) -> Result<RepoSource, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("--repo is empty: give a path or a git URL".into());
        }
        if text.contains("://") || (text.starts_with("git@") && text.contains(':')) {
            return Ok(RepoSource::Remote(text.to_string()));
        }
        let path = cwd.join(text);
        if !path.is_dir() {
            return Err(format!(
                "--repo {}: not a directory (give a repository path or a git URL)",
                path.display()
            ));
        }
        Ok(RepoSource::Local(path))
    }
}

/// Revisions on demand, from the configured source.
/// The source as a runner is told to fetch it: the path, or the URL.
impl std::fmt::Display for RepoSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepoSource::Local(p) => write!(f, "{}", p.display()),
            RepoSource::Remote(url) => f.write_str(url),
        }
    }
}

#[derive(Debug)]
pub struct Revisions {
    source: RepoSource,
    mirror: PathBuf,
    /// One fetch at a time: concurrent workers would race on the mirror's refs.
    fetching: Mutex<()>,
}

fn git(dir: Option<&Path>, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| format!("running git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl Revisions {
    pub fn new(source: RepoSource, state_dir: &Path) -> Revisions {
        Revisions {
            source,
            mirror: state_dir.join(".sluice/repo.git"),
            fetching: Mutex::new(()),
        }
    }

    /// Where the pipeline reads the repository (the path, or the mirror).
    pub fn path(&self) -> &Path {
        match &self.source {
            RepoSource::Local(p) => p,
            RepoSource::Remote(_) => &self.mirror,
        }
    }

    fn has_commit(&self, sha: &str) -> bool {
        git(
            Some(self.path()),
            &["cat-file", "-e", &format!("{sha}^{{commit}}")],
        )
        .is_ok()
    }

    /// Makes sure every commit in `shas` is readable, fetching a remote when one is missing.
    pub async fn ensure(&self, shas: &[&str]) -> Result<(), String> {
        if shas.iter().all(|s| self.has_commit(s)) {
            return Ok(());
        }
        let RepoSource::Remote(url) = &self.source else {
            let missing: Vec<&&str> = shas.iter().filter(|s| !self.has_commit(s)).collect();
            return Err(format!(
                "commit {} is not in {} (not pushed there yet?)",
                missing.first().map(|s| s.to_string()).unwrap_or_default(),
                self.path().display()
            ));
        };
        let _guard = self.fetching.lock().await;
        let url = url.clone();
        let mirror = self.mirror.clone();
        tokio::task::spawn_blocking(move || {
            if !mirror.join("HEAD").exists() {
                git(
                    None,
                    &[
                        "clone",
                        "--mirror",
                        "--quiet",
                        &url,
                        &mirror.to_string_lossy(),
                    ],
                )?;
            }
            git(
                Some(&mirror),
                &[
                    "fetch",
                    "--quiet",
                    "--prune",
                    "origin",
                    "+refs/heads/*:refs/heads/*",
                    "+refs/pull/*/head:refs/pull/*/head",
                ],
            )
            .map(|_| ())
        })
        .await
        .map_err(|e| format!("fetch task: {e}"))??;
        match shas.iter().find(|s| !self.has_commit(s)) {
            None => Ok(()),
            Some(sha) => Err(format!("commit {sha} is not in the remote after a fetch")),
        }
    }

    /// `sluice.yaml` at the repository's HEAD (the work tree's file for a local checkout), or
    /// `None` when there is none.
    pub fn sluice_yaml(&self) -> Option<String> {
        if let RepoSource::Local(p) = &self.source
            && let Ok(text) = std::fs::read_to_string(p.join("sluice.yaml"))
        {
            return Some(text);
        }
        git(Some(self.path()), &["show", "HEAD:sluice.yaml"]).ok()
    }
}
