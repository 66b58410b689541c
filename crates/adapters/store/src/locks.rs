//! State-domain locks in the store (DESIGN.md §3 "Lock", §6): the model's lock state machine
//! ([`sluice_model::lock::Lock`]) made durable and shared between processes and replicas.
//!
//! The store decides nothing about locks. [`LockStore::transition`] loads a stack's lock inside
//! one write transaction (SQLite `BEGIN IMMEDIATE`; PostgreSQL `SELECT … FOR UPDATE` on the
//! lock's row), runs one model transition on it and writes it back in the same transaction, so
//! two processes can never both see a free lock: one holder per stack, fencing tokens that only
//! grow (the row's `last_token` never decreases, even across admin unlocks), leases, and the
//! FIFO queue of waiting changes all come from the model. A transition that refuses, or that
//! changes nothing, writes nothing.
//!
//! The named operations ([`LockStore::acquire`], [`LockStore::heartbeat`],
//! [`LockStore::begin_apply`], [`LockStore::release`], [`LockStore::fail`],
//! [`LockStore::close`], [`LockStore::unlock`], [`LockStore::check_write`]) are that one
//! transition each. The current time is a parameter throughout, as in the model: a caller passes
//! the wall clock, tests pass any instant.
//!
//! Waiting: a queued change keeps its place only by asking again before its waiter lease ends.
//! A waiter need not rewrite the row on every poll: read [`LockStore::lock`] (no write), and ask
//! again when `settled(now)` shows the lock free with this change first in line, or when its
//! waiter lease is about to end.

use std::future::Future;
use std::time::Duration;

use sluice_model::exception::Timestamp;
use sluice_model::lock::{
    Acquired, Closed, FencingToken, Holder, Lock, Refusal, Settled, Unlocked,
};

use crate::error::{Result, StoreError};

/// What a lock operation returns: `Err(StoreError)` when the database failed (nothing is known
/// to have changed unless the error is fatal), `Ok(Err(Refusal))` when the model refused (nothing
/// changed), `Ok(Ok(value))` when the transition was made durable.
pub type LockResult<T> = Result<std::result::Result<T, Refusal>>;

