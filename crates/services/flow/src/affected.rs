//! `sluice affected`: which stacks and apps a change between two revisions touches, and why.

use std::path::Path;

use serde::Serialize;
use sluice_git::git;
use sluice_model::affected::{self, AffectedUnit, ChangedFile, Options};
use sluice_org::discovery::Org;
use sluice_org::terragrunt::Warning;

use crate::error::PipelineError;
use crate::workspace::{self, Revision};

pub const SCHEMA: &str = "sluice.affected/v1";

#[derive(Debug, Clone, Serialize)]
pub struct ReportWarning {
    pub file: String,
    pub line: u32,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AffectedReport {
    pub schema: &'static str,
    pub base: String,
    pub head: String,
    pub stacks: Vec<AffectedUnit>,
    pub apps: Vec<AffectedUnit>,
    pub warnings: Vec<ReportWarning>,
}

/// The result of an affected run together with what later stages need from it.
pub struct Analysis {
    pub report: AffectedReport,
    pub head: Revision,
    pub org: Org,
    pub changes: Vec<ChangedFile>,
}

/// Compute the affected report for the change `base...head` (head against its merge base with
/// base) of the repository at `repo`.
pub fn run(repo: &Path, base: &str, head: &str) -> Result<Analysis, PipelineError> {
    let repository = workspace::open(repo)?;
    let (base_snap, head) = workspace::change(&repository, base, head)?;
    let changes = git::diff(&base_snap, &head.snapshot);
    // The base may predate sluice.yaml or carry an older layout: use its own config when it
    // has a valid one, the head's otherwise.
    let base_config =
        workspace::load_config(&base_snap, base).unwrap_or_else(|_| head.config.clone());

    let org = head.discover();
    let errors = org.graph_errors(&head.config);
    if !errors.is_empty() {
        let mut lines: Vec<String> = errors
            .cycles
            .iter()
            .map(|c| format!("dependency cycle: {}", c.join(" -> ")))
            .collect();
        lines.extend(errors.layer_violations.iter().cloned());
        return Err(PipelineError::Graph(lines.join("\n")));
    }

    let base_units = sluice_org::discovery::unit_ids(&base_config, base_snap.files());
    let stack_units = org.stack_units(&head.config);
    let dangling = org.dangling_dependencies();
    let app_units = org.app_units(&head.config);
    let stacks = affected::affected(
        &stack_units,
        &base_units.0,
        &changes,
        &Options {
            graph: Some(&org.graph),
            propagate_dependents: head.config.stacks.propagate_dependents,
            dangling: &dangling,
        },
    )
    .map_err(|e| PipelineError::Graph(e.to_string()))?;
    let apps = affected::affected(
        &app_units,
        &base_units.1,
        &changes,
        &Options {
            graph: None,
            propagate_dependents: false,
            dangling: &[],
        },
    )
    .map_err(|e| PipelineError::Graph(e.to_string()))?;

    let mut warnings: Vec<ReportWarning> = org.warnings.iter().map(report_warning).collect();
    warnings.extend(org.errors.iter().map(|e| ReportWarning {
        file: e.file.clone(),
        line: e.line,
        message: format!("cannot parse stack config: {}", e.message),
    }));
    let report = AffectedReport {
        schema: SCHEMA,
        base: base_snap.commit.to_string(),
        head: head.commit(),
        stacks,
        apps,
        warnings,
    };
    Ok(Analysis {
        report,
        head,
        org,
        changes,
    })
}

fn report_warning(w: &Warning) -> ReportWarning {
    ReportWarning {
        file: w.file.clone(),
        line: w.line,
        message: w.message.clone(),
    }
}

/// Human-readable rendering.
pub fn render_text(report: &AffectedReport) -> String {
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

pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}
