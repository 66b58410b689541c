//! `sluice demo`: build the sample org as a real git repository with history, open a PR branch
//! and run every stage that exists over it: the PR report (the rds-payments read replica as a
//! stack plan, the payments image bump as an app diff), then the evidence of its stages,
//! recorded in `<dir>/.sluice/sluice.db`, and the change bundle of the stack, written to
//! `<dir>/.sluice/bundles/` and verified offline. `.sluice/` is ignored by the demo
//! repository's `.gitignore`, and a re-run replaces the whole folder (see [`MARKER`]).
//!
//! Plans (stage 4): the demo's stacks are Terragrunt stacks, so with `terragrunt` and
//! `tofu`/`terraform` on PATH the demo plans them with the engine ([`PlanMode::Engine`]).
//! Otherwise it writes plan JSON for the affected stacks itself ([`plans`]) into
//! `<dir>/.sluice/demo-plans/` and the report says plainly that these plans were written by
//! the demo, not by an engine ([`PlanMode::DemoWritten`]).

pub mod carry;
pub mod org;
pub mod plans;

use std::path::{Path, PathBuf};
use std::time::Instant;

use sluice_git::git_write::{Author, Writer};
use sluice_model::exception::Timestamp;

use sluice_flow::error::PipelineError;
use sluice_flow::pr::{self, PrOptions, PrReport};
use sluice_recorder::evidence::{self, DemoEvidence};

/// Marks a directory as built by the demo, so a re-run may replace it and nothing else. It
/// lives inside `.git` so that the work tree stays clean.
pub const MARKER: &str = ".git/sluice-demo";

pub struct DemoRepo {
    pub dir: PathBuf,
    pub base: String,
    pub head: String,
    pub build_ms: u128,
}

const ALICE: Author<'static> = Author {
    name: "Alice Platform",
    email: "alice@acme.example",
    time: 1_795_000_000,
};

/// Build (or rebuild) the demo repository in `dir`.
pub fn build(dir: &Path) -> Result<DemoRepo, PipelineError> {
    let started = Instant::now();
    prepare_dir(dir)?;
    let io = |e: sluice_git::git::GitError| {
        PipelineError::failed(format!("writing the demo repository {}", dir.display()), e)
    };
    let writer = Writer::init(dir).map_err(io)?;
    let main = org::main_tree();
    // History: the org without its dns stacks first, then the dns layer on top.
    let first: org::Files = main
        .iter()
        .filter(|(p, _)| !p.contains("/dns/"))
        .map(|(p, c)| (p.clone(), c.clone()))
        .collect();
    let c1 = writer
        .commit(
            "main",
            &first,
            None,
            "Bootstrap the acme platform org\n",
            &ALICE,
        )
        .map_err(io)?;
    let later = Author {
        time: ALICE.time + 86_400,
        ..ALICE
    };
    let c2 = writer
        .commit(
            "main",
            &main,
            Some(c1),
            "Add the dns layer in every environment\n",
            &later,
        )
        .map_err(io)?;
    let bob = Author {
        name: "Bob Payments",
        email: "bob@acme.example",
        time: ALICE.time + 2 * 86_400,
    };
    let pr = org::pr_tree(&main);
    let c3 = writer
        .commit(
            org::PR_BRANCH,
            &pr,
            Some(c2),
            "prod: add a read replica to rds-payments and ship payments v1.5.0\n",
            &bob,
        )
        .map_err(io)?;
    writer.checkout("main", c2, &main).map_err(io)?;
    std::fs::write(dir.join(MARKER), "built by `sluice demo`; safe to delete\n")
        .map_err(|e| PipelineError::io(dir.join(MARKER), e))?;
    Ok(DemoRepo {
        dir: dir.to_path_buf(),
        base: c2.to_string(),
        head: c3.to_string(),
        build_ms: started.elapsed().as_millis(),
    })
}

/// Empty `dir` if the demo built it before; refuse to touch anything else.
fn prepare_dir(dir: &Path) -> Result<(), PipelineError> {
    let io = |e: std::io::Error| PipelineError::io(dir, e);
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(io)?.next().is_none();
        if !empty {
            if !dir.join(MARKER).exists() {
                return Err(PipelineError::Internal(format!(
                    "{}: directory exists and was not created by `sluice demo`; choose another --dir",
                    dir.display()
                )));
            }
            std::fs::remove_dir_all(dir).map_err(io)?;
        }
    }
    std::fs::create_dir_all(dir).map_err(io)
}

/// Where the demo's plans come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanMode {
    /// Run terragrunt with tofu/terraform over the affected stacks.
    Engine,
    /// Write plan JSON for the affected stacks from their inputs (no engine available).
    DemoWritten,
}

/// The engine mode when `terragrunt` and `tofu` or `terraform` are on PATH (the demo's stacks
/// need both), else the demo writes its plans.
pub fn detect_plan_mode() -> PlanMode {
    let path = std::env::var_os("PATH");
    let on_path = |name: &str| sluice_iac::engine::find_on_path(name, path.as_deref()).is_some();
    if on_path("terragrunt") && (on_path("tofu") || on_path("terraform")) {
        PlanMode::Engine
    } else {
        PlanMode::DemoWritten
    }
}

