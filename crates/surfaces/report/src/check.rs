//! The `sluice check` report as Markdown and SARIF.

use std::fmt::Write as _;

use serde_json::Value;
use sluice_flow::check::CheckReport;

use crate::markdown::{md_code, md_text};
use crate::policy_sarif::{decisions_sarif, sarif_log};
use crate::stack::{PlanNote, render_stack_markdown};

/// The report as Markdown (a PR comment or a terminal).
pub fn render_markdown(r: &CheckReport) -> String {
    let d = &r.decision;
    let mut out = format!(
        "## sluice check: {} — {}\n\n",
        md_code(&d.stack),
        d.status.as_str()
    );
    let _ = writeln!(
        out,
        "Environment {}{} · risk **{}** · policy **{}**\n",
        md_code(&d.env),
        if d.production { " (production)" } else { "" },
        d.risk.risk,
        d.policy.record.outcome.as_str()
    );
    let note = format!("plan JSON {}", r.plan_file);
    for block in render_stack_markdown(d, Some(PlanNote { source: &note })) {
        out.push_str(&block);
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(out, "**Warnings ({})**\n", r.warnings.len());
        for w in &r.warnings {
            let _ = writeln!(out, "- {}", md_text(w));
        }
        out.push('\n');
    }
    out
}

/// The policy findings as a SARIF log pointing at the plan JSON file.
pub fn render_sarif(r: &CheckReport, tool_version: &str) -> Value {
    sarif_log(vec![decisions_sarif(
        &[(&r.decision, r.plan_file.as_str())],
        tool_version,
        &r.docs_url,
    )])
}
