//! `sluice check` and `sluice bench check`: policy, risk and required approvals over one plan
//! JSON (the decision of `sluice pr` for one stack, for a plan made anywhere).
//!
//! Exit codes: 0 allowed (approvals may be required), 1 denied, 2 bad input (malformed plan
//! JSON with file:line:col, unsupported `format_version`, unknown stack, missing `--env`,
//! invalid policy bundle or exception file), 3 repository error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde::Serialize;
use sluice_flow::check::{self, CheckOptions};
use sluice_flow::error::PipelineError;
use sluice_model::exception::Timestamp;
use sluice_recorder::evidence;

use crate::exit;
use crate::output::{emit, print_json};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// Markdown, for a PR comment or a terminal.
    #[value(alias = "markdown", alias = "text")]
    Md,
    Json,
    Sarif,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The plan JSON (`tofu show -json PLANFILE` / `terraform show -json PLANFILE`).
    #[arg(long, value_name = "FILE")]
    plan_json: PathBuf,
    /// The stack the plan is for (an id as `sluice stacks` prints it).
    #[arg(long, value_name = "ID")]
    stack: String,
    /// The stack's environment; required without --repo (with it, discovery knows it).
    #[arg(long)]
    env: Option<String>,
    /// The platform repository: its sluice.yaml (risk rules, approvals, policy, redaction),
    /// policy-library, security-exceptions and CODEOWNERS, and the stack's environment.
    #[arg(long)]
    repo: Option<PathBuf>,
    #[arg(long, default_value = "HEAD", requires = "repo")]
    rev: String,
    /// Judge exception expiry at this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    /// With --record (needs --repo): the stack's stage 5 decision, bound to the plan stage 4
    /// recorded for its change (the plan JSON must be that plan).
    #[command(flatten)]
    record: crate::cmd_evidence::RecordArgs,
    #[arg(long, value_enum, default_value = "md")]
    format: CheckFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchFormat {
    Text,
    Json,
}

#[derive(Args)]
pub struct BenchCheckArgs {
    /// Resource changes of the large generated plan (a 50-change plan is measured too).
    #[arg(long, default_value_t = 10_000)]
    changes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Timed runs per plan (after one warm-up).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Keep the generated plans in this folder (`plan-<changes>.json`), e.g. for Checkov.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: BenchFormat,
}

pub fn run_check(a: CheckArgs) -> Result<i32, PipelineError> {
    let now = match a.now.as_deref().map(Timestamp::parse_rfc3339) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            eprintln!("error: --now: {e}");
            return Ok(exit::USAGE);
        }
    };
    // With --record, the gate first: policy does not start for a change whose plan was not
    // recorded as passed.
    let recorded = match (
        &a.repo,
        a.record.open(a.repo.as_deref().unwrap_or(Path::new("."))),
    ) {
        (_, Err(code)) => return Ok(code),
        (None, Ok(Some(_))) => {
            eprintln!("error: --record needs --repo (the change is the stack at --rev)");
            return Ok(exit::USAGE);
        }
        (Some(repo), Ok(Some(recorder))) => {
            let (change, org) = evidence::check_change(repo, &a.rev, &a.stack, a.record.pr)?;
            if let Err(code) = crate::cmd_evidence::gate(
                &recorder,
                std::slice::from_ref(&change),
                sluice_model::stage::Stage::Policy,
            ) {
                return Ok(code);
            }
            Some((recorder, change, org))
        }
        (_, Ok(None)) => None,
    };
    crate::pages::huge_pages_for_input(&a.plan_json);
    let opts = CheckOptions {
        plan_json: a.plan_json,
        stack: a.stack,
        env: a.env,
        repo: a.repo,
        rev: a.rev,
        now,
    };
    let report = match check::run(&opts) {
        Ok(r) => r,
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            return Ok(exit::check(&e));
        }
    };
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    match a.format {
        CheckFormat::Md => emit(&sluice_report::check::render_markdown(&report)),
        CheckFormat::Json => print_json(&report),
        CheckFormat::Sarif => print_json(&sluice_report::check::render_sarif(
            &report,
            env!("CARGO_PKG_VERSION"),
        )),
    }
    if let Some((recorder, change, org)) = &recorded {
        let who = evidence::Identity::from_env();
        let outcome = evidence::record_check(recorder, change, org, &opts.plan_json, &report, &who);
        if let Some(code) = crate::cmd_evidence::report_recorded(recorder, outcome) {
            return Ok(code);
        }
    }
    Ok(exit::check_report(&report))
}

