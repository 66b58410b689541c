//! `sluice bench`: measurements with a peer run beside them in the same run.
//!
//! `affected` times `sluice affected` in fresh processes on a generated org and, as the peer,
//! the least any tool must do for the same question: `git diff --name-only` plus reading every
//! `terragrunt.hcl` of the head revision (`git ls-tree` + `git cat-file --batch`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;

use crate::generate::{BASE_BRANCH, PR_BRANCH};
use sluice_flow::error::PipelineError;

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub runs_ms: Vec<f64>,
    pub median_ms: f64,
    pub min_ms: f64,
}

impl Timing {
    fn from_runs(mut runs_ms: Vec<f64>) -> Self {
        let shown = runs_ms.clone();
        runs_ms.sort_by(f64::total_cmp);
        Timing {
            median_ms: runs_ms[runs_ms.len() / 2],
            min_ms: runs_ms[0],
            runs_ms: shown,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AffectedBench {
    pub schema: &'static str,
    pub repo: String,
    pub affected_stacks: usize,
    pub sluice: Timing,
    /// `None` when no `git` binary is on PATH.
    pub peer: Option<Timing>,
    /// sluice median / peer median.
    pub ratio: Option<f64>,
}

fn time_command(cmd: &mut Command) -> Result<(f64, Vec<u8>), PipelineError> {
    let started = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| PipelineError::Io(format!("running {cmd:?}: {e}")))?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        return Err(PipelineError::Io(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok((ms, out.stdout))
}

/// The peer's pipeline, as one shell command run in the repository.
const PEER: &str = "git diff --name-only \"$0\" \"$1\" >/dev/null && git ls-tree -r --name-only \"$1\" | grep 'terragrunt.hcl$' | sed \"s|^|$1:|\" | git cat-file --batch >/dev/null";

pub fn affected(exe: &Path, repo: &Path, runs: usize) -> Result<AffectedBench, PipelineError> {
    let runs = runs.max(1);
    let sluice_cmd = || {
        let mut c = Command::new(exe);
        c.args([
            "affected",
            "--format",
            "json",
            "--base",
            BASE_BRANCH,
            "--head",
            PR_BRANCH,
            "--repo",
        ])
        .arg(repo);
        c
    };
    // One warm-up run so both sides read from the page cache.
    let (_, out) = time_command(&mut sluice_cmd())?;
    let report: serde_json::Value = serde_json::from_slice(&out)
        .map_err(|e| PipelineError::Io(format!("affected output: {e}")))?;
    let affected_stacks = report["stacks"].as_array().map_or(0, Vec::len);
    let mut sluice_runs = Vec::new();
    for _ in 0..runs {
        sluice_runs.push(time_command(&mut sluice_cmd())?.0);
    }
    let peer_cmd = || {
        let mut c = Command::new("sh");
        c.args(["-c", PEER, BASE_BRANCH, PR_BRANCH])
            .current_dir(repo);
        c
    };
    let peer = match time_command(&mut peer_cmd()) {
        Ok(_) => {
            let mut peer_runs = Vec::new();
            for _ in 0..runs {
                peer_runs.push(time_command(&mut peer_cmd())?.0);
            }
            Some(Timing::from_runs(peer_runs))
        }
        Err(_) => None,
    };
    let sluice = Timing::from_runs(sluice_runs);
    let ratio = peer.as_ref().map(|p| sluice.median_ms / p.median_ms);
    Ok(AffectedBench {
        schema: "sluice.bench.affected/v1",
        repo: repo.display().to_string(),
        affected_stacks,
        sluice,
        peer,
        ratio,
    })
}
