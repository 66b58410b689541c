//! The scale-out store: PostgreSQL (`postgres://…`). Several `sluice serve` replicas may append
//! to the log at once: each append locks the log head row (`SELECT … FOR UPDATE`), so appends
//! are serialised in the database and the cached right edge of the tree is re-read whenever
//! another replica moved the head. A commit returns after PostgreSQL has flushed its WAL
//! (`synchronous_commit` is left at its default, `on`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, Postgres, Transaction};
use tokio::sync::Mutex;

use crate::backend::jobs::impl_jobs;
use crate::backend::{check_applied, impl_store, known_version};
use crate::error::{Result, StoreError};
use crate::frontier::Frontier;
use crate::store::Backend;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL implementation of [`crate::Store`]. Clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    pub(crate) location: String,
    /// Shared by clones: every handle appends through the same cached right edge.
    pub(crate) frontier: Arc<Mutex<Option<Frontier>>>,
    /// Notified when a commit enqueues jobs or a job is released ([`crate::JobQueue::job_signal`]).
    pub(crate) jobs_ready: Arc<tokio::sync::Notify>,
    /// Connections for claims and heartbeats, whose commits do not wait for the WAL flush
    /// (`synchronous_commit = off`). Losing one in a database crash loses nothing: a claim
    /// lost is a job queued again (at least once; the worker that held it is fenced off by the
    /// lease token), a heartbeat lost a lease that lapses sooner. Every completion, failure
    /// and release still commits durably, and its flush covers the claim before it.
    ///
    /// Its sessions also plan with `enable_sort = off`: a claim must walk the unfinished jobs
    /// in id order through `jobs_unfinished` and stop at its limit. On a jobs table without
    /// statistics (a new queue, or a server without autovacuum) PostgreSQL estimated a handful
    /// of rows and chose to fetch every unfinished job and sort them: 18 ms a claim at 10,000
    /// queued jobs instead of 0.3 ms. Statistics go stale on a queue by nature, so the plan is
    /// not left to them. Heartbeats, the pool's only other statements, find rows by id.
    pub(crate) lease_pool: PgPool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.location)
            .finish()
    }
}

