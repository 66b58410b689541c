//! `sluice serve` publishing to a mock GitHub (wiremock, named as the test double it is): a
//! signed `pull_request` delivery runs the pipeline, whose completion enqueues a publish job;
//! that job creates the `sluice` check run on the head commit and the PR report comment, as the
//! GitHub App through an installation token. A GitHub failure fails the attempt and the queue
//! retries it; nothing is re-run.

mod common;

use std::time::Duration;

use common::{Server, app_key_pem, config, key_file, org_with_pushes, pr_payload};
use serde_json::{Value, json};
use sluice_store::{ChangeStore as _, JobState};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REPO: &str = "Codertocat/Hello-World";
const INSTALLATION: u64 = 42;

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

/// A corpus `issue_comment` delivery rewritten as `login`'s comment `body` on PR 7, through the
/// App's installation.
fn command_payload(login: &str, body: &str) -> Option<Vec<u8>> {
    let root = sluice_testkit::corpus("github-webhooks/payload-examples/api.github.com")?;
    let file = root.join("issue_comment/created.payload.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    v["issue"]["number"] = 7.into();
    v["issue"]["pull_request"] =
        json!({"url": format!("https://api.github.com/repos/{REPO}/pulls/7")});
    v["comment"]["body"] = body.into();
    v["comment"]["user"]["login"] = login.into();
    v["installation"] = json!({"id": INSTALLATION});
    Some(serde_json::to_vec(&v).unwrap())
}

/// GitHub's "get repository permissions for a user" for `login`, answering `permission`.
async fn mock_permission(gh: &MockServer, login: &str, permission: &str) {
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/{REPO}/collaborators/{login}/permission"
        )))
        .and(header(
            "authorization",
            "Bearer ghs_test_installation_token",
        ))
        .and(header("x-github-api-version", "2022-11-28"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "permission": permission, "role_name": permission,
            "user": {"login": login, "type": "User"}
        })))
        .mount(gh)
        .await;
}

/// Every request the mock received, as `METHOD /path`.
async fn calls(gh: &MockServer) -> Vec<String> {
    gh.received_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect()
}

