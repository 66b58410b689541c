//! The job queue and token suite, written once over the traits and run against SQLite and
//! PostgreSQL (DESIGN.md §6: one trait, two implementations, the same suite).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use sluice_store::{
    Backoff, Claimant, DeliveryRecord, EventRecord, JobFilter, JobQueue, JobState, LeafInput,
    NewJob, Scope, Store, StoreError, TokenStore, Transaction, now_millis,
};

const LEASE: Duration = Duration::from_secs(30);

fn delivery(id: &str, jobs: u32) -> DeliveryRecord {
    DeliveryRecord {
        delivery_id: id.into(),
        event: "pull_request".into(),
        action: Some("opened".into()),
        jobs,
        received_at: now_millis(),
    }
}

fn event(key: &str) -> EventRecord {
    EventRecord::new(key, "webhook.pull_request", json!({"delivery": "x"}))
}

async fn enqueue<S: Store + JobQueue>(store: &S, key: &str, head: &str) -> sluice_store::JobId {
    let mut tx = Transaction::new();
    tx.enqueue(NewJob::new("pr.pipeline", key, json!({"head": head})).superseding(head));
    store.commit(tx).await.unwrap().job_ids[0]
}

async fn redelivery_is_refused_whole<S: Store + JobQueue>(store: &S) {
    let mut tx = Transaction::new();
    tx.record_delivery(delivery("d-1", 1))
        .append_event(event("o/r#1"), None)
        .enqueue(NewJob::new("pr.pipeline", "o/r#1", json!({})).superseding("aaa"));
    let done = store.commit(tx.clone()).await.unwrap();
    assert_eq!(done.job_ids.len(), 1);
    let err = store.commit(tx).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Duplicate { key, .. } if key == "d-1"),
        "{err}"
    );
    // Nothing of the second transaction was written: one job, one event.
    assert_eq!(
        store.jobs(&JobFilter::default(), 10).await.unwrap().len(),
        1
    );
    assert_eq!(store.events(Some("o/r#1"), 0, 10).await.unwrap().len(), 1);
    let d = store.delivery("d-1").await.unwrap().unwrap();
    assert_eq!((d.event.as_str(), d.jobs), ("pull_request", 1));
    let job = store.job(done.job_ids[0]).await.unwrap().unwrap();
    assert_eq!(job.delivery_id.as_deref(), Some("d-1"));
    assert_eq!(job.state, JobState::Queued);
}

async fn one_job_per_key_at_a_time_oldest_first<S: Store + JobQueue>(store: &S) {
    let a1 = enqueue(store, "o/r#1", "h1").await;
    let mut tx = Transaction::new();
    tx.enqueue(NewJob::new("pr.command", "o/r#1", json!({"cmd": "help"})));
    let a2 = store.commit(tx).await.unwrap().job_ids[0];
    let b1 = enqueue(store, "o/r#2", "h1").await;

    let first = store.claim("w1", LEASE).await.unwrap().unwrap();
    assert_eq!(first.job.id, a1);
    assert_eq!(first.job.state, JobState::Running);
    assert_eq!(first.job.attempts, 1);
    let second = store.claim("w2", LEASE).await.unwrap().unwrap();
    assert_eq!(second.job.id, b1, "a2 waits for a1 of the same key");
    assert!(store.claim("w3", LEASE).await.unwrap().is_none());

    let mut tx = Transaction::new();
    tx.complete_job(first.lease);
    store.commit(tx).await.unwrap();
    let third = store.claim("w3", LEASE).await.unwrap().unwrap();
    assert_eq!(third.job.id, a2);
    let depth = store.queue_depth().await.unwrap();
    assert_eq!((depth.queued, depth.running, depth.dead), (0, 2, 0));
    let done = store.job(a1).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert!(done.finished_at.is_some());
}

