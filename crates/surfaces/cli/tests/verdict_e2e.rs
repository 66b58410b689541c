//! One verdict everywhere (issue 13, items 6, 7 and 10): what the reports link to, what a plan
//! against empty state says, and that `validate`, `graph`, `affected`, `stacks` and `pr` stop
//! on the same things, end to end through the `sluice` binary on small hand-made orgs.

use sluice_testkit::*;

/// A Deployment without resource requests or limits: the built-in `k8s-resources` rule finds
/// it, and its result links to `docs/policy.md#k8s-resources`.
const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: web\nspec:\n  replicas: REPLICAS\n  selector:\n    matchLabels: { app: web }\n  template:\n    metadata:\n      labels: { app: web }\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n";

const APP: &str = "gitops/clusters/dev-eu/apps/web/deploy.yaml";

/// A GitOps-only org's `sluice.yaml`: one dev cluster.
fn app_yaml() -> String {
    "version: 1\norg: test\nenvironments:\n  dev: { order: 1 }\napps:\n  root: gitops/clusters\n  layout: \"{cluster}/apps/{app}\"\n  clusters: { dev-eu: dev }\n".to_string()
}

/// A GitOps-only org with one dev cluster, `policy_extra` appended as the `policy:` section's
/// body, the Deployment on `main` (1 replica) and on `pr/1` (2 replicas).
fn app_change(policy_extra: &str) -> Repo {
    let mut yaml = app_yaml();
    if !policy_extra.is_empty() {
        yaml.push_str(&format!("policy:\n  {policy_extra}\n"));
    }
    let repo = Repo::new();
    repo.write("sluice.yaml", yaml);
    repo.write(APP, DEPLOYMENT.replace("REPLICAS", "1"));
    repo.commit("web");
    repo.checkout_new("pr/1");
    repo.write(APP, DEPLOYMENT.replace("REPLICAS", "2"));
    repo.commit("two replicas");
    repo
}

fn pr_markdown(repo: &Repo) -> String {
    let run = sluice(&[
        "pr",
        "--repo",
        repo.arg(),
        "--base",
        "main",
        "--head",
        "pr/1",
    ]);
    assert!(run.code == 0 || run.code == 1, "{}", run.all_output());
    run.stdout.clone()
}

#[test]
fn policy_links_join_under_the_configured_docs_url() {
    let repo = app_change("docs_url: https://docs.example.com/sluice");
    let md = pr_markdown(&repo);
    assert_has(
        &md,
        &["[`k8s-resources`](https://docs.example.com/sluice/docs/policy.md#k8s-resources)"],
    );
    assert_lacks(&md, &["](docs/policy.md", "example.invalid"]);
}

#[test]
fn policy_links_default_to_the_project_documentation() {
    let md = pr_markdown(&app_change(""));
    assert_has(
        &md,
        &[
            "[`k8s-resources`](https://example.invalid/sluice/blob/main/docs/policy.md#k8s-resources)",
        ],
    );
}

#[test]
fn a_docs_url_that_is_not_a_url_names_the_field() {
    let repo = app_change("docs_url: docs/");
    let run = sluice(&[
        "pr",
        "--repo",
        repo.arg(),
        "--base",
        "main",
        "--head",
        "pr/1",
    ]);
    run.expect_error(Exit::USAGE, &["policy.docs_url", "absolute http(s) URL"]);
}

const STACK: &str = "live/dev/eu-west-1/data";

/// A plain Terraform stack whose `main.tf` has `terraform_block` before one resource, changed
/// on `pr/1`, and `sluice pr --plans` over `plan` for it: the Markdown report.
fn stack_pr(terraform_block: &str, plan: serde_json::Value) -> String {
    let repo = org_repo();
    let body = |input: u32| {
        format!("{terraform_block}resource \"terraform_data\" \"db\" {{\n  input = {input}\n}}\n")
    };
    repo.write(&format!("{STACK}/main.tf"), body(1));
    repo.commit("stack");
    repo.checkout_new("pr/1");
    repo.write(&format!("{STACK}/main.tf"), body(2));
    repo.commit("change");
    let plans = tempfile::tempdir().unwrap();
    write_json(plans.path(), "dev__eu-west-1__data.json", &plan);
    let run = sluice(&[
        "pr",
        "--repo",
        repo.arg(),
        "--base",
        "main",
        "--head",
        "pr/1",
        "--plans",
        s(plans.path()),
    ]);
    assert!(run.code == 0 || run.code == 1, "{}", run.all_output());
    run.stdout.clone()
}

