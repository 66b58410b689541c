//! The GitHub App client against a mock GitHub (wiremock): each call's exact method, path,
//! query, headers and body as GitHub's REST documentation gives them, the installation token
//! cache, the PR comment kept in place, and the retry rules.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sluice_model::exception::Timestamp;
use sluice_testkit::pem;
use sluice_vcs::client::{CheckRunReport, CheckState, Conclusion, MAX_CHECK_TEXT_CHARS};
use sluice_vcs::command::Permission;
use sluice_vcs::comment::{CommentMarker, MAX_COMMENT_CHARS};
use sluice_vcs::retry::RetryPolicy;
use sluice_vcs::{AppKey, GitHubApp, GitHubConfig, GitHubError, InstallationId, RepoName};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

const APP_ID: u64 = 7;
const INSTALLATION: InstallationId = InstallationId(42);
const TOKEN: &str = "ghs_installation_token_for_tests";
const SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

/// A fresh 2048-bit RSA key as GitHub hands it out (PKCS#1 PEM), the same key as PKCS#8 PEM,
/// and its public key (PKCS#1 DER).
fn app_key() -> &'static (String, String, Vec<u8>) {
    static KEY: OnceLock<(String, String, Vec<u8>)> = OnceLock::new();
    KEY.get_or_init(|| {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = pair.as_der().unwrap();
        let pkcs1 = pkcs1_from_pkcs8(pkcs8.as_ref());
        (
            pem("RSA PRIVATE KEY", &pkcs1),
            pem("PRIVATE KEY", pkcs8.as_ref()),
            pair.public_key().as_ref().to_vec(),
        )
    })
}

/// One DER element: (tag, contents, rest).
fn der(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, header) = match input[1] {
        l if l < 0x80 => (l as usize, 2),
        l => {
            let n = (l & 0x7f) as usize;
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + n)
        }
    };
    (tag, &input[header..header + len], &input[header + len..])
}

/// PrivateKeyInfo ::= SEQUENCE { version, algorithm, privateKey OCTET STRING (RSAPrivateKey) }.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let (_, info, _) = der(pkcs8);
    let (_, _, rest) = der(info); // version
    let (_, _, rest) = der(rest); // algorithm
    let (tag, key, _) = der(rest);
    assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
    key.to_vec()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Matches a request authenticated with this app's JWT: RS256, signed by the app key, issued
/// by the app, valid now and for at most ten minutes.
struct AppJwt;

impl Match for AppJwt {
    fn matches(&self, request: &Request) -> bool {
        let Some(jwt) = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let Some((signed, sig)) = jwt.rsplit_once('.') else {
            return false;
        };
        let key = signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            app_key().2.as_slice(),
        );
        let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        if key.verify(signed.as_bytes(), &sig).is_err() {
            return false;
        }
        let (header, claims) = signed.split_once('.').unwrap();
        let decode = |part: &str| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        let (header, claims) = (decode(header), decode(claims));
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        header["alg"] == "RS256"
            && claims["iss"].as_str() == Some(APP_ID.to_string().as_str())
            && iat <= now()
            && exp > now()
            && exp - iat <= 600
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(5),
        secondary_delay: Duration::from_millis(10),
    }
}

fn app_at(url: &str) -> GitHubApp {
    let mut config = GitHubConfig::new(APP_ID);
    config.api_url = url.parse().unwrap();
    config.retry = policy();
    config.user_agent = "sluice-test".into();
    GitHubApp::new(config, AppKey::from_pem(app_key().0.as_bytes()).unwrap()).unwrap()
}

fn repo() -> RepoName {
    "acme/infra-live".parse().unwrap()
}

fn rfc3339(secs: u64) -> String {
    Timestamp::from_unix(secs as i64, 0).to_rfc3339()
}

