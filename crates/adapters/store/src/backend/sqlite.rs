//! The embedded store: one SQLite file (`.sluice/sluice.db` by default) in WAL mode with
//! `synchronous=FULL`, so a commit returns only after the WAL is fsynced; every write
//! transaction starts with `BEGIN IMMEDIATE`, taking the write lock up front instead of failing
//! on a lock upgrade halfway through. The WAL is checkpointed by a task of the store, not by
//! whichever commit happens to take it past SQLite's threshold (see [`super::checkpoint`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions as _, Connection as _, Sqlite, Transaction};
use tokio::sync::Mutex;

use crate::backend::checkpoint;
use crate::backend::group::{BatchWriter, GroupCommit};
use crate::backend::jobs::impl_jobs;
use crate::backend::{check_applied, impl_store, known_version};
use crate::error::{Result, StoreError};
use crate::frontier::Frontier;
use crate::store::Backend;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQLite implementation of [`crate::Store`]. Clones share the pool.
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    pub(crate) location: String,
    /// Shared by clones: every handle appends through the same cached right edge.
    pub(crate) frontier: Arc<Mutex<Option<Frontier>>>,
    /// Commits waiting to be written together (see [`crate::backend::group`]).
    group: GroupCommit,
    /// This process's turn to write: the group commit's writer and the job queue's own writes
    /// (claims, heartbeats, failures, releases) take it before `BEGIN IMMEDIATE`, so they queue
    /// behind each other on a wake-up instead of polling SQLite's lock in its busy handler
    /// (which sleeps 1, 2, 5, 10… up to 100 ms between tries). Other processes still meet the
    /// busy handler.
    turn: Arc<Mutex<()>>,
    /// Notified when a commit enqueues jobs or a job is released ([`crate::JobQueue::job_signal`]).
    pub(crate) jobs_ready: Arc<tokio::sync::Notify>,
    /// One connection for claims and heartbeats with `synchronous=NORMAL`: in WAL mode their
    /// commits do not sync the WAL. Losing one in a power cut loses nothing: a claim lost is a
    /// job queued again (at least once; its worker is fenced off by the lease token), a
    /// heartbeat lost a lease that lapses sooner; every completion, failure and release still
    /// syncs, and that sync covers the claims written before it.
    pub(crate) lease_pool: SqlitePool,
    path: PathBuf,
    /// When a write last began: the checkpoint task waits for a quiet moment.
    activity: Arc<checkpoint::Activity>,
    /// Keeps the WAL checkpoint task running while a clone of the store lives.
    _checkpoints: checkpoint::Alive,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// The claim's row lock: none, `BEGIN IMMEDIATE` already makes the claim the only writer.
    pub(crate) const CLAIM_LOCK: &'static str = "";
    /// SQLite has no `UPDATE` in `WITH`: a claim is two statements under `BEGIN IMMEDIATE`.
    pub(crate) const CLAIM_IN_ONE_STATEMENT: bool = false;
    /// SQLite has no `INSERT` in `WITH`: a transaction's writes (see [`super::statements`]) are
    /// statements separated by `;`, run in one hand-off to the connection's thread.
    pub(crate) const WRITES_IN_CTES: bool = false;
    /// No key locks: a write transaction is the only writer already.
    pub(crate) const KEY_LOCK: Option<&'static str> = None;

    /// SQL that reads the log size once the write lock is held (BEGIN IMMEDIATE holds it).
    pub(crate) const HEAD_FOR_UPDATE: &'static str = "SELECT size FROM log_head WHERE id = 1";

    /// Subtree hashes by key: leaf indexes ($1, a JSON array) and nodes' (last leaf, level)
    /// pairs ($2, a JSON array of pairs), each answered by a primary-key look-up.
    pub(crate) const SUBTREES: &'static str = "\
         SELECT 0, idx, leaf_hash FROM log_leaves \
         WHERE idx IN (SELECT value FROM json_each($1)) \
         UNION ALL \
         SELECT n.level, n.end_leaf, n.hash FROM json_each($2) AS k \
         JOIN log_nodes AS n ON n.end_leaf = k.value ->> 0 AND n.level = k.value ->> 1";

    /// The audit's bulk read of leaves: hex-concatenated in SQLite's C and unhexed back to
    /// bytes, because SQLite has no binary concatenation aggregate.
    pub(crate) const PACKED_LEAVES: &'static str = "SELECT COUNT(*), \
         unhex(group_concat(hex(entry) || hex(leaf_hash), '' ORDER BY idx)) \
         FROM log_leaves WHERE idx >= $1 AND idx < $2";
    /// The audit's bulk read of nodes; `misplaced` counts rows at a level their last leaf does
    /// not complete (the low `level` bits of `end_leaf + 1` must be zero).
    pub(crate) const PACKED_NODES: &'static str = "SELECT COUNT(*), \
         SUM(((end_leaf + 1) & ((1 << level) - 1)) != 0), \
         unhex(group_concat(hex(hash), '' ORDER BY end_leaf, level)) \
         FROM log_nodes WHERE end_leaf >= $1 AND end_leaf < $2";

    /// Opens (creating if needed) the store at `path` and brings its schema up to date. A
    /// database written by a newer sluice is refused before anything in it is changed.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let location = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                op: "creating the store directory",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        if path.exists() {
            check_existing(&path, &location).await?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // The entry index takes random inserts: with SQLite's 2 MiB default page cache a
            // log of a million leaves spills to disk on every append. 64 MiB per connection.
            .pragma("cache_size", "-65536")
            // Checkpoints run on the store's own task (see `checkpoint`); a commit checkpoints
            // only if the WAL grew past this bound.
            .pragma(
                "wal_autocheckpoint",
                checkpoint::COMMIT_CHECKPOINT_PAGES.to_string(),
            );
        // WAL lets readers (audit scans, proofs) run beside the one writer; two cores here, so
        // a few connections are enough.
        let lease_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options.clone().synchronous(SqliteSynchronous::Normal));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .test_before_acquire(false)
            .before_acquire(crate::backend::ping_if_idle)
            .connect_with(options)
            .await
            .map_err(|e| open_error(&location, e))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                location: location.clone(),
                source,
            })?;
        let activity = Arc::new(checkpoint::Activity::new());
        let checkpoints = checkpoint::start(&pool, activity.clone());
        Ok(SqliteStore {
            pool,
            location,
            frontier: Arc::new(Mutex::new(None)),
            group: GroupCommit::default(),
            turn: Arc::new(Mutex::new(())),
            jobs_ready: Arc::new(tokio::sync::Notify::new()),
            lease_pool,
            path,
            activity,
            _checkpoints: checkpoints,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection pool, for adapters that keep their own tables in the same database.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The newest schema version this binary knows.
    pub fn known_schema_version() -> i64 {
        known_version(&MIGRATOR)
    }

    /// Closes the pool, checkpointing the WAL into the main file.
    pub async fn close(self) {
        self.lease_pool.close().await;
        self.pool.close().await;
    }

    /// [`crate::Store::commit`] of a validated transaction: written with the others waiting
    /// then, in one SQLite transaction and one sync of the WAL.
    async fn commit_valid(&self, tx: crate::tx::Transaction) -> Result<crate::tx::Committed> {
        self.group.commit(self, tx).await
    }

    /// Waits for this process's turn to write (see `turn`).
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        Some(self.turn.lock().await)
    }

    /// A write transaction on the lease pool (see `lease_pool`).
    pub(crate) async fn begin_lease_write(&self) -> Result<Transaction<'static, Sqlite>> {
        self.activity.write_begins();
        self.lease_pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.fail("starting a claim"))
    }

    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        self.activity.write_begins();
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.fail("starting a write transaction"))
    }

    /// Classifies an error from a write: storage failures are fatal.
    pub(crate) fn fail(&self, context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| {
            if is_storage_failure(&source) {
                StoreError::Durability { context, source }
            } else {
                StoreError::Database { context, source }
            }
        }
    }
}

