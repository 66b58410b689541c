//! The sample org the demo builds: the layout of DESIGN.md §5 with dev, stage and prod stacks
//! (network, identity, eks-cluster, rds-payments, dns) wired by Terragrunt dependencies, shared
//! modules, Kustomize apps per cluster, a policy library, security exceptions and CODEOWNERS.

use std::collections::BTreeMap;

pub const ENVS: &[&str] = &["dev", "stage", "prod"];
pub const REGION: &str = "ap-southeast-1";
pub const PR_NUMBER: u64 = 412;
pub const PR_BRANCH: &str = "pr/412-rds-read-replica";

pub type Files = BTreeMap<String, Vec<u8>>;

fn put(files: &mut Files, path: &str, content: impl Into<String>) {
    files.insert(path.to_string(), content.into().into_bytes());
}

const SLUICE_YAML: &str = r#"# sluice org configuration (see docs/config.md)
version: 1
org: acme
environments:
  dev:   { order: 1 }
  stage: { order: 2 }
  prod:  { order: 3, protected: true }
repos:
  infra-live:          { path: infra-live }
  infra-modules:       { path: infra-modules }
  env-gitops:          { path: env-gitops }
  policy-library:      { path: policy-library }
  security-exceptions: { path: security-exceptions }
stacks:
  root: infra-live/accounts
  layout: "{env}/{region}/{stack}"
  # upstream first: a stack may depend only on stacks of its own or an earlier layer
  layers:
    - network
    - identity
    - { name: cluster, stacks: ["eks-*"] }
    - { name: data, stacks: ["rds-*"] }
    - { name: app, stacks: ["dns"] }
  watch:
    - { stacks: "prod/*/*", paths: ["infra-live/accounts/prod/account.hcl"] }
apps:
  root: env-gitops/clusters
  layout: "{cluster}/apps/{app}"
validate:
  forbidden_paths: ["**/*.tfstate", "**/.terraform/**", "**/*.pem"]
risk:
  rules:
    - { when: { env: prod, resource_types: ["aws_db_*", "aws_rds_*"] }, risk: R3, reason: production database topology change }
    - { when: { env: prod, actions: [delete, replace] }, risk: R4, reason: destructive production change }
approvals:
  R1: [codeowners]
  R3: ["@acme/platform", "@acme/security"]
"#;

const CODEOWNERS: &str = "# Owners of the acme platform repository
*                                   @acme/platform
/infra-live/accounts/prod/          @acme/platform @acme/sre
/infra-live/accounts/*/*/rds-payments/ @acme/payments-dba
/infra-modules/                     @acme/platform
/env-gitops/clusters/*/apps/payments/ @acme/payments
/env-gitops/clusters/*/apps/orders/   @acme/orders
/policy-library/                    @acme/security
/security-exceptions/               @acme/security
";

/// Module `source` for a stack: dev iterates on the local modules, stage and prod pin a tag.
fn module_source(env: &str, module: &str) -> String {
    if env == "dev" {
        format!("../../../../../infra-modules//{module}")
    } else {
        format!("git::https://github.com/acme/infra-modules.git//{module}?ref=v1.8.3")
    }
}

fn stack_hcl(env: &str, module: &str, deps: &[&str], inputs: &str) -> String {
    let mut s = String::from(
        "include \"root\" {\n  path = find_in_parent_folders(\"root.hcl\")\n}\n\n\
         locals {\n  env    = read_terragrunt_config(find_in_parent_folders(\"env.hcl\"))\n  region = read_terragrunt_config(find_in_parent_folders(\"region.hcl\"))\n}\n\n",
    );
    s.push_str(&format!(
        "terraform {{\n  source = \"{}\"\n}}\n\n",
        module_source(env, module)
    ));
    for dep in deps {
        s.push_str(&format!(
            "dependency \"{dep}\" {{\n  config_path = \"../{dep}\"\n}}\n\n"
        ));
    }
    s.push_str(&format!("inputs = {{\n{inputs}}}\n"));
    s
}

