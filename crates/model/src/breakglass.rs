//! Break-glass grants (reference architecture §15.3): a time-boxed permission, opened by a member
//! of the configured break-glass group with a mandatory reason, to apply one unit without the
//! normal approvals, never without its lock.
//!
//! This module is the pure lifecycle: open → used (each use an evidence event, recorded by the
//! caller) → closed or expired → a backport item that stays open until a merged PR brings Git back
//! in line with what was applied. The current time is always a parameter.

use serde::Serialize;

use crate::exception::Timestamp;

/// The `break_glass:` settings of `sluice.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassConfig {
    /// The group whose members may open a grant (`@acme/sre-oncall`).
    pub group: String,
    /// The longest a grant may last, in seconds.
    pub max_ttl_secs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    /// The human who opens it (break-glass is a human act, §8).
    pub requester: String,
    /// The groups the requester belongs to, as the VCS host reports them.
    pub requester_groups: Vec<String>,
    pub unit: String,
    pub reason: String,
    pub ttl_secs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum GrantState {
    Open,
    Closed { by: String, at: Timestamp },
    Expired { at: Timestamp },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakGlassGrant {
    pub id: String,
    pub unit: String,
    pub opened_by: String,
    pub reason: String,
    pub opened_at: Timestamp,
    pub expires_at: Timestamp,
    /// How many applies ran under it.
    pub uses: u32,
    pub state: GrantState,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("`{requester}` is not a member of the break-glass group `{group}`")]
    NotInGroup { requester: String, group: String },
    #[error("a break-glass grant needs a reason")]
    ReasonMissing,
    #[error("the TTL must be positive")]
    TtlNotPositive,
    #[error("a TTL of {requested_secs}s exceeds the configured maximum of {max_secs}s")]
    TtlTooLong { requested_secs: i64, max_secs: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UseError {
    #[error("break-glass grant {id} expired at {at}")]
    Expired { id: String, at: Timestamp },
    #[error("break-glass grant {id} was closed by {by} at {at}")]
    Closed {
        id: String,
        by: String,
        at: Timestamp,
    },
    #[error("break-glass grant {id} is for `{granted}`, not `{requested}`")]
    OtherUnit {
        id: String,
        granted: String,
        requested: String,
    },
    #[error("break-glass never skips the lock: acquire the lock of `{unit}` first")]
    LockNotHeld { unit: String },
}

/// One apply under a grant: the data of its evidence event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantUse {
    pub grant: String,
    pub unit: String,
    pub opened_by: String,
    pub reason: String,
    pub at: Timestamp,
    /// 1 for the first use.
    pub number: u32,
}

/// Work owed after a break-glass: Git must be brought back in line with what was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackportItem {
    pub grant: String,
    pub unit: String,
    pub opened_by: String,
    pub reason: String,
    pub uses: u32,
    pub ended_at: Timestamp,
    pub status: BackportStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum BackportStatus {
    Open,
    Resolved { pr: u64, commit: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("PR #{pr} is not merged: only merged changes bring Git back in line")]
    NotMerged { pr: u64 },
    #[error("PR #{pr} does not touch `{unit}`")]
    OtherUnit { pr: u64, unit: String },
    #[error("the backport of grant {grant} was already resolved by PR #{pr}")]
    AlreadyResolved { grant: String, pr: u64 },
}

/// Open a grant for `req.unit`, valid from `now` for `req.ttl_secs`.
pub fn open(
    config: &BreakGlassConfig,
    req: &OpenRequest,
    id: String,
    now: Timestamp,
) -> Result<BreakGlassGrant, OpenError> {
    if !req.requester_groups.iter().any(|g| g == &config.group) {
        return Err(OpenError::NotInGroup {
            requester: req.requester.clone(),
            group: config.group.clone(),
        });
    }
    if req.reason.trim().is_empty() {
        return Err(OpenError::ReasonMissing);
    }
    if req.ttl_secs <= 0 {
        return Err(OpenError::TtlNotPositive);
    }
    if req.ttl_secs > config.max_ttl_secs {
        return Err(OpenError::TtlTooLong {
            requested_secs: req.ttl_secs,
            max_secs: config.max_ttl_secs,
        });
    }
    Ok(BreakGlassGrant {
        id,
        unit: req.unit.clone(),
        opened_by: req.requester.clone(),
        reason: req.reason.trim().to_string(),
        opened_at: now,
        expires_at: now.plus_seconds(req.ttl_secs),
        uses: 0,
        state: GrantState::Open,
    })
}

impl BreakGlassGrant {
    /// The state at `now`: an open grant past its expiry counts as expired even before
    /// [`settle`] records it.
    pub fn state_at(&self, now: Timestamp) -> GrantState {
        match &self.state {
            GrantState::Open if now >= self.expires_at => GrantState::Expired {
                at: self.expires_at,
            },
            s => s.clone(),
        }
    }

    /// Use the grant for one apply of `unit`. The caller must already hold the unit's lock.
    pub fn use_for(
        &mut self,
        unit: &str,
        holds_lock: bool,
        now: Timestamp,
    ) -> Result<GrantUse, UseError> {
        match self.state_at(now) {
            GrantState::Open => {}
            GrantState::Expired { at } => {
                return Err(UseError::Expired {
                    id: self.id.clone(),
                    at,
                });
            }
            GrantState::Closed { by, at } => {
                return Err(UseError::Closed {
                    id: self.id.clone(),
                    by,
                    at,
                });
            }
        }
        if unit != self.unit {
            return Err(UseError::OtherUnit {
                id: self.id.clone(),
                granted: self.unit.clone(),
                requested: unit.to_string(),
            });
        }
        if !holds_lock {
            return Err(UseError::LockNotHeld {
                unit: unit.to_string(),
            });
        }
        self.uses += 1;
        Ok(GrantUse {
            grant: self.id.clone(),
            unit: self.unit.clone(),
            opened_by: self.opened_by.clone(),
            reason: self.reason.clone(),
            at: now,
            number: self.uses,
        })
    }

    /// Close the grant early. Returns the backport item owed, if any apply ran under it. A grant
    /// past its expiry is settled as expired instead; one already ended stays as it is.
    pub fn close(&mut self, by: &str, now: Timestamp) -> Option<BackportItem> {
        if !matches!(self.state_at(now), GrantState::Open) {
            return self.settle(now);
        }
        self.state = GrantState::Closed {
            by: by.to_string(),
            at: now,
        };
        self.backport(now)
    }

    /// Record expiry once it has passed. Returns the backport item when this call is the one
    /// that ends the grant (so a periodic sweep creates each item once).
    pub fn settle(&mut self, now: Timestamp) -> Option<BackportItem> {
        match (&self.state, self.state_at(now)) {
            (GrantState::Open, GrantState::Expired { at }) => {
                self.state = GrantState::Expired { at };
                self.backport(at)
            }
            _ => None,
        }
    }

    fn backport(&self, ended_at: Timestamp) -> Option<BackportItem> {
        // Nothing applied, nothing to bring back in line.
        (self.uses > 0).then(|| BackportItem {
            grant: self.id.clone(),
            unit: self.unit.clone(),
            opened_by: self.opened_by.clone(),
            reason: self.reason.clone(),
            uses: self.uses,
            ended_at,
            status: BackportStatus::Open,
        })
    }
}

impl BackportItem {
    pub fn is_open(&self) -> bool {
        matches!(self.status, BackportStatus::Open)
    }

    /// Resolve with a PR; only a merged PR that touches the unit counts.
    pub fn resolve(
        &mut self,
        pr: u64,
        merged_commit: Option<&str>,
        touched_units: &[String],
    ) -> Result<(), ResolveError> {
        if let BackportStatus::Resolved { pr: by, .. } = &self.status {
            return Err(ResolveError::AlreadyResolved {
                grant: self.grant.clone(),
                pr: *by,
            });
        }
        let commit = merged_commit.ok_or(ResolveError::NotMerged { pr })?;
        if !touched_units.contains(&self.unit) {
            return Err(ResolveError::OtherUnit {
                pr,
                unit: self.unit.clone(),
            });
        }
        self.status = BackportStatus::Resolved {
            pr,
            commit: commit.to_string(),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UNIT: &str = "prod/eu-west-1/rds-payments";

    fn t0() -> Timestamp {
        Timestamp::parse_rfc3339("2026-12-06T03:00:00Z").unwrap()
    }

    fn config() -> BreakGlassConfig {
        BreakGlassConfig {
            group: "@acme/sre-oncall".into(),
            max_ttl_secs: 4 * 3600,
        }
    }

    fn request(ttl: i64) -> OpenRequest {
        OpenRequest {
            requester: "alice".into(),
            requester_groups: vec!["@acme/devs".into(), "@acme/sre-oncall".into()],
            unit: UNIT.into(),
            reason: "  INC-1234: failover stuck  ".into(),
            ttl_secs: ttl,
        }
    }

    fn grant() -> BreakGlassGrant {
        open(&config(), &request(3600), "bg-1".into(), t0()).unwrap()
    }

    #[test]
    fn open_checks_group_reason_and_ttl() {
        let g = grant();
        assert_eq!(g.expires_at, t0().plus_seconds(3600));
        assert_eq!(g.reason, "INC-1234: failover stuck");
        let mut outsider = request(3600);
        outsider.requester_groups = vec!["@acme/devs".into()];
        assert_eq!(
            open(&config(), &outsider, "x".into(), t0()),
            Err(OpenError::NotInGroup {
                requester: "alice".into(),
                group: "@acme/sre-oncall".into()
            })
        );
        let mut no_reason = request(3600);
        no_reason.reason = " \n".into();
        assert_eq!(
            open(&config(), &no_reason, "x".into(), t0()),
            Err(OpenError::ReasonMissing)
        );
        assert_eq!(
            open(&config(), &request(0), "x".into(), t0()),
            Err(OpenError::TtlNotPositive)
        );
        assert_eq!(
            open(&config(), &request(4 * 3600 + 1), "x".into(), t0()),
            Err(OpenError::TtlTooLong {
                requested_secs: 4 * 3600 + 1,
                max_secs: 4 * 3600
            })
        );
        assert!(open(&config(), &request(4 * 3600), "x".into(), t0()).is_ok());
    }

    #[test]
    fn use_needs_the_lock_the_unit_and_an_open_grant() {
        let mut g = grant();
        assert_eq!(
            g.use_for(UNIT, false, t0()),
            Err(UseError::LockNotHeld { unit: UNIT.into() })
        );
        assert!(matches!(
            g.use_for("prod/eu-west-1/network", true, t0()),
            Err(UseError::OtherUnit { .. })
        ));
        let u = g.use_for(UNIT, true, t0().plus_seconds(10)).unwrap();
        assert_eq!((u.number, u.grant.as_str()), (1, "bg-1"));
        assert_eq!(
            g.use_for(UNIT, true, t0().plus_seconds(20)).unwrap().number,
            2
        );
        // At the expiry instant the grant is over.
        assert_eq!(
            g.use_for(UNIT, true, t0().plus_seconds(3600)),
            Err(UseError::Expired {
                id: "bg-1".into(),
                at: t0().plus_seconds(3600)
            })
        );
        assert_eq!(g.uses, 2);
    }

    #[test]
    fn expiry_creates_one_backport_item_that_stays_open_until_a_merged_pr() {
        let mut g = grant();
        g.use_for(UNIT, true, t0()).unwrap();
        assert_eq!(g.settle(t0().plus_seconds(3599)), None);
        let mut item = g.settle(t0().plus_seconds(7200)).unwrap();
        assert_eq!(item.ended_at, t0().plus_seconds(3600));
        assert_eq!(item.uses, 1);
        assert_eq!(g.settle(t0().plus_seconds(9000)), None, "created once");
        assert!(item.is_open());
        assert_eq!(
            item.resolve(9, None, &[UNIT.into()]),
            Err(ResolveError::NotMerged { pr: 9 })
        );
        assert!(matches!(
            item.resolve(9, Some("abc"), &["prod/eu-west-1/network".into()]),
            Err(ResolveError::OtherUnit { .. })
        ));
        assert!(item.is_open());
        item.resolve(10, Some("abc123"), &[UNIT.into()]).unwrap();
        assert!(!item.is_open());
        assert_eq!(
            item.resolve(11, Some("def"), &[UNIT.into()]),
            Err(ResolveError::AlreadyResolved {
                grant: "bg-1".into(),
                pr: 10
            })
        );
    }

    #[test]
    fn close_ends_the_grant_and_refuses_later_use() {
        let mut g = grant();
        g.use_for(UNIT, true, t0()).unwrap();
        let item = g.close("bob", t0().plus_seconds(60)).unwrap();
        assert_eq!(item.ended_at, t0().plus_seconds(60));
        assert!(matches!(
            g.use_for(UNIT, true, t0().plus_seconds(61)),
            Err(UseError::Closed { by, .. }) if by == "bob"
        ));
        assert_eq!(g.close("bob", t0().plus_seconds(62)), None);
        assert_eq!(g.settle(t0().plus_seconds(99_999)), None);
    }

    #[test]
    fn an_unused_grant_leaves_nothing_to_backport() {
        let mut g = grant();
        assert_eq!(g.close("alice", t0().plus_seconds(5)), None);
        let mut g = grant();
        assert_eq!(g.settle(t0().plus_seconds(3600)), None);
        assert!(matches!(g.state, GrantState::Expired { .. }));
    }

    proptest! {
        #[test]
        fn no_use_after_expiry(ttl in 1i64..=14_400, after in 0i64..100_000) {
            let mut g = open(&config(), &request(ttl), "g".into(), t0()).unwrap();
            let now = t0().plus_seconds(after);
            let r = g.use_for(UNIT, true, now);
            prop_assert_eq!(r.is_ok(), after < ttl);
        }
    }
}
