//! What a PR's reviewers see on GitHub: the `sluice` check run on the head commit and the PR
//! report as sluice's comment, kept in place (edited, not re-posted) through the GitHub App.
//!
//! A pipeline job does not call GitHub itself: it enqueues a `pr.publish` job in the same
//! transaction that records its stages and completes it, so the report is published exactly
//! when it is on record, and a GitHub outage or rate limit is the queue's business (retry with
//! backoff, dead letter), never a reason to run the pipeline again. The publish job carries what
//! to show (rendered when the pipeline ran) and has the PR's serial key, so it runs after the
//! pipeline job and before the next head's; a newer push supersedes it.

use std::sync::Arc;

use serde_json::{Value, json};
use sluice_flow::pr::{PrReport, Verdict};
use sluice_store::{EventRecord, NewJob, Store as _, Transaction};
use sluice_vcs::client::{CheckRunReport, CheckState, Conclusion};
use sluice_vcs::comment::CommentMarker;
use sluice_vcs::{InstallationId, RepoName};

use crate::App;
use crate::worker::{Ran, commit_failed, field, job_event};

pub const PUBLISH_JOB: &str = "pr.publish";
/// The check run's name on every head commit.
pub const CHECK_NAME: &str = "sluice";
/// The marker of sluice's PR report comments.
pub const REPORT_MARKER: &str = "pr-report";

/// How a finished pipeline shows as a check conclusion. Approvals still to be given and plans
/// not yet run ask for action (the merge waits, nothing failed); a block fails the check.
pub fn conclusion(verdict: Verdict, details_url: &str) -> Conclusion {
    match verdict {
        Verdict::Allowed => Conclusion::Success,
        Verdict::ApprovalsRequired | Verdict::Undecided => Conclusion::ActionRequired {
            details_url: details_url.to_string(),
        },
        Verdict::PlanFailed
        | Verdict::Denied
        | Verdict::AppBlocked
        | Verdict::ValidationBlocked => Conclusion::Failure,
    }
}

/// The web address of a pull request, from the API's address: `api.github.com` serves
/// `github.com`; GitHub Enterprise Server serves its API under `https://HOST/api/v3`.
pub fn pull_request_url(api_url: &str, repo: &str, pr: u64) -> String {
    let api = api_url.trim_end_matches('/');
    let web = if let Some(rest) = api.strip_prefix("https://api.") {
        format!("https://{rest}")
    } else {
        api.strip_suffix("/api/v3").unwrap_or(api).to_string()
    };
    format!("{web}/{repo}/pull/{pr}")
}

/// The `pr.publish` job for a pipeline's report: the check run's title and summary and the
/// comment's parts, rendered now.
pub fn publish_job(
    report: &PrReport,
    repo: &str,
    pr: u64,
    installation: u64,
    max_attempts: u32,
) -> NewJob {
    let sections = sluice_report::pr::sections(report);
    let summary = sections.first().cloned().unwrap_or_default();
    let payload = json!({
        "repo": repo,
        "pr": pr,
        "head_sha": report.head,
        "installation": installation,
        "verdict": report.verdict,
        "title": format!("{}: {}", CHECK_NAME, report.verdict.as_str()),
        "summary": summary,
        "changes": report.changes.iter().map(|c| c.change_id.to_string()).collect::<Vec<_>>(),
        "parts": sluice_report::pr::render_markdown_parts(report),
    });
    let mut job = NewJob::new(PUBLISH_JOB, &crate::webhook::pr_key(repo, pr), payload);
    job.head_sha = Some(report.head.clone());
    job.max_attempts = max_attempts;
    job
}

/// What a publish job's payload says, read back.
struct Publication {
    repo: RepoName,
    pr: u64,
    installation: InstallationId,
    check: CheckRunReport,
    parts: Vec<String>,
}

