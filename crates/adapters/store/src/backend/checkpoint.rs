//! WAL checkpoints of the SQLite store, moved off the commit path.
//!
//! In WAL mode every commit appends pages to the `-wal` file, and those pages are copied back
//! into the database file by a checkpoint. By default SQLite runs that checkpoint inside the
//! commit that takes the WAL past 1,000 pages: that one caller then waits for megabytes to be
//! written and the database file to be synced, on top of its own commit. A 1 MB state version is
//! 256 pages, so every fourth `POST` (or the lock or audit commit that happened to follow it)
//! paid for a checkpoint, and those were the latency tails of the state backend.
//!
//! Here a task of the store checkpoints instead, every [`INTERVAL`], in `PASSIVE` mode (it
//! never waits for readers or writers, and writers never wait for it). Commits run their own
//! checkpoint only when the WAL grows past [`COMMIT_CHECKPOINT_PAGES`], as a bound on the
//! WAL's size should the task fall behind. Durability does not change: a commit still returns
//! only after the WAL is synced, and a checkpoint only copies what is already durable.
//!
//! The task ends when the last handle of its store is dropped or its pool is closed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::SqlitePool;

/// How often the task checkpoints. A checkpoint with nothing to copy costs one query and no I/O.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);

/// The WAL size, in pages, past which a commit checkpoints by itself (SQLite's
/// `wal_autocheckpoint`; its default is 1,000). 16,384 pages of 4 KiB: 64 MiB.
pub(crate) const COMMIT_CHECKPOINT_PAGES: u32 = 16_384;

/// Keeps the task running: held by every clone of the store.
pub(crate) type Alive = Arc<()>;

/// Starts the task for `pool`; it runs while the returned token (or a clone of it) lives.
pub(crate) fn start(pool: &SqlitePool) -> Alive {
    let alive: Alive = Arc::new(());
    tokio::spawn(run(pool.clone(), Arc::downgrade(&alive)));
    alive
}

async fn run(pool: SqlitePool, alive: Weak<()>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if alive.strong_count() == 0 || pool.is_closed() {
            return;
        }
        // A failure (the pool closing under it, a busy checkpointer lock held by another
        // process) is left to the next round; commits still checkpoint past the bound.
        let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages committed to the WAL reach the database file although no commit checkpoints (the
    /// commits here stay far below `COMMIT_CHECKPOINT_PAGES`): the task copied them.
    #[tokio::test]
    async fn the_task_checkpoints_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = crate::SqliteStore::open(&path).await.unwrap();
        let pool = store.pool().clone();
        sqlx::query("CREATE TABLE filler (b BLOB NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        for _ in 0..8 {
            sqlx::query("INSERT INTO filler (b) VALUES (zeroblob(262144))")
                .execute(&pool)
                .await
                .unwrap();
        }
        // 2 MiB committed to the WAL; the database file grows only by a checkpoint.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < before + (2 << 20) {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL was not checkpointed into the database file"
            );
            tokio::time::sleep(INTERVAL).await;
        }
        store.close().await;
    }
}