async fn events_of(server: &Server, kind: &str) -> Vec<Value> {
    use sluice_store::ChangeStore as _;
    server
        .app
        .store
        .events(None, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.payload)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comment_commands_need_write_permission_checked_with_github() {
    let (repo, _, _) = org_with_pushes(1);
    let Some(refused) = command_payload("mallory", "sluice plan") else {
        return;
    };
    let gh = mock_github(false).await;
    mock_permission(&gh, "mallory", "read").await;
    mock_permission(&gh, "alice", "write").await;
    let server = server_with_github(repo.path(), &gh).await;
    let comments = format!("/repos/{REPO}/issues/7/comments");
    let mallory_permission = format!("GET /repos/{REPO}/collaborators/mallory/permission");
    let alice_permission = format!("GET /repos/{REPO}/collaborators/alice/permission");

    // A reader's `sluice plan`: GitHub is asked, the reply says why it is refused.
    let (status, answer) = server.signed("issue_comment", "c-1", &refused).await;
    assert_eq!(status, 202, "{answer}");
    wait_until_drained(&server).await;
    assert_eq!(
        calls(&gh).await,
        [
            format!("POST /app/installations/{INSTALLATION}/access_tokens"),
            mallory_permission.clone(),
            format!("POST {comments}"),
        ]
    );
    let replies = received(&gh, "POST", &comments).await;
    let reply = replies[0]["body"].as_str().unwrap();
    assert!(reply.starts_with("> sluice plan\n\n"), "{reply}");
    assert!(
        reply.contains("@mallory has `read` permission on this repository"),
        "{reply}"
    );
    let refusals = events_of(&server, "command.refused").await;
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0]["permission"], "read");

    // `sluice help` and an unknown command need no permission: no permission call.
    for (i, body) in ["sluice help", "sluice destroy"].iter().enumerate() {
        let payload = command_payload("mallory", body).unwrap();
        let (status, _) = server
            .signed("issue_comment", &format!("c-help-{i}"), &payload)
            .await;
        assert_eq!(status, 202);
    }
    wait_until_drained(&server).await;
    let after_help = calls(&gh).await;
    assert_eq!(
        after_help
            .iter()
            .filter(|c| **c == mallory_permission)
            .count(),
        1,
        "{after_help:?}"
    );
    let replies = received(&gh, "POST", &comments).await;
    assert_eq!(replies.len(), 3);
    for r in &replies[1..] {
        assert!(
            r["body"].as_str().unwrap().contains("sluice unlock UNIT"),
            "{r}"
        );
    }
    assert!(
        replies[2]["body"]
            .as_str()
            .unwrap()
            .contains("unknown command `destroy`")
    );

    // A writer's `sluice unlock`: checked, then answered.
    let allowed = command_payload("alice", "sluice unlock prod/net").unwrap();
    let (status, _) = server.signed("issue_comment", "c-2", &allowed).await;
    assert_eq!(status, 202);
    wait_until_drained(&server).await;
    let all = calls(&gh).await;
    assert_eq!(
        all.iter().filter(|c| **c == alice_permission).count(),
        1,
        "{all:?}"
    );
    let replies = received(&gh, "POST", &comments).await;
    let reply = replies.last().unwrap()["body"].as_str().unwrap();
    assert!(reply.starts_with("> sluice unlock prod/net"), "{reply}");
    assert!(!reply.contains("permission on this repository"), "{reply}");
    let answered = events_of(&server, "command.answered").await;
    assert_eq!(answered.len(), 3, "{answered:?}");
    assert_eq!(answered[2]["permission"], "write");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_github_app_commands_are_refused_and_help_is_answered() {
    let (repo, _, _) = org_with_pushes(1);
    let Some(plan) = command_payload("alice", "sluice apply") else {
        return;
    };
    let server = Server::start(repo.path(), 1).await;
    let (status, _) = server.signed("issue_comment", "n-1", &plan).await;
    assert_eq!(status, 202);
    let help = command_payload("alice", "sluice help").unwrap();
    let (status, _) = server.signed("issue_comment", "n-2", &help).await;
    assert_eq!(status, 202);
    wait_until_drained(&server).await;
    let refused = events_of(&server, "command.refused").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["permission"], "unverifiable");
    assert!(
        refused[0]["reply"]
            .as_str()
            .unwrap()
            .contains("no GitHub App configured"),
        "{refused:?}"
    );
    let answered = events_of(&server, "command.answered").await;
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert!(answered[0]["permission"].is_null());
    server.stop().await;
}

const APP: &str = "gitops/clusters/dev-eu/apps/guestbook";

/// An apps-only org whose every change needs an approval from `@acme/platform` (the built-in
/// Kubernetes rules, which deny the fixture's untagged images, off): the guestbook
/// (kubeconform's fixture, read from the corpus) on `main`, and a PR branch of `n` successive
/// replica bumps. Returns the repository, the base and the heads.
fn guestbook_org(n: usize) -> Option<(sluice_testkit::Repo, String, Vec<String>)> {
    let fixture = sluice_testkit::corpus("k8s/kubeconform-fixtures/fixtures/multi_valid.yaml")?;
    let manifests = std::fs::read_to_string(fixture).unwrap();
    assert!(manifests.contains("replicas: 1"));
    let repo = sluice_testkit::Repo::new();
    repo.write(
        "sluice.yaml",
        "version: 1\norg: test\nenvironments:\n  dev: { order: 1 }\napps:\n  root: gitops/clusters\n  layout: \"{cluster}/apps/{app}\"\n  clusters: { dev-eu: dev }\napprovals:\n  R1: [\"@acme/platform\"]\npolicy:\n  builtin:\n    disable: [k8s-image-digest, k8s-resources, k8s-probes, k8s-network-policy, k8s-privileged, k8s-host-path, k8s-loadbalancer, k8s-plaintext-secret]\n",
    );
    repo.write(&format!("{APP}/guestbook.yaml"), &manifests);
    let base = repo.commit("guestbook");
    repo.checkout_new("pr");
    let heads = (0..n)
        .map(|i| {
            repo.write(
                &format!("{APP}/guestbook.yaml"),
                manifests.replacen("replicas: 1", &format!("replicas: {}", i + 2), 1),
            );
            repo.commit(&format!("bump {i}"))
        })
        .collect();
    Some((repo, base, heads))
}

