//! Render (stage 3): one app at one revision, from git objects, into normalised objects and
//! their digest. Reads top to bottom as the steps it takes: find the app, learn the
//! repository's CRDs, produce documents (plain YAML read in place; Kustomize and Helm run on an
//! export of exactly what the app references), assemble.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use rayon::prelude::*;
use serde::Serialize;
use sluice_model::config::OrgConfig;
use sluice_model::finding::Severity;
use sluice_model::kustomize::{self, AppKind, KUSTOMIZATION_FILES};
use sluice_model::path;
use sluice_model::tree::Tree;

use crate::assemble::{self, assemble};
use crate::diagnostic::Diagnostic;
use crate::error::RenderError;
use crate::export;
use crate::manifest::{Document, Limits, parse_documents};
use crate::object::{Object, Source};
use crate::schema::SchemaSet;
use crate::tool::{self, Tool};

/// How to render.
#[derive(Debug, Clone)]
pub struct Options {
    pub limits: Limits,
    /// Destination namespace; default: the app's name (the `{app}` placeholder, else the last
    /// folder of its path).
    pub namespace: Option<String>,
    /// Where to look for `kustomize`, `kubectl` and `helm` (default: the process's PATH).
    pub search_path: Option<OsString>,
    /// Per tool invocation.
    pub tool_timeout: Duration,
    /// Read CRDs from every YAML/JSON file of the revision (scope and schema of custom kinds).
    pub repo_crds: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            namespace: None,
            search_path: None,
            tool_timeout: Duration::from_secs(120),
            repo_crds: true,
        }
    }
}

/// An app as discovered at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppSpec {
    pub id: String,
    pub path: String,
    pub kind: AppKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Release name and default namespace.
    pub name: String,
}

/// The output of stage 3 for one app.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    pub app: AppSpec,
    pub commit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<Tool>,
    pub namespace: String,
    pub digest: String,
    #[serde(skip)]
    pub objects: Vec<Object>,
    pub notes: Vec<Diagnostic>,
    #[serde(skip)]
    pub schemas: SchemaSet,
}

/// Every app of the revision: (id, spec), by id.
pub fn apps(config: &OrgConfig, snapshot: &dyn Tree) -> BTreeMap<String, AppSpec> {
    let root = &config.apps.root;
    let dirs: BTreeSet<&str> = snapshot.files_under(root).map(path::parent).collect();
    let mut out = BTreeMap::new();
    for dir in dirs {
        let rel = if root.is_empty() {
            dir
        } else {
            dir.get(root.len() + 1..).unwrap_or("")
        };
        let Some(caps) = config.apps.layout.capture(rel) else {
            continue;
        };
        let Some(kind) = kustomize::kind_of(dir, snapshot) else {
            continue;
        };
        let name = caps
            .values
            .get("app")
            .cloned()
            .unwrap_or_else(|| dir.rsplit('/').next().unwrap_or(dir).to_string());
        out.insert(
            caps.id.clone(),
            AppSpec {
                env: config.app_env(&caps.values),
                cluster: caps.values.get("cluster").cloned(),
                id: caps.id,
                path: dir.to_string(),
                kind,
                name,
            },
        );
    }
    out
}

/// The app with this id, or an error listing the known ones.
pub fn find_app(config: &OrgConfig, snapshot: &dyn Tree, id: &str) -> Result<AppSpec, RenderError> {
    let mut all = apps(config, snapshot);
    all.remove(id).ok_or_else(|| RenderError::UnknownApp {
        app: id.to_string(),
        known: all.into_keys().collect(),
    })
}

