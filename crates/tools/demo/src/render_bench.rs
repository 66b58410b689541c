//! Measurements behind `sluice bench render`: validation (with parsing and normalisation) over
//! generated manifests, and a Kustomize overlay rendered by `kubectl kustomize` alone beside
//! sluice's whole render of it (export from git objects, the same tool, parse, normalise,
//! digest). Benchmarks measure; they assert nothing.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use sluice_git::git::GitRepo;
use sluice_git::git_write::{Author, Writer};
use sluice_model::kustomize::AppKind;

use sluice_render::assemble::assemble;
use sluice_render::error::RenderError;
use sluice_render::generate;
use sluice_render::manifest::{Limits, parse_documents};
use sluice_render::render::{self, AppSpec};
use sluice_render::schema::{self, SchemaSet};
use sluice_render::tool::{self, Tool};

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub runs: usize,
    pub median_ms: f64,
    pub min_ms: f64,
}

fn timing(mut samples: Vec<f64>) -> Timing {
    samples.sort_by(f64::total_cmp);
    Timing {
        runs: samples.len(),
        median_ms: samples.get(samples.len() / 2).copied().unwrap_or_default(),
        min_ms: samples.first().copied().unwrap_or_default(),
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

#[derive(Debug, Clone, Serialize)]
pub struct ValidateBench {
    pub objects: usize,
    pub bytes: usize,
    pub seed: u64,
    /// The first run compiles the built-in schemas it needs.
    pub first_run_ms: f64,
    pub parse: Timing,
    pub normalise: Timing,
    pub validate: Timing,
    pub total: Timing,
    pub objects_per_second: f64,
    pub findings: usize,
}

/// Parse, normalise and validate `count` generated manifests, `runs` times after a first run.
pub fn validate_bench(count: usize, seed: u64, runs: usize) -> ValidateBench {
    let text = generate::manifests(count, seed, true).join("---\n");
    let limits = Limits::default();
    let one = || {
        let t0 = Instant::now();
        let docs = parse_documents("generated.yaml", text.as_bytes(), &limits, true)
            .expect("generated manifests parse");
        let parse = ms(t0);
        let t1 = Instant::now();
        let mut set = SchemaSet::new();
        let assembled = assemble(docs, None, &mut set).expect("generated manifests assemble");
        let normalise = ms(t1);
        let t2 = Instant::now();
        let v = schema::validate(&assembled.objects, &set, schema::Options { strict: true });
        let validate = ms(t2);
        (parse, normalise, validate, ms(t0), v.findings.len())
    };
    let (_, _, _, first_run_ms, findings) = one();
    let mut samples = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let (p, n, v, t, _) = one();
        samples.0.push(p);
        samples.1.push(n);
        samples.2.push(v);
        samples.3.push(t);
    }
    let total = timing(samples.3);
    ValidateBench {
        objects: count,
        bytes: text.len(),
        seed,
        first_run_ms,
        parse: timing(samples.0),
        normalise: timing(samples.1),
        validate: timing(samples.2),
        objects_per_second: count as f64 / (total.median_ms / 1000.0).max(1e-9),
        total,
        findings,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KustomizeBench {
    pub objects: usize,
    pub tool: Tool,
    /// The tool alone on a checked-out folder.
    pub peer: Timing,
    /// `render_app`: export from git objects, the tool, parse, normalise, digest.
    pub sluice: Timing,
    /// Parse + normalise + digest of the tool's output (sluice's own share).
    pub sluice_own: Timing,
    pub digest: String,
}

/// The files of a generated overlay: a base of `objects` manifests (ten per file) and an
/// overlay with a namespace, a name prefix, labels, an image override and a patch.
pub fn overlay_files(objects: usize, seed: u64) -> BTreeMap<String, Vec<u8>> {
    let docs = generate::manifests(objects, seed, false);
    let mut files = BTreeMap::new();
    let mut resources = Vec::new();
    for (i, chunk) in docs.chunks(10).enumerate() {
        let name = format!("res-{i:04}.yaml");
        files.insert(format!("base/{name}"), chunk.join("---\n").into_bytes());
        resources.push(format!("  - {name}"));
    }
    files.insert(
        "base/kustomization.yaml".into(),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{}\n",
            resources.join("\n")
        )
        .into_bytes(),
    );
    files.insert(
        "overlay/kustomization.yaml".into(),
        b"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: bench\nnamePrefix: prod-\nlabels:\n  - pairs: {env: prod}\nresources:\n  - ../base\nimages:\n  - name: ghcr.io/acme/svc-00000\n    newTag: v9.9.9\npatches:\n  - path: replicas.yaml\n"
            .to_vec(),
    );
    files.insert(
        "overlay/replicas.yaml".into(),
        b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: svc-00000\nspec:\n  replicas: 6\n".to_vec(),
    );
    files
}

/// Time `kubectl kustomize` (or `kustomize build`) against sluice's render of the same overlay.
pub fn kustomize_bench(
    objects: usize,
    seed: u64,
    runs: usize,
    search_path: Option<OsString>,
) -> Result<KustomizeBench, RenderError> {
    let io = |e: sluice_git::git::GitError| RenderError::Io(e.to_string());
    let tool = tool::kustomize(search_path.as_deref())?;
    let dir = tempfile::tempdir().map_err(|e| RenderError::Io(e.to_string()))?;
    let files = overlay_files(objects, seed);
    let writer = Writer::init(dir.path()).map_err(io)?;
    let author = Author {
        name: "sluice bench",
        email: "bench@sluice.invalid",
        time: 1_700_000_000,
    };
    let commit = writer
        .commit("main", &files, None, "generated overlay", &author)
        .map_err(io)?;
    writer.checkout("main", commit, &files).map_err(io)?;
    let repo_error = |e: sluice_git::git::GitError| RenderError::Repo(e.to_string());
    let repo = Arc::new(GitRepo::open(dir.path()).map_err(repo_error)?);
    let snapshot = repo.snapshot(commit).map_err(repo_error)?;
    let app = AppSpec {
        id: "bench/overlay".into(),
        path: "overlay".into(),
        kind: AppKind::Kustomize,
        env: None,
        cluster: None,
        name: "bench".into(),
    };
    let options = render::Options {
        search_path,
        ..render::Options::default()
    };
    let args: Vec<&str> = if tool.name == "kustomize" {
        vec!["build", "overlay"]
    } else {
        vec!["kustomize", "overlay"]
    };
    let (mut peer, mut sluice, mut own) = (Vec::new(), Vec::new(), Vec::new());
    let mut digest = String::new();
    let mut output = Vec::new();
    // One warm-up run of each side, then `runs` timed ones.
    for i in 0..=runs.max(1) {
        let t = Instant::now();
        let out = tool::run(&tool.program, &args, Some(dir.path()), options.tool_timeout).map_err(
            |e| RenderError::Tool {
                tool: tool.name.clone(),
                path: "overlay".into(),
                message: e,
            },
        )?;
        let peer_ms = ms(t);
        let t = Instant::now();
        let rendered = render::render_app(&snapshot, &app, &options)?;
        let sluice_ms = ms(t);
        let t = Instant::now();
        let docs = parse_documents("out", &out.stdout, &Limits::default(), false)?;
        let a = assemble(docs, Some("bench"), &mut SchemaSet::new())?;
        let own_ms = ms(t);
        if i > 0 {
            peer.push(peer_ms);
            sluice.push(sluice_ms);
            own.push(own_ms);
        }
        digest = rendered.digest;
        output = a.objects;
    }
    Ok(KustomizeBench {
        objects: output.len(),
        tool,
        peer: timing(peer),
        sluice: timing(sluice),
        sluice_own: timing(own),
        digest,
    })
}