/// A corpus `pull_request_review` delivery rewritten: `action` by `reviewer` on `commit` of PR 7
/// (authored by `Codertocat`), review `id`, through the App's installation.
fn review_payload(action: &str, id: u64, reviewer: &str, commit: &str, head: &str) -> Vec<u8> {
    let root = sluice_testkit::corpus("github-webhooks/payload-examples/api.github.com").unwrap();
    let file = root.join(format!("pull_request_review/{action}.payload.json"));
    let mut v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    v["pull_request"]["number"] = 7.into();
    v["pull_request"]["user"]["login"] = "Codertocat".into();
    v["pull_request"]["head"]["sha"] = head.into();
    v["review"]["id"] = id.into();
    v["review"]["user"]["login"] = reviewer.into();
    v["review"]["commit_id"] = commit.into();
    v["review"]["state"] = if action == "dismissed" {
        "dismissed"
    } else {
        "approved"
    }
    .into();
    v["installation"] = json!({"id": INSTALLATION});
    serde_json::to_vec(&v).unwrap()
}

/// GitHub's "get team membership for a user": `login` is an active member of `@acme/platform`.
async fn mock_team_member(gh: &MockServer, login: &str) {
    Mock::given(method("GET"))
        .and(path(format!(
            "/orgs/acme/teams/platform/memberships/{login}"
        )))
        .and(header(
            "authorization",
            "Bearer ghs_test_installation_token",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "url": format!("https://api.github.com/teams/1/memberships/{login}"),
            "role": "member", "state": "active"
        })))
        .mount(gh)
        .await;
}

