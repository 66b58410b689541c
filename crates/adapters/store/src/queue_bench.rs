//! `sluice bench queue`: job-queue throughput on a scratch store, through the same claim loop
//! and workers' cycle as `sluice serve` ([`crate::feed`]). `jobs` jobs (each its own key, so
//! nothing serialises them) are enqueued in transactions of 100, then `workers` workers take
//! them from one [`Feed`] (claims of up to `batch` jobs, as many as workers wait for, leases
//! kept by one heartbeat) and complete each in a transaction of its own, as a server worker
//! completes a job with its evidence, until all are done. Reported: enqueue rate, claim +
//! complete rate, and the whole (enqueue + claim + complete) per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::feed::{Feed, FeedOptions};
use crate::jobs::{JobQueue, NewJob};
use crate::store::Store;
use crate::tx::Transaction;

#[derive(Debug, Clone, Serialize)]
pub struct QueueFigures {
    pub backend: &'static str,
    pub jobs: u64,
    pub workers: usize,
    /// The most jobs one claim takes (it takes as many as workers wait for).
    pub batch: u32,
    pub enqueue_seconds: f64,
    pub process_seconds: f64,
    pub enqueued_per_second: f64,
    pub processed_per_second: f64,
    /// Jobs per second through the whole life: enqueue, claim, complete.
    pub end_to_end_per_second: f64,
}

impl QueueFigures {
    pub fn text(&self) -> String {
        format!(
            "{}: {} jobs, {} workers, up to {} per claim: enqueue {:.0}/s; claim + complete {:.0}/s; \
             enqueue + claim + complete {:.0} jobs/s ({:.2} s)\n",
            self.backend,
            self.jobs,
            self.workers,
            self.batch,
            self.enqueued_per_second,
            self.processed_per_second,
            self.end_to_end_per_second,
            self.enqueue_seconds + self.process_seconds
        )
    }
}

const BATCH: u64 = 100;

/// Runs the benchmark on `store`, which must hold no jobs.
pub async fn bench_queue<S: Store + JobQueue + Clone>(
    store: Arc<S>,
    jobs: u64,
    workers: usize,
    batch: u32,
) -> Result<QueueFigures> {
    if batch == 0 {
        return Err(StoreError::Invalid {
            record: "queue benchmark",
            field: "batch",
            problem: "must be at least 1".into(),
        });
    }
    let started = Instant::now();
    let mut i = 0;
    while i < jobs {
        let mut tx = Transaction::new();
        for n in i..(i + BATCH).min(jobs) {
            tx.enqueue(NewJob::new(
                "bench",
                &format!("bench-{n}"),
                serde_json::json!({"n": n}),
            ));
        }
        store.commit(tx).await?;
        i += BATCH;
    }
    let enqueue_seconds = started.elapsed().as_secs_f64();
    let processing = Instant::now();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let feed = Arc::new(Feed::start(
        (*store).clone(),
        FeedOptions {
            owner: "bench-feed".into(),
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(50),
            max_batch: batch,
            claimant: crate::jobs::Claimant::Server,
        },
        shutdown,
    ));
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(stop);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (store, feed, done, stop) = (store.clone(), feed.clone(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(held) = feed.next().await {
                let mut tx = Transaction::new();
                tx.complete_job(held.claimed.lease);
                store.commit(tx).await?;
                drop(held);
                if done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == jobs {
                    let _ = stop.send(true);
                }
            }
            Ok::<(), StoreError>(())
        }));
    }
    let mut failed = None;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = stop.send(true);
                failed.get_or_insert(e);
            }
            Err(e) => {
                let _ = stop.send(true);
                failed.get_or_insert(StoreError::Log(format!("a benchmark worker panicked: {e}")));
            }
        }
    }
    feed.close().await;
    if let Some(e) = failed {
        return Err(e);
    }
    let processed = done.load(std::sync::atomic::Ordering::SeqCst);
    let process_seconds = processing.elapsed().as_secs_f64();
    if processed != jobs {
        return Err(StoreError::Log(format!(
            "the queue benchmark processed {processed} of {jobs} jobs"
        )));
    }
    let total = enqueue_seconds + process_seconds;
    Ok(QueueFigures {
        backend: store.backend().as_str(),
        jobs,
        workers,
        batch,
        enqueue_seconds,
        process_seconds,
        enqueued_per_second: jobs as f64 / enqueue_seconds.max(1e-9),
        processed_per_second: jobs as f64 / process_seconds.max(1e-9),
        end_to_end_per_second: jobs as f64 / total.max(1e-9),
    })
}

/// [`bench_queue`] on a fresh SQLite store under `parent` (removed afterwards).
pub async fn sqlite_scratch(
    parent: &std::path::Path,
    jobs: u64,
    workers: usize,
    batch: u32,
) -> Result<QueueFigures> {
    let dir = parent.join(format!(
        "sluice-queue-bench-{}-{}",
        std::process::id(),
        crate::records::now_millis()
    ));
    let result = async {
        let store = Arc::new(crate::SqliteStore::open(dir.join(crate::DEFAULT_DATABASE)).await?);
        let figures = bench_queue(store.clone(), jobs, workers, batch).await;
        store.pool().close().await;
        figures
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// [`bench_queue`] on PostgreSQL at `url`, in a scratch schema dropped afterwards.
pub async fn postgres_scratch(
    url: &str,
    jobs: u64,
    workers: usize,
    batch: u32,
) -> Result<QueueFigures> {
    crate::bench::postgres_scratch(url, "sluice_queue_bench", |store| async move {
        let store = Arc::new(store);
        let figures = bench_queue(store.clone(), jobs, workers, batch).await;
        store.pool().close().await;
        figures
    })
    .await?
}

/// Creates a schema of its own on the PostgreSQL server at `url` for a benchmark
/// (`{prefix}_<pid>_<ms>`); returns its name and a URL whose connections use it.
pub async fn create_scratch_schema(url: &str, prefix: &str) -> Result<(String, String)> {
    use sqlx::{ConnectOptions as _, Connection as _};
    use std::str::FromStr as _;
    let base =
        sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| StoreError::BadLocation {
            input: crate::backend::postgres::redact_url(url),
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
    let schema = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        crate::records::now_millis()
    );
    let mut conn = base.connect().await.map_err(|e| StoreError::BadLocation {
        input: crate::backend::postgres::redact_url(url),
        reason: format!("cannot connect: {e}"),
    })?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .map_err(crate::error::db("creating the benchmark schema"))?;
    let _ = conn.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    Ok((schema, scoped))
}

/// Drops a schema [`create_scratch_schema`] made.
pub async fn drop_scratch_schema(url: &str, schema: &str) -> Result<()> {
    use sqlx::{ConnectOptions as _, Connection as _};
    use std::str::FromStr as _;
    let base =
        sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| StoreError::BadLocation {
            input: crate::backend::postgres::redact_url(url),
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
    let mut conn = base.connect().await.map_err(|e| StoreError::BadLocation {
        input: crate::backend::postgres::redact_url(url),
        reason: format!("cannot connect: {e}"),
    })?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .map_err(crate::error::db("dropping the benchmark schema"))?;
    let _ = conn.close().await;
    Ok(())
}
