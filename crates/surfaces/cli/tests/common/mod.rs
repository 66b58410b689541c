//! Helpers for the end-to-end tests: small orgs built as real git repositories with the `git`
//! CLI in a temporary directory, and the `sluice` binary run against them.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

/// A work-tree git repository on branch `main` in a temporary directory.
pub struct Repo {
    dir: TempDir,
}

impl Default for Repo {
    fn default() -> Self {
        Self::new()
    }
}

impl Repo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write (or overwrite) a file, creating its parent directories.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
        self
    }

    /// Remove a file or a whole directory.
    pub fn remove(&self, rel: &str) -> &Self {
        let p = self.path().join(rel);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).expect("rm -r");
        } else {
            std::fs::remove_file(&p).expect("rm");
        }
        self
    }

    /// `git mv` a file or directory.
    pub fn rename(&self, from: &str, to: &str) -> &Self {
        let dest = self.path().join(to);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        self.git(&["mv", from, to]);
        self
    }

    /// A symbolic link at `rel` whose stored target is `target` (as git records it).
    #[cfg(unix)]
    pub fn symlink(&self, rel: &str, target: &str) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, &p).expect("symlink");
        self
    }

    /// Run git in the repository; panics with its stderr on failure; returns trimmed stdout.
    pub fn git(&self, args: &[&str]) -> String {
        git_in(self.path(), args)
    }

    /// Stage everything and commit; returns the new commit's full SHA.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&[
            "commit",
            "-q",
            "--allow-empty",
            "--no-verify",
            "-m",
            message,
        ]);
        self.head()
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn checkout_new(&self, branch: &str) {
        self.git(&["checkout", "-q", "-b", branch]);
    }

    pub fn checkout(&self, rev: &str) {
        self.git(&["checkout", "-q", rev]);
    }

    /// A bare clone of this repository (all branches and tags), in its own temporary directory.
    pub fn bare_clone(&self) -> (TempDir, PathBuf) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let bare = tmp.path().join("org.git");
        let src = self.path().to_str().expect("utf-8 path");
        git_in(
            tmp.path(),
            &[
                "clone",
                "-q",
                "--bare",
                src,
                bare.to_str().expect("utf-8 path"),
            ],
        );
        (tmp, bare)
    }
}

pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
            "-c",
            "core.symlinks=true",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// What a `sluice` run returned.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panics, showing both streams, unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

pub fn sluice(args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("sluice runs");
    Run {
        // A signal (crash) has no code: report it as -1 so no assertion mistakes it for success.
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `sluice affected --format json` on any repository path; the raw run.
pub fn affected_run(repo: &Path, base: &str, head: &str) -> Run {
    sluice(&[
        "affected",
        "--repo",
        repo.to_str().expect("utf-8 path"),
        "--base",
        base,
        "--head",
        head,
        "--format",
        "json",
    ])
}

/// `sluice affected --format json`, which must succeed; the parsed report.
pub fn affected(repo: &Path, base: &str, head: &str) -> Value {
    let run = affected_run(repo, base, head);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["schema"], "sluice.affected/v1");
    report
}

/// `(id, status)` of every unit in `report[section]` ("stacks" or "apps"), in report order.
pub fn statuses(report: &Value, section: &str) -> Vec<(String, String)> {
    report[section]
        .as_array()
        .unwrap_or_else(|| panic!("{section} is a list: {report:#}"))
        .iter()
        .map(|u| {
            (
                u["id"].as_str().expect("id").to_string(),
                u["status"].as_str().expect("status").to_string(),
            )
        })
        .collect()
}

/// Shorthand for building the expected `(id, status)` list.
pub fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The unit with `id` in `report[section]`.
pub fn unit<'a>(report: &'a Value, section: &str, id: &str) -> &'a Value {
    report[section]
        .as_array()
        .expect("list")
        .iter()
        .find(|u| u["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {section}: {report:#}"))
}

/// Reasons of one unit as `(kind, path, via, stack)` with absent fields as "".
pub fn reasons(report: &Value, section: &str, id: &str) -> Vec<(String, String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    unit(report, section, id)["reasons"]
        .as_array()
        .expect("reasons list")
        .iter()
        .map(|r| (s(&r["kind"]), s(&r["path"]), s(&r["via"]), s(&r["stack"])))
        .collect()
}

/// The distinct reason kinds of one unit, sorted.
pub fn kinds(report: &Value, section: &str, id: &str) -> Vec<String> {
    let mut k: Vec<String> = reasons(report, section, id)
        .into_iter()
        .map(|r| r.0)
        .collect();
    k.sort();
    k.dedup();
    k
}

/// `(kind, path)` of every reason of one unit, sorted.
pub fn kind_paths(report: &Value, section: &str, id: &str) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = reasons(report, section, id)
        .into_iter()
        .map(|r| (r.0, r.1))
        .collect();
    k.sort();
    k.dedup();
    k
}

/// `(kind, stack)` of the dependency reasons of one unit, sorted.
pub fn dependency_reasons(report: &Value, section: &str, id: &str) -> Vec<String> {
    let mut k: Vec<String> = reasons(report, section, id)
        .into_iter()
        .filter(|r| r.0 == "dependency")
        .map(|r| r.3)
        .collect();
    k.sort();
    k
}

/// The warnings of a report as `(file, line, message)`.
pub fn warnings(report: &Value) -> Vec<(String, u64, String)> {
    report["warnings"]
        .as_array()
        .expect("warnings list")
        .iter()
        .map(|w| {
            (
                w["file"].as_str().expect("file").to_string(),
                w["line"].as_u64().expect("line"),
                w["message"].as_str().expect("message").to_string(),
            )
        })
        .collect()
}

/// A `sluice.yaml` for the test orgs: stacks under `live/` laid out `{env}/{region}/{stack}`,
/// apps under `gitops/clusters/` laid out `{cluster}/apps/{app}`. `stacks_extra` is appended
/// to the `stacks:` section (its lines indented by two spaces).
pub fn sluice_yaml(stacks_extra: &str) -> String {
    format!(
        "version: 1\norg: test\nenvironments:\n  dev:  {{ order: 1 }}\n  prod: {{ order: 2, protected: true }}\nstacks:\n  root: live\n  layout: \"{{env}}/{{region}}/{{stack}}\"\n{stacks_extra}apps:\n  root: gitops/clusters\n  layout: \"{{cluster}}/apps/{{app}}\"\n"
    )
}

/// A repository with the default `sluice.yaml` written (not committed).
pub fn org_repo() -> Repo {
    let repo = Repo::new();
    repo.write("sluice.yaml", sluice_yaml(""));
    repo
}

/// A repository with a `sluice.yaml` whose `stacks:` section gets `stacks_extra`.
pub fn org_repo_with(stacks_extra: &str) -> Repo {
    let repo = Repo::new();
    repo.write("sluice.yaml", sluice_yaml(stacks_extra));
    repo
}

/// A minimal Terragrunt stack body.
pub fn plain_stack(inputs: &str) -> String {
    format!("inputs = {{\n  {inputs}\n}}\n")
}
