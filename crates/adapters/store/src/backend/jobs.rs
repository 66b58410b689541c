//! [`crate::JobQueue`] and [`crate::TokenStore`] on both backends, written once (as
//! `impl_store!` is) and expanded per pool type. The backends differ only in how a claim is
//! made: `CLAIM_LOCK`, the row-locking clause of its candidate query (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, so replicas claim different jobs without waiting; nothing on SQLite, whose
//! `BEGIN IMMEDIATE` already makes a claim the only writer), and `CLAIM_IN_ONE_STATEMENT`
//! (PostgreSQL gives up expired jobs and claims in one statement committed on its own; SQLite,
//! which has no `UPDATE` in `WITH`, runs the two in one transaction).

/// The columns a job is read with. Counters are cast so both backends decode them as `i64`.
pub(crate) const JOB_COLUMNS: &str = "id, kind, serial_key, head_sha, payload, state, \
     CAST(attempts AS BIGINT) AS attempts, CAST(max_attempts AS BIGINT) AS max_attempts, \
     run_at, lease_owner, lease_until, lease_token, last_error, reason, delivery_id, created_at, \
     started_at, finished_at";

/// A job is runnable when it is queued and due, or running with an expired lease on an attempt
/// that is not its last (one on its last attempt is given up instead, see [`EXPIRED_LAST`]), and
/// it is the oldest unfinished job of its key (`$1` is now, `$4` how many to take). `{lock}` is
/// the backend's `CLAIM_LOCK`. Expired leases are found through `jobs_leased` and queued jobs in
/// id order through `jobs_unfinished`: no claim reads finished jobs.
///
/// The `LIMIT 1 OFFSET 0` keeps the per-key test a probe of `jobs_by_key` for each candidate:
/// without it PostgreSQL turns the `NOT EXISTS` into an anti join, and on a table it has no
/// statistics for (a new queue, or a server without autovacuum) it planned a nested loop over
/// every unfinished job for every candidate: 57 ms per claim at 1,000 queued jobs instead of
/// 1 ms.
pub(crate) const CLAIM_CANDIDATE: &str = "SELECT j.id FROM jobs j \
     WHERE j.state IN ('queued', 'running') \
     AND ((j.state = 'queued' AND j.run_at <= $1) \
          OR (j.state = 'running' AND j.lease_until < $1 AND j.attempts < j.max_attempts)) \
     AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.serial_key = j.serial_key AND e.id < j.id \
                     AND e.state IN ('queued', 'running') LIMIT 1 OFFSET 0) \
     ORDER BY j.id LIMIT $4";

/// Running jobs whose lease expired on their last attempt (`$1` is now).
pub(crate) const EXPIRED_LAST: &str = "SELECT id FROM jobs \
     WHERE state = 'running' AND lease_until < $1 AND attempts >= max_attempts";

/// The claim candidate query restricted to the kinds `claimant` takes (see
/// [`crate::jobs::Claimant::takes`]): the kind test goes before the ordering, the per-key
/// serialisation (the `NOT EXISTS`) still sees every kind.
pub(crate) fn claim_candidate_for(claimant: crate::jobs::Claimant) -> String {
    let test = match claimant {
        crate::jobs::Claimant::Runner => "LIKE",
        crate::jobs::Claimant::Server => "NOT LIKE",
    };
    CLAIM_CANDIDATE.replacen(
        " ORDER BY j.id",
        &format!(
            " AND j.kind {test} '{}%' ORDER BY j.id",
            crate::jobs::RUNNER_KIND_PREFIX
        ),
        1,
    )
}

/// Gives up the jobs [`EXPIRED_LAST`] finds (`$1` is now); `{lock}` is the backend's
/// `CLAIM_LOCK`.
pub(crate) fn give_up_expired_sql(lock: &str) -> String {
    format!(
        "UPDATE jobs SET state = 'dead', finished_at = $1, lease_until = NULL, \
         reason = 'the lease expired on the last attempt (the worker stopped)' \
         WHERE id IN ({EXPIRED_LAST} {lock})"
    )
}

