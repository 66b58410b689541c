//! sluice's durable store (DESIGN.md §6): changes, stage results, events, the transparency log
//! (leaves, perfect-subtree nodes, checkpoints) and the artifact index, on SQLite (the embedded
//! default, `.sluice/sluice.db`) or PostgreSQL (`postgres://…`, for several replicas), behind
//! async traits by concern ([`ChangeStore`], [`LogStore`], [`ArtifactIndex`], together
//! [`Store`]) that write through one transaction type, [`Transaction`]; state-domain locks with
//! fencing tokens ([`LockStore`], [`locks`]); approvals, plan uses and stack health for stage 7
//! ([`ReleaseStore`], [`release`]); remote state versions ([`state`]: the Terraform state
//! backend's encrypted versions, audit events and backend locks); break-glass grants and
//! their backport items ([`BreakGlassStore`], [`breakglass`]); plus content-addressed
//! artifact blobs ([`blobs`]) on local disk or S3.
//!
//! - [`Store::commit`] writes a transaction (a stage's log leaf, its stage row, its event and the
//!   change's new manifest version) atomically; the manifest chain is guarded by the database
//!   (a (change, version) key, checked under the log head's lock), not by a process.
//! - [`open`] picks the backend from a URL or a path and migrates the schema (a database from a
//!   newer sluice is refused untouched).
//! - [`LogStore::append_batch`] appends log leaves and the subtree nodes they complete in one
//!   durable transaction; [`Appender`] coalesces concurrent appends into one commit.
//! - [`log`] builds inclusion and consistency proofs from stored nodes (O(log n) look-ups) and
//!   signed checkpoints; [`audit`] recomputes the tree from every leaf and finds tampering,
//!   truncation, gaps and reordering.
//! - [`jobs`]: the durable job queue ([`JobQueue`]; enqueue and complete through
//!   [`Transaction`]); [`tokens`]: hashed bearer tokens with a scope ([`TokenStore`]).
//! - [`bench`] measures append throughput, audit time and proof latency.
//!
//! The Merkle hashing itself is sluice-evidence's (RFC 6962); this crate persists it.

pub mod appender;
pub mod audit;
mod backend;
pub mod bench;
pub mod bench_locks;
pub mod blobs;
pub mod breakglass;
pub mod error;
pub mod feed;
pub mod frontier;
pub mod jobs;
pub mod locks;
pub mod log;
pub mod queue_bench;
pub mod records;
pub mod release;
pub mod state;
pub mod store;
pub mod tokens;
pub mod tx;

use std::path::{Path, PathBuf};

pub use appender::{Appender, AppenderOptions, LeafSink};
pub use audit::{AuditOptions, AuditProblem, AuditReport, audit};
pub use backend::postgres::PgStore;
pub use backend::sqlite::SqliteStore;
pub use blobs::{BlobStore, LocalBlobs, ObjectBlobs, put_artifact};
pub use breakglass::BreakGlassStore;
pub use error::{Result, StoreError};
pub use jobs::{
    Backoff, Claimant, Claimed, DeliveryRecord, Job, JobFilter, JobId, JobQueue, JobState, Lease,
    NewJob, QueueDepth, RUNNER_KIND_PREFIX,
};
pub use locks::{LockResult, LockStore};
pub use log::{CheckpointSigner, LogSnapshot};
pub use records::{
    ArtifactRecord, ChangeRecord, CheckpointRecord, Digest, EventRecord, Hash, LeafInput, LogLeaf,
    LogNode, ManifestRecord, PackedLeaves, PackedNodes, StageOutcome, StageResultRecord, UnitKind,
    UnixMillis, now_millis,
};
pub use release::{ApprovalRow, PlanUseRow, PlanUseState, ReleaseStore};
pub use state::{
    BackendLockRecord, BackendLockWrite, Fence, NewStateVersion, StateEventRecord, StateStore,
    StateVersionRecord,
};
pub use store::{ArtifactIndex, Backend, ChangeStore, LogStore, Store};
pub use tokens::{IssuedToken, Scope, StateGrants, TokenRecord, TokenStore, VerifiedToken};
pub use tx::{Committed, LeafRef, NewManifest, Transaction};

/// The embedded database, relative to the working directory.
pub const DEFAULT_DATABASE: &str = ".sluice/sluice.db";
/// The local artifact store, relative to the working directory.
pub const DEFAULT_BLOBS: &str = ".sluice/blobs";

