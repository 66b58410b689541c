//! The apps part of the PR report: render status, schema validation, the rendered diff,
//! policy (new and pre-existing), risk and approvals, as Markdown and as a SARIF run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sluice_flow::apps::{AppDecision, AppStatus, MAX_DIFF_LINES, RenderState, address};
use sluice_model::approval;
use sluice_model::baseline::Baseline;
use sluice_model::change::UnitKind;
use sluice_model::finding::Severity;
use sluice_model::record::Outcome;
use sluice_model::risk;
use sluice_render::diagnostic::Diagnostic;
use sluice_render::diff::{Change, RenderedDiff};

use crate::markdown::{collapse, docs_link, plural};
use crate::policy_sarif::{SarifUnit, push_policy_results, sarif_run};

/// An app that still waits for an approval is not "ready".
fn status_word(s: AppStatus, needs_approvals: bool) -> &'static str {
    match s {
        AppStatus::Ready if needs_approvals => "approvals required",
        AppStatus::Ready => "ready",
        AppStatus::NeedsApproval => "needs approval",
        AppStatus::Blocked => "blocked",
    }
}

fn render_state(s: &RenderState) -> String {
    match s {
        RenderState::Rendered {
            digest,
            objects,
            tool,
            ..
        } => {
            let short = digest.strip_prefix("sha256:").unwrap_or(digest);
            let short = &short[..short.len().min(12)];
            match tool {
                Some(t) => format!("{objects} objects, `sha256:{short}` ({t})"),
                None => format!("{objects} objects, `sha256:{short}`"),
            }
        }
        RenderState::Absent => "absent".into(),
        RenderState::Failed { error } => format!("**failed**: {}", md_inline(error)),
    }
}

/// Text safe inside a table cell or a list item.
fn md_inline(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn change_word(c: Change) -> &'static str {
    match c {
        Change::Added => "added",
        Change::Removed => "removed",
        Change::Changed => "changed",
    }
}

/// The apps part of the PR report in one piece: an `## Apps` heading and one section per app
/// ([`app_markdown`]).
pub fn render_markdown(apps: &[AppDecision], docs_url: &str) -> String {
    if apps.is_empty() {
        return String::new();
    }
    let mut out = String::from("## Apps\n\n");
    for a in apps {
        out.push_str(&app_markdown(a, docs_url));
    }
    out
}

/// One app's section, self-contained (every fence and `<details>` it opens is closed) so a
/// report may be cut before or after it: render status, validation, the rendered diff summary
/// (long unified diffs collapsed in `<details>`), policy results, risk and approvals.
pub fn app_markdown(a: &AppDecision, docs_url: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### App `{}` — {} — {}\n",
        a.app,
        a.risk.risk,
        status_word(a.status, !a.approvals.is_empty())
    );
    let env = match (&a.env, a.production) {
        (Some(e), true) => format!("environment `{e}` (protected)"),
        (Some(e), false) => format!("environment `{e}`"),
        (None, _) => "no environment".to_string(),
    };
    match &a.change_id {
        Some(id) => {
            let _ = writeln!(out, "Change `{id}` · {env}\n");
        }
        None => {
            let _ = writeln!(out, "{env}\n");
        }
    }
    for b in &a.blockers {
        let _ = writeln!(out, "- :no_entry: {}", md_inline(b));
    }
    if !a.blockers.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "| render | |\n|---|---|");
    let _ = writeln!(out, "| base | {} |", render_state(&a.render.base));
    let _ = writeln!(out, "| head | {} |", render_state(&a.render.head));
    if let Some(v) = &a.validation {
        let _ = writeln!(
            out,
            "| schema (Kubernetes {}) | {} valid, {} invalid; {}, {} ({} blocking, {} fixed) |",
            v.kubernetes_version,
            v.valid,
            v.invalid,
            plural(v.errors, "error"),
            plural(v.warnings, "warning"),
            v.blocking,
            v.fixed.len()
        );
    }
    out.push('\n');
    if let Some(v) = &a.validation {
        let line = |f: &Diagnostic| match f.baseline {
            Some(b) if b != Baseline::New => {
                format!("- ({}) {}", b.as_str(), md_inline(&f.to_string()))
            }
            _ => format!("- {}", md_inline(&f.to_string())),
        };
        let errors = v.findings.iter().filter(|f| f.severity == Severity::Error);
        let (new, old): (Vec<_>, Vec<_>) =
            errors.partition(|f| f.baseline != Some(Baseline::PreExisting));
        for f in new {
            let _ = writeln!(out, "{}", line(f));
        }
        if !old.is_empty() {
            let body: String = old.iter().map(|f| line(f) + "\n").collect();
            out.push_str(&collapse(
                &format!(
                    "{} pre-existing schema error(s), not introduced by this change",
                    old.len()
                ),
                &body,
                true,
            ));
        }
    }
    if a.render.base.failed() || a.render.head.failed() {
        let side = if a.render.head.failed() {
            "the head"
        } else {
            "the base"
        };
        let _ = writeln!(
            out,
            "**Rendered diff**: not computed ({side} does not render; no object is reported \
             added or removed until both sides render)\n"
        );
    } else {
        render_diff(&mut out, &a.diff);
    }
    render_policy(&mut out, a, docs_url);
    if a.risk.reasons.iter().any(|r| r.risk > risk::RiskLevel::R1) {
        let _ = writeln!(out, "**Risk {}**\n", a.risk.risk);
        for r in a
            .risk
            .reasons
            .iter()
            .filter(|r| r.risk > risk::RiskLevel::R1)
        {
            let via = if r.addresses.is_empty() {
                String::new()
            } else {
                format!(": {}", r.addresses.join(", "))
            };
            let _ = writeln!(out, "- {} {}{}", r.risk, r.reason, md_inline(&via));
        }
        out.push('\n');
    }
    if !a.approvals.is_empty() {
        let _ = writeln!(out, "**Required approvals ({})**\n", a.approvals.len());
        for r in &a.approvals {
            let why = match &r.source {
                approval::Source::Risk { risk, configured } => {
                    format!("risk {risk} (`approvals.{configured}`)")
                }
                approval::Source::Codeowners { pattern, line, .. } => {
                    format!("CODEOWNERS line {line} `{pattern}`")
                }
                approval::Source::Policy { rule, .. } => format!("policy `{rule}`"),
            };
            let _ = writeln!(
                out,
                "- {} of {} — {}",
                r.count,
                r.approvers.join(" or "),
                why
            );
        }
        out.push('\n');
    }
    out
}

