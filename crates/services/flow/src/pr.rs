//! `sluice pr`: the PR report. It runs the stages of the change flow over a change — propose
//! (correlation ids), validate, and for every affected stack plan (stage 4), policy (5) and
//! the approvals it needs (6) — and records a stage that did not run as not run, never
//! invented, so a reviewer can decide from the PR alone what the change does, what blocks it
//! and who must approve it.
//!
//! Where a stack's plan comes from ([`PrOptions`]):
//! - `plans_dir`: plan JSON files made elsewhere (the user's CI), one per stack, named by
//!   [`plan_file_name`]: the stack id with `/` replaced by `__`, plus `.json`
//!   (`prod/ap-southeast-1/rds-payments` → `prod__ap-southeast-1__rds-payments.json`);
//! - `run_plans`: sluice runs OpenTofu/Terraform/Terragrunt itself (as `sluice plan` does) for
//!   the stacks without a file, storing each plan as a secret in the plan store.
//!
//! Plans already ingested into the plan store are not looked up: the store is
//! content-addressed (a digest names a blob) and keeps no index from stack and commit to
//! digest, so "the plan of this stack at this commit" cannot be found there yet.
//!
//! Affected apps go through the GitOps half of stages 3–6 ([`crate::apps`]): render base and
//! head from git objects, schema validation, the rendered diff, manifest policy, risk and
//! approvals. Stacks and apps share one policy engine (the org's bundles, exceptions and the
//! built-in packs), compiled once per report.
//!
//! Findings are judged against the merge base ([`validation::apply_baseline`] for files,
//! [`crate::apps`] for manifests): only what the change introduced blocks by default.
//!
//! A stage runs where its input exists: blocking validation findings block what needs a
//! privileged credential or a person (plan, approval, apply), but apps are still rendered,
//! diffed and evaluated against manifest policy, so the reviewer sees what the change does.
//!
//! The Markdown report is a list of self-contained blocks ([`sections`]) that
//! [`render_markdown_parts`] packs into PR comments under GitHub's 65,536-character limit.
//! A new section is one more field on [`PrReport`] and one more push in [`sections`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use sluice_iac::config::PlanConfig;
use sluice_iac::driver::{Driver, Outcome as PlanOutcome, StackSpec};
use sluice_iac::store::FsPlanStore;
use sluice_model::affected::{AffectedUnit, UnitStatus};
use sluice_model::change::{ChangeId, UnitKind};
use sluice_model::config::{OrgConfig, RepoLocation};
use sluice_model::exception::Timestamp;
use sluice_model::path;
use sluice_model::plan::Plan;
use sluice_model::stage::{Authority, Mark, Progress, Refusal, STAGES, Stage, may_start};

use crate::affected::{self, AffectedReport};
use crate::apps::{self, AppDecision, AppStatus, AppsInput, RenderState};
use crate::check::{CheckError, Checker, Target};
use crate::decide::{StackDecision, Status};
use crate::error::PipelineError;
use crate::validation::{self, ValidationReport};
use crate::workspace;

pub const SCHEMA: &str = "sluice.pr/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    Passed,
    Blocked,
    /// The stage ran for some units and not for others (some stacks have no plan).
    Partial,
    /// The stage's output is known but waits for people (approvals to be given).
    Pending,
    /// The stage is not part of this build yet or was not run for this change.
    NotRun,
}

impl StageStatus {
    /// The status as the report's JSON names it.
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Passed => "passed",
            StageStatus::Blocked => "blocked",
            StageStatus::Partial => "partial",
            StageStatus::Pending => "pending",
            StageStatus::NotRun => "not_run",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    pub number: u8,
    pub stage: Stage,
    pub status: StageStatus,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnitChange {
    pub kind: UnitKind,
    pub change_id: ChangeId,
    pub id: String,
    pub env: Option<String>,
    pub status: UnitStatus,
    pub owners: Vec<String>,
}

/// Where a stack's plan came from.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanSource {
    /// A plan JSON file from `--plans DIR`.
    File {
        path: String,
        /// Who made the file, when the caller knows (the demo says it wrote them).
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        /// `sha256:` of the file's bytes as read (what policy evaluated; the evidence subject).
        plan_json_digest: String,
    },
    /// sluice ran the engine; the plan is stored under its digest.
    Engine {
        engine: String,
        /// The plan file's digest (what approvals and apply bind to).
        plan_digest: String,
        /// `sha256:` of the plan JSON the engine showed for it (what policy evaluated).
        plan_json_digest: String,
    },
}

impl PlanSource {
    /// Where the plan came from, in words for the report.
    pub fn describe(&self) -> String {
        match self {
            PlanSource::File {
                path, note: None, ..
            } => format!("plan JSON {path}"),
            PlanSource::File {
                path,
                note: Some(n),
                ..
            } => format!("plan JSON {path} ({n})"),
            PlanSource::Engine {
                engine,
                plan_digest,
                ..
            } => format!("{engine}, plan {plan_digest}"),
        }
    }
}

/// Stage 4 for one stack.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PlanState {
    NotRun {
        reason: String,
    },
    Planned {
        source: PlanSource,
    },
    Failed {
        /// `engine_missing`, `auth`, `module`, `state_lock`, `plan`, `plan_json`, …
        class: String,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
        /// Last lines of the engine's stderr, redacted.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        stderr_excerpt: Vec<String>,
    },
}

/// Stages 4–6 for one affected stack.
#[derive(Debug, Clone, Serialize)]
pub struct StackReport {
    pub id: String,
    pub change_id: ChangeId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    pub status: UnitStatus,
    pub plan: PlanState,
    /// Policy, risk and approvals; present exactly when the plan is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<StackDecision>,
    /// Each approval requirement met (by whom, for which digest) or missing, from the
    /// approvals recorded for this change; present when the change is recorded (`--record`,
    /// or an earlier run recorded it) with a passed plan and a policy decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_status: Option<sluice_model::approval_status::ApprovalStatus>,
    /// The stack's health when it is not healthy (a failed or killed apply left it degraded,
    /// or a refresh-only plan made it recovering), from the store: every apply of it is
    /// refused until it is recovered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<sluice_model::apply::StackHealth>,
}

