//! The decision for one stack's change (stages 4–6 of DESIGN.md §2 for a stack): what the plan
//! does, what policy decided, what risk the change carries and who must approve it, and the
//! resulting status (allowed / approvals required / denied).
//!
//! Everything here is pure: the plan, the decision record, the org's risk rules, approval
//! matrix and CODEOWNERS come in, a [`StackDecision`] comes out. Evaluating the policy engine
//! and reading files live in [`crate::check`] (one plan) and [`crate::pr`] (a whole change);
//! both render a decision with [`render_stack_markdown`] and [`decisions_sarif`], so `sluice
//! check` and `sluice pr` say the same thing about the same plan.
//!
//! Nothing rendered here carries a value from the plan: the summary holds addresses, actions
//! and reasons only, and policy messages were produced over the redacted plan (and are passed
//! through the redaction rules once more before they are kept).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};
use sluice_model::approval::{self, ApprovalMatrix, PolicyRequest, Requirement, Source};
use sluice_model::baseline::{Baseline, PreexistingPolicy};
use sluice_model::change::UnitKind;
use sluice_model::codeowners::CodeOwners;
use sluice_model::plan::{Action, Plan, PlanSummary, ResourceChange};
use sluice_model::record::{Decision, DecisionRecord, Outcome, RuleResult};
use sluice_model::redact::RedactionRules;
use sluice_model::risk::{
    self, ChangeAction, PolicyOutcome, ResourceFact, RiskAssessment, RiskInput, RiskRule,
};

/// Whether a stack's change may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing blocks and nobody needs to approve.
    Allowed,
    /// Allowed once the listed approvals are given.
    ApprovalsRequired,
    /// A policy denies the change (or could not be evaluated and failed closed).
    Denied,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Allowed => "allowed",
            Status::ApprovalsRequired => "approvals required",
            Status::Denied => "denied",
        }
    }
}

/// The policy stage's result for the stack: the decision record and its digest (what
/// approvals bind to).
#[derive(Debug, Clone, Serialize)]
pub struct PolicySection {
    /// `sha256:` of the record's canonical JSON.
    pub decision_digest: String,
    #[serde(flatten)]
    pub record: DecisionRecord,
}

/// Everything a reviewer needs to decide about one stack's plan.
#[derive(Debug, Clone, Serialize)]
pub struct StackDecision {
    pub stack: String,
    pub env: String,
    pub production: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_id: Option<String>,
    pub plan: PlanSummary,
    pub policy: PolicySection,
    pub risk: RiskAssessment,
    /// Every approval requirement with its source (risk matrix, CODEOWNERS, policy).
    pub approvals: Vec<Requirement>,
    pub status: Status,
    /// How the policy results relate to the change (each result's own class is in the record,
    /// `policy.results[].baseline`).
    pub policy_baseline: PlanBaseline,
}

/// A stack's policy results judged against the resources its plan leaves unchanged.
///
/// A plan is itself a comparison: the engine diffs the configuration at the head with the
/// real state, which is what the merge base's configuration produced (drift aside). A
/// resource the plan leaves as it is (`no-op`, or identical `before` and `after`) is the same
/// at the merge base and at the head, so a finding on it was there before the change:
/// `pre_existing`. Every other result is `new`: it is on something the change creates,
/// updates, replaces, moves with changes, imports or deletes, or on no resource at all.
/// Planning the merge base as well would cost a second engine run per stack to learn the
/// same thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanBaseline {
    /// What the results were judged against: `plan_no_op` (see above).
    pub basis: &'static str,
    /// Results that are not passes and that the change brought.
    pub new: usize,
    /// Results on resources the plan leaves unchanged.
    pub preexisting: usize,
    /// Pre-existing results that block anyway (`policy.preexisting: block`).
    pub preexisting_blocking: usize,
    /// Denied rules that block the change (new denials, and pre-existing ones the org
    /// blocks), sorted and unique.
    pub blocking_denials: Vec<String>,
}

/// Addresses of the resources a plan leaves as they are: `no-op` (an import or a move
/// changes the resource's management, so neither counts), or an update whose `before` and
/// `after` are identical.
pub fn unchanged_addresses(plan: &Plan) -> BTreeSet<String> {
    plan.resource_changes
        .iter()
        .filter(|rc| rc.deposed.is_none() && rc.change.importing.is_none())
        .filter(|rc| {
            rc.previous_address
                .as_ref()
                .is_none_or(|p| p == &rc.address)
        })
        .filter(|rc| match rc.change.actions {
            Action::NoOp => true,
            Action::Update => rc.change.before == rc.change.after && !rc.change.before.is_null(),
            _ => false,
        })
        .map(|rc| rc.address.clone())
        .collect()
}

/// Mark every result that is not a pass `new` or `pre_existing` (on the record, so that the
/// decision record says which is which) and decide which denials block: a new one always, a
/// pre-existing one as `policy.preexisting` says (default: not). A result the engine could
/// not evaluate is always new: it fails closed.
pub fn judge_results(
    record: &mut DecisionRecord,
    unchanged: &BTreeSet<String>,
    policy: &PreexistingPolicy,
    env: &str,
) -> PlanBaseline {
    let mut out = PlanBaseline {
        basis: "plan_no_op",
        new: 0,
        preexisting: 0,
        preexisting_blocking: 0,
        blocking_denials: Vec::new(),
    };
    let mut denials = BTreeSet::new();
    for r in record
        .results
        .iter_mut()
        .filter(|r| r.outcome != Outcome::Pass)
    {
        let pre = !r.error && r.resource.as_ref().is_some_and(|a| unchanged.contains(a));
        let class = if pre {
            Baseline::PreExisting
        } else {
            Baseline::New
        };
        r.baseline = Some(class);
        let blocks = policy.blocks(class, &r.rule, Some(env));
        if pre {
            out.preexisting += 1;
            if blocks && r.outcome == Outcome::Deny {
                out.preexisting_blocking += 1;
            }
        } else {
            out.new += 1;
        }
        if blocks && r.outcome == Outcome::Deny {
            denials.insert(r.rule.clone());
        }
    }
    out.blocking_denials = denials.into_iter().collect();
    out
}

