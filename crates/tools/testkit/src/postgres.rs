//! The PostgreSQL server tests share (CI's on 127.0.0.1:5432, trust auth, database `test`),
//! with a schema of its own per test so parallel tests, and other people's test runs, never see
//! each other's rows.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::require::Requirement;

/// The server URL: `SLUICE_TEST_POSTGRES_URL`, or the local CI server.
pub fn url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A schema name no other test (in this process or another) uses: `{prefix}_{pid}_{nanos}_{n}`.
pub fn unique_schema(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The answer for an unreachable or unusable server: a failure under
/// `SLUICE_REQUIRE_POSTGRES=1`, else a notice and `None`.
#[track_caller]
pub fn unavailable<T>(url: &str, error: impl std::fmt::Display) -> Option<T> {
    Requirement::Postgres.missing(&format!("PostgreSQL at {url} is unusable ({error})"))
}

/// A schema made with `psql` for one test, dropped when this value is.
pub struct PsqlSchema {
    url: String,
    name: String,
}

impl PsqlSchema {
    /// A fresh schema, or `None` (notice) when the server is unusable and not required.
    #[track_caller]
    pub fn create() -> Option<Self> {
        let url = url();
        let name = unique_schema("sluice_cli_test");
        match psql(&url, &format!("CREATE SCHEMA {name}")) {
            Ok(()) => Some(PsqlSchema { url, name }),
            Err(e) => unavailable(&url, e),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A database URL whose connections use this schema.
    pub fn database_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.url, self.name)
    }
}

impl Drop for PsqlSchema {
    fn drop(&mut self) {
        let _ = psql(
            &self.url,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
    }
}

/// Run one SQL statement with `psql`; its stderr on failure.
pub fn psql(url: &str, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