/// What the change as a whole may do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every affected stack was planned and allowed without approvals.
    Allowed,
    /// Allowed once the listed approvals are given.
    ApprovalsRequired,
    /// Some stack has no plan, so policy and risk were not decided for it.
    Undecided,
    /// A stack could not be planned (or its plan JSON could not be read).
    PlanFailed,
    Denied,
    /// An app's head does not render, fails schema validation, or its policy could not be
    /// evaluated.
    AppBlocked,
    ValidationBlocked,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::ApprovalsRequired => "approvals required",
            Verdict::Undecided => "undecided (plan not run)",
            Verdict::PlanFailed => "PLAN FAILED",
            Verdict::Denied => "DENIED",
            Verdict::AppBlocked => "BLOCKED: an app does not render, validate or evaluate",
            Verdict::ValidationBlocked => "BLOCKED by validation",
        }
    }

    /// Validation blocked the change, a policy denied it or an app is blocked: it cannot go
    /// on until the change itself changes. A failed plan is not a block of the change (a retry
    /// may plan it).
    pub fn blocks(self) -> bool {
        matches!(
            self,
            Verdict::ValidationBlocked | Verdict::Denied | Verdict::AppBlocked
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PrReport {
    pub schema: &'static str,
    pub org: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pr: Option<u64>,
    pub base: String,
    pub head: String,
    /// The head commit's author: who proposed the change, as git recorded it (unauthenticated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<sluice_git::git::Author>,
    /// The change as a whole; whether it is blocked is read off it ([`Verdict::blocks`]).
    pub verdict: Verdict,
    pub changes: Vec<UnitChange>,
    /// Reviewers CODEOWNERS requires for the affected units.
    pub reviewers: Vec<String>,
    pub stages: Vec<StageResult>,
    /// Stages 4–6 per affected stack.
    pub stacks: Vec<StackReport>,
    /// Stages 3–6 per affected app (empty when validation blocked the change).
    pub apps: Vec<AppDecision>,
    /// What the reader must know about where plans came from (e.g. written by the demo).
    pub notes: Vec<String>,
    /// Unused plan files, exception notices and similar.
    pub warnings: Vec<String>,
    /// Why the org is inconsistent at head (dependency cycles, layer-rule violations), one line
    /// each; the report is still made, and the change cannot go on until they are fixed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub org_errors: Vec<String>,
    pub affected: AffectedReport,
    pub validation: ValidationReport,
    /// Open backport items (Git to bring back in line after a break-glass apply), when the
    /// store was available: pending work of the org, each flagged when this change touches its
    /// stack (it may be the backport). Left out of the JSON when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backports: Vec<PendingBackport>,
    /// Where policy documentation links resolve (`policy.docs_url`); not part of the JSON.
    #[serde(skip)]
    pub docs_url: String,
}

/// An open backport item as the PR report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingBackport {
    #[serde(flatten)]
    pub item: sluice_model::breakglass::BackportItem,
    /// This change touches the item's stack: merged into the default branch (and recorded),
    /// it resolves the item.
    pub touched_by_this_change: bool,
}

/// The open `items` for a report of `changes`: those of stacks the change touches first.
pub fn pending_backports(
    items: &[sluice_model::breakglass::BackportItem],
    changes: &[UnitChange],
) -> Vec<PendingBackport> {
    let touched: Vec<String> = changes.iter().map(|c| c.id.clone()).collect();
    let (here, elsewhere) = sluice_model::breakglass::pending_for(items, &touched);
    here.into_iter()
        .map(|i| (i, true))
        .chain(elsewhere.into_iter().map(|i| (i, false)))
        .map(|(i, t)| PendingBackport {
            item: i.clone(),
            touched_by_this_change: t,
        })
        .collect()
}

/// How `sluice pr` gets plans and judges exceptions.
#[derive(Debug, Clone, Default)]
pub struct PrOptions {
    pub pr: Option<u64>,
    /// Plan JSON per stack, named by [`plan_file_name`].
    pub plans_dir: Option<PathBuf>,
    /// Run the engine for stacks without a plan file.
    pub run_plans: bool,
    /// Plan store for engine runs (default `<repo>/.sluice`).
    pub store: Option<PathBuf>,
    /// Said of every plan read from `plans_dir`, and once in the report's notes.
    pub plans_note: Option<String>,
    /// Judge exception expiry at this instant (default: now).
    pub now: Option<Timestamp>,
    /// Plans made elsewhere and already stored, by stack id: a runner's upload to `sluice
    /// serve` (the plan file and JSON in the plan store under `source`'s digests). Taken before
    /// `plans_dir` and `run_plans`.
    pub given: BTreeMap<String, GivenPlan>,
}

/// A stack's stage 4 done elsewhere (by a runner): the parsed plan JSON and where the plan is
/// stored, or the failure the runner reported.
#[derive(Debug, Clone)]
pub enum GivenPlan {
    Planned {
        plan: Box<Plan>,
        source: PlanSource,
    },
    /// Always a [`PlanState::Failed`].
    Failed(PlanState),
}

/// The plan file name of a stack in `--plans DIR`: `/` becomes `__`, then `.json`.
pub fn plan_file_name(stack_id: &str) -> String {
    format!("{}.json", stack_id.replace('/', "__"))
}

/// Run the stages without plans (stages 4–6 not run) for `base..head`.
pub fn run(
    repo: &Path,
    base: &str,
    head: &str,
    pr: Option<u64>,
) -> Result<PrReport, PipelineError> {
    run_with(
        repo,
        base,
        head,
        &PrOptions {
            pr,
            ..Default::default()
        },
    )
}

/// Told as the stages of a PR run finish, so that a recorder can record each stage then, not
/// after the whole report: a run that stops at a later stage (an engine that crashes, a policy
/// setup that fails to compile, a killed process) leaves the stages before it on record.
///
/// The calls come in stage order: [`validated`](Self::validated) once (stages 1–2 of every
/// change), [`stack_decided`](Self::stack_decided) per affected stack as its stages 3–6 end,
/// then [`apps_decided`](Self::apps_decided) once when the apps' stages end (apps are rendered
/// and judged together). An error stops the run and is returned as [`RunError::Observer`].
pub trait StageObserver {
    type Error;
    fn validated(
        &mut self,
        analysis: &affected::Analysis,
        validation: &ValidationReport,
    ) -> Result<(), Self::Error>;
    fn stack_decided(
        &mut self,
        analysis: &affected::Analysis,
        stack: &StackReport,
    ) -> Result<(), Self::Error>;
    fn apps_decided(
        &mut self,
        analysis: &affected::Analysis,
        apps: &[AppDecision],
    ) -> Result<(), Self::Error>;
}

/// The observer of a run nobody records.
struct Unobserved;

impl StageObserver for Unobserved {
    type Error = std::convert::Infallible;
    fn validated(
        &mut self,
        _: &affected::Analysis,
        _: &ValidationReport,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
    fn stack_decided(
        &mut self,
        _: &affected::Analysis,
        _: &StackReport,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
    fn apps_decided(
        &mut self,
        _: &affected::Analysis,
        _: &[AppDecision],
    ) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Why an observed run stopped: the flow's own error, or the observer's.
#[derive(Debug)]
pub enum RunError<E> {
    Pipeline(PipelineError),
    Observer(E),
}

impl<E> From<PipelineError> for RunError<E> {
    fn from(e: PipelineError) -> Self {
        RunError::Pipeline(e)
    }
}

/// Run every stage the options allow for `base..head` and assemble the report.
pub fn run_with(
    repo: &Path,
    base: &str,
    head: &str,
    opts: &PrOptions,
) -> Result<PrReport, PipelineError> {
    run_observed(repo, base, head, opts, &mut Unobserved).map_err(|e| match e {
        RunError::Pipeline(e) => e,
        RunError::Observer(never) => match never {},
    })
}

/// [`run_with`], telling `observer` as each stage finishes.
pub fn run_observed<O: StageObserver>(
    repo: &Path,
    base: &str,
    head: &str,
    opts: &PrOptions,
    observer: &mut O,
) -> Result<PrReport, RunError<O::Error>> {
    let pr = opts.pr;
    let (analysis, org_errors) = affected::run_despite_org_errors(repo, base, head)?;
    let scope: Vec<String> = analysis
        .changes
        .iter()
        .filter(|c| c.status != sluice_model::affected::FileStatus::Deleted)
        .map(|c| c.path.clone())
        .collect();
    let repository = workspace::open(repo)?;
    let (base_snap, _) = workspace::change_snapshots(&repository, base, head)?;
    let mut validation = validation::validate_snapshot(
        &analysis.head.snapshot,
        Some(analysis.report.base.clone()),
        &scope,
        Ok((&analysis.head.config, &analysis.org)),
    );
    validation::apply_baseline(
        &mut validation,
        &base_snap,
        &analysis.head.snapshot,
        &scope,
        (&analysis.head.config, &analysis.org),
    );
    observer
        .validated(&analysis, &validation)
        .map_err(RunError::Observer)?;
    let config = &analysis.head.config;
    let owners_of = |id: &str, stack: bool| -> Vec<String> {
        if stack {
            analysis
                .org
                .stacks
                .iter()
                .find(|s| s.id == id)
                .map(|s| s.owners.clone())
        } else {
            analysis
                .org
                .apps
                .iter()
                .find(|a| a.id == id)
                .map(|a| a.owners.clone())
        }
        .unwrap_or_default()
    };
    let mut changes = Vec::new();
    for (kind, units) in [
        (UnitKind::Stack, &analysis.report.stacks),
        (UnitKind::App, &analysis.report.apps),
    ] {
        for u in units.iter() {
            changes.push(UnitChange {
                kind,
                change_id: change_id(config, u, pr, &analysis.report.head),
                id: u.id.clone(),
                env: u.env.clone(),
                status: u.status,
                owners: owners_of(&u.id, kind == UnitKind::Stack),
            });
        }
    }
    let reviewers: BTreeSet<String> = changes
        .iter()
        .flat_map(|c| c.owners.iter().cloned())
        .collect();

    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    let repo_root = workspace::state_root(repo);
    let store_root = opts
        .store
        .clone()
        .unwrap_or_else(|| repo_root.join(".sluice"));
    let mut checker = None;
    let stacks = stack_stages(
        &analysis,
        &validation,
        opts,
        (&repo_root, &store_root),
        &mut checker,
        &mut warnings,
        &mut notes,
        &mut |stack| observer.stack_decided(&analysis, stack),
    )?;
    let apps = if start(Stage::Render, UnitKind::App, &pr_progress(&validation)).is_ok()
        && !analysis.report.apps.is_empty()
    {
        let checker = ensure_checker(&mut checker, &analysis, opts, &mut warnings)?;
        let apps = app_stages(base, &base_snap, &analysis, &changes, checker)?;
        observer
            .apps_decided(&analysis, &apps)
            .map_err(RunError::Observer)?;
        apps
    } else {
        Vec::new()
    };
    let stages = stage_results(&changes, &validation, &stacks, &apps);
    let verdict = verdict(validation.passed, &stacks, &apps);
    // A broken `policy` section is the checker's error; the links keep the default then.
    let docs_url = sluice_policy::config::from_org(config)
        .map(|c| c.docs_url)
        .unwrap_or_else(|_| sluice_policy::config::DEFAULT_DOCS_URL.to_string());
    Ok(PrReport {
        schema: SCHEMA,
        org: config.org.clone(),
        pr,
        base: analysis.report.base.clone(),
        head: analysis.report.head.clone(),
        author: analysis.head.snapshot.author().ok(),
        verdict,
        changes,
        reviewers: reviewers.into_iter().collect(),
        stages,
        stacks,
        apps,
        notes,
        warnings,
        org_errors,
        affected: analysis.report,
        validation,
        backports: Vec::new(),
        docs_url,
    })
}

/// The change's verdict from validation and the stacks' and apps' stages (worst first). An
/// app's approvals (risk matrix, CODEOWNERS, policy) count as a stack's do.
pub fn verdict(validation_passed: bool, stacks: &[StackReport], apps: &[AppDecision]) -> Verdict {
    if !validation_passed {
        return Verdict::ValidationBlocked;
    }
    let status = |s: Status| {
        stacks
            .iter()
            .any(|r| r.decision.as_ref().is_some_and(|d| d.status == s))
    };
    if status(Status::Denied) || apps.iter().any(app_denied) {
        Verdict::Denied
    } else if apps.iter().any(|a| a.status == AppStatus::Blocked) {
        Verdict::AppBlocked
    } else if stacks
        .iter()
        .any(|s| matches!(s.plan, PlanState::Failed { .. }))
    {
        Verdict::PlanFailed
    } else if stacks
        .iter()
        .any(|s| s.decision.is_none() && s.status != UnitStatus::Deleted)
    {
        Verdict::Undecided
    } else if status(Status::ApprovalsRequired) || apps.iter().any(|a| !a.approvals.is_empty()) {
        Verdict::ApprovalsRequired
    } else {
        Verdict::Allowed
    }
}

/// A policy denial blocks the app (see [`AppDecision::denied`]).
fn app_denied(a: &AppDecision) -> bool {
    a.denied()
}

/// The org's policy setup, risk rules and approvals, compiled on first need and shared by
/// stacks and apps.
fn ensure_checker<'c>(
    checker: &'c mut Option<Checker>,
    analysis: &affected::Analysis,
    opts: &PrOptions,
    warnings: &mut Vec<String>,
) -> Result<&'c Checker, PipelineError> {
    if checker.is_none() {
        let c = Checker::for_revision(
            &analysis.head,
            analysis.org.codeowners.clone(),
            opts.now.unwrap_or_else(sluice_policy::now),
        )
        .map_err(check_to_pipeline)?;
        warnings.extend(c.warnings());
        *checker = Some(c);
    }
    Ok(checker.as_ref().expect("set above"))
}

/// Stages 3–6 for every affected app, with the stacks' policy engine. The base side renders
/// from the merge base (as the affected analysis diffs), with its own configuration when it
/// has a valid one.
fn app_stages(
    base: &str,
    base_snap: &sluice_git::git::Snapshot,
    analysis: &affected::Analysis,
    changes: &[UnitChange],
    checker: &Checker,
) -> Result<Vec<AppDecision>, PipelineError> {
    let base_config =
        workspace::load_config(base_snap, base).unwrap_or_else(|_| analysis.head.config.clone());
    let owners: BTreeMap<String, Vec<String>> = analysis
        .org
        .apps
        .iter()
        .map(|a| (a.id.clone(), a.owners.clone()))
        .collect();
    let changed: Vec<String> = analysis.changes.iter().map(|c| c.path.clone()).collect();
    let change_ids: BTreeMap<String, ChangeId> = changes
        .iter()
        .filter(|c| c.kind == UnitKind::App)
        .map(|c| (c.id.clone(), c.change_id.clone()))
        .collect();
    Ok(apps::decide_apps(&AppsInput {
        base: base_snap,
        base_config: &base_config,
        head: &analysis.head.snapshot,
        config: &analysis.head.config,
        apps: &analysis.report.apps,
        owners: &owners,
        codeowners: &analysis.org.codeowners,
        changed_paths: &changed,
        engine: Some(&checker.setup.engine),
        change_ids: &change_ids,
        render_options: sluice_render::render::Options::default(),
        strict: false,
    }))
}

/// What the PR path knows when stage 3 could start: the change is proposed (this PR) and
/// validation passed or blocked it.
fn pr_progress(validation: &ValidationReport) -> Progress {
    let mut progress = Progress::passed(&[Stage::Propose]);
    progress.set(
        Stage::Validate,
        if validation.passed {
            Mark::Passed
        } else {
            Mark::Failed
        },
    );
    progress
}

/// The stage gate as the PR path asks it, holding [`Authority::PR_PIPELINE`]; a refusal becomes
/// the reason the report gives for the stage not running.
fn start(stage: Stage, unit: UnitKind, progress: &Progress) -> Result<(), String> {
    may_start(stage, unit, progress, Authority::PR_PIPELINE).map_err(|refusal| match refusal {
        Refusal::InputNotPassed {
            input: Stage::Validate,
            ..
        } => "validation blocked the change (no plan is made while stage 2 blocks)".to_string(),
        other => other.to_string(),
    })
}

/// A plan waiting to be checked.
enum Pending {
    Plan(Box<Plan>, PlanSource),
    Failed(PlanState),
}

/// Stages 4–6 for every affected stack.
#[allow(clippy::too_many_arguments)]
fn stack_stages<E>(
    analysis: &affected::Analysis,
    validation: &ValidationReport,
    opts: &PrOptions,
    (repo_root, store_root): (&Path, &Path),
    checker: &mut Option<Checker>,
    warnings: &mut Vec<String>,
    notes: &mut Vec<String>,
    decided: &mut dyn FnMut(&StackReport) -> Result<(), E>,
) -> Result<Vec<StackReport>, RunError<E>> {
    let config = &analysis.head.config;
    let units = &analysis.report.stacks;
    let mut pending: BTreeMap<usize, Pending> = BTreeMap::new();
    let mut not_run: BTreeMap<usize, String> = BTreeMap::new();
    let mut to_engine: Vec<(usize, StackSpec)> = Vec::new();

    if let Some(dir) = &opts.plans_dir {
        unused_plan_files(dir, units, warnings);
        if let Some(n) = &opts.plans_note {
            notes.push(format!("plans read from {}: {n}", dir.display()));
        }
    }
    let progress = pr_progress(validation);
    for (i, u) in units.iter().enumerate() {
        if let Err(reason) = start(Stage::Plan, UnitKind::Stack, &progress) {
            not_run.insert(i, reason);
            continue;
        }
        if u.status == UnitStatus::Deleted {
            not_run.insert(
                i,
                "deleted at head: nothing to plan here (destroying its resources needs a \
                 destroy plan of the base revision)"
                    .into(),
            );
            continue;
        }
        if let Some(given) = opts.given.get(&u.id) {
            pending.insert(
                i,
                match given {
                    GivenPlan::Planned { plan, source } => {
                        Pending::Plan(plan.clone(), source.clone())
                    }
                    GivenPlan::Failed(state) => Pending::Failed(state.clone()),
                },
            );
            continue;
        }
        if let Some(dir) = &opts.plans_dir {
            let file = dir.join(plan_file_name(&u.id));
            if file.exists() {
                pending.insert(i, read_plan_file(&file, opts.plans_note.clone(), repo_root));
                continue;
            }
        }
        if opts.run_plans
            && let Some(s) = analysis.org.stacks.iter().find(|s| s.id == u.id)
        {
            to_engine.push((i, crate::stack_spec::stack_spec(s)));
            continue;
        }
        not_run.insert(
            i,
            match &opts.plans_dir {
                Some(dir) => format!(
                    "no plan: {} not found{}",
                    dir.join(plan_file_name(&u.id)).display(),
                    if opts.run_plans {
                        ""
                    } else {
                        " (or pass --run-plans to plan with the engine)"
                    }
                ),
                None => {
                    "no plan given: pass --plans DIR (plan JSON per stack) or --run-plans".into()
                }
            },
        );
    }
    if !to_engine.is_empty() {
        for (i, p) in run_engine(analysis, store_root, &to_engine, warnings)? {
            pending.insert(i, p);
        }
    }

    let checker = if pending.values().any(|p| matches!(p, Pending::Plan(..))) {
        Some(ensure_checker(checker, analysis, opts, warnings)?)
    } else {
        None
    };

    let mut out = Vec::with_capacity(units.len());
    for (i, u) in units.iter().enumerate() {
        let cid = change_id(config, u, opts.pr, &analysis.report.head);
        let planned = {
            let mut p = progress;
            p.set(Stage::Plan, Mark::Passed);
            p
        };
        let (plan, decision) = match pending.remove(&i) {
            Some(Pending::Plan(plan, source))
                if start(Stage::Policy, UnitKind::Stack, &planned).is_ok() =>
            {
                let checker = checker.expect("built when a plan is pending");
                if let Some(n) = empty_state_note(analysis, &u.id, &plan) {
                    notes.push(n);
                }
                let target = stack_target(analysis, u, cid.clone());
                let decision = checker.check(*plan, &target).map_err(check_to_pipeline)?;
                (PlanState::Planned { source }, Some(decision))
            }
            // The gate kept policy from starting: no decision, so nothing can be approved.
            Some(Pending::Plan(_, source)) => (PlanState::Planned { source }, None),
            Some(Pending::Failed(state)) => (state, None),
            None => (
                PlanState::NotRun {
                    reason: not_run.remove(&i).unwrap_or_default(),
                },
                None,
            ),
        };
        let stack = StackReport {
            id: u.id.clone(),
            change_id: cid,
            env: u.env.clone(),
            status: u.status,
            plan,
            decision,
            approval_status: None,
            health: None,
        };
        decided(&stack).map_err(RunError::Observer)?;
        out.push(stack);
    }
    Ok(out)
}

/// Whether a plan was made against no state at all: the plan JSON has no `prior_state`, or one
/// whose root module (and every child module) holds no resources.
pub fn planned_against_empty_state(plan: &Plan) -> bool {
    fn holds_resources(module: &Value) -> bool {
        module
            .get("resources")
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty())
            || module
                .get("child_modules")
                .and_then(Value::as_array)
                .is_some_and(|c| c.iter().any(holds_resources))
    }
    match &plan.prior_state {
        None => true,
        Some(state) => !state
            .expose()
            .pointer("/values/root_module")
            .is_some_and(holds_resources),
    }
}

/// Whether a stack folder's own Terraform files (at `head`) configure no backend. Only said
/// when it is certain: the folder has `.tf`/`.tofu` files that all parse, none with a
/// `backend` or `cloud` block, and no `terragrunt.hcl` (whose `remote_state` or `generate` may
/// write one) nor `.tf.json` file (not read here). `None`: unknown.
fn configures_no_backend(head: &sluice_git::git::Snapshot, dir: &str) -> Option<bool> {
    let mut tf = 0;
    for file in head.files_under(dir) {
        let name = file.strip_prefix(dir)?.trim_start_matches('/');
        if name.contains('/') {
            continue;
        }
        if name.starts_with("terragrunt.hcl") || name.ends_with(".tf.json") {
            return None;
        }
        if name.ends_with(".tf") || name.ends_with(".tofu") {
            let bytes = head.read_file(file).ok()??;
            let src = std::str::from_utf8(&bytes).ok()?;
            if sluice_org::terragrunt::declares_backend(file, src).ok()? {
                return Some(false);
            }
            tf += 1;
        }
    }
    (tf > 0).then_some(true)
}

/// The report note for a stack whose plan was made against empty state because its
/// configuration names no backend: every resource it already has elsewhere shows as a create.
fn empty_state_note(analysis: &affected::Analysis, id: &str, plan: &Plan) -> Option<String> {
    if !planned_against_empty_state(plan) {
        return None;
    }
    let stack = analysis.org.stacks.iter().find(|s| s.id == id)?;
    configures_no_backend(&analysis.head.snapshot, &stack.path)?.then(|| {
        format!(
            "{id}: planned against empty state, because no backend is configured (the plan \
             has no prior state and no `terraform` block in {} has a `backend` or `cloud` \
             block, so the engine used local state in a fresh working copy); resources that \
             exist elsewhere show as creates",
            stack.path
        )
    })
}

/// The check target of an affected stack: CODEOWNERS is matched on the changed files that
/// made it affected, or on the stack's own files when it is affected only as a dependent.
fn stack_target(analysis: &affected::Analysis, u: &AffectedUnit, cid: ChangeId) -> Target {
    let config = &analysis.head.config;
    let mut paths: BTreeSet<String> = u.reasons.iter().filter_map(|r| r.path.clone()).collect();
    let stack = analysis.org.stacks.iter().find(|s| s.id == u.id);
    if paths.is_empty() {
        paths = analysis
            .head
            .snapshot
            .files_under(&u.path)
            .map(str::to_string)
            .collect();
    }
    let env = u.env.clone().unwrap_or_default();
    let mut target = match stack {
        Some(s) => Target::of_stack(s, config.is_protected(&s.env), paths.into_iter().collect()),
        None => Target {
            stack: u.id.clone(),
            production: config.is_protected(&env),
            env,
            paths: paths.into_iter().collect(),
            stack_json: serde_json::json!({"id": u.id}),
            ..Default::default()
        },
    };
    target.change_id = Some(cid);
    target.base = Some(analysis.report.base.clone());
    target.head = Some(analysis.report.head.clone());
    target
}

/// A plan file as the report and its evidence name it: repository-relative when it is inside
/// the repository (never a temporary absolute path), its file name otherwise; its content is
/// identified by `plan_json_digest`.
fn plan_file_label(file: &Path, repo_root: &Path) -> String {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    match canonical(file).strip_prefix(canonical(repo_root)) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
    }
}