fn create_plan() -> serde_json::Value {
    plan_json(vec![resource_change(
        "terraform_data.db",
        "terraform_data",
        &["create"],
        serde_json::Value::Null,
        serde_json::json!({"input": 2}),
    )])
}

const EMPTY_STATE: &str = "planned against empty state, because no backend is configured";

#[test]
fn a_plan_without_state_and_without_a_backend_says_so() {
    let md = stack_pr("", create_plan());
    assert_has(&md, &[&format!("dev/eu-west-1/data: {EMPTY_STATE}"), STACK]);
}

#[test]
fn a_configured_backend_or_prior_state_is_not_called_empty_state() {
    let backend = "terraform {\n  backend \"s3\" {}\n}\n";
    assert_lacks(&stack_pr(backend, create_plan()), &[EMPTY_STATE]);
    let mut with_state = create_plan();
    with_state["prior_state"] = serde_json::json!({"values": {"root_module": {"resources": [
        {"address": "terraform_data.db", "mode": "managed", "type": "terraform_data",
         "name": "db", "values": {"input": 1}}
    ]}}});
    assert_lacks(&stack_pr("", with_state), &[EMPTY_STATE]);
    // State without resources is empty state.
    let mut empty = create_plan();
    empty["prior_state"] = serde_json::json!({"values": {"root_module": {}}});
    assert_has(&stack_pr("", empty), &[EMPTY_STATE]);
}

/// A CRD (v1, one version without a schema: a note) and one object of its kind.
const CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  names: { kind: Widget, plural: widgets }\n  versions:\n    - name: v1\n      served: true\n      storage: true\n";
const WIDGET: &str =
    "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: ops\n";

#[test]
fn render_shows_only_the_apps_own_crd_notes() {
    let (repo, _) = Repo::with_files(&[
        ("sluice.yaml", app_yaml()),
        ("gitops/clusters/dev-eu/apps/crds/crd.yaml", CRD.to_string()),
        (
            "gitops/clusters/dev-eu/apps/ops/widget.yaml",
            WIDGET.to_string(),
        ),
        (APP, DEPLOYMENT.replace("REPLICAS", "1")),
    ]);
    let notes = |app: &str| {
        let run = sluice(&["render", app, "--repo", repo.arg(), "--format", "json"]);
        assert!(run.code == 0 || run.code == 1, "{}", run.all_output());
        serde_json::to_string(&run.json()["notes"]).unwrap()
    };
    const NOTE: &str = "CRD widgets.example.com version v1 has no openAPIV3Schema";
    // The CRD's own app and the app that uses its kind see the note; the other app does not.
    assert_has(&notes("dev-eu/crds"), &[NOTE]);
    assert_has(&notes("dev-eu/ops"), &[NOTE]);
    assert_lacks(&notes("dev-eu/web"), &[NOTE, "widgets"]);
}

/// Two stacks, `app` depending on `db`, and a third whose `terragrunt.hcl` does not parse.
fn org_with_a_broken_stack() -> Repo {
    let repo = org_repo();
    repo.write(&format!("{R}/db/terragrunt.hcl"), plain_stack("a = 1"));
    repo.write(&format!("{R}/app/terragrunt.hcl"), dependency_on("db"));
    repo.write(&format!("{R}/broken/terragrunt.hcl"), "inputs = {\n");
    repo.commit("org");
    repo
}