/// The main branch's tree.
pub fn main_tree() -> Files {
    let mut f = Files::new();
    put(&mut f, "sluice.yaml", SLUICE_YAML);
    put(&mut f, ".github/CODEOWNERS", CODEOWNERS);
    // The plan store (`sluice plan`, `sluice ingest-plan`, the demo's plans) lives here.
    put(&mut f, ".gitignore", ".sluice/\n");
    put(
        &mut f,
        "README.md",
        "# acme platform\n\nThe acme organisation's platform monorepo, governed by sluice.\n",
    );
    put(
        &mut f,
        "infra-live/root.hcl",
        "# Shared by every stack: remote state and provider generation.\nremote_state {\n  backend = \"s3\"\n  config = {\n    bucket         = \"acme-tf-state\"\n    key            = \"${path_relative_to_include()}/terraform.tfstate\"\n    region         = \"ap-southeast-1\"\n    dynamodb_table = \"acme-tf-locks\"\n    encrypt        = true\n  }\n}\n\ngenerate \"provider\" {\n  path      = \"provider.tf\"\n  if_exists = \"overwrite\"\n  contents  = \"provider \\\"aws\\\" { region = \\\"ap-southeast-1\\\" }\"\n}\n",
    );
    put(
        &mut f,
        "infra-live/accounts/prod/account.hcl",
        "locals {\n  account_id = \"210987654321\"\n}\n",
    );
    for env in ENVS {
        let base = format!("infra-live/accounts/{env}");
        put(
            &mut f,
            &format!("{base}/env.hcl"),
            format!("locals {{\n  env = \"{env}\"\n}}\n"),
        );
        put(
            &mut f,
            &format!("{base}/{REGION}/region.hcl"),
            format!("locals {{\n  region = \"{REGION}\"\n}}\n"),
        );
        let cidr = match *env {
            "dev" => "10.10.0.0/16",
            "stage" => "10.20.0.0/16",
            _ => "10.30.0.0/16",
        };
        let stacks: [(&str, &str, &[&str], String); 5] = [
            (
                "network",
                "network",
                &[],
                format!("  cidr_block = \"{cidr}\"\n  azs        = 3\n"),
            ),
            (
                "identity",
                "identity",
                &["network"],
                "  oidc_provider = true\n".to_string(),
            ),
            (
                "eks-cluster",
                "eks-cluster",
                &["network", "identity"],
                "  cluster_version = \"1.31\"\n  node_count      = 3\n".to_string(),
            ),
            (
                "rds-payments",
                "rds",
                &["network"],
                format!(
                    "  env             = \"{env}\"\n  engine          = \"postgres\"\n  instance_class  = \"db.r6g.large\"\n  read_replicas   = 1\n  backup_retention_days = 14\n"
                ),
            ),
            (
                "dns",
                "dns",
                &["eks-cluster"],
                format!("  zone = \"{env}.acme.internal\"\n"),
            ),
        ];
        for (name, module, deps, inputs) in stacks {
            put(
                &mut f,
                &format!("{base}/{REGION}/{name}/terragrunt.hcl"),
                stack_hcl(env, module, deps, &inputs),
            );
        }
    }
    modules(&mut f);
    gitops(&mut f);
    put(
        &mut f,
        "policy-library/terraform/rds.rego",
        "package main\n\nimport rego.v1\n\n# Production databases keep at least 7 days of backups.\ndeny contains msg if {\n  some rc in input.plan.resource_changes\n  rc.type == \"aws_db_instance\"\n  rc.change.after.backup_retention_period < 7\n  msg := sprintf(\"%s: backup retention below 7 days\", [rc.address])\n}\n",
    );
    put(
        &mut f,
        "security-exceptions/EXC-0007.yaml",
        "id: EXC-0007\npolicy: sg-open-ingress\nresource: \"dev/*/eks-cluster/aws_security_group.debug\"\nowner: \"@acme/platform\"\napprovedBy: \"@acme/security\"\nreason: temporary debugging access for the dev cluster\nexpiresAt: \"2027-01-31T00:00:00Z\"\n",
    );
    f
}

