//! `sluice plan`, `sluice ingest-plan` and `sluice bench plan`: stage 4 of the change flow.
//!
//! `sluice plan --repo PATH --base REV --head REV [--stack ID…]` plans the stacks the change
//! affects (deleted stacks are not planned) with OpenTofu/Terraform/Terragrunt, each in an
//! isolated export of the head revision, stores every plan file and plan JSON as secrets under
//! `.sluice/blobs/sha256/` and prints a summary per stack with its plan digest. Exit codes:
//! 0 every stack planned, 2 usage or configuration error (bad `plan` section, unknown
//! `--stack`), 3 the repository could not be read, 4 inconsistent org, 6 at least one stack
//! failed to plan.
//!
//! `sluice ingest-plan --stack ID --plan-json FILE [--plan-file FILE]` validates a plan made in
//! the user's own CI and stores it the same way. Exit codes: 0 stored, 2 malformed plan JSON
//! (with file:line:col), unsupported `format_version`, not a plan, or unknown stack.
//!
//! Output never carries a value from a plan: summaries hold addresses, actions and reasons;
//! failures carry a redacted stderr excerpt.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::json;
use sluice_demo::plangen;
use sluice_flow::error::PipelineError;
use sluice_flow::{affected, workspace};
use sluice_iac::config::PlanConfig;
use sluice_iac::driver::{Driver, Outcome, Planned, StackPlan};
use sluice_iac::ingest::{self, IngestError};
use sluice_iac::keys::{KeyProvider as _, LocalKeys};
use sluice_iac::store::{Digest, FsPlanStore, PlanStore, StoreError};
use sluice_model::affected::UnitStatus;
use sluice_model::plan::{Plan, PlanSummary};
use sluice_model::redact::{self, RedactionRules};
use sluice_model::stage::Stage;
use sluice_recorder::evidence;

use crate::exit;
use crate::output::{emit, print_json};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

#[derive(Args)]
pub struct PlanArgs {
    /// The platform repository (work tree or bare).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The revision the change is based on.
    #[arg(long)]
    base: String,
    /// The revision to plan (the PR head).
    #[arg(long)]
    head: String,
    /// Plan only these stacks (ids as `sluice stacks` prints them); repeatable. Without it,
    /// every stack the change affects.
    #[arg(long = "stack", value_name = "ID")]
    stacks: Vec<String>,
    /// Where plans are stored (default: `<repo>/.sluice`).
    #[arg(long)]
    store: Option<PathBuf>,
    /// With --record: each planned stack's stage 4 result, for its change.
    #[command(flatten)]
    record: crate::cmd_evidence::RecordArgs,
    /// Key file for encrypting stored plans at rest (default: $SLUICE_ARTIFACT_KEY, then
    /// $SLUICE_ARTIFACT_KEY_FILE, then `$XDG_DATA_HOME/sluice/artifact-keys`, created on first
    /// use). See docs/artifact-keys.md.
    #[arg(long, value_name = "FILE")]
    artifact_key_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: PlanFormat,
}

#[derive(Args)]
pub struct IngestPlanArgs {
    /// The stack the plan is for.
    #[arg(long)]
    stack: String,
    /// The plan JSON (`show -json PLANFILE` output).
    #[arg(long, value_name = "FILE")]
    plan_json: PathBuf,
    /// The binary plan file itself, so the exact plan can be applied later.
    #[arg(long, value_name = "FILE")]
    plan_file: Option<PathBuf>,
    /// Check that the stack exists in this repository (at `--rev`).
    #[arg(long)]
    repo: Option<PathBuf>,
    #[arg(long, default_value = "HEAD", requires = "repo")]
    rev: String,
    /// Where plans are stored (default: `<repo>/.sluice`, or `./.sluice`).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Key file for encrypting stored plans at rest (default: $SLUICE_ARTIFACT_KEY, then
    /// $SLUICE_ARTIFACT_KEY_FILE, then `$XDG_DATA_HOME/sluice/artifact-keys`, created on first
    /// use). See docs/artifact-keys.md.
    #[arg(long, value_name = "FILE")]
    artifact_key_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: PlanFormat,
}

/// `sluice artifact …`: stored plan artifacts and their keys.
#[derive(clap::Subcommand)]
pub enum ArtifactCommand {
    /// Decrypt one stored plan file or plan JSON into a new file (mode 0600). Needs the key
    /// it was stored with; a wrong key or a tampered artifact is an error (exit 2).
    Open(ArtifactOpenArgs),
    /// Print a fresh random artifact key (base64 of 32 bytes) for `SLUICE_ARTIFACT_KEY` or a
    /// key file (docs/artifact-keys.md explains rotation).
    NewKey,
}

