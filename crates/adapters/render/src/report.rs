//! Reports of `sluice render` and `sluice diff`: JSON documents with a schema name, and text
//! for a terminal or a PR comment. Both show Secrets redacted.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use crate::diagnostic::Diagnostic;
use crate::diff::{Change, RenderedDiff};
use crate::emit;
use crate::object::{Identity, Object, Source};
use crate::redact::redacted;
use crate::render::Rendered;
use crate::schema::Validation;

/// One object as reported (values of Secrets redacted).
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    pub identity: Identity,
    pub api_version: String,
    pub source: Source,
    pub object: Value,
}

pub fn object_reports(objects: &[Object]) -> Vec<ObjectReport> {
    objects
        .iter()
        .map(|o| ObjectReport {
            identity: o.identity.clone(),
            api_version: o.api_version.clone(),
            source: o.source.clone(),
            object: redacted(o),
        })
        .collect()
}

/// `sluice render --format json`.
pub fn render_json(r: &Rendered, validation: Option<&Validation>) -> Value {
    json!({
        "schema": "sluice.render/v1",
        "app": r.app,
        "commit": r.commit,
        "tool": r.tool,
        "namespace": r.namespace,
        "digest": r.digest,
        "objects": object_reports(&r.objects),
        "validation": validation,
        "notes": r.notes,
    })
}

/// `sluice render --format yaml`: the rendered stream itself (redacted).
pub fn render_yaml(r: &Rendered) -> String {
    let values: Vec<Value> = r.objects.iter().map(redacted).collect();
    emit::to_yaml_stream(&values)
}

fn tool_text(r: &Rendered) -> String {
    match &r.tool {
        Some(t) => format!("{} {}", t.name, t.version),
        None => "plain YAML".into(),
    }
}

/// `sluice render --format text`.
pub fn render_text(r: &Rendered, validation: Option<&Validation>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "app {} ({}) at {} rendered with {}",
        r.app.id,
        r.app.path,
        short(&r.commit),
        tool_text(r)
    );
    let _ = writeln!(
        out,
        "{} objects, destination namespace {}, digest {}",
        r.objects.len(),
        r.namespace,
        r.digest
    );
    for o in &r.objects {
        let from = match &o.source.origin {
            Some(origin) => origin.clone(),
            None => o.source.to_string(),
        };
        let _ = writeln!(out, "  {:<24} {}  <- {from}", o.api_version, o.identity);
    }
    if let Some(v) = validation {
        out.push_str(&validation_text(v));
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

pub fn validation_text(v: &Validation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "schema validation (Kubernetes {}{}): {} valid, {} invalid, {} without schema; {} errors, {} warnings",
        v.kubernetes_version,
        if v.strict { ", strict" } else { "" },
        v.valid,
        v.invalid,
        v.no_schema,
        v.errors(),
        v.warnings()
    );
    for f in &v.findings {
        let _ = writeln!(out, "  {f}");
    }
    out
}

pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// One side of a diff.
#[derive(Debug, Clone, Serialize)]
pub struct DiffSide {
    pub rev: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// `None` when the app does not exist at this revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub objects: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<crate::tool::Tool>,
}

impl DiffSide {
    pub fn of(rev: &str, r: Option<&Rendered>) -> Self {
        DiffSide {
            rev: rev.to_string(),
            commit: r.map(|r| r.commit.clone()),
            digest: r.map(|r| r.digest.clone()),
            objects: r.map_or(0, |r| r.objects.len()),
            tool: r.and_then(|r| r.tool.clone()),
        }
    }
}

/// `sluice diff --format json`.
pub fn diff_json(
    app: &str,
    base: &DiffSide,
    head: &DiffSide,
    d: &RenderedDiff,
    notes: &[Diagnostic],
) -> Value {
    json!({
        "schema": "sluice.rendered-diff/v1",
        "app": app,
        "base": base,
        "head": head,
        "diff": d,
        "notes": notes,
    })
}

fn side_text(s: &DiffSide) -> String {
    match (&s.commit, &s.digest) {
        (Some(c), Some(d)) => format!("{} ({}, {} objects, {d})", s.rev, short(c), s.objects),
        _ => format!("{} (app absent)", s.rev),
    }
}