/// GitHub's common headers on a call made as the installation.
fn as_installation(mock: wiremock::MockBuilder) -> wiremock::MockBuilder {
    mock.and(header("accept", "application/vnd.github+json"))
        .and(header("x-github-api-version", "2022-11-28"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("user-agent", "sluice-test"))
}

/// "Create an installation access token for an app", answered with a token valid `lifetime`.
async fn token_endpoint(server: &MockServer, lifetime: u64, times: u64) {
    Mock::given(method("POST"))
        .and(path("/app/installations/42/access_tokens"))
        .and(header("accept", "application/vnd.github+json"))
        .and(header("x-github-api-version", "2022-11-28"))
        .and(header("user-agent", "sluice-test"))
        .and(AppJwt)
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "token": TOKEN,
            "expires_at": rfc3339(now() + lifetime),
            "permissions": {"checks": "write", "pull_requests": "write"},
            "repository_selection": "selected"
        })))
        .expect(times)
        .mount(server)
        .await;
}

fn report(state: CheckState) -> CheckRunReport {
    CheckRunReport {
        name: "sluice".into(),
        head_sha: SHA.into(),
        state,
        title: "2 stacks planned, 1 needs approval".into(),
        summary: "## sluice\n| stack | risk |\n|---|---|\n| prod/network | R3 |\n".into(),
        external_id: Some("infra-live#2@ec26c3e".into()),
    }
}

async fn list_check_runs(server: &MockServer, runs: Value) {
    as_installation(Mock::given(method("GET")))
        .and(path(
            format!("/repos/acme/infra-live/commits/{SHA}/check-runs").as_str(),
        ))
        .and(query_param("check_name", "sluice"))
        .and(query_param("app_id", "7"))
        .and(query_param("filter", "latest"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"total_count": runs.as_array().unwrap().len(), "check_runs": runs}),
        ))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn first_report_on_a_head_creates_its_check_run() {
    let server = MockServer::start().await;
    token_endpoint(&server, 3600, 1).await;
    list_check_runs(&server, json!([])).await;
    as_installation(Mock::given(method("POST")))
        .and(path("/repos/acme/infra-live/check-runs"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "name": "sluice",
            "head_sha": SHA,
            "status": "in_progress",
            "external_id": "infra-live#2@ec26c3e",
            "output": {
                "title": "2 stacks planned, 1 needs approval",
                "summary": "## sluice\n| stack | risk |\n|---|---|\n| prod/network | R3 |\n"
            }
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 4, "head_sha": SHA})))
        .expect(1)
        .mount(&server)
        .await;

    let app = app_at(&server.uri());
    let id = app
        .installation(INSTALLATION)
        .publish_check_run(&repo(), &report(CheckState::InProgress))
        .await
        .unwrap();
    assert_eq!(id, 4);
}

#[tokio::test]
async fn a_later_report_updates_the_same_check_run() {
    let server = MockServer::start().await;
    token_endpoint(&server, 3600, 1).await;
    list_check_runs(
        &server,
        json!([{"id": 4, "name": "sluice", "head_sha": SHA}]),
    )
    .await;
    as_installation(Mock::given(method("PATCH")))
        .and(path("/repos/acme/infra-live/check-runs/4"))
        .and(body_json(json!({
            "name": "sluice",
            "head_sha": SHA,
            "status": "completed",
            "conclusion": "action_required",
            "details_url": "https://sluice.example/changes/infra-live%232",
            "external_id": "infra-live#2@ec26c3e",
            "output": {
                "title": "2 stacks planned, 1 needs approval",
                "summary": "## sluice\n| stack | risk |\n|---|---|\n| prod/network | R3 |\n"
            }
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 4})))
        .expect(1)
        .mount(&server)
        .await;

    let app = app_at(&server.uri());
    let state = CheckState::Completed(Conclusion::ActionRequired {
        details_url: "https://sluice.example/changes/infra-live%232".into(),
    });
    let id = app
        .installation(INSTALLATION)
        .publish_check_run(&repo(), &report(state))
        .await
        .unwrap();
    assert_eq!(id, 4);
}

