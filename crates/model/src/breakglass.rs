//! Break-glass grants (reference architecture §15.3): a time-boxed permission, opened by a member
//! of the configured break-glass group with a mandatory reason, to apply one unit without the
//! normal approvals, never without its lock.
//!
//! This module is the pure lifecycle: open → used (each use an evidence event, recorded by the
//! caller) → closed or expired → a backport item that stays open until a merged PR brings Git back
//! in line with what was applied. The current time is always a parameter.
//!
//! Also the decisions around it: the `break_glass:` section ([`BreakGlassConfig::from_json`],
//! TTLs by [`parse_ttl`]), what a grant waives at the apply gate ([`waives`], [`justify`]: the
//! approvals and a pending `after_merge` merge, never a policy deny, a used plan or the lock),
//! which grant of a stack is usable ([`usable_grant`]), and which backport items are still owed
//! ([`outstanding`], [`pending_for`], [`resolved_by`]).

use serde::{Deserialize, Serialize};

use crate::apply::GateRefusal;
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum GrantState {
    Open,
    Closed { by: String, at: Timestamp },
    Expired { at: Timestamp },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackportItem {
    pub grant: String,
    pub unit: String,
    pub opened_by: String,
    pub reason: String,
    pub uses: u32,
    pub ended_at: Timestamp,
    pub status: BackportStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

// ---------------------------------------------------------------------------------------------
// Configuration: `break_glass: { group, max_ttl }`
// ---------------------------------------------------------------------------------------------

/// A problem in the `break_glass:` section, at a path such as `break_glass.max_ttl`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

/// The longest `max_ttl` sluice accepts: a break-glass is for an incident, not a standing
/// permission.
pub const TTL_CEILING_SECS: i64 = 7 * 86_400;

/// Parses a TTL such as `90s`, `30m`, `1h`, `1h30m` or `2d` into seconds. Units: `s`, `m`,
/// `h`, `d`; each number needs one; the total must be positive.
pub fn parse_ttl(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("a TTL is empty; write e.g. `30m`, `1h` or `1h30m`".into());
    }
    let mut total: i64 = 0;
    let mut number = String::new();
    for (i, c) in t.char_indices() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "`{t}`: unexpected `{c}` at character {}; units are s, m, h and d (e.g. `1h30m`)",
                    i + 1
                ));
            }
        };
        if number.is_empty() {
            return Err(format!(
                "`{t}`: `{c}` at character {} has no number before it",
                i + 1
            ));
        }
        let n: i64 = number
            .parse()
            .map_err(|_| format!("`{t}`: {number} is too large"))?;
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| format!("`{t}` is too large"))?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!(
            "`{t}`: {number} has no unit; write e.g. `{number}m` or `{number}h`"
        ));
    }
    if total <= 0 {
        return Err(format!("`{t}` is not a positive duration"));
    }
    Ok(total)
}

