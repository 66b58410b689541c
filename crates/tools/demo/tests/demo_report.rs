//! The demo org end to end: the PR report a reviewer sees, pinned as snapshots. The demo writes
//! commits with fixed authors and times, so its commit ids (and thus the report) are stable.

use sluice_demo::demo;
use sluice_flow::apps::AppStatus;
use sluice_flow::{check, decide, pr};
use sluice_model::affected::UnitStatus;
use sluice_model::risk::RiskLevel;

/// The demo's app renders with Kustomize (`kustomize` or `kubectl kustomize`).
fn kustomize_available() -> bool {
    sluice_render::tool::kustomize(None).is_ok()
}

#[test]
fn demo_pr_report() {
    let dir = tempfile::tempdir().unwrap();
    let run = demo::run_report(&dir.path().join("org"), demo::PlanMode::DemoWritten).unwrap();
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
    assert!(!report.verdict.blocks());
    // The proposer is the PR commit's author, read from git.
    let author = report.author.as_ref().expect("head commit author");
    assert_eq!(
        (author.name.as_str(), author.email.as_str()),
        ("Bob Payments", "bob@acme.example")
    );
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

    // The demo ends with its evidence: the stack's change bundle, written and verified.
    let ev = &run.evidence;
    assert_eq!(ev.change_id, stack.change_id.to_string());
    assert!(ev.verified, "{}", ev.verification);
    assert!(ev.bundle_path.is_file(), "{}", ev.bundle_path.display());
    assert!(ev.bundle_path.starts_with(run.repo.dir.join(".sluice")));
    assert!(ev.statements > 0 && ev.log_size >= ev.statements as u64);
    assert_eq!(ev.checkpoint_size, ev.log_size);
    assert!(ev.leaf_index < ev.log_size);
    // The printed command re-checks the bundle: run it as a shell would.
    let key = sluice_recorder::evidence::local_public_key(&run.repo.dir, None)
        .unwrap()
        .expect("the demo made a key");
    assert!(
        sluice_recorder::evidence::verify_file(&ev.bundle_path, &[key], None).is_ok(),
        "the written bundle verifies with the repository's key"
    );
    assert!(
        ev.verify_command
            .contains(" --trusted-key=\"$(sluice evidence key --repo "),
        "a PEM value must be attached with `=`: {}",
        ev.verify_command
    );
    assert!(
        ev.verify_command.starts_with("sluice evidence verify ")
            && ev
                .verify_command
                .contains(&ev.bundle_path.display().to_string()),
        "{}",
        ev.verify_command
    );

    let markdown = sluice_report::pr::render_markdown(report);
    assert!(markdown.contains("not by an engine"), "{markdown}");
    if !kustomize_available() {
        eprintln!(
            "notice: neither kustomize nor kubectl on PATH: the demo's app does not render; \
             skipping the app assertions and the Markdown snapshot"
        );
        return;
    }

    // The payments image bump as an app diff: image old → new, policy results, R2, approvals.
    assert_eq!(report.apps.len(), 1);
    let app = &report.apps[0];
    assert_eq!(app.app, "prod-ap-southeast-1/payments");
    assert_eq!(app.status, AppStatus::Ready, "{:?}", app.blockers);
    assert_eq!(app.risk.risk, RiskLevel::R2);
    assert_eq!(app.diff.images.len(), 1);
    let image = &app.diff.images[0];
    assert!(
        image
            .old
            .as_deref()
            .is_some_and(|i| i.contains(demo::org::PAYMENTS_DIGEST_OLD))
    );
    assert!(
        image
            .new
            .as_deref()
            .is_some_and(|i| i.contains(demo::org::PAYMENTS_DIGEST_NEW))
    );
    assert!(app.policy.is_some());
    assert!(
        app.approvals
            .iter()
            .any(|a| a.approvers == vec!["@acme/payments".to_string()])
    );
    // Stage rows: render ran and passed; plan, policy and approvals count stacks and apps.
    let stage = |n: u8| report.stages.iter().find(|s| s.number == n).unwrap();
    assert_eq!(
        stage(3).status,
        pr::StageStatus::Passed,
        "{}",
        stage(3).detail
    );
    assert!(
        stage(4).detail.contains("1 stack planned") && stage(4).detail.contains("1 app diffed")
    );
    assert!(
        stage(5).detail.contains("1 app evaluated"),
        "{}",
        stage(5).detail
    );
    assert_eq!(stage(6).status, pr::StageStatus::Pending);
    assert!(
        stage(6).detail.starts_with("4 approval requirements"),
        "{}",
        stage(6).detail
    );

    // The Markdown names the image change in the app section, with R2 for the app and R3 for
    // the stack.
    let app_section = &markdown[markdown
        .find("### App `prod-ap-southeast-1/payments`")
        .unwrap()..];
    assert!(app_section.starts_with("### App `prod-ap-southeast-1/payments` — R2"));
    assert!(
        app_section.contains(&format!(
            "- image `payments` in Deployment/payments/payments: `ghcr.io/acme/payments:v1.4.2@{}` → `ghcr.io/acme/payments:v1.5.0@{}`",
            demo::org::PAYMENTS_DIGEST_OLD,
            demo::org::PAYMENTS_DIGEST_NEW
        )),
        "{app_section}"
    );
    assert!(
        app_section.contains("R2 production image change"),
        "{app_section}"
    );
    assert!(app_section.contains("k8s-network-policy"), "{app_section}");
    assert!(markdown.contains("### Stack `prod/ap-southeast-1/rds-payments` — R3"));
    // The app's section sits after the stacks, before the reviewers.
    let at = |s: &str| markdown.find(s).unwrap();
    assert!(at("### Stack `") < at("### App `") && at("### App `") < at("### Required reviewers"));

    // The demo folder is a temporary one; its plan paths are shown as `[demo]`.
    let markdown = markdown.replace(&run.repo.dir.display().to_string(), "[demo]");
    insta::assert_snapshot!(
        "demo_pr_markdown",
        redact_render_tools(&redact_digests(&markdown))
    );
    insta::assert_json_snapshot!("demo_affected_json", report.affected);
}

