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
/// base) of the repository at `repo`. An inconsistent org (a dependency cycle, a layer-rule
/// violation) is an error.
pub fn run(repo: &Path, base: &str, head: &str) -> Result<Analysis, PipelineError> {
    let (analysis, org_errors) = run_despite_org_errors(repo, base, head)?;
    if org_errors.is_empty() {
        Ok(analysis)
    } else {
        Err(PipelineError::Graph(org_errors))
    }
}

/// [`run`], with an inconsistent org's errors (one line each: cycles, then layer-rule
/// violations) returned beside the analysis instead of failing, so that `sluice pr` can still
/// report on the change. Dependents propagate over a cycle's edges like any others.
pub fn run_despite_org_errors(
    repo: &Path,
    base: &str,
    head: &str,
) -> Result<(Analysis, Vec<String>), PipelineError> {
    let repository = workspace::open(repo)?;
    let (base_snap, head) = workspace::change(&repository, base, head)?;
    let changes = git::diff(&base_snap, &head.snapshot);
    // The base may predate sluice.yaml or carry an older layout: use its own config when it
    // has a valid one, the head's otherwise (saying so when the base's is invalid).
    let mut base_warnings = Vec::new();
    let base_config = match workspace::load_config(&base_snap, base) {
        Ok(config) => config,
        Err(e) => {
            base_warnings = base_config_fallback(e, base)?;
            head.config.clone()
        }
    };

    let org = head.discover();
    let errors = org.graph_errors(&head.config);
    let mut org_errors: Vec<String> = errors
        .cycles
        .iter()
        .map(|c| format!("dependency cycle: {}", c.join(" -> ")))
        .collect();
    org_errors.extend(errors.layer_violations.iter().cloned());

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
    )?;
    let apps = affected::affected(
        &app_units,
        &base_units.1,
        &changes,
        &Options {
            graph: None,
            propagate_dependents: false,
            dangling: &[],
        },
    )?;

    let mut warnings: Vec<ReportWarning> = base_warnings;
    warnings.extend(org.warnings.iter().map(report_warning));
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
    Ok((
        Analysis {
            report,
            head,
            org,
            changes,
        },
        org_errors,
    ))
}

/// When the base's own `sluice.yaml` cannot be used, the head's stands in for it. A base that
/// predates the file falls back quietly (there is nothing else to read); an invalid one falls
/// back with a warning per error, because the base's units are then found under the head's
/// layout and the reader must know. Anything else (an unreadable tree) is an error.
fn base_config_fallback(
    err: PipelineError,
    base: &str,
) -> Result<Vec<ReportWarning>, PipelineError> {
    match err {
        PipelineError::MissingConfig { .. } => Ok(Vec::new()),
        PipelineError::Config(errors) => Ok(errors
            .into_iter()
            .map(|e| ReportWarning {
                file: e.file,
                line: e.line,
                message: format!(
                    "invalid at base {base} ({}); the base's units are read with the head's \
                     configuration",
                    e.message
                ),
            })
            .collect()),
        other => Err(other),
    }
}

fn report_warning(w: &Warning) -> ReportWarning {
    ReportWarning {
        file: w.file.clone(),
        line: w.line,
        message: w.message.clone(),
    }
}

pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

#[cfg(test)]
mod base_config_tests {
    use super::*;
    use sluice_org::config::ConfigError;

    #[test]
    fn an_invalid_base_config_is_a_warning_and_other_failures_are_errors() {
        let invalid = PipelineError::Config(vec![ConfigError {
            file: "sluice.yaml".into(),
            line: 7,
            col: 3,
            message: "unknown field `stackz`".into(),
            hint: None,
        }]);
        let warnings = base_config_fallback(invalid, "main").unwrap();
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            (warnings[0].file.as_str(), warnings[0].line),
            ("sluice.yaml", 7)
        );
        assert!(
            warnings[0]
                .message
                .starts_with("invalid at base main (unknown field `stackz`)"),
            "{}",
            warnings[0].message
        );
        let missing = PipelineError::MissingConfig {
            file: "sluice.yaml".into(),
            rev: "main".into(),
        };
        assert!(base_config_fallback(missing, "main").unwrap().is_empty());
        let other = PipelineError::Graph(vec!["cycle".into()]);
        assert!(matches!(
            base_config_fallback(other, "main"),
            Err(PipelineError::Graph(_))
        ));
    }
}
