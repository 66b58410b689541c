//! A GitHub review recorded through `sluice serve` counts at `sluice apply` (issue 11 item 1):
//! the server (a process, on the repository's SQLite store, with its evidence key) runs the PR
//! pipeline; CI (`sluice pr --run-plans --record`, the real Terraform, the same store and key)
//! records the plan; an approving review by alice arrives as a signed delivery and the server
//! records it as an approval signed with its evidence key; `sluice pr` shows the requirement
//! met by `github:alice`; the review is dismissed and `sluice apply` refuses, nothing applied;
//! alice approves again and `sluice apply` applies exactly the recorded plan, naming her.
//!
//! Skipped with a notice without `terraform` or the corpus (failures under
//! `SLUICE_REQUIRE_TERRAFORM=1` / `SLUICE_REQUIRE_CORPUS=1`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_store::JobQueue as _;
use sluice_testkit::{
    Author, Exit, Repo, Served, local_state_stack, org_repo, s, serve_command, sluice_yaml,
    start_serve,
};

const SECRET: &str = "review-apply-secret";
const STACK_DIR: &str = "live/dev/eu-west-1/app";
const APPLY_REFUSED: Exit = Exit(8);
const BOB: Author<'static> = Author {
    name: "Bob",
    email: "bob@acme.example",
};

/// `sluice serve` on `repo` (its store in `repo/.sluice`), signing with `key`.
fn serve(repo: &Path, key: &Path, logs: &Path) -> Served {
    let mut cmd = serve_command(repo, 1, SECRET);
    cmd.arg("--evidence-key").arg(key);
    start_serve(cmd, logs)
}

/// A corpus delivery of `event/action` rewritten by `edit`.
fn delivery(event: &str, action: &str, edit: impl FnOnce(&mut Value)) -> Option<Vec<u8>> {
    let root = sluice_testkit::corpus("github-webhooks/payload-examples/api.github.com")?;
    let file = root.join(format!("{event}/{action}.payload.json"));
    let mut v: Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    edit(&mut v);
    Some(serde_json::to_vec(&v).unwrap())
}

/// A review of PR 7 (authored by Codertocat) by `reviewer` on `commit`.
fn review(action: &str, id: u64, reviewer: &str, commit: &str) -> Vec<u8> {
    delivery("pull_request_review", action, |v| {
        v["pull_request"]["number"] = 7.into();
        v["pull_request"]["user"]["login"] = "Codertocat".into();
        v["pull_request"]["head"]["sha"] = commit.into();
        v["review"]["id"] = id.into();
        v["review"]["user"]["login"] = reviewer.into();
        v["review"]["commit_id"] = commit.into();
        v["review"]["state"] = if action == "dismissed" {
            "dismissed"
        } else {
            "approved"
        }
        .into();
    })
    .expect("the corpus has review deliveries")
}

struct Scene {
    repo: Repo,
    state: tempfile::TempDir,
    key: PathBuf,
    base_url: String,
    client: reqwest::Client,
    store: sluice_store::AnyStore,
}

impl Scene {
    fn sluice(&self) -> sluice_testkit::Sluice {
        sluice_testkit::terraform_sluice().env("SLUICE_EVIDENCE_KEY", self.key.as_os_str())
    }