/// App findings as one SARIF run: manifest policy results that are not a pass and schema
/// validation errors and warnings, each located at the app's folder (or the source file a
/// finding names).
pub fn apps_sarif(apps: &[AppDecision], tool_version: &str, docs_url: &str) -> serde_json::Value {
    use serde_json::json;
    let mut rules: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut results = Vec::new();
    for a in apps {
        if let Some(p) = &a.policy {
            let unit = SarifUnit {
                kind: UnitKind::App,
                name: &a.app,
                uri: &a.path,
                risk: a.risk.risk,
                decision_digest: &p.decision_digest,
                docs_url,
            };
            push_policy_results(&p.record, &unit, &mut rules, &mut results);
        }
        if let Some(v) = &a.validation {
            for f in &v.findings {
                rules.entry(f.rule.clone()).or_insert_with(|| {
                    json!({
                        "id": f.rule,
                        "shortDescription": {"text": format!("Kubernetes schema check {}", f.rule)},
                    })
                });
                let level = match f.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                    Severity::Info => "note",
                };
                let file = f.origin.as_deref().unwrap_or(f.file.as_str());
                let mut physical = json!({"artifactLocation": {"uri": file}});
                if f.line > 0 && f.origin.is_none() {
                    physical["region"] = json!({"startLine": f.line});
                }
                let mut logical = vec![json!({"name": a.app, "kind": "module"})];
                if let Some(o) = &f.object {
                    logical.push(json!({"name": address(o), "kind": "resource"}));
                }
                results.push(json!({
                    "ruleId": f.rule,
                    "level": level,
                    "message": {"text": f.to_string()},
                    "locations": [{
                        "physicalLocation": physical,
                        "logicalLocations": logical,
                    }],
                    "properties": {"app": a.app, "path": f.path},
                }));
            }
        }
    }
    sarif_run("sluice-apps", tool_version, rules, results)
}