#[tokio::test]
async fn an_oversized_summary_is_cut_to_githubs_limit() {
    let server = MockServer::start().await;
    token_endpoint(&server, 3600, 1).await;
    list_check_runs(&server, json!([])).await;
    as_installation(Mock::given(method("POST")))
        .and(path("/repos/acme/infra-live/check-runs"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 5})))
        .expect(1)
        .mount(&server)
        .await;
    let app = app_at(&server.uri());
    let mut big = report(CheckState::Completed(Conclusion::Failure));
    big.summary = "x".repeat(MAX_CHECK_TEXT_CHARS + 10);
    app.installation(INSTALLATION)
        .publish_check_run(&repo(), &big)
        .await
        .unwrap();
    let posted = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.method.as_str() == "POST" && r.url.path().ends_with("/check-runs"))
        .unwrap();
    let body: Value = posted.body_json().unwrap();
    let summary = body["output"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), MAX_CHECK_TEXT_CHARS);
    assert_eq!(body["conclusion"], "failure");
}

/// Two permission look-ups through one client, with installation tokens valid `lifetime`
/// seconds; the token endpoint must be called `token_calls` times.
async fn two_lookups_with_tokens_lasting(lifetime: u64, token_calls: u64) {
    let server = MockServer::start().await;
    token_endpoint(&server, lifetime, token_calls).await;
    permission_path()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "permission": "write", "role_name": "maintain", "user": {"login": "octocat"}
        })))
        .expect(2)
        .mount(&server)
        .await;
    let app = app_at(&server.uri());
    let client = app.installation(INSTALLATION);
    for _ in 0..2 {
        let permission = client.collaborator_permission(&repo(), "octocat").await;
        assert_eq!(permission.unwrap(), Permission::Maintain);
    }
}

#[tokio::test]
async fn the_installation_token_is_reused_until_shortly_before_it_expires() {
    // An hour left: one token for both calls.
    two_lookups_with_tokens_lasting(3600, 1).await;
    // Two minutes left, inside the refresh margin: a new token for each call.
    two_lookups_with_tokens_lasting(120, 2).await;
}

