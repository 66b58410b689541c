//! Stage 2 (validate, DESIGN.md §2): static checks over the files of a PR revision.
//!
//! The caller reads the files from git and says which environment and which live stack a path
//! belongs to; this module does no IO and makes no network call, so it can run in CI with no
//! credential at all (the stage's authority is "CI, read-only"). For every file it checks, in
//! order:
//!
//! 1. the path against `validate.forbidden_paths` (state files, `.terraform/`);
//! 2. the size against `validate.max_file_bytes` and a NUL byte in the first 8 KiB (binary):
//!    such files are reported and not read further, so a huge or binary blob cannot stall
//!    the stage;
//! 3. syntax of YAML, JSON and HCL with the parser's line and column;
//! 4. module pinning in live stacks (a live stack must pin a module to a tag or a commit);
//! 5. mutable container images in protected environments, and plaintext Kubernetes Secrets;
//! 6. secrets, with the org's gitleaks-format rules.
//!
//! Findings never contain a secret or the line it was found on: secret findings carry the rule,
//! the position and a fingerprint. Whole-file findings are placed at line 1, column 1.

use std::sync::LazyLock;

use globset::GlobMatcher;
use hcl_edit::Span;
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Block, Body};
use rayon::prelude::*;
use regex::Regex;
use sluice_model::config::OrgConfig;
use sluice_model::finding::{Finding, Severity};
use sluice_model::glob;
use sluice_model::yaml::{self, Node, Value};

use crate::secrets::{self, LineIndex, SecretRules};

/// A file of the revision under validation.
#[derive(Clone, Copy)]
pub struct SourceFile<'a> {
    /// Repository-relative path with `/` separators.
    pub path: &'a str,
    pub content: &'a [u8],
}

/// What the checks need to know about the org; built once per run by the caller.
pub struct Context<'a> {
    pub config: &'a OrgConfig,
    pub secrets: &'a SecretRules,
    /// environment of the stack or app a path belongs to (None if the file is not in one)
    pub env_of: &'a (dyn Fn(&str) -> Option<String> + Sync),
    /// true when the path lies in a live stack directory (under stacks.root)
    pub in_live_stack: &'a (dyn Fn(&str) -> bool + Sync),
}

/// A rule sluice can report, for documentation and SARIF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleInfo {
    pub id: &'static str,
    pub name: &'static str,
    pub default_severity: Severity,
    pub description: &'static str,
}

pub const SYNTAX_YAML: &str = "syntax/yaml";
pub const SYNTAX_JSON: &str = "syntax/json";
pub const SYNTAX_HCL: &str = "syntax/hcl";
pub const CONFIG_SCHEMA: &str = "config/schema";
pub const IAC_UNPINNED_MODULE: &str = "iac/unpinned-module";
pub const K8S_MUTABLE_IMAGE: &str = "k8s/mutable-image";
pub const K8S_PLAINTEXT_SECRET: &str = "k8s/plaintext-secret";
pub const PATH_FORBIDDEN: &str = "path/forbidden";
pub const FILE_TOO_LARGE: &str = "file/too-large";
pub const FILE_BINARY: &str = "file/binary";
pub const REPO_SYMLINK_ESCAPE: &str = "repo/symlink-escape";
pub const GRAPH_CYCLE: &str = "graph/cycle";
pub const GRAPH_LAYER: &str = "graph/layer";
pub const GRAPH_UNRESOLVED_PATH: &str = "graph/unresolved-path";
pub const GRAPH_MISSING_DEPENDENCY: &str = "graph/missing-dependency";
pub const APP_MISSING_REFERENCE: &str = "app/missing-reference";
/// Secret findings are `secret/<rule id of the secret rules>`.
pub const SECRET_PREFIX: &str = "secret/";

/// Every rule id sluice emits besides the per-rule `secret/*` ids. Stable: users filter and
/// baseline on them.
pub const RULES: &[RuleInfo] = &[
    RuleInfo {
        id: SYNTAX_YAML,
        name: "YamlSyntax",
        default_severity: Severity::Error,
        description: "YAML file does not parse (syntax error, duplicate key or alias bomb).",
    },
    RuleInfo {
        id: SYNTAX_JSON,
        name: "JsonSyntax",
        default_severity: Severity::Error,
        description: "JSON file does not parse.",
    },
    RuleInfo {
        id: SYNTAX_HCL,
        name: "HclSyntax",
        default_severity: Severity::Error,
        description: "HCL file (Terraform, OpenTofu, Terragrunt, tfvars) does not parse.",
    },
    RuleInfo {
        id: CONFIG_SCHEMA,
        name: "ConfigSchema",
        default_severity: Severity::Error,
        description: "sluice.yaml does not match the org configuration schema.",
    },
    RuleInfo {
        id: IAC_UNPINNED_MODULE,
        name: "UnpinnedModule",
        default_severity: Severity::Error,
        description: "A live stack uses a remote module that is not pinned to a release tag, a full commit SHA or an exact registry version.",
    },
    RuleInfo {
        id: K8S_MUTABLE_IMAGE,
        name: "MutableImage",
        default_severity: Severity::Error,
        description: "A container image in a protected environment uses `latest` or no tag and no digest.",
    },
    RuleInfo {
        id: K8S_PLAINTEXT_SECRET,
        name: "PlaintextSecret",
        default_severity: Severity::Error,
        description: "A Kubernetes Secret with values is committed to Git; use an ExternalSecret or a SealedSecret.",
    },
    RuleInfo {
        id: PATH_FORBIDDEN,
        name: "ForbiddenPath",
        default_severity: Severity::Error,
        description: "The path matches validate.forbidden_paths (state files, provider caches).",
    },
    RuleInfo {
        id: FILE_TOO_LARGE,
        name: "FileTooLarge",
        default_severity: Severity::Warning,
        description: "The file exceeds validate.max_file_bytes and was not parsed or scanned.",
    },
    RuleInfo {
        id: FILE_BINARY,
        name: "BinaryFile",
        default_severity: Severity::Info,
        description: "The file is binary (NUL byte in its first 8 KiB) and was not checked.",
    },
    RuleInfo {
        id: REPO_SYMLINK_ESCAPE,
        name: "SymlinkEscape",
        default_severity: Severity::Error,
        description: "A symbolic link points outside the repository.",
    },
    RuleInfo {
        id: GRAPH_CYCLE,
        name: "DependencyCycle",
        default_severity: Severity::Error,
        description: "Stacks depend on each other in a cycle.",
    },
    RuleInfo {
        id: GRAPH_LAYER,
        name: "LayerViolation",
        default_severity: Severity::Error,
        description: "A stack reads outputs of a stack in a later layer (downstream may read upstream, never the reverse).",
    },
    RuleInfo {
        id: GRAPH_UNRESOLVED_PATH,
        name: "UnresolvedPath",
        default_severity: Severity::Error,
        description: "A dependency path does not resolve to a stack.",
    },
    RuleInfo {
        id: GRAPH_MISSING_DEPENDENCY,
        name: "MissingDependency",
        default_severity: Severity::Error,
        description: "A declared dependency does not exist.",
    },
    RuleInfo {
        id: APP_MISSING_REFERENCE,
        name: "AppMissingReference",
        default_severity: Severity::Error,
        description: "A kustomization or Helm chart references a local file or folder (resources, bases, components, patches, generator files, values files, file:// chart dependencies) that does not exist at this revision or leaves the repository: the app cannot render.",
    },
];