async fn an_expired_lease_moves_the_job_and_fences_the_old_worker<S: Store + JobQueue>(store: &S) {
    let id = enqueue(store, "o/r#3", "h1").await;
    let old = store
        .claim("dead-worker", Duration::from_millis(50))
        .await
        .unwrap()
        .unwrap();
    assert!(
        store.claim("w2", LEASE).await.unwrap().is_none(),
        "lease held"
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    let new = store.claim("w2", LEASE).await.unwrap().unwrap();
    assert_eq!(new.job.id, id);
    assert_eq!(new.lease.token, old.lease.token + 1);
    assert_eq!(new.job.attempts, 2);
    assert_eq!(new.job.lease_owner.as_deref(), Some("w2"));

    let err = store.heartbeat(old.lease, LEASE).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    assert!(err.to_string().contains("claimed again"), "{err}");
    // The old worker's completion, with its evidence, writes nothing.
    let mut tx = Transaction::new();
    tx.append_event(event("o/r#3"), None)
        .complete_job(old.lease);
    let err = store.commit(tx).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    assert!(store.events(Some("o/r#3"), 0, 10).await.unwrap().is_empty());

    store.heartbeat(new.lease, LEASE).await.unwrap();
    let mut tx = Transaction::new();
    let leaf = tx.append_leaf(LeafInput {
        entry: [7; 32],
        envelope_digest: None,
    });
    tx.append_event(event("o/r#3"), Some(leaf))
        .complete_job(new.lease);
    let done = store.commit(tx).await.unwrap();
    assert_eq!(done.event_ids.len(), 1);
    assert_eq!(
        store.job(id).await.unwrap().unwrap().state,
        JobState::Succeeded
    );
    // A second completion of the same lease is refused: a job completes once.
    let mut tx = Transaction::new();
    tx.complete_job(new.lease);
    assert!(matches!(
        store.commit(tx).await.unwrap_err(),
        StoreError::LeaseLost { .. }
    ));
}

async fn failures_back_off_then_go_dead<S: Store + JobQueue>(store: &S) {
    let mut tx = Transaction::new();
    let mut job = NewJob::new("pr.pipeline", "o/r#4", json!({}));
    job.max_attempts = 2;
    tx.enqueue(job);
    let id = store.commit(tx).await.unwrap().job_ids[0];
    let policy = Backoff {
        base: Duration::from_millis(150),
        max: Duration::from_secs(1),
    };
    let c = store.claim("w", LEASE).await.unwrap().unwrap();
    assert_eq!(
        store.fail(c.lease, "engine crashed", policy).await.unwrap(),
        JobState::Queued
    );
    let j = store.job(id).await.unwrap().unwrap();
    assert_eq!(j.last_error.as_deref(), Some("engine crashed"));
    assert!(j.run_at >= now_millis() + 50, "backoff applies");
    assert!(
        store.claim("w", LEASE).await.unwrap().is_none(),
        "not due yet"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = store.claim("w", LEASE).await.unwrap().unwrap();
    assert_eq!(c.job.attempts, 2);
    assert_eq!(
        store.fail(c.lease, "again", policy).await.unwrap(),
        JobState::Dead
    );
    let j = store.job(id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Dead);
    assert_eq!(j.reason.as_deref(), Some("failed 2 of 2 attempts"));
    assert_eq!(store.queue_depth().await.unwrap().dead, 1);
    assert!(store.claim("w", LEASE).await.unwrap().is_none());

    // A lease that expires on the last attempt is dead-lettered, not run a third time.
    let mut tx = Transaction::new();
    let mut job = NewJob::new("pr.pipeline", "o/r#5", json!({}));
    job.max_attempts = 1;
    tx.enqueue(job);
    let id = store.commit(tx).await.unwrap().job_ids[0];
    store
        .claim("w", Duration::from_millis(20))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(store.claim("w", LEASE).await.unwrap().is_none());
    let j = store.job(id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Dead);
    assert!(j.reason.unwrap().contains("lease expired"));
}

async fn a_newer_head_supersedes_queued_and_running_jobs<S: Store + JobQueue>(store: &S) {
    let running = enqueue(store, "o/r#6", "old").await;
    let queued = {
        let mut tx = Transaction::new();
        tx.enqueue(NewJob::new("pr.command", "o/r#6", json!({})).superseding("old"));
        store.commit(tx).await.unwrap().job_ids[0]
    };
    let other_pr = enqueue(store, "o/r#7", "old").await;
    let held = store.claim("w", LEASE).await.unwrap().unwrap();
    assert_eq!(held.job.id, running);

    let mut tx = Transaction::new();
    tx.enqueue(NewJob::new("pr.pipeline", "o/r#6", json!({})).superseding("new"));
    let done = store.commit(tx).await.unwrap();
    let mut cancelled = done.cancelled_jobs.clone();
    cancelled.sort();
    assert_eq!(cancelled, vec![running, queued]);
    for id in [running, queued] {
        let j = store.job(id).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Cancelled);
        assert_eq!(j.reason.as_deref(), Some("superseded by a newer head new"));
    }
    assert_eq!(
        store.job(other_pr).await.unwrap().unwrap().state,
        JobState::Queued
    );
    let err = store.heartbeat(held.lease, LEASE).await.unwrap_err();
    assert!(err.to_string().contains("superseded"), "{err}");
    // Next up: the other PR's job, then the new head's.
    let next = store.claim("w", LEASE).await.unwrap().unwrap();
    assert_eq!(next.job.id, other_pr);
    let next = store.claim("w", LEASE).await.unwrap().unwrap();
    assert_eq!(next.job.id, done.job_ids[0]);
    assert_eq!(next.job.head_sha.as_deref(), Some("new"));
}

async fn a_released_job_is_not_charged_an_attempt<S: Store + JobQueue>(store: &S) {
    let id = enqueue(store, "o/r#8", "h").await;
    let c = store.claim("w", LEASE).await.unwrap().unwrap();
    store.release(c.lease).await.unwrap();
    let j = store.job(id).await.unwrap().unwrap();
    assert_eq!((j.state, j.attempts), (JobState::Queued, 0));
    let c2 = store.claim("w2", LEASE).await.unwrap().unwrap();
    assert_eq!((c2.job.id, c2.job.attempts), (id, 1));
    assert!(store.release(c.lease).await.is_err(), "stale lease");
}

async fn concurrent_workers_complete_every_job_once<S: Store + JobQueue + Clone>(store: &S) {
    const JOBS: usize = 120;
    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(40) {
        let mut tx = Transaction::new();
        for i in chunk {
            // Three jobs per key: serialisation and skipping both get exercised.
            tx.enqueue(NewJob::new(
                "bench",
                &format!("k{}", i / 3),
                json!({"i": i}),
            ));
        }
        store.commit(tx).await.unwrap();
    }
    let completed: Arc<Mutex<HashMap<sluice_store::JobId, u32>>> = Arc::default();
    let running: Arc<Mutex<HashMap<String, sluice_store::JobId>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..6 {
        let store = store.clone();
        let completed = completed.clone();
        let running = running.clone();
        workers.push(tokio::spawn(async move {
            let mut idle = 0;
            while idle < 20 {
                let Some(c) = store.claim(&format!("w{w}"), LEASE).await.unwrap() else {
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                idle = 0;
                let clash = running
                    .lock()
                    .unwrap()
                    .insert(c.job.serial_key.clone(), c.job.id);
                assert!(clash.is_none(), "two jobs of one key ran at once");
                tokio::task::yield_now().await;
                running.lock().unwrap().remove(&c.job.serial_key);
                let mut tx = Transaction::new();
                tx.complete_job(c.lease);
                store.commit(tx).await.unwrap();
                *completed.lock().unwrap().entry(c.job.id).or_default() += 1;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let completed = completed.lock().unwrap().clone();
    assert_eq!(completed.len(), JOBS);
    assert!(completed.values().all(|&n| n == 1));
    let succeeded = store
        .jobs(
            &JobFilter {
                state: Some(JobState::Succeeded),
                serial_key: None,
            },
            1000,
        )
        .await
        .unwrap();
    assert_eq!(succeeded.len(), JOBS);
}

async fn runner_jobs_go_to_runners_and_the_rest_to_the_server<S: Store + JobQueue + TokenStore>(
    store: &S,
) {
    let server_job = enqueue(store, "o/r#1", "h1").await;
    let mut tx = Transaction::new();
    tx.enqueue(NewJob::new("runner.plan", "o/r#1:plan", json!({"unit": "a"})).superseding("h1"));
    let plan = store.commit(tx).await.unwrap().job_ids[0];
    // Runners see only the plan job; the server only its own, however old.
    let r = store
        .claim_for("runner", LEASE, Claimant::Runner)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.job.id, r.job.kind.as_str()), (plan, "runner.plan"));
    assert!(
        store
            .claim_for("runner2", LEASE, Claimant::Runner)
            .await
            .unwrap()
            .is_none()
    );
    let w = store
        .claim_for("w1", LEASE, Claimant::Server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.job.id, server_job);
    assert!(
        store
            .claim_for("w2", LEASE, Claimant::Server)
            .await
            .unwrap()
            .is_none()
    );
    // Runner tokens exist and are nothing else.
    let t = store.create_token(Scope::Runner, "ci").await.unwrap();
    assert_eq!(
        store.verify_token(&t.token).await.unwrap(),
        Some(Scope::Runner)
    );
    assert!(!Scope::Runner.allows(Scope::Read));
}

async fn a_batch_claim_takes_one_job_per_key_each_under_its_own_lease<S: Store + JobQueue>(
    store: &S,
) {
    let a1 = enqueue(store, "o/r#10", "h1").await;
    let mut tx = Transaction::new();
    tx.enqueue(NewJob::new("pr.command", "o/r#10", json!({"cmd": "plan"})));
    let a2 = store.commit(tx).await.unwrap().job_ids[0];
    let b1 = enqueue(store, "o/r#11", "h1").await;
    let c1 = enqueue(store, "o/r#12", "h1").await;

    // At most `limit`, oldest first.
    let two = store
        .claim_batch("w1", LEASE, 2, Claimant::Server)
        .await
        .unwrap();
    assert_eq!(two.iter().map(|c| c.job.id).collect::<Vec<_>>(), [a1, b1]);
    // a2 waits behind a1 of its key, even in a batch with room for it.
    let rest = store
        .claim_batch("w2", LEASE, 10, Claimant::Server)
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|c| c.job.id).collect::<Vec<_>>(), [c1]);
    assert!(
        store
            .claim_batch("w3", LEASE, 10, Claimant::Server)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .claim_batch("w3", LEASE, 0, Claimant::Server)
            .await
            .unwrap()
            .is_empty()
    );
    for c in two.iter().chain(&rest) {
        assert_eq!(c.job.state, JobState::Running);
        assert_eq!(c.lease.job_id, c.job.id);
        assert_eq!(
            c.job.lease_owner.as_deref(),
            Some(if c.job.id == c1 { "w2" } else { "w1" })
        );
    }

    // Each lease is its own: completing one leaves the other running, and a batch's
    // completions commit together.
    let mut tx = Transaction::new();
    tx.complete_job(two[0].lease);
    store.commit(tx).await.unwrap();
    assert_eq!(
        store.job(b1).await.unwrap().unwrap().state,
        JobState::Running
    );
    let next = store
        .claim_batch("w1", LEASE, 10, Claimant::Server)
        .await
        .unwrap();
    assert_eq!(next.iter().map(|c| c.job.id).collect::<Vec<_>>(), [a2]);
    let mut tx = Transaction::new();
    tx.complete_job(two[1].lease)
        .complete_job(rest[0].lease)
        .complete_job(next[0].lease);
    store.commit(tx).await.unwrap();
    let depth = store.queue_depth().await.unwrap();
    assert_eq!((depth.queued, depth.running), (0, 0));
}

/// Transactions committed at once each commit whole or fail alone: a redelivery among them is
/// refused with nothing of it written (not its leaf, event or job), and the others, their log
/// leaves included, are all written (the log stays consistent: the audit is clean).
async fn concurrent_commits_each_commit_or_fail_alone<S>(store: &S)
where
    S: Store + JobQueue + sluice_store::StateStore + sluice_store::LogStore + Clone,
{
    let mut first = Transaction::new();
    first
        .record_delivery(delivery("dup", 1))
        .append_event(event("o/r#20"), None)
        .enqueue(NewJob::new("pr.pipeline", "o/r#20", json!({})));
    store.commit(first).await.unwrap();
    let size_before = store.log_size().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..24u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = if i % 4 == 0 {
                "dup".to_string()
            } else {
                format!("d-{i}")
            };
            let key = format!("o/r#{}", 100 + u32::from(i));
            let mut tx = Transaction::new();
            let leaf = tx.append_leaf(LeafInput {
                entry: [i; 32],
                envelope_digest: None,
            });
            tx.record_delivery(delivery(&id, 1))
                .append_event(event(&key), Some(leaf))
                .enqueue(NewJob::new("pr.pipeline", &key, json!({"i": i})));
            (i, store.commit(tx).await)
        }));
    }
    let mut written = 0u64;
    for t in tasks {
        let (i, result) = t.await.unwrap();
        let key = format!("o/r#{}", 100 + u32::from(i));
        if i % 4 == 0 {
            let err = result.unwrap_err();
            assert!(
                matches!(&err, StoreError::Duplicate { key, .. } if key == "dup"),
                "{err}"
            );
            assert!(store.events(Some(&key), 0, 10).await.unwrap().is_empty());
        } else {
            let done = result.unwrap();
            assert_eq!(done.job_ids.len(), 1);
            assert_eq!(store.events(Some(&key), 0, 10).await.unwrap().len(), 1);
            written += 1;
        }
    }
    assert_eq!(written, 18);
    assert_eq!(store.log_size().await.unwrap(), size_before + written);
    assert_eq!(
        store.jobs(&JobFilter::default(), 100).await.unwrap().len(),
        1 + written as usize
    );
    let report = sluice_store::audit(store, &Default::default())
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

