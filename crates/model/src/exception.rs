//! Exceptions as code (DESIGN.md §3): a reviewed, expiring waiver of one policy for the resources
//! matching a glob over `unit/address` (`prod/eu-west-1/rds/aws_db_instance.main`).
//!
//! This module is the pure half: the typed exception, a strict RFC 3339 timestamp, matching,
//! expiry and the review notices (expired, expiry beyond the allowed maximum, unknown policy id,
//! duplicate id). Reading the YAML files with positions lives in the policy adapter. The current
//! time is always a parameter, so every decision here is reproducible in tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::glob::GlobList;

// ---------------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------------

/// An instant in UTC (seconds since the Unix epoch plus nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

/// Why a timestamp did not parse, with the byte offset of the offending character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {})", .offset + 1)]
pub struct TimeError {
    pub offset: usize,
    pub message: String,
}

const SECS_PER_DAY: i64 = 86_400;

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp { secs: 0, nanos: 0 };

    /// `nanos` above one second carry into `secs`.
    pub const fn from_unix(secs: i64, nanos: u32) -> Self {
        Timestamp {
            secs: secs + (nanos / 1_000_000_000) as i64,
            nanos: nanos % 1_000_000_000,
        }
    }

    pub const fn unix_seconds(self) -> i64 {
        self.secs
    }

    pub const fn subsec_nanos(self) -> u32 {
        self.nanos
    }

    pub const fn plus_seconds(self, secs: i64) -> Self {
        Timestamp {
            secs: self.secs.saturating_add(secs),
            nanos: self.nanos,
        }
    }

    pub const fn plus_days(self, days: i64) -> Self {
        self.plus_seconds(days.saturating_mul(SECS_PER_DAY))
    }

    /// Whole days from `self` until `later` (negative when `later` is earlier), rounded down.
    pub fn days_until(self, later: Timestamp) -> i64 {
        (later.secs - self.secs).div_euclid(SECS_PER_DAY)
    }

    /// Parse an RFC 3339 `date-time` (`2025-06-30T00:00:00Z`, `2025-06-30T08:00:00.5+02:00`).
    ///
    /// Strict on purpose: an expiry is an audit fact, so a date without a time or offset, a
    /// two-digit year or an out-of-range field is an error rather than a guess. `t`/`z` in lower
    /// case are accepted (RFC 3339 §5.6 NOTE); a leap second (`:60`) is read as `:59`.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimeError> {
        let mut p = Cursor {
            bytes: text.as_bytes(),
            pos: 0,
        };
        let year = p.digits(4, "year")?;
        p.expect(b'-', "`-` after the year")?;
        let month_at = p.pos;
        let month = p.digits(2, "month")?;
        p.expect(b'-', "`-` after the month")?;
        let day_at = p.pos;
        let day = p.digits(2, "day")?;
        if !(1..=12).contains(&month) {
            return Err(TimeError {
                offset: month_at,
                message: format!("month {month} is out of range 01-12"),
            });
        }
        let dim = days_in_month(year, month);
        if day < 1 || day > dim {
            return Err(TimeError {
                offset: day_at,
                message: format!("day {day} is out of range 01-{dim} for {year:04}-{month:02}"),
            });
        }
        match p.peek() {
            Some(b'T' | b't') => p.pos += 1,
            None => {
                return Err(TimeError {
                    offset: p.pos,
                    message: "a date alone is not enough: expected a date-time such as 2025-06-30T00:00:00Z".into(),
                });
            }
            Some(_) => {
                return Err(TimeError {
                    offset: p.pos,
                    message: "expected `T` between date and time".into(),
                });
            }
        }
        let hour_at = p.pos;
        let hour = p.digits(2, "hour")?;
        p.expect(b':', "`:` after the hour")?;
        let minute_at = p.pos;
        let minute = p.digits(2, "minute")?;
        p.expect(b':', "`:` after the minute")?;
        let second_at = p.pos;
        let mut second = p.digits(2, "second")?;
        for (value, max, at, what) in [
            (hour, 23, hour_at, "hour"),
            (minute, 59, minute_at, "minute"),
            (second, 60, second_at, "second"),
        ] {
            if value > max {
                return Err(TimeError {
                    offset: at,
                    message: format!("{what} {value} is out of range 00-{max}"),
                });
            }
        }
        if second == 60 {
            second = 59;
        }
        let mut nanos = 0u32;
        if p.peek() == Some(b'.') {
            p.pos += 1;
            let start = p.pos;
            while let Some(c @ b'0'..=b'9') = p.peek() {
                if p.pos - start < 9 {
                    nanos = nanos * 10 + u32::from(c - b'0');
                }
                p.pos += 1;
            }
            let n = p.pos - start;
            if n == 0 {
                return Err(TimeError {
                    offset: start,
                    message: "expected digits after the decimal point".into(),
                });
            }
            for _ in n..9 {
                nanos *= 10;
            }
        }
        let offset_secs: i64 = match p.peek() {
            Some(b'Z' | b'z') => {
                p.pos += 1;
                0
            }
            Some(sign @ (b'+' | b'-')) => {
                p.pos += 1;
                let oh_at = p.pos;
                let oh = p.digits(2, "offset hours")?;
                p.expect(b':', "`:` in the UTC offset")?;
                let om = p.digits(2, "offset minutes")?;
                if oh > 23 || om > 59 {
                    return Err(TimeError {
                        offset: oh_at,
                        message: format!("UTC offset {oh:02}:{om:02} is out of range"),
                    });
                }
                let s = i64::from(oh) * 3600 + i64::from(om) * 60;
                if sign == b'-' { -s } else { s }
            }
            _ => {
                return Err(TimeError {
                    offset: p.pos,
                    message: "expected a UTC offset: `Z` or `+hh:mm`/`-hh:mm`".into(),
                });
            }
        };
        if p.pos != text.len() {
            return Err(TimeError {
                offset: p.pos,
                message: "unexpected text after the date-time".into(),
            });
        }
        let days = days_from_civil(i64::from(year), month, day);
        let secs = days * SECS_PER_DAY
            + i64::from(hour) * 3600
            + i64::from(minute) * 60
            + i64::from(second)
            - offset_secs;
        Ok(Timestamp { secs, nanos })
    }

    /// RFC 3339 in UTC (`Z`), with a fraction only when there is one.
    pub fn to_rfc3339(self) -> String {
        let days = self.secs.div_euclid(SECS_PER_DAY);
        let rem = self.secs.rem_euclid(SECS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let mut out = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
        out.push('Z');
        out
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

/// The inverse of [`Serialize`]: stores read back the locks and records they wrote.
impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn digits(&mut self, n: usize, what: &str) -> Result<u32, TimeError> {
        let mut v = 0u32;
        for i in 0..n {
            match self.peek() {
                Some(c @ b'0'..=b'9') => {
                    v = v * 10 + u32::from(c - b'0');
                    self.pos += 1;
                }
                _ => {
                    return Err(TimeError {
                        offset: self.pos,
                        message: format!("expected {n} digits for the {what}, found {i}"),
                    });
                }
            }
        }
        Ok(v)
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), TimeError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(TimeError {
                offset: self.pos,
                message: format!("expected {what}"),
            })
        }
    }
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

