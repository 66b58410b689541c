//! Group commit of whole [`Transaction`]s on SQLite: the transactions that callers commit while
//! one is being written wait in a queue, and the next writer takes all of them into one
//! database transaction, each inside a savepoint of its own, so one `fsync` of the WAL
//! acknowledges all of them.
//!
//! Why: SQLite has one writer at a time and `synchronous=FULL` syncs the WAL on every commit, so
//! commits one after another cost one sync each and concurrent callers (webhook deliveries, job
//! completions) queued behind each other's syncs, their connections sleeping in SQLite's busy
//! handler. Semantics are unchanged: each transaction still commits whole or not at all (a
//! failing one is rolled back to its savepoint and gets its own error; the others commit), they
//! apply in the order they were queued, and a caller hears of its commit only once the batch's
//! commit is durable. A failure of the batch's own begin or commit reaches every caller in it.
//!
//! There is no background task to start or stop: the first caller to find nobody writing spawns
//! the writer, which runs while the queue has work and then ends.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::error::{Result, StoreError};
use crate::tx::{Committed, Transaction};

/// The most transactions one database transaction takes.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Committed>>;

#[derive(Default)]
struct Queue {
    pending: Vec<(Transaction, Reply)>,
    /// A writer task is running; it will see anything queued before it stops.
    writing: bool,
}

/// The queue of one store (shared by its clones).
#[derive(Default, Clone)]
pub(crate) struct GroupCommit {
    queue: Arc<Mutex<Queue>>,
}

/// What a writer does with a batch: writes the transactions in order in one database
/// transaction, returning one result per transaction (or the batch's failure).
pub(crate) trait BatchWriter: Clone + Send + Sync + 'static {
    fn write_batch(
        &self,
        batch: &[Transaction],
    ) -> impl std::future::Future<Output = Result<Vec<Result<Committed>>>> + Send;
}

impl GroupCommit {
    /// Queues `tx`, starts a writer if none runs, and waits for the commit that holds it.
    pub(crate) async fn commit<W: BatchWriter>(
        &self,
        writer: &W,
        tx: Transaction,
    ) -> Result<Committed> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().expect("group commit queue");
            queue.pending.push((tx, reply));
            !std::mem::replace(&mut queue.writing, true)
        };
        if start {
            tokio::spawn(drain(self.clone(), writer.clone()));
        }
        answer.await.map_err(|_| StoreError::AppendFailed {
            fatal: false,
            message: "the group commit stopped before this transaction was written".into(),
        })?
    }
}

/// Resets `writing` if the writer ends other than by finding the queue empty (a panic, or its
/// runtime shutting down) and drops whatever is still queued then, so its callers get an error
/// instead of waiting for ever and the next commit starts a writer again.
struct Abandoned(Option<GroupCommit>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(group) = self.0.take() {
            let mut queue = group.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.writing = false;
            queue.pending.clear();
        }
    }
}

async fn drain<W: BatchWriter>(group: GroupCommit, writer: W) {
    let mut abandoned = Abandoned(Some(group.clone()));
    loop {
        let batch: Vec<(Transaction, Reply)> = {
            let mut queue = group.queue.lock().expect("group commit queue");
            if queue.pending.is_empty() {
                // Under the queue's lock: a caller that queues after this starts a new writer.
                queue.writing = false;
                abandoned.0 = None;
                return;
            }
            let n = queue.pending.len().min(MAX_BATCH);
            queue.pending.drain(..n).collect()
        };
        let (txs, replies): (Vec<Transaction>, Vec<Reply>) = batch.into_iter().unzip();
        match writer.write_batch(&txs).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                // Every caller of the batch learns of the failure, as fatal as it was.
                let fatal = e.is_fatal();
                let message = e.to_string();
                let mut replies = replies.into_iter();
                if let Some(first) = replies.next() {
                    let _ = first.send(Err(e));
                }
                for reply in replies {
                    let _ = reply.send(Err(StoreError::AppendFailed {
                        fatal,
                        message: format!(
                            "the group commit holding this transaction failed: {message}"
                        ),
                    }));
                }
            }
        }
    }
}
