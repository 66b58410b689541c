//! End-to-end tests of `sluice affected` on git repositories built in the test: each test
//! builds a small org, makes a change on a branch and checks the exact set of affected stacks
//! and apps, their status and the kind of reason given for each. The decision itself (how
//! dependents propagate, ordering) is tested as a pure function in
//! crates/model/tests/affected_decisions.rs; here each case checks what git, discovery and the
//! parsers feed it.

use serde_json::Value;
use sluice_testkit::*;

/// [`assert_kind_paths`] for each `(id, want)` row: the reasons of several units of one section.
#[track_caller]
fn assert_kind_paths_of<S: AsRef<str>>(
    report: &Value,
    section: &str,
    rows: &[(&str, &[(&str, S)])],
) {
    for (id, want) in rows {
        assert_kind_paths(report, section, id, want);
    }
}

/// A stack at `live/dev/eu-west-1/<name>` (or the env/region given in `id`).
fn stack_path(id: &str) -> String {
    format!("live/{id}")
}

// ---------------------------------------------------------------------------------------------
// 1. files under a stack directory

#[test]
fn file_under_stack_dir_marks_only_that_stack() {
    let repo = org_repo();
    repo.write(&tg("network"), plain_stack("cidr = \"10.0.0.0/16\""));
    repo.write(&tg("network-b"), plain_stack("cidr = \"10.1.0.0/16\""));
    repo.write(&format!("{R}/networkb/main.tf"), "# other\n");
    repo.write(
        &format!("{R}/dns/main.tf"),
        "resource \"null_resource\" \"x\" {}\n",
    );
    let base = repo.commit("base");
    repo.checkout_new("change");
    repo.write(&tg("network"), plain_stack("cidr = \"10.9.0.0/16\""));
    // A nested non-Terraform file below the stack is still the stack's file.
    repo.write(&format!("{R}/network/policies/extra.json"), "{}\n");
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/network", "modified")]);
    assert_kind_paths(
        &r,
        "stacks",
        "dev/eu-west-1/network",
        &[
            ("file", format!("{R}/network/policies/extra.json")),
            ("file", tg("network")),
        ],
    );
    let u = unit(&r, "stacks", "dev/eu-west-1/network");
    assert_eq!(u["path"], format!("{R}/network"));
    assert_eq!(u["env"], "dev");
    assert_eq!(r["base"], base);
    assert_eq!(r["head"], repo.head());
    assert_units(&r, "apps", &[]);
}

#[test]
fn change_outside_any_stack_or_input_affects_nothing() {
    let repo = org_repo();
    repo.write(&tg("network"), plain_stack("a = 1"));
    repo.write("README.md", "hello\n");
    let base = repo.commit("base");
    repo.write("README.md", "hello again\n");
    repo.write("docs/notes.md", "notes\n");
    // A file directly in the region folder is not in any stack.
    repo.write(
        &format!("{R}/region.hcl"),
        "locals { region = \"eu-west-1\" }\n",
    );
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[]);
    assert_units(&r, "apps", &[]);
}

// ---------------------------------------------------------------------------------------------
// 2. local modules, followed transitively

fn module_org() -> (Repo, String) {
    let repo = org_repo();
    repo.write(
        &tg("network"),
        "terraform {\n  source = \"../../../../modules//vpc\"\n}\n\ninputs = {\n  cidr = \"10.0.0.0/16\"\n}\n",
    );
    repo.write(
        &tg("dns"),
        "terraform {\n  source = \"../../../../modules//dns\"\n}\n",
    );
    // A plain Terraform stack (no Terragrunt) using the security-group module directly.
    repo.write(
        &format!("{R}/firewall/main.tf"),
        "module \"sg\" {\n  source = \"../../../../modules/sg\"\n  name   = \"fw\"\n}\n",
    );
    // A stack that pins a remote module: never affected by local module changes.
    repo.write(
        "live/prod/eu-west-1/network/terragrunt.hcl",
        "terraform {\n  source = \"git::https://example.com/modules.git//vpc?ref=v1.2.3\"\n}\n",
    );
    repo.write(
        "modules/vpc/main.tf",
        "module \"sg\" {\n  source = \"../sg\"\n  name   = \"vpc\"\n}\n\nresource \"aws_vpc\" \"this\" {\n  cidr_block = var.cidr\n}\n",
    );
    repo.write("modules/vpc/variables.tf", "variable \"cidr\" {}\n");
    repo.write(
        "modules/sg/main.tf",
        "resource \"aws_security_group\" \"this\" {\n  name = var.name\n}\n",
    );
    repo.write("modules/sg/variables.tf", "variable \"name\" {}\n");
    repo.write(
        "modules/dns/main.tf",
        "resource \"aws_route53_zone\" \"z\" {\n  name = \"x\"\n}\n",
    );
    repo.write(
        "modules/unused/main.tf",
        "resource \"null_resource\" \"n\" {}\n",
    );
    let base = repo.commit("base");
    repo.checkout_new("change");
    (repo, base)
}

#[test]
fn module_change_marks_stacks_using_it() {
    let (repo, base) = module_org();
    repo.write(
        "modules/vpc/main.tf",
        "module \"sg\" {\n  source = \"../sg\"\n  name   = \"vpc2\"\n}\n",
    );
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/network", "modified")]);
    assert_kind_paths(
        &r,
        "stacks",
        "dev/eu-west-1/network",
        &[("module", "modules/vpc/main.tf")],
    );
}

