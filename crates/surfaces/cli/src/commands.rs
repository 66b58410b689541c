//! Subcommands, their flags and their rendering.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cmd_breakglass;
use crate::cmd_check;
use crate::cmd_evidence;
use crate::cmd_plan;
use crate::cmd_policy;
use crate::cmd_release;
use crate::cmd_render;
use crate::cmd_runner;
use crate::cmd_serve;
use crate::cmd_state;
use crate::exit;
use crate::output::{emit, print_json};
use sluice_demo::{bench, demo, generate};
use sluice_flow::error::PipelineError;
use sluice_flow::{affected, pr, validation, workspace};
use sluice_model::stage::STAGES;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Change control plane for GitOps and Infrastructure-as-Code",
    long_about = "sluice takes a change from pull request to production: it finds what the change touches, \
validates it, plans it, evaluates policy, classifies risk, binds approvals to the exact plan and \
keeps a verifiable evidence trail.\n\nExit codes: 0 ok, 1 blocked (blocking findings), 2 usage or \
configuration error, 3 repository error (not a git repository, unknown revision), 4 inconsistent \
org (dependency cycle, layer rule), 5 internal or IO error, 6 a plan failed, 7 approval refused, \
8 apply refused by the gate, 9 stack locked by another change, 10 apply failed (stack degraded)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a sample org as a git repository, open a PR and run every stage over it.
    Demo(DemoArgs),
    /// Stacks and apps a change touches, with the reason for each.
    Affected(AffectedArgs),
    /// Static validation (stage 2): syntax, sluice.yaml schema, module pinning, mutable
    /// images, plaintext secrets, forbidden paths. Exit 1 on blocking findings.
    Validate(ValidateArgs),
    /// The PR report: affected units, validation, stages, required reviewers. Exit 1 when
    /// the change is blocked.
    Pr(PrArgs),
    /// The stack dependency graph (Terragrunt dependencies and sluice.yaml depends_on).
    Graph(GraphArgs),
    /// Discovered stacks and apps with their environment, layer and owners.
    Stacks(RevArgs),
    /// The stage contracts of the change flow.
    Stages(FormatArgs),
    /// Plan the stacks a change affects (stage 4) with OpenTofu/Terraform/Terragrunt; store
    /// each plan as a secret and print its summary and digest. Exit 3 when a plan failed.
    Plan(cmd_plan::PlanArgs),
    /// Validate and store a plan JSON (and plan file) made in your own CI. Exit 2 on a
    /// malformed or unsupported plan.
    IngestPlan(cmd_plan::IngestPlanArgs),
    /// Stored plan artifacts (encrypted at rest): decrypt one with its key, make a new key.
    #[command(subcommand)]
    Artifact(cmd_plan::ArtifactCommand),
    /// Render an app at a revision (stage 3): normalised objects, their digest and schema
    /// validation. Exit 1 when the app does not render or does not validate.
    Render(cmd_render::RenderArgs),
    /// The rendered diff of an app between two revisions (stage 4 for apps): added, removed
    /// and changed objects, image, replica and resource changes. Secret values never shown.
    Diff(cmd_render::DiffArgs),
    /// The policy stage on its own: the built-in pack (`list`), policy tests like `opa test`
    /// (`test`) and a decision record for one plan JSON (`eval`, exit 1 on deny).
    #[command(subcommand)]
    Policy(cmd_policy::PolicyCommand),
    /// Exceptions as code: status, expiry and warnings of the org's security exceptions.
    #[command(subcommand)]
    Exceptions(cmd_policy::ExceptionsCommand),
    /// Policy, risk (R1–R5) and required approvals for one plan JSON of a stack. Exit 0
    /// allowed (approvals may be required), 1 denied, 2 bad input or unknown stack.
    Check(cmd_check::CheckArgs),
    /// Evidence: change bundles, offline verification, the transparency log, checkpoints and
    /// audit. See docs/evidence.md.
    #[command(subcommand)]
    Evidence(cmd_evidence::EvidenceCommand),
    /// Remote state kept by the Terraform `http` backend: versions, pull, rollback. See
    /// docs/state.md.
    #[command(subcommand)]
    State(cmd_state::StateCommand),
    /// Approve a recorded change (stage 6) as a person registered under `people:`, signing
    /// the approval with your key. Exit 7 when refused (not registered, self-approval, key
    /// not registered, nothing to approve).
    Approve(cmd_release::ApproveArgs),
    /// Apply a change's approved plan (stage 7) under the stack's state lock. Exit 8 when the
    /// gate refuses (approval missing, plan used or stale, stack degraded), 9 when the stack
    /// is locked by another change (queued), 10 when the engine apply failed (stack degraded).
    Apply(cmd_release::ApplyArgs),
    /// State-domain locks: holders, fencing tokens, queues, kept locks and degraded stacks.
    Locks(cmd_release::LocksArgs),
    /// Admin: remove a stack lock's holder (audited; --reason required).
    Unlock(cmd_release::AdminArgs),
    /// Admin: declare a degraded stack healthy and release its kept lock (audited; --reason
    /// required); or, with --refresh-only, run the refresh-only plan that shows what the
    /// failed apply changed and lets a new plan recover the stack.
    Recover(cmd_release::RecoverArgs),
    /// Break-glass grants (§15.3): apply one stack without the normal approvals, for a short
    /// time, as a member of the configured group; never without its lock. See
    /// docs/break-glass.md.
    #[command(subcommand, name = "break-glass")]
    BreakGlass(cmd_breakglass::BreakGlassCommand),
    /// Open backport items: Git to bring back in line after a break-glass apply; `resolve`
    /// one with a merged PR.
    Backports(cmd_breakglass::BackportsArgs),
    /// Generate large orgs and measure sluice against a peer in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The control plane: GitHub webhooks into a durable job queue, workers running the PR
    /// pipeline, the read API (/api/v1), /metrics, /healthz and /readyz. Stops gracefully on
    /// SIGTERM or SIGINT.
    Serve(cmd_serve::ServeArgs),
    /// Bearer tokens for `sluice serve`'s API.
    #[command(subcommand)]
    Token(cmd_serve::TokenCommand),
    /// A plan runner: takes plan jobs from `sluice serve`, plans each stack with the engine in
    /// a fresh workspace under the stack's cloud role, uploads the plan. Stops on SIGTERM or
    /// SIGINT after the job in hand.
    Runner(cmd_runner::RunnerArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Write a deterministic generated org (branches `main` and `pr/bench`) as a git repository.
    GenOrg(GenOrgArgs),
    /// Time `sluice affected` (fresh process) against `git diff --name-only` plus reading
    /// every terragrunt.hcl, on a generated org.
    Affected(BenchAffectedArgs),
    /// Time parsing, summarising and redacting a generated plan JSON (10,000 changes by
    /// default); optionally write the plan for other tools.
    Plan(cmd_plan::BenchPlanArgs),
    /// Time parse + normalise + schema validation of generated manifests (10,000 by default)
    /// and a generated Kustomize overlay with `kubectl kustomize` alone and with sluice.
    Render(cmd_render::BenchRenderArgs),
    /// Time the built-in policy pack over a generated plan (10,000 changes by default, and
    /// 50): parse + redact, evaluation, decision record.
    Policy(cmd_policy::BenchPolicyArgs),
    /// Time `sluice check` (fresh process, built-in pack, risk, approvals, report) on a
    /// generated 10,000-change plan and a 50-change plan, with peak RSS.
    Check(cmd_check::BenchCheckArgs),
    /// Durable batched appends per second on SQLite and PostgreSQL, the audit of a
    /// 1,000,000-leaf log and inclusion proof build + verify latency.
    Evidence(cmd_evidence::BenchEvidenceArgs),
    /// Durable acquire and release latency (p50, p99) of a stack's state lock on SQLite and
    /// PostgreSQL.
    Locks(cmd_release::BenchLocksArgs),
    /// `sluice apply CHANGE_ID` (fresh process) against the engine's own `apply PLANFILE` of an
    /// equivalent `terraform_data` plan, alternating, in the same run: medians, p90 and the
    /// overhead, with where sluice's time went.
    Apply(cmd_release::BenchApplyArgs),
    /// Webhook to job enqueued latency (p50/p99) at a fixed request rate, against a `sluice
    /// serve` child process, on SQLite and/or PostgreSQL.
    Webhook(cmd_serve::BenchWebhookArgs),
    /// PR events (`pull_request` opened) on the demo org processed end to end by a `sluice
    /// serve` child process's workers (every stage but the plan), on SQLite and/or PostgreSQL.
    PrEvents(cmd_serve::BenchPrEventsArgs),
    /// Job queue throughput: enqueue, then claim + complete with N workers, on SQLite and/or
    /// PostgreSQL.
    Queue(cmd_serve::BenchQueueArgs),
    /// GET/POST of a 1 MB state and LOCK/UNLOCK latencies of the Terraform state backend over
    /// HTTP on SQLite and PostgreSQL, and cached token verification.
    State(cmd_state::BenchStateArgs),
}

