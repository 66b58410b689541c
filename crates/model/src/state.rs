//! Remote state (DESIGN.md §3 "Stack", §6): the decisions the Terraform state backend makes,
//! without IO.
//!
//! - [`StateHeader::parse`] reads what the backend checks from a state body (`serial`,
//!   `lineage`, format `version`) and refuses a body that is not a Terraform state.
//! - [`check_write`] decides whether a new body may become the next version: a lower serial, a
//!   reused serial with other content, or a different lineage is refused unless an admin forces
//!   it with a reason; the same body again is a no-op (Terraform re-sends unchanged state).
//! - [`rollback_body`] turns an old version into the body of a new one, with the next serial, so
//!   history stays append-only and serials keep increasing.
//! - [`BackendLockInfo`] is the lock-info JSON Terraform's `http` backend client sends with
//!   `LOCK`/`UNLOCK` and expects back in a `423 Locked` answer.
//! - [`state_id_problem`] decides which state ids (`dev/ap-southeast-1/network`) are acceptable.

use serde::{Deserialize, Serialize};

/// What the backend reads from a Terraform state file (format version 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateHeader {
    /// The state file format (`version`), 4 for Terraform ≥ 0.12 and OpenTofu.
    pub format: u64,
    pub serial: u64,
    pub lineage: String,
}

/// Why a body is not a state the backend accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateBodyError {
    #[error("the state is not JSON: {0}")]
    NotJson(String),
    #[error("the state is not a JSON object")]
    NotObject,
    #[error("the state has no `{0}`")]
    Missing(&'static str),
    #[error("the state's `{field}` is not {expected}")]
    Invalid {
        field: &'static str,
        expected: &'static str,
    },
    #[error("state format version {0} is not supported (expected 3 or 4)")]
    UnsupportedFormat(u64),
}

impl StateHeader {
    /// Read the header of a state body. Errors never quote the body (it holds secrets).
    ///
    /// Only the three fields are built; the rest of a state (megabytes of resources) is
    /// checked as JSON and skipped, not turned into a tree of values.
    pub fn parse(body: &[u8]) -> Result<StateHeader, StateBodyError> {
        /// A field as it is in the body (`null` included), `None` only when absent.
        #[derive(Default)]
        struct Present(Option<serde_json::Value>);
        impl<'de> Deserialize<'de> for Present {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                serde_json::Value::deserialize(d).map(|v| Present(Some(v)))
            }
        }
        #[derive(Deserialize)]
        struct Fields {
            #[serde(default)]
            version: Present,
            #[serde(default)]
            serial: Present,
            #[serde(default)]
            lineage: Present,
        }
        // serde_json's messages name a line and column, never the input.
        let not_json = |e: serde_json::Error| StateBodyError::NotJson(e.to_string());
        // A struct would also be read from an array: anything but an object is refused first.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(not_json)?;
            return Err(StateBodyError::NotObject);
        }
        let fields: Fields = serde_json::from_slice(body).map_err(not_json)?;
        let mut obj = serde_json::Map::new();
        for (name, field) in [
            ("version", fields.version),
            ("serial", fields.serial),
            ("lineage", fields.lineage),
        ] {
            if let Present(Some(v)) = field {
                obj.insert(name.to_string(), v);
            }
        }
        StateHeader::from_value(&serde_json::Value::Object(obj))
    }

    pub fn from_value(value: &serde_json::Value) -> Result<StateHeader, StateBodyError> {
        let obj = value.as_object().ok_or(StateBodyError::NotObject)?;
        let uint = |field: &'static str| -> Result<u64, StateBodyError> {
            obj.get(field)
                .ok_or(StateBodyError::Missing(field))?
                .as_u64()
                .ok_or(StateBodyError::Invalid {
                    field,
                    expected: "a non-negative integer",
                })
        };
        let format = uint("version")?;
        if !(3..=4).contains(&format) {
            return Err(StateBodyError::UnsupportedFormat(format));
        }
        let serial = uint("serial")?;
        let lineage = obj
            .get("lineage")
            .ok_or(StateBodyError::Missing("lineage"))?
            .as_str()
            .filter(|l| !l.trim().is_empty())
            .ok_or(StateBodyError::Invalid {
                field: "lineage",
                expected: "a non-empty string",
            })?
            .to_string();
        Ok(StateHeader {
            format,
            serial,
            lineage,
        })
    }
}