/// Where a store lives, parsed from what a user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Reads `--database-url`-style input: `postgres://…` or `postgresql://…`, `sqlite://PATH`
/// (also `sqlite:PATH`), or a plain path to a SQLite file.
pub fn parse_location(input: &str) -> Result<Location> {
    let bad = |reason: &str| StoreError::BadLocation {
        input: backend::postgres::redact_url(input),
        reason: reason.to_string(),
    };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(StoreError::BadLocation {
            input: String::new(),
            reason: "empty; give a path or a postgres:// URL".into(),
        });
    }
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        return Ok(Location::Postgres(trimmed.to_string()));
    }
    if let Some(rest) = trimmed.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = path.split('?').next().unwrap_or("");
        if path.is_empty() || path == ":memory:" {
            return Err(bad(
                "a sqlite URL needs a file path (an in-memory database would lose everything)",
            ));
        }
        return Ok(Location::Sqlite(PathBuf::from(path)));
    }
    if let Some((scheme, _)) = trimmed.split_once("://") {
        return Err(StoreError::BadLocation {
            input: format!("{scheme}://…"),
            reason: format!(
                "unsupported scheme {scheme:?}; use postgres://, sqlite:// or a file path"
            ),
        });
    }
    Ok(Location::Sqlite(PathBuf::from(trimmed)))
}

/// A store on either backend, chosen at run time.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Opens the store named by `input` (see [`parse_location`]) and migrates its schema.
pub async fn open(input: &str) -> Result<AnyStore> {
    match parse_location(input)? {
        Location::Sqlite(path) => Ok(AnyStore::Sqlite(SqliteStore::open(&path).await?)),
        Location::Postgres(url) => Ok(AnyStore::Postgres(PgStore::open(&url).await?)),
    }
}

/// Opens the embedded default store under `dir` (normally the working directory).
pub async fn open_default(dir: &Path) -> Result<SqliteStore> {
    SqliteStore::open(dir.join(DEFAULT_DATABASE)).await
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $call,
            AnyStore::Postgres($s) => $call,
        }
    };
}

impl Store for AnyStore {
    fn backend(&self) -> Backend {
        delegate!(self, s => s.backend())
    }

    fn location(&self) -> &str {
        delegate!(self, s => s.location())
    }

    async fn schema_version(&self) -> Result<i64> {
        delegate!(self, s => s.schema_version().await)
    }

    async fn commit(&self, tx: Transaction) -> Result<Committed> {
        delegate!(self, s => s.commit(tx).await)
    }
}

impl ChangeStore for AnyStore {
    async fn put_change(&self, change: &ChangeRecord) -> Result<()> {
        delegate!(self, s => s.put_change(change).await)
    }

    async fn change(&self, change_id: &str) -> Result<Option<ChangeRecord>> {
        delegate!(self, s => s.change(change_id).await)
    }

    async fn changes(&self, limit: u32) -> Result<Vec<ChangeRecord>> {
        delegate!(self, s => s.changes(limit).await)
    }

    async fn put_stage_result(&self, result: &StageResultRecord) -> Result<i64> {
        delegate!(self, s => s.put_stage_result(result).await)
    }

    async fn stage_results(&self, change_id: &str) -> Result<Vec<StageResultRecord>> {
        delegate!(self, s => s.stage_results(change_id).await)
    }

    async fn append_event(&self, event: &EventRecord) -> Result<i64> {
        delegate!(self, s => s.append_event(event).await)
    }

    async fn events(
        &self,
        change_id: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>> {
        delegate!(self, s => s.events(change_id, after, limit).await)
    }

    async fn latest_manifest(&self, change_id: &str) -> Result<Option<ManifestRecord>> {
        delegate!(self, s => s.latest_manifest(change_id).await)
    }

    async fn manifests(&self, change_id: &str) -> Result<Vec<ManifestRecord>> {
        delegate!(self, s => s.manifests(change_id).await)
    }
}

impl LogStore for AnyStore {
    async fn append_batch(&self, entries: &[Hash]) -> Result<Vec<u64>> {
        delegate!(self, s => s.append_batch(entries).await)
    }

    async fn append_leaves(&self, leaves: &[LeafInput]) -> Result<Vec<u64>> {
        delegate!(self, s => s.append_leaves(leaves).await)
    }

