//! Plain-text reports for a terminal: affected units and validation findings.

use sluice_flow::affected::{AffectedReport, short};
use sluice_flow::validation::ValidationReport;

/// Human-readable rendering.
pub fn affected(report: &AffectedReport) -> String {
    let mut out = format!(
        "affected {}..{}\n",
        short(&report.base),
        short(&report.head)
    );
    for (title, units) in [("stacks", &report.stacks), ("apps", &report.apps)] {
        out.push_str(&format!("\n{title} ({}):\n", units.len()));
        for u in units.iter() {
            out.push_str(&format!(
                "  {:<10} {}\n",
                format!("{:?}", u.status).to_lowercase(),
                u.id
            ));
            for r in &u.reasons {
                let kind = format!("{:?}", r.kind).to_lowercase();
                let what = r.path.as_deref().or(r.stack.as_deref()).unwrap_or("");
                match &r.via {
                    Some(via) => {
                        out.push_str(&format!("             {kind}: {what} (via {via})\n"))
                    }
                    None => out.push_str(&format!("             {kind}: {what}\n")),
                }
            }
        }
    }
    if !report.warnings.is_empty() {
        out.push_str(&format!("\nwarnings ({}):\n", report.warnings.len()));
        for w in &report.warnings {
            out.push_str(&format!("  {}:{}: {}\n", w.file, w.line, w.message));
        }
    }
    out
}

/// Human-readable rendering: one line per finding, then a summary.
pub fn validation(report: &ValidationReport) -> String {
    let mut out = String::new();
    for f in &report.findings {
        let class = f
            .baseline
            .map(|b| format!(" ({})", b.as_str()))
            .unwrap_or_default();
        out.push_str(&format!(
            "{}:{}:{}: {}{class} [{}] {}\n",
            f.file,
            f.line,
            f.col,
            f.severity.as_str(),
            f.rule,
            f.message
        ));
    }
    if let Some(b) = &report.baseline {
        out.push_str(&format!(
            "against the merge base {}: {} new, {} pre-existing ({} still blocking, {} ignored), {} fixed\n",
            &b.base[..b.base.len().min(7)],
            b.new,
            b.preexisting,
            b.preexisting_blocking,
            b.ignored,
            b.fixed.len()
        ));
    }
    out.push_str(&format!(
        "{} file(s) checked: {} error(s), {} warning(s), {} note(s) — {}\n",
        report.summary.files,
        report.summary.errors,
        report.summary.warnings,
        report.summary.info,
        if report.passed { "passed" } else { "blocked" }
    ));
    out
}
