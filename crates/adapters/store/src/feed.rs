//! The claim loop of one process's workers: what `sluice serve`'s workers (and `sluice bench
//! queue`, which measures them) take jobs from.
//!
//! Why one loop and not one claim per worker: a claim is a write (a commit, on PostgreSQL a WAL
//! flush) and a round trip, and short jobs paid one each. Here one task claims for every
//! worker that is waiting, in one statement ([`JobQueue::claim_batch`]), and hands each job to
//! one of them. It claims only as many jobs as workers wait for, so no job sits claimed behind
//! another while a worker is idle, and nothing changes for other replicas (they skip what this
//! one holds). While a claim is in flight, workers that finish queue up their demand, so under
//! load the claims grow by themselves (as commits do in a group commit).
//!
//! - **Leases** of every job handed out are kept alive by one heartbeat task, one statement
//!   for all of them ([`JobQueue::heartbeat_batch`]) every third of the lease; a job whose lease
//!   was lost (superseded, cancelled, taken over) is flagged for its worker
//!   ([`HeldJob::lost`]).
//! - **Two claims in flight**: while one waits for the database the other claims for the workers
//!   that became free meanwhile; each reserves the demand it serves, so together they never
//!   claim more jobs than workers wait for.
//! - **Idle**: with nothing to claim the loop waits for the poll interval, or less when this
//!   process enqueues or releases a job ([`JobQueue::job_signal`]).
//! - **Shutdown**: the loop stops claiming; [`Feed::close`] releases the jobs claimed but not
//!   taken by a worker (without charging an attempt) and stops the heartbeats once the
//!   workers are done.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use crate::error::StoreError;
use crate::jobs::{Claimant, Claimed, JobQueue, Lease};

/// How a feed claims.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// The owner named in its leases (`host:pid/feed`).
    pub owner: String,
    pub lease: Duration,
    /// How long an idle loop waits before it looks again.
    pub poll: Duration,
    /// The most jobs one claim takes.
    pub max_batch: u32,
    pub claimant: Claimant,
}

/// How many jobs the next claim asks for: as many as workers wait for and no other claim in
/// flight asks for already, at most `max_batch` (0: nobody waits, no claim).
pub fn claim_size(unclaimed_demand: usize, max_batch: u32) -> u32 {
    u32::try_from(unclaimed_demand)
        .unwrap_or(u32::MAX)
        .min(max_batch.max(1))
}

/// Claims in flight at once. Two: while one waits for the database, the other takes the
/// workers that became free meanwhile (on PostgreSQL both run side by side; on SQLite they take
/// turns with the other writers). Each reserves the demand it claims for, so together they
/// never claim more jobs than workers wait for.
const CLAIM_LOOPS: usize = 2;

/// What the feed's tasks share.
struct Shared {
    /// Workers waiting for a job that no claim has reserved yet.
    demand: AtomicUsize,
    /// A worker started waiting.
    wanted: Notify,
    /// Leases of the jobs handed out and not finished, with their lost flags.
    held: Mutex<HashMap<crate::jobs::JobId, (Lease, Arc<AtomicBool>)>>,
}

/// A claimed job handed to a worker. Dropping it tells the feed the job is no longer held by
/// this worker (finished, failed, released or lost), so its lease is no longer extended.
pub struct HeldJob {
    pub claimed: Claimed,
    lost: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl HeldJob {
    /// Whether a heartbeat found the lease lost (the job was cancelled, superseded, or claimed
    /// by another worker after the lease lapsed): nothing this worker does counts any more.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for HeldJob {
    fn drop(&mut self) {
        self.shared
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.claimed.job.id);
    }
}

/// The claim loop and the heartbeats of one process's workers (see the module documentation).
pub struct Feed {
    shared: Arc<Shared>,
    jobs: tokio::sync::Mutex<mpsc::UnboundedReceiver<Claimed>>,
    shutdown: watch::Receiver<bool>,
    claimers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    heartbeat: Mutex<Option<tokio::task::JoinHandle<()>>>,
    release: Box<dyn Fn(Lease) -> futures_release::BoxFuture + Send + Sync>,
}

/// A boxed future for releasing a lease, so [`Feed`] needs no type parameter.
mod futures_release {
    pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

impl Feed {
    /// Starts the claim loop and the heartbeats over `store`; they stop when `shutdown` turns
    /// true (the heartbeats only at [`Feed::close`], so jobs finishing in the grace period keep
    /// their leases).
    pub fn start<S: JobQueue + Clone>(
        store: S,
        options: FeedOptions,
        shutdown: watch::Receiver<bool>,
    ) -> Feed {
        let shared = Arc::new(Shared {
            demand: AtomicUsize::new(0),
            wanted: Notify::new(),
            held: Mutex::new(HashMap::new()),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let claimers = (0..CLAIM_LOOPS)
            .map(|_| {
                tokio::spawn(claim_loop(
                    store.clone(),
                    options.clone(),
                    shared.clone(),
                    tx.clone(),
                    shutdown.clone(),
                ))
            })
            .collect();
        let heartbeat = tokio::spawn(heartbeat_loop(store.clone(), options.lease, shared.clone()));
        let releaser = store;
        Feed {
            shared,
            jobs: tokio::sync::Mutex::new(rx),
            shutdown,
            claimers: Mutex::new(claimers),
            heartbeat: Mutex::new(Some(heartbeat)),
            release: Box::new(move |lease| {
                let store = releaser.clone();
                Box::pin(async move {
                    if let Err(e) = store.release(lease).await {
                        tracing::warn!(job = %lease.job_id, error = %e, "releasing an unstarted job failed");
                    }
                })
            }),
        }
    }

    /// The next job for a worker, or `None` once the feed shuts down.
    pub async fn next(&self) -> Option<HeldJob> {
        let mut shutdown = self.shutdown.clone();
        if *shutdown.borrow() {
            return None;
        }
        self.shared.demand.fetch_add(1, Ordering::SeqCst);
        self.shared.wanted.notify_one();
        let got = {
            let mut jobs = self.jobs.lock().await;
            tokio::select! {
                job = jobs.recv() => job,
                _ = wait_true(&mut shutdown) => None,
            }
        };
        let Some(claimed) = got else {
            // Not served: take back this worker's demand (unless the loop already counted a
            // job for it, which `close` then releases).
            let _ = self
                .shared
                .demand
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1));
            return None;
        };
        let lost = self
            .shared
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&claimed.job.id)
            .map(|(_, lost)| lost.clone())
            .unwrap_or_default();
        Some(HeldJob {
            claimed,
            lost,
            shared: self.shared.clone(),
        })
    }