#[tokio::test]
async fn an_unknown_user_has_no_permission_and_a_bot_is_not_asked_about() {
    let server = MockServer::start().await;
    token_endpoint(&server, 3600, 1).await;
    as_installation(Mock::given(method("GET")))
        .and(path("/repos/acme/infra-live/collaborators/ghost-user/permission"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "message": "Not Found",
            "documentation_url": "https://docs.github.com/rest/collaborators/collaborators#get-repository-permissions-for-a-user"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let app = app_at(&server.uri());
    let client = app.installation(INSTALLATION);
    assert_eq!(
        client
            .collaborator_permission(&repo(), "ghost-user")
            .await
            .unwrap(),
        Permission::None
    );
    // Not a user name: refused without a call (the mock would 404 any other path).
    assert_eq!(
        client
            .collaborator_permission(&repo(), "dependabot[bot]")
            .await
            .unwrap(),
        Permission::None
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

fn comment(id: u64, login: &str, kind: &str, body: &str) -> Value {
    json!({"id": id, "body": body, "user": {"login": login, "type": kind}})
}

#[tokio::test]
async fn the_pr_comment_is_edited_in_place_and_only_sluices_own() {
    let server = MockServer::start().await;
    token_endpoint(&server, 3600, 1).await;
    let marker = CommentMarker::new("pr-report").unwrap();
    let old = marker.render(&["old report"]).remove(0);
    as_installation(Mock::given(method("GET")))
        .and(path("/repos/acme/infra-live/issues/2/comments"))
        .and(query_param("per_page", "100"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            // A person quoting the marker is not sluice's comment.
            comment(10, "mallory", "User", &old),
            comment(11, "sluice-app[bot]", "Bot", &old),
            comment(12, "sluice-app[bot]", "Bot", "sluice help: …"),
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let new = marker.render(&["new report"]).remove(0);
    as_installation(Mock::given(method("PATCH")))
        .and(path("/repos/acme/infra-live/issues/comments/11"))
        .and(body_json(json!({"body": new})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 11})))
        .expect(1)
        .mount(&server)
        .await;
    let app = app_at(&server.uri());
    let ids = app
        .installation(INSTALLATION)
        .upsert_comment(&repo(), 2, &marker, &["new report"])
        .await
        .unwrap();
    assert_eq!(ids, vec![11]);
}

#[tokio::test]
async fn a_report_over_the_limit_becomes_several_comments_and_a_shorter_one_removes_extras() {
    let server = MockServer::start().await;
    token_endpoint(&server, 3600, 1).await;
    let marker = CommentMarker::new("pr-report").unwrap();
    let long: String = (0..6000)
        .map(|i| format!("| stack-{i:05} | update | R2 |\n"))
        .collect();
    let parts = marker.render(&[&long]);
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().all(|p| p.chars().count() <= MAX_COMMENT_CHARS));

    // No comment yet: the parts are created in order.
    as_installation(Mock::given(method("GET")))
        .and(path("/repos/acme/infra-live/issues/2/comments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    for (i, part) in parts.iter().enumerate() {
        as_installation(Mock::given(method("POST")))
            .and(path("/repos/acme/infra-live/issues/2/comments"))
            .and(body_json(json!({"body": part})))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 100 + i})))
            .expect(1)
            .mount(&server)
            .await;
    }
    let app = app_at(&server.uri());
    let client = app.installation(INSTALLATION);
    let ids = client
        .upsert_comment(&repo(), 2, &marker, &[&long])
        .await
        .unwrap();
    assert_eq!(ids, vec![100, 101, 102]);
    let posts: Vec<u64> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with("/comments"))
        .map(|r| {
            let body: Value = r.body_json().unwrap();
            parts.iter().position(|p| body["body"] == *p).unwrap() as u64
        })
        .collect();
    assert_eq!(posts, vec![0, 1, 2], "parts posted in order");
    server.verify().await;
    server.reset().await;

    // Now a short report: the first part is edited, the other two deleted.
    token_endpoint(&server, 3600, 0).await; // the cached token is still good
    as_installation(Mock::given(method("GET")))
        .and(path("/repos/acme/infra-live/issues/2/comments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            comment(100, "sluice-app[bot]", "Bot", &parts[0]),
            comment(101, "sluice-app[bot]", "Bot", &parts[1]),
            comment(102, "sluice-app[bot]", "Bot", &parts[2]),
        ])))
        .expect(1)
        .mount(&server)
        .await;
    as_installation(Mock::given(method("PATCH")))
        .and(path("/repos/acme/infra-live/issues/comments/100"))
        .and(body_json(
            json!({"body": marker.render(&["all clear"]).remove(0)}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 100})))
        .expect(1)
        .mount(&server)
        .await;
    for id in [101, 102] {
        as_installation(Mock::given(method("DELETE")))
            .and(path(
                format!("/repos/acme/infra-live/issues/comments/{id}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(204))
            .expect(1)
            .mount(&server)
            .await;
    }
    let ids = client
        .upsert_comment(&repo(), 2, &marker, &["all clear"])
        .await
        .unwrap();
    assert_eq!(ids, vec![100]);
}

#[tokio::test]
async fn comments_are_read_across_pages() {
    let server = MockServer::start().await;
    token_endpoint(&server, 3600, 1).await;
    let marker = CommentMarker::new("pr-report").unwrap();
    let chatter: Vec<Value> = (1..=100)
        .map(|i| comment(i, "octocat", "User", "+1"))
        .collect();
    as_installation(Mock::given(method("GET")))
        .and(path("/repos/acme/infra-live/issues/2/comments"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(Value::Array(chatter)))
        .expect(1)
        .mount(&server)
        .await;
    let current = marker.render(&["same"]).remove(0);
    as_installation(Mock::given(method("GET")))
        .and(path("/repos/acme/infra-live/issues/2/comments"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([comment(
            500,
            "sluice-app[bot]",
            "Bot",
            &current
        )])))
        .expect(1)
        .mount(&server)
        .await;
    let app = app_at(&server.uri());
    // The text is unchanged: no write at all (an unmatched PATCH or POST would fail with 404).
    let ids = app
        .installation(INSTALLATION)
        .upsert_comment(&repo(), 2, &marker, &["same"])
        .await
        .unwrap();
    assert_eq!(ids, vec![500]);
}

async fn permission_call(server: &MockServer) -> Result<Permission, GitHubError> {
    app_at(&server.uri())
        .installation(INSTALLATION)
        .collaborator_permission(&repo(), "octocat")
        .await
}

fn permission_path() -> wiremock::MockBuilder {
    as_installation(Mock::given(method("GET"))).and(path(
        "/repos/acme/infra-live/collaborators/octocat/permission",
    ))
}

fn permission_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"permission": "admin", "role_name": "admin"}))
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let server = MockServer::start().await;
    token_endpoint(&server, 3600, 1).await;
    permission_path()
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(2)
        .with_priority(1)
        .expect(2)
        .mount(&server)
        .await;
    permission_path()
        .respond_with(permission_ok())
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(permission_call(&server).await.unwrap(), Permission::Admin);
}

