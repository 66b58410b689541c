//! End-to-end tests of `sluice plan` and `sluice ingest-plan`: real git repositories, the
//! `sluice` binary, and `tofu-test-double` (crates/adapters/iac/tests/support), a test double
//! of the OpenTofu CLI that serves plans from `../shared/corpus/tf-plans`, put first on PATH.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;
use sluice_testkit::*;

const CANARY: &str = "CANARY-e2e-51d0c3";
const R: &str = "live/prod/eu-west-1";

/// `sluice` with the OpenTofu test double's directory first on PATH.
fn sluice_with(bin: &Path) -> Sluice {
    Sluice::new().path_first(bin)
}

/// `sluice plan` over `base...head` with `bin` first on PATH.
fn plan(bin: &Path, repo: &Repo, base: &str, head: &str, extra: &[&str]) -> Run {
    sluice_with(bin).change("plan", repo.path(), base, head, extra)
}

fn stack_files(repo: &Repo, name: &str, plan: &Path, extra: &str) {
    repo.write(
        &format!("{R}/{name}/main.tf"),
        "module \"db\" { source = \"../../../../modules/db\" }\n",
    );
    repo.write(
        &format!("{R}/{name}/tofu-double.conf"),
        format!(
            "plan_json={}\nrequire=../../../../modules/db/main.tf\n{extra}",
            plan.display()
        ),
    );
}

