//! The demo org end to end: the PR report a reviewer sees, pinned as snapshots. The demo writes
//! commits with fixed authors and times, so its commit ids (and thus the report) are stable.

use sluice_model::affected::UnitStatus;
use sluice_model::risk::RiskLevel;
use sluice_pipeline::{check, decide, demo, pr};

#[test]
fn demo_pr_report() {
    let dir = tempfile::tempdir().unwrap();
    let run = demo::run(&dir.path().join("org"), demo::PlanMode::DemoWritten).unwrap();
    let report = &run.report;

    let stacks: Vec<(&str, UnitStatus)> = report
        .affected
        .stacks
        .iter()
        .map(|u| (u.id.as_str(), u.status))
        .collect();
    assert_eq!(
        stacks,
        vec![("prod/ap-southeast-1/rds-payments", UnitStatus::Modified)]
    );
    let apps: Vec<&str> = report.affected.apps.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(apps, vec!["prod-ap-southeast-1/payments"]);
    assert!(!report.blocked);
    assert!(
        report.affected.warnings.is_empty(),
        "{:?}",
        report.affected.warnings
    );

    // Stage 4–6 for the read replica: the demo wrote the plan and says so; R3; approvals.
    assert_eq!(run.written.len(), 1);
    assert!(
        report.notes[0].contains("written by `sluice demo`")
            && report.notes[0].contains("not by an engine"),
        "{:?}",
        report.notes
    );
    let stack = &report.stacks[0];
    let d = stack
        .decision
        .as_ref()
        .expect("the demo's stack is decided");
    assert_eq!(d.risk.risk, RiskLevel::R3);
    assert_eq!(
        d.risk.reasons[0].reason,
        "production database topology change"
    );
    assert_eq!(d.plan.changes.len(), 1);
    assert_eq!(d.plan.changes[0].address, "aws_db_instance.replica[1]");
    assert_eq!(d.status, decide::Status::ApprovalsRequired);
    let approvers: Vec<String> = d.approvals.iter().map(|a| a.approvers.join(" ")).collect();
    assert_eq!(
        approvers,
        vec!["@acme/platform", "@acme/security", "@acme/payments-dba"]
    );
    assert_eq!(report.verdict, pr::Verdict::ApprovalsRequired);
    assert_eq!(report.exit_code(), 0);

    let markdown = pr::render_markdown(report);
    assert!(markdown.contains("not by an engine"), "{markdown}");
    // The demo folder is a temporary one; its plan paths are shown as `[demo]`.
    let markdown = markdown.replace(&run.repo.dir.display().to_string(), "[demo]");
    insta::assert_snapshot!("demo_pr_markdown", redact_digests(&markdown));
    insta::assert_json_snapshot!("demo_affected_json", report.affected);
}

/// Decision digests cover the policy bundles' digests: they change whenever a built-in rule
/// does, which is not what these snapshots pin.
fn redact_digests(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("decision `sha256:") {
        let start = i + "decision `sha256:".len();
        out.push_str(&rest[..start]);
        let end = rest[start..].find('`').map_or(rest.len(), |j| start + j);
        out.push_str("[digest]");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The PR report's JSON validates against `docs/pr-report.schema.json`.
#[test]
fn demo_report_json_matches_the_documented_schema() {
    let dir = tempfile::tempdir().unwrap();
    let run = demo::run(&dir.path().join("org"), demo::PlanMode::DemoWritten).unwrap();
    let schema_text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../docs/pr-report.schema.json"
    ))
    .unwrap();
    let schema: serde_json::Value = serde_json::from_str(&schema_text).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let instance = serde_json::to_value(&run.report).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // And the schema is not vacuous: a report without its verdict, or with an unknown stage
    // status, is rejected.
    let mut broken = instance.clone();
    broken.as_object_mut().unwrap().remove("verdict");
    assert!(!validator.is_valid(&broken));
    let mut broken = instance.clone();
    broken["stages"][0]["status"] = serde_json::json!("maybe");
    assert!(!validator.is_valid(&broken));
    let mut broken = instance;
    broken["stacks"][0]["decision"]["risk"]["risk"] = serde_json::json!("R9");
    assert!(!validator.is_valid(&broken));
}

