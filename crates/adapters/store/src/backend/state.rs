//! [`crate::state::StateStore`] on both backends: the same SQL, expanded once per pool type
//! like [`super::impl_store`].

use crate::backend::postgres::PgStore;
use crate::backend::sqlite::SqliteStore;

/// A unit's lock state and its attached Terraform lock, in one read (`b.*` is null when no
/// Terraform lock is attached); no row when the unit was never locked.
const LOCK_AND_ATTACHED: &str = "SELECT l.state AS lock_state, b.* FROM locks l \
     LEFT JOIN state_backend_locks b ON b.unit = l.unit WHERE l.unit = $1";

macro_rules! impl_state_store {
    ($ty:ty, $db:ty, $lock_and_attached_held:expr, $head_lock_and_attached:expr) => {
        impl $ty {
            fn state_version_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> $crate::error::Result<$crate::state::StateVersionRecord> {
                use sqlx::Row as _;
                use $crate::backend::{bad_row, row_hash, row_u64};
                let ctx = "reading a state version";
                let get_i64 = |name: &str| -> $crate::error::Result<i64> {
                    row.try_get::<i64, _>(name).map_err($crate::error::db(ctx))
                };
                let unit: String = row.try_get("unit").map_err($crate::error::db(ctx))?;
                let version = get_i64("version")?;
                let key = format!("{unit} version {version}");
                let digest: Vec<u8> = row.try_get("digest").map_err($crate::error::db(ctx))?;
                let opt_u64 = |name: &'static str| -> $crate::error::Result<Option<u64>> {
                    let v: Option<i64> = row.try_get(name).map_err($crate::error::db(ctx))?;
                    v.map(|v| row_u64(v, "state_versions", &key, name)).transpose()
                };
                let lineage: String = row.try_get("lineage").map_err($crate::error::db(ctx))?;
                if lineage.is_empty() {
                    return Err(bad_row("state_versions", &key, "lineage", "empty"));
                }
                Ok($crate::state::StateVersionRecord {
                    version: row_u64(version, "state_versions", &key, "version")?,
                    digest: $crate::records::Digest(row_hash(
                        &digest,
                        "state_versions",
                        &key,
                        "digest",
                    )?),
                    serial: row_u64(get_i64("serial")?, "state_versions", &key, "serial")?,
                    lineage,
                    size: row_u64(get_i64("size")?, "state_versions", &key, "size")?,
                    md5: {
                        let md5: Option<Vec<u8>> =
                            row.try_get("md5").map_err($crate::error::db(ctx))?;
                        md5.map(|m| {
                            <[u8; 16]>::try_from(m.as_slice()).map_err(|_| {
                                bad_row(
                                    "state_versions",
                                    &key,
                                    "md5",
                                    format!("{} bytes, expected 16", m.len()),
                                )
                            })
                        })
                        .transpose()?
                    },
                    identity: row.try_get("identity").map_err($crate::error::db(ctx))?,
                    lock_id: row.try_get("lock_id").map_err($crate::error::db(ctx))?,
                    fencing_token: opt_u64("fencing_token")?,
                    forced_reason: row.try_get("forced_reason").map_err($crate::error::db(ctx))?,
                    rollback_of: opt_u64("rollback_of")?,
                    created_at: get_i64("created_at")?,
                    unit,
                })
            }

            fn state_event_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> $crate::error::Result<$crate::state::StateEventRecord> {
                use sqlx::Row as _;
                let ctx = "reading state events";
                let id: i64 = row.try_get("id").map_err($crate::error::db(ctx))?;
                let version: Option<i64> = row.try_get("version").map_err($crate::error::db(ctx))?;
                let detail: String = row.try_get("detail").map_err($crate::error::db(ctx))?;
                let leaf_index: Option<i64> =
                    row.try_get("leaf_index").map_err($crate::error::db(ctx))?;
                Ok($crate::state::StateEventRecord {
                    id,
                    unit: row.try_get("unit").map_err($crate::error::db(ctx))?,
                    action: row.try_get("action").map_err($crate::error::db(ctx))?,
                    outcome: row.try_get("outcome").map_err($crate::error::db(ctx))?,
                    identity: row.try_get("identity").map_err($crate::error::db(ctx))?,
                    version: version
                        .map(|v| $crate::backend::row_u64(v, "state_events", id, "version"))
                        .transpose()?,
                    detail: $crate::backend::row_json(&detail, "state_events", id, "detail")?,
                    created_at: row.try_get("created_at").map_err($crate::error::db(ctx))?,
                    leaf_index: leaf_index
                        .map(|v| $crate::backend::row_u64(v, "state_events", id, "leaf_index"))
                        .transpose()?,
                    envelope: row.try_get("envelope").map_err($crate::error::db(ctx))?,
                })
            }

            async fn insert_state_event_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                e: &$crate::state::StateEventRecord,
            ) -> $crate::error::Result<i64> {
                let mut q = sqlx::QueryBuilder::new("");
                Self::push_state_events(&mut q, std::iter::once((e, e.leaf_index)))?;
                q.build_query_scalar()
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(self.fail("recording a state event"))
            }

            /// One `INSERT` of `events` (each with the index of its leaf, if any), returning
            /// their ids.
            fn push_state_events<'e>(
                q: &mut sqlx::QueryBuilder<$db>,
                events: impl Iterator<Item = (&'e $crate::state::StateEventRecord, Option<u64>)>,
            ) -> $crate::error::Result<()> {
                use $crate::backend::to_i64;
                let events = events
                    .map(|(e, leaf)| {
                        let version = e.version.map(|v| to_i64(v, "state event")).transpose()?;
                        let leaf = leaf.map(|v| to_i64(v, "state event")).transpose()?;
                        Ok((e, version, leaf))
                    })
                    .collect::<$crate::error::Result<Vec<_>>>()?;
                q.push(
                    "INSERT INTO state_events (unit, action, outcome, identity, version, detail, \
                     created_at, leaf_index, envelope) ",
                );
                q.push_values(events, |mut b, (e, version, leaf)| {
                    b.push_bind(&e.unit)
                        .push_bind(&e.action)
                        .push_bind(&e.outcome)
                        .push_bind(&e.identity)
                        .push_bind(version)
                        .push_bind(e.detail.to_string())
                        .push_bind(e.created_at)
                        .push_bind(leaf)
                        .push_bind(&e.envelope);
                });
                q.push(" RETURNING id");
                Ok(())
            }

            /// The ids a transaction's returning statement answered, in the order of the rows
            /// it inserted (ids grow with each row), checked to be `expected` many.
            pub(crate) fn returned_ids(
                rows: &[<$db as sqlx::Database>::Row],
                expected: usize,
            ) -> $crate::error::Result<Vec<i64>> {
                use sqlx::Row as _;
                let mut ids = rows
                    .iter()
                    .map(|r| r.try_get::<i64, _>(0))
                    .collect::<Result<Vec<i64>, _>>()
                    .map_err($crate::error::db("reading the ids of state events"))?;
                if ids.len() != expected {
                    return Err($crate::error::StoreError::Log(format!(
                        "the store recorded {} state events of {expected}",
                        ids.len()
                    )));
                }
                ids.sort_unstable();
                Ok(ids)
            }

            /// The error of a transaction's writes: a second version of the same
            /// number means another writer got there first (stale), anything else is the
            /// store's.
            pub(crate) fn writes_error(
                &self,
                tx: &$crate::tx::Transaction,
                e: sqlx::Error,
            ) -> $crate::error::StoreError {
                let duplicate = e.as_database_error().is_some_and(|d| d.is_unique_violation());
                match tx.state_versions.first() {
                    Some(v) if duplicate => $crate::error::StoreError::Stale {
                        what: "state",
                        detail: format!(
                            "{} version {} was written by another writer",
                            v.record.unit, v.record.version
                        ),
                    },
                    _ => self.fail("writing a transaction")(e),
                }
            }

            /// `unit`'s stored lock (its state as stored) and attached Terraform lock, read in
            /// one round trip; `held` holds the lock row until the transaction ends
            /// (`$lock_and_attached_held`). `None` when the unit was never locked.
            async fn lock_and_attached_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                unit: &str,
                held: bool,
            ) -> $crate::error::Result<
                Option<(sluice_model::lock::Lock, Option<$crate::state::BackendLockRecord>)>,
            > {
                let sql = if held {
                    $lock_and_attached_held
                } else {
                    LOCK_AND_ATTACHED
                };
                let row = sqlx::query(sql)
                    .bind(unit)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(self.fail("reading a lock"))?;
                match row {
                    Some(row) => Self::lock_and_attached_from_row(unit, &row),
                    None => Ok(None),
                }
            }

            /// The log's size and `unit`'s lock and attached Terraform lock, in one read on a
            /// write transaction, holding the log head and then the lock row
            /// (`$head_lock_and_attached`) as every leaf-writing transaction takes them. The
            /// lock is `None` when the unit was never locked.
            async fn head_lock_and_attached_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                unit: &str,
            ) -> $crate::error::Result<(
                u64,
                Option<(sluice_model::lock::Lock, Option<$crate::state::BackendLockRecord>)>,
            )> {
                use sqlx::Row as _;
                let row = sqlx::query($head_lock_and_attached)
                    .bind(unit)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(self.fail("reading the log head and a lock"))?;
                let size: i64 = row
                    .try_get("log_size")
                    .map_err($crate::error::db("reading the log head"))?;
                let size = $crate::backend::row_u64(size, "log_head", 1, "size")?;
                Ok((size, Self::lock_and_attached_from_row(unit, &row)?))
            }

            /// A lock (`lock_state`, null when the unit has none) and its attached Terraform
            /// lock (`state_backend_locks.*`, null when none is attached) from one row.
            fn lock_and_attached_from_row(
                unit: &str,
                row: &<$db as sqlx::Database>::Row,
            ) -> $crate::error::Result<
                Option<(sluice_model::lock::Lock, Option<$crate::state::BackendLockRecord>)>,
            > {
                use sqlx::Row as _;
                let state: Option<String> = row
                    .try_get("lock_state")
                    .map_err($crate::error::db("reading a lock"))?;
                let Some(state) = state else { return Ok(None) };
                let lock = $crate::locks::decode(unit, &state)?;
                let lock_id: Option<String> = row
                    .try_get("lock_id")
                    .map_err($crate::error::db("reading a backend lock"))?;
                let attached = match lock_id {
                    Some(_) => Some(Self::backend_lock_from_row(row)?),
                    None => None,
                };
                Ok(Some((lock, attached)))
            }

            /// The fence of a write, checked on the write's transaction: the lock row is
            /// read holding it (`$lock_and_attached_held`), so no lock transition interleaves.
            async fn check_fence_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                unit: &str,
                fence: &$crate::state::Fence,
            ) -> $crate::error::Result<()> {
                let fenced = |detail: String| $crate::error::StoreError::Stale {
                    what: "lock",
                    detail,
                };
                let Some((lock, attached)) = self.lock_and_attached_on(&mut *conn, unit, true).await?
                else {
                    return Err(fenced(format!("{unit} has never been locked")));
                };
                if let Err(refusal) = lock.check_write(fence.token, fence.at) {
                    return Err(fenced(format!(
                        "fencing token {} of {unit}: {refusal}",
                        fence.token
                    )));
                }
                if let Some(lock_id) = &fence.lock_id {
                    let holds = attached
                        .as_ref()
                        .is_some_and(|a| &a.lock_id == lock_id && a.fencing_token == fence.token.0);
                    if !holds {
                        return Err(fenced(format!(
                            "lock id {lock_id} no longer holds the lock of {unit}"
                        )));
                    }
                }
                Ok(())
            }

            fn backend_lock_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> $crate::error::Result<$crate::state::BackendLockRecord> {
                use sqlx::Row as _;
                let ctx = "reading a backend lock";
                let unit: String = row.try_get("unit").map_err($crate::error::db(ctx))?;
                let token: i64 = row.try_get("fencing_token").map_err($crate::error::db(ctx))?;
                let info: String = row.try_get("info").map_err($crate::error::db(ctx))?;
                Ok($crate::state::BackendLockRecord {
                    lock_id: row.try_get("lock_id").map_err($crate::error::db(ctx))?,
                    change: row.try_get("change").map_err($crate::error::db(ctx))?,
                    fencing_token: $crate::backend::row_u64(
                        token,
                        "state_backend_locks",
                        &unit,
                        "fencing_token",
                    )?,
                    info: $crate::backend::row_json(&info, "state_backend_locks", &unit, "info")?,
                    created_at: row.try_get("created_at").map_err($crate::error::db(ctx))?,
                    unit,
                })
            }
        }

        impl $ty {
            /// Checks a state version against its unit's head and fence on a write transaction
            /// (see `StateStore::put_state_version`) and pushes its blob and record onto
            /// `writes`; returns the record as it is written.
            ///
            /// `pushed` is the unit's newest version pushed before it in the same transaction,
            /// if any: the database does not hold it yet.
            async fn put_state_version_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                writes: &mut $crate::backend::statements::Statements<$db>,
                new: &$crate::state::NewStateVersion,
                pushed: Option<u64>,
            ) -> $crate::error::Result<$crate::state::StateVersionRecord> {
                use $crate::backend::to_i64;
                let r = &new.record;
                let mut record = r.clone();
                record.created_at = $crate::records::now_millis();
                let head = match pushed {
                    Some(v) => to_i64(v, "state version")?,
                    None => {
                        let head: Option<i64> = sqlx::query_scalar(
                            "SELECT MAX(version) FROM state_versions WHERE unit = $1",
                        )
                        .bind(&r.unit)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(self.fail("reading the state head"))?;
                        head.unwrap_or(0)
                    }
                };
                if head.checked_add(1) != Some(to_i64(r.version, "state version")?) {
                    return Err($crate::error::StoreError::Stale {
                        what: "state",
                        detail: format!(
                            "{} is at version {head}; this write was checked as version {}",
                            r.unit, r.version
                        ),
                    });
                }
                if let Some(fence) = &new.fence {
                    self.check_fence_on(&mut *conn, &r.unit, fence).await?;
                }
                $crate::backend::statements::push_sql!(
                    writes.statement(),
                    "INSERT INTO state_blobs (digest, sealed, size, created_at) \
                     VALUES (?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                    r.digest.0.to_vec(),
                    &new.sealed,
                    to_i64(r.size, "state blob")?,
                    record.created_at,
                );
                $crate::backend::statements::push_sql!(
                    writes.statement(),
                    "INSERT INTO state_versions (unit, version, digest, serial, lineage, size, \
                     identity, lock_id, fencing_token, forced_reason, rollback_of, created_at, md5) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    &r.unit,
                    to_i64(r.version, "state version")?,
                    r.digest.0.to_vec(),
                    to_i64(r.serial, "state version")?,
                    &r.lineage,
                    to_i64(r.size, "state version")?,
                    &r.identity,
                    &r.lock_id,
                    r.fencing_token.map(|t| to_i64(t, "state version")).transpose()?,
                    &r.forced_reason,
                    r.rollback_of.map(|v| to_i64(v, "state version")).transpose()?,
                    record.created_at,
                    r.md5.map(|m| m.to_vec()),
                );
                Ok(record)
            }

            /// The state writes of a transaction (a log of `size` leaves before it), pushed
            /// onto `writes`: attached locks, then versions (each checked against its head and
            /// fence here, before anything is written), then events with the indexes of their
            /// leaves, as the returning statement. Returns the versions as they are written.
            pub(crate) async fn write_state_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                tx: &$crate::tx::Transaction,
                size: u64,
                writes: &mut $crate::backend::statements::Statements<$db>,
            ) -> $crate::error::Result<Vec<$crate::state::StateVersionRecord>> {
                for write in &tx.backend_locks {
                    match write {
                        $crate::state::BackendLockWrite::Put(lock) => {
                            Self::push_backend_lock_put(writes.statement(), lock)?;
                        }
                        $crate::state::BackendLockWrite::Delete { unit, lock_id } => {
                            Self::push_backend_lock_delete(writes.statement(), unit, lock_id);
                        }
                    }
                }
                let mut versions: Vec<$crate::state::StateVersionRecord> =
                    Vec::with_capacity(tx.state_versions.len());
                for version in &tx.state_versions {
                    let unit = &version.record.unit;
                    let pushed = versions.iter().rev().find(|v| &v.unit == unit).map(|v| v.version);
                    versions.push(self.put_state_version_on(&mut *conn, writes, version, pushed).await?);
                }
                if !tx.state_events.is_empty() {
                    let events = tx.state_events.iter().map(|(event, leaf)| {
                        (event, leaf.map(|leaf| size + leaf.0 as u64).or(event.leaf_index))
                    });
                    Self::push_state_events(writes.returning_statement(), events)?;
                }
                Ok(versions)
            }

            fn push_backend_lock_put(
                q: &mut sqlx::QueryBuilder<$db>,
                lock: &$crate::state::BackendLockRecord,
            ) -> $crate::error::Result<()> {
                $crate::backend::statements::push_sql!(
                    q,
                    "INSERT INTO state_backend_locks (unit, lock_id, change, fencing_token, info, \
                     created_at) VALUES (?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (unit) DO UPDATE SET lock_id = excluded.lock_id, \
                     change = excluded.change, fencing_token = excluded.fencing_token, \
                     info = excluded.info, created_at = excluded.created_at",
                    &lock.unit,
                    &lock.lock_id,
                    &lock.change,
                    $crate::backend::to_i64(lock.fencing_token, "backend lock")?,
                    lock.info.to_string(),
                    lock.created_at,
                );
                Ok(())
            }

            fn push_backend_lock_delete(q: &mut sqlx::QueryBuilder<$db>, unit: &str, lock_id: &str) {
                $crate::backend::statements::push_sql!(
                    q,
                    "DELETE FROM state_backend_locks WHERE unit = ? AND lock_id = ?",
                    unit,
                    lock_id,
                );
            }

            async fn backend_lock_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                unit: &str,
            ) -> $crate::error::Result<Option<$crate::state::BackendLockRecord>> {
                let row = sqlx::query("SELECT * FROM state_backend_locks WHERE unit = $1")
                    .bind(unit)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err($crate::error::db("reading a backend lock"))?;
                row.as_ref().map(Self::backend_lock_from_row).transpose()
            }
        }

        impl $crate::state::StateStore for $ty {
            async fn lock_transaction<T, F>(
                &self,
                unit: &str,
                decide: F,
            ) -> $crate::error::Result<(T, $crate::tx::Committed)>
            where
                T: Send,
                F: FnOnce(
                        &mut sluice_model::lock::Lock,
                        Option<$crate::state::BackendLockRecord>,
                    ) -> (T, $crate::tx::Transaction)
                    + Send,
            {
                // The order every leaf-writing transaction takes: the frontier, the log head,
                // then the unit's lock row; the head and the lock row are held, and the
                // attached lock read, in one statement. A unit never locked gets its row first.
                let mut cached = self.frontier.lock().await;
                let mut db = self.begin_write().await?;
                let (size, found) = self.head_lock_and_attached_on(&mut *db, unit).await?;
                let (before, attached) = match found {
                    Some(found) => found,
                    None => (
                        self.hold_lock_on(&mut *db, unit).await?,
                        Self::backend_lock_on(&mut *db, unit).await?,
                    ),
                };
                let mut lock = before.clone();
                let (out, tx) = decide(&mut lock, attached);
                $crate::backend::validate(&tx)?;
                if !tx.state_versions.is_empty() {
                    // A version's fence would be checked against the lock as it was before this
                    // transaction's own write-back, which goes in the same query.
                    return Err($crate::error::StoreError::Invalid {
                        record: "lock transaction",
                        field: "state versions",
                        problem: "a lock transaction writes no state version".into(),
                    });
                }
                if lock == before && tx.is_empty() {
                    db.rollback()
                        .await
                        .map_err($crate::error::db("ending a lock transaction"))?;
                    let nothing = $crate::tx::Committed {
                        log_size: size,
                        ..Default::default()
                    };
                    return Ok((out, nothing));
                }
                // The lock's write-back goes with the transaction's other writes, in one query.
                let mut writes = Self::writes();
                if lock != before {
                    Self::push_lock_write(writes.statement(), &before, &lock)?;
                }
                let (committed, frontier) = self
                    .write_tx_on(&mut db, cached.as_ref(), size, &tx, writes)
                    .await?;
                db.commit()
                    .await
                    .map_err($crate::error::durability("committing a lock transaction"))?;
                if let Some(frontier) = frontier {
                    *cached = Some(frontier);
                }
                Ok((out, committed))
            }

            async fn state_write_view(
                &self,
                unit: &str,
            ) -> $crate::error::Result<(
                Option<sluice_model::lock::Lock>,
                Option<$crate::state::BackendLockRecord>,
                Option<$crate::state::StateVersionRecord>,
            )> {
                // One connection for the three reads (the write's transaction checks them again).
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err($crate::error::db("reading a unit's lock and state"))?;
                // A Terraform lock is attached only to a holder of the unit's lock: no lock
                // row, nothing attached.
                let (lock, attached) = match self.lock_and_attached_on(&mut *conn, unit, false).await? {
                    Some((lock, attached)) => (Some(lock), attached),
                    None => (None, None),
                };
                let head = sqlx::query(
                    "SELECT * FROM state_versions WHERE unit = $1 ORDER BY version DESC LIMIT 1",
                )
                .bind(unit)
                .fetch_optional(&mut *conn)
                .await
                .map_err($crate::error::db("reading the state head"))?;
                let head = head.as_ref().map(Self::state_version_from_row).transpose()?;
                Ok((lock, attached, head))
            }

            async fn put_state_version(
                &self,
                new: &$crate::state::NewStateVersion,
                event: &$crate::state::StateEventRecord,
            ) -> $crate::error::Result<$crate::state::StateVersionRecord> {
                let mut tx = $crate::tx::Transaction::new();
                tx.put_state_version(new.clone())
                    .append_state_event(event.clone(), None);
                let committed = $crate::store::Store::commit(self, tx).await?;
                Ok(committed
                    .state_versions
                    .into_iter()
                    .next()
                    .expect("a committed version is returned"))
            }

            async fn state_head(
                &self,
                unit: &str,
            ) -> $crate::error::Result<Option<$crate::state::StateVersionRecord>> {
                let row = sqlx::query(
                    "SELECT * FROM state_versions WHERE unit = $1 ORDER BY version DESC LIMIT 1",
                )
                .bind(unit)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::error::db("reading the state head"))?;
                row.as_ref().map(Self::state_version_from_row).transpose()
            }

            async fn state_version(
                &self,
                unit: &str,
                version: u64,
            ) -> $crate::error::Result<Option<$crate::state::StateVersionRecord>> {
                let row =
                    sqlx::query("SELECT * FROM state_versions WHERE unit = $1 AND version = $2")
                        .bind(unit)
                        .bind($crate::backend::to_i64(version, "state version")?)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::error::db("reading a state version"))?;
                row.as_ref().map(Self::state_version_from_row).transpose()
            }

            async fn state_versions(
                &self,
                unit: &str,
                limit: u32,
            ) -> $crate::error::Result<Vec<$crate::state::StateVersionRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM state_versions WHERE unit = $1 ORDER BY version DESC LIMIT $2",
                )
                .bind(unit)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::error::db("reading state versions"))?;
                rows.iter().map(Self::state_version_from_row).collect()
            }

            async fn state_head_sealed(
                &self,
                unit: &str,
            ) -> $crate::error::Result<
                Option<($crate::state::StateVersionRecord, Option<Vec<u8>>)>,
            > {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "SELECT v.*, b.sealed AS sealed FROM state_versions v \
                     LEFT JOIN state_blobs b ON b.digest = v.digest \
                     WHERE v.unit = $1 ORDER BY v.version DESC LIMIT 1",
                )
                .bind(unit)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::error::db("reading the state head"))?;
                let Some(row) = row else { return Ok(None) };
                let record = Self::state_version_from_row(&row)?;
                let sealed: Option<Vec<u8>> = row
                    .try_get("sealed")
                    .map_err($crate::error::db("reading a state blob"))?;
                Ok(Some((record, sealed)))
            }

            async fn state_blob(
                &self,
                digest: &$crate::records::Digest,
            ) -> $crate::error::Result<Option<Vec<u8>>> {
                sqlx::query_scalar("SELECT sealed FROM state_blobs WHERE digest = $1")
                    .bind(digest.0.to_vec())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::error::db("reading a state blob"))
            }

            async fn append_state_event(
                &self,
                event: &$crate::state::StateEventRecord,
            ) -> $crate::error::Result<i64> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(self.fail("recording a state event"))?;
                self.insert_state_event_on(&mut *conn, event).await
            }

            async fn state_events(
                &self,
                unit: Option<&str>,
                after: i64,
                limit: u32,
            ) -> $crate::error::Result<Vec<$crate::state::StateEventRecord>> {
                let rows = match unit {
                    Some(u) => {
                        sqlx::query(
                            "SELECT * FROM state_events WHERE unit = $1 AND id > $2 \
                             ORDER BY id LIMIT $3",
                        )
                        .bind(u)
                        .bind(after)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await
                    }
                    None => {
                        sqlx::query("SELECT * FROM state_events WHERE id > $1 ORDER BY id LIMIT $2")
                            .bind(after)
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await
                    }
                }
                .map_err($crate::error::db("reading state events"))?;
                rows.iter().map(Self::state_event_from_row).collect()
            }

            async fn put_backend_lock(
                &self,
                lock: &$crate::state::BackendLockRecord,
            ) -> $crate::error::Result<()> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(self.fail("recording a backend lock"))?;
                let mut q = sqlx::QueryBuilder::new("");
                Self::push_backend_lock_put(&mut q, lock)?;
                q.build()
                    .execute(&mut *conn)
                    .await
                    .map_err(self.fail("recording a backend lock"))?;
                Ok(())
            }

            async fn backend_lock(
                &self,
                unit: &str,
            ) -> $crate::error::Result<Option<$crate::state::BackendLockRecord>> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err($crate::error::db("reading a backend lock"))?;
                Self::backend_lock_on(&mut *conn, unit).await
            }

            async fn delete_backend_lock(
                &self,
                unit: &str,
                lock_id: &str,
            ) -> $crate::error::Result<bool> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(self.fail("removing a backend lock"))?;
                let mut q = sqlx::QueryBuilder::new("");
                Self::push_backend_lock_delete(&mut q, unit, lock_id);
                let done = q
                    .build()
                    .execute(&mut *conn)
                    .await
                    .map_err(self.fail("removing a backend lock"))?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

