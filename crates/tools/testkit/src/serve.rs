//! `sluice serve` as a child process, for the end-to-end tests that talk to it over real HTTP:
//! one way to start it on a random loopback port and learn its address, one guard that kills
//! it (by its own pid) when the test ends, and `sluice token create` for its API.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::run::{Exit, sluice};
use crate::{s, sluice_bin};

/// A running `sluice serve`; killed and reaped when dropped.
pub struct Served {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, as the server printed it.
    pub base: String,
    /// Where its stderr (the structured log) goes.
    pub logs: PathBuf,
}

impl Served {
    /// The process id, for signals the test sends on purpose (SIGKILL, SIGSTOP, SIGTERM).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the server has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.logs).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sluice serve --listen 127.0.0.1:0 --workers WORKERS --repo REPO` with `secret` as the
/// webhook secret; the caller adds what its test needs (a database, an evidence key, env).
pub fn serve_command(repo: &Path, workers: u32, secret: &str) -> Command {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--workers"])
        .arg(workers.to_string())
        .arg("--repo")
        .arg(repo)
        .env("SLUICE_GITHUB_WEBHOOK_SECRET", secret)
        .env("RUST_LOG", "info");
    cmd
}

/// Starts `cmd` (a [`serve_command`]) with its log in `logs`, and waits for the first line
/// of its stdout, which names the address it listens on.
pub fn start_serve(mut cmd: Command, logs: impl Into<PathBuf>) -> Served {
    let logs = logs.into();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&logs).expect("creating the server log"))
        .spawn()
        .expect("starting sluice serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("reading the server's first line");
    let Some(base) = line.trim().strip_prefix("sluice serve listening on ") else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("unexpected first line {line:?}; logs in {}", logs.display());
    };
    Served {
        base: base.to_string(),
        child,
        logs,
    }
}

/// `sluice token create --repo REPO ARGS…`: the token, which it prints alone on its last line.
pub fn token_create(repo: &Path, args: &[&str]) -> String {
    let mut all = vec!["token", "create", "--repo", s(repo)];
    all.extend_from_slice(args);
    let run = sluice(&all);
    run.expect_code(Exit::OK);
    run.stdout
        .lines()
        .last()
        .expect("a token line")
        .trim()
        .to_string()
}