#[derive(Args)]
pub struct ArtifactOpenArgs {
    /// The artifact's digest (`sha256:…`, as `plan` and `ingest-plan` print it).
    digest: String,
    /// Write the plaintext here (created new; never overwritten).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Where plans are stored (default: `./.sluice`).
    #[arg(long, default_value = ".sluice")]
    store: PathBuf,
    /// Key file (default as for `sluice plan`).
    #[arg(long, value_name = "FILE")]
    artifact_key_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct BenchPlanArgs {
    /// Resource changes in the generated plan.
    #[arg(long, default_value_t = 10_000)]
    changes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Timed runs (after one warm-up).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Also write the generated plan JSON here (e.g. for Checkov's `--framework
    /// terraform_plan`).
    #[arg(long, conflicts_with = "plan")]
    out: Option<PathBuf>,
    /// Measure this plan JSON instead of a generated one (peak RSS then reflects the stage
    /// alone, not the generator).
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: PlanFormat,
}

#[derive(Serialize)]
struct PlanReport<'a> {
    schema: &'static str,
    base: &'a str,
    head: &'a str,
    store: String,
    stacks: &'a [StackPlan],
    /// Stacks named by `--stack` or affected but not planned, with why.
    skipped: &'a [Skipped],
}

#[derive(Serialize)]
struct Skipped {
    stack: String,
    reason: String,
}

pub fn run_plan(a: PlanArgs) -> Result<i32, PipelineError> {
    let analysis = affected::run(&a.repo, &a.base, &a.head)?;
    let config = match PlanConfig::from_section(analysis.head.config.sections.get("plan")) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return Ok(exit::USAGE);
        }
    };

    // Which stacks: the affected ones (not deleted), or exactly those named.
    let mut specs = Vec::new();
    let mut skipped = Vec::new();
    if a.stacks.is_empty() {
        for unit in &analysis.report.stacks {
            if unit.status == UnitStatus::Deleted {
                skipped.push(Skipped {
                    stack: unit.id.clone(),
                    reason: "deleted at head: nothing to plan here (destroying its resources \
                             needs a destroy plan of the base revision)"
                        .into(),
                });
                continue;
            }
            if let Some(s) = analysis.org.stacks.iter().find(|s| s.id == unit.id) {
                specs.push(sluice_flow::stack_spec::stack_spec(s));
            }
        }
    } else {
        let mut unknown = Vec::new();
        for id in &a.stacks {
            match analysis.org.stacks.iter().find(|s| &s.id == id) {
                Some(s) => specs.push(sluice_flow::stack_spec::stack_spec(s)),
                None if analysis
                    .report
                    .stacks
                    .iter()
                    .any(|u| &u.id == id && u.status == UnitStatus::Deleted) =>
                {
                    skipped.push(Skipped {
                        stack: id.clone(),
                        reason: "deleted at head".into(),
                    })
                }
                None => unknown.push(id.as_str()),
            }
        }
        if !unknown.is_empty() {
            eprintln!(
                "error: unknown stack{} at {}: {} (see `sluice stacks --repo {} --rev {}`)",
                if unknown.len() == 1 { "" } else { "s" },
                a.head,
                unknown.join(", "),
                a.repo.display(),
                a.head
            );
            return Ok(exit::USAGE);
        }
    }

    // With --record, the gate first: no stack is planned for a change whose validation was not
    // recorded as passed.
    let recorder = match a.record.open(&a.repo) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if let Some(recorder) = &recorder {
        let changes: Vec<_> = specs
            .iter()
            .map(|s| evidence::plan_change(&analysis, a.record.pr, &s.id))
            .collect();
        if let Err(code) = crate::cmd_evidence::gate(recorder, &changes, Stage::Plan) {
            return Ok(code);
        }
    }

    let store_root = a.store.clone().unwrap_or_else(|| a.repo.join(".sluice"));
    if let Err(e) = sluice_evidence::location::prepare_state_dir(&store_root) {
        eprintln!("error: {e}");
        return Ok(exit::INTERNAL);
    }
    let store = match open_store(&store_root, a.artifact_key_file.as_deref(), true) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let plugin_cache = plugin_cache_dir(&config, &store_root);
    let driver = Driver {
        config: &config,
        store: &store,
        rules: config.redaction_rules(),
        path_var: None,
        engine_env: None,
        work_root: std::env::temp_dir().join(format!("sluice-plan-{}", std::process::id())),
        plugin_cache,
    };
    let results = if specs.is_empty() {
        Vec::new()
    } else {
        driver.plan_stacks(&analysis.head.snapshot, &specs)
    };
    if let Some(w) = driver.remove_work_root() {
        eprintln!("warning: {w}");
    }

    let report = PlanReport {
        schema: "sluice.plan/v1",
        base: &analysis.report.base,
        head: &analysis.report.head,
        store: store.root().display().to_string(),
        stacks: &results,
        skipped: &skipped,
    };
    match a.format {
        PlanFormat::Json => print_json(&report),
        PlanFormat::Text => emit(&render_plan_text(&report)),
    }
    if let Some(recorder) = &recorder {
        let who = evidence::Identity::from_env();
        let outcome = evidence::record_plans(recorder, &analysis, a.record.pr, &results, &who);
        if let Some(code) = crate::cmd_evidence::report_recorded(recorder, outcome) {
            return Ok(code);
        }
    }
    Ok(if results.iter().any(StackPlan::failed) {
        exit::PLAN_FAILED
    } else {
        exit::OK
    })
}