#[test]
fn module_used_transitively_marks_stacks() {
    let (repo, base) = module_org();
    repo.write(
        "modules/sg/main.tf",
        "resource \"aws_security_group\" \"this\" {\n  name        = var.name\n  description = \"changed\"\n}\n",
    );
    let r = affected_since(&repo, &base);
    // network uses vpc which uses sg; firewall uses sg directly; dns uses neither.
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/firewall", "modified"),
            ("dev/eu-west-1/network", "modified"),
        ],
    );
    for id in ["dev/eu-west-1/firewall", "dev/eu-west-1/network"] {
        assert_kind_paths(&r, "stacks", id, &[("module", "modules/sg/main.tf")]);
    }
}

#[test]
fn unrelated_module_change_marks_nothing() {
    let (repo, base) = module_org();
    repo.write("modules/unused/main.tf", "# changed\n");
    repo.write("modules/unused/new.tf", "# new\n");
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[]);
}

#[test]
fn source_with_get_terragrunt_dir_is_evaluated() {
    let repo = org_repo();
    repo.write(
        &tg("network"),
        "terraform {\n  source = \"${get_terragrunt_dir()}/../../../../modules//vpc\"\n}\n",
    );
    repo.write(&tg("other"), plain_stack("a = 1"));
    repo.write("modules/vpc/main.tf", "# v1\n");
    let base = repo.commit("base");
    repo.write("modules/vpc/main.tf", "# v2\n");
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/network", "modified")]);
    assert_eq!(kinds(&r, "stacks", "dev/eu-west-1/network"), ["module"]);
    assert!(warnings(&r).is_empty(), "{:?}", warnings(&r));
}

// ---------------------------------------------------------------------------------------------
// 3. includes and read_terragrunt_config

fn include_org() -> (Repo, String) {
    let repo = org_repo();
    let both = "include \"root\" {\n  path = find_in_parent_folders(\"root.hcl\")\n}\n\nlocals {\n  env = read_terragrunt_config(find_in_parent_folders(\"env.hcl\"))\n}\n\ninputs = {\n  env = local.env.locals.env\n}\n";
    let root_only = "include \"root\" {\n  path = find_in_parent_folders(\"root.hcl\")\n}\n";
    repo.write(
        "live/root.hcl",
        "remote_state {\n  backend = \"s3\"\n  config = {\n    key = \"${path_relative_to_include()}/terraform.tfstate\"\n  }\n}\n",
    );
    repo.write("live/dev/env.hcl", "locals {\n  env = \"dev\"\n}\n");
    repo.write("live/prod/env.hcl", "locals {\n  env = \"prod\"\n}\n");
    repo.write(&tg("app"), both);
    repo.write(&tg("api"), root_only);
    repo.write("live/prod/eu-west-1/app/terragrunt.hcl", both);
    repo.write(&tg("standalone"), plain_stack("a = 1"));
    repo.write(
        &format!("{R}/tf/main.tf"),
        "resource \"null_resource\" \"n\" {}\n",
    );
    let base = repo.commit("base");
    repo.checkout_new("change");
    (repo, base)
}

#[test]
fn included_root_file_marks_every_stack_that_includes_it() {
    let (repo, base) = include_org();
    repo.write(
        "live/root.hcl",
        "remote_state {\n  backend = \"gcs\"\n  config = {\n    key = \"${path_relative_to_include()}/terraform.tfstate\"\n  }\n}\n",
    );
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/api", "modified"),
            ("dev/eu-west-1/app", "modified"),
            ("prod/eu-west-1/app", "modified"),
        ],
    );
    for id in [
        "dev/eu-west-1/api",
        "dev/eu-west-1/app",
        "prod/eu-west-1/app",
    ] {
        assert_kind_paths(&r, "stacks", id, &[("include", "live/root.hcl")]);
    }
}

#[test]
fn file_read_with_read_terragrunt_config_marks_its_readers_only() {
    let (repo, base) = include_org();
    repo.write("live/dev/env.hcl", "locals {\n  env = \"development\"\n}\n");
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/app", "modified")]);
    let rs = reasons(&r, "stacks", "dev/eu-west-1/app");
    assert_eq!(rs.len(), 1, "{rs:?}");
    assert_eq!(rs[0].0, "include");
    assert_eq!(rs[0].1, "live/dev/env.hcl");
    assert_eq!(rs[0].2, tg("app"), "via names the reader");
}

#[test]
fn var_file_from_extra_arguments_is_an_input() {
    let repo = org_repo();
    repo.write(
        &tg("app"),
        "terraform {\n  extra_arguments \"common\" {\n    commands           = [\"plan\", \"apply\"]\n    required_var_files = [\"${get_terragrunt_dir()}/../../common.tfvars\"]\n  }\n}\n",
    );
    repo.write(&tg("other"), plain_stack("a = 1"));
    repo.write("live/dev/common.tfvars", "x = 1\n");
    let base = repo.commit("base");
    repo.write("live/dev/common.tfvars", "x = 2\n");
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/app", "modified")]);
    assert_kind_paths(
        &r,
        "stacks",
        "dev/eu-west-1/app",
        &[("include", "live/dev/common.tfvars")],
    );
}

// ---------------------------------------------------------------------------------------------
// 4. dependency propagation

fn chain_org(stacks_extra: &str) -> (Repo, String) {
    let repo = org_repo_with(stacks_extra);
    repo.write(&tg("a"), plain_stack("a = 1"));
    repo.write(
        &tg("b"),
        "dependency \"a\" {\n  config_path = \"../a\"\n}\n\ninputs = {\n  x = dependency.a.outputs.x\n}\n",
    );
    repo.write(&tg("c"), dependency_on("b"));
    repo.write(&tg("z"), plain_stack("z = 1"));
    let base = repo.commit("base");
    repo.checkout_new("change");
    repo.write(&tg("a"), plain_stack("a = 2"));
    (repo, base)
}