/// Without plans the same PR shows stage 4 as not run, never invented.
#[test]
fn demo_without_plans_leaves_stage_4_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let built = demo::build(&dir.path().join("org")).unwrap();
    let report = pr::run(
        &built.dir,
        &built.base,
        &built.head,
        Some(demo::org::PR_NUMBER),
    )
    .unwrap();
    assert!(report.stacks[0].decision.is_none());
    assert_eq!(report.verdict, pr::Verdict::Undecided);
    let plan_stage = report.stages.iter().find(|s| s.number == 4).unwrap();
    assert!(matches!(plan_stage.status, pr::StageStatus::NotRun));
}

/// A huge report is split into comments under GitHub's limit, at section boundaries.
#[test]
fn huge_report_splits_into_parts_under_the_comment_limit() {
    let dir = tempfile::tempdir().unwrap();
    let run = demo::run(&dir.path().join("org"), demo::PlanMode::DemoWritten).unwrap();
    let mut report = run.report;
    let template = report.stacks[0].clone();
    let mut decision = template.decision.clone().unwrap();
    let line = decision.plan.changes[0].clone();
    decision.plan.changes = (0..3_000)
        .map(|i| {
            let mut l = line.clone();
            l.address = format!("aws_db_instance.replica[{i}]");
            l
        })
        .collect();
    report.stacks = (0..40)
        .map(|i| {
            let mut s = template.clone();
            s.id = format!("prod/ap-southeast-1/stack-{i:02}");
            let mut d = decision.clone();
            d.stack = s.id.clone();
            s.decision = Some(d);
            s
        })
        .collect();
    let parts = pr::render_markdown_parts(&report);
    assert!(parts.len() > 10, "{} parts", parts.len());
    for (i, p) in parts.iter().enumerate() {
        assert!(
            p.chars().count() <= pr::COMMENT_LIMIT,
            "part {i}: {}",
            p.len()
        );
        assert!(
            p.matches("```").count().is_multiple_of(2),
            "part {i} leaves a fence open"
        );
        assert_eq!(
            p.matches("<details>").count(),
            p.matches("</details>").count(),
            "part {i}"
        );
    }
    let all = parts.concat();
    for i in 0..40 {
        assert!(all.contains(&format!("### Stack `prod/ap-southeast-1/stack-{i:02}`")));
    }
    // Section boundaries: a stack heading always starts a line.
    assert!(!all.contains("|### Stack"));
    assert!(parts[0].starts_with("*Part 1 of "));
}

#[test]
fn demo_is_rerunnable_and_refuses_foreign_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("org");
    let first = demo::build(&target).unwrap();
    let second = demo::build(&target).unwrap();
    assert_eq!(first.head, second.head, "same input, same commits");

    let foreign = dir.path().join("mine");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "keep me").unwrap();
    assert!(demo::build(&foreign).is_err());
    assert_eq!(
        std::fs::read_to_string(foreign.join("notes.txt")).unwrap(),
        "keep me"
    );
}

/// `sluice check` on the demo's plan with the demo repository: the same decision as the PR
/// report, as its own Markdown report.
#[test]
fn check_markdown_of_the_demo_plan() {
    let dir = tempfile::tempdir().unwrap();
    let run = demo::run(&dir.path().join("org"), demo::PlanMode::DemoWritten).unwrap();
    let report = check::run(&check::CheckOptions {
        plan_json: run.written[0].clone(),
        stack: "prod/ap-southeast-1/rds-payments".into(),
        env: None,
        repo: Some(run.repo.dir.clone()),
        rev: demo::org::PR_BRANCH.into(),
        now: Some(demo::demo_now()),
    })
    .unwrap();
    assert_eq!(report.exit_code(), 0);
    let pr_decision = run.report.stacks[0].decision.as_ref().unwrap();
    // The PR report's decision carries the correlation id and commits in its policy input,
    // so the records differ in their input digest only; the results are the same.
    assert_eq!(
        report.decision.policy.record.results,
        pr_decision.policy.record.results
    );
    assert_eq!(report.decision.risk, pr_decision.risk);
    assert_eq!(report.decision.approvals, pr_decision.approvals);
    let markdown =
        check::render_markdown(&report).replace(&run.repo.dir.display().to_string(), "[demo]");
    insta::assert_snapshot!("check_markdown", redact_digests(&markdown));
}
