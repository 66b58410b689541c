//! `sluice pr`: the PR report. It runs the stages that exist over a change (propose, affected
//! detection, validate) and records the others as not run, never invented, so a reviewer can
//! decide from the PR alone what the change touches, what blocks it and who must review it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use sluice_model::affected::{AffectedUnit, UnitStatus};
use sluice_model::change::ChangeId;
use sluice_model::config::{OrgConfig, RepoLocation};
use sluice_model::path;
use sluice_model::stage::{STAGES, Stage};

use crate::affected::{self, AffectedReport};
use crate::error::PipelineError;
use crate::validation::{self, ValidationReport};

pub const SCHEMA: &str = "sluice.pr/v1";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    Passed,
    Blocked,
    /// The stage is not part of this build yet or was not run for this change.
    NotRun,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    pub number: u8,
    pub stage: Stage,
    pub status: StageStatus,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnitChange {
    pub kind: &'static str,
    pub change_id: String,
    pub id: String,
    pub env: Option<String>,
    pub status: UnitStatus,
    pub owners: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrReport {
    pub schema: &'static str,
    pub org: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pr: Option<u64>,
    pub base: String,
    pub head: String,
    pub blocked: bool,
    pub changes: Vec<UnitChange>,
    /// Reviewers CODEOWNERS requires for the affected units.
    pub reviewers: Vec<String>,
    pub stages: Vec<StageResult>,
    pub affected: AffectedReport,
    pub validation: ValidationReport,
}

/// Run the available stages for `base..head` and assemble the report.
pub fn run(
    repo: &Path,
    base: &str,
    head: &str,
    pr: Option<u64>,
) -> Result<PrReport, PipelineError> {
    let analysis = affected::run(repo, base, head)?;
    let scope: Vec<String> = analysis
        .changes
        .iter()
        .filter(|c| c.status != sluice_model::affected::FileStatus::Deleted)
        .map(|c| c.path.clone())
        .collect();
    let validation = validation::validate_snapshot(
        &analysis.head.snapshot,
        Some(analysis.report.base.clone()),
        &scope,
        Ok((&analysis.head.config, &analysis.org)),
    );
    let config = &analysis.head.config;
    let owners_of = |id: &str, stack: bool| -> Vec<String> {
        if stack {
            analysis
                .org
                .stacks
                .iter()
                .find(|s| s.id == id)
                .map(|s| s.owners.clone())
        } else {
            analysis
                .org
                .apps
                .iter()
                .find(|a| a.id == id)
                .map(|a| a.owners.clone())
        }
        .unwrap_or_default()
    };
    let mut changes = Vec::new();
    for (kind, units) in [
        ("stack", &analysis.report.stacks),
        ("app", &analysis.report.apps),
    ] {
        for u in units.iter() {
            changes.push(UnitChange {
                kind,
                change_id: change_id(config, u, pr, &analysis.report.head).to_string(),
                id: u.id.clone(),
                env: u.env.clone(),
                status: u.status,
                owners: owners_of(&u.id, kind == "stack"),
            });
        }
    }
    let reviewers: BTreeSet<String> = changes
        .iter()
        .flat_map(|c| c.owners.iter().cloned())
        .collect();
    let stages = stage_results(&changes, &validation);
    Ok(PrReport {
        schema: SCHEMA,
        org: config.org.clone(),
        pr,
        base: analysis.report.base.clone(),
        head: analysis.report.head.clone(),
        blocked: !validation.passed,
        changes,
        reviewers: reviewers.into_iter().collect(),
        stages,
        affected: analysis.report,
        validation,
    })
}

/// The correlation id of one unit's change; the repo is the logical repo holding the unit.
pub fn change_id(config: &OrgConfig, unit: &AffectedUnit, pr: Option<u64>, head: &str) -> ChangeId {
    let repo = config
        .repos
        .iter()
        .find(|r| matches!(&r.location, RepoLocation::Path(p) if path::is_under(&unit.path, p)))
        .map_or_else(|| config.org.clone(), |r| r.name.clone());
    ChangeId {
        repo,
        pr,
        commit: head.to_string(),
        env: unit.env.clone().unwrap_or_else(|| "-".into()),
        unit: unit.id.clone(),
    }
}

fn stage_results(changes: &[UnitChange], validation: &ValidationReport) -> Vec<StageResult> {
    STAGES
        .iter()
        .map(|c| {
            let (status, detail) = match c.stage {
                Stage::Propose => (
                    StageStatus::Passed,
                    format!("{} unit(s) with correlation ids", changes.len()),
                ),
                Stage::Validate if validation.passed => (
                    StageStatus::Passed,
                    format!(
                        "{} file(s), {} warning(s)",
                        validation.summary.files, validation.summary.warnings
                    ),
                ),
                Stage::Validate => (
                    StageStatus::Blocked,
                    format!("{} blocking finding(s)", validation.summary.errors),
                ),
                _ => (
                    StageStatus::NotRun,
                    "not available in this build".to_string(),
                ),
            };
            StageResult {
                number: c.number,
                stage: c.stage,
                status,
                detail,
            }
        })
        .collect()
}

fn status_word(s: UnitStatus) -> &'static str {
    match s {
        UnitStatus::Added => "added",
        UnitStatus::Modified => "modified",
        UnitStatus::Deleted => "deleted",
        UnitStatus::Dependent => "dependent",
    }
}