// ---------------------------------------------------------------------------------------------
// bench check

#[derive(Serialize)]
struct Timing {
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

#[derive(Serialize)]
struct CheckBench {
    changes: usize,
    plan_bytes: u64,
    runs: usize,
    /// `sluice check` as a fresh process, end to end.
    wall: Timing,
    /// User plus system CPU time of the same runs, all threads (`wait4`). On a loaded machine
    /// the wall time is this work plus the time the process's threads waited for a core (each
    /// hand-off between threads is such a wait), so the two together tell work from waiting.
    cpu: Timing,
    /// Peak RSS of the largest `sluice check` process of this batch.
    peak_rss_mb: Option<f64>,
    exit_code: i32,
    target_ms: f64,
    target_rss_mb: Option<f64>,
    meets_target: bool,
}

/// What `wait4` reports about one finished child (only that process counts).
struct ChildUsage {
    /// Exit code (-1: killed by a signal).
    code: i32,
    /// Peak RSS in MB.
    peak_rss_mb: Option<f64>,
    /// User plus system CPU time in ms, all threads.
    cpu_ms: f64,
}

fn timeval_ms(t: libc::timeval) -> f64 {
    t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0
}

/// Wait for `child` and return its exit code, peak RSS and CPU time (`wait4`, so that only
/// this process counts).
fn wait_with_usage(child: std::process::Child) -> Result<ChildUsage, PipelineError> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: wait4 only writes into the zeroed struct and the status we pass; the child is
    // ours and not waited for elsewhere (`Child` does not wait on drop).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = loop {
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc != -1 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break rc;
        }
    };
    if rc != pid {
        return Err(PipelineError::failed(
            format!("waiting for process {pid}"),
            std::io::Error::last_os_error(),
        ));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok(ChildUsage {
        code,
        // ru_maxrss is in kilobytes on Linux.
        peak_rss_mb: Some(usage.ru_maxrss as f64 / 1024.0),
        cpu_ms: timeval_ms(usage.ru_utime) + timeval_ms(usage.ru_stime),
    })
}

/// The timed runs of one plan.
struct Samples {
    wall_ms: Vec<f64>,
    cpu_ms: Vec<f64>,
    /// The last run's exit code.
    exit_code: i32,
    /// The largest peak RSS of any timed run.
    peak_rss_mb: Option<f64>,
}