/// Render `app` at the revision of `snapshot`.
pub fn render_app(
    snapshot: &dyn Tree,
    app: &AppSpec,
    options: &Options,
) -> Result<Rendered, RenderError> {
    let namespace = options
        .namespace
        .clone()
        .unwrap_or_else(|| app.name.clone());
    let (mut schemas, crd_notes) = if options.repo_crds {
        repo_schemas(snapshot, &options.limits)
    } else {
        (SchemaSet::new(), Vec::new())
    };
    let mut notes = Vec::new();
    let (refs, ref_warnings) = kustomize::app_refs(&app.path, snapshot);
    for w in ref_warnings {
        notes.push(Diagnostic::new(
            Severity::Warning,
            "render/reference",
            &Source {
                file: w.file,
                line: w.line,
                ..Source::default()
            },
            None,
            w.message,
        ));
    }
    let (docs, tool) = match app.kind {
        AppKind::Plain => (plain_documents(snapshot, &app.path, &options.limits)?, None),
        AppKind::Kustomize => {
            let (docs, tool) = kustomize_documents(snapshot, app, &refs, options)?;
            (docs, Some(tool))
        }
        AppKind::Helm => {
            let (docs, tool) = helm_documents(snapshot, app, &refs, &namespace, options)?;
            (docs, Some(tool))
        }
    };
    let assembled = assemble(docs, Some(&namespace), &mut schemas)?;
    // Every CRD of the revision is learnt, but only the notes about this app's are its own.
    let mut notes: Vec<Diagnostic> = crd_notes
        .into_iter()
        .filter(|n| crd_note_concerns(n, &app.path, &assembled.objects))
        .map(|n| n.diagnostic)
        .chain(notes)
        .collect();
    notes.extend(assembled.notes);
    Ok(Rendered {
        app: app.clone(),
        commit: snapshot.revision(),
        tool,
        namespace,
        digest: assembled.digest,
        objects: assembled.objects,
        notes,
        schemas,
    })
}

/// A note about a CRD learnt from the revision, with the group and kind it defines.
#[derive(Debug, Clone)]
pub struct CrdNote {
    /// `(spec.group, spec.names.kind)`, when the CRD names them.
    pub defines: Option<(String, String)>,
    pub diagnostic: Diagnostic,
}

/// Whether a CRD note is about an app: the CRD's file lies in the app's folder, or one of the
/// app's objects is of the kind it defines.
pub fn crd_note_concerns(note: &CrdNote, app_path: &str, objects: &[Object]) -> bool {
    path::is_under(&note.diagnostic.file, app_path)
        || note.defines.as_ref().is_some_and(|(group, kind)| {
            objects
                .iter()
                .any(|o| o.identity.kind == *kind && o.identity.group == *group)
        })
}

