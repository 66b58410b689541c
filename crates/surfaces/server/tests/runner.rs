//! The runner protocol end to end over real HTTP with the real Terraform: a signed corpus-shaped
//! `pull_request` delivery runs the pipeline, which queues a plan job for the stack; a runner
//! (the same loop `sluice runner` runs) claims it, plans a `terraform_data` stack and uploads
//! the plan; the stack's plan stage is then `passed` with the plan digest in the API and the
//! evidence, the plan is in the plan store, and a GitHub review (a wiremock GitHub, the test
//! double it is) records an approval bound to that digest. Refused: no or a wrong credential
//! (401), a lease the caller does not hold (409), bytes that do not match their digest (400),
//! a superseded job (409), and an OIDC runner the trust policy does not let plan the unit
//! (403, the job given back). Skipped without terraform (a failure with
//! `SLUICE_REQUIRE_TERRAFORM=1`) or the corpus.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Server, app_key_pem, config, key_file, pr_payload};
use serde_json::{Value, json};
use sluice_server::runner_loop::{Credential, RunnerOptions};
use sluice_store::{ChangeStore as _, JobFilter, JobQueue as _, JobState, Scope, TokenStore as _};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REPO: &str = "Codertocat/Hello-World";
const INSTALLATION: u64 = 42;
const STACK: &str = "live/dev/eu-west-1/data";
const UNIT: &str = "dev/eu-west-1/data";

/// The GitHub endpoints publishing and reviews use, as GitHub's REST documentation answers.
async fn mock_github() -> MockServer {
    let gh = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/app/installations/{INSTALLATION}/access_tokens"
        )))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "token": "ghs_test_installation_token", "expires_at": "2099-01-01T00:00:00Z"
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
    Mock::given(method("POST"))
        .and(path(format!("/repos/{REPO}/check-runs")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 11})))
        .mount(&gh)
        .await;
    Mock::given(method("PATCH"))
        .and(path_regex(format!("^/repos/{REPO}/check-runs/[0-9]+$")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 11})))
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
    Mock::given(method("PATCH"))
        .and(path_regex(format!(
            "^/repos/{REPO}/issues/comments/[0-9]+$"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 21})))
        .mount(&gh)
        .await;
    Mock::given(method("GET"))
        .and(path("/orgs/acme/teams/platform/memberships/alice"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "url": "https://api.github.com/teams/1/memberships/alice",
            "role": "member", "state": "active"
        })))
        .mount(&gh)
        .await;
    gh
}

/// An org with one Terraform stack (`terraform_data` only: offline) whose changes need an
/// approval from `@acme/platform`; `main` has it empty, the PR branch `n` successive changes.
fn terraform_org(n: usize) -> (sluice_testkit::Repo, String, Vec<String>) {
    let repo = sluice_testkit::Repo::new();
    repo.write(
        "sluice.yaml",
        "version: 1\norg: test\nenvironments:\n  dev: { order: 1 }\n  prod: { order: 2, protected: true }\nstacks:\n  root: live\n  layout: \"{env}/{region}/{stack}\"\napprovals:\n  R1: [\"@acme/platform\"]\nplan:\n  engine: terraform\n",
    );
    repo.write(&format!("{STACK}/main.tf"), "# empty\n");
    let base = repo.commit("base");
    repo.checkout_new("pr");
    let heads = (0..n)
        .map(|i| {
            repo.write(
                &format!("{STACK}/main.tf"),
                format!(
                    "resource \"terraform_data\" \"db\" {{\n  input = {{ name = \"payments-{i}\" }}\n}}\n"
                ),
            );
            repo.commit(&format!("change {i}"))
        })
        .collect();
    (repo, base, heads)
}

fn with_installation(body: Vec<u8>) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["installation"] = json!({"id": INSTALLATION});
    serde_json::to_vec(&v).unwrap()
}

