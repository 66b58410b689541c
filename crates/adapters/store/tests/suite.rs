//! The store suite, written once over the `Store` trait and run against SQLite and PostgreSQL
//! (DESIGN.md §6: one trait, two implementations, the same suite).

mod common;

use std::future::Future;
use std::sync::Arc;

use sluice_evidence::merkle::{self, MemoryTree, leaf_hash};
use sluice_model::change::ChangeId;
use sluice_model::stage::Stage;
use sluice_store::audit::{AuditOptions, AuditProblem, audit};
use sluice_store::log::{FnSigner, consistency_proof, create_checkpoint, inclusion_proof, root_at};
use sluice_store::{
    Appender, AppenderOptions, ArtifactRecord, ChangeRecord, Digest, EventRecord, Hash, LeafInput,
    NewManifest, PgStore, SqliteStore, StageOutcome, StageResultRecord, StateStore, Store,
    StoreError, Transaction, UnitKind,
};

fn entry(i: u64) -> Hash {
    sluice_evidence::sha256(format!("suite-entry-{i}").as_bytes())
}

fn change(unit: &str) -> ChangeRecord {
    ChangeRecord::new(
        &ChangeId {
            repo: "infra-live".into(),
            pr: Some(412),
            commit: "9f3a12cdeadbeef0123456789abcdef012345678".into(),
            env: "prod".into(),
            unit: format!("prod/ap-southeast-1/{unit}"),
        },
        Some("4b825dc642cb6eb9a060e54bf8d69288fbee4904".into()),
        UnitKind::Stack,
    )
}

fn signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

fn signer() -> FnSigner<impl Fn(&str) -> Result<String, String> + Send + Sync> {
    FnSigner::new("sluice.test/log", |body: &str| {
        sluice_evidence::checkpoint::sign_note(body, "sluice.test/log", &signing_key())
            .map_err(|e| e.to_string())
    })
}

/// Raw SQL for the tamper tests: what an attacker with write access to the database can do.
enum Arg {
    I(i64),
    B(Vec<u8>),
}

trait Raw: Store + StateStore + Clone {
    fn exec(&self, sql: &'static str, args: Vec<Arg>) -> impl Future<Output = ()> + Send;
}

impl Raw for SqliteStore {
    async fn exec(&self, sql: &'static str, args: Vec<Arg>) {
        let mut q = sqlx::query(sql);
        for a in args {
            q = match a {
                Arg::I(i) => q.bind(i),
                Arg::B(b) => q.bind(b),
            };
        }
        q.execute(self.pool()).await.unwrap();
    }
}

impl Raw for PgStore {
    async fn exec(&self, sql: &'static str, args: Vec<Arg>) {
        let mut q = sqlx::query(sql);
        for a in args {
            q = match a {
                Arg::I(i) => q.bind(i),
                Arg::B(b) => q.bind(b),
            };
        }
        q.execute(self.pool()).await.unwrap();
    }
}

async fn changes_are_create_only<S: Store + StateStore + Clone>(store: &S) {
    let rec = change("rds-payments");
    store.put_change(&rec).await.unwrap();
    // The same change again (a re-run of the pipeline) is fine.
    store.put_change(&rec).await.unwrap();
    let back = store.change(&rec.change_id).await.unwrap().unwrap();
    assert_eq!(back, rec);
    assert_eq!(
        back.change_id,
        "infra-live#412@9f3a12c/prod/ap-southeast-1/rds-payments"
    );
    // Another head under the same correlation id is a conflict, and nothing is overwritten.
    let other = ChangeRecord {
        base: Some("ffff".into()),
        ..rec.clone()
    };
    let err = store.put_change(&other).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { what: "change", .. }),
        "{err}"
    );
    assert_eq!(store.change(&rec.change_id).await.unwrap().unwrap(), rec);
    assert!(store.change("nope").await.unwrap().is_none());
    let app = ChangeRecord {
        pr: None,
        unit_kind: UnitKind::App,
        ..change("payments")
    };
    store.put_change(&app).await.unwrap();
    let all = store.changes(10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(
        all.iter()
            .any(|c| c.unit_kind == UnitKind::App && c.pr.is_none())
    );
    let empty = ChangeRecord {
        head: String::new(),
        ..change("x")
    };
    let err = store.put_change(&empty).await.unwrap_err().to_string();
    assert!(err.contains("field head"), "{err}");
}