#[test]
fn graph_stacks_and_affected_do_not_drop_a_stack_silently() {
    let repo = org_with_a_broken_stack();
    let file = format!("{R}/broken/terragrunt.hcl");
    for args in [
        vec!["graph", "--repo", repo.arg()],
        vec!["stacks", "--repo", repo.arg()],
        vec![
            "affected",
            "--repo",
            repo.arg(),
            "--base",
            "HEAD",
            "--head",
            "HEAD",
        ],
    ] {
        let run = sluice(&args);
        run.expect_code(Exit::INCONSISTENT_ORG)
            .stderr_has(&["warning:", &file, "--allow-errors"]);
        let mut allowed = args.clone();
        allowed.push("--allow-errors");
        let run = sluice(&allowed);
        run.expect_code(Exit::OK).stderr_has(&["warning:", &file]);
    }
    let graph = sluice(&["graph", "--repo", repo.arg(), "--allow-errors"]);
    graph.stdout_has(&["dev/eu-west-1/app", "-> dev/eu-west-1/db"]);
}

#[test]
fn pr_reports_on_an_inconsistent_org_then_exits_4() {
    let repo = org_repo();
    repo.write(&format!("{R}/a/terragrunt.hcl"), dependency_on("b"));
    repo.write(&format!("{R}/b/terragrunt.hcl"), plain_stack("b = 1"));
    repo.commit("org");
    repo.checkout_new("pr/1");
    // The change closes a cycle: b now depends on a.
    repo.write(
        &format!("{R}/b/terragrunt.hcl"),
        format!("{}{}", plain_stack("b = 2"), dependency_on("a")),
    );
    repo.commit("cycle");
    let args = [
        "pr",
        "--repo",
        repo.arg(),
        "--base",
        "main",
        "--head",
        "pr/1",
    ];
    let md = sluice(&args);
    md.expect_code(Exit::INCONSISTENT_ORG)
        .stdout_has(&["## sluice: test", "Inconsistent org:", "dependency cycle"])
        .stderr_has(&["error: dependency cycle"]);
    let mut json_args = args.to_vec();
    json_args.extend(["--format", "json"]);
    let run = sluice(&json_args);
    run.expect_code(Exit::INCONSISTENT_ORG);
    let report = run.json();
    let errors = report["org_errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("dev/eu-west-1/a")),
        "{errors:?}"
    );
    assert_units(
        &report["affected"],
        "stacks",
        &[
            ("dev/eu-west-1/a", "dependent"),
            ("dev/eu-west-1/b", "modified"),
        ],
    );
}

#[test]
fn validate_reports_a_cycle_at_the_dependency_block() {
    let repo = org_repo();
    let a = format!("{R}/a/terragrunt.hcl");
    let b = format!("{R}/b/terragrunt.hcl");
    repo.write(&a, format!("# a reads b\n\n{}", dependency_on("b")));
    repo.write(&b, plain_stack("b = 1"));
    repo.commit("org");
    repo.checkout_new("pr/1");
    repo.write(
        &b,
        format!("{}{}", plain_stack("b = 2"), dependency_on("a")),
    );
    repo.commit("cycle");
    let run = sluice(&[
        "validate",
        "--repo",
        repo.arg(),
        "--base",
        "main",
        "--head",
        "pr/1",
        "--format",
        "json",
    ]);
    run.expect_code(Exit::BLOCKED);
    let report = run.json();
    let cycles: Vec<(String, u64)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "graph/cycle")
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    // One cycle, at the `config_path` of the `dependency` block (not 1:1) of whichever stack
    // it starts from.
    assert!(
        cycles == [(a.clone(), 4)] || cycles == [(b.clone(), 5)],
        "{cycles:?}"
    );
}

/// A `sluice.yaml` using every section sluice reads, each valid; the table below breaks one
/// value at a time. Line numbers are 1-based and listed beside the lines they test.
const FULL_CONFIG: &str = r#"version: 1
org: test
environments:
  dev: { order: 1 }
  prod: { order: 2, protected: true }
repos:
  infra: { path: live }
stacks:
  root: live
  layout: "{env}/{region}/{stack}"
  layers: [network, { name: data, stacks: ["rds-*"] }]
  depends_on:
    - { stack: dev/eu-west-1/a, on: [dev/eu-west-1/b] }
  watch:
    - { stacks: "dev/*/*", paths: ["live/dev/env.hcl"] }
  dependents: true
