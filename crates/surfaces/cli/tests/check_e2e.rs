//! End-to-end tests of `sluice check` (policy, risk and approvals over one plan JSON) and of
//! `sluice pr --plans DIR` (stages 4–6 in the PR report): a small org built as a real git
//! repository, hand-written plan JSON, and the `sluice` binary.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

const CANARY: &str = "CANARY-check-7f21aa";
const STACK: &str = "prod/eu-west-1/rds";
const DEV_STACK: &str = "dev/eu-west-1/app";

const SLUICE_YAML: &str = r#"version: 1
org: acme
environments:
  dev:  { order: 1 }
  prod: { order: 2, protected: true }
repos:
  infra-live:          { path: live }
  security-exceptions: { path: security-exceptions }
stacks:
  root: live
  layout: "{env}/{region}/{stack}"
apps:
  root: gitops
  layout: "{env}/{app}"
approvals:
  R1: [codeowners]
  R3: ["@acme/platform", "@acme/security"]
"#;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The org at `main` with a prod rds stack and a dev app stack, and CODEOWNERS.
fn org() -> (Repo, String) {
    let repo = Repo::new();
    repo.write("sluice.yaml", SLUICE_YAML);
    repo.write(
        ".github/CODEOWNERS",
        "* @acme/platform\n/live/prod/ @acme/sre\n/live/*/*/rds/ @acme/dba\n",
    );
    repo.write(&format!("live/{STACK}/main.tf"), "# rds\n");
    repo.write(&format!("live/{DEV_STACK}/main.tf"), "# app\n");
    let base = repo.commit("base");
    (repo, base)
}

fn rc(address: &str, rtype: &str, actions: &[&str], before: Value, after: Value) -> Value {
    let name = address.rsplit('.').next().unwrap();
    json!({
        "address": address, "mode": "managed", "type": rtype, "name": name,
        "change": {"actions": actions, "before": before, "after": after,
                   "after_unknown": {}, "before_sensitive": {}, "after_sensitive": {}}
    })
}

fn plan(changes: Vec<Value>) -> Value {
    json!({"format_version": "1.2", "resource_changes": changes})
}

/// A read replica for the production database: R3, allowed with approvals.
fn replica_plan() -> Value {
    plan(vec![rc(
        "aws_db_instance.replica[1]",
        "aws_db_instance",
        &["create"],
        Value::Null,
        json!({"replicate_source_db": "primary", "instance_class": "db.r6g.large",
               "deletion_protection": true, "publicly_accessible": false,
               "tags": {"owner": "payments"}}),
    )])
}

fn write(dir: &Path, name: &str, v: &Value) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    p
}

fn check(args: &[&str]) -> Run {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    sluice(&all)
}

