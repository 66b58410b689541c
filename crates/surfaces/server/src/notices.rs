//! Notices to a PR's people about what happened outside the PR pipeline: a **degraded stack**
//! (an apply failed or was killed: issue 11 item 6, docs/approvals.md "After an apply") and a
//! **backport item** (a used break-glass grant ended: issue 12 item 5, docs/break-glass.md).
//!
//! Applies and break-glass grants are recorded in the store by whoever ran them (`sluice apply`
//! in CI or on a runner, `sluice break-glass`), not by this server, so the server looks at what
//! the store says rather than at events it was sent. Every few polls a sweep:
//!
//! 1. settles each lock (an apply whose lease ran out was killed: the stack becomes degraded,
//!    `sluice_release::apply::settle`) and records expired grants' backport items
//!    (`sluice_release::breakglass::sweep`);
//! 2. for each degraded stack, each open backport item, and each resolved backport item that
//!    was announced, finds the PR it belongs to (the change whose apply failed; the changes
//!    that applied under the grant) and the GitHub repository and installation the PR was
//!    published through;
//! 3. enqueues one job per notice, in one transaction with a delivery record named after the
//!    notice (`notice:degraded:<unit>:<fencing token>`, `notice:backport:<grant>:open|resolved`):
//!    a notice already recorded is a duplicate and nothing is written, so each is sent once,
//!    whichever replica sweeps first.
//!
//! The jobs run on the PR's serial key like every other job of the PR. A degraded stack sets
//! the head's `sluice` check run to failure (the stack, the change, the error class, resources
//! changed, the redacted excerpt and how to recover) and keeps a comment about it on the PR; a
//! backport item keeps a comment on each PR that applied under the grant, edited to say
//! *resolved* (by which PR and commit) once a merged PR brought Git back in line. Without a
//! GitHub App nothing is enqueued: the degraded stack stays visible in `/api/v1/locks` and
//! `sluice locks`, the backport item in `/api/v1/backports` and `sluice pr`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_model::apply::{Degradation, StackHealth};
use sluice_model::breakglass::{BackportItem, BackportStatus};
use sluice_model::redact::RedactionRules;
use sluice_store::{
    BreakGlassStore as _, ChangeRecord, ChangeStore as _, DeliveryRecord, EventRecord, JobFilter,
    JobQueue as _, LockStore as _, NewJob, ReleaseStore as _, Store as _, StoreError, Transaction,
};
use sluice_vcs::client::{CheckRunReport, CheckState, Conclusion};
use sluice_vcs::comment::CommentMarker;
use sluice_vcs::{InstallationId, RepoName};
use tokio::sync::watch;

use crate::App;
use crate::publish::{CHECK_NAME, PUBLISH_JOB, pull_request_url};
use crate::worker::{Ran, commit_failed, field, job_event};

/// The job telling a PR that a stack it applied is degraded.
pub const DEGRADED_JOB: &str = "notice.degraded";
/// The job keeping a PR's comment about a backport item.
pub const BACKPORT_JOB: &str = "notice.backport";

/// How often the sweep runs: every ten polls, within bounds.
pub fn sweep_interval(poll: Duration) -> Duration {
    (poll * 10).clamp(Duration::from_millis(200), Duration::from_secs(10))
}

/// The delivery id that makes a degraded stack's notice happen once: one per failure (a
/// stack degrades again only under a new fencing token).
pub fn degraded_notice_id(unit: &str, d: &Degradation) -> String {
    format!("notice:degraded:{unit}:{}", d.token)
}

/// The delivery id of a backport item's notice in one of its two states.
pub fn backport_notice_id(grant: &str, resolved: bool) -> String {
    format!(
        "notice:backport:{grant}:{}",
        if resolved { "resolved" } else { "open" }
    )
}

/// A stable comment marker for `what` (GitHub markers allow 32 characters of `[a-z0-9-]`):
/// `prefix-` and 64-bit FNV-1a of `what` in hex, the same in every version of sluice.
pub fn marker_key(prefix: &str, what: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in what.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{prefix}-{h:016x}")
}

