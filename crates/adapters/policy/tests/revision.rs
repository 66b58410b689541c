//! The policy stage read from a git revision of a platform repository: the `policy-library`
//! folder as a bundle versioned by commit + digest, `sluice.yaml`'s `policy` section, and the
//! `security-exceptions` folder with its review notices.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use sluice_git::git::GitRepo;
use sluice_git::git_write::{Author, Writer};
use sluice_model::exception::{NoticeKind, Timestamp};
use sluice_policy::record::{Decision, Outcome};
use sluice_policy::{ChangeContext, EvalInput, PolicyError};

const SLUICE_YAML: &str = r#"version: 1
org: acme
environments:
  dev:  { order: 1 }
  prod: { order: 2, protected: true }
repos:
  infra-live:          { path: infra-live }
  policy-library:      { path: policy-library }
  security-exceptions: { path: security-exceptions }
stacks:
  root: infra-live/accounts
  layout: "{env}/{region}/{stack}"
apps:
  root: env-gitops/clusters
  layout: "{cluster}/apps/{app}"
POLICY"#;

const MAIN_REGO: &str = r#"package main

deny contains {"msg": msg, "id": "ACME-INSTANCE-TYPE", "resource": rc.address} if {
	some rc in input.plan.resource_changes
	rc.type == "aws_instance"
	not rc.change.after.instance_type in data.limits.instance_types
	msg := sprintf("%s: instance type %s is not allowed", [rc.address, rc.change.after.instance_type])
}
"#;

const MAIN_TEST: &str = r#"package main

test_large_instance_denied if {
	count(deny) == 1 with input as {"plan": {"resource_changes": [{"address": "aws_instance.a", "type": "aws_instance", "change": {"after": {"instance_type": "x1.32xlarge"}}}]}}
}
"#;

const EXCEPTION: &str = r#"id: EXC-1
policy: ACME-INSTANCE-TYPE
resource: "prod/*/batch/aws_instance.big"
owner: team-batch
approvedBy: security-lead
reason: quarterly reprocessing
expiresAt: "2025-06-20T00:00:00Z"
"#;

fn commit(files: &[(&str, &str)]) -> (tempfile::TempDir, sluice_git::git::Snapshot) {
    let dir = tempfile::tempdir().unwrap();
    let writer = Writer::init(dir.path()).unwrap();
    let map: BTreeMap<String, Vec<u8>> = files
        .iter()
        .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
        .collect();
    let author = Author {
        name: "t",
        email: "t@example.invalid",
        time: 1_700_000_000,
    };
    let id = writer
        .commit("main", &map, None, "policy", &author)
        .unwrap();
    let repo = Arc::new(GitRepo::open(dir.path()).unwrap());
    let snap = repo.snapshot(id).unwrap();
    (dir, snap)
}

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2025-06-01T00:00:00Z").unwrap()
}

fn org(policy: &str) -> sluice_model::config::OrgConfig {
    sluice_org::config::load("sluice.yaml", &SLUICE_YAML.replace("POLICY", policy)).unwrap()
}

fn plan_input(stack: &str) -> EvalInput {
    let plan = json!({
        "format_version": "1.2",
        "resource_changes": [{
            "address": "aws_instance.big", "mode": "managed", "type": "aws_instance", "name": "big",
            "change": {"actions": ["create"], "before": null, "after": {"instance_type": "x1.32xlarge", "tags": {"owner": "batch"}}}
        }]
    });
    let ctx = ChangeContext {
        env: "prod".into(),
        stack: stack.into(),
        production: Some(true),
        ..Default::default()
    };
    EvalInput::plan(&plan, &ctx, json!({"id": stack}))
}