fn read_plan_file(file: &Path, note: Option<String>, repo_root: &Path) -> Pending {
    let name = plan_file_label(file, repo_root);
    let failed = |class: &str, message: String| {
        Pending::Failed(PlanState::Failed {
            class: class.into(),
            message,
            hint: Some(
                "give the output of `tofu show -json PLANFILE` (or terraform's), unmodified".into(),
            ),
            stderr_excerpt: Vec::new(),
        })
    };
    match std::fs::read(file) {
        Err(e) => failed("plan_json", format!("{name}: {e}")),
        Ok(bytes) => match Plan::parse(&name, &bytes) {
            Ok(plan) => {
                use sha2::Digest as _;
                // The digest of the bytes policy evaluated: the plan's identity in evidence.
                let plan_json_digest =
                    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
                Pending::Plan(
                    Box::new(plan),
                    PlanSource::File {
                        path: name,
                        note,
                        plan_json_digest,
                    },
                )
            }
            Err(e) => failed("plan_json", e.to_string()),
        },
    }
}

/// Warn about `*.json` files in the plans folder that no affected stack would read (a typo in
/// a file name must not silently leave a stack unplanned).
fn unused_plan_files(dir: &Path, units: &[AffectedUnit], warnings: &mut Vec<String>) {
    let expected: BTreeSet<String> = units.iter().map(|u| plan_file_name(&u.id)).collect();
    let Ok(entries) = std::fs::read_dir(dir) else {
        warnings.push(format!("{}: plans folder not readable", dir.display()));
        return;
    };
    let mut unused: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !expected.contains(n))
        .collect();
    unused.sort();
    for n in unused {
        warnings.push(format!(
            "{}: no affected stack reads this plan file (a stack `a/b/c` reads `a__b__c.json`); ignored",
            dir.join(n).display()
        ));
    }
}

