//! The durable job queue (DESIGN.md §4 `store`: "job queue"; §6: `FOR UPDATE SKIP LOCKED` across
//! replicas): what `sluice serve` runs for each webhook, kept in the store's own database so a job
//! is enqueued in the same transaction as the delivery that caused it.
//!
//! - **Enqueue** through [`Transaction::enqueue`](crate::Transaction::enqueue), beside the
//!   delivery ([`Transaction::record_delivery`](crate::Transaction::record_delivery)) and its
//!   event: a redelivery of the same `X-GitHub-Delivery` makes the whole transaction fail with
//!   [`StoreError::Duplicate`](crate::StoreError::Duplicate), so no job is created twice.
//! - **Claim** ([`JobQueue::claim`]) takes the oldest runnable job under a lease
//!   ([`JobQueue::claim_batch`] several at once, each with its own lease): PostgreSQL skips
//!   rows other replicas hold (`FOR UPDATE SKIP LOCKED`) in one statement committed on its own;
//!   SQLite claims inside `BEGIN IMMEDIATE`. A job runs only when it is the oldest unfinished job of its
//!   [`NewJob::serial_key`] (per-change serialisation, FIFO).
//! - **Leases and heartbeats**: a running job whose lease expired is claimable again (its worker
//!   is presumed dead); each claim increments the job's [`Lease::token`], and heartbeats,
//!   failures and completions name that token, so a worker that lost its job can change nothing.
//!   At-least-once: a job is finished only by a completion that commits.
//! - **Retry with backoff** ([`backoff`]) and a dead-letter state after `max_attempts`.
//! - **Supersede**: a job enqueued with [`NewJob::supersede`] cancels the queued and running jobs
//!   of its key for another head, with a reason; their workers see the cancellation at their next
//!   heartbeat or completion ([`StoreError::LeaseLost`](crate::StoreError::LeaseLost)).
//! - **Complete** through [`Transaction::complete_job`](crate::Transaction::complete_job), so a
//!   job's completion commits with the stage evidence it produced, or not at all.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::records::{UnixMillis, now_millis};

/// A job's id: the queue's row id, given at enqueue and increasing in enqueue order (claims and
/// per-key FIFO order by it). Written as the bare number in JSON, logs and the API.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    serde::Deserialize,
    sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct JobId(pub i64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    /// Failed `max_attempts` times (or its last lease expired on the last attempt): kept for a
    /// person to look at, never retried by itself.
    Dead,
    /// Superseded by a newer head, or cancelled by a person; `reason` says which.
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Dead,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Finished for good: nothing will run it again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Dead | JobState::Cancelled
        )
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// What to run (`pr.pipeline`, `pr.command`, …); the worker dispatches on it.
    pub kind: String,
    /// Jobs with the same key run one at a time, oldest first: a pull request's key is
    /// `owner/repo#N`. Not a correlation id (a PR has one per unit).
    pub serial_key: String,
    /// The commit the job is about, when it is about one.
    pub head_sha: Option<String>,
    pub payload: serde_json::Value,
    pub max_attempts: u32,
    /// Cancel the unfinished jobs of this key whose head is another commit (a newer push).
    pub supersede: bool,
}

impl NewJob {
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

    pub fn new(kind: &str, serial_key: &str, payload: serde_json::Value) -> NewJob {
        NewJob {
            kind: kind.to_string(),
            serial_key: serial_key.to_string(),
            head_sha: None,
            payload,
            max_attempts: NewJob::DEFAULT_MAX_ATTEMPTS,
            supersede: false,
        }
    }