/// The check run of a degraded stack: a failure, saying what the engine reported (already
/// redacted when the stack was degraded) and how to recover.
pub fn degraded_check(unit: &str, d: &Degradation, head: &str) -> CheckRunReport {
    CheckRunReport {
        name: CHECK_NAME.to_string(),
        head_sha: head.to_string(),
        state: CheckState::Completed(Conclusion::Failure),
        title: format!("{CHECK_NAME}: apply failed, {unit} is degraded"),
        summary: degraded_markdown(unit, d),
        external_id: Some(d.change.clone()),
    }
}

/// What the check run and the PR comment say about a degraded stack.
pub fn degraded_markdown(unit: &str, d: &Degradation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### `{unit}` is degraded\n\nThe apply of `{}` (fencing token {}) {} at {}. The \
         stack's lock is kept and every further apply is refused until it is recovered.\n",
        d.change,
        d.token,
        match d.error {
            sluice_model::apply::ApplyErrorClass::Killed => "was interrupted",
            _ => "failed",
        },
        d.at
    );
    let _ = writeln!(out, "- error class: `{}`", json_name(&d.error));
    let changed = serde_json::to_value(&d.changed).unwrap_or(Value::Null);
    let _ = writeln!(out, "- resources changed: `{changed}`");
    let _ = writeln!(
        out,
        "\nEngine output (redacted, last lines):\n\n```\n{}\n```\n",
        d.excerpt.replace("```", "'''")
    );
    let _ = writeln!(
        out,
        "Recover with `sluice recover {unit} --refresh-only` (shows what changed), then a new \
         plan, approval and apply; or an admin runs `sluice recover {unit} --reason \"…\"`."
    );
    out
}

/// What a PR comment says about a backport item.
pub fn backport_markdown(item: &BackportItem) -> String {
    let mut out = String::new();
    match &item.status {
        BackportStatus::Open => {
            let _ = writeln!(
                out,
                "### Backport needed: break-glass grant `{}` on `{}`\n\n{} opened the grant \
                 (\"{}\") and {} apply(ies) ran under it without the normal approvals; it ended \
                 at {}. Git must be brought back in line with what was applied: merge a PR \
                 that changes `{}` to match. This item stays open until then \
                 (`sluice backports`, `/api/v1/backports`).",
                item.grant,
                item.unit,
                item.opened_by,
                item.reason,
                item.uses,
                item.ended_at,
                item.unit
            );
        }
        BackportStatus::Resolved { pr, commit } => {
            let _ = writeln!(
                out,
                "### Backport resolved: break-glass grant `{}` on `{}`\n\nPR #{pr} (commit \
                 `{commit}`) brought Git back in line with what was applied under the grant.",
                item.grant, item.unit
            );
        }
    }
    out
}

fn json_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// Where a PR was published: its GitHub repository, number, installation and key.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    repo: String,
    pr: u64,
    installation: u64,
    key: String,
}

/// The publication of the latest publish job that listed `change_id`.
async fn target_of(app: &App, change_id: &str) -> Result<Option<Target>, StoreError> {
    let jobs = app.store.jobs(&JobFilter::default(), 1000).await?;
    Ok(jobs
        .iter()
        .filter(|j| j.kind == PUBLISH_JOB)
        .find(|j| {
            j.payload["changes"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == change_id))
        })
        .and_then(|j| {
            Some(Target {
                repo: j.payload["repo"].as_str()?.to_string(),
                pr: j.payload["pr"].as_u64()?,
                installation: j.payload["installation"].as_u64()?,
                key: j.serial_key.clone(),
            })
        }))
}

/// The change a degradation names: its change id, or (an interrupted apply, known only by the
/// lock holder `repo#pr`) the latest change of that PR for the unit.
async fn degraded_change(
    app: &App,
    unit: &str,
    d: &Degradation,
) -> Result<Option<ChangeRecord>, StoreError> {
    if let Some(c) = app.store.change(&d.change).await? {
        return Ok(Some(c));
    }
    let mut changes = app.store.changes(10_000).await?;
    changes.retain(|c| c.unit == unit && sluice_release::lock_owner(c) == d.change);
    Ok(changes.into_iter().max_by_key(|c| c.created_at))
}