/// The rule description for an id (`None` for `secret/*` and unknown ids).
pub fn rule_info(id: &str) -> Option<&'static RuleInfo> {
    RULES.iter().find(|r| r.id == id)
}

/// Validate one file. Findings are sorted by (file, line, col, rule) and deduplicated.
pub fn validate_file(ctx: &Context, file: &SourceFile) -> Vec<Finding> {
    let prepared = Prepared::new(ctx.config);
    finish(check_file(ctx, &prepared, file))
}

/// Validate many files in parallel. The output does not depend on scheduling.
pub fn validate_files(ctx: &Context, files: &[SourceFile]) -> Vec<Finding> {
    let prepared = Prepared::new(ctx.config);
    let findings = files
        .par_iter()
        .flat_map_iter(|f| check_file(ctx, &prepared, f))
        .collect();
    finish(findings)
}

fn finish(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort();
    findings.dedup();
    findings
}

/// Globs compiled once per run. A pattern that does not compile is skipped here: the config
/// loader reports it (`config/schema`) with its position in sluice.yaml.
struct Prepared {
    forbidden: Vec<(String, GlobMatcher)>,
    secret_allow: Vec<GlobMatcher>,
}

impl Prepared {
    fn new(config: &OrgConfig) -> Self {
        let compile = |p: &String| glob::compile(p).ok().map(|g| g.compile_matcher());
        Prepared {
            forbidden: config
                .validate
                .forbidden_paths
                .iter()
                .filter_map(|p| compile(p).map(|m| (p.clone(), m)))
                .collect(),
            secret_allow: config
                .validate
                .secret_allow_paths
                .iter()
                .filter_map(compile)
                .collect(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Yaml,
    Json,
    Hcl,
    Terraform,
    Other,
}

fn kind_of(path: &str) -> Kind {
    let name = file_name(path);
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".yaml") || lower.ends_with(".yml") || name == "Kustomization" {
        Kind::Yaml
    } else if lower.ends_with(".json") {
        Kind::Json
    } else if lower.ends_with(".tf") || lower.ends_with(".tofu") {
        Kind::Terraform
    } else if lower.ends_with(".hcl") || lower.ends_with(".tfvars") {
        Kind::Hcl
    } else {
        Kind::Other
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

const BINARY_SNIFF_BYTES: usize = 8 * 1024;

fn check_file(ctx: &Context, prepared: &Prepared, file: &SourceFile) -> Vec<Finding> {
    let path = file.path;
    let mut out = Vec::new();

    for (pattern, matcher) in &prepared.forbidden {
        if matcher.is_match(path) {
            out.push(Finding::new(
                PATH_FORBIDDEN,
                Severity::Error,
                path,
                1,
                1,
                format!(
                    "path matches the forbidden pattern `{pattern}` (validate.forbidden_paths); remove the file from the repository"
                ),
            ));
        }
    }

    let limit = ctx.config.validate.max_file_bytes;
    let sniff = &file.content[..file.content.len().min(BINARY_SNIFF_BYTES)];
    if file.content.len() as u64 > limit {
        let binary = sniff.contains(&0);
        out.push(Finding::new(
            FILE_TOO_LARGE,
            Severity::Warning,
            path,
            1,
            1,
            format!(
                "file is {} bytes, over validate.max_file_bytes ({limit}); it was not parsed{}",
                file.content.len(),
                if binary {
                    " (binary: not scanned for secrets either)"
                } else {
                    ", only scanned for secrets"
                }
            ),
        ));
        if !binary && !prepared.secret_allow.iter().any(|m| m.is_match(path)) {
            let matches = ctx.secrets.scan_windows(path, file.content);
            out.extend(matches.into_iter().map(|m| secret_finding(path, m)));
        }
        return out;
    }
    if sniff.contains(&0) {
        out.push(Finding::new(
            FILE_BINARY,
            Severity::Info,
            path,
            1,
            1,
            "binary file (NUL byte in the first 8 KiB); not checked",
        ));
        return out;
    }

    let text = String::from_utf8_lossy(file.content);
    // A byte-order mark is not part of the document for any of these parsers.
    let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let env = (ctx.env_of)(path);
    let protected_env = env.filter(|e| ctx.config.is_protected(e));

    match kind_of(path) {
        Kind::Yaml => match yaml::parse_stream(body) {
            Ok(docs) => check_manifests(path, &docs, protected_env.as_deref(), &mut out),
            Err(_) if is_template(path, body) => {}
            Err(e) => out.push(Finding::new(
                SYNTAX_YAML,
                Severity::Error,
                path,
                e.line.max(1),
                e.col.max(1),
                format!("YAML: {}", e.message),
            )),
        },
        Kind::Json => match serde_json::from_str::<serde::de::IgnoredAny>(body) {
            Ok(_) => {
                // JSON is YAML: Kubernetes manifests written as JSON get the same checks.
                if body.contains("\"kind\"")
                    && let Ok(docs) = yaml::parse_stream(body)
                {
                    check_manifests(path, &docs, protected_env.as_deref(), &mut out);
                }
            }
            Err(_) if is_template(path, body) => {}
            Err(e) => out.push(Finding::new(
                SYNTAX_JSON,
                Severity::Error,
                path,
                (e.line() as u32).max(1),
                (e.column() as u32).max(1),
                format!("JSON: {e}", e = json_message(&e)),
            )),
        },
        Kind::Hcl | Kind::Terraform if body.len() > sluice_org::terragrunt::MAX_HCL_BYTES => out
            .push(Finding::new(
                FILE_TOO_LARGE,
                Severity::Warning,
                path,
                1,
                1,
                format!(
                    "{} bytes is over the {} KiB limit for HCL files; not parsed or checked",
                    body.len(),
                    sluice_org::terragrunt::MAX_HCL_BYTES / 1024
                ),
            )),
        kind @ (Kind::Hcl | Kind::Terraform) => match hcl_edit::parser::parse_body(body) {
            Ok(parsed) => {
                if (ctx.in_live_stack)(path) {
                    check_module_pins(path, body, &parsed, kind == Kind::Terraform, &mut out);
                }
            }
            Err(_) if is_template(path, body) => {}
            Err(e) => out.push(Finding::new(
                SYNTAX_HCL,
                Severity::Error,
                path,
                e.location().line() as u32,
                e.location().column() as u32,
                format!("HCL: {}", e.message()),
            )),
        },
        Kind::Other => {}
    }

    if !prepared.secret_allow.iter().any(|m| m.is_match(path)) {
        out.extend(
            ctx.secrets
                .scan(path, &text)
                .into_iter()
                .map(|m| secret_finding(path, m)),
        );
    }
    out
}

fn secret_finding(path: &str, m: crate::secrets::SecretMatch) -> Finding {
    let mut f = Finding::new(
        &format!("{SECRET_PREFIX}{}", m.rule),
        Severity::Error,
        path,
        m.line,
        m.col,
        format!(
            "{} (fingerprint {}); rotate it and load it from a secret store instead of the repository",
            m.description, m.fingerprint
        ),
    );
    f.fingerprint = Some(m.fingerprint);
    f
}

/// serde_json appends " at line L column C" to its messages; the finding has the position.
fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Helm chart templates and boilerplate scaffolds (`.boilerplate/`) are Go templates that only
/// become YAML or HCL when rendered; their syntax is checked on the rendered output (stage 3).
fn is_template(path: &str, text: &str) -> bool {
    let in_template_dir = ["templates", ".boilerplate"]
        .iter()
        .any(|d| path.starts_with(&format!("{d}/")) || path.contains(&format!("/{d}/")));
    in_template_dir && text.contains("{{")
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests

/// The Kubernetes objects of a YAML stream: documents with `apiVersion` and `kind`, and the
/// items of `*List` documents.
fn k8s_objects(docs: &[Node]) -> Vec<&Node> {
    let mut out = Vec::new();
    let mut todo: Vec<&Node> = docs.iter().rev().collect();
    while let Some(doc) = todo.pop() {
        let kind = doc.get("kind").and_then(Node::as_str);
        if doc.get("apiVersion").and_then(Node::as_str).is_none() || kind.is_none() {
            continue;
        }
        out.push(doc);
        if kind.is_some_and(|k| k.ends_with("List"))
            && let Some(items) = doc.get("items").and_then(Node::as_seq)
        {
            todo.extend(items.iter().rev());
        }
    }
    out
}

fn check_manifests(path: &str, docs: &[Node], protected_env: Option<&str>, out: &mut Vec<Finding>) {
    let objects = k8s_objects(docs);
    for obj in &objects {
        check_plaintext_secret(path, obj, out);
    }
    let Some(env) = protected_env else { return };
    for obj in &objects {
        for image in container_images(obj) {
            if let Some(s) = image.as_str()
                && let Some(problem) = image_problem(s)
            {
                out.push(Finding::new(
                    K8S_MUTABLE_IMAGE,
                    Severity::Error,
                    path,
                    image.line,
                    image.col,
                    format!(
                        "container image `{s}` {problem} in protected environment `{env}`; pin a release tag or an @sha256 digest"
                    ),
                ));
            }
        }
    }
    if is_kustomization(path) {
        for doc in docs {
            check_kustomize_images(path, doc, env, out);
        }
    }
}

fn is_kustomization(path: &str) -> bool {
    matches!(
        file_name(path),
        "kustomization.yaml" | "kustomization.yml" | "Kustomization"
    )
}

/// `image` scalars of every container list (`containers`, `initContainers`,
/// `ephemeralContainers`) at any depth: pod specs of Pods, pod templates of workloads,
/// CronJob job templates and the pod templates of custom resources alike.
fn container_images(obj: &Node) -> Vec<&Node> {
    let mut images = Vec::new();
    // An explicit stack: manifest nesting is user input and must not exhaust ours.
    let mut todo = vec![obj];
    while let Some(node) = todo.pop() {
        match &node.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    if matches!(
                        k.as_str(),
                        Some("containers" | "initContainers" | "ephemeralContainers")
                    ) && let Some(items) = v.as_seq()
                    {
                        images.extend(items.iter().filter_map(|c| c.get("image")));
                    }
                    todo.push(v);
                }
            }
            Value::Seq(items) => todo.extend(items),
            _ => {}
        }
    }
    images.sort_by_key(|n| (n.line, n.col));
    images
}

/// Why an image reference is mutable, or `None` when it is pinned enough for this stage (a
/// digest, or a tag other than `latest`: digest enforcement belongs to policy).
fn image_problem(image: &str) -> Option<&'static str> {
    let image = image.trim();
    // Templated references are resolved at render time (stage 3), checked there.
    if image.is_empty() || image.contains('$') || image.contains("{{") || image.contains('@') {
        return None;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) => Some("uses the mutable tag `latest`"),
        Some((_, tag)) if !tag.is_empty() => None,
        _ => Some("has no tag (the runtime pulls `latest`)"),
    }
}

