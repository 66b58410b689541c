//! Test fixtures: a SQLite store in a temporary directory and a PostgreSQL store in a schema of
//! its own on the local server, so the one suite runs against both backends and parallel tests
//! never see each other's rows.
#![allow(dead_code)]

use std::str::FromStr as _;

use sluice_store::{PgStore, SqliteStore};
use sluice_testkit::postgres;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};

pub struct SqliteFixture {
    pub store: SqliteStore,
    pub dir: tempfile::TempDir,
}

pub async fn sqlite() -> SqliteFixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join(".sluice/sluice.db"))
        .await
        .unwrap();
    SqliteFixture { store, dir }
}

/// A PostgreSQL store in a fresh schema, dropped when the fixture is.
pub struct PgFixture {
    pub store: PgStore,
    pub schema: String,
    pub options: PgConnectOptions,
}

impl Drop for PgFixture {
    fn drop(&mut self) {
        // Async drop does not exist: clean up on a thread with a runtime of its own.
        let url = postgres::url();
        let schema = self.schema.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnectOptions::from_str(&url).unwrap().connect().await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// A PostgreSQL store, or `None` (with a notice) when the server is unreachable, unless
/// SLUICE_REQUIRE_POSTGRES=1, where an unreachable server fails the test.
pub async fn postgres() -> Option<PgFixture> {
    let url = postgres::url();
    let base = PgConnectOptions::from_str(&url).unwrap();
    let mut conn = match base.connect().await {
        Ok(conn) => conn,
        Err(e) => return postgres::unavailable(&url, e),
    };
    let schema = postgres::unique_schema("sluice_test");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let options = base.options([("search_path", schema.as_str())]);
    let store = PgStore::open_with(options.clone()).await.unwrap();
    Some(PgFixture {
        store,
        schema,
        options,
    })
}

/// Runs a generic async test body against SQLite and PostgreSQL, as two tests.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let fx = $crate::common::sqlite().await;
                    super::$name(&fx.store).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(fx) = $crate::common::postgres().await else { return };
                    super::$name(&fx.store).await;
                }
            }
        )*
    };
}