/// Formats seconds the way [`parse_ttl`] reads them (`1h30m`).
pub fn format_ttl(secs: i64) -> String {
    if secs <= 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

impl BreakGlassConfig {
    /// Reads `break_glass:` (as JSON, the way the config loader keeps later sections):
    /// `group` (an `@org/team` group, required) and `max_ttl` (a duration, default `4h`, at
    /// most [`TTL_CEILING_SECS`]).
    pub fn from_json(value: &serde_json::Value) -> Result<BreakGlassConfig, ConfigError> {
        let err = |path: &str, message: String| ConfigError {
            path: path.to_string(),
            message,
        };
        let map = value.as_object().ok_or_else(|| {
            err(
                "break_glass",
                "must be a mapping with `group` and `max_ttl`".into(),
            )
        })?;
        if let Some(k) = map.keys().find(|k| *k != "group" && *k != "max_ttl") {
            return Err(err(
                &format!("break_glass.{k}"),
                format!("unknown key `{k}`; expected `group` or `max_ttl`"),
            ));
        }
        let group = match map.get("group") {
            None => {
                return Err(err(
                    "break_glass.group",
                    "is required: the group whose members may open a grant (e.g. `@acme/sre-oncall`)"
                        .into(),
                ));
            }
            Some(serde_json::Value::String(g)) if g.starts_with('@') && g.len() > 1 => g.clone(),
            Some(other) => {
                return Err(err(
                    "break_glass.group",
                    format!("must be a group such as `@acme/sre-oncall`, found {other}"),
                ));
            }
        };
        let max_ttl_secs = match map.get("max_ttl") {
            None => DEFAULT_MAX_TTL_SECS,
            Some(serde_json::Value::String(t)) => {
                parse_ttl(t).map_err(|m| err("break_glass.max_ttl", m))?
            }
            Some(other) => {
                return Err(err(
                    "break_glass.max_ttl",
                    format!("must be a duration such as `4h`, found {other}"),
                ));
            }
        };
        if max_ttl_secs > TTL_CEILING_SECS {
            return Err(err(
                "break_glass.max_ttl",
                format!(
                    "{} exceeds the ceiling of {}: a break-glass grant is for an incident",
                    format_ttl(max_ttl_secs),
                    format_ttl(TTL_CEILING_SECS)
                ),
            ));
        }
        Ok(BreakGlassConfig {
            group,
            max_ttl_secs,
        })
    }
}

/// `max_ttl` when the section does not say.
pub const DEFAULT_MAX_TTL_SECS: i64 = 4 * 3600;

// ---------------------------------------------------------------------------------------------
// What a grant lets an apply skip
// ---------------------------------------------------------------------------------------------

/// Whether an open grant waives `refusal` of the apply gate.
///
/// A grant replaces the *people* of the normal path, nothing else (§15.3: explicit, audited,
/// time-bounded, immutable artifact deployment): missing approvals, and an `after_merge` PR not
/// merged yet (in an incident the fix is applied from its branch; the backport item then
/// tracks the merge). Everything about *what* is applied still holds: the plan must have
/// passed, be the recorded one and never used; policy must have been evaluated and must not
/// deny (a deny needs a policy exception, the other escape hatch, §15.3); a degraded stack
/// needs recovery first; a closed or already merged PR is not applied from.
pub fn waives(refusal: &GateRefusal) -> bool {
    match refusal {
        GateRefusal::ApprovalsMissing { .. } | GateRefusal::NotMerged => true,
        GateRefusal::PlanNotRun
        | GateRefusal::PlanFailed { .. }
        | GateRefusal::NotThePlan { .. }
        | GateRefusal::PolicyNotEvaluated
        | GateRefusal::PolicyDenied { .. }
        | GateRefusal::DecisionDiffers { .. }
        | GateRefusal::MergedElsewhere
        | GateRefusal::AlreadyMerged
        | GateRefusal::Closed
        | GateRefusal::PlanAlreadyApplied
        | GateRefusal::PlanAlreadyFailed
        | GateRefusal::PlanStale
        | GateRefusal::Degraded { .. }
        | GateRefusal::PlanPredatesRefresh { .. } => false,
    }
}

/// The gate's refusals under a grant: `(remaining, waived)`. The apply may go ahead only when
/// `remaining` is empty, and it then records `waived` in its evidence.
pub fn justify(refusals: Vec<GateRefusal>) -> (Vec<GateRefusal>, Vec<GateRefusal>) {
    refusals.into_iter().partition(|r| !waives(r))
}

/// The open grant of `unit` at `now` among `grants`, the newest if several.
pub fn usable_grant<'a>(
    grants: &'a [BreakGlassGrant],
    unit: &str,
    now: Timestamp,
) -> Option<&'a BreakGlassGrant> {
    grants
        .iter()
        .filter(|g| g.unit == unit && matches!(g.state_at(now), GrantState::Open))
        .max_by_key(|g| g.opened_at)
}

