//! A panic inside regorus (an engine bug a policy can trigger) stops at the engine boundary:
//! evaluation fails closed with one error naming the bundle and the rule, and `policy test`
//! fails the test instead of ending the process.
//!
//! The trigger is a real regorus 0.14 bug: `sprintf` with a width written in non-ASCII digits
//! (`%٣d`: `char::is_numeric` accepts it, `to_digit(10)` does not, and an `expect` panics).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_policy::PolicyError;
use sluice_policy::bundle::{Bundle, BundleFile, Origin};
use sluice_policy::engine::{EngineSpec, PolicyEngine};
use sluice_policy::input::EvalInput;
use sluice_policy::record::{Decision, Outcome};
use sluice_policy::testing;

const PANICS: &str = "package main\n\nimport rego.v1\n\ndeny contains msg if {\n\tmsg := sprintf(\"%\u{663}d\", [1])\n}\n";

fn bundle(files: &[(&str, &str)]) -> Bundle {
    Bundle::from_files(
        "policy-library",
        Origin::Memory,
        files
            .iter()
            .map(|(p, c)| BundleFile {
                path: p.to_string(),
                content: Arc::from(c.as_bytes()),
            })
            .collect(),
    )
    .unwrap()
}

fn engine(b: Bundle) -> Result<PolicyEngine, PolicyError> {
    PolicyEngine::new(EngineSpec {
        builtin: None,
        bundles: vec![b],
        ..Default::default()
    })
}

#[test]
fn a_panic_during_evaluation_fails_closed_naming_bundle_and_rule() {
    let engine = engine(bundle(&[("tags.rego", PANICS)])).unwrap();
    let input = EvalInput::new(json!({"plan": {}}), "dev/net");
    let record = engine.evaluate(&input).unwrap();
    assert_eq!(record.outcome, Decision::Deny);
    let failed = record
        .results
        .iter()
        .find(|r| r.error)
        .expect("a failed result");
    assert_eq!(failed.outcome, Outcome::Deny);
    assert_eq!(failed.bundle, "policy-library");
    assert!(failed.source.contains("data.main.deny"), "{failed:?}");
    assert!(
        failed.message.contains("the Rego engine panicked"),
        "{}",
        failed.message
    );
    // The engine stays usable: the next evaluation runs (and fails closed again).
    assert_eq!(engine.evaluate(&input).unwrap().outcome, Decision::Deny);
}

#[test]
fn a_panic_in_a_test_fails_that_test_and_the_others_run() {
    let tests = "package main\n\nimport rego.v1\n\ntest_panics if {\n\tsprintf(\"%\u{663}d\", [1]) == \"1\"\n}\n\ntest_holds if {\n\t1 == 1\n}\n";
    let b = bundle(&[("tags.rego", PANICS), ("tags_test.rego", tests)]);
    let report = testing::run(&b, None, Duration::from_secs(5)).unwrap();
    assert_eq!((report.passed, report.failed), (1, 1), "{report:?}");
    let failed = report.tests.iter().find(|t| !t.passed).unwrap();
    assert_eq!(failed.name, "test_panics");
    let message = failed.message.as_deref().unwrap();
    assert!(message.contains("the Rego engine panicked"), "{message}");
}
