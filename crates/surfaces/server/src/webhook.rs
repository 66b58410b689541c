//! `/webhooks/github`: a delivery is verified (size, HMAC over the raw body, headers) before
//! anything parses it, then turned into jobs by [`plan_delivery`] (pure) and written in one
//! store transaction with its delivery row and its event: a redelivery (same
//! `X-GitHub-Delivery`) finds the row, is acknowledged and changes nothing; a forged, unsigned
//! or malformed one is refused and leaves no trace but a log line and a metric.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sluice_store::{
    DeliveryRecord, EventRecord, NewJob, Store as _, StoreError, Transaction, now_millis,
};
use sluice_vcs::event::{Event, PullRequestAction, ReviewAction, ReviewState};
use sluice_vcs::webhook::{DeliveryHeaders, WebhookError, receive};

use crate::App;
use crate::metrics::{WebhookOutcome, event_label};

pub const PIPELINE_JOB: &str = "pr.pipeline";
pub const COMMAND_JOB: &str = "pr.command";
pub const REVIEW_JOB: &str = "pr.review";
pub const CLOSED_JOB: &str = "pr.closed";
pub const PUSH_JOB: &str = "repo.push";

/// What one delivery leads to.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryPlan {
    /// The event row's key: `owner/repo#N` for a pull request, `owner/repo` otherwise.
    pub key: String,
    /// `webhook.<event>[.<action>]`.
    pub kind: String,
    /// What the event row says (no secrets: ids, names, commits).
    pub summary: Value,
    pub jobs: Vec<NewJob>,
    /// Cancel the unfinished jobs of a key (a closed pull request), with the reason.
    pub cancel: Option<(String, String)>,
}

/// The serialisation key of a pull request.
pub fn pr_key(repo: &str, number: u64) -> String {
    format!("{repo}#{number}")
}

/// The payload of a pipeline job for one PR head.
pub fn pipeline_payload(
    repo: &str,
    pr: u64,
    base: &str,
    head: &str,
    installation: Option<u64>,
) -> Value {
    json!({"repo": repo, "pr": pr, "base_sha": base, "head_sha": head, "installation": installation})
}

/// The command a job carries: the canonical form, except for a mistake answered with help,
/// whose line as written is kept (bounded) so the answer can say what was wrong with it.
fn command_text(body: &str, cmd: &sluice_vcs::command::Command) -> String {
    match cmd {
        sluice_vcs::command::Command::Help { reason: Some(_) } => body
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .trim()
            .chars()
            .take(200)
            .collect(),
        _ => cmd.to_string(),
    }
}

