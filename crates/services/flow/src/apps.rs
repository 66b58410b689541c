//! Apps in a change (GitOps half of stages 3–6): render base and head, validate, diff, manifest
//! policy, risk and approvals — one [`AppDecision`] per affected app, for the PR report.
//!
//! Reads top to bottom as the steps it takes for each app: render both sides from git objects
//! (a render error is reported, never hidden, and blocks the app), validate the head's objects
//! against the Kubernetes schemas and the repository's CRDs, diff the two renders (Secret values
//! are never shown), evaluate manifest policy over the head objects (a decision record, whose
//! input has Secret values redacted), classify risk over the object changes and approval
//! requirements from the matrix, CODEOWNERS and policy `require_approval` results.
//!
//! Risk facts use the resource type convention of `sluice_model::risk::k8s_resource_type`
//! (`k8s:apps/Deployment`, `k8s:core/Secret`), the address convention of the Kubernetes policy
//! pack (`Kind/namespace/name`), and one extra `k8s:image` fact per container whose image the
//! change sets or changes (`Kind/namespace/name#container`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sluice_git::git::Snapshot;
use sluice_model::affected::{AffectedUnit, UnitStatus};
use sluice_model::approval::{self, PolicyRequest, Requirement};
use sluice_model::baseline::{Baseline, PreexistingPolicy};
use sluice_model::change::ChangeId;
use sluice_model::codeowners::CodeOwners;
use sluice_model::config::OrgConfig;
use sluice_model::finding::Severity;
use sluice_model::risk::{
    self, ChangeAction, K8S_IMAGE, PolicyOutcome, ResourceFact, RiskAssessment, RiskInput,
};
use sluice_policy::PolicyEngine;
use sluice_policy::{AppContext, ChangeContext, Decision, DecisionRecord, EvalInput, Outcome};
use sluice_render::diagnostic::Diagnostic;
use sluice_render::diff::{self, Change, RenderedDiff};
use sluice_render::object::Identity;
use sluice_render::render::{self, Rendered};
use sluice_render::schema::{self, Validation};

use crate::app_baseline;

/// Findings kept per app in the report (the counts stay exact).
pub const MAX_FINDINGS: usize = 50;
/// Unified diffs longer than this (lines) are cut in the Markdown report.
pub const MAX_DIFF_LINES: usize = 400;

/// How one side of the change rendered.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum RenderState {
    Rendered {
        commit: String,
        digest: String,
        objects: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        tool: Option<String>,
    },
    /// The app does not exist at this revision (added or deleted by the change).
    Absent,
    Failed {
        /// The render error (file:line:col, the tool's message...).
        error: String,
    },
}