    /// For `head`, cancelling the unfinished jobs of the key for other heads.
    pub fn superseding(mut self, head: &str) -> NewJob {
        self.head_sha = Some(head.to_string());
        self.supersede = true;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |field, problem: &str| StoreError::Invalid {
            record: "job",
            field,
            problem: problem.to_string(),
        };
        if self.kind.trim().is_empty() {
            return Err(invalid("kind", "must not be empty"));
        }
        if self.serial_key.trim().is_empty() {
            return Err(invalid("serial_key", "must not be empty"));
        }
        if self.max_attempts == 0 || self.max_attempts > 1000 {
            return Err(invalid("max_attempts", "must be between 1 and 1000"));
        }
        if self.supersede && self.head_sha.is_none() {
            return Err(invalid("head_sha", "a superseding job names its head"));
        }
        Ok(())
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub id: JobId,
    pub kind: String,
    pub serial_key: String,
    pub head_sha: Option<String>,
    pub payload: serde_json::Value,
    pub state: JobState,
    pub attempts: u32,
    pub max_attempts: u32,
    /// Not before (Unix ms): the backoff of a retried job.
    pub run_at: UnixMillis,
    pub lease_owner: Option<String>,
    pub lease_until: Option<UnixMillis>,
    pub lease_token: i64,
    pub last_error: Option<String>,
    /// Why a job was cancelled or given up.
    pub reason: Option<String>,
    pub delivery_id: Option<String>,
    pub created_at: UnixMillis,
    pub started_at: Option<UnixMillis>,
    pub finished_at: Option<UnixMillis>,
}

/// The proof that a worker holds a job: its id and the token of the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Lease {
    pub job_id: JobId,
    pub token: i64,
}

/// A job just claimed, with its lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub job: Job,
    pub lease: Lease,
}

/// A webhook delivery accepted (its id deduplicates redeliveries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    /// How many jobs it enqueued.
    pub jobs: u32,
    pub received_at: UnixMillis,
}

/// Jobs by state, for `/metrics` and `/readyz`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    pub queued: u64,
    pub running: u64,
    pub dead: u64,
}

/// How retries are spaced: `base · 2^(attempt-1)`, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(300),
        }
    }
}

/// The pause before the retry that follows failed attempt `attempt` (1-based).
pub fn backoff(policy: Backoff, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    policy
        .base
        .checked_mul(1u32 << exp)
        .unwrap_or(policy.max)
        .min(policy.max)
}

/// What a failed attempt leads to: a retry at a time, or the dead-letter state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(UnixMillis),
    Dead,
}

/// The decision after attempt `attempts` of `max_attempts` failed at `now`.
pub fn after_failure(
    attempts: u32,
    max_attempts: u32,
    policy: Backoff,
    now: UnixMillis,
) -> AfterFailure {
    if attempts >= max_attempts {
        AfterFailure::Dead
    } else {
        AfterFailure::RetryAt(now.saturating_add(backoff(policy, attempts).as_millis() as i64))
    }
}

/// Who claims a job: the server's own workers, or runners over HTTP. Jobs whose kind starts
/// with [`RUNNER_KIND_PREFIX`] (plans, which need the engine and a cloud role) are claimed only
/// by runners; every other kind only by the server's workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimant {
    Server,
    Runner,
}

/// The kind prefix of jobs only runners claim (`runner.plan`).
pub const RUNNER_KIND_PREFIX: &str = "runner.";

impl Claimant {
    /// Whether this claimant takes jobs of `kind` (the rule the claim query applies).
    pub fn takes(self, kind: &str) -> bool {
        kind.starts_with(RUNNER_KIND_PREFIX) == (self == Claimant::Runner)
    }
}

/// Which jobs a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub serial_key: Option<String>,
}

