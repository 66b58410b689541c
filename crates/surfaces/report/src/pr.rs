//! The PR report (`sluice pr`) as one GitHub comment, as several parts, as plain text and as
//! SARIF.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;
use sluice_flow::affected;
use sluice_flow::decide::StackDecision;
use sluice_flow::pr::{PlanState, PrReport, StackReport, StageStatus};
use sluice_flow::validation::ValidationReport;
use sluice_model::affected::UnitStatus;

use crate::apps;
use crate::markdown::{
    COMMENT_LIMIT, collapse, fit_one_comment, md_code, md_text, plain_text, split_parts,
};
use crate::policy_sarif::{decisions_sarif, sarif_log};
use crate::stack::{PlanNote, render_stack_markdown_with};

fn status_word(s: UnitStatus) -> &'static str {
    match s {
        UnitStatus::Added => "added",
        UnitStatus::Modified => "modified",
        UnitStatus::Deleted => "deleted",
        UnitStatus::Dependent => "dependent",
    }
}

/// The report as one PR comment (the default Markdown): under GitHub's comment limit, summary
/// first, sections that do not fit cut or left out with a line saying so
/// ([`fit_one_comment`]); [`render_markdown_parts`] (`--parts-dir`) has everything.
pub fn render_markdown(r: &PrReport) -> String {
    fit_one_comment(&sections(r), COMMENT_LIMIT)
}

/// The report as plain text for a terminal: the Markdown's content without its markup.
pub fn render_text(r: &PrReport) -> String {
    plain_text(&sections(r).concat())
}

/// The report as PR comments, each under GitHub's comment limit, split at section
/// boundaries.
pub fn render_markdown_parts(r: &PrReport) -> Vec<String> {
    split_parts(&sections(r), COMMENT_LIMIT)
}

/// The report's Markdown blocks in order. Each block is self-contained (closes every code
/// fence and `<details>` it opens), so the report may be cut between any two.
pub fn sections(r: &PrReport) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut out = String::new();
    let pr = r.pr.map(|n| format!(" PR #{n}")).unwrap_or_default();
    let _ = writeln!(out, "## sluice: {}{pr} — {}\n", r.org, r.verdict.as_str());
    let _ = writeln!(
        out,
        "`{}` → `{}`\n",
        affected::short(&r.base),
        affected::short(&r.head)
    );
    for e in &r.org_errors {
        let _ = writeln!(
            out,
            "> **Inconsistent org:** {} (fix it before this change can go on)\n",
            md_text(e)
        );
    }
    for n in &r.notes {
        let _ = writeln!(out, "> **Note:** {}\n", md_text(n));
    }
    blocks.push(out);
    blocks.extend(backports_block(r));

    let mut out = format!("### Changes ({})\n\n", r.changes.len());
    if r.changes.is_empty() {
        out.push_str("No stack or app is affected.\n\n");
        blocks.push(out);
    } else {
        let mut table = String::from("| unit | status | change id | owners |\n|---|---|---|---|\n");
        for c in &r.changes {
            let _ = writeln!(
                table,
                "| {} `{}` | {} | `{}` | {} |",
                c.kind,
                c.id,
                status_word(c.status),
                c.change_id,
                c.owners.join(" ")
            );
        }
        out.push_str(&collapse(
            &format!("{} affected units", r.changes.len()),
            &table,
            false,
        ));
        blocks.push(out);
    }

    let mut why = String::new();
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
        let _ = writeln!(why, "- `{}`: {}", u.id, reasons.join("; "));
    }
    blocks.push(format!(
        "### Why\n\n{}",
        collapse("why each unit is affected", &why, false)
    ));

    let mut out =
        String::from("### Stages\n\n| # | stage | status | detail |\n|---|---|---|---|\n");
    for s in &r.stages {
        let status = match s.status {
            StageStatus::Passed => "passed",
            StageStatus::Blocked => "**blocked**",
            StageStatus::Partial => "partial",
            StageStatus::Pending => "pending",
            StageStatus::NotRun => "not run",
        };
        let _ = writeln!(
            out,
            "| {} | {:?} | {status} | {} |",
            s.number,
            s.stage,
            md_text(&s.detail)
        );
    }
    out.push('\n');
    blocks.push(out);

    for s in &r.stacks {
        blocks.extend(stack_blocks(s));
    }
    // One block per app: a long app section is cut by the splitter like any other block.
    blocks.extend(r.apps.iter().map(|a| apps::app_markdown(a, &r.docs_url)));

    blocks.extend(validation_block(&r.validation));
    if !r.reviewers.is_empty() {
        blocks.push(format!(
            "### Required reviewers (CODEOWNERS)\n\n{}\n\n",
            r.reviewers.join(", ")
        ));
    }
    let mut warnings: Vec<String> = r
        .affected
        .warnings
        .iter()
        .map(|w| format!("`{}:{}`: {}", w.file, w.line, md_text(&w.message)))
        .collect();
    warnings.extend(r.warnings.iter().map(|w| md_text(w)));
    if !warnings.is_empty() {
        let mut out = format!("### Warnings ({})\n\n", warnings.len());
        for w in warnings {
            let _ = writeln!(out, "- {w}");
        }
        out.push('\n');
        blocks.push(out);
    }
    blocks
}

