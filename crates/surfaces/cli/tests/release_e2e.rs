//! Issue 11's CLI scenario with the real Terraform (`terraform_data`, a local backend): an
//! apply refused without approval, a self-approval refused, an approval signed with the
//! approver's registered key, the apply of exactly the approved plan (the state holds the new
//! value), a second apply refused, a push voiding the approval; a kill -9 during a slow
//! apply leaving a degraded stack with a kept lock that an admin recovers; a plan made stale
//! by another apply (plan again, approvals do not carry over); and a two-stack change applied
//! upstream first, stopped at the first failure and recovered through a refresh-only plan.
//!
//! Skipped with a notice when `terraform` is not on PATH; a failure when
//! `SLUICE_REQUIRE_TERRAFORM=1`.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_testkit::{
    Author, Exit, Repo, Sluice, keygen, local_state_stack as stack, org_repo, s, sluice_yaml,
    terraform_sluice,
};

const STACK_DIR: &str = "live/dev/eu-west-1/app";
const UNIT: &str = "dev/eu-west-1/app";
/// The stack `app` depends on in the two-stack scenario (sorted after it, so that dependency
/// order and id order differ).
const DB_DIR: &str = "live/dev/eu-west-1/db";
const DB: &str = "dev/eu-west-1/db";
const APPLY_FAILED: Exit = Exit(10);
const APPROVAL_REFUSED: Exit = Exit(7);
const APPLY_REFUSED: Exit = Exit(8);

const BOB: Author<'static> = Author {
    name: "Bob",
    email: "bob@acme.example",
};

struct Scenario {
    repo: Repo,
    keys: tempfile::TempDir,
    state: tempfile::TempDir,
    base: String,
}

/// main: sluice.yaml with alice and bob (keys generated here), the stack with nothing in it.
fn scenario() -> Scenario {
    scenario_with(false)
}

/// [`scenario`], and with `db` a second empty stack (its state in `state/db/`) that `app`
/// depends on through `stacks.depends_on`.
fn scenario_with(db: bool) -> Scenario {
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let alice = keygen(keys.path(), "alice");
    let bob = keygen(keys.path(), "bob");
    let repo = org_repo();
    repo.write(
        "sluice.yaml",
        format!(
            "{}plan:\n  engine: terraform\napprovals:\n  R1: [\"@acme/platform\"]\npeople:\n  alice: {{ emails: [alice@acme.example], groups: [\"@acme/platform\"], keys: [\"{alice}\"] }}\n  bob: {{ emails: [bob@acme.example], groups: [\"@acme/platform\"], keys: [\"{bob}\"] }}\n",
            sluice_yaml(if db {
                "  depends_on:\n    - { stack: dev/eu-west-1/app, on: [dev/eu-west-1/db] }\n"
            } else {
                ""
            })
        ),
    );
    repo.write(&format!("{STACK_DIR}/main.tf"), stack(state.path(), ""));
    if db {
        repo.write(
            &format!("{DB_DIR}/main.tf"),
            stack(&state.path().join("db"), ""),
        );
    }
    let base = repo.commit("base");
    repo.git(&["branch", "-M", "main"]);
    repo.checkout_new("pr1");
    Scenario {
        repo,
        keys,
        state,
        base,
    }
}

fn sluice() -> Sluice {
    terraform_sluice()
}

impl Scenario {
    fn key(&self, name: &str) -> String {
        s(&self.keys.path().join(format!("{name}_ed25519"))).to_string()
    }

    fn change(&self, value: &str, provisioner: &str) -> String {
        self.write(STACK_DIR, self.state.path(), value, provisioner);
        self.repo.commit_as(BOB, &format!("app {value}"))
    }

    /// The stack in `dir` (state in `state`) holding `value`, not committed.
    fn write(&self, dir: &str, state: &std::path::Path, value: &str, provisioner: &str) {
        self.repo.write(
            &format!("{dir}/main.tf"),
            stack(
                state,
                &format!(
                    "resource \"terraform_data\" \"app\" {{\n  input = \"{value}\"\n{provisioner}}}\noutput \"value\" {{\n  value = terraform_data.app.output\n}}\n"
                ),
            ),
        );
    }

    /// `sluice pr --run-plans --record`; the change id of the stack.
    fn record(&self) -> String {
        self.recorded(UNIT)
    }

    /// `sluice pr --run-plans --record`; the change id of `unit`.
    fn recorded(&self, unit: &str) -> String {
        self.record_all()
            .into_iter()
            .find(|(u, _)| u == unit)
            .unwrap_or_else(|| panic!("no change id for {unit}"))
            .1
    }

