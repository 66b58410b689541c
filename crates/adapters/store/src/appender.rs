//! Group commit for the transparency log: concurrent callers' appends coalesce into one
//! transaction, so the cost of a durable commit (an fsync) is shared by everyone waiting for it.
//!
//! Callers send their entry over a channel to one background task. While a commit is in flight,
//! new entries queue up; the task then takes everything queued (up to `max_batch`) into the next
//! transaction. Each caller gets its leaf index only after the commit that holds its entry is
//! durable. A fatal error (an unknown-durability commit) is passed to every caller in the batch
//! and stops the task: later appends fail with [`StoreError::AppenderStopped`], never retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StoreError};
use crate::records::{Hash, LeafInput};
use crate::store::LogStore;

/// Settings of the group-commit appender.
#[derive(Debug, Clone, Copy)]
pub struct AppenderOptions {
    /// The most entries one transaction takes.
    pub max_batch: usize,
    /// Entries that may wait in the queue before callers are slowed down.
    pub queue: usize,
}

impl Default for AppenderOptions {
    fn default() -> Self {
        AppenderOptions {
            max_batch: 4096,
            queue: 65_536,
        }
    }
}

/// What the appender needs of a store: the one durable append. Every [`LogStore`] is one; tests
/// put a failing disk behind it.
pub trait LeafSink: Send + Sync + 'static {
    /// [`LogStore::append_leaves`]: the leaves' indexes once their commit is durable.
    fn append_durable(
        &self,
        leaves: &[LeafInput],
    ) -> impl std::future::Future<Output = Result<Vec<u64>>> + Send;
}

impl<S: LogStore> LeafSink for S {
    fn append_durable(
        &self,
        leaves: &[LeafInput],
    ) -> impl std::future::Future<Output = Result<Vec<u64>>> + Send {
        LogStore::append_leaves(self, leaves)
    }
}

struct Request {
    leaf: LeafInput,
    reply: oneshot::Sender<Result<u64>>,
}

/// Counters of the appender's work, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct AppenderStats {
    pub commits: AtomicU64,
    pub entries: AtomicU64,
}

/// A handle to the group-commit task; cheap to clone, share it between callers.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Request>,
    stats: Arc<AppenderStats>,
}

impl Appender {
    /// Starts the appender task on the current tokio runtime.
    pub fn spawn<S: LeafSink>(store: Arc<S>, options: AppenderOptions) -> Appender {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let stats = Arc::new(AppenderStats::default());
        tokio::spawn(run(store, rx, options.max_batch.max(1), stats.clone()));
        Appender { tx, stats }
    }

    /// Appends `entry`; returns its leaf index once the commit holding it is durable.
    pub async fn append(&self, entry: Hash) -> Result<u64> {
        self.append_leaf(LeafInput {
            entry,
            envelope_digest: None,
        })
        .await
    }

    /// [`Appender::append`] with an envelope digest.
    pub async fn append_leaf(&self, leaf: LeafInput) -> Result<u64> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request { leaf, reply })
            .await
            .map_err(|_| StoreError::AppenderStopped)?;
        answer.await.map_err(|_| StoreError::AppenderStopped)?
    }

    pub fn stats(&self) -> &AppenderStats {
        &self.stats
    }
}

async fn run<S: LeafSink>(
    store: Arc<S>,
    mut rx: mpsc::Receiver<Request>,
    max_batch: usize,
    stats: Arc<AppenderStats>,
) {
    let mut batch: Vec<Request> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let leaves: Vec<LeafInput> = batch.iter().map(|r| r.leaf).collect();
        match store.append_durable(&leaves).await {
            Ok(indexes) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats
                    .entries
                    .fetch_add(indexes.len() as u64, Ordering::Relaxed);
                for (request, index) in batch.drain(..).zip(indexes) {
                    // A caller that gave up waiting still has its entry logged; nothing to undo.
                    let _ = request.reply.send(Ok(index));
                }
            }
            Err(err) => {
                let fatal = err.is_fatal();
                let message = err.to_string();
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(StoreError::AppendFailed {
                        fatal,
                        message: message.clone(),
                    }));
                }
                if fatal {
                    // Refuse everything queued and everything later: the process must stop
                    // and the log be audited before anyone appends again.
                    rx.close();
                    while let Some(request) = rx.recv().await {
                        let _ = request.reply.send(Err(StoreError::AppenderStopped));
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A log whose disk fails on the `fail_on`-th commit: the test double of an fsync error.
    struct FailingDisk {
        next: AtomicU64,
        commits: AtomicU64,
        fail_on: u64,
        failed: AtomicBool,
    }

    impl LeafSink for FailingDisk {
        async fn append_durable(&self, leaves: &[LeafInput]) -> Result<Vec<u64>> {
            // Give concurrent callers time to queue up behind this commit.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
            if n == self.fail_on {
                self.failed.store(true, Ordering::SeqCst);
                return Err(StoreError::Durability {
                    context: "committing a log append",
                    source: sqlx::Error::Io(std::io::Error::other("fsync: EIO")),
                });
            }
            assert!(
                !self.failed.load(Ordering::SeqCst),
                "appended after a fatal error"
            );
            let first = self.next.fetch_add(leaves.len() as u64, Ordering::SeqCst);
            Ok((first..first + leaves.len() as u64).collect())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fatal_commit_stops_the_appender_for_good() {
        let disk = Arc::new(FailingDisk {
            next: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            fail_on: 2,
            failed: AtomicBool::new(false),
        });
        let appender = Appender::spawn(disk.clone(), AppenderOptions::default());
        assert_eq!(appender.append([1; 32]).await.unwrap(), 0);
        let mut tasks = Vec::new();
        for i in 0..50u8 {
            let appender = appender.clone();
            tasks.push(tokio::spawn(async move { appender.append([i; 32]).await }));
        }
        let mut fatal = 0;
        for t in tasks {
            let err = t.await.unwrap().unwrap_err();
            assert!(err.is_fatal(), "{err}");
            assert!(err.to_string().starts_with("FATAL"), "{err}");
            fatal += 1;
        }
        assert_eq!(fatal, 50);
        // Never retried: later appends are refused without touching the disk.
        let err = appender.append([9; 32]).await.unwrap_err();
        assert!(matches!(err, StoreError::AppenderStopped), "{err}");
        assert_eq!(disk.commits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_commits() {
        let disk = Arc::new(FailingDisk {
            next: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            fail_on: u64::MAX,
            failed: AtomicBool::new(false),
        });
        let appender = Appender::spawn(
            disk.clone(),
            AppenderOptions {
                max_batch: 16,
                queue: 1024,
            },
        );
        let mut tasks = Vec::new();
        for i in 0..200u8 {
            let appender = appender.clone();
            tasks.push(tokio::spawn(async move {
                appender.append([i; 32]).await.unwrap()
            }));
        }
        let mut indexes = Vec::new();
        for t in tasks {
            indexes.push(t.await.unwrap());
        }
        indexes.sort_unstable();
        assert_eq!(indexes, (0..200).collect::<Vec<_>>());
        let commits = disk.commits.load(Ordering::SeqCst);
        // At most max_batch per commit, and far fewer commits than appends.
        assert!((200 / 16..100).contains(&commits), "{commits} commits");
    }
}