/// The inputs of [`decide`].
pub struct DecideInput<'a> {
    pub stack: &'a str,
    pub env: &'a str,
    pub production: bool,
    pub change_id: Option<String>,
    pub summary: PlanSummary,
    /// From [`resource_facts`] of the same plan.
    pub facts: &'a [ResourceFact],
    pub record: DecisionRecord,
    pub risk_rules: &'a [RiskRule],
    pub matrix: &'a ApprovalMatrix,
    pub codeowners: &'a CodeOwners,
    /// Repository paths the change touches for this stack (CODEOWNERS is matched on them).
    pub paths: &'a [String],
    /// Approvers for a policy `require_approval` that names no group: the stack's owners.
    pub owners: &'a [String],
    /// Applied to policy messages before they are kept.
    pub redaction: &'a RedactionRules,
    /// From [`unchanged_addresses`] of the same plan.
    pub unchanged: &'a BTreeSet<String>,
    /// `policy.preexisting`: what a result on an unchanged resource does.
    pub preexisting: &'a PreexistingPolicy,
}

/// Put the stages' results together: risk from the rules over the plan's resource changes and
/// the policy outcome, approvals from the matrix, CODEOWNERS and policy requests.
pub fn decide(input: DecideInput<'_>) -> StackDecision {
    let mut record = input.record;
    for r in &mut record.results {
        if !r.message.is_empty() {
            r.message = input.redaction.redact_text(&r.message);
        }
    }
    let baseline = judge_results(&mut record, input.unchanged, input.preexisting, input.env);
    let denied = !baseline.blocking_denials.is_empty();
    // A denial that does not block (every denied result pre-existing) reads as a warning to
    // the risk rules, as for apps.
    let outcome = match record.outcome {
        Decision::Deny if !denied => PolicyOutcome::Warn,
        d => policy_outcome(d),
    };
    let risk = risk::classify(
        input.risk_rules,
        &RiskInput {
            env: input.env,
            stack: input.stack,
            resources: input.facts,
            policy: Some(outcome),
        },
    );
    let requests = policy_requests(&record, input.owners);
    let approvals = approval::requirements(
        risk.risk,
        input.matrix,
        input.codeowners,
        input.paths,
        &requests,
    );
    let status = status(denied, &approvals);
    StackDecision {
        stack: input.stack.to_string(),
        env: input.env.to_string(),
        production: input.production,
        change_id: input.change_id,
        plan: input.summary,
        policy: PolicySection {
            decision_digest: record.digest(),
            record,
        },
        risk,
        approvals,
        status,
        policy_baseline: baseline,
    }
}

/// The plan's resource changes as risk rules see them. No-op and read entries that neither
/// move nor import are left out: they change nothing.
pub fn resource_facts(plan: &Plan) -> Vec<ResourceFact> {
    plan.resource_changes
        .iter()
        .filter_map(|rc| {
            let actions = risk_actions(rc);
            (!actions.is_empty()).then(|| ResourceFact {
                address: rc.address.clone(),
                resource_type: rc.resource_type.clone(),
                actions,
            })
        })
        .collect()
}

/// A resource change's actions in the risk rules' vocabulary: the three replace orders are
/// `replace` (create-then-forget is a replace that also forgets the old object), an import or
/// a move (a `previous_address` other than the address) adds `import` / `move`.
pub fn risk_actions(rc: &ResourceChange) -> Vec<ChangeAction> {
    let mut out = match rc.change.actions {
        Action::NoOp => vec![],
        Action::Create => vec![ChangeAction::Create],
        Action::Read => vec![ChangeAction::Read],
        Action::Update => vec![ChangeAction::Update],
        Action::Delete => vec![ChangeAction::Delete],
        Action::DeleteThenCreate | Action::CreateThenDelete => vec![ChangeAction::Replace],
        Action::Forget => vec![ChangeAction::Forget],
        Action::CreateThenForget => vec![ChangeAction::Replace, ChangeAction::Forget],
    };
    if rc.change.importing.is_some() {
        out.push(ChangeAction::Import);
    }
    if rc
        .previous_address
        .as_ref()
        .is_some_and(|p| p != &rc.address)
    {
        out.push(ChangeAction::Move);
    }
    out
}

/// The decision record's final outcome as risk rules see it.
pub fn policy_outcome(d: Decision) -> PolicyOutcome {
    match d {
        Decision::Allow => PolicyOutcome::Allow,
        Decision::Warn => PolicyOutcome::Warn,
        Decision::RequireApproval => PolicyOutcome::RequireApproval,
        Decision::Deny => PolicyOutcome::Deny,
    }
}

/// The approvals policies ask for: one request per rule and approver set (a rule that fires on
/// 300 resources asks once, naming the first resource and the count), in rule order. A request
/// that names no group falls back to `owners` (the stack's owners).
pub fn policy_requests(record: &DecisionRecord, owners: &[String]) -> Vec<PolicyRequest> {
    let mut grouped: BTreeMap<(String, Vec<String>), (String, usize)> = BTreeMap::new();
    for r in record
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::RequireApproval)
    {
        let mut groups = if r.groups.is_empty() {
            owners.to_vec()
        } else {
            r.groups.clone()
        };
        groups.sort();
        groups.dedup();
        let entry = grouped
            .entry((r.rule.clone(), groups))
            .or_insert_with(|| (result_text(r), 0));
        entry.1 += 1;
    }
    grouped
        .into_iter()
        .map(|((rule, groups), (first, n))| PolicyRequest {
            rule,
            message: if n > 1 {
                format!("{first} (and {} more)", n - 1)
            } else {
                first
            },
            groups,
        })
        .collect()
}