/// The grant of `unit` that most recently ended at `now` (expired or closed), to explain a
/// refusal: "grant bg-… expired at …".
pub fn last_ended_grant<'a>(
    grants: &'a [BreakGlassGrant],
    unit: &str,
    now: Timestamp,
) -> Option<&'a BreakGlassGrant> {
    grants
        .iter()
        .filter(|g| g.unit == unit && !matches!(g.state_at(now), GrantState::Open))
        .max_by_key(|g| g.opened_at)
}

/// Whether a change recorded on the default branch touching `touched_units` resolves `item`:
/// the open items of those units, in order. A merged PR (`--record` of a commit on the
/// default branch) that touches the unit brings Git back in line.
pub fn resolved_by<'a>(
    items: &'a [BackportItem],
    touched_units: &[String],
) -> Vec<&'a BackportItem> {
    items
        .iter()
        .filter(|i| i.is_open() && touched_units.contains(&i.unit))
        .collect()
}

/// The open backport items as of `now`: the recorded ones, plus the item of each used grant
/// whose expiry has passed but was not recorded yet (readers that do not write, such as the
/// API, see what a sweep would record).
pub fn outstanding(
    items: &[BackportItem],
    grants: &[BreakGlassGrant],
    now: Timestamp,
) -> Vec<BackportItem> {
    let mut out: Vec<BackportItem> = items.iter().filter(|i| i.is_open()).cloned().collect();
    for g in grants {
        if out.iter().any(|i| i.grant == g.id) || items.iter().any(|i| i.grant == g.id) {
            continue;
        }
        if let Some(item) = g.clone().settle(now) {
            out.push(item);
        }
    }
    out
}

