//! `sluice policy test` and `sluice policy eval` over a policy that makes regorus panic
//! (`sprintf` with a width in non-ASCII digits): the process does not crash, prints no panic
//! message or backtrace (even with RUST_BACKTRACE=1), and fails closed with one error naming
//! the bundle and the rule.

use std::path::Path;
use std::process::{Command, Output};

const POLICY: &str = "package main\n\nimport rego.v1\n\ndeny contains msg if {\n\tmsg := sprintf(\"%\u{663}d\", [1])\n}\n";
const TESTS: &str = "package main\n\nimport rego.v1\n\ntest_deny_panics if {\n\tcount(deny) == 0\n}\n\ntest_holds if {\n\t1 == 1\n}\n";

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env("NO_COLOR", "1")
        .output()
        .expect("sluice runs")
}

fn assert_no_panic_output(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    for marker in ["panicked at", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(marker), "{marker} in stderr:\n{stderr}");
    }
}

fn policy_dir(dir: &Path) -> &str {
    std::fs::write(dir.join("main.rego"), POLICY).unwrap();
    std::fs::write(dir.join("main_test.rego"), TESTS).unwrap();
    dir.to_str().unwrap()
}

#[test]
fn policy_test_fails_the_test_that_panics_and_runs_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let out = sluice(&["policy", "test", policy_dir(dir.path())]);
    assert_no_panic_output(&out);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("test_deny_panics"), "{stdout}");
    assert!(stdout.contains("the Rego engine panicked"), "{stdout}");
}

#[test]
fn policy_eval_denies_naming_bundle_and_rule_without_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = policy_dir(dir.path());
    let plan = dir.path().join("plan.json");
    std::fs::write(
        &plan,
        r#"{"format_version": "1.2", "planned_values": {}, "resource_changes": []}"#,
    )
    .unwrap();
    let out = sluice(&[
        "policy",
        "eval",
        "--plan-json",
        plan.to_str().unwrap(),
        "--bundle",
        bundle,
        "--no-builtin",
        "--format",
        "json",
    ]);
    assert_no_panic_output(&out);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["outcome"], "deny", "{record}");
    let failed: Vec<&serde_json::Value> = record["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["error"] == true)
        .collect();
    assert_eq!(failed.len(), 1, "{record}");
    let message = failed[0]["message"].as_str().unwrap();
    assert!(message.contains("data.main.deny"), "{message}");
    assert!(message.contains("the Rego engine panicked"), "{message}");
    assert!(
        failed[0]["bundle"].as_str().is_some_and(|b| !b.is_empty()),
        "{record}"
    );
}
