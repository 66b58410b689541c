//! `sluice render`, `sluice diff` and `sluice bench render`: stage 3 (render) and the app half
//! of stage 4 (the rendered diff), over `sluice-render`; the bench also times validation plus
//! the Kubernetes policy pack (stage 5 for apps) over the same generated manifests.
//!
//! `sluice render APP [--rev REV] [--out DIR]` renders an app from git objects at a revision,
//! validates every object against the Kubernetes schemas (and the repository's CRDs) and
//! prints the objects, their digest and the findings. `sluice diff APP --base REV --head REV`
//! renders both revisions and prints what changed. Secret values are never printed or written.
//! Exit codes (docs/render.md): 0 ok, 1 the app does not render or does not validate,
//! 2 usage (unknown app, bad flags, invalid sluice.yaml), 3 repository, 5 a tool is missing
//! or IO failed.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use sluice_demo::render_bench as bench;
use sluice_flow::error::PipelineError;
use sluice_flow::workspace;

use crate::exit;
use crate::output::{emit, print_json};
use sluice_render::error::RenderError;
use sluice_render::manifest::{DEFAULT_MAX_DOCUMENT_BYTES, Limits};
use sluice_render::render::{self, Rendered};
use sluice_render::report::{self, DiffSide};
use sluice_render::{diff, output, schema};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    Text,
    Json,
    /// The rendered objects as a YAML stream (Secrets redacted); findings go to stderr.
    Yaml,
}

#[derive(Args)]
pub struct RenderArgs {
    /// App id as discovery names it (`sluice stacks` lists them), e.g. prod-eu-west-1/payments.
    pub app: String,
    /// The platform repository (work tree or bare).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Revision to render.
    #[arg(long, default_value = "HEAD")]
    pub rev: String,
    /// Write one YAML file per object plus render.json into this new folder (all or nothing).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: RenderFormat,
    /// Destination namespace for namespaced objects without one (default: the app's name).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Kinds without a schema and unknown fields are errors, not warnings.
    #[arg(long)]
    pub strict: bool,
    /// Render only; skip schema validation.
    #[arg(long)]
    pub no_validate: bool,
    /// Largest YAML document accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_DOCUMENT_BYTES)]
    pub max_document_bytes: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
}

#[derive(Args)]
pub struct DiffArgs {
    /// App id, e.g. prod-eu-west-1/payments.
    pub app: String,
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// The revision the change is based on.
    #[arg(long)]
    pub base: String,
    /// The revision carrying the change.
    #[arg(long)]
    pub head: String,
    #[arg(long, value_enum, default_value = "text")]
    pub format: DiffFormat,
    /// Destination namespace for namespaced objects without one (default: the app's name).
    #[arg(long)]
    pub namespace: Option<String>,
}