    async fn deliver(&self, event: &str, id: &str, body: &[u8]) {
        let sig = sluice_vcs::WebhookSecret::new(SECRET).unwrap().sign(body);
        let resp = self
            .client
            .post(format!("{}/webhooks/github", self.base_url))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", sig)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            202,
            "{}",
            resp.text().await.unwrap()
        );
        self.drained().await;
    }

    /// Waits (bounded) until the server's queue is empty.
    async fn drained(&self) {
        let start = Instant::now();
        loop {
            let d = self.store.queue_depth().await.unwrap();
            if d.queued == 0 && d.running == 0 {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{d:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn apply(&self, change: &str, extra: &[&str]) -> sluice_testkit::Run {
        let mut args = vec!["apply", change, "--repo", self.repo.arg()];
        args.extend_from_slice(extra);
        self.sluice().run(&args)
    }

    fn state_text(&self) -> String {
        std::fs::read_to_string(self.state.path().join("terraform.tfstate")).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_recorded_by_the_server_counts_at_apply_and_its_dismissal_voids_it() {
    let Some(_tf) = sluice_testkit::terraform() else {
        return;
    };
    if sluice_testkit::corpus("github-webhooks").is_none() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("evidence.pem");
    std::fs::write(
        &key,
        sluice_evidence::keys::EvidenceKey::from_seed(&[42; 32])
            .to_pkcs8_pem()
            .as_bytes(),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let repo = org_repo();
    // One requirement, met by the reviewer personally (CODEOWNERS-style `@login`): this server
    // has no GitHub App to ask for team membership.
    repo.write(
        "sluice.yaml",
        format!(
            "{}plan:\n  engine: terraform\napprovals:\n  R1: [\"@alice\"]\n",
            sluice_yaml("")
        ),
    );
    repo.write(
        &format!("{STACK_DIR}/main.tf"),
        local_state_stack(state.path(), ""),
    );
    let base = repo.commit("base");
    repo.git(&["branch", "-M", "main"]);
    repo.checkout_new("pr1");
    repo.write(
        &format!("{STACK_DIR}/main.tf"),
        local_state_stack(
            state.path(),
            "resource \"terraform_data\" \"app\" {\n  input = \"reviewed\"\n}\n",
        ),
    );
    let head = repo.commit_as(BOB, "app reviewed");

    let logs = repo.path().join("serve.log");
    let served = serve(repo.path(), &key, &logs);
    let base_url = served.base.clone();
    let store = sluice_store::open(s(&repo.path().join(".sluice/sluice.db")))
        .await
        .unwrap();
    let scene = Scene {
        repo,
        state,
        key,
        base_url,
        client: reqwest::Client::new(),
        store,
    };

    // The PR opened: the server's pipeline; then CI records the plan in the same store.
    let opened = delivery("pull_request", "opened", |v| {
        v["number"] = 7.into();
        v["pull_request"]["number"] = 7.into();
        v["pull_request"]["head"]["sha"] = head.as_str().into();
        v["pull_request"]["base"]["sha"] = base.as_str().into();
    })
    .unwrap();
    scene.deliver("pull_request", "d-open", &opened).await;
    let recorded = scene.sluice().run(&[
        "pr",
        "--repo",
        scene.repo.arg(),
        "--base",
        "main",
        "--head",
        "pr1",
        "--pr",
        "7",
        "--run-plans",
        "--record",
        "--format",
        "json",
    ]);
    let report = recorded.json();
    let change = report["changes"][0]["change_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no change: {}", recorded.all_output()))
        .to_string();
    scene
        .apply(&change, &[])
        .expect_error(APPLY_REFUSED, &["approvals missing"]);

    // alice approves on GitHub: the server records it, signed with its evidence key.
    scene
        .deliver(
            "pull_request_review",
            "d-r1",
            &review("submitted", 101, "alice", &head),
        )
        .await;
    let status = scene.sluice().run(&[
        "pr",
        "--repo",
        scene.repo.arg(),
        "--base",
        "main",
        "--head",
        "pr1",
        "--pr",
        "7",
        "--run-plans",
        "--format",
        "json",
    ]);
    let shown = status.json();
    let approval = &shown["stacks"][0]["approval_status"];
    assert_eq!(approval["all_met"], true, "{}", status.all_output());
    assert_eq!(
        approval["requirements"][0]["by"][0]["person"], "github:alice",
        "{approval}"
    );

    // Dismissed: the approval is void; apply refuses and applies nothing.
    scene
        .deliver(
            "pull_request_review",
            "d-r2",
            &review("dismissed", 101, "alice", &head),
        )
        .await;
    scene
        .apply(&change, &[])
        .expect_error(APPLY_REFUSED, &["approvals missing"]);
    assert!(
        !scene.state_text().contains("reviewed"),
        "{}",
        scene.state_text()
    );

    // Approved again in a new review: applied, exactly the recorded plan, naming her.
    scene
        .deliver(
            "pull_request_review",
            "d-r3",
            &review("submitted", 102, "alice", &head),
        )
        .await;
    let applied = scene.apply(&change, &["--format", "json"]);
    applied.expect_code(Exit::OK);
    let done = applied.json();
    assert_eq!(
        done["applied"][0]["approved_by"],
        serde_json::json!(["github:alice"]),
        "{done}"
    );
    assert!(
        scene.state_text().contains("reviewed"),
        "{}",
        scene.state_text()
    );

    // Signed by a key the apply does not trust (another evidence key): left out.
    let stranger = tempfile::tempdir().unwrap();
    let other = stranger.path().join("other.pem");
    std::fs::write(
        &other,
        sluice_evidence::keys::EvidenceKey::from_seed(&[7; 32])
            .to_pkcs8_pem()
            .as_bytes(),
    )
    .unwrap();
    let foreign = sluice_testkit::terraform_sluice()
        .env("SLUICE_EVIDENCE_KEY", other.as_os_str())
        .run(&[
            "pr",
            "--repo",
            scene.repo.arg(),
            "--base",
            "main",
            "--head",
            "pr1",
            "--pr",
            "7",
            "--run-plans",
            "--format",
            "json",
        ]);
    let seen = foreign.json();
    assert_eq!(
        seen["stacks"][0]["approval_status"]["all_met"],
        false,
        "{}",
        foreign.all_output()
    );
    assert!(
        foreign.all_output().contains("left out"),
        "{}",
        foreign.all_output()
    );
}
