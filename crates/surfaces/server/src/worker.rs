//! Workers: take a job claimed under a lease (one claim loop per process claims for all the
//! workers waiting, and one heartbeat keeps all their leases: [`sluice_store::feed`]), and
//! finish it in the same store transaction as the evidence it produced; a failed attempt is
//! retried with backoff, then dead-lettered. A job superseded by a newer head (or whose lease
//! another replica took over) loses its lease: its result is dropped, never recorded.
//!
//! What a `pr.pipeline` job runs: the PR pipeline's stages for the head (affected, validate,
//! render and diff of apps, the approval requirements) through `sluice_flow::pr::run`, each
//! stage recorded as a signed statement by the recorder. Stage 4 for stacks (the plan) needs a
//! runner with the engine and the stack's cloud role: the pipeline records it as not run yet
//! and, when the server has runners (`server.runners: true`, or `--runner`), queues in the
//! same transaction one `runner.plan` job per stack change ([`crate::runner`]). Server workers never claim those (`Claimant::Server`); runners do, over
//! `/api/v1/runner`, and their upload records stages 4–6 of the stack.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use sluice_recorder::evidence::{Identity, record_pr_with};
use sluice_store::feed::{Feed, FeedOptions, HeldJob};
use sluice_store::{
    Claimant, Claimed, EventRecord, JobQueue as _, Store as _, StoreError, Transaction,
};
use tokio::sync::watch;

use crate::App;
use crate::metrics::{JobOutcome, KindLabel, StageLabels, kind_label};
use crate::webhook::{COMMAND_JOB, PIPELINE_JOB};

/// How a job's run ended, before the queue is told.
pub(crate) enum Ran {
    /// Recorded and completed in one transaction.
    Done,
    /// The lease was lost (superseded, or taken over): nothing was recorded.
    LeaseLost(String),
    Failed(String),
}

/// The claim loop this process's workers share ([`sluice_store::feed`]): one claim for all the
/// workers waiting, one heartbeat for all the leases held.
pub fn feed(app: &Arc<App>, shutdown: watch::Receiver<bool>) -> Feed {
    Feed::start(
        app.store.clone(),
        FeedOptions {
            owner: format!("{}/feed", app.config.replica),
            lease: app.config.lease,
            poll: app.config.poll,
            max_batch: app.config.claim_batch,
            claimant: Claimant::Server,
        },
        shutdown,
    )
}

/// One worker: runs the jobs `feed` hands it until the feed shuts down.
pub async fn run(
    app: Arc<App>,
    index: usize,
    feed: Arc<Feed>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = format!("{}/w{index}", app.config.replica);
    while let Some(held) = feed.next().await {
        tracing::debug!(worker = %name, job = %held.claimed.job.id, "job taken");
        run_one(&app, held, &mut shutdown).await;
    }
}

async fn run_one(app: &Arc<App>, held: HeldJob, shutdown: &mut watch::Receiver<bool>) {
    let Claimed { job, lease } = held.claimed.clone();
    let started = Instant::now();
    let waited_from = job.run_at.max(job.created_at);
    let waited = (sluice_store::now_millis() - waited_from).max(0) as f64 / 1000.0;
    app.metrics
        .job_wait
        .get_or_create(&KindLabel {
            kind: kind_label(&job.kind).into(),
        })
        .observe(waited);
    let span = tracing::info_span!("job", job = %job.id, kind = %job.kind, key = %job.serial_key,
        head = job.head_sha.as_deref().unwrap_or(""), attempt = job.attempts);
    tracing::info!(parent: &span, "job claimed");

    // The feed's heartbeat keeps the lease while the job runs and flags it when lost.
    let work = execute(app, &job, lease);
    tokio::pin!(work);
    let ran = tokio::select! {
        ran = &mut work => ran,
        _ = wait_for_shutdown(shutdown) => {
            // Finish what is running if it ends within the grace period, else give it back.
            match tokio::time::timeout(app.config.shutdown_grace, &mut work).await {
                Ok(ran) => ran,
                Err(_) => {
                    let _ = app.store.release(lease).await;
                    app.metrics.job(&job.kind, JobOutcome::Released, started.elapsed().as_secs_f64());
                    tracing::info!(job = %job.id, "job released at shutdown");
                    return;
                }
            }
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    match ran {
        Ran::Done => {
            app.metrics.job(&job.kind, JobOutcome::Succeeded, seconds);
            tracing::info!(job = %job.id, seconds, "job succeeded");
        }
        Ran::LeaseLost(why) => {
            app.metrics.job(&job.kind, JobOutcome::Cancelled, seconds);
            tracing::info!(job = %job.id, reason = %why, "job result dropped: lease lost");
        }
        Ran::Failed(error) => {
            app.metrics.job(&job.kind, JobOutcome::Failed, seconds);
            if held.lost() {
                tracing::info!(job = %job.id, error = %error, "job failed after its lease was lost");
                return;
            }
            match app.store.fail(lease, &error, app.config.backoff).await {
                Ok(state) => {
                    tracing::warn!(job = %job.id, error = %error, now = state.as_str(), "job failed")
                }
                Err(e) => tracing::warn!(job = %job.id, error = %e, "recording a failure failed"),
            }
        }
    }
}

async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            // The sender is gone: the server is exiting.
            return;
        }
    }
}