#[derive(Args)]
pub struct BenchRenderArgs {
    /// Generated manifests to parse, normalise and validate.
    #[arg(long, default_value_t = 10_000)]
    pub objects: usize,
    /// Objects in the generated Kustomize overlay (0 skips the Kustomize comparison).
    #[arg(long, default_value_t = 500)]
    pub overlay_objects: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Timed runs of each measurement (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Skip the validation + manifest policy measurement.
    #[arg(long)]
    pub no_policy: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: DiffFormat,
}

/// Validation + manifest policy over generated objects: what `sluice pr` runs per app.
#[derive(serde::Serialize)]
struct PolicyBench {
    objects: usize,
    /// Milliseconds, median of the timed runs.
    validate_ms: f64,
    policy_ms: f64,
    total_ms: f64,
    min_total_ms: f64,
    objects_per_second: f64,
    target_ms: f64,
    findings: usize,
    policy_results: usize,
}

fn policy_bench(count: usize, seed: u64, runs: usize) -> Result<PolicyBench, String> {
    use sluice_policy::engine::{BuiltinSettings, EngineSpec};
    use sluice_render::manifest::parse_documents;
    use sluice_render::schema::SchemaSet;
    use std::time::Instant;
    let text = sluice_render::generate::manifests(count, seed, true).join("---\n");
    let docs = parse_documents("generated.yaml", text.as_bytes(), &Limits::default(), true)
        .map_err(|e| e.to_string())?;
    let mut set = SchemaSet::new();
    let assembled =
        sluice_render::assemble::assemble(docs, None, &mut set).map_err(|e| e.to_string())?;
    let engine = sluice_policy::PolicyEngine::new(EngineSpec {
        builtin: Some(BuiltinSettings::default()),
        now: Some(sluice_policy::now()),
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    let app = sluice_policy::AppContext {
        id: "bench/generated".into(),
        env: "prod".into(),
        protected: true,
        ..Default::default()
    };
    let change = sluice_policy::ChangeContext::default();
    let one = || -> Result<(f64, f64, usize, usize), String> {
        let t0 = Instant::now();
        let v = schema::validate(&assembled.objects, &set, schema::Options { strict: true });
        let validate = t0.elapsed().as_secs_f64() * 1000.0;
        let t1 = Instant::now();
        let values: Vec<serde_json::Value> =
            assembled.objects.iter().map(|o| o.value.clone()).collect();
        let record = engine
            .evaluate(&sluice_policy::EvalInput::manifests(&values, &change, &app))
            .map_err(|e| e.to_string())?;
        let policy = t1.elapsed().as_secs_f64() * 1000.0;
        Ok((validate, policy, v.findings.len(), record.results.len()))
    };
    let (_, _, findings, policy_results) = one()?;
    let mut samples = Vec::new();
    for _ in 0..runs.max(1) {
        samples.push(one()?);
    }
    let median = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let totals: Vec<f64> = samples.iter().map(|s| s.0 + s.1).collect();
    let total_ms = median(totals.clone());
    Ok(PolicyBench {
        objects: assembled.objects.len(),
        validate_ms: median(samples.iter().map(|s| s.0).collect()),
        policy_ms: median(samples.iter().map(|s| s.1).collect()),
        total_ms,
        min_total_ms: totals.iter().copied().fold(f64::INFINITY, f64::min),
        objects_per_second: assembled.objects.len() as f64 / (total_ms / 1000.0).max(1e-9),
        target_ms: 2000.0,
        findings,
        policy_results,
    })
}

/// A render failure is reported here (it has its own exit code), not as a pipeline error.
fn fail(context: &str, e: &RenderError) -> i32 {
    eprintln!("error: {context}{e}");
    exit::render(e)
}

pub fn run_render(a: RenderArgs) -> Result<i32, PipelineError> {
    let repo = workspace::open(&a.repo)?;
    let rev = workspace::revision(&repo, &a.rev)?;
    let options = render::Options {
        limits: Limits {
            max_document_bytes: a.max_document_bytes,
            ..Limits::default()
        },
        namespace: a.namespace.clone(),
        ..render::Options::default()
    };
    let rendered = match render::find_app(&rev.config, &rev.snapshot, &a.app)
        .and_then(|app| render::render_app(&rev.snapshot, &app, &options))
    {
        Ok(r) => r,
        Err(e) => return Ok(fail("", &e)),
    };
    let validation = (!a.no_validate).then(|| {
        schema::validate(
            &rendered.objects,
            &rendered.schemas,
            schema::Options { strict: a.strict },
        )
    });
    let summary = report::render_json(&rendered, validation.as_ref());
    if let Some(dir) = &a.out {
        let mut meta = summary.clone();
        if let Some(m) = meta.as_object_mut() {
            m.remove("objects");
        }
        if let Err(e) = output::write_dir(dir, &rendered.objects, &meta) {
            return Ok(fail("", &e));
        }
        eprintln!(
            "wrote {} objects and render.json to {}",
            rendered.objects.len(),
            dir.display()
        );
    }
    match a.format {
        RenderFormat::Json => print_json(&summary),
        RenderFormat::Text => emit(&report::render_text(&rendered, validation.as_ref())),
        RenderFormat::Yaml => {
            emit(&report::render_yaml(&rendered));
            if let Some(v) = &validation {
                eprint!("{}", report::validation_text(v));
            }
        }
    }
    Ok(match &validation {
        Some(v) if !v.passed() => exit::BLOCKED,
        _ => exit::OK,
    })
}

fn render_side(
    repo: &std::sync::Arc<sluice_git::git::GitRepo>,
    rev: &str,
    app: &str,
    options: &render::Options,
) -> Result<Result<Option<Rendered>, RenderError>, PipelineError> {
    let revision = workspace::revision(repo, rev)?;
    Ok(
        match render::find_app(&revision.config, &revision.snapshot, app) {
            Err(RenderError::UnknownApp { .. }) => Ok(None),
            Err(e) => Err(e),
            Ok(spec) => render::render_app(&revision.snapshot, &spec, options).map(Some),
        },
    )
}

pub fn run_diff(a: DiffArgs) -> Result<i32, PipelineError> {
    let repo = workspace::open(&a.repo)?;
    let options = render::Options {
        namespace: a.namespace.clone(),
        ..render::Options::default()
    };
    let base = match render_side(&repo, &a.base, &a.app, &options)? {
        Ok(r) => r,
        Err(e) => return Ok(fail(&format!("base {}: ", a.base), &e)),
    };
    let head = match render_side(&repo, &a.head, &a.app, &options)? {
        Ok(r) => r,
        Err(e) => return Ok(fail(&format!("head {}: ", a.head), &e)),
    };
    if base.is_none() && head.is_none() {
        let revision = workspace::revision(&repo, &a.head)?;
        let e = render::find_app(&revision.config, &revision.snapshot, &a.app)
            .err()
            .unwrap_or(RenderError::UnknownApp {
                app: a.app.clone(),
                known: Vec::new(),
            });
        return Ok(fail(&format!("at {} and {}: ", a.base, a.head), &e));
    }
    let empty = Vec::new();
    let d = diff::diff(
        base.as_ref().map_or(&empty, |r| &r.objects),
        head.as_ref().map_or(&empty, |r| &r.objects),
    );
    let (bs, hs) = (
        DiffSide::of(&a.base, base.as_ref()),
        DiffSide::of(&a.head, head.as_ref()),
    );
    match a.format {
        DiffFormat::Json => {
            let notes: Vec<_> = head.iter().flat_map(|r| r.notes.iter().cloned()).collect();
            print_json(&report::diff_json(&a.app, &bs, &hs, &d, &notes));
        }
        DiffFormat::Text => emit(&report::diff_text(&a.app, &bs, &hs, &d)),
    }
    Ok(exit::OK)
}

pub fn run_bench_render(a: BenchRenderArgs) -> Result<i32, PipelineError> {
    eprintln!(
        "validating {} generated manifests (seed {}), {} runs ...",
        a.objects, a.seed, a.runs
    );
    let v = bench::validate_bench(a.objects, a.seed, a.runs);
    let p = (!a.no_policy).then(|| {
        eprintln!(
            "validating and evaluating the Kubernetes policy pack over {} generated manifests ...",
            a.objects
        );
        policy_bench(a.objects, a.seed, a.runs)
    });
    let k = if a.overlay_objects > 0 {
        eprintln!(
            "rendering a {}-object Kustomize overlay with the tool alone and with sluice ...",
            a.overlay_objects
        );
        Some(bench::kustomize_bench(
            a.overlay_objects,
            a.seed,
            a.runs,
            None,
        ))
    } else {
        None
    };
    match a.format {
        DiffFormat::Json => print_json(&serde_json::json!({
            "schema": "sluice.bench-render/v1",
            "validate": v,
            "validate_and_policy": p.as_ref().map(|r| match r {
                Ok(b) => serde_json::to_value(b).expect("serialises"),
                Err(e) => serde_json::json!({"error": e}),
            }),
            "kustomize": k.as_ref().map(|r| match r {
                Ok(b) => serde_json::to_value(b).expect("serialises"),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            }),
        })),
        DiffFormat::Text => {
            let mut out = format!(
                "parse + normalise + validate {} manifests ({:.1} MB, Kubernetes {}, strict):\n",
                v.objects,
                v.bytes as f64 / 1e6,
                sluice_render::kinds::KUBERNETES_VERSION
            );
            out.push_str(&format!(
                "  median {:.0} ms (parse {:.0}, normalise {:.0}, validate {:.0}), min {:.0} ms, {:.0} objects/s; first run {:.0} ms (compiles schemas); {} findings\n",
                v.total.median_ms,
                v.parse.median_ms,
                v.normalise.median_ms,
                v.validate.median_ms,
                v.total.min_ms,
                v.objects_per_second,
                v.first_run_ms,
                v.findings
            ));
            match &p {
                Some(Ok(b)) => out.push_str(&format!(
                    "validate + manifest policy (built-in Kubernetes pack, one decision record) over {} objects:\n  median {:.0} ms (validate {:.0}, policy {:.0}), min {:.0} ms, {:.0} objects/s; target <= {:.0} ms: {}; {} findings, {} policy results\n  (anchor: kubeconform validates about 7,500 resources/s)\n",
                    b.objects,
                    b.total_ms,
                    b.validate_ms,
                    b.policy_ms,
                    b.min_total_ms,
                    b.objects_per_second,
                    b.target_ms,
                    if b.total_ms <= b.target_ms { "met" } else { "MISSED" },
                    b.findings,
                    b.policy_results
                )),
                Some(Err(e)) => out.push_str(&format!("validate + manifest policy: not measured: {e}\n")),
                None => {}
            }
            match &k {
                Some(Ok(b)) => out.push_str(&format!(
                    "Kustomize overlay of {} objects:\n  {} {} alone: median {:.0} ms, min {:.0} ms\n  sluice render (export from git + {} + parse + normalise + digest): median {:.0} ms, min {:.0} ms\n  of which parse + normalise + digest: median {:.1} ms\n",
                    b.objects,
                    b.tool.name,
                    b.tool.version,
                    b.peer.median_ms,
                    b.peer.min_ms,
                    b.tool.name,
                    b.sluice.median_ms,
                    b.sluice.min_ms,
                    b.sluice_own.median_ms
                )),
                Some(Err(e)) => out.push_str(&format!(
                    "Kustomize overlay: not measured (no `kustomize` or `kubectl` on PATH?): {e}\n"
                )),
                None => {}
            }
            emit(&out);
        }
    }
    Ok(exit::OK)
}