/// Plan the given stacks with the engine, as `sluice plan` does.
fn run_engine(
    analysis: &affected::Analysis,
    repo_root: &Path,
    specs: &[(usize, StackSpec)],
    warnings: &mut Vec<String>,
) -> Result<Vec<(usize, Pending)>, PipelineError> {
    let config = PlanConfig::from_section(analysis.head.config.sections.get("plan"))
        .map_err(PipelineError::PlanConfig)?;
    // Plans are secrets: the store folder ignores itself when it is made in a work tree.
    sluice_evidence::location::prepare_state_dir(repo_root)
        .map_err(|e| PipelineError::failed("preparing the plan store folder", e))?;
    let store = FsPlanStore::new(repo_root);
    let plugin_cache = match &config.plugin_cache_dir {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => repo_root.join(p),
        None => repo_root.join("plugin-cache"),
    };
    let driver = Driver {
        config: &config,
        store: &store,
        rules: config.redaction_rules(),
        path_var: None,
        engine_env: None,
        work_root: std::env::temp_dir().join(format!("sluice-pr-{}", std::process::id())),
        plugin_cache,
    };
    let list: Vec<StackSpec> = specs.iter().map(|(_, s)| s.clone()).collect();
    let results = driver.plan_stacks(&analysis.head.snapshot, &list);
    warnings.extend(driver.remove_work_root());
    Ok(specs
        .iter()
        .map(|(i, _)| *i)
        .zip(results)
        .map(|(i, r)| {
            let pending = match plan_outcome(r) {
                (PlanState::Planned { source }, Some(plan)) => {
                    Pending::Plan(Box::new(plan), source)
                }
                (state, _) => Pending::Failed(state),
            };
            (i, pending)
        })
        .collect())
}