/// Waits (bounded) until no server job is queued or running (plan jobs wait for runners).
async fn settle(server: &Server) {
    let start = Instant::now();
    loop {
        let jobs = server
            .app
            .store
            .jobs(&JobFilter::default(), 1000)
            .await
            .unwrap();
        let busy: Vec<_> = jobs
            .iter()
            .filter(|j| !j.kind.starts_with("runner."))
            .filter(|j| matches!(j.state, JobState::Queued | JobState::Running))
            .collect();
        if busy.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "jobs pending: {busy:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn plan_jobs(server: &Server) -> Vec<sluice_store::Job> {
    server
        .app
        .store
        .jobs(&JobFilter::default(), 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == "runner.plan")
        .collect()
}

async fn post(server: &Server, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = server
        .client
        .post(format!("{}/api/v1{path}", server.base))
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn events_of(server: &Server, kind: &str) -> Vec<Value> {
    server
        .app
        .store
        .events(None, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.payload)
        .collect()
}

/// The runner's environment: this process's, with Terraform kept offline, and a long-lived
/// key the engine must never see.
fn runner_env() -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    env.insert("TF_CLI_CONFIG_FILE".into(), "/dev/null".into());
    env.insert("CHECKPOINT_DISABLE".into(), "1".into());
    env.remove("TF_PLUGIN_CACHE_DIR");
    env.insert("AWS_ACCESS_KEY_ID".into(), "AKIALONGLIVEDEXAMPLE".into());
    env
}

fn runner(server: &Server, token: &str, work: &std::path::Path) -> RunnerOptions {
    RunnerOptions {
        server: server.base.clone(),
        credential: Credential::Token(token.to_string()),
        work_dir: work.to_path_buf(),
        once: true,
        poll: Duration::from_millis(50),
        name: "test-runner".into(),
        env: runner_env(),
    }
}

async fn run_once(opts: RunnerOptions) -> sluice_server::runner_loop::RunSummary {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    sluice_server::runner_loop::run(opts, rx).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_plans_a_stack_and_a_review_approves_that_plan() {
    if sluice_testkit::terraform().is_none() {
        return;
    }
    let (repo, base, heads) = terraform_org(3);
    let Some(opened) = pr_payload("opened", 7, &base, &heads[0]) else {
        return;
    };
    let gh = mock_github().await;
    let (key_dir, key) = key_file();
    let mut cfg = config(repo.path(), 1, None, key);
    cfg.lease = Duration::from_secs(2);
    cfg.queue_plans = true;
    let mut github = sluice_vcs::GitHubConfig::new(7);
    github.api_url = gh.uri().parse().unwrap();
    github.retry.max_attempts = 1;
    cfg.github = Some((
        github,
        sluice_vcs::AppKey::from_pem(app_key_pem().as_bytes()).unwrap(),
    ));
    let server = Server::start_with(cfg, key_dir).await;
    let token = server
        .app
        .store
        .create_token(Scope::Runner, "ci")
        .await
        .unwrap()
        .token;
    let reader = server
        .app
        .store
        .create_token(Scope::Read, "reader")
        .await
        .unwrap()
        .token;

    let (status, answer) = server
        .signed("pull_request", "run-open", &with_installation(opened))
        .await;
    assert_eq!(status, 202, "{answer}");
    settle(&server).await;
    let queued = plan_jobs(&server).await;
    assert_eq!(
        queued.len(),
        1,
        "one plan job for the one stack: {queued:?}"
    );
    assert_eq!(queued[0].state, JobState::Queued, "server workers leave it");
    assert_eq!(queued[0].payload["unit"], UNIT);
    let change_id = queued[0].payload["change_id"].as_str().unwrap().to_string();

    // Who may claim: nobody without a credential, not a read token.
    assert_eq!(
        post(&server, "/runner/claim", None, &json!({})).await.0,
        401
    );
    assert_eq!(
        post(&server, "/runner/claim", Some(&reader), &json!({}))
            .await
            .0,
        401
    );
    assert_eq!(
        post(&server, "/runner/claim", Some("not-a-token"), &json!({}))
            .await
            .0,
        401
    );

    // A claim by hand, then refusals that store nothing.
    let (status, claimed) = post(&server, "/runner/claim", Some(&token), &json!({})).await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(claimed["unit"], UNIT);
    assert_eq!(claimed["head_sha"], heads[0].as_str());
    let (job, lease) = (
        claimed["job"].as_i64().unwrap(),
        claimed["lease"].as_i64().unwrap(),
    );
    let beat = |l: i64| json!({"lease": l});
    assert_eq!(
        post(
            &server,
            &format!("/runner/jobs/{job}/heartbeat"),
            Some(&token),
            &beat(lease)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(
            &server,
            &format!("/runner/jobs/{job}/heartbeat"),
            Some(&token),
            &beat(lease + 7)
        )
        .await
        .0,
        409,
        "a lease that is not current"
    );
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let plan_json = br#"{"format_version":"1.2","resource_changes":[]}"#;
    let forged = json!({"lease": lease, "result": {"outcome": "planned", "engine": "terraform",
        "plan_file": b64(b"plan bytes"), "plan_file_digest": format!("sha256:{}", "0".repeat(64)),
        "plan_json": b64(plan_json), "plan_json_digest": format!("sha256:{}", "0".repeat(64))}});
    let (status, body) = post(
        &server,
        &format!("/runner/jobs/{job}/result"),
        Some(&token),
        &forged,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("hashes to"),
        "{body}"
    );
    let mut stale = forged.clone();
    stale["lease"] = json!(lease + 7);
    assert_eq!(
        post(
            &server,
            &format!("/runner/jobs/{job}/result"),
            Some(&token),
            &stale
        )
        .await
        .0,
        409
    );
    let plan_stage = |stages: &[sluice_store::StageResultRecord]| {
        stages.iter().rev().find(|s| s.stage == "plan").cloned()
    };
    let stages = server.app.store.stage_results(&change_id).await.unwrap();
    assert_eq!(
        plan_stage(&stages).unwrap().outcome.as_str(),
        "not_run",
        "nothing recorded by refused uploads"
    );
    let refused = events_of(&server, "runner.refused").await;
    assert!(refused.len() >= 3, "{refused:?}");

    // The hand claim's lease lapses; the runner takes the job over and plans for real.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let work = tempfile::tempdir().unwrap();
    let summary = run_once(runner(&server, &token, work.path())).await;
    assert_eq!(summary.uploaded, 1, "{summary:?}");
    assert_eq!(
        std::fs::read_dir(work.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("job-"))
            .count(),
        0,
        "the workspace is deleted"
    );
    // The first claim's lease is void now.
    assert_eq!(
        post(
            &server,
            &format!("/runner/jobs/{job}/result"),
            Some(&token),
            &forged
        )
        .await
        .0,
        409
    );
    settle(&server).await;
    let done = plan_jobs(&server).await;
    assert_eq!(done[0].state, JobState::Succeeded, "{done:?}");

    // Stage 4 passed with the plan digest, in the API and the evidence.
    let (status, text) = server
        .get(
            &format!(
                "/api/v1/changes/{}",
                change_id.replace('/', "%2F").replace('#', "%23")
            ),
            Some(&reader),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let view: Value = serde_json::from_str(&text).unwrap();
    let stages = view["stages"].as_array().unwrap();
    let plan = stages.iter().rev().find(|s| s["stage"] == "plan").unwrap();
    assert_eq!(plan["outcome"], "passed", "{plan}");
    let digest = plan["detail"]["details"]["plan_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(digest.starts_with("sha256:"), "{plan}");
    assert!(
        plan["detail"]["identity"]
            .as_str()
            .unwrap()
            .starts_with("runner-token:ci#"),
        "stage 4 names the runner: {plan}"
    );
    let policy = stages
        .iter()
        .rev()
        .find(|s| s["stage"] == "policy")
        .unwrap();
    assert_eq!(policy["outcome"], "passed", "{policy}");
    let (status, bundle) = server
        .get(
            &format!(
                "/api/v1/changes/{}/bundle",
                change_id.replace('/', "%2F").replace('#', "%23")
            ),
            Some(&reader),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        bundle.contains(digest.trim_start_matches("sha256:")),
        "the bundle names the plan"
    );
    // The plan is in the plan store `sluice apply` reads, encrypted (no plaintext on disk).
    let store = sluice_iac::store::FsPlanStore::new(repo.path().join(".sluice"));
    use sluice_iac::store::PlanStore as _;
    let parsed = sluice_iac::store::Digest::parse(&digest).unwrap();
    assert!(store.get(&parsed).unwrap().is_some());
    assert!(
        !std::fs::read(store.blob_path(&parsed))
            .unwrap()
            .starts_with(b"PK"),
        "sealed, not the plan's zip"
    );
    assert!(
        server
            .app
            .metrics
            .encode()
            .contains("sluice_plan_duration_seconds_count 1")
    );

    // alice's approving review binds to that plan's digest.
    let review = review_payload("submitted", 101, "alice", &heads[0]);
    assert_eq!(
        server
            .signed("pull_request_review", "run-r1", &review)
            .await
            .0,
        202
    );
    settle(&server).await;
    use sluice_store::ReleaseStore as _;
    let approvals = server.app.store.approvals(&change_id).await.unwrap();
    assert_eq!(
        approvals.len(),
        1,
        "{:?}",
        events_of(&server, "review.recorded").await
    );
    assert_eq!(approvals[0].approver, "github:alice");
    assert!(
        approvals[0].body.to_string().contains(&digest),
        "bound to the plan digest: {}",
        approvals[0].body
    );

    // A newer head supersedes its plan job: the holder's heartbeat and upload are refused.
    let push = |head: &str| with_installation(pr_payload("synchronize", 7, &base, head).unwrap());
    assert_eq!(
        server
            .signed("pull_request", "run-p1", &push(&heads[1]))
            .await
            .0,
        202
    );
    settle(&server).await;
    let (status, claimed) = post(&server, "/runner/claim", Some(&token), &json!({})).await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(claimed["head_sha"], heads[1].as_str());
    let (job, lease) = (
        claimed["job"].as_i64().unwrap(),
        claimed["lease"].as_i64().unwrap(),
    );
    assert_eq!(
        server
            .signed("pull_request", "run-p2", &push(&heads[2]))
            .await
            .0,
        202
    );
    settle(&server).await;
    let old = server
        .app
        .store
        .job(sluice_store::JobId(job))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.state, JobState::Cancelled);
    assert!(
        old.reason.as_deref().unwrap().contains("superseded"),
        "{old:?}"
    );
    assert_eq!(
        post(
            &server,
            &format!("/runner/jobs/{job}/heartbeat"),
            Some(&token),
            &beat(lease)
        )
        .await
        .0,
        409
    );
    let mut late = forged.clone();
    late["lease"] = json!(lease);
    assert_eq!(
        post(
            &server,
            &format!("/runner/jobs/{job}/result"),
            Some(&token),
            &late
        )
        .await
        .0,
        409
    );
    // `sluice plan UNIT` by a writer: the head's pipeline runs again and queues its plan.
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/{REPO}/collaborators/alice/permission"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "permission": "write", "role_name": "write", "user": {"login": "alice"}
        })))
        .mount(&gh)
        .await;
    let before = plan_jobs(&server).await.len();
    let comment = command_payload("alice", &format!("sluice plan {UNIT}"));
    assert_eq!(
        server.signed("issue_comment", "run-c1", &comment).await.0,
        202
    );
    settle(&server).await;
    let answered = events_of(&server, "command.answered").await;
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert!(
        answered[0]["reply"]
            .as_str()
            .unwrap()
            .contains("Plans queued for runners"),
        "{answered:?}"
    );
    let after = plan_jobs(&server).await;
    assert_eq!(after.len(), before + 1, "{after:?}");
    assert_eq!(after[0].head_sha.as_deref(), Some(heads[2].as_str()));
    assert_eq!(after[0].payload["unit"], UNIT);
    server.stop().await;
}