/// Open backport items: what a break-glass applied that Git does not say yet. Near the top,
/// since a change to the same stack either is the backport or would undo it.
fn backports_block(r: &PrReport) -> Option<String> {
    if r.backports.is_empty() {
        return None;
    }
    let mut out = format!(
        "### Pending backports ({})\n\nBreak-glass applies that Git must be brought in line with (`sluice backports`):\n\n",
        r.backports.len()
    );
    for b in &r.backports {
        let i = &b.item;
        let _ = writeln!(
            out,
            "- `{}` `{}`: break-glass by {} ({} apply(s), ended {}), reason: {}{}",
            i.grant,
            i.unit,
            md_text(&i.opened_by),
            i.uses,
            i.ended_at,
            md_text(&i.reason),
            if b.touched_by_this_change {
                " — **this change touches it**: merged and recorded, it resolves the item"
            } else {
                ""
            }
        );
    }
    out.push('\n');
    Some(out)
}

/// The validation findings: those the change introduced first and open, pre-existing ones
/// collapsed, fixed ones credited.
fn validation_block(v: &ValidationReport) -> Option<String> {
    use sluice_model::baseline::Baseline;
    let fixed = v.baseline.as_ref().map_or(&[][..], |b| b.fixed.as_slice());
    if v.findings.is_empty() && fixed.is_empty() {
        return None;
    }
    let list = |class: Option<Baseline>| {
        let mut out = String::new();
        let items = v.findings.iter().chain(fixed).filter(|f| match class {
            Some(Baseline::New) => {
                f.baseline != Some(Baseline::PreExisting) && f.baseline != Some(Baseline::Fixed)
            }
            c => f.baseline == c,
        });
        for f in items {
            let _ = writeln!(
                out,
                "- {} `{}` at `{}:{}:{}`: {}",
                f.severity.as_str(),
                f.rule,
                f.file,
                f.line,
                f.col,
                md_text(&f.message)
            );
        }
        out
    };
    let new = list(Some(Baseline::New));
    let mut out = format!("### Validation findings ({})\n\n", v.findings.len());
    match &v.baseline {
        None => out.push_str(&collapse("findings", &new, false)),
        Some(b) => {
            let _ = writeln!(
                out,
                "Against the merge base `{}`: {} new, {} pre-existing{}, {} fixed.\n",
                affected::short(&b.base),
                b.new,
                b.preexisting,
                if b.preexisting_blocking > 0 {
                    format!(
                        " ({} blocking by `policy.preexisting`)",
                        b.preexisting_blocking
                    )
                } else {
                    String::new()
                },
                b.fixed.len()
            );
            if !new.is_empty() {
                out.push_str(&collapse("new findings", &new, false));
            }
            let pre = list(Some(Baseline::PreExisting));
            if !pre.is_empty() {
                out.push_str(&collapse(
                    &format!(
                        "{} pre-existing (not introduced by this change)",
                        b.preexisting - b.ignored
                    ),
                    &pre,
                    true,
                ));
            }
            let gone = list(Some(Baseline::Fixed));
            if !gone.is_empty() {
                out.push_str(&collapse(
                    &format!("{} fixed by this change", b.fixed.len()),
                    &gone,
                    true,
                ));
            }
        }
    }
    Some(out)
}

