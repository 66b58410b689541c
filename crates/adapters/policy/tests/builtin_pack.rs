//! The built-in pack's own Rego tests (`test_*` rules), run the way `sluice policy test` runs
//! them: every rule has allowed and denied cases and all of them pass.

use std::time::Duration;

use sluice_policy::builtin::{self, Params};
use sluice_policy::testing;

#[test]
fn every_builtin_rego_test_passes() {
    let mut tests = Vec::new();
    for (_, bundle) in builtin::bundles(&Params::default()).unwrap() {
        let report = testing::run(&bundle, None, Duration::from_secs(30)).unwrap();
        assert_eq!(report.failed + report.passed, report.tests.len());
        tests.extend(report.tests);
    }
    struct Report {
        tests: Vec<testing::TestCase>,
    }
    let report = Report { tests };
    let failures: Vec<String> = report
        .tests
        .iter()
        .filter(|t| !t.passed)
        .map(|t| format!("{}:{} {}: {:?}", t.file, t.line, t.name, t.message))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Each rule has at least one case that fires and one that does not.
    for rule in builtin::RULES {
        let names: Vec<&str> = report
            .tests
            .iter()
            .filter(|t| t.package == rule.package)
            .map(|t| t.name.as_str())
            .collect();
        assert!(
            names.iter().any(|n| n.ends_with("_denied")
                || n.ends_with("_warned")
                || n.contains("requires")),
            "{}: no denied case in {names:?}",
            rule.id
        );
        assert!(
            names.iter().any(|n| n.ends_with("_allowed")
                || n.ends_with("_ignored")
                || n.contains("not_reported")
                || n.ends_with("_count")),
            "{}: no allowed case in {names:?}",
            rule.id
        );
    }
}
