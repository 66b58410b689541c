//! Break-glass end to end with the real Terraform (`terraform_data`, a local backend): a grant
//! refused to a non-member, to a key that is not the requester's, without a reason and over
//! the configured TTL; opened by an on-call member; an apply with no approval at all that goes
//! through under the stack's lock because of the grant, and whose bundle verifies; the grant
//! closed, leaving a backport item in `sluice backports` and in `sluice pr`; a closed and an
//! expired grant refused with the apply-refused exit code; the item resolved only once the PR
//! is merged.
//!
//! Skipped with a notice when `terraform` is not on PATH; a failure when
//! `SLUICE_REQUIRE_TERRAFORM=1`.

use std::time::Duration;

use serde_json::Value;
use sluice_testkit::{
    Author, Exit, Repo, Sluice, keygen, local_state_stack, org_repo, s, sluice_yaml,
    terraform_sluice,
};

const STACK_DIR: &str = "live/dev/eu-west-1/app";
const UNIT: &str = "dev/eu-west-1/app";
const APPLY_REFUSED: Exit = Exit(8);
const BREAK_GLASS_REFUSED: Exit = Exit(11);

const BOB: Author<'static> = Author {
    name: "Bob",
    email: "bob@acme.example",
};

struct Scenario {
    repo: Repo,
    keys: tempfile::TempDir,
    state: tempfile::TempDir,
}

/// main: approvals by @acme/platform, break-glass by @acme/sre-oncall for at most 2h; alice
/// is on call, bob is not.
fn scenario() -> Scenario {
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let alice = keygen(keys.path(), "alice");
    let bob = keygen(keys.path(), "bob");
    let repo = org_repo();
    repo.write(
        "sluice.yaml",
        format!(
            "{}plan:\n  engine: terraform\napprovals:\n  R1: [\"@acme/platform\"]\nbreak_glass:\n  group: \"@acme/sre-oncall\"\n  max_ttl: 2h\npeople:\n  alice: {{ emails: [alice@acme.example], groups: [\"@acme/platform\", \"@acme/sre-oncall\"], keys: [\"{alice}\"] }}\n  bob: {{ emails: [bob@acme.example], groups: [\"@acme/platform\"], keys: [\"{bob}\"] }}\n",
            sluice_yaml("")
        ),
    );
    repo.write(
        &format!("{STACK_DIR}/main.tf"),
        local_state_stack(state.path(), ""),
    );
    repo.commit("base");
    repo.git(&["branch", "-M", "main"]);
    repo.checkout_new("pr1");
    Scenario { repo, keys, state }
}

fn sluice() -> Sluice {
    terraform_sluice()
}

impl Scenario {
    fn key(&self, name: &str) -> String {
        s(&self.keys.path().join(format!("{name}_ed25519"))).to_string()
    }

    fn change(&self, value: &str) -> String {
        self.repo.write(
            &format!("{STACK_DIR}/main.tf"),
            local_state_stack(
                self.state.path(),
                &format!("resource \"terraform_data\" \"app\" {{\n  input = \"{value}\"\n}}\n"),
            ),
        );
        self.repo.commit_as(BOB, &format!("app {value}"))
    }

    /// `sluice pr --run-plans --record` of pr1; the report.
    fn pr(&self, extra: &[&str]) -> sluice_testkit::Run {
        let mut args = vec![
            "pr",
            "--repo",
            self.repo.arg(),
            "--base",
            "main",
            "--head",
            "pr1",
            "--pr",
            "1",
        ];
        args.extend_from_slice(extra);
        sluice().run(&args)
    }