pub(crate) fn lease_lost(e: &StoreError) -> Option<String> {
    match e {
        StoreError::LeaseLost { reason, .. } => Some(reason.clone().unwrap_or_default()),
        _ => None,
    }
}

/// What a job's failed completing commit means: another worker holds the job now (its lease
/// lapsed), or the attempt failed and the queue retries it.
pub(crate) fn commit_failed(e: &StoreError) -> Ran {
    match lease_lost(e) {
        Some(why) => Ran::LeaseLost(why),
        None => Ran::Failed(e.to_string()),
    }
}

async fn execute(app: &Arc<App>, job: &sluice_store::Job, lease: sluice_store::Lease) -> Ran {
    match job.kind.as_str() {
        PIPELINE_JOB => pipeline(app, job, lease).await,
        COMMAND_JOB => command(app, job, lease).await,
        crate::publish::PUBLISH_JOB => crate::publish::run(app, job, lease).await,
        crate::webhook::REVIEW_JOB => crate::review::run(app, job, lease).await,
        crate::webhook::CLOSED_JOB => crate::lifecycle::closed(app, job, lease).await,
        crate::webhook::PUSH_JOB => crate::lifecycle::pushed(app, job, lease).await,
        crate::notices::DEGRADED_JOB => crate::notices::degraded(app, job, lease).await,
        crate::notices::BACKPORT_JOB => crate::notices::backport(app, job, lease).await,
        other => Ran::Failed(format!("unknown job kind {other:?}")),
    }
}

pub(crate) fn field<'a>(payload: &'a Value, name: &str) -> Result<&'a str, String> {
    payload[name]
        .as_str()
        .ok_or_else(|| format!("job payload lacks `{name}`"))
}

/// The event that closes a job, written in its completion's transaction.
pub(crate) fn job_event(job: &sluice_store::Job, outcome: Value) -> EventRecord {
    EventRecord::new(
        &job.serial_key,
        "job.succeeded",
        json!({"job": job.id, "kind": job.kind, "attempt": job.attempts, "outcome": outcome}),
    )
}