#[test]
fn loads_bundles_config_and_exceptions_from_a_revision() {
    let (_dir, snap) = commit(&[
        ("sluice.yaml", ""),
        ("policy-library/terraform/main.rego", MAIN_REGO),
        ("policy-library/terraform/main_test.rego", MAIN_TEST),
        (
            "policy-library/limits/data.yaml",
            "instance_types: [t3.micro, m5.large]\n",
        ),
        ("policy-library/README.md", "not part of the bundle"),
        ("security-exceptions/batch.yaml", EXCEPTION),
        (
            "security-exceptions/stale.yaml",
            &EXCEPTION
                .replace("EXC-1", "EXC-2")
                .replace("2025-06-20", "2025-05-01")
                .replace("ACME-INSTANCE-TYPE", "no-such-policy"),
        ),
    ]);
    let org = org("policy:\n  builtin:\n    disable: [required-tags]\n");
    let setup = sluice_policy::from_revision(&snap, &org, now()).unwrap();
    let refs = setup.engine.bundle_refs();
    assert_eq!(
        refs.len(),
        3,
        "builtin, builtin-k8s and the library: {refs:?}"
    );
    let library = refs.iter().find(|b| b.name == "policy-library").unwrap();
    let (commit, digest) = library.version.split_once('+').unwrap();
    assert_eq!(commit, snap.commit.to_string());
    assert!(digest.starts_with("sha256:"));
    let kinds: Vec<(String, NoticeKind)> = setup
        .notices
        .iter()
        .map(|n| (n.exception.clone(), n.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("EXC-2".to_string(), NoticeKind::Expired),
            ("EXC-2".to_string(), NoticeKind::UnknownPolicy),
        ]
    );

    // The exception waives the deny for the batch stack only.
    let record = setup
        .engine
        .evaluate(&plan_input("prod/eu-west-1/batch"))
        .unwrap();
    let r = record
        .results
        .iter()
        .find(|r| r.rule == "ACME-INSTANCE-TYPE")
        .unwrap();
    assert_eq!(r.outcome, Outcome::Excepted);
    assert_eq!(record.exceptions_applied, ["EXC-1"]);
    assert!(record.results.iter().all(|r| r.rule != "required-tags"));
    let record = setup
        .engine
        .evaluate(&plan_input("prod/eu-west-1/web"))
        .unwrap();
    assert_eq!(record.outcome, Decision::Deny);
    assert!(
        record
            .results
            .iter()
            .any(|r| r.message == "aws_instance.big: instance type x1.32xlarge is not allowed")
    );

    // The bundle's tests run from the revision too.
    let bundle = sluice_policy::Bundle::from_snapshot(&snap, "policy-library").unwrap();
    let report =
        sluice_policy::testing::run(&bundle, None, std::time::Duration::from_secs(10)).unwrap();
    assert_eq!((report.passed, report.failed), (1, 0));
    assert_eq!(
        report.tests[0].file,
        "policy-library/terraform/main_test.rego"
    );
}

#[test]
fn an_invalid_exception_file_is_an_error_naming_file_and_position() {
    let (_dir, snap) = commit(&[
        ("sluice.yaml", ""),
        (
            "security-exceptions/batch.yaml",
            &EXCEPTION.replace("expiresAt: \"2025-06-20T00:00:00Z\"\n", ""),
        ),
    ]);
    let e = sluice_policy::from_revision(&snap, &org(""), now()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "security-exceptions/batch.yaml:1:1: exception `EXC-1`: `expiresAt`: is required: every exception expires (RFC 3339, e.g. 2025-06-30T00:00:00Z)"
    );
}

#[test]
fn configured_bundles_must_exist_and_rego_errors_name_the_file() {
    let (_dir, snap) = commit(&[("sluice.yaml", "")]);
    let e = sluice_policy::from_revision(
        &snap,
        &org("policy:\n  bundles: [policies/terraform]\n"),
        now(),
    )
    .unwrap_err();
    assert!(matches!(e, PolicyError::Config { .. }), "{e}");
    assert!(e.to_string().contains("policies/terraform"), "{e}");

    let (_dir, snap) = commit(&[
        ("sluice.yaml", ""),
        (
            "policy-library/main.rego",
            "package main\n\ndeny contains msg if {\n\tmsg := \n}\n",
        ),
    ]);
    let e = sluice_policy::from_revision(&snap, &org(""), now()).unwrap_err();
    assert!(
        e.to_string().starts_with("policy-library/main.rego:4:"),
        "{e}"
    );
}