fn result_text(r: &RuleResult) -> String {
    match (&r.resource, r.message.is_empty()) {
        (_, false) => r.message.clone(),
        (Some(a), true) => a.clone(),
        (None, true) => r.rule.clone(),
    }
}

/// A blocking denial ⇒ denied; otherwise any requirement ⇒ approvals required; else allowed.
pub fn status(denied: bool, approvals: &[Requirement]) -> Status {
    if denied {
        Status::Denied
    } else if approvals.is_empty() {
        Status::Allowed
    } else {
        Status::ApprovalsRequired
    }
}

// ---------------------------------------------------------------------------------------------
// Markdown

/// Sections longer than this many lines are collapsed in `<details>`.
pub const COLLAPSE_LINES: usize = 25;

/// Text safe to place in Markdown prose: no HTML, no line breaks.
pub fn md_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\n', '\r'], " ")
}

/// An inline code span that survives backticks inside `s`.
pub fn md_code(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ");
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

/// Wrap `body` in `<details>` when it has more than [`COLLAPSE_LINES`] lines (or always, with
/// `force`).
pub fn collapse(summary: &str, body: &str, force: bool) -> String {
    if force || body.lines().count() > COLLAPSE_LINES {
        format!("<details><summary>{summary}</summary>\n\n{body}\n</details>\n\n")
    } else {
        format!("{body}\n")
    }
}

/// A policy result's documentation link as an absolute URL: a relative one (`docs/policy.md#rule`,
/// as the built-in pack names its pages) joins under `docs_url` (`policy.docs_url`, ending in
/// `/`), so that the link works in a PR comment and in code scanning, which resolve nothing
/// against the repository; absolute ones are kept.
pub fn docs_link(docs_url: &str, docs: &str) -> String {
    if docs.contains("://") {
        docs.to_string()
    } else {
        format!("{docs_url}{}", docs.trim_start_matches("./"))
    }
}

/// The label of a result line.
pub fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "PASS",
        Outcome::Warn => "WARN",
        Outcome::Deny => "DENY",
        Outcome::RequireApproval => "REQUIRE",
        Outcome::Excepted => "EXCEPTED",
    }
}

/// `LABEL rule-id: message (resource)`, with exception and approver notes.
pub fn policy_line(r: &RuleResult) -> String {
    let mut line = format!("{} {}", outcome_label(r.outcome), md_code(&r.rule));
    if !r.message.is_empty() {
        let _ = write!(line, ": {}", md_text(&r.message));
    }
    if let Some(a) = &r.resource {
        let _ = write!(line, " ({})", md_code(a));
    }
    if !r.groups.is_empty() {
        let _ = write!(line, " — approvers {}", md_text(&r.groups.join(", ")));
    }
    if let Some(e) = &r.exception {
        let _ = write!(line, " — exception {}", md_code(e));
    }
    if !r.expired_exceptions.is_empty() {
        let _ = write!(
            line,
            " — expired exception not honoured: {}",
            md_text(&r.expired_exceptions.join(", "))
        );
    }
    if r.error {
        line.push_str(" — policy error, failed closed");
    }
    line
}

/// The `+ ~ - ±` lines of a plan as a `diff` block (GitHub colours `+` and `-`).
pub fn address_lines(s: &PlanSummary) -> String {
    let mut out = String::from("```diff\n");
    for c in &s.changes {
        let sym = match c.actions {
            Action::NoOp if c.importing => "+",
            Action::NoOp => "=",
            a => a.symbol(),
        };
        let mut line = format!("{sym} {}", c.address.replace('\n', " "));
        if let Some(from) = &c.previous_address
            && from != &c.address
        {
            let _ = write!(line, " (moved from {})", from.replace('\n', " "));
        }
        if c.importing {
            line.push_str(" (import)");
        }
        if let Some(r) = &c.reason {
            let _ = write!(line, " [{}]", r.describe());
        }
        // A line starting with ``` would end the block early.
        out.push_str(&line.replace("```", "'''"));
        out.push('\n');
    }
    out.push_str("```\n");
    out
}