// ---------------------------------------------------------------------------------------------
// Exceptions
// ---------------------------------------------------------------------------------------------

/// Where an exception was declared (repository path and 1-based line of its mapping).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SourceRef {
    pub file: String,
    pub line: u32,
}

/// The fields of an exception as written, before validation.
#[derive(Debug, Clone, Default)]
pub struct ExceptionSpec {
    pub id: String,
    pub policy: String,
    pub resources: Vec<String>,
    pub owner: String,
    pub approved_by: Vec<String>,
    pub reason: String,
    /// `None` when the field is absent: an exception without an expiry is invalid.
    pub expires_at: Option<String>,
    pub constraints: serde_json::Value,
}

/// A field of an exception that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct ExceptionError {
    /// The field as spelled in the YAML (`expiresAt`, `approvedBy`).
    pub field: &'static str,
    pub message: String,
    /// For `expiresAt`: byte offset inside the value where parsing failed.
    pub offset: Option<usize>,
}

fn field_error(field: &'static str, message: impl Into<String>) -> ExceptionError {
    ExceptionError {
        field,
        message: message.into(),
        offset: None,
    }
}

/// A validated exception.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exception {
    pub id: String,
    pub policy: String,
    /// Globs over `unit/address`; `*` stays within one path segment, `**` crosses segments.
    pub resource: Vec<String>,
    #[serde(skip)]
    matcher: GlobList,
    pub owner: String,
    pub approved_by: Vec<String>,
    pub reason: String,
    pub expires_at: Timestamp,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub constraints: serde_json::Value,
    pub source: SourceRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionStatus {
    Active,
    Expired,
}

fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Exception {
    /// Validate a spec. The first problem found is returned, in field order.
    pub fn new(spec: ExceptionSpec, source: SourceRef) -> Result<Exception, ExceptionError> {
        if spec.id.trim().is_empty() {
            return Err(field_error("id", "is required"));
        }
        if !is_valid_id(&spec.id) {
            return Err(field_error(
                "id",
                format!(
                    "`{}` is not a valid id: use letters, digits, `-`, `_` or `.` (at most 128)",
                    spec.id
                ),
            ));
        }
        if spec.policy.trim().is_empty() {
            return Err(field_error(
                "policy",
                "is required: the rule id the exception waives",
            ));
        }
        if spec.resources.is_empty() || spec.resources.iter().any(|r| r.trim().is_empty()) {
            return Err(field_error(
                "resource",
                "is required: a glob over `stack/address`, e.g. `prod/eu-west-1/data/aws_db_instance.main`",
            ));
        }
        let matcher =
            GlobList::new(&spec.resources).map_err(|e| field_error("resource", e.to_string()))?;
        if spec.owner.trim().is_empty() {
            return Err(field_error("owner", "is required"));
        }
        if spec.approved_by.is_empty() || spec.approved_by.iter().any(|a| a.trim().is_empty()) {
            return Err(field_error(
                "approvedBy",
                "is required: who approved the exception",
            ));
        }
        if spec.reason.trim().is_empty() {
            return Err(field_error("reason", "is required"));
        }
        let Some(expires) = spec.expires_at.as_deref() else {
            return Err(field_error(
                "expiresAt",
                "is required: every exception expires (RFC 3339, e.g. 2025-06-30T00:00:00Z)",
            ));
        };
        let expires_at = Timestamp::parse_rfc3339(expires).map_err(|e| ExceptionError {
            field: "expiresAt",
            message: format!("`{expires}` is not an RFC 3339 date-time: {}", e.message),
            offset: Some(e.offset),
        })?;
        if !(spec.constraints.is_null() || spec.constraints.is_object()) {
            return Err(field_error("constraints", "must be a mapping"));
        }
        Ok(Exception {
            id: spec.id,
            policy: spec.policy,
            resource: spec.resources,
            matcher,
            owner: spec.owner,
            approved_by: spec.approved_by,
            reason: spec.reason,
            expires_at,
            constraints: spec.constraints,
            source,
        })
    }

    /// Expired from the instant `expiresAt` is reached.
    pub fn status(&self, now: Timestamp) -> ExceptionStatus {
        if now >= self.expires_at {
            ExceptionStatus::Expired
        } else {
            ExceptionStatus::Active
        }
    }

    /// Whether the exception names this rule and its resource glob matches `subject`
    /// (see [`subject`]); expiry is not considered here.
    pub fn covers(&self, rule: &str, subject: &str) -> bool {
        self.policy == rule && self.matcher.is_match(subject)
    }
}

/// The string resource globs match: `unit/address`, or the unit alone for a result without an
/// address (a rule about the plan as a whole).
pub fn subject(unit: &str, address: Option<&str>) -> String {
    match address {
        Some(a) if !a.is_empty() && !unit.is_empty() => format!("{unit}/{a}"),
        Some(a) if !a.is_empty() => a.to_string(),
        _ => unit.to_string(),
    }
}

/// What the exceptions say about one policy result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// An active exception applies (the smallest id when several do).
    Excepted {
        id: String,
    },
    /// Only expired exceptions match: they are not honoured, and are reported.
    ExpiredOnly {
        ids: Vec<String>,
    },
    NotCovered,
}