/// Pushes of one PR committed at once still supersede each other: exactly one head is left to
/// run, the others are cancelled as superseded (none of them missed a job committed beside it).
async fn concurrent_pushes_leave_one_head<S: Store + JobQueue + Clone>(store: &S) {
    let key = "o/r#30";
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let head = format!("head-{i}");
            let mut tx = Transaction::new();
            tx.record_delivery(delivery(&format!("push-{i}"), 1))
                .append_event(event(key), None)
                .enqueue(NewJob::new("pr.pipeline", key, json!({"i": i})).superseding(&head));
            store.commit(tx).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let filter = |state| JobFilter {
        state: Some(state),
        serial_key: Some(key.to_string()),
    };
    let queued = store.jobs(&filter(JobState::Queued), 100).await.unwrap();
    let cancelled = store.jobs(&filter(JobState::Cancelled), 100).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(cancelled.len(), 11);
    // The one left is the newest: every other was enqueued before it and cancelled by a later one.
    assert!(cancelled.iter().all(|j| j.id < queued[0].id));
}

async fn tokens_are_stored_hashed_and_checked<S: Store + TokenStore>(store: &S) {
    let read = store.create_token(Scope::Read, "dashboard").await.unwrap();
    let admin = store.create_token(Scope::Admin, "ops").await.unwrap();
    assert!(!format!("{read:?}").contains(&read.token[20..]));
    assert_eq!(
        store.verify_token(&read.token).await.unwrap(),
        Some(Scope::Read)
    );
    assert_eq!(
        store.verify_token(&admin.token).await.unwrap(),
        Some(Scope::Admin)
    );
    // Same id, another secret of the right shape.
    let mut forged = read.token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(store.verify_token(&forged).await.unwrap(), None);
    assert_eq!(store.verify_token("Bearer nonsense").await.unwrap(), None);
    assert!(store.revoke_token(&read.id).await.unwrap());
    assert_eq!(store.verify_token(&read.token).await.unwrap(), None);
    // State tokens carry the stacks they are for; no state token without them, and an API
    // scope cannot be made into one.
    let grants = sluice_store::StateGrants {
        read: vec!["dev/**".into()],
        write: vec!["dev/*/network".into()],
    };
    let state = store.create_state_token("ci", &grants).await.unwrap();
    let verified = store
        .verify_token_grants(&state.token)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (verified.scope, verified.name.as_str(), &verified.state),
        (Scope::State, "ci", &grants)
    );
    assert_eq!(
        store
            .verify_token_grants(&admin.token)
            .await
            .unwrap()
            .unwrap()
            .state,
        sluice_store::StateGrants::default()
    );
    assert!(
        store
            .create_state_token("none", &sluice_store::StateGrants::default())
            .await
            .is_err()
    );
    assert!(store.create_token(Scope::State, "bare").await.is_err());
    let listed = store.tokens().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(
        listed
            .iter()
            .any(|t| t.id == read.id && t.revoked_at.is_some())
    );
    assert!(listed.iter().any(|t| t.id == state.id && t.state == grants));
}