impl PgStore {
    /// The claim's row lock: replicas skip the rows others are claiming instead of waiting.
    pub(crate) const CLAIM_LOCK: &'static str = "FOR UPDATE SKIP LOCKED";
    /// Claims are one statement (giving up expired jobs in a `WITH`), committed on their own.
    pub(crate) const CLAIM_IN_ONE_STATEMENT: bool = true;
    /// A transaction's writes (see [`super::statements`]) are data-modifying `WITH`
    /// clauses in front of one `SELECT`: one round trip for the log append, the lock's
    /// write-back and the state writes.
    pub(crate) const WRITES_IN_CTES: bool = true;
    /// A job key's lock for a transaction that cancels or supersedes its jobs: an advisory lock
    /// held until commit (class `0x736c7563`, "sluc"; the key's hash). Such transactions are no
    /// longer serialised by the log head, and without it two pushes committing at once would
    /// each miss the other's job and leave both to run.
    /// `$1` is a JSON array of the keys, sorted; a function scan yields them in that order.
    pub(crate) const KEY_LOCK: Option<&'static str> = Some(
        "SELECT count(pg_advisory_xact_lock(1936483683, hashtext(k))) \
         FROM json_array_elements_text($1::json) AS k",
    );

    /// SQL that reads the log size and holds its row lock until the transaction ends.
    pub(crate) const HEAD_FOR_UPDATE: &'static str =
        "SELECT size FROM log_head WHERE id = 1 FOR UPDATE";

    /// Subtree hashes by key: leaf indexes ($1, a JSON array) and nodes' (last leaf, level)
    /// pairs ($2, a JSON array of pairs), each answered by a primary-key look-up.
    pub(crate) const SUBTREES: &'static str = "\
         SELECT 0, idx, leaf_hash FROM log_leaves \
         WHERE idx IN (SELECT value::bigint FROM json_array_elements_text($1::json)) \
         UNION ALL \
         SELECT n.level, n.end_leaf, n.hash FROM json_array_elements($2::json) AS k(v) \
         JOIN log_nodes AS n ON n.end_leaf = (k.v ->> 0)::bigint AND n.level = (k.v ->> 1)::int";

    /// The audit's bulk read of leaves: entries and leaf hashes concatenated in index order.
    pub(crate) const PACKED_LEAVES: &'static str = "SELECT COUNT(*), \
         string_agg(entry || leaf_hash, ''::bytea ORDER BY idx) \
         FROM log_leaves WHERE idx >= $1 AND idx < $2";
    /// The audit's bulk read of nodes; `misplaced` counts rows at a level their last leaf does
    /// not complete (the low `level` bits of `end_leaf + 1` must be zero).
    pub(crate) const PACKED_NODES: &'static str = "SELECT COUNT(*), \
         SUM(CASE WHEN ((end_leaf + 1) & ((1::bigint << level) - 1)) <> 0 THEN 1 ELSE 0 END)::bigint, \
         string_agg(hash, ''::bytea ORDER BY end_leaf, level) \
         FROM log_nodes WHERE end_leaf >= $1 AND end_leaf < $2";

    /// Connects to `url` (`postgres://user@host:port/db`) and brings the schema up to date. A
    /// database written by a newer sluice is refused before anything in it is changed.
    pub async fn open(url: &str) -> Result<PgStore> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::BadLocation {
            input: redact_url(url),
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
        PgStore::open_with(options).await
    }

    /// Connects with explicit options (tests use this to pin `search_path` to a schema of
    /// their own).
    pub async fn open_with(options: PgConnectOptions) -> Result<PgStore> {
        let location = describe(&options);
        let unreachable = |e: sqlx::Error| StoreError::BadLocation {
            input: location.clone(),
            reason: format!("cannot connect: {e}"),
        };
        let mut conn = options.connect().await.map_err(unreachable)?;
        let has_table: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&mut conn)
                .await
                .map_err(unreachable)?;
        let applied: Vec<(i64, bool)> = if has_table {
            sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&mut conn)
                .await
                .map_err(unreachable)?
        } else {
            Vec::new()
        };
        let _ = conn.close().await;
        check_applied(&location, &applied, known_version(&MIGRATOR))?;

        let lease_pool = pool_options(LEASE_CONNECTIONS).connect_lazy_with(
            options
                .clone()
                .options([("synchronous_commit", "off"), ("enable_sort", "off")]),
        );
        let pool = pool_options(8)
            .connect_with(options)
            .await
            .map_err(unreachable)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                location: location.clone(),
                source,
            })?;
        Ok(PgStore {
            pool,
            location,
            frontier: Arc::new(Mutex::new(None)),
            jobs_ready: Arc::new(tokio::sync::Notify::new()),
            lease_pool,
        })
    }

    /// The connection pool, for adapters that keep their own tables in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The newest schema version this binary knows.
    pub fn known_schema_version() -> i64 {
        known_version(&MIGRATOR)
    }

    pub async fn close(self) {
        self.lease_pool.close().await;
        self.pool.close().await;
    }

    /// [`crate::Store::commit`] of a validated transaction, on a connection of its own.
    async fn commit_valid(&self, tx: crate::tx::Transaction) -> Result<crate::tx::Committed> {
        // Only a transaction that appends to the log (or writes a manifest or state record)
        // waits for the frontier and locks the log head; the rest neither queue behind appends
        // nor behind each other (see `Transaction::needs_log_head`), so PostgreSQL can flush
        // their commits together.
        let serialised = tx.needs_log_head();
        let mut cached = if serialised {
            Some(self.frontier.lock().await)
        } else {
            None
        };
        let mut db = self.begin_write().await?;
        // Every serialised transaction takes the log head first: that serialises them in the
        // database, so the manifest heads read below stay the heads until commit.
        // The others never read the log's size: it places leaves, manifests and state events,
        // which they do not have (and a size read beside concurrent appends would say little),
        // so they skip that round trip and report none (`Committed::log_size`).
        let size = if serialised {
            self.locked_log_size(&mut db).await?
        } else {
            0
        };
        let frontier_in = cached.as_deref().and_then(|c| c.as_ref());
        let (out, frontier) = self
            .write_tx_on(&mut db, frontier_in, size, &tx, Self::writes())
            .await?;
        db.commit()
            .await
            .map_err(crate::error::durability("committing a transaction"))?;
        if let (Some(frontier), Some(cached)) = (frontier, cached.as_mut()) {
            **cached = Some(frontier);
        }
        Ok(out)
    }

    /// No turn to wait for: PostgreSQL locks rows, so writers go side by side.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        None
    }

    /// A transaction on the lease pool (claims are one statement on PostgreSQL; this is for
    /// the code both backends share).
    pub(crate) async fn begin_lease_write(&self) -> Result<Transaction<'static, Postgres>> {
        self.lease_pool
            .begin()
            .await
            .map_err(self.fail("starting a claim"))
    }

    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool
            .begin()
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

/// How many connections claims and heartbeats use (see `PgStore::lease_pool`).
const LEASE_CONNECTIONS: u32 = 2;

/// The pool settings of both pools.
fn pool_options(max: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        // sqlx pings a connection before handing it out by default: a round trip per
        // statement outside a transaction. Only one idle long enough for the server to have
        // gone away (a restart) is pinged (`ping_if_idle`).
        .test_before_acquire(false)
        .before_acquire(crate::backend::ping_if_idle)
}

/// SQLSTATE classes that mean the server's storage failed: 53 (insufficient resources: disk
/// full, out of memory), 58 (system error: I/O), XX (internal error: data corrupted).
fn is_storage_failure(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| {
            ["53", "58", "XX"]
                .iter()
                .any(|class| code.starts_with(class))
        })
}

/// `postgres://user@host:port/db`: enough to say where, never the password.
fn describe(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

/// A URL for an error message, with any password replaced.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparseable URL>".to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let tail = tail.split('?').next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => format!("{scheme}://{authority}{tail}"),
    }
}

impl_store!(PgStore, Postgres, Backend::Postgres);
impl_jobs!(PgStore, Postgres);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url(
                "postgres://sluice:hunter2@db.internal:5432/sluice?sslmode=disable&password=x"
            ),
            "postgres://sluice:***@db.internal:5432/sluice"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        assert_eq!(redact_url("garbage"), "<unparseable URL>");
    }
}