/// The engines the demo's real planning needs that are not on PATH (`terragrunt`, and
/// `tofu or terraform` when neither is there), to say which is missing.
pub fn missing_engines() -> Vec<&'static str> {
    let path = std::env::var_os("PATH");
    let on_path = |name: &str| sluice_iac::engine::find_on_path(name, path.as_deref()).is_some();
    let mut out = Vec::new();
    if !on_path("terragrunt") {
        out.push("terragrunt");
    }
    if !on_path("tofu") && !on_path("terraform") {
        out.push("tofu or terraform");
    }
    out
}

/// The folder (inside the demo repository, ignored by git) for the plans the demo writes.
pub const PLANS_DIR: &str = ".sluice/demo-plans";

/// What the report says about every plan the demo wrote.
pub const DEMO_PLANS_NOTE: &str = "written by `sluice demo` from the stack's terragrunt.hcl \
     inputs, not by an engine: the demo's stacks plan with terragrunt and tofu or terraform, \
     and terragrunt or both engines are missing from PATH (stderr names which)";

/// The time the demo judges exceptions at: the PR's commit time, so its report is the same
/// on every run.
pub fn demo_now() -> Timestamp {
    Timestamp::from_unix(ALICE.time + 2 * 86_400, 0)
}

pub struct DemoRun {
    pub repo: DemoRepo,
    pub mode: PlanMode,
    /// The plan files the demo wrote (DemoWritten mode).
    pub written: Vec<PathBuf>,
    pub plans_dir: Option<PathBuf>,
    pub report: PrReport,
    /// The recorded stage statements and the verified bundle of the stack's change.
    pub evidence: DemoEvidence,
    /// PR #413 carried through approval and apply with the engine ([`carry`]), or why not.
    pub carried: carry::Carried,
}

/// Why the PR's stacks are not applied: the demo applies only what an engine planned, and
/// these stacks' resources live in an AWS account the demo does not have.
pub fn apply_not_run_reason(mode: PlanMode) -> &'static str {
    match mode {
        PlanMode::DemoWritten => {
            "apply not run: its plan was written by the demo, not by an engine, so there is \
             no plan file to approve and apply"
        }
        PlanMode::Engine => {
            "apply not run: its resources are AWS resources and the demo has no AWS account \
             to apply them to"
        }
    }
}

/// Build the demo repository, run the PR report over it with plans from `mode`, then record
/// its evidence and write and verify the change bundle; then carry PR #413 through approval
/// and apply when an engine is on PATH ([`carry`]).
pub fn run(dir: &Path, mode: PlanMode) -> Result<DemoRun, PipelineError> {
    run_with(dir, mode, true)
}

/// [`run`] without the act that carries PR #413 through approval and apply (for tests of the
/// PR report, which need no engine and should stay fast).
pub fn run_report(dir: &Path, mode: PlanMode) -> Result<DemoRun, PipelineError> {
    run_with(dir, mode, false)
}

fn run_with(dir: &Path, mode: PlanMode, carry_through: bool) -> Result<DemoRun, PipelineError> {
    let repo = build(dir)?;
    let mut opts = PrOptions {
        pr: Some(org::PR_NUMBER),
        now: Some(demo_now()),
        ..Default::default()
    };
    let mut written = Vec::new();
    let mut plans_dir = None;
    match mode {
        PlanMode::Engine => opts.run_plans = true,
        PlanMode::DemoWritten => {
            let out = repo.dir.join(PLANS_DIR);
            let io = |e: std::io::Error| PipelineError::io(&out, e);
            std::fs::create_dir_all(&out).map_err(io)?;
            let analysis = sluice_flow::affected::run(&repo.dir, &repo.base, &repo.head)?;
            let (base, head) = plans::trees();
            for u in &analysis.report.stacks {
                if let Some(doc) = plans::plan_for(&u.id, &base, &head) {
                    let file = out.join(pr::plan_file_name(&u.id));
                    let mut text = serde_json::to_string_pretty(&doc).expect("plans serialize");
                    text.push('\n');
                    std::fs::write(&file, text).map_err(io)?;
                    written.push(file);
                }
            }
            opts.plans_note = Some(DEMO_PLANS_NOTE.to_string());
            opts.plans_dir = Some(out.clone());
            plans_dir = Some(out);
        }
    }
    let report = pr::run_with(&repo.dir, &repo.base, &repo.head, &opts)?;
    let evidence = evidence::demo_evidence(&repo.dir, &report)
        .map_err(|e| PipelineError::failed("evidence of the demo", e))?;
    let carried = if carry_through {
        carry::run(&repo)?
    } else {
        carry::Carried::Skipped {
            reason: "only the PR report was asked for".to_string(),
        }
    };
    Ok(DemoRun {
        carried,
        repo,
        mode,
        written,
        plans_dir,
        report,
        evidence,
    })
}