/// `plan.plugin_cache_dir` (relative to the store), else `TF_PLUGIN_CACHE_DIR` from the
/// environment, else `<store>/plugin-cache`.
fn plugin_cache_dir(config: &PlanConfig, store_root: &Path) -> PathBuf {
    match &config.plugin_cache_dir {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => store_root.join(p),
        None => std::env::var_os("TF_PLUGIN_CACHE_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| store_root.join("plugin-cache")),
    }
}

fn render_plan_text(r: &PlanReport<'_>) -> String {
    let mut out = String::new();
    let failed = r.stacks.iter().filter(|s| s.failed()).count();
    let _ = writeln!(
        out,
        "plan {}..{}: {} stack{} planned, {} failed",
        affected::short(r.base),
        affected::short(r.head),
        r.stacks.len() - failed,
        if r.stacks.len() - failed == 1 {
            ""
        } else {
            "s"
        },
        failed
    );
    if r.stacks.is_empty() && r.skipped.is_empty() {
        out.push_str("no affected stacks: nothing to plan\n");
    }
    for s in r.stacks {
        out.push('\n');
        let engine = s.engine.as_ref().map(|e| e.label()).unwrap_or_default();
        match &s.outcome {
            Outcome::Planned(p) => {
                let _ = writeln!(
                    out,
                    "{}  [{}; {} ms]\n  plan {}",
                    s.stack, engine, s.duration_ms, p.plan_digest
                );
                for line in p.summary.render_text().lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
            Outcome::Failed(f) => {
                let _ = writeln!(
                    out,
                    "{}  FAILED ({}) at {}: {}",
                    s.stack,
                    f.class.as_str(),
                    step_label(f.step),
                    f.message
                );
                let _ = writeln!(out, "  hint: {}", f.hint);
                if !f.stderr_excerpt.is_empty() {
                    out.push_str("  stderr (last lines, redacted):\n");
                    for l in &f.stderr_excerpt {
                        let _ = writeln!(out, "    | {l}");
                    }
                }
            }
        }
    }
    for s in r.skipped {
        let _ = writeln!(out, "\nskipped {}: {}", s.stack, s.reason);
    }
    let _ = writeln!(out, "\nplans stored (secret, 0600) under {}", r.store);
    out
}

fn step_label(step: sluice_iac::classify::Step) -> &'static str {
    use sluice_iac::classify::Step;
    match step {
        Step::Export => "export",
        Step::Version => "engine detection",
        Step::Init => "init",
        Step::Plan => "plan",
        Step::Show => "show -json",
        Step::Store => "store",
    }
}

pub fn run_ingest_plan(a: IngestPlanArgs) -> Result<i32, PipelineError> {
    // The stack must exist when a repository is given: a plan for an unknown stack would be
    // bound to nothing.
    let mut warnings = Vec::new();
    match &a.repo {
        Some(repo) => {
            let repository = workspace::open(repo)?;
            let rev = workspace::revision(&repository, &a.rev)?;
            let org = rev.discover();
            if !org.stacks.iter().any(|s| s.id == a.stack) {
                eprintln!(
                    "error: unknown stack `{}` at {} in {} (see `sluice stacks`)",
                    a.stack,
                    a.rev,
                    repo.display()
                );
                return Ok(exit::USAGE);
            }
        }
        None => warnings.push(format!(
            "stack `{}` not checked against a repository (pass --repo to check it)",
            a.stack
        )),
    }
    let name = a.plan_json.display().to_string();
    let json = match std::fs::read(&a.plan_json) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {name}: {e}");
            return Ok(exit::USAGE);
        }
    };
    crate::pages::huge_pages_for_bytes(json.len() as u64);
    let plan_file = match &a.plan_file {
        Some(p) => match std::fs::read(p) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("error: {}: {e}", p.display());
                return Ok(exit::USAGE);
            }
        },
        None => None,
    };
    let store_root = a
        .store
        .clone()
        .unwrap_or_else(|| a.repo.as_deref().unwrap_or(Path::new(".")).join(".sluice"));
    if let Err(e) = sluice_evidence::location::prepare_state_dir(&store_root) {
        eprintln!("error: {e}");
        return Ok(exit::INTERNAL);
    }
    let store = match open_store(&store_root, a.artifact_key_file.as_deref(), true) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let planned = match ingest::ingest(&store, &name, &json, plan_file.as_deref()) {
        Ok(p) => p,
        Err(IngestError::Plan(e)) => {
            eprintln!("error: {e}");
            return Ok(exit::USAGE);
        }
        Err(IngestError::Store(e @ StoreError::Key { .. })) => {
            eprintln!("error: {e}");
            return Ok(exit::USAGE);
        }
        Err(IngestError::Store(e)) => return Err(PipelineError::failed("storing the plan", e)),
    };
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    match a.format {
        PlanFormat::Json => print_json(&json!({
            "schema": "sluice.ingested-plan/v1",
            "stack": a.stack,
            "store": store.root().display().to_string(),
            "plan": planned,
            "warnings": warnings,
        })),
        PlanFormat::Text => emit(&render_ingested(&a.stack, &planned, store.root())),
    }
    Ok(exit::OK)
}