/// CRDs anywhere in the revision: a quick byte search, then a parse of the files that match.
pub fn repo_schemas(snapshot: &dyn Tree, limits: &Limits) -> (SchemaSet, Vec<CrdNote>) {
    let candidates: Vec<&str> = snapshot
        .files_under("")
        .filter(|f| kustomize::is_manifest_name(f))
        .collect();
    let mut found: Vec<Document> = candidates
        .par_iter()
        .filter_map(|f| {
            let bytes = snapshot.read_file(f).ok().flatten()?;
            if !contains(&bytes, b"CustomResourceDefinition") {
                return None;
            }
            // Files that do not parse are reported by validation (stage 2), not here.
            let docs = parse_documents(f, &bytes, limits, false).ok()?;
            Some(
                docs.into_iter()
                    .filter(|d| assemble::is_crd(&d.value))
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect();
    found.sort_by(|a, b| a.source.cmp(&b.source));
    let mut set = SchemaSet::new();
    let mut notes = Vec::new();
    for d in &found {
        let spec = &d.value["spec"];
        let defines = spec["group"]
            .as_str()
            .zip(spec["names"]["kind"].as_str())
            .map(|(g, k)| (g.to_string(), k.to_string()));
        notes.extend(
            set.add_crd(&d.value, &d.source)
                .into_iter()
                .map(|diagnostic| CrdNote {
                    defines: defines.clone(),
                    diagnostic,
                }),
        );
    }
    (set, notes)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Plain folders: every `*.yaml`, `*.yml` and `*.json` directly in the app folder, in name
/// order (not recursive, as Argo CD's directory source by default).
fn plain_documents(
    snapshot: &dyn Tree,
    dir: &str,
    limits: &Limits,
) -> Result<Vec<Document>, RenderError> {
    let mut names = snapshot.list_dir(dir);
    names.sort();
    let mut docs = Vec::new();
    for name in names.iter().filter(|n| kustomize::is_manifest_name(n)) {
        let file = format!("{dir}/{name}");
        let Some(bytes) = snapshot.read_file(&file)? else {
            continue;
        };
        docs.extend(parse_documents(&file, &bytes, limits, true)?);
    }
    Ok(docs)
}

fn kustomize_documents(
    snapshot: &dyn Tree,
    app: &AppSpec,
    refs: &[kustomize::AppRef],
    options: &Options,
) -> Result<(Vec<Document>, Tool), RenderError> {
    let tool = tool::kustomize(options.search_path.as_deref())?;
    let files = export::files_for(snapshot, &app.path, refs);
    let exported = export::export(snapshot, &files)?;
    let mut args: Vec<String> = Vec::new();
    if tool.name == "kustomize" {
        args.push("build".into());
    } else {
        args.push("kustomize".into());
    }
    args.push(app.path.clone());
    if uses_helm_charts(snapshot, &files) {
        let helm = tool::helm(options.search_path.as_deref())?;
        args.push("--enable-helm".into());
        args.push("--helm-command".into());
        args.push(helm.program.to_string_lossy().into_owned());
    }
    let label = format!("{} {}", tool.name, app.path);
    let stdout = run_tool(&tool, &args, exported.dir.path(), &app.path, options)?;
    let mut docs = parse_documents(&label, &stdout, &options.limits, false)?;
    let index = origin_index(snapshot, &files, &options.limits);
    for d in &mut docs {
        d.source.line = 0;
        let key = (
            d.value["kind"].as_str().unwrap_or_default().to_string(),
            d.value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        d.source.origin = index.get(&key).cloned();
    }
    Ok((docs, tool))
}

fn uses_helm_charts(snapshot: &dyn Tree, files: &BTreeSet<String>) -> bool {
    files
        .iter()
        .filter(|f| KUSTOMIZATION_FILES.contains(&f.rsplit('/').next().unwrap_or_default()))
        .filter_map(|f| snapshot.read_file(f).ok().flatten())
        .any(|bytes| contains(&bytes, b"helmCharts"))
}

/// (kind, name) → `file:line` of the exported manifests: where a built object most likely
/// comes from (Kustomize does not say unless asked to annotate).
fn origin_index(
    snapshot: &dyn Tree,
    files: &BTreeSet<String>,
    limits: &Limits,
) -> HashMap<(String, String), String> {
    let mut index = HashMap::new();
    for f in files.iter().filter(|f| kustomize::is_manifest_name(f)) {
        let name = f.rsplit('/').next().unwrap_or_default();
        if KUSTOMIZATION_FILES.contains(&name) {
            continue;
        }
        let Some(bytes) = snapshot.read_file(f).ok().flatten() else {
            continue;
        };
        let Ok(docs) = parse_documents(f, &bytes, limits, false) else {
            continue;
        };
        for d in docs {
            let key = (
                d.value["kind"].as_str().unwrap_or_default().to_string(),
                d.value["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            index
                .entry(key)
                .or_insert_with(|| format!("{}:{}", d.source.file, d.source.line));
        }
    }
    index
}

fn run_tool(
    tool: &Tool,
    args: &[String],
    root: &Path,
    app_path: &str,
    options: &Options,
) -> Result<Vec<u8>, RenderError> {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tool::run(&tool.program, &argv, Some(root), options.tool_timeout).map_err(|e| {
        RenderError::Tool {
            tool: tool.name.clone(),
            path: app_path.to_string(),
            message: e,
        }
    })?;
    if !out.success {
        return Err(RenderError::Tool {
            tool: tool.name.clone(),
            path: app_path.to_string(),
            message: tool::trim_message(&String::from_utf8_lossy(&out.stderr), root),
        });
    }
    Ok(out.stdout)
}

/// Values files beside the chart, applied after its `values.yaml` (which Helm reads itself):
/// `values-<env>.yaml`, then `values-<cluster>.yaml`, the more specific last.
pub fn helm_values_files(app: &AppSpec, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for key in [app.env.as_deref(), app.cluster.as_deref()]
        .into_iter()
        .flatten()
    {
        for ext in ["yaml", "yml"] {
            let name = format!("values-{key}.{ext}");
            if names.contains(&name) && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

fn helm_documents(
    snapshot: &dyn Tree,
    app: &AppSpec,
    refs: &[kustomize::AppRef],
    namespace: &str,
    options: &Options,
) -> Result<(Vec<Document>, Tool), RenderError> {
    let tool = tool::helm(options.search_path.as_deref())?;
    let files = export::files_for(snapshot, &app.path, refs);
    let exported = export::export(snapshot, &files)?;
    let root = exported.dir.path();
    if chart_needs_dependencies(snapshot, &app.path) {
        let args = vec![
            "dependency".to_string(),
            "build".into(),
            app.path.clone(),
            "--skip-refresh".into(),
        ];
        run_tool(&tool, &args, root, &app.path, options)?;
    }
    let mut args = vec![
        "template".to_string(),
        app.name.clone(),
        app.path.clone(),
        "--namespace".into(),
        namespace.to_string(),
        "--include-crds".into(),
    ];
    for v in helm_values_files(app, &snapshot.list_dir(&app.path)) {
        args.push("--values".into());
        args.push(format!("{}/{v}", app.path));
    }
    let stdout = run_tool(&tool, &args, root, &app.path, options)?;
    let label = format!("helm template {}", app.path);
    let mut docs = parse_documents(&label, &stdout, &options.limits, false)?;
    let sources = helm_sources(&String::from_utf8_lossy(&stdout));
    for d in &mut docs {
        let at = d.source.line;
        d.source.origin = sources
            .iter()
            .rev()
            .find(|(line, _)| *line < at)
            .map(|(_, s)| chart_file(&app.path, s));
        d.source.line = 0;
    }
    Ok((docs, tool))
}

/// Dependencies declared in Chart.yaml but not vendored under `charts/`.
fn chart_needs_dependencies(snapshot: &dyn Tree, dir: &str) -> bool {
    let Some(bytes) = snapshot
        .read_file(&format!("{dir}/Chart.yaml"))
        .ok()
        .flatten()
    else {
        return false;
    };
    let Ok(doc) = sluice_model::yaml::parse_one(&String::from_utf8_lossy(&bytes)) else {
        return false;
    };
    let declared = doc
        .get("dependencies")
        .and_then(|d| d.as_seq())
        .is_some_and(|d| !d.is_empty());
    declared
        && snapshot
            .files_under(&format!("{dir}/charts"))
            .next()
            .is_none()
}

/// `# Source: chart/templates/x.yaml` comments of `helm template` output, by line.
fn helm_sources(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            l.strip_prefix("# Source: ")
                .map(|s| (i as u32 + 1, s.trim().to_string()))
        })
        .collect()
}

/// `mychart/templates/x.yaml` → `<app path>/templates/x.yaml`.
fn chart_file(app_path: &str, source: &str) -> String {
    match source.split_once('/') {
        Some((_, rest)) => format!("{app_path}/{rest}"),
        None => format!("{app_path}/{source}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(env: Option<&str>, cluster: Option<&str>) -> AppSpec {
        AppSpec {
            id: "c/pay".into(),
            path: "apps/c/pay".into(),
            kind: AppKind::Helm,
            env: env.map(String::from),
            cluster: cluster.map(String::from),
            name: "pay".into(),
        }
    }

    #[test]
    fn values_files_go_from_general_to_specific() {
        let names: Vec<String> = [
            "Chart.yaml",
            "values.yaml",
            "values-prod.yaml",
            "values-prod-eu.yaml",
            "values-dev.yaml",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            helm_values_files(&spec(Some("prod"), Some("prod-eu")), &names),
            ["values-prod.yaml", "values-prod-eu.yaml"]
        );
        assert!(helm_values_files(&spec(None, None), &names).is_empty());
    }

    #[test]
    fn helm_source_comments_map_to_repository_files() {
        let out = "---\n# Source: pay/templates/svc.yaml\napiVersion: v1\n---\n# Source: pay/charts/db/templates/sts.yaml\napiVersion: apps/v1\n";
        let s = helm_sources(out);
        assert_eq!(
            s,
            [
                (2, "pay/templates/svc.yaml".to_string()),
                (5, "pay/charts/db/templates/sts.yaml".to_string())
            ]
        );
        assert_eq!(
            chart_file("apps/c/pay", &s[1].1),
            "apps/c/pay/charts/db/templates/sts.yaml"
        );
    }
}
