//! The two implementations of [`crate::Store`]. Both speak the same SQL (sqlx binds `$N` on
//! SQLite and PostgreSQL alike), so the queries live once, in [`impl_store!`], expanded for each
//! pool type; each backend supplies only what differs: how it connects and migrates, how a write
//! transaction starts (`BEGIN IMMEDIATE` vs a row lock on the log head) and which errors mean
//! the storage itself failed.

mod checkpoint;
mod group;
pub mod jobs;
pub mod postgres;
pub mod sqlite;
mod state;
pub(crate) mod statements;

use sluice_evidence::merkle::Hash;

use crate::error::StoreError;
use crate::records::{Digest, UnitKind};

/// Rows per multi-row INSERT: 5 binds each stays far below SQLite's and PostgreSQL's
/// bind-parameter limits, and large enough that statement overhead is amortised.
pub(crate) const INSERT_CHUNK: usize = 1000;

/// How long a pooled connection may sit idle before it is pinged on the way out of the pool.
///
/// sqlx pings every connection it hands out by default: one more round trip to the database in
/// front of every query and transaction (on PostgreSQL, 1 of the 5 round trips of a lock
/// transition). A connection that was in use a moment ago is as good as the answer it just
/// gave, so only connections idle longer than this are checked; a broken one is dropped there
/// and the caller gets another.
pub(crate) const PING_AFTER_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a connection idle for `idle_for` must be pinged before it is handed out.
pub(crate) fn needs_ping(idle_for: std::time::Duration) -> bool {
    idle_for >= PING_AFTER_IDLE
}

/// The pool's check of a connection leaving the idle queue: a ping, only if it sat idle (see
/// [`PING_AFTER_IDLE`]). Use with `test_before_acquire(false)`.
pub(crate) fn ping_if_idle<C: sqlx::Connection>(
    conn: &mut C,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        if needs_ping(meta.idle_for) {
            conn.ping().await?;
        }
        Ok(true)
    })
}

/// The newest schema version this binary knows, from the embedded migrations.
pub(crate) fn known_version(migrator: &sqlx::migrate::Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The decision behind "a database at a newer schema version: clear error, nothing rewritten":
/// given the applied migrations (version, success), refuse a newer or a half-applied schema.
pub(crate) fn check_applied(
    location: &str,
    applied: &[(i64, bool)],
    known: i64,
) -> Result<(), StoreError> {
    if let Some(&(version, _)) = applied.iter().find(|(_, ok)| !ok) {
        return Err(StoreError::SchemaDirty {
            location: location.to_string(),
            version,
        });
    }
    if let Some(found) = applied.iter().map(|(v, _)| *v).max()
        && found > known
    {
        return Err(StoreError::SchemaTooNew {
            location: location.to_string(),
            found,
            known,
        });
    }
    Ok(())
}

pub(crate) fn to_i64(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid {
        record: what,
        field: "index",
        problem: format!("{value} is out of range"),
    })
}

pub(crate) fn bad_row(
    table: &'static str,
    key: impl std::fmt::Display,
    field: &'static str,
    problem: impl Into<String>,
) -> StoreError {
    StoreError::BadRow {
        table,
        key: key.to_string(),
        field,
        problem: problem.into(),
    }
}

pub(crate) fn row_u64(
    value: i64,
    table: &'static str,
    key: impl std::fmt::Display,
    field: &'static str,
) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| bad_row(table, key, field, format!("negative value {value}")))
}

pub(crate) fn row_hash(
    bytes: &[u8],
    table: &'static str,
    key: impl std::fmt::Display,
    field: &'static str,
) -> Result<Hash, StoreError> {
    bytes.try_into().map_err(|_| {
        bad_row(
            table,
            key,
            field,
            format!("{} bytes, expected 32", bytes.len()),
        )
    })
}

pub(crate) fn row_digest(
    bytes: Option<Vec<u8>>,
    table: &'static str,
    key: impl std::fmt::Display,
    field: &'static str,
) -> Result<Option<Digest>, StoreError> {
    bytes
        .map(|b| row_hash(&b, table, key, field).map(Digest))
        .transpose()
}

pub(crate) fn row_unit_kind(value: &str, key: &str) -> Result<UnitKind, StoreError> {
    UnitKind::parse(value).ok_or_else(|| {
        bad_row(
            "changes",
            key,
            "unit_kind",
            format!("unknown kind {value:?}"),
        )
    })
}

pub(crate) fn row_json(
    text: &str,
    table: &'static str,
    key: impl std::fmt::Display,
    field: &'static str,
) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| bad_row(table, key, field, format!("invalid JSON: {e}")))
}

/// The checks of [`crate::Store::commit`] made before anything starts: leaf references name
/// leaves of the transaction, manifest chains are well formed, changes are valid.
pub(crate) fn validate(tx: &crate::tx::Transaction) -> Result<(), StoreError> {
    let invalid = |record, field, problem: &str| StoreError::Invalid {
        record,
        field,
        problem: problem.to_string(),
    };
    if !tx.leaf_refs_valid() {
        return Err(invalid(
            "transaction",
            "leaf",
            "names a leaf it does not append",
        ));
    }
    for m in &tx.manifests {
        if m.version == 0 || (m.version == 1) != m.previous.is_none() {
            return Err(invalid(
                "manifest",
                "previous",
                "version 1 names no previous version, every later one does",
            ));
        }
    }
    for change in &tx.changes {
        change.validate()?;
    }
    Ok(())
}