/// One stack's stage 4–6 blocks, after a warning when the stack is not healthy.
fn stack_blocks(s: &StackReport) -> Vec<String> {
    let mut blocks = stage_blocks(s);
    if let Some(h) = &s.health
        && let Some(warning) = health_block(&s.id, h)
    {
        blocks.insert(0, warning);
    }
    blocks
}

/// What a degraded or recovering stack's owners must know before anything else.
fn health_block(unit: &str, health: &sluice_model::apply::StackHealth) -> Option<String> {
    use sluice_model::apply::StackHealth;
    let (state, d) = match health {
        StackHealth::Healthy => return None,
        StackHealth::Degraded { degradation } => ("degraded", degradation),
        StackHealth::Recovering { degradation, .. } => ("recovering", degradation),
    };
    let error = serde_json::to_value(d.error)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut out = format!(
        "> **Stack {} is {state}**: the apply of {} (fencing token {}) ended with `{}` at {}; \
         its lock is kept and applies are refused until it is recovered (`sluice recover {} \
         --refresh-only`, then a new plan, approval and apply).\n",
        md_code(unit),
        md_code(&d.change),
        d.token,
        md_text(&error),
        d.at,
        unit
    );
    if !d.excerpt.is_empty() {
        out.push('\n');
        out.push_str(&collapse(
            "engine output (last lines, redacted)",
            &format!("```text\n{}\n```\n", d.excerpt.replace("```", "'''")),
            true,
        ));
    }
    out.push('\n');
    Some(out)
}

fn stage_blocks(s: &StackReport) -> Vec<String> {
    match (&s.plan, &s.decision) {
        (PlanState::Planned { source }, Some(d)) => {
            let text = source.describe();
            render_stack_markdown_with(
                d,
                Some(PlanNote { source: &text }),
                s.approval_status.as_ref(),
            )
        }
        (
            PlanState::Failed {
                class,
                message,
                hint,
                stderr_excerpt,
            },
            _,
        ) => {
            let mut out = format!(
                "### Stack {} — **plan failed** ({})\n\nChange {}\n\n{}\n\n",
                md_code(&s.id),
                md_text(class),
                md_code(&s.change_id.to_string()),
                md_text(message)
            );
            if let Some(h) = hint {
                let _ = writeln!(out, "Hint: {}\n", md_text(h));
            }
            if !stderr_excerpt.is_empty() {
                let body = format!(
                    "```text\n{}\n```\n",
                    stderr_excerpt.join("\n").replace("```", "'''")
                );
                out.push_str(&collapse("stderr (last lines, redacted)", &body, true));
            }
            out.push_str("Policy and approvals: not run (no plan).\n\n");
            vec![out]
        }
        (PlanState::NotRun { .. }, _) | (PlanState::Planned { .. }, None) => {
            let reason = match &s.plan {
                PlanState::NotRun { reason } => reason.as_str(),
                _ => "",
            };
            vec![format!(
                "### Stack {} — plan not run\n\nChange {}\n\nStage 4 (plan) not run: {}. Policy, risk and approvals are not decided without a plan.\n\n",
                md_code(&s.id),
                md_code(&s.change_id.to_string()),
                md_text(reason)
            )]
        }
    }
}

/// The report as SARIF: validation findings (one run), policy findings of every decided
/// stack (another run), located at the stack's folder, and, when apps are affected, their
/// manifest policy and schema findings (a third run), located at the app's folder.
pub fn render_sarif(r: &PrReport, tool_version: &str) -> Value {
    let mut runs = Vec::new();
    let validation = crate::to_sarif(&r.validation.findings, tool_version);
    if let Some(run) = validation["runs"].get(0) {
        runs.push(run.clone());
    }
    let paths: BTreeMap<&str, &str> = r
        .affected
        .stacks
        .iter()
        .map(|u| (u.id.as_str(), u.path.as_str()))
        .collect();
    let decided: Vec<(&StackDecision, &str)> = r
        .stacks
        .iter()
        .filter_map(|s| {
            s.decision
                .as_ref()
                .map(|d| (d, paths.get(s.id.as_str()).copied().unwrap_or(".")))
        })
        .collect();
    runs.push(decisions_sarif(&decided, tool_version, &r.docs_url));
    if !r.apps.is_empty() {
        runs.push(apps::apps_sarif(&r.apps, tool_version, &r.docs_url));
    }
    sarif_log(runs)
}