fn publication(payload: &Value, api_url: &str) -> Result<Publication, String> {
    let repo_text = field(payload, "repo")?;
    let repo: RepoName = repo_text
        .parse()
        .map_err(|e| format!("job payload `repo` {repo_text:?}: {e}"))?;
    let pr = payload["pr"].as_u64().ok_or("job payload lacks `pr`")?;
    let installation = payload["installation"]
        .as_u64()
        .ok_or("job payload lacks `installation`")?;
    let verdict: Verdict = serde_json::from_value(payload["verdict"].clone())
        .map_err(|e| format!("job payload `verdict`: {e}"))?;
    let parts = payload["parts"]
        .as_array()
        .ok_or("job payload lacks `parts`")?
        .iter()
        .map(|p| p.as_str().map(str::to_string).ok_or("a part is not text"))
        .collect::<Result<Vec<_>, _>>()?;
    let head = field(payload, "head_sha")?.to_string();
    let details = pull_request_url(api_url, repo_text, pr);
    Ok(Publication {
        repo,
        pr,
        installation: InstallationId(installation),
        check: CheckRunReport {
            name: CHECK_NAME.to_string(),
            head_sha: head,
            state: CheckState::Completed(conclusion(verdict, &details)),
            title: field(payload, "title")?.to_string(),
            summary: field(payload, "summary")?.to_string(),
            external_id: payload["changes"][0].as_str().map(str::to_string),
        },
        parts,
    })
}

/// Run a `pr.publish` job: the check run, then the comment; the job completes with an event
/// naming what GitHub now shows. A GitHub error fails the attempt (the queue retries it).
pub(crate) async fn run(
    app: &Arc<App>,
    job: &sluice_store::Job,
    lease: sluice_store::Lease,
) -> Ran {
    let Some(github) = &app.github else {
        return Ran::Failed(
            "this replica has no GitHub App configured (SLUICE_GITHUB_APP_ID and \
             SLUICE_GITHUB_APP_KEY or SLUICE_GITHUB_APP_KEY_FILE)"
                .into(),
        );
    };
    let p = match publication(&job.payload, github.config().api_url.as_str()) {
        Ok(p) => p,
        Err(e) => return Ran::Failed(e),
    };
    let client = github.installation(p.installation);
    let check = match client.publish_check_run(&p.repo, &p.check).await {
        Ok(id) => id,
        Err(e) => return Ran::Failed(format!("publishing the check run: {e}")),
    };
    let marker = CommentMarker::new(REPORT_MARKER).expect("a valid marker key");
    let comments = match client
        .upsert_comment(&p.repo, p.pr, &marker, &p.parts)
        .await
    {
        Ok(ids) => ids,
        Err(e) => return Ran::Failed(format!("publishing the PR comment: {e}")),
    };
    let mut tx = Transaction::new();
    tx.append_event(
        EventRecord::new(
            &job.serial_key,
            "pr.published",
            json!({"job": job.id, "head": p.check.head_sha, "check_run": check,
                "comments": comments}),
        ),
        None,
    )
    .append_event(job_event(job, json!({"check_run": check})), None)
    .complete_job(lease);
    match app.store.commit(tx).await {
        Ok(_) => {
            tracing::info!(key = %job.serial_key, check_run = check, comments = ?comments,
                "published to GitHub");
            Ran::Done
        }
        Err(e) => commit_failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_map_to_conclusions() {
        let url = "https://github.com/acme/infra/pull/7";
        assert_eq!(conclusion(Verdict::Allowed, url), Conclusion::Success);
        for v in [Verdict::ApprovalsRequired, Verdict::Undecided] {
            assert_eq!(
                conclusion(v, url),
                Conclusion::ActionRequired {
                    details_url: url.into()
                }
            );
        }
        for v in [
            Verdict::PlanFailed,
            Verdict::Denied,
            Verdict::AppBlocked,
            Verdict::ValidationBlocked,
        ] {
            assert_eq!(conclusion(v, url), Conclusion::Failure, "{v:?}");
        }
    }

    #[test]
    fn pull_request_urls_follow_the_api_host() {
        assert_eq!(
            pull_request_url("https://api.github.com/", "acme/infra", 7),
            "https://github.com/acme/infra/pull/7"
        );
        assert_eq!(
            pull_request_url("https://ghe.acme.example/api/v3", "acme/infra", 7),
            "https://ghe.acme.example/acme/infra/pull/7"
        );
        assert_eq!(
            pull_request_url("http://127.0.0.1:9/", "acme/infra", 7),
            "http://127.0.0.1:9/acme/infra/pull/7"
        );
    }

    #[test]
    fn a_payload_missing_a_field_is_named() {
        let err = publication(&json!({"repo": "acme/infra"}), "https://api.github.com")
            .err()
            .unwrap();
        assert!(err.contains("`pr`"), "{err}");
    }
}