fn plan_extras(s: &PlanSummary) -> String {
    let mut out = String::new();
    if !s.replaced.is_empty() {
        let _ = writeln!(out, "**Replaced ({})**\n", s.replaced.len());
        for r in &s.replaced {
            let mut line = format!("- {} ({})", md_code(&r.address), r.actions.name());
            if let Some(reason) = &r.reason {
                let _ = write!(line, ": {}", md_text(reason.describe()));
            }
            if !r.paths.is_empty() {
                let _ = write!(line, "; forced by {}", md_text(&r.paths.join(", ")));
            }
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
    }
    let list = |out: &mut String, title: &str, items: Vec<String>| {
        if !items.is_empty() {
            let _ = writeln!(out, "**{title} ({})**\n", items.len());
            for i in items {
                let _ = writeln!(out, "- {i}");
            }
            out.push('\n');
        }
    };
    list(
        &mut out,
        "Moved",
        s.moved
            .iter()
            .map(|m| format!("{} → {}", md_code(&m.from), md_code(&m.to)))
            .collect(),
    );
    list(
        &mut out,
        "Imported",
        s.imported.iter().map(|i| md_code(&i.address)).collect(),
    );
    list(
        &mut out,
        "Forgotten (left in the cloud, removed from state)",
        s.forgotten.iter().map(|a| md_code(a)).collect(),
    );
    list(
        &mut out,
        "Drifted outside sluice",
        s.drifted
            .iter()
            .map(|d| format!("{} ({})", md_code(&d.address), d.actions.name()))
            .collect(),
    );
    list(
        &mut out,
        "Deferred to a later plan",
        s.deferred
            .iter()
            .map(|d| format!("{} ({})", md_code(&d.address), md_text(d.reason.as_str())))
            .collect(),
    );
    list(
        &mut out,
        "Outputs",
        s.outputs
            .iter()
            .map(|o| {
                format!(
                    "{} ({}{})",
                    md_code(&o.name),
                    o.actions.name(),
                    if o.sensitive { ", sensitive" } else { "" }
                )
            })
            .collect(),
    );
    list(
        &mut out,
        "Plan warnings",
        s.warnings.iter().map(|w| md_text(w)).collect(),
    );
    out
}

/// One approval requirement as a list item.
pub fn approval_line(r: &Requirement) -> String {
    let who = if r.approvers.is_empty() {
        "(no approver named)".to_string()
    } else {
        md_text(&r.approvers.join(" or "))
    };
    let source = match &r.source {
        Source::Risk { risk, configured } if risk == configured => {
            format!("risk {risk} (`approvals.{configured}`)")
        }
        Source::Risk { risk, configured } => {
            format!("risk {risk} (`approvals.{configured}`, the nearest configured level)")
        }
        Source::Codeowners {
            pattern,
            line,
            paths,
        } => format!(
            "CODEOWNERS line {line} {} ({} path{})",
            md_code(pattern),
            paths.len(),
            if paths.len() == 1 { "" } else { "s" }
        ),
        Source::Policy { rule, message } => {
            format!("policy {}: {}", md_code(rule), md_text(message))
        }
    };
    format!("- {} of {who} — {source}", r.count)
}

/// Where the plan came from, shown under the stack heading.
pub struct PlanNote<'a> {
    pub source: &'a str,
}

/// A stack's decision as Markdown blocks (each self-contained: a block never leaves a code
/// fence or `<details>` open), for [`crate::pr::split_parts`] to pack into comments.
pub fn render_stack_markdown(d: &StackDecision, note: Option<PlanNote<'_>>) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut head = format!(
        "### Stack {} — {} — {}\n\n",
        md_code(&d.stack),
        d.risk.risk,
        d.status.as_str()
    );
    if let Some(id) = &d.change_id {
        let _ = writeln!(head, "Change {}\n", md_code(id));
    }
    if let Some(n) = note {
        let _ = writeln!(head, "Plan source: {}\n", md_text(n.source));
    }
    let _ = writeln!(
        head,
        "**Plan** — {} ({} resource change{})\n",
        md_text(&d.plan.headline()),
        d.plan.changes.len(),
        if d.plan.changes.len() == 1 { "" } else { "s" }
    );
    blocks.push(head);
    if !d.plan.changes.is_empty() {
        let lines = address_lines(&d.plan);
        blocks.push(collapse(
            &format!("{} address lines", d.plan.changes.len()),
            &lines,
            false,
        ));
    }
    let extras = plan_extras(&d.plan);
    if !extras.is_empty() {
        blocks.push(collapse(
            "Replaced, moved, imported, drifted",
            &extras,
            false,
        ));
    }

    let mut risk = format!("**Risk {}**\n\n", d.risk.risk);
    for r in &d.risk.reasons {
        let _ = write!(risk, "- {} {}", r.risk, md_text(&r.reason));
        if !r.addresses.is_empty() {
            let shown: Vec<String> = r.addresses.iter().take(5).map(|a| md_code(a)).collect();
            let _ = write!(risk, ": {}", shown.join(", "));
            if r.addresses.len() > 5 {
                let _ = write!(risk, " and {} more", r.addresses.len() - 5);
            }
        }
        risk.push('\n');
    }
    risk.push('\n');
    blocks.push(risk);

    let rec = &d.policy.record;
    let mut policy = format!(
        "**Policy: {}** — {} deny, {} require approval, {} warn, {} excepted, {} pass · decision `{}`\n\n",
        rec.outcome.as_str(),
        rec.count(Outcome::Deny),
        rec.count(Outcome::RequireApproval),
        rec.count(Outcome::Warn),
        rec.count(Outcome::Excepted),
        rec.count(Outcome::Pass),
        short_digest(&d.policy.decision_digest),
    );
    let b = &d.policy_baseline;
    if b.preexisting > 0 {
        let _ = writeln!(
            policy,
            "{} new, {} pre-existing (on resources this plan leaves unchanged; {}).\n",
            b.new,
            b.preexisting,
            if b.preexisting_blocking > 0 {
                format!(
                    "{} blocking by `policy.preexisting`",
                    b.preexisting_blocking
                )
            } else {
                "not blocking".to_string()
            }
        );
    }
    for e in &rec.exceptions_expired {
        let _ = writeln!(
            policy,
            "Expired exception {} matched and was **not** honoured.\n",
            md_code(e)
        );
    }
    blocks.push(policy);
    let mut findings = String::new();
    let mut preexisting = String::new();
    for o in [
        Outcome::Deny,
        Outcome::RequireApproval,
        Outcome::Warn,
        Outcome::Excepted,
    ] {
        for r in rec.results.iter().filter(|r| r.outcome == o) {
            let list = if r.baseline == Some(Baseline::PreExisting) {
                &mut preexisting
            } else {
                &mut findings
            };
            let _ = writeln!(list, "- {}", policy_line(r));
        }
    }
    if !findings.is_empty() {
        let n = findings.lines().count();
        blocks.push(collapse(&format!("{n} policy findings"), &findings, false));
    }
    if !preexisting.is_empty() {
        let n = preexisting.lines().count();
        blocks.push(collapse(
            &format!("{n} pre-existing policy findings (resources this plan leaves unchanged)"),
            &preexisting,
            true,
        ));
    }
    let mut passes = String::new();
    for r in rec.results.iter().filter(|r| r.outcome == Outcome::Pass) {
        let _ = writeln!(passes, "- {}", policy_line(r));
    }
    if !passes.is_empty() {
        let n = passes.lines().count();
        blocks.push(collapse(&format!("{n} passing rules"), &passes, true));
    }

    let mut appr = format!("**Required approvals ({})**\n\n", d.approvals.len());
    if d.approvals.is_empty() {
        appr.push_str("None.\n");
    }
    for r in &d.approvals {
        appr.push_str(&approval_line(r));
        appr.push('\n');
    }
    appr.push('\n');
    blocks.push(appr);
    blocks
}