/// Claims the jobs [`claim_candidate_for`] `claimant` finds for worker `$2` until `$3`,
/// returning them.
pub(crate) fn claim_sql(lock: &str, claimant: crate::jobs::Claimant) -> String {
    format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, \
         lease_owner = $2, lease_until = $3, lease_token = lease_token + 1, started_at = $1 \
         WHERE id IN ({} {lock}) RETURNING {JOB_COLUMNS}",
        claim_candidate_for(claimant)
    )
}

/// Rows per multi-row job `INSERT`: 8 binds each stays far below both backends' limits.
pub(crate) const INSERT_JOBS_CHUNK: usize = 500;

/// Leases per statement that names them ([`push_lease_match`]: 3 binds each).
pub(crate) const LEASE_CHUNK: usize = 1000;

/// Pushes the condition "the job is one of `leases`, at its token" onto `q`:
/// `id IN ($a, …) AND (id, lease_token) IN (VALUES ($a, $b), …)`. The plain `id IN` is there
/// for the planner: it makes PostgreSQL find the rows by primary key (with the row values alone
/// it scanned every running job's index entry, dead ones included). The token makes a worker
/// that lost a job (its token moved on) change nothing.
pub(crate) fn push_lease_match<DB: sqlx::Database>(
    q: &mut sqlx::QueryBuilder<DB>,
    leases: &[crate::jobs::Lease],
) where
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    q.push("id IN (");
    let mut ids = q.separated(", ");
    for lease in leases {
        ids.push_bind(lease.job_id.0);
    }
    q.push(") AND (id, lease_token) IN (VALUES ");
    let mut pairs = q.separated(", ");
    for lease in leases {
        pairs.push("(");
        pairs.push_bind_unseparated(lease.job_id.0);
        pairs.push_unseparated(", ");
        pairs.push_bind_unseparated(lease.token);
        pairs.push_unseparated(")");
    }
    q.push(")");
}

/// The leases of `leases` whose job is not among the ids a statement touched, in order.
pub(crate) fn missing(
    leases: &[crate::jobs::Lease],
    touched: &[crate::jobs::JobId],
) -> Vec<crate::jobs::Lease> {
    let touched: std::collections::HashSet<_> = touched.iter().copied().collect();
    leases
        .iter()
        .copied()
        .filter(|l| !touched.contains(&l.job_id))
        .collect()
}

