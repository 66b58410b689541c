//! The one store trait (DESIGN.md §6): what the pipeline, the evidence service and the server
//! need from durable storage, implemented by SQLite (embedded default) and PostgreSQL
//! (scale-out). The same test suite runs against both.

use std::future::Future;

use crate::error::Result;
use crate::records::{
    ArtifactRecord, ChangeRecord, CheckpointRecord, Digest, EventRecord, Hash, LeafInput, LogLeaf,
    LogNode, PackedLeaves, PackedNodes, StageResultRecord,
};

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

/// Durable records of changes, stage results, events, the transparency log and the artifact
/// index.
///
/// Writes are acknowledged only after their transaction committed durably. An error for which
/// [`crate::StoreError::is_fatal`] holds means the durability of a write is unknown: stop
/// writing, never retry it.
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Where the store lives, for messages (a path, or a URL without its password).
    fn location(&self) -> &str;

    /// The schema version the database is at (the newest applied migration).
    fn schema_version(&self) -> impl Future<Output = Result<i64>> + Send;

    // ---- changes -------------------------------------------------------------------------

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

    // ---- transparency log ----------------------------------------------------------------

    /// Appends entries as leaves, with the perfect-subtree nodes they complete, in one
    /// transaction; returns their leaf indexes once the commit is durable.
    fn append_batch(&self, entries: &[Hash]) -> impl Future<Output = Result<Vec<u64>>> + Send;

    /// [`Store::append_batch`] with an envelope digest per entry.
    fn append_leaves(&self, leaves: &[LeafInput]) -> impl Future<Output = Result<Vec<u64>>> + Send;

    /// The number of leaves (the size under which everything is final).
    fn log_size(&self) -> impl Future<Output = Result<u64>> + Send;

    /// Leaves with index in `[from, to)`, in index order.
    fn leaves(&self, from: u64, to: u64) -> impl Future<Output = Result<Vec<LogLeaf>>> + Send;

    /// The leaf whose entry is `entry`, if logged (the first, should it be logged twice).
    ///
    /// A scan of the log (about 0.2 s per million leaves): entries are random hashes, and
    /// indexing them would scatter every append's writes. Callers on a hot path keep the index
    /// [`Store::append_batch`] returned.
    fn find_leaf(&self, entry: &Hash) -> impl Future<Output = Result<Option<LogLeaf>>> + Send;

    /// The stored hashes of the perfect subtrees `keys` (level, index); level 0 is the leaf hash.
    /// `None` for a subtree that is not stored.
    fn subtrees(
        &self,
        keys: &[(u8, u64)],
    ) -> impl Future<Output = Result<Vec<Option<Hash>>>> + Send;

    /// Stored nodes whose last covered leaf is in `[from, to)`, in the order appends complete
    /// them (by last covered leaf, then level). With [`Store::leaves`] over the same range this
    /// is one aligned slice of the log: what the audit reads, chunk by chunk.
    fn nodes(&self, from: u64, to: u64) -> impl Future<Output = Result<Vec<LogNode>>> + Send;

    /// [`Store::leaves`] over `[from, to)` in one row (entry and leaf hash only).
    fn packed_leaves(
        &self,
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<PackedLeaves>> + Send;

    /// [`Store::nodes`] over `[from, to)` in one row (hashes only, with key checks).
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

    // ---- artifact index ------------------------------------------------------------------

    /// Indexes an artifact. Create-only: the same digest again is accepted if size and media type
    /// agree (the first record is kept).
    fn put_artifact(&self, artifact: &ArtifactRecord) -> impl Future<Output = Result<()>> + Send;

    fn artifact(
        &self,
        digest: &Digest,
    ) -> impl Future<Output = Result<Option<ArtifactRecord>>> + Send;
}