/// The approval records of `change` in the server's index: (approver, state, groups).
async fn approvals_of(server: &Server, change: &str) -> Vec<(String, String, Value)> {
    use sluice_store::ReleaseStore as _;
    server
        .app
        .store
        .approvals(change)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let a = &r.body["approval"];
            (
                r.approver,
                a["state"].as_str().unwrap().to_string(),
                a["groups"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_become_approvals_bound_to_the_reviewed_commit() {
    use sluice_store::ChangeStore as _;
    let Some((repo, base, heads)) = guestbook_org(2) else {
        return;
    };
    let mut open: Value =
        serde_json::from_slice(&pr_payload("opened", 7, &base, &heads[0]).unwrap()).unwrap();
    open["installation"]["id"] = INSTALLATION.into();
    let gh = mock_github(false).await;
    mock_team_member(&gh, "alice").await;
    let server = server_with_github(repo.path(), &gh).await;
    let (status, answer) = server
        .signed(
            "pull_request",
            "r-open",
            &serde_json::to_vec(&open).unwrap(),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    wait_until_drained(&server).await;
    let changes = server.app.store.changes(10).await.unwrap();
    assert_eq!(changes.len(), 1, "one app change");
    let first = changes[0].change_id.clone();
    let checks = received(&gh, "POST", &format!("/repos/{REPO}/check-runs")).await;
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["conclusion"], "action_required", "{}", checks[0]);

    // The author's own approving review is refused: nothing recorded.
    let own = review_payload("submitted", 100, "Codertocat", &heads[0], &heads[0]);
    assert_eq!(
        server.signed("pull_request_review", "r-own", &own).await.0,
        202
    );
    wait_until_drained(&server).await;
    assert_eq!(events_of(&server, "review.refused").await.len(), 1);
    assert!(approvals_of(&server, &first).await.is_empty());

    // alice (in @acme/platform, asked of GitHub) approves the head: a signed approval, bound
    // to that commit, counting for the team; the check run is published again, now met.
    let approve = review_payload("submitted", 101, "alice", &heads[0], &heads[0]);
    assert_eq!(
        server
            .signed("pull_request_review", "r-1", &approve)
            .await
            .0,
        202
    );
    wait_until_drained(&server).await;
    let all = calls(&gh).await;
    assert!(
        all.contains(&"GET /orgs/acme/teams/platform/memberships/alice".to_string()),
        "{all:?}\n{:?}\n{:?}",
        events_of(&server, "review.recorded").await,
        server
            .app
            .store
            .stage_results(&first)
            .await
            .unwrap()
            .iter()
            .map(|s| (s.stage.clone(), s.detail["details"].clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        approvals_of(&server, &first).await,
        [(
            "github:alice".to_string(),
            "given".to_string(),
            json!(["@acme/platform"])
        )]
    );
    let stages = server.app.store.stage_results(&first).await.unwrap();
    let approve_stage = stages.iter().rev().find(|s| s.stage == "approve").unwrap();
    let details = &approve_stage.detail["details"];
    assert_eq!(details["source"], "github_review");
    assert_eq!(details["approval"]["binding"]["commit"], heads[0].as_str());
    assert_eq!(details["approval"]["approver"], "github:alice");
    let checks = received(&gh, "POST", &format!("/repos/{REPO}/check-runs")).await;
    assert_eq!(checks.len(), 2, "published again after the approval");
    let summary = checks[1]["output"]["summary"].as_str().unwrap();
    assert!(summary.contains("met by github:alice"), "{summary}");
    assert_eq!(checks[1]["conclusion"], "success", "{}", checks[1]);

    // Dismissed: the approval is void, and the check asks for action again.
    let dismiss = review_payload("dismissed", 101, "alice", &heads[0], &heads[0]);
    assert_eq!(
        server
            .signed("pull_request_review", "r-2", &dismiss)
            .await
            .0,
        202
    );
    wait_until_drained(&server).await;
    let states: Vec<String> = approvals_of(&server, &first)
        .await
        .into_iter()
        .map(|a| a.1)
        .collect();
    assert_eq!(states, ["given", "dismissed"]);
    let checks = received(&gh, "POST", &format!("/repos/{REPO}/check-runs")).await;
    assert_eq!(checks.len(), 3);
    assert_eq!(checks[2]["conclusion"], "action_required", "{}", checks[2]);
    let summary = checks[2]["output"]["summary"].as_str().unwrap();
    assert!(summary.contains("the approval was dismissed"), "{summary}");

    // alice approves the first head again, then a push: her approval binds to the commit she
    // reviewed, never to the new head's change.
    let again = review_payload("submitted", 102, "alice", &heads[0], &heads[0]);
    assert_eq!(
        server.signed("pull_request_review", "r-3", &again).await.0,
        202
    );
    let mut push: Value =
        serde_json::from_slice(&pr_payload("synchronize", 7, &base, &heads[1]).unwrap()).unwrap();
    push["installation"]["id"] = INSTALLATION.into();
    let (status, _) = server
        .signed(
            "pull_request",
            "r-push",
            &serde_json::to_vec(&push).unwrap(),
        )
        .await;
    assert_eq!(status, 202);
    wait_until_drained(&server).await;
    let changes = server.app.store.changes(10).await.unwrap();
    let second = changes
        .iter()
        .find(|c| c.head == heads[1])
        .unwrap()
        .change_id
        .clone();
    assert!(approvals_of(&server, &second).await.is_empty());
    let stale = review_payload("submitted", 103, "alice", &heads[0], &heads[1]);
    assert_eq!(
        server.signed("pull_request_review", "r-4", &stale).await.0,
        202
    );
    wait_until_drained(&server).await;
    assert!(
        approvals_of(&server, &second).await.is_empty(),
        "a review of the older commit does not approve the new head"
    );
    server.stop().await;
}

/// Now, as the model counts time.
fn now() -> sluice_model::exception::Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    sluice_model::exception::Timestamp::from_unix(d.as_secs() as i64, d.subsec_nanos())
}

/// PR 7 opened and published through the App; the repository, the server and its one change.
async fn published_pr(
    gh: &MockServer,
) -> Option<(sluice_testkit::Repo, Server, sluice_store::ChangeRecord)> {
    let (repo, base, heads) = org_with_pushes(1);
    let mut v: Value = serde_json::from_slice(&pr_payload("opened", 7, &base, &heads[0])?).unwrap();
    v["installation"]["id"] = INSTALLATION.into();
    let server = server_with_github(repo.path(), gh).await;
    let (status, answer) = server
        .signed("pull_request", "open-7", &serde_json::to_vec(&v).unwrap())
        .await;
    assert_eq!(status, 202, "{answer}");
    wait_until_drained(&server).await;
    let change = server.app.store.changes(10).await.unwrap().remove(0);
    Some((repo, server, change))
}

/// Waits (bounded) for an event of `kind`, then for the queue to drain.
async fn until_event(server: &Server, kind: &str) -> Vec<Value> {
    let start = std::time::Instant::now();
    loop {
        let found = events_of(server, kind).await;
        if !found.is_empty() {
            wait_until_drained(server).await;
            return events_of(server, kind).await;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no {kind} event within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_fails_the_check_run_and_tells_the_pr_once() {
    use sluice_model::apply::{
        ApplyErrorClass, Degradation, EngineReport, ResourcesChanged, StackHealth,
    };
    use sluice_model::lock::Acquired;
    use sluice_store::{LockStore as _, ReleaseStore as _};
    let gh = mock_github(false).await;
    let Some((_repo, server, change)) = published_pr(&gh).await else {
        return;
    };
    let store = &server.app.store;
    // What `sluice apply` leaves after the engine failed: the lock kept, the stack degraded.
    let owner = sluice_release::lock_owner(&change);
    let Ok(Acquired::Granted { token, .. }) = store
        .acquire(&change.unit, &owner, now(), Duration::from_secs(600))
        .await
        .unwrap()
    else {
        panic!("the lock is free")
    };
    store
        .begin_apply(&change.unit, token, now())
        .await
        .unwrap()
        .unwrap();
    sluice_store::LockStore::fail(store, &change.unit, token, now())
        .await
        .unwrap()
        .unwrap();
    let degradation = Degradation::new(
        change.change_id.clone(),
        token,
        now(),
        EngineReport {
            changed: ResourcesChanged::Unknown,
            error: ApplyErrorClass::Provider,
            output: "Error: creating bucket: password=hunter2-canary AccessDenied".into(),
        },
        &sluice_model::redact::RedactionRules::default(),
    );
    store
        .set_health(&change.unit, &StackHealth::Degraded { degradation })
        .await
        .unwrap();

    let published = until_event(&server, "notice.degraded_published").await;
    assert_eq!(published.len(), 1, "{published:?}");
    let checks = received(&gh, "POST", &format!("/repos/{REPO}/check-runs")).await;
    assert_eq!(
        checks.len(),
        2,
        "the report's, then the failure: {checks:?}"
    );
    let failed = &checks[1];
    assert_eq!(failed["conclusion"], "failure", "{failed}");
    assert_eq!(failed["head_sha"], change.head.as_str());
    assert_eq!(failed["external_id"], change.change_id.as_str());
    let title = failed["output"]["title"].as_str().unwrap();
    assert!(
        title.contains(&format!("{} is degraded", change.unit)),
        "{title}"
    );
    let summary = failed["output"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("`provider`") && summary.contains("sluice recover"),
        "{summary}"
    );
    assert!(!summary.contains("hunter2-canary"), "{summary}");
    let comments = received(&gh, "POST", &format!("/repos/{REPO}/issues/7/comments")).await;
    let told: Vec<&Value> = comments
        .iter()
        .filter(|c| c["body"].as_str().unwrap().contains("is degraded"))
        .collect();
    assert_eq!(told.len(), 1, "{comments:?}");
    assert!(!told[0]["body"].as_str().unwrap().contains("hunter2-canary"));

    // Later sweeps find the notice recorded: nothing is sent again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    wait_until_drained(&server).await;
    assert_eq!(
        received(&gh, "POST", &format!("/repos/{REPO}/check-runs"))
            .await
            .len(),
        2
    );
    assert_eq!(
        events_of(&server, "notice.degraded_published").await.len(),
        1
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_apply_is_found_by_the_server_and_told_to_the_pr() {
    use sluice_model::lock::Acquired;
    use sluice_store::{LockStore as _, ReleaseStore as _};
    let gh = mock_github(false).await;
    let Some((_repo, server, change)) = published_pr(&gh).await else {
        return;
    };
    let store = &server.app.store;
    // An applier that started and died: its lease runs out with nobody renewing it.
    let owner = sluice_release::lock_owner(&change);
    let Ok(Acquired::Granted { token, .. }) = store
        .acquire(&change.unit, &owner, now(), Duration::from_millis(300))
        .await
        .unwrap()
    else {
        panic!("the lock is free")
    };
    store
        .begin_apply(&change.unit, token, now())
        .await
        .unwrap()
        .unwrap();

    until_event(&server, "notice.degraded_published").await;
    let health = serde_json::to_value(store.health(&change.unit).await.unwrap()).unwrap();
    assert_eq!(health["health"], "degraded", "{health}");
    assert_eq!(health["degradation"]["error"], "killed", "{health}");
    let checks = received(&gh, "POST", &format!("/repos/{REPO}/check-runs")).await;
    let last = checks.last().unwrap();
    assert_eq!(last["conclusion"], "failure", "{last}");
    assert!(
        last["output"]["summary"]
            .as_str()
            .unwrap()
            .contains("was interrupted"),
        "{last}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backport_item_is_told_on_the_pr_that_used_the_grant_then_marked_resolved() {
    use sluice_model::breakglass::{self, BackportStatus, BreakGlassConfig, OpenRequest};
    use sluice_store::{BreakGlassStore as _, EventRecord};
    let gh = mock_github(false).await;
    let Some((_repo, server, change)) = published_pr(&gh).await else {
        return;
    };
    let store = &server.app.store;
    let key = sluice_release::breakglass::event_key("bg-7");
    let ev = |kind: &str, payload: Value| EventRecord::new(&key, kind, payload);
    let grant = breakglass::open(
        &BreakGlassConfig {
            group: "@acme/sre".into(),
            max_ttl_secs: 3600,
        },
        &OpenRequest {
            requester: "carol".into(),
            requester_groups: vec!["@acme/sre".into()],
            unit: change.unit.clone(),
            reason: "INC-7 outage".into(),
            ttl_secs: 600,
        },
        "bg-7".into(),
        now(),
    )
    .unwrap();
    store
        .open_grant(&grant, &ev("breakglass.opened", json!({})))
        .await
        .unwrap();
    // PR 7's change applied under the grant, then the grant was closed: an open item.
    let mut used = grant.clone();
    used.use_for(&grant.unit, true, now()).unwrap();
    assert!(
        store
            .update_grant(
                &grant,
                &used,
                None,
                &ev("breakglass.used", json!({"change_id": change.change_id}))
            )
            .await
            .unwrap()
    );
    let mut closed = used.clone();
    let item = closed.close("carol", now()).unwrap();
    assert!(
        store
            .update_grant(
                &used,
                &closed,
                Some(&item),
                &ev("breakglass.closed", json!({}))
            )
            .await
            .unwrap()
    );

    until_event(&server, "notice.backport_published").await;
    let backport_comments = || async {
        received(&gh, "POST", &format!("/repos/{REPO}/issues/7/comments"))
            .await
            .into_iter()
            .filter_map(|c| c["body"].as_str().map(str::to_string))
            .filter(|b| b.contains("Backport"))
            .collect::<Vec<String>>()
    };
    let told = backport_comments().await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains("Backport needed")
            && told[0].contains("bg-7")
            && told[0].contains("INC-7"),
        "{}",
        told[0]
    );

    // A merged PR brought Git back in line: the item's comment says so, once.
    let mut resolved = item.clone();
    resolved.status = BackportStatus::Resolved {
        pr: 9,
        commit: "c0ffee".into(),
    };
    assert!(
        store
            .resolve_backport(&resolved, &ev("backport.resolved", json!({})))
            .await
            .unwrap()
    );
    let start = std::time::Instant::now();
    while events_of(&server, "notice.backport_published").await.len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(30), "never resolved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    wait_until_drained(&server).await;
    let told = backport_comments().await;
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(
        told[1].contains("Backport resolved") && told[1].contains("PR #9"),
        "{}",
        told[1]
    );
    server.stop().await;
}