/// A corpus `issue_comment` delivery: `login` comments `body` on PR 7.
fn command_payload(login: &str, body: &str) -> Vec<u8> {
    let root = sluice_testkit::corpus("github-webhooks/payload-examples/api.github.com").unwrap();
    let file = root.join("issue_comment/created.payload.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    v["issue"]["number"] = 7.into();
    v["issue"]["pull_request"] =
        json!({"url": format!("https://api.github.com/repos/{REPO}/pulls/7")});
    v["comment"]["body"] = body.into();
    v["comment"]["user"]["login"] = login.into();
    v["installation"] = json!({"id": INSTALLATION});
    serde_json::to_vec(&v).unwrap()
}

/// A corpus `pull_request_review` delivery: `reviewer` approves `commit` of PR 7 (authored by
/// `Codertocat`).
fn review_payload(action: &str, id: u64, reviewer: &str, commit: &str) -> Vec<u8> {
    let root = sluice_testkit::corpus("github-webhooks/payload-examples/api.github.com").unwrap();
    let file = root.join(format!("pull_request_review/{action}.payload.json"));
    let mut v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    v["pull_request"]["number"] = 7.into();
    v["pull_request"]["user"]["login"] = "Codertocat".into();
    v["pull_request"]["head"]["sha"] = commit.into();
    v["review"]["id"] = id.into();
    v["review"]["user"]["login"] = reviewer.into();
    v["review"]["commit_id"] = commit.into();
    v["review"]["state"] = "approved".into();
    v["installation"] = json!({"id": INSTALLATION});
    serde_json::to_vec(&v).unwrap()
}

/// A local OIDC issuer (wiremock serving discovery and a JWKS of a key made now).
struct Issuer {
    server: MockServer,
    encoding: jsonwebtoken::EncodingKey,
}

impl Issuer {
    async fn start() -> Issuer {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let server = MockServer::start().await;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let encoding = jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::ES256)
                .unwrap();
        jwk.common.key_id = Some("k1".into());
        let issuer = server.uri();
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")})),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(jsonwebtoken::jwk::JwkSet { keys: vec![jwk] }),
            )
            .mount(&server)
            .await;
        Issuer { server, encoding }
    }

    fn token(&self, sub: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let claims = json!({"iss": self.server.uri(), "aud": "sluice", "sub": sub,
            "repository": "acme/infra-live", "ref": "refs/heads/main",
            "iat": now - 5, "nbf": now - 5, "exp": now + 600});
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

const PROD_PLANNER: &str = "repo:acme/infra-live:environment:prod";
const DEV_PLANNER: &str = "repo:acme/infra-live:pull_request";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_runners_claim_only_what_the_trust_policy_lets_them_plan() {
    let (repo, base, heads) = terraform_org(1);
    let Some(opened) = pr_payload("opened", 7, &base, &heads[0]) else {
        return;
    };
    let issuer = Issuer::start().await;
    let policy = sluice_model::trust::TrustPolicy::from_json(&json!({
        "issuers": [{"issuer": issuer.server.uri(), "audience": "sluice"}],
        "rules": [
            {"name": "plan-prod", "when": {"sub": PROD_PLANNER},
             "grant": {"stages": ["plan"], "state": {"read": ["prod/**"]}}},
            {"name": "plan-dev", "when": {"sub": DEV_PLANNER},
             "grant": {"stages": ["plan"], "state": {"read": ["dev/**"]},
                       "roles": [{"stacks": ["dev/**"],
                                  "aws": {"role_arn": "arn:aws:iam::222222222222:role/iac-plan-dev"}}]}}
        ]
    }))
    .unwrap();
    let (key_dir, key) = key_file();
    let mut cfg = config(repo.path(), 1, None, key);
    cfg.queue_plans = true;
    cfg.state.trust = Some(std::sync::Arc::new(policy));
    let server = Server::start_with(cfg, key_dir).await;
    assert_eq!(
        server.signed("pull_request", "oidc-open", &opened).await.0,
        202
    );
    settle(&server).await;
    assert_eq!(plan_jobs(&server).await.len(), 1);

    // A prod plan identity may not plan a dev stack: 403, and the job waits for another runner.
    let prod = issuer.token(PROD_PLANNER);
    let (status, body) = post(&server, "/runner/claim", Some(&prod), &json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("trust policy"),
        "{body}"
    );
    let jobs = plan_jobs(&server).await;
    assert_eq!(jobs[0].state, JobState::Queued, "given back: {jobs:?}");
    let refused = events_of(&server, "runner.refused").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["status"], 403);
    // A token whose signature is another token's is no credential at all.
    let dev = issuer.token(DEV_PLANNER);
    let (head_payload, _) = prod.rsplit_once('.').unwrap();
    let (_, other_signature) = dev.rsplit_once('.').unwrap();
    let (status, _) = post(
        &server,
        "/runner/claim",
        Some(&format!("{head_payload}.{other_signature}")),
        &json!({}),
    )
    .await;
    assert_eq!(status, 401);

    // The dev plan identity gets it, with the read-only role the policy names for the stack.
    let (status, claimed) = post(&server, "/runner/claim", Some(&dev), &json!({})).await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(
        claimed["cloud_role"]["aws"]["role_arn"],
        "arn:aws:iam::222222222222:role/iac-plan-dev"
    );
    assert_eq!(
        claimed["identity"],
        format!("oidc:{}#{DEV_PLANNER}", issuer.server.uri())
    );
    // Held by the dev identity: the prod identity cannot beat for it.
    let job = claimed["job"].as_i64().unwrap();
    let lease = claimed["lease"].as_i64().unwrap();
    let (status, _) = post(
        &server,
        &format!("/runner/jobs/{job}/heartbeat"),
        Some(&prod),
        &json!({"lease": lease}),
    )
    .await;
    assert_eq!(status, 409);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_runner_plans_its_own_stacks() {
    if sluice_testkit::terraform().is_none() {
        return;
    }
    let (repo, base, heads) = terraform_org(1);
    let Some(opened) = pr_payload("opened", 7, &base, &heads[0]) else {
        return;
    };
    let (key_dir, key) = key_file();
    let mut cfg = config(repo.path(), 1, None, key);
    cfg.runner = true;
    cfg.queue_plans = true;
    let server = Server::start_with(cfg, key_dir).await;
    assert_eq!(
        server.signed("pull_request", "self-open", &opened).await.0,
        202
    );
    let start = Instant::now();
    loop {
        let jobs = plan_jobs(&server).await;
        if jobs.iter().any(|j| j.state == JobState::Succeeded) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the in-process runner did not plan: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let change = plan_jobs(&server).await[0].payload["change_id"]
        .as_str()
        .unwrap()
        .to_string();
    let stages = server.app.store.stage_results(&change).await.unwrap();
    let plan = stages.iter().rev().find(|s| s.stage == "plan").unwrap();
    assert_eq!(plan.outcome.as_str(), "passed", "{:?}", plan.detail);
    assert!(
        plan.detail["identity"]
            .as_str()
            .unwrap()
            .starts_with("runner-token:serve-runner:"),
        "{:?}",
        plan.detail
    );
    // Stops gracefully with its runner.
    server.stop().await;
}

/// `--once` against a server that does not answer gives up after `ONCE_ATTEMPTS` tries with
/// `Unreachable` (the CLI's exit code 13) instead of retrying for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_runner_gives_up_on_an_unreachable_server() {
    use sluice_server::runner_loop::{ONCE_ATTEMPTS, RunnerError};
    // A port nobody listens on: bound, then closed.
    let port = sluice_testkit::free_port();
    let work = tempfile::tempdir().unwrap();
    let opts = RunnerOptions {
        server: format!("http://127.0.0.1:{port}"),
        credential: Credential::Token("sluice_rt_x.y".into()),
        work_dir: work.path().to_path_buf(),
        once: true,
        poll: Duration::from_millis(50),
        name: "test-runner".into(),
        env: runner_env(),
    };
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        sluice_server::runner_loop::run(opts, rx),
    )
    .await
    .expect("a one-shot runner must give up on an unreachable server");
    match result {
        Err(RunnerError::Unreachable { attempts, last, .. }) => {
            assert_eq!(attempts, ONCE_ATTEMPTS);
            assert!(last.contains(&port.to_string()), "{last}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    // 50 + 100 + 200 + 400 ms of pauses.
    assert!(started.elapsed() >= Duration::from_millis(750));
}

/// The runner token `serve --runner` mints for itself expires unless the server renews it, and
/// is revoked when the server stops gracefully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_runner_revokes_its_token_when_it_stops() {
    let repo = sluice_testkit::Repo::new();
    repo.write("README.md", "x\n");
    repo.commit("init");
    let (key_dir, key) = key_file();
    let mut cfg = config(repo.path(), 1, None, key);
    cfg.runner = true;
    cfg.queue_plans = true;
    let server = Server::start_with(cfg, key_dir).await;
    let app = server.app.clone();
    // The server mints it as it starts its runner.
    let started = Instant::now();
    let token = loop {
        let tokens = app.store.tokens().await.unwrap();
        let minted: Vec<_> = tokens
            .iter()
            .filter(|t| t.name.starts_with("serve-runner:"))
            .cloned()
            .collect();
        assert!(minted.len() <= 1, "{tokens:?}");
        if let Some(t) = minted.into_iter().next() {
            break t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no runner token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((token.scope, token.revoked_at), (Scope::Runner, None));
    let expires = token.expires_at.expect("the in-process token expires");
    let ttl = sluice_server::RUNNER_TOKEN_TTL.as_millis() as i64;
    assert!(expires > sluice_store::now_millis() && expires <= token.created_at + ttl + 1000);
    server.stop().await;
    let after = app.store.tokens().await.unwrap();
    let row = after.iter().find(|t| t.id == token.id).unwrap();
    assert!(
        row.revoked_at.is_some(),
        "still live after shutdown: {row:?}"
    );
}