/// A transaction's jobs go in as one statement per run, in order; a superseding job among them
/// still cancels the ones of its key enqueued before it in the same transaction.
async fn jobs_of_one_transaction_keep_their_order_and_supersede<S: Store + JobQueue>(store: &S) {
    let mut tx = Transaction::new();
    tx.enqueue(NewJob::new("pr.pipeline", "o/r#30", json!({"n": 0})).superseding("h1"))
        .enqueue(NewJob::new("pr.command", "o/r#31", json!({"n": 1})))
        .enqueue(NewJob::new("pr.command", "o/r#32", json!({"n": 2})))
        .enqueue(NewJob::new("pr.pipeline", "o/r#30", json!({"n": 3})).superseding("h2"))
        .enqueue(NewJob::new("pr.command", "o/r#33", json!({"n": 4})));
    let done = store.commit(tx).await.unwrap();
    assert_eq!(done.job_ids.len(), 5);
    assert!(
        done.job_ids.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        done.job_ids
    );
    for (n, id) in done.job_ids.iter().enumerate() {
        assert_eq!(
            store.job(*id).await.unwrap().unwrap().payload["n"],
            n,
            "job {id}"
        );
    }
    assert_eq!(done.cancelled_jobs, vec![done.job_ids[0]]);
    let first = store.job(done.job_ids[0]).await.unwrap().unwrap();
    assert_eq!(first.state, JobState::Cancelled);
    assert_eq!(
        first.reason.as_deref(),
        Some("superseded by a newer head h2")
    );
    // Many at once (more than one statement's chunk).
    let mut tx = Transaction::new();
    for n in 0..1203 {
        tx.enqueue(NewJob::new("bench", &format!("bulk-{n}"), json!({"n": n})));
    }
    let bulk = store.commit(tx).await.unwrap();
    assert_eq!(bulk.job_ids.len(), 1203);
    assert!(bulk.job_ids.windows(2).all(|w| w[0] < w[1]));
    let last = store
        .job(*bulk.job_ids.last().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (last.payload["n"].as_u64(), last.serial_key.as_str()),
        (Some(1202), "bulk-1202")
    );
}