    fn record(&self) -> String {
        let run = self.pr(&["--run-plans", "--record", "--format", "json"]);
        let report = run.json();
        report["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == UNIT)
            .and_then(|c| c["change_id"].as_str())
            .unwrap_or_else(|| panic!("no change id for {UNIT}: {}", run.all_output()))
            .to_string()
    }

    fn open(&self, who: &str, key: &str, extra: &[&str]) -> sluice_testkit::Run {
        let key = self.key(key);
        let mut args = vec![
            "break-glass",
            "open",
            "--unit",
            UNIT,
            "--as",
            who,
            "--key",
            &key,
            "--repo",
            self.repo.arg(),
        ];
        args.extend_from_slice(extra);
        sluice().run(&args)
    }

    fn apply(&self, change: &str, extra: &[&str]) -> sluice_testkit::Run {
        let mut args = vec!["apply", change, "--repo", self.repo.arg()];
        args.extend_from_slice(extra);
        sluice().run(&args)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--repo", self.repo.arg()]);
        let run = sluice().run(&all);
        run.expect_code(Exit::OK);
        run.json()
    }

    fn state_text(&self) -> String {
        std::fs::read_to_string(self.state.path().join("terraform.tfstate")).unwrap_or_default()
    }
}

#[test]
fn a_grant_lets_one_stack_apply_without_approvals_and_leaves_a_backport() {
    let Some(_tf) = sluice_testkit::terraform() else {
        return;
    };
    let sc = scenario();
    sc.change("v1");
    let change = sc.record();
    let reason = ["--reason", "INC-42: payments down"];

    // Who may open a grant: a member of the group, proven by their own key, with a reason,
    // for at most max_ttl.
    sc.open("bob", "bob", &reason)
        .expect_error(BREAK_GLASS_REFUSED, &["not a member", "@acme/sre-oncall"]);
    sc.open("alice", "bob", &reason)
        .expect_error(BREAK_GLASS_REFUSED, &["not registered for alice"]);
    sc.open("mallory", "bob", &reason)
        .expect_error(BREAK_GLASS_REFUSED, &["`mallory` is not registered"]);
    sc.open("alice", "alice", &[])
        .expect_error(Exit::USAGE, &["--reason is required"]);
    sc.open("alice", "alice", &["--reason", "x", "--ttl", "3h"])
        .expect_error(Exit::USAGE, &["exceeds the configured maximum"]);
    sc.open("alice", "alice", &["--reason", "x", "--ttl", "soon"])
        .expect_error(Exit::USAGE, &["--ttl"]);
    let listed = sc.json(&["break-glass", "list", "--json"]);
    assert_eq!(
        listed["grants"],
        serde_json::json!([]),
        "refusals wrote nothing"
    );

    let opened = sc.open(
        "alice",
        "alice",
        &[&reason[..], &["--format", "json"]].concat(),
    );
    opened.expect_code(Exit::OK);
    let grant = opened.json()["grant"]["id"].as_str().unwrap().to_string();
    assert!(grant.starts_with("bg-"), "{grant}");

    // Without the grant the gate still wants approvals.
    sc.apply(&change, &[])
        .expect_error(APPLY_REFUSED, &["approvals missing"]);
    // With it: applied, under the lock (a fencing token), nobody approved.
    let applied = sc.apply(&change, &["--break-glass", &grant, "--format", "json"]);
    applied.expect_code(Exit::OK);
    let report = applied.json();
    let stack = &report["applied"][0];
    assert_eq!(stack["break_glass"]["grant"], grant.as_str(), "{report}");
    assert_eq!(stack["break_glass"]["opened_by"], "alice", "{report}");
    assert_eq!(stack["approved_by"], serde_json::json!([]), "{report}");
    assert!(stack["fencing_token"].as_u64().unwrap() >= 1, "{report}");
    assert!(sc.state_text().contains("\"v1\""), "{}", sc.state_text());
    let locks = sc.json(&["locks", "--format", "json"]);
    assert!(locks["locks"][0]["lock"]["holder"].is_null(), "{locks}");
    // A grant never makes a plan apply twice.
    sc.apply(&change, &["--break-glass", &grant])
        .expect_error(APPLY_REFUSED, &["already applied"]);
    let listed = sc.json(&["break-glass", "list", "--json"]);
    assert_eq!(listed["grants"][0]["uses"], 1, "{listed}");
    assert_eq!(listed["grants"][0]["now"]["state"], "open", "{listed}");

    // The bundle: plan, policy and an apply justified by the grant; the verifier accepts it.
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
    let text = std::fs::read_to_string(&bundle).unwrap();
    sluice()
        .run(&["evidence", "verify", s(&bundle), "--repo", sc.repo.arg()])
        .expect_code(Exit::OK);
    assert!(!text.is_empty());

    // Closing it leaves a backport item.
    sluice()
        .run(&["break-glass", "close", &grant, "--repo", sc.repo.arg()])
        .expect_error(Exit::USAGE, &["--reason is required"]);
    sluice()
        .run(&[
            "break-glass",
            "close",
            &grant,
            "--repo",
            sc.repo.arg(),
            "--reason",
            "mitigated",
        ])
        .expect_code(Exit::OK)
        .stdout_has(&["closed break-glass grant", "backport item open"]);
    let items = sc.json(&["backports", "--json"]);
    assert_eq!(items["backports"][0]["grant"], grant.as_str(), "{items}");
    assert_eq!(items["backports"][0]["unit"], UNIT, "{items}");
    assert_eq!(items["backports"][0]["status"]["status"], "open", "{items}");

    // A closed grant is refused (a new plan, so only the grant stands in the way).
    sc.change("v2");
    let next = sc.record();
    sc.apply(&next, &["--break-glass", &grant])
        .expect_error(APPLY_REFUSED, &["was closed"]);
    assert!(!sc.state_text().contains("\"v2\""));

    // `sluice pr` shows the pending item, flagged: this PR touches its stack.
    let report = sc.pr(&["--format", "json"]).json();
    assert_eq!(report["backports"][0]["grant"], grant.as_str(), "{report}");
    assert_eq!(report["backports"][0]["touched_by_this_change"], true);
    sc.pr(&["--format", "markdown"]).stdout_has(&[
        "Pending backports (1)",
        &grant,
        "this change touches it",
    ]);

    // Resolved only by a merged change of the stack.
    sluice()
        .run(&[
            "backports",
            "resolve",
            &grant,
            "--pr",
            "1",
            "--repo",
            sc.repo.arg(),
        ])
        .expect_error(BREAK_GLASS_REFUSED, &["not merged"]);
    sc.repo.checkout("main");
    sc.repo.git(&["merge", "--no-ff", "-m", "merge pr1", "pr1"]);
    sluice()
        .run(&[
            "backports",
            "resolve",
            &grant,
            "--pr",
            "1",
            "--repo",
            sc.repo.arg(),
        ])
        .expect_code(Exit::OK)
        .stdout_has(&["resolved the backport", UNIT]);
    let items = sc.json(&["backports", "--json"]);
    assert_eq!(items["backports"], serde_json::json!([]), "{items}");
    let all = sc.json(&["backports", "--json", "--all"]);
    assert_eq!(all["backports"][0]["status"]["status"], "resolved", "{all}");
    assert_eq!(all["backports"][0]["status"]["pr"], 1, "{all}");
}

#[test]
fn an_expired_grant_is_refused() {
    let Some(_tf) = sluice_testkit::terraform() else {
        return;
    };
    let sc = scenario();
    sc.change("v1");
    let change = sc.record();
    let opened = sc.open(
        "alice",
        "alice",
        &["--reason", "INC-43", "--ttl", "2s", "--format", "json"],
    );
    opened.expect_code(Exit::OK);
    let grant = opened.json()["grant"]["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(2500));
    sc.apply(&change, &["--break-glass", &grant])
        .expect_error(APPLY_REFUSED, &[&grant, "expired at"]);
    assert!(!sc.state_text().contains("\"v1\""));
    // Recorded as expired; unused, so nothing to backport.
    let listed = sc.json(&["break-glass", "list", "--json"]);
    assert_eq!(listed["grants"][0]["state"]["state"], "expired", "{listed}");
    assert_eq!(listed["grants"][0]["uses"], 0, "{listed}");
    let items = sc.json(&["backports", "--json"]);
    assert_eq!(items["backports"], serde_json::json!([]), "{items}");
    // An unknown grant is a usage error.
    sc.apply(&change, &["--break-glass", "bg-nope"])
        .expect_error(Exit::USAGE, &["bg-nope does not exist"]);
}

#[test]
fn recording_the_merged_change_resolves_the_backport() {
    let Some(_tf) = sluice_testkit::terraform() else {
        return;
    };
    let sc = scenario();
    sc.change("v1");
    let change = sc.record();
    let opened = sc.open(
        "alice",
        "alice",
        &["--reason", "INC-44", "--format", "json"],
    );
    opened.expect_code(Exit::OK);
    let grant = opened.json()["grant"]["id"].as_str().unwrap().to_string();
    sc.apply(&change, &["--break-glass", &grant])
        .expect_code(Exit::OK)
        .stdout_has(&["break-glass grant", &grant]);
    sluice()
        .run(&[
            "break-glass",
            "close",
            &grant,
            "--repo",
            sc.repo.arg(),
            "--reason",
            "done",
        ])
        .expect_code(Exit::OK);
    assert_eq!(
        sc.json(&["backports", "--json"])["backports"][0]["grant"],
        grant.as_str()
    );
    // The PR merged; the run on the default branch records its change of the stack.
    sc.repo.checkout("main");
    sc.repo.git(&["merge", "--no-ff", "-m", "merge pr1", "pr1"]);
    let run = sluice().run(&[
        "pr",
        "--repo",
        sc.repo.arg(),
        "--base",
        "main~1",
        "--head",
        "main",
        "--pr",
        "1",
        "--run-plans",
        "--record",
        "--format",
        "json",
    ]);
    run.stderr_has(&["resolved by merged change", &grant]);
    let items = sc.json(&["backports", "--json"]);
    assert_eq!(items["backports"], serde_json::json!([]), "{items}");
}
