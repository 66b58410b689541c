//! End-to-end tests of `sluice graph` and `sluice stacks`: the dependency graph in JSON, DOT
//! and text, and discovered stacks and apps with environment, region, layer and owners.

use std::collections::BTreeSet;

use sluice_testkit::*;

const LAYERS: &str = "  layers:\n    - network\n    - identity\n    - { name: cluster, stacks: [\"eks-*\"] }\n    - { name: data, stacks: [\"rds-*\"] }\n    - { name: app, stacks: [\"dns\"] }\n  depends_on:\n    - { stack: dev/eu-west-1/dns, on: [dev/eu-west-1/rds-payments] }\n";

const CODEOWNERS: &str = "# platform repository owners
*                                   @org/platform
network/                            @org/any-network
/live/prod/                         @org/sre
/live/*/*/rds-*/                    @org/dba
/live/dev/eu-west-1/rds-payments/   @org/payments-dev
/live/dev/eu-west-1/network         @org/net @org/net2
/live/dev/eu-west-1/identity/
/gitops/clusters/*/apps/payments/   @org/payments
";

fn dep(name: &str) -> String {
    dependency_on(name) + "\n"
}

/// The demo's shape in miniature: dev has five stacks, prod two, plus one outside every layer.
fn graph_org() -> (Repo, String) {
    let repo = org_repo_with(LAYERS);
    let dev = "live/dev/eu-west-1";
    repo.write(
        &format!("{dev}/network/terragrunt.hcl"),
        plain_stack("a = 1"),
    );
    repo.write(&format!("{dev}/network-b/main.tf"), "# no deps\n");
    repo.write(&format!("{dev}/identity/terragrunt.hcl"), dep("network"));
    repo.write(
        &format!("{dev}/eks-cluster/terragrunt.hcl"),
        format!("{}{}", dep("network"), dep("identity")),
    );
    repo.write(
        &format!("{dev}/rds-payments/terragrunt.hcl"),
        dep("network"),
    );
    repo.write(&format!("{dev}/dns/terragrunt.hcl"), dep("eks-cluster"));
    repo.write(
        "live/prod/us-east-1/network/terragrunt.hcl",
        plain_stack("a = 1"),
    );
    repo.write(
        "live/prod/us-east-1/rds-payments/terragrunt.hcl",
        dep("network"),
    );
    repo.write(
        "gitops/clusters/prod-us/apps/payments/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n",
    );
    repo.write(
        "gitops/clusters/dev-eu/apps/orders/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: orders\n",
    );
    repo.write(".github/CODEOWNERS", CODEOWNERS);
    // GitHub reads .github/CODEOWNERS first: these must be ignored.
    repo.write("CODEOWNERS", "* @org/wrong-root\n");
    repo.write("docs/CODEOWNERS", "* @org/wrong-docs\n");
    let head = repo.commit("org");
    (repo, head)
}

fn run_in(repo: &Repo, args: &[&str]) -> Run {
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--repo", repo.arg()]);
    sluice(&full)
}

fn expected_edges() -> BTreeSet<(String, String)> {
    [
        ("dev/eu-west-1/dns", "dev/eu-west-1/eks-cluster"),
        ("dev/eu-west-1/dns", "dev/eu-west-1/rds-payments"),
        ("dev/eu-west-1/eks-cluster", "dev/eu-west-1/identity"),
        ("dev/eu-west-1/eks-cluster", "dev/eu-west-1/network"),
        ("dev/eu-west-1/identity", "dev/eu-west-1/network"),
        ("dev/eu-west-1/rds-payments", "dev/eu-west-1/network"),
        ("prod/us-east-1/rds-payments", "prod/us-east-1/network"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

#[test]
fn graph_json_lists_every_edge() {
    let (repo, head) = graph_org();
    let run = run_in(&repo, &["graph", "--format", "json"]);
    run.expect_code(Exit::OK);
    let g = run.json();
    assert_eq!(g["rev"], head);
    let edges: Vec<(String, String)> = g["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            (
                e["stack"].as_str().expect("stack").to_string(),
                e["depends_on"].as_str().expect("depends_on").to_string(),
            )
        })
        .collect();
    let set: BTreeSet<_> = edges.iter().cloned().collect();
    assert_eq!(set, expected_edges());
    assert_eq!(edges.len(), set.len(), "no duplicate edges: {edges:?}");
    let mut sorted = edges.clone();
    sorted.sort();
    assert_eq!(edges, sorted, "edges are sorted");
    assert!(g["errors"]["cycles"].as_array().unwrap().is_empty());
    assert!(
        g["errors"]["layer_violations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Each stack lists its upstreams, sorted.
    let eks = g["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "dev/eu-west-1/eks-cluster")
        .expect("eks-cluster");
    assert_eq!(
        eks["depends_on"],
        serde_json::json!(["dev/eu-west-1/identity", "dev/eu-west-1/network"])
    );
    // Same revision, same bytes.
    let again = run_in(&repo, &["graph", "--format", "json", "--rev", &head]);
    assert_eq!(again.stdout, run.stdout);
}

#[test]
fn graph_dot_is_well_formed() {
    let (repo, _) = graph_org();
    let run = run_in(&repo, &["graph", "--format", "dot"]);
    run.expect_code(Exit::OK);
    let dot = run.stdout.trim_end();
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.ends_with('}'), "{dot}");
    assert_eq!(dot.matches('{').count(), dot.matches('}').count(), "{dot}");
    assert_eq!(dot.matches('"').count() % 2, 0, "{dot}");
    let edges: BTreeSet<(String, String)> = dot
        .lines()
        .filter(|l| l.contains("->"))
        .map(|l| {
            let l = l.trim().trim_end_matches(';');
            let (a, b) = l.split_once("->").expect("edge");
            let unquote = |s: &str| s.trim().trim_matches('"').to_string();
            (unquote(a), unquote(b))
        })
        .collect();
    assert_eq!(edges, expected_edges());
    // Every stack is a node, including those without edges.
    for id in ["dev/eu-west-1/network-b", "prod/us-east-1/network"] {
        assert!(dot.contains(&format!("\"{id}\"")), "{id} in {dot}");
    }
}

#[test]
fn graph_text_shows_stacks_layers_and_upstreams() {
    let (repo, _) = graph_org();
    let run = run_in(&repo, &["graph"]);
    run.expect_code(Exit::OK);
    let out = &run.stdout;
    assert!(out.contains("dev/eu-west-1/eks-cluster [cluster]"), "{out}");
    assert!(out.contains("  -> dev/eu-west-1/identity"), "{out}");
    assert!(out.contains("dev/eu-west-1/network-b [-]"), "{out}");
}

#[test]
fn graph_of_an_older_revision() {
    let (repo, first) = graph_org();
    repo.remove("live/dev/eu-west-1/dns");
    let second = repo.commit("drop dns");
    let run = run_in(&repo, &["graph", "--format", "json", "--rev", &first]);
    run.expect_code(Exit::OK);
    assert_eq!(run.json()["edges"].as_array().unwrap().len(), 7);
    let run = run_in(&repo, &["graph", "--format", "json", "--rev", &second]);
    run.expect_code(Exit::OK);
    // The explicit depends_on now names a missing stack: a warning, not an edge.
    let g = run.json();
    assert_eq!(g["edges"].as_array().unwrap().len(), 5, "{g:#}");
    assert_warning(&g, "sluice.yaml", "dev/eu-west-1/dns");
}

#[test]
fn stacks_json_shows_env_region_layer_and_codeowners() {
    let (repo, head) = graph_org();
    let run = run_in(&repo, &["stacks", "--format", "json"]);
    run.expect_code(Exit::OK);
    let s = run.json();
    assert_eq!(s["rev"], head);
    let stacks = s["stacks"].as_array().expect("stacks");
    let got: Vec<(String, String, String, String, Vec<String>)> = stacks
        .iter()
        .map(|st| {
            let text = |k: &str| st[k].as_str().unwrap_or("-").to_string();
            let owners = st["owners"]
                .as_array()
                .expect("owners")
                .iter()
                .map(|o| o.as_str().unwrap().to_string())
                .collect();
            (
                text("id"),
                text("env"),
                text("region"),
                text("layer"),
                owners,
            )
        })
        .collect();
    let row = |id: &str, env: &str, region: &str, layer: &str, owners: &[&str]| {
        (
            id.to_string(),
            env.to_string(),
            region.to_string(),
            layer.to_string(),
            owners.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        got,
        vec![
            row(
                "dev/eu-west-1/dns",
                "dev",
                "eu-west-1",
                "app",
                &["@org/platform"]
            ),
            row(
                "dev/eu-west-1/eks-cluster",
                "dev",
                "eu-west-1",
                "cluster",
                &["@org/platform"]
            ),
            // An entry without owners makes the path unowned (GitHub semantics).
            row(
                "dev/eu-west-1/identity",
                "dev",
                "eu-west-1",
                "identity",
                &[]
            ),
            row(
                "dev/eu-west-1/network",
                "dev",
                "eu-west-1",
                "network",
                &["@org/net", "@org/net2"]
            ),
            row(
                "dev/eu-west-1/network-b",
                "dev",
                "eu-west-1",
                "-",
                &["@org/platform"]
            ),
            row(
                "dev/eu-west-1/rds-payments",
                "dev",
                "eu-west-1",
                "data",
                &["@org/payments-dev"]
            ),
            row(
                "prod/us-east-1/network",
                "prod",
                "us-east-1",
                "network",
                &["@org/sre"]
            ),
            row(
                "prod/us-east-1/rds-payments",
                "prod",
                "us-east-1",
                "data",
                &["@org/dba"]
            ),
        ]
    );

    let apps = s["apps"].as_array().expect("apps");
    let app_rows: Vec<(String, String, String, serde_json::Value)> = apps
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_string(),
                a["env"].as_str().unwrap_or("-").to_string(),
                a["kind"].as_str().unwrap_or("-").to_string(),
                a["owners"].clone(),
            )
        })
        .collect();
    assert_eq!(
        app_rows,
        vec![
            (
                "dev-eu/orders".to_string(),
                "dev".to_string(),
                "plain".to_string(),
                serde_json::json!(["@org/platform"])
            ),
            (
                "prod-us/payments".to_string(),
                "prod".to_string(),
                "kustomize".to_string(),
                serde_json::json!(["@org/payments"])
            ),
        ]
    );
}

#[test]
fn stacks_text_lists_every_stack_and_app() {
    let (repo, _) = graph_org();
    let run = run_in(&repo, &["stacks"]);
    run.expect_code(Exit::OK);
    assert_has(
        &run.stdout,
        &["stacks (8)", "apps (2)", "prod/us-east-1/rds-payments"],
    );
}

#[test]
fn codeowners_falls_back_to_root_then_docs() {
    let repo = org_repo();
    repo.write("live/dev/eu-west-1/a/terragrunt.hcl", plain_stack("a = 1"));
    repo.write("CODEOWNERS", "* @org/root\n");
    repo.write("docs/CODEOWNERS", "* @org/docs\n");
    repo.commit("root codeowners");
    let owners = |repo: &Repo| {
        let run = run_in(repo, &["stacks", "--format", "json"]);
        run.expect_code(Exit::OK);
        run.json()["stacks"][0]["owners"].clone()
    };
    assert_eq!(owners(&repo), serde_json::json!(["@org/root"]));
    repo.remove("CODEOWNERS");
    repo.commit("docs only");
    assert_eq!(owners(&repo), serde_json::json!(["@org/docs"]));
    repo.remove("docs/CODEOWNERS");
    repo.commit("none");
    assert_eq!(owners(&repo), serde_json::json!([]));
}

#[test]
fn affected_text_format_explains_reasons() {
    let (repo, base) = graph_org();
    repo.write(
        "live/dev/eu-west-1/network/terragrunt.hcl",
        plain_stack("a = 2"),
    );
    let head = repo.commit("network");
    let run = sluice_change("affected", repo.path(), &base, &head, &[]);
    run.expect_code(Exit::OK);
    let out = &run.stdout;
    for id in [
        "dev/eu-west-1/network",
        "dev/eu-west-1/identity",
        "dev/eu-west-1/eks-cluster",
        "dev/eu-west-1/rds-payments",
        "dev/eu-west-1/dns",
    ] {
        assert!(out.contains(id), "{id}: {out}");
    }
    assert!(!out.contains("prod/us-east-1"), "{out}");
    assert!(out.contains("dependent"), "{out}");
    assert!(
        out.contains("live/dev/eu-west-1/network/terragrunt.hcl"),
        "{out}"
    );

    let r = affected(repo.path(), &base, &head);
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/dns", "dependent"),
            ("dev/eu-west-1/eks-cluster", "dependent"),
            ("dev/eu-west-1/identity", "dependent"),
            ("dev/eu-west-1/network", "modified"),
            ("dev/eu-west-1/rds-payments", "dependent"),
        ],
    );
}

#[test]
fn dot_quotes_unusual_stack_names() {
    let repo = org_repo();
    repo.write(
        "live/dev/eu-west-1/net work/terragrunt.hcl",
        plain_stack("a = 1"),
    );
    repo.write(
        "live/dev/eu-west-1/we\"ird/terragrunt.hcl",
        "dependency \"n\" {\n  config_path = \"../net work\"\n}\n",
    );
    repo.write(
        "live/dev/eu-west-1/app/terragrunt.hcl",
        "dependency \"w\" {\n  config_path = \"../we\\\"ird\"\n}\n",
    );
    repo.commit("odd names");
    let run = run_in(&repo, &["graph", "--format", "json"]);
    run.expect_code(Exit::OK);
    let edges = run.json()["edges"].clone();
    assert_eq!(
        edges,
        serde_json::json!([
            {"stack": "dev/eu-west-1/app", "depends_on": "dev/eu-west-1/we\"ird"},
            {"stack": "dev/eu-west-1/we\"ird", "depends_on": "dev/eu-west-1/net work"},
        ])
    );
    let run = run_in(&repo, &["graph", "--format", "dot"]);
    run.expect_code(Exit::OK);
    // Every quote inside an id is escaped, in node and edge statements alike.
    for line in run.stdout.lines() {
        let unescaped = line.replace("\\\"", "");
        assert_eq!(
            unescaped.matches('"').count() % 2,
            0,
            "unbalanced quotes: {line}"
        );
    }
    assert_has(
        &run.stdout,
        &["\"dev/eu-west-1/we\\\"ird\" -> \"dev/eu-west-1/net work\";"],
    );
}

#[test]
fn stack_in_an_undefined_environment_is_a_warning() {
    let repo = org_repo();
    repo.write(
        "live/staging/eu-west-1/a/terragrunt.hcl",
        plain_stack("a = 1"),
    );
    repo.commit("staging is not in sluice.yaml");
    let run = run_in(&repo, &["stacks", "--format", "json"]);
    run.expect_code(Exit::OK);
    let s = run.json();
    assert_eq!(s["stacks"][0]["env"], "staging");
    assert_warning(&s, "live/staging/eu-west-1/a/terragrunt.hcl", "staging");
}
