//! Every real webhook payload in `../shared/corpus/github-webhooks` (octokit/webhooks'
//! `payload-examples/api.github.com/<event>/<action>.*.json`), signed and delivered as GitHub
//! would: each parses, the events sluice acts on into their typed form with every field checked
//! against the raw JSON, the rest into `Unsupported`; and each one forged is refused.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice_vcs::event::{
    Branch, CheckRunEvent, CommentEvent, PullRequest, PullRequestAction, PullRequestEvent,
    PushEvent, Repository, ReviewAction, ReviewEvent, ReviewState,
};
use sluice_vcs::{DeliveryHeaders, Event, WebhookError, WebhookSecret, receive};

/// The (event, action) pairs sluice acts on; `None` matches a payload without an action (push).
const SUPPORTED: &[(&str, Option<&str>)] = &[
    ("pull_request", Some("opened")),
    ("pull_request", Some("synchronize")),
    ("pull_request", Some("reopened")),
    ("pull_request", Some("closed")),
    ("pull_request_review", Some("submitted")),
    ("pull_request_review", Some("dismissed")),
    ("issue_comment", Some("created")),
    ("push", None),
    ("check_run", Some("rerequested")),
];

fn corpus() -> Option<PathBuf> {
    sluice_testkit::corpus("github-webhooks/payload-examples/api.github.com")
}

/// (event name from the folder, file) for every payload, sorted.
fn payloads(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root).unwrap() {
        let dir = dir.unwrap().path();
        let event = dir.file_name().unwrap().to_str().unwrap().to_owned();
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "json") {
                out.push((event.clone(), file));
            }
        }
    }
    out.sort();
    out
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} is not a string"))
}

fn n(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not a number"))
}

fn check_common(
    v: &Value,
    repo: &Repository,
    installation: Option<sluice_vcs::event::Installation>,
    sender: &str,
) {
    assert_eq!(repo.full_name.to_string(), s(v, "/repository/full_name"));
    assert_eq!(repo.default_branch, s(v, "/repository/default_branch"));
    assert_eq!(
        installation.map(|i| i.id.0),
        v.pointer("/installation/id").and_then(Value::as_u64)
    );
    assert_eq!(sender, s(v, "/sender/login"));
}

