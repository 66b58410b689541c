//! The visible and the audited side of locks: `sluice locks` (holders, queues, kept locks and
//! degraded stacks), `sluice unlock UNIT --reason` and `sluice recover UNIT --reason`. Both
//! admin actions need a reason and leave an audit event naming the admin, the reason and
//! what they removed.

use serde::Serialize;
use serde_json::json;
use sluice_model::apply::StackHealth;
use sluice_model::lock::{Lock, Unlocked};
use sluice_model::redact::RedactionRules;
use sluice_store::{AnyStore, ChangeStore, EventRecord, LockStore, ReleaseStore};

use crate::apply::{now, settle};
use crate::error::{ReleaseError, Result};

/// One stack as `sluice locks` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LockView {
    pub unit: String,
    /// The lock as it stands now (expired holders gone, interrupted applies kept).
    pub lock: Lock,
    pub health: StackHealth,
}

/// Every stack with a lock row or a health record, by unit.
pub async fn locks(store: &AnyStore) -> Result<Vec<LockView>> {
    let at = now();
    let mut out: Vec<LockView> = Vec::new();
    for lock in store.locks().await? {
        out.push(LockView {
            unit: lock.unit.clone(),
            health: store.health(&lock.unit).await?,
            lock: lock.settled(at),
        });
    }
    for (unit, health) in store.unhealthy().await? {
        if !out.iter().any(|v| v.unit == unit) {
            out.push(LockView {
                lock: Lock::new(unit.clone()),
                unit,
                health,
            });
        }
    }
    out.sort_by(|a, b| a.unit.cmp(&b.unit));
    Ok(out)
}

fn audit_key(unit: &str) -> String {
    format!("lock:{unit}")
}

/// `sluice unlock UNIT --reason`: removes the holder whatever it is doing; the old holder's
/// token is fenced (the next holder gets a larger one). The stack's health is unchanged: an
/// unlock does not declare a degraded stack healthy (`sluice recover` does).
pub async fn unlock(store: &AnyStore, unit: &str, admin: &str, reason: &str) -> Result<Unlocked> {
    if reason.trim().is_empty() {
        return Err(ReleaseError::Usage(
            "an unlock needs --reason (it is recorded in the audit log)".into(),
        ));
    }
    if store.lock(unit).await?.is_none() {
        return Err(ReleaseError::Usage(format!(
            "{unit} has no lock (`sluice locks` lists the locked stacks)"
        )));
    }
    let unlocked = store
        .unlock(unit, admin, reason, now())
        .await?
        .map_err(|refusal| ReleaseError::Lock {
            unit: unit.to_string(),
            refusal,
        })?;
    store
        .append_event(&EventRecord::new(
            audit_key(unit),
            "lock.unlocked",
            json!(unlocked),
        ))
        .await?;
    Ok(unlocked)
}

/// What `sluice recover` did.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    pub unit: String,
    pub admin: String,
    pub reason: String,
    pub previous: StackHealth,
    pub unlocked: Option<Unlocked>,
}

/// `sluice recover UNIT --reason`: an admin declares a degraded stack healthy and releases its
/// kept lock with the same reason. Nothing is applied; the next change plans against the state
/// as it is.
pub async fn recover(
    store: &AnyStore,
    unit: &str,
    admin: &str,
    reason: &str,
    rules: &RedactionRules,
) -> Result<Recovered> {
    settle(store, unit, rules).await?;
    let previous = store.health(unit).await?;
    let healthy = previous.recovered_by_admin(reason)?;
    let unlocked = match store.lock(unit).await? {
        Some(lock) if lock.holder.is_some() => Some(
            store
                .unlock(unit, admin, reason, now())
                .await?
                .map_err(|refusal| ReleaseError::Lock {
                    unit: unit.to_string(),
                    refusal,
                })?,
        ),
        _ => None,
    };
    store.set_health(unit, &healthy).await?;
    let done = Recovered {
        unit: unit.to_string(),
        admin: admin.to_string(),
        reason: reason.trim().to_string(),
        previous,
        unlocked,
    };
    store
        .append_event(&EventRecord::new(
            audit_key(unit),
            "stack.recovered",
            json!(done),
        ))
        .await?;
    Ok(done)
}

/// The audit events of a stack's lock (unlocks, recoveries, interrupted applies).
pub async fn audit_events(store: &AnyStore, unit: &str) -> Result<Vec<EventRecord>> {
    Ok(store.events(Some(&audit_key(unit)), 0, 10_000).await?)
}
