//! [`crate::state::StateStore`] on both backends: the same SQL, expanded once per pool type
//! like [`super::impl_store`].

use crate::backend::postgres::PgStore;
use crate::backend::sqlite::SqliteStore;

/// A unit's lock state and its attached Terraform lock, in one read (`b.*` is null when no
/// Terraform lock is attached); no row when the unit was never locked.
const LOCK_AND_ATTACHED: &str = "SELECT l.state AS lock_state, b.* FROM locks l \
     LEFT JOIN state_backend_locks b ON b.unit = l.unit WHERE l.unit = $1";

macro_rules! impl_state_store {
    ($ty:ty, $db:ty, $lock_and_attached_held:expr) => {
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
                let version = e
                    .version
                    .map(|v| $crate::backend::to_i64(v, "state event"))
                    .transpose()?;
                let leaf_index = e
                    .leaf_index
                    .map(|v| $crate::backend::to_i64(v, "state event"))
                    .transpose()?;
                sqlx::query_scalar(
                    "INSERT INTO state_events (unit, action, outcome, identity, version, detail, \
                     created_at, leaf_index, envelope) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     RETURNING id",
                )
                .bind(&e.unit)
                .bind(&e.action)
                .bind(&e.outcome)
                .bind(&e.identity)
                .bind(version)
                .bind(e.detail.to_string())
                .bind(e.created_at)
                .bind(leaf_index)
                .bind(&e.envelope)
                .fetch_one(&mut *conn)
                .await
                .map_err(self.fail("recording a state event"))
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
                use sqlx::Row as _;
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
                let Some(row) = row else { return Ok(None) };
                let state: String = row
                    .try_get("lock_state")
                    .map_err($crate::error::db("reading a lock"))?;
                let lock = $crate::locks::decode(unit, &state)?;
                let lock_id: Option<String> = row
                    .try_get("lock_id")
                    .map_err($crate::error::db("reading a backend lock"))?;
                let attached = match lock_id {
                    Some(_) => Some(Self::backend_lock_from_row(&row)?),
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
            /// Writes a state version on a write transaction (see `StateStore::put_state_version`).
            async fn put_state_version_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                new: &$crate::state::NewStateVersion,
            ) -> $crate::error::Result<$crate::state::StateVersionRecord> {
                use $crate::backend::to_i64;
                let r = &new.record;
                let mut record = r.clone();
                record.created_at = $crate::records::now_millis();
                let stale = |found: String| $crate::error::StoreError::Stale {
                    what: "state",
                    detail: format!(
                        "{} is at {found}; this write was checked as version {}",
                        r.unit, r.version
                    ),
                };
                let head: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM state_versions WHERE unit = $1")
                        .bind(&r.unit)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(self.fail("reading the state head"))?;
                let head = head.unwrap_or(0);
                if head.checked_add(1) != Some(to_i64(r.version, "state version")?) {
                    return Err(stale(format!("version {head}")));
                }
                if let Some(fence) = &new.fence {
                    self.check_fence_on(&mut *conn, &r.unit, fence).await?;
                }
                sqlx::query(
                    "INSERT INTO state_blobs (digest, sealed, size, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING",
                )
                .bind(r.digest.0.to_vec())
                .bind(&new.sealed)
                .bind(to_i64(r.size, "state blob")?)
                .bind(record.created_at)
                .execute(&mut *conn)
                .await
                .map_err(self.fail("storing a state blob"))?;
                sqlx::query(
                    "INSERT INTO state_versions (unit, version, digest, serial, lineage, size, \
                     identity, lock_id, fencing_token, forced_reason, rollback_of, created_at, md5) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&r.unit)
                .bind(to_i64(r.version, "state version")?)
                .bind(r.digest.0.to_vec())
                .bind(to_i64(r.serial, "state version")?)
                .bind(&r.lineage)
                .bind(to_i64(r.size, "state version")?)
                .bind(&r.identity)
                .bind(&r.lock_id)
                .bind(r.fencing_token.map(|t| to_i64(t, "state version")).transpose()?)
                .bind(&r.forced_reason)
                .bind(r.rollback_of.map(|v| to_i64(v, "state version")).transpose()?)
                .bind(record.created_at)
                .bind(r.md5.map(|m| m.to_vec()))
                .execute(&mut *conn)
                .await
                .map_err(|e| {
                    if e.as_database_error().is_some_and(|d| d.is_unique_violation()) {
                        stale(format!("a version {} written by another writer", r.version))
                    } else {
                        self.fail("recording a state version")(e)
                    }
                })?;
                Ok(record)
            }

            /// The state writes of a transaction, on its database transaction (a log of `size`
            /// leaves before it): attached locks first, then versions (each checked against its
            /// head and fence), then events with the indexes of their leaves.
            pub(crate) async fn write_state_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                tx: &$crate::tx::Transaction,
                size: u64,
                out: &mut $crate::tx::Committed,
            ) -> $crate::error::Result<()> {
                for write in &tx.backend_locks {
                    match write {
                        $crate::state::BackendLockWrite::Put(lock) => {
                            self.put_backend_lock_on(&mut *conn, lock).await?;
                        }
                        $crate::state::BackendLockWrite::Delete { unit, lock_id } => {
                            self.delete_backend_lock_on(&mut *conn, unit, lock_id).await?;
                        }
                    }
                }
                for version in &tx.state_versions {
                    out.state_versions.push(self.put_state_version_on(&mut *conn, version).await?);
                }
                for (event, leaf) in &tx.state_events {
                    let id = match leaf {
                        Some(leaf) => {
                            let mut event = event.clone();
                            event.leaf_index = Some(size + leaf.0 as u64);
                            self.insert_state_event_on(&mut *conn, &event).await?
                        }
                        None => self.insert_state_event_on(&mut *conn, event).await?,
                    };
                    out.state_event_ids.push(id);
                }
                Ok(())
            }

            async fn put_backend_lock_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                lock: &$crate::state::BackendLockRecord,
            ) -> $crate::error::Result<()> {
                sqlx::query(
                    "INSERT INTO state_backend_locks (unit, lock_id, change, fencing_token, info, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (unit) DO UPDATE SET lock_id = excluded.lock_id, \
                     change = excluded.change, fencing_token = excluded.fencing_token, \
                     info = excluded.info, created_at = excluded.created_at",
                )
                .bind(&lock.unit)
                .bind(&lock.lock_id)
                .bind(&lock.change)
                .bind($crate::backend::to_i64(lock.fencing_token, "backend lock")?)
                .bind(lock.info.to_string())
                .bind(lock.created_at)
                .execute(&mut *conn)
                .await
                .map_err(self.fail("recording a backend lock"))?;
                Ok(())
            }

            async fn delete_backend_lock_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                unit: &str,
                lock_id: &str,
            ) -> $crate::error::Result<bool> {
                let done = sqlx::query(
                    "DELETE FROM state_backend_locks WHERE unit = $1 AND lock_id = $2",
                )
                .bind(unit)
                .bind(lock_id)
                .execute(&mut *conn)
                .await
                .map_err(self.fail("removing a backend lock"))?;
                Ok(done.rows_affected() > 0)
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
                // then the unit's lock row.
                let mut cached = self.frontier.lock().await;
                let mut db = self.begin_write().await?;
                let size = self.locked_log_size(&mut db).await?;
                // The lock row held and the attached lock in one read; a unit never locked
                // gets its row first.
                let (before, attached) = match self.lock_and_attached_on(&mut *db, unit, true).await? {
                    Some(found) => found,
                    None => (
                        self.hold_lock_on(&mut *db, unit).await?,
                        Self::backend_lock_on(&mut *db, unit).await?,
                    ),
                };
                let mut lock = before.clone();
                let (out, tx) = decide(&mut lock, attached);
                $crate::backend::validate(&tx)?;
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
                if lock != before {
                    self.write_lock_on(&mut *db, &before, &lock).await?;
                }
                let (committed, frontier) =
                    self.write_tx_on(&mut db, cached.as_ref(), size, &tx).await?;
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
                self.put_backend_lock_on(&mut *conn, lock).await
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
                self.delete_backend_lock_on(&mut *conn, unit, lock_id).await
            }
        }
    };
}

impl_state_store!(
    SqliteStore,
    sqlx::Sqlite,
    // BEGIN IMMEDIATE already holds the database's write lock.
    LOCK_AND_ATTACHED
);
impl_state_store!(
    PgStore,
    sqlx::Postgres,
    "SELECT l.state AS lock_state, b.* FROM locks l \
     LEFT JOIN state_backend_locks b ON b.unit = l.unit WHERE l.unit = $1 FOR UPDATE OF l"
);
