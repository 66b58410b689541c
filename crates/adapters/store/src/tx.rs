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
}

impl Committed {
    /// The index `leaf` was appended at.
    pub fn index(&self, leaf: LeafRef) -> Option<u64> {
        self.leaf_indexes.get(leaf.0).copied()
    }
}