#[test]
fn dependents_of_a_changed_stack_are_affected() {
    let (repo, base) = chain_org("");
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/a", "modified"),
            ("dev/eu-west-1/b", "dependent"),
            ("dev/eu-west-1/c", "dependent"),
        ],
    );
    assert_eq!(kinds(&r, "stacks", "dev/eu-west-1/a"), ["file"]);
    assert_eq!(kinds(&r, "stacks", "dev/eu-west-1/b"), ["dependency"]);
    assert_eq!(kinds(&r, "stacks", "dev/eu-west-1/c"), ["dependency"]);
    assert_eq!(
        dependency_reasons(&r, "stacks", "dev/eu-west-1/b"),
        ["dev/eu-west-1/a"]
    );
    assert_eq!(
        dependency_reasons(&r, "stacks", "dev/eu-west-1/c"),
        ["dev/eu-west-1/b"]
    );
}

#[test]
fn dependents_false_affects_only_the_changed_stack() {
    let (repo, base) = chain_org("  dependents: false\n");
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/a", "modified")]);
    assert_eq!(kinds(&r, "stacks", "dev/eu-west-1/a"), ["file"]);
}

#[test]
fn explicit_depends_on_in_sluice_yaml_propagates() {
    let repo = org_repo_with(
        "  depends_on:\n    - { stack: dev/eu-west-1/app, on: [dev/eu-west-1/db] }\n",
    );
    repo.write(&tg("db"), plain_stack("a = 1"));
    repo.write(&tg("app"), plain_stack("b = 1"));
    repo.write(&tg("other"), plain_stack("c = 1"));
    let base = repo.commit("base");
    repo.write(&tg("db"), plain_stack("a = 2"));
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/app", "dependent"),
            ("dev/eu-west-1/db", "modified"),
        ],
    );
    assert_eq!(
        dependency_reasons(&r, "stacks", "dev/eu-west-1/app"),
        ["dev/eu-west-1/db"]
    );
}

#[test]
fn dependencies_block_and_get_terragrunt_dir_make_edges() {
    let repo = org_repo();
    repo.write(&tg("a"), plain_stack("a = 1"));
    repo.write(&tg("b"), plain_stack("b = 1"));
    repo.write(&tg("c"), "dependencies {\n  paths = [\"../a\"]\n}\n");
    repo.write(
        &tg("d"),
        "dependency \"b\" {\n  config_path = \"${get_terragrunt_dir()}/../b\"\n}\n",
    );
    let base = repo.commit("base");
    repo.write(&tg("a"), plain_stack("a = 2"));
    repo.write(&tg("b"), plain_stack("b = 2"));
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/a", "modified"),
            ("dev/eu-west-1/b", "modified"),
            ("dev/eu-west-1/c", "dependent"),
            ("dev/eu-west-1/d", "dependent"),
        ],
    );
    assert_eq!(
        dependency_reasons(&r, "stacks", "dev/eu-west-1/c"),
        ["dev/eu-west-1/a"]
    );
    assert_eq!(
        dependency_reasons(&r, "stacks", "dev/eu-west-1/d"),
        ["dev/eu-west-1/b"]
    );
}

#[test]
fn dependent_names_every_affected_upstream() {
    // d reads from both b and c, and both change: the report explains d by both.
    let repo = org_repo();
    repo.write(&tg("b"), plain_stack("b = 1"));
    repo.write(&tg("c"), plain_stack("c = 1"));
    repo.write(
        &tg("d"),
        "dependency \"b\" {\n  config_path = \"../b\"\n}\n\ndependency \"c\" {\n  config_path = \"../c\"\n}\n",
    );
    let base = repo.commit("base");
    repo.write(&tg("b"), plain_stack("b = 2"));
    repo.write(&tg("c"), plain_stack("c = 2"));
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/b", "modified"),
            ("dev/eu-west-1/c", "modified"),
            ("dev/eu-west-1/d", "dependent"),
        ],
    );
    assert_eq!(
        dependency_reasons(&r, "stacks", "dev/eu-west-1/d"),
        ["dev/eu-west-1/b", "dev/eu-west-1/c"]
    );
}

// ---------------------------------------------------------------------------------------------
// 5. watch patterns

#[test]
fn watch_patterns_mark_matching_stacks() {
    let repo = org_repo_with(
        "  watch:\n    - { stacks: \"prod/*/*\", paths: [\"live/prod/account.hcl\"] }\n    - { stacks: \"*/*/dns\", paths: [\"shared/zones/**/*.json\"] }\n",
    );
    for id in [
        "dev/eu-west-1/dns",
        "dev/eu-west-1/network",
        "prod/eu-west-1/dns",
        "prod/eu-west-1/network",
    ] {
        repo.write(
            &format!("{}/terragrunt.hcl", stack_path(id)),
            plain_stack("a = 1"),
        );
    }
    repo.write("live/prod/account.hcl", "locals { id = 1 }\n");
    repo.write("shared/zones/internal/a.json", "{}\n");
    repo.write("shared/zones/README.md", "zones\n");
    let base = repo.commit("base");
    repo.checkout_new("change");

    repo.write("live/prod/account.hcl", "locals { id = 2 }\n");
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "stacks",
        &[
            ("prod/eu-west-1/dns", "modified"),
            ("prod/eu-west-1/network", "modified"),
        ],
    );
    let rs = reasons(&r, "stacks", "prod/eu-west-1/network");
    assert_eq!(
        rs,
        vec![(
            "pattern".to_string(),
            "live/prod/account.hcl".to_string(),
            "live/prod/account.hcl".to_string(),
            String::new()
        )]
    );

    repo.checkout("main");
    repo.checkout_new("zones");
    repo.write("shared/zones/internal/a.json", "{\"a\": 1}\n");
    repo.write("shared/zones/README.md", "zones, edited\n");
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/dns", "modified"),
            ("prod/eu-west-1/dns", "modified"),
        ],
    );
    assert_kind_paths(
        &r,
        "stacks",
        "dev/eu-west-1/dns",
        &[("pattern", "shared/zones/internal/a.json")],
    );
}

