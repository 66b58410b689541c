//! `sluice check`: policy, risk and required approvals over one plan JSON, for a stack — the
//! decision core of the PR report (stages 5–6) on its own, for a plan made anywhere.
//!
//! [`Checker`] holds what the org configures (policy setup, redaction rules, risk rules,
//! approval matrix, CODEOWNERS) and turns one parsed plan into a
//! [`StackDecision`](crate::decide::StackDecision); `sluice pr` uses the same checker for every
//! planned stack. [`run`] is the command: read and parse the plan, find the stack (and its
//! environment) in the repository when one is given, check, and return a report.
//!
//! Bad input is a [`CheckError`] naming what is wrong: malformed plan JSON (with
//! file:line:col), an unsupported `format_version`, an unknown stack, an invalid policy bundle
//! or exception file, an unreadable repository. The CLI gives each its exit code.
//! Nothing is written anywhere: the report goes to the caller.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};
use sluice_iac::config::ConfigFieldError;
use sluice_model::approval::ApprovalMatrix;
use sluice_model::baseline::PreexistingPolicy;
use sluice_model::change::ChangeId;
use sluice_model::codeowners::CodeOwners;
use sluice_model::exception::Timestamp;
use sluice_model::plan::{Plan, PlanError};
use sluice_model::redact::{self, RedactionRules};
use sluice_model::risk::{self, RiskRule};
use sluice_org::discovery::Stack;
use sluice_policy::builtin::Target as PolicyTarget;
use sluice_policy::{ChangeContext, EvalInput, PolicyConfig, PolicyError, PolicySetup};

use crate::decide::{self, DecideInput, StackDecision};
use crate::error::PipelineError;
use crate::workspace::{self, Revision};

pub const SCHEMA: &str = "sluice.check/v1";

/// Environments treated as production when no `sluice.yaml` says which are protected (the
/// built-in policy pack's default too).
pub const DEFAULT_PRODUCTION_ENVS: &[&str] = &["prod", "production"];

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(
        "unknown stack `{stack}` at {rev} in {repo}: {known} stacks were discovered (list them with `sluice stacks --repo {repo} --rev {rev}`)"
    )]
    UnknownStack {
        stack: String,
        rev: String,
        repo: String,
        known: usize,
    },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The `plan:` section of `sluice.yaml` (its redaction rules), by field.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    PlanConfig(Vec<ConfigFieldError>),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// The stack a plan is checked for, with what the policy input and the approvals need.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub stack: String,
    pub env: String,
    pub production: bool,
    pub change_id: Option<ChangeId>,
    pub base: Option<String>,
    pub head: Option<String>,
    /// Repository paths CODEOWNERS is matched on (the change's files in the stack, or the
    /// stack's files).
    pub paths: Vec<String>,
    /// The stack's owners (approvers of a `require_approval` that names no group).
    pub owners: Vec<String>,
    /// `input.stack` for policies.
    pub stack_json: Value,
}

impl Target {
    /// A discovered stack; `production` from the org's protected environments.
    pub fn of_stack(stack: &Stack, production: bool, paths: Vec<String>) -> Target {
        Target {
            stack: stack.id.clone(),
            env: stack.env.clone(),
            production,
            paths,
            owners: stack.owners.clone(),
            stack_json: serde_json::to_value(stack).unwrap_or_else(|_| json!({"id": stack.id})),
            ..Default::default()
        }
    }
}

/// What the org configures for the decision, ready to check plans.
pub struct Checker {
    pub setup: PolicySetup,
    pub redaction: RedactionRules,
    pub risk_rules: Vec<RiskRule>,
    pub approvals: ApprovalMatrix,
    pub codeowners: CodeOwners,
    /// `policy.preexisting`: what a result on a resource the plan leaves unchanged does.
    pub preexisting: PreexistingPolicy,
}