#[tokio::test]
async fn server_errors_stop_after_the_attempt_limit() {
    let server = MockServer::start().await;
    token_endpoint(&server, 3600, 1).await;
    permission_path()
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"message": "Server Error"})))
        .expect(3)
        .mount(&server)
        .await;
    let err = permission_call(&server).await.unwrap_err();
    assert!(
        matches!(err, GitHubError::Status { status: 500, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("Server Error"), "{err}");
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    for (status, message) in [
        (403, "Resource not accessible by integration"),
        (422, "Validation Failed"),
        (401, "Bad credentials"),
    ] {
        let server = MockServer::start().await;
        token_endpoint(&server, 3600, 1).await;
        permission_path()
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({"message": message})))
            .expect(1)
            .mount(&server)
            .await;
        let err = permission_call(&server).await.unwrap_err();
        assert!(
            matches!(err, GitHubError::Status { status: s, .. } if s == status),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains(message), "{text}");
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
    }
}

#[tokio::test]
async fn a_rejected_token_is_forgotten_and_the_next_call_gets_a_new_one() {
    let server = MockServer::start().await;
    token_endpoint(&server, 3600, 2).await;
    permission_path()
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"message": "Bad credentials"})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    permission_path()
        .respond_with(permission_ok())
        .expect(1)
        .mount(&server)
        .await;
    let app = app_at(&server.uri());
    let client = app.installation(INSTALLATION);
    let first = client.collaborator_permission(&repo(), "octocat").await;
    assert!(matches!(
        first,
        Err(GitHubError::Status { status: 401, .. })
    ));
    let second = client.collaborator_permission(&repo(), "octocat").await;
    assert_eq!(second.unwrap(), Permission::Admin);
}

#[tokio::test]
async fn rate_limits_are_waited_out_as_github_says() {
    // retry-after on a 429.
    let server = MockServer::start().await;
    token_endpoint(&server, 3600, 1).await;
    permission_path()
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    permission_path()
        .respond_with(permission_ok())
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(permission_call(&server).await.unwrap(), Permission::Admin);
    drop(server);

    // Primary limit: remaining 0, wait until the reset (a second past it).
    let server = MockServer::start().await;
    token_endpoint(&server, 3600, 1).await;
    permission_path()
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", now().to_string().as_str())
                .set_body_json(
                    json!({"message": "API rate limit exceeded for installation ID 42."}),
                ),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    permission_path()
        .respond_with(permission_ok())
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    assert_eq!(permission_call(&server).await.unwrap(), Permission::Admin);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    drop(server);

    // Secondary limit without headers: recognised by its message.
    let server = MockServer::start().await;
    token_endpoint(&server, 3600, 1).await;
    permission_path()
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    permission_path()
        .respond_with(permission_ok())
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(permission_call(&server).await.unwrap(), Permission::Admin);
}