async fn stage_results_and_events<S: Store + StateStore + Clone>(store: &S) {
    let rec = change("network");
    let err = store
        .put_stage_result(&StageResultRecord::new(
            &rec.change_id,
            Stage::Validate,
            StageOutcome::Passed,
            serde_json::json!({}),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { what: "change", .. }),
        "{err}"
    );
    store.put_change(&rec).await.unwrap();
    let mut plan = StageResultRecord::new(
        &rec.change_id,
        Stage::Plan,
        StageOutcome::Passed,
        serde_json::json!({"plan_digest": "sha256:ab", "resources": {"create": 2, "delete": 0}}),
    );
    plan.envelope_digest = Some(Digest::of(b"envelope"));
    let validate = StageResultRecord::new(
        &rec.change_id,
        Stage::Validate,
        StageOutcome::Passed,
        serde_json::json!({"findings": []}),
    );
    let apply = StageResultRecord::new(
        &rec.change_id,
        Stage::Apply,
        StageOutcome::NotRun,
        serde_json::Value::Null,
    );
    let ids = [
        store.put_stage_result(&validate).await.unwrap(),
        store.put_stage_result(&plan).await.unwrap(),
        store.put_stage_result(&apply).await.unwrap(),
    ];
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let back = store.stage_results(&rec.change_id).await.unwrap();
    assert_eq!(
        back.iter().map(|r| r.stage.as_str()).collect::<Vec<_>>(),
        ["validate", "plan", "apply"]
    );
    assert_eq!(back[1].detail, plan.detail);
    assert_eq!(back[1].envelope_digest, plan.envelope_digest);
    assert_eq!(back[2].outcome, StageOutcome::NotRun);

    let mut event_ids = Vec::new();
    for (i, kind) in ["change.proposed", "change.validated", "change.planned"]
        .iter()
        .enumerate()
    {
        let e = EventRecord::new(&rec.change_id, *kind, serde_json::json!({"n": i}));
        event_ids.push(store.append_event(&e).await.unwrap());
    }
    store
        .append_event(&EventRecord::new(
            "env-gitops@abc1234/prod/prod-ap-southeast-1/payments",
            "app.synced",
            serde_json::json!({}),
        ))
        .await
        .unwrap();
    let mine = store.events(Some(&rec.change_id), 0, 100).await.unwrap();
    assert_eq!(mine.len(), 3);
    assert_eq!(mine[2].kind, "change.planned");
    assert_eq!(mine[1].payload, serde_json::json!({"n": 1}));
    let all = store.events(None, 0, 100).await.unwrap();
    assert_eq!(all.len(), 4);
    let after = store.events(None, event_ids[1], 1).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, event_ids[2]);
    assert!(
        store
            .append_event(&EventRecord::new("", "x", serde_json::json!({})))
            .await
            .is_err()
    );
}

/// One recorded stage as the recorder writes it: the log leaves, the stage row, the event and
/// the manifest version in one transaction.
fn stage_tx(
    rec: &ChangeRecord,
    n: u64,
    version: u32,
    previous: Option<Digest>,
) -> (Transaction, Digest) {
    let mut tx = Transaction::new();
    tx.put_change(rec.clone());
    let stage_leaf = tx.append_leaf(LeafInput {
        entry: entry(1000 + n),
        envelope_digest: None,
    });
    let mut row = StageResultRecord::new(
        &rec.change_id,
        Stage::Plan,
        StageOutcome::Passed,
        serde_json::json!({"n": n}),
    );
    row.envelope_digest = Some(Digest(entry(1000 + n)));
    tx.put_stage_result(row);
    tx.append_event(
        EventRecord::new(
            &rec.change_id,
            "change.planned",
            serde_json::json!({"stage": "plan", "leaf_index": null, "n": n}),
        ),
        Some(stage_leaf),
    );
    let manifest = Digest(entry(2000 + n));
    let leaf = tx.append_leaf(LeafInput {
        entry: manifest.0,
        envelope_digest: Some(manifest),
    });
    tx.put_manifest(NewManifest {
        change_id: rec.change_id.clone(),
        version,
        envelope: manifest,
        previous,
        leaf,
    });
    (tx, manifest)
}

