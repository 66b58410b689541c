//! `sluice plan` end to end with the real Terraform: one stack plans (built-in
//! `terraform_data`, so no network and no credentials), one fails as a configuration error, and
//! the command exits 6 (a plan failed). Skipped with a notice when `terraform` is not on PATH;
//! a failure when `SLUICE_REQUIRE_TERRAFORM=1` (as `.ci/run` sets).

use std::process::Command;

use serde_json::Value;
use sluice_testkit::{org_repo, sluice_yaml};

const DATA: &str = "live/dev/eu-west-1/data";
const BROKEN: &str = "live/dev/eu-west-1/broken";

#[test]
fn sluice_plan_runs_the_real_terraform_and_a_failed_plan_exits_6() {
    let Some(_terraform) = sluice_testkit::terraform() else {
        return;
    };
    let repo = org_repo();
    repo.write(
        "sluice.yaml",
        format!("{}plan:\n  engine: terraform\n", sluice_yaml("")),
    );
    repo.write(&format!("{DATA}/main.tf"), "# v1\n");
    repo.write(&format!("{BROKEN}/main.tf"), "# v1\n");
    let base = repo.commit("base");
    repo.write(
        &format!("{DATA}/main.tf"),
        "resource \"terraform_data\" \"db\" {\n  input = { name = \"payments\" }\n}\n",
    );
    repo.write(
        &format!("{BROKEN}/main.tf"),
        "resource \"terraform_data\" \"x\" {\n  no_such_argument = 1\n}\n",
    );
    let head = repo.commit("change");
    let store = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "plan",
            "--repo",
            repo.path().to_str().unwrap(),
            "--base",
            &base,
            "--head",
            &head,
            "--store",
            store.path().to_str().unwrap(),
            "--format",
            "json",
        ])
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("CHECKPOINT_DISABLE", "1")
        .env_remove("TF_PLUGIN_CACHE_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stack = |id: &str| -> &Value {
        report["stacks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stack"] == id)
            .unwrap_or_else(|| panic!("{id} in {report}"))
    };
    let data = stack("dev/eu-west-1/data");
    assert_eq!(data["status"], "planned", "{data}");
    assert_eq!(data["engine"]["kind"], "terraform", "{data}");
    assert_eq!(data["exit_code"], 2, "{data}");
    let broken = stack("dev/eu-west-1/broken");
    assert_eq!(broken["status"], "failed", "{broken}");
    assert_eq!(broken["class"], "plan", "{broken}");
    assert!(
        broken["stderr_excerpt"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("Unsupported argument")),
        "{broken}"
    );
}
