//! `sluice bench apply`: what `sluice apply` costs over the engine alone, in the same run.
//!
//! Two equivalent `terraform_data` stacks, each with a local state outside its directory:
//!
//! - **engine alone**: a directory initialised once; each round writes a new value, runs
//!   `plan -out` (not timed) and times `apply PLANFILE`;
//! - **sluice**: a git repository whose `sluice.yaml` registers an approver; each round commits
//!   the same kind of change on the PR branch, records it with `sluice pr --run-plans --record`
//!   and approves it with `sluice approve` (not timed), then times `sluice apply CHANGE_ID` in a
//!   fresh process: the gate, approvals re-verified, the plan's digest checked, the fenced
//!   lock, the engine's apply, the state before and after and the signed `apply` statement.
//!
//! Rounds alternate between the two so that both see the same machine load; one warm-up round
//! of each is not counted. The overhead is sluice's median (and p90) minus the engine's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use sluice_evidence::approval::openssh_public;
use sluice_evidence::keys::EvidenceKey;
use sluice_flow::error::PipelineError;
use sluice_git::git_write::{Author, Writer};

use crate::demo::carry::{engine_on_path, write_key};

/// What sluice must add at most over the engine's own apply (issue 11).
pub const TARGET_OVERHEAD_MS: f64 = 150.0;

const STACK_DIR: &str = "live/dev/eu-west-1/app";
const PR_BRANCH: &str = "pr/apply-bench";
const BOB: Author<'static> = Author {
    name: "Bob",
    email: "bob@acme.example",
    time: 1_767_225_600,
};

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub runs_ms: Vec<f64>,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub min_ms: f64,
}

impl Stats {
    pub fn from_runs(runs_ms: Vec<f64>) -> Self {
        let mut sorted = runs_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let at =
            |q: f64| sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1];
        Stats {
            median_ms: at(0.5),
            p90_ms: at(0.9),
            min_ms: sorted[0],
            runs_ms,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplyBench {
    pub schema: &'static str,
    pub engine: String,
    pub runs: usize,
    /// `apply PLANFILE` alone, in a directory initialised once.
    pub engine_alone: Stats,
    /// `sluice apply CHANGE_ID`, a fresh process per run.
    pub sluice: Stats,
    pub overhead_median_ms: f64,
    pub overhead_p90_ms: f64,
    pub target_overhead_ms: f64,
    /// Medians of where sluice's time went, from its own report (`phases`): loading the
    /// change and the org, the gate, the lock, preparing the work dir, the engine (its apply
    /// and reading the state before and after), recording the statement; `process` is the
    /// rest of the wall time (start, exit, printing).
    pub sluice_phases_median_ms: BTreeMap<String, f64>,
}

fn failed(what: impl Into<String>, e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Internal(format!("{}: {e}", what.into()))
}

/// Runs `cmd`; its wall time and stdout, or an error with its stderr.
fn timed(cmd: &mut Command) -> Result<(f64, Vec<u8>), PipelineError> {
    let started = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| failed(format!("running {cmd:?}"), e))?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        return Err(PipelineError::Internal(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok((ms, out.stdout))
}

/// A stack with a local state at `state` and one `terraform_data` holding `value` (none when
/// `value` is `None`).
fn stack_tf(state: &Path, value: Option<&str>) -> String {
    let mut s = format!(
        "terraform {{\n  backend \"local\" {{\n    path = \"{}\"\n  }}\n}}\n",
        state.display()
    );
    if let Some(v) = value {
        s.push_str(&format!(
            "resource \"terraform_data\" \"app\" {{\n  input = \"{v}\"\n}}\noutput \"value\" {{\n  value = terraform_data.app.output\n}}\n"
        ));
    }
    s
}

fn sluice_yaml(engine: &str, alice_key: &str) -> String {
    format!(
        "version: 1\norg: bench\nenvironments:\n  dev: {{ order: 1 }}\nstacks:\n  root: live\n  layout: \"{{env}}/{{region}}/{{stack}}\"\nplan:\n  engine: {engine}\napprovals:\n  R1: [\"@acme/platform\"]\npeople:\n  alice: {{ emails: [alice@acme.example], groups: [\"@acme/platform\"], keys: [\"{alice_key}\"] }}\n  bob: {{ emails: [bob@acme.example], groups: [\"@acme/payments\"] }}\n"
    )
}

/// The engine's environment, as sluice sets it for its own runs.
fn engine_command(engine: &Path, dir: &Path) -> Command {
    let mut c = Command::new(engine);
    c.current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0")
        .env("CHECKPOINT_DISABLE", "1");
    c
}

struct SluiceSide<'a> {
    exe: &'a Path,
    repo: PathBuf,
    state: PathBuf,
    key: PathBuf,
    writer: Writer,
    main_files: BTreeMap<String, Vec<u8>>,
    parent: sluice_git::git_write::ObjectId,
}

impl SluiceSide<'_> {
    fn sluice(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.exe);
        c.args(args).arg("--repo").arg(&self.repo);
        c
    }

