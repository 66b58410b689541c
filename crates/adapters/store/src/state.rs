//! Remote state records (DESIGN.md §6): immutable, encrypted state versions per unit, the
//! backend's audit events, and the Terraform lock attached to a unit's state-domain lock.
//!
//! The store keeps what it is given: bodies arrive sealed (the state service encrypts them with
//! sluice-iac's seal), addressed by the SHA-256 of their plaintext, written create-only; the
//! decisions (serial and lineage checks, who may read or write) are the model's and the
//! service's. [`StateStore::put_state_version`] writes the blob, the version and its audit event
//! in one transaction, and only while the unit's newest version is the one the write was
//! checked against ([`crate::StoreError::Stale`] otherwise).

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
        }
    }
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
    /// Writes a version, its blob (create-only) and its audit event atomically, if the unit's
    /// newest version is `version - 1` (none for version 1); [`crate::StoreError::Stale`]
    /// otherwise. Returns the record as stored.
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
