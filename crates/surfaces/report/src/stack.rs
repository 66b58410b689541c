//! A stack's decision (plan, risk, policy, approvals) as Markdown blocks.

use std::fmt::Write as _;

use sluice_flow::decide::StackDecision;
use sluice_model::approval::{Requirement, Source};
use sluice_model::approval_status::{ApprovalStatus, Met, RequirementStatus};
use sluice_model::baseline::Baseline;
use sluice_model::plan::{Action, PlanSummary};
use sluice_model::record::{Outcome, RuleResult};

use crate::markdown::{collapse, md_code, md_text};

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
    render_stack_markdown_with(d, note, None)
}

/// [`render_stack_markdown`], with each approval requirement marked met (by whom, for which
/// digest) or missing when the recorded approvals were read (`status`).
pub fn render_stack_markdown_with(
    d: &StackDecision,
    note: Option<PlanNote<'_>>,
    status: Option<&ApprovalStatus>,
) -> Vec<String> {
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
    for (i, r) in d.approvals.iter().enumerate() {
        appr.push_str(&approval_line(r));
        if let Some(st) = status.and_then(|s| s.requirements.get(i)) {
            appr.push_str(&requirement_status(st));
        }
        appr.push('\n');
    }
    if let Some(st) = status {
        appr.push_str(&approval_status_footer(st));
    }
    appr.push('\n');
    blocks.push(appr);
    blocks
}

/// ` — **met** by alice (as `@acme/platform`) for plan `sha256:…`` or ` — **missing**: 1 more`.
pub fn requirement_status(r: &RequirementStatus) -> String {
    let by: Vec<String> =
        r.by.iter()
            .map(|b| {
                format!(
                    "{} (as {}) for {}",
                    md_text(&b.person),
                    md_code(&b.via),
                    md_code(short_digest(&b.digest))
                )
            })
            .collect();
    match r.status {
        Met::Met => format!(" — **met** by {}", by.join(", ")),
        Met::Missing if by.is_empty() => format!(" — **missing**: {} more", r.needed),
        Met::Missing => format!(
            " — **missing**: {} more (so far {})",
            r.needed,
            by.join(", ")
        ),
    }
}

/// What the recorded approvals were judged against, and those that do not count.
fn approval_status_footer(s: &ApprovalStatus) -> String {
    let mut out = format!(
        "\nRecorded approvals judged against plan {} and decision {}: {}.\n",
        md_code(short_digest(&s.digest)),
        md_code(short_digest(&s.decision_digest)),
        if s.all_met {
            "every requirement is met"
        } else {
            "approvals missing"
        }
    );
    for v in &s.void {
        let _ = writeln!(
            out,
            "- approval by {} does not count: {}",
            md_text(&v.person),
            md_text(&v.reasons.join("; "))
        );
    }
    out
}