/// The open backport items a PR report shows: those of the units the PR touches first (this PR
/// may be the backport), then the others (pending work of the org).
pub fn pending_for<'a>(
    items: &'a [BackportItem],
    touched_units: &[String],
) -> (Vec<&'a BackportItem>, Vec<&'a BackportItem>) {
    items
        .iter()
        .filter(|i| i.is_open())
        .partition(|i| touched_units.contains(&i.unit))
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

    #[test]
    fn ttls_parse_in_seconds_with_positioned_errors() {
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl(" 1h "), Ok(3600));
        assert_eq!(parse_ttl("1h30m"), Ok(5400));
        assert_eq!(parse_ttl("2d"), Ok(172_800));
        assert!(parse_ttl("").unwrap_err().contains("empty"));
        assert!(parse_ttl("10").unwrap_err().contains("has no unit"));
        assert!(parse_ttl("1x").unwrap_err().contains("character 2"));
        assert!(parse_ttl("h").unwrap_err().contains("no number"));
        assert!(parse_ttl("0m").unwrap_err().contains("not a positive"));
        assert!(parse_ttl("-1h").unwrap_err().contains("unexpected `-`"));
        assert!(
            parse_ttl("99999999999999999999h")
                .unwrap_err()
                .contains("too large")
        );
        for secs in [1, 59, 60, 61, 3600, 5400, 86_400, 90_061] {
            assert_eq!(parse_ttl(&format_ttl(secs)), Ok(secs), "{secs}");
        }
    }

    #[test]
    fn the_config_section_names_what_is_wrong() {
        let ok = BreakGlassConfig::from_json(
            &serde_json::json!({"group": "@acme/sre-oncall", "max_ttl": "2h"}),
        )
        .unwrap();
        assert_eq!(
            ok,
            BreakGlassConfig {
                group: "@acme/sre-oncall".into(),
                max_ttl_secs: 7200
            }
        );
        let default =
            BreakGlassConfig::from_json(&serde_json::json!({"group": "@acme/sre"})).unwrap();
        assert_eq!(default.max_ttl_secs, DEFAULT_MAX_TTL_SECS);
        let path = |v: serde_json::Value| BreakGlassConfig::from_json(&v).unwrap_err().path;
        assert_eq!(path(serde_json::json!("x")), "break_glass");
        assert_eq!(path(serde_json::json!({})), "break_glass.group");
        assert_eq!(
            path(serde_json::json!({"group": "sre"})),
            "break_glass.group"
        );
        assert_eq!(path(serde_json::json!({"group": 3})), "break_glass.group");
        assert_eq!(
            path(serde_json::json!({"group": "@a/b", "max_ttl": "soon"})),
            "break_glass.max_ttl"
        );
        assert_eq!(
            path(serde_json::json!({"group": "@a/b", "max_ttl": 3600})),
            "break_glass.max_ttl"
        );
        assert_eq!(
            path(serde_json::json!({"group": "@a/b", "max_ttl": "8d"})),
            "break_glass.max_ttl"
        );
        assert_eq!(
            path(serde_json::json!({"group": "@a/b", "ttl": "1h"})),
            "break_glass.ttl"
        );
    }

    #[test]
    fn a_grant_waives_only_approvals_and_the_pending_merge() {
        use crate::apply::{ApplyErrorClass, MissingApproval};
        use crate::binding::Subject;
        let plan = Subject::Plan("sha256:aa".into());
        // Every refusal the gate can give, each with what a grant does to it.
        let all = [
            (GateRefusal::PlanNotRun, false),
            (GateRefusal::PlanFailed { class: "x".into() }, false),
            (
                GateRefusal::NotThePlan {
                    planned: plan.clone(),
                    applying: Subject::Plan("sha256:bb".into()),
                },
                false,
            ),
            (GateRefusal::PolicyNotEvaluated, false),
            (
                GateRefusal::PolicyDenied {
                    decision_digest: "sha256:dd".into(),
                },
                false,
            ),
            (
                GateRefusal::DecisionDiffers {
                    evaluated: "a".into(),
                    applying: "b".into(),
                },
                false,
            ),
            (
                GateRefusal::ApprovalsMissing {
                    subject: plan.clone(),
                    missing: vec![MissingApproval {
                        approvers: vec!["@acme/platform".into()],
                        needed: 1,
                    }],
                },
                true,
            ),
            (GateRefusal::NotMerged, true),
            (GateRefusal::MergedElsewhere, false),
            (GateRefusal::AlreadyMerged, false),
            (GateRefusal::Closed, false),
            (GateRefusal::PlanAlreadyApplied, false),
            (GateRefusal::PlanAlreadyFailed, false),
            (GateRefusal::PlanStale, false),
            (
                GateRefusal::Degraded {
                    change: "c".into(),
                    at: t0(),
                    error: ApplyErrorClass::Killed,
                },
                false,
            ),
            (
                GateRefusal::PlanPredatesRefresh {
                    planned_at: t0(),
                    refreshed_at: t0(),
                },
                false,
            ),
        ];
        for (r, waived) in &all {
            assert_eq!(waives(r), *waived, "{r:?}");
        }
        let (remaining, waived) = justify(all.iter().map(|(r, _)| r.clone()).collect());
        assert_eq!(waived.len(), 2);
        assert_eq!(remaining.len(), all.len() - 2);
        assert!(remaining.iter().all(|r| !waives(r)));
        let (remaining, waived) = justify(vec![GateRefusal::NotMerged]);
        assert!(remaining.is_empty() && waived == vec![GateRefusal::NotMerged]);
    }

    #[test]
    fn the_usable_grant_is_the_newest_open_one_of_the_unit() {
        let mut a = grant();
        let mut b = open(
            &config(),
            &request(600),
            "bg-2".into(),
            t0().plus_seconds(10),
        )
        .unwrap();
        let mut other = request(3600);
        other.unit = "prod/eu-west-1/network".into();
        let c = open(&config(), &other, "bg-3".into(), t0().plus_seconds(20)).unwrap();
        let grants = vec![a.clone(), b.clone(), c.clone()];
        let now = t0().plus_seconds(30);
        assert_eq!(usable_grant(&grants, UNIT, now).unwrap().id, "bg-2");
        assert_eq!(
            usable_grant(&grants, "prod/eu-west-1/network", now)
                .unwrap()
                .id,
            "bg-3"
        );
        assert!(usable_grant(&grants, "dev/x/y", now).is_none());
        assert!(last_ended_grant(&grants, UNIT, now).is_none());
        // bg-2 expires first (600 s); bg-1 is then the one left.
        let later = t0().plus_seconds(700);
        assert_eq!(usable_grant(&grants, UNIT, later).unwrap().id, "bg-1");
        assert_eq!(last_ended_grant(&grants, UNIT, later).unwrap().id, "bg-2");
        b.close("bob", later);
        a.close("bob", later);
        let grants = vec![a, b, c];
        assert!(usable_grant(&grants, UNIT, later).is_none());
        assert_eq!(last_ended_grant(&grants, UNIT, later).unwrap().id, "bg-2");
    }

    #[test]
    fn pending_items_split_by_the_units_a_pr_touches() {
        let mut g = grant();
        g.use_for(UNIT, true, t0()).unwrap();
        let open_item = g.close("bob", t0().plus_seconds(5)).unwrap();
        let mut resolved = open_item.clone();
        resolved.grant = "bg-0".into();
        resolved.resolve(3, Some("abc"), &[UNIT.into()]).unwrap();
        let mut elsewhere = open_item.clone();
        elsewhere.grant = "bg-9".into();
        elsewhere.unit = "prod/eu-west-1/network".into();
        let items = vec![open_item.clone(), resolved, elsewhere.clone()];
        let (here, others) = pending_for(&items, &[UNIT.into()]);
        assert_eq!(here, vec![&open_item]);
        assert_eq!(others, vec![&elsewhere]);
        let (here, others) = pending_for(&items, &[]);
        assert!(here.is_empty());
        assert_eq!(others.len(), 2);
        assert_eq!(resolved_by(&items, &[UNIT.into()]), vec![&open_item]);
        assert!(resolved_by(&items, &["dev/a/b".into()]).is_empty());
    }

    #[test]
    fn grants_round_trip_as_json() {
        let mut g = grant();
        g.use_for(UNIT, true, t0()).unwrap();
        let item = g.close("bob", t0().plus_seconds(9)).unwrap();
        let back: BreakGlassGrant =
            serde_json::from_value(serde_json::to_value(&g).unwrap()).unwrap();
        assert_eq!(back, g);
        let back: BackportItem =
            serde_json::from_value(serde_json::to_value(&item).unwrap()).unwrap();
        assert_eq!(back, item);
    }

    #[test]
    fn outstanding_items_include_unrecorded_expiries() {
        let mut used = grant();
        used.use_for(UNIT, true, t0()).unwrap();
        let unused = open(&config(), &request(60), "bg-2".into(), t0()).unwrap();
        let mut closed = open(&config(), &request(60), "bg-3".into(), t0()).unwrap();
        closed.use_for(UNIT, true, t0()).unwrap();
        let recorded = closed.close("bob", t0().plus_seconds(1)).unwrap();
        let grants = vec![used.clone(), unused, closed];
        // Before the expiry only the recorded item.
        assert_eq!(
            outstanding(
                std::slice::from_ref(&recorded),
                &grants,
                t0().plus_seconds(10)
            ),
            vec![recorded.clone()]
        );
        // After it, the used grant's item too; the unused grant owes nothing.
        let later = outstanding(
            std::slice::from_ref(&recorded),
            &grants,
            t0().plus_seconds(3600),
        );
        assert_eq!(later.len(), 2);
        assert_eq!(later[1].grant, "bg-1");
        assert_eq!(later[1].ended_at, t0().plus_seconds(3600));
        // A resolved item is not outstanding, and its grant does not come back.
        let mut done = recorded.clone();
        done.resolve(1, Some("c"), &[UNIT.into()]).unwrap();
        let now = outstanding(&[done], &grants, t0().plus_seconds(3600));
        assert_eq!(
            now.iter().map(|i| i.grant.as_str()).collect::<Vec<_>>(),
            vec!["bg-1"]
        );
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
