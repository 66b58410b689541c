//! Crash test (issue 5 §9): a child process appends to the log through the group-commit appender
//! and prints every acknowledged index; the parent SIGKILLs it at random points, many times, and
//! after each kill checks that no acknowledged entry was lost, no entry is torn, and the tree
//! still agrees with the last checkpoint.
//!
//! The child is this test binary re-executed with `SLUICE_CRASH_CHILD` set, running the ignored
//! test `crash_child`.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_evidence::merkle::{leaf_hash, verify_consistency};
use sluice_store::log::{FnSigner, consistency_proof, create_checkpoint, root_at};
use sluice_store::{Appender, AppenderOptions, AuditOptions, LogStore, SqliteStore, audit};

const CHILD_ENV: &str = "SLUICE_CRASH_CHILD";
const ITERATIONS: usize = 24;
/// The whole test stays near this; iterations stop early (but never below 20) if it runs over.
const BUDGET: Duration = Duration::from_secs(12);

fn signer() -> FnSigner<impl Fn(&str) -> Result<String, String> + Send + Sync> {
    FnSigner::new("sluice.test/crash", |body: &str| {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        sluice_evidence::checkpoint::sign_note(body, "sluice.test/crash", &key)
            .map_err(|e| e.to_string())
    })
}

/// Kills the child if the test fails before it does.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A small xorshift generator: random kill points without a dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(t | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(".sluice/sluice.db");
    // Create and migrate once, so most kills land in appends rather than in start-up.
    SqliteStore::open(&db).await.unwrap().close().await;
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng::seeded();
    let started = Instant::now();
    let mut acked: Vec<(u64, [u8; 32])> = Vec::new();
    let mut iterations = 0;
    let mut checkpoints_seen = 0u64;
    while iterations < ITERATIONS && (iterations < 20 || started.elapsed() < BUDGET) {
        iterations += 1;
        let mut child = Guard(
            Command::new(&exe)
                .args([
                    "crash_child",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &db)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
            lines
        });
        // Some kills land during start-up and recovery, most mid-stream of appends.
        tokio::time::sleep(Duration::from_millis(40 + rng.below(260))).await;
        child.0.kill().unwrap(); // SIGKILL on Unix
        child.0.wait().unwrap();
        for line in reader.join().unwrap() {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some("ack"), Some(index), Some(entry)) => {
                    let mut e = [0u8; 32];
                    hex::decode_to_slice(entry, &mut e).unwrap();
                    acked.push((index.parse().unwrap(), e));
                }
                (Some("checkpoint"), Some(_), None) => checkpoints_seen += 1,
                _ => {}
            }
        }

        let store = SqliteStore::open(&db).await.unwrap();
        let size = store.log_size().await.unwrap();
        let leaves = store.leaves(0, size).await.unwrap();
        assert_eq!(
            leaves.len() as u64,
            size,
            "iteration {iterations}: leaves missing below the head"
        );
        for (index, entry) in &acked {
            let leaf = leaves.get(*index as usize).unwrap_or_else(|| {
                panic!("iteration {iterations}: acknowledged leaf {index} lost (log size {size})")
            });
            assert_eq!(
                &leaf.entry, entry,
                "iteration {iterations}: leaf {index} holds another entry"
            );
            assert_eq!(
                leaf.leaf_hash,
                leaf_hash(entry),
                "iteration {iterations}: leaf {index} is torn"
            );
        }
        if let Some(cp) = store.latest_checkpoint().await.unwrap() {
            assert!(cp.size <= size);
            assert_eq!(root_at(&store, cp.size).await.unwrap(), cp.root);
            let proof = consistency_proof(&store, cp.size, size).await.unwrap();
            let now = root_at(&store, size).await.unwrap();
            verify_consistency(cp.size, size, &cp.root, &now, &proof).unwrap();
        }
        // The full audit every few kills and after the last (it rereads the whole log).
        if iterations % 6 == 0 {
            let report = audit(&store, &AuditOptions::default()).await.unwrap();
            assert!(
                report.is_clean(),
                "iteration {iterations}: {:?}",
                report.problems
            );
        }
        store.close().await;
    }

    let store = SqliteStore::open(&db).await.unwrap();
    let report = audit(&store, &AuditOptions::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(iterations >= 20, "only {iterations} kills fit the budget");
    assert!(
        acked.len() > 100,
        "the child acknowledged only {} appends over {iterations} runs: the test exercised nothing",
        acked.len()
    );
    assert!(checkpoints_seen > 0, "no checkpoint was written");
    eprintln!(
        "crash test: {iterations} SIGKILLs, {} acknowledged appends, {} leaves, {} checkpoints, {:.1} s",
        acked.len(),
        report.log_size,
        report.checkpoints_checked,
        started.elapsed().as_secs_f64()
    );
}

/// The appending child. Ignored in normal runs; the crash test runs it with `SLUICE_CRASH_CHILD`
/// naming the database.
#[test]
#[ignore = "child process of the crash test"]
fn crash_child() {
    let Some(db) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = SqliteStore::open(&db).await.unwrap();
        let appender = Appender::spawn(Arc::new(store.clone()), AppenderOptions::default());
        // Bounded even if nobody kills it.
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid = std::process::id();
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let appender = appender.clone();
            tasks.push(tokio::spawn(async move {
                let mut k = 0u64;
                while Instant::now() < deadline {
                    let entry = sluice_evidence::sha256(format!("{pid}/{t}/{k}").as_bytes());
                    let index = appender.append(entry).await.unwrap();
                    // Printed only after the durable acknowledgement.
                    println!("ack {index} {}", hex::encode(entry));
                    k += 1;
                }
            }));
        }
        let checkpoints = tokio::spawn(async move {
            let signer = signer();
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(25)).await;
                let cp = create_checkpoint(&store, &signer).await.unwrap();
                println!("checkpoint {}", cp.size);
            }
        });
        for t in tasks {
            t.await.unwrap();
        }
        checkpoints.await.unwrap();
    });
}