fn short_digest(d: &str) -> &str {
    let end = d.len().min("sha256:".len() + 12);
    &d[..end]
}

// ---------------------------------------------------------------------------------------------
// SARIF

/// Policy findings of decisions as a SARIF 2.1.0 run (passes are left out; excepted findings
/// carry an external suppression naming the exception). `location` is the artifact each
/// decision's findings point at (the plan JSON file, or the stack's folder).
pub fn decisions_sarif(
    decisions: &[(&StackDecision, &str)],
    tool_version: &str,
    docs_url: &str,
) -> Value {
    let mut rules: BTreeMap<String, Value> = BTreeMap::new();
    let mut results = Vec::new();
    for (d, location) in decisions {
        let unit = SarifUnit {
            kind: UnitKind::Stack,
            name: &d.stack,
            uri: location,
            risk: d.risk.risk,
            decision_digest: &d.policy.decision_digest,
            docs_url,
        };
        push_policy_results(&d.policy.record, &unit, &mut rules, &mut results);
    }
    sarif_run("sluice-policy", tool_version, rules, results)
}

/// The unit (stack or app) a decision record's SARIF results belong to.
pub struct SarifUnit<'a> {
    /// Names the property that holds the unit (`stack` or `app`).
    pub kind: UnitKind,
    pub name: &'a str,
    /// The artifact the findings point at.
    pub uri: &'a str,
    pub risk: sluice_model::risk::RiskLevel,
    pub decision_digest: &'a str,
    /// Where relative documentation links resolve ([`docs_link`]).
    pub docs_url: &'a str,
}

/// Adds the findings of one decision record (passes left out) to a SARIF run's rules and
/// results; excepted findings carry an external suppression naming the exception.
pub fn push_policy_results(
    record: &DecisionRecord,
    unit: &SarifUnit<'_>,
    rules: &mut BTreeMap<String, Value>,
    results: &mut Vec<Value>,
) {
    for r in record.results.iter().filter(|r| r.outcome != Outcome::Pass) {
        rules.entry(r.rule.clone()).or_insert_with(|| {
            let mut rule = json!({
                "id": r.rule,
                "shortDescription": {"text": format!("policy rule {}", r.rule)},
            });
            if let Some(docs) = &r.docs {
                rule["helpUri"] = json!(docs_link(unit.docs_url, docs));
            }
            rule
        });
        let level = match r.outcome {
            Outcome::Deny => "error",
            Outcome::RequireApproval | Outcome::Warn => "warning",
            Outcome::Excepted | Outcome::Pass => "note",
        };
        let mut message = if r.message.is_empty() {
            r.rule.clone()
        } else {
            r.message.clone()
        };
        if r.outcome == Outcome::RequireApproval && !r.groups.is_empty() {
            let _ = write!(message, " (approval by {})", r.groups.join(", "));
        }
        let mut logical = vec![json!({"name": unit.name, "kind": "module"})];
        if let Some(a) = &r.resource {
            logical.push(json!({
                "name": a,
                "fullyQualifiedName": format!("{}/{a}", unit.name),
                "kind": "resource",
            }));
        }
        let mut result = json!({
            "ruleId": r.rule,
            "level": level,
            "message": {"text": message},
            "locations": [{
                "physicalLocation": {"artifactLocation": {"uri": unit.uri}},
                "logicalLocations": logical,
            }],
            "properties": {
                "outcome": r.outcome.as_str(),
                unit.kind.as_str(): unit.name,
                "risk": unit.risk,
                "decisionDigest": unit.decision_digest,
            },
        });
        if let Some(e) = &r.exception {
            result["suppressions"] = json!([{
                "kind": "external",
                "justification": format!("exception {e}"),
            }]);
        }
        results.push(result);
    }
}

/// A SARIF run of `tool` over `rules` and `results`, each result indexed to its rule.
pub fn sarif_run(
    tool: &str,
    tool_version: &str,
    rules: BTreeMap<String, Value>,
    mut results: Vec<Value>,
) -> Value {
    let rules: Vec<Value> = rules.into_values().collect();
    let index: BTreeMap<String, usize> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r["id"].as_str().unwrap_or_default().to_string(), i))
        .collect();
    for r in &mut results {
        let id = r["ruleId"].as_str().unwrap_or_default().to_string();
        r["ruleIndex"] = json!(index[&id]);
    }
    json!({
        "tool": {"driver": {
            "name": tool,
            "version": tool_version,
            "informationUri": sluice_report::INFORMATION_URI,
            "rules": rules,
        }},
        "results": results,
    })
}

