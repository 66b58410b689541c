//! Break-glass grants and the backport items they leave (DESIGN.md §15.3, docs/break-glass.md).
//!
//! The lifecycle is the model's (`sluice_model::breakglass`); this module keeps its records:
//!
//! - [`BreakGlassStore::open_grant`] writes a new grant and its audit event in one
//!   transaction: a grant that exists always has its `breakglass.opened` event, and the other
//!   way round.
//! - [`BreakGlassStore::update_grant`] writes a transition (a use, a close, an expiry) back
//!   whole, on the condition that the row is still what the caller read (so two appliers using
//!   one grant at once cannot lose a use, and a sweep and a close cannot both end it), together
//!   with the backport item the transition created and its event, in one transaction.
//! - [`BreakGlassStore::resolve_backport`] closes an item the same way.

use std::future::Future;

use sluice_model::breakglass::{BackportItem, BackportStatus, BreakGlassGrant, GrantState};

use crate::error::{Result, StoreError};
use crate::records::EventRecord;

/// Grants and backport items (see the module documentation).
pub trait BreakGlassStore: Send + Sync + 'static {
    /// Records a new grant with its audit event, atomically. A grant id used before is a
    /// conflict, and nothing is written.
    fn open_grant(
        &self,
        grant: &BreakGlassGrant,
        event: &EventRecord,
    ) -> impl Future<Output = Result<()>> + Send;

    fn grant(&self, id: &str) -> impl Future<Output = Result<Option<BreakGlassGrant>>> + Send;

    /// Every grant (of `unit`, when given), oldest first.
    fn grants(
        &self,
        unit: Option<&str>,
    ) -> impl Future<Output = Result<Vec<BreakGlassGrant>>> + Send;

    /// Writes `after` over `before`, with the backport item it created and its event, in one
    /// transaction. `Ok(false)` (nothing written) when the stored grant is no longer `before`:
    /// someone else moved it; read it again.
    fn update_grant(
        &self,
        before: &BreakGlassGrant,
        after: &BreakGlassGrant,
        backport: Option<&BackportItem>,
        event: &EventRecord,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Backport items, oldest first; only the open ones when `open_only`.
    fn backports(&self, open_only: bool) -> impl Future<Output = Result<Vec<BackportItem>>> + Send;

    /// Writes a resolved item over the open one, with its event. `Ok(false)` when the item is
    /// not open any more (or does not exist).
    fn resolve_backport(
        &self,
        resolved: &BackportItem,
        event: &EventRecord,
    ) -> impl Future<Output = Result<bool>> + Send;
}

pub(crate) fn state_name(grant: &BreakGlassGrant) -> &'static str {
    match grant.state {
        GrantState::Open => "open",
        GrantState::Closed { .. } => "closed",
        GrantState::Expired { .. } => "expired",
    }
}

pub(crate) fn status_name(item: &BackportItem) -> &'static str {
    match item.status {
        BackportStatus::Open => "open",
        BackportStatus::Resolved { .. } => "resolved",
    }
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T, record: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid {
        record,
        field: "body",
        problem: e.to_string(),
    })
}

pub(crate) fn grant_of(id: &str, body: &str) -> Result<BreakGlassGrant> {
    serde_json::from_str(body).map_err(|e| {
        crate::backend::bad_row(
            "break_glass_grants",
            id,
            "body",
            format!("not a grant: {e}"),
        )
    })
}

pub(crate) fn item_of(id: &str, body: &str) -> Result<BackportItem> {
    serde_json::from_str(body).map_err(|e| {
        crate::backend::bad_row(
            "backport_items",
            id,
            "body",
            format!("not a backport item: {e}"),
        )
    })
}

pub(crate) fn check_event(event: &EventRecord) -> Result<()> {
    for (field, value) in [("change_id", &event.change_id), ("kind", &event.kind)] {
        if value.trim().is_empty() {
            return Err(StoreError::Invalid {
                record: "event",
                field,
                problem: "must not be empty".into(),
            });
        }
    }
    Ok(())
}