/// The newest stored version, as [`check_write`] compares against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub version: u64,
    pub serial: u64,
    pub lineage: String,
    /// SHA-256 of the stored body.
    pub digest: [u8; 32],
}

/// An admin's override of the serial and lineage checks, recorded with the version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Force {
    pub admin: String,
    pub reason: String,
}

/// What to do with a write that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum WriteDecision {
    /// Store it as version `version`.
    NewVersion {
        version: u64,
        /// Set when a check was overridden: what it would have refused.
        overridden: Option<WriteRefusal>,
    },
    /// The body is the head's body: nothing to store (Terraform persists unchanged state).
    Unchanged { version: u64 },
}

/// Why a body may not become the next version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "refusal")]
pub enum WriteRefusal {
    #[error("serial {new} is lower than the stored serial {current}")]
    SerialRegression { current: u64, new: u64 },
    #[error("serial {serial} is already stored with different content")]
    SerialReused { serial: u64 },
    #[error("lineage `{new}` differs from the stored lineage `{current}`")]
    LineageChanged { current: String, new: String },
    #[error("forcing a write needs a reason (it is recorded with the version)")]
    ReasonRequired,
}

/// Whether `new` (with SHA-256 `digest`) may follow `head`. Pure: the store checks that the head
/// is still `head` when it commits.
pub fn check_write(
    head: Option<&Head>,
    new: &StateHeader,
    digest: &[u8; 32],
    force: Option<&Force>,
) -> Result<WriteDecision, WriteRefusal> {
    if force.is_some_and(|f| f.reason.trim().is_empty()) {
        return Err(WriteRefusal::ReasonRequired);
    }
    let Some(head) = head else {
        return Ok(WriteDecision::NewVersion {
            version: 1,
            overridden: None,
        });
    };
    if &head.digest == digest {
        return Ok(WriteDecision::Unchanged {
            version: head.version,
        });
    }
    let refusal = if new.lineage != head.lineage {
        Some(WriteRefusal::LineageChanged {
            current: head.lineage.clone(),
            new: new.lineage.clone(),
        })
    } else if new.serial < head.serial {
        Some(WriteRefusal::SerialRegression {
            current: head.serial,
            new: new.serial,
        })
    } else if new.serial == head.serial {
        Some(WriteRefusal::SerialReused { serial: new.serial })
    } else {
        None
    };
    match (refusal, force) {
        (Some(r), None) => Err(r),
        (overridden, _) => Ok(WriteDecision::NewVersion {
            version: head.version + 1,
            overridden,
        }),
    }
}

/// The body of a rollback to an old version: the old state with serial `head_serial + 1`, so
/// Terraform sees a newer state and the serial never goes back. Keys keep their order.
pub fn rollback_body(old: &[u8], head_serial: u64) -> Result<Vec<u8>, StateBodyError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(old).map_err(|e| StateBodyError::NotJson(e.to_string()))?;
    StateHeader::from_value(&value)?;
    let obj = value.as_object_mut().ok_or(StateBodyError::NotObject)?;
    obj.insert("serial".into(), serde_json::Value::from(head_serial + 1));
    let mut out = serde_json::to_vec_pretty(&value).expect("a JSON value serialises");
    out.push(b'\n');
    Ok(out)
}

/// The lock information Terraform's `http` backend sends as the body of `LOCK` and `UNLOCK`
/// (Go's `statemgr.LockInfo`), and expects back from a `423 Locked` to say who holds the lock.
/// Unknown fields are ignored; every field defaults to empty because `force-unlock` sends only
/// the `ID`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackendLockInfo {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Operation", default)]
    pub operation: String,
    #[serde(rename = "Info", default)]
    pub info: String,
    #[serde(rename = "Who", default)]
    pub who: String,
    #[serde(rename = "Version", default)]
    pub version: String,
    #[serde(rename = "Created", default)]
    pub created: String,
    #[serde(rename = "Path", default)]
    pub path: String,
}