/// The changes that applied under `grant` (from its `breakglass.used` events).
async fn grant_changes(app: &App, grant: &str) -> Result<Vec<String>, StoreError> {
    let key = sluice_release::breakglass::event_key(grant);
    let mut out = Vec::new();
    for e in app.store.events(Some(key.as_str()), 0, 1000).await? {
        if e.kind == "breakglass.used"
            && let Some(c) = e.payload["change_id"].as_str()
            && !out.iter().any(|o| o == c)
        {
            out.push(c.to_string());
        }
    }
    Ok(out)
}

/// Enqueues `job` once under `delivery_id`; false when it was enqueued before.
async fn once(app: &App, delivery_id: &str, event: &str, job: NewJob) -> Result<bool, StoreError> {
    if app.store.delivery(delivery_id).await?.is_some() {
        return Ok(false);
    }
    let mut tx = Transaction::new();
    tx.record_delivery(DeliveryRecord {
        delivery_id: delivery_id.to_string(),
        event: event.to_string(),
        action: None,
        jobs: 1,
        received_at: sluice_store::now_millis(),
    })
    .enqueue(job);
    match app.store.commit(tx).await {
        Ok(_) => Ok(true),
        Err(StoreError::Duplicate { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

fn job(app: &App, kind: &str, target: &Target, head: Option<&str>, mut payload: Value) -> NewJob {
    payload["repo"] = json!(target.repo);
    payload["pr"] = json!(target.pr);
    payload["installation"] = json!(target.installation);
    let mut job = NewJob::new(kind, &target.key, payload);
    job.head_sha = head.map(str::to_string);
    job.max_attempts = app.config.max_attempts;
    job
}

/// One sweep (see the module documentation); returns how many notices it enqueued.
pub async fn sweep(app: &App) -> Result<usize, String> {
    let e = |e: StoreError| e.to_string();
    let now = sluice_release::apply::now();
    // The org's redaction rules are the plan config's; the defaults still hide secrets the
    // engine printed (the excerpt of a failed apply was redacted with the org's rules).
    let rules = RedactionRules::default();
    for lock in app.store.locks().await.map_err(e)? {
        sluice_release::apply::settle(&app.store, &lock.unit, &rules)
            .await
            .map_err(|e| e.to_string())?;
    }
    sluice_release::breakglass::sweep(&app.store, now)
        .await
        .map_err(|e| e.to_string())?;
    if app.github.is_none() {
        return Ok(0);
    }
    let mut sent = 0;
    for (unit, health) in app.store.unhealthy().await.map_err(e)? {
        let StackHealth::Degraded { degradation } = health else {
            continue;
        };
        let id = degraded_notice_id(&unit, &degradation);
        if app.store.delivery(&id).await.map_err(e)?.is_some() {
            continue;
        }
        let Some(change) = degraded_change(app, &unit, &degradation).await.map_err(e)? else {
            continue;
        };
        let Some(target) = target_of(app, &change.change_id).await.map_err(e)? else {
            continue;
        };
        let payload = json!({"unit": unit, "change_id": change.change_id,
            "head_sha": change.head, "degradation": degradation});
        let job = job(app, DEGRADED_JOB, &target, Some(&change.head), payload);
        sent += usize::from(once(app, &id, "stack.degraded", job).await.map_err(e)?);
    }
    for item in app.store.backports(false).await.map_err(e)? {
        let resolved = matches!(item.status, BackportStatus::Resolved { .. });
        let id = backport_notice_id(&item.grant, resolved);
        if app.store.delivery(&id).await.map_err(e)?.is_some() {
            continue;
        }
        // A resolution is told only where the item was announced.
        if resolved
            && app
                .store
                .delivery(&backport_notice_id(&item.grant, false))
                .await
                .map_err(e)?
                .is_none()
        {
            continue;
        }
        let mut targets: Vec<Target> = Vec::new();
        for change in grant_changes(app, &item.grant).await.map_err(e)? {
            if let Some(t) = target_of(app, &change).await.map_err(e)?
                && !targets.iter().any(|o| o.key == t.key)
            {
                targets.push(t);
            }
        }
        let Some(first) = targets.first() else {
            continue;
        };
        let payload = json!({"item": item,
            "prs": targets.iter().map(|t| t.pr).collect::<Vec<_>>()});
        let job = job(app, BACKPORT_JOB, first, None, payload);
        sent += usize::from(once(app, &id, "backport", job).await.map_err(e)?);
    }
    Ok(sent)
}

/// Sweeps until shutdown (one replica or many: the delivery records keep notices single).
pub(crate) async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    // Without a GitHub App there is nobody to tell here: `sluice locks`, `sluice apply` and
    // `sluice pr` settle locks and record expiries themselves when they read them.
    if app.github.is_none() {
        return;
    }
    let every = sweep_interval(app.config.poll);
    loop {
        match sweep(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(notices = n, "notices enqueued"),
            Err(error) => tracing::warn!(%error, "the notice sweep failed; trying again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

fn github_target(payload: &Value) -> Result<(RepoName, u64, InstallationId), String> {
    let repo_text = field(payload, "repo")?;
    let repo: RepoName = repo_text
        .parse()
        .map_err(|e| format!("job payload `repo` {repo_text:?}: {e}"))?;
    let pr = payload["pr"].as_u64().ok_or("job payload lacks `pr`")?;
    let installation = payload["installation"]
        .as_u64()
        .ok_or("job payload lacks `installation`")?;
    Ok((repo, pr, InstallationId(installation)))
}

async fn finish(
    app: &Arc<App>,
    job: &sluice_store::Job,
    lease: sluice_store::Lease,
    kind: &str,
    what: Value,
) -> Ran {
    let mut tx = Transaction::new();
    tx.append_event(EventRecord::new(&job.serial_key, kind, what.clone()), None)
        .append_event(job_event(job, what), None)
        .complete_job(lease);
    match app.store.commit(tx).await {
        Ok(_) => Ran::Done,
        Err(e) => commit_failed(&e),
    }
}

/// A `notice.degraded` job: the head's check run to failure, and the PR comment about the
/// stack.
pub(crate) async fn degraded(
    app: &Arc<App>,
    job: &sluice_store::Job,
    lease: sluice_store::Lease,
) -> Ran {
    let Some(github) = &app.github else {
        return Ran::Failed("this replica has no GitHub App configured".into());
    };
    let (repo, pr, installation) = match github_target(&job.payload) {
        Ok(t) => t,
        Err(e) => return Ran::Failed(e),
    };
    let (unit, head) = match (field(&job.payload, "unit"), field(&job.payload, "head_sha")) {
        (Ok(u), Ok(h)) => (u.to_string(), h.to_string()),
        (Err(e), _) | (_, Err(e)) => return Ran::Failed(e),
    };
    let d: Degradation = match serde_json::from_value(job.payload["degradation"].clone()) {
        Ok(d) => d,
        Err(e) => return Ran::Failed(format!("job payload `degradation`: {e}")),
    };
    let client = github.installation(installation);
    let mut check = degraded_check(&unit, &d, &head);
    check.summary.push_str(&format!(
        "\n\n[The pull request]({})",
        pull_request_url(github.config().api_url.as_str(), &repo.to_string(), pr)
    ));
    let check_run = match client.publish_check_run(&repo, &check).await {
        Ok(id) => id,
        Err(e) => return Ran::Failed(format!("publishing the check run: {e}")),
    };
    let marker = CommentMarker::new(&marker_key("degraded", &unit)).expect("a valid marker");
    let comments = match client
        .upsert_comment(&repo, pr, &marker, &[degraded_markdown(&unit, &d)])
        .await
    {
        Ok(ids) => ids,
        Err(e) => return Ran::Failed(format!("publishing the PR comment: {e}")),
    };
    tracing::warn!(unit = %unit, change = %d.change, check_run, "degraded stack published");
    finish(
        app,
        job,
        lease,
        "notice.degraded_published",
        json!({"job": job.id, "unit": unit, "change": d.change, "token": d.token,
            "check_run": check_run, "comments": comments}),
    )
    .await
}

/// A `notice.backport` job: the item's comment on each PR that applied under the grant, as
/// open or resolved.
pub(crate) async fn backport(
    app: &Arc<App>,
    job: &sluice_store::Job,
    lease: sluice_store::Lease,
) -> Ran {
    let Some(github) = &app.github else {
        return Ran::Failed("this replica has no GitHub App configured".into());
    };
    let (repo, _, installation) = match github_target(&job.payload) {
        Ok(t) => t,
        Err(e) => return Ran::Failed(e),
    };
    let item: BackportItem = match serde_json::from_value(job.payload["item"].clone()) {
        Ok(i) => i,
        Err(e) => return Ran::Failed(format!("job payload `item`: {e}")),
    };
    let prs: Vec<u64> = job.payload["prs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let client = github.installation(installation);
    let marker = CommentMarker::new(&marker_key("backport", &item.grant)).expect("a valid marker");
    let body = backport_markdown(&item);
    let mut comments = Vec::new();
    for pr in &prs {
        match client.upsert_comment(&repo, *pr, &marker, &[&body]).await {
            Ok(ids) => comments.extend(ids),
            Err(e) => return Ran::Failed(format!("commenting on PR #{pr}: {e}")),
        }
    }
    finish(
        app,
        job,
        lease,
        "notice.backport_published",
        json!({"job": job.id, "grant": item.grant, "status": item.status, "prs": prs,
            "comments": comments}),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::apply::{ApplyErrorClass, EngineReport, ResourcesChanged};
    use sluice_model::exception::Timestamp;
    use sluice_model::lock::FencingToken;

    fn degradation() -> Degradation {
        Degradation::new(
            "acme#7@abc1234/dev/dev/eu-west-1/app",
            FencingToken(4),
            Timestamp::from_unix(1_700_000_000, 0),
            EngineReport {
                changed: ResourcesChanged::Unknown,
                error: ApplyErrorClass::Killed,
                output: "Error: timeout; password=hunter2-canary".into(),
            },
            &RedactionRules::default(),
        )
    }

    #[test]
    fn markers_are_stable_valid_and_distinct() {
        let a = marker_key("degraded", "dev/eu-west-1/app");
        assert_eq!(a, marker_key("degraded", "dev/eu-west-1/app"));
        assert_ne!(a, marker_key("degraded", "dev/eu-west-1/db"));
        assert!(CommentMarker::new(&a).is_some(), "{a}");
        assert!(CommentMarker::new(&marker_key("backport", "bg-LONG_id/with:odd chars")).is_some());
        // FNV-1a of the empty string is its offset basis: the function is the published one.
        assert_eq!(marker_key("x", ""), "x-cbf29ce484222325");
    }

    #[test]
    fn a_degraded_stack_fails_the_check_and_says_how_to_recover_without_secrets() {
        let d = degradation();
        let c = degraded_check("dev/eu-west-1/app", &d, "abc");
        assert_eq!(c.state, CheckState::Completed(Conclusion::Failure));
        assert!(
            c.title.contains("dev/eu-west-1/app is degraded"),
            "{}",
            c.title
        );
        assert!(c.summary.contains("was interrupted"), "{}", c.summary);
        assert!(c.summary.contains("`killed`"), "{}", c.summary);
        assert!(
            c.summary
                .contains("sluice recover dev/eu-west-1/app --refresh-only")
        );
        assert!(!c.summary.contains("hunter2-canary"), "{}", c.summary);
        assert_eq!(
            degraded_notice_id("dev/eu-west-1/app", &d),
            "notice:degraded:dev/eu-west-1/app:4"
        );
    }

    #[test]
    fn a_backport_comment_says_open_then_resolved() {
        let mut item = BackportItem {
            grant: "bg-1".into(),
            unit: "prod/net".into(),
            opened_by: "carol".into(),
            reason: "outage".into(),
            uses: 1,
            ended_at: Timestamp::from_unix(1_700_000_000, 0),
            status: BackportStatus::Open,
        };
        assert!(backport_markdown(&item).contains("Backport needed"));
        item.status = BackportStatus::Resolved {
            pr: 9,
            commit: "c0ffee".into(),
        };
        let text = backport_markdown(&item);
        assert!(
            text.contains("Backport resolved") && text.contains("PR #9"),
            "{text}"
        );
        assert_ne!(
            backport_notice_id("bg-1", false),
            backport_notice_id("bg-1", true)
        );
    }
}
