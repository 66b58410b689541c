//! The demo org end to end: the PR report a reviewer sees, pinned as snapshots. The demo writes
//! commits with fixed authors and times, so its commit ids (and thus the report) are stable.

use sluice_model::affected::UnitStatus;
use sluice_pipeline::{demo, pr};

#[test]
fn demo_pr_report() {
    let dir = tempfile::tempdir().unwrap();
    let built = demo::build(&dir.path().join("org")).unwrap();
    let report = pr::run(
        &built.dir,
        &built.base,
        &built.head,
        Some(demo::org::PR_NUMBER),
    )
    .unwrap();

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

    insta::assert_snapshot!("demo_pr_markdown", pr::render_markdown(&report));
    insta::assert_json_snapshot!("demo_affected_json", report.affected);
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