fn modules(f: &mut Files) {
    let m = |f: &mut Files, name: &str, main: &str, vars: &str| {
        put(f, &format!("infra-modules/{name}/main.tf"), main);
        put(f, &format!("infra-modules/{name}/variables.tf"), vars);
    };
    m(
        f,
        "network",
        "resource \"aws_vpc\" \"this\" {\n  cidr_block = var.cidr_block\n}\n",
        "variable \"cidr_block\" { type = string }\nvariable \"azs\" { type = number }\n",
    );
    m(
        f,
        "identity",
        "resource \"aws_iam_openid_connect_provider\" \"this\" {\n  count = var.oidc_provider ? 1 : 0\n  url   = \"https://token.actions.githubusercontent.com\"\n  client_id_list = [\"sts.amazonaws.com\"]\n}\n",
        "variable \"oidc_provider\" { type = bool }\n",
    );
    m(
        f,
        "eks-cluster",
        "resource \"aws_eks_cluster\" \"this\" {\n  name    = \"acme\"\n  version = var.cluster_version\n}\n",
        "variable \"cluster_version\" { type = string }\nvariable \"node_count\" { type = number }\n",
    );
    m(
        f,
        "rds",
        "module \"sg\" {\n  source = \"../security-group\"\n  name   = \"rds\"\n}\n\nresource \"aws_db_instance\" \"primary\" {\n  engine                  = var.engine\n  instance_class          = var.instance_class\n  backup_retention_period = var.backup_retention_days\n  storage_encrypted       = true\n  deletion_protection     = true\n  tags                    = { owner = \"payments\", env = var.env }\n}\n\nresource \"aws_db_instance\" \"replica\" {\n  count               = var.read_replicas\n  replicate_source_db = aws_db_instance.primary.identifier\n  instance_class      = var.instance_class\n  deletion_protection = true\n  skip_final_snapshot = true\n  tags                = { owner = \"payments\", env = var.env }\n}\n",
        "variable \"env\" { type = string }\nvariable \"engine\" { type = string }\nvariable \"instance_class\" { type = string }\nvariable \"read_replicas\" { type = number }\nvariable \"backup_retention_days\" { type = number }\n",
    );
    m(
        f,
        "security-group",
        "resource \"aws_security_group\" \"this\" {\n  name = var.name\n}\n",
        "variable \"name\" { type = string }\n",
    );
    m(
        f,
        "dns",
        "resource \"aws_route53_zone\" \"this\" {\n  name = var.zone\n}\n",
        "variable \"zone\" { type = string }\n",
    );
}

pub const PAYMENTS_DIGEST_OLD: &str =
    "sha256:4f1c2d6e8a0b3c5d7e9f1a2b4c6d8e0f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d";
pub const PAYMENTS_DIGEST_NEW: &str =
    "sha256:9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b";

fn app_kustomization(app: &str, tag: &str, digest: &str) -> String {
    format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {app}\nresources:\n  - ../../../../base/{app}\nimages:\n  - name: ghcr.io/acme/{app}\n    newTag: {tag}\n    digest: {digest}\n"
    )
}

fn gitops(f: &mut Files) {
    for app in ["payments", "orders"] {
        let base = format!("env-gitops/base/{app}");
        put(
            f,
            &format!("{base}/kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deployment.yaml\n  - service.yaml\n",
        );
        put(
            f,
            &format!("{base}/deployment.yaml"),
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{ app: {app} }}\n  template:\n    metadata:\n      labels: {{ app: {app} }}\n    spec:\n      containers:\n        - name: {app}\n          image: ghcr.io/acme/{app}:v1.4.2\n          resources:\n            requests: {{ cpu: 250m, memory: 256Mi }}\n            limits: {{ cpu: \"1\", memory: 512Mi }}\n          readinessProbe:\n            httpGet: {{ path: /healthz, port: 8080 }}\n          livenessProbe:\n            httpGet: {{ path: /healthz, port: 8080 }}\n"
            ),
        );
        put(
            f,
            &format!("{base}/service.yaml"),
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {app}\nspec:\n  selector: {{ app: {app} }}\n  ports:\n    - port: 80\n      targetPort: 8080\n"
            ),
        );
        for env in ENVS {
            let (tag, digest) = if app == "payments" {
                ("v1.4.2", PAYMENTS_DIGEST_OLD)
            } else {
                (
                    "v2.0.1",
                    "sha256:1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b3d",
                )
            };
            put(
                f,
                &format!("env-gitops/clusters/{env}-{REGION}/apps/{app}/kustomization.yaml"),
                app_kustomization(app, tag, digest),
            );
        }
    }
}

/// The PR: one more read replica for prod payments, and the payments image bump in prod.
pub fn pr_tree(main: &Files) -> Files {
    let mut f = main.clone();
    let rds = format!("infra-live/accounts/prod/{REGION}/rds-payments/terragrunt.hcl");
    let text =
        String::from_utf8_lossy(&f[&rds]).replace("read_replicas   = 1", "read_replicas   = 2");
    put(&mut f, &rds, text);
    put(
        &mut f,
        &format!("env-gitops/clusters/prod-{REGION}/apps/payments/kustomization.yaml"),
        app_kustomization("payments", "v1.5.0", PAYMENTS_DIGEST_NEW),
    );
    f
}