/// SQLite result codes that mean the file or the disk failed, not the statement: I/O error,
/// corrupt database, disk full, cannot open, not a database.
fn is_storage_failure(err: &sqlx::Error) -> bool {
    let Some(db) = err.as_database_error() else {
        return matches!(err, sqlx::Error::Io(_));
    };
    let Some(code) = db.code().and_then(|c| c.parse::<i32>().ok()) else {
        return false;
    };
    matches!(code & 0xff, 10 | 11 | 13 | 14 | 26)
}

fn open_error(location: &str, err: sqlx::Error) -> StoreError {
    StoreError::BadLocation {
        input: location.to_string(),
        reason: format!("not a usable SQLite database: {err}"),
    }
}

/// Reads the applied migrations of an existing file on a read-only connection, so a database
/// from a newer sluice is refused before WAL mode or a migration touches it.
async fn check_existing(path: &Path, location: &str) -> Result<()> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT)
        .connect()
        .await
        .map_err(|e| open_error(location, e))?;
    let has_table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(&mut conn)
    .await
    .map_err(|e| open_error(location, e))?;
    let applied: Vec<(i64, bool)> = if has_table.is_some() {
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .map_err(|e| open_error(location, e))?
    } else {
        Vec::new()
    };
    let _ = conn.close().await;
    check_applied(location, &applied, known_version(&MIGRATOR))
}

