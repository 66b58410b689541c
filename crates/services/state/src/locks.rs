//! The state-domain locks the backend uses as its lock (one lock, not two): what it needs of a
//! lock store, as three transitions of the model's [`Lock`] state machine.
//!
//! [`ProcessLocks`] keeps the locks of one process in memory. It is what the backend runs on
//! until the store's durable `LockStore` (per-stack rows, one transition per write transaction,
//! shared by replicas) implements [`DomainLocks`]; with it, the locks of `sluice serve`, the
//! runners' applies and the Terraform clients are the same rows. Being in memory, it forgets its
//! locks when the process ends (every lock is then free again, and fencing tokens restart, so
//! a client from before a restart could write again after one).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sluice_model::exception::Timestamp;
use sluice_model::lock::{Acquired, FencingToken, Lock, Refusal};
use sluice_store::StoreError;

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

/// The locks of one process (see the module documentation).
#[derive(Default)]
pub struct ProcessLocks {
    locks: Mutex<HashMap<String, Lock>>,
}

impl ProcessLocks {
    fn with<T>(
        &self,
        unit: &str,
        f: impl FnOnce(&mut Lock) -> Result<T, Refusal>,
    ) -> LockResult<T> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        let current = locks.get(unit).cloned().unwrap_or_else(|| Lock::new(unit));
        let mut next = current.clone();
        // Like a store transaction: a refusal changes nothing.
        let out = f(&mut next);
        if out.is_ok() && next != current {
            locks.insert(unit.to_string(), next);
        }
        Ok(out)
    }
}

impl DomainLocks for ProcessLocks {
    fn lock<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<Option<Lock>, StoreError>> {
        let found = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(unit)
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn try_acquire<'a>(
        &'a self,
        unit: &'a str,
        change: &'a str,
        now: Timestamp,
        lease: Duration,
    ) -> BoxFuture<'a, LockResult<Option<FencingToken>>> {
        let out = self.with(unit, |l| try_acquire_transition(l, change, now, lease));
        Box::pin(async move { out })
    }

    fn release<'a>(
        &'a self,
        unit: &'a str,
        token: FencingToken,
        now: Timestamp,
    ) -> BoxFuture<'a, LockResult<()>> {
        let out = self.with(unit, |l| l.release(token, now).map(|_| ()));
        Box::pin(async move { out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_grow_and_a_busy_lock_is_not_queued() {
        let locks = ProcessLocks::default();
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
        assert!(locks.lock("u").await.unwrap().unwrap().queue.is_empty());
        // A stale release is refused and changes nothing.
        assert!(
            locks
                .release("u", FencingToken(7), t0)
                .await
                .unwrap()
                .is_err()
        );
        locks
            .release("u", FencingToken(1), t0)
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