fn render_diff(out: &mut String, d: &RenderedDiff) {
    let _ = writeln!(
        out,
        "**Rendered diff**: {} added, {} removed, {} changed, {} unchanged\n",
        d.added, d.removed, d.changed, d.unchanged
    );
    for i in &d.images {
        let _ = writeln!(
            out,
            "- image `{}` in {}: `{}` → `{}` ({})",
            i.container,
            address(&i.object),
            i.old.as_deref().unwrap_or("-"),
            i.new.as_deref().unwrap_or("-"),
            i.summary
        );
    }
    for r in &d.replicas {
        let n = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(
            out,
            "- replicas of {}: {} → {}",
            address(&r.object),
            n(r.old),
            n(r.new)
        );
    }
    for r in &d.resources {
        let _ = writeln!(
            out,
            "- {} of `{}` in {}: {} → {}",
            r.field,
            r.container,
            address(&r.object),
            r.old.as_deref().unwrap_or("-"),
            r.new.as_deref().unwrap_or("-")
        );
    }
    for o in &d.objects {
        if !o.secret_keys.is_empty() {
            let keys: Vec<String> = o
                .secret_keys
                .iter()
                .map(|k| format!("{} {}", k.key, change_word(k.change)))
                .collect();
            let _ = writeln!(
                out,
                "- Secret {}: {} (values not shown)",
                address(&o.identity),
                keys.join(", ")
            );
        }
    }
    if !(d.images.is_empty() && d.replicas.is_empty() && d.resources.is_empty())
        || d.objects.iter().any(|o| !o.secret_keys.is_empty())
    {
        out.push('\n');
    }
    for o in &d.objects {
        let lines: Vec<&str> = o.diff.lines().collect();
        let shown = if lines.len() > MAX_DIFF_LINES {
            let mut s = lines[..MAX_DIFF_LINES].join("\n");
            let _ = write!(
                s,
                "\n… {} more lines (sluice diff shows them all)",
                lines.len() - MAX_DIFF_LINES
            );
            s
        } else {
            o.diff.trim_end().to_string()
        };
        let _ = writeln!(
            out,
            "<details><summary>{} {} ({} lines)</summary>\n\n```diff\n{}\n```\n\n</details>\n",
            change_word(o.change),
            o.identity,
            lines.len(),
            shown
        );
    }
}

fn render_policy(out: &mut String, a: &AppDecision, docs_url: &str) {
    match (&a.policy, &a.policy_error) {
        (Some(p), _) => {
            let short = p
                .decision_digest
                .strip_prefix("sha256:")
                .unwrap_or(&p.decision_digest);
            let _ = writeln!(
                out,
                "**Policy**: {} (decision `sha256:{}`)\n",
                p.record.outcome.as_str(),
                &short[..short.len().min(12)]
            );
            let findings: Vec<_> = p
                .record
                .results
                .iter()
                .filter(|r| r.outcome != Outcome::Pass)
                .collect();
            if findings.is_empty() {
                let _ = writeln!(out, "{} rule(s) passed.\n", p.record.count(Outcome::Pass));
                return;
            }
            let header = "| outcome | rule | resource | message |\n|---|---|---|---|\n";
            let (mut new, mut old) = (String::new(), String::new());
            for (i, r) in findings.into_iter().enumerate() {
                let outcome = match (r.outcome, &r.exception) {
                    (Outcome::Excepted, Some(e)) => format!("excepted ({e})"),
                    (o, _) => o.as_str().to_string(),
                };
                let rule = match &r.docs {
                    Some(d) => format!("[`{}`]({})", r.rule, docs_link(docs_url, d)),
                    None => format!("`{}`", r.rule),
                };
                let class = a
                    .policy_baseline
                    .as_ref()
                    .and_then(|b| b.results.get(i))
                    .map_or(Baseline::New, |c| c.class);
                let _ = writeln!(
                    if class == Baseline::PreExisting {
                        &mut old
                    } else {
                        &mut new
                    },
                    "| {} | {} | {} | {} |",
                    outcome,
                    rule,
                    md_inline(r.resource.as_deref().unwrap_or("")),
                    md_inline(&r.message)
                );
            }
            if !new.is_empty() {
                let _ = write!(out, "{header}{new}");
            }
            if let Some(b) = &a.policy_baseline
                && b.base_evaluated
            {
                let pre = b.count(Baseline::PreExisting);
                let _ = writeln!(
                    out,
                    "\nAgainst the merge base: {} new, {} pre-existing{}, {} fixed.\n",
                    b.count(Baseline::New),
                    pre,
                    if pre > 0 {
                        " (not introduced by this change)"
                    } else {
                        ""
                    },
                    b.count(Baseline::Fixed)
                );
            }
            if !old.is_empty() {
                out.push_str(&collapse(
                    "pre-existing policy results",
                    &format!("{header}{old}"),
                    true,
                ));
            }
            let _ = writeln!(out, "\n{} rule(s) passed.\n", p.record.count(Outcome::Pass));
        }
        (None, Some(e)) => {
            let _ = writeln!(out, "**Policy**: {}\n", md_inline(e));
        }
        (None, None) => {}
    }
}
