//! Issue 11's CLI scenario with the real Terraform (`terraform_data`, a local backend): an
//! apply refused without approval, a self-approval refused, an approval signed with the
//! approver's registered key, the apply of exactly the approved plan (the state holds the new
//! value), a second apply refused, a push voiding the approval; and a kill -9 during a slow
//! apply leaving a degraded stack with a kept lock that an admin recovers.
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
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let alice = keygen(keys.path(), "alice");
    let bob = keygen(keys.path(), "bob");
    let repo = org_repo();
    repo.write(
        "sluice.yaml",
        format!(
            "{}plan:\n  engine: terraform\napprovals:\n  R1: [\"@acme/platform\"]\npeople:\n  alice: {{ emails: [alice@acme.example], groups: [\"@acme/platform\"], keys: [\"{alice}\"] }}\n  bob: {{ emails: [bob@acme.example], groups: [\"@acme/platform\"], keys: [\"{bob}\"] }}\n",
            sluice_yaml("")
        ),
    );
    repo.write(&format!("{STACK_DIR}/main.tf"), stack(state.path(), ""));
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
        self.repo.write(
            &format!("{STACK_DIR}/main.tf"),
            stack(
                self.state.path(),
                &format!(
                    "resource \"terraform_data\" \"app\" {{\n  input = \"{value}\"\n{provisioner}}}\noutput \"value\" {{\n  value = terraform_data.app.output\n}}\n"
                ),
            ),
        );
        self.repo.commit_as(BOB, &format!("app {value}"))
    }

    /// `sluice pr --run-plans --record`; the change id of the stack.
    fn record(&self) -> String {
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
        report["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["unit"] == UNIT || c["id"] == UNIT)
            .and_then(|c| c["change_id"].as_str())
            .unwrap_or_else(|| panic!("no change id for {UNIT}: {}", run.all_output()))
            .to_string()
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
