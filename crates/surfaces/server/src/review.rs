//! `pr.review` jobs: a GitHub pull request review as an approval (DESIGN.md §3 "Approval",
//! stage 6, issue 11 item 1).
//!
//! An approving review (`submitted`, state `approved`) becomes a signed `approve` statement for
//! each change the server recorded for the *reviewed* commit (`review.commit_id`), bound to that
//! commit, the change's plan (or rendered) digest and policy decision digest, the approver
//! `github:<login>` and the approval groups the reviewer holds (team membership asked from
//! GitHub for the teams the change's approval requirements name). The server signs it with its
//! own evidence key, as an approver authority (the statement and the approvals index carry the
//! approval with the PR author as a DSSE envelope of its own, `review_envelope`, which
//! `sluice apply` verifies against the keys it trusts for reviews), through `sluice_release::approve`, the same path
//! the command line's `sluice approve` records through. A review of an older commit binds to
//! that commit's changes only: the binding rules void it for a newer head. The PR author's own
//! review is refused. A dismissal records the same approval again as `dismissed`: the latest
//! record per approver and binding stands (`sluice_model::binding::current`), so the approval
//! is void. Then the PR's check run and comment are published again with each change's
//! approval requirements as met (by whom, for which digest) or missing.
//!
//! Recording happens before the job's completion: a replica dying in between records the same
//! approval again on the retry (the approvals index keeps one row per review and action).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Value, json};
use sluice_flow::pr::Verdict;
use sluice_model::approval_status::{ApprovalStatus, Met, summarise};
use sluice_model::binding::vouched::ReviewApproval;
use sluice_model::binding::{Applying, Approval, ApprovalState, Membership, current, evaluate};
use sluice_model::people::PersonId;
use sluice_model::stage::Authority;
use sluice_recorder::evidence::Identity;
use sluice_release::ChangeContext;
use sluice_release::approve::{
    APPROVAL_DETAIL, ApprovalEntry, REVIEW_ENVELOPE_DETAIL, approvable, record_approval,
    sign_review,
};
use sluice_store::{
    ChangeStore as _, Digest, EventRecord, JobFilter, JobQueue as _, NewJob, ReleaseStore as _,
    Store as _, Transaction,
};

use crate::App;
use crate::publish::PUBLISH_JOB;
use crate::webhook::PIPELINE_JOB;
use crate::worker::{Ran, commit_failed, field, job_event};

/// The `source` of approvals recorded from GitHub reviews, in their statement and index row.
pub const SOURCE: &str = "github_review";

/// Marks a publish job's payload as re-published after a review.
const FROM_REVIEW: &str = "from_review";

/// A GitHub login as an approver: `github:<login>` (logins compare without case).
pub fn approver_of(login: &str) -> PersonId {
    PersonId::new(&format!("github:{login}"))
}

/// The principal a GitHub approver counts as personally (`@login`, as CODEOWNERS names users).
fn login_principal(approver: &PersonId) -> Option<String> {
    approver
        .as_str()
        .strip_prefix("github:")
        .map(|l| format!("@{l}"))
}

/// What a `pr.review` job's payload says.
#[derive(Debug, Clone, PartialEq)]
struct Review {
    repo: String,
    pr: u64,
    dismissed: bool,
    id: u64,
    commit: String,
    reviewer: String,
    author: String,
    installation: Option<u64>,
}

fn review_of(payload: &Value) -> Result<Review, String> {
    let number = |name: &str| {
        payload[name]
            .as_u64()
            .ok_or_else(|| format!("job payload lacks `{name}`"))
    };
    Ok(Review {
        repo: field(payload, "repo")?.to_string(),
        pr: number("pr")?,
        dismissed: field(payload, "action")? == "dismissed",
        id: number("review")?,
        commit: field(payload, "commit")?.to_string(),
        reviewer: field(payload, "reviewer")?.to_string(),
        author: field(payload, "author")?.to_string(),
        installation: payload["installation"].as_u64(),
    })
}

/// The teams among `ctx`'s approval requirements (`@org/team`), each once, in order.
fn required_teams(ctx: &ChangeContext) -> Vec<String> {
    let mut teams: Vec<String> = Vec::new();
    for r in &ctx.requirements {
        for a in &r.approvers {
            if sluice_vcs::client::team_of(a).is_some()
                && !teams.iter().any(|t| t.eq_ignore_ascii_case(a))
            {
                teams.push(a.clone());
            }
        }
    }
    teams
}

