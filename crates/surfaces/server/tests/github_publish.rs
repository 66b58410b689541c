//! `sluice serve` publishing to a mock GitHub (wiremock, named as the test double it is): a
//! signed `pull_request` delivery runs the pipeline, whose completion enqueues a publish job;
//! that job creates the `sluice` check run on the head commit and the PR report comment, as the
//! GitHub App through an installation token. A GitHub failure fails the attempt and the queue
//! retries it; nothing is re-run.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use base64::Engine as _;
use common::{Server, config, key_file, org_with_pushes, pr_payload};
use serde_json::{Value, json};
use sluice_store::{ChangeStore as _, JobState};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REPO: &str = "Codertocat/Hello-World";
const INSTALLATION: u64 = 42;

/// A fresh 2048-bit RSA key (PKCS#8 PEM) for the app, made once per test binary.
fn app_key_pem() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = pair.as_der().unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    })
}

/// The GitHub endpoints a publish uses, answering as GitHub's REST documentation says; the
/// first check-run creation fails with 502 when `flaky`.
async fn mock_github(flaky: bool) -> MockServer {
    let gh = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/app/installations/{INSTALLATION}/access_tokens"
        )))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "token": "ghs_test_installation_token",
            "expires_at": "2099-01-01T00:00:00Z"
        })))
        .mount(&gh)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(format!(
            "^/repos/{REPO}/commits/[0-9a-f]{{40}}/check-runs$"
        )))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"total_count": 0, "check_runs": []})),
        )
        .mount(&gh)
        .await;
    if flaky {
        Mock::given(method("POST"))
            .and(path(format!("/repos/{REPO}/check-runs")))
            .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&gh)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(format!("/repos/{REPO}/check-runs")))
        .and(header(
            "authorization",
            "Bearer ghs_test_installation_token",
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 11})))
        .mount(&gh)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/issues/7/comments")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&gh)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/{REPO}/issues/7/comments")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 21})))
        .mount(&gh)
        .await;
    gh
}

async fn server_with_github(repo: &std::path::Path, gh: &MockServer) -> Server {
    let (key_dir, key) = key_file();
    let mut config = config(repo, 1, None, key);
    let mut github = sluice_vcs::GitHubConfig::new(7);
    github.api_url = gh.uri().parse().unwrap();
    // One call per attempt: retrying is the queue's job here.
    github.retry.max_attempts = 1;
    let app_key = sluice_vcs::AppKey::from_pem(app_key_pem().as_bytes()).unwrap();
    config.github = Some((github, app_key));
    Server::start_with(config, key_dir).await
}

/// The requests the mock received with `method` on `path`, bodies as JSON.
async fn received(gh: &MockServer, verb: &str, on: &str) -> Vec<Value> {
    gh.received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == on)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

async fn wait_until_drained(server: &Server) {
    server.drain(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pr_report_is_published_as_a_check_run_and_a_comment() {
    let (repo, base, heads) = org_with_pushes(1);
    let Some(mut body) = pr_payload("opened", 7, &base, &heads[0]) else {
        return;
    };
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["installation"]["id"] = INSTALLATION.into();
    body = serde_json::to_vec(&v).unwrap();
    let gh = mock_github(true).await;
    let server = server_with_github(repo.path(), &gh).await;
    let (status, answer) = server.signed("pull_request", "open-7", &body).await;
    assert_eq!(status, 202, "{answer}");
    wait_until_drained(&server).await;

    let done = server.jobs_in(JobState::Succeeded).await;
    let kinds: Vec<&str> = done.iter().map(|j| j.kind.as_str()).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(
        kinds.contains(&"pr.pipeline") && kinds.contains(&"pr.publish"),
        "{kinds:?}"
    );
    let publish = done.iter().find(|j| j.kind == "pr.publish").unwrap();
    assert_eq!(
        publish.attempts, 2,
        "the 502 failed the first attempt; the queue retried"
    );
    assert_eq!(publish.head_sha.as_deref(), Some(heads[0].as_str()));

    // The check run: on the head, named sluice, concluded from the verdict (plans are not run by
    // the server, so the change waits for action), with the change's correlation id.
    let checks = received(&gh, "POST", &format!("/repos/{REPO}/check-runs")).await;
    assert_eq!(checks.len(), 2, "one failed, one created: {checks:?}");
    let check = &checks[1];
    assert_eq!(check["name"], "sluice");
    assert_eq!(check["head_sha"], heads[0].as_str());
    assert_eq!(check["status"], "completed");
    assert_eq!(check["conclusion"], "action_required", "{check}");
    assert_eq!(
        check["details_url"],
        format!("{}/{REPO}/pull/7", gh.uri()),
        "{check}"
    );
    let changes = server.app.store.changes(10).await.unwrap();
    assert_eq!(check["external_id"], changes[0].change_id.as_str());
    assert!(
        check["output"]["summary"]
            .as_str()
            .unwrap()
            .contains(&heads[0][..7]),
        "{check}"
    );

    // The comment: sluice's marker and the PR report, posted once.
    let comments = received(&gh, "POST", &format!("/repos/{REPO}/issues/7/comments")).await;
    assert_eq!(comments.len(), 1, "{comments:?}");
    let text = comments[0]["body"].as_str().unwrap();
    assert!(text.contains("pr-report"), "the marker: {text}");
    assert!(text.contains("## sluice:"), "the report: {text}");

    // The pipeline ran once: the publish retry did not run it again.
    let pipelines = done.iter().filter(|j| j.kind == "pr.pipeline").count();
    assert_eq!(pipelines, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_github_app_nothing_is_published() {
    let (repo, base, heads) = org_with_pushes(1);
    let Some(body) = pr_payload("opened", 7, &base, &heads[0]) else {
        return;
    };
    let server = Server::start(repo.path(), 1).await;
    let (status, answer) = server.signed("pull_request", "open-7", &body).await;
    assert_eq!(status, 202, "{answer}");
    wait_until_drained(&server).await;
    let done = server.jobs_in(JobState::Succeeded).await;
    let kinds: Vec<&str> = done.iter().map(|j| j.kind.as_str()).collect();
    assert_eq!(kinds, ["pr.pipeline"]);
    server.stop().await;
}