#[derive(Args)]
struct GenOrgArgs {
    /// Number of stacks.
    #[arg(long, default_value_t = 10_000)]
    stacks: usize,
    /// Seed: the same seed always yields the same repository.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Files the PR branch touches.
    #[arg(long, default_value_t = 50)]
    pr_files: usize,
    /// Directory to create (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct BenchAffectedArgs {
    /// A repository made by `sluice bench gen-org`; generated into a temporary folder if omitted.
    #[arg(long)]
    repo: Option<PathBuf>,
    #[arg(long, default_value_t = 10_000)]
    stacks: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Timed runs of each side (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Args)]
struct FormatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
struct DemoArgs {
    /// Where to build the sample org (replaced if a previous demo built it).
    #[arg(long, default_value = "sluice-demo")]
    dir: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
struct AffectedArgs {
    /// The platform repository (work tree or bare).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The revision the change is based on (e.g. main).
    #[arg(long)]
    base: String,
    /// The revision carrying the change (e.g. the PR head).
    #[arg(long)]
    head: String,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Exit 0 even when a stack's config does not parse (each such file is still a warning,
    /// and that stack's dependency edges are missing from the answer).
    #[arg(long)]
    allow_errors: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ValidateFormat {
    Text,
    Json,
    Sarif,
}

#[derive(Args)]
struct ValidateArgs {
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Validate the files the change added or modified since this revision.
    #[arg(long, requires = "head", conflicts_with = "all")]
    base: Option<String>,
    /// The revision to validate.
    #[arg(long)]
    head: Option<String>,
    /// Validate every file of the revision (`--head`, default HEAD).
    #[arg(long)]
    all: bool,
    /// With --record (needs --base and --head): each change's stage 2 result (and its
    /// proposal, stage 1, when none is recorded yet).
    #[command(flatten)]
    record: cmd_evidence::RecordArgs,
    #[arg(long, value_enum, default_value = "text")]
    format: ValidateFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PrFormat {
    /// Plain text, for a terminal.
    Text,
    /// Markdown for one PR comment (fits GitHub's limit; --parts-dir for the whole report).
    #[value(alias = "md")]
    Markdown,
    Json,
    Sarif,
}

#[derive(Args)]
struct PrArgs {
    /// The platform repository (work tree, a subfolder of one, or bare).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The revision the change is based on (e.g. origin/main); the change is judged from
    /// its merge base with --head, as GitHub shows a PR.
    #[arg(long)]
    base: String,
    /// The revision carrying the change (e.g. the PR head, HEAD).
    #[arg(long)]
    head: String,
    /// The pull request number, for correlation ids.
    #[arg(long)]
    pr: Option<u64>,
    /// Plan JSON per stack, made in your CI: `DIR/<stack id with / replaced by __>.json`
    /// (e.g. `prod__ap-southeast-1__rds-payments.json`).
    #[arg(long, value_name = "DIR")]
    plans: Option<PathBuf>,
    /// Plan stacks without a plan file with OpenTofu/Terraform/Terragrunt (as `sluice plan`).
    #[arg(long)]
    run_plans: bool,
    /// Plan store for --run-plans (default: `<repo>/.sluice`).
    #[arg(long, value_name = "DIR")]
    plan_store: Option<PathBuf>,
    /// Judge exception expiry at this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    /// With markdown: write the comment parts (each under GitHub's 65,536-character limit)
    /// as DIR/part-1.md, part-2.md, … and print their paths instead of the report.
    #[arg(long, value_name = "DIR")]
    parts_dir: Option<PathBuf>,
    /// Record the stage results as signed evidence (statements, transparency log) in the
    /// store: REPO/.sluice/sluice.db, or --database-url.
    #[arg(long)]
    record: bool,
    /// With --record: the default branch; a recorded change whose head is in it resolves the
    /// open backport items of its stacks (docs/break-glass.md).
    #[arg(long, default_value = "main")]
    default_branch: String,
    #[command(flatten)]
    evidence: cmd_evidence::StoreArgs,
    /// markdown (default): one PR comment; text: plain text for a terminal.
    #[arg(long, value_enum, default_value = "markdown")]
    format: PrFormat,
}

#[derive(Args)]
struct RevArgs {
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Revision to read.
    #[arg(long, default_value = "HEAD")]
    rev: String,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Exit 0 even when a stack's config does not parse (each such file is still a warning,
    /// and that stack's dependency edges are missing from the answer).
    #[arg(long)]
    allow_errors: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GraphFormat {
    Text,
    Json,
    Dot,
}

#[derive(Args)]
struct GraphArgs {
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    #[arg(long, default_value = "HEAD")]
    rev: String,
    #[arg(long, value_enum, default_value = "text")]
    format: GraphFormat,
    /// Exit 0 even when a stack's config does not parse (each such file is still a warning,
    /// and that stack's dependency edges are missing from the answer).
    #[arg(long)]
    allow_errors: bool,
}

pub fn run(cli: Cli) -> Result<i32, PipelineError> {
    match cli.command {
        Command::Demo(a) => run_demo(a),
        Command::Affected(a) => run_affected(a),
        Command::Validate(a) => run_validate(a),
        Command::Pr(a) => run_pr(a),
        Command::Graph(a) => run_graph(a),
        Command::Stacks(a) => run_stacks(a),
        Command::Stages(a) => run_stages(a),
        Command::Bench(BenchCommand::GenOrg(a)) => run_gen_org(a),
        Command::Bench(BenchCommand::Affected(a)) => run_bench_affected(a),
        Command::Plan(a) => cmd_plan::run_plan(a),
        Command::IngestPlan(a) => cmd_plan::run_ingest_plan(a),
        Command::Artifact(c) => cmd_plan::run_artifact(c),
        Command::Bench(BenchCommand::Plan(a)) => cmd_plan::run_bench_plan(a),
        Command::Render(a) => cmd_render::run_render(a),
        Command::Diff(a) => cmd_render::run_diff(a),
        Command::Bench(BenchCommand::Render(a)) => cmd_render::run_bench_render(a),
        Command::Policy(c) => cmd_policy::run_policy(c),
        Command::Exceptions(c) => cmd_policy::run_exceptions(c),
        Command::Bench(BenchCommand::Policy(a)) => cmd_policy::run_bench_policy(a),
        Command::Check(a) => cmd_check::run_check(a),
        Command::Bench(BenchCommand::Check(a)) => cmd_check::run_bench_check(a),
        Command::Evidence(c) => Ok(cmd_evidence::run_evidence(c)),
        Command::State(c) => Ok(cmd_state::run_state(c)),
        Command::Approve(a) => Ok(cmd_release::run_approve(a)),
        Command::Apply(a) => Ok(cmd_release::run_apply(a)),
        Command::Locks(a) => Ok(cmd_release::run_locks(a)),
        Command::Unlock(a) => Ok(cmd_release::run_unlock(a)),
        Command::Recover(a) => Ok(cmd_release::run_recover(a)),
        Command::BreakGlass(c) => Ok(cmd_breakglass::run(c)),
        Command::Backports(a) => Ok(cmd_breakglass::run_backports(a)),
        Command::Bench(BenchCommand::Evidence(a)) => Ok(cmd_evidence::run_bench_evidence(a)),
        Command::Bench(BenchCommand::Locks(a)) => Ok(cmd_release::run_bench_locks(a)),
        Command::Bench(BenchCommand::Apply(a)) => Ok(cmd_release::run_bench_apply(a)),
        Command::Bench(BenchCommand::Webhook(a)) => Ok(cmd_serve::run_bench_webhook(a)),
        Command::Bench(BenchCommand::PrEvents(a)) => Ok(cmd_serve::run_bench_pr_events(a)),
        Command::Bench(BenchCommand::Queue(a)) => Ok(cmd_serve::run_bench_queue(a)),
        Command::Serve(a) => Ok(cmd_serve::run_serve(a)),
        Command::Token(c) => Ok(cmd_serve::run_token(c)),
        Command::Runner(a) => Ok(cmd_runner::run(a)),
        Command::Bench(BenchCommand::State(a)) => Ok(cmd_state::run_bench_state(a)),
    }
}

fn run_affected(a: AffectedArgs) -> Result<i32, PipelineError> {
    let analysis = affected::run(&a.repo, &a.base, &a.head)?;
    match a.format {
        Format::Json => print_json(&analysis.report),
        Format::Text => emit(&sluice_report::text::affected(&analysis.report)),
    }
    Ok(unparsed_stacks(&analysis.org.errors, a.allow_errors))
}

/// Stack configs that do not parse: each a warning naming the file on stderr (their stacks'
/// dependency edges are unknown, so the answer is incomplete), and the exit code for them.
fn unparsed_stacks(errors: &[impl std::fmt::Display], allowed: bool) -> i32 {
    for e in errors {
        eprintln!(
            "warning: {e} (this stack's dependencies are left out{})",
            if allowed {
                ""
            } else {
                "; --allow-errors to exit 0"
            }
        );
    }
    exit::unparsed_stacks(errors.len(), allowed)
}

fn run_graph(a: GraphArgs) -> Result<i32, PipelineError> {
    let repo = workspace::open(&a.repo)?;
    let rev = workspace::revision(&repo, &a.rev)?;
    let org = rev.discover();
    let errors = org.graph_errors(&rev.config);
    match a.format {
        GraphFormat::Dot => emit(&org.graph.to_dot()),
        GraphFormat::Json => print_json(&serde_json::json!({
            "schema": "sluice.graph/v1",
            "rev": rev.commit(),
            "stacks": org.stacks,
            "edges": org.graph.edges().iter().map(|(s, u)| serde_json::json!({"stack": s, "depends_on": u})).collect::<Vec<_>>(),
            "errors": errors,
            "warnings": org.warnings,
        })),
        GraphFormat::Text => {
            let mut out = String::new();
            for s in &org.stacks {
                let layer = s.layer.as_deref().unwrap_or("-");
                let _ = writeln!(out, "{} [{layer}]", s.id);
                for d in &s.depends_on {
                    let _ = writeln!(out, "  -> {d}");
                }
            }
            emit(&out);
            for w in &org.warnings {
                eprintln!("warning: {}:{}:{}: {}", w.file, w.line, w.col, w.message);
            }
        }
    }
    for c in &errors.cycles {
        eprintln!("error: dependency cycle: {}", c.join(" -> "));
    }
    for v in &errors.layer_violations {
        eprintln!("error: {v}");
    }
    let unparsed = unparsed_stacks(&org.errors, a.allow_errors);
    Ok(if errors.is_empty() {
        unparsed
    } else {
        exit::GRAPH
    })
}

fn run_stacks(a: RevArgs) -> Result<i32, PipelineError> {
    let repo = workspace::open(&a.repo)?;
    let rev = workspace::revision(&repo, &a.rev)?;
    let org = rev.discover();
    match a.format {
        Format::Json => print_json(&serde_json::json!({
            "schema": "sluice.stacks/v1",
            "rev": rev.commit(),
            "stacks": org.stacks,
            "apps": org.apps,
            "warnings": org.warnings,
        })),
        Format::Text => {
            let mut out = format!("stacks ({}):\n", org.stacks.len());
            for s in &org.stacks {
                let _ = writeln!(
                    out,
                    "  {:<45} env={} region={} layer={} owners={}",
                    s.id,
                    s.env,
                    s.region.as_deref().unwrap_or("-"),
                    s.layer.as_deref().unwrap_or("-"),
                    s.owners.join(",")
                );
            }
            let _ = writeln!(out, "apps ({}):", org.apps.len());
            for app in &org.apps {
                let _ = writeln!(
                    out,
                    "  {:<45} env={} owners={}",
                    app.id,
                    app.env.as_deref().unwrap_or("-"),
                    app.owners.join(",")
                );
            }
            emit(&out);
        }
    }
    Ok(unparsed_stacks(&org.errors, a.allow_errors))
}

fn run_stages(a: FormatArgs) -> Result<i32, PipelineError> {
    match a.format {
        Format::Json => print_json(&STAGES),
        Format::Text => {
            let mut out = String::new();
            for s in STAGES {
                let _ = writeln!(
                    out,
                    "{}. {:?}: {} -> {} [{}; events: {}; on failure: {}]",
                    s.number,
                    s.stage,
                    s.input,
                    s.output,
                    s.authority,
                    s.events.join(", "),
                    s.on_failure
                );
            }
            emit(&out);
        }
    }
    Ok(exit::OK)
}

fn run_validate(a: ValidateArgs) -> Result<i32, PipelineError> {
    if a.record.record && a.base.is_none() {
        eprintln!("error: --record needs the change: --base REV --head REV");
        return Ok(exit::USAGE);
    }
    let scope = match (a.base, a.all) {
        (Some(base), false) => validation::Scope::Change {
            base,
            head: a.head.unwrap_or_else(|| "HEAD".into()),
        },
        (None, true) => validation::Scope::All {
            rev: a.head.unwrap_or_else(|| "HEAD".into()),
        },
        _ => {
            eprintln!(
                "error: give either --base REV --head REV (the change) or --all (every file)"
            );
            return Ok(exit::USAGE);
        }
    };
    let report = validation::run(&a.repo, &scope)?;
    let recorder = match a.record.open(&a.repo) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    match a.format {
        ValidateFormat::Text => emit(&sluice_report::text::validation(&report)),
        ValidateFormat::Json => print_json(&report),
        ValidateFormat::Sarif => print_json(&sluice_report::to_sarif(
            &report.findings,
            env!("CARGO_PKG_VERSION"),
        )),
    }
    if let (Some(recorder), validation::Scope::Change { base, head }) = (&recorder, &scope) {
        let analysis = affected::run(&a.repo, base, head)?;
        let who = sluice_recorder::evidence::Identity::from_env();
        let outcome = sluice_recorder::evidence::record_validation(
            recorder,
            &analysis,
            a.record.pr,
            &report,
            &who,
        );
        if let Some(code) = cmd_evidence::report_recorded(recorder, outcome) {
            return Ok(code);
        }
    }
    Ok(if report.config_invalid {
        exit::USAGE
    } else if report.passed {
        exit::OK
    } else {
        exit::BLOCKED
    })
}

fn run_pr(a: PrArgs) -> Result<i32, PipelineError> {
    let now = match a.now.as_deref() {
        None => None,
        Some(t) => match sluice_model::exception::Timestamp::parse_rfc3339(t) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("error: --now `{t}`: {e}");
                return Ok(exit::USAGE);
            }
        },
    };
    if let Some(dir) = a.plans.as_ref().filter(|d| !d.is_dir()) {
        eprintln!("error: --plans {}: not a folder", dir.display());
        return Ok(exit::USAGE);
    }
    let opts = pr::PrOptions {
        pr: a.pr,
        plans_dir: a.plans.clone(),
        run_plans: a.run_plans,
        store: a.plan_store.clone(),
        plans_note: None,
        now,
        given: Default::default(),
    };
    // With --record, each stage is recorded as it finishes (a run that stops part-way leaves
    // the stages before it on record), and the rest of the report before it is printed, so that
    // the approval status below reads this run's change records.
    let state_root = workspace::state_root(&a.repo);
    let recorder = if a.record {
        match cmd_evidence::open_recorder(&state_root, &a.evidence) {
            Ok(r) => Some(r),
            Err(code) => return Ok(code),
        }
    } else {
        None
    };
    let mut recording = recorder.as_ref().map(|r| {
        sluice_recorder::evidence::PrRecording::new(
            r,
            sluice_recorder::evidence::Identity::from_env(),
            a.pr,
        )
    });
    let mut report = match &mut recording {
        None => pr::run_with(&a.repo, &a.base, &a.head, &opts)?,
        Some(recording) => match pr::run_observed(&a.repo, &a.base, &a.head, &opts, recording) {
            Ok(report) => report,
            Err(pr::RunError::Pipeline(e)) => return Err(e),
            Err(pr::RunError::Observer(e)) => return Ok(cmd_evidence::fail(&e)),
        },
    };
    let recorded = match (&recorder, recording) {
        (Some(recorder), Some(recording)) => {
            cmd_evidence::report_recorded(recorder, recording.finish(&report))
        }
        _ => None,
    };
    cmd_release::attach_approval_status(&a.repo, &a.evidence, &mut report, a.record);
    cmd_breakglass::attach_health(&state_root, &a.evidence, &mut report);
    report.backports = pr::pending_backports(
        &cmd_breakglass::pending_for_report(&state_root, &a.evidence),
        &report.changes,
    );
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    match a.format {
        PrFormat::Text if a.parts_dir.is_none() => emit(&sluice_report::pr::render_text(&report)),
        PrFormat::Text | PrFormat::Markdown => match &a.parts_dir {
            None => emit(&sluice_report::pr::render_markdown(&report)),
            Some(dir) => {
                let parts = sluice_report::pr::render_markdown_parts(&report);
                std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
                for (i, p) in parts.iter().enumerate() {
                    let file = dir.join(format!("part-{}.md", i + 1));
                    std::fs::write(&file, p).map_err(|e| PipelineError::io(&file, e))?;
                    emit(&format!("{}\n", file.display()));
                }
            }
        },
        PrFormat::Json => print_json(&report),
        PrFormat::Sarif => print_json(&sluice_report::pr::render_sarif(
            &report,
            env!("CARGO_PKG_VERSION"),
        )),
    }
    if let Some(code) = recorded {
        return Ok(code);
    }
    // A recorded change already in the default branch brings Git back in line with what a
    // break-glass applied to its stack.
    if a.record
        && let Some(code) = cmd_breakglass::resolve_after_record(
            &a.repo,
            &state_root,
            &a.evidence,
            &report,
            &a.default_branch,
        )
    {
        return Ok(code);
    }
    for e in &report.org_errors {
        eprintln!("error: {e}");
    }
    Ok(exit::pr_report(&report))
}

fn run_demo(a: DemoArgs) -> Result<i32, PipelineError> {
    let started = std::time::Instant::now();
    let mode = demo::detect_plan_mode();
    let run = demo::run(&a.dir, mode)?;
    let built = &run.repo;
    eprintln!(
        "built the sample org as a git repository in {} ({} ms)",
        built.dir.display(),
        built.build_ms
    );
    eprintln!(
        "opened PR #{} on branch {}: prod rds-payments read_replicas 1 -> 2, payments image v1.4.2 -> v1.5.0",
        demo::org::PR_NUMBER,
        demo::org::PR_BRANCH
    );
    match mode {
        demo::PlanMode::Engine => {
            eprintln!("planning the affected stacks with terragrunt and tofu/terraform from PATH")
        }
        demo::PlanMode::DemoWritten => {
            eprintln!(
                "{} not on PATH (the demo plans with terragrunt and tofu or terraform): the demo wrote plan JSON for its affected stacks itself; these plans were written by the demo, not by an engine:",
                demo::missing_engines().join(" and ")
            );
            for f in &run.written {
                eprintln!("  {}", f.display());
            }
        }
    }
    let report = &run.report;
    match a.format {
        Format::Json => print_json(report),
        Format::Text => emit(&sluice_report::pr::render_markdown(report)),
    }
    let ev = &run.evidence;
    eprintln!(
        "recorded {} signed stage statement(s) in {}; log size {}, checkpoint {} (root {})",
        ev.statements,
        ev.store,
        ev.log_size,
        ev.checkpoint_size,
        &ev.checkpoint_root[..ev.checkpoint_root.len().min(16)]
    );
    eprintln!(
        "wrote the bundle of change {} to {} (manifest leaf {})",
        ev.change_id,
        ev.bundle_path.display(),
        ev.leaf_index
    );
    if ev.verified {
        eprintln!("{}", ev.verification.trim_end());
    } else {
        eprintln!("bundle NOT verified: {}", ev.verification);
    }
    eprintln!("check it again offline with: {}", ev.verify_command);
    for stack in &report.stacks {
        eprintln!("{}: {}", stack.id, demo::apply_not_run_reason(mode));
    }
    let carried_ok = print_carried(&run.carried);
    eprintln!(
        "demo finished in {ms} ms; explore it with `sluice stacks --repo {dir}`, `sluice graph --repo {dir}` or `sluice pr --repo {dir} --base main --head {branch}{plans}`",
        ms = started.elapsed().as_millis(),
        dir = built.dir.display(),
        branch = demo::org::PR_BRANCH,
        plans = run
            .plans_dir
            .as_ref()
            .map(|p| format!(" --plans {}", p.display()))
            .unwrap_or_default(),
    );
    // A bundle that does not verify is a defect the demo must not hide.
    Ok(if ev.verified && carried_ok {
        exit::OK
    } else {
        exit::INTERNAL
    })
}

/// The summary of PR #413 carried through approval and apply; false when its bundle does not
/// verify.
fn print_carried(carried: &demo::carry::Carried) -> bool {
    use demo::carry::{self, Carried};
    let c = match carried {
        Carried::Skipped { reason } => {
            eprintln!("skipped the apply part: {reason}");
            return true;
        }
        Carried::Done(c) => c,
    };
    let a = &c.applied;
    eprintln!(
        "registered approvers in sluice.yaml (`people:`) with ed25519 keys generated in a temporary directory outside the repository: {}",
        carry::PEOPLE
            .iter()
            .map(|(name, _, group)| format!("{name} ({group})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "opened PR #{} on branch {}: {} rolls the new checkout out to 10% (terraform_data, local state {})",
        carry::FLAGS_PR,
        carry::FLAGS_BRANCH,
        carry::FLAGS_STACK,
        c.state_file.display()
    );
    eprintln!(
        "planned it with {} ({}; {} ms) and recorded change {}: plan {}, requires approval by {}",
        a.engine,
        c.plan_summary,
        c.plan_ms,
        c.change_id,
        c.plan_digest,
        c.requirements.join(", ")
    );
    eprintln!(
        "bob's approval of his own change was refused: {}",
        c.self_approval_refused
    );
    for ap in &c.approvals {
        eprintln!(
            "{} approved it for {} with key {} (a signed approve statement bound to plan {} and decision {})",
            ap.name,
            ap.groups.join(", "),
            ap.key_fingerprint,
            c.plan_digest,
            a.decision_digest
        );
    }
    let serial = |s: &Option<sluice_iac::apply::StateInfo>| {
        s.as_ref()
            .map_or("no state".to_string(), |s| format!("serial {}", s.serial))
    };
    eprintln!(
        "applied exactly that plan under the stack's lock (fencing token {}): state {} -> {}, engine {} ms of {} ms",
        a.fencing_token,
        serial(&a.state_before),
        serial(&a.state_after),
        a.apply_ms,
        a.total_ms
    );
    eprintln!(
        "a second apply of the same change was refused: {}",
        c.second_apply_refused
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!(
        "wrote the bundle of change {} to {} with statements: {}",
        c.change_id,
        c.bundle_path.display(),
        c.bundle_stages.join(", ")
    );
    if c.verified {
        eprintln!("{}", c.verification.trim_end());
    } else {
        eprintln!("bundle NOT verified: {}", c.verification);
    }
    eprintln!(
        "PR #{} carried through in {} ms",
        carry::FLAGS_PR,
        c.total_ms
    );
    c.verified
}

fn run_gen_org(a: GenOrgArgs) -> Result<i32, PipelineError> {
    let spec = generate::Spec {
        pr_files: a.pr_files,
        ..generate::Spec::new(a.stacks, a.seed)
    };
    let started = std::time::Instant::now();
    let generated = generate::write_repo(&spec, &a.out)?;
    eprintln!(
        "generated {} stacks in {} ({} ms); compare `{}` with `{}`",
        generated.stacks.len(),
        a.out.display(),
        started.elapsed().as_millis(),
        generate::BASE_BRANCH,
        generate::PR_BRANCH
    );
    Ok(exit::OK)
}

fn run_bench_affected(a: BenchAffectedArgs) -> Result<i32, PipelineError> {
    let tmp;
    let repo = match a.repo {
        Some(r) => r,
        None => {
            tmp = std::env::temp_dir().join(format!(
                "sluice-bench-{}-{}-{}",
                a.stacks,
                a.seed,
                std::process::id()
            ));
            let spec = generate::Spec::new(a.stacks, a.seed);
            eprintln!("generating {} stacks into {} ...", a.stacks, tmp.display());
            generate::write_repo(&spec, &tmp)?;
            tmp
        }
    };
    let exe = std::env::current_exe().map_err(|e| PipelineError::failed("finding sluice", e))?;
    let result = bench::affected(&exe, &repo, a.runs)?;
    match a.format {
        Format::Json => print_json(&result),
        Format::Text => {
            let mut out = format!(
                "sluice affected on {} ({} affected stacks)\n",
                result.repo, result.affected_stacks
            );
            let _ = writeln!(
                out,
                "  sluice (fresh process): median {:.0} ms, min {:.0} ms",
                result.sluice.median_ms, result.sluice.min_ms
            );
            match (&result.peer, result.ratio) {
                (Some(p), Some(r)) => {
                    let _ = writeln!(
                        out,
                        "  peer (git diff --name-only + read every terragrunt.hcl): median {:.0} ms, min {:.0} ms",
                        p.median_ms, p.min_ms
                    );
                    let _ = writeln!(out, "  ratio sluice/peer: {r:.2}");
                }
                _ => out.push_str("  peer: git not on PATH, not measured\n"),
            }
            emit(&out);
        }
    }
    Ok(exit::OK)
}