macro_rules! impl_break_glass_store {
    ($ty:ty, $db:ty) => {
        impl $ty {
            async fn insert_event_on(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                event: &$crate::records::EventRecord,
            ) -> $crate::error::Result<()> {
                $crate::breakglass::check_event(event)?;
                sqlx::query(
                    "INSERT INTO events (change_id, kind, payload, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&event.change_id)
                .bind(&event.kind)
                .bind(event.payload.to_string())
                .bind(event.created_at)
                .execute(&mut *conn)
                .await
                .map_err(self.fail("recording a break-glass event"))?;
                Ok(())
            }
        }

        impl $crate::breakglass::BreakGlassStore for $ty {
            async fn open_grant(
                &self,
                grant: &sluice_model::breakglass::BreakGlassGrant,
                event: &$crate::records::EventRecord,
            ) -> $crate::error::Result<()> {
                $crate::breakglass::check_event(event)?;
                let body = $crate::breakglass::to_json(grant, "break-glass grant")?;
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "INSERT INTO break_glass_grants (id, unit, opened_by, state, opened_at, \
                     expires_at, uses, body, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&grant.id)
                .bind(&grant.unit)
                .bind(&grant.opened_by)
                .bind($crate::breakglass::state_name(grant))
                .bind(grant.opened_at.unix_seconds())
                .bind(grant.expires_at.unix_seconds())
                .bind(i64::from(grant.uses))
                .bind(&body)
                .bind($crate::records::now_millis())
                .execute(&mut *tx)
                .await
                .map_err(self.fail("recording a break-glass grant"))?;
                if done.rows_affected() != 1 {
                    return Err($crate::error::StoreError::Conflict {
                        what: "break-glass grant",
                        detail: format!("grant {} already exists", grant.id),
                    });
                }
                self.insert_event_on(&mut *tx, event).await?;
                tx.commit()
                    .await
                    .map_err($crate::error::durability("committing a break-glass grant"))?;
                Ok(())
            }

            async fn grant(
                &self,
                id: &str,
            ) -> $crate::error::Result<Option<sluice_model::breakglass::BreakGlassGrant>> {
                let body: Option<String> =
                    sqlx::query_scalar("SELECT body FROM break_glass_grants WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::error::db("reading a break-glass grant"))?;
                body.map(|b| $crate::breakglass::grant_of(id, &b))
                    .transpose()
            }

            async fn grants(
                &self,
                unit: Option<&str>,
            ) -> $crate::error::Result<Vec<sluice_model::breakglass::BreakGlassGrant>> {
                let rows: Vec<(String, String)> = match unit {
                    Some(u) => sqlx::query_as(
                        "SELECT id, body FROM break_glass_grants WHERE unit = $1 \
                         ORDER BY opened_at, id",
                    )
                    .bind(u)
                    .fetch_all(&self.pool)
                    .await,
                    None => sqlx::query_as(
                        "SELECT id, body FROM break_glass_grants ORDER BY opened_at, id",
                    )
                    .fetch_all(&self.pool)
                    .await,
                }
                .map_err($crate::error::db("reading break-glass grants"))?;
                rows.iter()
                    .map(|(id, b)| $crate::breakglass::grant_of(id, b))
                    .collect()
            }

            async fn update_grant(
                &self,
                before: &sluice_model::breakglass::BreakGlassGrant,
                after: &sluice_model::breakglass::BreakGlassGrant,
                backport: Option<&sluice_model::breakglass::BackportItem>,
                event: &$crate::records::EventRecord,
            ) -> $crate::error::Result<bool> {
                if before.id != after.id {
                    return Err($crate::error::StoreError::Invalid {
                        record: "break-glass grant",
                        field: "id",
                        problem: format!("{} cannot become {}", before.id, after.id),
                    });
                }
                $crate::breakglass::check_event(event)?;
                let old = $crate::breakglass::to_json(before, "break-glass grant")?;
                let new = $crate::breakglass::to_json(after, "break-glass grant")?;
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE break_glass_grants SET state = $3, uses = $4, body = $5, \
                     updated_at = $6 WHERE id = $1 AND body = $2",
                )
                .bind(&after.id)
                .bind(&old)
                .bind($crate::breakglass::state_name(after))
                .bind(i64::from(after.uses))
                .bind(&new)
                .bind($crate::records::now_millis())
                .execute(&mut *tx)
                .await
                .map_err(self.fail("updating a break-glass grant"))?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                if let Some(item) = backport {
                    sqlx::query(
                        "INSERT INTO backport_items (grant_id, unit, status, body, created_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&item.grant)
                    .bind(&item.unit)
                    .bind($crate::breakglass::status_name(item))
                    .bind($crate::breakglass::to_json(item, "backport item")?)
                    .bind($crate::records::now_millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(self.fail("recording a backport item"))?;
                }
                self.insert_event_on(&mut *tx, event).await?;
                tx.commit()
                    .await
                    .map_err($crate::error::durability("committing a break-glass grant"))?;
                Ok(true)
            }

            async fn backports(
                &self,
                open_only: bool,
            ) -> $crate::error::Result<Vec<sluice_model::breakglass::BackportItem>> {
                let sql = if open_only {
                    "SELECT grant_id, body FROM backport_items WHERE status = 'open' \
                     ORDER BY created_at, grant_id"
                } else {
                    "SELECT grant_id, body FROM backport_items ORDER BY created_at, grant_id"
                };
                let rows: Vec<(String, String)> = sqlx::query_as(sql)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::error::db("reading backport items"))?;
                rows.iter()
                    .map(|(id, b)| $crate::breakglass::item_of(id, b))
                    .collect()
            }

            async fn resolve_backport(
                &self,
                resolved: &sluice_model::breakglass::BackportItem,
                event: &$crate::records::EventRecord,
            ) -> $crate::error::Result<bool> {
                if resolved.is_open() {
                    return Err($crate::error::StoreError::Invalid {
                        record: "backport item",
                        field: "status",
                        problem: "a resolution must be resolved".into(),
                    });
                }
                $crate::breakglass::check_event(event)?;
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE backport_items SET status = 'resolved', body = $2, resolved_at = $3 \
                     WHERE grant_id = $1 AND status = 'open'",
                )
                .bind(&resolved.grant)
                .bind($crate::breakglass::to_json(resolved, "backport item")?)
                .bind($crate::records::now_millis())
                .execute(&mut *tx)
                .await
                .map_err(self.fail("resolving a backport item"))?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                self.insert_event_on(&mut *tx, event).await?;
                tx.commit()
                    .await
                    .map_err($crate::error::durability("committing a backport resolution"))?;
                Ok(true)
            }
        }
    };
}

impl_break_glass_store!(crate::SqliteStore, sqlx::Sqlite);
impl_break_glass_store!(crate::PgStore, sqlx::Postgres);

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            crate::AnyStore::Sqlite($s) => $call,
            crate::AnyStore::Postgres($s) => $call,
        }
    };
}

impl BreakGlassStore for crate::AnyStore {
    async fn open_grant(&self, grant: &BreakGlassGrant, event: &EventRecord) -> Result<()> {
        delegate!(self, s => s.open_grant(grant, event).await)
    }
    async fn grant(&self, id: &str) -> Result<Option<BreakGlassGrant>> {
        delegate!(self, s => s.grant(id).await)
    }
    async fn grants(&self, unit: Option<&str>) -> Result<Vec<BreakGlassGrant>> {
        delegate!(self, s => s.grants(unit).await)
    }
    async fn update_grant(
        &self,
        before: &BreakGlassGrant,
        after: &BreakGlassGrant,
        backport: Option<&BackportItem>,
        event: &EventRecord,
    ) -> Result<bool> {
        delegate!(self, s => s.update_grant(before, after, backport, event).await)
    }
    async fn backports(&self, open_only: bool) -> Result<Vec<BackportItem>> {
        delegate!(self, s => s.backports(open_only).await)
    }
    async fn resolve_backport(&self, resolved: &BackportItem, event: &EventRecord) -> Result<bool> {
        delegate!(self, s => s.resolve_backport(resolved, event).await)
    }
}