/// The approvals recorded from GitHub reviews for a change, as they stand now.
pub fn review_approvals(rows: &[sluice_store::ApprovalRow]) -> Vec<Approval> {
    let records: Vec<Approval> = rows
        .iter()
        .filter(|r| r.body["source"] == SOURCE)
        .filter_map(|r| serde_json::from_value(r.body[APPROVAL_DETAIL].clone()).ok())
        .collect();
    current(&records)
}

/// Each requirement of `ctx` met or missing under `approvals` (GitHub reviews), judged by the
/// model's binding rules against the change's own binding; the PR author (`author`) cannot
/// count. Membership is what GitHub said when each review was recorded.
pub fn status(ctx: &ChangeContext, approvals: &[Approval], author: &str) -> Option<ApprovalStatus> {
    let binding = ctx.binding()?;
    let mut membership = Membership::default();
    for a in approvals {
        for g in &a.groups {
            membership.add(g, &a.approver);
        }
        if let Some(p) = login_principal(&a.approver) {
            membership.add(&p, &a.approver);
        }
    }
    let authors = [approver_of(author)];
    let evaluation = evaluate(
        Applying {
            binding: &binding,
            authors: &authors,
        },
        &ctx.requirements,
        approvals,
        &membership,
        ctx.counting(),
    );
    Some(summarise(
        &ctx.requirements,
        approvals,
        &evaluation,
        binding.subject.digest(),
        &binding.decision_digest,
    ))
}