/// The timed runs of `sluice check` on `plan` (after one warm-up): wall and CPU times, the
/// last exit code and the largest peak RSS of any run.
fn time_check(exe: &Path, plan: &Path, runs: usize) -> Result<Samples, PipelineError> {
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    let mut code = 0;
    let mut peak: Option<f64> = None;
    for i in 0..=runs {
        let t = Instant::now();
        let child = Command::new(exe)
            .args(["check", "--stack", "prod/eu-west-1/bench", "--env", "prod"])
            .arg("--plan-json")
            .arg(plan)
            .args(["--format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| PipelineError::io(exe, e))?;
        let usage = wait_with_usage(child)?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        code = usage.code;
        if code != exit::OK && code != exit::BLOCKED {
            return Err(PipelineError::Internal(format!(
                "`sluice check --plan-json {}` exited with {code}",
                plan.display()
            )));
        }
        if i > 0 {
            wall.push(ms);
            cpu.push(usage.cpu_ms);
            peak = match (peak, usage.peak_rss_mb) {
                (Some(p), Some(r)) => Some(p.max(r)),
                (p, r) => p.or(r),
            };
        }
    }
    Ok(Samples {
        wall_ms: wall,
        cpu_ms: cpu,
        exit_code: code,
        peak_rss_mb: peak,
    })
}

/// Write the generated plan with a separate `sluice bench plan` process. Generating holds the
/// whole document in memory, and on Linux a child's peak RSS starts from its parent's
/// high-water mark (`execve` carries it over): a bench process that generated a 10,000-change
/// plan itself would report its own peak for every `sluice check` it starts.
fn write_plan(exe: &Path, path: &Path, changes: usize, seed: u64) -> Result<(), PipelineError> {
    let status = Command::new(exe)
        .args(["bench", "plan", "--runs", "1"])
        .args([
            "--changes",
            &changes.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .arg("--out")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| PipelineError::io(exe, e))?;
    if !status.success() {
        return Err(PipelineError::Internal(format!(
            "`sluice bench plan --out {}` failed ({status})",
            path.display()
        )));
    }
    Ok(())
}

fn timing(mut s: Vec<f64>) -> Timing {
    s.sort_by(f64::total_cmp);
    Timing {
        median_ms: s[s.len() / 2],
        min_ms: s[0],
        max_ms: s[s.len() - 1],
    }
}

pub fn run_bench_check(a: BenchCheckArgs) -> Result<i32, PipelineError> {
    let tmp = tempdir_in_temp()?;
    let dir = a.keep.clone().unwrap_or_else(|| tmp.clone());
    std::fs::create_dir_all(&dir).map_err(|e| PipelineError::io(&dir, e))?;
    let exe = std::env::current_exe().map_err(|e| PipelineError::failed("finding sluice", e))?;
    let runs = a.runs.max(1);
    let mut benches = Vec::new();
    for (changes, target_ms, target_rss) in [(50, 20.0, None), (a.changes, 1500.0, Some(300.0))] {
        let path = dir.join(format!("plan-{changes}.json"));
        write_plan(&exe, &path, changes, a.seed)?;
        let plan_bytes = std::fs::metadata(&path)
            .map_err(|e| PipelineError::io(&path, e))?
            .len();
        let samples = time_check(&exe, &path, runs)?;
        let peak_rss_mb = samples.peak_rss_mb;
        let wall = timing(samples.wall_ms);
        // The target is the wall time; CPU time is reported beside it, not judged.
        let meets_target = wall.median_ms <= target_ms
            && target_rss.is_none_or(|t| peak_rss_mb.is_some_and(|r| r <= t));
        benches.push(CheckBench {
            changes,
            plan_bytes,
            runs,
            wall,
            cpu: timing(samples.cpu_ms),
            peak_rss_mb,
            exit_code: samples.exit_code,
            target_ms,
            target_rss_mb: target_rss,
            meets_target,
        });
    }
    if a.keep.is_none()
        && let Err(e) = std::fs::remove_dir_all(&tmp)
    {
        eprintln!("warning: {}: not removed: {e}", tmp.display());
    }
    match a.format {
        BenchFormat::Json => print_json(&serde_json::json!({
            "schema": "sluice.bench.check/v1",
            "seed": a.seed,
            "runs": benches,
        })),
        BenchFormat::Text => {
            let mut out = String::from(
                "sluice check (fresh process: parse, redact, built-in policy pack, risk, approvals, JSON report)\n",
            );
            for b in &benches {
                let _ = write!(
                    out,
                    "  {:>6} changes ({:.1} MB plan): median {:.1} ms, min {:.1} ms, max {:.1} ms over {} runs (CPU median {:.1} ms)",
                    b.changes,
                    b.plan_bytes as f64 / 1e6,
                    b.wall.median_ms,
                    b.wall.min_ms,
                    b.wall.max_ms,
                    b.runs,
                    b.cpu.median_ms
                );
                if let Some(r) = b.peak_rss_mb {
                    let _ = write!(out, ", peak RSS {r:.0} MB");
                }
                let _ = writeln!(
                    out,
                    " — target ≤ {} ms{}: {}",
                    b.target_ms,
                    b.target_rss_mb
                        .map(|t| format!(" and ≤ {t} MB"))
                        .unwrap_or_default(),
                    if b.meets_target { "met" } else { "MISSED" }
                );
            }
            if let Some(k) = &a.keep {
                let _ = writeln!(out, "plans kept in {}", k.display());
            }
            emit(&out);
        }
    }
    Ok(exit::OK)
}

fn tempdir_in_temp() -> Result<PathBuf, PipelineError> {
    let dir = std::env::temp_dir().join(format!("sluice-bench-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| PipelineError::io(&dir, e))?;
    Ok(dir)
}
