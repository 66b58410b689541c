//! Every `suite.yaml` case of the real gatekeeper-library (`../shared/corpus/gatekeeper-library`)
//! run through sluice's Gatekeeper support: at least 95% must agree with the expected
//! violations, and every disagreement must carry its reason.

use std::path::PathBuf;
use std::time::Duration;

use sluice_policy::gatekeeper;

fn corpus() -> Option<PathBuf> {
    sluice_testkit::corpus("gatekeeper-library/library")
}

#[test]
fn gatekeeper_library_suites_agree() {
    let Some(dir) = corpus() else { return };
    let report = gatekeeper::run_suites(&dir, Duration::from_secs(10)).unwrap();
    eprint!("{}", report.render_text(false));
    assert!(report.suites >= 40, "{} suites", report.suites);
    assert!(report.cases >= 200, "{} cases", report.cases);
    for r in report.disagreements() {
        assert!(r.reason.as_deref().is_some_and(|s| !s.is_empty()), "{r:?}");
    }
    assert!(
        report.rate >= 0.95,
        "agreement {:.3} below 0.95:\n{}",
        report.rate,
        report.render_text(false)
    );
}