impl Checker {
    /// The org's configuration at a revision: its `policy`, `plan` (redaction), `risk` and
    /// `approvals` sections, policy-library bundles and security exceptions.
    pub fn for_revision(
        rev: &Revision,
        codeowners: CodeOwners,
        now: Timestamp,
    ) -> Result<Checker, CheckError> {
        let setup = sluice_policy::from_revision(&rev.snapshot, &rev.config, now)?;
        let redaction =
            match sluice_iac::config::PlanConfig::from_section(rev.config.sections.get("plan")) {
                Ok(c) => c.redaction_rules(),
                Err(errors) => return Err(CheckError::PlanConfig(errors)),
            };
        // Checked when `sluice.yaml` loads; a default here is never reached with a bad one.
        let preexisting = PreexistingPolicy::from_policy_section(rev.config.sections.get("policy"))
            .unwrap_or_default();
        Ok(Checker {
            setup,
            redaction,
            risk_rules: rev.config.risk_rules(),
            approvals: rev.config.approvals.clone(),
            codeowners,
            preexisting,
        })
    }

    /// Without a repository: the built-in pack, default redaction and risk rules (production =
    /// [`DEFAULT_PRODUCTION_ENVS`]), no approval matrix, no CODEOWNERS.
    pub fn standalone(now: Timestamp) -> Result<Checker, CheckError> {
        let setup =
            sluice_policy::assemble(PolicyConfig::default(), Vec::new(), Default::default(), now)?;
        let prod: Vec<String> = DEFAULT_PRODUCTION_ENVS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let redaction = RedactionRules::default();
        Ok(Checker {
            setup,
            redaction,
            risk_rules: risk::default_rules(&prod),
            approvals: ApprovalMatrix::default(),
            codeowners: CodeOwners::empty(),
            preexisting: PreexistingPolicy::default(),
        })
    }

    /// Warnings loading found (exception notices, unknown fields), one line each.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .setup
            .notices
            .iter()
            .map(|n| format!("{}:{}: {}", n.file, n.line, n.message))
            .collect();
        out.extend(self.setup.warnings.iter().map(|w| w.to_string()));
        out
    }

    /// Policy over the redacted plan (never `prior_state` or variable values), then risk and
    /// approvals. The plan is consumed so that a large one is not held twice.
    pub fn check(&self, plan: Plan, target: &Target) -> Result<StackDecision, CheckError> {
        let summary = plan.summary();
        let facts = decide::resource_facts(&plan);
        let unchanged = decide::unchanged_addresses(&plan);
        let projected = redact::redact_plan_owned(plan, &self.redaction);
        let change = ChangeContext {
            correlation_id: target.change_id.clone(),
            env: target.env.clone(),
            stack: target.stack.clone(),
            base: target.base.clone(),
            head: target.head.clone(),
            production: Some(target.production),
            ..Default::default()
        };
        let input = EvalInput::plan(projected, &change, target.stack_json.clone());
        let record = self.setup.engine.evaluate_owned(input)?;
        Ok(decide::decide(DecideInput {
            stack: &target.stack,
            env: &target.env,
            production: target.production,
            change_id: target.change_id.as_ref().map(ChangeId::to_string),
            summary,
            facts: &facts,
            record,
            risk_rules: &self.risk_rules,
            matrix: &self.approvals,
            codeowners: &self.codeowners,
            paths: &target.paths,
            owners: &target.owners,
            redaction: &self.redaction,
            unchanged: &unchanged,
            preexisting: &self.preexisting,
        }))
    }
}

/// `sluice check`'s flags.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub plan_json: PathBuf,
    pub stack: String,
    /// Required without `repo`; with it, must agree with the discovered stack's environment.
    pub env: Option<String>,
    pub repo: Option<PathBuf>,
    pub rev: String,
    /// Judge exception expiry at this instant (default: now).
    pub now: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub schema: &'static str,
    /// The plan JSON file as given.
    pub plan_file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    pub decision: StackDecision,
    pub warnings: Vec<String>,
    /// Where policy documentation links resolve (`policy.docs_url`); not part of the JSON.
    #[serde(skip)]
    pub docs_url: String,
}