/// A SARIF log holding `runs`.
pub fn sarif_log(runs: Vec<Value>) -> Value {
    json!({
        "$schema": sluice_report::SARIF_SCHEMA,
        "version": sluice_report::SARIF_VERSION,
        "runs": runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sluice_model::approval::Approver;
    use sluice_model::record::{BundleRef, EngineRef};
    use sluice_model::risk::RiskLevel;

    fn result(rule: &str, outcome: Outcome, resource: Option<&str>, groups: &[&str]) -> RuleResult {
        RuleResult {
            rule: rule.into(),
            outcome,
            message: format!("{rule} fired"),
            resource: resource.map(str::to_string),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            waived: None,
            exception: None,
            expired_exceptions: vec![],
            docs: None,
            severity: None,
            bundle: "builtin".into(),
            source: "data.x".into(),
            error: false,
            baseline: None,
        }
    }

    fn record(results: Vec<RuleResult>) -> DecisionRecord {
        let mut r = DecisionRecord {
            schema: "sluice.decision/v1".into(),
            engine: EngineRef {
                name: "regorus".into(),
                version: "0".into(),
            },
            bundles: vec![BundleRef {
                name: "builtin".into(),
                version: "sha256:00".into(),
            }],
            input_digest: "sha256:11".into(),
            results,
            exceptions_applied: vec![],
            exceptions_expired: vec![],
            outcome: Decision::Allow,
        };
        r.normalize();
        r
    }

    fn plan(json: &str) -> Plan {
        Plan::parse("t.json", json.as_bytes()).unwrap()
    }

    const PLAN: &str = r#"{"format_version":"1.2","resource_changes":[
      {"address":"aws_db_instance.replica[1]","mode":"managed","type":"aws_db_instance","name":"replica","change":{"actions":["create"],"before":null,"after":{}}},
      {"address":"aws_db_instance.primary","mode":"managed","type":"aws_db_instance","name":"primary","change":{"actions":["no-op"],"before":{},"after":{}}},
      {"address":"aws_iam_role.new","previous_address":"aws_iam_role.old","mode":"managed","type":"aws_iam_role","name":"new","change":{"actions":["no-op"],"before":{},"after":{}}},
      {"address":"aws_s3_bucket.logs","mode":"managed","type":"aws_s3_bucket","name":"logs","change":{"actions":["create","forget"],"before":{},"after":{}}},
      {"address":"aws_kms_key.k","mode":"managed","type":"aws_kms_key","name":"k","change":{"actions":["no-op"],"before":{},"after":{},"importing":{"id":"abc"}}}
    ]}"#;

    /// Only the read replica: a production database topology change.
    const REPLICA_PLAN: &str = r#"{"format_version":"1.2","resource_changes":[
      {"address":"aws_db_instance.replica[1]","mode":"managed","type":"aws_db_instance","name":"replica","change":{"actions":["create"],"before":null,"after":{}}},
      {"address":"aws_db_instance.primary","mode":"managed","type":"aws_db_instance","name":"primary","change":{"actions":["no-op"],"before":{},"after":{}}}
    ]}"#;

    #[test]
    fn facts_follow_the_plan_actions() {
        let facts = resource_facts(&plan(PLAN));
        let got: Vec<(&str, Vec<ChangeAction>)> = facts
            .iter()
            .map(|f| (f.address.as_str(), f.actions.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("aws_db_instance.replica[1]", vec![ChangeAction::Create]),
                ("aws_iam_role.new", vec![ChangeAction::Move]),
                (
                    "aws_s3_bucket.logs",
                    vec![ChangeAction::Replace, ChangeAction::Forget]
                ),
                ("aws_kms_key.k", vec![ChangeAction::Import]),
            ]
        );
    }

    fn matrix() -> ApprovalMatrix {
        let mut levels = BTreeMap::new();
        levels.insert(RiskLevel::R1, vec![Approver::Codeowners]);
        levels.insert(
            RiskLevel::R3,
            vec![Approver::Group {
                group: "@acme/platform".into(),
                count: 1,
            }],
        );
        ApprovalMatrix { levels }
    }

    fn run(p: &Plan, rec: DecisionRecord, env: &str, co: &CodeOwners) -> StackDecision {
        let facts = resource_facts(p);
        let rules = risk::default_rules(&["prod".into()]);
        let paths = vec!["infra/prod/db/main.tf".to_string()];
        decide(DecideInput {
            stack: "prod/db",
            env,
            production: env == "prod",
            change_id: None,
            summary: p.summary(),
            facts: &facts,
            record: rec,
            risk_rules: &rules,
            matrix: &matrix(),
            codeowners: co,
            paths: &paths,
            owners: &["@acme/db-owners".to_string()],
            redaction: &RedactionRules::default(),
            unchanged: &unchanged_addresses(p),
            preexisting: &PreexistingPolicy::default(),
        })
    }

    #[test]
    fn production_database_change_is_r3_with_sources() {
        let (co, _) = CodeOwners::parse("/infra/prod/ @acme/sre\n");
        let rec = record(vec![
            result("db-backup-retention", Outcome::Pass, None, &[]),
            result(
                "stateful-destroy",
                Outcome::RequireApproval,
                Some("a.b"),
                &["@acme/dba"],
            ),
            result(
                "stateful-destroy",
                Outcome::RequireApproval,
                Some("a.c"),
                &["@acme/dba"],
            ),
        ]);
        let d = run(&plan(REPLICA_PLAN), rec, "prod", &co);
        assert_eq!(d.risk.risk, RiskLevel::R3);
        assert_eq!(d.status, Status::ApprovalsRequired);
        let sources: Vec<&Source> = d.approvals.iter().map(|a| &a.source).collect();
        assert!(matches!(
            sources[0],
            Source::Risk {
                risk: RiskLevel::R3,
                configured: RiskLevel::R3
            }
        ));
        assert!(matches!(sources[1], Source::Codeowners { line: 1, .. }));
        assert!(
            matches!(sources[2], Source::Policy { rule, message } if rule == "stateful-destroy" && message.ends_with("(and 1 more)"))
        );
        assert_eq!(d.approvals.len(), 3, "two results of one rule ask once");
        let md = render_stack_markdown(&d, None).concat();
        assert!(md.contains("REQUIRE `stateful-destroy`"), "{md}");
        assert!(md.contains("+ aws_db_instance.replica[1]"), "{md}");
        assert!(md.contains("<details><summary>1 passing rules"), "{md}");
        // The full plan also replaces a bucket in production: destructive, R4.
        let d = run(&plan(PLAN), record(vec![]), "prod", &co);
        assert_eq!(d.risk.risk, RiskLevel::R4);
        assert_eq!(d.risk.reasons[0].addresses, vec!["aws_s3_bucket.logs"]);
    }

    #[test]
    fn deny_wins_and_dev_is_r1() {
        let rec = record(vec![result(
            "db-public-access",
            Outcome::Deny,
            Some("aws_db_instance.replica[1]"),
            &[],
        )]);
        let d = run(&plan(PLAN), rec, "dev", &CodeOwners::empty());
        assert_eq!(d.status, Status::Denied);
        assert_eq!(d.risk.risk, RiskLevel::R1);
        let md = render_stack_markdown(&d, None).concat();
        assert!(
            md.contains(
                "DENY `db-public-access`: db-public-access fired (`aws_db_instance.replica[1]`)"
            ),
            "{md}"
        );
    }

    #[test]
    fn unchanged_resources_are_no_ops_that_neither_move_nor_import() {
        let got = unchanged_addresses(&plan(PLAN));
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            ["aws_db_instance.primary"]
        );
        let same = plan(
            r#"{"format_version":"1.2","resource_changes":[
              {"address":"a.same","mode":"managed","type":"a","name":"same","change":{"actions":["update"],"before":{"x":1},"after":{"x":1}}},
              {"address":"a.other","mode":"managed","type":"a","name":"other","change":{"actions":["update"],"before":{"x":1},"after":{"x":2}}}
            ]}"#,
        );
        assert_eq!(
            unchanged_addresses(&same).into_iter().collect::<Vec<_>>(),
            ["a.same"]
        );
    }

    #[test]
    fn denials_on_unchanged_resources_are_pre_existing_and_do_not_block_by_default() {
        let pre = |rule: &str, outcome: Outcome, resource: &str| {
            result(rule, outcome, Some(resource), &[])
        };
        let rec = || {
            record(vec![
                pre("custom-tags", Outcome::Deny, "aws_db_instance.primary"),
                pre("custom-tags", Outcome::Warn, "aws_iam_role.new"),
                pre("custom-kms", Outcome::Deny, "aws_kms_key.k"),
            ])
        };
        // Only the unchanged primary's denial: pre-existing, not blocking.
        let only_pre = record(vec![pre(
            "custom-tags",
            Outcome::Deny,
            "aws_db_instance.primary",
        )]);
        let d = run(&plan(PLAN), only_pre, "dev", &CodeOwners::empty());
        assert_eq!(d.status, Status::Allowed);
        assert_eq!(
            d.policy.record.outcome,
            Decision::Deny,
            "the engine's outcome is kept"
        );
        assert_eq!(
            d.policy.record.results[0].baseline,
            Some(Baseline::PreExisting)
        );
        assert_eq!(
            (d.policy_baseline.new, d.policy_baseline.preexisting),
            (0, 1)
        );
        assert!(d.policy_baseline.blocking_denials.is_empty());
        let md = render_stack_markdown(&d, None).concat();
        assert!(
            md.contains("0 new, 1 pre-existing")
                && md.contains("<details><summary>1 pre-existing policy findings"),
            "{md}"
        );
        // The record says which is which, and the digest covers it.
        let json = d.policy.record.to_canonical_json();
        assert!(json.contains(r#""baseline":"pre_existing""#), "{json}");

        // A denial on an imported key is new: the change brings it under management.
        let d = run(&plan(PLAN), rec(), "dev", &CodeOwners::empty());
        assert_eq!(d.status, Status::Denied);
        assert_eq!(d.policy_baseline.blocking_denials, ["custom-kms"]);
        let classes: Vec<(&str, Option<Baseline>)> = d
            .policy
            .record
            .results
            .iter()
            .map(|r| (r.resource.as_deref().unwrap(), r.baseline))
            .collect();
        assert!(classes.contains(&("aws_db_instance.primary", Some(Baseline::PreExisting))));
        assert!(classes.contains(&("aws_iam_role.new", Some(Baseline::New))));
        assert!(classes.contains(&("aws_kms_key.k", Some(Baseline::New))));

        // `policy.preexisting: block` makes the old denial block again.
        let mut r = record(vec![pre(
            "custom-tags",
            Outcome::Deny,
            "aws_db_instance.primary",
        )]);
        let block = PreexistingPolicy::from_json(&json!("block")).unwrap();
        let b = judge_results(&mut r, &unchanged_addresses(&plan(PLAN)), &block, "dev");
        assert_eq!(b.blocking_denials, ["custom-tags"]);
        assert_eq!(b.preexisting_blocking, 1);
        // A result the engine could not evaluate is never excused.
        let mut failed = pre("custom-tags", Outcome::Deny, "aws_db_instance.primary");
        failed.error = true;
        let mut r = record(vec![failed]);
        let b = judge_results(
            &mut r,
            &unchanged_addresses(&plan(PLAN)),
            &PreexistingPolicy::default(),
            "dev",
        );
        assert_eq!(b.blocking_denials, ["custom-tags"]);
    }

    #[test]
    fn require_without_groups_falls_back_to_owners() {
        let rec = record(vec![result(
            "main.require",
            Outcome::RequireApproval,
            None,
            &[],
        )]);
        let req = policy_requests(&rec, &["@acme/owners".into()]);
        assert_eq!(req.len(), 1);
        assert_eq!(req[0].groups, vec!["@acme/owners".to_string()]);
    }

    #[test]
    fn messages_are_redacted_before_they_are_kept() {
        let mut r = result("main.deny", Outcome::Deny, None, &[]);
        r.message = "db password = hunter2-canary-value".into();
        let d = run(&plan(PLAN), record(vec![r]), "dev", &CodeOwners::empty());
        let text = serde_json::to_string(&d).unwrap();
        assert!(!text.contains("hunter2-canary-value"), "{text}");
    }

    #[test]
    fn long_sections_collapse_and_blocks_close_what_they_open() {
        let mut changes = String::new();
        for i in 0..40 {
            if i > 0 {
                changes.push(',');
            }
            changes.push_str(&format!(r#"{{"address":"aws_s3_bucket.b{i}","mode":"managed","type":"aws_s3_bucket","name":"b{i}","change":{{"actions":["delete"],"before":{{}},"after":null}}}}"#));
        }
        let p = plan(&format!(
            r#"{{"format_version":"1.2","resource_changes":[{changes}]}}"#
        ));
        let d = run(&p, record(vec![]), "prod", &CodeOwners::empty());
        assert_eq!(d.risk.risk, RiskLevel::R4);
        let blocks = render_stack_markdown(&d, None);
        assert!(
            blocks
                .iter()
                .any(|b| b.starts_with("<details><summary>40 address lines"))
        );
        for b in &blocks {
            assert!(b.matches("```").count().is_multiple_of(2), "{b}");
            assert_eq!(
                b.matches("<details>").count(),
                b.matches("</details>").count()
            );
        }
    }

    #[test]
    fn sarif_leaves_passes_out_and_suppresses_excepted() {
        let mut ex = result(
            "sg-open-ingress",
            Outcome::Excepted,
            Some("aws_security_group.x"),
            &[],
        );
        ex.exception = Some("EXC-1".into());
        let rec = record(vec![
            result("db-public-access", Outcome::Pass, None, &[]),
            result("db-public-access", Outcome::Deny, Some("a.b"), &[]),
            ex,
        ]);
        let d = run(&plan(PLAN), rec, "dev", &CodeOwners::empty());
        let run = decisions_sarif(&[(&d, "plan.json")], "0.1.0", "https://docs.example/");
        let results = run["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["level"], "error");
        assert_eq!(
            results[1]["suppressions"][0]["justification"],
            "exception EXC-1"
        );
        assert_eq!(run["tool"]["driver"]["rules"].as_array().unwrap().len(), 2);
    }

    fn outcome_strategy() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::Pass),
            Just(Outcome::Warn),
            Just(Outcome::Deny),
            Just(Outcome::RequireApproval),
            Just(Outcome::Excepted),
        ]
    }

    proptest! {
        /// Status follows the record: any deny denies; otherwise approvals are required exactly
        /// when some requirement exists, and every require_approval result yields one.
        #[test]
        fn status_follows_outcomes(outcomes in proptest::collection::vec(outcome_strategy(), 0..12), owners in proptest::bool::ANY) {
            let results: Vec<RuleResult> = outcomes.iter().enumerate().map(|(i, o)| result(&format!("r{}", i % 3), *o, Some(&format!("a.b{i}")), &[])).collect();
            let rec = record(results);
            let co = if owners { CodeOwners::parse("* @acme/all\n").0 } else { CodeOwners::empty() };
            let d = run(&plan(PLAN), rec, "dev", &co);
            let deny = outcomes.contains(&Outcome::Deny);
            let requires = outcomes.contains(&Outcome::RequireApproval);
            prop_assert_eq!(d.status == Status::Denied, deny);
            if !deny {
                prop_assert_eq!(d.status == Status::ApprovalsRequired, owners || requires);
            }
            let policy_reqs = d.approvals.iter().filter(|a| matches!(a.source, Source::Policy { .. })).count();
            let rules_requiring: std::collections::BTreeSet<usize> = outcomes.iter().enumerate().filter(|(_, o)| **o == Outcome::RequireApproval).map(|(i, _)| i % 3).collect();
            prop_assert_eq!(policy_reqs, rules_requiring.len());
        }

        /// Every resource change that changes something becomes one fact; no-ops do not.
        #[test]
        fn facts_cover_every_changing_resource(n in 0usize..20, kinds in proptest::collection::vec(0usize..4, 20)) {
            let actions = [r#"["create"]"#, r#"["no-op"]"#, r#"["delete","create"]"#, r#"["read"]"#];
            let items: Vec<String> = (0..n).map(|i| format!(r#"{{"address":"aws_instance.i{i}","mode":"managed","type":"aws_instance","name":"i{i}","change":{{"actions":{},"before":{{}},"after":{{}}}}}}"#, actions[kinds[i]])).collect();
            let p = plan(&format!(r#"{{"format_version":"1.2","resource_changes":[{}]}}"#, items.join(",")));
            let facts = resource_facts(&p);
            let expected = (0..n).filter(|i| kinds[*i] != 1).count();
            prop_assert_eq!(facts.len(), expected);
            prop_assert!(facts.iter().all(|f| !f.actions.is_empty()));
        }
    }
}