    /// Commits `value` on the PR branch, records and approves it; the change id.
    fn prepare(&mut self, round: usize, value: &str) -> Result<String, PipelineError> {
        let mut files = self.main_files.clone();
        files.insert(
            format!("{STACK_DIR}/main.tf"),
            stack_tf(&self.state, Some(value)).into_bytes(),
        );
        self.parent = self
            .writer
            .commit(
                PR_BRANCH,
                &files,
                Some(self.parent),
                &format!("app {value}\n"),
                &Author {
                    time: BOB.time + round as i64,
                    ..BOB
                },
            )
            .map_err(|e| failed("committing to the bench repository", e))?;
        let (_, out) = timed(&mut self.sluice(&[
            "pr",
            "--base",
            "main",
            "--head",
            PR_BRANCH,
            "--pr",
            "1",
            "--run-plans",
            "--record",
            "--format",
            "json",
        ]))?;
        let report: Value =
            serde_json::from_slice(&out).map_err(|e| failed("sluice pr's JSON", e))?;
        let change = report["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|c| c["change_id"].as_str())
            .ok_or_else(|| failed("sluice pr", format!("no change recorded: {report}")))?
            .to_string();
        let key = self.key.display().to_string();
        timed(&mut self.sluice(&["approve", &change, "--as", "alice", "--key", &key]))?;
        Ok(change)
    }

    fn apply(&self, change: &str) -> Result<(f64, Value), PipelineError> {
        let (ms, out) = timed(&mut self.sluice(&["apply", change, "--format", "json"]))?;
        let report: Value =
            serde_json::from_slice(&out).map_err(|e| failed("sluice apply's JSON", e))?;
        Ok((ms, report))
    }
}

/// `runs` timed rounds of each side (after one warm-up round) in a temporary folder.
pub fn apply(exe: &Path, runs: usize) -> Result<ApplyBench, PipelineError> {
    let work = tempfile::Builder::new()
        .prefix("sluice-bench-apply-")
        .tempdir()
        .map_err(|e| failed("a temporary directory", e))?;
    run(exe, work.path(), runs)
}

fn run(exe: &Path, work: &Path, runs: usize) -> Result<ApplyBench, PipelineError> {
    let runs = runs.max(1);
    let path = std::env::var_os("PATH");
    let engine_name = engine_on_path(path.as_deref()).map_err(PipelineError::Internal)?;
    let engine = sluice_iac::engine::find_on_path(engine_name, path.as_deref())
        .ok_or_else(|| PipelineError::Internal(format!("{engine_name} is not on PATH")))?;

    // The engine alone: initialised once.
    let bare = work.join("engine-alone");
    std::fs::create_dir_all(&bare).map_err(|e| PipelineError::io(&bare, e))?;
    let bare_state = work.join("engine-alone-state/terraform.tfstate");
    let write_bare = |value: Option<&str>| {
        let main = bare.join("main.tf");
        std::fs::write(&main, stack_tf(&bare_state, value)).map_err(|e| PipelineError::io(&main, e))
    };
    write_bare(None)?;
    timed(engine_command(&engine, &bare).args(["init", "-input=false", "-no-color"]))?;

    // sluice: main with the approver and the empty stack, then PR commits on top.
    let keys = work.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| PipelineError::io(&keys, e))?;
    let alice = EvidenceKey::generate().map_err(|e| failed("generating a key", e))?;
    let key = write_key(&keys, "alice", &alice)?;
    let repo = work.join("repo");
    let state = work.join("sluice-state/terraform.tfstate");
    let writer = Writer::init(&repo).map_err(|e| failed("creating the bench repository", e))?;
    let mut main_files = BTreeMap::new();
    main_files.insert(
        "sluice.yaml".to_string(),
        sluice_yaml(
            engine_name,
            &openssh_public(&alice.verifying_key(), "alice"),
        )
        .into_bytes(),
    );
    main_files.insert(
        format!("{STACK_DIR}/main.tf"),
        stack_tf(&state, None).into_bytes(),
    );
    let base = writer
        .commit(
            "main",
            &main_files,
            None,
            "base\n",
            &Author {
                name: "Alice",
                email: "alice@acme.example",
                time: BOB.time - 60,
            },
        )
        .map_err(|e| failed("committing to the bench repository", e))?;
    writer
        .checkout("main", base, &main_files)
        .map_err(|e| failed("checking out the bench repository", e))?;
    let mut side = SluiceSide {
        exe,
        repo,
        state,
        key,
        writer,
        main_files,
        parent: base,
    };