impl RenderState {
    /// This side does not render.
    pub fn failed(&self) -> bool {
        matches!(self, RenderState::Failed { .. })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RenderSection {
    pub base: RenderState,
    pub head: RenderState,
    /// Warnings of the head render (unresolved references, scope guesses...).
    pub notes: Vec<Diagnostic>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValidationSection {
    pub kubernetes_version: &'static str,
    pub objects: usize,
    pub valid: usize,
    pub invalid: usize,
    pub errors: usize,
    pub warnings: usize,
    /// Errors that block: those the change introduced, and pre-existing ones
    /// `policy.preexisting` blocks.
    pub blocking: usize,
    /// The first [`MAX_FINDINGS`] findings (new errors first), each with its baseline class.
    pub findings: Vec<Diagnostic>,
    /// Findings of the merge-base render the head no longer has (at most [`MAX_FINDINGS`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fixed: Vec<Diagnostic>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicySection {
    /// `sha256:` of the canonical decision record (what approvals bind to).
    pub decision_digest: String,
    pub record: DecisionRecord,
}

/// What the app's change needs to proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppStatus {
    /// Nothing blocks; the approvals listed are the usual ones.
    Ready,
    /// A policy asks for approval beyond the usual ones.
    NeedsApproval,
    /// The head does not render, does not validate, or a policy denies.
    Blocked,
}

/// Everything a reviewer needs to decide about one app's change.
#[derive(Debug, Clone, Serialize)]
pub struct AppDecision {
    pub app: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    pub production: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_id: Option<ChangeId>,
    pub change: UnitStatus,
    pub render: RenderSection,
    /// Schema validation of the head objects (absent when the head did not render).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationSection>,
    pub diff: RenderedDiff,
    /// Manifest policy over the head objects (absent when not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySection>,
    /// Which policy results the change introduced, which were there before and which it
    /// fixed (present with `policy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_baseline: Option<app_baseline::PolicyBaseline>,
    /// Why policy did not run, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_error: Option<String>,
    pub risk: RiskAssessment,
    pub approvals: Vec<Requirement>,
    pub status: AppStatus,
    /// Why the app is blocked (empty unless `status` is `blocked`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<String>,
}

impl AppDecision {
    /// A policy denial blocks the app: a denied result the change introduced, or a
    /// pre-existing one `policy.preexisting` blocks.
    pub fn denied(&self) -> bool {
        match &self.policy_baseline {
            Some(b) => !b.blocking_denials().is_empty(),
            None => self
                .policy
                .as_ref()
                .is_some_and(|p| p.record.outcome == Decision::Deny),
        }
    }
}

/// The inputs of [`decide_apps`].
pub struct AppsInput<'a> {
    /// The snapshot the change is based on (the merge base) and its configuration (the head's
    /// when the base has none).
    pub base: &'a Snapshot,
    pub base_config: &'a OrgConfig,
    pub head: &'a Snapshot,
    pub config: &'a OrgConfig,
    /// The affected apps (`AffectedReport::apps`).
    pub apps: &'a [AffectedUnit],
    /// Owners by app id (discovery), for policy approvals that name no group.
    pub owners: &'a BTreeMap<String, Vec<String>>,
    pub codeowners: &'a CodeOwners,
    /// Repository paths the change touches (CODEOWNERS is matched on those under each app and
    /// on the files the app's reasons name).
    pub changed_paths: &'a [String],
    /// The manifest policy; `None`: not run (reported as such).
    pub engine: Option<&'a PolicyEngine>,
    /// Correlation ids by app id.
    pub change_ids: &'a BTreeMap<String, ChangeId>,
    pub render_options: render::Options,
    /// Kinds without a schema are errors.
    pub strict: bool,
}

/// One [`AppDecision`] per affected app, in the order given.
pub fn decide_apps(input: &AppsInput<'_>) -> Vec<AppDecision> {
    input.apps.iter().map(|u| decide_app(input, u)).collect()
}

fn render_side(
    snapshot: &Snapshot,
    config: &OrgConfig,
    id: &str,
    options: &render::Options,
) -> (RenderState, Option<Rendered>) {
    let spec = match render::find_app(config, snapshot, id) {
        Ok(spec) => spec,
        Err(sluice_render::error::RenderError::UnknownApp { .. }) => {
            return (RenderState::Absent, None);
        }
        Err(e) => {
            return (
                RenderState::Failed {
                    error: e.to_string(),
                },
                None,
            );
        }
    };
    match render::render_app(snapshot, &spec, options) {
        Ok(r) => (
            RenderState::Rendered {
                commit: r.commit.clone(),
                digest: r.digest.clone(),
                objects: r.objects.len(),
                tool: r.tool.as_ref().map(|t| format!("{} {}", t.name, t.version)),
            },
            Some(r),
        ),
        Err(e) => (
            RenderState::Failed {
                error: e.to_string(),
            },
            None,
        ),
    }
}

fn decide_app(input: &AppsInput<'_>, unit: &AffectedUnit) -> AppDecision {
    let env = unit.env.clone();
    let production = env.as_deref().is_some_and(|e| input.config.is_protected(e));
    // Both sides at once: a Kustomize or Helm render is an external process each.
    let ((base_state, base), (head_state, head)) = rayon::join(
        || {
            render_side(
                input.base,
                input.base_config,
                &unit.id,
                &input.render_options,
            )
        },
        || render_side(input.head, input.config, &unit.id, &input.render_options),
    );
    let mut blockers = Vec::new();
    if let RenderState::Failed { error } = &head_state {
        blockers.push(format!("the head does not render: {error}"));
    }

    // Old problems do not block new changes: findings are judged against the merge base.
    let preexisting = PreexistingPolicy::from_policy_section(input.config.sections.get("policy"))
        .unwrap_or_default();
    let validate = |r: &Rendered| {
        schema::validate(
            &r.objects,
            &r.schemas,
            schema::Options {
                strict: input.strict,
            },
        )
    };
    let validation = head.as_ref().map(|h| {
        let mut v = validate(h);
        let fixed = match &base {
            Some(b) => {
                let at_base = validate(b);
                app_baseline::classify_schema(
                    &b.objects,
                    &at_base.findings,
                    &h.objects,
                    &mut v.findings,
                )
            }
            None => {
                for f in &mut v.findings {
                    f.baseline = Some(Baseline::New);
                }
                Vec::new()
            }
        };
        let blocking = app_baseline::blocking_errors(&v.findings, &preexisting, env.as_deref());
        validation_section(v, blocking, fixed)
    });
    if let Some(v) = &validation
        && v.blocking > 0
    {
        blockers.push(format!(
            "{} the change introduced",
            plural(v.blocking, "schema validation error")
        ));
    }

    // A side that failed to render has unknown objects, not zero: diffing it against the other
    // side would report every object as added or removed (and risk rules would read a
    // deletion). The diff stays empty and no risk fact is inferred until both sides render.
    let diffed = !base_state.failed() && !head_state.failed();
    let empty = Vec::new();
    let d = if diffed {
        diff::diff(
            base.as_ref().map_or(&empty, |r| &r.objects),
            head.as_ref().map_or(&empty, |r| &r.objects),
        )
    } else {
        RenderedDiff::default()
    };

    let change_id = input.change_ids.get(&unit.id).cloned();
    let evaluate = |engine: &PolicyEngine, r: &Rendered, base_commit: Option<String>| {
        let app = AppContext {
            id: unit.id.clone(),
            env: env.clone().unwrap_or_default(),
            protected: production,
            namespace: r.namespace.clone(),
            cluster: r.app.cluster.clone().unwrap_or_default(),
            path: r.app.path.clone(),
        };
        let change = ChangeContext {
            correlation_id: change_id.clone(),
            env: app.env.clone(),
            stack: unit.id.clone(),
            production: Some(production),
            head: Some(r.commit.clone()),
            base: base_commit,
            ..Default::default()
        };
        let objects: Vec<serde_json::Value> = r.objects.iter().map(|o| o.value.clone()).collect();
        engine.evaluate(&EvalInput::manifests(&objects, &change, &app))
    };
    let (policy, policy_error) = match (&head, input.engine) {
        (Some(r), Some(engine)) => {
            match evaluate(engine, r, base.as_ref().map(|b| b.commit.clone())) {
                Ok(record) => (
                    Some(PolicySection {
                        decision_digest: record.digest(),
                        record,
                    }),
                    None,
                ),
                Err(e) => (None, Some(e.to_string())),
            }
        }
        (None, Some(_)) if head_state.failed() => {
            (None, Some("not run: the head does not render".into()))
        }
        (None, Some(_)) => (None, None),
        (_, None) => (None, Some("not run: no policy engine configured".into())),
    };
    // The same policy over the merge base's render, to tell the change's results from the
    // repository's. A base that cannot be evaluated leaves every result new.
    let policy_baseline = policy.as_ref().map(|p| {
        let at_base = match (&base, input.engine) {
            (Some(b), Some(engine)) => evaluate(engine, b, None).ok(),
            _ => None,
        };
        app_baseline::classify_policy(at_base.as_ref(), &p.record, &preexisting, env.as_deref())
    });
    if let Some(pb) = &policy_baseline {
        let rules = pb.blocking_denials();
        if !rules.is_empty() {
            blockers.push(format!("policy denies: {}", rules.join(", ")));
        }
    }
    if policy_error.is_some() && policy.is_none() && head.is_some() {
        blockers.push("policy could not be evaluated".into());
    }

    let facts = match (&base_state, &head) {
        // The base does not render (a problem the change did not make): every head object is
        // taken as updated, so resource-type rules still apply, and nothing as deleted.
        (RenderState::Failed { .. }, Some(h)) => h
            .objects
            .iter()
            .map(|o| ResourceFact {
                address: address(&o.identity),
                resource_type: risk::k8s_resource_type(&o.identity.group, &o.identity.kind),
                actions: vec![ChangeAction::Update],
            })
            .collect(),
        _ => resource_facts(&d),
    };
    let rules = input.config.risk_rules();
    let risk = risk::classify(
        &rules,
        &RiskInput {
            env: env.as_deref().unwrap_or(""),
            stack: &unit.id,
            resources: &facts,
            policy: policy
                .as_ref()
                .map(|p| effective_outcome(p.record.outcome, policy_baseline.as_ref())),
        },
    );
    let owners = input.owners.get(&unit.id).cloned().unwrap_or_default();
    let requests = policy
        .as_ref()
        .map(|p| policy_requests(&p.record, &owners))
        .unwrap_or_default();
    let paths = app_paths(unit, input.changed_paths);
    let approvals = approval::requirements(
        risk.risk,
        &input.config.approvals,
        input.codeowners,
        &paths,
        &requests,
    );
    let status = if !blockers.is_empty() {
        AppStatus::Blocked
    } else if !requests.is_empty() {
        AppStatus::NeedsApproval
    } else {
        AppStatus::Ready
    };
    AppDecision {
        app: unit.id.clone(),
        path: unit.path.clone(),
        env,
        production,
        change_id,
        change: unit.status,
        render: RenderSection {
            base: base_state,
            head: head_state,
            notes: head.as_ref().map(|r| r.notes.clone()).unwrap_or_default(),
        },
        validation,
        diff: d,
        policy,
        policy_baseline,
        policy_error,
        risk,
        approvals,
        status,
        blockers,
    }
}

/// The policy outcome risk rules see: a denial that does not block (every denied result
/// pre-existing and not blocked by `policy.preexisting`) counts as a warning.
fn effective_outcome(
    d: Decision,
    baseline: Option<&app_baseline::PolicyBaseline>,
) -> PolicyOutcome {
    match (d, baseline) {
        (Decision::Deny, Some(b)) if b.blocking_denials().is_empty() => PolicyOutcome::Warn,
        (d, _) => policy_outcome(d),
    }
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

fn validation_section(
    v: Validation,
    blocking: usize,
    mut fixed: Vec<Diagnostic>,
) -> ValidationSection {
    let (errors, warnings) = (v.errors(), v.warnings());
    let mut findings = v.findings;
    // New errors first: they are what the change must fix.
    findings.sort_by_key(|f| {
        (
            f.severity != Severity::Error,
            f.baseline != Some(Baseline::New),
        )
    });
    findings.truncate(MAX_FINDINGS);
    fixed.truncate(MAX_FINDINGS);
    ValidationSection {
        blocking,
        fixed,
        kubernetes_version: v.kubernetes_version,
        objects: v.objects,
        valid: v.valid,
        invalid: v.invalid,
        errors,
        warnings,
        findings,
    }
}

/// `Kind/namespace/name` (`Kind/name` cluster-scoped), as the Kubernetes policy pack names
/// resources.
pub fn address(id: &Identity) -> String {
    if id.namespace.is_empty() {
        format!("{}/{}", id.kind, id.name)
    } else {
        format!("{}/{}/{}", id.kind, id.namespace, id.name)
    }
}

/// The rendered diff as risk rules see it: one fact per added, removed or changed object and
/// one `k8s:image` fact per container whose image the change sets or changes.
pub fn resource_facts(d: &RenderedDiff) -> Vec<ResourceFact> {
    let mut out: Vec<ResourceFact> = d
        .objects
        .iter()
        .map(|o| ResourceFact {
            address: address(&o.identity),
            resource_type: risk::k8s_resource_type(&o.identity.group, &o.identity.kind),
            actions: vec![match o.change {
                Change::Added => ChangeAction::Create,
                Change::Removed => ChangeAction::Delete,
                Change::Changed => ChangeAction::Update,
            }],
        })
        .collect();
    for i in &d.images {
        let action = match (&i.old, &i.new) {
            (None, Some(_)) => ChangeAction::Create,
            (Some(_), None) => ChangeAction::Delete,
            _ => ChangeAction::Update,
        };
        // A removed container is part of its workload's update, not an image rollout.
        if action == ChangeAction::Delete {
            continue;
        }
        out.push(ResourceFact {
            address: format!("{}#{}", address(&i.object), i.container),
            resource_type: K8S_IMAGE.to_string(),
            actions: vec![action],
        });
    }
    out
}

fn policy_outcome(d: Decision) -> PolicyOutcome {
    match d {
        Decision::Allow => PolicyOutcome::Allow,
        Decision::Warn => PolicyOutcome::Warn,
        Decision::RequireApproval => PolicyOutcome::RequireApproval,
        Decision::Deny => PolicyOutcome::Deny,
    }
}

/// A `require_approval` result per (rule, groups); a result without groups goes to the app's
/// owners.
fn policy_requests(record: &DecisionRecord, owners: &[String]) -> Vec<PolicyRequest> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for r in record
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::RequireApproval)
    {
        let groups = if r.groups.is_empty() {
            owners.to_vec()
        } else {
            r.groups.clone()
        };
        if seen.insert((r.rule.clone(), groups.clone())) {
            out.push(PolicyRequest {
                rule: r.rule.clone(),
                message: r.message.clone(),
                groups,
            });
        }
    }
    out
}

/// The changed paths that belong to the app: under its folder or named by its reasons (a base
/// or values file elsewhere).
fn app_paths(unit: &AffectedUnit, changed: &[String]) -> Vec<String> {
    let prefix = format!("{}/", unit.path.trim_end_matches('/'));
    let mut out: BTreeSet<String> = changed
        .iter()
        .filter(|p| p.starts_with(&prefix))
        .cloned()
        .collect();
    out.extend(unit.reasons.iter().filter_map(|r| r.path.clone()));
    out.into_iter().collect()
}
