//! Remote state records (DESIGN.md §6): immutable, encrypted state versions per unit, the
//! backend's audit events, and the Terraform lock attached to a unit's state-domain lock.
//!
//! The store keeps what it is given: bodies arrive sealed (the state service encrypts them with
//! sluice-iac's seal), addressed by the SHA-256 of their plaintext, written create-only; the
//! decisions (serial and lineage checks, who may read or write) are the model's and the
//! service's.
//!
//! State writes go through the one [`crate::Transaction`]: a version (its blob, its record and
//! its fence), the Terraform lock attached or detached, and the audit events with the evidence
//! log leaves that sign them, all committed together by [`crate::Store::commit`]. A version
//! commits only while the unit's newest version is the one the write was checked against
//! ([`crate::StoreError::Stale`] otherwise). The lock path decides inside its transaction:
//! [`StateStore::lock_transaction`] hands a decision the unit's lock and its attached Terraform
//! lock, holding both, and commits the decision's writes with the lock's new state.

use std::future::Future;

use serde::Serialize;

use crate::error::Result;
use crate::records::{Digest, UnixMillis};

/// One stored version of a unit's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateVersionRecord {
    pub unit: String,
    pub version: u64,
    /// SHA-256 of the plaintext body.
    pub digest: Digest,
    pub serial: u64,
    pub lineage: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// MD5 of the plaintext body (what a `GET` answers in `Content-MD5`), computed when the
    /// version was written; `None` for versions stored before it was kept.
    #[serde(skip)]
    pub md5: Option<[u8; 16]>,
    /// Who wrote it (`oidc:<iss>#<sub>`, `user:<name>`, `token:<name>`).
    pub identity: String,
    /// The Terraform lock id the write came with.
    pub lock_id: Option<String>,
    /// The state-domain lock's fencing token the write was accepted under.
    pub fencing_token: Option<u64>,
    /// Set when an admin overrode the serial or lineage check: their reason.
    pub forced_reason: Option<String>,
    /// Set for a rollback: the version whose content this one restores.
    pub rollback_of: Option<u64>,
    pub created_at: UnixMillis,
}

/// A version to write: the record (its `created_at` is set by the store) and the sealed body.
#[derive(Debug, Clone)]
pub struct NewStateVersion {
    pub record: StateVersionRecord,
    /// The encrypted body; stored under `record.digest` unless a blob with that digest exists.
    pub sealed: Vec<u8>,
    /// The lock the write must still hold when it commits, checked inside the write's own
    /// transaction (so a holder whose lease lapsed, or who was replaced, between the service's
    /// check and the write cannot slip a version in).
    pub fence: Option<Fence>,
}

/// The state-domain lock a write is made under: its fencing token must be the current
/// holder's, with a live lease at `at`; with `lock_id`, that Terraform lock must still be the
/// one attached to the token. A write that fails this is [`crate::StoreError::Stale`] with
/// `what: "lock"`, and nothing is written.
#[derive(Debug, Clone)]
pub struct Fence {
    pub token: sluice_model::lock::FencingToken,
    pub lock_id: Option<String>,
    pub at: sluice_model::exception::Timestamp,
}

/// One audit event of the state backend. `detail` never holds state content.
///
/// With an evidence envelope (the service signs every event it records), the event is also a
/// leaf of the transparency log: [`crate::Transaction::append_state_event`] with the leaf's
/// reference sets `leaf_index` at commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateEventRecord {
    /// Assigned by the store, increasing; ignored on insert.
    pub id: i64,
    pub unit: String,
    /// `read`, `write`, `lock`, `unlock`, `rollback`, `auth`.
    pub action: String,
    /// `ok`, `unchanged`, `refused`, `not_found`.
    pub outcome: String,
    pub identity: String,
    pub version: Option<u64>,
    pub detail: serde_json::Value,
    pub created_at: UnixMillis,
    /// The log leaf holding the SHA-256 of `envelope` (set by the store at commit).
    pub leaf_index: Option<u64>,
    /// The signed statement of this event: a DSSE envelope's canonical JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envelope: Option<String>,
}

impl StateEventRecord {
    pub fn new(
        unit: impl Into<String>,
        action: &str,
        outcome: &str,
        identity: impl Into<String>,
        version: Option<u64>,
        detail: serde_json::Value,
    ) -> StateEventRecord {
        StateEventRecord {
            id: 0,
            unit: unit.into(),
            action: action.to_string(),
            outcome: outcome.to_string(),
            identity: identity.into(),
            version,
            detail,
            created_at: crate::records::now_millis(),
            leaf_index: None,
            envelope: None,
        }
    }
}