fn short_digest(d: &str) -> &str {
    let end = d.len().min("sha256:".len() + 12);
    &d[..end]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;
    use sluice_flow::decide::{DecideInput, decide, resource_facts, unchanged_addresses};
    use sluice_model::approval::ApprovalMatrix;
    use sluice_model::baseline::PreexistingPolicy;
    use sluice_model::codeowners::CodeOwners;
    use sluice_model::plan::Plan;
    use sluice_model::record::DecisionRecord;
    use sluice_model::redact::RedactionRules;
    use sluice_model::risk;

    /// A plan of `changes` resource changes (`[address, action]`).
    pub(crate) fn plan(changes: &[(&str, &str)]) -> Plan {
        let rc: Vec<_> = changes
            .iter()
            .map(|(address, action)| {
                let (ty, name) = address.split_once('.').unwrap();
                json!({"address": address, "mode": "managed", "type": ty, "name": name,
                       "change": {"actions": [action], "before": {}, "after": {}}})
            })
            .collect();
        let doc = json!({"format_version": "1.2", "resource_changes": rc});
        Plan::parse("t.json", doc.to_string().as_bytes()).unwrap()
    }

    /// A decision record holding `results` (`[rule, outcome, resource]`), as the engine writes it.
    pub(crate) fn record(results: &[(&str, &str, Option<&str>)]) -> DecisionRecord {
        let results: Vec<_> = results
            .iter()
            .map(|(rule, outcome, resource)| {
                json!({"rule": rule, "outcome": outcome, "message": format!("{rule} fired"),
                       "resource": resource, "bundle": "builtin", "source": "data.x"})
            })
            .collect();
        let mut r: DecisionRecord = serde_json::from_value(json!({
            "schema": "sluice.decision/v1",
            "engine": {"name": "regorus", "version": "0"},
            "bundles": [{"name": "builtin", "version": "sha256:00"}],
            "input_digest": "sha256:11",
            "results": results,
            "exceptions_applied": [],
            "exceptions_expired": [],
            "outcome": "allow",
        }))
        .unwrap();
        r.normalize();
        r
    }

    pub(crate) fn decision(p: &Plan, rec: DecisionRecord, env: &str) -> StackDecision {
        let facts = resource_facts(p);
        let rules = risk::default_rules(&["prod".into()]);
        decide(DecideInput {
            stack: "prod/db",
            env,
            production: env == "prod",
            change_id: None,
            summary: p.summary(),
            facts: &facts,
            record: rec,
            risk_rules: &rules,
            matrix: &ApprovalMatrix::default(),
            codeowners: &CodeOwners::empty(),
            paths: &[],
            owners: &["@acme/db-owners".to_string()],
            redaction: &RedactionRules::default(),
            unchanged: &unchanged_addresses(p),
            preexisting: &PreexistingPolicy::default(),
        })
    }

    #[test]
    fn findings_addresses_and_passes_are_shown() {
        let p = plan(&[("aws_db_instance.replica", "create")]);
        let rec = record(&[
            ("db-backup-retention", "pass", None),
            ("db-public-access", "deny", Some("aws_db_instance.replica")),
            ("stateful-destroy", "require_approval", Some("a.b")),
        ]);
        let md = render_stack_markdown(&decision(&p, rec, "dev"), None).concat();
        assert!(
            md.contains(
                "DENY `db-public-access`: db-public-access fired (`aws_db_instance.replica`)"
            ),
            "{md}"
        );
        assert!(md.contains("REQUIRE `stateful-destroy`"), "{md}");
        assert!(md.contains("+ aws_db_instance.replica"), "{md}");
        assert!(md.contains("<details><summary>1 passing rules"), "{md}");
    }

    /// The approvals block with the recorded approvals read: one requirement met (by whom, for
    /// which digest), one missing, a void approval with its reason.
    #[test]
    fn approval_requirements_show_met_by_whom_or_missing() {
        use sluice_model::approval_status::{MetBy, VoidApproval};
        let p = plan(&[("aws_db_instance.replica", "create")]);
        let mut d = decision(&p, record(&[]), "prod");
        d.approvals = ["@acme/platform", "@acme/security"]
            .iter()
            .map(|g| Requirement {
                approvers: vec![g.to_string()],
                count: 1,
                source: Source::Risk {
                    risk: sluice_model::risk::RiskLevel::R3,
                    configured: sluice_model::risk::RiskLevel::R3,
                },
            })
            .collect();
        let digest = format!("sha256:{}", "ab".repeat(32));
        let requirements: Vec<RequirementStatus> = d
            .approvals
            .iter()
            .enumerate()
            .map(|(i, r)| RequirementStatus {
                approvers: r.approvers.clone(),
                count: r.count,
                status: if i == 0 { Met::Met } else { Met::Missing },
                by: if i == 0 {
                    vec![MetBy {
                        person: "alice".into(),
                        via: r.approvers[0].clone(),
                        digest: digest.clone(),
                    }]
                } else {
                    vec![]
                },
                needed: if i == 0 { 0 } else { r.count },
            })
            .collect();
        let status = ApprovalStatus {
            digest: digest.clone(),
            decision_digest: format!("sha256:{}", "cd".repeat(32)),
            all_met: false,
            requirements,
            void: vec![VoidApproval {
                person: "bob".into(),
                reasons: vec!["the approver authored the change".into()],
            }],
        };
        let blocks = render_stack_markdown_with(&d, None, Some(&status));
        let block = blocks
            .iter()
            .find(|b| b.starts_with("**Required approvals"))
            .expect("an approvals block");
        insta::assert_snapshot!("approvals_with_status", block);
        // Without the status, the block is as before.
        let plain = render_stack_markdown(&d, None);
        assert!(!plain.concat().contains("**met**"));
    }

    #[test]
    fn pre_existing_findings_are_counted_and_collapsed() {
        let p = plan(&[
            ("aws_db_instance.primary", "no-op"),
            ("aws_s3_bucket.a", "create"),
        ]);
        let rec = record(&[("custom-tags", "deny", Some("aws_db_instance.primary"))]);
        let d = decision(&p, rec, "dev");
        let md = render_stack_markdown(&d, None).concat();
        assert!(
            md.contains("0 new, 1 pre-existing")
                && md.contains("<details><summary>1 pre-existing policy findings"),
            "{md}"
        );
    }

    #[test]
    fn long_sections_collapse_and_blocks_close_what_they_open() {
        let addresses: Vec<String> = (0..40).map(|i| format!("aws_s3_bucket.b{i}")).collect();
        let changes: Vec<(&str, &str)> = addresses.iter().map(|a| (a.as_str(), "delete")).collect();
        let d = decision(&plan(&changes), record(&[]), "prod");
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
}
