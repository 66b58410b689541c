//! End-to-end tests of `sluice check` (policy, risk and approvals over one plan JSON) and of
//! `sluice pr --plans DIR` (stages 4–6 in the PR report): a small org built as a real git
//! repository, hand-written plan JSON, and the `sluice` binary.

use std::path::Path;

use serde_json::{Value, json};
use sluice_testkit::*;

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

/// A read replica for the production database: R3, allowed with approvals.
fn replica_plan() -> Value {
    plan_json(vec![resource_change(
        "aws_db_instance.replica[1]",
        "aws_db_instance",
        &["create"],
        Value::Null,
        json!({"replicate_source_db": "primary", "instance_class": "db.r6g.large",
               "deletion_protection": true, "publicly_accessible": false,
               "tags": {"owner": "payments"}}),
    )])
}

/// `sluice check --plan-json PLAN --stack STACK EXTRA…`.
fn check(plan: &Path, stack: &str, extra: &[&str]) -> Run {
    let mut args = vec!["check", "--plan-json", s(plan), "--stack", stack];
    args.extend_from_slice(extra);
    sluice(&args)
}

#[test]
fn allowed_without_a_repo_uses_the_builtin_pack_and_default_risk() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_json(
        dir.path(),
        "plan.json",
        &plan_json(vec![resource_change(
            "aws_sns_topic.events",
            "aws_sns_topic",
            &["create"],
            Value::Null,
            json!({"name": "events", "tags": {"owner": "team"}}),
        )]),
    );
    let run = check(&p, "dev/x", &["--env", "dev", "--format", "json"]);
    run.expect_code(Exit::OK);
    let v = run.json();
    assert_eq!(v["schema"], "sluice.check/v1");
    assert_eq!(v["decision"]["status"], "allowed");
    assert_eq!(v["decision"]["risk"]["risk"], "R1");
    assert_eq!(v["decision"]["policy"]["outcome"], "allow");
    assert!(v["decision"]["approvals"].as_array().unwrap().is_empty());
    assert_has(&run.stderr, &["not checked against a repository"]);
    // Production without a repo: `prod` counts as production by default.
    let run = check(&p, "prod/x", &["--env", "prod", "--format", "json"]);
    run.expect_code(Exit::OK);
    assert_eq!(run.json()["decision"]["risk"]["risk"], "R2");
    // Without --env and --repo the environment is unknown: a usage error.
    let run = check(&p, "dev/x", &[]);
    run.expect_code(Exit::USAGE);
    assert_has(&run.stderr, &["--env"]);
}

#[test]
fn read_replica_in_prod_is_r3_with_every_approval_and_its_source() {
    let (repo, _) = org();
    let dir = tempfile::tempdir().unwrap();
    let p = write_json(dir.path(), "plan.json", &replica_plan());
    let run = check(&p, STACK, &["--repo", repo.arg(), "--format", "json"]);
    run.expect_code(Exit::OK);
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

    let md = check(&p, STACK, &["--repo", repo.arg()]);
    md.expect_code(Exit::OK);
    assert_has(
        &md.stdout,
        &[
            "+ aws_db_instance.replica[1]",
            "R3 production database topology change",
            "1 of @acme/dba — CODEOWNERS line 3",
            "PASS `db-public-access`",
        ],
    );

    // --env that contradicts discovery is refused.
    let run = check(&p, STACK, &["--env", "dev", "--repo", repo.arg()]);
    run.expect_code(Exit::USAGE);
    assert_has(&run.stderr, &["belongs to environment `prod`"]);
}