    /// After the workers stopped: ends the claim loop, releases the jobs it claimed that no
    /// worker took (not charged an attempt), and stops the heartbeats.
    pub async fn close(&self) {
        let claimers =
            std::mem::take(&mut *self.claimers.lock().unwrap_or_else(|e| e.into_inner()));
        for claimer in claimers {
            let _ = claimer.await;
        }
        let mut unstarted = Vec::new();
        {
            let mut jobs = self.jobs.lock().await;
            while let Ok(claimed) = jobs.try_recv() {
                unstarted.push(claimed);
            }
        }
        for claimed in unstarted {
            self.shared
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&claimed.job.id);
            (self.release)(claimed.lease).await;
            tracing::info!(job = %claimed.job.id, "unstarted job released at shutdown");
        }
        let heartbeat = self
            .heartbeat
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(heartbeat) = heartbeat {
            heartbeat.abort();
        }
    }
}

async fn wait_true(flag: &mut watch::Receiver<bool>) {
    while !*flag.borrow() {
        if flag.changed().await.is_err() {
            return;
        }
    }
}

async fn claim_loop<S: JobQueue>(
    store: S,
    options: FeedOptions,
    shared: Arc<Shared>,
    jobs: mpsc::UnboundedSender<Claimed>,
    mut shutdown: watch::Receiver<bool>,
) {
    let signal = store
        .job_signal()
        .unwrap_or_else(|| Arc::new(Notify::new()));
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Reserve the demand this claim serves; what it does not find goes back.
        let mut want = 0;
        let _ = shared
            .demand
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| {
                want = claim_size(d, options.max_batch);
                Some(d - want as usize)
            });
        if want == 0 {
            tokio::select! {
                _ = shared.wanted.notified() => {}
                _ = wait_true(&mut shutdown) => return,
            }
            continue;
        }
        let give_back = |claimed: usize| {
            let unserved = (want as usize).saturating_sub(claimed);
            // Not found now: this loop asks again at its next poll or enqueue signal (the
            // other would find nothing more, so it is not woken).
            if unserved > 0 {
                shared.demand.fetch_add(unserved, Ordering::SeqCst);
            }
        };
        // Registered before the claim, so an enqueue committed while it runs is not missed.
        let enqueued = signal.notified();
        tokio::pin!(enqueued);
        enqueued.as_mut().enable();
        match store
            .claim_batch(&options.owner, options.lease, want, options.claimant)
            .await
        {
            Ok(claimed) if claimed.is_empty() => {
                give_back(0);
                tokio::select! {
                    _ = tokio::time::sleep(options.poll) => {}
                    _ = &mut enqueued => {}
                    _ = wait_true(&mut shutdown) => return,
                }
            }
            Ok(claimed) => {
                give_back(claimed.len());
                for c in claimed {
                    shared
                        .held
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(c.job.id, (c.lease, Arc::new(AtomicBool::new(false))));
                    // The receiver lives as long as the feed; if it is gone the lease lapses.
                    let _ = jobs.send(c);
                }
            }
            Err(e) => {
                give_back(0);
                // The store is unreachable (a PostgreSQL restart, say): the pool reconnects;
                // keep trying at the poll interval.
                tracing::warn!(owner = %options.owner, error = %e, "claiming jobs failed");
                tokio::select! {
                    _ = tokio::time::sleep(options.poll.max(Duration::from_millis(500))) => {}
                    _ = wait_true(&mut shutdown) => return,
                }
            }
        }
    }
}

async fn heartbeat_loop<S: JobQueue>(store: S, lease: Duration, shared: Arc<Shared>) {
    let every = lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let leases: Vec<Lease> = shared
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|(lease, _)| *lease)
            .collect();
        if leases.is_empty() {
            continue;
        }
        match store.heartbeat_batch(&leases, lease).await {
            Ok(lost) => {
                let held = shared.held.lock().unwrap_or_else(|e| e.into_inner());
                for l in lost {
                    // A job finished in the meantime is gone from `held`; only held ones are
                    // flagged (one whose token matches: the job was not claimed again by us).
                    if let Some((held_lease, flag)) = held.get(&l.job_id)
                        && *held_lease == l
                    {
                        tracing::info!(job = %l.job_id, "job lease lost");
                        flag.store(true, Ordering::SeqCst);
                    }
                }
            }
            Err(StoreError::LeaseLost { .. }) => {}
            Err(e) => tracing::warn!(error = %e, jobs = leases.len(), "heartbeat failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_ask_for_the_waiting_workers_up_to_the_batch() {
        assert_eq!(claim_size(0, 8), 0);
        assert_eq!(claim_size(3, 8), 3);
        assert_eq!(claim_size(12, 8), 8);
        // A batch of 0 still claims one at a time.
        assert_eq!(claim_size(5, 0), 1);
    }
}
