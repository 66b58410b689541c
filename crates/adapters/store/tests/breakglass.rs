//! The break-glass suite, written once over `BreakGlassStore` and run against SQLite and
//! PostgreSQL: a grant is written with its event or not at all, transitions are conditional on
//! what the writer read (no lost use, no double end), an ended grant leaves exactly one backport
//! item, and an item is resolved once.

mod common;

use std::sync::Arc;

use serde_json::json;
use sluice_model::breakglass::{self, BreakGlassConfig, BreakGlassGrant, GrantState, OpenRequest};
use sluice_model::exception::Timestamp;
use sluice_store::{BreakGlassStore, EventRecord, Store, StoreError};

const UNIT: &str = "prod/eu-west-1/rds-payments";

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix(1_800_000_000 + secs, 0)
}

fn opened(id: &str, unit: &str, at: i64, ttl: i64) -> BreakGlassGrant {
    breakglass::open(
        &BreakGlassConfig {
            group: "@acme/sre-oncall".into(),
            max_ttl_secs: 4 * 3600,
        },
        &OpenRequest {
            requester: "alice".into(),
            requester_groups: vec!["@acme/sre-oncall".into()],
            unit: unit.into(),
            reason: "INC-1: failover stuck".into(),
            ttl_secs: ttl,
        },
        id.into(),
        t(at),
    )
    .unwrap()
}

fn event(grant: &str, kind: &str) -> EventRecord {
    EventRecord::new(
        format!("break-glass:{grant}"),
        kind,
        json!({"grant": grant}),
    )
}