/// The render tool's version (`kubectl kustomize v5.5.0 (kubectl v1.32.4)`) depends on the
/// machine, not on the report: `| base | 2 objects, `sha256:…` (TOOL) |` keeps all but TOOL.
fn redact_render_tools(text: &str) -> String {
    text.lines()
        .map(|line| {
            let is_render_row = line.starts_with("| base | ") || line.starts_with("| head | ");
            match (is_render_row, line.find("` (")) {
                (true, Some(i)) if line.ends_with(") |") => {
                    format!("{}` ([render tool]) |", &line[..i])
                }
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
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
    let run = demo::run_report(&dir.path().join("org"), demo::PlanMode::DemoWritten).unwrap();
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
    let mut broken = instance.clone();
    broken["stacks"][0]["decision"]["risk"]["risk"] = serde_json::json!("R9");
    assert!(!validator.is_valid(&broken));
    // The apps part is described too: the demo's app validates, and a wrong app is rejected.
    assert_eq!(instance["apps"].as_array().map(Vec::len), Some(1));
    let mut broken = instance.clone();
    broken["apps"][0]["status"] = serde_json::json!("maybe");
    assert!(!validator.is_valid(&broken));
    let mut broken = instance.clone();
    broken["apps"][0]["render"]["head"] = serde_json::json!({"state": "rendered"});
    assert!(!validator.is_valid(&broken));
    if kustomize_available() {
        let mut broken = instance;
        broken["apps"][0]["diff"]["images"][0]
            .as_object_mut()
            .unwrap()
            .remove("container");
        assert!(!validator.is_valid(&broken));
    }
}

/// Without plans the same PR shows the stack's stage 4 as not run, never invented; the app's
/// rendered diff still runs, so the stage is partial.
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
    assert!(
        plan_stage
            .detail
            .starts_with("no plan for 1 stack (pass --plans DIR or --run-plans)"),
        "{}",
        plan_stage.detail
    );
    if kustomize_available() {
        assert_eq!(plan_stage.status, pr::StageStatus::Partial);
        assert!(
            plan_stage
                .detail
                .ends_with("; 1 app diffed (0 added, 0 removed, 1 changed object)")
        );
    }
    // Policy: the app was evaluated, the stack was not.
    let policy_stage = report.stages.iter().find(|s| s.number == 5).unwrap();
    assert!(
        policy_stage.detail.starts_with("no stack plan to evaluate"),
        "{}",
        policy_stage.detail
    );
}

/// A huge report is split into comments under GitHub's limit, at section boundaries.
#[test]
fn huge_report_splits_into_parts_under_the_comment_limit() {
    let dir = tempfile::tempdir().unwrap();
    let run = demo::run_report(&dir.path().join("org"), demo::PlanMode::DemoWritten).unwrap();
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
    let parts = sluice_report::pr::render_markdown_parts(&report);
    assert!(parts.len() > 10, "{} parts", parts.len());
    for (i, p) in parts.iter().enumerate() {
        assert!(
            p.chars().count() <= sluice_report::markdown::COMMENT_LIMIT,
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
    // The whole demo twice over one folder: the evidence store and bundle of the first run
    // are replaced with the folder, and `.sluice/` never shows in the work tree.
    for _ in 0..2 {
        let run = demo::run(&target, demo::PlanMode::DemoWritten).unwrap();
        assert!(run.evidence.verified, "{}", run.evidence.verification);
    }
    let ignore = std::fs::read_to_string(target.join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == ".sluice/"), "{ignore}");

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
    let run = demo::run_report(&dir.path().join("org"), demo::PlanMode::DemoWritten).unwrap();
    let report = check::run(&check::CheckOptions {
        plan_json: run.written[0].clone(),
        stack: "prod/ap-southeast-1/rds-payments".into(),
        env: None,
        repo: Some(run.repo.dir.clone()),
        rev: demo::org::PR_BRANCH.into(),
        now: Some(demo::demo_now()),
    })
    .unwrap();
    assert_ne!(report.decision.status, decide::Status::Denied);
    let pr_decision = run.report.stacks[0].decision.as_ref().unwrap();
    // The PR report's decision carries the correlation id and commits in its policy input,
    // so the records differ in their input digest only; the results are the same.
    assert_eq!(
        report.decision.policy.record.results,
        pr_decision.policy.record.results
    );
    assert_eq!(report.decision.risk, pr_decision.risk);
    assert_eq!(report.decision.approvals, pr_decision.approvals);
    let markdown = sluice_report::check::render_markdown(&report)
        .replace(&run.repo.dir.display().to_string(), "[demo]");
    insta::assert_snapshot!("check_markdown", redact_digests(&markdown));
}

/// An app whose head a policy denies blocks the whole PR (exit 1): the demo's PR plus a
/// privileged debug Pod in the payments app (stage 2 does not look inside manifests, so the
/// change reaches stages 3-6). Stage 5 is blocked, stage 6 cannot be approved, and SARIF
/// carries the app's deny.
#[test]
fn a_denied_app_blocks_the_pr() {
    if !kustomize_available() {
        eprintln!("notice: neither kustomize nor kubectl on PATH; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("org");
    let main = demo::org::main_tree();
    let mut pr_files = demo::org::pr_tree(&main);
    let app = "env-gitops/clusters/prod-ap-southeast-1/apps/payments";
    let k = format!("{app}/kustomization.yaml");
    let text = String::from_utf8(pr_files[&k].clone()).unwrap();
    assert!(text.contains("resources:\n"), "{text}");
    pr_files.insert(
        k,
        text.replacen("resources:\n", "resources:\n  - debug-pod.yaml\n", 1)
            .into_bytes(),
    );
    pr_files.insert(
        format!("{app}/debug-pod.yaml"),
        b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: debug\nspec:\n  containers:\n    - name: debug\n      image: busybox:1.36\n      securityContext:\n        privileged: true\n".to_vec(),
    );
    let writer = sluice_git::git_write::Writer::init(&root).unwrap();
    let author = sluice_git::git_write::Author {
        name: "t",
        email: "t@x",
        time: 1_800_000_000,
    };
    let c1 = writer.commit("main", &main, None, "main", &author).unwrap();
    let c2 = writer
        .commit("pr", &pr_files, Some(c1), "plant", &author)
        .unwrap();
    writer.checkout("main", c1, &main).unwrap();
    let report = pr::run_with(
        &root,
        &c1.to_string(),
        &c2.to_string(),
        &pr::PrOptions {
            pr: Some(7),
            now: Some(demo::demo_now()),
            ..Default::default()
        },
    )
    .unwrap();
    let payments = report
        .apps
        .iter()
        .find(|a| a.app == "prod-ap-southeast-1/payments")
        .unwrap();
    assert_eq!(payments.status, AppStatus::Blocked);
    assert_eq!(report.verdict, pr::Verdict::Denied);
    assert!(report.verdict.blocks());
    let stage = |n: u8| report.stages.iter().find(|s| s.number == n).unwrap();
    assert_eq!(
        stage(5).status,
        pr::StageStatus::Blocked,
        "{}",
        stage(5).detail
    );
    assert!(
        stage(5).detail.contains("1 app denied"),
        "{}",
        stage(5).detail
    );
    assert_eq!(stage(6).status, pr::StageStatus::NotRun);
    let sarif = sluice_report::pr::render_sarif(&report, "test");
    let app_run = sarif["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tool"]["driver"]["name"] == "sluice-apps")
        .expect("an apps run");
    assert!(
        app_run["results"].as_array().unwrap().iter().any(|r| {
            r["ruleId"] == "k8s-privileged"
                && r["level"] == "error"
                && r["properties"]["app"] == "prod-ap-southeast-1/payments"
        }),
        "{app_run:#}"
    );
}