/// Decide whether a result for `rule` on `subject` is excepted at `now`.
pub fn resolve(exceptions: &[Exception], rule: &str, subject: &str, now: Timestamp) -> Resolution {
    let mut active: Option<&str> = None;
    let mut expired = BTreeSet::new();
    for e in exceptions.iter().filter(|e| e.covers(rule, subject)) {
        match e.status(now) {
            ExceptionStatus::Active => {
                if active.is_none_or(|a| e.id.as_str() < a) {
                    active = Some(&e.id);
                }
            }
            ExceptionStatus::Expired => {
                expired.insert(e.id.clone());
            }
        }
    }
    match active {
        Some(id) => Resolution::Excepted { id: id.to_string() },
        None if !expired.is_empty() => Resolution::ExpiredOnly {
            ids: expired.into_iter().collect(),
        },
        None => Resolution::NotCovered,
    }
}

/// Default ceiling on how far in the future an exception may expire.
pub const DEFAULT_MAX_VALIDITY_DAYS: u32 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// Expired: ignored by evaluation (warning).
    Expired,
    /// Expires later than the configured maximum validity (warning).
    ExpiryBeyondMaximum,
    /// Names a policy id no loaded bundle declares (warning: it can never apply).
    UnknownPolicy,
    /// Two exceptions share an id (error: decision records would be ambiguous).
    DuplicateId,
}

impl NoticeKind {
    pub fn is_error(self) -> bool {
        self == NoticeKind::DuplicateId
    }
}

/// A finding about a loaded exception.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Notice {
    pub file: String,
    pub line: u32,
    pub exception: String,
    pub kind: NoticeKind,
    pub message: String,
}