/// The job queue (see the module documentation). Enqueueing and completing go through
/// [`crate::Transaction`]; the rest is here.
pub trait JobQueue: Send + Sync + 'static {
    /// Claims up to `limit` runnable jobs of the kinds `claimant` takes ([`Claimant::takes`])
    /// for `worker` for `lease_for`, oldest first, each under a lease of its own, in one
    /// transaction (a worker that runs short jobs pays one commit for several). Runnable: queued
    /// and due, or running with an expired lease; and the oldest unfinished job of its key (of
    /// any kind), so a batch never holds two jobs of one key. A running job whose lease expired
    /// on its last attempt goes to the dead-letter state instead.
    fn claim_batch(
        &self,
        worker: &str,
        lease_for: Duration,
        limit: u32,
        claimant: Claimant,
    ) -> impl Future<Output = Result<Vec<Claimed>>> + Send;

    /// Claims the oldest runnable job `claimant` takes for `worker` for `lease_for`, or `None`
    /// (see [`JobQueue::claim_batch`]).
    fn claim_for(
        &self,
        worker: &str,
        lease_for: Duration,
        claimant: Claimant,
    ) -> impl Future<Output = Result<Option<Claimed>>> + Send {
        async move {
            Ok(self
                .claim_batch(worker, lease_for, 1, claimant)
                .await?
                .pop())
        }
    }

    /// [`JobQueue::claim_for`] the server's own workers.
    fn claim(
        &self,
        worker: &str,
        lease_for: Duration,
    ) -> impl Future<Output = Result<Option<Claimed>>> + Send {
        self.claim_for(worker, lease_for, Claimant::Server)
    }

    /// Extends a held lease; [`StoreError::LeaseLost`] when the job was cancelled, finished or
    /// claimed by another worker since.
    fn heartbeat(
        &self,
        lease: Lease,
        lease_for: Duration,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Extends every lease of `leases` that is still held, in one statement per thousand;
    /// returns the ones that were not (their jobs cancelled, finished, or claimed by another
    /// worker since). One round trip keeps all of a replica's running jobs alive.
    fn heartbeat_batch(
        &self,
        leases: &[Lease],
        lease_for: Duration,
    ) -> impl Future<Output = Result<Vec<Lease>>> + Send;

    /// Notified when jobs of this process's store may have become claimable (a commit enqueued
    /// some, a job was released), so an idle claim loop need not wait for its next poll. Other
    /// processes' enqueues are seen at the poll.
    fn job_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// Records a failed attempt: queued again after [`backoff`], or dead after the last attempt.
    /// Returns the state the job is now in.
    fn fail(
        &self,
        lease: Lease,
        error: &str,
        policy: Backoff,
    ) -> impl Future<Output = Result<JobState>> + Send;

    /// Gives a held job back without counting the attempt (a graceful shutdown).
    fn release(&self, lease: Lease) -> impl Future<Output = Result<()>> + Send;

    fn job(&self, id: JobId) -> impl Future<Output = Result<Option<Job>>> + Send;

    /// Jobs, newest first, at most `limit`.
    fn jobs(&self, filter: &JobFilter, limit: u32)
    -> impl Future<Output = Result<Vec<Job>>> + Send;

    fn queue_depth(&self) -> impl Future<Output = Result<QueueDepth>> + Send;

    fn delivery(
        &self,
        delivery_id: &str,
    ) -> impl Future<Output = Result<Option<DeliveryRecord>>> + Send;
}

/// The lease deadline of a claim or heartbeat made now.
pub(crate) fn lease_deadline(lease_for: Duration) -> UnixMillis {
    now_millis().saturating_add(lease_for.as_millis().min(i64::MAX as u128) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let got: Vec<u128> = (1..=6).map(|a| backoff(p, a).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(p, 0).as_millis(), 100);
        assert_eq!(backoff(p, u32::MAX), p.max);
    }

    #[test]
    fn last_attempt_goes_dead() {
        let p = Backoff::default();
        assert_eq!(after_failure(5, 5, p, 1000), AfterFailure::Dead);
        assert_eq!(after_failure(1, 5, p, 1000), AfterFailure::RetryAt(3000));
    }

    #[test]
    fn runner_jobs_go_to_runners_only() {
        assert!(Claimant::Runner.takes("runner.plan"));
        assert!(!Claimant::Server.takes("runner.plan"));
        assert!(Claimant::Server.takes("pr.pipeline"));
        assert!(!Claimant::Runner.takes("pr.pipeline"));
    }

    #[test]
    fn job_ids_are_bare_numbers_in_json_and_logs() {
        let id = JobId(42);
        assert_eq!(serde_json::to_value(id).unwrap(), serde_json::json!(42));
        assert_eq!(serde_json::from_str::<JobId>("42").unwrap(), id);
        assert_eq!(id.to_string(), "42");
        assert!(JobId(7) < JobId(42), "ids order as enqueued");
    }

    #[test]
    fn states_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobState::parse("done"), None);
    }

    proptest! {
        #[test]
        fn backoff_is_monotonic_and_bounded(base in 1u64..10_000, max in 1u64..1_000_000, a in 1u32..64) {
            let p = Backoff { base: Duration::from_millis(base), max: Duration::from_millis(max) };
            prop_assert!(backoff(p, a) <= p.max);
            prop_assert!(backoff(p, a) <= backoff(p, a + 1));
        }
    }
}