/// Completions of several jobs commit in one statement, all or none: one lease that is no
/// longer held fails the whole transaction and completes nothing.
async fn completions_commit_together_or_not_at_all<S: Store + JobQueue>(store: &S) {
    for n in 0..3 {
        enqueue(store, &format!("o/r#4{n}"), "h1").await;
    }
    let held = store
        .claim_batch("w1", LEASE, 3, Claimant::Server)
        .await
        .unwrap();
    assert_eq!(held.len(), 3);
    // The third is superseded while held.
    enqueue(store, &held[2].job.serial_key, "h2").await;
    let mut tx = Transaction::new();
    for c in &held {
        tx.complete_job(c.lease);
    }
    let err = store.commit(tx).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::LeaseLost { job_id, .. } if *job_id == held[2].job.id),
        "{err}"
    );
    for c in &held[..2] {
        assert_eq!(
            store.job(c.job.id).await.unwrap().unwrap().state,
            JobState::Running
        );
    }
    let mut tx = Transaction::new();
    tx.complete_job(held[0].lease).complete_job(held[1].lease);
    store.commit(tx).await.unwrap();
    for c in &held[..2] {
        assert_eq!(
            store.job(c.job.id).await.unwrap().unwrap().state,
            JobState::Succeeded
        );
    }
}

