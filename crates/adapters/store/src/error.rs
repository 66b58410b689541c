//! The store's errors: each says what is wrong and where (database, table, field, digest), and
//! [`StoreError::is_fatal`] marks the ones after which the process must stop writing.

use std::path::PathBuf;

/// Errors from the store, the transparency log and the artifact store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database was written by a newer sluice: this binary must not touch it.
    #[error(
        "{location}: the database is at schema version {found}, but this sluice knows versions up \
         to {known}; upgrade sluice (nothing was changed)"
    )]
    SchemaTooNew {
        location: String,
        found: i64,
        known: i64,
    },

    /// A migration was started and never finished (a crash mid-migration, or a failed one).
    #[error(
        "{location}: schema migration {version} is marked as failed; restore the database from a \
         backup before running sluice against it (nothing was changed)"
    )]
    SchemaDirty { location: String, version: i64 },

    /// The URL or path handed to `open` does not name a store this build can open.
    #[error("cannot open store {input:?}: {reason}")]
    BadLocation { input: String, reason: String },

    /// The commit of a write failed, or the storage reported an I/O error while writing. Whether the
    /// write reached the disk is unknown: the caller must stop appending and must not retry, since
    /// a retry could acknowledge an entry twice or hide lost data (DESIGN.md §6).
    #[error("FATAL: durable write failed ({context}); stop and inspect the store: {source}")]
    Durability {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },

    /// The group-commit appender stopped after a fatal error; no further appends are accepted.
    #[error(
        "FATAL: the log appender stopped after a durable write failed; restart and audit the log"
    )]
    AppenderStopped,

    /// A batch this caller's entry was part of failed; `fatal` as for [`StoreError::is_fatal`].
    #[error("{}appending to the transparency log failed: {message}", if *fatal { "FATAL: " } else { "" })]
    AppendFailed { fatal: bool, message: String },

    /// An ordinary database error (the transaction, if any, was rolled back; nothing was
    /// acknowledged).
    #[error("{context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },

    #[error("migrating {location}: {source}")]
    Migrate {
        location: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// A stored row has a value this version cannot interpret.
    #[error("table {table}, {key}: field {field}: {problem}")]
    BadRow {
        table: &'static str,
        key: String,
        field: &'static str,
        problem: String,
    },

    /// A record handed to the store is invalid (field named).
    #[error("invalid {record}: field {field}: {problem}")]
    Invalid {
        record: &'static str,
        field: &'static str,
        problem: String,
    },

    /// A create-only record already exists with different content.
    #[error("{what} already exists with different content: {detail}")]
    Conflict { what: &'static str, detail: String },

    /// A transaction was prepared against a state another writer has since moved (a manifest
    /// version someone else wrote first). Nothing was written; prepare it again from the new
    /// state and retry.
    #[error("{what} changed while this write was prepared: {detail}; nothing was written, retry")]
    Stale { what: &'static str, detail: String },

    /// A record that may exist once (a webhook delivery) was already recorded; nothing was
    /// written.
    #[error("{what} {key} was already recorded; nothing was written")]
    Duplicate { what: &'static str, key: String },

    /// A job's lease is no longer held: it was cancelled (superseded), finished, or claimed by
    /// another worker after the lease expired. Nothing was written.
    #[error("job {job_id}: the lease (token {token}) is no longer held{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    LeaseLost {
        job_id: crate::jobs::JobId,
        token: i64,
        reason: Option<String>,
    },

    #[error("{what} not found: {key}")]
    NotFound { what: &'static str, key: String },

    /// A blob's bytes do not hash to the digest it is stored under.
    #[error(
        "artifact {digest}: content does not match its digest (stored at {path}); the blob is corrupt or was tampered with"
    )]
    BlobCorrupt { digest: String, path: String },

    #[error("{op} {path}: {source}", path = path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Artifact writes whose fsync failed: the blob may or may not be on disk.
    #[error("FATAL: fsync of {path} failed; stop and inspect the artifact store: {source}", path = path.display())]
    BlobDurability {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The Merkle tree computations could not be carried out over the stored log.
    #[error("transparency log: {0}")]
    Log(String),

    /// A checkpoint signer refused or failed.
    #[error("signing the checkpoint: {0}")]
    Signer(String),
}

impl StoreError {
    /// True when the durability of a write is unknown: the process must stop writing to this store
    /// and must not retry the write.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StoreError::Durability { .. }
                | StoreError::AppenderStopped
                | StoreError::BlobDurability { .. }
                | StoreError::AppendFailed { fatal: true, .. }
        )
    }
}

impl StoreError {
    /// True when the write lost a race and may be prepared again and retried.
    pub fn is_stale(&self) -> bool {
        matches!(self, StoreError::Stale { .. })
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Wraps a database error with what was being done.
pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { context, source }
}

/// Wraps a database error from a write's commit path: those are fatal.
pub(crate) fn durability(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Durability { context, source }
}