async fn events_of<S: Store>(store: &S, grant: &str) -> Vec<String> {
    store
        .events(Some(&format!("break-glass:{grant}")), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn a_grant_is_written_with_its_event<S: Store + BreakGlassStore + Clone>(store: &S) {
    assert!(store.grant("bg-1").await.unwrap().is_none());
    let g = opened("bg-1", UNIT, 0, 3600);
    store
        .open_grant(&g, &event("bg-1", "breakglass.opened"))
        .await
        .unwrap();
    assert_eq!(store.grant("bg-1").await.unwrap(), Some(g.clone()));
    assert_eq!(events_of(store, "bg-1").await, vec!["breakglass.opened"]);
    // The same id again: a conflict, nothing written (no second event either).
    let err = store
        .open_grant(&g, &event("bg-1", "breakglass.opened"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(events_of(store, "bg-1").await.len(), 1);
    // An invalid event: the grant is not written either.
    let g2 = opened("bg-2", UNIT, 5, 60);
    let bad = EventRecord::new("", "breakglass.opened", json!({}));
    assert!(store.open_grant(&g2, &bad).await.is_err());
    assert!(store.grant("bg-2").await.unwrap().is_none());

    let other = opened("bg-3", "prod/eu-west-1/network", 10, 60);
    store
        .open_grant(&other, &event("bg-3", "breakglass.opened"))
        .await
        .unwrap();
    let all: Vec<String> = store
        .grants(None)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(all, vec!["bg-1", "bg-3"]);
    let mine = store.grants(Some(UNIT)).await.unwrap();
    assert_eq!(mine, vec![g]);
}

async fn transitions_are_conditional<S: Store + BreakGlassStore + Clone>(store: &S) {
    let g = opened("bg-1", UNIT, 0, 3600);
    store
        .open_grant(&g, &event("bg-1", "breakglass.opened"))
        .await
        .unwrap();
    // Two appliers read the same grant; the first use wins, the second must re-read.
    let mut a = g.clone();
    a.use_for(UNIT, true, t(10)).unwrap();
    let mut b = g.clone();
    b.use_for(UNIT, true, t(11)).unwrap();
    assert!(
        store
            .update_grant(&g, &a, None, &event("bg-1", "breakglass.used"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .update_grant(&g, &b, None, &event("bg-1", "breakglass.used"))
            .await
            .unwrap()
    );
    let now = store.grant("bg-1").await.unwrap().unwrap();
    assert_eq!(now.uses, 1);
    let mut b = now.clone();
    b.use_for(UNIT, true, t(11)).unwrap();
    assert!(
        store
            .update_grant(&now, &b, None, &event("bg-1", "breakglass.used"))
            .await
            .unwrap()
    );
    assert_eq!(store.grant("bg-1").await.unwrap().unwrap().uses, 2);

    // Closing a used grant leaves one backport item, written with the close.
    let mut closed = b.clone();
    let item = closed.close("bob", t(20)).unwrap();
    assert!(
        store
            .update_grant(
                &b,
                &closed,
                Some(&item),
                &event("bg-1", "breakglass.closed")
            )
            .await
            .unwrap()
    );
    // A sweep that read the grant before the close cannot expire it too.
    let mut swept = b.clone();
    let again = swept.settle(t(99_999)).unwrap();
    assert!(
        !store
            .update_grant(
                &b,
                &swept,
                Some(&again),
                &event("bg-1", "breakglass.expired")
            )
            .await
            .unwrap()
    );
    let stored = store.grant("bg-1").await.unwrap().unwrap();
    assert!(matches!(stored.state, GrantState::Closed { ref by, .. } if by == "bob"));
    assert_eq!(store.backports(true).await.unwrap(), vec![item.clone()]);
    assert_eq!(
        events_of(store, "bg-1").await,
        vec![
            "breakglass.opened",
            "breakglass.used",
            "breakglass.used",
            "breakglass.closed"
        ]
    );
    // Another grant's id cannot be written over this one.
    let other = opened("bg-9", UNIT, 0, 60);
    assert!(
        store
            .update_grant(&stored, &other, None, &event("bg-1", "x"))
            .await
            .is_err()
    );
}

async fn backport_items_resolve_once<S: Store + BreakGlassStore + Clone>(store: &S) {
    let mut items = Vec::new();
    for (i, unit) in [UNIT, "prod/eu-west-1/network"].iter().enumerate() {
        let id = format!("bg-{i}");
        let g = opened(&id, unit, i as i64, 60);
        store
            .open_grant(&g, &event(&id, "breakglass.opened"))
            .await
            .unwrap();
        let mut used = g.clone();
        used.use_for(unit, true, t(i as i64 + 1)).unwrap();
        assert!(
            store
                .update_grant(&g, &used, None, &event(&id, "breakglass.used"))
                .await
                .unwrap()
        );
        let mut expired = used.clone();
        let item = expired.settle(t(1000)).unwrap();
        assert!(
            store
                .update_grant(
                    &used,
                    &expired,
                    Some(&item),
                    &event(&id, "breakglass.expired")
                )
                .await
                .unwrap()
        );
        items.push(item);
    }
    assert_eq!(store.backports(true).await.unwrap(), items);
    let mut resolved = items[0].clone();
    resolved
        .resolve(7, Some("abc123"), &[UNIT.to_string()])
        .unwrap();
    assert!(
        store
            .resolve_backport(&resolved, &event("bg-0", "backport.resolved"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .resolve_backport(&resolved, &event("bg-0", "backport.resolved"))
            .await
            .unwrap(),
        "resolved twice"
    );
    // An open item is not a resolution.
    assert!(
        store
            .resolve_backport(&items[1], &event("bg-1", "backport.resolved"))
            .await
            .is_err()
    );
    assert_eq!(store.backports(true).await.unwrap(), vec![items[1].clone()]);
    assert_eq!(
        store.backports(false).await.unwrap(),
        vec![resolved, items[1].clone()]
    );
    assert_eq!(
        events_of(store, "bg-0").await.last().map(String::as_str),
        Some("backport.resolved")
    );
}

async fn concurrent_uses_are_all_counted<S: Store + BreakGlassStore + Clone>(store: &S) {
    let g = opened("bg-c", UNIT, 0, 3600);
    store
        .open_grant(&g, &event("bg-c", "breakglass.opened"))
        .await
        .unwrap();
    let store = Arc::new(store.clone());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // Read, use, write back; on a conflict read again (what the apply does).
            loop {
                let before = store.grant("bg-c").await.unwrap().unwrap();
                let mut after = before.clone();
                after.use_for(UNIT, true, t(10 + i)).unwrap();
                if store
                    .update_grant(&before, &after, None, &event("bg-c", "breakglass.used"))
                    .await
                    .unwrap()
                {
                    return;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.grant("bg-c").await.unwrap().unwrap().uses, 8);
    assert_eq!(events_of(&*store, "bg-c").await.len(), 9);
}

both_backends!(
    a_grant_is_written_with_its_event,
    transitions_are_conditional,
    backport_items_resolve_once,
    concurrent_uses_are_all_counted,
);