#[test]
fn a_public_database_is_denied_with_exit_1_in_every_format() {
    let (repo, _) = org();
    let dir = tempfile::tempdir().unwrap();
    let p = write_json(
        dir.path(),
        "plan.json",
        &plan_json(vec![resource_change(
            "aws_db_instance.main",
            "aws_db_instance",
            &["update"],
            json!({"publicly_accessible": false}),
            json!({"publicly_accessible": true, "storage_encrypted": true,
                   "deletion_protection": true, "backup_retention_period": 14,
                   "tags": {"owner": "db"}}),
        )]),
    );
    let in_repo = |format| check(&p, STACK, &["--repo", repo.arg(), "--format", format]);
    let md = in_repo("md");
    md.expect_code(Exit::BLOCKED);
    assert_has(
        &md.stdout,
        &[
            "DENY `db-public-access`: aws_db_instance.main is publicly accessible",
            "(`aws_db_instance.main`)",
        ],
    );
    let json = in_repo("json");
    json.expect_code(Exit::BLOCKED);
    assert_eq!(json.json()["decision"]["status"], "denied");
    let sarif = in_repo("sarif");
    sarif.expect_code(Exit::BLOCKED);
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
        resource_change(
            addr,
            "aws_security_group",
            &["create"],
            Value::Null,
            json!({"name": "x", "tags": {"owner": "net"}, "ingress": [{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}]}),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let p = write_json(
        dir.path(),
        "plan.json",
        &plan_json(vec![
            open("aws_security_group.lb"),
            open("aws_security_group.old"),
        ]),
    );
    let run = check(
        &p,
        STACK,
        &[
            "--repo",
            repo.arg(),
            "--now",
            "2029-06-01T00:00:00Z",
            "--format",
            "md",
        ],
    );
    run.expect_code(Exit::OK);
    assert!(
        run.stdout.contains("EXCEPTED `sg-open-ingress`")
            && run.stdout.contains("exception `EXC-1`"),
        "{}",
        run.stdout
    );
    assert_has(
        &run.stdout,
        &["REQUIRE `sg-open-ingress`", "Expired exception `EXC-2`"],
    );
    let v = check(
        &p,
        STACK,
        &[
            "--repo",
            repo.arg(),
            "--now",
            "2029-06-01T00:00:00Z",
            "--format",
            "json",
        ],
    )
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
    let run = check(&bad, STACK, &["--env", "prod"]);
    run.expect_code(Exit::USAGE);
    assert!(
        run.stderr.contains(&format!("{}:3:", bad.display()))
            && run.stderr.contains("malformed plan JSON"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());

    let v2 = write_json(
        dir.path(),
        "v2.json",
        &json!({"format_version": "2.0", "resource_changes": []}),
    );
    let run = check(&v2, STACK, &["--env", "prod"]);
    run.expect_code(Exit::USAGE);
    assert_has(&run.stderr, &["unsupported plan format_version `2.0`"]);

    let ok = write_json(dir.path(), "ok.json", &replica_plan());
    let run = check(&ok, "prod/eu-west-1/nope", &["--repo", repo.arg()]);
    run.expect_code(Exit::USAGE);
    assert_has(&run.stderr, &["unknown stack `prod/eu-west-1/nope`"]);

    let run = check(&dir.path().join("missing.json"), STACK, &["--env", "prod"]);
    run.expect_code(Exit::USAGE);
    assert_has(&run.stderr, &["missing.json"]);

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
    let run = check(&ok, STACK, &["--repo", repo.arg()]);
    run.expect_code(Exit::USAGE);
    assert_has(&run.stderr, &["bad.rego:"]);
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
    let p = write_json(dir.path(), "canary.json", &canary_plan());
    let plans = tempfile::tempdir().unwrap();
    write_json(plans.path(), "prod__eu-west-1__rds.json", &canary_plan());
    for format in ["md", "json", "sarif"] {
        let run = check(&p, STACK, &["--repo", repo.arg(), "--format", format]);
        run.expect_code(Exit::BLOCKED);
        assert!(
            !run.stdout.contains(CANARY) && !run.stderr.contains(CANARY),
            "check {format}:\n{}{}",
            run.stdout,
            run.stderr
        );
        let run = sluice_change(
            "pr",
            repo.path(),
            &base,
            &head,
            &["--plans", s(plans.path()), "--format", format],
        );
        run.expect_code(Exit::BLOCKED);
        assert!(
            !run.stdout.contains(CANARY) && !run.stderr.contains(CANARY),
            "pr {format}:\n{}{}",
            run.stdout,
            run.stderr
        );
    }
    let parts = tempfile::tempdir().unwrap();
    let run = sluice_change(
        "pr",
        repo.path(),
        &base,
        &head,
        &["--plans", s(plans.path()), "--parts-dir", s(parts.path())],
    );
    run.expect_code(Exit::BLOCKED);
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
        sluice_change(
            "pr",
            repo.path(),
            &base,
            &head,
            &["--pr", "7", "--plans", s(plans), "--format", format],
        )
    };
    let plans = tempfile::tempdir().unwrap();
    write_json(plans.path(), "prod__eu-west-1__rds.json", &replica_plan());
    write_json(plans.path(), "typo.json", &replica_plan());
    // The dev stack has no plan: stage 4 partial, the change undecided (exit 0).
    let run = pr(plans.path(), "json");
    run.expect_code(Exit::OK);
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
    write_json(
        plans.path(),
        "dev__eu-west-1__app.json",
        &plan_json(vec![resource_change(
            "aws_sns_topic.t",
            "aws_sns_topic",
            &["create"],
            Value::Null,
            json!({"tags": {"owner": "a"}}),
        )]),
    );
    let run = pr(plans.path(), "json");
    run.expect_code(Exit::OK);
    assert_eq!(run.json()["verdict"], "approvals_required");
    let md = pr(plans.path(), "md");
    md.expect_code(Exit::OK);
    assert_has(
        &md.stdout,
        &[
            "### Stack `prod/eu-west-1/rds` — R3 — approvals required",
            "### Stack `dev/eu-west-1/app` — R1",
            "| 4 | Plan | passed |",
        ],
    );

    // A malformed plan file: the stack's plan failed (exit 6), with the position.
    std::fs::write(
        plans.path().join("dev__eu-west-1__app.json"),
        "{\"format_version\": \"1.2\",\n  oops}",
    )
    .unwrap();
    let run = pr(plans.path(), "json");
    run.expect_code(Exit::PLAN_FAILED);
    let v = run.json();
    assert_eq!(v["verdict"], "plan_failed");
    let dev = unit(&v, "stacks", DEV_STACK).clone();
    assert_eq!(dev["plan"]["state"], "failed");
    assert!(
        dev["plan"]["message"]
            .as_str()
            .unwrap()
            .contains("dev__eu-west-1__app.json:2:"),
        "{dev}"
    );

    // A denied stack: exit 1 (deny wins over the failed plan).
    write_json(
        plans.path(),
        "prod__eu-west-1__rds.json",
        &plan_json(vec![resource_change(
            "aws_db_instance.main",
            "aws_db_instance",
            &["create"],
            Value::Null,
            json!({"publicly_accessible": true, "storage_encrypted": true, "deletion_protection": true, "tags": {"owner": "x"}}),
        )]),
    );
    let run = pr(plans.path(), "sarif");
    run.expect_code(Exit::BLOCKED);
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
    run.expect_code(Exit::USAGE);
}

#[test]
fn pr_without_plans_says_stage_4_was_not_run() {
    let (repo, base) = org();
    repo.checkout_new("change");
    repo.write(&format!("live/{STACK}/main.tf"), "# rds v2\n");
    let head = repo.commit("change");
    let run = sluice_change("pr", repo.path(), &base, &head, &[]);
    run.expect_code(Exit::OK);
    assert_has(
        &run.stdout,
        &[
            "plan not run",
            "| 4 | Plan | not run |",
            "| 5 | Policy | not run |",
        ],
    );
}

/// `pr --run-plans` with the OpenTofu test double (crates/adapters/iac/tests/support) as
/// `tofu` on PATH: one stack plans (its plan JSON is served by the double), one fails with an
/// auth error; the report carries the engine plan's digest and the classified failure.
#[test]
fn pr_run_plans_uses_the_engine_and_classifies_failures() {
    let (repo, base) = org();
    let dir = tempfile::tempdir().unwrap();
    let served = write_json(dir.path(), "served.json", &replica_plan());
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

    let bin = TestDoubleBin::new(&["tofu"]);
    let store = tempfile::tempdir().unwrap();
    let run = Sluice::new().path_first(bin.path()).change(
        "pr",
        repo.path(),
        &base,
        &head,
        &[
            "--run-plans",
            "--plan-store",
            s(store.path()),
            "--format",
            "json",
        ],
    );
    run.expect_code(Exit::PLAN_FAILED);
    let v = run.json();
    assert_eq!(v["verdict"], "plan_failed");
    let stack = |id: &str| unit(&v, "stacks", id).clone();
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
    let plan_file = write_json(plans.path(), "prod__eu-west-1__rds.json", &replica_plan());
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
    .expect_code(Exit::OK);
    let check_record = |plan: &Path| {
        check(
            plan,
            STACK,
            &["--repo", dir, "--rev", &head, "--pr", "7", "--record"],
        )
    };
    let other = write_json(
        plans.path(),
        "other.json",
        &plan_json(vec![resource_change(
            "aws_sns_topic.events",
            "aws_sns_topic",
            &["create"],
            Value::Null,
            json!({"name": "events"}),
        )]),
    );
    let refused = check_record(&other);
    refused.expect_code(Exit::USAGE);
    assert!(
        refused
            .stderr
            .contains("is not the plan JSON recorded by stage 4"),
        "{}",
        refused.stderr
    );
    let recorded = check_record(&plan_file);
    recorded.expect_code(Exit::OK);
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
    .expect_code(Exit::OK);
    sluice(&["evidence", "verify", s(&out), "--repo", dir]).expect_code(Exit::OK);
}

/// `sluice pr --record` records each stage as it finishes, not the whole report at its end:
/// stages 1–2 (with a manifest) are in the log before the stack's plan statement, and the
/// stack's stages 4–6 follow under a second manifest version of the same change.
#[test]
fn pr_record_records_each_stage_as_it_finishes() {
    let (repo, base) = org();
    repo.checkout_new("change");
    repo.write(&format!("live/{STACK}/main.tf"), "# rds v2\n");
    let head = repo.commit("change");
    let plans = tempfile::tempdir().unwrap();
    write_json(plans.path(), "prod__eu-west-1__rds.json", &replica_plan());
    let dir = s(repo.path());
    let pr = |extra: &[&str]| {
        let mut args = vec!["pr", "--repo", dir, "--base", &base, "--head", &head];
        args.extend(["--pr", "7", "--plans", s(plans.path()), "--record"]);
        args.extend_from_slice(extra);
        sluice(&args)
    };
    let first = pr(&[]);
    first.expect_code(Exit::OK);
    let change = format!("infra-live#7@{}/prod/eu-west-1/rds", &head[..7]);
    let log = sluice(&[
        "evidence", "log", "--repo", dir, "--change", &change, "--format", "json",
    ]);
    log.expect_code(Exit::OK);
    let log = log.json();
    let leaf = |pred: &dyn Fn(&Value) -> bool| -> u64 {
        let found = log["entries"].as_array().unwrap().iter().find(|e| pred(e));
        found
            .and_then(|e| e["leaf_index"].as_u64())
            .unwrap_or_else(|| panic!("no such entry in {log:#}"))
    };
    let validate = leaf(&|e| e["stage"] == "validate");
    let first_manifest = leaf(&|e| e["manifest_version"] == 1);
    let plan = leaf(&|e| e["stage"] == "plan");
    let policy = leaf(&|e| e["stage"] == "policy");
    let second_manifest = leaf(&|e| e["manifest_version"] == 2);
    assert!(
        validate < first_manifest && first_manifest < plan && plan < policy,
        "stages 1–2 and their manifest come before the plan: {log:#}"
    );
    assert!(policy < second_manifest, "{log:#}");
    // The summary counts each statement once, and the same run again signs nothing.
    assert!(
        first
            .stderr
            .contains("1 change(s), 4 new statement(s), 0 unchanged"),
        "{}",
        first.stderr
    );
    let again = pr(&[]);
    again.expect_code(Exit::OK);
    assert!(
        again.stderr.contains("0 new statement(s), 4 unchanged"),
        "{}",
        again.stderr
    );
}