async fn transactions_write_everything_or_nothing<S: Store + StateStore + Clone>(store: &S) {
    let rec = change("rds-payments");
    // Some log before, so that leaf indexes are not positions in the transaction.
    store.append_batch(&[entry(1), entry(2)]).await.unwrap();

    let (tx, first) = stage_tx(&rec, 1, 1, None);
    let done = store.commit(tx).await.unwrap();
    assert_eq!(done.leaf_indexes, [2, 3]);
    assert_eq!(done.log_size, 4);
    assert_eq!(done.manifests[0].leaf_index, 3);
    let events = store.events(Some(&rec.change_id), 0, 10).await.unwrap();
    // The event names its leaf's index, set inside the commit, in the key's place.
    assert_eq!(
        events[0].payload,
        serde_json::json!({"stage": "plan", "leaf_index": 2, "n": 1})
    );
    assert_eq!(
        store.latest_manifest(&rec.change_id).await.unwrap(),
        Some(done.manifests[0].clone())
    );

    // A second writer prepared version 2 from version 1 as well; the first to commit wins.
    let (winner, second) = stage_tx(&rec, 2, 2, Some(first));
    let (loser, _) = stage_tx(&rec, 3, 2, Some(first));
    store.commit(winner).await.unwrap();
    let err = store.commit(loser).await.unwrap_err();
    assert!(err.is_stale(), "{err}");
    assert!(err.to_string().contains("retry"), "{err}");
    // ... and wrote nothing: no leaf, no stage row, no event, no version.
    assert_eq!(store.log_size().await.unwrap(), 6);
    assert_eq!(store.stage_results(&rec.change_id).await.unwrap().len(), 2);
    assert_eq!(
        store
            .events(Some(&rec.change_id), 0, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    // Prepared again from the new head, it commits as version 3.
    let (retry, _) = stage_tx(&rec, 3, 3, Some(second));
    let done = store.commit(retry).await.unwrap();
    assert_eq!(done.leaf_indexes, [6, 7]);
    // A version that skips one, or names the wrong previous envelope, is stale as well.
    let (gap, _) = stage_tx(&rec, 4, 5, Some(second));
    assert!(store.commit(gap).await.unwrap_err().is_stale());
    let (wrong, _) = stage_tx(&rec, 4, 4, Some(first));
    assert!(store.commit(wrong).await.unwrap_err().is_stale());
    let chain = store.manifests(&rec.change_id).await.unwrap();
    assert_eq!(
        chain.iter().map(|m| m.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(
        chain
            .windows(2)
            .all(|w| w[1].previous == Some(w[0].envelope))
    );

    // An invalid record refuses the whole transaction before anything is written.
    let (mut tx, _) = stage_tx(&rec, 4, 4, Some(chain[2].envelope));
    tx.append_event(EventRecord::new("", "x", serde_json::json!({})), None);
    assert!(store.commit(tx).await.is_err());
    assert_eq!(store.log_size().await.unwrap(), 8);
    let report = audit(store, &AuditOptions::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

async fn log_matches_a_naive_tree<S: Store + StateStore + Clone>(store: &S) {
    assert_eq!(store.log_size().await.unwrap(), 0);
    assert_eq!(root_at(store, 0).await.unwrap(), merkle::EMPTY_ROOT);
    let mut tree = MemoryTree::new();
    let mut next = 0u64;
    // Batch sizes that cross every kind of boundary, including one larger than an INSERT chunk.
    for batch in [1u64, 1, 2, 5, 7, 64, 1500, 3, 33] {
        let entries: Vec<Hash> = (next..next + batch).map(entry).collect();
        let indexes = store.append_batch(&entries).await.unwrap();
        assert_eq!(indexes, (next..next + batch).collect::<Vec<_>>());
        for e in &entries {
            tree.push_entry(e);
        }
        next += batch;
        assert_eq!(store.log_size().await.unwrap(), next);
        assert_eq!(root_at(store, next).await.unwrap(), tree.root());
    }
    let size = next;
    for s in [1, 2, 3, 8, 100, 1024, 1025, size] {
        assert_eq!(
            root_at(store, s).await.unwrap(),
            tree.root_at(s).unwrap(),
            "size {s}"
        );
    }
    for (leaf, at) in [
        (0, 1),
        (0, size),
        (5, 6),
        (1024, 1025),
        (1600, size),
        (size - 1, size),
    ] {
        let proof = inclusion_proof(store, leaf, at).await.unwrap();
        assert_eq!(proof, tree.inclusion_proof(leaf, at).unwrap());
        merkle::verify_inclusion(
            &leaf_hash(&entry(leaf)),
            leaf,
            at,
            &proof,
            &tree.root_at(at).unwrap(),
        )
        .unwrap();
    }
    for (old, new) in [(1, 2), (3, 7), (4, 1500), (1500, size), (size, size)] {
        let proof = consistency_proof(store, old, new).await.unwrap();
        assert_eq!(proof, tree.consistency_proof(old, new).unwrap());
        merkle::verify_consistency(
            old,
            new,
            &tree.root_at(old).unwrap(),
            &tree.root_at(new).unwrap(),
            &proof,
        )
        .unwrap();
    }
    let err = inclusion_proof(store, 0, size + 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than the log"), "{err}");
    // Leaves read back as written.
    let leaves = store.leaves(1500, 1503).await.unwrap();
    assert_eq!(leaves.len(), 3);
    assert_eq!(leaves[0].entry, entry(1500));
    assert_eq!(leaves[0].leaf_hash, leaf_hash(&entry(1500)));
    let found = store.find_leaf(&entry(77)).await.unwrap().unwrap();
    assert_eq!(found.index, 77);
    assert!(store.find_leaf(&[0; 32]).await.unwrap().is_none());
    // Envelope digests travel with their leaves.
    let d = Digest::of(b"the envelope");
    let idx = store
        .append_leaves(&[LeafInput {
            entry: entry(size),
            envelope_digest: Some(d),
        }])
        .await
        .unwrap();
    assert_eq!(idx, vec![size]);
    assert_eq!(
        store.leaves(size, size + 1).await.unwrap()[0].envelope_digest,
        Some(d)
    );
    assert!(store.append_batch(&[]).await.unwrap().is_empty());
    let report = audit(store, &AuditOptions::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.leaves_checked, size + 1);
}

async fn group_commit_coalesces<S: Store + StateStore + Clone>(store: &S) {
    let store = Arc::new(store.clone());
    store.append_batch(&[entry(0)]).await.unwrap();
    let appender = Appender::spawn(store.clone(), AppenderOptions::default());
    let mut tasks = Vec::new();
    for i in 1..=300u64 {
        let appender = appender.clone();
        tasks.push(tokio::spawn(async move {
            (i, appender.append(entry(i)).await.unwrap())
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap());
    }
    let mut indexes: Vec<u64> = acked.iter().map(|a| a.1).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (1..=300).collect::<Vec<_>>());
    // Every caller's entry sits at the index it was told.
    let leaves = store.leaves(0, 301).await.unwrap();
    for (i, index) in acked {
        assert_eq!(leaves[index as usize].entry, entry(i));
    }
    let commits = appender
        .stats()
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        commits < 300,
        "300 concurrent appends took {commits} commits: no coalescing"
    );
    let report = audit(&*store, &AuditOptions::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

async fn checkpoints_are_signed_and_never_forked<S: Store + StateStore + Clone>(store: &S) {
    let entries: Vec<Hash> = (0..10).map(entry).collect();
    store.append_batch(&entries).await.unwrap();
    let signer = signer();
    let cp = create_checkpoint(store, &signer).await.unwrap();
    assert_eq!(cp.size, 10);
    let tree = MemoryTree::from_leaves(entries.iter().map(|e| leaf_hash(e)));
    assert_eq!(cp.root, tree.root());
    // The stored note verifies with the log's key (an independent parser reads it).
    let (parsed, signers) =
        sluice_evidence::checkpoint::open_checkpoint(&cp.note, &[signing_key().verifying_key()])
            .unwrap();
    assert_eq!((parsed.size, parsed.root), (10, tree.root()));
    assert_eq!(signers, vec!["sluice.test/log".to_string()]);
    // Same size: the stored checkpoint comes back, nothing new is signed.
    assert_eq!(create_checkpoint(store, &signer).await.unwrap(), cp);
    // A different root at a stored size is a fork: refused.
    let mut forked = cp.clone();
    forked.root[0] ^= 1;
    let err = store.put_checkpoint(&forked).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                what: "checkpoint",
                ..
            }
        ),
        "{err}"
    );
    store.append_batch(&[entry(10)]).await.unwrap();
    let cp2 = create_checkpoint(store, &signer).await.unwrap();
    assert_eq!(cp2.size, 11);
    assert_eq!(store.latest_checkpoint().await.unwrap().unwrap(), cp2);
    assert_eq!(store.checkpoints().await.unwrap().len(), 2);
    // A signer that signs something else than the body is refused.
    let liar = FnSigner::new("sluice.test/log", |_: &str| {
        sluice_evidence::checkpoint::sign_note("other\n1\nAAAA\n", "x", &signing_key())
            .map_err(|e| e.to_string())
    });
    store.append_batch(&[entry(11)]).await.unwrap();
    assert!(matches!(
        create_checkpoint(store, &liar).await.unwrap_err(),
        StoreError::Signer(_)
    ));
    let vk = signing_key().verifying_key();
    let verify = move |cp: &sluice_store::CheckpointRecord| {
        sluice_evidence::checkpoint::open_checkpoint(&cp.note, &[vk])
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let report = audit(
        store,
        &AuditOptions {
            verify_note: Some(&verify),
        },
    )
    .await
    .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.checkpoints_checked, 2);
}

async fn artifacts_are_create_only<S: Store + StateStore + Clone>(store: &S) {
    let rec = ArtifactRecord {
        digest: Digest::of(b"plan"),
        size: 4,
        media_type: "application/vnd.opentofu.plan".into(),
        secret: true,
        created_at: 1,
    };
    store.put_artifact(&rec).await.unwrap();
    store
        .put_artifact(&ArtifactRecord {
            created_at: 2,
            ..rec.clone()
        })
        .await
        .unwrap();
    assert_eq!(store.artifact(&rec.digest).await.unwrap().unwrap(), rec);
    let err = store
        .put_artifact(&ArtifactRecord {
            size: 5,
            ..rec.clone()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                what: "artifact",
                ..
            }
        ),
        "{err}"
    );
    assert!(store.artifact(&Digest::of(b"x")).await.unwrap().is_none());
}

/// A log of `n` leaves with a checkpoint at `n`, then `tamper`, then the audit's findings.
async fn audit_after<S: Raw>(store: &S, n: u64, tamper: impl AsyncFnOnce(&S)) -> Vec<AuditProblem> {
    let entries: Vec<Hash> = (0..n).map(entry).collect();
    store.append_batch(&entries).await.unwrap();
    create_checkpoint(store, &signer()).await.unwrap();
    let clean = audit(store, &AuditOptions::default()).await.unwrap();
    assert!(clean.is_clean(), "{:?}", clean.problems);
    tamper(store).await;
    let report = audit(store, &AuditOptions::default()).await.unwrap();
    assert!(!report.is_clean(), "tampering went unnoticed");
    report.problems
}

fn has(problems: &[AuditProblem], pred: impl Fn(&AuditProblem) -> bool) -> bool {
    problems.iter().any(pred)
}

async fn tamper_flipped_leaf<S: Raw>(store: &S) {
    let p = audit_after(store, 40, async |s: &S| {
        let mut e = entry(13);
        e[7] ^= 0x10;
        s.exec(
            "UPDATE log_leaves SET entry = $1 WHERE idx = $2",
            vec![Arg::B(e.to_vec()), Arg::I(13)],
        )
        .await;
    })
    .await;
    assert!(
        p.contains(&AuditProblem::LeafChanged { index: 13 }),
        "{p:?}"
    );
    assert!(
        has(&p, |x| matches!(
            x,
            AuditProblem::CheckpointMismatch { size: 40, .. }
        )),
        "{p:?}"
    );
}

async fn tamper_rewritten_leaf<S: Raw>(store: &S) {
    // Entry and leaf hash rewritten together: the node above still catches it.
    let p = audit_after(store, 40, async |s: &S| {
        let e = [0xAA; 32];
        s.exec(
            "UPDATE log_leaves SET entry = $1, leaf_hash = $2 WHERE idx = $3",
            vec![
                Arg::B(e.to_vec()),
                Arg::B(leaf_hash(&e).to_vec()),
                Arg::I(21),
            ],
        )
        .await;
    })
    .await;
    assert!(
        p.contains(&AuditProblem::NodeMismatch {
            level: 1,
            index: 10,
            first_leaf: 20,
            last_leaf: 21
        }),
        "{p:?}"
    );
    assert!(has(&p, |x| matches!(
        x,
        AuditProblem::CheckpointMismatch { size: 40, .. }
    )));
}

async fn tamper_flipped_node<S: Raw>(store: &S) {
    let p = audit_after(store, 40, async |s: &S| {
        s.exec(
            "UPDATE log_nodes SET hash = $1 WHERE level = 3 AND idx = $2",
            vec![Arg::B(vec![0x55; 32]), Arg::I(2)],
        )
        .await;
    })
    .await;
    assert_eq!(
        p,
        vec![AuditProblem::NodeMismatch {
            level: 3,
            index: 2,
            first_leaf: 16,
            last_leaf: 23
        }]
    );
}

async fn tamper_deleted_node<S: Raw>(store: &S) {
    let p = audit_after(store, 40, async |s: &S| {
        s.exec(
            "DELETE FROM log_nodes WHERE level = $1 AND idx = $2",
            vec![Arg::I(2), Arg::I(3)],
        )
        .await;
    })
    .await;
    assert_eq!(p, vec![AuditProblem::MissingNode { level: 2, index: 3 }]);
    // A proof that needs the node (leaf 9: its sibling subtree is leaves 12..=15) says so
    // instead of returning a wrong path.
    let err = inclusion_proof(store, 9, 40).await.unwrap_err().to_string();
    assert!(err.contains("lacks subtree (level 2, index 3)"), "{err}");
}

async fn tamper_flipped_checkpoint<S: Raw>(store: &S) {
    let p = audit_after(store, 40, async |s: &S| {
        let mut root = root_at(s, 40).await.unwrap();
        root[0] ^= 1;
        s.exec(
            "UPDATE checkpoints SET root = $1 WHERE size = $2",
            vec![Arg::B(root.to_vec()), Arg::I(40)],
        )
        .await;
    })
    .await;
    assert!(
        has(&p, |x| matches!(
            x,
            AuditProblem::CheckpointMismatch { size: 40, .. }
        )),
        "{p:?}"
    );
    assert!(
        has(&p, |x| matches!(
            x,
            AuditProblem::CheckpointNote { size: 40, .. }
        )),
        "{p:?}"
    );
}

async fn tamper_deleted_leaf<S: Raw>(store: &S) {
    let p = audit_after(store, 40, async |s: &S| {
        s.exec("DELETE FROM log_leaves WHERE idx = $1", vec![Arg::I(17)])
            .await;
    })
    .await;
    assert!(p.contains(&AuditProblem::Gap { from: 17, to: 18 }), "{p:?}");
    assert!(has(&p, |x| matches!(
        x,
        AuditProblem::CheckpointUnverifiable { size: 40, .. }
    )));
}

async fn tamper_reordered_leaves<S: Raw>(store: &S) {
    let p = audit_after(store, 40, async |s: &S| {
        // Swap whole rows through a free index, as an attacker with SQL access would.
        s.exec(
            "UPDATE log_leaves SET idx = $1 WHERE idx = $2",
            vec![Arg::I(1_000_000), Arg::I(5)],
        )
        .await;
        s.exec(
            "UPDATE log_leaves SET idx = $1 WHERE idx = $2",
            vec![Arg::I(5), Arg::I(30)],
        )
        .await;
        s.exec(
            "UPDATE log_leaves SET idx = $1 WHERE idx = $2",
            vec![Arg::I(30), Arg::I(1_000_000)],
        )
        .await;
    })
    .await;
    assert!(
        p.contains(&AuditProblem::Reordered {
            first: 5,
            second: 30
        }),
        "{p:?}"
    );
}

async fn tamper_truncated_log<S: Raw>(store: &S) {
    let p = audit_after(store, 40, async |s: &S| {
        s.exec("DELETE FROM log_leaves WHERE idx >= $1", vec![Arg::I(30)])
            .await;
        s.exec(
            "DELETE FROM log_nodes WHERE end_leaf >= $1",
            vec![Arg::I(30)],
        )
        .await;
        s.exec(
            "UPDATE log_head SET size = $1 WHERE id = 1",
            vec![Arg::I(30)],
        )
        .await;
    })
    .await;
    assert!(
        p.contains(&AuditProblem::Truncated {
            checkpoint_size: 40,
            log_size: 30
        }),
        "{p:?}"
    );
}

async fn tamper_head_moved_back<S: Raw>(store: &S) {
    let p = audit_after(store, 40, async |s: &S| {
        s.exec(
            "UPDATE log_head SET size = $1 WHERE id = 1",
            vec![Arg::I(35)],
        )
        .await;
    })
    .await;
    assert!(
        p.contains(&AuditProblem::LeafBeyondHead {
            index: 35,
            head: 35
        }),
        "{p:?}"
    );
    assert!(
        p.contains(&AuditProblem::Truncated {
            checkpoint_size: 40,
            log_size: 35
        }),
        "{p:?}"
    );
}

both_backends!(
    changes_are_create_only,
    stage_results_and_events,
    transactions_write_everything_or_nothing,
    log_matches_a_naive_tree,
    checkpoints_are_signed_and_never_forked,
    artifacts_are_create_only,
    group_commit_coalesces,
    tamper_flipped_leaf,
    tamper_rewritten_leaf,
    tamper_flipped_node,
    tamper_deleted_node,
    tamper_flipped_checkpoint,
    tamper_deleted_leaf,
    tamper_reordered_leaves,
    tamper_truncated_log,
    tamper_head_moved_back,
);

mod schema_version {
    use sluice_store::{LogStore, PgStore, SqliteStore, Store, StoreError};

    #[tokio::test]
    async fn sqlite_refuses_a_newer_database_untouched() {
        let fx = crate::common::sqlite().await;
        let path = fx.store.path().to_path_buf();
        assert_eq!(
            fx.store.schema_version().await.unwrap(),
            SqliteStore::known_schema_version()
        );
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', TRUE, X'00', 0)",
        )
        .execute(fx.store.pool())
        .await
        .unwrap();
        fx.store.close().await;
        let before = std::fs::read(&path).unwrap();
        let err = SqliteStore::open(&path).await.unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 9999, .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("9999"),
            "{msg}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the database was rewritten"
        );
        assert!(
            !path.with_extension("db-wal").exists()
                || std::fs::metadata(path.with_extension("db-wal"))
                    .unwrap()
                    .len()
                    == 0
        );
    }

    /// Schema version 14 moves state blobs from a WITHOUT ROWID table into a rowid table: a
    /// database written at version 13 keeps every version and its sealed body, and the
    /// versions still reference their blobs.
    #[tokio::test]
    async fn sqlite_moves_state_blobs_of_an_older_database_into_a_rowid_table() {
        use sluice_store::{Digest, StateStore};
        use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

        let dir = tempfile::tempdir().unwrap();
        // The migrations up to version 13, as a database made by an earlier sluice has them.
        let old = dir.path().join("migrations");
        std::fs::create_dir(&old).unwrap();
        let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        for file in std::fs::read_dir(&all).unwrap() {
            let file = file.unwrap();
            let name = file.file_name().to_string_lossy().into_owned();
            let version: i64 = name.split('_').next().unwrap().parse().unwrap();
            if version <= 13 {
                std::fs::copy(file.path(), old.join(&name)).unwrap();
            }
        }
        let path = dir.path().join("sluice.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::migrate::Migrator::new(old.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        let bodies: Vec<Vec<u8>> = (0..4u8)
            .map(|i| (0..200_000u32).map(|n| (n % 251) as u8 ^ i).collect())
            .collect();
        for (i, body) in bodies.iter().enumerate() {
            let digest = vec![i as u8 + 1; 32];
            sqlx::query("INSERT INTO state_blobs VALUES (?, ?, ?, 1)")
                .bind(&digest)
                .bind(body)
                .bind(body.len() as i64)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO state_versions (unit, version, digest, serial, lineage, size, \
                 identity, created_at) VALUES ('dev/net', ?, ?, ?, 'lin', ?, 'me', 1)",
            )
            .bind(i as i64 + 1)
            .bind(&digest)
            .bind(i as i64)
            .bind(body.len() as i64)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;

        let store = SqliteStore::open(&path).await.unwrap();
        let schema: String =
            sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = 'state_blobs'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert!(!schema.contains("WITHOUT ROWID"), "{schema}");
        let leftovers: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'state_blobs_moving'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(leftovers, 0);
        let dangling: Vec<(String,)> =
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert!(dangling.is_empty(), "{dangling:?}");
        let (head, sealed) = store.state_head_sealed("dev/net").await.unwrap().unwrap();
        assert_eq!(head.version, 4);
        assert_eq!(sealed.as_deref(), Some(bodies[3].as_slice()));
        for (i, body) in bodies.iter().enumerate() {
            let blob = store.state_blob(&Digest([i as u8 + 1; 32])).await.unwrap();
            assert_eq!(blob.as_deref(), Some(body.as_slice()), "blob {i}");
        }
        // The digest stays unique: the same digest again is refused by the table itself.
        let again = sqlx::query(
            "INSERT INTO state_blobs (digest, sealed, size, created_at) VALUES (?, X'00', 1, 1)",
        )
        .bind(vec![1u8; 32])
        .execute(store.pool())
        .await;
        assert!(again.is_err());
    }

    #[tokio::test]
    async fn sqlite_reports_a_file_that_is_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        std::fs::write(
            &path,
            b"this is not a database, it is a text file of some length....",
        )
        .unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = SqliteStore::open(&path).await.unwrap_err().to_string();
        assert!(
            err.contains("sluice.db") && err.contains("not a usable SQLite database"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[tokio::test]
    async fn postgres_refuses_a_newer_database_untouched() {
        let Some(fx) = crate::common::postgres().await else {
            return;
        };
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(fx.store.pool())
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', TRUE, '\\x00', 0)",
        )
        .execute(fx.store.pool())
        .await
        .unwrap();
        let err = PgStore::open_with(fx.options.clone()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 9999, .. }),
            "{err}"
        );
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(fx.store.pool())
            .await
            .unwrap();
        // The migrations this sluice applied, plus the one from the future; nothing added.
        // (Counted, not derived from the newest version: versions need not be contiguous.)
        assert_eq!(n, applied + 1);
        assert!(applied >= 1 && PgStore::known_schema_version() >= applied);
    }

    #[tokio::test]
    async fn reopening_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .append_batch(&[[1; 32], [2; 32], [3; 32]])
            .await
            .unwrap();
        store.close().await;
        let url = format!("sqlite://{}", path.display());
        let store = sluice_store::open(&url).await.unwrap();
        assert_eq!(store.backend(), sluice_store::Backend::Sqlite);
        assert_eq!(store.log_size().await.unwrap(), 3);
        // The frontier is rebuilt from the stored nodes after a restart.
        assert_eq!(store.append_batch(&[[4; 32]]).await.unwrap(), vec![3]);
        let report = sluice_store::audit(&store, &Default::default())
            .await
            .unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
    }
}