fn check_kustomize_images(path: &str, doc: &Node, env: &str, out: &mut Vec<Finding>) {
    let Some(entries) = doc.get("images").and_then(Node::as_seq) else {
        return;
    };
    for entry in entries {
        let Some(name) = entry.get("name") else {
            continue;
        };
        let label = name.scalar_text().unwrap_or_default();
        let tag = entry.get("newTag");
        let digest = entry.get("digest").and_then(Node::scalar_text);
        if digest.as_deref().is_some_and(|d| !d.is_empty()) {
            continue;
        }
        match tag {
            Some(t) if t.scalar_text().as_deref() == Some("latest") => out.push(Finding::new(
                K8S_MUTABLE_IMAGE,
                Severity::Error,
                path,
                t.line,
                t.col,
                format!(
                    "kustomize image `{label}` sets newTag `latest` in protected environment `{env}`; set a release tag or a digest"
                ),
            )),
            Some(t) if t.scalar_text().is_some_and(|s| !s.is_empty()) => {}
            _ => out.push(Finding::new(
                K8S_MUTABLE_IMAGE,
                Severity::Error,
                path,
                name.line,
                name.col,
                format!(
                    "kustomize image `{label}` sets neither newTag nor digest in protected environment `{env}`; set a release tag or a digest"
                ),
            )),
        }
    }
}

fn check_plaintext_secret(path: &str, obj: &Node, out: &mut Vec<Finding>) {
    if obj.get("kind").and_then(Node::as_str) != Some("Secret")
        || obj.get("apiVersion").and_then(Node::as_str) != Some("v1")
    {
        return;
    }
    let mut material: Vec<u8> = Vec::new();
    let mut first: Option<(&Node, &str, usize)> = None;
    for field in ["data", "stringData"] {
        let Some(entries) = obj.get(field).and_then(Node::as_map) else {
            continue;
        };
        let mut count = 0;
        for (k, v) in entries {
            let value = v.scalar_text().unwrap_or_default();
            if value.is_empty() {
                continue;
            }
            count += 1;
            material.extend_from_slice(k.scalar_text().unwrap_or_default().as_bytes());
            material.push(b'=');
            material.extend_from_slice(value.as_bytes());
            material.push(0);
        }
        if count > 0 && first.is_none() {
            first = Some((obj.key_node(field).expect("field exists"), field, count));
        }
    }
    let Some((at, field, count)) = first else {
        return;
    };
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Node::scalar_text)
        .unwrap_or_else(|| "(unnamed)".into());
    let mut f = Finding::new(
        K8S_PLAINTEXT_SECRET,
        Severity::Error,
        path,
        at.line,
        at.col,
        format!(
            "Secret `{name}` commits {count} value(s) in `{field}` (base64 is not encryption); use an ExternalSecret or a SealedSecret instead"
        ),
    );
    f.fingerprint = Some(secrets::fingerprint(K8S_PLAINTEXT_SECRET, &material));
    out.push(f);
}

// ---------------------------------------------------------------------------------------------
// Module pinning (live stacks)

/// A module reference found in a live stack.
struct ModuleRef<'a> {
    source: &'a str,
    /// Byte offset of the source value (its opening quote).
    offset: usize,
    version: VersionAttr<'a>,
    /// Terragrunt passes sources to go-getter (no registry shorthand); Terraform does not.
    terragrunt: bool,
}

enum VersionAttr<'a> {
    Missing,
    Literal(&'a str),
    /// `version = var.x`: not knowable statically.
    Dynamic,
}