/// An engine run's result as stage 4's state, with the parsed plan when there is one (for
/// `sluice pr --run-plans` and `sluice plan --record` alike).
pub fn plan_outcome(r: sluice_iac::driver::StackPlan) -> (PlanState, Option<Plan>) {
    let engine = r
        .engine
        .as_ref()
        .map_or_else(|| "engine".into(), |e| e.label());
    match r.outcome {
        PlanOutcome::Planned(p) => (
            PlanState::Planned {
                source: PlanSource::Engine {
                    engine,
                    plan_digest: p.plan_digest.to_string(),
                    plan_json_digest: p.plan_json.to_string(),
                },
            },
            Some(p.plan),
        ),
        PlanOutcome::Failed(f) => (
            PlanState::Failed {
                class: serde_json::to_value(f.class)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| f.class.as_str().to_string()),
                message: f.message,
                hint: Some(f.hint.to_string()),
                stderr_excerpt: f.stderr_excerpt,
            },
            None,
        ),
    }
}

/// Policy setup problems keep their own error, which names the bundle, exception file or
/// configuration field (and position) they are about.
fn check_to_pipeline(e: CheckError) -> PipelineError {
    match e {
        CheckError::Pipeline(p) => p,
        CheckError::Policy(p) => PipelineError::Policy(p),
        CheckError::PlanConfig(errors) => PipelineError::PlanConfig(errors),
        other => PipelineError::failed("checking the plan", other),
    }
}

