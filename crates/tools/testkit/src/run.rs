//! Running the `sluice` binary the way a user does, and asserting on what it returned.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// An exit code of `sluice`, named after the README's "Exit codes" table so a test says which
/// outcome it expects (and a renumbering is one edit here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub i32);

impl Exit {
    /// Success, nothing blocks.
    pub const OK: Exit = Exit(0);
    /// Blocked: blocking validation findings or a policy deny.
    pub const BLOCKED: Exit = Exit(1);
    /// Usage or configuration error (bad flags, invalid or missing `sluice.yaml`, bad input file).
    pub const USAGE: Exit = Exit(2);
    /// Repository error (not a git repository, unknown revision).
    pub const REPOSITORY: Exit = Exit(3);
    /// A plan failed (`sluice plan`, `sluice pr`).
    pub const PLAN_FAILED: Exit = Exit(6);
    /// Inconsistent org (dependency cycle, layer-rule violation).
    pub const INCONSISTENT_ORG: Exit = Exit(4);
    /// Internal or IO error.
    pub const INTERNAL: Exit = Exit(5);
}

/// The `sluice` binary cargo built beside the running test (`target/<profile>/sluice`): cargo
/// builds a package's binaries before its integration tests, so `sluice-cli`'s tests find it.
pub fn sluice_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_sluice") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let mut dir = exe.parent().expect("test binary directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("profile directory");
    }
    let bin = dir.join(format!("sluice{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the sluice binary is not at {} (only sluice-cli's tests have it built)",
        bin.display()
    );
    bin
}

/// A configured `sluice` invocation: environment set or removed, optionally a PATH that puts
/// one directory (an engine test double) before the system's basics.
#[derive(Debug, Clone)]
pub struct Sluice {
    bin: PathBuf,
    env: Vec<(String, Option<OsString>)>,
}

impl Default for Sluice {
    fn default() -> Self {
        Self::new()
    }
}

impl Sluice {
    pub fn new() -> Self {
        Sluice {
            bin: sluice_bin(),
            env: vec![("NO_COLOR".into(), Some("1".into()))],
        }
    }

    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// PATH = `dir`, `/usr/bin`, `/bin` (what a shell-script test double needs), and no plugin
    /// cache from the developer's environment.
    pub fn path_first(self, dir: &Path) -> Self {
        let path =
            std::env::join_paths([dir, Path::new("/usr/bin"), Path::new("/bin")]).expect("PATH");
        self.env("PATH", path).env_remove("TF_PLUGIN_CACHE_DIR")
    }

    /// `CMD --repo REPO --base BASE --head HEAD EXTRA…`: a command over one change.
    pub fn change(&self, cmd: &str, repo: &Path, base: &str, head: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            cmd,
            "--repo",
            crate::s(repo),
            "--base",
            base,
            "--head",
            head,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let out = cmd.output().expect("sluice runs");
        Run {
            // A signal (crash) has no code: report it as -1 so no assertion mistakes it for success.
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// `sluice ARGS` with the default environment.
pub fn sluice(args: &[&str]) -> Run {
    Sluice::new().run(args)
}

/// `sluice CMD --repo REPO --base BASE --head HEAD EXTRA…` with the default environment.
pub fn sluice_change(cmd: &str, repo: &Path, base: &str, head: &str, extra: &[&str]) -> Run {
    Sluice::new().change(cmd, repo, base, head, extra)
}

/// What a `sluice` run returned.
#[derive(Debug, Clone)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout parsed as JSON; panics showing both streams when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panics, showing both streams, unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: Exit) -> &Self {
        assert_eq!(
            self.code, code.0,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless stdout contains every one of `needles`.
    #[track_caller]
    pub fn stdout_has(&self, needles: &[&str]) -> &Self {
        crate::assert_has(&self.stdout, needles);
        self
    }

    /// Panics unless stderr contains every one of `needles`.
    #[track_caller]
    pub fn stderr_has(&self, needles: &[&str]) -> &Self {
        crate::assert_has(&self.stderr, needles);
        self
    }

    /// Panics, showing both streams, unless the code is `code` and stderr names every needle:
    /// the shape of every "bad input is refused with a clear message" assertion.
    #[track_caller]
    pub fn expect_error(&self, code: Exit, needles: &[&str]) -> &Self {
        self.expect_code(code).stderr_has(needles)
    }

    /// Both streams, for "never printed anywhere" checks.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}