fn check_module_pins(path: &str, text: &str, body: &Body, terraform: bool, out: &mut Vec<Finding>) {
    let lines = LineIndex::new(text);
    for m in module_refs(body, terraform) {
        let Some((severity, message)) = pin_problem(&m) else {
            continue;
        };
        let (line, col) = lines.locate(m.offset);
        out.push(Finding::new(
            IAC_UNPINNED_MODULE,
            severity,
            path,
            line,
            col,
            message,
        ));
    }
}

fn module_refs(body: &Body, terraform: bool) -> Vec<ModuleRef<'_>> {
    let mut refs = Vec::new();
    let blocks: Vec<&Block> = if terraform {
        body.get_blocks("module").collect()
    } else {
        // terragrunt.hcl `terraform { source }`, terragrunt.stack.hcl `unit`/`stack { source }`
        ["terraform", "unit", "stack"]
            .iter()
            .flat_map(|ident| body.get_blocks(ident))
            .collect()
    };
    for block in blocks {
        let Some(source) = block.body.get_attribute("source") else {
            continue;
        };
        // Interpolated sources (`?ref=${local.version}`) are resolved by the engine; they
        // cannot be judged here.
        let Expression::String(s) = &source.value else {
            continue;
        };
        let Some(span) = source.value.span() else {
            continue;
        };
        let version = if terraform {
            match block.body.get_attribute("version").map(|a| &a.value) {
                None => VersionAttr::Missing,
                Some(Expression::String(v)) => VersionAttr::Literal(v.value()),
                Some(_) => VersionAttr::Dynamic,
            }
        } else {
            VersionAttr::Missing
        };
        refs.push(ModuleRef {
            source: s.value(),
            offset: span.start,
            version,
            terragrunt: !terraform,
        });
    }
    refs.sort_by_key(|r| r.offset);
    refs
}

static PINNED_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:refs/tags/)?(?:v?\d+(?:\.\d+)*(?:-[\w.]+)?|[0-9a-f]{40}|[0-9a-f]{64})$")
        .expect("valid regex")
});
static EXACT_VERSION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*=?\s*v?\d+(?:\.\d+)*(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?\s*$")
        .expect("valid regex")
});
/// `[hostname/]namespace/name/provider[//subdir]`, Terraform's registry address.
static REGISTRY_SOURCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?::\d+)?/)?[A-Za-z0-9][A-Za-z0-9_-]*/[A-Za-z0-9][A-Za-z0-9_-]*/[a-z0-9]+(?://.*)?$",
    )
    .expect("valid regex")
});
static FORCED_GETTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([a-z0-9]+)::(.*)$").expect("valid regex"));

/// What is wrong with a module reference's pinning, or `None` when it is pinned or local.
fn pin_problem(m: &ModuleRef) -> Option<(Severity, String)> {
    let source = m.source.trim();
    if source.is_empty() || is_local(source) {
        return None;
    }
    let shown = display_source(source);
    if let Some(caps) = FORCED_GETTER.captures(source) {
        let rest = caps.get(2).map_or("", |g| g.as_str());
        return match &caps[1] {
            "git" | "hg" => git_problem(&shown, rest),
            "s3" | "gcs" | "http" | "https" => archive_problem(&shown, rest),
            _ => None,
        };
    }
    if let Some(rest) = source.strip_prefix("tfr://") {
        let version = query_param(rest, "version");
        return registry_problem(
            &shown,
            version
                .map(VersionAttr::Literal)
                .unwrap_or(VersionAttr::Missing),
            true,
        );
    }
    if source.starts_with("git@")
        || source.starts_with("github.com/")
        || source.starts_with("bitbucket.org/")
    {
        return git_problem(&shown, source);
    }
    if source.starts_with("https://") || source.starts_with("http://") {
        let location = source.split('?').next().unwrap_or(source);
        let repo = location.split("//").nth(1).map_or(location, |_| {
            // `https://host/repo.git//subdir`: the repository part ends at the second `//`.
            let after_scheme = location.find("://").map_or(0, |i| i + 3);
            location[after_scheme..]
                .find("//")
                .map_or(location, |i| &location[..after_scheme + i])
        });
        return if repo.ends_with(".git") {
            git_problem(&shown, source)
        } else {
            archive_problem(&shown, source)
        };
    }
    if !m.terragrunt && REGISTRY_SOURCE.is_match(source) {
        let version = match &m.version {
            VersionAttr::Missing => VersionAttr::Missing,
            VersionAttr::Literal(v) => VersionAttr::Literal(v),
            VersionAttr::Dynamic => return None,
        };
        return registry_problem(&shown, version, false);
    }
    None
}

fn is_local(source: &str) -> bool {
    source == "."
        || source == ".."
        || source.starts_with("./")
        || source.starts_with("../")
        || source.starts_with('/')
        || source.starts_with(".//")
}

fn git_problem(shown: &str, url: &str) -> Option<(Severity, String)> {
    match query_param(url, "ref") {
        Some(r) if PINNED_REF.is_match(r) => None,
        Some(r) => Some((
            Severity::Error,
            format!(
                "module source `{shown}` is pinned to `{}`, which can move (a branch or a short SHA); pin a release tag (`?ref=v1.8.3`) or a full 40-character commit SHA",
                display_query_value(r)
            ),
        )),
        None => Some((
            Severity::Error,
            format!(
                "module source `{shown}` has no `?ref=` and follows the default branch; pin a release tag (`?ref=v1.8.3`) or a full 40-character commit SHA"
            ),
        )),
    }
}

fn registry_problem(shown: &str, version: VersionAttr, tfr: bool) -> Option<(Severity, String)> {
    let how = if tfr {
        "`?version=1.2.3`"
    } else {
        "`version = \"1.2.3\"`"
    };
    match version {
        VersionAttr::Literal(v) if EXACT_VERSION.is_match(v) => None,
        VersionAttr::Literal(v) => Some((
            Severity::Error,
            format!(
                "registry module `{shown}` uses the version constraint `{}`, which accepts new releases; pin an exact version ({how})",
                display_query_value(v.trim())
            ),
        )),
        VersionAttr::Missing => Some((
            Severity::Error,
            format!(
                "registry module `{shown}` has no version and takes the newest release; pin an exact version ({how})"
            ),
        )),
        VersionAttr::Dynamic => None,
    }
}

fn archive_problem(shown: &str, url: &str) -> Option<(Severity, String)> {
    if query_param(url, "checksum").is_some() || query_param(url, "ref").is_some() {
        return None;
    }
    Some((
        Severity::Warning,
        format!(
            "module archive `{shown}` is downloaded without a checksum, so its content can change under the same URL; add `?checksum=sha256:<hex>` or use a git source with `?ref=`"
        ),
    ))
}

/// A query parameter of a go-getter URL (`...//subdir?ref=v1&depth=1`).
fn query_param<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    let (_, query) = url.split_once('?')?;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })
}

/// Query parameters worth showing; anything else (`sshkey=`, tokens) is masked.
const SHOWN_QUERY_KEYS: &[&str] = &["ref", "rev", "version", "depth", "checksum", "archive"];

