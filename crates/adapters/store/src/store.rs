//! The store traits by concern (DESIGN.md §4, §6): what the pipeline, the evidence recorder and
//! the server need from durable storage, implemented by SQLite (embedded default) and
//! PostgreSQL (scale-out). The same test suite runs against both.
//!
//! - [`ChangeStore`]: changes, their stage results, events and manifest versions.
//! - [`LogStore`]: the transparency log (leaves, perfect-subtree nodes, checkpoints).
//! - [`ArtifactIndex`]: the index of content-addressed artifacts.
//! - [`Store`]: all of them on one database, and [`Store::commit`], which writes one
//!   [`Transaction`] (the one transaction type every concern writes through) atomically.
//!
//! - [`crate::LockStore`] (in [`crate::locks`]): per-state-domain locks with holder, lease,
//!   fencing token and FIFO queue, one model transition per write transaction.
//!
//! The `JobQueue` (runner jobs claimed with `FOR UPDATE SKIP LOCKED`, woken by `LISTEN/NOTIFY`
//! on PostgreSQL) is the next issue's.

use std::future::Future;

use crate::error::Result;
use crate::records::{
    ArtifactRecord, ChangeRecord, CheckpointRecord, Digest, EventRecord, Hash, LeafInput, LogLeaf,
    LogNode, ManifestRecord, PackedLeaves, PackedNodes, StageResultRecord,
};
use crate::tx::{Committed, Transaction};

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Changes, their stage results, events and manifest versions.
pub trait ChangeStore: Send + Sync + 'static {
    /// Records a change. Create-only: the same record again is accepted, a different record
    /// under the same correlation id is a conflict.
    fn put_change(&self, change: &ChangeRecord) -> impl Future<Output = Result<()>> + Send;

    fn change(&self, change_id: &str) -> impl Future<Output = Result<Option<ChangeRecord>>> + Send;

    /// All changes, newest first, at most `limit`.
    fn changes(&self, limit: u32) -> impl Future<Output = Result<Vec<ChangeRecord>>> + Send;

    // ---- stage results and events --------------------------------------------------------

    /// Records a stage result for a change that exists; returns its id.
    fn put_stage_result(
        &self,
        result: &StageResultRecord,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// A change's stage results in the order they were recorded.
    fn stage_results(
        &self,
        change_id: &str,
    ) -> impl Future<Output = Result<Vec<StageResultRecord>>> + Send;

    /// Appends an event; returns its id (increasing).
    fn append_event(&self, event: &EventRecord) -> impl Future<Output = Result<i64>> + Send;

    /// Events in id order: of one change, or all; only those with id > `after`, at most `limit`.
    fn events(
        &self,
        change_id: Option<&str>,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<EventRecord>>> + Send;

    /// The newest manifest version of a change.
    fn latest_manifest(
        &self,
        change_id: &str,
    ) -> impl Future<Output = Result<Option<ManifestRecord>>> + Send;

    /// Every manifest version of a change, oldest first.
    fn manifests(
        &self,
        change_id: &str,
    ) -> impl Future<Output = Result<Vec<ManifestRecord>>> + Send;
}

/// The transparency log: leaves, the perfect-subtree nodes they complete, and checkpoints.
pub trait LogStore: Send + Sync + 'static {
    /// Appends entries as leaves, with the perfect-subtree nodes they complete, in one
    /// transaction; returns their leaf indexes once the commit is durable.
    fn append_batch(&self, entries: &[Hash]) -> impl Future<Output = Result<Vec<u64>>> + Send;

    /// [`LogStore::append_batch`] with an envelope digest per entry.
    fn append_leaves(&self, leaves: &[LeafInput]) -> impl Future<Output = Result<Vec<u64>>> + Send;

    /// The number of leaves (the size under which everything is final).
    fn log_size(&self) -> impl Future<Output = Result<u64>> + Send;

    /// Leaves with index in `[from, to)`, in index order.
    fn leaves(&self, from: u64, to: u64) -> impl Future<Output = Result<Vec<LogLeaf>>> + Send;

    /// The leaf whose entry is `entry`, if logged (the first, should it be logged twice).
    ///
    /// A scan of the log (about 0.2 s per million leaves): entries are random hashes, and
    /// indexing them would scatter every append's writes. Callers on a hot path keep the index
    /// [`LogStore::append_batch`] returned.
    fn find_leaf(&self, entry: &Hash) -> impl Future<Output = Result<Option<LogLeaf>>> + Send;

    /// The stored hashes of the perfect subtrees `keys` (level, index); level 0 is the leaf hash.
    /// `None` for a subtree that is not stored.
    fn subtrees(
        &self,
        keys: &[(u8, u64)],
    ) -> impl Future<Output = Result<Vec<Option<Hash>>>> + Send;

    /// Stored nodes whose last covered leaf is in `[from, to)`, in the order appends complete
    /// them (by last covered leaf, then level). With [`LogStore::leaves`] over the same range this
    /// is one aligned slice of the log: what the audit reads, chunk by chunk.
    fn nodes(&self, from: u64, to: u64) -> impl Future<Output = Result<Vec<LogNode>>> + Send;

    /// [`LogStore::leaves`] over `[from, to)` in one row (entry and leaf hash only).
    fn packed_leaves(
        &self,
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<PackedLeaves>> + Send;

    /// [`LogStore::nodes`] over `[from, to)` in one row (hashes only, with key checks).
    fn packed_nodes(&self, from: u64, to: u64) -> impl Future<Output = Result<PackedNodes>> + Send;

    /// Stores a checkpoint. The same checkpoint again is accepted; a different root at a stored
    /// size is a conflict (a fork), never overwritten.
    fn put_checkpoint(
        &self,
        checkpoint: &CheckpointRecord,
    ) -> impl Future<Output = Result<()>> + Send;

    /// All checkpoints, by size.
    fn checkpoints(&self) -> impl Future<Output = Result<Vec<CheckpointRecord>>> + Send;

    /// The checkpoint of the largest size.
    fn latest_checkpoint(&self) -> impl Future<Output = Result<Option<CheckpointRecord>>> + Send;
}

/// The index of content-addressed artifacts (the bytes live in a [`crate::BlobStore`]).
pub trait ArtifactIndex: Send + Sync + 'static {
    /// Indexes an artifact. Create-only: the same digest again is accepted if size and media type
    /// agree (the first record is kept).
    fn put_artifact(&self, artifact: &ArtifactRecord) -> impl Future<Output = Result<()>> + Send;

    fn artifact(
        &self,
        digest: &Digest,
    ) -> impl Future<Output = Result<Option<ArtifactRecord>>> + Send;
}

/// Durable records of changes, stage results, events, the transparency log and the artifact
/// index, on one database.
///
/// Writes are acknowledged only after their transaction committed durably. An error for which
/// [`crate::StoreError::is_fatal`] holds means the durability of a write is unknown: stop
/// writing, never retry it.
pub trait Store: ChangeStore + LogStore + ArtifactIndex {
    fn backend(&self) -> Backend;

    /// Where the store lives, for messages (a path, or a URL without its password).
    fn location(&self) -> &str;

    /// The schema version the database is at (the newest applied migration).
    fn schema_version(&self) -> impl Future<Output = Result<i64>> + Send;

    /// Writes every record of `tx` in one database transaction, or none of them; returns the
    /// ids and leaf indexes once the commit is durable. The log head is locked for the whole
    /// transaction (`BEGIN IMMEDIATE` on SQLite, `SELECT … FOR UPDATE` on PostgreSQL), so the
    /// preconditions it checks (a manifest's previous version) hold at the commit. A manifest
    /// version that another writer wrote first fails with [`crate::StoreError::Stale`].
    fn commit(&self, tx: Transaction) -> impl Future<Output = Result<Committed>> + Send;
}