// ---------------------------------------------------------------------------------------------
// 6. added, deleted and renamed stacks

#[test]
fn added_deleted_and_renamed_stacks() {
    let repo = org_repo();
    repo.write(&tg("keep"), plain_stack("a = 1"));
    repo.write(&tg("gone"), plain_stack("a = 1"));
    repo.write(&format!("{R}/gone/extra.tfvars"), "x = 1\n");
    repo.write(&tg("old-name"), plain_stack("r = 1"));
    repo.write(&format!("{R}/old-name/main.tf"), "# body\n");
    // A directory that is not a stack yet (no Terraform file).
    repo.write(&format!("{R}/later/README.md"), "soon\n");
    let base = repo.commit("base");
    repo.checkout_new("change");
    repo.write(&tg("fresh"), plain_stack("n = 1"));
    repo.write(&format!("{R}/later/main.tofu"), "# now a stack\n");
    repo.remove(&format!("{R}/gone"));
    repo.rename(&format!("{R}/old-name"), &format!("{R}/new-name"));
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/fresh", "added"),
            ("dev/eu-west-1/gone", "deleted"),
            ("dev/eu-west-1/later", "added"),
            ("dev/eu-west-1/new-name", "added"),
            ("dev/eu-west-1/old-name", "deleted"),
        ],
    );
    assert_kind_paths_of(
        &r,
        "stacks",
        &[
            (
                "dev/eu-west-1/gone",
                &[
                    ("file", format!("{R}/gone/extra.tfvars")),
                    ("file", tg("gone")),
                ],
            ),
            (
                "dev/eu-west-1/old-name",
                &[
                    ("file", format!("{R}/old-name/main.tf")),
                    ("file", tg("old-name")),
                ],
            ),
            (
                "dev/eu-west-1/new-name",
                &[
                    ("file", format!("{R}/new-name/main.tf")),
                    ("file", tg("new-name")),
                ],
            ),
            ("dev/eu-west-1/fresh", &[("file", tg("fresh"))]),
        ],
    );
    let gone = unit(&r, "stacks", "dev/eu-west-1/gone");
    assert_eq!(gone["path"], format!("{R}/gone"));
    assert_eq!(gone["env"], "dev");
}

#[test]
fn stack_that_stops_being_a_stack_is_deleted() {
    let repo = org_repo();
    repo.write(&tg("a"), plain_stack("a = 1"));
    repo.write(&format!("{R}/a/README.md"), "docs\n");
    let base = repo.commit("base");
    repo.remove(&tg("a"));
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/a", "deleted")]);
    assert_kind_paths(&r, "stacks", "dev/eu-west-1/a", &[("file", tg("a"))]);
}

// ---------------------------------------------------------------------------------------------
// 7. apps

fn app_kustomization(base: &str) -> String {
    format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../../../base/{base}\n"
    )
}

fn apps_org() -> (Repo, String) {
    let repo = org_repo();
    let k = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deployment.yaml\n";
    repo.write(
        "gitops/base/payments/kustomization.yaml",
        format!("{k}components:\n  - ../../components/logging\n"),
    );
    repo.write(
        "gitops/base/payments/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: payments\n",
    );
    repo.write("gitops/base/orders/kustomization.yaml", k);
    repo.write(
        "gitops/base/orders/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: orders\n",
    );
    repo.write("gitops/base/unused/kustomization.yaml", k);
    repo.write(
        "gitops/base/unused/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: unused\n",
    );
    repo.write(
        "gitops/components/logging/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources:\n  - sidecar.yaml\n",
    );
    repo.write(
        "gitops/components/logging/sidecar.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: logging\n",
    );
    for cluster in ["dev-eu", "prod-eu"] {
        for app in ["payments", "orders"] {
            repo.write(
                &format!("gitops/clusters/{cluster}/apps/{app}/kustomization.yaml"),
                app_kustomization(app),
            );
        }
    }
    // A plain-manifest app.
    repo.write(
        "gitops/clusters/dev-eu/apps/plain/configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n",
    );
    let base = repo.commit("base");
    repo.checkout_new("change");
    (repo, base)
}

#[test]
fn kustomize_base_outside_the_app_marks_every_app_using_it() {
    let (repo, base) = apps_org();
    repo.write(
        "gitops/base/payments/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: payments\n  labels: { a: b }\n",
    );
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[]);
    assert_units(
        &r,
        "apps",
        &[
            ("dev-eu/payments", "modified"),
            ("prod-eu/payments", "modified"),
        ],
    );
    for id in ["dev-eu/payments", "prod-eu/payments"] {
        assert_kind_paths(
            &r,
            "apps",
            id,
            &[("include", "gitops/base/payments/deployment.yaml")],
        );
    }
    assert_eq!(unit(&r, "apps", "prod-eu/payments")["env"], "prod");
    assert_eq!(
        unit(&r, "apps", "dev-eu/payments")["path"],
        "gitops/clusters/dev-eu/apps/payments"
    );
}

#[test]
fn kustomize_component_of_a_base_is_followed_transitively() {
    let (repo, base) = apps_org();
    repo.write(
        "gitops/components/logging/sidecar.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: logging-v2\n",
    );
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "apps",
        &[
            ("dev-eu/payments", "modified"),
            ("prod-eu/payments", "modified"),
        ],
    );
    assert_eq!(kinds(&r, "apps", "dev-eu/payments"), ["include"]);
}

#[test]
fn unrelated_kustomize_base_marks_no_app() {
    let (repo, base) = apps_org();
    repo.write(
        "gitops/base/unused/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: unused2\n",
    );
    let r = affected_since(&repo, &base);
    assert_units(&r, "apps", &[]);
    assert_units(&r, "stacks", &[]);
}