#[test]
fn plan_plans_affected_stacks_skips_deleted_and_stores_plans() {
    let (Some(p1), Some(p2)) = (
        corpus("tf-plans/terraform-json/testdata/action_reason/plan.json"),
        corpus("tf-plans/terraform-json/testdata/moved_block/plan.json"),
    ) else {
        return;
    };
    let repo = org_repo();
    repo.write("modules/db/main.tf", "# db module\n");
    stack_files(&repo, "rds", &p1, "");
    stack_files(&repo, "cache", &p2, "exit=2\n");
    stack_files(&repo, "old", &p2, "");
    // Not using the module: the change does not affect it.
    repo.write(&format!("{R}/untouched/main.tf"), "# standalone\n");
    repo.write(
        &format!("{R}/untouched/tofu-double.conf"),
        format!("plan_json={}\n", p2.display()),
    );
    let base = repo.commit("base");
    repo.checkout_new("change");
    // A module both stacks use changes; `old` is deleted.
    repo.write("modules/db/main.tf", "# db module v2\n");
    repo.remove(&format!("{R}/old"));
    let head = repo.commit("change");

    let bin = TestDoubleBin::new(&["tofu"]);
    let store = tempfile::tempdir().unwrap();
    let run = plan(
        bin.path(),
        &repo,
        &base,
        &head,
        &["--store", s(store.path()), "--format", "json"],
    );
    run.expect_code(Exit::OK);
    let r = run.json();
    assert_eq!(r["schema"], "sluice.plan/v1");
    let stacks = r["stacks"].as_array().unwrap();
    let ids: Vec<&str> = stacks
        .iter()
        .map(|s| s["stack"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["prod/eu-west-1/cache", "prod/eu-west-1/rds"]);
    for st in stacks {
        assert_eq!(st["status"], "planned", "{st:#}");
        assert_eq!(st["engine"]["kind"], "tofu");
        let digest = st["plan_digest"].as_str().unwrap();
        assert!(digest.starts_with("sha256:") && digest.len() == 71);
        let hex = &digest[7..];
        let blob = store
            .path()
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(&hex[2..]);
        let mode = std::fs::metadata(&blob).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let rds = &stacks[1];
    assert_eq!(
        rds["summary"]["replaced"][0]["reason"],
        "replace_because_tainted"
    );
    let skipped = r["skipped"].as_array().unwrap();
    assert_eq!(skipped[0]["stack"], "prod/eu-west-1/old");

    // The same run as text.
    let run = plan(
        bin.path(),
        &repo,
        &base,
        &head,
        &["--store", s(store.path())],
    );
    run.expect_code(Exit::OK);
    assert_has(
        &run.stdout,
        &[
            "2 stacks planned, 0 failed",
            "±  null_resource.example [replace_because_tainted]",
            "skipped prod/eu-west-1/old: deleted at head",
        ],
    );

    // --stack narrows the set; an unknown id is a usage error.
    let run = plan(
        bin.path(),
        &repo,
        &base,
        &head,
        &[
            "--store",
            s(store.path()),
            "--stack",
            "prod/eu-west-1/untouched",
            "--format",
            "json",
        ],
    );
    run.expect_code(Exit::OK);
    assert_eq!(run.json()["stacks"][0]["stack"], "prod/eu-west-1/untouched");
    let run = plan(
        bin.path(),
        &repo,
        &base,
        &head,
        &["--stack", "prod/nowhere/x"],
    );
    run.expect_code(Exit::USAGE);
    assert_has(&run.stderr, &["unknown stack at"]);
}

#[test]
fn a_failed_plan_exits_6_with_a_redacted_classified_excerpt() {
    let Some(p) = corpus("tf-plans/terraform-json/testdata/moved_block/plan.json") else {
        return;
    };
    let repo = org_repo();
    repo.write("modules/db/main.tf", "# db\n");
    stack_files(&repo, "ok", &p, "");
    stack_files(
        &repo,
        "locked",
        &p,
        &format!("fail=state-lock\nstderr=  password = \"{CANARY}\"\n"),
    );
    let base = repo.commit("base");
    repo.write("modules/db/main.tf", "# db v2\n");
    let head = repo.commit("change");
    let bin = TestDoubleBin::new(&["tofu"]);
    let store = tempfile::tempdir().unwrap();
    for format in ["text", "json"] {
        let run = plan(
            bin.path(),
            &repo,
            &base,
            &head,
            &["--store", s(store.path()), "--format", format],
        );
        run.expect_code(Exit::PLAN_FAILED);
        let all = run.all_output();
        assert_lacks(&all, &[CANARY]);
        if format == "text" {
            assert_has(
                &all,
                &[
                    "FAILED (state/lock) at plan",
                    "| Error: Error acquiring the state lock",
                    "1 stack planned, 1 failed",
                ],
            );
        } else {
            let r = run.json();
            let locked = r["stacks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["status"] == "failed")
                .unwrap();
            assert_eq!(locked["class"], "state_lock");
            assert_eq!(locked["step"], "plan");
        }
    }
}

#[test]
fn plan_without_an_engine_fails_as_engine_missing() {
    let repo = org_repo();
    repo.write(&format!("{R}/a/main.tf"), "# a\n");
    let base = repo.commit("base");
    repo.write(&format!("{R}/a/main.tf"), "# a v2\n");
    let head = repo.commit("change");
    let empty = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let run = plan(
        empty.path(),
        &repo,
        &base,
        &head,
        &["--store", s(store.path())],
    );
    run.expect_code(Exit::PLAN_FAILED);
    assert_has(&run.stdout, &["FAILED (engine missing)"]);
}

fn ingest(args: &[&str]) -> Run {
    let empty = tempfile::tempdir().unwrap();
    let mut all = vec!["ingest-plan"];
    all.extend_from_slice(args);
    sluice_with(empty.path()).run(&all)
}

fn blobs(store: &Path) -> usize {
    fn walk(p: &Path) -> usize {
        std::fs::read_dir(p).map_or(0, |rd| {
            rd.map(|e| e.unwrap().path())
                .map(|p| if p.is_dir() { walk(&p) } else { 1 })
                .sum()
        })
    }
    walk(store)
}

#[test]
fn ingest_plan_stores_and_summarises() {
    let Some(p) = corpus("tf-plans/terraform-json/testdata/action_reason/plan.json") else {
        return;
    };
    let store = tempfile::tempdir().unwrap();
    let planfile = store.path().join("tfplan.bin");
    std::fs::write(&planfile, b"binary plan").unwrap();
    let run = ingest(&[
        "--stack",
        "prod/eu-west-1/rds",
        "--plan-json",
        s(&p),
        "--plan-file",
        s(&planfile),
        "--store",
        s(&store.path().join("s")),
        "--format",
        "json",
    ]);
    run.expect_code(Exit::OK);
    let r: Value = run.json();
    let bytes = std::fs::read(&p).unwrap();
    let json_digest = sluice_iac::store::Digest::of(&bytes).to_string();
    let file_digest = sluice_iac::store::Digest::of(b"binary plan").to_string();
    assert_eq!(r["plan"]["plan_json"], json_digest);
    assert_eq!(r["plan"]["plan_file"], file_digest);
    assert_eq!(r["plan"]["plan_digest"], file_digest);
    assert_eq!(r["plan"]["summary"]["totals"]["replace"], 1);
    assert_eq!(blobs(&store.path().join("s")), 2);
    assert_has(&run.stderr, &["not checked against a repository"]);

    let run = ingest(&[
        "--stack",
        "x",
        "--plan-json",
        s(&p),
        "--store",
        s(&store.path().join("t")),
    ]);
    run.expect_code(Exit::OK);
    assert_has(
        &run.stdout,
        &[
            &format!("plan {json_digest}"),
            "Plan: 1 to add, 0 to change, 1 to destroy (1 replaced).",
        ],
    );
}

#[test]
fn ingest_plan_bad_input_exits_2_and_stores_nothing() {
    let Some(invalid) = corpus("tf-plans/terraform-json/testdata/invalid/plan.json") else {
        return;
    };
    let store = tempfile::tempdir().unwrap();
    let st = store.path().join("s");
    let run = ingest(&[
        "--stack",
        "a",
        "--plan-json",
        s(&invalid),
        "--store",
        s(&st),
    ]);
    run.expect_code(Exit::USAGE);
    assert_has(
        &run.stderr,
        &[
            &format!("{}:676:", invalid.display()),
            "malformed plan JSON",
        ],
    );

    let v2 = store.path().join("v2.json");
    std::fs::write(&v2, r#"{"format_version": "2.0", "planned_values": {}}"#).unwrap();
    let run = ingest(&["--stack", "a", "--plan-json", s(&v2), "--store", s(&st)]);
    run.expect_code(Exit::USAGE);
    assert_has(&run.stderr, &["unsupported plan format_version `2.0`"]);

    let state = corpus("tf-plans/terraform-json/testdata/no_changes/state.json").unwrap();
    let run = ingest(&["--stack", "a", "--plan-json", s(&state), "--store", s(&st)]);
    run.expect_code(Exit::USAGE);
    assert_has(&run.stderr, &["not a plan JSON document"]);

    let run = ingest(&[
        "--stack",
        "a",
        "--plan-json",
        "/nonexistent/plan.json",
        "--store",
        s(&st),
    ]);
    run.expect_code(Exit::USAGE);
    assert_eq!(blobs(&st), 0, "nothing partially written");
}

#[test]
fn ingest_plan_checks_the_stack_when_given_a_repo() {
    let Some(p) = corpus("tf-plans/terraform-json/testdata/moved_block/plan.json") else {
        return;
    };
    let repo = org_repo();
    repo.write(&format!("{R}/rds/main.tf"), "# rds\n");
    repo.commit("base");
    let store = tempfile::tempdir().unwrap();
    let ok = ingest(&[
        "--stack",
        "prod/eu-west-1/rds",
        "--plan-json",
        s(&p),
        "--repo",
        repo.arg(),
        "--store",
        s(store.path()),
    ]);
    ok.expect_code(Exit::OK);
    let bad = ingest(&[
        "--stack",
        "prod/eu-west-1/nope",
        "--plan-json",
        s(&p),
        "--repo",
        repo.arg(),
        "--store",
        s(store.path()),
    ]);
    bad.expect_code(Exit::USAGE);
    assert_has(&bad.stderr, &["unknown stack `prod/eu-west-1/nope`"]);
}

#[test]
fn ingest_plan_output_never_carries_the_canary() {
    let store = tempfile::tempdir().unwrap();
    let plan = serde_json::json!({
        "format_version": "1.2",
        "variables": {"db_password": {"value": CANARY}},
        "prior_state": {"values": {"x": CANARY}},
        "planned_values": {"outputs": {"o": {"sensitive": true, "value": CANARY}}},
        "resource_changes": [{
            "address": "aws_db_instance.db", "mode": "managed", "type": "aws_db_instance", "name": "db",
            "change": {"actions": ["update"],
                "before": {"password": CANARY, "db_password": CANARY},
                "after": {"password": CANARY, "endpoint": format!("mysql://u:{CANARY}@h/d")},
                "after_unknown": {}, "before_sensitive": {"password": true}, "after_sensitive": {"password": true}}
        }],
        "output_changes": {"o": {"actions": ["create"], "before": null, "after": CANARY,
            "after_unknown": false, "before_sensitive": true, "after_sensitive": true}}
    });
    let f = store.path().join("canary.json");
    std::fs::write(&f, serde_json::to_vec_pretty(&plan).unwrap()).unwrap();
    for format in ["text", "json"] {
        let run = ingest(&[
            "--stack",
            "a",
            "--plan-json",
            s(&f),
            "--store",
            s(&store.path().join("s")),
            "--format",
            format,
        ]);
        run.expect_code(Exit::OK);
        assert!(
            !run.stdout.contains(CANARY) && !run.stderr.contains(CANARY),
            "{}{}",
            run.stdout,
            run.stderr
        );
    }
    // And a malformed variant: the error names the position, not the value.
    std::fs::write(
        &f,
        format!("{{\"format_version\": \"1.2\", \"planned_values\": {{}}, \"x\": \"{CANARY}\" !}}"),
    )
    .unwrap();
    let run = ingest(&[
        "--stack",
        "a",
        "--plan-json",
        s(&f),
        "--store",
        s(&store.path().join("s")),
    ]);
    run.expect_code(Exit::USAGE);
    assert_lacks(&run.stderr, &[CANARY]);
}
