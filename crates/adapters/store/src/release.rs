//! What stages 6 and 7 must remember besides the evidence log (issue 11): the approvals given
//! for a change (indexing the signed `approve` statements), which plan files were used (a plan
//! applies at most once), and which stacks are degraded after a failed or interrupted apply.
//!
//! [`ReleaseStore::claim_plan`] is the at-most-once guard: the plan's digest is the row's key,
//! so of two appliers racing with one plan exactly one claims it, whatever the processes or
//! replicas. The claim is made before the engine runs and its outcome filled in when the apply
//! ends, so a killed apply leaves its plan spent (`applying` with no end), never reusable.

use std::future::Future;

use serde_json::Value;
use sluice_model::apply::{PlanUse, StackHealth};

use crate::error::{Result, StoreError};
use crate::records::{Digest, UnixMillis};

/// One approval as indexed: the approver and the record (the approval and the approver's
/// signed envelope, as the `approve` statement carries them).
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRow {
    pub change_id: String,
    pub approver: String,
    pub body: Value,
    /// Digest of the approver's signed envelope.
    pub envelope: Digest,
    pub created_at: UnixMillis,
}

/// Where a plan's one use stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanUseState {
    /// Claimed; the engine is (or was, if the applier died) running it.
    Applying,
    Ended(PlanUse),
}