pub fn run_artifact(cmd: ArtifactCommand) -> Result<i32, PipelineError> {
    match cmd {
        ArtifactCommand::NewKey => {
            let key = sluice_iac::keys::generate_key()
                .map_err(|e| PipelineError::failed("generating an artifact key", e))?;
            emit(&format!("{key}\n"));
            Ok(exit::OK)
        }
        ArtifactCommand::Open(a) => {
            let Some(digest) = Digest::parse(&a.digest) else {
                eprintln!("error: `{}` is not a sha256 digest", a.digest);
                return Ok(exit::USAGE);
            };
            let store = match open_store(&a.store, a.artifact_key_file.as_deref(), false) {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let bytes = match store.get(&digest) {
                Ok(Some(b)) => b,
                Ok(None) => {
                    eprintln!("error: no artifact {digest} in {}", store.describe());
                    return Ok(exit::USAGE);
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(exit::USAGE);
                }
            };
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&a.out)
                .and_then(|mut f| f.write_all(&bytes).and_then(|_| f.sync_all()));
            if let Err(e) = written {
                eprintln!("error: {}: {e}", a.out.display());
                return Ok(exit::USAGE);
            }
            eprintln!("wrote {} ({} bytes, 0600)", a.out.display(), bytes.len());
            Ok(exit::OK)
        }
    }
}

/// The plan store under `root` with its keys. `writing`: load (and on first use create) the
/// key now, so that a missing or refused key is a usage error (exit 2) before any work.
fn open_store(root: &Path, key_file: Option<&Path>, writing: bool) -> Result<FsPlanStore, i32> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: plan artifact keys: {e}");
        exit::USAGE
    };
    let keys = LocalKeys::from_env(key_file).map_err(|e| fail(&e))?;
    let loaded = if writing {
        keys.ensure()
    } else {
        keys.key_ids()
    };
    loaded.map_err(|e| fail(&format!("{} ({})", e, keys.describe())))?;
    Ok(FsPlanStore::with_keys(root, Arc::new(keys)))
}

