//! The audit holds the records that point into the log against it. Removing the newest leaf
//! together with the log head and the checkpoint that covered it leaves a whole, smaller log
//! that the Merkle checks alone accept; the events and stage results that name the removed
//! envelope give it away. The tampering goes through the store's own connection.

mod common;

use sluice_model::change::{ChangeId, UnitKind};
use sluice_model::stage::Stage;
use sluice_store::audit::{AuditOptions, AuditProblem, audit};
use sluice_store::log::{FnSigner, create_checkpoint};
use sluice_store::{
    ChangeRecord, Digest, EventRecord, Hash, LeafInput, StageOutcome, StageResultRecord,
    StateStore, Store,
};

fn signer() -> FnSigner<impl Fn(&str) -> Result<String, String> + Send + Sync> {
    FnSigner::new("sluice.test/refs", |body: &str| {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        sluice_evidence::checkpoint::sign_note(body, "sluice.test/refs", &key)
            .map_err(|e| e.to_string())
    })
}

fn envelope(i: u64) -> Hash {
    sluice_evidence::sha256(format!("envelope-{i}").as_bytes())
}

/// Three stages of one change, each a leaf with its event and stage result, as the recorder
/// writes them; a checkpoint after each.
async fn record<S: Store + Clone>(store: &S) -> String {
    let change = ChangeRecord::new(
        &ChangeId {
            repo: "infra-live".into(),
            pr: Some(9),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            env: "dev".into(),
            unit: "dev/net".into(),
        },
        None,
        UnitKind::Stack,
    );
    store.put_change(&change).await.unwrap();
    for (i, stage) in [Stage::Propose, Stage::Validate, Stage::Plan]
        .into_iter()
        .enumerate()
    {
        let entry = envelope(i as u64);
        let index = store
            .append_leaves(&[LeafInput {
                entry,
                envelope_digest: None,
            }])
            .await
            .unwrap()[0];
        let mut result = StageResultRecord::new(
            &change.change_id,
            stage,
            StageOutcome::Passed,
            serde_json::json!({}),
        );
        result.envelope_digest = Some(Digest(entry));
        store.put_stage_result(&result).await.unwrap();
        store
            .append_event(&EventRecord::new(
                &change.change_id,
                "change.stage",
                serde_json::json!({
                    "envelope": Digest(entry).to_string(),
                    "leaf_index": index,
                }),
            ))
            .await
            .unwrap();
        create_checkpoint(store, &signer()).await.unwrap();
    }
    change.change_id
}

async fn problems<S: Store + StateStore + Clone>(store: &S) -> Vec<AuditProblem> {
    audit(store, &AuditOptions::default())
        .await
        .unwrap()
        .problems
}

#[tokio::test]
async fn removing_the_newest_leaf_head_and_checkpoint_is_detected() {
    let fx = common::sqlite().await;
    let store = &fx.store;
    let change_id = record(store).await;
    assert_eq!(problems(store).await, vec![]);

    // What an attacker with write access does to hide the last stage: the leaf, the head and
    // the checkpoint go together, so the remaining log is whole.
    for sql in [
        "DELETE FROM log_leaves WHERE idx = 2",
        "UPDATE log_head SET size = 2",
        "DELETE FROM checkpoints WHERE size = 3",
    ] {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    }
    let found = problems(store).await;
    assert!(
        found.contains(&AuditProblem::EventLeafMissing {
            event: 3,
            change_id: change_id.clone(),
            leaf_index: 2,
            log_size: 2,
        }),
        "{found:?}"
    );
    assert!(
        found.contains(&AuditProblem::StageResultUnlogged {
            change_id: change_id.clone(),
            stage: "plan".into(),
            envelope: Digest(envelope(2)).to_string(),
        }),
        "{found:?}"
    );
    // Nothing about the first two stages, which are intact.
    assert_eq!(found.len(), 2, "{found:?}");
}

#[tokio::test]
async fn an_event_naming_a_leaf_that_holds_another_envelope_is_detected() {
    let fx = common::sqlite().await;
    let store = &fx.store;
    let change_id = record(store).await;
    // The event of the second stage is pointed at the first stage's leaf.
    sqlx::query("UPDATE events SET payload = json_set(payload, '$.leaf_index', 0) WHERE id = 2")
        .execute(store.pool())
        .await
        .unwrap();
    let found = problems(store).await;
    assert_eq!(
        found,
        vec![AuditProblem::EventLeafMismatch {
            event: 2,
            change_id,
            leaf_index: 0,
        }]
    );
    let text = found[0].to_string();
    assert!(text.contains("leaf 0"), "{text}");
}