/// `sluice diff --format text`: summaries first, then every object's unified diff.
pub fn diff_text(app: &str, base: &DiffSide, head: &DiffSide, d: &RenderedDiff) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "app {app}");
    let _ = writeln!(out, "base {}", side_text(base));
    let _ = writeln!(out, "head {}", side_text(head));
    let _ = writeln!(
        out,
        "{} changed, {} added, {} removed, {} unchanged",
        d.changed, d.added, d.removed, d.unchanged
    );
    if d.is_empty() {
        out.push_str("no rendered change\n");
        return out;
    }
    if !d.images.is_empty() {
        out.push_str("\nimages:\n");
        for i in &d.images {
            let _ = writeln!(
                out,
                "  {} container {}: {}",
                i.object, i.container, i.summary
            );
        }
    }
    if !d.replicas.is_empty() {
        out.push_str("\nreplicas:\n");
        for r in &d.replicas {
            let _ = writeln!(out, "  {}: {} → {}", r.object, opt(r.old), opt(r.new));
        }
    }
    if !d.resources.is_empty() {
        out.push_str("\nresources:\n");
        for r in &d.resources {
            let _ = writeln!(
                out,
                "  {} container {} {}: {} → {}",
                r.object,
                r.container,
                r.field,
                r.old.as_deref().unwrap_or("(unset)"),
                r.new.as_deref().unwrap_or("(unset)")
            );
        }
    }
    for o in &d.objects {
        let mark = match o.change {
            Change::Added => "+",
            Change::Removed => "-",
            Change::Changed => "~",
        };
        let _ = writeln!(out, "\n{mark} {} {}", o.api_version, o.identity);
        for k in &o.secret_keys {
            let _ = writeln!(
                out,
                "  secret key {} {:?} (value not shown)",
                k.key, k.change
            );
        }
        out.push_str(&o.diff);
    }
    out
}

fn opt(v: Option<i64>) -> String {
    v.map_or("(unset)".into(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::assemble;
    use crate::manifest::{Limits, parse_documents};
    use crate::render::AppSpec;
    use crate::schema::{Options, SchemaSet, validate};
    use sluice_model::kustomize::AppKind;

    fn rendered(text: &str, commit: &str) -> Rendered {
        let file = "gitops/clusters/prod-eu/apps/pay/app.yaml";
        let docs = parse_documents(file, text.as_bytes(), &Limits::default(), true).unwrap();
        let mut schemas = SchemaSet::new();
        let a = assemble(docs, Some("pay"), &mut schemas).unwrap();
        Rendered {
            app: AppSpec {
                id: "prod-eu/pay".into(),
                path: "gitops/clusters/prod-eu/apps/pay".into(),
                kind: AppKind::Plain,
                env: Some("prod".into()),
                cluster: Some("prod-eu".into()),
                name: "pay".into(),
            },
            commit: commit.into(),
            tool: None,
            namespace: "pay".into(),
            digest: a.digest,
            objects: a.objects,
            notes: a.notes,
            schemas,
        }
    }

    const BASE: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: pay}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: pay}}\n  template:\n    metadata: {labels: {app: pay}}\n    spec:\n      containers:\n      - name: pay\n        image: ghcr.io/acme/pay:v1.4.2\n        resources:\n          requests: {cpu: 250m, memory: 256Mi}\n          limits: {memory: 512Mi}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: pay-db}\nstringData: {password: canary-base-0001}\n";

    #[test]
    fn text_reports() {
        let base = rendered(BASE, "1111111111111111111111111111111111111111");
        let head_text = BASE
            .replace("replicas: 2", "replicas: 3")
            .replace("v1.4.2", "v1.5.0")
            .replace("memory: 512Mi", "memory: 1Gi")
            .replace("canary-base-0001", "canary-head-0002")
            + "---\napiVersion: v1\nkind: Service\nmetadata: {name: pay}\nspec:\n  ports: [{port: http}]\n";
        let head = rendered(&head_text, "2222222222222222222222222222222222222222");
        let v = validate(&head.objects, &head.schemas, Options::default());
        let render = render_text(&head, Some(&v));
        let d = crate::diff::diff(&base.objects, &head.objects);
        let diff = diff_text(
            "prod-eu/pay",
            &DiffSide::of("main", Some(&base)),
            &DiffSide::of("pr/7", Some(&head)),
            &d,
        );
        for out in [&render, &diff] {
            assert!(!out.contains("canary-"), "{out}");
        }
        insta::assert_snapshot!("render_text", render);
        insta::assert_snapshot!("diff_text", diff);
    }
}
