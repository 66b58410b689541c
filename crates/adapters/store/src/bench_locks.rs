//! Lock latency (issue 11): the time of one durable acquire and one durable release of a
//! stack's lock, uncontended, as the apply path takes them; p50 and p99 over `iterations`
//! rounds on a scratch store. Used by `sluice bench locks`; tests never assert timings.

use std::time::{Duration, Instant};

use serde::Serialize;
use sluice_model::exception::Timestamp;
use sluice_model::lock::Acquired;

use crate::error::{Result, StoreError};
use crate::locks::LockStore;

#[derive(Debug, Clone, Serialize)]
pub struct LockFigures {
    pub backend: &'static str,
    pub iterations: usize,
    pub acquire_p50_ms: f64,
    pub acquire_p99_ms: f64,
    pub release_p50_ms: f64,
    pub release_p99_ms: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn wall() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_unix(d.as_secs() as i64, d.subsec_nanos())
}

/// `iterations` acquire + release rounds on one stack (each a committed transaction).
pub async fn bench_locks<S: LockStore>(
    store: &S,
    backend: &'static str,
    iterations: usize,
) -> Result<LockFigures> {
    let lease = Duration::from_secs(60);
    let (mut acquire, mut release) = (Vec::new(), Vec::new());
    for i in 0..iterations {
        let change = format!("bench#{i}");
        let t = Instant::now();
        let token = match store.acquire("bench/stack", &change, wall(), lease).await? {
            Ok(Acquired::Granted { token, .. }) => token,
            other => {
                return Err(StoreError::Invalid {
                    record: "lock",
                    field: "acquire",
                    problem: format!("the benchmark lock was not granted: {other:?}"),
                });
            }
        };
        acquire.push(t.elapsed());
        let t = Instant::now();
        store
            .release("bench/stack", token, wall())
            .await?
            .map_err(|r| StoreError::Invalid {
                record: "lock",
                field: "release",
                problem: r.to_string(),
            })?;
        release.push(t.elapsed());
    }
    acquire.sort();
    release.sort();
    Ok(LockFigures {
        backend,
        iterations,
        acquire_p50_ms: percentile(&acquire, 0.50),
        acquire_p99_ms: percentile(&acquire, 0.99),
        release_p50_ms: percentile(&release, 0.50),
        release_p99_ms: percentile(&release, 0.99),
    })
}

/// [`bench_locks`] on a fresh SQLite store under `parent`, removed afterwards.
pub async fn locks_sqlite_scratch(
    parent: &std::path::Path,
    iterations: usize,
) -> Result<LockFigures> {
    let dir = parent.join(format!(
        "sluice-bench-locks-{}-{}",
        std::process::id(),
        crate::records::now_millis()
    ));
    let result = async {
        let store = crate::SqliteStore::open(dir.join(crate::DEFAULT_DATABASE)).await?;
        let figures = bench_locks(&store, "sqlite", iterations).await;
        store.pool().close().await;
        figures
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// [`bench_locks`] on PostgreSQL at `url`, in a scratch schema dropped afterwards.
pub async fn locks_postgres_scratch(url: &str, iterations: usize) -> Result<LockFigures> {
    crate::bench::postgres_scratch(url, "sluice_bench_locks", |store| async move {
        let figures = bench_locks(&store, "postgres", iterations).await;
        store.pool().close().await;
        figures
    })
    .await?
}