/// A change to the Terraform lock attached to a unit, made in a [`crate::Transaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendLockWrite {
    /// Attach (replacing one left from an older fencing token).
    Put(BackendLockRecord),
    /// Detach the unit's lock if its id is `lock_id`.
    Delete { unit: String, lock_id: String },
}

/// The Terraform lock that acts for a unit's state-domain lock holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendLockRecord {
    pub unit: String,
    /// The client's lock id (Terraform's `ID`).
    pub lock_id: String,
    /// The state-domain lock holder it acts for.
    pub change: String,
    pub fencing_token: u64,
    /// The client's lock info JSON, as sent.
    pub info: serde_json::Value,
    pub created_at: UnixMillis,
}

/// Remote state on one database.
pub trait StateStore: Send + Sync + 'static {
    /// One transaction of the lock path: holds the log head, the unit's lock row (a fresh lock
    /// if it was never taken) and reads its attached Terraform lock; `decide` changes the lock
    /// and gathers its other writes (the attached lock, audit events and their log leaves) in
    /// a [`crate::Transaction`]; then the lock (if it changed; a fencing token never goes
    /// back) and those writes commit together. An empty transaction and an unchanged lock
    /// write nothing. A transaction holding a state version is refused (invalid): a version is
    /// written by [`crate::Store::commit`], which checks its fence against the stored lock.
    fn lock_transaction<T, F>(
        &self,
        unit: &str,
        decide: F,
    ) -> impl Future<Output = Result<(T, crate::tx::Committed)>> + Send
    where
        T: Send,
        F: FnOnce(
                &mut sluice_model::lock::Lock,
                Option<BackendLockRecord>,
            ) -> (T, crate::tx::Transaction)
            + Send;

    /// The unit's lock (`None` if never taken), its attached Terraform lock and its newest
    /// state version, read together: what a write is checked against before its transaction.
    fn state_write_view(
        &self,
        unit: &str,
    ) -> impl Future<
        Output = Result<(
            Option<sluice_model::lock::Lock>,
            Option<BackendLockRecord>,
            Option<StateVersionRecord>,
        )>,
    > + Send;

    /// Writes a version, its blob (create-only) and its audit event atomically, if the unit's
    /// newest version is `version - 1` (none for version 1); [`crate::StoreError::Stale`]
    /// otherwise. Returns the record as stored. (A [`crate::Transaction`] of
    /// [`crate::Transaction::put_state_version`] and
    /// [`crate::Transaction::append_state_event`].)
    fn put_state_version(
        &self,
        new: &NewStateVersion,
        event: &StateEventRecord,
    ) -> impl Future<Output = Result<StateVersionRecord>> + Send;

    /// The newest version of a unit.
    fn state_head(
        &self,
        unit: &str,
    ) -> impl Future<Output = Result<Option<StateVersionRecord>>> + Send;

    fn state_version(
        &self,
        unit: &str,
        version: u64,
    ) -> impl Future<Output = Result<Option<StateVersionRecord>>> + Send;

    /// A unit's versions, newest first, at most `limit`.
    fn state_versions(
        &self,
        unit: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StateVersionRecord>>> + Send;

    /// The newest version of a unit with its sealed body (`None` when the blob is missing), read
    /// in one query: what a `GET` needs.
    fn state_head_sealed(
        &self,
        unit: &str,
    ) -> impl Future<Output = Result<Option<(StateVersionRecord, Option<Vec<u8>>)>>> + Send;

    /// The sealed body stored under a plaintext digest.
    fn state_blob(&self, digest: &Digest) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    /// Appends an audit event; returns its id.
    fn append_state_event(
        &self,
        event: &StateEventRecord,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// Audit events in id order: of one unit or all; id > `after`, at most `limit`.
    fn state_events(
        &self,
        unit: Option<&str>,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StateEventRecord>>> + Send;

    /// Attaches a Terraform lock to the unit (replacing one left from an older fencing token).
    fn put_backend_lock(&self, lock: &BackendLockRecord)
    -> impl Future<Output = Result<()>> + Send;

    fn backend_lock(
        &self,
        unit: &str,
    ) -> impl Future<Output = Result<Option<BackendLockRecord>>> + Send;

    /// Removes the unit's Terraform lock if its id is `lock_id`; whether one was removed.
    fn delete_backend_lock(
        &self,
        unit: &str,
        lock_id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
}