/// Per-stack locks (see the module documentation). Implemented by [`crate::SqliteStore`] and
/// [`crate::PgStore`] (and [`crate::AnyStore`]).
pub trait LockStore: Send + Sync + 'static {
    /// Loads `unit`'s lock (a fresh one, never taken, if it has no row), runs `transition` on
    /// it and, if the lock changed and the transition returned `Ok`, writes it back; all inside
    /// one write transaction holding the row, so transitions on one stack are serialised
    /// across processes and replicas.
    fn transition<T, F>(
        &self,
        unit: &str,
        transition: F,
    ) -> impl Future<Output = LockResult<T>> + Send
    where
        T: Send,
        F: FnOnce(&mut Lock) -> std::result::Result<T, Refusal> + Send;

    /// The stored lock of `unit` (`None` if it was never taken). As stored: call
    /// [`Lock::settled`] to see it as it stands now (expired holders gone, interrupted applies
    /// kept).
    fn lock(&self, unit: &str) -> impl Future<Output = Result<Option<Lock>>> + Send;

    /// Every stored lock, by unit: what `sluice locks` lists (apply [`Lock::settled`]).
    fn locks(&self) -> impl Future<Output = Result<Vec<Lock>>> + Send;

    /// [`Lock::acquire`]: granted with a new fencing token, or queued (FIFO) with a position.
    fn acquire(
        &self,
        unit: &str,
        change: &str,
        now: Timestamp,
        lease: Duration,
    ) -> impl Future<Output = LockResult<Acquired>> + Send {
        async move {
            self.transition(unit, |l| l.acquire(change, now, lease))
                .await
        }
    }

    /// [`Lock::heartbeat`]: renews the holder's lease; returns the new expiry.
    fn heartbeat(
        &self,
        unit: &str,
        token: FencingToken,
        now: Timestamp,
        lease: Duration,
    ) -> impl Future<Output = LockResult<Timestamp>> + Send {
        async move {
            self.transition(unit, |l| l.heartbeat(token, now, lease))
                .await
        }
    }

    /// [`Lock::begin_apply`]: from now on a lapsed lease means an interrupted apply.
    fn begin_apply(
        &self,
        unit: &str,
        token: FencingToken,
        now: Timestamp,
    ) -> impl Future<Output = LockResult<()>> + Send {
        async move { self.transition(unit, |l| l.begin_apply(token, now)).await }
    }

    /// [`Lock::release`]: the holder is done; the next in line may take the lock.
    fn release(
        &self,
        unit: &str,
        token: FencingToken,
        now: Timestamp,
    ) -> impl Future<Output = LockResult<Holder>> + Send {
        async move { self.transition(unit, |l| l.release(token, now)).await }
    }

    /// [`Lock::fail`]: the apply failed; the lock is kept for recovery.
    fn fail(
        &self,
        unit: &str,
        token: FencingToken,
        now: Timestamp,
    ) -> impl Future<Output = LockResult<()>> + Send {
        async move { self.transition(unit, |l| l.fail(token, now)).await }
    }

    /// [`Lock::close`]: the change was merged or closed.
    fn close(
        &self,
        unit: &str,
        change: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Closed>> + Send {
        async move {
            let closed = self.transition(unit, |l| Ok(l.close(change, now))).await?;
            Ok(closed.expect("close never refuses"))
        }
    }

    /// [`Lock::unlock`]: the audited admin unlock (a reason is required). The caller records
    /// the returned [`Unlocked`] in the audit log.
    fn unlock(
        &self,
        unit: &str,
        admin: &str,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = LockResult<Unlocked>> + Send {
        async move {
            self.transition(unit, |l| l.unlock(admin, reason, now))
                .await
        }
    }

    /// [`Lock::settle`]: applies what time decided (an expired holder freed, an interrupted
    /// apply kept) and reports it.
    fn settle(
        &self,
        unit: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Settled>>> + Send {
        async move {
            let settled = self.transition(unit, |l| Ok(l.settle(now))).await?;
            Ok(settled.expect("settle never refuses"))
        }
    }

    /// [`Lock::check_write`]: whether a write carrying `token` may proceed at `now` (only the
    /// current holder with a live lease). Writes nothing.
    fn check_write(
        &self,
        unit: &str,
        token: FencingToken,
        now: Timestamp,
    ) -> impl Future<Output = LockResult<()>> + Send {
        async move {
            let lock = self.lock(unit).await?.unwrap_or_else(|| Lock::new(unit));
            Ok(lock.check_write(token, now))
        }
    }
}

/// The row a lock is written as: the JSON state plus the columns that repeat its holder.
pub(crate) struct LockRow {
    pub last_token: i64,
    pub holder_change: Option<String>,
    pub holder_token: Option<i64>,
    pub state: String,
}

pub(crate) fn encode(lock: &Lock) -> Result<LockRow> {
    let token = |t: FencingToken| {
        i64::try_from(t.0).map_err(|_| StoreError::Invalid {
            record: "lock",
            field: "fencing token",
            problem: format!("{t} is out of range"),
        })
    };
    Ok(LockRow {
        last_token: token(lock.last_token)?,
        holder_change: lock.holder.as_ref().map(|h| h.change.clone()),
        holder_token: lock.holder.as_ref().map(|h| token(h.token)).transpose()?,
        state: serde_json::to_string(lock).map_err(|e| StoreError::Invalid {
            record: "lock",
            field: "state",
            problem: e.to_string(),
        })?,
    })
}

pub(crate) fn decode(unit: &str, state: &str) -> Result<Lock> {
    let lock: Lock = serde_json::from_str(state)
        .map_err(|e| crate::backend::bad_row("locks", unit, "state", format!("not a lock: {e}")))?;
    if lock.unit != unit {
        return Err(crate::backend::bad_row(
            "locks",
            unit,
            "state",
            format!("holds the lock of {:?}", lock.unit),
        ));
    }
    Ok(lock)
}

/// The guard a write-back checks beyond the model: a fencing token handed out is never handed
/// out again, whatever a transition (or a bug in one) did.
pub(crate) fn check_monotonic(before: &Lock, after: &Lock) -> Result<()> {
    if after.last_token < before.last_token || after.unit != before.unit {
        return Err(StoreError::Invalid {
            record: "lock",
            field: "last_token",
            problem: format!(
                "a transition of {} moved the last fencing token from {} back to {}",
                before.unit, before.last_token, after.last_token
            ),
        });
    }
    Ok(())
}

/// `impl LockStore` over `self.pool`, `self.begin_write()` and `self.fail(..)` (`$db` the
/// database); `$select` reads
/// a lock's state holding its row until the transaction ends.
macro_rules! impl_lock_store {
    ($ty:ty, $db:ty, $select:expr) => {
        impl $ty {
            /// Reads `unit`'s lock on a write transaction, holding its row until the transaction
            /// ends. A stack never locked before has no row: one is created first and then
            /// held, so that two transactions on a new stack serialise on it like on any other.
            /// The row is read first and created only when missing: a stack's row exists from
            /// its first transition on, so this is one round trip, not two, on every later one.
            pub(crate) async fn hold_lock_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                unit: &str,
            ) -> $crate::error::Result<sluice_model::lock::Lock> {
                let held: Option<String> = sqlx::query_scalar($select)
                    .bind(unit)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(self.fail("reading a lock"))?;
                let state = match held {
                    Some(state) => state,
                    None => {
                        let fresh = $crate::locks::encode(&sluice_model::lock::Lock::new(unit))?;
                        // Another transaction may be creating it too: ON CONFLICT waits for it
                        // and the read below then holds the row it created.
                        sqlx::query(
                            "INSERT INTO locks (unit, last_token, holder_change, holder_token, \
                             state, updated_at) VALUES ($1, 0, NULL, NULL, $2, $3) \
                             ON CONFLICT (unit) DO NOTHING",
                        )
                        .bind(unit)
                        .bind(&fresh.state)
                        .bind($crate::records::now_millis())
                        .execute(&mut *conn)
                        .await
                        .map_err(self.fail("creating a lock"))?;
                        sqlx::query_scalar($select)
                            .bind(unit)
                            .fetch_one(&mut *conn)
                            .await
                            .map_err(self.fail("reading a lock"))?
                    }
                };
                $crate::locks::decode(unit, &state)
            }

            /// Writes a lock held by [`Self::hold_lock_on`] back, refusing a transition that
            /// would move its last fencing token back.
            pub(crate) async fn write_lock_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                before: &sluice_model::lock::Lock,
                lock: &sluice_model::lock::Lock,
            ) -> $crate::error::Result<()> {
                let mut q = sqlx::QueryBuilder::new("");
                Self::push_lock_write(&mut q, before, lock)?;
                q.build()
                    .execute(&mut *conn)
                    .await
                    .map_err(self.fail("writing a lock"))?;
                Ok(())
            }

            /// The statement of [`Self::write_lock_on`], for a batch of writes.
            pub(crate) fn push_lock_write(
                q: &mut sqlx::QueryBuilder<$db>,
                before: &sluice_model::lock::Lock,
                lock: &sluice_model::lock::Lock,
            ) -> $crate::error::Result<()> {
                $crate::locks::check_monotonic(before, lock)?;
                let row = $crate::locks::encode(lock)?;
                $crate::backend::statements::push_sql!(
                    q,
                    "UPDATE locks SET last_token = ?, holder_change = ?, holder_token = ?, \
                     state = ?, updated_at = ? WHERE unit = ? AND last_token <= ?",
                    row.last_token,
                    row.holder_change,
                    row.holder_token,
                    row.state,
                    $crate::records::now_millis(),
                    &lock.unit,
                    row.last_token,
                );
                Ok(())
            }
        }

        impl $crate::locks::LockStore for $ty {
            async fn transition<T, F>(
                &self,
                unit: &str,
                transition: F,
            ) -> $crate::locks::LockResult<T>
            where
                T: Send,
                F: FnOnce(
                        &mut sluice_model::lock::Lock,
                    ) -> std::result::Result<T, sluice_model::lock::Refusal>
                    + Send,
            {
                let mut tx = self.begin_write().await?;
                let before = self.hold_lock_on(&mut *tx, unit).await?;
                let mut lock = before.clone();
                let outcome = transition(&mut lock);
                if outcome.is_err() || lock == before {
                    tx.rollback()
                        .await
                        .map_err($crate::error::db("ending a lock transaction"))?;
                    return Ok(outcome);
                }
                self.write_lock_on(&mut *tx, &before, &lock).await?;
                tx.commit()
                    .await
                    .map_err($crate::error::durability("committing a lock transition"))?;
                Ok(outcome)
            }

            async fn lock(
                &self,
                unit: &str,
            ) -> $crate::error::Result<Option<sluice_model::lock::Lock>> {
                let state: Option<String> =
                    sqlx::query_scalar("SELECT state FROM locks WHERE unit = $1")
                        .bind(unit)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::error::db("reading a lock"))?;
                state.map(|s| $crate::locks::decode(unit, &s)).transpose()
            }

            async fn locks(&self) -> $crate::error::Result<Vec<sluice_model::lock::Lock>> {
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT unit, state FROM locks ORDER BY unit")
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::error::db("reading locks"))?;
                rows.iter()
                    .map(|(unit, state)| $crate::locks::decode(unit, state))
                    .collect()
            }
        }
    };
}

