//! Judge the change, not the repository (issue 13), end to end on repositories built from the
//! public guestbook manifests of kubeconform's fixtures (`../shared/corpus/k8s`, read in
//! place): old problems do not block a new change, new ones do and are named new, render,
//! diff and manifest policy still run when validation blocks, a head that does not render is a
//! render failure (never a deletion), `.sluice/` never dirties the work tree, shallow clones
//! and bad revisions get plain words, and a subfolder finds its repository.

use std::path::Path;

use serde_json::Value;
use sluice_testkit::*;

/// One of kubeconform's fixtures, read in place from the corpus.
fn fixture(name: &str) -> Option<String> {
    let p = corpus(&format!("k8s/kubeconform-fixtures/fixtures/{name}"))?;
    Some(std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

/// A GitOps-only org (no `stacks` section): one protected cluster.
fn apps_only(extra: &str) -> String {
    format!(
        "version: 1\norg: test\nenvironments:\n  dev: {{ order: 1 }}\n  prod: {{ order: 2, protected: true }}\napps:\n  root: gitops/clusters\n  layout: \"{{cluster}}/apps/{{app}}\"\n  clusters: {{ prod-eu: prod }}\n{extra}"
    )
}

const APP: &str = "gitops/clusters/prod-eu/apps/guestbook";

/// The guestbook (untagged images: `k8s/mutable-image` errors in a protected environment,
/// long before any change) on `main`, and a PR branch made by `change`.
fn guestbook(extra: &str, change: impl FnOnce(&Repo, &str)) -> Option<(Repo, String)> {
    let manifests = fixture("multi_valid.yaml")?;
    let repo = Repo::new();
    repo.write("sluice.yaml", apps_only(extra));
    repo.write(&format!("{APP}/guestbook.yaml"), &manifests);
    repo.commit("guestbook");
    repo.checkout_new("pr/1");
    change(&repo, &manifests);
    let head = repo.commit("the change");
    Some((repo, head))
}

fn replica_bump(repo: &Repo, manifests: &str) {
    assert!(manifests.contains("replicas: 1"));
    repo.write(
        &format!("{APP}/guestbook.yaml"),
        manifests.replacen("replicas: 1", "replicas: 2", 1),
    );
}

fn pr_json(repo: &Repo, extra: &[&str]) -> (i32, Value) {
    let r = repo.path().to_str().unwrap();
    let mut args = vec![
        "pr", "--repo", r, "--base", "main", "--head", "pr/1", "--format", "json",
    ];
    args.extend(extra);
    let run = sluice(&args);
    (run.code, run.json())
}

fn findings(report: &Value) -> Vec<(String, String, String)> {
    report["validation"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["file"].as_str().unwrap().to_string(),
                f["baseline"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn old_problems_do_not_block_a_replica_bump() {
    let Some((repo, _)) = guestbook("", replica_bump) else {
        return;
    };
    let (code, report) = pr_json(&repo, &[]);
    let found = findings(&report);
    assert!(
        found.iter().any(|(rule, _, _)| rule == "k8s/mutable-image"),
        "the guestbook's untagged images are findings: {found:?}"
    );
    assert!(
        found.iter().all(|(_, _, class)| class == "pre_existing"),
        "{found:?}"
    );
    assert_eq!(report["validation"]["passed"], true);
    let b = &report["validation"]["baseline"];
    assert_eq!(b["new"], 0);
    assert_eq!(b["preexisting"].as_u64().unwrap() as usize, found.len());
    assert!(
        !["validation_blocked", "denied", "app_blocked"]
            .contains(&report["verdict"].as_str().unwrap()),
        "{}",
        report["verdict"]
    );
    assert_eq!(code, 0, "{}", report["verdict"]);
    // Manifest policy over the same untouched objects: nothing of it is new.
    let app = &report["apps"][0];
    if let Some(results) = app["policy_baseline"]["results"].as_array() {
        assert!(
            results.iter().all(|r| r["class"] == "pre_existing"),
            "{results:?}"
        );
    }
    // `validate` judges the change the same way.
    let r = repo.path().to_str().unwrap();
    sluice(&["validate", "--repo", r, "--base", "main", "--head", "pr/1"]).expect_code(Exit::OK);
    // Unless the org says pre-existing findings block.
    let Some((strict, _)) = guestbook("policy:\n  preexisting: block\n", replica_bump) else {
        return;
    };
    let (code, report) = pr_json(&strict, &[]);
    assert_eq!(code, 1);
    assert_eq!(report["verdict"], "validation_blocked");
    assert!(
        report["validation"]["baseline"]["preexisting_blocking"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn a_new_problem_blocks_and_render_diff_and_policy_still_run() {
    let Some((repo, _)) = guestbook("", |repo, manifests| {
        replica_bump(repo, manifests);
        repo.write(
            &format!("{APP}/debug.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: debug\nspec:\n  containers:\n  - name: shell\n    image: busybox\n",
        );
    }) else {
        return;
    };
    let (code, report) = pr_json(&repo, &[]);
    assert_eq!(code, 1);
    assert_eq!(report["verdict"], "validation_blocked");
    let found = findings(&report);
    let new: Vec<_> = found.iter().filter(|(_, _, c)| c == "new").collect();
    assert_eq!(
        new.iter()
            .map(|(r, f, _)| (r.as_str(), f.as_str()))
            .collect::<Vec<_>>(),
        [("k8s/mutable-image", format!("{APP}/debug.yaml").as_str())]
    );
    assert!(
        found
            .iter()
            .any(|(_, f, c)| c == "pre_existing" && f.ends_with("guestbook.yaml"))
    );
    // Stage 2 blocks plan and approval, not the reviewer's view of the change.
    let app = &report["apps"][0];
    assert_eq!(app["render"]["head"]["state"], "rendered", "{app}");
    assert_eq!(app["diff"]["added"], 1);
    assert!(app["policy"].is_object(), "{app}");
    let stage = |name: &str| {
        report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == name)
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(stage("render"), "passed");
    assert_eq!(stage("approve"), "not_run");
}

#[test]
fn a_head_that_does_not_render_is_a_render_failure_not_a_deletion() {
    let Some((repo, _)) = guestbook("", |repo, _| {
        repo.write(&format!("{APP}/guestbook.yaml"), "kind: [unclosed\n");
    }) else {
        return;
    };
    let (code, report) = pr_json(&repo, &[]);
    assert_eq!(code, 1);
    let app = &report["apps"][0];
    assert_eq!(app["render"]["head"]["state"], "failed", "{app}");
    assert_eq!(app["diff"]["removed"], 0, "{app}");
    assert!(app["diff"]["images"].as_array().unwrap().is_empty());
    let reasons = app["risk"]["reasons"].to_string();
    assert!(!reasons.contains("destructive"), "{reasons}");
    let r = repo.path().to_str().unwrap();
    let md = sluice(&["pr", "--repo", r, "--base", "main", "--head", "pr/1"]);
    assert!(
        md.stdout.contains("not computed (the head does not render"),
        "{}",
        md.stdout
    );
    assert!(!md.stdout.contains("removed, 0 changed"), "{}", md.stdout);
}

/// `sluice pr --record` with the key directory of a test home.
fn record(repo: &Path, data_home: &Path) -> Run {
    Sluice::new()
        .env("XDG_DATA_HOME", data_home)
        .env_remove("SLUICE_KEY_DIR")
        .env_remove("SLUICE_EVIDENCE_KEY")
        .env_remove("SLUICE_DATABASE_URL")
        .run(&[
            "pr",
            "--repo",
            repo.to_str().unwrap(),
            "--base",
            "main",
            "--head",
            "pr/1",
            "--record",
            "--format",
            "json",
        ])
}

#[test]
fn recording_evidence_leaves_git_status_clean_and_the_key_outside() {
    let Some((repo, _)) = guestbook("", replica_bump) else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let run = record(repo.path(), data.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        repo.git(&["status", "--porcelain", "--untracked-files=all"]),
        ""
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join(".sluice/.gitignore"))
            .unwrap()
            .lines()
            .last(),
        Some("*")
    );
    assert!(!repo.path().join(".sluice/keys").exists());
    let keys = walk(&data.path().join("sluice/keys"));
    assert!(
        keys.iter().any(|p| p.ends_with("evidence-ed25519.pem")),
        "{keys:?}"
    );

    // A key an older sluice left in the work tree, not ignored by git: refused, with the fix.
    let Some((old, _)) = guestbook("", replica_bump) else {
        return;
    };
    let key = old.path().join(".sluice/keys/evidence-ed25519.pem");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::write(&key, "not used").unwrap();
    let run = record(old.path(), data.path());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("git does not ignore it"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--evidence-key"), "{}", run.stderr);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn shallow_clones_and_bad_revisions_get_plain_words() {
    let repo = Repo::new();
    repo.write("sluice.yaml", apps_only(""));
    repo.write(
        &format!("{APP}/a.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    );
    repo.commit("one");
    repo.write("README", "two\n");
    repo.commit("two");
    repo.checkout_new("pr/1");
    repo.write(
        &format!("{APP}/a.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n",
    );
    repo.commit("three");
    repo.checkout("main");
    repo.write("README", "four\n");
    repo.commit("four");

    let clones = tempfile::tempdir().unwrap();
    let url = format!("file://{}", repo.path().display());
    git_in(
        clones.path(),
        &[
            "clone", "-q", "--depth", "1", "--branch", "pr/1", &url, "shallow",
        ],
    );
    let shallow = clones.path().join("shallow");
    git_in(
        &shallow,
        &["fetch", "-q", "--depth", "1", "origin", "main:main"],
    );
    let s = shallow.to_str().unwrap();
    let run = sluice(&["pr", "--repo", s, "--base", "main", "--head", "HEAD"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("shallow clone"), "{}", run.stderr);
    assert!(run.stderr.contains("fetch-depth: 0"), "{}", run.stderr);
    let run = sluice(&["pr", "--repo", s, "--base", "HEAD~1", "--head", "HEAD"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("git fetch --deepen"), "{}", run.stderr);

    // In a full clone, a revision past the first commit is said plainly.
    let r = repo.path().to_str().unwrap();
    let run = sluice(&[
        "affected", "--repo", r, "--base", "main~9", "--head", "main",
    ]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("has fewer ancestors"), "{}", run.stderr);
    let run = sluice(&[
        "affected",
        "--repo",
        r,
        "--base",
        "origin/nope",
        "--head",
        "main",
    ]);
    assert!(
        run.stderr.contains("git fetch origin nope"),
        "{}",
        run.stderr
    );

    // From a subfolder, as git does.
    let sub = repo.path().join("gitops");
    let run = sluice(&[
        "affected",
        "--repo",
        sub.to_str().unwrap(),
        "--base",
        "main",
        "--head",
        "pr/1",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["apps"][0]["id"], "prod-eu/guestbook");
}

#[test]
fn an_iac_only_org_needs_no_apps_section() {
    let repo = Repo::new();
    repo.write(
        "sluice.yaml",
        "version: 1\norg: test\nenvironments:\n  dev: { order: 1 }\nstacks:\n  root: live\n  layout: \"{env}/{stack}\"\n",
    );
    repo.write(
        "live/dev/net/terragrunt.hcl",
        plain_stack("cidr = \"10.0.0.0/16\""),
    );
    repo.commit("iac only");
    let r = repo.path().to_str().unwrap();
    let run = sluice(&["stacks", "--repo", r, "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("dev/net"), "{}", run.stdout);
    // Neither section: nothing to govern, said at the file's position.
    repo.write(
        "sluice.yaml",
        "version: 1\norg: test\nenvironments:\n  dev: { order: 1 }\n",
    );
    repo.commit("nothing");
    let run = sluice(&["stacks", "--repo", r]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("neither `stacks` nor `apps`"),
        "{}",
        run.stderr
    );
}

/// The shape of real StatefulSets' `command` scripts that kubectl accepts: continuation lines
/// of a quoted scalar indented less than the list they are in.
#[test]
fn multi_line_quoted_commands_validate_as_kubectl_reads_them() {
    let repo = Repo::new();
    repo.write("sluice.yaml", apps_only(""));
    repo.commit("org");
    repo.checkout_new("pr/1");
    repo.write(
        &format!("{APP}/db.yaml"),
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  serviceName: db\n  selector:\n    matchLabels: { app: db }\n  template:\n    metadata:\n      labels: { app: db }\n    spec:\n      containers:\n      - name: db\n        image: postgres:16.4\n        command:\n        - sh\n        - -c\n        - \"set -e\n  exec postgres\"\n",
    );
    repo.commit("db");
    let r = repo.path().to_str().unwrap();
    let run = sluice(&[
        "validate", "--repo", r, "--base", "main", "--head", "pr/1", "--format", "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(!run.stdout.contains("syntax/yaml"), "{}", run.stdout);
}