    async fn log_size(&self) -> Result<u64> {
        delegate!(self, s => s.log_size().await)
    }

    async fn leaves(&self, from: u64, to: u64) -> Result<Vec<LogLeaf>> {
        delegate!(self, s => s.leaves(from, to).await)
    }

    async fn find_leaf(&self, entry: &Hash) -> Result<Option<LogLeaf>> {
        delegate!(self, s => s.find_leaf(entry).await)
    }

    async fn subtrees(&self, keys: &[(u8, u64)]) -> Result<Vec<Option<Hash>>> {
        delegate!(self, s => s.subtrees(keys).await)
    }

    async fn nodes(&self, from: u64, to: u64) -> Result<Vec<LogNode>> {
        delegate!(self, s => s.nodes(from, to).await)
    }

    async fn packed_leaves(&self, from: u64, to: u64) -> Result<PackedLeaves> {
        delegate!(self, s => s.packed_leaves(from, to).await)
    }

    async fn packed_nodes(&self, from: u64, to: u64) -> Result<PackedNodes> {
        delegate!(self, s => s.packed_nodes(from, to).await)
    }

    async fn put_checkpoint(&self, checkpoint: &CheckpointRecord) -> Result<()> {
        delegate!(self, s => s.put_checkpoint(checkpoint).await)
    }

    async fn checkpoints(&self) -> Result<Vec<CheckpointRecord>> {
        delegate!(self, s => s.checkpoints().await)
    }

    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>> {
        delegate!(self, s => s.latest_checkpoint().await)
    }
}

impl ArtifactIndex for AnyStore {
    async fn put_artifact(&self, artifact: &ArtifactRecord) -> Result<()> {
        delegate!(self, s => s.put_artifact(artifact).await)
    }

    async fn artifact(&self, digest: &Digest) -> Result<Option<ArtifactRecord>> {
        delegate!(self, s => s.artifact(digest).await)
    }
}

impl JobQueue for AnyStore {
    async fn claim_batch(
        &self,
        worker: &str,
        lease_for: std::time::Duration,
        limit: u32,
        claimant: Claimant,
    ) -> Result<Vec<Claimed>> {
        delegate!(self, s => s.claim_batch(worker, lease_for, limit, claimant).await)
    }

    async fn heartbeat(&self, lease: Lease, lease_for: std::time::Duration) -> Result<()> {
        delegate!(self, s => JobQueue::heartbeat(s, lease, lease_for).await)
    }

    async fn heartbeat_batch(
        &self,
        leases: &[Lease],
        lease_for: std::time::Duration,
    ) -> Result<Vec<Lease>> {
        delegate!(self, s => s.heartbeat_batch(leases, lease_for).await)
    }

    fn job_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        delegate!(self, s => s.job_signal())
    }

    async fn fail(&self, lease: Lease, error: &str, policy: Backoff) -> Result<JobState> {
        delegate!(self, s => JobQueue::fail(s, lease, error, policy).await)
    }

    async fn release(&self, lease: Lease) -> Result<()> {
        delegate!(self, s => JobQueue::release(s, lease).await)
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>> {
        delegate!(self, s => s.job(id).await)
    }

    async fn jobs(&self, filter: &JobFilter, limit: u32) -> Result<Vec<Job>> {
        delegate!(self, s => s.jobs(filter, limit).await)
    }

    async fn queue_depth(&self) -> Result<QueueDepth> {
        delegate!(self, s => s.queue_depth().await)
    }

    async fn delivery(&self, delivery_id: &str) -> Result<Option<DeliveryRecord>> {
        delegate!(self, s => s.delivery(delivery_id).await)
    }
}

impl TokenStore for AnyStore {
    async fn create_token(&self, scope: Scope, name: &str) -> Result<IssuedToken> {
        delegate!(self, s => s.create_token(scope, name).await)
    }

    async fn create_state_token(&self, name: &str, grants: &StateGrants) -> Result<IssuedToken> {
        delegate!(self, s => s.create_state_token(name, grants).await)
    }

    async fn verify_token(&self, token: &str) -> Result<Option<Scope>> {
        delegate!(self, s => s.verify_token(token).await)
    }

    async fn verify_token_grants(&self, token: &str) -> Result<Option<VerifiedToken>> {
        delegate!(self, s => s.verify_token_grants(token).await)
    }

    async fn revoke_token(&self, id: &str) -> Result<bool> {
        delegate!(self, s => s.revoke_token(id).await)
    }