/// One heartbeat extends every lease still held and names the ones that are not.
async fn a_batch_heartbeat_extends_the_held_and_names_the_lost<S: Store + JobQueue>(store: &S) {
    for n in 0..3 {
        enqueue(store, &format!("o/r#5{n}"), "h1").await;
    }
    let held = store
        .claim_batch("w1", Duration::from_secs(5), 3, Claimant::Server)
        .await
        .unwrap();
    enqueue(store, &held[1].job.serial_key, "h2").await;
    let before = store
        .job(held[0].job.id)
        .await
        .unwrap()
        .unwrap()
        .lease_until
        .unwrap();
    let leases: Vec<_> = held.iter().map(|c| c.lease).collect();
    let lost = store.heartbeat_batch(&leases, LEASE).await.unwrap();
    assert_eq!(lost, vec![held[1].lease]);
    for c in [&held[0], &held[2]] {
        let until = store
            .job(c.job.id)
            .await
            .unwrap()
            .unwrap()
            .lease_until
            .unwrap();
        assert!(until >= before + 20_000, "{until} vs {before}");
    }
    assert!(store.heartbeat_batch(&[], LEASE).await.unwrap().is_empty());
    // A stale token (the job claimed again) is lost too.
    let stale = sluice_store::Lease {
        job_id: held[0].job.id,
        token: held[0].lease.token - 1,
    };
    assert_eq!(
        store.heartbeat_batch(&[stale], LEASE).await.unwrap(),
        vec![stale]
    );
}