impl PlanUseState {
    fn as_str(self) -> &'static str {
        match self {
            PlanUseState::Applying => "applying",
            PlanUseState::Ended(PlanUse::Applied) => "applied",
            PlanUseState::Ended(PlanUse::Failed) => "failed",
            PlanUseState::Ended(PlanUse::Stale) => "stale",
            PlanUseState::Ended(PlanUse::Unused) => "unused",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "applying" => PlanUseState::Applying,
            "applied" => PlanUseState::Ended(PlanUse::Applied),
            "failed" => PlanUseState::Ended(PlanUse::Failed),
            "stale" => PlanUseState::Ended(PlanUse::Stale),
            _ => return None,
        })
    }

    /// As the apply gate reads it: a claim without an end is a use that may have changed
    /// resources (the applier died), so it counts as failed.
    pub fn plan_use(self) -> PlanUse {
        match self {
            PlanUseState::Applying => PlanUse::Failed,
            PlanUseState::Ended(u) => u,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanUseRow {
    pub plan_digest: String,
    pub change_id: String,
    pub unit: String,
    pub state: PlanUseState,
    pub token: u64,
    pub claimed_at: UnixMillis,
    pub ended_at: Option<UnixMillis>,
}

/// Approvals, plan uses and stack health (see the module documentation).
pub trait ReleaseStore: Send + Sync + 'static {
    /// Indexes an approval; the same envelope again is accepted once.
    fn put_approval(&self, row: &ApprovalRow) -> impl Future<Output = Result<()>> + Send;

    /// A change's approvals, oldest first.
    fn approvals(&self, change_id: &str) -> impl Future<Output = Result<Vec<ApprovalRow>>> + Send;

    /// Claims `plan_digest` for one apply. `Ok(None)` when claimed; `Ok(Some(existing))` when
    /// it was used (or claimed) before: nothing is written then.
    fn claim_plan(
        &self,
        plan_digest: &str,
        change_id: &str,
        unit: &str,
        token: u64,
    ) -> impl Future<Output = Result<Option<PlanUseRow>>> + Send;

    /// Records how the claimed use of `plan_digest` ended.
    fn end_plan_use(
        &self,
        plan_digest: &str,
        outcome: PlanUse,
    ) -> impl Future<Output = Result<()>> + Send;

    fn plan_use(
        &self,
        plan_digest: &str,
    ) -> impl Future<Output = Result<Option<PlanUseRow>>> + Send;

    /// A stack's health (healthy when never recorded).
    fn health(&self, unit: &str) -> impl Future<Output = Result<StackHealth>> + Send;

    fn set_health(
        &self,
        unit: &str,
        health: &StackHealth,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Every stack that is not healthy, by unit.
    fn unhealthy(&self) -> impl Future<Output = Result<Vec<(String, StackHealth)>>> + Send;
}

fn health_json(health: &StackHealth) -> Result<String> {
    serde_json::to_string(health).map_err(|e| StoreError::Invalid {
        record: "stack health",
        field: "state",
        problem: e.to_string(),
    })
}

pub(crate) fn health_of(unit: &str, text: &str) -> Result<StackHealth> {
    serde_json::from_str(text).map_err(|e| {
        crate::backend::bad_row("stack_health", unit, "state", format!("not a health: {e}"))
    })
}

pub(crate) fn plan_use_row(
    (plan_digest, change_id, unit, outcome, token, claimed_at, ended_at): (
        String,
        String,
        String,
        String,
        i64,
        i64,
        Option<i64>,
    ),
) -> Result<PlanUseRow> {
    let state = PlanUseState::parse(&outcome).ok_or_else(|| {
        crate::backend::bad_row("plan_uses", &plan_digest, "outcome", outcome.clone())
    })?;
    Ok(PlanUseRow {
        plan_digest,
        change_id,
        unit,
        state,
        token: token.max(0) as u64,
        claimed_at,
        ended_at,
    })
}

macro_rules! impl_release_store {
    ($ty:ty) => {
        impl $crate::release::ReleaseStore for $ty {
            async fn put_approval(
                &self,
                row: &$crate::release::ApprovalRow,
            ) -> $crate::error::Result<()> {
                sqlx::query(
                    "INSERT INTO approvals (change_id, approver, body, envelope_digest, \
                     created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (envelope_digest) DO NOTHING",
                )
                .bind(&row.change_id)
                .bind(&row.approver)
                .bind(row.body.to_string())
                .bind(row.envelope.0.to_vec())
                .bind(row.created_at)
                .execute(&self.pool)
                .await
                .map_err(self.fail("recording an approval"))?;
                Ok(())
            }

            async fn approvals(
                &self,
                change_id: &str,
            ) -> $crate::error::Result<Vec<$crate::release::ApprovalRow>> {
                let rows: Vec<(String, String, String, Vec<u8>, i64)> = sqlx::query_as(
                    "SELECT change_id, approver, body, envelope_digest, created_at FROM approvals \
                     WHERE change_id = $1 ORDER BY id",
                )
                .bind(change_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::error::db("reading approvals"))?;
                rows.into_iter()
                    .map(|(change_id, approver, body, envelope, created_at)| {
                        Ok($crate::release::ApprovalRow {
                            body: $crate::backend::row_json(&body, "approvals", &change_id, "body")?,
                            envelope: $crate::records::Digest($crate::backend::row_hash(
                                &envelope,
                                "approvals",
                                &change_id,
                                "envelope_digest",
                            )?),
                            change_id,
                            approver,
                            created_at,
                        })
                    })
                    .collect()
            }

            async fn claim_plan(
                &self,
                plan_digest: &str,
                change_id: &str,
                unit: &str,
                token: u64,
            ) -> $crate::error::Result<Option<$crate::release::PlanUseRow>> {
                let done = sqlx::query(
                    "INSERT INTO plan_uses (plan_digest, change_id, unit, outcome, token, \
                     claimed_at) VALUES ($1, $2, $3, 'applying', $4, $5) \
                     ON CONFLICT (plan_digest) DO NOTHING",
                )
                .bind(plan_digest)
                .bind(change_id)
                .bind(unit)
                .bind($crate::backend::to_i64(token, "plan use")?)
                .bind($crate::records::now_millis())
                .execute(&self.pool)
                .await
                .map_err(self.fail("claiming a plan"))?;
                if done.rows_affected() == 1 {
                    return Ok(None);
                }
                self.plan_use(plan_digest).await
            }

            async fn end_plan_use(
                &self,
                plan_digest: &str,
                outcome: sluice_model::apply::PlanUse,
            ) -> $crate::error::Result<()> {
                let state = $crate::release::PlanUseState::Ended(outcome);
                let done = sqlx::query(
                    "UPDATE plan_uses SET outcome = $2, ended_at = $3 \
                     WHERE plan_digest = $1 AND outcome = 'applying'",
                )
                .bind(plan_digest)
                .bind(state.as_str())
                .bind($crate::records::now_millis())
                .execute(&self.pool)
                .await
                .map_err(self.fail("ending a plan use"))?;
                if done.rows_affected() != 1 {
                    return Err($crate::error::StoreError::Conflict {
                        what: "plan use",
                        detail: format!("{plan_digest} is not being applied"),
                    });
                }
                Ok(())
            }

            async fn plan_use(
                &self,
                plan_digest: &str,
            ) -> $crate::error::Result<Option<$crate::release::PlanUseRow>> {
                let row: Option<(String, String, String, String, i64, i64, Option<i64>)> =
                    sqlx::query_as(
                        "SELECT plan_digest, change_id, unit, outcome, token, claimed_at, \
                         ended_at FROM plan_uses WHERE plan_digest = $1",
                    )
                    .bind(plan_digest)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::error::db("reading a plan use"))?;
                row.map($crate::release::plan_use_row).transpose()
            }

            async fn health(
                &self,
                unit: &str,
            ) -> $crate::error::Result<sluice_model::apply::StackHealth> {
                let state: Option<String> =
                    sqlx::query_scalar("SELECT state FROM stack_health WHERE unit = $1")
                        .bind(unit)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::error::db("reading a stack's health"))?;
                match state {
                    Some(s) => $crate::release::health_of(unit, &s),
                    None => Ok(sluice_model::apply::StackHealth::Healthy),
                }
            }

            async fn set_health(
                &self,
                unit: &str,
                health: &sluice_model::apply::StackHealth,
            ) -> $crate::error::Result<()> {
                if *health == sluice_model::apply::StackHealth::Healthy {
                    sqlx::query("DELETE FROM stack_health WHERE unit = $1")
                        .bind(unit)
                        .execute(&self.pool)
                        .await
                        .map_err(self.fail("recording a stack's health"))?;
                    return Ok(());
                }
                sqlx::query(
                    "INSERT INTO stack_health (unit, state, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (unit) DO UPDATE SET state = excluded.state, \
                     updated_at = excluded.updated_at",
                )
                .bind(unit)
                .bind($crate::release::health_json_pub(health)?)
                .bind($crate::records::now_millis())
                .execute(&self.pool)
                .await
                .map_err(self.fail("recording a stack's health"))?;
                Ok(())
            }

            async fn unhealthy(
                &self,
            ) -> $crate::error::Result<Vec<(String, sluice_model::apply::StackHealth)>> {
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT unit, state FROM stack_health ORDER BY unit")
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::error::db("reading stack health"))?;
                rows.iter()
                    .map(|(u, s)| Ok((u.clone(), $crate::release::health_of(u, s)?)))
                    .collect()
            }
        }
    };
}