/// Review loaded exceptions at `now`. `known_policies` is the set of rule ids the loaded
/// bundles can produce; `None` skips that check (no bundle information at hand).
pub fn review(
    exceptions: &[Exception],
    known_policies: Option<&BTreeSet<String>>,
    now: Timestamp,
    max_validity_days: u32,
) -> Vec<Notice> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<&str, &SourceRef> = BTreeMap::new();
    let ceiling = now.plus_days(i64::from(max_validity_days));
    for e in exceptions {
        let notice = |kind, message: String| Notice {
            file: e.source.file.clone(),
            line: e.source.line,
            exception: e.id.clone(),
            kind,
            message,
        };
        if let Some(first) = seen.get(e.id.as_str()) {
            out.push(notice(
                NoticeKind::DuplicateId,
                format!(
                    "exception id `{}` is already declared at {}:{}",
                    e.id, first.file, first.line
                ),
            ));
        } else {
            seen.insert(&e.id, &e.source);
        }
        match e.status(now) {
            ExceptionStatus::Expired => out.push(notice(
                NoticeKind::Expired,
                format!(
                    "exception `{}` expired at {} and is no longer honoured",
                    e.id, e.expires_at
                ),
            )),
            ExceptionStatus::Active if e.expires_at > ceiling => out.push(notice(
                NoticeKind::ExpiryBeyondMaximum,
                format!(
                    "exception `{}` expires at {}, {} days from now: beyond the {max_validity_days}-day maximum",
                    e.id,
                    e.expires_at,
                    now.days_until(e.expires_at)
                ),
            )),
            ExceptionStatus::Active => {}
        }
        if let Some(known) = known_policies
            && !known.contains(&e.policy)
        {
            out.push(notice(
                NoticeKind::UnknownPolicy,
                format!(
                    "exception `{}` names policy `{}`, which no loaded policy declares",
                    e.id, e.policy
                ),
            ));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn spec(id: &str, policy: &str, resource: &str, expires: &str) -> ExceptionSpec {
        ExceptionSpec {
            id: id.into(),
            policy: policy.into(),
            resources: vec![resource.into()],
            owner: "team-data".into(),
            approved_by: vec!["alice".into()],
            reason: "migration window".into(),
            expires_at: Some(expires.into()),
            constraints: serde_json::Value::Null,
        }
    }

    fn src() -> SourceRef {
        SourceRef {
            file: "security-exceptions/x.yaml".into(),
            line: 1,
        }
    }

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(ts("1970-01-01T00:00:00Z"), Timestamp::UNIX_EPOCH);
        assert_eq!(ts("2025-06-30T00:00:00Z").unix_seconds(), 1_751_241_600);
        assert_eq!(ts("2025-06-30T02:00:00+02:00"), ts("2025-06-30T00:00:00Z"));
        assert_eq!(ts("2025-06-29T19:30:00-04:30"), ts("2025-06-30T00:00:00Z"));
        assert_eq!(ts("2024-02-29t12:00:00.25z").subsec_nanos(), 250_000_000);
        assert_eq!(
            ts("2016-12-31T23:59:60Z"),
            ts("2016-12-31T23:59:59Z"),
            "leap second read as :59"
        );
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for (bad, offset) in [
            ("2025-06-30", 10),
            ("2025-06-30T00:00:00", 19),
            ("2025-13-01T00:00:00Z", 5),
            ("2025-02-29T00:00:00Z", 8),
            ("2025-06-30T24:00:00Z", 11),
            ("25-06-30T00:00:00Z", 2),
            ("2025-06-30 00:00:00Z", 10),
            ("2025-06-30T00:00:00.Z", 20),
            ("2025-06-30T00:00:00Zjunk", 20),
            ("2025-06-30T00:00:00+0200", 22),
            ("next tuesday", 0),
        ] {
            let e = Timestamp::parse_rfc3339(bad).unwrap_err();
            assert_eq!(e.offset, offset, "{bad}: {e}");
        }
    }

    #[test]
    fn formats_in_utc() {
        assert_eq!(
            ts("2025-06-30T02:00:00.120+02:00").to_rfc3339(),
            "2025-06-30T00:00:00.12Z"
        );
        assert_eq!(
            Timestamp::from_unix(-1, 0).to_rfc3339(),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn missing_expiry_is_invalid() {
        let mut s = spec(
            "EXC-1",
            "db-public-access",
            "prod/**",
            "2025-01-01T00:00:00Z",
        );
        s.expires_at = None;
        let e = Exception::new(s, src()).unwrap_err();
        assert_eq!(e.field, "expiresAt");
    }

    #[test]
    fn bad_expiry_names_field_and_offset() {
        let e =
            Exception::new(spec("EXC-1", "p", "a/**", "2025-02-30T00:00:00Z"), src()).unwrap_err();
        assert_eq!(e.field, "expiresAt");
        assert_eq!(e.offset, Some(8));
        assert!(e.message.contains("day 30"), "{}", e.message);
    }

    #[test]
    fn other_required_fields() {
        let mut s = spec("EXC-1", "p", "a/**", "2025-02-01T00:00:00Z");
        s.approved_by.clear();
        assert_eq!(Exception::new(s, src()).unwrap_err().field, "approvedBy");
        let s = spec("bad id!", "p", "a/**", "2025-02-01T00:00:00Z");
        assert_eq!(Exception::new(s, src()).unwrap_err().field, "id");
        let s = spec("E", "p", "a/[", "2025-02-01T00:00:00Z");
        assert_eq!(Exception::new(s, src()).unwrap_err().field, "resource");
        let mut s = spec("E", "p", "a/**", "2025-02-01T00:00:00Z");
        s.constraints = serde_json::json!([1]);
        assert_eq!(Exception::new(s, src()).unwrap_err().field, "constraints");
    }

    #[test]
    fn matching_is_by_policy_and_glob_over_unit_and_address() {
        let e = Exception::new(
            spec(
                "EXC-1",
                "db-public-access",
                "prod/*/data/aws_db_instance.*",
                "2030-01-01T00:00:00Z",
            ),
            src(),
        )
        .unwrap();
        let hit = subject("prod/eu-west-1/data", Some("aws_db_instance.main"));
        assert!(e.covers("db-public-access", &hit));
        assert!(!e.covers("s3-public-access", &hit));
        // `*` does not cross into a module path.
        assert!(!e.covers(
            "db-public-access",
            &subject("prod/eu-west-1/data", Some("module.x/aws_db_instance.main"))
        ));
        assert!(!e.covers(
            "db-public-access",
            &subject("stage/eu-west-1/data", Some("aws_db_instance.main"))
        ));
    }

    #[test]
    fn expired_exceptions_are_not_honoured_but_reported() {
        let now = ts("2025-06-01T00:00:00Z");
        let list = vec![
            Exception::new(spec("B-old", "p", "s/**", "2025-05-01T00:00:00Z"), src()).unwrap(),
            Exception::new(spec("A-old", "p", "s/**", "2025-06-01T00:00:00Z"), src()).unwrap(),
        ];
        assert_eq!(
            resolve(&list, "p", "s/x", now),
            Resolution::ExpiredOnly {
                ids: vec!["A-old".into(), "B-old".into()]
            }
        );
        let mut with_active = list.clone();
        with_active.push(
            Exception::new(spec("Z-new", "p", "s/**", "2025-07-01T00:00:00Z"), src()).unwrap(),
        );
        with_active.push(
            Exception::new(spec("M-new", "p", "s/**", "2025-07-01T00:00:00Z"), src()).unwrap(),
        );
        assert_eq!(
            resolve(&with_active, "p", "s/x", now),
            Resolution::Excepted { id: "M-new".into() }
        );
        assert_eq!(
            resolve(&with_active, "q", "s/x", now),
            Resolution::NotCovered
        );
    }

    #[test]
    fn review_reports_expiry_ceiling_unknown_policy_and_duplicates() {
        let now = ts("2025-06-01T00:00:00Z");
        let list = vec![
            Exception::new(spec("E1", "known", "s/**", "2025-06-15T00:00:00Z"), src()).unwrap(),
            Exception::new(spec("E2", "known", "s/**", "2026-06-15T00:00:00Z"), src()).unwrap(),
            Exception::new(spec("E3", "nope", "s/**", "2025-06-15T00:00:00Z"), src()).unwrap(),
            Exception::new(spec("E1", "known", "s/**", "2025-01-15T00:00:00Z"), src()).unwrap(),
        ];
        let known: BTreeSet<String> = ["known".to_string()].into();
        let notices = review(&list, Some(&known), now, DEFAULT_MAX_VALIDITY_DAYS);
        let kinds: Vec<(&str, NoticeKind)> = notices
            .iter()
            .map(|n| (n.exception.as_str(), n.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("E1", NoticeKind::Expired),
                ("E1", NoticeKind::DuplicateId),
                ("E2", NoticeKind::ExpiryBeyondMaximum),
                ("E3", NoticeKind::UnknownPolicy),
            ]
        );
        assert!(
            notices[2].message.contains("379 days"),
            "{}",
            notices[2].message
        );
        // Without bundle knowledge the unknown-policy check is skipped.
        assert!(
            review(&list, None, now, 400)
                .iter()
                .all(|n| n.kind != NoticeKind::UnknownPolicy
                    && n.kind != NoticeKind::ExpiryBeyondMaximum)
        );
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(secs in -62_135_596_800i64..253_402_300_799, nanos in 0u32..1_000_000_000) {
            let t = Timestamp::from_unix(secs, nanos);
            prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,40}") {
            let _ = Timestamp::parse_rfc3339(&s);
        }

        #[test]
        fn offsets_shift_the_instant(secs in 0i64..4_000_000_000, oh in 0u32..24, om in 0u32..60) {
            let base = Timestamp::from_unix(secs, 0);
            let utc = base.to_rfc3339();
            let local = Timestamp::from_unix(secs + i64::from(oh * 3600 + om * 60), 0).to_rfc3339();
            let with_offset = format!("{}+{oh:02}:{om:02}", local.trim_end_matches('Z'));
            prop_assert_eq!(Timestamp::parse_rfc3339(&with_offset).unwrap(), Timestamp::parse_rfc3339(&utc).unwrap());
        }

        #[test]
        fn expiry_is_a_strict_boundary(secs in 0i64..4_000_000_000, delta in -1000i64..1000) {
            let e = Exception::new(spec("E", "p", "**", &Timestamp::from_unix(secs, 0).to_rfc3339()), src()).unwrap();
            let now = Timestamp::from_unix(secs + delta, 0);
            prop_assert_eq!(e.status(now) == ExceptionStatus::Expired, delta >= 0);
        }
    }
}