async fn pipeline(app: &Arc<App>, job: &sluice_store::Job, lease: sluice_store::Lease) -> Ran {
    let (base, head, pr) = match (
        field(&job.payload, "base_sha"),
        field(&job.payload, "head_sha"),
        job.payload["pr"].as_u64(),
    ) {
        (Ok(b), Ok(h), Some(pr)) => (b.to_string(), h.to_string(), pr),
        (Err(e), _, _) | (_, Err(e), _) => return Ran::Failed(e),
        _ => return Ran::Failed("job payload lacks `pr`".into()),
    };
    if let Err(e) = app.revisions.ensure(&[&base, &head]).await {
        return Ran::Failed(e);
    }
    let repo = app.revisions.path().to_path_buf();
    let (b, h) = (base.clone(), head.clone());
    let report =
        match tokio::task::spawn_blocking(move || sluice_flow::pr::run(&repo, &b, &h, Some(pr)))
            .await
        {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => return Ran::Failed(format!("pipeline for {head}: {e}")),
            Err(e) => return Ran::Failed(format!("pipeline task: {e}")),
        };
    let who = Identity {
        actor: "sluice-serve".into(),
        identity: format!("sluice-serve:{}", app.config.replica),
    };
    let outcome = json!({"verdict": report.verdict.as_str(), "head": head,
        "changes": report.changes.iter().map(|c| c.change_id.to_string()).collect::<Vec<_>>()});
    let event = job_event(job, outcome);
    // What GitHub will show, published by its own job once this one's record is committed.
    let publish = match (
        &app.github,
        job.payload["installation"].as_u64(),
        field(&job.payload, "repo"),
    ) {
        (Some(_), Some(installation), Ok(repo)) => Some(crate::publish::publish_job(
            &report,
            repo,
            pr,
            installation,
            app.config.max_attempts,
        )),
        _ => None,
    };
    // Stage 4 of the stacks, for runners (when this server has them); queued with this
    // record or not at all.
    let plans = if app.config.queue_plans {
        let only: Vec<&str> = job.payload[PLAN_UNITS]
            .as_array()
            .map(|u| u.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        crate::runner::plan_jobs(
            &report,
            field(&job.payload, "repo").unwrap_or_default(),
            &app.config.repo.to_string(),
            job.payload["installation"].as_u64(),
            app.config.max_attempts,
        )
        .into_iter()
        .filter(|j| only.is_empty() || only.contains(&j.payload["unit"].as_str().unwrap_or("")))
        .collect()
    } else {
        Vec::new()
    };
    let result = if report.changes.is_empty() {
        let mut tx = Transaction::new();
        tx.append_event(event, None).complete_job(lease);
        if let Some(p) = &publish {
            tx.enqueue(p.clone());
        }
        app.store
            .commit(tx)
            .await
            .map(|_| ())
            .map_err(sluice_recorder::evidence::EvidenceError::from)
    } else {
        record_pr_with(&app.evidence, &report, &who, |tx: &mut Transaction| {
            tx.append_event(event.clone(), None).complete_job(lease);
            if let Some(p) = &publish {
                tx.enqueue(p.clone());
            }
            for plan in &plans {
                tx.enqueue(plan.clone());
            }
        })
        .await
        .map(|_| ())
    };
    match result {
        Ok(()) => {
            for change in &report.changes {
                tracing::info!(correlation_id = %change.change_id, unit = %change.id,
                    verdict = report.verdict.as_str(), "change recorded");
            }
            for stage in &report.stages {
                app.metrics
                    .stage_results
                    .get_or_create(&StageLabels {
                        stage: serde_json::to_value(stage.stage)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_else(|| "other".into()),
                        status: stage.status.as_str().into(),
                    })
                    .inc();
            }
            Ran::Done
        }
        Err(sluice_recorder::evidence::EvidenceError::Store(e)) => match lease_lost(&e) {
            Some(why) => Ran::LeaseLost(why),
            None => Ran::Failed(e.to_string()),
        },
        Err(e) => Ran::Failed(e.to_string()),
    }
}

/// The answer to a comment command, as the PR comment will say it.
pub fn command_answer(command: &str) -> String {
    use sluice_vcs::command::{Command, USAGE, parse};
    match parse(command) {
        Some(Command::Plan { .. }) => "Plans run in a runner with the engine and the stack's \
             cloud role. Nothing was queued: this server has no runners (`server.runners: \
             true` queues a plan job per stack change on every push, and on this command), or \
             no pipeline has run for this pull request yet. Run `sluice pr --run-plans` in CI \
             meanwhile."
            .to_string(),
        Some(Command::Apply { .. }) => "This server does not apply from comments yet. Apply \
             from a runner with `sluice apply CHANGE_ID`: it checks the approvals bound to the \
             recorded plan and applies exactly that plan under the stack's lock."
            .to_string(),
        Some(Command::Unlock { unit }) => format!(
            "This server does not unlock from comments yet. An admin unlocks `{unit}` with \
             `sluice unlock {unit} --reason \"…\"` (an audited action); `sluice locks` lists \
             the holders."
        ),
        Some(Command::Help { reason: Some(r) }) => format!("{r}.\n\n```\n{USAGE}\n```"),
        Some(Command::Help { reason: None }) | None => format!("```\n{USAGE}\n```"),
    }
}

/// Who may run a comment command, as far as this server can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandGate {
    /// `help` (and what is answered with help) needs no permission.
    Open,
    /// GitHub said the commenter holds this permission.
    Checked(sluice_vcs::command::Permission),
    /// No GitHub App (or no installation in the delivery): the permission cannot be asked.
    Unverifiable,
}