#[test]
fn allowed_without_a_repo_uses_the_builtin_pack_and_default_risk() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "plan.json",
        &plan(vec![rc(
            "aws_sns_topic.events",
            "aws_sns_topic",
            &["create"],
            Value::Null,
            json!({"name": "events", "tags": {"owner": "team"}}),
        )]),
    );
    let run = check(&[
        "--plan-json",
        s(&p),
        "--stack",
        "dev/x",
        "--env",
        "dev",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let v = run.json();
    assert_eq!(v["schema"], "sluice.check/v1");
    assert_eq!(v["decision"]["status"], "allowed");
    assert_eq!(v["decision"]["risk"]["risk"], "R1");
    assert_eq!(v["decision"]["policy"]["outcome"], "allow");
    assert!(v["decision"]["approvals"].as_array().unwrap().is_empty());
    assert!(
        run.stderr.contains("not checked against a repository"),
        "{}",
        run.stderr
    );
    // Production without a repo: `prod` counts as production by default.
    let run = check(&[
        "--plan-json",
        s(&p),
        "--stack",
        "prod/x",
        "--env",
        "prod",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    assert_eq!(run.json()["decision"]["risk"]["risk"], "R2");
    // Without --env and --repo the environment is unknown: a usage error.
    let run = check(&["--plan-json", s(&p), "--stack", "dev/x"]);
    run.expect_code(2);
    assert!(run.stderr.contains("--env"), "{}", run.stderr);
}

#[test]
fn read_replica_in_prod_is_r3_with_every_approval_and_its_source() {
    let (repo, _) = org();
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "plan.json", &replica_plan());
    let run = check(&[
        "--plan-json",
        s(&p),
        "--stack",
        STACK,
        "--repo",
        s(repo.path()),
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let d = &run.json()["decision"];
    assert_eq!(d["env"], "prod");
    assert_eq!(d["production"], true);
    assert_eq!(d["status"], "approvals_required");
    assert_eq!(d["risk"]["risk"], "R3");
    assert_eq!(
        d["risk"]["reasons"][0]["reason"],
        "production database topology change"
    );
    assert_eq!(
        d["risk"]["reasons"][0]["addresses"],
        json!(["aws_db_instance.replica[1]"])
    );
    let approvals: Vec<(String, String)> = d["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["approvers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(","),
                a["source"]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        approvals,
        vec![
            ("@acme/platform".to_string(), "risk".to_string()),
            ("@acme/security".to_string(), "risk".to_string()),
            ("@acme/dba".to_string(), "codeowners".to_string()),
        ]
    );
    assert_eq!(
        d["plan"]["changes"][0]["address"],
        "aws_db_instance.replica[1]"
    );

    let md = check(&[
        "--plan-json",
        s(&p),
        "--stack",
        STACK,
        "--repo",
        s(repo.path()),
    ]);
    md.expect_code(0);
    assert!(
        md.stdout.contains("+ aws_db_instance.replica[1]"),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout.contains("R3 production database topology change"),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout.contains("1 of @acme/dba — CODEOWNERS line 3"),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout.contains("PASS `db-public-access`"),
        "{}",
        md.stdout
    );

    // --env that contradicts discovery is refused.
    let run = check(&[
        "--plan-json",
        s(&p),
        "--stack",
        STACK,
        "--env",
        "dev",
        "--repo",
        s(repo.path()),
    ]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("belongs to environment `prod`"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_public_database_is_denied_with_exit_1_in_every_format() {
    let (repo, _) = org();
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "plan.json",
        &plan(vec![rc(
            "aws_db_instance.main",
            "aws_db_instance",
            &["update"],
            json!({"publicly_accessible": false}),
            json!({"publicly_accessible": true, "storage_encrypted": true,
                   "deletion_protection": true, "backup_retention_period": 14,
                   "tags": {"owner": "db"}}),
        )]),
    );
    let base = [
        "--plan-json",
        s(&p),
        "--stack",
        STACK,
        "--repo",
        s(repo.path()),
    ];
    let md = check(&[&base[..], &["--format", "md"]].concat());
    md.expect_code(1);
    assert!(
        md.stdout
            .contains("DENY `db-public-access`: aws_db_instance.main is publicly accessible"),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout.contains("(`aws_db_instance.main`)"),
        "{}",
        md.stdout
    );
    let json = check(&[&base[..], &["--format", "json"]].concat());
    json.expect_code(1);
    assert_eq!(json.json()["decision"]["status"], "denied");
    let sarif = check(&[&base[..], &["--format", "sarif"]].concat());
    sarif.expect_code(1);
    let v = sarif.json();
    assert_eq!(v["version"], "2.1.0");
    let results = v["runs"][0]["results"].as_array().unwrap();
    let deny = results
        .iter()
        .find(|r| r["ruleId"] == "db-public-access")
        .unwrap();
    assert_eq!(deny["level"], "error");
    assert_eq!(
        deny["locations"][0]["logicalLocations"][1]["name"],
        "aws_db_instance.main"
    );
}

#[test]
fn an_active_exception_turns_a_finding_into_excepted_and_an_expired_one_does_not() {
    let (repo, _) = org();
    repo.write(
        "security-exceptions/EXC-1.yaml",
        format!(
            "id: EXC-1\npolicy: sg-open-ingress\nresource: \"{STACK}/aws_security_group.lb\"\nowner: \"@acme/platform\"\napprovedBy: \"@acme/security\"\nreason: public load balancer\nexpiresAt: \"2030-01-31T00:00:00Z\"\n"
        ),
    );
    repo.write(
        "security-exceptions/EXC-2.yaml",
        format!(
            "id: EXC-2\npolicy: sg-open-ingress\nresource: \"{STACK}/aws_security_group.old\"\nowner: \"@acme/platform\"\napprovedBy: \"@acme/security\"\nreason: expired\nexpiresAt: \"2029-01-31T00:00:00Z\"\n"
        ),
    );
    repo.commit("exceptions");
    let open = |addr: &str| {
        rc(
            addr,
            "aws_security_group",
            &["create"],
            Value::Null,
            json!({"name": "x", "tags": {"owner": "net"}, "ingress": [{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}]}),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "plan.json",
        &plan(vec![
            open("aws_security_group.lb"),
            open("aws_security_group.old"),
        ]),
    );
    let run = check(&[
        "--plan-json",
        s(&p),
        "--stack",
        STACK,
        "--repo",
        s(repo.path()),
        "--now",
        "2029-06-01T00:00:00Z",
        "--format",
        "md",
    ]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("EXCEPTED `sg-open-ingress`")
            && run.stdout.contains("exception `EXC-1`"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("REQUIRE `sg-open-ingress`"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Expired exception `EXC-2`"),
        "{}",
        run.stdout
    );
    let v = check(&[
        "--plan-json",
        s(&p),
        "--stack",
        STACK,
        "--repo",
        s(repo.path()),
        "--now",
        "2029-06-01T00:00:00Z",
        "--format",
        "json",
    ])
    .json();
    assert_eq!(
        v["decision"]["policy"]["exceptions_applied"],
        json!(["EXC-1"])
    );
    assert_eq!(
        v["decision"]["policy"]["exceptions_expired"],
        json!(["EXC-2"])
    );
    // The policy's approval request is listed with its source.
    let policy_req = v["decision"]["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["source"]["kind"] == "policy")
        .cloned()
        .unwrap();
    assert_eq!(policy_req["source"]["rule"], "sg-open-ingress");
}

#[test]
fn bad_input_is_exit_2_with_a_clear_message() {
    let (repo, _) = org();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        "{\n  \"format_version\": \"1.2\",\n  \"resource_changes\": [ }\n",
    )
    .unwrap();
    let run = check(&["--plan-json", s(&bad), "--stack", STACK, "--env", "prod"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains(&format!("{}:3:", bad.display()))
            && run.stderr.contains("malformed plan JSON"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());

    let v2 = write(
        dir.path(),
        "v2.json",
        &json!({"format_version": "2.0", "resource_changes": []}),
    );
    let run = check(&["--plan-json", s(&v2), "--stack", STACK, "--env", "prod"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("unsupported plan format_version `2.0`"),
        "{}",
        run.stderr
    );

    let ok = write(dir.path(), "ok.json", &replica_plan());
    let run = check(&[
        "--plan-json",
        s(&ok),
        "--stack",
        "prod/eu-west-1/nope",
        "--repo",
        s(repo.path()),
    ]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("unknown stack `prod/eu-west-1/nope`"),
        "{}",
        run.stderr
    );

    let run = check(&[
        "--plan-json",
        s(&dir.path().join("missing.json")),
        "--stack",
        STACK,
        "--env",
        "prod",
    ]);
    run.expect_code(2);
    assert!(run.stderr.contains("missing.json"), "{}", run.stderr);

    // A policy-library module that does not parse: file:line, exit 2.
    repo.write(
        "policy-library/bad.rego",
        "package main\n\ndeny contains msg if {\n  msg := \n}\n",
    );
    repo.write(
        "sluice.yaml",
        SLUICE_YAML.replace(
            "repos:\n",
            "repos:\n  policy-library:      { path: policy-library }\n",
        ),
    );
    repo.commit("bad policy");
    let run = check(&[
        "--plan-json",
        s(&ok),
        "--stack",
        STACK,
        "--repo",
        s(repo.path()),
    ]);
    run.expect_code(2);
    assert!(run.stderr.contains("bad.rego:"), "{}", run.stderr);
}

/// The canary plan: a secret in sensitive positions (masked attribute, sensitive output,
/// variable, prior state) and in non-sensitive ones (an unmarked password attribute, a
/// connection string, a tag value).
fn canary_plan() -> Value {
    json!({
        "format_version": "1.2",
        "variables": {"db_password": {"value": CANARY}},
        "prior_state": {"values": {"root_module": {"resources": [{"values": {"password": CANARY}}]}}},
        "resource_changes": [{
            "address": "aws_db_instance.main", "mode": "managed", "type": "aws_db_instance", "name": "main",
            "change": {"actions": ["update"],
                "before": {"password": CANARY, "publicly_accessible": false},
                "after": {"password": CANARY, "master_password": CANARY,
                          "connection": format!("postgres://app:{CANARY}@db:5432/app"),
                          "publicly_accessible": true,
                          "tags": {"owner": "db", "api_token": CANARY}},
                "after_unknown": {}, "before_sensitive": {"password": true},
                "after_sensitive": {"password": true}}
        }],
        "output_changes": {"db": {"actions": ["update"], "before": CANARY, "after": CANARY,
            "after_unknown": false, "before_sensitive": true, "after_sensitive": true}}
    })
}

#[test]
fn a_planted_secret_appears_in_no_check_or_pr_output() {
    let (repo, _) = org();
    // A policy that would echo the whole resource into its message.
    repo.write(
        "policy-library/echo.rego",
        "package main\n\nimport rego.v1\n\ndeny contains msg if {\n  some rc in input.plan.resource_changes\n  msg := sprintf(\"%v\", [rc.change.after])\n}\n",
    );
    repo.write(
        "sluice.yaml",
        SLUICE_YAML.replace(
            "repos:\n",
            "repos:\n  policy-library:      { path: policy-library }\n",
        ),
    );
    let base = repo.commit("policy");
    repo.checkout_new("change");
    repo.write(&format!("live/{STACK}/main.tf"), "# rds v2\n");
    let head = repo.commit("change");
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "canary.json", &canary_plan());
    let plans = tempfile::tempdir().unwrap();
    write(plans.path(), "prod__eu-west-1__rds.json", &canary_plan());
    for format in ["md", "json", "sarif"] {
        let run = check(&[
            "--plan-json",
            s(&p),
            "--stack",
            STACK,
            "--repo",
            s(repo.path()),
            "--format",
            format,
        ]);
        run.expect_code(1);
        assert!(
            !run.stdout.contains(CANARY) && !run.stderr.contains(CANARY),
            "check {format}:\n{}{}",
            run.stdout,
            run.stderr
        );
        let run = sluice(&[
            "pr",
            "--repo",
            s(repo.path()),
            "--base",
            &base,
            "--head",
            &head,
            "--plans",
            s(plans.path()),
            "--format",
            format,
        ]);
        run.expect_code(1);
        assert!(
            !run.stdout.contains(CANARY) && !run.stderr.contains(CANARY),
            "pr {format}:\n{}{}",
            run.stdout,
            run.stderr
        );
    }
    let parts = tempfile::tempdir().unwrap();
    let run = sluice(&[
        "pr",
        "--repo",
        s(repo.path()),
        "--base",
        &base,
        "--head",
        &head,
        "--plans",
        s(plans.path()),
        "--parts-dir",
        s(parts.path()),
    ]);
    run.expect_code(1);
    let part = std::fs::read_to_string(parts.path().join("part-1.md")).unwrap();
    assert!(part.contains("DENY"), "{part}");
    assert!(!part.contains(CANARY), "{part}");
}

#[test]
fn pr_with_plans_reports_stages_4_to_6_and_exit_codes() {
    let (repo, base) = org();
    repo.checkout_new("change");
    repo.write(&format!("live/{STACK}/main.tf"), "# rds v2\n");
    repo.write(&format!("live/{DEV_STACK}/main.tf"), "# app v2\n");
    let head = repo.commit("change");
    let pr = |plans: &Path, format: &str| {
        sluice(&[
            "pr",
            "--repo",
            s(repo.path()),
            "--base",
            &base,
            "--head",
            &head,
            "--pr",
            "7",
            "--plans",
            s(plans),
            "--format",
            format,
        ])
    };
    let plans = tempfile::tempdir().unwrap();
    write(plans.path(), "prod__eu-west-1__rds.json", &replica_plan());
    write(plans.path(), "typo.json", &replica_plan());
    // The dev stack has no plan: stage 4 partial, the change undecided (exit 0).
    let run = pr(plans.path(), "json");
    run.expect_code(0);
    let v = run.json();
    assert_eq!(v["verdict"], "undecided");
    let stacks = v["stacks"].as_array().unwrap();
    let dev = stacks.iter().find(|x| x["id"] == DEV_STACK).unwrap();
    assert_eq!(dev["plan"]["state"], "not_run");
    assert!(dev.get("decision").is_none());
    let prod = stacks.iter().find(|x| x["id"] == STACK).unwrap();
    assert_eq!(prod["plan"]["state"], "planned");
    assert_eq!(prod["decision"]["risk"]["risk"], "R3");
    assert_eq!(
        prod["change_id"],
        format!("infra-live#7@{}/prod/eu-west-1/rds", &head[..7])
    );
    let stage = |n: u64| {
        v["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["number"] == n)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(stage(4), "partial");
    assert_eq!(stage(5), "passed");
    assert_eq!(stage(6), "pending");
    assert!(
        v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("typo.json"))
    );

    // Both planned: approvals required, exit 0; markdown shows both stacks' sections.
    write(
        plans.path(),
        "dev__eu-west-1__app.json",
        &plan(vec![rc(
            "aws_sns_topic.t",
            "aws_sns_topic",
            &["create"],
            Value::Null,
            json!({"tags": {"owner": "a"}}),
        )]),
    );
    let run = pr(plans.path(), "json");
    run.expect_code(0);
    assert_eq!(run.json()["verdict"], "approvals_required");
    let md = pr(plans.path(), "md");
    md.expect_code(0);
    assert!(
        md.stdout
            .contains("### Stack `prod/eu-west-1/rds` — R3 — approvals required"),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout.contains("### Stack `dev/eu-west-1/app` — R1"),
        "{}",
        md.stdout
    );
    assert!(md.stdout.contains("| 4 | Plan | passed |"), "{}", md.stdout);

    // A malformed plan file: the stack's plan failed (exit 3), with the position.
    std::fs::write(
        plans.path().join("dev__eu-west-1__app.json"),
        "{\"format_version\": \"1.2\",\n  oops}",
    )
    .unwrap();
    let run = pr(plans.path(), "json");
    run.expect_code(3);
    let v = run.json();
    assert_eq!(v["verdict"], "plan_failed");
    let dev = v["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == DEV_STACK)
        .unwrap()
        .clone();
    assert_eq!(dev["plan"]["state"], "failed");
    assert!(
        dev["plan"]["message"]
            .as_str()
            .unwrap()
            .contains("dev__eu-west-1__app.json:2:"),
        "{dev}"
    );

    // A denied stack: exit 1 (deny wins over the failed plan).
    write(
        plans.path(),
        "prod__eu-west-1__rds.json",
        &plan(vec![rc(
            "aws_db_instance.main",
            "aws_db_instance",
            &["create"],
            Value::Null,
            json!({"publicly_accessible": true, "storage_encrypted": true, "deletion_protection": true, "tags": {"owner": "x"}}),
        )]),
    );
    let run = pr(plans.path(), "sarif");
    run.expect_code(1);
    let v = run.json();
    let policy_run = v["runs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(policy_run["tool"]["driver"]["name"], "sluice-policy");
    assert!(
        policy_run["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ruleId"] == "db-public-access"
                && r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                    == "live/prod/eu-west-1/rds")
    );

    // Not a folder: usage error.
    let run = pr(&plans.path().join("nope"), "json");
    run.expect_code(2);
}

#[test]
fn pr_without_plans_says_stage_4_was_not_run() {
    let (repo, base) = org();
    repo.checkout_new("change");
    repo.write(&format!("live/{STACK}/main.tf"), "# rds v2\n");
    let head = repo.commit("change");
    let run = sluice(&[
        "pr",
        "--repo",
        s(repo.path()),
        "--base",
        &base,
        "--head",
        &head,
    ]);
    run.expect_code(0);
    assert!(run.stdout.contains("plan not run"), "{}", run.stdout);
    assert!(
        run.stdout.contains("| 4 | Plan | not run |"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("| 5 | Policy | not run |"),
        "{}",
        run.stdout
    );
}

const DOUBLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../adapters/iac/tests/support/tofu-test-double.sh"
);

/// `pr --run-plans` with the OpenTofu test double (crates/adapters/iac/tests/support) as
/// `tofu` on PATH: one stack plans (its plan JSON is served by the double), one fails with an
/// auth error; the report carries the engine plan's digest and the classified failure.
#[test]
fn pr_run_plans_uses_the_engine_and_classifies_failures() {
    use std::os::unix::fs::PermissionsExt;
    let (repo, base) = org();
    let dir = tempfile::tempdir().unwrap();
    let served = write(dir.path(), "served.json", &replica_plan());
    repo.write(
        &format!("live/{STACK}/tofu-double.conf"),
        format!("plan_json={}\n", served.display()),
    );
    repo.write(
        &format!("live/{DEV_STACK}/tofu-double.conf"),
        "fail=auth\nstderr=Error: No valid credential sources found\n",
    );
    repo.commit("double config");
    repo.checkout_new("change");
    repo.write(&format!("live/{STACK}/main.tf"), "# rds v2\n");
    repo.write(&format!("live/{DEV_STACK}/main.tf"), "# app v2\n");
    let head = repo.commit("change");

    let bin = tempfile::tempdir().unwrap();
    let double = bin.path().join("tofu-test-double");
    std::fs::copy(DOUBLE, &double).unwrap();
    std::fs::set_permissions(&double, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&double, bin.path().join("tofu")).unwrap();
    let path =
        std::env::join_paths([bin.path(), Path::new("/usr/bin"), Path::new("/bin")]).unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "pr",
            "--repo",
            s(repo.path()),
            "--base",
            &base,
            "--head",
            &head,
        ])
        .args([
            "--run-plans",
            "--plan-store",
            s(store.path()),
            "--format",
            "json",
        ])
        .env("PATH", path)
        .env_remove("TF_PLUGIN_CACHE_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "plan_failed");
    let stack = |id: &str| {
        v["stacks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == id)
            .unwrap()
            .clone()
    };
    let prod = stack(STACK);
    assert_eq!(prod["plan"]["source"]["kind"], "engine");
    assert!(
        prod["plan"]["source"]["plan_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(prod["decision"]["risk"]["risk"], "R3");
    let dev = stack(DEV_STACK);
    assert_eq!(dev["plan"]["state"], "failed");
    assert_eq!(dev["plan"]["class"], "auth");
    assert!(dev.get("decision").is_none());
    let stage4 = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["number"] == 4)
        .unwrap()
        .clone();
    assert_eq!(stage4["status"], "blocked");
}

/// `sluice check --record` records stage 5 for the stack's change, bound to the plan stage 4
/// recorded (here by `sluice pr --record --plans`): the same plan JSON is recorded and the bundle
/// verifies; another plan JSON is refused, nothing recorded.
#[test]
fn check_record_binds_its_decision_to_the_recorded_plan() {
    let (repo, base) = org();
    repo.checkout_new("change");
    repo.write(&format!("live/{STACK}/main.tf"), "# rds v2\n");
    let head = repo.commit("change");
    let plans = tempfile::tempdir().unwrap();
    let plan_file = write(plans.path(), "prod__eu-west-1__rds.json", &replica_plan());
    let dir = s(repo.path());
    sluice(&[
        "pr",
        "--repo",
        dir,
        "--base",
        &base,
        "--head",
        &head,
        "--pr",
        "7",
        "--plans",
        s(plans.path()),
        "--record",
    ])
    .expect_code(0);
    let check_record = |plan: &Path| {
        check(&[
            "--repo",
            dir,
            "--rev",
            &head,
            "--stack",
            STACK,
            "--plan-json",
            s(plan),
            "--pr",
            "7",
            "--record",
        ])
    };
    let other = write(
        plans.path(),
        "other.json",
        &plan(vec![rc(
            "aws_sns_topic.events",
            "aws_sns_topic",
            &["create"],
            Value::Null,
            json!({"name": "events"}),
        )]),
    );
    let refused = check_record(&other);
    refused.expect_code(2);
    assert!(
        refused
            .stderr
            .contains("is not the plan JSON recorded by stage 4"),
        "{}",
        refused.stderr
    );
    let recorded = check_record(&plan_file);
    recorded.expect_code(0);
    assert!(
        recorded.stderr.contains("1 change(s), 1 new statement(s)"),
        "{}",
        recorded.stderr
    );
    let change = format!("infra-live#7@{}/prod/eu-west-1/rds", &head[..7]);
    let out = plans.path().join("bundle.json");
    sluice(&[
        "evidence",
        "bundle",
        &change,
        "--out",
        s(&out),
        "--repo",
        dir,
    ])
    .expect_code(0);
    sluice(&["evidence", "verify", s(&out), "--repo", dir]).expect_code(0);
}