/// The approvals section the check run and the PR comment show after a review.
pub fn approvals_markdown(statuses: &BTreeMap<String, ApprovalStatus>) -> String {
    let mut out = String::from("\n\n### Approvals from reviews\n");
    for (change, s) in statuses {
        let _ = writeln!(
            out,
            "\n`{change}` (digest `{}`): {}",
            s.digest,
            if s.all_met {
                "every requirement is met"
            } else {
                "approvals missing"
            }
        );
        for r in &s.requirements {
            let who = match r.status {
                Met::Met => format!(
                    "met by {}",
                    r.by.iter()
                        .map(|b| format!("{} (as {})", b.person, b.via))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Met::Missing => format!("missing {} more", r.needed),
            };
            let _ = writeln!(out, "- {} ×{}: {who}", r.approvers.join(" or "), r.count);
        }
        for v in &s.void {
            let _ = writeln!(
                out,
                "- approval by {} does not count: {}",
                v.person,
                v.reasons.join("; ")
            );
        }
    }
    out
}

/// The changes the pipeline recorded for `commit` of the PR `key` (from its completion events),
/// or for every head of it when `commit` is `None`.
pub(crate) async fn changes_at(
    app: &App,
    key: &str,
    commit: Option<&str>,
) -> Result<Vec<String>, String> {
    let mut after = 0;
    let mut changes = Vec::new();
    loop {
        let page = app
            .store
            .events(Some(key), after, 500)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for e in &page {
            let outcome = &e.payload["outcome"];
            if e.kind == "job.succeeded"
                && e.payload["kind"] == PIPELINE_JOB
                && commit.is_none_or(|c| outcome["head"] == c)
            {
                let these = outcome["changes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str().map(str::to_string));
                match commit {
                    // The latest run for this head says which changes it has.
                    Some(_) => changes = these.collect(),
                    None => {
                        for c in these {
                            if !changes.contains(&c) {
                                changes.push(c);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(changes)
}

/// The pipeline's publish job payload for `commit` of the PR `key`, with the approval statuses
/// added; the verdict becomes `allowed` when approvals were all it waited for and every change
/// now has them.
async fn republish(
    app: &App,
    key: &str,
    commit: &str,
    statuses: &BTreeMap<String, ApprovalStatus>,
) -> Result<Option<NewJob>, String> {
    let filter = JobFilter {
        state: None,
        serial_key: Some(key.to_string()),
    };
    let jobs = app
        .store
        .jobs(&filter, 1000)
        .await
        .map_err(|e| e.to_string())?;
    // The pipeline's own publication (not an earlier review's): approvals are judged afresh
    // each time, so a dismissal can take back what an approval allowed.
    let Some(last) = jobs.iter().find(|j| {
        j.kind == PUBLISH_JOB
            && j.payload["head_sha"] == commit
            && j.payload.get(FROM_REVIEW).is_none()
    }) else {
        return Ok(None);
    };
    let mut payload = last.payload.clone();
    payload[FROM_REVIEW] = json!(true);
    let verdict: Option<Verdict> = serde_json::from_value(payload["verdict"].clone()).ok();
    let changes: Vec<&str> = payload["changes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let all_met = !changes.is_empty()
        && changes
            .iter()
            .all(|c| statuses.get(*c).is_some_and(|s| s.all_met));
    if verdict == Some(Verdict::ApprovalsRequired) && all_met {
        payload["verdict"] = json!(Verdict::Allowed);
        payload["title"] = json!(format!(
            "{}: {}",
            crate::publish::CHECK_NAME,
            Verdict::Allowed.as_str()
        ));
    }
    let section = approvals_markdown(statuses);
    let summary = format!("{}{section}", payload["summary"].as_str().unwrap_or(""));
    payload["summary"] = json!(summary);
    if let Some(parts) = payload["parts"].as_array_mut()
        && let Some(Value::String(last_part)) = parts.last_mut()
    {
        last_part.push_str(&section);
    }
    let mut job = NewJob::new(PUBLISH_JOB, key, payload);
    job.head_sha = Some(commit.to_string());
    job.max_attempts = app.config.max_attempts;
    Ok(Some(job))
}

/// What happened to one change.
fn noted(change: &str, what: &str, reason: Option<String>) -> Value {
    json!({"change": change, "result": what, "reason": reason})
}

pub(crate) async fn run(
    app: &Arc<App>,
    job: &sluice_store::Job,
    lease: sluice_store::Lease,
) -> Ran {
    let review = match review_of(&job.payload) {
        Ok(r) => r,
        Err(e) => return Ran::Failed(e),
    };
    let approver = approver_of(&review.reviewer);
    let github = match (&app.github, review.installation) {
        (Some(gh), Some(inst)) => Some(gh.installation(sluice_vcs::InstallationId(inst))),
        _ => None,
    };
    let mut results = Vec::new();
    let mut statuses = BTreeMap::new();
    let self_review = review.reviewer.eq_ignore_ascii_case(&review.author);
    let changes = match changes_at(app, &job.serial_key, Some(&review.commit)).await {
        Ok(c) => c,
        Err(e) => return Ran::Failed(e),
    };
    let service = app.evidence.with_authorities(&[Authority::Approver]);
    if self_review && !review.dismissed {
        results.push(noted(
            "",
            "refused",
            Some(format!(
                "@{} authored the pull request and cannot approve it",
                review.reviewer
            )),
        ));
    } else {
        for change in &changes {
            let ctx = match ChangeContext::load(&app.store, change).await {
                Ok(c) => c,
                Err(e) => return Ran::Failed(format!("loading {change}: {e}")),
            };
            let digest = Digest::of(
                format!(
                    "{SOURCE}:{}#{}:{}:{}:{change}",
                    review.repo,
                    review.pr,
                    review.id,
                    if review.dismissed {
                        "dismissed"
                    } else {
                        "approved"
                    }
                )
                .as_bytes(),
            )
            .0;
            let who = Identity {
                actor: approver.to_string(),
                identity: format!("github-review:{}#{}/{}", review.repo, review.pr, review.id),
            };
            let details = json!({"source": SOURCE, "review": review.id,
                "reviewed_commit": review.commit,
                "signed_by": format!("sluice-serve:{}", app.config.replica)});
            let row = json!({"source": SOURCE, "review": review.id});
            let approval = if review.dismissed {
                // The approval this review gave, if the server recorded one.
                let rows = match app.store.approvals(change).await {
                    Ok(r) => r,
                    Err(e) => return Ran::Failed(e.to_string()),
                };
                let given = rows.iter().rev().find_map(|r| {
                    let a: Approval =
                        serde_json::from_value(r.body[APPROVAL_DETAIL].clone()).ok()?;
                    (r.body["source"] == SOURCE
                        && r.body["review"] == review.id
                        && a.approver == approver
                        && a.state == ApprovalState::Given)
                        .then_some(a)
                });
                match given {
                    Some(a) => Approval {
                        state: ApprovalState::Dismissed,
                        ..a
                    },
                    None => {
                        results.push(noted(
                            change,
                            "nothing to dismiss",
                            Some("no approval from this review is on record".into()),
                        ));
                        continue;
                    }
                }
            } else {
                let binding = match approvable(&ctx) {
                    Ok(b) => b,
                    Err(e) => {
                        results.push(noted(change, "not approvable", Some(e.to_string())));
                        continue;
                    }
                };
                let mut groups = Vec::new();
                for team in required_teams(&ctx) {
                    let Some(client) = &github else { break };
                    match client.team_member(&team, &review.reviewer).await {
                        Ok(true) => groups.push(team),
                        Ok(false) => {}
                        Err(e) => {
                            return Ran::Failed(format!(
                                "asking GitHub whether @{} is in {team}: {e}",
                                review.reviewer
                            ));
                        }
                    }
                }
                Approval {
                    binding,
                    approver: approver.clone(),
                    groups,
                    state: ApprovalState::Given,
                }
            };
            // Signed by this server's evidence key, with the PR author, so that an apply run
            // anywhere that trusts the key counts it (and still bars the author).
            let envelope = sign_review(
                &app.evidence,
                &ReviewApproval {
                    approval: approval.clone(),
                    pr_author: approver_of(&review.author),
                    review: review.id,
                },
            );
            let (mut details, mut row) = (details, row);
            details[REVIEW_ENVELOPE_DETAIL] = json!(envelope);
            row[REVIEW_ENVELOPE_DETAIL] = json!(envelope);
            let entry = ApprovalEntry {
                binding: &approval.binding,
                approval: &approval,
                who,
                details,
                row,
                digest,
            };
            if let Err(e) = record_approval(&service, &ctx, entry).await {
                return Ran::Failed(format!("recording the approval of {change}: {e}"));
            }
            results.push(noted(
                change,
                if review.dismissed {
                    "dismissed"
                } else {
                    "approved"
                },
                None,
            ));
        }
    }
    // Every change of the reviewed commit as it stands now, for GitHub.
    for change in &changes {
        let ctx = match ChangeContext::load(&app.store, change).await {
            Ok(c) => c,
            Err(e) => return Ran::Failed(format!("loading {change}: {e}")),
        };
        let rows = match app.store.approvals(change).await {
            Ok(r) => r,
            Err(e) => return Ran::Failed(e.to_string()),
        };
        if let Some(s) = status(&ctx, &review_approvals(&rows), &review.author) {
            statuses.insert(change.clone(), s);
        }
    }
    // Published again only when the approval status changed.
    let changed = results
        .iter()
        .any(|r| r["result"] == "approved" || r["result"] == "dismissed");
    let publish = match (&github, statuses.is_empty() || !changed) {
        (Some(_), false) => {
            match republish(app, &job.serial_key, &review.commit, &statuses).await {
                Ok(p) => p,
                Err(e) => return Ran::Failed(e),
            }
        }
        _ => None,
    };
    let kind = match (self_review && !review.dismissed, changes.is_empty()) {
        (true, _) => "review.refused",
        (false, true) => "review.unbound",
        (false, false) if review.dismissed => "review.dismissed",
        (false, false) => "review.recorded",
    };
    let mut tx = Transaction::new();
    tx.append_event(
        EventRecord::new(
            &job.serial_key,
            kind,
            json!({"job": job.id, "review": review.id, "reviewer": review.reviewer,
                "approver": approver.as_str(), "commit": review.commit, "results": results,
                "statuses": statuses,
                "reason": changes.is_empty().then_some("no change is recorded for the reviewed commit")}),
        ),
        None,
    )
    .append_event(job_event(job, json!({"review": review.id, "kind": kind})), None)
    .complete_job(lease);
    if let Some(p) = publish {
        tx.enqueue(p);
    }
    match app.store.commit(tx).await {
        Ok(_) => {
            tracing::info!(key = %job.serial_key, review = review.id, kind, "review handled");
            Ran::Done
        }
        Err(e) => commit_failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviewers_are_github_people() {
        assert_eq!(approver_of("Alice").as_str(), "github:alice");
        assert_eq!(
            login_principal(&approver_of("alice")).as_deref(),
            Some("@alice")
        );
        assert_eq!(login_principal(&PersonId::new("alice")), None);
    }

    #[test]
    fn a_payload_missing_a_field_is_named() {
        let err = review_of(&json!({"repo": "a/b", "pr": 1})).unwrap_err();
        assert!(err.contains("`action`"), "{err}");
    }
}