fn check_branch(v: &Value, at: &str, branch: &Branch) {
    assert_eq!(branch.name, s(v, &format!("{at}/ref")));
    assert_eq!(branch.sha, s(v, &format!("{at}/sha")));
    assert_eq!(
        branch.repo.as_ref().map(|r| r.full_name.to_string()),
        v.pointer(&format!("{at}/repo/full_name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    );
}

fn check_pull_request(v: &Value, pr: &PullRequest) {
    assert_eq!(pr.number, n(v, "/pull_request/number"));
    assert_eq!(pr.title, s(v, "/pull_request/title"));
    assert_eq!(pr.user.login, s(v, "/pull_request/user/login"));
    assert_eq!(
        pr.draft,
        v.pointer("/pull_request/draft")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    );
    check_branch(v, "/pull_request/head", &pr.head);
    check_branch(v, "/pull_request/base", &pr.base);
}

/// Checks `event` against the raw JSON `v`; returns the name of the variant it checked.
fn check(event_name: &str, v: &Value, event: &Event) -> &'static str {
    match event {
        Event::PullRequest(PullRequestEvent {
            action,
            pull_request,
            repository,
            installation,
            sender,
        }) => {
            assert_eq!(event_name, "pull_request");
            check_common(v, repository, *installation, &sender.login);
            check_pull_request(v, pull_request);
            match action {
                PullRequestAction::Opened => assert_eq!(s(v, "/action"), "opened"),
                PullRequestAction::Reopened => assert_eq!(s(v, "/action"), "reopened"),
                PullRequestAction::Synchronize { before, after } => {
                    assert_eq!(s(v, "/action"), "synchronize");
                    assert_eq!(before, s(v, "/before"));
                    assert_eq!(after, s(v, "/after"));
                }
                PullRequestAction::Closed { merged } => {
                    assert_eq!(s(v, "/action"), "closed");
                    assert_eq!(
                        Some(*merged),
                        v.pointer("/pull_request/merged").and_then(Value::as_bool)
                    );
                }
            }
            "pull_request"
        }
        Event::PullRequestReview(ReviewEvent {
            action,
            review,
            pull_request,
            repository,
            installation,
            sender,
        }) => {
            assert_eq!(event_name, "pull_request_review");
            check_common(v, repository, *installation, &sender.login);
            check_pull_request(v, pull_request);
            let expected_action = match action {
                ReviewAction::Submitted => "submitted",
                ReviewAction::Dismissed => "dismissed",
            };
            assert_eq!(s(v, "/action"), expected_action);
            assert_eq!(review.id, n(v, "/review/id"));
            assert_eq!(review.user.login, s(v, "/review/user/login"));
            assert_eq!(review.commit_id, s(v, "/review/commit_id"));
            let state = match review.state {
                ReviewState::Approved => "approved",
                ReviewState::ChangesRequested => "changes_requested",
                ReviewState::Commented => "commented",
                ReviewState::Dismissed => "dismissed",
                ReviewState::Pending => "pending",
            };
            assert_eq!(state, s(v, "/review/state").to_ascii_lowercase());
            "pull_request_review"
        }
        Event::IssueComment(CommentEvent {
            issue,
            comment,
            repository,
            installation,
            sender,
        }) => {
            assert_eq!(event_name, "issue_comment");
            assert_eq!(s(v, "/action"), "created");
            check_common(v, repository, *installation, &sender.login);
            assert_eq!(issue.number, n(v, "/issue/number"));
            assert_eq!(issue.user.login, s(v, "/issue/user/login"));
            assert_eq!(
                issue.is_pull_request(),
                v.pointer("/issue/pull_request").is_some()
            );
            assert_eq!(comment.id, n(v, "/comment/id"));
            assert_eq!(comment.body, s(v, "/comment/body"));
            assert_eq!(comment.user.login, s(v, "/comment/user/login"));
            "issue_comment"
        }
        Event::Push(push) => {
            let PushEvent {
                git_ref,
                before,
                after,
                created,
                deleted,
                forced,
                repository,
                pusher,
                sender,
                installation,
            } = push;
            assert_eq!(event_name, "push");
            check_common(v, repository, *installation, &sender.login);
            assert_eq!(git_ref, s(v, "/ref"));
            assert_eq!(before, s(v, "/before"));
            assert_eq!(after, s(v, "/after"));
            assert_eq!(Some(*created), v["created"].as_bool());
            assert_eq!(Some(*deleted), v["deleted"].as_bool());
            assert_eq!(Some(*forced), v["forced"].as_bool());
            assert_eq!(pusher.name, s(v, "/pusher/name"));
            let to_default = format!("refs/heads/{}", s(v, "/repository/default_branch"));
            assert_eq!(
                push.is_to_default_branch(),
                s(v, "/ref") == to_default && !deleted
            );
            "push"
        }
        Event::CheckRunRerequested(CheckRunEvent {
            check_run,
            repository,
            installation,
            sender,
        }) => {
            assert_eq!(event_name, "check_run");
            assert_eq!(s(v, "/action"), "rerequested");
            check_common(v, repository, *installation, &sender.login);
            assert_eq!(check_run.id, n(v, "/check_run/id"));
            assert_eq!(check_run.name, s(v, "/check_run/name"));
            assert_eq!(check_run.head_sha, s(v, "/check_run/head_sha"));
            assert_eq!(
                check_run.app.as_ref().map(|a| a.id),
                v.pointer("/check_run/app/id").and_then(Value::as_u64)
            );
            let prs = v["check_run"]["pull_requests"].as_array().unwrap();
            assert_eq!(check_run.pull_requests.len(), prs.len());
            for (i, pr) in check_run.pull_requests.iter().enumerate() {
                let at = format!("/check_run/pull_requests/{i}");
                assert_eq!(pr.number, n(v, &format!("{at}/number")));
                assert_eq!(pr.head.sha, s(v, &format!("{at}/head/sha")));
                assert_eq!(pr.base.name, s(v, &format!("{at}/base/ref")));
            }
            "check_run"
        }
        Event::Unsupported { event, action } => {
            assert_eq!(event, event_name);
            assert_eq!(action.as_deref(), v.get("action").and_then(Value::as_str));
            "unsupported"
        }
    }
}

#[test]
fn every_corpus_payload_parses_into_its_typed_event() {
    let Some(root) = corpus() else { return };
    let secret = WebhookSecret::new("corpus-replay-secret").unwrap();
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    let all = payloads(&root);
    assert!(
        all.len() >= 80,
        "only {} payloads under {}",
        all.len(),
        root.display()
    );
    for (event_name, file) in &all {
        let body = std::fs::read(file).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let signature = secret.sign(&body);
        let headers = DeliveryHeaders {
            signature: Some(&signature),
            delivery: Some("9f0c7a10-0000-11ef-8000-000000000000"),
            event: Some(event_name),
        };
        let delivery =
            receive(&secret, headers, &body).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let kind = check(event_name, &v, &delivery.event);
        let action = v.get("action").and_then(Value::as_str);
        let supported = SUPPORTED.contains(&(event_name.as_str(), action));
        assert_eq!(
            kind != "unsupported",
            supported,
            "{}: parsed as {kind}",
            file.display()
        );
        *seen.entry(kind).or_default() += 1;

        // The same delivery forged: one byte changed, or signed with another secret.
        let mut forged = body.clone();
        let last = forged.iter().rposition(|b| *b == b'}').unwrap();
        forged.insert(last, b' ');
        assert!(matches!(
            receive(&secret, headers, &forged),
            Err(WebhookError::SignatureMismatch)
        ));
        let other = WebhookSecret::new("not-the-secret").unwrap().sign(&body);
        let headers = DeliveryHeaders {
            signature: Some(&other),
            ..headers
        };
        assert!(matches!(
            receive(&secret, headers, &body),
            Err(WebhookError::SignatureMismatch)
        ));
    }
    // Every typed event is represented in the corpus.
    for kind in [
        "pull_request",
        "pull_request_review",
        "issue_comment",
        "push",
        "check_run",
        "unsupported",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} in the corpus: {seen:?}"
        );
    }
    eprintln!("parsed {} corpus payloads: {seen:?}", all.len());
}