/// A source as it may be printed: no `user:password@` in the authority, and only known query
/// parameters. Findings end up in PR comments and SARIF.
fn display_source(source: &str) -> String {
    let (location, query) = match source.split_once('?') {
        Some((l, q)) => (l, Some(q)),
        None => (source, None),
    };
    let mut out = String::with_capacity(source.len());
    match location.find("://") {
        Some(i) => {
            let authority_start = i + 3;
            let authority_end = location[authority_start..]
                .find('/')
                .map_or(location.len(), |j| authority_start + j);
            let authority = &location[authority_start..authority_end];
            out.push_str(&location[..authority_start]);
            match authority.rsplit_once('@') {
                // `ssh://git@host` names the conventional ssh user, not a credential.
                Some((user, host)) if user != "git" => out.push_str(host),
                _ => out.push_str(authority),
            }
            out.push_str(&location[authority_end..]);
        }
        None => out.push_str(location),
    }
    if let Some(query) = query {
        out.push('?');
        let parts: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if SHOWN_QUERY_KEYS.contains(&k) => {
                    format!("{k}={}", display_query_value(v))
                }
                Some((k, _)) => format!("{k}=***"),
                None => kv.to_string(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
}

/// Refs and versions are short identifiers; cap what is echoed from user input.
fn display_query_value(v: &str) -> String {
    const MAX: usize = 80;
    if v.chars().count() <= MAX {
        v.to_string()
    } else {
        let head: String = v.chars().take(MAX).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::config::{
        AppsConfig, Environment, OwnersConfig, StacksConfig, ValidateConfig,
    };
    use sluice_model::layout::Layout;
    use std::collections::BTreeMap;

    fn config() -> OrgConfig {
        OrgConfig {
            version: 1,
            org: "acme".into(),
            environments: vec![
                Environment {
                    name: "dev".into(),
                    order: 1,
                    protected: false,
                },
                Environment {
                    name: "prod".into(),
                    order: 3,
                    protected: true,
                },
            ],
            repos: Vec::new(),
            stacks: StacksConfig {
                root: "infra-live/accounts".into(),
                layout: Layout::parse("{env}/{region}/{stack}").unwrap(),
                layers: Vec::new(),
                depends_on: Vec::new(),
                watch: Vec::new(),
                propagate_dependents: true,
            },
            apps: AppsConfig {
                root: "env-gitops/clusters".into(),
                layout: Layout::parse("{cluster}/apps/{app}").unwrap(),
                clusters: BTreeMap::new(),
                watch: Vec::new(),
            },
            owners: OwnersConfig::default(),
            validate: ValidateConfig {
                secret_allow_paths: vec!["docs/fixtures/**".into()],
                ..ValidateConfig::default()
            },
            risk: Default::default(),
            approvals: Default::default(),
            people: Default::default(),
            apply: Default::default(),
            sections: BTreeMap::new(),
        }
    }

    /// `infra-live/accounts/<env>/...` and `env-gitops/clusters/<env>-*/...` carry an env.
    fn env_of(path: &str) -> Option<String> {
        let rest = path
            .strip_prefix("infra-live/accounts/")
            .or_else(|| path.strip_prefix("env-gitops/clusters/"))?;
        let first = rest.split('/').next()?;
        Some(first.split('-').next()?.to_string())
    }

    fn in_live_stack(path: &str) -> bool {
        path.starts_with("infra-live/accounts/")
    }

    fn run_with(config: &OrgConfig, files: &[(&str, &str)]) -> Vec<Finding> {
        let rules = SecretRules::builtin();
        let ctx = Context {
            config,
            secrets: &rules,
            env_of: &env_of,
            in_live_stack: &in_live_stack,
        };
        let files: Vec<SourceFile> = files
            .iter()
            .map(|(p, c)| SourceFile {
                path: p,
                content: c.as_bytes(),
            })
            .collect();
        validate_files(&ctx, &files)
    }

    fn run(files: &[(&str, &str)]) -> Vec<Finding> {
        run_with(&config(), files)
    }

    fn only(findings: &[Finding], rule: &str) -> Vec<Finding> {
        findings
            .iter()
            .filter(|f| f.rule == rule)
            .cloned()
            .collect()
    }

    fn positions(findings: &[Finding], rule: &str) -> Vec<(u32, u32)> {
        only(findings, rule)
            .iter()
            .map(|f| (f.line, f.col))
            .collect()
    }

    #[test]
    fn rule_ids_are_unique_and_cover_the_catalogue() {
        let mut ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
        assert_eq!(RULES.len(), 16);
        assert_eq!(
            rule_info(FILE_TOO_LARGE).unwrap().default_severity,
            Severity::Warning
        );
    }

    #[test]
    fn yaml_syntax_errors_have_position() {
        let f = run(&[
            ("a/bad.yaml", "a: 1\nb: [1, 2\nc: 3\n"),
            ("a/good.yml", "a: 1\n"),
        ]);
        let s = only(&f, SYNTAX_YAML);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].file, "a/bad.yaml");
        assert!(s[0].line >= 2, "{s:?}");
        let dup = run(&[("d.yaml", "a: 1\na: 2\n")]);
        assert_eq!(positions(&dup, SYNTAX_YAML), vec![(2, 1)]);
        assert!(only(&dup, SYNTAX_YAML)[0].message.contains("duplicate key"));
    }

    #[test]
    fn helm_templates_are_not_yaml_until_rendered() {
        let tpl = "{{- if .Values.enabled }}\napiVersion: v1\nkind: ConfigMap\n{{- end }}\n";
        assert!(run(&[("charts/app/templates/cm.yaml", tpl)]).is_empty());
        assert_eq!(run(&[("charts/app/cm.yaml", tpl)]).len(), 1);
    }

    #[test]
    fn boilerplate_scaffolds_are_not_hcl_until_rendered() {
        let tpl = "inputs = {\n  {{ range .vars }}\n  {{ .Name }} = {{ .Value }}\n  {{ end }}\n}\n";
        assert!(run(&[("catalog/modules/svc/.boilerplate/terragrunt.hcl", tpl)]).is_empty());
        assert_eq!(
            only(
                &run(&[("catalog/modules/svc/terragrunt.hcl", tpl)]),
                SYNTAX_HCL
            )
            .len(),
            1
        );
    }

    #[test]
    fn json_syntax_errors_have_position() {
        let f = run(&[
            ("x/a.json", "{\n  \"a\": 1,\n  \"b\": ]\n}\n"),
            ("x/ok.tf.json", "{\"a\": [1]}"),
        ]);
        assert_eq!(positions(&f, SYNTAX_JSON), vec![(3, 8)]);
        assert!(!f[0].message.contains(" at line "), "{}", f[0].message);
        assert_eq!(
            positions(&run(&[("e.json", "")]), SYNTAX_JSON),
            vec![(1, 1)]
        );
    }

    #[test]
    fn hcl_syntax_errors_have_position() {
        let f = run(&[
            ("m/main.tf", "resource \"a\" \"b\" {\n  x = \n}\n"),
            ("m/terragrunt.hcl", "inputs = {\n  a = 1\n"),
            ("m/ok.tfvars", "region = \"eu-west-1\"\n"),
            ("m/ok.tofu", "variable \"x\" {}\n"),
        ]);
        let s = only(&f, SYNTAX_HCL);
        assert_eq!(
            s.iter().map(|f| f.file.as_str()).collect::<Vec<_>>(),
            vec!["m/main.tf", "m/terragrunt.hcl"]
        );
        assert_eq!((s[0].line, s[0].col), (2, 7));
        // hcl-edit places an unclosed block at the start of the structure it could not finish.
        assert_eq!((s[1].line, s[1].col), (1, 1), "{s:?}");
    }

    const LIVE: &str = "infra-live/accounts/prod/eu-west-1/network";

    fn unpinned(path: &str, text: &str) -> Vec<Finding> {
        only(&run(&[(path, text)]), IAC_UNPINNED_MODULE)
    }

    #[test]
    fn terragrunt_git_sources_need_a_tag_or_full_sha() {
        let tg = format!("{LIVE}/terragrunt.hcl");
        let src = |s: &str| {
            format!(
                "include \"root\" {{\n  path = find_in_parent_folders(\"root.hcl\")\n}}\n\nterraform {{\n  source = \"{s}\"\n}}\n"
            )
        };
        let pinned = [
            "git::git@github.com:acme/modules.git//vpc?ref=v1.8.3",
            "git::https://github.com/acme/modules.git//vpc?ref=1.8.3",
            "github.com/acme/modules//vpc?ref=v2.0.0-rc.1",
            "git::https://example.com/m.git?ref=9f3a12c0d9f3a12c0d9f3a12c0d9f3a12c0d9f3a",
            "../../../../modules/vpc",
            "${get_repo_root()}/modules/vpc",
            "git::git@github.com:acme/modules.git//vpc?ref=${local.version}",
            "tfr:///terraform-aws-modules/vpc/aws?version=5.16.0",
        ];
        for s in pinned {
            assert!(unpinned(&tg, &src(s)).is_empty(), "{s} should pass");
        }
        let unpinned_sources = [
            (
                "git::git@github.com:acme/modules.git//vpc?ref=main",
                "`main`",
            ),
            (
                "git::https://github.com/acme/modules.git//vpc?ref=master",
                "`master`",
            ),
            ("github.com/acme/modules//vpc?ref=develop", "`develop`"),
            (
                "git::https://github.com/acme/modules.git//vpc?ref=HEAD",
                "`HEAD`",
            ),
            (
                "git::https://github.com/acme/modules.git//vpc?ref=9f3a12c",
                "`9f3a12c`",
            ),
            (
                "git::https://github.com/acme/modules.git//vpc",
                "no `?ref=`",
            ),
            ("git@github.com:acme/modules.git//vpc", "no `?ref=`"),
            ("bitbucket.org/acme/modules//vpc", "no `?ref=`"),
            (
                "https://git.example.com/acme/modules.git//vpc?ref=main",
                "`main`",
            ),
            ("tfr:///terraform-aws-modules/vpc/aws", "no version"),
            (
                "tfr:///terraform-aws-modules/vpc/aws?version=~>5.0",
                "`~>5.0`",
            ),
        ];
        for (s, why) in unpinned_sources {
            let f = unpinned(&tg, &src(s));
            assert_eq!(f.len(), 1, "{s} should fail");
            assert_eq!((f[0].line, f[0].col), (6, 12), "{s}");
            assert_eq!(f[0].severity, Severity::Error);
            assert!(f[0].message.contains(why), "{s}: {}", f[0].message);
        }
        // Outside live stacks (module repos, catalogs) the rule does not apply.
        assert!(
            unpinned(
                "infra-modules/vpc/terragrunt.hcl",
                &src("git::https://x.com/m.git?ref=main")
            )
            .is_empty()
        );
    }

    #[test]
    fn terragrunt_stack_units_are_checked() {
        let text = "unit \"vpc\" {\n  source = \"git::https://github.com/acme/catalog.git//units/vpc?ref=main\"\n  path   = \"vpc\"\n}\n\nunit \"db\" {\n  source = \"git::https://github.com/acme/catalog.git//units/db?ref=v1.0.0\"\n  path   = \"db\"\n}\n";
        let f = unpinned(&format!("{LIVE}/terragrunt.stack.hcl"), text);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].line, f[0].col), (2, 12));
    }

    #[test]
    fn terraform_registry_modules_need_an_exact_version() {
        let tf = format!("{LIVE}/main.tf");
        let module = |version: &str| {
            format!(
                "module \"vpc\" {{\n  source  = \"terraform-aws-modules/vpc/aws\"\n{version}}}\n"
            )
        };
        for ok in [
            "  version = \"5.16.0\"\n",
            "  version = \"= 5.16.0\"\n",
            "  version = \"=5.16.0\"\n",
            "  version = var.vpc_version\n",
        ] {
            assert!(unpinned(&tf, &module(ok)).is_empty(), "{ok}");
        }
        for bad in [
            "  version = \"~> 5.0\"\n",
            "  version = \">= 5.0, < 6.0\"\n",
            "  version = \">= 5.0\"\n",
            "",
        ] {
            let f = unpinned(&tf, &module(bad));
            assert_eq!(f.len(), 1, "{bad}");
            assert_eq!((f[0].line, f[0].col), (2, 13));
            assert!(f[0].message.contains("exact version"), "{}", f[0].message);
        }
        let host = "module \"x\" {\n  source = \"app.terraform.io/acme/vpc/aws\"\n}\n";
        assert_eq!(unpinned(&format!("{LIVE}/x.tofu"), host).len(), 1);
        let local = "module \"x\" {\n  source = \"../../modules/x\"\n}\nmodule \"y\" {\n  source = \"./y\"\n}\n";
        assert!(unpinned(&tf, local).is_empty());
        let git = "module \"x\" {\n  source = \"git::https://github.com/acme/m.git?ref=main\"\n  version = \"1.0.0\"\n}\n";
        assert_eq!(
            unpinned(&tf, git).len(),
            1,
            "version does not pin a git source"
        );
    }

    #[test]
    fn archives_warn_without_checksum() {
        let tf = format!("{LIVE}/main.tf");
        let m = |s: &str| format!("module \"x\" {{\n  source = \"{s}\"\n}}\n");
        let f = unpinned(&tf, &m("https://example.com/vpc-module.zip"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(f[0].message.contains("checksum"));
        assert!(unpinned(&tf, &m("https://example.com/vpc.zip?checksum=sha256:abcd")).is_empty());
        assert_eq!(
            unpinned(&tf, &m("s3::https://s3.amazonaws.com/bucket/vpc.zip")).len(),
            1
        );
    }

    #[test]
    fn printed_sources_carry_no_credentials() {
        let tf = format!("{LIVE}/main.tf");
        let text = "module \"x\" {\n  source = \"git::https://deploy:Sup3rS3cretT0ken@github.com/acme/m.git//vpc?ref=main&sshkey=LS0tLS1CRUdJTg\"\n}\n";
        let f = unpinned(&tf, text);
        assert_eq!(f.len(), 1);
        let msg = &f[0].message;
        assert!(
            !msg.contains("Sup3rS3cretT0ken")
                && !msg.contains("deploy:")
                && !msg.contains("LS0tLS1CRUdJTg"),
            "{msg}"
        );
        assert!(
            msg.contains("https://github.com/acme/m.git//vpc?ref=main&sshkey=***"),
            "{msg}"
        );
        assert_eq!(
            display_source("git::ssh://git@github.com/acme/m.git?ref=v1"),
            "git::ssh://git@github.com/acme/m.git?ref=v1"
        );
    }

    const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      initContainers:\n        - name: init\n          image: busybox\n      containers:\n        - name: web\n          image: nginx:latest\n        - name: sidecar\n          image: envoyproxy/envoy:v1.30.1\n        - name: pinned\n          image: registry.example.com:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n        - name: port-only\n          image: registry.example.com:5000/app\n";

    #[test]
    fn mutable_images_in_protected_environments() {
        let prod = "env-gitops/clusters/prod-eu-west-1/apps/web/deploy.yaml";
        let f = run(&[(prod, DEPLOYMENT)]);
        assert_eq!(
            positions(&f, K8S_MUTABLE_IMAGE),
            vec![(10, 18), (13, 18), (19, 18)]
        );
        let msgs: Vec<_> = only(&f, K8S_MUTABLE_IMAGE)
            .into_iter()
            .map(|f| f.message)
            .collect();
        assert!(msgs[0].contains("`busybox` has no tag"), "{}", msgs[0]);
        assert!(msgs[1].contains("`nginx:latest` uses the mutable tag `latest`"));
        assert!(msgs[1].contains("`prod`"));
        // Not reported outside protected environments or outside any environment.
        let dev = "env-gitops/clusters/dev-eu-west-1/apps/web/deploy.yaml";
        assert!(only(&run(&[(dev, DEPLOYMENT)]), K8S_MUTABLE_IMAGE).is_empty());
        assert!(
            only(
                &run(&[("base/web/deploy.yaml", DEPLOYMENT)]),
                K8S_MUTABLE_IMAGE
            )
            .is_empty()
        );
    }

    #[test]
    fn mutable_images_at_any_depth_and_in_lists_and_json() {
        let prod = "env-gitops/clusters/prod/apps/jobs/";
        let cron = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: '@daily'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n            - {name: c, image: 'alpine:latest'}\n---\napiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Pod\n    metadata: {name: p}\n    spec:\n      ephemeralContainers:\n        - name: debug\n          image: busybox\n";
        let f = run(&[(&format!("{prod}cron.yaml"), cron)]);
        assert_eq!(positions(&f, K8S_MUTABLE_IMAGE), vec![(11, 32), (22, 18)]);
        let json = "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"p\"},\n \"spec\": {\"containers\": [{\"name\": \"a\", \"image\": \"redis\"}]}}\n";
        assert_eq!(
            positions(
                &run(&[(&format!("{prod}pod.json"), json)]),
                K8S_MUTABLE_IMAGE
            ),
            vec![(2, 49)]
        );
        // Not a Kubernetes object: no check.
        let other = "containers:\n  - image: nginx\n";
        assert!(run(&[(&format!("{prod}values.yaml"), other)]).is_empty());
    }

    #[test]
    fn kustomize_images_need_a_tag_or_digest() {
        let k = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../../base]\nimages:\n  - name: web\n    newTag: latest\n  - name: api\n    newName: registry.example.com/api\n  - name: worker\n    newTag: \"1.4.2\"\n  - name: cron\n    digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";
        let prod = "env-gitops/clusters/prod-eu-west-1/apps/web/kustomization.yaml";
        let f = run(&[(prod, k)]);
        assert_eq!(positions(&f, K8S_MUTABLE_IMAGE), vec![(6, 13), (7, 11)]);
        assert!(
            only(&f, K8S_MUTABLE_IMAGE)[1]
                .message
                .contains("neither newTag nor digest")
        );
        let dev = "env-gitops/clusters/dev/apps/web/kustomization.yaml";
        assert!(only(&run(&[(dev, k)]), K8S_MUTABLE_IMAGE).is_empty());
    }

    #[test]
    fn plaintext_secrets_are_reported_without_values() {
        let s = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\ndata:\n  password: WnE4dk4ycExyN3hUZTRLZA==\n  user: YXBw\n";
        let f = run(&[("apps/db/secret.yaml", s)]);
        let p = only(&f, K8S_PLAINTEXT_SECRET);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].line, p[0].col), (6, 1));
        assert!(p[0].message.contains("ExternalSecret"));
        assert!(!p[0].message.contains("WnE4dk4ycExyN3hUZTRLZA=="));
        assert_eq!(p[0].fingerprint.as_ref().unwrap().len(), 12);
        // Same values, same fingerprint; different values, different fingerprint.
        let again = only(&run(&[("other.yaml", s)]), K8S_PLAINTEXT_SECRET);
        assert_eq!(again[0].fingerprint, p[0].fingerprint);
        let changed = only(
            &run(&[("other.yaml", &s.replace("YXBw", "YWRtaW4="))]),
            K8S_PLAINTEXT_SECRET,
        );
        assert_ne!(changed[0].fingerprint, p[0].fingerprint);

        let string_data =
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData:\n  token: abc\n";
        assert_eq!(
            positions(&run(&[("s.yaml", string_data)]), K8S_PLAINTEXT_SECRET),
            vec![(4, 1)]
        );
        for quiet in [
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ntype: kubernetes.io/service-account-token\n",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata: {}\n",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata:\n  a: \"\"\n",
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: x}\nspec:\n  encryptedData:\n    a: AgBy3i4OJSWK\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  a: b\n",
        ] {
            assert!(
                only(&run(&[("q.yaml", quiet)]), K8S_PLAINTEXT_SECRET).is_empty(),
                "{quiet}"
            );
        }
    }

    #[test]
    fn forbidden_paths_size_and_binary() {
        let f = run(&[
            ("infra-live/accounts/prod/x/terraform.tfstate", "{}"),
            (
                "infra-live/accounts/prod/x/.terraform/modules/modules.json",
                "{}",
            ),
        ]);
        assert_eq!(only(&f, PATH_FORBIDDEN).len(), 2);
        assert!(only(&f, PATH_FORBIDDEN)[0].message.contains("**/"));

        let mut small = config();
        small.validate.max_file_bytes = 16;
        // Too large: reported, not parsed (the YAML is broken), but still scanned for secrets.
        let big = "a: [\npassword = \"Zq8vN2pLr7xTe4Kd\"\n";
        let f = run_with(&small, &[("big.yaml", big)]);
        assert_eq!(only(&f, FILE_TOO_LARGE).len(), 1);
        assert_eq!(only(&f, FILE_TOO_LARGE)[0].severity, Severity::Warning);
        assert!(only(&f, SYNTAX_YAML).is_empty());
        let secrets: Vec<_> = f
            .iter()
            .filter(|x| x.rule.starts_with(SECRET_PREFIX))
            .collect();
        assert_eq!(secrets.len(), 1, "{f:?}");
        assert_eq!(secrets[0].line, 2);

        let bin = "\0\u{1}password = \"Zq8vN2pLr7xTe4Kd\"\n";
        let f = run(&[("img.yaml", bin)]);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].rule.as_str(), f[0].severity),
            (FILE_BINARY, Severity::Info)
        );
    }

    #[test]
    fn secrets_are_reported_by_rule_with_fingerprint() {
        let f = run(&[(
            "app/config.env",
            "A=1\nGITHUB_TOKEN=ghp_R8x2Lq9ZkT4vB7nW1mY6cJ3pD5sF0hG2aE8u\n",
        )]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, "secret/github-token");
        assert_eq!((f[0].line, f[0].col), (2, 14));
        let fp = f[0].fingerprint.clone().unwrap();
        assert!(f[0].message.contains(&fp));
        assert!(!f[0].message.contains("ghp_"));
        // secret_allow_paths exclude a path from secret scanning only.
        let f = run(&[(
            "docs/fixtures/x.yaml",
            "token: ghp_R8x2Lq9ZkT4vB7nW1mY6cJ3pD5sF0hG2aE8u\nb: [\n",
        )]);
        assert_eq!(
            f.iter().map(|f| f.rule.as_str()).collect::<Vec<_>>(),
            vec![SYNTAX_YAML]
        );
    }

    #[test]
    fn output_is_sorted_deduplicated_and_deterministic() {
        let files = [
            ("z.yaml", "a: [\n"),
            ("a.json", "{"),
            (
                "m/secret.yaml",
                "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData:\n  password: Zq8vN2pLr7xTe4Kd\n",
            ),
        ];
        let first = run(&files);
        let mut reversed = files;
        reversed.reverse();
        assert_eq!(first, run(&reversed));
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(first, sorted);
        assert_eq!(
            first.iter().map(|f| f.file.as_str()).collect::<Vec<_>>(),
            vec!["a.json", "m/secret.yaml", "m/secret.yaml", "z.yaml"]
        );
        // validate_file agrees with validate_files for a single file.
        let rules = SecretRules::builtin();
        let cfg = config();
        let ctx = Context {
            config: &cfg,
            secrets: &rules,
            env_of: &env_of,
            in_live_stack: &in_live_stack,
        };
        let one = validate_file(
            &ctx,
            &SourceFile {
                path: files[2].0,
                content: files[2].1.as_bytes(),
            },
        );
        assert_eq!(one, only_file(&first, files[2].0));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Bad input gets findings, never a panic, whatever parser the extension selects.
        #[test]
        fn never_panics_on_arbitrary_files(
            text in "\\PC{0,300}",
            ext in proptest::sample::select(vec!["yaml", "json", "tf", "hcl", "tfvars", "txt"]),
        ) {
            let path = format!("{LIVE}/f.{ext}");
            let findings = run(&[(&path, &text), ("env-gitops/clusters/prod/apps/a/kustomization.yaml", &text)]);
            for f in &findings {
                proptest::prop_assert!(f.line >= 1 && f.col >= 1, "{:?}", f);
            }
        }
    }

    fn only_file(findings: &[Finding], file: &str) -> Vec<Finding> {
        findings
            .iter()
            .filter(|f| f.file == file)
            .cloned()
            .collect()
    }

    const CANARY_ID: &str = "AKIAQYLPMN5HHHFPZAM2";
    const CANARY_SECRET: &str = "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";
    const CANARY_PASSWORD: &str = "Zq8vN2pLr7xTe4Kd";

    /// The canary of DESIGN.md §8: planted credentials are found, and appear in no output.
    #[test]
    fn canary_credentials_never_appear_in_findings_or_sarif() {
        let yaml = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  aws_access_key_id: {CANARY_ID}\n  aws_secret_access_key: {CANARY_SECRET}\n  password: \"{CANARY_PASSWORD}\"\n"
        );
        let hcl = format!(
            "provider \"aws\" {{\n  region     = \"eu-west-1\"\n  access_key = \"{CANARY_ID}\"\n  secret_key = \"{CANARY_SECRET}\"\n}}\n\nresource \"aws_db_instance\" \"db\" {{\n  password = \"{CANARY_PASSWORD}\"\n}}\n"
        );
        let json = format!(
            "{{\n  \"AccessKeyId\": \"{CANARY_ID}\",\n  \"SecretAccessKey\": \"{CANARY_SECRET}\",\n  \"password\": \"{CANARY_PASSWORD}\"\n}}\n"
        );
        let files = [
            ("env-gitops/clusters/prod/apps/app/cm.yaml", yaml.as_str()),
            (
                "infra-live/accounts/prod/eu-west-1/network/main.tf",
                hcl.as_str(),
            ),
            (
                "infra-live/accounts/prod/eu-west-1/network/creds.json",
                json.as_str(),
            ),
        ];
        let findings = run(&files);

        for (path, _) in &files {
            let rules: Vec<&str> = findings
                .iter()
                .filter(|f| f.file == *path)
                .map(|f| f.rule.as_str())
                .collect();
            for want in [
                "secret/aws-access-key-id",
                "secret/aws-secret-access-key",
                "secret/generic-credential",
            ] {
                assert!(
                    rules.contains(&want),
                    "{want} missing for {path}: {rules:?}"
                );
            }
        }
        let sarif = sluice_report::to_sarif(&findings, "0.0.0-test").to_string();
        let debug = format!("{findings:?}");
        for canary in [CANARY_ID, CANARY_SECRET, CANARY_PASSWORD] {
            for f in &findings {
                assert!(!f.message.contains(canary), "message leaks: {}", f.message);
                assert!(!f.file.contains(canary));
                assert!(!f.fingerprint.as_deref().unwrap_or("").contains(canary));
            }
            assert!(!sarif.contains(canary), "SARIF leaks {canary}");
            assert!(!debug.contains(canary), "Debug leaks {canary}");
            // Escaped forms (JSON escapes `/`) must not leak either.
            assert!(!sarif.contains(&canary.replace('/', "\\/")));
        }
    }

    /// Real manifests and Terragrunt files from the corpus: no panic, and the kubeconform
    /// fixture with a duplicate key is a syntax error. (`invalid.yaml` there is schema-invalid,
    /// not YAML-invalid.)
    #[test]
    fn corpus_files_validate_without_panicking() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../../shared/corpus");
        if !std::path::Path::new(root).exists() {
            if std::env::var("SLUICE_REQUIRE_CORPUS").as_deref() == Ok("1") {
                panic!("corpus {root} is required (SLUICE_REQUIRE_CORPUS=1)");
            }
            eprintln!("notice: corpus {root} not available; test skipped");
            return;
        }
        let mut files = Vec::new();
        for sub in ["k8s", "terragrunt", "gatekeeper-library"] {
            collect(&std::path::Path::new(root).join(sub), root, &mut files);
        }
        let sources: Vec<SourceFile> = files
            .iter()
            .map(|(p, c)| SourceFile {
                path: p,
                content: c,
            })
            .collect();
        let rules = SecretRules::builtin();
        let cfg = config();
        let live = |p: &str| p.starts_with("terragrunt/");
        let ctx = Context {
            config: &cfg,
            secrets: &rules,
            env_of: &|_| Some("prod".into()),
            in_live_stack: &live,
        };
        let started = std::time::Instant::now();
        let findings = validate_files(&ctx, &sources);
        let mut by_rule = BTreeMap::new();
        for f in &findings {
            *by_rule.entry(f.rule.as_str()).or_insert(0) += 1;
        }
        eprintln!(
            "validated {} corpus files in {:?}: {by_rule:?}",
            sources.len(),
            started.elapsed()
        );
        for f in findings
            .iter()
            .filter(|f| f.rule.starts_with("syntax/") || f.rule.starts_with("secret/"))
        {
            eprintln!(
                "  {}:{}:{}: {} {}",
                f.file, f.line, f.col, f.rule, f.message
            );
        }
        let syntax_files: Vec<&str> = findings
            .iter()
            .filter(|f| f.rule == SYNTAX_YAML)
            .map(|f| f.file.as_str())
            .collect();
        assert!(
            syntax_files.contains(&"k8s/kubeconform-fixtures/fixtures/duplicate_property.yaml"),
            "the duplicate-key fixture is reported: {syntax_files:?}"
        );
    }

    fn collect(dir: &std::path::Path, root: &str, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                collect(&path, root, out);
            } else if let Ok(content) = std::fs::read(&path) {
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .trim_start_matches('/')
                    .to_string();
                out.push((rel, content));
            }
        }
    }
}