    /// `sluice pr --run-plans --record`; (unit, change id) of every recorded change.
    fn record_all(&self) -> Vec<(String, String)> {
        let run = sluice().run(&[
            "pr",
            "--repo",
            self.repo.arg(),
            "--base",
            "main",
            "--head",
            "pr1",
            "--pr",
            "1",
            "--run-plans",
            "--record",
            "--format",
            "json",
        ]);
        let report = run.json();
        let changes: Vec<(String, String)> = report["changes"]
            .as_array()
            .unwrap_or_else(|| panic!("no changes: {}", run.all_output()))
            .iter()
            .filter_map(|c| {
                let unit = c["unit"].as_str().or(c["id"].as_str())?;
                Some((unit.to_string(), c["change_id"].as_str()?.to_string()))
            })
            .collect();
        assert!(!changes.is_empty(), "{}", run.all_output());
        changes
    }

    fn approve(&self, change: &str, who: &str) -> sluice_testkit::Run {
        sluice().run(&[
            "approve",
            change,
            "--repo",
            self.repo.arg(),
            "--as",
            who,
            "--key",
            &self.key(who),
        ])
    }

    fn apply(&self, change: &str, extra: &[&str]) -> sluice_testkit::Run {
        let mut args = vec!["apply", change, "--repo", self.repo.arg()];
        args.extend_from_slice(extra);
        sluice().run(&args)
    }

    fn state_text(&self) -> String {
        std::fs::read_to_string(self.state.path().join("terraform.tfstate")).unwrap_or_default()
    }

    fn db_state_text(&self) -> String {
        std::fs::read_to_string(self.state.path().join("db/terraform.tfstate")).unwrap_or_default()
    }

    fn locks(&self) -> Value {
        sluice()
            .run(&["locks", "--repo", self.repo.arg(), "--format", "json"])
            .json()
    }
}

/// The lock view of `unit` in `sluice locks --format json`.
fn lock_of<'a>(locks: &'a Value, unit: &str) -> &'a Value {
    locks["locks"]
        .as_array()
        .and_then(|l| l.iter().find(|v| v["unit"] == unit))
        .unwrap_or_else(|| panic!("no lock view of {unit}: {locks}"))
}

#[test]
fn approvals_bind_to_the_plan_and_apply_applies_it_once() {
    let Some(_tf) = sluice_testkit::terraform() else {
        return;
    };
    let sc = scenario();
    let _ = &sc.base;
    sc.change("v1", "");
    let change = sc.record();

    // No approval: refused, nothing applied.
    sc.apply(&change, &[])
        .expect_error(APPLY_REFUSED, &["approvals missing"]);
    assert!(!sc.state_text().contains("\"v1\""));

    // bob authored the change.
    sc.approve(&change, "bob")
        .expect_error(APPROVAL_REFUSED, &["bob authored this change"]);
    // alice's key is not bob's.
    sluice()
        .run(&[
            "approve",
            &change,
            "--repo",
            sc.repo.arg(),
            "--as",
            "alice",
            "--key",
            &sc.key("bob"),
        ])
        .expect_error(APPROVAL_REFUSED, &["is not registered for alice"]);
    sc.approve(&change, "alice")
        .expect_code(Exit::OK)
        .stdout_has(&["approved", "alice", "@acme/platform"]);

    // Applies exactly the recorded plan.
    let applied = sc.apply(&change, &["--format", "json"]);
    applied.expect_code(Exit::OK);
    let report = applied.json();
    assert_eq!(report["applied"][0]["approved_by"][0], "alice", "{report}");
    assert!(sc.state_text().contains("\"v1\""), "{}", sc.state_text());
    // The second apply of the same plan is refused.
    sc.apply(&change, &[])
        .expect_error(APPLY_REFUSED, &["already applied"]);

    // The bundle links plan, approval and apply; the verifier checks their digests agree.
    let bundle = sc.repo.path().join("bundle.json");
    sluice()
        .run(&[
            "evidence",
            "bundle",
            &change,
            "--repo",
            sc.repo.arg(),
            "--out",
            s(&bundle),
        ])
        .expect_code(Exit::OK);
    sluice()
        .run(&["evidence", "verify", s(&bundle), "--repo", sc.repo.arg()])
        .expect_code(Exit::OK);

    // A push: the new change cannot be applied with the old approval.
    sc.change("v2", "");
    let next = sc.record();
    assert_ne!(next, change);
    sc.apply(&next, &[])
        .expect_error(APPLY_REFUSED, &["approvals missing"]);
    assert!(!sc.state_text().contains("\"v2\""));
    let locks = sluice()
        .run(&["locks", "--repo", sc.repo.arg(), "--format", "json"])
        .json();
    assert_eq!(locks["locks"][0]["unit"], UNIT, "{locks}");
    assert!(locks["locks"][0]["lock"]["holder"].is_null(), "{locks}");
}