pub(crate) fn health_json_pub(health: &StackHealth) -> Result<String> {
    health_json(health)
}

impl_release_store!(crate::SqliteStore);
impl_release_store!(crate::PgStore);

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            crate::AnyStore::Sqlite($s) => $call,
            crate::AnyStore::Postgres($s) => $call,
        }
    };
}

impl ReleaseStore for crate::AnyStore {
    async fn put_approval(&self, row: &ApprovalRow) -> Result<()> {
        delegate!(self, s => s.put_approval(row).await)
    }
    async fn approvals(&self, change_id: &str) -> Result<Vec<ApprovalRow>> {
        delegate!(self, s => s.approvals(change_id).await)
    }
    async fn claim_plan(
        &self,
        plan_digest: &str,
        change_id: &str,
        unit: &str,
        token: u64,
    ) -> Result<Option<PlanUseRow>> {
        delegate!(self, s => s.claim_plan(plan_digest, change_id, unit, token).await)
    }
    async fn end_plan_use(&self, plan_digest: &str, outcome: PlanUse) -> Result<()> {
        delegate!(self, s => s.end_plan_use(plan_digest, outcome).await)
    }
    async fn plan_use(&self, plan_digest: &str) -> Result<Option<PlanUseRow>> {
        delegate!(self, s => s.plan_use(plan_digest).await)
    }
    async fn health(&self, unit: &str) -> Result<StackHealth> {
        delegate!(self, s => s.health(unit).await)
    }
    async fn set_health(&self, unit: &str, health: &StackHealth) -> Result<()> {
        delegate!(self, s => s.set_health(unit, health).await)
    }
    async fn unhealthy(&self) -> Result<Vec<(String, StackHealth)>> {
        delegate!(self, s => s.unhealthy().await)
    }
}