#[test]
fn app_files_added_and_deleted_apps() {
    let (repo, base) = apps_org();
    repo.remove("gitops/clusters/prod-eu/apps/orders");
    repo.write(
        "gitops/clusters/dev-eu/apps/plain/configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain2\n",
    );
    repo.write(
        "gitops/clusters/prod-eu/apps/search/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - svc.yaml\n",
    );
    repo.write(
        "gitops/clusters/prod-eu/apps/search/svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: search\n",
    );
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "apps",
        &[
            ("dev-eu/plain", "modified"),
            ("prod-eu/orders", "deleted"),
            ("prod-eu/search", "added"),
        ],
    );
    assert_kind_paths_of(
        &r,
        "apps",
        &[
            (
                "prod-eu/orders",
                &[(
                    "file",
                    "gitops/clusters/prod-eu/apps/orders/kustomization.yaml",
                )],
            ),
            (
                "dev-eu/plain",
                &[("file", "gitops/clusters/dev-eu/apps/plain/configmap.yaml")],
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// 8. bare repositories, 9. revision syntax, 12. determinism

fn two_commit_org() -> (Repo, String, String) {
    let (repo, base) = chain_org("");
    repo.write("modules/x/main.tf", "resource \"null_resource\" \"x\" {}\n");
    let head = repo.commit("a");
    (repo, base, head)
}

#[test]
fn bare_clone_gives_the_same_report_as_the_work_tree() {
    let (repo, base, head) = two_commit_org();
    let (_tmp, bare) = repo.bare_clone();
    let work = affected_run(repo.path(), &base, &head);
    work.expect_code(Exit::OK);
    // Branch names resolve in the bare clone too.
    let from_bare = affected_run(&bare, "main", "change");
    from_bare.expect_code(Exit::OK);
    assert_eq!(from_bare.stdout, work.stdout);
    assert_eq!(
        statuses(&work.json(), "stacks"),
        expect(&[
            ("dev/eu-west-1/a", "modified"),
            ("dev/eu-west-1/b", "dependent"),
            ("dev/eu-west-1/c", "dependent"),
        ])
    );
}

#[test]
fn revisions_accept_branches_tags_shas_and_relative_refs() {
    let (repo, base, head) = two_commit_org();
    repo.tag("v1", &base);
    repo.tag_annotated("v2", &head, "annotated");
    let want = affected_run(repo.path(), &base, &head);
    want.expect_code(Exit::OK);
    let short = |s: &str| s[..8].to_string();
    let (base_short, head_short) = (short(&base), short(&head));
    let cases: Vec<(&str, &str)> = vec![
        ("main", "change"),
        ("refs/heads/main", "refs/heads/change"),
        ("v1", "v2"),
        ("v1", "HEAD"),
        (&base_short, &head_short),
        ("HEAD~1", "HEAD"),
        ("change~1", "change"),
        ("HEAD^", "v2^{commit}"),
    ];
    for (b, h) in cases {
        let got = affected_run(repo.path(), b, h);
        got.expect_code(Exit::OK);
        assert_eq!(got.stdout, want.stdout, "--base {b} --head {h}");
    }
    let report = want.json();
    assert_eq!(report["base"], base);
    assert_eq!(report["head"], head);
}

#[test]
fn same_input_gives_byte_identical_output() {
    let (repo, base, head) = two_commit_org();
    let first = affected_run(repo.path(), &base, &head);
    let second = affected_run(repo.path(), &base, &head);
    first.expect_code(Exit::OK);
    assert_eq!(first.stdout, second.stdout);
    let args = |fmt: &'static str| {
        vec![
            "affected".to_string(),
            "--repo".into(),
            repo.arg().to_string(),
            "--base".into(),
            base.clone(),
            "--head".into(),
            head.clone(),
            "--format".into(),
            fmt.into(),
        ]
    };
    let text = args("text");
    let text: Vec<&str> = text.iter().map(String::as_str).collect();
    let t1 = sluice(&text);
    let t2 = sluice(&text);
    t1.expect_code(Exit::OK);
    assert_eq!(t1.stdout, t2.stdout);
    assert_has(&t1.stdout, &["dev/eu-west-1/b"]);
}

#[test]
fn stacks_of_every_env_and_region_are_reported_in_the_decision_order() {
    // The order itself is the decision's (crates/model/tests/affected_decisions.rs); this checks
    // that discovery finds each env/region and the JSON report keeps units and reasons sorted.
    let repo = org_repo();
    let ids = [
        "prod/eu-west-1/zeta",
        "dev/us-east-1/alpha",
        "dev/eu-west-1/mid",
        "prod/ap-south-1/beta",
    ];
    for id in ids {
        repo.write(&format!("live/{id}/terragrunt.hcl"), plain_stack("a = 1"));
    }
    let base = repo.commit("base");
    for id in ids {
        repo.write(&format!("live/{id}/terragrunt.hcl"), plain_stack("a = 2"));
        repo.write(&format!("live/{id}/b.tf"), "# b\n");
        repo.write(&format!("live/{id}/a.tf"), "# a\n");
    }
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/mid", "modified"),
            ("dev/us-east-1/alpha", "modified"),
            ("prod/ap-south-1/beta", "modified"),
            ("prod/eu-west-1/zeta", "modified"),
        ],
    );
    let raw: Vec<String> = reasons(&r, "stacks", "dev/us-east-1/alpha")
        .into_iter()
        .map(|p| p.1)
        .collect();
    let alpha = "live/dev/us-east-1/alpha";
    assert_eq!(
        raw,
        [
            format!("{alpha}/a.tf"),
            format!("{alpha}/b.tf"),
            format!("{alpha}/terragrunt.hcl")
        ],
        "reasons are sorted"
    );
}

