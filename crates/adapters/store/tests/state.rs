//! The remote state records (`StateStore`), one suite run against SQLite and PostgreSQL.

mod common;

use sluice_store::{
    BackendLockRecord, Digest, Fence, LeafInput, LockStore, NewStateVersion, StateEventRecord,
    StateStore, StateVersionRecord, Store, StoreError, Transaction,
};

fn version(unit: &str, n: u64, body: &[u8]) -> NewStateVersion {
    NewStateVersion {
        record: StateVersionRecord {
            unit: unit.into(),
            version: n,
            digest: Digest::of(body),
            serial: n * 2,
            lineage: "lin-1".into(),
            size: body.len() as u64,
            md5: Some([n as u8; 16]),
            identity: "oidc:https://issuer.example#repo:acme/infra-live:environment:dev".into(),
            lock_id: Some(format!("lock-{n}")),
            fencing_token: Some(n),
            forced_reason: None,
            rollback_of: None,
            created_at: 0,
        },
        // The store keeps whatever sealed form it is given; the service encrypts.
        sealed: [b"sealed:".as_slice(), body].concat(),
        fence: None,
    }
}

fn event(unit: &str, action: &str) -> StateEventRecord {
    StateEventRecord::new(
        unit,
        action,
        "ok",
        "user:alice",
        None,
        serde_json::json!({ "n": 1 }),
    )
}

async fn versions_chain_and_are_immutable<S: StateStore>(store: &S) {
    let unit = "dev/ap-southeast-1/network";
    assert_eq!(store.state_head(unit).await.unwrap(), None);
    let v1 = store
        .put_state_version(&version(unit, 1, b"one"), &event(unit, "write"))
        .await
        .unwrap();
    assert!(v1.created_at > 0);
    let v2 = store
        .put_state_version(&version(unit, 2, b"two"), &event(unit, "write"))
        .await
        .unwrap();
    assert_eq!(store.state_head(unit).await.unwrap(), Some(v2.clone()));
    // The MD5 the writer computed is kept with the version.
    assert_eq!(v2.md5, Some([2; 16]));
    // The newest version and its sealed body in one read.
    assert_eq!(
        store.state_head_sealed(unit).await.unwrap(),
        Some((v2.clone(), Some(b"sealed:two".to_vec())))
    );
    assert_eq!(
        store.state_head_sealed("dev/none/none").await.unwrap(),
        None
    );
    assert_eq!(
        store.state_version(unit, 1).await.unwrap(),
        Some(v1.clone())
    );
    assert_eq!(
        store.state_versions(unit, 10).await.unwrap(),
        vec![v2.clone(), v1.clone()]
    );
    assert_eq!(store.state_versions(unit, 1).await.unwrap(), vec![v2]);
    // A second version 2, or a gap, is stale: checked against an old head.
    for n in [2, 4] {
        let err = store
            .put_state_version(&version(unit, n, b"again"), &event(unit, "write"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Stale { .. }), "{err}");
    }
    // Nothing of the refused writes was kept: no blob, no event.
    assert_eq!(store.state_blob(&Digest::of(b"again")).await.unwrap(), None);
    let events = store.state_events(Some(unit), 0, 100).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        store.state_blob(&v1.digest).await.unwrap().unwrap(),
        b"sealed:one"
    );
    // Units are independent.
    let other = "dev/ap-southeast-1/cluster";
    store
        .put_state_version(&version(other, 1, b"one"), &event(other, "write"))
        .await
        .unwrap();
    assert_eq!(store.state_head(other).await.unwrap().unwrap().version, 1);
}

/// A transaction's writes go to the database as one query, checked first: versions of one
/// unit chain within the transaction, events get ids in the order they were added, and a
/// version that collides with another of the same transaction is stale, with nothing written.
async fn one_transaction_writes_versions_and_events_in_order<S: Store + StateStore>(store: &S) {
    let unit = "dev/ap-southeast-1/batched";
    let mut tx = Transaction::new();
    tx.put_state_version(version(unit, 1, b"b-one"))
        .put_state_version(version(unit, 2, b"b-two"))
        .append_state_event(event(unit, "first"), None)
        .append_state_event(event(unit, "second"), None)
        .append_state_event(event(unit, "third"), None);
    let committed = store.commit(tx).await.unwrap();
    let numbers: Vec<u64> = committed.state_versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, [1, 2]);
    assert_eq!(store.state_head(unit).await.unwrap().unwrap().version, 2);
    let events = store.state_events(Some(unit), 0, 10).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["first", "second", "third"]);
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    assert_eq!(committed.state_event_ids, ids);

    // Version 3 twice: the second is checked against the first, and is stale.
    let mut tx = Transaction::new();
    tx.put_state_version(version(unit, 3, b"b-three"))
        .put_state_version(version(unit, 3, b"b-three-again"))
        .append_state_event(event(unit, "collides"), None);
    let err = store.commit(tx).await.unwrap_err();
    assert!(matches!(err, StoreError::Stale { .. }), "{err}");
    assert_eq!(store.state_head(unit).await.unwrap().unwrap().version, 2);
    assert_eq!(
        store.state_blob(&Digest::of(b"b-three")).await.unwrap(),
        None
    );
    assert_eq!(
        store.state_events(Some(unit), 0, 10).await.unwrap().len(),
        3
    );
}