impl_lock_store!(
    crate::SqliteStore,
    sqlx::Sqlite,
    // BEGIN IMMEDIATE already holds the database's write lock.
    "SELECT state FROM locks WHERE unit = $1"
);
impl_lock_store!(
    crate::PgStore,
    sqlx::Postgres,
    "SELECT state FROM locks WHERE unit = $1 FOR UPDATE"
);

impl LockStore for crate::AnyStore {
    async fn transition<T, F>(&self, unit: &str, transition: F) -> LockResult<T>
    where
        T: Send,
        F: FnOnce(&mut Lock) -> std::result::Result<T, Refusal> + Send,
    {
        match self {
            crate::AnyStore::Sqlite(s) => s.transition(unit, transition).await,
            crate::AnyStore::Postgres(s) => s.transition(unit, transition).await,
        }
    }

    async fn lock(&self, unit: &str) -> Result<Option<Lock>> {
        match self {
            crate::AnyStore::Sqlite(s) => s.lock(unit).await,
            crate::AnyStore::Postgres(s) => s.lock(unit).await,
        }
    }

    async fn locks(&self) -> Result<Vec<Lock>> {
        match self {
            crate::AnyStore::Sqlite(s) => s.locks().await,
            crate::AnyStore::Postgres(s) => s.locks().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_survives_its_row() {
        let mut lock = Lock::new("prod/net");
        let t = Timestamp::from_unix(1_800_000_000, 5);
        lock.acquire("a#1", t, Duration::from_secs(60)).unwrap();
        lock.acquire("b#2", t, Duration::from_secs(60)).unwrap();
        let row = encode(&lock).unwrap();
        assert_eq!(row.holder_change.as_deref(), Some("a#1"));
        assert_eq!(row.holder_token, Some(1));
        assert_eq!(decode("prod/net", &row.state).unwrap(), lock);
        assert!(decode("prod/other", &row.state).is_err());
        let mut back = lock.clone();
        back.last_token = FencingToken(0);
        assert!(check_monotonic(&lock, &back).is_err());
        assert!(check_monotonic(&back, &lock).is_ok());
    }
}