/// The feed claims for the workers waiting and hands each job to one; its heartbeat keeps
/// their leases and flags a lost one; an enqueue wakes it before its poll; a job claimed but
/// taken by no worker when it closes is released without an attempt charged.
async fn the_feed_serves_waiting_workers_and_releases_the_rest<S: Store + JobQueue + Clone>(
    store: &S,
) {
    use sluice_store::feed::{Feed, FeedOptions};
    for n in 0..3 {
        enqueue(store, &format!("o/r#6{n}"), "h1").await;
    }
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let feed = Feed::start(
        store.clone(),
        FeedOptions {
            owner: "feed-test".into(),
            lease: Duration::from_millis(900),
            // Long enough that only the enqueue signal can explain a prompt claim below.
            poll: Duration::from_secs(60),
            max_batch: 8,
            claimant: Claimant::Server,
        },
        shutdown,
    );
    let a = feed.next().await.unwrap();
    let b = feed.next().await.unwrap();
    assert_ne!(a.claimed.job.id, b.claimed.job.id);
    // Only jobs a worker asked for are claimed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.queue_depth().await.unwrap().queued, 1);
    // A lease outlives its first term through the heartbeat; a superseded one is flagged.
    enqueue(store, &b.claimed.job.serial_key, "h2").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!a.lost());
    assert!(b.lost());
    let job_a = store.job(a.claimed.job.id).await.unwrap().unwrap();
    assert_eq!(
        (job_a.state, job_a.lease_token),
        (JobState::Running, a.claimed.lease.token)
    );
    let mut tx = Transaction::new();
    tx.complete_job(a.claimed.lease);
    store.commit(tx).await.unwrap();
    drop((a, b));
    let c = feed.next().await.unwrap();
    let d = feed.next().await.unwrap();
    assert_ne!(c.claimed.job.id, d.claimed.job.id);
    // The queue is empty: a worker that stops waiting leaves its demand behind (as one whose
    // job is still on its way at shutdown does).
    assert!(
        tokio::time::timeout(Duration::from_millis(200), feed.next())
            .await
            .is_err()
    );
    let late = enqueue(store, "o/r#69", "h1").await;
    let claimed_at = std::time::Instant::now();
    while store.job(late).await.unwrap().unwrap().state != JobState::Running {
        assert!(
            claimed_at.elapsed() < Duration::from_secs(5),
            "the enqueue did not wake the feed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    assert!(feed.next().await.is_none());
    feed.close().await;
    let late = store.job(late).await.unwrap().unwrap();
    assert_eq!((late.state, late.attempts), (JobState::Queued, 0));
    drop((c, d));
}

/// An expiring token verifies until its expiry; renewing moves it; a revoked or expired one
/// cannot be renewed; tokens made without an expiry never expire.
async fn expiring_tokens_stop_verifying_unless_renewed<S: Store + TokenStore>(store: &S) {
    let now = now_millis();
    let live = store
        .create_expiring_token(Scope::Runner, "serve-runner:test", now + 60_000)
        .await
        .unwrap();
    assert_eq!(
        store.verify_token(&live.token).await.unwrap(),
        Some(Scope::Runner)
    );
    let lapsed = store
        .create_expiring_token(Scope::Runner, "serve-runner:crashed", now - 1)
        .await
        .unwrap();
    assert_eq!(store.verify_token(&lapsed.token).await.unwrap(), None);
    assert!(!store.renew_token(&lapsed.id, now + 60_000).await.unwrap());
    assert_eq!(store.verify_token(&lapsed.token).await.unwrap(), None);
    assert!(store.renew_token(&live.id, now + 120_000).await.unwrap());
    let listed = store.tokens().await.unwrap();
    let row = listed.iter().find(|t| t.id == live.id).unwrap();
    assert_eq!(row.expires_at, Some(now + 120_000));
    assert!(store.revoke_token(&live.id).await.unwrap());
    assert!(!store.renew_token(&live.id, now + 180_000).await.unwrap());
    assert_eq!(store.verify_token(&live.token).await.unwrap(), None);
    let forever = store.create_token(Scope::Read, "dash").await.unwrap();
    assert!(!store.renew_token(&forever.id, now + 1).await.unwrap());
    assert_eq!(
        store
            .tokens()
            .await
            .unwrap()
            .iter()
            .find(|t| t.id == forever.id)
            .unwrap()
            .expires_at,
        None
    );
    assert!(
        store
            .create_expiring_token(Scope::State, "bare", now + 1000)
            .await
            .is_err()
    );
}

both_backends!(
    redelivery_is_refused_whole,
    one_job_per_key_at_a_time_oldest_first,
    an_expired_lease_moves_the_job_and_fences_the_old_worker,
    failures_back_off_then_go_dead,
    a_newer_head_supersedes_queued_and_running_jobs,
    a_released_job_is_not_charged_an_attempt,
    concurrent_workers_complete_every_job_once,
    a_batch_claim_takes_one_job_per_key_each_under_its_own_lease,
    concurrent_commits_each_commit_or_fail_alone,
    concurrent_pushes_leave_one_head,
    tokens_are_stored_hashed_and_checked,
    runner_jobs_go_to_runners_and_the_rest_to_the_server,
    jobs_of_one_transaction_keep_their_order_and_supersede,
    completions_commit_together_or_not_at_all,
    a_batch_heartbeat_extends_the_held_and_names_the_lost,
    the_feed_serves_waiting_workers_and_releases_the_rest,
    expiring_tokens_stop_verifying_unless_renewed,
);