/// The correlation id of one unit's change; the repo is the logical repo holding the unit.
pub fn change_id(config: &OrgConfig, unit: &AffectedUnit, pr: Option<u64>, head: &str) -> ChangeId {
    change_id_of(config, &unit.path, &unit.id, unit.env.as_deref(), pr, head)
}

/// [`change_id`] of a unit at `path` with id `unit` (a stack checked on its own, by `sluice
/// check --record`).
pub fn change_id_of(
    config: &OrgConfig,
    path: &str,
    unit: &str,
    env: Option<&str>,
    pr: Option<u64>,
    head: &str,
) -> ChangeId {
    let repo = config
        .repos
        .iter()
        .find(|r| matches!(&r.location, RepoLocation::Path(p) if path::is_under(path, p)))
        .map_or_else(|| config.org.clone(), |r| r.name.clone());
    ChangeId {
        repo,
        pr,
        commit: head.to_string(),
        env: env.unwrap_or("-").to_string(),
        unit: unit.to_string(),
    }
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// A stage's status and detail for one kind of unit (stacks or apps); `None` when no unit of
/// that kind takes part.
type Part = Option<(StageStatus, String)>;

/// One stage row from its stack part and its app part: blocked when either is, the common
/// status when they agree, partial otherwise (e.g. apps diffed, stacks without plans).
fn merge_parts(stacks: Part, apps: Part, none: &str) -> (StageStatus, String) {
    match (stacks, apps) {
        (None, None) => (StageStatus::NotRun, none.to_string()),
        (Some(p), None) | (None, Some(p)) => p,
        (Some((a, da)), Some((b, db))) => {
            let status = if a == StageStatus::Blocked || b == StageStatus::Blocked {
                StageStatus::Blocked
            } else if a == b {
                a
            } else {
                StageStatus::Partial
            };
            (status, format!("{da}; {db}"))
        }
    }
}

/// What the apps contribute to stages 3–6.
#[derive(Default)]
struct AppCounts {
    total: usize,
    /// Head rendered (an app deleted by the change has no head and is not counted).
    rendered: usize,
    render_failed: usize,
    objects: usize,
    schema_errors: usize,
    schema_warnings: usize,
    /// Both sides rendered or absent, so the rendered diff is known.
    diffed: usize,
    added: usize,
    removed: usize,
    changed: usize,
    evaluated: usize,
    denied: usize,
    /// Head rendered but policy could not be evaluated (fails closed).
    policy_failed: usize,
    blocked: usize,
    requirements: usize,
}

impl AppCounts {
    fn of(apps: &[AppDecision]) -> AppCounts {
        let mut c = AppCounts {
            total: apps.len(),
            ..Default::default()
        };
        for a in apps {
            let head_rendered = matches!(a.render.head, RenderState::Rendered { .. });
            if let RenderState::Rendered { objects, .. } = &a.render.head {
                c.rendered += 1;
                c.objects += objects;
            }
            let failed = |s: &RenderState| matches!(s, RenderState::Failed { .. });
            if failed(&a.render.head) {
                c.render_failed += 1;
            }
            if let Some(v) = &a.validation {
                c.schema_errors += v.errors;
                c.schema_warnings += v.warnings;
            }
            if !failed(&a.render.head) && !failed(&a.render.base) {
                c.diffed += 1;
                c.added += a.diff.added;
                c.removed += a.diff.removed;
                c.changed += a.diff.changed;
            }
            if a.policy.is_some() {
                c.evaluated += 1;
            } else if head_rendered {
                c.policy_failed += 1;
            }
            if app_denied(a) {
                c.denied += 1;
            }
            if a.status == AppStatus::Blocked {
                c.blocked += 1;
            }
            c.requirements += a.approvals.len();
        }
        c
    }

    fn render(&self) -> Part {
        if self.total == 0 {
            return None;
        }
        let schema = format!(
            "{}, {}, {}",
            plural(self.objects, "object"),
            plural(self.schema_errors, "schema error"),
            plural(self.schema_warnings, "warning")
        );
        Some(if self.render_failed > 0 || self.schema_errors > 0 {
            (
                StageStatus::Blocked,
                format!(
                    "{} of {} {} not render; {schema}",
                    self.render_failed,
                    plural(self.total, "app"),
                    if self.render_failed == 1 {
                        "does"
                    } else {
                        "do"
                    }
                ),
            )
        } else {
            (
                StageStatus::Passed,
                format!("{} rendered; {schema}", plural(self.rendered, "app")),
            )
        })
    }

    fn plan(&self) -> Part {
        if self.total == 0 {
            return None;
        }
        let objects = format!(
            "{} added, {} removed, {} changed {}",
            self.added,
            self.removed,
            self.changed,
            if self.changed == 1 {
                "object"
            } else {
                "objects"
            }
        );
        Some(if self.diffed == self.total {
            (
                StageStatus::Passed,
                format!("{} diffed ({objects})", plural(self.diffed, "app")),
            )
        } else if self.diffed > 0 {
            (
                StageStatus::Partial,
                format!(
                    "{} of {} diffed ({objects}); the others do not render",
                    self.diffed,
                    plural(self.total, "app")
                ),
            )
        } else {
            (
                StageStatus::NotRun,
                format!(
                    "no app diff ({} {} not render)",
                    plural(self.total, "app"),
                    if self.total == 1 { "does" } else { "do" }
                ),
            )
        })
    }

    fn policy(&self) -> Part {
        if self.total == 0 {
            return None;
        }
        Some(if self.denied > 0 || self.policy_failed > 0 {
            let mut d = format!(
                "{} denied of {} evaluated",
                plural(self.denied, "app"),
                self.evaluated
            );
            if self.policy_failed > 0 {
                let _ = write!(d, ", {} could not be evaluated", self.policy_failed);
            }
            (StageStatus::Blocked, d)
        } else if self.evaluated == 0 {
            (
                StageStatus::NotRun,
                "no rendered app to evaluate".to_string(),
            )
        } else {
            (
                StageStatus::Passed,
                format!("{} evaluated, none denied", plural(self.evaluated, "app")),
            )
        })
    }
}

fn stage_results(
    changes: &[UnitChange],
    validation: &ValidationReport,
    stacks: &[StackReport],
    apps: &[AppDecision],
) -> Vec<StageResult> {
    let active: Vec<&StackReport> = stacks
        .iter()
        .filter(|s| s.status != UnitStatus::Deleted)
        .collect();
    let planned = active
        .iter()
        .filter(|s| matches!(s.plan, PlanState::Planned { .. }))
        .count();
    let failed = active
        .iter()
        .filter(|s| matches!(s.plan, PlanState::Failed { .. }))
        .count();
    let decisions: Vec<&StackDecision> =
        stacks.iter().filter_map(|s| s.decision.as_ref()).collect();
    let denied = decisions
        .iter()
        .filter(|d| d.status == Status::Denied)
        .count();
    let app = AppCounts::of(apps);
    let requirements: usize =
        decisions.iter().map(|d| d.approvals.len()).sum::<usize>() + app.requirements;

    let stack_plan: Part = if active.is_empty() {
        None
    } else if !validation.passed {
        Some((
            StageStatus::NotRun,
            format!(
                "blocked by validation: no plan made for {}",
                plural(active.len(), "stack")
            ),
        ))
    } else if failed > 0 {
        Some((
            StageStatus::Blocked,
            format!(
                "{} failed, {} of {} planned",
                plural(failed, "stack plan"),
                planned,
                plural(active.len(), "stack")
            ),
        ))
    } else if planned == active.len() {
        Some((
            StageStatus::Passed,
            format!("{} planned", plural(planned, "stack")),
        ))
    } else if planned > 0 {
        Some((
            StageStatus::Partial,
            format!(
                "{planned} of {} planned; the others have no plan",
                plural(active.len(), "stack")
            ),
        ))
    } else {
        Some((
            StageStatus::NotRun,
            format!(
                "no plan for {} (pass --plans DIR or --run-plans)",
                plural(active.len(), "stack")
            ),
        ))
    };
    let stack_policy: Part = if decisions.is_empty() {
        (!active.is_empty()).then(|| (StageStatus::NotRun, "no stack plan to evaluate".into()))
    } else if denied > 0 {
        Some((
            StageStatus::Blocked,
            format!(
                "{} denied of {} evaluated",
                plural(denied, "stack"),
                decisions.len()
            ),
        ))
    } else {
        Some((
            StageStatus::Passed,
            format!(
                "{} evaluated, none denied",
                plural(decisions.len(), "stack")
            ),
        ))
    };

    STAGES
        .iter()
        .map(|c| {
            let (status, detail) = match c.stage {
                Stage::Propose => propose_row(changes.len()),
                Stage::Validate => validate_row(validation),
                Stage::Approve if !validation.passed => (
                    StageStatus::NotRun,
                    "blocked by validation: nothing can be approved until it passes".to_string(),
                ),
                Stage::Render => merge_parts(None, app.render(), "no app affected"),
                Stage::Plan => merge_parts(stack_plan.clone(), app.plan(), "nothing to plan"),
                Stage::Policy => merge_parts(
                    stack_policy.clone(),
                    app.policy(),
                    "no plan or rendered app to evaluate",
                ),
                Stage::Approve if denied > 0 || app.blocked > 0 => (
                    StageStatus::NotRun,
                    "a denied or blocked change cannot be approved".to_string(),
                ),
                Stage::Approve if decisions.is_empty() && app.total == 0 => (
                    StageStatus::NotRun,
                    "no policy decision to approve".to_string(),
                ),
                Stage::Approve if requirements == 0 => {
                    (StageStatus::Passed, "no approval required".to_string())
                }
                Stage::Approve => (
                    StageStatus::Pending,
                    format!(
                        "{} to collect ({}); approvals bind to commit + plan/render + decision",
                        plural(requirements, "approval requirement"),
                        match (decisions.is_empty(), app.total) {
                            (false, 0) => "listed per stack",
                            (true, _) => "listed per app",
                            _ => "listed per stack and app",
                        }
                    ),
                ),
                _ => (
                    StageStatus::NotRun,
                    "not available in this build".to_string(),
                ),
            };
            StageResult {
                number: c.number,
                stage: c.stage,
                status,
                detail,
            }
        })
        .collect()
}

/// Stage 1's row: the change proposed as `units` units with correlation ids.
pub fn propose_row(units: usize) -> (StageStatus, String) {
    (
        StageStatus::Passed,
        format!("{} with correlation ids", plural(units, "unit")),
    )
}

/// Stage 2's row from the validation report.
pub fn validate_row(validation: &ValidationReport) -> (StageStatus, String) {
    if validation.passed {
        (
            StageStatus::Passed,
            format!(
                "{}, {}{}",
                plural(validation.summary.files, "file"),
                plural(validation.summary.warnings, "warning"),
                preexisting_note(validation)
            ),
        )
    } else {
        (
            StageStatus::Blocked,
            format!(
                "{}{}",
                plural(
                    validation
                        .baseline
                        .as_ref()
                        .map_or(validation.summary.errors, |b| b.blocking),
                    "blocking finding"
                ),
                preexisting_note(validation)
            ),
        )
    }
}

/// `; 3 pre-existing (not blocking), 1 fixed` when the merge base was validated.
fn preexisting_note(v: &ValidationReport) -> String {
    match &v.baseline {
        Some(b) if b.preexisting > 0 || !b.fixed.is_empty() => {
            let quiet = b.preexisting - b.preexisting_blocking;
            format!(
                "; {} pre-existing{}, {} fixed",
                b.preexisting,
                if quiet == b.preexisting {
                    " (not blocking)".to_string()
                } else {
                    format!(" ({quiet} not blocking)")
                },
                b.fixed.len()
            )
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_policy::PolicyError;

    /// Errors of a bundle or an exception file name that file, not `sluice.yaml:1:1`.
    #[test]
    fn policy_setup_errors_keep_their_own_file() {
        let data = check_to_pipeline(CheckError::Policy(PolicyError::Data {
            file: "policy-library/data/limits.json".into(),
            message: "not a JSON object".into(),
        }));
        assert_eq!(
            data.to_string(),
            "policy-library/data/limits.json: not a JSON object"
        );
        let bundle = check_to_pipeline(CheckError::Policy(PolicyError::Compile {
            bundle: "policy-library".into(),
            message: "conflicting rules".into(),
        }));
        assert_eq!(
            bundle.to_string(),
            "bundle policy-library: conflicting rules"
        );
        let exceptions = check_to_pipeline(CheckError::Policy(PolicyError::Exceptions(vec![
            sluice_policy::exceptions::LoadError {
                file: "security-exceptions/db.yaml".into(),
                line: 4,
                col: 3,
                message: "expiresAt is required".into(),
            },
        ])));
        assert_eq!(
            exceptions.to_string(),
            "security-exceptions/db.yaml:4:3: expiresAt is required"
        );
        for e in [data, bundle, exceptions] {
            assert!(matches!(e, PipelineError::Policy(_)), "{e:?}");
            assert!(!e.to_string().contains("sluice.yaml"), "{e}");
        }
    }

    #[test]
    fn stage_status_names_are_the_json_names() {
        for status in [
            StageStatus::Passed,
            StageStatus::Blocked,
            StageStatus::Partial,
            StageStatus::Pending,
            StageStatus::NotRun,
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }

    #[test]
    fn plan_file_names_are_flat() {
        assert_eq!(
            plan_file_name("prod/ap-southeast-1/rds-payments"),
            "prod__ap-southeast-1__rds-payments.json"
        );
        assert_eq!(plan_file_name("network"), "network.json");
    }

    #[test]
    fn stage_parts_merge_worst_first() {
        let p = |s: StageStatus, d: &str| Some((s, d.to_string()));
        assert_eq!(
            merge_parts(None, None, "nothing"),
            (StageStatus::NotRun, "nothing".into())
        );
        assert_eq!(
            merge_parts(p(StageStatus::Passed, "a"), None, "-"),
            (StageStatus::Passed, "a".into())
        );
        assert_eq!(
            merge_parts(
                p(StageStatus::Passed, "a"),
                p(StageStatus::Passed, "b"),
                "-"
            ),
            (StageStatus::Passed, "a; b".into())
        );
        assert_eq!(
            merge_parts(
                p(StageStatus::NotRun, "a"),
                p(StageStatus::Passed, "b"),
                "-"
            )
            .0,
            StageStatus::Partial
        );
        assert_eq!(
            merge_parts(
                p(StageStatus::Passed, "a"),
                p(StageStatus::Blocked, "b"),
                "-"
            )
            .0,
            StageStatus::Blocked
        );
    }
}
