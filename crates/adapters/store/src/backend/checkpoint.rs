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
//! The task also waits for a quiet moment: until no write has begun for [`QUIET`] (at most
//! [`MAX_WAIT`], so a store that is never quiet still checkpoints). A checkpoint writes and
//! syncs the database file; one that runs beside a commit lengthens that commit's sync of the
//! WAL on the same disk, and it takes a core of two from the request. Terraform's requests
//! come with gaps between them (a plan or an apply between `GET` and `POST`), and the
//! checkpoint now falls in those.
//!
//! The task ends when the last handle of its store is dropped or its pool is closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sqlx::SqlitePool;

/// How often the task checkpoints. A checkpoint with nothing to copy costs one query and no I/O.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);

/// How long no write must have begun before the task checkpoints.
pub(crate) const QUIET: Duration = Duration::from_millis(5);

/// The longest the task waits for a quiet moment.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(1);

/// When the store last began a write: the store marks every write transaction it begins, the
/// task reads it.
#[derive(Debug)]
pub(crate) struct Activity {
    since: Instant,
    /// Microseconds from `since` to the last write's start.
    last_write_us: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            since: Instant::now(),
            last_write_us: AtomicU64::new(0),
        }
    }

    /// Marks the start of a write.
    pub(crate) fn write_begins(&self) {
        let now = self.since.elapsed().as_micros() as u64;
        self.last_write_us.fetch_max(now, Ordering::Relaxed);
    }

    /// How long ago the last write began.
    fn quiet_for(&self) -> Duration {
        let last = Duration::from_micros(self.last_write_us.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }
}

/// How much longer to wait before checkpointing, after `quiet` without a write and `waited`
/// since the checkpoint's turn came; `None` to checkpoint now.
fn wait_more(quiet: Duration, waited: Duration) -> Option<Duration> {
    if quiet >= QUIET || waited >= MAX_WAIT {
        return None;
    }
    Some((QUIET - quiet).min(MAX_WAIT - waited))
}

/// The WAL size, in pages, past which a commit checkpoints by itself (SQLite's
/// `wal_autocheckpoint`; its default is 1,000). 16,384 pages of 4 KiB: 64 MiB.
pub(crate) const COMMIT_CHECKPOINT_PAGES: u32 = 16_384;

/// Keeps the task running: held by every clone of the store.
pub(crate) type Alive = Arc<()>;

/// Starts the task for `pool`; it runs while the returned token (or a clone of it) lives.
pub(crate) fn start(pool: &SqlitePool, activity: Arc<Activity>) -> Alive {
    let alive: Alive = Arc::new(());
    tokio::spawn(run(pool.clone(), activity, Arc::downgrade(&alive)));
    alive
}

async fn run(pool: SqlitePool, activity: Arc<Activity>, alive: Weak<()>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let turn = Instant::now();
        while let Some(wait) = wait_more(activity.quiet_for(), turn.elapsed()) {
            tokio::time::sleep(wait).await;
        }
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

    #[test]
    fn a_checkpoint_waits_for_a_quiet_moment_but_not_forever() {
        let ms = Duration::from_millis;
        assert_eq!(wait_more(QUIET, Duration::ZERO), None);
        assert_eq!(wait_more(ms(2), Duration::ZERO), Some(QUIET - ms(2)));
        assert_eq!(wait_more(Duration::ZERO, MAX_WAIT), None);
        assert_eq!(wait_more(Duration::ZERO, MAX_WAIT - ms(1)), Some(ms(1)));
        // A write that begins ends the quiet (with a margin far above a scheduling delay).
        let activity = Activity::new();
        std::thread::sleep(QUIET * 10);
        let quiet = activity.quiet_for();
        assert!(quiet >= QUIET * 10);
        activity.write_begins();
        assert!(activity.quiet_for() < quiet);
    }

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