async fn blobs_are_content_addressed_and_create_only<S: StateStore>(store: &S) {
    let a = "dev/x/a";
    let b = "dev/x/b";
    store
        .put_state_version(&version(a, 1, b"same"), &event(a, "write"))
        .await
        .unwrap();
    let mut again = version(b, 1, b"same");
    again.sealed = b"another sealing".to_vec();
    store
        .put_state_version(&again, &event(b, "write"))
        .await
        .unwrap();
    // The first sealed form is kept: blobs are written once.
    assert_eq!(
        store
            .state_blob(&Digest::of(b"same"))
            .await
            .unwrap()
            .unwrap(),
        b"sealed:same"
    );
}

async fn events_are_ordered_and_filtered<S: StateStore>(store: &S) {
    let a = store
        .append_state_event(&event("dev/a", "read"))
        .await
        .unwrap();
    let b = store
        .append_state_event(&event("dev/b", "lock"))
        .await
        .unwrap();
    assert!(b > a);
    let all = store.state_events(None, 0, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["read", "lock"]
    );
    assert_eq!(all[0].detail, serde_json::json!({ "n": 1 }));
    let only_b = store.state_events(Some("dev/b"), 0, 10).await.unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(store.state_events(None, a, 10).await.unwrap().len(), 1);
}

async fn backend_locks_attach_and_detach<S: StateStore>(store: &S) {
    let unit = "prod/x/network";
    assert_eq!(store.backend_lock(unit).await.unwrap(), None);
    let rec = BackendLockRecord {
        unit: unit.into(),
        lock_id: "6c1b".into(),
        change: "terraform:6c1b".into(),
        fencing_token: 3,
        info: serde_json::json!({ "ID": "6c1b", "Who": "ci" }),
        created_at: 1,
    };
    store.put_backend_lock(&rec).await.unwrap();
    assert_eq!(store.backend_lock(unit).await.unwrap(), Some(rec.clone()));
    // Replaced when a newer holder attaches.
    let newer = BackendLockRecord {
        lock_id: "77aa".into(),
        fencing_token: 4,
        ..rec.clone()
    };
    store.put_backend_lock(&newer).await.unwrap();
    assert!(!store.delete_backend_lock(unit, "6c1b").await.unwrap());
    assert!(store.delete_backend_lock(unit, "77aa").await.unwrap());
    assert_eq!(store.backend_lock(unit).await.unwrap(), None);
}