    async fn create_expiring_token(
        &self,
        scope: Scope,
        name: &str,
        expires_at: UnixMillis,
    ) -> Result<IssuedToken> {
        delegate!(self, s => s.create_expiring_token(scope, name, expires_at).await)
    }

    async fn renew_token(&self, id: &str, expires_at: UnixMillis) -> Result<bool> {
        delegate!(self, s => s.renew_token(id, expires_at).await)
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        delegate!(self, s => s.tokens().await)
    }
}

impl AnyStore {
    /// Whether every migration this binary knows is applied (what `/readyz` asks).
    pub async fn migrations_current(&self) -> Result<bool> {
        let known = match self {
            AnyStore::Sqlite(_) => SqliteStore::known_schema_version(),
            AnyStore::Postgres(_) => PgStore::known_schema_version(),
        };
        Ok(self.schema_version().await? >= known)
    }
}

impl StateStore for AnyStore {
    async fn lock_transaction<T, F>(&self, unit: &str, decide: F) -> Result<(T, Committed)>
    where
        T: Send,
        F: FnOnce(&mut sluice_model::lock::Lock, Option<BackendLockRecord>) -> (T, Transaction)
            + Send,
    {
        delegate!(self, s => s.lock_transaction(unit, decide).await)
    }

    async fn state_write_view(
        &self,
        unit: &str,
    ) -> Result<(
        Option<sluice_model::lock::Lock>,
        Option<BackendLockRecord>,
        Option<StateVersionRecord>,
    )> {
        delegate!(self, s => s.state_write_view(unit).await)
    }

    async fn put_state_version(
        &self,
        new: &NewStateVersion,
        event: &StateEventRecord,
    ) -> Result<StateVersionRecord> {
        delegate!(self, s => s.put_state_version(new, event).await)
    }

    async fn state_head(&self, unit: &str) -> Result<Option<StateVersionRecord>> {
        delegate!(self, s => s.state_head(unit).await)
    }

    async fn state_version(&self, unit: &str, version: u64) -> Result<Option<StateVersionRecord>> {
        delegate!(self, s => s.state_version(unit, version).await)
    }

    async fn state_versions(&self, unit: &str, limit: u32) -> Result<Vec<StateVersionRecord>> {
        delegate!(self, s => s.state_versions(unit, limit).await)
    }

    async fn state_head_sealed(
        &self,
        unit: &str,
    ) -> Result<Option<(StateVersionRecord, Option<Vec<u8>>)>> {
        delegate!(self, s => s.state_head_sealed(unit).await)
    }

    async fn state_blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        delegate!(self, s => s.state_blob(digest).await)
    }

    async fn append_state_event(&self, event: &StateEventRecord) -> Result<i64> {
        delegate!(self, s => s.append_state_event(event).await)
    }

    async fn state_events(
        &self,
        unit: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StateEventRecord>> {
        delegate!(self, s => s.state_events(unit, after, limit).await)
    }

    async fn put_backend_lock(&self, lock: &BackendLockRecord) -> Result<()> {
        delegate!(self, s => s.put_backend_lock(lock).await)
    }

    async fn backend_lock(&self, unit: &str) -> Result<Option<BackendLockRecord>> {
        delegate!(self, s => s.backend_lock(unit).await)
    }

    async fn delete_backend_lock(&self, unit: &str, lock_id: &str) -> Result<bool> {
        delegate!(self, s => s.delete_backend_lock(unit, lock_id).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            parse_location("postgres://u@h:5432/db").unwrap(),
            Location::Postgres("postgres://u@h:5432/db".into())
        );
        assert_eq!(
            parse_location("sqlite://.sluice/sluice.db").unwrap(),
            Location::Sqlite(".sluice/sluice.db".into())
        );
        assert_eq!(
            parse_location("sqlite:///var/lib/sluice.db?mode=rwc").unwrap(),
            Location::Sqlite("/var/lib/sluice.db".into())
        );
        assert_eq!(
            parse_location("state/sluice.db").unwrap(),
            Location::Sqlite("state/sluice.db".into())
        );
        assert!(parse_location("sqlite::memory:").is_err());
        let err = parse_location("mysql://root:pw@h/db")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported scheme"), "{err}");
        assert!(!err.contains("pw"), "{err}");
        assert!(parse_location("  ").is_err());
    }
}