#[test]
fn a_killed_apply_leaves_a_degraded_stack_that_an_admin_recovers() {
    let Some(_tf) = sluice_testkit::terraform() else {
        return;
    };
    let sc = scenario();
    sc.change(
        "slow",
        "  provisioner \"local-exec\" {\n    command = \"sleep 30\"\n  }\n",
    );
    let change = sc.record();
    sc.approve(&change, "alice").expect_code(Exit::OK);

    let mut child = Command::new(sluice_testkit::sluice_bin());
    child
        .args(["apply", &change, "--repo", sc.repo.arg(), "--lease", "2"])
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("CHECKPOINT_DISABLE", "1")
        .env_remove("TF_PLUGIN_CACHE_DIR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // Its own process group, so that the kill takes the engine with it: the machine died.
    std::os::unix::process::CommandExt::process_group(&mut child, 0);
    let mut child = child.spawn().unwrap();
    let started = Instant::now();
    loop {
        let locks = sluice()
            .run(&["locks", "--repo", sc.repo.arg(), "--format", "json"])
            .json();
        let kind = locks["locks"][0]["lock"]["holder"]["tenure"]["kind"].clone();
        if kind == "applying" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the apply never started: {locks}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signals the child's own process group, created above.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
    // The lease (2 s) runs out without heartbeats.
    std::thread::sleep(Duration::from_secs(3));

    let locks = sluice()
        .run(&["locks", "--repo", sc.repo.arg(), "--format", "json"])
        .json();
    let holder = &locks["locks"][0]["lock"]["holder"];
    assert_eq!(holder["tenure"]["kind"], "kept", "{locks}");
    assert_eq!(holder["tenure"]["cause"], "interrupted", "{locks}");

    // Degraded: the same plan cannot be applied again, and nothing else can either.
    sc.apply(&change, &[])
        .expect_error(APPLY_REFUSED, &["degraded"]);
    let view: Value = sluice()
        .run(&["locks", "--repo", sc.repo.arg(), "--format", "json"])
        .json();
    assert_eq!(view["locks"][0]["health"]["health"], "degraded", "{view}");
    assert_eq!(
        view["locks"][0]["health"]["degradation"]["error"], "killed",
        "{view}"
    );
    // The PR report shows it too, without any server: JSON and Markdown.
    let pr = |format: &str| {
        sluice().run(&[
            "pr",
            "--repo",
            sc.repo.arg(),
            "--base",
            "main",
            "--head",
            "pr1",
            "--pr",
            "1",
            "--format",
            format,
        ])
    };
    let report = pr("json").json();
    assert_eq!(
        report["stacks"][0]["health"]["health"], "degraded",
        "{report}"
    );
    assert_eq!(
        report["stacks"][0]["health"]["degradation"]["error"], "killed",
        "{report}"
    );
    let md = pr("markdown");
    assert!(
        md.stdout.contains("is degraded") && md.stdout.contains("sluice recover"),
        "{}",
        md.stdout
    );

    // Recovery is an audited admin action with a reason.
    sluice()
        .run(&["recover", UNIT, "--repo", sc.repo.arg()])
        .expect_error(Exit::USAGE, &["--reason is required"]);
    sluice()
        .run(&[
            "recover",
            UNIT,
            "--repo",
            sc.repo.arg(),
            "--reason",
            "runner lost; state checked by hand",
        ])
        .expect_code(Exit::OK)
        .stdout_has(&["recovered", "unlocked"]);
    let view: Value = sluice()
        .run(&["locks", "--repo", sc.repo.arg(), "--format", "json"])
        .json();
    assert_eq!(view["locks"][0]["health"]["health"], "healthy", "{view}");
    assert!(view["locks"][0]["lock"]["holder"].is_null(), "{view}");
}

#[test]
fn a_plan_made_stale_by_another_apply_is_refused_and_its_approvals_do_not_carry_over() {
    let Some(tf) = sluice_testkit::terraform() else {
        return;
    };
    let sc = scenario();
    sc.change("v1", "");
    let change = sc.record();
    sc.approve(&change, "alice").expect_code(Exit::OK);

    // Another apply moves the state after the plan: the engine, on the same backend.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("main.tf"),
        stack(
            sc.state.path(),
            "resource \"terraform_data\" \"other\" {\n  input = \"moved\"\n}\n",
        ),
    )
    .unwrap();
    for args in [
        &["init", "-input=false"][..],
        &["apply", "-input=false", "-auto-approve"],
    ] {
        let out = Command::new(&tf)
            .args(args)
            .current_dir(other.path())
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let moved = sc.state_text();
    assert!(moved.contains("\"moved\""), "{moved}");

    sc.apply(&change, &[]).expect_error(
        APPLY_REFUSED,
        &[
            "the state moved since plan",
            "Plan again",
            "approvals do not carry over",
        ],
    );
    assert_eq!(sc.state_text(), moved, "nothing applied");
    // The plan is spent, the lock free, the stack healthy.
    sc.apply(&change, &[])
        .expect_error(APPLY_REFUSED, &["the state moved since this plan was made"]);
    let locks = sc.locks();
    assert!(lock_of(&locks, UNIT)["lock"]["holder"].is_null(), "{locks}");
    assert_eq!(
        lock_of(&locks, UNIT)["health"]["health"],
        "healthy",
        "{locks}"
    );

    // Planned again (same commit, a new plan): alice approved the old plan, not this one.
    let again = sc.record();
    sc.apply(&again, &[])
        .expect_error(APPLY_REFUSED, &["approvals missing"]);
    sc.approve(&again, "alice").expect_code(Exit::OK);
    sc.apply(&again, &[]).expect_code(Exit::OK);
    assert!(sc.state_text().contains("\"v1\""), "{}", sc.state_text());
}

#[test]
fn a_two_stack_change_applies_upstream_first_stops_at_the_first_failure_and_recovers() {
    let Some(_tf) = sluice_testkit::terraform() else {
        return;
    };
    let sc = scenario_with(true);
    // db fails mid-apply (its provisioner exits 1); app depends on db.
    let failing = "  provisioner \"local-exec\" {\n    command = \"exit 3\"\n  }\n";
    sc.write(DB_DIR, &sc.state.path().join("db"), "d1", failing);
    sc.write(STACK_DIR, sc.state.path(), "a1", "");
    sc.repo.commit_as(BOB, "db and app");
    let approve_all = |changes: &[(String, String)]| -> String {
        for (_, id) in changes {
            sc.approve(id, "alice").expect_code(Exit::OK);
        }
        let (unit, id) = &changes[0];
        // The part of the change ids the PR commit's changes share.
        id.strip_suffix(&format!("/{unit}")).unwrap().to_string()
    };
    let changes = sc.record_all();
    assert_eq!(changes.len(), 2, "{changes:?}");
    let commit = approve_all(&changes);

    let failed = sc.apply(&commit, &[]);
    failed.expect_error(APPLY_FAILED, &[DB, "degraded"]);
    failed.stderr_has(&[&format!("skipped {UNIT}"), "upstream_failed"]);
    assert!(
        !sc.state_text().contains("\"a1\""),
        "the dependent was not applied"
    );
    let locks = sc.locks();
    assert_eq!(
        lock_of(&locks, DB)["health"]["health"],
        "degraded",
        "{locks}"
    );
    assert_eq!(
        lock_of(&locks, DB)["lock"]["holder"]["tenure"]["kind"],
        "kept",
        "{locks}"
    );

    // A refresh-only plan shows what the failed apply left and moves db to recovering (a
    // healthy stack has nothing to refresh).
    sluice()
        .run(&["recover", UNIT, "--refresh-only", "--repo", sc.repo.arg()])
        .expect_error(Exit::USAGE, &["not degraded"]);
    let refreshed = sluice().run(&[
        "recover",
        DB,
        "--refresh-only",
        "--repo",
        sc.repo.arg(),
        "--format",
        "json",
    ]);
    refreshed.expect_code(Exit::OK);
    let refreshed = refreshed.json();
    assert_eq!(refreshed["health"]["health"], "recovering", "{refreshed}");
    assert!(
        refreshed["plan_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{refreshed}"
    );
    let audit = sluice()
        .run(&["locks", "--repo", sc.repo.arg(), "--format", "json"])
        .json();
    assert_eq!(
        lock_of(&audit, DB)["health"]["health"],
        "recovering",
        "{audit}"
    );

    // Fixed, planned after the refresh, approved: both apply, db first, under the PR's lock.
    sc.write(DB_DIR, &sc.state.path().join("db"), "d2", "");
    sc.repo.commit_as(BOB, "db fixed");
    let commit = approve_all(&sc.record_all());
    let applied = sc.apply(&commit, &["--format", "json"]);
    applied.expect_code(Exit::OK);
    let report = applied.json();
    assert_eq!(report["order"], serde_json::json!([DB, UNIT]), "{report}");
    let units: Vec<&str> = report["applied"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["unit"].as_str())
        .collect();
    assert_eq!(units, [DB, UNIT], "{report}");
    assert!(
        sc.db_state_text().contains("\"d2\""),
        "{}",
        sc.db_state_text()
    );
    assert!(sc.state_text().contains("\"a1\""), "{}", sc.state_text());
    let locks = sc.locks();
    assert_eq!(
        lock_of(&locks, DB)["health"]["health"],
        "healthy",
        "{locks}"
    );
    assert!(lock_of(&locks, DB)["lock"]["holder"].is_null(), "{locks}");
}