/// A write fenced by the lock is checked inside its own transaction: only the current holder's
/// token, with a live lease and its Terraform lock still attached, writes; a refused write
/// keeps nothing.
async fn fenced_writes_need_the_current_holder<S: StateStore + LockStore>(store: &S) {
    use sluice_model::exception::Timestamp;
    use sluice_model::lock::{Acquired, FencingToken};
    use std::time::Duration;
    let unit = "dev/ap/fenced";
    let t0 = Timestamp::from_unix(2_000_000_000, 0);
    let fenced = |n: u64, token: u64, lock_id: &str, at: Timestamp| NewStateVersion {
        fence: Some(Fence {
            token: FencingToken(token),
            lock_id: Some(lock_id.into()),
            at,
        }),
        ..version(unit, n, format!("body-{n}-{token}").as_bytes())
    };
    // Never locked: refused.
    let err = store
        .put_state_version(&fenced(1, 1, "a", t0), &event(unit, "write"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Stale { what: "lock", .. }),
        "{err}"
    );
    let Acquired::Granted { token, .. } = store
        .acquire(unit, "terraform:a", t0, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap()
    else {
        panic!("a free lock is granted")
    };
    store
        .put_backend_lock(&BackendLockRecord {
            unit: unit.into(),
            lock_id: "a".into(),
            change: "terraform:a".into(),
            fencing_token: token.0,
            info: serde_json::json!({ "ID": "a" }),
            created_at: 1,
        })
        .await
        .unwrap();
    store
        .put_state_version(&fenced(1, token.0, "a", t0), &event(unit, "write"))
        .await
        .unwrap();
    // Another lock id, a stale token, or the same holder after its lease: refused.
    for bad in [
        fenced(2, token.0, "b", t0),
        fenced(2, token.0 + 1, "a", t0),
        fenced(2, token.0, "a", t0.plus_seconds(61)),
    ] {
        let err = store
            .put_state_version(&bad, &event(unit, "write"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Stale { what: "lock", .. }),
            "{err}"
        );
    }
    assert_eq!(store.state_head(unit).await.unwrap().unwrap().version, 1);
    assert_eq!(
        store.state_events(Some(unit), 0, 100).await.unwrap().len(),
        1
    );
}

/// A state event with a signed envelope and the leaf that holds the envelope's digest
/// (`entry`, when given, stands in for a leaf that does not match).
fn signed(tx: &mut Transaction, unit: &str, action: &str, entry: Option<[u8; 32]>) {
    let envelope =
        format!("{{\"payloadType\":\"test\",\"unit\":\"{unit}\",\"action\":\"{action}\"}}");
    let entry = entry.unwrap_or(Digest::of(envelope.as_bytes()).0);
    let leaf = tx.append_leaf(LeafInput {
        entry,
        envelope_digest: Some(Digest(entry)),
    });
    let mut e = event(unit, action);
    e.envelope = Some(envelope);
    tx.append_state_event(e, Some(leaf));
}

/// A lock transaction commits the lock's transition, the attached Terraform lock and its
/// signed event with its log leaf together, or nothing; the audit holds each state event
/// against its leaf.
async fn lock_transactions_commit_whole<S: Store + StateStore + LockStore + Clone>(store: &S) {
    use sluice_model::exception::Timestamp;
    use sluice_model::lock::Acquired;
    use std::time::Duration;
    let unit = "dev/ap/locked";
    let t0 = Timestamp::from_unix(2_000_000_000, 0);
    let size = store.log_size().await.unwrap();
    let (token, committed) = store
        .lock_transaction(unit, |lock, attached| {
            assert_eq!(attached, None);
            let Ok(Acquired::Granted { token, .. }) =
                lock.acquire("terraform:a", t0, Duration::from_secs(60))
            else {
                panic!("a free lock is granted")
            };
            let mut tx = Transaction::new();
            tx.put_backend_lock(BackendLockRecord {
                unit: unit.into(),
                lock_id: "a".into(),
                change: "terraform:a".into(),
                fencing_token: token.0,
                info: serde_json::json!({ "ID": "a" }),
                created_at: 1,
            });
            signed(&mut tx, unit, "lock", None);
            (token, tx)
        })
        .await
        .unwrap();
    assert_eq!(committed.log_size, size + 1);
    let lock = LockStore::lock(store, unit).await.unwrap().unwrap();
    assert_eq!(lock.holder.map(|h| h.token), Some(token));
    let attached = store.backend_lock(unit).await.unwrap().unwrap();
    assert_eq!(
        (attached.lock_id.as_str(), attached.fencing_token),
        ("a", token.0)
    );
    let events = store.state_events(Some(unit), 0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].leaf_index, Some(size));
    assert!(events[0].envelope.is_some());

    // The decision sees what the last one wrote; a transaction the store refuses (here an
    // event naming a leaf it does not append) writes neither the lock nor anything else.
    let refused = store
        .lock_transaction(unit, |lock, attached| {
            assert_eq!(attached.map(|a| a.lock_id), Some("a".to_string()));
            lock.release(token, t0).unwrap();
            let mut other = Transaction::new();
            let leaf = other.append_leaf(LeafInput {
                entry: [1; 32],
                envelope_digest: None,
            });
            let mut tx = Transaction::new();
            tx.delete_backend_lock(unit, "a")
                .append_state_event(event(unit, "unlock"), Some(leaf));
            ((), tx)
        })
        .await;
    assert!(refused.is_err());
    let lock = LockStore::lock(store, unit).await.unwrap().unwrap();
    assert_eq!(lock.holder.map(|h| h.token), Some(token));
    assert!(store.backend_lock(unit).await.unwrap().is_some());
    assert_eq!(store.log_size().await.unwrap(), size + 1);

    // A state version is not a lock transaction's to write (its fence would be checked
    // against the lock before the transaction's own write-back).
    let with_version = store
        .lock_transaction(unit, |_, _| {
            let mut tx = Transaction::new();
            tx.put_state_version(version(unit, 1, b"from-a-lock"));
            ((), tx)
        })
        .await;
    assert!(matches!(with_version, Err(StoreError::Invalid { .. })));
    assert_eq!(store.state_head(unit).await.unwrap(), None);

    // An unchanged lock and an empty transaction write nothing.
    let ((), nothing) = store
        .lock_transaction(unit, |_, _| ((), Transaction::new()))
        .await
        .unwrap();
    assert_eq!(nothing.log_size, size + 1);
    assert!(nothing.state_event_ids.is_empty());

    let report = sluice_store::audit(store, &Default::default())
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    // An event whose envelope is not what its leaf holds is reported.
    let mut tx = Transaction::new();
    signed(&mut tx, unit, "read", Some([7; 32]));
    let id = store.commit(tx).await.unwrap().state_event_ids[0];
    let report = sluice_store::audit(store, &Default::default())
        .await
        .unwrap();
    assert!(
        report.problems.iter().any(|p| matches!(
            p,
            sluice_store::AuditProblem::StateEventLeafMismatch { event, .. } if *event == id
        )),
        "{:?}",
        report.problems
    );
}

both_backends!(
    lock_transactions_commit_whole,
    one_transaction_writes_versions_and_events_in_order,
    fenced_writes_need_the_current_holder,
    versions_chain_and_are_immutable,
    blobs_are_content_addressed_and_create_only,
    events_are_ordered_and_filtered,
    backend_locks_attach_and_detach,
);
