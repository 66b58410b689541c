//! Measurements of the log on a store (issue 5 §8): durable group-committed appends per second,
//! the time to audit the whole log, and the latency of building and verifying an inclusion
//! proof. Used by `sluice bench evidence` and `examples/bench.rs`; tests never assert timings.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sluice_evidence::merkle::{leaf_hash, verify_inclusion};

use crate::appender::{Appender, AppenderOptions};
use crate::audit::{AuditOptions, audit};
use crate::error::{Result, StoreError};
use crate::log::{inclusion_proof, root_at};
use crate::records::Hash;
use crate::store::Store;

/// The entry the benchmark logs at position `i`: deterministic, so proofs can be checked against
/// it without reading it back.
pub fn bench_entry(i: u64) -> Hash {
    sluice_evidence::sha256(format!("sluice-bench-entry-{i}").as_bytes())
}

/// Durable appends through the group-commit appender.
#[derive(Debug, Clone, Serialize)]
pub struct AppendFigures {
    pub entries: u64,
    pub callers: usize,
    pub commits: u64,
    pub seconds: f64,
    pub per_second: f64,
}

/// `entries` appends from `callers` concurrent tasks, each waiting for its durable
/// acknowledgement before sending the next (what pipeline stages do).
pub async fn bench_appends<S: Store>(
    store: Arc<S>,
    entries: u64,
    callers: usize,
) -> Result<AppendFigures> {
    let callers = callers.max(1);
    let first = store.log_size().await?;
    let appender = Appender::spawn(store.clone(), AppenderOptions::default());
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(callers);
    for c in 0..callers as u64 {
        let appender = appender.clone();
        let share = entries / callers as u64 + u64::from(c < entries % callers as u64);
        tasks.push(tokio::spawn(async move {
            for k in 0..share {
                appender
                    .append(bench_entry(first + c + k * 1_000_003))
                    .await?;
            }
            Ok::<(), StoreError>(())
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| StoreError::Log(format!("benchmark task failed: {e}")))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let commits = appender
        .stats()
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok(AppendFigures {
        entries,
        callers,
        commits,
        seconds,
        per_second: entries as f64 / seconds,
    })
}

/// Grows the log to `size` leaves with large batches (bench setup, not a measurement), logging
/// [`bench_entry`]`(i)` at index i.
pub async fn fill<S: Store + ?Sized>(store: &S, size: u64) -> Result<Duration> {
    let started = Instant::now();
    let mut at = store.log_size().await?;
    while at < size {
        let end = (at + 20_000).min(size);
        let batch: Vec<Hash> = (at..end).map(bench_entry).collect();
        store.append_batch(&batch).await?;
        at = end;
    }
    Ok(started.elapsed())
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditFigures {
    pub leaves: u64,
    pub nodes: u64,
    pub seconds: f64,
    pub clean: bool,
}

pub async fn bench_audit<S: Store + crate::StateStore + Clone>(store: &S) -> Result<AuditFigures> {
    let started = Instant::now();
    let report = audit(store, &AuditOptions::default()).await?;
    Ok(AuditFigures {
        leaves: report.leaves_checked,
        nodes: report.nodes_checked,
        seconds: started.elapsed().as_secs_f64(),
        clean: report.is_clean(),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct ProofFigures {
    pub tree_size: u64,
    pub samples: usize,
    pub p50_micros: f64,
    pub p99_micros: f64,
    pub max_micros: f64,
}

/// Builds (from the store) and verifies inclusion proofs of `samples` leaves spread over a log
/// filled by [`fill`]; the root is computed once, as a verifier holding a checkpoint would have.
pub async fn bench_proofs<S: Store + ?Sized>(store: &S, samples: usize) -> Result<ProofFigures> {
    bench_proofs_after(store, 0, samples).await
}

/// All three figures for one store.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub backend: &'static str,
    pub appends: AppendFigures,
    pub fill_seconds: f64,
    pub audit: AuditFigures,
    pub proofs: ProofFigures,
}

/// Runs the three measurements on `store` (best a fresh one: the audit reads the whole log):
/// `appends` group-committed appends from `callers` tasks, then the log is filled to `log_size`
/// leaves, audited, and `proof_samples` proofs are built and verified.
pub async fn run<S: Store + crate::StateStore + Clone>(
    store: Arc<S>,
    appends: u64,
    callers: usize,
    log_size: u64,
    proof_samples: usize,
) -> Result<Report> {
    let appends = bench_appends(store.clone(), appends, callers).await?;
    // Proofs are checked against bench_entry(index), which only the fill writes: sample from
    // where it starts.
    let filled_from = store.log_size().await?;
    let fill_seconds = fill(&*store, log_size.max(filled_from))
        .await?
        .as_secs_f64();
    let audit = bench_audit(&*store).await?;
    let proofs = bench_proofs_after(&*store, filled_from, proof_samples).await?;
    Ok(Report {
        backend: store.backend().as_str(),
        appends,
        fill_seconds,
        audit,
        proofs,
    })
}

/// [`bench_proofs`] over the leaves from `first` on (those [`fill`] wrote).
async fn bench_proofs_after<S: Store + ?Sized>(
    store: &S,
    first: u64,
    samples: usize,
) -> Result<ProofFigures> {
    let size = store.log_size().await?;
    if size <= first {
        return Err(StoreError::Log("no filled leaves to prove".into()));
    }
    let root = root_at(store, size).await?;
    let mut times = Vec::with_capacity(samples);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..samples.max(1) {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let index = first + (x >> 11) % (size - first);
        let started = Instant::now();
        let proof = inclusion_proof(store, index, size).await?;
        verify_inclusion(&leaf_hash(&bench_entry(index)), index, size, &proof, &root)
            .map_err(|e| StoreError::Log(format!("proof of leaf {index} did not verify: {e}")))?;
        times.push(started.elapsed());
    }
    times.sort_unstable();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let pick = |q: f64| micros(times[((times.len() - 1) as f64 * q).round() as usize]);
    Ok(ProofFigures {
        tree_size: size,
        samples: times.len(),
        p50_micros: pick(0.5),
        p99_micros: pick(0.99),
        max_micros: micros(*times.last().expect("at least one sample")),
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "store: {}", self.backend)?;
        writeln!(
            f,
            "  durable appends: {} entries from {} callers in {:.2} s = {:.0} entries/s ({} commits, {:.1} entries/commit)",
            self.appends.entries,
            self.appends.callers,
            self.appends.seconds,
            self.appends.per_second,
            self.appends.commits,
            self.appends.entries as f64 / self.appends.commits.max(1) as f64
        )?;
        writeln!(
            f,
            "  fill to {} leaves: {:.2} s",
            self.proofs.tree_size, self.fill_seconds
        )?;
        writeln!(
            f,
            "  audit: {} leaves, {} nodes in {:.2} s ({})",
            self.audit.leaves,
            self.audit.nodes,
            self.audit.seconds,
            if self.audit.clean {
                "clean"
            } else {
                "PROBLEMS FOUND"
            }
        )?;
        write!(
            f,
            "  inclusion proof build + verify at {} leaves: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs ({} samples)",
            self.proofs.tree_size,
            self.proofs.p50_micros,
            self.proofs.p99_micros,
            self.proofs.max_micros,
            self.proofs.samples
        )
    }
}

/// [`run`] on a fresh SQLite store in a scratch directory under `parent` (removed afterwards),
/// so the figures never include an existing log.
pub async fn run_sqlite_scratch(
    parent: &std::path::Path,
    appends: u64,
    callers: usize,
    log_size: u64,
    proof_samples: usize,
) -> Result<Report> {
    let dir = parent.join(format!(
        "sluice-bench-{}-{}",
        std::process::id(),
        crate::records::now_millis()
    ));
    let result = async {
        let store = Arc::new(crate::SqliteStore::open(dir.join(crate::DEFAULT_DATABASE)).await?);
        let report = run(store.clone(), appends, callers, log_size, proof_samples).await;
        store.pool().close().await;
        report
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// [`run`] on PostgreSQL at `url`, in a schema of its own (`sluice_bench_<pid>_<ms>`) that is
/// dropped afterwards, so the figures never include (or disturb) an existing log.
pub async fn run_postgres_scratch(
    url: &str,
    appends: u64,
    callers: usize,
    log_size: u64,
    proof_samples: usize,
) -> Result<Report> {
    postgres_scratch(url, "sluice_bench", |store| async move {
        let store = Arc::new(store);
        let report = run(store.clone(), appends, callers, log_size, proof_samples).await;
        store.pool().close().await;
        report
    })
    .await?
}

/// Runs `f` on a PostgreSQL store in a scratch schema (`{prefix}_<pid>_<ms>`, migrated) on the
/// server at `url`, and drops the schema afterwards: benchmarks never touch an existing store.
pub async fn postgres_scratch<T, F, Fut>(url: &str, prefix: &str, f: F) -> Result<T>
where
    F: FnOnce(crate::PgStore) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    use sqlx::{ConnectOptions as _, Connection as _};
    use std::str::FromStr as _;
    let base =
        sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| StoreError::BadLocation {
            input: crate::backend::postgres::redact_url(url),
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
    let unreachable = |e: sqlx::Error| StoreError::BadLocation {
        input: crate::backend::postgres::redact_url(url),
        reason: format!("cannot connect: {e}"),
    };
    let schema = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        crate::records::now_millis()
    );
    let mut conn = base.connect().await.map_err(unreachable)?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .map_err(crate::error::db("creating the benchmark schema"))?;
    let result = async {
        let store =
            crate::PgStore::open_with(base.clone().options([("search_path", schema.as_str())]))
                .await?;
        Ok(f(store).await)
    }
    .await;
    let dropped = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .map_err(crate::error::db("dropping the benchmark schema"));
    let _ = conn.close().await;
    let out = result?;
    dropped?;
    Ok(out)
}