#[tokio::test]
async fn a_rate_limit_longer_than_allowed_is_reported_not_slept() {
    let server = MockServer::start().await;
    token_endpoint(&server, 3600, 1).await;
    permission_path()
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", (now() + 1800).to_string().as_str()),
        )
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    let err = permission_call(&server).await.unwrap_err();
    assert!(
        matches!(err, GitHubError::RateLimited { wait, .. } if wait >= Duration::from_secs(1700)),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_github_enterprise_base_url_prefixes_every_path() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v3/app/installations/42/access_tokens"))
        .and(AppJwt)
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "token": TOKEN, "expires_at": rfc3339(now() + 3600)
        })))
        .expect(1)
        .mount(&server)
        .await;
    as_installation(Mock::given(method("POST")))
        .and(path("/api/v3/repos/acme/infra-live/issues/2/comments"))
        .and(body_json(json!({"body": "@mallory has `read` permission"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 9})))
        .expect(1)
        .mount(&server)
        .await;
    let app = app_at(&format!("{}/api/v3", server.uri()));
    let id = app
        .installation(INSTALLATION)
        .create_comment(&repo(), 2, "@mallory has `read` permission")
        .await
        .unwrap();
    assert_eq!(id, 9);
}

#[test]
fn a_pkcs8_key_signs_the_same_jwt() {
    let mut config = GitHubConfig::new(APP_ID);
    config.user_agent = "sluice-test".into();
    let app = GitHubApp::new(config, AppKey::from_pem(app_key().1.as_bytes()).unwrap()).unwrap();
    let jwt = app.jwt().unwrap();
    let mut request = Request {
        url: "http://localhost/".parse().unwrap(),
        method: "POST".parse().unwrap(),
        headers: Default::default(),
        body: Vec::new(),
    };
    request
        .headers
        .insert("authorization", format!("Bearer {jwt}").parse().unwrap());
    assert!(AppJwt.matches(&request));
    // The matcher is not a formality: a JWT from another key does not pass.
    let other = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let other_pem = pem("PRIVATE KEY", other.as_der().unwrap().as_ref());
    let config = GitHubConfig::new(APP_ID);
    let forged = GitHubApp::new(config, AppKey::from_pem(other_pem.as_bytes()).unwrap()).unwrap();
    let jwt = forged.jwt().unwrap();
    request
        .headers
        .insert("authorization", format!("Bearer {jwt}").parse().unwrap());
    assert!(!AppJwt.matches(&request));
}

#[test]
fn a_key_that_is_not_rsa_pem_is_refused() {
    let err =
        AppKey::from_pem(b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
            .unwrap_err();
    assert!(matches!(err, GitHubError::Key(_)));
    let mut config = GitHubConfig::new(APP_ID);
    config.api_url = "mailto:octocat@example.com".parse().unwrap();
    let key = AppKey::from_pem(app_key().0.as_bytes()).unwrap();
    assert!(matches!(
        GitHubApp::new(config, key),
        Err(GitHubError::ApiUrl(_))
    ));
    assert!(
        format!("{:?}", AppKey::from_pem(app_key().0.as_bytes()).unwrap()).contains("redacted")
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_reported() {
    // Bind a port, then free it: nothing listens there.
    let port = sluice_testkit::free_port();
    let app = app_at(&format!("http://127.0.0.1:{port}"));
    let started = Instant::now();
    let err = app
        .installation(INSTALLATION)
        .collaborator_permission(&repo(), "octocat")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GitHubError::Transport { path, .. } if path == "/app/installations/42/access_tokens"),
        "{err}"
    );
    // Three attempts: backoffs of 10 ms and 20 ms between them.
    assert!(started.elapsed() >= Duration::from_millis(30));
}

#[test]
fn the_client_can_be_shared_across_tasks() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<F: std::future::Future + Send>(_: F) {}
    let app = app_at("http://127.0.0.1:9");
    send_sync(&app);
    let client = app.installation(INSTALLATION);
    let marker = CommentMarker::new("pr-report").unwrap();
    send(client.publish_check_run(&repo(), &report(CheckState::InProgress)));
    send(client.upsert_comment(&repo(), 2, &marker, &["report"]));
    send(client.collaborator_permission(&repo(), "octocat"));
    send(client.create_comment(&repo(), 2, "reply"));
}