// ---------------------------------------------------------------------------------------------
// more Terragrunt shapes seen in real repositories

#[test]
fn file_read_by_an_included_file_is_an_input_of_the_includer() {
    let repo = org_repo();
    repo.write(
        "live/root.hcl",
        "locals {\n  common = read_terragrunt_config(\"${get_parent_terragrunt_dir()}/common.hcl\")\n}\n",
    );
    repo.write("live/common.hcl", "locals {\n  org = \"acme\"\n}\n");
    repo.write(
        &tg("a"),
        "include \"root\" {\n  path = find_in_parent_folders(\"root.hcl\")\n}\n",
    );
    repo.write(&tg("b"), plain_stack("b = 1"));
    let base = repo.commit("base");
    repo.write("live/common.hcl", "locals {\n  org = \"acme2\"\n}\n");
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/a", "modified")]);
    assert_kind_paths(
        &r,
        "stacks",
        "dev/eu-west-1/a",
        &[("include", "live/common.hcl")],
    );
}

#[test]
fn envcommon_include_with_dependency_and_module() {
    // The `_envcommon` pattern: the stack includes a shared file that declares the module
    // source and a dependency, with paths relative to the including stack.
    let repo = org_repo();
    repo.write(
        "live/_envcommon/app.hcl",
        "terraform {\n  source = \"${get_repo_root()}/modules//app\"\n}\n\ndependency \"network\" {\n  config_path = \"${get_terragrunt_dir()}/../network\"\n}\n",
    );
    repo.write(
        &tg("app"),
        "include \"envcommon\" {\n  path = \"${dirname(find_in_parent_folders(\"_envcommon/app.hcl\"))}/app.hcl\"\n}\n",
    );
    repo.write(&tg("network"), plain_stack("n = 1"));
    repo.write("modules/app/main.tf", "# v1\n");
    let base = repo.commit("base");
    repo.checkout_new("change");

    repo.write(&tg("network"), plain_stack("n = 2"));
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/app", "dependent"),
            ("dev/eu-west-1/network", "modified"),
        ],
    );

    repo.checkout("main");
    repo.checkout_new("module");
    repo.write("modules/app/main.tf", "# v2\n");
    repo.write(
        "live/_envcommon/app.hcl",
        format!("{}\n# note\n", repo.read("live/_envcommon/app.hcl")),
    );
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/app", "modified")]);
    assert_kind_paths(
        &r,
        "stacks",
        "dev/eu-west-1/app",
        &[
            ("include", "live/_envcommon/app.hcl"),
            ("module", "modules/app/main.tf"),
        ],
    );
}

#[test]
fn find_in_parent_folders_picks_the_nearest_file() {
    let repo = org_repo();
    let reader =
        "locals {\n  env = read_terragrunt_config(find_in_parent_folders(\"env.hcl\"))\n}\n";
    repo.write("live/env.hcl", "locals {\n  env = \"default\"\n}\n");
    repo.write("live/dev/env.hcl", "locals {\n  env = \"dev\"\n}\n");
    repo.write(&tg("a"), reader);
    repo.write("live/prod/eu-west-1/a/terragrunt.hcl", reader);
    let base = repo.commit("base");
    repo.write("live/env.hcl", "locals {\n  env = \"default2\"\n}\n");
    let r = affected_since(&repo, &base);
    // dev stacks find live/dev/env.hcl first; only prod reads live/env.hcl.
    assert_units(&r, "stacks", &[("prod/eu-west-1/a", "modified")]);
}

#[test]
fn legacy_include_without_arguments_finds_parent_terragrunt_hcl() {
    let repo = org_repo();
    repo.write(
        "live/terragrunt.hcl",
        "remote_state {\n  backend = \"s3\"\n  config = {\n    key = \"${path_relative_to_include()}/tf.tfstate\"\n  }\n}\n",
    );
    repo.write(
        &tg("a"),
        "include {\n  path = find_in_parent_folders()\n}\n",
    );
    repo.write(&format!("{R}/b/main.tf"), "# plain terraform, no include\n");
    let base = repo.commit("base");
    repo.write(
        "live/terragrunt.hcl",
        "remote_state {\n  backend = \"gcs\"\n  config = {\n    key = \"${path_relative_to_include()}/tf.tfstate\"\n  }\n}\n",
    );
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/a", "modified")]);
    assert_kind_paths(
        &r,
        "stacks",
        "dev/eu-west-1/a",
        &[("include", "live/terragrunt.hcl")],
    );
}

#[test]
fn nested_module_files_and_deleted_module_files_count() {
    let (repo, base) = module_org();
    repo.write("modules/vpc/templates/user-data.sh", "#!/bin/sh\necho hi\n");
    repo.remove("modules/sg/variables.tf");
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/firewall", "modified"),
            ("dev/eu-west-1/network", "modified"),
        ],
    );
    assert_kind_paths_of(
        &r,
        "stacks",
        &[
            (
                "dev/eu-west-1/network",
                &[
                    ("module", "modules/sg/variables.tf"),
                    ("module", "modules/vpc/templates/user-data.sh"),
                ],
            ),
            (
                "dev/eu-west-1/firewall",
                &[("module", "modules/sg/variables.tf")],
            ),
        ],
    );
}

#[test]
fn module_blocks_in_tofu_files_are_followed() {
    let repo = org_repo();
    repo.write(
        &format!("{R}/tofu/main.tofu"),
        "module \"sg\" {\n  source = \"../../../../modules/sg\"\n}\n",
    );
    repo.write(&format!("{R}/other/main.tf"), "# nothing\n");
    repo.write("modules/sg/main.tf", "# v1\n");
    let base = repo.commit("base");
    repo.write("modules/sg/main.tf", "# v2\n");
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/tofu", "modified")]);
    assert_eq!(kinds(&r, "stacks", "dev/eu-west-1/tofu"), ["module"]);
}

