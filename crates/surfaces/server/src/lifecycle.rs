//! The end of a pull request, as the state locks see it (issue 11: "a lock is released when its
//! change is applied, merged or closed").
//!
//! - `pr.closed` (a `pull_request` `closed` delivery, merged or not): every stack lock the PR's
//!   changes hold is released, and the PR leaves the queues it waits in.
//! - `repo.push` (a push to the default branch): every lock holder or waiter whose recorded
//!   head is now contained in the default branch was merged: the same.
//!
//! Both go through the model's [`sluice_model::lock::Lock::close`], which never releases a
//! lock whose holder is applying (the apply's end decides) or that is kept after a failed apply
//! (recovery does). Locks are keyed by the PR (`repo#pr` of the recorded change, see
//! `ChangeContext::lock_owner`), so a PR's pushes share its place.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};
use sluice_model::lock::Closed;
use sluice_release::ChangeContext;
use sluice_store::{
    ChangeRecord, ChangeStore as _, EventRecord, LockStore as _, Store as _, Transaction,
};

use crate::App;
use crate::worker::{Ran, commit_failed, field, job_event};

/// Most recorded changes looked through for a lock holder's heads.
const CHANGE_SCAN_LIMIT: u32 = 10_000;

/// The lock owner a recorded change queues as.
async fn owner_of(app: &App, change: &str) -> Result<String, String> {
    ChangeContext::load(&app.store, change)
        .await
        .map(|ctx| ctx.lock_owner())
        .map_err(|e| format!("loading {change}: {e}"))
}

/// Closes `owners` on every lock they hold or wait for; what happened, one entry per lock
/// touched.
async fn close_all(app: &App, owners: &BTreeSet<String>) -> Result<Vec<Value>, String> {
    let locks = app.store.locks().await.map_err(|e| e.to_string())?;
    let now = sluice_release::apply::now();
    let mut out = Vec::new();
    for lock in locks {
        let involved: BTreeSet<&String> = lock
            .holder
            .iter()
            .map(|h| &h.change)
            .chain(lock.queue.iter().map(|w| &w.change))
            .filter(|c| owners.contains(*c))
            .collect();
        for owner in involved {
            let closed = app
                .store
                .close(&lock.unit, owner, now)
                .await
                .map_err(|e| e.to_string())?;
            let result = match &closed {
                Closed::Released { .. } => "released",
                Closed::NotHeld => "left the queue",
                Closed::ApplyInProgress { .. } => "kept: an apply is running",
                Closed::KeptForRecovery => "kept for recovery",
            };
            out.push(json!({"unit": lock.unit, "owner": owner, "result": result,
                "closed": closed}));
        }
    }
    Ok(out)
}

/// Completes `job` with `kind`'s event (and one `lock.released` event per released lock).
async fn finish(
    app: &App,
    job: &sluice_store::Job,
    lease: sluice_store::Lease,
    kind: &str,
    body: Value,
    closed: &[Value],
) -> Ran {
    let mut tx = Transaction::new();
    for c in closed.iter().filter(|c| c["result"] == "released") {
        tx.append_event(
            EventRecord::new(
                format!("lock:{}", c["unit"].as_str().unwrap_or_default()),
                "lock.released",
                json!({"unit": c["unit"], "holder": c["owner"], "cause": kind, "job": job.id}),
            ),
            None,
        );
    }
    tx.append_event(EventRecord::new(&job.serial_key, kind, body), None)
        .append_event(job_event(job, json!({"locks": closed.len()})), None)
        .complete_job(lease);
    match app.store.commit(tx).await {
        Ok(_) => {
            tracing::info!(key = %job.serial_key, kind, locks = closed.len(), "locks closed");
            Ran::Done
        }
        Err(e) => commit_failed(&e),
    }
}

/// `pr.closed`: the PR's changes give up their locks.
pub(crate) async fn closed(
    app: &Arc<App>,
    job: &sluice_store::Job,
    lease: sluice_store::Lease,
) -> Ran {
    let merged = job.payload["merged"].as_bool().unwrap_or(false);
    let changes = match crate::review::changes_at(app, &job.serial_key, None).await {
        Ok(c) => c,
        Err(e) => return Ran::Failed(e),
    };
    let mut owners = BTreeSet::new();
    for change in &changes {
        match owner_of(app, change).await {
            Ok(o) => {
                owners.insert(o);
            }
            Err(e) => return Ran::Failed(e),
        }
    }
    let closed = match close_all(app, &owners).await {
        Ok(c) => c,
        Err(e) => return Ran::Failed(e),
    };
    let body = json!({"job": job.id, "merged": merged, "changes": changes, "locks": closed});
    finish(app, job, lease, "pr.closed", body, &closed).await
}

/// Whether `head` is contained in `tip` (the PR's commit was merged, by a merge commit or a
/// fast-forward). A commit the repository does not have is not contained.
fn contains(repo: &std::path::Path, tip: &str, head: &str) -> Result<bool, String> {
    let git = sluice_flow::workspace::open(repo).map_err(|e| e.to_string())?;
    let tip = git.resolve(tip).map_err(|e| e.to_string())?;
    let Ok(head) = git.resolve(head) else {
        return Ok(false);
    };
    Ok(git.merge_base(head, tip).map_err(|e| e.to_string())? == Some(head))
}

/// `repo.push` to the default branch: lock owners whose recorded head it contains were merged.
pub(crate) async fn pushed(
    app: &Arc<App>,
    job: &sluice_store::Job,
    lease: sluice_store::Lease,
) -> Ran {
    let after = match field(&job.payload, "after") {
        Ok(a) => a.to_string(),
        Err(e) => return Ran::Failed(e),
    };
    if let Err(e) = app.revisions.ensure(&[&after]).await {
        return Ran::Failed(e);
    }
    let locks = match app.store.locks().await {
        Ok(l) => l,
        Err(e) => return Ran::Failed(e.to_string()),
    };
    let participants: BTreeSet<String> = locks
        .iter()
        .flat_map(|l| {
            l.holder
                .iter()
                .map(|h| h.change.clone())
                .chain(l.queue.iter().map(|w| w.change.clone()))
        })
        .collect();
    let mut merged = BTreeSet::new();
    if !participants.is_empty() {
        let records: Vec<ChangeRecord> = match app.store.changes(CHANGE_SCAN_LIMIT).await {
            Ok(r) => r,
            Err(e) => return Ran::Failed(e.to_string()),
        };
        for owner in participants {
            let heads: BTreeSet<String> = records
                .iter()
                .filter(|r| sluice_release::lock_owner(r) == owner)
                .map(|r| r.head.clone())
                .collect();
            let repo = app.revisions.path().to_path_buf();
            let tip = after.clone();
            let found = tokio::task::spawn_blocking(move || {
                for head in &heads {
                    if contains(&repo, &tip, head)? {
                        return Ok(Some(head.clone()));
                    }
                }
                Ok::<_, String>(None)
            })
            .await;
            match found {
                Ok(Ok(Some(_))) => {
                    merged.insert(owner);
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return Ran::Failed(e),
                Err(e) => return Ran::Failed(format!("git task: {e}")),
            }
        }
    }
    let closed = match close_all(app, &merged).await {
        Ok(c) => c,
        Err(e) => return Ran::Failed(e),
    };
    let body = json!({"job": job.id, "after": after, "merged": merged, "locks": closed});
    finish(app, job, lease, "push.merged", body, &closed).await
}
