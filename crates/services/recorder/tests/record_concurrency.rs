//! Two processes record stages of the same change at once, on SQLite and on PostgreSQL: the
//! database, not a process, guards the change's manifest chain. Afterwards the log audits clean
//! and the chain is linear: versions 1, 2, 3… with no gap and no fork, each naming the one
//! before and listing every stage of it plus one.
//!
//! The second process is this test binary run again (`record_worker`, ignored in normal runs),
//! told what to do through an environment variable.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr as _;

use serde_json::json;
use sluice_evidence::dsse::Envelope;
use sluice_evidence::statement::{Outcome, Subject, open_statement};
use sluice_model::change::ChangeId;
use sluice_model::stage::Stage;
use sluice_recorder::evidence::{
    ChangeSubject, EvidenceService, Identity, RecorderOptions, StageEntry, StageEvent,
};
use sluice_store::blobs::BlobStore as _;
use sluice_store::{ChangeStore as _, LocalBlobs, LogStore as _, UnitKind};
use sqlx::{ConnectOptions as _, Connection as _};

/// Records per process.
const RECORDS: u32 = 200;
const WORKER_ENV: &str = "SLUICE_TEST_RECORD_WORKER";

fn change() -> ChangeSubject {
    ChangeSubject {
        id: ChangeId {
            repo: "infra-live".into(),
            pr: Some(412),
            commit: "9f3a12cdeadbeef0123456789abcdef012345678".into(),
            env: "prod".into(),
            unit: "prod/ap-southeast-1/rds-payments".into(),
        },
        base: Some("4b825dc642cb6eb9a060e54bf8d69288fbee4904".into()),
        kind: UnitKind::Stack,
    }
}

fn ran(stage: Stage, details: serde_json::Value) -> StageEntry {
    StageEntry::Ran(StageEvent {
        stage,
        who: Identity {
            actor: "ci".into(),
            identity: "test:record-concurrency".into(),
        },
        input_digests: Default::default(),
        subjects: vec![Subject::git_commit("infra-live", &change().id.commit)],
        outcome: Outcome::Passed,
        details,
    })
}

fn options(repo: &Path, database_url: &str) -> RecorderOptions {
    let mut o = RecorderOptions::new(repo);
    o.database_url = Some(database_url.to_string());
    o
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The second process: records `RECORDS` plan and policy results, alternating, each different
/// from the last, so that every record writes a new manifest version.
#[test]
#[ignore = "a worker process of the concurrency tests, run by them"]
fn record_worker() {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, '\n');
    let (worker, repo, url) = (
        parts.next().unwrap().to_string(),
        PathBuf::from(parts.next().unwrap()),
        parts.next().unwrap().to_string(),
    );
    runtime().block_on(async {
        let service = EvidenceService::open(&options(&repo, &url)).await.unwrap();
        for i in 0..RECORDS {
            let stage = if i % 2 == 0 {
                Stage::Plan
            } else {
                Stage::Policy
            };
            service
                .record_stage(
                    &change(),
                    ran(stage, json!({"worker": worker, "record": i})),
                )
                .await
                .unwrap_or_else(|e| panic!("worker {worker}, record {i}: {e}"));
        }
    });
}