apps:
  root: gitops/clusters
  layout: "{cluster}/apps/{app}"
  clusters: { dev-eu: dev }
owners:
  codeowners: .github/CODEOWNERS
validate:
  forbidden_paths: ["**/*.tfstate"]
  max_file_bytes: 1048576
  secrets:
    default_rules: true
    allow_paths: ["**/testdata/**"]
risk:
  defaults: true
  rules:
    - { when: { env: prod, actions: [delete] }, risk: R4, reason: prod deletes }
approvals:
  R3: ["@test/platform"]
plan:
  engine: auto
  parallelism: 2
  redact:
    secret_names: ["^token$"]
policy:
  preexisting: warn
  builtin:
    disable: [required-tags]
  bundles: [policies]
  namespaces: [main]
  limits: { timeout_ms: 5000 }
  exceptions: { path: exceptions, max_days: 90 }
  docs_url: https://docs.example.com/sluice/
"#;

/// A valid Rego module for the `policies` bundle.
const REGO: &str = "package main\n\nimport rego.v1\n\ndeny contains msg if {\n\tinput.never\n\tmsg := \"never\"\n}\n";

#[test]
fn validate_reports_a_bad_value_in_every_section_at_its_line() {
    let repo = Repo::new();
    repo.write("sluice.yaml", FULL_CONFIG);
    repo.write("policies/main.rego", REGO);
    repo.write("exceptions/.keep", "");
    repo.write(&tg("a"), plain_stack("a = 1"));
    repo.write(&tg("b"), plain_stack("b = 1"));
    let good = repo.commit("a valid org using every section");
    let run = sluice(&["validate", "--repo", repo.arg(), "--all", "--head", &good]);
    assert_eq!(
        run.code,
        0,
        "the full config is valid:\n{}",
        run.all_output()
    );

    // (section, text to replace, replacement, file, expected line, words the message has)
    let table: &[(&str, &str, &str, &str, u64, &str)] = &[
        (
            "version",
            "version: 1",
            "version: 2",
            "sluice.yaml",
            1,
            "version 2",
        ),
        ("org", "org: test", "org: [test]", "sluice.yaml", 2, "`org`"),
        (
            "environments",
            "protected: true",
            "protected: maybe",
            "sluice.yaml",
            5,
            "protected",
        ),
        (
            "repos",
            "{ path: live }",
            "{ path: ../../etc }",
            "sluice.yaml",
            7,
            "escapes",
        ),
        (
            "stacks.layout",
            "\"{env}/{region}/{stack}\"",
            "\"{region}/{stack}\"",
            "sluice.yaml",
            10,
            "{env}",
        ),
        (
            "stacks.layers",
            "stacks: [\"rds-*\"]",
            "stackz: [\"rds-*\"]",
            "sluice.yaml",
            11,
            "stackz",
        ),
        (
            "stacks.depends_on",
            "on: [dev/eu-west-1/b]",
            "on: [b]",
            "sluice.yaml",
            13,
            "`b`",
        ),
        (
            "stacks.watch",
            "paths: [\"live",
            "pathz: [\"live",
            "sluice.yaml",
            15,
            "pathz",
        ),
        (
            "stacks.dependents",
            "dependents: true",
            "dependents: maybe",
            "sluice.yaml",
            16,
            "dependents",
        ),
        (
            "apps.clusters",
            "dev-eu: dev",
            "dev-eu: qa",
            "sluice.yaml",
            20,
            "qa",
        ),
        (
            "owners",
            "codeowners: .github/CODEOWNERS",
            "codeowners: [x]",
            "sluice.yaml",
            22,
            "codeowners",
        ),
        (
            "validate",
            "max_file_bytes: 1048576",
            "max_file_bytes: big",
            "sluice.yaml",
            25,
            "max_file_bytes",
        ),
        (
            "validate.secrets",
            "default_rules: true",
            "rules: security/none.toml",
            "sluice.yaml",
            27,
            "security/none.toml",
        ),
        ("risk", "risk: R4", "risk: R9", "sluice.yaml", 32, "R9"),
        ("approvals", "R3: [", "R9: [", "sluice.yaml", 34, "R9"),
        (
            "plan.engine",
            "engine: auto",
            "engine: podman",
            "sluice.yaml",
            36,
            "plan.engine",
        ),
        (
            "plan.parallelism",
            "parallelism: 2",
            "parallelism: 0",
            "sluice.yaml",
            37,
            "plan.parallelism",
        ),
        (
            "plan.redact",
            "[\"^token$\"]",
            "[\"(\"]",
            "sluice.yaml",
            39,
            "plan.redact",
        ),
        (
            "policy.preexisting",
            "preexisting: warn",
            "preexisting: maybe",
            "sluice.yaml",
            41,
            "policy.preexisting",
        ),
        (
            "policy.builtin",
            "disable: [required-tags]",
            "disable: [no-such-rule]",
            "sluice.yaml",
            43,
            "policy.builtin.disable[0]",
        ),
        (
            "policy.bundles",
            "bundles: [policies]",
            "bundles: [nowhere]",
            "sluice.yaml",
            44,
            "nowhere",
        ),
        (
            "policy.namespaces",
            "namespaces: [main]",
            "namespaces: []",
            "sluice.yaml",
            45,
            "policy.namespaces",
        ),
        (
            "policy.limits",
            "timeout_ms: 5000",
            "timeout_ms: 0",
            "sluice.yaml",
            46,
            "policy.limits.timeout_ms",
        ),
        (
            "policy.exceptions",
            "max_days: 90",
            "max_days: -1",
            "sluice.yaml",
            47,
            "policy.exceptions.max_days",
        ),
        (
            "policy.docs_url",
            "https://docs.example.com/sluice/",
            "docs/",
            "sluice.yaml",
            48,
            "policy.docs_url",
        ),
    ];
    let mut failures = Vec::new();
    for (section, from, to, file, line, words) in table {
        assert!(
            FULL_CONFIG.contains(from),
            "{section}: `{from}` not in the config"
        );
        repo.checkout(&good);
        repo.write("sluice.yaml", FULL_CONFIG.replacen(from, to, 1));
        let head = repo.commit(section);
        let run = sluice(&[
            "validate",
            "--repo",
            repo.arg(),
            "--all",
            "--head",
            &head,
            "--format",
            "json",
        ]);
        let report = run.json();
        let found = report["findings"].as_array().unwrap().iter().any(|f| {
            f["file"] == *file
                && f["line"] == *line
                && f["severity"] == "error"
                && f["message"].as_str().unwrap_or("").contains(words)
        });
        if run.code == 0 || !found {
            failures.push(format!(
                "{section}: exit {}, want an error at {file}:{line} saying {words:?}; got {}",
                run.code,
                serde_json::to_string(&report["findings"]).unwrap()
            ));
        }
    }
    // Errors outside `sluice.yaml` that `pr` would stop on: a Rego module that does not
    // compile and an exception file that does not parse, at their own files.
    for (section, path, content, line) in [
        (
            "bundle",
            "policies/main.rego",
            "package main\n\nimport rego.v1\n\ndeny contains msg if {\n",
            5u64,
        ),
        (
            "exceptions",
            "exceptions/waiver.yaml",
            "id: x\nexpires: [\n",
            2,
        ),
    ] {
        repo.checkout(&good);
        repo.write(path, content);
        let head = repo.commit(section);
        let run = sluice(&[
            "validate",
            "--repo",
            repo.arg(),
            "--all",
            "--head",
            &head,
            "--format",
            "json",
        ]);
        let report = run.json();
        let at: Vec<(String, u64)> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] == "error")
            .map(|f| {
                (
                    f["file"].as_str().unwrap().to_string(),
                    f["line"].as_u64().unwrap(),
                )
            })
            .collect();
        if run.code == 0 || !at.iter().any(|(f, l)| f == path && *l >= line.min(2)) {
            failures.push(format!(
                "{section}: exit {}, want an error in {path}; got {at:?}",
                run.code
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
