//! The lock suite, written once over `LockStore` and run against SQLite and PostgreSQL: fencing
//! tokens only grow, refusals change nothing, leases and waiter leases expire, kept locks
//! survive, holders are listable, and 100 concurrent acquirers on one stack are served one at a
//! time in the order they queued.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_model::exception::Timestamp;
use sluice_model::lock::{
    Acquired, Closed, FencingToken, KeptCause, Lock, Refusal, Settled, Tenure,
};
use sluice_store::{LockStore, Store};

const LEASE: Duration = Duration::from_secs(30);
const UNIT: &str = "prod/ap-southeast-1/network";

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix(1_800_000_000 + secs, 0)
}

fn granted(a: Acquired) -> FencingToken {
    match a {
        Acquired::Granted { token, .. } => token,
        other => panic!("expected a grant, got {other:?}"),
    }
}

async fn tokens_only_grow<S: Store + LockStore + Clone>(store: &S) {
    assert!(store.lock(UNIT).await.unwrap().is_none());
    let a = granted(
        store
            .acquire(UNIT, "r#1", t(0), LEASE)
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(a, FencingToken(1));
    // A second change queues; asking again keeps its place.
    let q = store
        .acquire(UNIT, "r#2", t(1), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        q,
        Acquired::Queued {
            position: 1,
            holder: "r#1".into()
        }
    );
    let q3 = store
        .acquire(UNIT, "r#3", t(1), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(q3, Acquired::Queued { position: 2, .. }));
    // The holder asking again is refused and nothing changes.
    let stored = store.lock(UNIT).await.unwrap().unwrap();
    let refused = store.acquire(UNIT, "r#1", t(2), LEASE).await.unwrap();
    assert!(matches!(refused, Err(Refusal::AlreadyHolder { .. })));
    assert_eq!(store.lock(UNIT).await.unwrap().unwrap(), stored);

    store.release(UNIT, a, t(3)).await.unwrap().unwrap();
    // Released: the old token is fenced.
    assert!(matches!(
        store.check_write(UNIT, a, t(3)).await.unwrap(),
        Err(Refusal::Stale { current: None, .. })
    ));
    // r#3 is not first in line; r#2 is.
    assert!(matches!(
        store
            .acquire(UNIT, "r#3", t(4), LEASE)
            .await
            .unwrap()
            .unwrap(),
        Acquired::Queued { position: 2, .. }
    ));
    let b = granted(
        store
            .acquire(UNIT, "r#2", t(4), LEASE)
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(b, FencingToken(2));
    assert!(matches!(
        store.check_write(UNIT, a, t(5)).await.unwrap(),
        Err(Refusal::Stale {
            current: Some(FencingToken(2)),
            ..
        })
    ));
    assert!(matches!(
        store
            .check_write(UNIT, FencingToken(9), t(5))
            .await
            .unwrap(),
        Err(Refusal::UnknownToken { .. })
    ));
    store.check_write(UNIT, b, t(5)).await.unwrap().unwrap();

    // Admin unlock needs a reason; with one it removes the holder, and the next token is larger.
    assert_eq!(
        store.unlock(UNIT, "root", "  ", t(6)).await.unwrap(),
        Err(Refusal::ReasonRequired)
    );
    let unlocked = store
        .unlock(UNIT, "root", "runner lost", t(6))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unlocked.previous.unwrap().token, b);
    let c = granted(
        store
            .acquire(UNIT, "r#3", t(7), LEASE)
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(c, FencingToken(3));
    assert!(matches!(
        store.heartbeat(UNIT, b, t(8), LEASE).await.unwrap(),
        Err(Refusal::Stale { .. })
    ));
    let listed = store.locks().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_token, FencingToken(3));
    assert_eq!(listed[0].holder.as_ref().unwrap().change, "r#3");
}

async fn leases_expire_and_failed_applies_keep_the_lock<S: Store + LockStore + Clone>(store: &S) {
    let lease = Duration::from_secs(10);
    let a = granted(
        store
            .acquire(UNIT, "r#1", t(0), lease)
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(
        store
            .heartbeat(UNIT, a, t(5), lease)
            .await
            .unwrap()
            .unwrap(),
        t(15)
    );
    // Lease ran out before applying: the lock is free, the old holder fenced.
    assert!(matches!(
        store.check_write(UNIT, a, t(15)).await.unwrap(),
        Err(Refusal::Expired { .. })
    ));
    assert_eq!(
        store.settle(UNIT, t(15)).await.unwrap(),
        Some(Settled::Expired {
            change: "r#1".into(),
            token: a
        })
    );
    let b = granted(
        store
            .acquire(UNIT, "r#2", t(16), lease)
            .await
            .unwrap()
            .unwrap(),
    );
    store.begin_apply(UNIT, b, t(17)).await.unwrap().unwrap();
    // Closing the PR mid-apply does not release; the apply's end decides.
    assert_eq!(
        store.close(UNIT, "r#2", t(18)).await.unwrap(),
        Closed::ApplyInProgress { token: b }
    );
    // The runner dies: its lease runs out mid-apply and the lock is kept.
    let kept = store.lock(UNIT).await.unwrap().unwrap().settled(t(40));
    assert!(matches!(
        kept.holder.unwrap().tenure,
        Tenure::Kept {
            cause: KeptCause::Interrupted,
            ..
        }
    ));
    assert!(matches!(
        store
            .acquire(UNIT, "r#3", t(40), lease)
            .await
            .unwrap()
            .unwrap(),
        Acquired::Queued { .. }
    ));
    // Stored as kept: nobody else gets it, the same change may take it again to recover.
    assert!(matches!(
        store.release(UNIT, b, t(41)).await.unwrap(),
        Err(Refusal::Kept { .. })
    ));
    let c = granted(
        store
            .acquire(UNIT, "r#2", t(42), lease)
            .await
            .unwrap()
            .unwrap(),
    );
    assert!(c > b);
    store.fail(UNIT, c, t(43)).await.unwrap().unwrap();
    assert_eq!(
        store.close(UNIT, "r#2", t(44)).await.unwrap(),
        Closed::KeptForRecovery
    );
    // The waiter r#3 stopped asking: its place lapsed after its waiter lease.
    let lock = store.lock(UNIT).await.unwrap().unwrap().settled(t(60));
    assert!(lock.queue.is_empty());
    store
        .unlock(UNIT, "root", "recovered by hand", t(61))
        .await
        .unwrap()
        .unwrap();
    let d = granted(
        store
            .acquire(UNIT, "r#3", t(62), lease)
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(d, FencingToken(c.0 + 1));
}

async fn stacks_are_independent<S: Store + LockStore + Clone>(store: &S) {
    let a = granted(
        store
            .acquire("dev/a", "r#1", t(0), LEASE)
            .await
            .unwrap()
            .unwrap(),
    );
    let b = granted(
        store
            .acquire("dev/b", "r#1", t(0), LEASE)
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!((a, b), (FencingToken(1), FencingToken(1)));
    // A token of one stack means nothing on another.
    store.release("dev/a", a, t(1)).await.unwrap().unwrap();
    store.check_write("dev/b", b, t(1)).await.unwrap().unwrap();
    let units: Vec<String> = store
        .locks()
        .await
        .unwrap()
        .into_iter()
        .map(|l: Lock| l.unit)
        .collect();
    assert_eq!(units, ["dev/a", "dev/b"]);
}

fn wall() -> Timestamp {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Timestamp::from_unix(d.as_secs() as i64, d.subsec_nanos())
}

/// 100 changes race for one stack. Each joins the queue once, then waits by reading (as a real
/// waiter does) and asks again when it is first in line. Checked: never two holders at once,
/// every holder's token accepted while it holds and refused after, and token k goes to the k-th
/// change to join (FIFO), which also makes the tokens strictly increasing in grant order.
async fn hundred_acquirers_one_holder<S: Store + LockStore + Clone>(store: &S) {
    const N: usize = 100;
    let lease = Duration::from_secs(120);
    let joined = Arc::new(AtomicU64::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let last_granted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..N {
        let store = store.clone();
        let (joined, inside, last_granted) = (joined.clone(), inside.clone(), last_granted.clone());
        tasks.push(tokio::spawn(async move {
            let change = format!("race#{i}");
            // The join order, taken inside the transaction that queues (or grants) this change:
            // transitions on one stack are serialised, so this is the queue's order.
            let first = store
                .transition(UNIT, |lock| {
                    let outcome = lock.acquire(&change, wall(), lease)?;
                    Ok((joined.fetch_add(1, Ordering::SeqCst), outcome))
                })
                .await
                .unwrap()
                .unwrap();
            let (seq, mut outcome) = first;
            let token = loop {
                if let Acquired::Granted { token, .. } = outcome {
                    break token;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(50),
                    "waited too long"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
                let lock = store.lock(UNIT).await.unwrap().unwrap().settled(wall());
                let my_turn = lock.holder.is_none()
                    && lock.queue.front().map(|w| w.change.as_str()) == Some(change.as_str());
                if my_turn {
                    outcome = store
                        .acquire(UNIT, &change, wall(), lease)
                        .await
                        .unwrap()
                        .unwrap();
                }
            };
            assert_eq!(
                inside.fetch_add(1, Ordering::SeqCst),
                0,
                "two holders at once"
            );
            assert_eq!(token, FencingToken(seq + 1), "{change} served out of order");
            let previous = last_granted.swap(token.0, Ordering::SeqCst);
            assert!(previous < token.0, "token {token} after {previous}");
            store
                .check_write(UNIT, token, wall())
                .await
                .unwrap()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
            inside.fetch_sub(1, Ordering::SeqCst);
            store.release(UNIT, token, wall()).await.unwrap().unwrap();
            assert!(
                store
                    .check_write(UNIT, token, wall())
                    .await
                    .unwrap()
                    .is_err()
            );
            token
        }));
    }
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(task.await.unwrap());
    }
    tokens.sort();
    let expected: Vec<FencingToken> = (1..=N as u64).map(FencingToken).collect();
    assert_eq!(tokens, expected);
    let lock = store.lock(UNIT).await.unwrap().unwrap();
    assert!(lock.holder.is_none() && lock.queue.is_empty());
    assert_eq!(lock.last_token, FencingToken(N as u64));
}

both_backends!(
    tokens_only_grow,
    leases_expire_and_failed_applies_keep_the_lock,
    stacks_are_independent,
    hundred_acquirers_one_holder,
);

#[tokio::test]
async fn locks_survive_a_reopen() {
    let fx = common::sqlite().await;
    let path = fx.store.path().to_path_buf();
    let token = granted(
        fx.store
            .acquire(UNIT, "r#1", t(0), LEASE)
            .await
            .unwrap()
            .unwrap(),
    );
    fx.store
        .begin_apply(UNIT, token, t(1))
        .await
        .unwrap()
        .unwrap();
    fx.store.clone().close().await;
    let reopened = sluice_store::SqliteStore::open(&path).await.unwrap();
    let lock = reopened.lock(UNIT).await.unwrap().unwrap();
    assert!(matches!(
        lock.holder.unwrap().tenure,
        Tenure::Applying { .. }
    ));
    assert_eq!(lock.last_token, token);
}
