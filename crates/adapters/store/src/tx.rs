//! The one transaction type every store concern writes through.
//!
//! A [`Transaction`] is the set of writes one step makes, gathered by concern (a change and its
//! stage results, events and manifest version for [`crate::ChangeStore`]; log leaves for
//! [`crate::LogStore`]) and handed to [`crate::Store::commit`], which writes all of it in one
//! database transaction or none of it. A stage recorded this way can never leave a log leaf that
//! nothing points to, or an event naming a leaf that was not appended.
//!
//! Writes that must name a leaf's index (an event's `leaf_index`, a manifest's leaf) name the
//! leaf by its [`LeafRef`] in this transaction; the index is known only inside the commit, once
//! the log head is locked.
//!
//! Preconditions are part of the transaction too: a manifest version `N` commits only while the
//! change's newest stored version is `N - 1` with the stated envelope; otherwise the commit
//! fails with [`crate::StoreError::Stale`] and the caller prepares again. The next issues add
//! theirs here (a lock's fencing token for an apply, a job's claim).

use crate::jobs::{DeliveryRecord, Lease, NewJob};
use crate::records::{
    ChangeRecord, Digest, EventRecord, LeafInput, ManifestRecord, StageResultRecord,
};

/// A leaf appended by this transaction, by its position in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafRef(pub(crate) usize);

/// A manifest version to write, with the leaf that holds its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewManifest {
    pub change_id: String,
    pub version: u32,
    pub envelope: Digest,
    /// Must be the envelope of the stored version `version - 1`.
    pub previous: Option<Digest>,
    pub leaf: LeafRef,
}

/// Writes to make together (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    pub(crate) changes: Vec<ChangeRecord>,
    pub(crate) leaves: Vec<LeafInput>,
    pub(crate) stage_results: Vec<StageResultRecord>,
    pub(crate) events: Vec<(EventRecord, Option<LeafRef>)>,
    pub(crate) manifests: Vec<NewManifest>,
    pub(crate) deliveries: Vec<DeliveryRecord>,
    pub(crate) jobs: Vec<NewJob>,
    pub(crate) completions: Vec<Lease>,
    pub(crate) cancellations: Vec<(String, String)>,
}

impl Transaction {
    pub fn new() -> Transaction {
        Transaction::default()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.leaves.is_empty()
            && self.stage_results.is_empty()
            && self.events.is_empty()
            && self.manifests.is_empty()
            && self.deliveries.is_empty()
            && self.jobs.is_empty()
            && self.completions.is_empty()
            && self.cancellations.is_empty()
    }

    /// True when nothing in it needs the log head (no leaf, no manifest version): such a
    /// transaction does not queue behind log appends.
    pub(crate) fn only_jobs(&self) -> bool {
        self.changes.is_empty()
            && self.leaves.is_empty()
            && self.stage_results.is_empty()
            && self.events.is_empty()
            && self.manifests.is_empty()
    }

    // ---- changes (ChangeStore) --------------------------------------------------------------

    /// Records a change, create-only (as [`crate::ChangeStore::put_change`]).
    pub fn put_change(&mut self, change: ChangeRecord) -> &mut Self {
        self.changes.push(change);
        self
    }

    pub fn put_stage_result(&mut self, result: StageResultRecord) -> &mut Self {
        self.stage_results.push(result);
        self
    }

    /// Appends an event; with `leaf`, its payload's `leaf_index` is set to that leaf's index.
    pub fn append_event(&mut self, event: EventRecord, leaf: Option<LeafRef>) -> &mut Self {
        self.events.push((event, leaf));
        self
    }

    /// Writes the next manifest version of a change (see [`NewManifest`]).
    pub fn put_manifest(&mut self, manifest: NewManifest) -> &mut Self {
        self.manifests.push(manifest);
        self
    }

    // ---- job queue (JobQueue) ---------------------------------------------------------------

    /// Records a webhook delivery. If its id is recorded already (a redelivery), the whole
    /// transaction fails with [`crate::StoreError::Duplicate`] and nothing is written.
    pub fn record_delivery(&mut self, delivery: DeliveryRecord) -> &mut Self {
        self.deliveries.push(delivery);
        self
    }

    /// Enqueues a job (cancelling the older heads' jobs of its key when it supersedes).
    pub fn enqueue(&mut self, job: NewJob) -> &mut Self {
        self.jobs.push(job);
        self
    }

    /// Cancels every unfinished job of `serial_key` (a closed pull request), saying why.
    pub fn cancel_jobs(&mut self, serial_key: &str, reason: &str) -> &mut Self {
        self.cancellations
            .push((serial_key.to_string(), reason.to_string()));
        self
    }

    /// Marks a held job succeeded. If the lease is no longer held (the job was cancelled, or
    /// its lease expired and another worker claimed it), the whole transaction fails with
    /// [`crate::StoreError::LeaseLost`] and nothing is written.
    pub fn complete_job(&mut self, lease: Lease) -> &mut Self {
        self.completions.push(lease);
        self
    }

    // ---- transparency log (LogStore) --------------------------------------------------------

    /// Appends a leaf; the returned reference names it in this transaction's other writes.
    pub fn append_leaf(&mut self, leaf: LeafInput) -> LeafRef {
        self.leaves.push(leaf);
        LeafRef(self.leaves.len() - 1)
    }

    pub fn leaves(&self) -> &[LeafInput] {
        &self.leaves
    }
}

/// What a committed transaction was given: ids and indexes in the order of its writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    pub leaf_indexes: Vec<u64>,
    pub stage_result_ids: Vec<i64>,
    pub event_ids: Vec<i64>,
    pub manifests: Vec<ManifestRecord>,
    /// The log's size after the commit.
    pub log_size: u64,
    /// Ids of the jobs enqueued, in order.
    pub job_ids: Vec<i64>,
    /// Jobs cancelled because a job of this transaction superseded them.
    pub cancelled_jobs: Vec<i64>,
}

impl Committed {
    /// The index `leaf` was appended at.
    pub fn index(&self, leaf: LeafRef) -> Option<u64> {
        self.leaf_indexes.get(leaf.0).copied()
    }
}