fn render_ingested(stack: &str, p: &Planned, store: &Path) -> String {
    let mut out = format!("{stack}\n  plan {}\n", p.plan_digest);
    if let Some(f) = &p.plan_file {
        let _ = writeln!(out, "  plan file {f}");
    }
    let _ = writeln!(out, "  plan JSON {}", p.plan_json);
    for line in p.summary.render_text().lines() {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(
        out,
        "stored encrypted (AES-256-GCM, 0600) under {}",
        store.display()
    );
    out
}

#[derive(Serialize)]
struct BenchPlanResult {
    changes: usize,
    seed: u64,
    json_bytes: usize,
    runs: usize,
    parse_ms: Timing,
    summary_ms: Timing,
    /// Redaction in place (the plan is consumed) plus serialising the result.
    redact_ms: Timing,
    /// Redaction of a borrowed plan (copies what it renders) plus serialising.
    redact_copy_ms: Timing,
    /// parse + summary + redact in place.
    total_ms: Timing,
    /// Peak RSS after the first parse + summary + in-place redaction (what a stage needs).
    stage_peak_rss_mb: Option<f64>,
    /// Peak RSS of the whole run (the copying variant and, without `--plan`, the generator).
    max_rss_mb: Option<f64>,
}

#[derive(Serialize)]
struct Timing {
    median: f64,
    min: f64,
}

fn timing(mut samples: Vec<f64>) -> Timing {
    samples.sort_by(f64::total_cmp);
    Timing {
        median: samples[samples.len() / 2],
        min: samples[0],
    }
}

/// Peak resident set size of this process (Linux `VmHWM`), in MB.
fn max_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Measure parsing, summarising and redacting a generated plan of `--changes` changes.
pub fn run_bench_plan(a: BenchPlanArgs) -> Result<i32, PipelineError> {
    let bytes = match &a.plan {
        Some(p) => std::fs::read(p).map_err(|e| PipelineError::io(p, e))?,
        None => {
            let doc = plangen::generate_plan(a.changes, a.seed);
            serde_json::to_vec(&doc).expect("plan serializes")
        }
    };
    if let Some(out) = &a.out {
        std::fs::write(out, &bytes).map_err(|e| PipelineError::io(out, e))?;
        eprintln!("wrote {} ({} bytes)", out.display(), bytes.len());
    }
    // As `sluice plan` or `check` would run on a plan of this size.
    crate::pages::huge_pages_for_bytes(bytes.len() as u64);
    let rules = RedactionRules::default();
    let runs = a.runs.max(1);
    let (mut parse, mut summary, mut red, mut red_copy, mut total) =
        (vec![], vec![], vec![], vec![], vec![]);
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
    let mut stage_rss = None;
    for i in 0..=runs {
        // The flow of a stage: parse, summarise, then redact in place for the policy input.
        let t0 = Instant::now();
        let plan = Plan::parse("generated.json", &bytes)
            .map_err(|e| PipelineError::failed("parsing", e))?;
        let t1 = Instant::now();
        let s: PlanSummary = plan.summary();
        let t2 = Instant::now();
        let r = serde_json::to_vec(&redact::redact_plan_owned(plan, &rules)).expect("serializes");
        let t3 = Instant::now();
        std::hint::black_box((&s, &r));
        drop(r);
        // The peak so far is the stage's own (before the copying variant below runs).
        stage_rss = stage_rss.or_else(max_rss_mb);
        // The same with a borrowed plan, which copies what it renders.
        let plan = Plan::parse("generated.json", &bytes)
            .map_err(|e| PipelineError::failed("parsing", e))?;
        let c0 = Instant::now();
        let copied = serde_json::to_vec(&redact::redact_plan(&plan, &rules)).expect("serializes");
        let c1 = Instant::now();
        std::hint::black_box(&copied);
        if i == 0 {
            continue; // warm-up
        }
        parse.push(ms(t0, t1));
        summary.push(ms(t1, t2));
        red.push(ms(t2, t3));
        red_copy.push(ms(c0, c1));
        total.push(ms(t0, t3));
    }
    let changes = Plan::parse("plan.json", &bytes)
        .map(|p| p.resource_changes.len())
        .unwrap_or(a.changes);
    let result = BenchPlanResult {
        changes,
        seed: a.seed,
        json_bytes: bytes.len(),
        runs,
        parse_ms: timing(parse),
        summary_ms: timing(summary),
        redact_ms: timing(red),
        redact_copy_ms: timing(red_copy),
        total_ms: timing(total),
        stage_peak_rss_mb: stage_rss,
        max_rss_mb: max_rss_mb(),
    };
    match a.format {
        PlanFormat::Json => print_json(&result),
        PlanFormat::Text => {
            let mut out = format!(
                "plan JSON with {} changes (seed {}, {:.1} MB), {} runs:\n",
                result.changes,
                result.seed,
                result.json_bytes as f64 / 1e6,
                result.runs
            );
            for (what, t) in [
                ("parse + validate", &result.parse_ms),
                ("summary", &result.summary_ms),
                ("redact + serialize", &result.redact_ms),
                ("  (borrowed plan)", &result.redact_copy_ms),
                ("total", &result.total_ms),
            ] {
                let _ = writeln!(
                    out,
                    "  {what:<20} median {:>8.1} ms, min {:>8.1} ms",
                    t.median, t.min
                );
            }
            if let (Some(stage), Some(all)) = (result.stage_peak_rss_mb, result.max_rss_mb) {
                let _ = writeln!(
                    out,
                    "  peak RSS {stage:.0} MB for parse + summary + redact in place ({all:.0} MB for the whole run)"
                );
            }
            emit(&out);
        }
    }
    Ok(exit::OK)
}