#[test]
fn module_blocks_in_tf_json_files_are_followed() {
    let repo = org_repo();
    repo.write(
        &format!("{R}/json/main.tf.json"),
        "{\n  \"module\": {\n    \"sg\": {\n      \"source\": \"../../../../modules/sg\"\n    }\n  }\n}\n",
    );
    repo.write("modules/sg/main.tf", "# v1\n");
    let base = repo.commit("base");
    repo.write("modules/sg/main.tf", "# v2\n");
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/json", "modified")]);
    assert_eq!(kinds(&r, "stacks", "dev/eu-west-1/json"), ["module"]);
}

#[test]
fn file_function_reads_are_inputs() {
    let repo = org_repo();
    repo.write(
        &tg("a"),
        "inputs = {\n  policy = file(\"${get_terragrunt_dir()}/../../../../policies/bucket.json\")\n}\n",
    );
    repo.write(&tg("b"), plain_stack("b = 1"));
    repo.write("policies/bucket.json", "{}\n");
    repo.write("policies/other.json", "{}\n");
    let base = repo.commit("base");
    repo.write("policies/bucket.json", "{\"v\": 2}\n");
    repo.write("policies/other.json", "{\"v\": 2}\n");
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/a", "modified")]);
    assert_kind_paths(
        &r,
        "stacks",
        "dev/eu-west-1/a",
        &[("include", "policies/bucket.json")],
    );
}

#[test]
fn file_of_one_stack_read_by_another_affects_both() {
    let repo = org_repo();
    repo.write(&tg("a"), plain_stack("a = 1"));
    repo.write(&format!("{R}/a/shared.hcl"), "locals {\n  x = 1\n}\n");
    repo.write(
        &tg("b"),
        "locals {\n  a = read_terragrunt_config(\"../a/shared.hcl\")\n}\n",
    );
    let base = repo.commit("base");
    repo.write(&format!("{R}/a/shared.hcl"), "locals {\n  x = 2\n}\n");
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/a", "modified"),
            ("dev/eu-west-1/b", "modified"),
        ],
    );
    assert_eq!(kinds(&r, "stacks", "dev/eu-west-1/a"), ["file"]);
    assert_eq!(kinds(&r, "stacks", "dev/eu-west-1/b"), ["include"]);
}

#[test]
fn nested_directories_inside_a_stack_belong_to_it() {
    let repo = org_repo();
    repo.write(
        &format!("{R}/app/main.tf"),
        "module \"x\" {\n  source = \"./modules/x\"\n}\n",
    );
    repo.write(&format!("{R}/app/modules/x/main.tf"), "# v1\n");
    let base = repo.commit("base");
    repo.write(&format!("{R}/app/modules/x/main.tf"), "# v2\n");
    let r = affected_since(&repo, &base);
    // `app/modules/x` is deeper than the layout: not a stack of its own.
    assert_units(&r, "stacks", &[("dev/eu-west-1/app", "modified")]);
    assert_kind_paths(
        &r,
        "stacks",
        "dev/eu-west-1/app",
        &[("file", format!("{R}/app/modules/x/main.tf"))],
    );
}

#[test]
fn helm_chart_app_and_external_kustomize_patch() {
    let repo = org_repo();
    repo.write(
        "gitops/clusters/dev-eu/apps/chart/Chart.yaml",
        "apiVersion: v2\nname: chart\nversion: 0.1.0\n",
    );
    repo.write(
        "gitops/clusters/dev-eu/apps/chart/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    );
    repo.write(
        "gitops/clusters/dev-eu/apps/web/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deploy.yaml\npatches:\n  - path: ../../../../patches/replicas.yaml\n",
    );
    repo.write(
        "gitops/clusters/dev-eu/apps/web/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
    );
    repo.write(
        "gitops/patches/replicas.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n",
    );
    let base = repo.commit("base");
    repo.write(
        "gitops/clusters/dev-eu/apps/chart/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n",
    );
    repo.write(
        "gitops/patches/replicas.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n",
    );
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "apps",
        &[("dev-eu/chart", "modified"), ("dev-eu/web", "modified")],
    );
    assert_eq!(kinds(&r, "apps", "dev-eu/chart"), ["file"]);
    assert_kind_paths(
        &r,
        "apps",
        "dev-eu/web",
        &[("include", "gitops/patches/replicas.yaml")],
    );
}

// ---------------------------------------------------------------------------------------------
// deletions, history shapes and reference cycles

#[test]
fn stack_depending_on_a_deleted_stack_is_affected() {
    let (repo, base) = chain_org("");
    // Back out the change to a, then delete a: b still names it in its dependency block.
    repo.remove(&format!("{R}/a"));
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/a", "deleted"),
            ("dev/eu-west-1/b", "dependent"),
            ("dev/eu-west-1/c", "dependent"),
        ],
    );
    assert_eq!(
        dependency_reasons(&r, "stacks", "dev/eu-west-1/b"),
        ["dev/eu-west-1/a"]
    );
}

#[test]
fn base_that_moved_on_after_branching_reports_only_the_branch_changes() {
    // A pull request's change is what its branch did since it left the base branch: stacks
    // that changed on main in the meantime are not part of it (GitHub's three-dot diff).
    let repo = org_repo();
    repo.write(&tg("a"), plain_stack("a = 1"));
    repo.write(&tg("b"), plain_stack("b = 1"));
    repo.commit("base");
    repo.checkout_new("pr");
    repo.write(&tg("a"), plain_stack("a = 2"));
    let head = repo.commit("pr changes a");
    repo.checkout("main");
    repo.write(&tg("b"), plain_stack("b = 2"));
    repo.write(&tg("new-on-main"), plain_stack("n = 1"));
    repo.commit("main moves on");
    let r = affected(repo.path(), "main", &head);
    assert_units(&r, "stacks", &[("dev/eu-west-1/a", "modified")]);
}