    let (mut bare_runs, mut sluice_runs) = (Vec::new(), Vec::new());
    let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for round in 0..=runs {
        let value = format!("v{round}");
        // The engine alone.
        write_bare(Some(&value))?;
        timed(engine_command(&engine, &bare).args([
            "plan",
            "-input=false",
            "-no-color",
            "-out=bench.tfplan",
        ]))?;
        let (bare_ms, _) = timed(engine_command(&engine, &bare).args([
            "apply",
            "-input=false",
            "-no-color",
            "bench.tfplan",
        ]))?;
        // sluice.
        let change = side.prepare(round, &value)?;
        let (sluice_ms, report) = side.apply(&change)?;
        let applied = &report["applied"][0];
        if applied["result"] != "applied" {
            return Err(failed("sluice apply", format!("did not apply: {report}")));
        }
        if round == 0 {
            continue;
        }
        bare_runs.push(bare_ms);
        sluice_runs.push(sluice_ms);
        let mut accounted = 0.0;
        let mut phase = |name: &str, v: &Value| {
            let ms = v.as_f64().unwrap_or(0.0);
            accounted += ms;
            phases.entry(name.to_string()).or_default().push(ms);
        };
        phase("load", &report["load_ms"]);
        if let Some(p) = applied["phases"].as_object() {
            for (name, v) in p {
                phase(name.trim_end_matches("_ms"), v);
            }
        }
        phases
            .entry("process".to_string())
            .or_default()
            .push((sluice_ms - accounted).max(0.0));
    }
    let engine_alone = Stats::from_runs(bare_runs);
    let sluice = Stats::from_runs(sluice_runs);
    Ok(ApplyBench {
        schema: "sluice.bench.apply/v1",
        engine: engine_name.to_string(),
        runs,
        overhead_median_ms: sluice.median_ms - engine_alone.median_ms,
        overhead_p90_ms: sluice.p90_ms - engine_alone.p90_ms,
        target_overhead_ms: TARGET_OVERHEAD_MS,
        sluice_phases_median_ms: phases
            .into_iter()
            .map(|(k, v)| (k, Stats::from_runs(v).median_ms))
            .collect(),
        engine_alone,
        sluice,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_take_the_nearest_rank() {
        let s = Stats::from_runs(vec![5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 9.0, 8.0, 7.0, 6.0]);
        assert_eq!(s.median_ms, 5.0);
        assert_eq!(s.p90_ms, 9.0);
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(s.runs_ms[0], 5.0, "runs keep their order");
        let one = Stats::from_runs(vec![7.0]);
        assert_eq!((one.median_ms, one.p90_ms), (7.0, 7.0));
    }
}