/// The reply to a command comment by `login`, given what is known of their permission (pure).
/// Commands that plan, apply or unlock need write access; without a GitHub App to ask, they are
/// refused (fail closed) and the reply says how to enable them.
pub fn command_reply(command: &str, login: &str, gate: &CommandGate) -> String {
    match gate {
        CommandGate::Open => command_answer(command),
        CommandGate::Checked(permission) => {
            match sluice_vcs::command::authorize(login, *permission) {
                Ok(()) => command_answer(command),
                Err(refused) => format!("{refused}."),
            }
        }
        CommandGate::Unverifiable => format!(
            "@{login}: this sluice server has no GitHub App configured, so it cannot check \
             your permission on this repository; `{command}` is refused. Commands that plan, \
             apply or unlock need `write`, `maintain` or `admin` permission, checked through \
             the App (SLUICE_GITHUB_APP_ID and SLUICE_GITHUB_APP_KEY_FILE)."
        ),
    }
}

/// Whether a parsed command needs the commenter's write permission.
pub fn needs_permission(command: &str) -> bool {
    use sluice_vcs::command::{Command, parse};
    matches!(
        parse(command),
        Some(Command::Plan { .. } | Command::Apply { .. } | Command::Unlock { .. })
    )
}

/// A re-run pipeline job's payload key: the units a `sluice plan UNIT…` comment named.
const PLAN_UNITS: &str = "plan_units";

/// For a `sluice plan [UNIT…]` command: the PR's latest pipeline job again (same base and head),
/// marked with the units named; `None` for other commands or a PR no pipeline ran for.
async fn replan_job(
    app: &App,
    job: &sluice_store::Job,
    text: &str,
) -> Result<Option<sluice_store::NewJob>, String> {
    use sluice_vcs::command::{Command, parse};
    let Some(Command::Plan { units }) = parse(text) else {
        return Ok(None);
    };
    let filter = sluice_store::JobFilter {
        state: None,
        serial_key: Some(job.serial_key.clone()),
    };
    let jobs = app
        .store
        .jobs(&filter, 1000)
        .await
        .map_err(|e| e.to_string())?;
    let Some(last) = jobs.iter().find(|j| j.kind == PIPELINE_JOB) else {
        return Ok(None);
    };
    let Some(head) = last.head_sha.as_deref() else {
        return Ok(None);
    };
    let mut payload = last.payload.clone();
    payload[PLAN_UNITS] = json!(units.iter().map(|u| u.as_str()).collect::<Vec<_>>());
    let mut again =
        sluice_store::NewJob::new(PIPELINE_JOB, &job.serial_key, payload).superseding(head);
    again.max_attempts = app.config.max_attempts;
    Ok(Some(again))
}

/// The reply comment's body: the command quoted, then the answer.
fn reply_body(command: &str, reply: &str) -> String {
    format!("> {command}\n\n{reply}")
}

