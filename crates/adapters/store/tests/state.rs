//! The remote state records (`StateStore`), one suite run against SQLite and PostgreSQL.

mod common;

use sluice_store::{
    BackendLockRecord, Digest, Fence, LockStore, NewStateVersion, StateEventRecord, StateStore,
    StateVersionRecord, StoreError,
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

both_backends!(
    fenced_writes_need_the_current_holder,
    versions_chain_and_are_immutable,
    blobs_are_content_addressed_and_create_only,
    events_are_ordered_and_filtered,
    backend_locks_attach_and_detach,
);