/// Which jobs a verified delivery creates (pure: the event in, the writes out).
pub fn plan_delivery(event_name: &str, event: &Event, max_attempts: u32) -> DeliveryPlan {
    let pipeline = |repo: &str, pr: u64, base: &str, head: &str, inst: Option<u64>| {
        let mut job = NewJob::new(
            PIPELINE_JOB,
            &pr_key(repo, pr),
            pipeline_payload(repo, pr, base, head, inst),
        )
        .superseding(head);
        job.max_attempts = max_attempts;
        job
    };
    match event {
        Event::PullRequest(e) => {
            let repo = e.repository.full_name.to_string();
            let pr = &e.pull_request;
            let key = pr_key(&repo, pr.number);
            let inst = e.installation.map(|i| i.id.0);
            let (action, jobs, cancel) = match &e.action {
                PullRequestAction::Opened => (
                    "opened",
                    vec![pipeline(&repo, pr.number, &pr.base.sha, &pr.head.sha, inst)],
                    None,
                ),
                PullRequestAction::Reopened => (
                    "reopened",
                    vec![pipeline(&repo, pr.number, &pr.base.sha, &pr.head.sha, inst)],
                    None,
                ),
                PullRequestAction::Synchronize { after, .. } => (
                    "synchronize",
                    vec![pipeline(&repo, pr.number, &pr.base.sha, after, inst)],
                    None,
                ),
                PullRequestAction::Closed { merged } => (
                    "closed",
                    // Enqueued after the cancellation in the same transaction, so it survives
                    // it: the PR's locks are released (or its place in their queues given up).
                    vec![{
                        let mut job = NewJob::new(
                            CLOSED_JOB,
                            &key,
                            json!({"repo": repo, "pr": pr.number, "merged": merged}),
                        );
                        job.max_attempts = max_attempts;
                        job
                    }],
                    Some((
                        key.clone(),
                        if *merged {
                            "the pull request was merged".to_string()
                        } else {
                            "the pull request was closed".to_string()
                        },
                    )),
                ),
            };
            DeliveryPlan {
                summary: json!({"repo": repo, "pr": pr.number, "action": action,
                    "base_sha": pr.base.sha, "head_sha": pr.head.sha, "sender": e.sender.login}),
                kind: format!("webhook.{event_name}.{action}"),
                key,
                jobs,
                cancel,
            }
        }
        Event::PullRequestReview(e) => {
            let repo = e.repository.full_name.to_string();
            let key = pr_key(&repo, e.pull_request.number);
            let action = match e.action {
                ReviewAction::Submitted => "submitted",
                ReviewAction::Dismissed => "dismissed",
            };
            // An approving review records an approval; a dismissal voids the one it gave.
            // Other reviews (comments, changes requested) are only events.
            let acts = match e.action {
                ReviewAction::Submitted => e.review.state == ReviewState::Approved,
                ReviewAction::Dismissed => true,
            };
            let jobs = if acts {
                // Not superseding: a review of an older head is still recorded (bound to the
                // commit it reviewed, it does not count for a newer head).
                let mut job = NewJob::new(
                    REVIEW_JOB,
                    &key,
                    json!({"repo": repo, "pr": e.pull_request.number, "action": action,
                        "review": e.review.id, "commit": e.review.commit_id,
                        "reviewer": e.review.user.login, "author": e.pull_request.user.login,
                        "installation": e.installation.map(|i| i.id.0)}),
                );
                job.max_attempts = max_attempts;
                vec![job]
            } else {
                Vec::new()
            };
            DeliveryPlan {
                key,
                kind: format!("webhook.{event_name}.{action}"),
                summary: json!({"repo": repo, "pr": e.pull_request.number, "review": e.review.id,
                    "state": format!("{:?}", e.review.state).to_lowercase(),
                    "commit": e.review.commit_id, "reviewer": e.review.user.login}),
                jobs,
                cancel: None,
            }
        }
        Event::IssueComment(e) => {
            let repo = e.repository.full_name.to_string();
            let key = pr_key(&repo, e.issue.number);
            let command = e
                .issue
                .is_pull_request()
                .then(|| sluice_vcs::command::parse(&e.comment.body))
                .flatten();
            let jobs = match &command {
                Some(cmd) => {
                    let mut job = NewJob::new(
                        COMMAND_JOB,
                        &key,
                        json!({"repo": repo, "pr": e.issue.number, "command": command_text(&e.comment.body, cmd),
                            "comment": e.comment.id, "author": e.comment.user.login,
                            "installation": e.installation.map(|i| i.id.0)}),
                    );
                    job.max_attempts = max_attempts;
                    vec![job]
                }
                None => Vec::new(),
            };
            DeliveryPlan {
                kind: format!("webhook.{event_name}"),
                summary: json!({"repo": repo, "pr": e.issue.number, "comment": e.comment.id,
                    "author": e.comment.user.login, "command": command.map(|c| c.to_string())}),
                key,
                jobs,
                cancel: None,
            }
        }
        Event::Push(e) => {
            let repo = e.repository.full_name.to_string();
            // A push to the default branch lands merges: the changes whose heads it contains
            // give up their locks. (Also the reconciler's cue once it exists.)
            let jobs = if e.is_to_default_branch() {
                let mut job = NewJob::new(
                    PUSH_JOB,
                    &repo,
                    json!({"repo": repo, "ref": e.git_ref, "after": e.after}),
                );
                job.max_attempts = max_attempts;
                vec![job]
            } else {
                Vec::new()
            };
            DeliveryPlan {
                kind: format!("webhook.{event_name}"),
                summary: json!({"repo": repo, "ref": e.git_ref, "before": e.before,
                    "after": e.after, "default_branch": e.is_to_default_branch()}),
                key: repo,
                jobs,
                cancel: None,
            }
        }
        Event::CheckRunRerequested(e) => {
            let repo = e.repository.full_name.to_string();
            let inst = e.installation.map(|i| i.id.0);
            let pr = e.check_run.pull_requests.first();
            DeliveryPlan {
                key: pr.map_or_else(|| repo.clone(), |p| pr_key(&repo, p.number)),
                kind: format!("webhook.{event_name}.rerequested"),
                summary: json!({"repo": repo, "check_run": e.check_run.id,
                    "head_sha": e.check_run.head_sha, "pr": pr.map(|p| p.number)}),
                jobs: pr
                    .map(|p| pipeline(&repo, p.number, &p.base.sha, &e.check_run.head_sha, inst))
                    .into_iter()
                    .collect(),
                cancel: None,
            }
        }
        Event::Unsupported { event, action } => DeliveryPlan {
            key: "github".into(),
            kind: format!("webhook.{}", event_label(Some(event.as_str()))),
            summary: json!({"event": event, "action": action, "ignored": true}),
            jobs: Vec::new(),
            cancel: None,
        },
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// The HTTP status for a refused delivery.
pub fn refusal_status(err: &WebhookError) -> StatusCode {
    if err.is_unauthenticated() {
        StatusCode::UNAUTHORIZED
    } else if matches!(err, WebhookError::BodyTooLarge { .. }) {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    }
}

pub async fn github(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let hdrs = DeliveryHeaders::from_map(&headers);
    let label = event_label(hdrs.event);
    let done = |outcome: WebhookOutcome| {
        app.metrics
            .webhook(label, outcome, started.elapsed().as_secs_f64())
    };
    let Some(secret) = &app.config.webhook_secret else {
        done(WebhookOutcome::Unauthenticated);
        tracing::warn!(
            "webhook refused: no webhook secret configured (set SLUICE_GITHUB_WEBHOOK_SECRET)"
        );
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "no webhook secret is configured on this server"}),
        );
    };
    if body.len() > app.config.max_body_bytes {
        done(WebhookOutcome::TooLarge);
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("body over {} bytes", app.config.max_body_bytes)}),
        );
    }
    let delivery = match receive(secret, hdrs, &body) {
        Ok(d) => d,
        Err(e) => {
            let status = refusal_status(&e);
            done(match status {
                StatusCode::UNAUTHORIZED => WebhookOutcome::Unauthenticated,
                StatusCode::PAYLOAD_TOO_LARGE => WebhookOutcome::TooLarge,
                _ => WebhookOutcome::Rejected,
            });
            tracing::warn!(status = status.as_u16(), error = %e, "webhook refused");
            return answer(status, json!({"error": e.to_string()}));
        }
    };
    let event_name = hdrs.event.unwrap_or_default();
    let plan = plan_delivery(event_name, &delivery.event, app.config.max_attempts);
    let action = plan
        .summary
        .get("action")
        .and_then(|a| a.as_str())
        .map(str::to_string);
    let mut tx = Transaction::new();
    tx.record_delivery(DeliveryRecord {
        delivery_id: delivery.id.to_string(),
        event: event_name.to_string(),
        action,
        jobs: plan.jobs.len() as u32,
        received_at: now_millis(),
    });
    let mut summary = plan.summary.clone();
    summary["delivery"] = json!(delivery.id.as_str());
    tx.append_event(EventRecord::new(&plan.key, &plan.kind, summary), None);
    // Plan jobs of an older head (or of a closed PR) wait under a key of their own.
    for (key, reason) in crate::runner::plan_cancellations(&plan) {
        tx.cancel_jobs(&key, &reason);
    }
    if let Some((key, reason)) = &plan.cancel {
        tx.cancel_jobs(key, reason);
    }
    for job in plan.jobs {
        tx.enqueue(job);
    }
    match app.store.commit(tx).await {
        Ok(committed) => {
            done(WebhookOutcome::Accepted);
            tracing::info!(delivery = %delivery.id, key = %plan.key, kind = %plan.kind,
                jobs = ?committed.job_ids, cancelled = ?committed.cancelled_jobs, "webhook accepted");
            answer(
                StatusCode::ACCEPTED,
                json!({"delivery": delivery.id.as_str(), "jobs": committed.job_ids,
                    "cancelled": committed.cancelled_jobs}),
            )
        }
        Err(StoreError::Duplicate { .. }) => {
            done(WebhookOutcome::Duplicate);
            tracing::info!(delivery = %delivery.id, "webhook redelivery ignored");
            answer(
                StatusCode::OK,
                json!({"delivery": delivery.id.as_str(), "duplicate": true}),
            )
        }
        Err(e) => {
            done(WebhookOutcome::StoreError);
            tracing::error!(delivery = %delivery.id, error = %e, "webhook not stored");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the store is unavailable; redeliver later"}),
            )
        }
    }
}
