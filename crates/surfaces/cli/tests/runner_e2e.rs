//! `sluice runner` as a process against `sluice serve` as a process: a signed `pull_request`
//! delivery queues a plan job (`server.runners: true`), `sluice runner --once` plans the
//! `terraform_data` stack with the real Terraform and uploads it, and the change's plan stage is
//! `passed` in the API. A runner without a credential exits 2; one whose token the server
//! refuses (a `read` token) exits 12. Skipped without terraform (a failure with
//! `SLUICE_REQUIRE_TERRAFORM=1`).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_testkit::{Served, serve_command, start_serve, token_create};

const SECRET: &str = "runner-test-secret";
const STACK: &str = "live/dev/eu-west-1/data";

fn serve(repo: &Path, logs: &Path) -> Served {
    start_serve(serve_command(repo, 1, SECRET), logs)
}

fn token(repo: &Path, scope: &str) -> String {
    token_create(repo, &["--scope", scope])
}

fn runner(base: &str, args: &[&str], work: &Path) -> Output {
    Command::new(sluice_testkit::sluice_bin())
        .args([
            "runner",
            "--server",
            base,
            "--once",
            "--poll-ms",
            "100",
            "--work-dir",
        ])
        .arg(work)
        .args(args)
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("CHECKPOINT_DISABLE", "1")
        .env_remove("TF_PLUGIN_CACHE_DIR")
        .output()
        .unwrap()
}

/// The plan jobs in `state`, as the API lists them.
async fn plan_jobs(http: &reqwest::Client, base: &str, reader: &str, state: &str) -> Vec<Value> {
    let v: Value = http
        .get(format!("{base}/api/v1/jobs?state={state}"))
        .bearer_auth(reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "runner.plan")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_runner_plans_what_sluice_serve_queued() {
    if sluice_testkit::terraform().is_none() {
        return;
    }
    let repo = sluice_testkit::Repo::new();
    repo.write(
        "sluice.yaml",
        "version: 1\norg: test\nenvironments:\n  dev: { order: 1 }\nstacks:\n  root: live\n  layout: \"{env}/{region}/{stack}\"\nplan:\n  engine: terraform\nserver:\n  runners: true\n",
    );
    repo.write(&format!("{STACK}/main.tf"), "# empty\n");
    let base = repo.commit("base");
    repo.write(
        &format!("{STACK}/main.tf"),
        "resource \"terraform_data\" \"db\" {\n  input = { name = \"payments\" }\n}\n",
    );
    let head = repo.commit("change");
    let dir = tempfile::tempdir().unwrap();
    let server = serve(repo.path(), &dir.path().join("serve.log"));
    let reader = token(repo.path(), "read");
    let runner_token = dir.path().join("runner.token");
    std::fs::write(&runner_token, token(repo.path(), "runner")).unwrap();
    let read_token = dir.path().join("read.token");
    std::fs::write(&read_token, &reader).unwrap();

    let http = reqwest::Client::new();
    let body = serde_json::to_vec(&json!({
        "action": "opened", "number": 7,
        "pull_request": {
            "number": 7, "title": "t", "user": {"login": "dev"}, "draft": false,
            "head": {"ref": "pr-7", "sha": head, "repo": {"full_name": "acme/platform"}},
            "base": {"ref": "main", "sha": base, "repo": {"full_name": "acme/platform"}}
        },
        "repository": {"full_name": "acme/platform", "default_branch": "main"},
        "sender": {"login": "dev"}
    }))
    .unwrap();
    let resp = http
        .post(format!("{}/webhooks/github", server.base))
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "runner-e2e-1")
        .header(
            "x-hub-signature-256",
            sluice_vcs::WebhookSecret::new(SECRET).unwrap().sign(&body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    while plan_jobs(&http, &server.base, &reader, "queued")
        .await
        .is_empty()
    {
        assert!(Instant::now() < deadline, "no plan job was queued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let work = dir.path().join("work");
    // Bad input: no credential (2); a token the server refuses (12). Nothing is run.
    let out = runner(&server.base, &[], &work);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = runner(
        &server.base,
        &["--token-file", read_token.to_str().unwrap()],
        &work,
    );
    assert_eq!(
        out.status.code(),
        Some(12),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        plan_jobs(&http, &server.base, &reader, "queued")
            .await
            .len(),
        1
    );

    let out = runner(
        &server.base,
        &["--token-file", runner_token.to_str().unwrap()],
        &work,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 plan(s) uploaded"), "{stdout}");
    assert_eq!(
        plan_jobs(&http, &server.base, &reader, "succeeded")
            .await
            .len(),
        1
    );
    let changes: Value = http
        .get(format!("{}/api/v1/changes", server.base))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plan = changes[0]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|s| s["stage"] == "plan")
        .unwrap()
        .clone();
    assert_eq!(plan["outcome"], "passed", "{changes}");
    assert!(
        plan["detail"]["details"]["plan_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

/// `sluice runner --once` against a server that is not there exits 13 after its bounded tries
/// (5, the pauses doubling from `--poll-ms`), saying why; it used to retry for ever.
#[test]
fn a_one_shot_runner_exits_13_when_the_server_is_unreachable() {
    let port = sluice_testkit::free_port();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "sluice_rt_notused.secret\n").unwrap();
    let mut child = Command::new(sluice_testkit::sluice_bin())
        .args(["runner", "--server"])
        .arg(format!("http://127.0.0.1:{port}"))
        .args(["--once", "--poll-ms", "100", "--token-file"])
        .arg(&token_file)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sluice runner --once was still retrying after 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(13), "{stderr}");
    assert!(
        stderr.contains("did not answer the runner's claim in 5 tries"),
        "{stderr}"
    );
}