fn spawn_worker(worker: &str, repo: &Path, url: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["record_worker", "--exact", "--ignored", "--nocapture"])
        .env(WORKER_ENV, format!("{worker}\n{}\n{url}", repo.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Proposal and validation once, then two processes at once, then the checks.
fn two_processes_record(repo: &Path, url: &str) {
    let rt = runtime();
    let service = rt
        .block_on(EvidenceService::open(&options(repo, url)))
        .unwrap();
    let first = rt
        .block_on(service.record(
            &change(),
            &[
                ran(Stage::Propose, json!({})),
                ran(Stage::Validate, json!({})),
            ],
        ))
        .unwrap();
    assert_eq!(first.changes[0].manifest.as_ref().unwrap().version, 1);

    let workers = [spawn_worker("a", repo, url), spawn_worker("b", repo, url)];
    for child in workers {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let store = service.store();
    let change_id = change().id.to_string();
    let manifests = rt.block_on(store.manifests(&change_id)).unwrap();
    let expected = 1 + 2 * RECORDS;
    assert_eq!(manifests.len() as u32, expected, "one version per record");
    let blobs = LocalBlobs::new(repo.join(sluice_store::DEFAULT_BLOBS));
    let key = service.public_key();
    let mut stages_before = 0;
    for (i, m) in manifests.iter().enumerate() {
        // Linear: 1, 2, 3… each naming the one before.
        assert_eq!(m.version as usize, i + 1);
        assert_eq!(m.previous, i.checked_sub(1).map(|p| manifests[p].envelope));
        // Its leaf holds it.
        let leaf = rt
            .block_on(store.leaves(m.leaf_index, m.leaf_index + 1))
            .unwrap();
        assert_eq!(leaf[0].entry, m.envelope.0);
        // No lost update: each version lists every stage of the one before, plus the new one.
        let bytes = rt.block_on(blobs.get(&m.envelope)).unwrap();
        let envelope: Envelope = serde_json::from_slice(&bytes).unwrap();
        let predicate = open_statement(&envelope, &[key])
            .and_then(|o| o.manifest_predicate())
            .unwrap();
        assert_eq!(predicate.version, m.version);
        let listed = predicate.stages.len();
        assert_eq!(listed, if i == 0 { 2 } else { stages_before + 1 });
        stages_before = listed;
    }
    // Every leaf is a stage or a manifest that the store points to: two per record, three first.
    let size = rt.block_on(store.log_size()).unwrap();
    assert_eq!(size, 3 + 4 * u64::from(RECORDS));
    let events = rt
        .block_on(store.events(Some(&change_id), 0, 10_000))
        .unwrap();
    assert_eq!(events.len() as u64, size, "one event per leaf");
    let results = rt.block_on(store.stage_results(&change_id)).unwrap();
    assert_eq!(results.len() as u32, 2 + 2 * RECORDS);

    let audit = rt.block_on(service.audit()).unwrap();
    assert!(audit.is_clean(), "{:?}", audit.problems);
    assert_eq!(audit.log_size, size);
    let bundle = rt.block_on(service.bundle(&change_id)).unwrap();
    assert_eq!(bundle.manifest_version, expected);
    sluice_evidence::bundle::verify_bundle(&bundle.bytes, &[key], None).unwrap();
}

#[test]
fn two_processes_record_one_change_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir
        .path()
        .join(sluice_store::DEFAULT_DATABASE)
        .display()
        .to_string();
    two_processes_record(dir.path(), &url);
}

#[test]
fn two_processes_record_one_change_on_postgres() {
    let server = std::env::var("SLUICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let schema = format!(
        "sluice_record_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let rt = runtime();
    let connect = || {
        rt.block_on(
            sqlx::postgres::PgConnectOptions::from_str(&server)
                .unwrap()
                .connect(),
        )
    };
    let mut conn = match connect() {
        Ok(conn) => conn,
        Err(e) => {
            if std::env::var("SLUICE_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("PostgreSQL at {server} is required (SLUICE_REQUIRE_POSTGRES=1): {e}");
            }
            eprintln!("notice: PostgreSQL at {server} is unreachable ({e}); skipping");
            return;
        }
    };
    let sql = |text: String| sqlx::AssertSqlSafe(text);
    rt.block_on(sqlx::query(sql(format!("CREATE SCHEMA {schema}"))).execute(&mut conn))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{server}?options=-c%20search_path%3D{schema}");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        two_processes_record(dir.path(), &url)
    }));
    // The records went to this test's schema, not to the server's default one.
    let manifests: i64 = rt
        .block_on(
            sqlx::query_scalar(sql(format!("SELECT COUNT(*) FROM {schema}.manifests")))
                .fetch_one(&mut conn),
        )
        .unwrap_or(0);
    let _ =
        rt.block_on(sqlx::query(sql(format!("DROP SCHEMA {schema} CASCADE"))).execute(&mut conn));
    let _ = rt.block_on(conn.close());
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert_eq!(manifests, i64::from(1 + 2 * RECORDS));
}