macro_rules! impl_jobs {
    ($ty:ty, $db:ty) => {
        impl $ty {
            fn job_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> $crate::error::Result<$crate::jobs::Job> {
                use sqlx::Row as _;
                use $crate::backend::bad_row;
                let ctx = $crate::error::db("reading a job");
                let id: i64 = row.try_get("id").map_err(ctx)?;
                let get = |e| $crate::error::StoreError::Database {
                    context: "reading a job",
                    source: e,
                };
                let state: String = row.try_get("state").map_err(get)?;
                let payload: String = row.try_get("payload").map_err(get)?;
                let attempts: i64 = row.try_get("attempts").map_err(get)?;
                let max_attempts: i64 = row.try_get("max_attempts").map_err(get)?;
                let count = |v: i64, field| {
                    u32::try_from(v).map_err(|_| bad_row("jobs", id, field, format!("{v} out of range")))
                };
                Ok($crate::jobs::Job {
                    id: $crate::jobs::JobId(id),
                    kind: row.try_get("kind").map_err(get)?,
                    serial_key: row.try_get("serial_key").map_err(get)?,
                    head_sha: row.try_get("head_sha").map_err(get)?,
                    payload: $crate::backend::row_json(&payload, "jobs", id, "payload")?,
                    state: $crate::jobs::JobState::parse(&state).ok_or_else(|| {
                        bad_row("jobs", id, "state", format!("unknown state {state:?}"))
                    })?,
                    attempts: count(attempts, "attempts")?,
                    max_attempts: count(max_attempts, "max_attempts")?,
                    run_at: row.try_get("run_at").map_err(get)?,
                    lease_owner: row.try_get("lease_owner").map_err(get)?,
                    lease_until: row.try_get("lease_until").map_err(get)?,
                    lease_token: row.try_get("lease_token").map_err(get)?,
                    last_error: row.try_get("last_error").map_err(get)?,
                    reason: row.try_get("reason").map_err(get)?,
                    delivery_id: row.try_get("delivery_id").map_err(get)?,
                    created_at: row.try_get("created_at").map_err(get)?,
                    started_at: row.try_get("started_at").map_err(get)?,
                    finished_at: row.try_get("finished_at").map_err(get)?,
                })
            }

            /// Why `lease` is not held, read on `conn`.
            async fn lease_lost_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                lease: $crate::jobs::Lease,
            ) -> $crate::error::StoreError {
                let row: Option<(String, Option<String>, i64)> = sqlx::query_as(
                    "SELECT state, reason, lease_token FROM jobs WHERE id = $1",
                )
                .bind(lease.job_id)
                .fetch_optional(&mut *conn)
                .await
                .ok()
                .flatten();
                let reason = match row {
                    None => Some("no such job".to_string()),
                    Some((state, _, token)) if token != lease.token => Some(format!(
                        "claimed again by another worker (token {token}; now {state})"
                    )),
                    Some((state, Some(reason), _)) => Some(format!("{state}: {reason}")),
                    Some((state, None, _)) => Some(state),
                };
                $crate::error::StoreError::LeaseLost {
                    job_id: lease.job_id,
                    token: lease.token,
                    reason,
                }
            }

            /// Enqueues `jobs` with one multi-row `INSERT` per chunk, pushing their ids in order.
            async fn insert_jobs_on(
                &self,
                db: &mut sqlx::Transaction<'static, $db>,
                jobs: &[&$crate::jobs::NewJob],
                delivery: Option<&str>,
                now: $crate::records::UnixMillis,
                out: &mut $crate::tx::Committed,
            ) -> $crate::error::Result<()> {
                for chunk in jobs.chunks($crate::backend::jobs::INSERT_JOBS_CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO jobs (kind, serial_key, head_sha, payload, state, attempts, \
                         max_attempts, run_at, lease_token, delivery_id, created_at) ",
                    );
                    q.push_values(chunk.iter(), |mut b, job| {
                        b.push_bind(job.kind.clone())
                            .push_bind(job.serial_key.clone())
                            .push_bind(job.head_sha.clone())
                            .push_bind(job.payload.to_string())
                            .push("'queued'")
                            .push("0")
                            .push_bind(job.max_attempts as i32)
                            .push_bind(now)
                            .push("0")
                            .push_bind(delivery.map(str::to_string))
                            .push_bind(now);
                    });
                    q.push(" RETURNING id");
                    let mut ids: Vec<$crate::jobs::JobId> = q
                        .build_query_scalar()
                        .fetch_all(&mut **db)
                        .await
                        .map_err(self.fail("enqueueing jobs"))?;
                    // RETURNING promises no order; one statement's rows take ascending ids in
                    // the order of its VALUES (an identity column, a single writer on SQLite).
                    ids.sort_unstable();
                    out.job_ids.extend(ids);
                }
                Ok(())
            }

            /// The job-queue writes of a transaction, inside the commit's database transaction.
            async fn write_jobs_on(
                &self,
                db: &mut sqlx::Transaction<'static, $db>,
                tx: &$crate::tx::Transaction,
                out: &mut $crate::tx::Committed,
            ) -> $crate::error::Result<()> {
                let now = $crate::records::now_millis();
                // Cancelling a key's jobs must see every job of the key committed before it:
                // transactions that cancel or supersede take their keys' locks first (in one
                // order, so two never wait on each other), and each statement after that reads
                // what the previous holder committed.
                if let Some(key_lock) = Self::KEY_LOCK {
                    let mut keys: Vec<&str> = tx
                        .cancellations
                        .iter()
                        .map(|(key, _)| key.as_str())
                        .chain(tx.jobs.iter().filter(|j| j.supersede).map(|j| j.serial_key.as_str()))
                        .collect();
                    keys.sort_unstable();
                    keys.dedup();
                    // All of them in one statement (a PR's delivery locks its key and its plan
                    // key): one round trip, the locks taken in the order of the array.
                    if !keys.is_empty() {
                        let keys = serde_json::to_string(&keys).expect("strings serialise");
                        sqlx::query(key_lock)
                            .bind(keys)
                            .execute(&mut **db)
                            .await
                            .map_err(self.fail("locking a key's jobs"))?;
                    }
                }
                for d in &tx.deliveries {
                    let done = sqlx::query(
                        "INSERT INTO webhook_deliveries (delivery_id, event, action, jobs, \
                         received_at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (delivery_id) DO NOTHING",
                    )
                    .bind(&d.delivery_id)
                    .bind(&d.event)
                    .bind(&d.action)
                    .bind(d.jobs as i32)
                    .bind(d.received_at)
                    .execute(&mut **db)
                    .await
                    .map_err(self.fail("recording a webhook delivery"))?;
                    if done.rows_affected() == 0 {
                        return Err($crate::error::StoreError::Duplicate {
                            what: "webhook delivery",
                            key: d.delivery_id.clone(),
                        });
                    }
                }
                for (key, reason) in &tx.cancellations {
                    let cancelled: Vec<$crate::jobs::JobId> = sqlx::query_scalar(
                        "UPDATE jobs SET state = 'cancelled', reason = $1, finished_at = $2, \
                         lease_owner = NULL, lease_until = NULL \
                         WHERE serial_key = $3 AND state IN ('queued', 'running') RETURNING id",
                    )
                    .bind(reason)
                    .bind(now)
                    .bind(key)
                    .fetch_all(&mut **db)
                    .await
                    .map_err(self.fail("cancelling jobs"))?;
                    out.cancelled_jobs.extend(cancelled);
                }
                let delivery = tx.deliveries.first().map(|d| d.delivery_id.clone());
                // Jobs go in with one multi-row INSERT per run of jobs between supersedes (one
                // round trip for a hundred jobs instead of a hundred). A superseding job's
                // UPDATE must see the jobs of this transaction enqueued before it, so the run
                // before it is written first; the job itself starts the next run.
                let mut run: Vec<&$crate::jobs::NewJob> = Vec::new();
                for job in &tx.jobs {
                    job.validate()?;
                    if job.supersede {
                        self.insert_jobs_on(db, &run, delivery.as_deref(), now, out).await?;
                        run.clear();
                        let head = job.head_sha.as_deref().unwrap_or_default();
                        let cancelled: Vec<$crate::jobs::JobId> = sqlx::query_scalar(
                            "UPDATE jobs SET state = 'cancelled', reason = $1, finished_at = $2, \
                             lease_owner = NULL, lease_until = NULL \
                             WHERE serial_key = $3 AND state IN ('queued', 'running') \
                             AND head_sha IS NOT NULL AND head_sha <> $4 RETURNING id",
                        )
                        .bind(format!("superseded by a newer head {head}"))
                        .bind(now)
                        .bind(&job.serial_key)
                        .bind(head)
                        .fetch_all(&mut **db)
                        .await
                        .map_err(self.fail("cancelling superseded jobs"))?;
                        out.cancelled_jobs.extend(cancelled);
                    }
                    run.push(job);
                }
                self.insert_jobs_on(db, &run, delivery.as_deref(), now, out).await?;
                // Completions in one statement (a transaction may finish several jobs); a lease
                // that is not held any more fails the whole transaction.
                for chunk in tx.completions.chunks($crate::backend::jobs::LEASE_CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE jobs SET state = 'succeeded', finished_at = ",
                    );
                    q.push_bind(now).push(
                        ", lease_until = NULL, last_error = NULL WHERE state = 'running' AND ",
                    );
                    $crate::backend::jobs::push_lease_match(&mut q, chunk);
                    q.push(" RETURNING id");
                    let done: Vec<$crate::jobs::JobId> = q
                        .build_query_scalar()
                        .fetch_all(&mut **db)
                        .await
                        .map_err(self.fail("completing jobs"))?;
                    if let Some(&lost) = $crate::backend::jobs::missing(chunk, &done).first() {
                        return Err(Self::lease_lost_on(&mut **db, lost).await);
                    }
                }
                Ok(())
            }
        }

        impl $crate::jobs::JobQueue for $ty {
            async fn claim_batch(
                &self,
                worker: &str,
                lease_for: std::time::Duration,
                limit: u32,
                claimant: $crate::jobs::Claimant,
            ) -> $crate::error::Result<Vec<$crate::jobs::Claimed>> {
                use $crate::backend::jobs::{claim_sql, give_up_expired_sql};
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let now = $crate::records::now_millis();
                let until = $crate::jobs::lease_deadline(lease_for);
                let give_up = give_up_expired_sql(Self::CLAIM_LOCK);
                let claim = claim_sql(Self::CLAIM_LOCK, claimant);
                let rows = if Self::CLAIM_IN_ONE_STATEMENT {
                    // One statement, committed on its own: one round trip, and no wait for a
                    // WAL flush (the lease pool, see `PgStore::lease_pool`).
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "WITH given_up AS ({give_up} RETURNING id) {claim}"
                    )))
                    .bind(now)
                    .bind(worker)
                    .bind(until)
                    .bind(i64::from(limit))
                    .fetch_all(&self.lease_pool)
                    .await
                    .map_err(self.fail("claiming jobs"))?
                } else {
                    // Waits its turn behind this process's other writers (the group commit)
                    // instead of sleeping in SQLite's busy handler.
                    let _turn = self.write_turn().await;
                    let mut db = self.begin_lease_write().await?;
                    sqlx::query(sqlx::AssertSqlSafe(give_up))
                        .bind(now)
                        .execute(&mut *db)
                        .await
                        .map_err(self.fail("giving up expired jobs"))?;
                    let rows = sqlx::query(sqlx::AssertSqlSafe(claim))
                        .bind(now)
                        .bind(worker)
                        .bind(until)
                        .bind(i64::from(limit))
                        .fetch_all(&mut *db)
                        .await
                        .map_err(self.fail("claiming jobs"))?;
                    db.commit()
                        .await
                        .map_err($crate::error::durability("committing a claim"))?;
                    rows
                };
                let mut claimed = rows
                    .iter()
                    .map(|row| {
                        let job = Self::job_from_row(row)?;
                        let lease = $crate::jobs::Lease {
                            job_id: job.id,
                            token: job.lease_token,
                        };
                        Ok($crate::jobs::Claimed { job, lease })
                    })
                    .collect::<$crate::error::Result<Vec<_>>>()?;
                // RETURNING has no order of its own: oldest first, as claimed.
                claimed.sort_by_key(|c| c.job.id);
                Ok(claimed)
            }

            async fn heartbeat(
                &self,
                lease: $crate::jobs::Lease,
                lease_for: std::time::Duration,
            ) -> $crate::error::Result<()> {
                let turn = self.write_turn().await;
                let done = sqlx::query(
                    "UPDATE jobs SET lease_until = $1 \
                     WHERE id = $2 AND lease_token = $3 AND state = 'running'",
                )
                .bind($crate::jobs::lease_deadline(lease_for))
                .bind(lease.job_id)
                .bind(lease.token)
                .execute(&self.lease_pool)
                .await
                .map_err(self.fail("extending a lease"))?;
                drop(turn);
                if done.rows_affected() == 1 {
                    return Ok(());
                }
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err($crate::error::db("reading a job"))?;
                Err(Self::lease_lost_on(&mut *conn, lease).await)
            }

            async fn heartbeat_batch(
                &self,
                leases: &[$crate::jobs::Lease],
                lease_for: std::time::Duration,
            ) -> $crate::error::Result<Vec<$crate::jobs::Lease>> {
                use $crate::backend::jobs::{LEASE_CHUNK, missing, push_lease_match};
                let until = $crate::jobs::lease_deadline(lease_for);
                let mut lost = Vec::new();
                for chunk in leases.chunks(LEASE_CHUNK) {
                    let _turn = self.write_turn().await;
                    let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE jobs SET lease_until = ");
                    q.push_bind(until).push(" WHERE state = 'running' AND ");
                    push_lease_match(&mut q, chunk);
                    q.push(" RETURNING id");
                    let extended: Vec<$crate::jobs::JobId> = q
                        .build_query_scalar()
                        .fetch_all(&self.lease_pool)
                        .await
                        .map_err(self.fail("extending leases"))?;
                    lost.extend(missing(chunk, &extended));
                }
                Ok(lost)
            }

            fn job_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
                Some(self.jobs_ready.clone())
            }

            async fn fail(
                &self,
                lease: $crate::jobs::Lease,
                error: &str,
                policy: $crate::jobs::Backoff,
            ) -> $crate::error::Result<$crate::jobs::JobState> {
                use $crate::jobs::{AfterFailure, JobState, after_failure};
                let now = $crate::records::now_millis();
                let _turn = self.write_turn().await;
                let mut db = self.begin_write().await?;
                let held: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT CAST(attempts AS BIGINT), CAST(max_attempts AS BIGINT) FROM jobs \
                     WHERE id = $1 AND lease_token = $2 AND state = 'running'",
                )
                .bind(lease.job_id)
                .bind(lease.token)
                .fetch_optional(&mut *db)
                .await
                .map_err($crate::error::db("reading a job"))?;
                let Some((attempts, max_attempts)) = held else {
                    return Err(Self::lease_lost_on(&mut *db, lease).await);
                };
                // Errors are stored for people to read; a runaway message is cut.
                let error: String = error.chars().take(4000).collect();
                let state = match after_failure(attempts as u32, max_attempts as u32, policy, now) {
                    AfterFailure::RetryAt(at) => {
                        sqlx::query(
                            "UPDATE jobs SET state = 'queued', run_at = $1, last_error = $2, \
                             lease_owner = NULL, lease_until = NULL WHERE id = $3",
                        )
                        .bind(at)
                        .bind(&error)
                        .bind(lease.job_id)
                        .execute(&mut *db)
                        .await
                        .map_err(self.fail("re-queueing a job"))?;
                        JobState::Queued
                    }
                    AfterFailure::Dead => {
                        sqlx::query(
                            "UPDATE jobs SET state = 'dead', finished_at = $1, last_error = $2, \
                             lease_until = NULL, reason = $3 WHERE id = $4",
                        )
                        .bind(now)
                        .bind(&error)
                        .bind(format!("failed {attempts} of {max_attempts} attempts"))
                        .bind(lease.job_id)
                        .execute(&mut *db)
                        .await
                        .map_err(self.fail("dead-lettering a job"))?;
                        JobState::Dead
                    }
                };
                db.commit()
                    .await
                    .map_err($crate::error::durability("committing a failed attempt"))?;
                Ok(state)
            }

            async fn release(&self, lease: $crate::jobs::Lease) -> $crate::error::Result<()> {
                let turn = self.write_turn().await;
                let done = sqlx::query(
                    "UPDATE jobs SET state = 'queued', attempts = attempts - 1, \
                     lease_owner = NULL, lease_until = NULL \
                     WHERE id = $1 AND lease_token = $2 AND state = 'running' AND attempts > 0",
                )
                .bind(lease.job_id)
                .bind(lease.token)
                .execute(&self.pool)
                .await
                .map_err(self.fail("releasing a job"))?;
                drop(turn);
                if done.rows_affected() == 1 {
                    // Claimable again now: idle claim loops of this process look at once.
                    self.jobs_ready.notify_waiters();
                    return Ok(());
                }
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err($crate::error::db("reading a job"))?;
                Err(Self::lease_lost_on(&mut *conn, lease).await)
            }

            async fn job(&self, id: $crate::jobs::JobId) -> $crate::error::Result<Option<$crate::jobs::Job>> {
                use $crate::backend::jobs::JOB_COLUMNS;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::error::db("reading a job"))?;
                row.as_ref().map(Self::job_from_row).transpose()
            }

            async fn jobs(
                &self,
                filter: &$crate::jobs::JobFilter,
                limit: u32,
            ) -> $crate::error::Result<Vec<$crate::jobs::Job>> {
                use $crate::backend::jobs::JOB_COLUMNS;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {JOB_COLUMNS} FROM jobs \
                     WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR serial_key = $2) \
                     ORDER BY id DESC LIMIT $3"
                )))
                .bind(filter.state.map(|s| s.as_str()))
                .bind(filter.serial_key.as_deref())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::error::db("listing jobs"))?;
                rows.iter().map(Self::job_from_row).collect()
            }

            async fn queue_depth(&self) -> $crate::error::Result<$crate::jobs::QueueDepth> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT state, COUNT(*) FROM jobs \
                     WHERE state IN ('queued', 'running', 'dead') GROUP BY state",
                )
                .fetch_all(&self.pool)
                .await
                .map_err($crate::error::db("counting jobs"))?;
                let mut depth = $crate::jobs::QueueDepth::default();
                for (state, n) in rows {
                    let n = n.max(0) as u64;
                    match state.as_str() {
                        "queued" => depth.queued = n,
                        "running" => depth.running = n,
                        _ => depth.dead = n,
                    }
                }
                Ok(depth)
            }

            async fn delivery(
                &self,
                delivery_id: &str,
            ) -> $crate::error::Result<Option<$crate::jobs::DeliveryRecord>> {
                let row: Option<(String, String, Option<String>, i64, i64)> = sqlx::query_as(
                    "SELECT delivery_id, event, action, CAST(jobs AS BIGINT), received_at \
                     FROM webhook_deliveries WHERE delivery_id = $1",
                )
                .bind(delivery_id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::error::db("reading a webhook delivery"))?;
                Ok(row.map(|(delivery_id, event, action, jobs, received_at)| {
                    $crate::jobs::DeliveryRecord {
                        delivery_id,
                        event,
                        action,
                        jobs: jobs.max(0) as u32,
                        received_at,
                    }
                }))
            }
        }

        impl $crate::tokens::TokenStore for $ty {
            async fn create_token(
                &self,
                scope: $crate::tokens::Scope,
                name: &str,
            ) -> $crate::error::Result<$crate::tokens::IssuedToken> {
                self.insert_plain_token(scope, name, None).await
            }

            async fn create_expiring_token(
                &self,
                scope: $crate::tokens::Scope,
                name: &str,
                expires_at: $crate::records::UnixMillis,
            ) -> $crate::error::Result<$crate::tokens::IssuedToken> {
                self.insert_plain_token(scope, name, Some(expires_at)).await
            }

            async fn renew_token(
                &self,
                id: &str,
                expires_at: $crate::records::UnixMillis,
            ) -> $crate::error::Result<bool> {
                let done = sqlx::query(
                    "UPDATE api_tokens SET expires_at = $1 \
                     WHERE id = $2 AND revoked_at IS NULL AND expires_at IS NOT NULL \
                     AND expires_at > $3",
                )
                .bind(expires_at)
                .bind(id)
                .bind($crate::records::now_millis())
                .execute(&self.pool)
                .await
                .map_err(self.fail("renewing a token"))?;
                Ok(done.rows_affected() == 1)
            }

            async fn create_state_token(
                &self,
                name: &str,
                grants: &$crate::tokens::StateGrants,
            ) -> $crate::error::Result<$crate::tokens::IssuedToken> {
                if grants.is_empty() {
                    return Err($crate::error::StoreError::Invalid {
                        record: "token",
                        field: "state",
                        problem: "a state token needs at least one stack glob to read or write"
                            .into(),
                    });
                }
                self.insert_token($crate::tokens::Scope::State, name, grants, None)
                    .await
            }

            async fn verify_token(
                &self,
                token: &str,
            ) -> $crate::error::Result<Option<$crate::tokens::Scope>> {
                Ok(self.verify_token_grants(token).await?.map(|t| t.scope))
            }

            async fn verify_token_grants(
                &self,
                token: &str,
            ) -> $crate::error::Result<Option<$crate::tokens::VerifiedToken>> {
                let Some((id, secret)) = $crate::tokens::split_token(token) else {
                    return Ok(None);
                };
                let row: Option<(Vec<u8>, String, String, String, String)> = sqlx::query_as(
                    "SELECT secret_hash, scope, name, state_read, state_write FROM api_tokens \
                     WHERE id = $1 AND revoked_at IS NULL \
                     AND (expires_at IS NULL OR expires_at > $2)",
                )
                .bind(id)
                .bind($crate::records::now_millis())
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::error::db("reading a token"))?;
                let Some((stored, scope, name, read, write)) = row else {
                    return Ok(None);
                };
                let presented = $crate::tokens::secret_hash(secret);
                if !$crate::tokens::constant_time_eq(&stored, &presented) {
                    return Ok(None);
                }
                let scope = $crate::tokens::Scope::parse(&scope)
                    .ok_or_else(|| $crate::backend::bad_row("api_tokens", id, "scope", scope))?;
                Ok(Some($crate::tokens::VerifiedToken {
                    id: id.to_string(),
                    name,
                    scope,
                    state: $crate::tokens::StateGrants {
                        read: $crate::tokens::grant_list(&read, id, "state_read")?,
                        write: $crate::tokens::grant_list(&write, id, "state_write")?,
                    },
                }))
            }

            async fn revoke_token(&self, id: &str) -> $crate::error::Result<bool> {
                let done = sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                )
                .bind($crate::records::now_millis())
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(self.fail("revoking a token"))?;
                Ok(done.rows_affected() == 1)
            }

            async fn tokens(&self) -> $crate::error::Result<Vec<$crate::tokens::TokenRecord>> {
                type Row = (String, String, String, i64, Option<i64>, String, String, Option<i64>);
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT id, scope, name, created_at, revoked_at, state_read, state_write, \
                     expires_at FROM api_tokens ORDER BY created_at, id",
                )
                .fetch_all(&self.pool)
                .await
                .map_err($crate::error::db("listing tokens"))?;
                rows.into_iter()
                    .map(|(id, scope, name, created_at, revoked_at, read, write, expires_at)| {
                        let parsed = $crate::tokens::Scope::parse(&scope).ok_or_else(|| {
                            $crate::backend::bad_row("api_tokens", &id, "scope", scope.clone())
                        })?;
                        let state = $crate::tokens::StateGrants {
                            read: $crate::tokens::grant_list(&read, &id, "state_read")?,
                            write: $crate::tokens::grant_list(&write, &id, "state_write")?,
                        };
                        Ok($crate::tokens::TokenRecord {
                            id,
                            scope: parsed,
                            name,
                            state,
                            created_at,
                            revoked_at,
                            expires_at,
                        })
                    })
                    .collect()
            }
        }

        impl $ty {
            /// A token of a scope without stack grants: every scope but `state`, whose tokens
            /// name the stacks they may touch (`create_state_token`).
            async fn insert_plain_token(
                &self,
                scope: $crate::tokens::Scope,
                name: &str,
                expires_at: Option<$crate::records::UnixMillis>,
            ) -> $crate::error::Result<$crate::tokens::IssuedToken> {
                if scope == $crate::tokens::Scope::State {
                    return Err($crate::error::StoreError::Invalid {
                        record: "token",
                        field: "scope",
                        problem: "a state token needs the stacks it may touch \
                                  (create_state_token)"
                            .into(),
                    });
                }
                self.insert_token(
                    scope,
                    name,
                    &$crate::tokens::StateGrants::default(),
                    expires_at,
                )
                .await
            }

            async fn insert_token(
                &self,
                scope: $crate::tokens::Scope,
                name: &str,
                grants: &$crate::tokens::StateGrants,
                expires_at: Option<$crate::records::UnixMillis>,
            ) -> $crate::error::Result<$crate::tokens::IssuedToken> {
                let (id, secret) = $crate::tokens::generate()?;
                let json = |v: &Vec<String>| serde_json::to_string(v).expect("strings serialise");
                sqlx::query(
                    "INSERT INTO api_tokens \
                     (id, secret_hash, scope, name, created_at, state_read, state_write, \
                     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&id)
                .bind($crate::tokens::secret_hash(&secret).to_vec())
                .bind(scope.as_str())
                .bind(name)
                .bind($crate::records::now_millis())
                .bind(json(&grants.read))
                .bind(json(&grants.write))
                .bind(expires_at)
                .execute(&self.pool)
                .await
                .map_err(self.fail("storing a token"))?;
                Ok($crate::tokens::IssuedToken {
                    token: $crate::tokens::format_token(&id, &secret),
                    id,
                    scope,
                })
            }
        }
    };
}

pub(crate) use impl_jobs;