/// Run the check: parse the plan, resolve the stack, evaluate. The repository is read and the
/// org's configuration loaded on a second thread while the plan is parsed; the built-in plan
/// rules then compile on a second thread while the plan is redacted.
pub fn run(opts: &CheckOptions) -> Result<CheckReport, CheckError> {
    let now = opts.now.unwrap_or_else(sluice_policy::now);
    let (parsed, setup) = std::thread::scope(|scope| {
        let setup = scope.spawn(|| setup(opts, now));
        let parsed = read_plan(&opts.plan_json);
        (parsed, setup.join())
    });
    // A bad plan is reported first: it is the input the user handed over.
    let (file, plan) = parsed?;
    let (checker, target, rev, mut notes) = match setup {
        Ok(r) => r?,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let mut warnings: Vec<String> = plan.warnings.iter().map(|w| w.to_string()).collect();
    warnings.append(&mut notes);
    warnings.extend(checker.warnings());
    // The built-in plan rules compile on a second thread while the plan is redacted and made
    // into the engine's input; evaluation waits for them (for a typical plan compiling is
    // the larger half of the work). A compile error is the evaluation's error.
    let decision = std::thread::scope(|scope| {
        let engine = &checker.setup.engine;
        let compiling = scope.spawn(move || engine.prepare(PolicyTarget::Plan));
        let decision = checker.check(plan, &target);
        if let Err(panic) = compiling.join() {
            std::panic::resume_unwind(panic);
        }
        decision
    })?;
    Ok(CheckReport {
        schema: SCHEMA,
        plan_file: file,
        rev,
        decision,
        warnings,
        docs_url: checker.setup.config.docs_url.clone(),
    })
}

fn read_plan(path: &Path) -> Result<(String, Plan), CheckError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| CheckError::Read {
        file: file.clone(),
        source: e,
    })?;
    let plan = Plan::parse(&file, &bytes)?;
    Ok((file, plan))
}

type Setup = (Checker, Target, Option<String>, Vec<String>);

/// The checker and target: from the repository when given, else standalone with `--env`.
fn setup(opts: &CheckOptions, now: Timestamp) -> Result<Setup, CheckError> {
    if let Some(repo) = &opts.repo {
        let (checker, target, commit) = repo_target(repo, opts, now)?;
        return Ok((checker, target, Some(commit), Vec::new()));
    }
    let env = opts.env.clone().filter(|e| !e.is_empty()).ok_or_else(|| {
        CheckError::Usage(
            "give the stack's environment with --env ENV, or --repo DIR so that sluice finds it"
                .into(),
        )
    })?;
    let note = format!(
        "stack `{}` not checked against a repository: built-in policy pack and default risk \
         rules only, no approval matrix or CODEOWNERS (pass --repo to use the org's \
         configuration)",
        opts.stack
    );
    let production = DEFAULT_PRODUCTION_ENVS.contains(&env.as_str());
    let target = Target {
        stack: opts.stack.clone(),
        stack_json: json!({"id": opts.stack, "env": env}),
        env,
        production,
        ..Default::default()
    };
    Ok((Checker::standalone(now)?, target, None, vec![note]))
}

fn repo_target(
    repo: &Path,
    opts: &CheckOptions,
    now: Timestamp,
) -> Result<(Checker, Target, String), CheckError> {
    let repository = workspace::open(repo)?;
    let rev_name = if opts.rev.is_empty() {
        "HEAD"
    } else {
        &opts.rev
    };
    let rev = workspace::revision(&repository, rev_name)?;
    let org = rev.discover();
    let stack = org
        .stacks
        .iter()
        .find(|s| s.id == opts.stack)
        .ok_or_else(|| CheckError::UnknownStack {
            stack: opts.stack.clone(),
            rev: rev_name.to_string(),
            repo: repo.display().to_string(),
            known: org.stacks.len(),
        })?;
    if let Some(env) = opts.env.as_deref().filter(|e| !e.is_empty())
        && env != stack.env
    {
        return Err(CheckError::Usage(format!(
            "--env {env}: stack `{}` belongs to environment `{}` in {}",
            stack.id,
            stack.env,
            repo.display()
        )));
    }
    let paths: Vec<String> = rev
        .snapshot
        .files_under(&stack.path)
        .map(str::to_string)
        .collect();
    let target = Target::of_stack(stack, rev.config.is_protected(&stack.env), paths);
    let checker = Checker::for_revision(&rev, org.codeowners.clone(), now)?;
    Ok((checker, target, rev.commit()))
}