/// Lock ids are client-chosen (a UUID from Terraform); bounded so they fit a column and a
/// change name.
pub const MAX_LOCK_ID: usize = 128;

impl BackendLockInfo {
    /// Why this lock info cannot be used to take a lock.
    pub fn problem(&self) -> Option<&'static str> {
        if self.id.trim().is_empty() {
            Some("the lock info has no ID")
        } else if self.id.len() > MAX_LOCK_ID {
            Some("the lock ID is longer than 128 characters")
        } else if self.id.chars().any(char::is_control) {
            Some("the lock ID contains control characters")
        } else {
            None
        }
    }
}

/// Longest state id accepted.
pub const MAX_STATE_ID: usize = 512;

/// Why a state id from a URL is not acceptable, or `None`. Ids are stack ids: `/`-separated
/// segments of letters, digits, `.`, `_`, `-`, `+`, `=`, `@` (no empty, `.` or `..` segment).
pub fn state_id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("the state id is empty: use /state/<stack id>".into());
    }
    if id.len() > MAX_STATE_ID {
        return Some(format!(
            "the state id is longer than {MAX_STATE_ID} characters"
        ));
    }
    for segment in id.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Some(format!("state id `{id}` has an empty, `.` or `..` segment"));
        }
        if let Some(c) = segment.chars().find(|c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '=' | '@'))
        }) {
            return Some(format!("state id `{id}` contains {c:?}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(serial: u64, lineage: &str) -> StateHeader {
        StateHeader {
            format: 4,
            serial,
            lineage: lineage.into(),
        }
    }

    fn head(serial: u64, lineage: &str, digest: u8) -> Head {
        Head {
            version: 7,
            serial,
            lineage: lineage.into(),
            digest: [digest; 32],
        }
    }

    #[test]
    fn parses_terraform_state() {
        let body = br#"{"version":4,"terraform_version":"1.11.4","serial":3,"lineage":"abc","outputs":{},"resources":[]}"#;
        assert_eq!(StateHeader::parse(body).unwrap(), header(3, "abc"));
    }

    #[test]
    fn refuses_bodies_that_are_not_state_without_quoting_them() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json CANARY", "not JSON"),
            (b"[1]", "not a JSON object"),
            (br#"{"version":4,"lineage":"x"}"#, "no `serial`"),
            (br#"{"version":4,"serial":1}"#, "no `lineage`"),
            (br#"{"version":4,"serial":-1,"lineage":"x"}"#, "`serial`"),
            (br#"{"version":4,"serial":1,"lineage":""}"#, "`lineage`"),
            (
                br#"{"version":9,"serial":1,"lineage":"x"}"#,
                "format version 9",
            ),
        ];
        for (body, needle) in cases {
            let e = StateHeader::parse(body).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
            assert!(!e.contains("CANARY"), "{e}");
        }
    }

    #[test]
    fn first_write_is_version_one() {
        let d = check_write(None, &header(0, "l"), &[1; 32], None).unwrap();
        assert_eq!(
            d,
            WriteDecision::NewVersion {
                version: 1,
                overridden: None
            }
        );
    }

    #[test]
    fn serial_and_lineage_checks() {
        let h = head(5, "l", 1);
        assert_eq!(
            check_write(Some(&h), &header(6, "l"), &[2; 32], None).unwrap(),
            WriteDecision::NewVersion {
                version: 8,
                overridden: None
            }
        );
        assert_eq!(
            check_write(Some(&h), &header(5, "l"), &[1; 32], None).unwrap(),
            WriteDecision::Unchanged { version: 7 }
        );
        assert_eq!(
            check_write(Some(&h), &header(4, "l"), &[2; 32], None).unwrap_err(),
            WriteRefusal::SerialRegression { current: 5, new: 4 }
        );
        assert_eq!(
            check_write(Some(&h), &header(5, "l"), &[2; 32], None).unwrap_err(),
            WriteRefusal::SerialReused { serial: 5 }
        );
        assert!(matches!(
            check_write(Some(&h), &header(9, "other"), &[2; 32], None).unwrap_err(),
            WriteRefusal::LineageChanged { .. }
        ));
    }

    #[test]
    fn an_admin_forces_with_a_reason() {
        let h = head(5, "l", 1);
        let force = Force {
            admin: "alice".into(),
            reason: "restore after a bad import".into(),
        };
        assert_eq!(
            check_write(Some(&h), &header(2, "new"), &[2; 32], Some(&force)).unwrap(),
            WriteDecision::NewVersion {
                version: 8,
                overridden: Some(WriteRefusal::LineageChanged {
                    current: "l".into(),
                    new: "new".into()
                })
            }
        );
        let blank = Force {
            reason: "  ".into(),
            ..force
        };
        assert_eq!(
            check_write(Some(&h), &header(2, "l"), &[2; 32], Some(&blank)).unwrap_err(),
            WriteRefusal::ReasonRequired
        );
    }

    #[test]
    fn rollback_takes_the_next_serial_and_keeps_key_order() {
        let old = br#"{"version":4,"terraform_version":"1.11.4","serial":2,"lineage":"l","outputs":{"a":{"value":1,"type":"number"}},"resources":[]}"#;
        let body = rollback_body(old, 9).unwrap();
        assert_eq!(StateHeader::parse(&body).unwrap(), header(10, "l"));
        let text = String::from_utf8(body).unwrap();
        let keys: Vec<usize> = [
            "\"version\"",
            "\"terraform_version\"",
            "\"serial\"",
            "\"lineage\"",
            "\"outputs\"",
        ]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn lock_info_round_trips_terraform_field_names() {
        let json = r#"{"ID":"6c1b","Operation":"OperationTypeApply","Info":"","Who":"ci@runner","Version":"1.11.4","Created":"2026-12-06T18:00:00Z","Path":"dev/x"}"#;
        let info: BackendLockInfo = serde_json::from_str(json).unwrap();
        assert_eq!(info.id, "6c1b");
        assert_eq!(info.problem(), None);
        assert_eq!(serde_json::to_string(&info).unwrap(), json);
        let force_unlock: BackendLockInfo = serde_json::from_str(r#"{"ID":"x"}"#).unwrap();
        assert_eq!(force_unlock.who, "");
        assert!(BackendLockInfo::default().problem().is_some());
    }

    #[test]
    fn state_ids() {
        assert_eq!(state_id_problem("dev/ap-southeast-1/network"), None);
        for bad in [
            "",
            "dev//x",
            "dev/../prod",
            "./x",
            "dev/x y",
            "dev/%2e",
            "a\\b",
        ] {
            assert!(state_id_problem(bad).is_some(), "{bad}");
        }
    }

    proptest! {
        /// Without force, an accepted new version always has a higher serial and the same
        /// lineage; with force every non-identical body becomes the next version.
        #[test]
        fn accepted_writes_never_go_back(
            cur in 0u64..20, new in 0u64..20, same_lineage: bool, same_body: bool, forced: bool
        ) {
            let h = head(cur, "l", 1);
            let lineage = if same_lineage { "l" } else { "m" };
            let digest = if same_body { [1; 32] } else { [2; 32] };
            let force = forced.then(|| Force { admin: "a".into(), reason: "r".into() });
            match check_write(Some(&h), &header(new, lineage), &digest, force.as_ref()) {
                Ok(WriteDecision::NewVersion { version, overridden }) => {
                    prop_assert_eq!(version, 8);
                    prop_assert!(!same_body);
                    if overridden.is_none() {
                        prop_assert!(new > cur && same_lineage);
                    } else {
                        prop_assert!(forced);
                    }
                }
                Ok(WriteDecision::Unchanged { .. }) => prop_assert!(same_body),
                Err(_) => prop_assert!(!forced && !same_body && (new <= cur || !same_lineage)),
            }
        }
    }
}