#[test]
fn same_base_and_head_affects_nothing() {
    let (repo, base) = module_org();
    let r = affected(repo.path(), &base, &base);
    assert_units(&r, "stacks", &[]);
    assert_units(&r, "apps", &[]);
    assert_eq!(r["base"], r["head"]);
}

#[test]
fn cyclic_references_terminate() {
    let repo = org_repo();
    // Terraform modules that reference each other, HCL files that read each other and
    // Kustomize bases that include each other.
    repo.write(
        "modules/x/main.tf",
        "module \"y\" {\n  source = \"../y\"\n}\n",
    );
    repo.write(
        "modules/y/main.tf",
        "module \"x\" {\n  source = \"../x\"\n}\n",
    );
    repo.write(
        "live/one.hcl",
        "locals {\n  two = read_terragrunt_config(\"${get_parent_terragrunt_dir()}/two.hcl\")\n}\n",
    );
    repo.write(
        "live/two.hcl",
        "locals {\n  one = read_terragrunt_config(\"${get_parent_terragrunt_dir()}/one.hcl\")\n}\n",
    );
    repo.write(
        &tg("a"),
        "terraform {\n  source = \"../../../../modules//x\"\n}\n\nlocals {\n  one = read_terragrunt_config(find_in_parent_folders(\"one.hcl\"))\n}\n",
    );
    let k = |r: &str| {
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {r}\n"
        )
    };
    repo.write("gitops/base/p/kustomization.yaml", k("../q"));
    repo.write("gitops/base/q/kustomization.yaml", k("../p"));
    repo.write(
        "gitops/clusters/dev-eu/apps/web/kustomization.yaml",
        k("../../../../base/p"),
    );
    let base = repo.commit("base");
    repo.write(
        "modules/y/main.tf",
        "module \"x\" {\n  source = \"../x\"\n}\n# v2\n",
    );
    repo.write("live/two.hcl", "locals {\n  one = read_terragrunt_config(\"${get_parent_terragrunt_dir()}/one.hcl\")\n}\n# v2\n");
    repo.write(
        "gitops/base/q/kustomization.yaml",
        format!("{}# v2\n", k("../p")),
    );
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/a", "modified")]);
    assert_eq!(
        kinds(&r, "stacks", "dev/eu-west-1/a"),
        ["include", "module"]
    );
    assert_units(&r, "apps", &[("dev-eu/web", "modified")]);
}

#[test]
fn overlay_of_another_app_is_affected_by_its_changes() {
    let repo = org_repo();
    let k = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n";
    repo.write(
        "gitops/clusters/dev-eu/apps/api/kustomization.yaml",
        format!("{k}resources:\n  - deploy.yaml\n"),
    );
    repo.write(
        "gitops/clusters/dev-eu/apps/api/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n",
    );
    repo.write(
        "gitops/clusters/dev-eu/apps/api-canary/kustomization.yaml",
        format!("{k}resources:\n  - ../api\nnameSuffix: -canary\n"),
    );
    let base = repo.commit("base");
    repo.write(
        "gitops/clusters/dev-eu/apps/api/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  labels: { v: \"2\" }\n",
    );
    let r = affected_since(&repo, &base);
    assert_units(
        &r,
        "apps",
        &[
            ("dev-eu/api", "modified"),
            ("dev-eu/api-canary", "modified"),
        ],
    );
    assert_eq!(kinds(&r, "apps", "dev-eu/api"), ["file"]);
    assert_eq!(kinds(&r, "apps", "dev-eu/api-canary"), ["include"]);
}

#[test]
fn app_watch_patterns_and_layouts_with_literal_segments() {
    let repo = Repo::new();
    repo.write(
        "sluice.yaml",
        "version: 1\norg: test\nenvironments:\n  dev: { order: 1 }\n  prod: { order: 2 }\nstacks:\n  root: infra\n  layout: \"accounts/{env}/regions/{region}/{stack}\"\napps:\n  root: k8s\n  layout: \"{env}/{app}\"\n  watch:\n    - { apps: \"prod/*\", paths: [\"policies/prod/**\"] }\n",
    );
    repo.write("infra/accounts/dev/regions/eu/net/main.tf", "# v1\n");
    // Not under the literal `regions` segment: not a stack.
    repo.write("infra/accounts/dev/zones/eu/net/main.tf", "# v1\n");
    repo.write(
        "k8s/prod/web/deploy.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w\n",
    );
    repo.write(
        "k8s/dev/web/deploy.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w\n",
    );
    repo.write(
        "policies/prod/limits/range.yaml",
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: l\n",
    );
    let base = repo.commit("base");
    repo.write("infra/accounts/dev/regions/eu/net/main.tf", "# v2\n");
    repo.write("infra/accounts/dev/zones/eu/net/main.tf", "# v2\n");
    repo.write(
        "policies/prod/limits/range.yaml",
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: l2\n",
    );
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu/net", "modified")]);
    assert_eq!(
        unit(&r, "stacks", "dev/eu/net")["path"],
        "infra/accounts/dev/regions/eu/net"
    );
    assert_units(&r, "apps", &[("prod/web", "modified")]);
    assert_eq!(
        reasons(&r, "apps", "prod/web"),
        vec![(
            "pattern".to_string(),
            "policies/prod/limits/range.yaml".to_string(),
            "policies/prod/**".to_string(),
            String::new()
        )]
    );
}