impl_state_store!(
    SqliteStore,
    sqlx::Sqlite,
    // BEGIN IMMEDIATE already holds the database's write lock.
    LOCK_AND_ATTACHED,
    "SELECT h.size AS log_size, l.state AS lock_state, b.* FROM log_head h \
     LEFT JOIN locks l ON l.unit = $1 LEFT JOIN state_backend_locks b ON b.unit = l.unit \
     WHERE h.id = 1"
);
impl_state_store!(
    PgStore,
    sqlx::Postgres,
    "SELECT l.state AS lock_state, b.* FROM locks l \
     LEFT JOIN state_backend_locks b ON b.unit = l.unit WHERE l.unit = $1 FOR UPDATE OF l",
    // The head's row is locked first: the lock row is read by a lateral subquery that depends
    // on it, so no plan can take them the other way round (which could deadlock with a write).
    "WITH h AS MATERIALIZED (SELECT size FROM log_head WHERE id = 1 FOR UPDATE) \
     SELECT h.size AS log_size, l.state AS lock_state, b.* FROM h \
     LEFT JOIN LATERAL (SELECT unit, state FROM locks WHERE unit = $1 AND h.size >= 0 \
     FOR UPDATE) l ON true LEFT JOIN state_backend_locks b ON b.unit = l.unit"
);
