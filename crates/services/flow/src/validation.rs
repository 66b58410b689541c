//! `sluice validate` (stage 2) over a repository: picks the files in scope (those a change
//! added or modified, or every file), reads them from git, runs the checks of [`validate`]
//! and adds what only the whole org can tell (configuration errors, dependency cycles, layer
//! violations, unresolvable paths, symlinks leaving the repository).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;
use sluice_git::git::{self, Snapshot};
use sluice_model::affected::FileStatus;
use sluice_model::config::OrgConfig;
use sluice_model::finding::{self, Finding, Severity};
use sluice_model::path;
use sluice_org::config::{self as org_config, ConfigError};
use sluice_org::discovery::Org;

use crate::error::PipelineError;
use crate::workspace;
use sluice_checks::secrets::SecretRules;
use sluice_checks::validate::{self, Context, SourceFile};

pub const SCHEMA: &str = "sluice.validate/v1";

/// Which files are validated.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Files added or modified between two revisions (validated as they are at `head`).
    Change { base: String, head: String },
    /// Every file at a revision.
    All { rev: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub files: usize,
    pub errors: usize,
    pub warnings: usize,
    pub info: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValidationReport {
    pub schema: &'static str,
    pub rev: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    pub passed: bool,
    pub summary: Summary,
    pub findings: Vec<Finding>,
    /// The configuration itself is invalid (exit code 2 rather than 1).
    #[serde(skip)]
    pub config_invalid: bool,
    /// How the findings relate to the change, when the merge base was validated too
    /// ([`apply_baseline`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineSummary>,
}

pub fn run(repo: &Path, scope: &Scope) -> Result<ValidationReport, PipelineError> {
    let repository = workspace::open(repo)?;
    let (head_rev, base, head) = match scope {
        Scope::Change { base, head } => {
            let (base, head_snap) = workspace::change_snapshots(&repository, base, head)?;
            (head.as_str(), Some(base), head_snap)
        }
        Scope::All { rev } => (rev.as_str(), None, workspace::snapshot(&repository, rev)?),
    };
    let in_scope: Vec<String> = match &base {
        Some(base) => git::diff(base, &head)
            .into_iter()
            .filter(|c| c.status != FileStatus::Deleted)
            .map(|c| c.path)
            .collect(),
        None => head.entries().keys().cloned().collect(),
    };
    let base_commit = base.as_ref().map(|b| b.commit.to_string());
    Ok(match workspace::load_config(&head, head_rev) {
        Ok(config) => {
            let org = sluice_org::discovery::discover(&config, &head, head.files());
            let mut report = validate_snapshot(&head, base_commit, &in_scope, Ok((&config, &org)));
            add_section_findings(&mut report, section_findings(&head, &config));
            if let Some(base) = &base {
                apply_baseline(&mut report, base, &head, &in_scope, (&config, &org));
            }
            report
        }
        Err(e) => validate_snapshot(&head, base_commit, &in_scope, Err(e)),
    })
}

/// Validate the files `in_scope` of `head` (paths need not be regular files: symlinks and
/// submodules in scope are checked for what they are).
pub fn validate_snapshot(
    head: &Snapshot,
    base: Option<String>,
    in_scope: &[String],
    org: Result<(&OrgConfig, &Org), PipelineError>,
) -> ValidationReport {
    let mut findings = Vec::new();
    let fallback;
    let (config, org, config_invalid) = match org {
        Ok((c, o)) => (c, Some(o), false),
        Err(e) => {
            findings.extend(config_findings(&e));
            fallback = fallback_config();
            (&fallback, None, true)
        }
    };
    let secrets = secret_rules(config, head, &mut findings);
    let units = UnitIndex::new(org);
    let env_of = |p: &str| units.env_of(p);
    let in_live_stack = |p: &str| units.in_stack(p);
    let ctx = Context {
        config,
        secrets: &secrets,
        env_of: &env_of,
        in_live_stack: &in_live_stack,
    };

    let regular: Vec<&str> = in_scope
        .iter()
        .map(String::as_str)
        .filter(|p| {
            head.entry(p)
                .is_some_and(|e| e.kind == git::EntryType::File)
        })
        .collect();
    let contents: Vec<(&str, Arc<[u8]>)> = regular
        .par_iter()
        .filter_map(|p| head.read_file(p).ok().flatten().map(|c| (*p, c)))
        .collect();
    let files: Vec<SourceFile<'_>> = contents
        .iter()
        .map(|(p, c)| SourceFile {
            path: p,
            content: c,
        })
        .collect();
    findings.extend(validate::validate_files(&ctx, &files));

    let scope: std::collections::HashSet<&str> = in_scope.iter().map(String::as_str).collect();
    if let Ok(links) = head.escaping_symlinks() {
        for (link, target) in links
            .into_iter()
            .filter(|(l, _)| scope.contains(l.as_str()))
        {
            findings.push(Finding::new(
                validate::REPO_SYMLINK_ESCAPE,
                Severity::Error,
                &link,
                1,
                1,
                format!(
                    "symlink points outside the repository (`{target}`); sluice never follows it"
                ),
            ));
        }
    }
    if let Some(org) = org {
        findings.extend(org_findings(config, org, &scope));
    }
    findings.sort();
    findings.dedup();
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    ValidationReport {
        schema: SCHEMA,
        rev: head.commit.to_string(),
        base,
        passed: !finding::blocking(&findings),
        summary: Summary {
            files: in_scope.len(),
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
            info: count(Severity::Info),
        },
        findings,
        config_invalid,
        baseline: None,
    }
}

/// Where a field of `sluice.yaml` is, read from the revision's copy: problems found by the
/// readers of later sections (which see the section as JSON and name a dotted field path) are
/// reported at the field's line and column, like the loader's own errors.
struct ConfigPositions(Option<sluice_model::yaml::Node>);

impl ConfigPositions {
    fn of(snapshot: &Snapshot) -> Self {
        let root = snapshot
            .read_file(org_config::FILE_NAME)
            .ok()
            .flatten()
            .and_then(|b| sluice_model::yaml::parse_one(&String::from_utf8_lossy(&b)).ok());
        ConfigPositions(root)
    }

    /// Line and column of `field` (`plan.redact.secret_names[1]`), or of the deepest part of
    /// it the file has.
    fn at(&self, field: &str) -> (u32, u32) {
        self.0.as_ref().map_or((1, 1), |root| {
            let n = root.at_field(field);
            (n.line, n.col)
        })
    }

    fn finding(&self, severity: Severity, field: &str, message: String) -> Finding {
        let (line, col) = self.at(field);
        Finding::new(
            validate::CONFIG_SCHEMA,
            severity,
            org_config::FILE_NAME,
            line,
            col,
            message,
        )
    }
}

/// What `sluice pr` would stop on, or warn about, in the parts of the configuration read after
/// `sluice.yaml` loads: the `plan` section, the `policy` section, its bundles and the exception
/// files. Errors come first in the pair, warnings second.
pub fn section_findings(head: &Snapshot, config: &OrgConfig) -> (Vec<Finding>, Vec<Finding>) {
    let at = ConfigPositions::of(head);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if let Err(es) = sluice_iac::config::PlanConfig::from_section(config.sections.get("plan")) {
        errors.extend(es.into_iter().map(|e| {
            let message = format!("`{}`: {}", e.field, e.message);
            at.finding(Severity::Error, &e.field, message)
        }));
    }
    match sluice_policy::from_revision(head, config, sluice_policy::now()) {
        Ok(setup) => {
            for n in &setup.notices {
                warnings.push(Finding::new(
                    validate::CONFIG_SCHEMA,
                    Severity::Warning,
                    &n.file,
                    n.line.max(1),
                    1,
                    n.message.clone(),
                ));
            }
            for w in &setup.warnings {
                warnings.push(Finding::new(
                    validate::CONFIG_SCHEMA,
                    Severity::Warning,
                    &w.file,
                    w.line.max(1),
                    w.col.max(1),
                    w.message.clone(),
                ));
            }
        }
        Err(e) => errors.extend(policy_error_findings(&at, e)),
    }
    (errors, warnings)
}

/// A policy setup error at the place it names: a `policy.*` field of `sluice.yaml`, a Rego
/// module's line, an exception file's line, or the bundle or file that could not be read.
fn policy_error_findings(at: &ConfigPositions, e: sluice_policy::PolicyError) -> Vec<Finding> {
    use sluice_policy::PolicyError as P;
    let in_file = |file: &str, line: u32, col: u32, message: String| {
        Finding::new(
            validate::CONFIG_SCHEMA,
            Severity::Error,
            file,
            line.max(1),
            col.max(1),
            message,
        )
    };
    match e {
        P::Config { field, message } => {
            vec![at.finding(Severity::Error, &field, format!("`{field}`: {message}"))]
        }
        P::Rego {
            file,
            line,
            col,
            message,
        } => vec![in_file(&file, line, col, message)],
        P::Exceptions(errors) => errors
            .into_iter()
            .map(|l| in_file(&l.file, l.line, l.col, l.message))
            .collect(),
        P::Bundle { bundle, message } | P::Compile { bundle, message } => {
            let (line, col) = at.at("policy.bundles");
            vec![in_file(
                org_config::FILE_NAME,
                line,
                col,
                format!("policy bundle `{bundle}`: {message}"),
            )]
        }
        P::Data { file, message } => vec![in_file(&file, 1, 1, message)],
        P::Io { path, message } => vec![in_file(&path, 1, 1, message)],
        P::Input(message) => vec![at.finding(Severity::Error, "policy", message)],
    }
}

/// Add [`section_findings`] to a report: an error there stops `sluice pr` as an invalid
/// configuration does (exit 2), so it makes the report's configuration invalid too, and no
/// baseline excuses it.
pub fn add_section_findings(
    report: &mut ValidationReport,
    (errors, warnings): (Vec<Finding>, Vec<Finding>),
) {
    if !errors.is_empty() {
        report.config_invalid = true;
        report.passed = false;
    }
    report.findings.extend(errors);
    report.findings.extend(warnings);
    report.findings.sort();
    report.findings.dedup();
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    report.summary.errors = count(Severity::Error);
    report.summary.warnings = count(Severity::Warning);
}

fn config_findings(e: &PipelineError) -> Vec<Finding> {
    let one = |c: &ConfigError| {
        let message = match &c.hint {
            Some(h) => format!("{} (hint: {h})", c.message),
            None => c.message.clone(),
        };
        Finding::new(
            validate::CONFIG_SCHEMA,
            Severity::Error,
            &c.file,
            c.line,
            c.col,
            message,
        )
    };
    match e {
        PipelineError::Config(errors) => errors.iter().map(one).collect(),
        other => vec![Finding::new(
            validate::CONFIG_SCHEMA,
            Severity::Error,
            org_config::FILE_NAME,
            1,
            1,
            other.to_string(),
        )],
    }
}

/// Used when `sluice.yaml` is invalid, so that file-level checks (syntax, secrets, forbidden
/// paths) still run. It discovers nothing and protects nothing.
fn fallback_config() -> OrgConfig {
    const MINIMAL: &str = "version: 1\norg: unknown\nenvironments: { default: {} }\nstacks: { root: .sluice-none, layout: \"{env}\" }\napps: { root: .sluice-none, layout: \"{env}\" }\n";
    org_config::load("built-in", MINIMAL).expect("the built-in fallback configuration is valid")
}

/// sluice's own rules and/or the repository's gitleaks-format rule file.
fn secret_rules(config: &OrgConfig, head: &Snapshot, findings: &mut Vec<Finding>) -> SecretRules {
    let mut rules = if config.validate.default_secret_rules {
        SecretRules::builtin()
    } else {
        SecretRules::empty()
    };
    let Some(file) = &config.validate.secret_rules else {
        return rules;
    };
    match head.read_file(file).ok().flatten() {
        None => findings.push(ConfigPositions::of(head).finding(
            Severity::Error,
            "validate.secrets.rules",
            format!("validate.secrets.rules: `{file}` does not exist at this revision"),
        )),
        Some(bytes) => match SecretRules::from_toml(&String::from_utf8_lossy(&bytes), file) {
            Ok((custom, warnings)) => {
                for w in warnings {
                    findings.push(Finding::new(
                        validate::CONFIG_SCHEMA,
                        Severity::Warning,
                        file,
                        1,
                        1,
                        w,
                    ));
                }
                rules = rules.merge(custom);
            }
            Err(e) => findings.push(Finding::new(
                validate::CONFIG_SCHEMA,
                Severity::Error,
                file,
                e.line,
                e.col,
                e.message.clone(),
            )),
        },
    }
    rules
}

/// Stack and app directories by path, to answer "which unit holds this file" by walking up.
struct UnitIndex {
    stacks: HashMap<String, String>,
    apps: HashMap<String, Option<String>>,
}

impl UnitIndex {
    fn new(org: Option<&Org>) -> Self {
        let mut stacks = HashMap::new();
        let mut apps = HashMap::new();
        if let Some(org) = org {
            for s in &org.stacks {
                stacks.insert(s.path.clone(), s.env.clone());
            }
            for a in &org.apps {
                apps.insert(a.path.clone(), a.env.clone());
            }
        }
        UnitIndex { stacks, apps }
    }

    fn env_of(&self, file: &str) -> Option<String> {
        path::ancestors(file).find_map(|d| {
            self.stacks
                .get(d)
                .cloned()
                .or_else(|| self.apps.get(d).cloned().flatten())
        })
    }

    fn in_stack(&self, file: &str) -> bool {
        path::ancestors(file).any(|d| self.stacks.contains_key(d))
    }
}

/// Findings only the whole org can show. Graph errors are always reported (they block every
/// change); warnings only for files in scope.
fn org_findings(
    config: &OrgConfig,
    org: &Org,
    scope: &std::collections::HashSet<&str>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let errors = org.graph_errors(config);
    let config_file_of = |id: &str| {
        org.stacks
            .iter()
            .find(|s| s.id == id)
            .map(|s| format!("{}/terragrunt.hcl", s.path))
            .unwrap_or_else(|| org_config::FILE_NAME.to_string())
    };
    // At the `dependency` block that makes the edge when a Terragrunt config declares it, at
    // the `depends_on` entry when `sluice.yaml` does, else at the stack's config.
    let at = |from: &str, to: &str| -> (String, u32) {
        org.dependency_position(from, to)
            .map(|(file, line)| (file.to_string(), line.max(1)))
            .or_else(|| {
                config
                    .stacks
                    .depends_on
                    .iter()
                    .find(|d| d.stack == from && d.on.iter().any(|o| o == to))
                    .map(|d| (org_config::FILE_NAME.to_string(), d.line.max(1)))
            })
            .unwrap_or_else(|| (config_file_of(from), 1))
    };
    for cycle in &errors.cycles {
        let (file, line) = at(&cycle[0], cycle.get(1).unwrap_or(&cycle[0]));
        out.push(Finding::new(
            validate::GRAPH_CYCLE,
            Severity::Error,
            &file,
            line,
            1,
            format!("dependency cycle: {}", cycle.join(" -> ")),
        ));
    }
    for v in org.layer_violations(config) {
        let (file, line) = at(&v.stack, &v.upstream);
        out.push(Finding::new(
            validate::GRAPH_LAYER,
            Severity::Error,
            &file,
            line,
            1,
            v.to_string(),
        ));
    }
    // An app whose kustomization or chart names a file that is not there cannot render:
    // always an error (like the graph's, whatever the change touched; the baseline tells a
    // pre-existing one from the change's), once per place however many apps share it.
    let mut broken: std::collections::BTreeMap<(&str, u32, u32, &str), Vec<&str>> =
        Default::default();
    for app in &org.apps {
        for w in &app.broken_refs {
            broken
                .entry((&w.file, w.line, w.col, &w.message))
                .or_default()
                .push(&app.id);
        }
    }
    for ((file, line, col, message), apps) in &broken {
        let which = if apps.len() == 1 {
            format!("app `{}`", apps[0])
        } else {
            format!("apps {}", apps.join(", "))
        };
        out.push(Finding::new(
            validate::APP_MISSING_REFERENCE,
            Severity::Error,
            file,
            *line,
            *col,
            format!("{message}: {which} cannot render"),
        ));
    }
    for w in org.warnings.iter().filter(|w| {
        scope.contains(w.file.as_str())
            && !broken.contains_key(&(w.file.as_str(), w.line, w.col, w.message.as_str()))
    }) {
        let rule =
            if w.message.contains("is not a discovered stack") || w.message.contains("not found") {
                validate::GRAPH_MISSING_DEPENDENCY
            } else {
                validate::GRAPH_UNRESOLVED_PATH
            };
        out.push(Finding::new(
            rule,
            Severity::Warning,
            &w.file,
            w.line,
            w.col,
            w.message.clone(),
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Baseline: judge the change, not the repository

/// How a change's validation findings relate to its merge base.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineSummary {
    /// The merge base, validated over the same files for comparison.
    pub base: String,
    /// Findings the change introduced.
    pub new: usize,
    /// Findings already at the merge base on content the change did not touch.
    pub preexisting: usize,
    /// Pre-existing findings that block anyway (`policy.preexisting: block`).
    pub preexisting_blocking: usize,
    /// Pre-existing findings left out of `findings` (`policy.preexisting: ignore`).
    pub ignored: usize,
    /// Blocking findings after the baseline (what `passed` is decided on).
    pub blocking: usize,
    /// Findings at the merge base that the head no longer has, at their base positions.
    pub fixed: Vec<Finding>,
}

/// Validate the merge base over the same files, classify every head finding `new` or
/// `pre_existing` (sluice_model::baseline) and decide `passed` on what the change introduced:
/// a pre-existing finding blocks only where `policy.preexisting` says `block`. The base is
/// validated with its own configuration when it has a valid one, the head's otherwise.
pub fn apply_baseline(
    report: &mut ValidationReport,
    base: &Snapshot,
    head: &Snapshot,
    in_scope: &[String],
    (config, org): (&OrgConfig, &Org),
) {
    use sluice_model::baseline::{self, Baseline, HeadFinding, PreexistingPolicy, Treatment};
    if report.config_invalid {
        return;
    }
    let policy =
        PreexistingPolicy::from_policy_section(config.sections.get("policy")).unwrap_or_default();
    let base_scope: Vec<String> = in_scope
        .iter()
        .filter(|p| base.entry(p).is_some())
        .cloned()
        .collect();
    let base_config = workspace::load_config(base, &base.commit.to_string()).ok();
    let base_org = base_config
        .as_ref()
        .map(|c| sluice_org::discovery::discover(c, base, base.files()));
    let base_report = match (&base_config, &base_org) {
        (Some(c), Some(o)) => validate_snapshot(base, None, &base_scope, Ok((c, o))),
        _ => validate_snapshot(base, None, &base_scope, Ok((config, org))),
    };
    let mut base_lines = FileLines::new(base);
    let mut head_lines = FileLines::new(head);
    let base_keys: Vec<_> = base_report
        .findings
        .iter()
        .map(|f| finding_key(f, &mut base_lines))
        .collect();
    let mut touched: HashMap<String, std::collections::HashSet<u32>> = HashMap::new();
    let head_findings: Vec<HeadFinding> = report
        .findings
        .iter()
        .map(|f| {
            let lines = touched
                .entry(f.file.clone())
                .or_insert_with(|| touched_lines(base, head, &f.file));
            HeadFinding {
                key: finding_key(f, &mut head_lines),
                touched: lines.contains(&f.line),
            }
        })
        .collect();
    let classified = baseline::classify(&base_keys, &head_findings);
    let units = UnitIndex::new(Some(org));
    let mut summary = BaselineSummary {
        base: base.commit.to_string(),
        new: 0,
        preexisting: 0,
        preexisting_blocking: 0,
        ignored: 0,
        blocking: 0,
        fixed: classified
            .fixed
            .iter()
            .map(|i| {
                let mut f = base_report.findings[*i].clone();
                f.baseline = Some(Baseline::Fixed);
                f
            })
            .collect(),
    };
    let mut kept = Vec::with_capacity(report.findings.len());
    for (mut f, class) in std::mem::take(&mut report.findings)
        .into_iter()
        .zip(classified.head)
    {
        f.baseline = Some(class);
        let env = units.env_of(&f.file);
        match class {
            Baseline::New => summary.new += 1,
            _ => {
                summary.preexisting += 1;
                if policy.treatment(&f.rule, env.as_deref()) == Treatment::Ignore {
                    summary.ignored += 1;
                    continue;
                }
            }
        }
        if f.severity.blocks() && policy.blocks(class, &f.rule, env.as_deref()) {
            summary.blocking += 1;
            if class == Baseline::PreExisting {
                summary.preexisting_blocking += 1;
            }
        }
        kept.push(f);
    }
    report.findings = kept;
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    report.summary.errors = count(Severity::Error);
    report.summary.warnings = count(Severity::Warning);
    report.summary.info = count(Severity::Info);
    report.passed = summary.blocking == 0;
    report.baseline = Some(summary);
}

/// Lines of files at one revision, read once.
struct FileLines<'s> {
    snapshot: &'s Snapshot,
    files: HashMap<String, Vec<String>>,
}

impl<'s> FileLines<'s> {
    fn new(snapshot: &'s Snapshot) -> Self {
        FileLines {
            snapshot,
            files: HashMap::new(),
        }
    }

    fn line(&mut self, file: &str, line: u32) -> &str {
        let snapshot = self.snapshot;
        let lines = self.files.entry(file.to_string()).or_insert_with(|| {
            snapshot
                .read_file(file)
                .ok()
                .flatten()
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .lines()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        });
        lines
            .get((line as usize).saturating_sub(1))
            .map_or("", String::as_str)
    }
}

/// A validation finding's identity across revisions: its rule, its file, and the secret's
/// fingerprint or a fingerprint of the line it is on (never the line number: a line inserted
/// above it moves it without changing it).
fn finding_key(f: &Finding, lines: &mut FileLines<'_>) -> sluice_model::baseline::FindingKey {
    let content = match &f.fingerprint {
        Some(fp) => fp.clone(),
        None => sluice_model::baseline::content_fingerprint(lines.line(&f.file, f.line)),
    };
    sluice_model::baseline::FindingKey::new(&f.rule, format!("{}#{content}", f.file))
}

/// Head line numbers (1-based) of `file` that the change added or rewrote; every line of a
/// file the base does not have.
fn touched_lines(base: &Snapshot, head: &Snapshot, file: &str) -> std::collections::HashSet<u32> {
    let read = |s: &Snapshot| s.read_file(file).ok().flatten();
    let Some(new) = read(head) else {
        return Default::default();
    };
    let new = String::from_utf8_lossy(&new).into_owned();
    let old = match read(base) {
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
        None => return (1..=new.lines().count().max(1) as u32).collect(),
    };
    let diff = similar::TextDiff::from_lines(&old, &new);
    let mut out = std::collections::HashSet::new();
    for op in diff.ops() {
        let (tag, _, range) = op.as_tag_tuple();
        if tag != similar::DiffTag::Equal {
            out.extend(range.map(|i| i as u32 + 1));
        }
    }
    out
}