impl BatchWriter for SqliteStore {
    /// Writes `batch` in order in one `BEGIN IMMEDIATE` transaction, each transaction inside a
    /// savepoint: one that fails is rolled back to its savepoint with its own error (unless the
    /// failure is the storage's, which fails the whole batch), and the log's right edge moves
    /// only by the ones that were written.
    async fn write_batch(
        &self,
        batch: &[crate::tx::Transaction],
    ) -> Result<Vec<Result<crate::tx::Committed>>> {
        // The order every leaf-writing transaction takes: the frontier, then the write lock.
        let mut cached = self.frontier.lock().await;
        let _turn = self.write_turn().await;
        let mut db = self.begin_write().await?;
        let mut size = self.locked_log_size(&mut db).await?;
        let mut frontier: Option<Frontier> = (*cached).clone();
        let mut results = Vec::with_capacity(batch.len());
        // A batch of one needs no savepoint: its failure rolls back the whole transaction,
        // which is all it holds (two statements fewer on every commit nobody queued behind).
        if let [tx] = batch {
            let (out, moved) = self
                .write_tx_on(&mut db, frontier.as_ref(), size, tx, Self::writes())
                .await?;
            db.commit()
                .await
                .map_err(crate::error::durability("committing a transaction"))?;
            if moved.is_some() {
                *cached = moved;
            }
            return Ok(vec![Ok(out)]);
        }
        for tx in batch {
            sqlx::query("SAVEPOINT sluice_group")
                .execute(&mut *db)
                .await
                .map_err(self.fail("starting a grouped transaction"))?;
            match self
                .write_tx_on(&mut db, frontier.as_ref(), size, tx, Self::writes())
                .await
            {
                Ok((out, moved)) => {
                    sqlx::query("RELEASE SAVEPOINT sluice_group")
                        .execute(&mut *db)
                        .await
                        .map_err(self.fail("ending a grouped transaction"))?;
                    size = out.log_size;
                    if moved.is_some() {
                        frontier = moved;
                    }
                    results.push(Ok(out));
                }
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT sluice_group")
                        .execute(&mut *db)
                        .await
                        .map_err(self.fail("rolling back a grouped transaction"))?;
                    sqlx::query("RELEASE SAVEPOINT sluice_group")
                        .execute(&mut *db)
                        .await
                        .map_err(self.fail("ending a grouped transaction"))?;
                    results.push(Err(e));
                }
            }
        }
        db.commit()
            .await
            .map_err(crate::error::durability("committing a transaction"))?;
        *cached = frontier;
        Ok(results)
    }
}

impl_store!(SqliteStore, Sqlite, Backend::Sqlite);
impl_jobs!(SqliteStore, Sqlite);