/// Generates `impl Store for $ty` over `self.pool` (a `sqlx::Pool<$db>`), `self.location`
/// and `self.frontier` (the cached right edge of the log). The backend provides:
/// `begin_write(&self)` (a transaction that holds the database's write lock or is about to
/// take the log head's row lock), `fail(&self, context)` (classifies an error, storage
/// failures as fatal), and `HEAD_FOR_UPDATE` (the SQL that reads the log size under the append
/// lock).
macro_rules! impl_store {
    ($ty:ty, $db:ty, $backend:expr) => {
        // `$ty::PACKED_LEAVES` and `$ty::PACKED_NODES` are the backend's bulk-read SQL: one row of
        // (count, [misplaced,] concatenated bytes) over a range bound as $1, $2.
        impl $ty {
            /// Reads the log size under the append lock (`BEGIN IMMEDIATE` holds SQLite's write
            /// lock; PostgreSQL locks the head row until the transaction ends).
            pub(crate) async fn locked_log_size(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
            ) -> $crate::error::Result<u64> {
                let size: i64 = sqlx::query_scalar(Self::HEAD_FOR_UPDATE)
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(self.fail("reading the log head"))?;
                $crate::backend::row_u64(size, "log_head", 1, "size")
            }

            /// The log's right edge after `leaves` are appended to a log of `size` leaves (read
            /// under the append lock), and the rows the append writes.
            async fn append_rows_on(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                cached: Option<&$crate::frontier::Frontier>,
                size: u64,
                leaves: &[$crate::records::LeafInput],
            ) -> $crate::error::Result<($crate::frontier::Frontier, $crate::frontier::AppendRows)> {
                // Another process (a second replica, a restarted appender) may have appended
                // since: the cache is used only if it is at the size this transaction locked.
                let mut frontier = match cached {
                    Some(f) if f.size() == size => f.clone(),
                    _ => {
                        let keys = $crate::frontier::Frontier::keys(size);
                        let hashes = Self::subtrees_on(&mut **tx, &keys).await?;
                        let map = $crate::log::LogSnapshot::from_pairs(
                            size,
                            keys.iter().copied().zip(hashes),
                        );
                        $crate::frontier::Frontier::load(size, &map).map_err(|e| {
                            $crate::error::StoreError::Log(format!(
                                "the stored log of size {size} is missing a subtree ({e}); run \
                                 the audit"
                            ))
                        })?
                    }
                };
                let entries: Vec<$crate::records::Hash> = leaves.iter().map(|l| l.entry).collect();
                let rows = frontier.append(&entries);
                Ok((frontier, rows))
            }

            /// Writes an append's rows (`rows` of `leaves`, the head moving to `new_size`): onto
            /// `writes` when each fits one statement (the usual few leaves), otherwise now, in
            /// chunks. The caller runs `writes`.
            async fn write_append_on(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                writes: &mut $crate::backend::statements::Statements<$db>,
                rows: &$crate::frontier::AppendRows,
                leaves: &[$crate::records::LeafInput],
                new_size: u64,
            ) -> $crate::error::Result<()> {
                use $crate::backend::{to_i64, INSERT_CHUNK};
                let now = $crate::records::now_millis();
                let new_size = to_i64(new_size, "leaf")?;
                let indexes = rows
                    .leaves
                    .iter()
                    .map(|(idx, _, _)| to_i64(*idx, "leaf"))
                    .collect::<$crate::error::Result<Vec<i64>>>()?;
                let push_leaves = |q: &mut sqlx::QueryBuilder<$db>, base: usize, n: usize| {
                    q.push("INSERT INTO log_leaves (idx, entry, leaf_hash, envelope_digest, created_at) ");
                    q.push_values(base..base + n, |mut b, i| {
                        let (_, entry, leaf) = &rows.leaves[i];
                        b.push_bind(indexes[i])
                            .push_bind(entry.to_vec())
                            .push_bind(leaf.to_vec())
                            .push_bind(leaves[i].envelope_digest.map(|d| d.0.to_vec()))
                            .push_bind(now);
                    });
                };
                let push_nodes = |q: &mut sqlx::QueryBuilder<$db>, nodes: &[$crate::records::LogNode]| {
                    q.push("INSERT INTO log_nodes (end_leaf, level, idx, hash) ");
                    q.push_values(nodes, |mut b, node| {
                        b.push_bind(node.end_leaf() as i64)
                            .push_bind(i32::from(node.level))
                            .push_bind(node.index as i64)
                            .push_bind(node.hash.to_vec());
                    });
                };
                if rows.leaves.len() <= INSERT_CHUNK && rows.nodes.len() <= INSERT_CHUNK {
                    if !rows.leaves.is_empty() {
                        push_leaves(writes.statement(), 0, rows.leaves.len());
                    }
                    if !rows.nodes.is_empty() {
                        push_nodes(writes.statement(), &rows.nodes);
                    }
                } else {
                    for base in (0..rows.leaves.len()).step_by(INSERT_CHUNK) {
                        let mut q = sqlx::QueryBuilder::new("");
                        push_leaves(&mut q, base, INSERT_CHUNK.min(rows.leaves.len() - base));
                        q.build()
                            .execute(&mut **tx)
                            .await
                            .map_err(self.fail("writing log leaves"))?;
                    }
                    for chunk in rows.nodes.chunks(INSERT_CHUNK) {
                        let mut q = sqlx::QueryBuilder::new("");
                        push_nodes(&mut q, chunk);
                        q.build()
                            .execute(&mut **tx)
                            .await
                            .map_err(self.fail("writing log nodes"))?;
                    }
                }
                $crate::backend::statements::push_sql!(
                    writes.statement(),
                    "UPDATE log_head SET size = ? WHERE id = 1",
                    new_size
                );
                Ok(())
            }

            /// An empty set of writes for this store (see [`super::statements`]).
            pub(crate) fn writes() -> $crate::backend::statements::Statements<$db> {
                $crate::backend::statements::Statements::new(Self::WRITES_IN_CTES)
            }

            /// Runs `writes` on `conn`; returns the rows of its returning statement (without
            /// one, PostgreSQL answers one row, to be ignored).
            async fn run_writes_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                writes: $crate::backend::statements::Statements<$db>,
            ) -> std::result::Result<Vec<<$db as sqlx::Database>::Row>, sqlx::Error> {
                match writes.finish() {
                    Some(mut q) => q.build().fetch_all(&mut *conn).await,
                    None => Ok(Vec::new()),
                }
            }

            /// Writes every record of `tx` on `db`, after a log of `size` leaves (read under the
            /// append lock unless `tx` holds job-queue writes only), with the statements already
            /// in `writes` (a lock's write-back); returns what was written and the log's new
            /// right edge when leaves were appended. The caller commits.
            ///
            /// The log append and the state writes (attached locks, versions, audit events) go
            /// to the database as one query, after the reads that check them.
            pub(crate) async fn write_tx_on(
                &self,
                db: &mut sqlx::Transaction<'static, $db>,
                cached: Option<&$crate::frontier::Frontier>,
                size: u64,
                tx: &$crate::tx::Transaction,
                mut writes: $crate::backend::statements::Statements<$db>,
            ) -> $crate::error::Result<($crate::tx::Committed, Option<$crate::frontier::Frontier>)> {
                let n = tx.leaves.len();
                for change in &tx.changes {
                    self.put_change_on(&mut **db, change).await?;
                }
                let append = if n > 0 {
                    Some(self.append_rows_on(db, cached, size, &tx.leaves).await?)
                } else {
                    None
                };
                let index = |leaf: $crate::tx::LeafRef| size + leaf.0 as u64;
                let mut out = $crate::tx::Committed {
                    leaf_indexes: (size..size + n as u64).collect(),
                    log_size: size + n as u64,
                    ..Default::default()
                };
                for result in &tx.stage_results {
                    out.stage_result_ids.push(self.put_stage_result_on(&mut **db, result).await?);
                }
                for (event, leaf) in &tx.events {
                    let id = match leaf {
                        Some(leaf) => {
                            let mut event = event.clone();
                            if let serde_json::Value::Object(map) = &mut event.payload {
                                map.insert("leaf_index".into(), index(*leaf).into());
                            }
                            self.append_event_on(&mut **db, &event).await?
                        }
                        None => self.append_event_on(&mut **db, event).await?,
                    };
                    out.event_ids.push(id);
                }
                for m in &tx.manifests {
                    out.manifests.push(self.put_manifest_on(&mut **db, m, index(m.leaf)).await?);
                }
                if let Some((frontier, rows)) = &append {
                    self.write_append_on(db, &mut writes, rows, &tx.leaves, frontier.size()).await?;
                }
                out.state_versions = self.write_state_on(&mut **db, tx, size, &mut writes).await?;
                let rows = Self::run_writes_on(&mut **db, writes)
                    .await
                    .map_err(|e| self.writes_error(tx, e))?;
                if !tx.state_events.is_empty() {
                    out.state_event_ids = Self::returned_ids(&rows, tx.state_events.len())?;
                }
                self.write_jobs_on(db, tx, &mut out).await?;
                Ok((out, append.map(|(frontier, _)| frontier)))
            }

            /// Records a change on `conn`, create-only (see `ChangeStore::put_change`).
            async fn put_change_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                change: &$crate::records::ChangeRecord,
            ) -> $crate::error::Result<()> {
                change.validate()?;
                let done = sqlx::query(
                    "INSERT INTO changes (change_id, repo, pr, base_sha, head_sha, env, unit_kind, \
                     unit, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (change_id) DO NOTHING",
                )
                .bind(&change.change_id)
                .bind(&change.repo)
                .bind(change.pr.map(|p| p as i64))
                .bind(&change.base)
                .bind(&change.head)
                .bind(&change.env)
                .bind(change.unit_kind.as_str())
                .bind(&change.unit)
                .bind(change.created_at)
                .execute(&mut *conn)
                .await
                .map_err(self.fail("recording a change"))?;
                if done.rows_affected() == 1 {
                    return Ok(());
                }
                let existing = sqlx::query("SELECT * FROM changes WHERE change_id = $1")
                    .bind(&change.change_id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err($crate::error::db("reading a change"))?
                    .as_ref()
                    .map(Self::change_from_row)
                    .transpose()?
                    .ok_or_else(|| $crate::error::StoreError::Conflict {
                        what: "change",
                        detail: format!("{} vanished while being recorded", change.change_id),
                    })?;
                let same = $crate::records::ChangeRecord {
                    created_at: existing.created_at,
                    ..change.clone()
                };
                if same == existing {
                    Ok(())
                } else {
                    Err($crate::error::StoreError::Conflict {
                        what: "change",
                        detail: format!(
                            "{} is recorded with other fields (repo, PR, revisions, env or unit)",
                            change.change_id
                        ),
                    })
                }
            }

            /// Records a stage result on `conn` for a change that exists; returns its id.
            async fn put_stage_result_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                result: &$crate::records::StageResultRecord,
            ) -> $crate::error::Result<i64> {
                if result.stage.trim().is_empty() {
                    return Err($crate::error::StoreError::Invalid {
                        record: "stage result",
                        field: "stage",
                        problem: "must not be empty".into(),
                    });
                }
                let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM changes WHERE change_id = $1")
                    .bind(&result.change_id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err($crate::error::db("reading a change"))?;
                if known.is_none() {
                    return Err($crate::error::StoreError::NotFound {
                        what: "change",
                        key: result.change_id.clone(),
                    });
                }
                sqlx::query_scalar(
                    "INSERT INTO stage_results (change_id, stage, outcome, detail, \
                     envelope_digest, recorded_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(&result.change_id)
                .bind(&result.stage)
                .bind(result.outcome.as_str())
                .bind(result.detail.to_string())
                .bind(result.envelope_digest.map(|d| d.0.to_vec()))
                .bind(result.recorded_at)
                .fetch_one(&mut *conn)
                .await
                .map_err(self.fail("recording a stage result"))
            }

            /// Appends an event on `conn`; returns its id.
            async fn append_event_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                event: &$crate::records::EventRecord,
            ) -> $crate::error::Result<i64> {
                for (field, value) in [("change_id", &event.change_id), ("kind", &event.kind)] {
                    if value.trim().is_empty() {
                        return Err($crate::error::StoreError::Invalid {
                            record: "event",
                            field,
                            problem: "must not be empty".into(),
                        });
                    }
                }
                sqlx::query_scalar(
                    "INSERT INTO events (change_id, kind, payload, created_at) \
                     VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(&event.change_id)
                .bind(&event.kind)
                .bind(event.payload.to_string())
                .bind(event.created_at)
                .fetch_one(&mut *conn)
                .await
                .map_err(self.fail("recording an event"))
            }

            /// The newest manifest version of a change, read on `conn`.
            async fn latest_manifest_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                change_id: &str,
            ) -> $crate::error::Result<Option<$crate::records::ManifestRecord>> {
                let row = sqlx::query(
                    "SELECT * FROM manifests WHERE change_id = $1 ORDER BY version DESC LIMIT 1",
                )
                .bind(change_id)
                .fetch_optional(&mut *conn)
                .await
                .map_err($crate::error::db("reading a manifest version"))?;
                row.as_ref().map(Self::manifest_from_row).transpose()
            }

            /// Writes the next manifest version of a change on `conn`, if the stored head is the
            /// version before it; [`StoreError::Stale`] otherwise (also when the database's
            /// (change, version) key refuses it: another writer got there first).
            async fn put_manifest_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                m: &$crate::tx::NewManifest,
                leaf_index: u64,
            ) -> $crate::error::Result<$crate::records::ManifestRecord> {
                let head = Self::latest_manifest_on(&mut *conn, &m.change_id).await?;
                let stale = |found: String| $crate::error::StoreError::Stale {
                    what: "manifest",
                    detail: format!(
                        "{} is at {found}; this write was prepared as version {}",
                        m.change_id, m.version
                    ),
                };
                match &head {
                    None if m.version == 1 && m.previous.is_none() => {}
                    None => return Err(stale("no version".into())),
                    Some(h) if h.version.checked_add(1) == Some(m.version)
                        && m.previous == Some(h.envelope) => {}
                    Some(h) => return Err(stale(format!("version {} ({})", h.version, h.envelope))),
                }
                let record = $crate::records::ManifestRecord {
                    change_id: m.change_id.clone(),
                    version: m.version,
                    envelope: m.envelope,
                    previous: m.previous,
                    leaf_index,
                    created_at: $crate::records::now_millis(),
                };
                sqlx::query(
                    "INSERT INTO manifests (change_id, version, envelope, previous, leaf_index, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&record.change_id)
                .bind(i64::from(record.version))
                .bind(record.envelope.0.to_vec())
                .bind(record.previous.map(|d| d.0.to_vec()))
                .bind($crate::backend::to_i64(leaf_index, "manifest")?)
                .bind(record.created_at)
                .execute(&mut *conn)
                .await
                .map_err(|e| {
                    if e.as_database_error().is_some_and(|d| d.is_unique_violation()) {
                        stale(format!("a version {} written by another writer", m.version))
                    } else {
                        self.fail("recording a manifest version")(e)
                    }
                })?;
                Ok(record)
            }

            fn manifest_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> $crate::error::Result<$crate::records::ManifestRecord> {
                use sqlx::Row as _;
                use $crate::backend::{row_digest, row_hash, row_u64};
                use $crate::error::db;
                let change_id: String = row.try_get("change_id").map_err(db("reading a manifest version"))?;
                let version: i64 = row.try_get("version").map_err(db("reading a manifest version"))?;
                let key = format!("{change_id} version {version}");
                let envelope: Vec<u8> = row.try_get("envelope").map_err(db("reading a manifest version"))?;
                let previous: Option<Vec<u8>> = row.try_get("previous").map_err(db("reading a manifest version"))?;
                let leaf_index: i64 = row.try_get("leaf_index").map_err(db("reading a manifest version"))?;
                Ok($crate::records::ManifestRecord {
                    version: u32::try_from(version)
                        .map_err(|_| $crate::backend::bad_row("manifests", &key, "version", "out of range"))?,
                    envelope: $crate::records::Digest(row_hash(&envelope, "manifests", &key, "envelope")?),
                    previous: row_digest(previous, "manifests", &key, "previous")?,
                    leaf_index: row_u64(leaf_index, "manifests", &key, "leaf_index")?,
                    created_at: row.try_get("created_at").map_err(db("reading a manifest version"))?,
                    change_id,
                })
            }

            /// Stored subtree hashes for `keys`, read on `conn` (inside a transaction when
            /// appending, so the frontier matches the head that transaction locked).
            async fn subtrees_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                keys: &[(u8, u64)],
            ) -> $crate::error::Result<Vec<Option<$crate::records::Hash>>> {
                use sqlx::Row as _;
                use std::collections::HashMap;
                use $crate::backend::{row_hash, row_u64};
                use $crate::error::db;

                let mut found: HashMap<(u8, u64), $crate::records::Hash> = HashMap::new();
                // One cached statement, one round trip: the keys travel as JSON (leaf indexes for
                // level 0, [last leaf, level] pairs for the rest). Proof latency is this query.
                use std::fmt::Write as _;
                let mut leaves = String::from("[");
                let mut nodes = String::from("[");
                for &(level, index) in keys {
                    if level == 0 {
                        let sep = if leaves.len() > 1 { "," } else { "" };
                        let _ = write!(leaves, "{sep}{index}");
                    } else if level < 63 {
                        let sep = if nodes.len() > 1 { "," } else { "" };
                        let end = $crate::records::end_leaf(level, index);
                        let _ = write!(nodes, "{sep}[{end},{level}]");
                    }
                }
                leaves.push(']');
                nodes.push(']');
                let rows = sqlx::query(Self::SUBTREES)
                    .bind(leaves)
                    .bind(nodes)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db("reading subtree hashes"))?;
                for row in rows {
                    let level: i32 = row.try_get(0).map_err(db("reading subtree hashes"))?;
                    let end: i64 = row.try_get(1).map_err(db("reading subtree hashes"))?;
                    let hash: &[u8] = row.try_get(2).map_err(db("reading subtree hashes"))?;
                    let key = || format!("level {level} last leaf {end}");
                    let level = u8::try_from(level)
                        .ok()
                        .filter(|l| *l < 63)
                        .ok_or_else(|| $crate::backend::bad_row("log_nodes", key(), "level", "out of range"))?;
                    let end = row_u64(end, "log_nodes", key(), "end_leaf")?;
                    // Keyed by (last leaf, level); level 0 rows are leaves, keyed by index.
                    let idx = ((end + 1) >> level).wrapping_sub(1);
                    found.insert((level, idx), row_hash(hash, "log_nodes", key(), "hash")?);
                }
                Ok(keys.iter().map(|k| found.get(k).copied()).collect())
            }

            fn leaf_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> $crate::error::Result<$crate::records::LogLeaf> {
                use sqlx::Row as _;
                use $crate::backend::{row_digest, row_hash, row_u64};
                use $crate::error::db;
                let idx: i64 = row.try_get(0).map_err(db("reading a leaf"))?;
                let entry: &[u8] = row.try_get(1).map_err(db("reading a leaf"))?;
                let leaf_hash: &[u8] = row.try_get(2).map_err(db("reading a leaf"))?;
                let envelope: Option<Vec<u8>> =
                    row.try_get(3).map_err(db("reading a leaf"))?;
                let created_at: i64 = row.try_get(4).map_err(db("reading a leaf"))?;
                let index = row_u64(idx, "log_leaves", idx, "idx")?;
                Ok($crate::records::LogLeaf {
                    index,
                    entry: row_hash(entry, "log_leaves", index, "entry")?,
                    leaf_hash: row_hash(leaf_hash, "log_leaves", index, "leaf_hash")?,
                    envelope_digest: row_digest(envelope, "log_leaves", index, "envelope_digest")?,
                    created_at,
                })
            }

            fn node_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> $crate::error::Result<$crate::records::LogNode> {
                use sqlx::Row as _;
                use $crate::backend::bad_row;
                use $crate::error::db;
                let end: i64 = row.try_get(0).map_err(db("reading a node"))?;
                let level: i32 = row.try_get(1).map_err(db("reading a node"))?;
                let idx: i64 = row.try_get(2).map_err(db("reading a node"))?;
                let hash: &[u8] = row.try_get(3).map_err(db("reading a node"))?;
                let key = || format!("level {level} index {idx}");
                let level_u8 = u8::try_from(level)
                    .ok()
                    .filter(|l| (1..63).contains(l))
                    .ok_or_else(|| bad_row("log_nodes", key(), "level", "out of range"))?;
                let index = u64::try_from(idx)
                    .map_err(|_| bad_row("log_nodes", key(), "idx", "negative"))?;
                let end = u64::try_from(end)
                    .map_err(|_| bad_row("log_nodes", key(), "end_leaf", "negative"))?;
                if index.checked_add(1).and_then(|i| i.checked_shl(level as u32))
                    != end.checked_add(1)
                {
                    return Err(bad_row(
                        "log_nodes",
                        key(),
                        "end_leaf",
                        format!("{end} is not the last leaf of the subtree"),
                    ));
                }
                Ok($crate::records::LogNode {
                    level: level_u8,
                    index,
                    hash: hash
                        .try_into()
                        .map_err(|_| bad_row("log_nodes", key(), "hash", "not 32 bytes"))?,
                })
            }

            fn change_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> $crate::error::Result<$crate::records::ChangeRecord> {
                use sqlx::Row as _;
                use $crate::backend::{row_u64, row_unit_kind};
                use $crate::error::db;
                let change_id: String = row.try_get("change_id").map_err(db("reading a change"))?;
                let pr: Option<i64> = row.try_get("pr").map_err(db("reading a change"))?;
                let kind: String = row.try_get("unit_kind").map_err(db("reading a change"))?;
                Ok($crate::records::ChangeRecord {
                    pr: pr
                        .map(|p| row_u64(p, "changes", &change_id, "pr"))
                        .transpose()?,
                    unit_kind: row_unit_kind(&kind, &change_id)?,
                    repo: row.try_get("repo").map_err(db("reading a change"))?,
                    base: row.try_get("base_sha").map_err(db("reading a change"))?,
                    head: row.try_get("head_sha").map_err(db("reading a change"))?,
                    env: row.try_get("env").map_err(db("reading a change"))?,
                    unit: row.try_get("unit").map_err(db("reading a change"))?,
                    created_at: row.try_get("created_at").map_err(db("reading a change"))?,
                    change_id,
                })
            }

            fn checkpoint_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> $crate::error::Result<$crate::records::CheckpointRecord> {
                use sqlx::Row as _;
                use $crate::backend::{row_hash, row_u64};
                use $crate::error::db;
                let size: i64 = row.try_get("size").map_err(db("reading a checkpoint"))?;
                let root: Vec<u8> = row.try_get("root").map_err(db("reading a checkpoint"))?;
                let size = row_u64(size, "checkpoints", size, "size")?;
                Ok($crate::records::CheckpointRecord {
                    size,
                    root: row_hash(&root, "checkpoints", size, "root")?,
                    origin: row.try_get("origin").map_err(db("reading a checkpoint"))?,
                    note: row.try_get("note").map_err(db("reading a checkpoint"))?,
                    created_at: row.try_get("created_at").map_err(db("reading a checkpoint"))?,
                })
            }

            fn artifact_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> $crate::error::Result<$crate::records::ArtifactRecord> {
                use sqlx::Row as _;
                use $crate::backend::{row_hash, row_u64};
                use $crate::error::db;
                let digest: Vec<u8> = row.try_get("digest").map_err(db("reading an artifact"))?;
                let key = hex::encode(&digest);
                let digest = $crate::records::Digest(row_hash(&digest, "artifacts", &key, "digest")?);
                let size: i64 = row.try_get("size").map_err(db("reading an artifact"))?;
                Ok($crate::records::ArtifactRecord {
                    digest,
                    size: row_u64(size, "artifacts", digest, "size")?,
                    media_type: row.try_get("media_type").map_err(db("reading an artifact"))?,
                    secret: row.try_get("secret").map_err(db("reading an artifact"))?,
                    created_at: row.try_get("created_at").map_err(db("reading an artifact"))?,
                })
            }

            fn stage_result_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> $crate::error::Result<$crate::records::StageResultRecord> {
                use sqlx::Row as _;
                use $crate::backend::{bad_row, row_digest, row_json};
                use $crate::error::db;
                let id: i64 = row.try_get("id").map_err(db("reading a stage result"))?;
                let outcome: String = row.try_get("outcome").map_err(db("reading a stage result"))?;
                let detail: String = row.try_get("detail").map_err(db("reading a stage result"))?;
                let envelope: Option<Vec<u8>> =
                    row.try_get("envelope_digest").map_err(db("reading a stage result"))?;
                Ok($crate::records::StageResultRecord {
                    id,
                    change_id: row.try_get("change_id").map_err(db("reading a stage result"))?,
                    stage: row.try_get("stage").map_err(db("reading a stage result"))?,
                    outcome: $crate::records::StageOutcome::parse(&outcome).ok_or_else(|| {
                        bad_row("stage_results", id, "outcome", format!("unknown outcome {outcome:?}"))
                    })?,
                    detail: row_json(&detail, "stage_results", id, "detail")?,
                    envelope_digest: row_digest(envelope, "stage_results", id, "envelope_digest")?,
                    recorded_at: row.try_get("recorded_at").map_err(db("reading a stage result"))?,
                })
            }

            fn event_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> $crate::error::Result<$crate::records::EventRecord> {
                use sqlx::Row as _;
                use $crate::backend::row_json;
                use $crate::error::db;
                let id: i64 = row.try_get("id").map_err(db("reading an event"))?;
                let payload: String = row.try_get("payload").map_err(db("reading an event"))?;
                Ok($crate::records::EventRecord {
                    id,
                    change_id: row.try_get("change_id").map_err(db("reading an event"))?,
                    kind: row.try_get("kind").map_err(db("reading an event"))?,
                    payload: row_json(&payload, "events", id, "payload")?,
                    created_at: row.try_get("created_at").map_err(db("reading an event"))?,
                })
            }
        }

        impl $crate::store::Store for $ty {
            fn backend(&self) -> $crate::store::Backend {
                $backend
            }

            fn location(&self) -> &str {
                &self.location
            }

            async fn schema_version(&self) -> $crate::error::Result<i64> {
                let v: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
                )
                .fetch_one(&self.pool)
                .await
                .map_err($crate::error::db("reading the schema version"))?;
                Ok(v.unwrap_or(0))
            }

            async fn commit(
                &self,
                tx: $crate::tx::Transaction,
            ) -> $crate::error::Result<$crate::tx::Committed> {
                $crate::backend::validate(&tx)?;
                // PostgreSQL commits each on its own connection (the database shares WAL
                // flushes between commits in flight); SQLite groups them (`group`).
                let out = self.commit_valid(tx).await?;
                if !out.job_ids.is_empty() {
                    // Idle claim loops of this process look now instead of at their next poll.
                    self.jobs_ready.notify_waiters();
                }
                Ok(out)
            }
        }

        impl $crate::store::ChangeStore for $ty {
            async fn put_change(
                &self,
                change: &$crate::records::ChangeRecord,
            ) -> $crate::error::Result<()> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(self.fail("recording a change"))?;
                self.put_change_on(&mut *conn, change).await
            }

            async fn change(
                &self,
                change_id: &str,
            ) -> $crate::error::Result<Option<$crate::records::ChangeRecord>> {
                let row = sqlx::query("SELECT * FROM changes WHERE change_id = $1")
                    .bind(change_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::error::db("reading a change"))?;
                row.as_ref().map(Self::change_from_row).transpose()
            }

            async fn changes(
                &self,
                limit: u32,
            ) -> $crate::error::Result<Vec<$crate::records::ChangeRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM changes ORDER BY created_at DESC, change_id LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::error::db("listing changes"))?;
                rows.iter().map(Self::change_from_row).collect()
            }

            async fn put_stage_result(
                &self,
                result: &$crate::records::StageResultRecord,
            ) -> $crate::error::Result<i64> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(self.fail("recording a stage result"))?;
                self.put_stage_result_on(&mut *conn, result).await
            }

            async fn stage_results(
                &self,
                change_id: &str,
            ) -> $crate::error::Result<Vec<$crate::records::StageResultRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM stage_results WHERE change_id = $1 ORDER BY id",
                )
                .bind(change_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::error::db("reading stage results"))?;
                rows.iter().map(Self::stage_result_from_row).collect()
            }

            async fn append_event(
                &self,
                event: &$crate::records::EventRecord,
            ) -> $crate::error::Result<i64> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(self.fail("recording an event"))?;
                self.append_event_on(&mut *conn, event).await
            }

            async fn events(
                &self,
                change_id: Option<&str>,
                after: i64,
                limit: u32,
            ) -> $crate::error::Result<Vec<$crate::records::EventRecord>> {
                let rows = match change_id {
                    Some(id) => {
                        sqlx::query(
                            "SELECT * FROM events WHERE change_id = $1 AND id > $2 \
                             ORDER BY id LIMIT $3",
                        )
                        .bind(id)
                        .bind(after)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await
                    }
                    None => {
                        sqlx::query("SELECT * FROM events WHERE id > $1 ORDER BY id LIMIT $2")
                            .bind(after)
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await
                    }
                }
                .map_err($crate::error::db("reading events"))?;
                rows.iter().map(Self::event_from_row).collect()
            }

            async fn latest_manifest(
                &self,
                change_id: &str,
            ) -> $crate::error::Result<Option<$crate::records::ManifestRecord>> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err($crate::error::db("reading a manifest version"))?;
                Self::latest_manifest_on(&mut *conn, change_id).await
            }

            async fn manifests(
                &self,
                change_id: &str,
            ) -> $crate::error::Result<Vec<$crate::records::ManifestRecord>> {
                let rows = sqlx::query("SELECT * FROM manifests WHERE change_id = $1 ORDER BY version")
                    .bind(change_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::error::db("reading manifest versions"))?;
                rows.iter().map(Self::manifest_from_row).collect()
            }
        }

        impl $crate::store::LogStore for $ty {
            async fn append_batch(
                &self,
                entries: &[$crate::records::Hash],
            ) -> $crate::error::Result<Vec<u64>> {
                let leaves: Vec<$crate::records::LeafInput> = entries
                    .iter()
                    .map(|entry| $crate::records::LeafInput {
                        entry: *entry,
                        envelope_digest: None,
                    })
                    .collect();
                self.append_leaves(&leaves).await
            }

            async fn append_leaves(
                &self,
                leaves: &[$crate::records::LeafInput],
            ) -> $crate::error::Result<Vec<u64>> {
                if leaves.is_empty() {
                    return Ok(Vec::new());
                }
                // One append at a time per process: the cached frontier advances in commit order.
                let mut cached = self.frontier.lock().await;
                let mut tx = self.begin_write().await?;
                let size = self.locked_log_size(&mut tx).await?;
                let (frontier, rows) = self.append_rows_on(&mut tx, cached.as_ref(), size, leaves).await?;
                let mut writes = Self::writes();
                self.write_append_on(&mut tx, &mut writes, &rows, leaves, frontier.size()).await?;
                Self::run_writes_on(&mut *tx, writes)
                    .await
                    .map_err(self.fail("appending to the log"))?;
                // The acknowledgement: after this returns Ok the append is durable. Any error
                // here leaves durability unknown, so it is fatal and never retried.
                tx.commit()
                    .await
                    .map_err($crate::error::durability("committing a log append"))?;
                let first = size;
                *cached = Some(frontier);
                Ok((first..first + leaves.len() as u64).collect())
            }

            async fn log_size(&self) -> $crate::error::Result<u64> {
                let size: i64 = sqlx::query_scalar("SELECT size FROM log_head WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::error::db("reading the log head"))?;
                $crate::backend::row_u64(size, "log_head", 1, "size")
            }

            async fn leaves(
                &self,
                from: u64,
                to: u64,
            ) -> $crate::error::Result<Vec<$crate::records::LogLeaf>> {
                let rows = sqlx::query(
                    "SELECT idx, entry, leaf_hash, envelope_digest, created_at FROM log_leaves \
                     WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                )
                .bind($crate::backend::to_i64(from, "leaf")?)
                .bind($crate::backend::to_i64(to.min(i64::MAX as u64), "leaf")?)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::error::db("reading log leaves"))?;
                rows.iter().map(Self::leaf_from_row).collect()
            }

            async fn find_leaf(
                &self,
                entry: &$crate::records::Hash,
            ) -> $crate::error::Result<Option<$crate::records::LogLeaf>> {
                // A scan: see Store::find_leaf.
                let row = sqlx::query(
                    "SELECT idx, entry, leaf_hash, envelope_digest, created_at FROM log_leaves \
                     WHERE entry = $1 ORDER BY idx LIMIT 1",
                )
                .bind(entry.to_vec())
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::error::db("looking up a log entry"))?;
                row.as_ref().map(Self::leaf_from_row).transpose()
            }

            async fn subtrees(
                &self,
                keys: &[(u8, u64)],
            ) -> $crate::error::Result<Vec<Option<$crate::records::Hash>>> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err($crate::error::db("reading subtree hashes"))?;
                Self::subtrees_on(&mut *conn, keys).await
            }

            async fn nodes(
                &self,
                from: u64,
                to: u64,
            ) -> $crate::error::Result<Vec<$crate::records::LogNode>> {
                let rows = sqlx::query(
                    "SELECT end_leaf, level, idx, hash FROM log_nodes \
                     WHERE end_leaf >= $1 AND end_leaf < $2 ORDER BY end_leaf, level",
                )
                .bind($crate::backend::to_i64(from, "node")?)
                .bind($crate::backend::to_i64(to.min(i64::MAX as u64), "node")?)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::error::db("reading log nodes"))?;
                rows.iter().map(Self::node_from_row).collect()
            }

            async fn packed_leaves(
                &self,
                from: u64,
                to: u64,
            ) -> $crate::error::Result<$crate::records::PackedLeaves> {
                let (count, bytes): (i64, Option<Vec<u8>>) = sqlx::query_as(Self::PACKED_LEAVES)
                    .bind($crate::backend::to_i64(from, "leaf")?)
                    .bind($crate::backend::to_i64(to.min(i64::MAX as u64), "leaf")?)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::error::db("reading log leaves"))?;
                Ok($crate::records::PackedLeaves {
                    count: count.max(0) as u64,
                    bytes: bytes.unwrap_or_default(),
                })
            }

            async fn packed_nodes(
                &self,
                from: u64,
                to: u64,
            ) -> $crate::error::Result<$crate::records::PackedNodes> {
                let (count, misplaced, hashes): (i64, Option<i64>, Option<Vec<u8>>) =
                    sqlx::query_as(Self::PACKED_NODES)
                        .bind($crate::backend::to_i64(from, "node")?)
                        .bind($crate::backend::to_i64(to.min(i64::MAX as u64), "node")?)
                        .fetch_one(&self.pool)
                        .await
                        .map_err($crate::error::db("reading log nodes"))?;
                Ok($crate::records::PackedNodes {
                    count: count.max(0) as u64,
                    misplaced: misplaced.unwrap_or(0).max(0) as u64,
                    hashes: hashes.unwrap_or_default(),
                })
            }

            async fn put_checkpoint(
                &self,
                checkpoint: &$crate::records::CheckpointRecord,
            ) -> $crate::error::Result<()> {
                let done = sqlx::query(
                    "INSERT INTO checkpoints (size, root, origin, note, created_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (size) DO NOTHING",
                )
                .bind($crate::backend::to_i64(checkpoint.size, "checkpoint")?)
                .bind(checkpoint.root.to_vec())
                .bind(&checkpoint.origin)
                .bind(&checkpoint.note)
                .bind(checkpoint.created_at)
                .execute(&self.pool)
                .await
                .map_err(self.fail("recording a checkpoint"))?;
                if done.rows_affected() == 1 {
                    return Ok(());
                }
                let row = sqlx::query("SELECT * FROM checkpoints WHERE size = $1")
                    .bind($crate::backend::to_i64(checkpoint.size, "checkpoint")?)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::error::db("reading a checkpoint"))?;
                let existing = Self::checkpoint_from_row(&row)?;
                if existing.root == checkpoint.root && existing.origin == checkpoint.origin {
                    Ok(())
                } else {
                    Err($crate::error::StoreError::Conflict {
                        what: "checkpoint",
                        detail: format!(
                            "a checkpoint of size {} with another root or origin is stored: the \
                             log has forked or was rewritten",
                            checkpoint.size
                        ),
                    })
                }
            }

            async fn checkpoints(
                &self,
            ) -> $crate::error::Result<Vec<$crate::records::CheckpointRecord>> {
                let rows = sqlx::query("SELECT * FROM checkpoints ORDER BY size")
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::error::db("reading checkpoints"))?;
                rows.iter().map(Self::checkpoint_from_row).collect()
            }

            async fn latest_checkpoint(
                &self,
            ) -> $crate::error::Result<Option<$crate::records::CheckpointRecord>> {
                let row = sqlx::query("SELECT * FROM checkpoints ORDER BY size DESC LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::error::db("reading the latest checkpoint"))?;
                row.as_ref().map(Self::checkpoint_from_row).transpose()
            }

        }

        impl $crate::store::ArtifactIndex for $ty {
            async fn put_artifact(
                &self,
                artifact: &$crate::records::ArtifactRecord,
            ) -> $crate::error::Result<()> {
                if artifact.media_type.trim().is_empty() {
                    return Err($crate::error::StoreError::Invalid {
                        record: "artifact",
                        field: "media_type",
                        problem: "must not be empty".into(),
                    });
                }
                let done = sqlx::query(
                    "INSERT INTO artifacts (digest, size, media_type, secret, created_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (digest) DO NOTHING",
                )
                .bind(artifact.digest.0.to_vec())
                .bind($crate::backend::to_i64(artifact.size, "artifact")?)
                .bind(&artifact.media_type)
                .bind(artifact.secret)
                .bind(artifact.created_at)
                .execute(&self.pool)
                .await
                .map_err(self.fail("indexing an artifact"))?;
                if done.rows_affected() == 1 {
                    return Ok(());
                }
                let existing = self.artifact(&artifact.digest).await?.ok_or_else(|| {
                    $crate::error::StoreError::NotFound {
                        what: "artifact",
                        key: artifact.digest.to_string(),
                    }
                })?;
                if existing.size == artifact.size && existing.media_type == artifact.media_type {
                    Ok(())
                } else {
                    Err($crate::error::StoreError::Conflict {
                        what: "artifact",
                        detail: format!(
                            "{} is indexed as {} bytes of {}",
                            artifact.digest, existing.size, existing.media_type
                        ),
                    })
                }
            }

            async fn artifact(
                &self,
                digest: &$crate::records::Digest,
            ) -> $crate::error::Result<Option<$crate::records::ArtifactRecord>> {
                let row = sqlx::query("SELECT * FROM artifacts WHERE digest = $1")
                    .bind(digest.0.to_vec())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::error::db("reading an artifact"))?;
                row.as_ref().map(Self::artifact_from_row).transpose()
            }
        }
    };
}

pub(crate) use impl_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idle_connections_are_pinged() {
        use std::time::Duration;
        assert!(!needs_ping(Duration::ZERO));
        assert!(!needs_ping(Duration::from_millis(999)));
        assert!(needs_ping(PING_AFTER_IDLE));
        assert!(needs_ping(Duration::from_secs(3600)));
    }

    #[test]
    fn newer_schema_is_refused() {
        let err = check_applied("x.db", &[(1, true), (7, true)], 1).unwrap_err();
        assert!(matches!(
            err,
            StoreError::SchemaTooNew {
                found: 7,
                known: 1,
                ..
            }
        ));
        assert!(err.to_string().contains("nothing was changed"));
        let err = check_applied("x.db", &[(1, false)], 1).unwrap_err();
        assert!(matches!(err, StoreError::SchemaDirty { version: 1, .. }));
        check_applied("x.db", &[], 1).unwrap();
        check_applied("x.db", &[(1, true)], 2).unwrap();
    }
}
