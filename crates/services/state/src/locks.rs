//! The state-domain locks the backend uses as its lock (one lock, not two): what it needs of a
//! lock store, as three transitions of the model's [`Lock`] state machine. Every
//! [`LockStore`] provides them, so the locks of `sluice serve`'s backend, of `sluice apply` and of
//! `sluice locks`/`unlock` are the same rows. (`LOCK` and `UNLOCK` decide inside the store's
//! lock transaction instead, with [`try_acquire_transition`]; these serve an admin's write.)

use std::time::Duration;

use futures_util::future::BoxFuture;
use sluice_model::exception::Timestamp;
use sluice_model::lock::{Acquired, FencingToken, Lock, Refusal};
use sluice_store::{LockStore, StoreError};

/// `Err(StoreError)` when the lock store failed; `Ok(Err(Refusal))` when the model refused.
pub type LockResult<T> = Result<Result<T, Refusal>, StoreError>;

/// The lock operations the backend uses.
pub trait DomainLocks: Send + Sync + 'static {
    /// The stored lock of `unit` (`None` if never taken), as stored.
    fn lock<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<Option<Lock>, StoreError>>;

    /// Takes the lock for `change` if it is free and nobody is waiting ahead: its new fencing
    /// token, or `None` (the change does not join the queue: a Terraform client retries on its
    /// own with `-lock-timeout`).
    fn try_acquire<'a>(
        &'a self,
        unit: &'a str,
        change: &'a str,
        now: Timestamp,
        lease: Duration,
    ) -> BoxFuture<'a, LockResult<Option<FencingToken>>>;

    /// Releases the lock held with `token`.
    fn release<'a>(
        &'a self,
        unit: &'a str,
        token: FencingToken,
        now: Timestamp,
    ) -> BoxFuture<'a, LockResult<()>>;
}

/// The transition behind [`DomainLocks::try_acquire`], for every implementation.
pub fn try_acquire_transition(
    lock: &mut Lock,
    change: &str,
    now: Timestamp,
    lease: Duration,
) -> Result<Option<FencingToken>, Refusal> {
    match lock.acquire(change, now, lease)? {
        Acquired::Granted { token, .. } => Ok(Some(token)),
        Acquired::Queued { .. } => {
            lock.close(change, now);
            Ok(None)
        }
    }
}

impl<T: LockStore> DomainLocks for T {
    fn lock<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<Option<Lock>, StoreError>> {
        Box::pin(LockStore::lock(self, unit))
    }

    fn try_acquire<'a>(
        &'a self,
        unit: &'a str,
        change: &'a str,
        now: Timestamp,
        lease: Duration,
    ) -> BoxFuture<'a, LockResult<Option<FencingToken>>> {
        Box::pin(self.transition(unit, move |l| try_acquire_transition(l, change, now, lease)))
    }

    fn release<'a>(
        &'a self,
        unit: &'a str,
        token: FencingToken,
        now: Timestamp,
    ) -> BoxFuture<'a, LockResult<()>> {
        Box::pin(async move {
            Ok(LockStore::release(self, unit, token, now)
                .await?
                .map(|_| ()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_grow_and_a_busy_lock_is_not_queued() {
        let dir = tempfile::tempdir().unwrap();
        let locks = sluice_store::SqliteStore::open(dir.path().join("s.db"))
            .await
            .unwrap();
        let t0 = Timestamp::from_unix(1_000, 0);
        let lease = Duration::from_secs(60);
        let a = locks
            .try_acquire("u", "a", t0, lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a, Some(FencingToken(1)));
        assert_eq!(
            locks
                .try_acquire("u", "b", t0, lease)
                .await
                .unwrap()
                .unwrap(),
            None
        );
        assert!(
            DomainLocks::lock(&locks, "u")
                .await
                .unwrap()
                .unwrap()
                .queue
                .is_empty()
        );
        // A stale release is refused and changes nothing.
        let stale = DomainLocks::release(&locks, "u", FencingToken(7), t0).await;
        assert!(stale.unwrap().is_err());
        DomainLocks::release(&locks, "u", FencingToken(1), t0)
            .await
            .unwrap()
            .unwrap();
        let b = locks
            .try_acquire("u", "b", t0, lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b, Some(FencingToken(2)));
        // After the lease, the lock is free for the next client, with a larger token.
        let later = t0.plus_seconds(61);
        let c = locks
            .try_acquire("u", "c", later, lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c, Some(FencingToken(3)));
    }
}