async fn command(app: &Arc<App>, job: &sluice_store::Job, lease: sluice_store::Lease) -> Ran {
    let text = match field(&job.payload, "command") {
        Ok(t) => t.to_string(),
        Err(e) => return Ran::Failed(e),
    };
    let author = match field(&job.payload, "author") {
        Ok(a) => a.to_string(),
        Err(e) => return Ran::Failed(e),
    };
    let pr = job.payload["pr"].as_u64();
    // The installation client and the repository, when this server can talk to GitHub.
    let github = match (
        &app.github,
        job.payload["installation"].as_u64(),
        field(&job.payload, "repo")
            .ok()
            .and_then(|r| r.parse::<sluice_vcs::RepoName>().ok()),
        pr,
    ) {
        (Some(gh), Some(inst), Some(repo), Some(pr)) => {
            Some((gh.installation(sluice_vcs::InstallationId(inst)), repo, pr))
        }
        _ => None,
    };
    let gate = match (&github, needs_permission(&text)) {
        (_, false) => CommandGate::Open,
        (None, true) => CommandGate::Unverifiable,
        (Some((client, repo, _)), true) => {
            match client.collaborator_permission(repo, &author).await {
                Ok(p) => CommandGate::Checked(p),
                // A 5xx or rate limit past the client's retries: the queue tries again later.
                Err(e) => {
                    return Ran::Failed(format!("asking GitHub for @{author}'s permission: {e}"));
                }
            }
        }
    };
    let reply = command_reply(&text, &author, &gate);
    let permission = match &gate {
        CommandGate::Open => Value::Null,
        CommandGate::Checked(p) => json!(p.as_str()),
        CommandGate::Unverifiable => json!("unverifiable"),
    };
    let refused = match &gate {
        CommandGate::Open => false,
        CommandGate::Checked(p) => sluice_vcs::command::authorize(&author, *p).is_err(),
        CommandGate::Unverifiable => true,
    };
    // An allowed `sluice plan` on a server with runners: the PR head's pipeline runs again
    // (enqueued with this job's completion) and queues plan jobs for the units named, or all.
    let replan = match (refused, app.config.queue_plans) {
        (false, true) => match replan_job(app, job, &text).await {
            Ok(r) => r,
            Err(e) => return Ran::Failed(e),
        },
        _ => None,
    };
    let reply = match &replan {
        Some(p) => format!(
            "Plans queued for runners for `{}`{}: the check run shows each plan as it is \
             recorded.",
            p.head_sha.as_deref().unwrap_or_default(),
            match p.payload[PLAN_UNITS].as_array() {
                Some(units) if !units.is_empty() => format!(
                    " ({})",
                    units
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => String::new(),
            }
        ),
        None => reply,
    };
    // The reply goes to the PR before the job completes: a crash in between may post it twice
    // (at-least-once), never lose it.
    let reply_comment = match &github {
        Some((client, repo, pr)) => match client
            .create_comment(repo, *pr, &reply_body(&text, &reply))
            .await
        {
            Ok(id) => Some(id),
            Err(e) => return Ran::Failed(format!("replying on the pull request: {e}")),
        },
        None => None,
    };
    let mut tx = Transaction::new();
    tx.append_event(
        EventRecord::new(
            &job.serial_key,
            if refused {
                "command.refused"
            } else {
                "command.answered"
            },
            json!({"job": job.id, "command": text, "comment": job.payload["comment"],
                "author": author, "permission": permission, "reply": reply,
                "reply_comment": reply_comment}),
        ),
        None,
    )
    .append_event(
        job_event(job, json!({"command": text, "refused": refused})),
        None,
    )
    .complete_job(lease);
    if let Some(p) = replan {
        tx.enqueue(p);
    }
    match app.store.commit(tx).await {
        Ok(_) => Ran::Done,
        Err(e) => commit_failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_vcs::command::Permission;

    #[test]
    fn only_plan_apply_and_unlock_need_permission() {
        for c in ["sluice plan", "sluice apply a/b", "sluice unlock a/b"] {
            assert!(needs_permission(c), "{c}");
        }
        for c in ["sluice help", "sluice destroy", "sluice", "sluice unlock"] {
            assert!(!needs_permission(c), "{c}");
        }
    }

    #[test]
    fn replies_follow_the_gate() {
        let refused = command_reply(
            "sluice plan",
            "eve",
            &CommandGate::Checked(Permission::Triage),
        );
        assert!(
            refused.contains("@eve has `triage` permission"),
            "{refused}"
        );
        let ok = command_reply(
            "sluice plan",
            "amy",
            &CommandGate::Checked(Permission::Maintain),
        );
        assert_eq!(ok, command_answer("sluice plan"));
        let blind = command_reply("sluice apply", "amy", &CommandGate::Unverifiable);
        assert!(blind.contains("no GitHub App configured"), "{blind}");
        assert_eq!(
            command_reply("sluice help", "eve", &CommandGate::Open),
            command_answer("sluice help")
        );
    }
}