/// The report as Markdown, for a PR comment or a terminal.
pub fn render_markdown(r: &PrReport) -> String {
    let mut out = String::new();
    let pr = r.pr.map(|n| format!(" PR #{n}")).unwrap_or_default();
    let verdict = if r.blocked {
        "BLOCKED"
    } else {
        "ready for the next stage"
    };
    let _ = writeln!(out, "## sluice: {}{pr} — {verdict}\n", r.org);
    let _ = writeln!(
        out,
        "`{}` → `{}`\n",
        affected::short(&r.base),
        affected::short(&r.head)
    );

    let _ = writeln!(out, "### Changes ({})\n", r.changes.len());
    if r.changes.is_empty() {
        out.push_str("No stack or app is affected.\n\n");
    } else {
        out.push_str("| unit | status | change id | owners |\n|---|---|---|---|\n");
        for c in &r.changes {
            let _ = writeln!(
                out,
                "| {} `{}` | {} | `{}` | {} |",
                c.kind,
                c.id,
                status_word(c.status),
                c.change_id,
                c.owners.join(" ")
            );
        }
        out.push('\n');
    }

    out.push_str("### Why\n\n");
    for u in r.affected.stacks.iter().chain(&r.affected.apps) {
        let reasons: Vec<String> = u
            .reasons
            .iter()
            .map(|x| {
                let kind = format!("{:?}", x.kind).to_lowercase();
                let what = x.path.as_deref().or(x.stack.as_deref()).unwrap_or("");
                match &x.via {
                    Some(via) => format!("{kind} `{what}` via `{via}`"),
                    None => format!("{kind} `{what}`"),
                }
            })
            .collect();
        let _ = writeln!(out, "- `{}`: {}", u.id, reasons.join("; "));
    }
    out.push('\n');

    out.push_str("### Stages\n\n| # | stage | status | detail |\n|---|---|---|---|\n");
    for s in &r.stages {
        let status = match s.status {
            StageStatus::Passed => "passed",
            StageStatus::Blocked => "**blocked**",
            StageStatus::NotRun => "not run",
        };
        let _ = writeln!(
            out,
            "| {} | {:?} | {status} | {} |",
            s.number, s.stage, s.detail
        );
    }
    out.push('\n');

    if !r.validation.findings.is_empty() {
        let _ = writeln!(
            out,
            "### Validation findings ({})\n",
            r.validation.findings.len()
        );
        for f in &r.validation.findings {
            let _ = writeln!(
                out,
                "- {} `{}` at `{}:{}:{}`: {}",
                f.severity.as_str(),
                f.rule,
                f.file,
                f.line,
                f.col,
                f.message
            );
        }
        out.push('\n');
    }
    if !r.reviewers.is_empty() {
        let _ = writeln!(
            out,
            "### Required reviewers (CODEOWNERS)\n\n{}\n",
            r.reviewers.join(", ")
        );
    }
    if !r.affected.warnings.is_empty() {
        let _ = writeln!(out, "### Warnings ({})\n", r.affected.warnings.len());
        for w in &r.affected.warnings {
            let _ = writeln!(out, "- `{}:{}`: {}", w.file, w.line, w.message);
        }
    }
    out
}
