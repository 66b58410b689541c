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
//! fails with [`crate::StoreError::Stale`] and the caller prepares again. A state version is
//! the same: it commits only on the head it was checked against and under its fence (the lock
//! holder's current fencing token, checked with the lock row held).
//!
//! State writes ([`crate::state`]): a version, the attached Terraform lock, and audit events,
//! each event with the log leaf of its signed statement. Every transaction that writes a leaf or
//! a state record takes the log head first, so writers meet the rows they share (the log head,
//! then a unit's lock row) in one order.

use crate::jobs::{DeliveryRecord, Lease, NewJob};
use crate::records::{
    ChangeRecord, Digest, EventRecord, LeafInput, ManifestRecord, StageResultRecord,
};
use crate::state::{
    BackendLockRecord, BackendLockWrite, NewStateVersion, StateEventRecord, StateVersionRecord,
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
    pub(crate) backend_locks: Vec<BackendLockWrite>,
    pub(crate) state_versions: Vec<NewStateVersion>,
    pub(crate) state_events: Vec<(StateEventRecord, Option<LeafRef>)>,
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
            && self.state_is_empty()
    }

    fn state_is_empty(&self) -> bool {
        self.backend_locks.is_empty()
            && self.state_versions.is_empty()
            && self.state_events.is_empty()
    }

    /// True when it writes something whose position the log head decides or guards: a leaf, a
    /// manifest version (checked against its change's newest version), a state record. Only
    /// those transactions take the log head (and the cached right edge of the tree); the rest
    /// (a webhook's delivery, event and jobs; a job's completion; a change or stage result
    /// without a leaf) commit side by side, so the database can flush their commits together
    /// instead of one fsync after another.
    pub(crate) fn needs_log_head(&self) -> bool {
        !self.leaves.is_empty() || !self.manifests.is_empty() || !self.state_is_empty()
    }

    /// Whether [`crate::Store::commit`] must check this transaction names only leaves it
    /// appends (and the like) before it starts.
    pub(crate) fn leaf_refs_valid(&self) -> bool {
        let n = self.leaves.len();
        self.events.iter().all(|(_, l)| l.is_none_or(|l| l.0 < n))
            && self.manifests.iter().all(|m| m.leaf.0 < n)
            && self
                .state_events
                .iter()
                .all(|(_, l)| l.is_none_or(|l| l.0 < n))
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

    // ---- remote state (StateStore) ----------------------------------------------------------

    /// Writes a state version (see [`NewStateVersion`]): refused whole with
    /// [`crate::StoreError::Stale`] unless the unit's newest version is the one before it and
    /// its fence (if any) still holds.
    pub fn put_state_version(&mut self, version: NewStateVersion) -> &mut Self {
        self.state_versions.push(version);
        self
    }

    /// Appends a state audit event; with `leaf` (the leaf of its signed statement), its
    /// `leaf_index` is set to that leaf's index.
    pub fn append_state_event(
        &mut self,
        event: StateEventRecord,
        leaf: Option<LeafRef>,
    ) -> &mut Self {
        self.state_events.push((event, leaf));
        self
    }

    /// Attaches a Terraform lock to its unit's state-domain lock holder.
    pub fn put_backend_lock(&mut self, lock: BackendLockRecord) -> &mut Self {
        self.backend_locks.push(BackendLockWrite::Put(lock));
        self
    }

    /// Detaches the unit's Terraform lock if its id is `lock_id`.
    pub fn delete_backend_lock(&mut self, unit: &str, lock_id: &str) -> &mut Self {
        self.backend_locks.push(BackendLockWrite::Delete {
            unit: unit.to_string(),
            lock_id: lock_id.to_string(),
        });
        self
    }
}

/// What a committed transaction was given: ids and indexes in the order of its writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    pub leaf_indexes: Vec<u64>,
    pub stage_result_ids: Vec<i64>,
    pub event_ids: Vec<i64>,
    pub manifests: Vec<ManifestRecord>,
    /// The log's size after the commit. On PostgreSQL a transaction that appends no leaf and
    /// writes no manifest or state (a delivery, a bare completion) does not read the log and
    /// reports 0; read [`crate::LogStore::log_size`] when it matters.
    pub log_size: u64,
    /// Ids of the jobs enqueued, in order.
    pub job_ids: Vec<crate::jobs::JobId>,
    /// Jobs cancelled because a job of this transaction superseded them.
    pub cancelled_jobs: Vec<crate::jobs::JobId>,
    /// The state versions written, as stored.
    pub state_versions: Vec<StateVersionRecord>,
    /// Ids of the state events appended, in order.
    pub state_event_ids: Vec<i64>,
}

impl Committed {
    /// The index `leaf` was appended at.
    pub fn index(&self, leaf: LeafRef) -> Option<u64> {
        self.leaf_indexes.get(leaf.0).copied()
    }
}
