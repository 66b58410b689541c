//! Measures the log on both backends (issue 5 §8): durable group-committed appends per second,
//! the audit of a large log, and inclusion proof build + verify latency.
//!
//! ```text
//! cargo run --release -p sluice-store --example bench -- \
//!     [--backend sqlite|postgres|both] [--postgres-url URL] [--appends N] [--callers N] \
//!     [--log-size N] [--samples N]
//! ```
//!
//! SQLite runs in a temporary directory; PostgreSQL in a schema of its own, dropped afterwards.

use sluice_store::bench;

struct Args {
    backend: String,
    postgres_url: String,
    appends: u64,
    callers: usize,
    log_size: u64,
    samples: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        backend: "both".into(),
        postgres_url: "postgres://postgres@127.0.0.1:5432/test".into(),
        appends: 100_000,
        callers: 512,
        log_size: 1_000_000,
        samples: 2_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--backend" => args.backend = value()?,
            "--postgres-url" => args.postgres_url = value()?,
            "--appends" => args.appends = number(value()?)?,
            "--callers" => args.callers = number(value()?)? as usize,
            "--log-size" => args.log_size = number(value()?)?,
            "--samples" => args.samples = number(value()?)? as usize,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    if matches!(args.backend.as_str(), "sqlite" | "both") {
        let report = bench::run_sqlite_scratch(
            &std::env::temp_dir(),
            args.appends,
            args.callers,
            args.log_size,
            args.samples,
        )
        .await?;
        println!("{report}");
    }
    if matches!(args.backend.as_str(), "postgres" | "both") {
        let report = bench::run_postgres_scratch(
            &args.postgres_url,
            args.appends,
            args.callers,
            args.log_size,
            args.samples,
        )
        .await?;
        println!("{report}");
    }
    Ok(())
}
