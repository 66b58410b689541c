//! The plan JSON of OpenTofu / Terraform (`show -json PLANFILE`) as typed data, and its summary.
//!
//! Every stage after planning (policy, risk, approvals, the PR report) reasons over this model,
//! never over raw JSON, so the rules about what a plan means live in one place:
//!
//! - **Format versions.** `format_version` 1.x is what Terraform ≥ 1.0 and every OpenTofu write.
//!   0.x (Terraform 0.12–1.0: "0.1", "0.2") has the same structure minus newer fields, and real
//!   users still hold such plans, so it is accepted with a [`PlanWarning`] (0.1 plans carry no
//!   sensitivity masks: only sluice's name and shape rules can hide secrets in them). A major
//!   version of 2 or more is a different contract and is rejected
//!   ([`PlanError::UnsupportedFormatVersion`]); so is a document without `format_version` or
//!   without `planned_values`/`resource_changes` (state JSON, provider schemas, hand-written
//!   fixtures: [`PlanError::NotAPlan`]).
//! - **Actions.** Terraform encodes a change's action as a list of strings; the nine lists its
//!   JSON renderer can emit map onto [`Action`] and anything else fails the parse with the
//!   position of the list, because a policy must never reason about a change it misread.
//! - **Unknown fields** are ignored, so newer engines' additions do not break older sluice.
//! - **Secrets.** Values (`before`, `after`, `planned_values`, `configuration`) are carried as
//!   [`serde_json::Value`] but none of the raw types implement `Serialize`, and their `Debug`
//!   prints addresses and actions only. `variables` and `prior_state` are wrapped in
//!   [`Sensitive`], which has no `Serialize` and a redacting `Debug`. The only serializable view
//!   of a whole plan is [`crate::redact::RedactedPlan`] (also the policy input); reports use
//!   [`PlanSummary`], which holds addresses, actions and reasons, never values.
//!
//! Parsing accepts UTF-8 (with or without BOM) and UTF-16 with a BOM — what
//! `terraform show -json > plan.json` writes in Windows PowerShell — and reports errors with
//! the file name and serde_json's 1-based line and column.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::sensitive::is_sensitive_mask;
use crate::sensitive::{MaskIssue, REDACTED, SensitiveValues};

// ---------------------------------------------------------------------------------------------
// Errors and warnings

/// Why a plan JSON file could not be read. Messages never quote values from the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Not JSON, or JSON of the wrong shape (a field of the wrong type, an unknown action).
    #[error("{file}:{line}:{col}: malformed plan JSON: {message}")]
    Malformed {
        file: String,
        line: usize,
        col: usize,
        message: String,
    },
    /// A `format_version` this sluice does not read (2.x or later, or not a version at all).
    #[error(
        "{file}: unsupported plan format_version `{version}`: sluice reads plan JSON format 1.x \
         (and 0.x from Terraform 0.12–1.0, with a warning); produce the plan with OpenTofu or \
         Terraform 1.x (`show -json PLANFILE`), or upgrade sluice"
    )]
    UnsupportedFormatVersion { file: String, version: String },
    /// Valid JSON, but not the output of `show -json PLANFILE`.
    #[error("{file}: not a plan JSON document: {reason}")]
    NotAPlan { file: String, reason: String },
    /// Bytes that are not text in a supported encoding.
    #[error("{file}: {message}")]
    Encoding { file: String, message: String },
}

/// Something a reader of the plan should know, though the plan was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanWarning {
    pub file: String,
    pub message: String,
}

impl fmt::Display for PlanWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

// ---------------------------------------------------------------------------------------------
// Values that must never be rendered

/// A value that must never be printed, logged or serialized: plan `variables` and
/// `prior_state`. There is deliberately no `Serialize`; `Debug` prints a placeholder.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    pub fn new(value: T) -> Self {
        Sensitive(value)
    }

    /// The value, for code that needs it (never for output). The name makes reads greppable.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

// ---------------------------------------------------------------------------------------------
// Format version

/// `format_version` of a plan JSON document: `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FormatVersion {
    pub major: u32,
    pub minor: u32,
}

impl FormatVersion {
    /// Parse `"1.2"` (a bare `"1"` is read as `1.0`; extra components are ignored).
    pub fn parse(text: &str) -> Option<FormatVersion> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = match parts.next() {
            Some(m) => m.parse().ok()?,
            None => 0,
        };
        Some(FormatVersion { major, minor })
    }

    /// Whether sluice reads this version, and with what caveat.
    pub fn support(self) -> VersionSupport {
        match self.major {
            0 => VersionSupport::Legacy,
            1 => VersionSupport::Supported,
            _ => VersionSupport::Unsupported,
        }
    }
}

impl fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Serialize for FormatVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSupport {
    Supported,
    /// 0.x: Terraform 0.12–1.0. Same structure; older plans lack sensitivity masks.
    Legacy,
    Unsupported,
}

// ---------------------------------------------------------------------------------------------
// Actions

/// What the engine will do to one object: the nine action lists Terraform's JSON renderer
/// emits (`command/jsonplan`), one variant each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// `["no-op"]`
    NoOp,
    /// `["create"]`
    Create,
    /// `["read"]`: a data source read during apply.
    Read,
    /// `["update"]`: in place.
    Update,
    /// `["delete"]`
    Delete,
    /// `["delete", "create"]`: replace, destroying the old object first (the default).
    DeleteThenCreate,
    /// `["create", "delete"]`: replace with `create_before_destroy`.
    CreateThenDelete,
    /// `["forget"]`: removed from state, the object is left alone (`removed { destroy = false }`).
    Forget,
    /// `["create", "forget"]`: replace where the old object is forgotten, not destroyed.
    CreateThenForget,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::NoOp,
        Action::Create,
        Action::Read,
        Action::Update,
        Action::Delete,
        Action::DeleteThenCreate,
        Action::CreateThenDelete,
        Action::Forget,
        Action::CreateThenForget,
    ];

    /// The action list as the plan JSON spells it.
    pub fn as_list(self) -> &'static [&'static str] {
        match self {
            Action::NoOp => &["no-op"],
            Action::Create => &["create"],
            Action::Read => &["read"],
            Action::Update => &["update"],
            Action::Delete => &["delete"],
            Action::DeleteThenCreate => &["delete", "create"],
            Action::CreateThenDelete => &["create", "delete"],
            Action::Forget => &["forget"],
            Action::CreateThenForget => &["create", "forget"],
        }
    }

    /// Read the plan JSON's action list.
    pub fn from_list<S: AsRef<str>>(list: &[S]) -> Option<Action> {
        let l: Vec<&str> = list.iter().map(|s| s.as_ref()).collect();
        Some(match l.as_slice() {
            ["no-op"] => Action::NoOp,
            ["create"] => Action::Create,
            ["read"] => Action::Read,
            ["update"] => Action::Update,
            ["delete"] => Action::Delete,
            ["delete", "create"] => Action::DeleteThenCreate,
            ["create", "delete"] => Action::CreateThenDelete,
            ["forget"] => Action::Forget,
            ["create", "forget"] => Action::CreateThenForget,
            _ => return None,
        })
    }

    /// A stable snake_case name (report keys, policy and risk rules).
    pub fn name(self) -> &'static str {
        match self {
            Action::NoOp => "no_op",
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::DeleteThenCreate => "delete_then_create",
            Action::CreateThenDelete => "create_then_delete",
            Action::Forget => "forget",
            Action::CreateThenForget => "create_then_forget",
        }
    }

    /// The one-character marker of PR reports: `+ ~ - ±` (and `<=` reads, `.` forgets).
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Read => "<=",
            Action::Update => "~",
            Action::Delete => "-",
            Action::DeleteThenCreate | Action::CreateThenDelete | Action::CreateThenForget => "±",
            Action::Forget => ".",
        }
    }

    /// A new object replaces the old one (whatever happens to the old one).
    pub fn is_replace(self) -> bool {
        matches!(
            self,
            Action::DeleteThenCreate | Action::CreateThenDelete | Action::CreateThenForget
        )
    }

    /// The existing object is destroyed (delete or a destroying replace).
    pub fn destroys(self) -> bool {
        matches!(
            self,
            Action::Delete | Action::DeleteThenCreate | Action::CreateThenDelete
        )
    }

    /// A new object is created (create or any replace).
    pub fn creates(self) -> bool {
        matches!(self, Action::Create) || self.is_replace()
    }

    /// The object leaves state without being destroyed.
    pub fn forgets(self) -> bool {
        matches!(self, Action::Forget | Action::CreateThenForget)
    }

    /// Whether applying this changes anything (no-op and read do not change infrastructure).
    pub fn is_change(self) -> bool {
        !matches!(self, Action::NoOp | Action::Read)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Action {
    /// As the plan JSON spells it, so policies see the familiar `["delete", "create"]`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_list().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<String>::deserialize(d)?;
        Action::from_list(&list).ok_or_else(|| {
            // Echo the list only when it looks like action words: a crafted plan must not be
            // able to smuggle a value into an error message.
            let shown = if list
                .iter()
                .all(|s| s.len() <= 20 && s.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            {
                format!("{list:?}")
            } else {
                format!("a list of {} strings", list.len())
            };
            serde::de::Error::custom(format!(
                "unsupported change actions {shown}: expected one of [\"no-op\"], [\"create\"], \
                 [\"read\"], [\"update\"], [\"delete\"], [\"delete\",\"create\"], \
                 [\"create\",\"delete\"], [\"forget\"], [\"create\",\"forget\"]"
            ))
        })
    }
}

/// Why the engine chose an action (`action_reason`). Unknown reasons of newer engines are kept
/// verbatim in [`ActionReason::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionReason {
    ReplaceBecauseTainted,
    ReplaceBecauseCannotUpdate,
    ReplaceByRequest,
    ReplaceByTriggers,
    DeleteBecauseNoResourceConfig,
    DeleteBecauseNoModule,
    DeleteBecauseWrongRepetition,
    DeleteBecauseCountIndex,
    DeleteBecauseEachKey,
    DeleteBecauseNoMoveTarget,
    ReadBecauseConfigUnknown,
    ReadBecauseDependencyPending,
    ReadBecauseCheckNested,
    Other(String),
}

impl ActionReason {
    const KNOWN: [(&'static str, ActionReason); 13] = [
        (
            "replace_because_tainted",
            ActionReason::ReplaceBecauseTainted,
        ),
        (
            "replace_because_cannot_update",
            ActionReason::ReplaceBecauseCannotUpdate,
        ),
        ("replace_by_request", ActionReason::ReplaceByRequest),
        ("replace_by_triggers", ActionReason::ReplaceByTriggers),
        (
            "delete_because_no_resource_config",
            ActionReason::DeleteBecauseNoResourceConfig,
        ),
        (
            "delete_because_no_module",
            ActionReason::DeleteBecauseNoModule,
        ),
        (
            "delete_because_wrong_repetition",
            ActionReason::DeleteBecauseWrongRepetition,
        ),
        (
            "delete_because_count_index",
            ActionReason::DeleteBecauseCountIndex,
        ),
        (
            "delete_because_each_key",
            ActionReason::DeleteBecauseEachKey,
        ),
        (
            "delete_because_no_move_target",
            ActionReason::DeleteBecauseNoMoveTarget,
        ),
        (
            "read_because_config_unknown",
            ActionReason::ReadBecauseConfigUnknown,
        ),
        (
            "read_because_dependency_pending",
            ActionReason::ReadBecauseDependencyPending,
        ),
        (
            "read_because_check_nested",
            ActionReason::ReadBecauseCheckNested,
        ),
    ];

    pub fn parse(text: &str) -> ActionReason {
        Self::KNOWN
            .iter()
            .find(|(k, _)| *k == text)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| ActionReason::Other(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            ActionReason::Other(s) => s,
            known => Self::KNOWN
                .iter()
                .find(|(_, r)| r == known)
                .map(|(k, _)| *k)
                .expect("every known reason is in KNOWN"),
        }
    }

    /// A short human explanation for reports.
    pub fn describe(&self) -> &str {
        match self {
            ActionReason::ReplaceBecauseTainted => "the object is tainted",
            ActionReason::ReplaceBecauseCannotUpdate => {
                "a changed attribute cannot be updated in place"
            }
            ActionReason::ReplaceByRequest => "replacement was requested (-replace)",
            ActionReason::ReplaceByTriggers => "replace_triggered_by fired",
            ActionReason::DeleteBecauseNoResourceConfig => "its resource block was removed",
            ActionReason::DeleteBecauseNoModule => "its module call was removed",
            ActionReason::DeleteBecauseWrongRepetition => "count/for_each was added or removed",
            ActionReason::DeleteBecauseCountIndex => "its count index is out of range",
            ActionReason::DeleteBecauseEachKey => "its for_each key is gone",
            ActionReason::DeleteBecauseNoMoveTarget => "its moved block has no target",
            ActionReason::ReadBecauseConfigUnknown => "its configuration is unknown until apply",
            ActionReason::ReadBecauseDependencyPending => "a dependency has pending changes",
            ActionReason::ReadBecauseCheckNested => "it is nested in a check block",
            ActionReason::Other(s) => s,
        }
    }
}

impl Serialize for ActionReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ActionReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ActionReason::parse(&String::deserialize(d)?))
    }
}

// ---------------------------------------------------------------------------------------------
// The plan

/// One plan JSON document. Built by [`Plan::parse`]; see the module docs for what is never
/// rendered.
#[derive(Clone, Deserialize)]
pub struct Plan {
    #[serde(skip)]
    pub format_version: Option<FormatVersion>,
    #[serde(rename = "format_version", default)]
    format_version_raw: Option<Value>,
    #[serde(default)]
    pub terraform_version: Option<String>,
    /// Root module variable values: never rendered (policy input keeps the names only).
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    #[serde(default)]
    pub planned_values: Option<Value>,
    #[serde(default, deserialize_with = "drift_entries")]
    pub resource_drift: Vec<ResourceChange>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resource_changes: Vec<ResourceChange>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub deferred_changes: Vec<DeferredChange>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub output_changes: BTreeMap<String, Change>,
    /// The state the plan was made against: never rendered.
    #[serde(default)]
    pub prior_state: Option<Sensitive<Value>>,
    #[serde(default)]
    pub configuration: Option<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub relevant_attributes: Vec<Value>,
    #[serde(default)]
    pub checks: Option<Value>,
    #[serde(default)]
    pub timestamp: Option<String>,
    /// `false` when some changes were deferred to a later plan.
    #[serde(default)]
    pub complete: Option<bool>,
    /// `true` when planning failed part way: the plan must not be applied.
    #[serde(default)]
    pub errored: Option<bool>,
    #[serde(default)]
    pub applyable: Option<bool>,
    /// Accepted with caveats (legacy format version, decoded from UTF-16, ...).
    #[serde(skip)]
    pub warnings: Vec<PlanWarning>,
}

/// A root module variable as the plan JSON records it.
#[derive(Clone, Default, Deserialize)]
pub struct Variable {
    #[serde(default)]
    pub value: Sensitive<Value>,
}

impl fmt::Debug for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A change to one resource instance (`resource_changes[]`, `resource_drift[]`).
#[derive(Clone, Deserialize)]
pub struct ResourceChange {
    pub address: String,
    /// Set when the object moved here from another address (a `moved` block).
    #[serde(default)]
    pub previous_address: Option<String>,
    #[serde(default)]
    pub module_address: Option<String>,
    /// `managed` or `data`.
    #[serde(default)]
    pub mode: String,
    #[serde(rename = "type", default)]
    pub resource_type: String,
    #[serde(default)]
    pub name: String,
    /// `count` index (number) or `for_each` key (string).
    #[serde(default)]
    pub index: Option<Value>,
    #[serde(default)]
    pub provider_name: Option<String>,
    /// Set for a deposed object left over from a create-before-destroy replace.
    #[serde(default)]
    pub deposed: Option<String>,
    pub change: Change,
    #[serde(default)]
    pub action_reason: Option<ActionReason>,
    /// The plan did not give `address`; it was derived from mode, type, name and index.
    #[serde(skip)]
    address_derived: bool,
}

/// `resource_drift[]`. Terraform 1.0 wrote its entries without `address`: such an entry gets
/// the address derived from its parts (and [`Plan::parse`] warns) instead of failing the plan.
fn drift_entries<'de, D>(d: D) -> Result<Vec<ResourceChange>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let entries: Vec<Value> = null_as_default(d)?;
    entries
        .into_iter()
        .map(|mut entry| {
            let derived = match entry.as_object_mut() {
                Some(fields) if !fields.contains_key("address") => {
                    let address = derived_address(fields);
                    fields.insert("address".into(), Value::String(address));
                    true
                }
                _ => false,
            };
            let mut rc: ResourceChange = serde_json::from_value(entry)
                .map_err(|e| serde::de::Error::custom(scrub_serde_message(&e)))?;
            rc.address_derived = derived;
            Ok(rc)
        })
        .collect()
}

/// `module.x.data.type.name["key"]` from an entry's `module_address`, `mode`, `type`, `name`
/// and `index`, as Terraform writes addresses.
fn derived_address(fields: &serde_json::Map<String, Value>) -> String {
    let text = |k: &str| fields.get(k).and_then(Value::as_str).unwrap_or_default();
    let mut address = String::new();
    if !text("module_address").is_empty() {
        address.push_str(text("module_address"));
        address.push('.');
    }
    if text("mode") == "data" {
        address.push_str("data.");
    }
    address.push_str(text("type"));
    address.push('.');
    address.push_str(text("name"));
    match fields.get("index") {
        Some(Value::Number(n)) => address.push_str(&format!("[{n}]")),
        Some(Value::String(key)) => address.push_str(&format!("[{}]", Value::String(key.clone()))),
        _ => {}
    }
    address
}

impl fmt::Debug for ResourceChange {
    // Addresses and actions only: values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceChange")
            .field("address", &self.address)
            .field("previous_address", &self.previous_address)
            .field("actions", &self.change.actions)
            .field("action_reason", &self.action_reason)
            .finish_non_exhaustive()
    }
}

/// The change of one object or output: before/after values and their sensitivity masks.
#[derive(Clone, Deserialize)]
pub struct Change {
    pub actions: Action,
    #[serde(default)]
    pub before: Value,
    #[serde(default)]
    pub after: Value,
    /// Mask of values known only after apply (`true` = unknown, nested like the value).
    #[serde(default)]
    pub after_unknown: Value,
    /// Mask of sensitive values in `before` (`true` at any level hides the whole subtree).
    #[serde(default)]
    pub before_sensitive: Value,
    #[serde(default)]
    pub after_sensitive: Value,
    /// Attribute paths that force the replacement.
    #[serde(default, deserialize_with = "null_as_default")]
    pub replace_paths: Vec<Value>,
    /// Set when the plan imports the object.
    #[serde(default)]
    pub importing: Option<Importing>,
    /// HCL generated by `plan -generate-config-out`.
    #[serde(default)]
    pub generated_config: Option<String>,
    #[serde(default)]
    pub before_identity: Option<Value>,
    #[serde(default)]
    pub after_identity: Option<Value>,
}

impl fmt::Debug for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Change")
            .field("actions", &self.actions)
            .finish_non_exhaustive()
    }
}

/// `change.importing`: the object is imported by this plan, by id or by resource identity.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Importing {
    #[serde(default)]
    pub id: Option<String>,
    /// The import id is only known at apply.
    #[serde(default)]
    pub unknown: Option<bool>,
    #[serde(default)]
    pub identity: Option<Value>,
}

/// A change the engine could not plan yet (`deferred_changes[]`, Terraform ≥ 1.9 with
/// deferred actions).
#[derive(Debug, Clone, Deserialize)]
pub struct DeferredChange {
    #[serde(default)]
    pub reason: DeferredReason,
    pub resource_change: ResourceChange,
}

/// Why a change was deferred. Unknown reasons are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum DeferredReason {
    InstanceCountUnknown,
    ResourceConfigUnknown,
    ProviderConfigUnknown,
    AbsentPrereq,
    DeferredPrereq,
    #[default]
    Unknown,
    Other(String),
}

impl DeferredReason {
    pub fn parse(text: &str) -> DeferredReason {
        match text {
            "instance_count_unknown" => DeferredReason::InstanceCountUnknown,
            "resource_config_unknown" => DeferredReason::ResourceConfigUnknown,
            "provider_config_unknown" => DeferredReason::ProviderConfigUnknown,
            "absent_prereq" => DeferredReason::AbsentPrereq,
            "deferred_prereq" => DeferredReason::DeferredPrereq,
            "unknown" | "" => DeferredReason::Unknown,
            other => DeferredReason::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            DeferredReason::InstanceCountUnknown => "instance_count_unknown",
            DeferredReason::ResourceConfigUnknown => "resource_config_unknown",
            DeferredReason::ProviderConfigUnknown => "provider_config_unknown",
            DeferredReason::AbsentPrereq => "absent_prereq",
            DeferredReason::DeferredPrereq => "deferred_prereq",
            DeferredReason::Unknown => "unknown",
            DeferredReason::Other(s) => s,
        }
    }
}

impl Serialize for DeferredReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeferredReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(DeferredReason::parse(&String::deserialize(d)?))
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl fmt::Debug for Plan {
    // A plan's Debug is a summary: values, variables and prior state stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field(
                "format_version",
                &self.format_version.map(|v| v.to_string()),
            )
            .field("terraform_version", &self.terraform_version)
            .field("resource_changes", &self.resource_changes)
            .field("resource_drift", &self.resource_drift.len())
            .field("deferred_changes", &self.deferred_changes.len())
            .field(
                "output_changes",
                &self.output_changes.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The top-level fields that tell a plan from the other documents `show -json` writes.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    format_version: Option<Value>,
    #[serde(default)]
    planned_values: Option<IgnoredAny>,
    #[serde(default)]
    resource_changes: Option<IgnoredAny>,
    #[serde(default)]
    values: Option<IgnoredAny>,
    #[serde(default)]
    provider_schemas: Option<IgnoredAny>,
    #[serde(default)]
    function_signatures: Option<IgnoredAny>,
}

impl Plan {
    /// Parse a plan JSON document. `file` names it in errors and warnings.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Plan, PlanError> {
        let (text, mut warnings) = decode(file, bytes)?;
        let text = text.as_ref();

        if !text.trim_start().starts_with('{') {
            // serde would read a struct from an array; say what the document is instead.
            serde_json::from_str::<IgnoredAny>(text).map_err(|e| malformed(file, &e))?;
            return Err(PlanError::NotAPlan {
                file: file.to_string(),
                reason: "the document is not a JSON object".into(),
            });
        }
        // One typed pass on the happy path. Only when it fails, or the document lacks what
        // every plan has, does a cheap second pass (`Probe`) work out what the document is, so
        // a 2.x plan or a state file is reported as such rather than as a type error.
        let mut plan: Plan = match serde_json::from_str(text) {
            Ok(plan) => plan,
            Err(e) if e.is_syntax() || e.is_eof() || e.is_io() => return Err(malformed(file, &e)),
            Err(e) => {
                if let Ok(probe) = serde_json::from_str::<Probe>(text) {
                    check_probe(file, &probe)?;
                }
                return Err(malformed(file, &e));
            }
        };
        if plan.planned_values.is_none() && plan.resource_changes.is_empty() {
            let probe: Probe = serde_json::from_str(text).map_err(|e| malformed(file, &e))?;
            check_probe(file, &probe)?;
        }
        let version = version_of(file, plan.format_version_raw.as_ref())?;
        // Said only where it is true: Terraform 0.15 and 1.0 write masks in format 0.x too.
        let no_masks = !plan.has_sensitivity_masks();
        let no_masks_note = ": this plan carries no sensitivity masks, so only sluice's \
                             attribute-name and value-shape rules hide secrets in it";
        if version.support() == VersionSupport::Legacy {
            warnings.push(PlanWarning {
                file: file.to_string(),
                message: format!(
                    "plan JSON format_version {version} comes from Terraform 0.12–1.0; it is read \
                     with the 1.x model{}",
                    if no_masks { no_masks_note } else { "" }
                ),
            });
        } else if no_masks {
            warnings.push(PlanWarning {
                file: file.to_string(),
                message: format!("plan JSON format_version {version}{no_masks_note}"),
            });
        }
        plan.scrub_sensitive_values(file, text.len(), &mut warnings);

        plan.format_version = Some(version);
        let derived: Vec<&str> = plan
            .resource_drift
            .iter()
            .filter(|rc| rc.address_derived)
            .map(|rc| rc.address.as_str())
            .collect();
        if !derived.is_empty() {
            warnings.push(PlanWarning {
                file: file.to_string(),
                message: format!(
                    "{} resource_drift entr{} without `address` (as Terraform 1.0 wrote them): \
                     derived from mode, type, name and index: {}",
                    derived.len(),
                    if derived.len() == 1 { "y" } else { "ies" },
                    derived.join(", ")
                ),
            });
        }
        if plan.errored == Some(true) {
            warnings.push(PlanWarning {
                file: file.to_string(),
                message: "the plan is marked `errored`: planning failed part way and the plan \
                          cannot be applied"
                    .into(),
            });
        }
        plan.warnings = warnings;
        Ok(plan)
    }

    /// Whether the engine wrote sensitivity masks: a `before_sensitive`/`after_sensitive` on
    /// some change, or `sensitive_values` on some planned resource. Checked on the fields'
    /// presence, not on whether they mark anything: a plan without secrets has all-false masks.
    /// A plan without changes has nothing to mask and counts as masked.
    pub fn has_sensitivity_masks(&self) -> bool {
        let changes = self
            .resource_changes
            .iter()
            .chain(&self.resource_drift)
            .map(|rc| &rc.change)
            .chain(self.output_changes.values());
        let mut any_values = false;
        for c in changes {
            if !c.before_sensitive.is_null() || !c.after_sensitive.is_null() {
                return true;
            }
            any_values |= !c.before.is_null() || !c.after.is_null();
        }
        let mut planned = false;
        if let Some(root) = self
            .planned_values
            .as_ref()
            .and_then(|p| p.get("root_module"))
        {
            for_each_state_resource(root, 0, &mut |r| {
                planned |= r.get("sensitive_values").is_some();
            });
        }
        planned || !any_values
    }

    /// Every value the plan marks sensitive: resource masks before and after (also of drift
    /// and deferred changes), sensitive outputs and variables, sensitive variable defaults and
    /// output constants of the configuration, and the masks of `resource_changes` carried to
    /// `planned_values` and `prior_state` where those have none (format 0.x). Returns, too,
    /// where a mask could not be lined up with its value (named by address).
    pub fn sensitive_values(&self) -> (SensitiveValues, Vec<String>) {
        let mut found = SensitiveValues::new();
        let mut notes = Vec::new();
        // `what` names the value only when a mask did not line up (rarely): a large plan has
        // tens of thousands of values to name otherwise.
        let mut note = |what: &dyn Fn() -> String, issues: Vec<MaskIssue>| {
            if !issues.is_empty() {
                let what = what();
                notes.extend(issues.iter().map(|i| i.describe(&what)));
            }
        };
        let deferred = self.deferred_changes.iter().map(|d| &d.resource_change);
        for rc in self
            .resource_changes
            .iter()
            .chain(&self.resource_drift)
            .chain(deferred)
        {
            let c = &rc.change;
            let b = found.collect(&c.before, &c.before_sensitive, None);
            note(&|| format!("`{}` (before)", rc.address), b);
            let a = found.collect(&c.after, &c.after_sensitive, Some(&c.after_unknown));
            note(&|| format!("`{}` (after)", rc.address), a);
        }
        let sensitive_outputs = self.sensitive_output_names();
        for (name, c) in &self.output_changes {
            if sensitive_outputs.contains(name.as_str()) {
                found.add_all(&c.before);
                found.add_all(&c.after);
            } else {
                let b = found.collect(&c.before, &c.before_sensitive, None);
                note(&|| format!("output `{name}` (before)"), b);
                let a = found.collect(&c.after, &c.after_sensitive, Some(&c.after_unknown));
                note(&|| format!("output `{name}` (after)"), a);
            }
        }
        // Masks `resource_changes` carry for the state-shaped documents (0.x plans have none
        // of their own there).
        let after_masks = self.masks_by_address(|c| &c.after_sensitive);
        let before_masks = self.masks_by_address(|c| &c.before_sensitive);
        if let Some(pv) = &self.planned_values {
            collect_state(pv, &after_masks, &mut found, &mut note);
        }
        if let Some(state) = &self.prior_state {
            let state = state.expose();
            collect_state(
                state.get("values").unwrap_or(state),
                &before_masks,
                &mut found,
                &mut note,
            );
        }
        let config_root = self
            .configuration
            .as_ref()
            .and_then(|c| c.get("root_module"));
        for (name, var) in &self.variables {
            let declared = config_root
                .and_then(|r| r.pointer(&format!("/variables/{}/sensitive", pointer_escape(name))))
                .and_then(Value::as_bool);
            if declared == Some(true) {
                found.add_all(var.value.expose());
            }
        }
        if let Some(root) = config_root {
            collect_config(root, &mut found, 0);
        }
        (found, notes)
    }

    /// Names of root outputs declared sensitive (in `planned_values`, `prior_state` or the
    /// configuration), whatever their change's masks say.
    pub fn sensitive_output_names<'a>(&'a self) -> std::collections::BTreeSet<&'a str> {
        let mut out = std::collections::BTreeSet::new();
        let mut from = |outputs: Option<&'a Value>| {
            if let Some(Value::Object(map)) = outputs {
                for (name, o) in map {
                    if o.get("sensitive").and_then(Value::as_bool) == Some(true) {
                        out.insert(name.as_str());
                    }
                }
            }
        };
        from(self.planned_values.as_ref().and_then(|p| p.get("outputs")));
        from(
            self.configuration
                .as_ref()
                .and_then(|c| c.pointer("/root_module/outputs")),
        );
        from(
            self.prior_state
                .as_ref()
                .and_then(|s| s.expose().pointer("/values/outputs")),
        );
        out
    }

    /// `address → mask` of the resource changes, for state-shaped documents without masks.
    pub fn masks_by_address(
        &self,
        mask: impl Fn(&Change) -> &Value,
    ) -> std::collections::HashMap<&str, &Value> {
        self.resource_changes
            .iter()
            .map(|rc| (rc.address.as_str(), mask(&rc.change)))
            .filter(|(_, m)| !m.is_null())
            .collect()
    }

    /// Replace every occurrence of a sensitive value (whole or inside a longer string) in
    /// everything sluice may render: values, addresses, replace paths, import ids, generated
    /// configuration, planned values, configuration, checks. `variables` and `prior_state`
    /// are left as they are (never rendered). Mask issues become warnings naming the address.
    /// `text_bytes` is the document's size: how much text the matcher is built to search.
    fn scrub_sensitive_values(
        &mut self,
        file: &str,
        text_bytes: usize,
        warnings: &mut Vec<PlanWarning>,
    ) {
        let (found, notes) = self.sensitive_values();
        warnings.extend(notes.into_iter().map(|message| PlanWarning {
            file: file.to_string(),
            message,
        }));
        if found.is_empty() {
            return;
        }
        let r = found.redactor_for(text_bytes);
        if !r.is_active() {
            // Only a pathological value set fails to build; fail closed on what it covers.
            warnings.push(PlanWarning {
                file: file.to_string(),
                message: "the plan's sensitive values could not be indexed; only masked \
                          positions are hidden"
                    .into(),
            });
            return;
        }
        let deferred = self
            .deferred_changes
            .iter_mut()
            .map(|d| &mut d.resource_change);
        let changes: Vec<&mut ResourceChange> = self
            .resource_changes
            .iter_mut()
            .chain(self.resource_drift.iter_mut())
            .chain(deferred)
            .collect();
        let r = &r;
        let (outputs, planned_values, configuration, checks, relevant) = (
            &mut self.output_changes,
            &mut self.planned_values,
            &mut self.configuration,
            &mut self.checks,
            &mut self.relevant_attributes,
        );
        // Everything but the resource changes: `planned_values` alone is as large as their
        // `after` values.
        let rest = move || {
            outputs.values_mut().for_each(|c| scrub_change(c, r));
            [planned_values, configuration, checks]
                .into_iter()
                .flatten()
                .chain(relevant.iter_mut())
                .for_each(|v| r.redact_value(v));
        };
        // Every string of a large plan is searched: on more than one core when that pays.
        if changes.len() < PARALLEL_SCRUB_FROM {
            changes
                .into_iter()
                .for_each(|rc| scrub_resource_change(rc, r));
            rest();
        } else {
            use rayon::prelude::*;
            rayon::join(
                || {
                    changes
                        .into_par_iter()
                        .with_min_len(64)
                        .for_each(|rc| scrub_resource_change(rc, r))
                },
                rest,
            );
        }
    }

    /// A copy without `prior_state` and variable values (the parts nothing renders), cheaper
    /// than `clone()` on a plan made against a large state.
    pub fn clone_without_state(&self) -> Plan {
        Plan {
            format_version: self.format_version,
            format_version_raw: self.format_version_raw.clone(),
            terraform_version: self.terraform_version.clone(),
            variables: self
                .variables
                .keys()
                .map(|k| (k.clone(), Variable::default()))
                .collect(),
            planned_values: self.planned_values.clone(),
            resource_drift: self.resource_drift.clone(),
            resource_changes: self.resource_changes.clone(),
            deferred_changes: self.deferred_changes.clone(),
            output_changes: self.output_changes.clone(),
            prior_state: None,
            configuration: self.configuration.clone(),
            relevant_attributes: self.relevant_attributes.clone(),
            checks: self.checks.clone(),
            timestamp: self.timestamp.clone(),
            complete: self.complete,
            errored: self.errored,
            applyable: self.applyable,
            warnings: self.warnings.clone(),
        }
    }

    /// The summary reports and decisions use.
    pub fn summary(&self) -> PlanSummary {
        PlanSummary::of(self)
    }

    /// Variable names (their values are never exposed by sluice).
    pub fn variable_names(&self) -> impl Iterator<Item = &str> {
        self.variables.keys().map(String::as_str)
    }
}

/// Resource changes from which [`Plan::scrub_sensitive_values`] runs on rayon's pool: below
/// it, handing the work out costs more than it saves.
const PARALLEL_SCRUB_FROM: usize = 512;

fn scrub_resource_change(rc: &mut ResourceChange, r: &crate::sensitive::ValueRedactor) {
    for s in [&mut rc.address, &mut rc.name]
        .into_iter()
        .chain(rc.previous_address.as_mut())
        .chain(rc.module_address.as_mut())
        .chain(rc.deposed.as_mut())
    {
        r.redact_string(s);
    }
    if let Some(i) = &mut rc.index {
        r.redact_value(i);
    }
    scrub_change(&mut rc.change, r);
}

fn scrub_change(c: &mut Change, r: &crate::sensitive::ValueRedactor) {
    for v in [&mut c.before, &mut c.after]
        .into_iter()
        .chain(c.before_identity.as_mut())
        .chain(c.after_identity.as_mut())
    {
        r.redact_value(v);
    }
    c.replace_paths.iter_mut().for_each(|p| r.redact_value(p));
    if let Some(imp) = &mut c.importing {
        if let Some(id) = &mut imp.id {
            r.redact_string(id);
        }
        if let Some(identity) = &mut imp.identity {
            r.redact_value(identity);
        }
    }
    if let Some(g) = &mut c.generated_config {
        r.redact_string(g);
    }
}

/// Calls `f` with every resource object of a state-shaped module tree (`planned_values`,
/// `prior_state.values`), child modules included.
pub fn for_each_state_resource(module: &Value, depth: usize, f: &mut impl FnMut(&Value)) {
    // Module nesting is bounded by Terraform; the guard stops a crafted document.
    if depth > 64 {
        return;
    }
    if let Some(Value::Array(resources)) = module.get("resources") {
        resources.iter().for_each(&mut *f);
    }
    if let Some(Value::Array(children)) = module.get("child_modules") {
        for c in children {
            for_each_state_resource(c, depth + 1, f);
        }
    }
}

/// Sensitive outputs and masked resource values of a state-shaped document.
fn collect_state(
    doc: &Value,
    carried: &std::collections::HashMap<&str, &Value>,
    found: &mut SensitiveValues,
    note: &mut impl FnMut(&dyn Fn() -> String, Vec<MaskIssue>),
) {
    if let Some(Value::Object(outputs)) = doc.get("outputs") {
        for o in outputs.values() {
            if o.get("sensitive").and_then(Value::as_bool) == Some(true)
                && let Some(v) = o.get("value")
            {
                found.add_all(v);
            }
        }
    }
    if let Some(root) = doc.get("root_module") {
        for_each_state_resource(root, 0, &mut |r| {
            let Some(values) = r.get("values") else {
                return;
            };
            let address = r.get("address").and_then(Value::as_str).unwrap_or("");
            let mask = r
                .get("sensitive_values")
                .or_else(|| carried.get(address).copied());
            if let Some(mask) = mask {
                let issues = found.collect(values, mask, None);
                // A carried mask lines up with `planned_values` only roughly (unknown values
                // are absent there); report the document's own masks only.
                if r.get("sensitive_values").is_some() {
                    note(&|| format!("`{address}` (planned or prior values)"), issues);
                }
            }
        });
    }
}

/// Defaults of sensitive variables and constants of sensitive outputs, in every module.
fn collect_config(module: &Value, found: &mut SensitiveValues, depth: usize) {
    if depth > 64 {
        return;
    }
    if let Some(Value::Object(vars)) = module.get("variables") {
        for var in vars.values() {
            if var.get("sensitive").and_then(Value::as_bool) == Some(true)
                && let Some(d) = var.get("default")
            {
                found.add_all(d);
            }
        }
    }
    if let Some(Value::Object(outputs)) = module.get("outputs") {
        for out in outputs.values() {
            if out.get("sensitive").and_then(Value::as_bool) == Some(true)
                && let Some(c) = out.pointer("/expression/constant_value")
            {
                found.add_all(c);
            }
        }
    }
    if let Some(Value::Object(calls)) = module.get("module_calls") {
        for call in calls.values() {
            if let Some(m) = call.get("module") {
                collect_config(m, found, depth + 1);
            }
        }
    }
}

/// A JSON pointer token (RFC 6901).
fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// What a document that is not a (supported) plan is, from its top-level keys.
fn check_probe(file: &str, probe: &Probe) -> Result<FormatVersion, PlanError> {
    let not_a_plan = |reason: &str| PlanError::NotAPlan {
        file: file.to_string(),
        reason: reason.to_string(),
    };
    if probe.planned_values.is_none() && probe.resource_changes.is_none() {
        return Err(if probe.provider_schemas.is_some() {
            not_a_plan("this is provider schemas JSON (`providers schema -json`)")
        } else if probe.function_signatures.is_some() {
            not_a_plan("this is function signatures JSON (`metadata functions -json`)")
        } else if probe.values.is_some() {
            not_a_plan(
                "this is state JSON (`show -json` of a state, not of a saved plan file); run \
                 `plan -out=FILE` and `show -json FILE`",
            )
        } else {
            not_a_plan("it has neither `planned_values` nor `resource_changes`")
        });
    }
    version_of(file, probe.format_version.as_ref())
}

/// The document's `format_version`, if sluice reads it.
fn version_of(file: &str, raw: Option<&Value>) -> Result<FormatVersion, PlanError> {
    let raw = match raw {
        None | Some(Value::Null) => {
            return Err(PlanError::NotAPlan {
                file: file.to_string(),
                reason: "`format_version` is missing: every `show -json` plan carries one \
                         (hand-written or truncated file?)"
                    .into(),
            });
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => String::new(),
    };
    // Echo the version only when it looks like one: the field is attacker-controlled text.
    let shown = if !raw.is_empty()
        && raw.len() <= 16
        && raw.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        raw.clone()
    } else {
        "(not a version number)".to_string()
    };
    let unsupported = || PlanError::UnsupportedFormatVersion {
        file: file.to_string(),
        version: shown.clone(),
    };
    let version = FormatVersion::parse(&raw).ok_or_else(unsupported)?;
    if version.support() == VersionSupport::Unsupported {
        return Err(unsupported());
    }
    Ok(version)
}

/// A serde_json error as a position and a message that quotes nothing from the document.
fn malformed(file: &str, e: &serde_json::Error) -> PlanError {
    PlanError::Malformed {
        file: file.to_string(),
        line: e.line(),
        col: e.column(),
        message: scrub_serde_message(e),
    }
}

/// serde's data errors quote the offending value (`invalid type: string "hunter2", expected a
/// boolean`); keep the kind and the expectation, drop the value.
fn scrub_serde_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    // serde_json appends " at line L column C"; the position is reported separately.
    let msg = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => full.as_str(),
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let kind = rest.split([' ', ',']).next().unwrap_or("value");
            let expected = rest
                .rfind(", expected ")
                .map(|i| &rest[i..])
                .unwrap_or_default();
            return format!("{prefix}{kind}{expected}");
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let expected = rest
            .find(", expected ")
            .map(|i| &rest[i..])
            .unwrap_or_default();
        return format!("unknown variant{expected}");
    }
    msg.to_string()
}

/// Text of the document: UTF-8 (BOM stripped) or UTF-16 with a BOM.
fn decode<'a>(
    file: &str,
    bytes: &'a [u8],
) -> Result<(std::borrow::Cow<'a, str>, Vec<PlanWarning>), PlanError> {
    use std::borrow::Cow;
    let encoding = |message: String| PlanError::Encoding {
        file: file.to_string(),
        message,
    };
    let utf16 = |units: Vec<u16>, which: &str| -> Result<_, PlanError> {
        let text = String::from_utf16(&units)
            .map_err(|_| encoding(format!("invalid {which} text (unpaired surrogate)")))?;
        Ok((
            Cow::Owned(text),
            vec![PlanWarning {
                file: file.to_string(),
                message: format!(
                    "decoded from {which} (as Windows PowerShell redirection writes it); \
                     positions refer to the decoded text"
                ),
            }],
        ))
    };
    let pairs = |b: &[u8], le: bool| -> Result<Vec<u16>, PlanError> {
        if !b.len().is_multiple_of(2) {
            return Err(encoding("UTF-16 text with an odd number of bytes".into()));
        }
        Ok(b.chunks_exact(2)
            .map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect())
    };
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return std::str::from_utf8(rest)
            .map(|s| (Cow::Borrowed(s), Vec::new()))
            .map_err(|e| encoding(utf8_error(rest, &e)));
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(pairs(rest, true)?, "UTF-16LE");
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(pairs(rest, false)?, "UTF-16BE");
    }
    std::str::from_utf8(bytes)
        .map(|s| (Cow::Borrowed(s), Vec::new()))
        .map_err(|e| encoding(utf8_error(bytes, &e)))
}

fn utf8_error(bytes: &[u8], e: &std::str::Utf8Error) -> String {
    let valid = &bytes[..e.valid_up_to()];
    let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = valid.len() - valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{col}: not UTF-8 text (and no UTF-16 byte-order mark)")
}

// ---------------------------------------------------------------------------------------------
// Summary

/// Objects per action. `replace` totals the three replace orders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ActionCounts {
    pub no_op: usize,
    pub create: usize,
    pub read: usize,
    pub update: usize,
    pub delete: usize,
    pub delete_then_create: usize,
    pub create_then_delete: usize,
    pub forget: usize,
    pub create_then_forget: usize,
}

impl ActionCounts {
    pub fn add(&mut self, action: Action) {
        *self.slot(action) += 1;
    }

    pub fn get(&self, action: Action) -> usize {
        match action {
            Action::NoOp => self.no_op,
            Action::Create => self.create,
            Action::Read => self.read,
            Action::Update => self.update,
            Action::Delete => self.delete,
            Action::DeleteThenCreate => self.delete_then_create,
            Action::CreateThenDelete => self.create_then_delete,
            Action::Forget => self.forget,
            Action::CreateThenForget => self.create_then_forget,
        }
    }

    fn slot(&mut self, action: Action) -> &mut usize {
        match action {
            Action::NoOp => &mut self.no_op,
            Action::Create => &mut self.create,
            Action::Read => &mut self.read,
            Action::Update => &mut self.update,
            Action::Delete => &mut self.delete,
            Action::DeleteThenCreate => &mut self.delete_then_create,
            Action::CreateThenDelete => &mut self.create_then_delete,
            Action::Forget => &mut self.forget,
            Action::CreateThenForget => &mut self.create_then_forget,
        }
    }

    pub fn replace(&self) -> usize {
        self.delete_then_create + self.create_then_delete + self.create_then_forget
    }

    pub fn total(&self) -> usize {
        Action::ALL.iter().map(|a| self.get(*a)).sum()
    }
}

/// The familiar "Plan: X to add, Y to change, Z to destroy" line, plus import/forget/move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub replace: usize,
    pub import: usize,
    pub forget: usize,
    #[serde(rename = "move")]
    pub moved: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replaced {
    pub address: String,
    pub actions: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<ActionReason>,
    /// Attribute paths that force the replacement, e.g. `engine_version`, `tags.Name`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moved {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Imported {
    pub address: String,
    /// The import id (a cloud identifier, not a secret); absent for identity-based imports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub by_identity: bool,
    pub actions: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<ActionReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deposed: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drifted {
    pub address: String,
    pub actions: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deferred {
    pub address: String,
    pub reason: DeferredReason,
    pub actions: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputChange {
    pub name: String,
    pub actions: Action,
    pub sensitive: bool,
}

/// One line per changed object, for `+ ~ - ±` address lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressLine {
    pub address: String,
    pub actions: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<ActionReason>,
    pub importing: bool,
    pub data: bool,
}

/// What a plan does, without any value: safe to render anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    pub format_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terraform_version: Option<String>,
    /// `resource_changes` per action (managed and data resources).
    pub counts: ActionCounts,
    pub totals: Totals,
    /// Applying the plan would change infrastructure, outputs or state bindings.
    pub has_changes: bool,
    /// Objects whose action is not no-op, in plan order.
    pub changes: Vec<AddressLine>,
    pub replaced: Vec<Replaced>,
    pub deleted: Vec<Deleted>,
    pub moved: Vec<Moved>,
    pub imported: Vec<Imported>,
    pub forgotten: Vec<String>,
    pub drifted: Vec<Drifted>,
    pub deferred: Vec<Deferred>,
    pub outputs: Vec<OutputChange>,
    /// `false` when the engine deferred part of the plan.
    pub complete: bool,
    pub errored: bool,
    pub warnings: Vec<String>,
}

impl PlanSummary {
    pub fn of(plan: &Plan) -> PlanSummary {
        let mut counts = ActionCounts::default();
        let mut totals = Totals::default();
        let mut changes = Vec::new();
        let mut replaced = Vec::new();
        let mut deleted = Vec::new();
        let mut moved = Vec::new();
        let mut imported = Vec::new();
        let mut forgotten = Vec::new();
        for rc in &plan.resource_changes {
            let action = rc.change.actions;
            counts.add(action);
            let importing = rc.change.importing.is_some();
            if action.creates() {
                totals.add += 1;
            }
            if action == Action::Update {
                totals.change += 1;
            }
            if action.destroys() {
                totals.destroy += 1;
            }
            if action.is_replace() {
                totals.replace += 1;
                replaced.push(Replaced {
                    address: rc.address.clone(),
                    actions: action,
                    reason: rc.action_reason.clone(),
                    paths: rc.change.replace_paths.iter().map(path_string).collect(),
                });
            }
            if action == Action::Delete {
                deleted.push(Deleted {
                    address: rc.address.clone(),
                    reason: rc.action_reason.clone(),
                    deposed: rc.deposed.clone(),
                });
            }
            if action.forgets() {
                totals.forget += 1;
                forgotten.push(rc.address.clone());
            }
            if let Some(from) = &rc.previous_address
                && from != &rc.address
            {
                totals.moved += 1;
                moved.push(Moved {
                    from: from.clone(),
                    to: rc.address.clone(),
                });
            }
            if let Some(imp) = &rc.change.importing {
                totals.import += 1;
                imported.push(Imported {
                    address: rc.address.clone(),
                    id: imp.id.clone(),
                    by_identity: imp.id.is_none() && imp.identity.is_some(),
                    actions: action,
                });
            }
            if action != Action::NoOp || importing || rc.previous_address.is_some() {
                changes.push(AddressLine {
                    address: rc.address.clone(),
                    actions: action,
                    previous_address: rc.previous_address.clone(),
                    reason: rc.action_reason.clone(),
                    importing,
                    data: rc.mode == "data",
                });
            }
        }
        let drifted = plan
            .resource_drift
            .iter()
            .map(|rc| Drifted {
                address: rc.address.clone(),
                actions: rc.change.actions,
            })
            .collect();
        let deferred: Vec<Deferred> = plan
            .deferred_changes
            .iter()
            .map(|d| Deferred {
                address: d.resource_change.address.clone(),
                reason: d.reason.clone(),
                actions: d.resource_change.change.actions,
            })
            .collect();
        let sensitive_outputs = plan.sensitive_output_names();
        let outputs: Vec<OutputChange> = plan
            .output_changes
            .iter()
            .filter(|(_, c)| c.actions != Action::NoOp)
            .map(|(name, c)| OutputChange {
                name: name.clone(),
                actions: c.actions,
                sensitive: is_sensitive_mask(&c.before_sensitive)
                    || is_sensitive_mask(&c.after_sensitive)
                    || sensitive_outputs.contains(name.as_str()),
            })
            .collect();
        let has_changes = counts.total() > counts.no_op + counts.read
            || !imported.is_empty()
            || !moved.is_empty()
            || !outputs.is_empty();
        PlanSummary {
            format_version: plan
                .format_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
            terraform_version: plan.terraform_version.clone(),
            counts,
            totals,
            has_changes,
            changes,
            replaced,
            deleted,
            moved,
            imported,
            forgotten,
            drifted,
            deferred: deferred.clone(),
            outputs,
            complete: plan.complete.unwrap_or(deferred.is_empty()),
            errored: plan.errored.unwrap_or(false),
            warnings: plan.warnings.iter().map(|w| w.message.clone()).collect(),
        }
    }

    /// `Plan: 1 to add, 2 to change, 0 to destroy.` with import/forget/move when non-zero.
    pub fn headline(&self) -> String {
        if !self.has_changes {
            return "No changes.".into();
        }
        let t = &self.totals;
        let mut line = format!(
            "Plan: {} to add, {} to change, {} to destroy",
            t.add, t.change, t.destroy
        );
        if t.replace > 0 {
            line.push_str(&format!(" ({} replaced)", t.replace));
        }
        for (n, what) in [
            (t.import, "to import"),
            (t.forget, "to forget"),
            (t.moved, "moved"),
        ] {
            if n > 0 {
                line.push_str(&format!(", {n} {what}"));
            }
        }
        line.push('.');
        line
    }

    /// Plain text for terminals: the headline, one `+ ~ - ±` line per change, then moves,
    /// imports, drift, deferrals and outputs. Addresses and reasons only, never values.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.headline());
        for c in &self.changes {
            let mut line = format!("  {:<2} {}", c.actions.symbol(), c.address);
            if let Some(from) = &c.previous_address
                && from != &c.address
            {
                let _ = write!(line, " (moved from {from})");
            }
            if c.importing {
                line.push_str(" (import)");
            }
            if let Some(r) = &c.reason {
                let _ = write!(line, " [{}]", r.as_str());
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        if !self.drifted.is_empty() {
            let _ = writeln!(out, "drift outside sluice ({}):", self.drifted.len());
            for d in &self.drifted {
                let _ = writeln!(out, "  {:<2} {}", d.actions.symbol(), d.address);
            }
        }
        if !self.deferred.is_empty() {
            let _ = writeln!(out, "deferred to a later plan ({}):", self.deferred.len());
            for d in &self.deferred {
                let _ = writeln!(
                    out,
                    "  {:<2} {} [{}]",
                    d.actions.symbol(),
                    d.address,
                    d.reason.as_str()
                );
            }
        }
        if !self.outputs.is_empty() {
            let _ = writeln!(out, "outputs:");
            for o in &self.outputs {
                let _ = writeln!(
                    out,
                    "  {:<2} {}{}",
                    o.actions.symbol(),
                    o.name,
                    if o.sensitive { " (sensitive)" } else { "" }
                );
            }
        }
        if self.errored {
            let _ = writeln!(out, "the plan is marked errored and cannot be applied");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

/// A replace path (`["tags", "Name"]`, `["ingress", 0, "cidr_blocks"]`) as `tags.Name`,
/// `ingress[0].cidr_blocks`.
fn path_string(path: &Value) -> String {
    let Value::Array(steps) = path else {
        return path.to_string();
    };
    let mut out = String::new();
    for step in steps {
        match step {
            Value::Number(n) => out.push_str(&format!("[{n}]")),
            Value::String(s) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(s);
            }
            other => out.push_str(&format!("[{other}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rc(address: &str, actions: &[&str]) -> Value {
        json!({
            "address": address,
            "mode": "managed",
            "type": address.split('.').next().unwrap(),
            "name": "x",
            "provider_name": "registry.terraform.io/hashicorp/aws",
            "change": {"actions": actions, "before": null, "after": {}, "after_unknown": {}}
        })
    }

    fn doc(version: &str, changes: Vec<Value>) -> Value {
        json!({"format_version": version, "planned_values": {}, "resource_changes": changes})
    }

    fn parse(v: &Value) -> Result<Plan, PlanError> {
        Plan::parse("plan.json", v.to_string().as_bytes())
    }

    /// Terraform 1.0 (format 0.2) wrote `resource_drift` entries without `address`.
    #[test]
    fn drift_without_address_is_accepted_with_a_derived_address_and_a_warning() {
        let entry = |mode: &str, index: Value, module: Option<&str>| {
            let mut e = json!({
                "mode": mode, "type": "aws_s3_bucket", "name": "logs",
                "provider_name": "registry.terraform.io/hashicorp/aws",
                "change": {"actions": ["update"], "before": {"acl": "CANARY-before"}, "after": {}}
            });
            if !index.is_null() {
                e["index"] = index;
            }
            if let Some(m) = module {
                e["module_address"] = json!(m);
            }
            e
        };
        let mut d = doc("0.2", vec![rc("aws_instance.web", &["create"])]);
        d["resource_drift"] = json!([
            entry("managed", Value::Null, None),
            entry("managed", json!(2), Some("module.store")),
            entry("data", json!("eu \"west\""), None),
            rc("aws_s3_bucket.kept", &["update"]),
        ]);
        let plan = parse(&d).unwrap();
        let addresses: Vec<&str> = plan
            .resource_drift
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(
            addresses,
            vec![
                "aws_s3_bucket.logs",
                "module.store.aws_s3_bucket.logs[2]",
                "data.aws_s3_bucket.logs[\"eu \\\"west\\\"\"]",
                "aws_s3_bucket.kept",
            ]
        );
        let warning = plan
            .warnings
            .iter()
            .find(|w| w.message.contains("resource_drift"))
            .expect("a warning about the derived addresses");
        assert!(
            warning
                .message
                .starts_with("3 resource_drift entries without `address`"),
            "{warning}"
        );
        assert!(!warning.message.contains("CANARY"), "{warning}");
        // resource_changes still need their address, with a position.
        let mut bad = doc("1.2", vec![rc("aws_instance.web", &["create"])]);
        bad["resource_changes"][0]
            .as_object_mut()
            .unwrap()
            .remove("address");
        assert!(matches!(parse(&bad), Err(PlanError::Malformed { .. })));
        // A drift entry of the wrong shape is an error that does not quote values.
        let mut wrong = doc("1.2", vec![]);
        wrong["resource_drift"] = json!([{"mode": "managed", "type": "t", "name": "n",
            "change": {"actions": "CANARY-x"}}]);
        let err = parse(&wrong).unwrap_err().to_string();
        assert!(err.starts_with("plan.json:"), "{err}");
        assert!(!err.contains("CANARY"), "{err}");
    }

    #[test]
    fn every_action_list_round_trips() {
        for a in Action::ALL {
            let list: Vec<String> = a.as_list().iter().map(|s| s.to_string()).collect();
            assert_eq!(Action::from_list(&list), Some(a));
            assert_eq!(serde_json::to_value(a).unwrap(), json!(a.as_list()));
        }
        assert_eq!(Action::from_list(&["forget", "create"]), None);
        assert_eq!(Action::from_list::<&str>(&[]), None);
    }

    #[test]
    fn summary_of_every_action_and_extra() {
        let mut changes: Vec<Value> = Action::ALL
            .iter()
            .enumerate()
            .map(|(i, a)| rc(&format!("aws_instance.a{i}"), a.as_list()))
            .collect();
        changes[5]["action_reason"] = json!("replace_because_cannot_update");
        changes[5]["change"]["replace_paths"] =
            json!([["engine_version"], ["tags", "Name"], ["ebs", 0, "size"]]);
        changes[4]["action_reason"] = json!("delete_because_no_resource_config");
        changes[0]["previous_address"] = json!("aws_instance.old");
        changes[1]["change"]["importing"] = json!({"id": "i-0abc"});
        changes[3]["change"]["importing"] = json!({"identity": {"id": "i-1"}});
        changes[2]["mode"] = json!("data");
        changes[2]["action_reason"] = json!("read_because_something_new");
        let mut d = doc("1.2", changes);
        d["resource_drift"] = json!([rc("aws_s3_bucket.logs", &["update"])]);
        d["deferred_changes"] = json!([{"reason": "provider_config_unknown", "resource_change": rc("aws_eks_cluster.c", &["create"])}]);
        d["output_changes"] = json!({
            "endpoint": {"actions": ["update"], "before": "a", "after": "b", "after_unknown": false, "before_sensitive": false, "after_sensitive": false},
            "password": {"actions": ["create"], "before": null, "after_unknown": true, "before_sensitive": true, "after_sensitive": true},
            "same": {"actions": ["no-op"], "before": 1, "after": 1}
        });
        d["complete"] = json!(false);
        let plan = parse(&d).unwrap();
        let s = plan.summary();
        for a in Action::ALL {
            assert_eq!(s.counts.get(a), 1, "{a}");
        }
        assert_eq!(s.counts.replace(), 3);
        assert_eq!(
            s.totals,
            Totals {
                add: 4,
                change: 1,
                destroy: 3,
                replace: 3,
                import: 2,
                forget: 2,
                moved: 1
            }
        );
        assert_eq!(
            s.replaced[0].reason,
            Some(ActionReason::ReplaceBecauseCannotUpdate)
        );
        assert_eq!(
            s.replaced[0].paths,
            vec!["engine_version", "tags.Name", "ebs[0].size"]
        );
        assert_eq!(
            s.deleted[0].reason,
            Some(ActionReason::DeleteBecauseNoResourceConfig)
        );
        assert_eq!(
            s.moved,
            vec![Moved {
                from: "aws_instance.old".into(),
                to: "aws_instance.a0".into()
            }]
        );
        assert_eq!(s.imported.len(), 2);
        assert!(s.imported[1].by_identity && s.imported[1].id.is_none());
        assert_eq!(s.forgotten, vec!["aws_instance.a7", "aws_instance.a8"]);
        assert_eq!(s.drifted[0].address, "aws_s3_bucket.logs");
        assert_eq!(s.deferred[0].reason, DeferredReason::ProviderConfigUnknown);
        assert_eq!(s.outputs.len(), 2);
        assert!(
            s.outputs
                .iter()
                .any(|o| o.name == "password" && o.sensitive)
        );
        assert!(!s.complete && s.has_changes);
        assert!(s.changes.iter().any(|c| c.data
            && c.reason == Some(ActionReason::Other("read_because_something_new".into()))));
        let text = s.render_text();
        assert!(text.starts_with("Plan: 4 to add, 1 to change, 3 to destroy (3 replaced), 2 to import, 2 to forget, 1 moved."), "{text}");
        assert!(
            text.contains("±  aws_instance.a5 [replace_because_cannot_update]"),
            "{text}"
        );
        assert!(text.contains("deferred to a later plan (1):"), "{text}");
    }

    #[test]
    fn no_changes_plan() {
        let mut d = doc("1.0", vec![rc("aws_vpc.main", &["no-op"])]);
        d.as_object_mut().unwrap().remove("resource_changes");
        let s = parse(&d).unwrap().summary();
        assert!(!s.has_changes);
        assert_eq!(s.headline(), "No changes.");
        let s = parse(&doc(
            "1.0",
            vec![
                rc("aws_vpc.main", &["no-op"]),
                rc("data.aws_ami.x", &["read"]),
            ],
        ))
        .unwrap()
        .summary();
        assert!(!s.has_changes);
        assert_eq!(s.counts.no_op, 1);
    }

    #[test]
    fn format_versions() {
        assert!(parse(&doc("1.0", vec![])).unwrap().warnings.is_empty());
        assert!(parse(&doc("1.2", vec![])).is_ok());
        // The "no masks" note only where the plan truly has none: Terraform 0.15 and 1.0 write
        // masks in format 0.x too.
        let mut unmasked = rc("aws_db_instance.db", &["create"]);
        unmasked["change"]["after"] = json!({"name": "db"});
        let legacy = parse(&doc("0.1", vec![unmasked.clone()])).unwrap();
        assert_eq!(legacy.warnings.len(), 1);
        assert!(legacy.warnings[0].message.contains("no sensitivity masks"));
        let mut masked = unmasked.clone();
        masked["change"]["after_sensitive"] = json!({});
        let legacy = parse(&doc("0.1", vec![masked.clone()])).unwrap();
        assert_eq!(legacy.warnings.len(), 1);
        assert!(!legacy.warnings[0].message.contains("no sensitivity masks"));
        let current = parse(&doc("1.2", vec![unmasked])).unwrap();
        assert!(current.warnings[0].message.contains("no sensitivity masks"));
        assert!(
            parse(&doc("1.2", vec![masked]))
                .unwrap()
                .warnings
                .is_empty()
        );
        assert!(
            parse(&doc("0.2", vec![])).unwrap().warnings[0]
                .message
                .contains("0.12–1.0")
        );
        for (v, shown) in [
            ("2.0", "2.0"),
            ("10.1", "10.1"),
            ("x.y", "(not a version number)"),
            ("", "(not a version number)"),
        ] {
            match parse(&doc(v, vec![])) {
                Err(PlanError::UnsupportedFormatVersion { version, file }) => {
                    assert_eq!(version, shown);
                    assert_eq!(file, "plan.json");
                }
                other => panic!("{v}: {other:?}"),
            }
        }
        // A 2.x document is rejected on its version even when its structure is foreign.
        let foreign = json!({"format_version": "2.0", "planned_values": {}, "resource_changes": {"not": "a list"}});
        assert!(matches!(
            parse(&foreign),
            Err(PlanError::UnsupportedFormatVersion { .. })
        ));
    }

    #[test]
    fn not_plans() {
        let cases = [
            (json!({"format_version": "1.0", "values": {}}), "state JSON"),
            (
                json!({"format_version": "1.0", "provider_schemas": {}}),
                "provider schemas",
            ),
            (json!({"planned_values": {}}), "format_version"),
            (json!([1, 2]), "not a JSON object"),
            (json!({"format_version": "1.0"}), "neither"),
        ];
        for (d, needle) in cases {
            match parse(&d) {
                Err(e @ PlanError::NotAPlan { .. }) => {
                    assert!(e.to_string().contains(needle), "{e}")
                }
                other => panic!("{d}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_json_has_file_line_col_and_no_value() {
        let text = "{\n  \"format_version\": \"1.2\",\n  \"planned_values\": {},\n  \"resource_changes\": [\n    {\"address\": \"a.b\" \"change\": {}}\n  ]\n}";
        match Plan::parse("dir/plan.json", text.as_bytes()) {
            Err(PlanError::Malformed {
                file, line, col, ..
            }) => {
                assert_eq!((file.as_str(), line), ("dir/plan.json", 5));
                assert_eq!(col, 23);
            }
            other => panic!("{other:?}"),
        }
        // Wrong types are positioned too, and the message does not quote the value.
        let d = json!({"format_version": "1.2", "planned_values": {}, "resource_changes": [
            {"address": "a.b", "change": {"actions": ["create"], "replace_paths": "CANARY-hunter2"}}
        ]});
        let pretty = serde_json::to_string_pretty(&d).unwrap();
        let err = Plan::parse("p.json", pretty.as_bytes()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("p.json:"), "{msg}");
        assert!(!msg.contains("CANARY"), "{msg}");
        assert!(
            msg.contains("invalid type: string, expected a sequence"),
            "{msg}"
        );
        // Unknown action lists are errors with a position.
        let bad = doc("1.2", vec![rc("a.b", &["explode"])]);
        let err = parse(&bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("unsupported change actions [\"explode\"]"),
            "{err}"
        );
        let smuggled = doc("1.2", vec![rc("a.b", &["CANARY secret"])]);
        assert!(!parse(&smuggled).unwrap_err().to_string().contains("CANARY"));
    }

    #[test]
    fn encodings() {
        let text = doc("1.1", vec![rc("aws_vpc.a", &["create"])]).to_string();
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice(text.as_bytes());
        assert_eq!(Plan::parse("p", &bom).unwrap().resource_changes.len(), 1);
        let mut le = vec![0xFF, 0xFE];
        le.extend(text.encode_utf16().flat_map(|u| u.to_le_bytes()));
        let p = Plan::parse("p", &le).unwrap();
        assert_eq!(p.resource_changes.len(), 1);
        assert!(p.warnings[0].message.contains("UTF-16LE"));
        let mut be = vec![0xFE, 0xFF];
        be.extend(text.encode_utf16().flat_map(|u| u.to_be_bytes()));
        assert_eq!(Plan::parse("p", &be).unwrap().resource_changes.len(), 1);
        let err = Plan::parse("p", b"{\n \"a\": \"\xff\"}").unwrap_err();
        assert!(err.to_string().contains("p: 2:8: not UTF-8"), "{err}");
    }

    #[test]
    fn debug_never_shows_values_variables_or_state() {
        let mut d = doc("1.2", vec![rc("aws_db_instance.db", &["create"])]);
        d["resource_changes"][0]["change"]["after"] = json!({"password": "CANARY-1"});
        d["variables"] = json!({"db_password": {"value": "CANARY-2"}});
        d["prior_state"] = json!({"values": {"x": "CANARY-3"}});
        d["configuration"] = json!({"root_module": {"variables": {"p": {"default": "CANARY-4"}}}});
        let plan = parse(&d).unwrap();
        let shown = format!("{plan:?} {:?} {:#?}", plan.variables, plan.resource_changes);
        assert!(!shown.contains("CANARY"), "{shown}");
        assert!(shown.contains("aws_db_instance.db"));
        assert_eq!(
            plan.variable_names().collect::<Vec<_>>(),
            vec!["db_password"]
        );
        assert_eq!(
            plan.prior_state.as_ref().unwrap().expose()["values"]["x"],
            "CANARY-3"
        );
    }

    /// The shapes of a real Terraform 1.11 plan (`terraform_data` updated with a sensitive
    /// variable): the masked value repeats unmasked in `before.output`, inside a longer string
    /// of another resource, in an output and in a replace trigger.
    fn leaky_plan() -> Value {
        json!({
            "format_version": "1.2",
            "variables": {"db_pw": {"value": "CANARYnew1234567"}, "region": {"value": "eu-west-1"}},
            "configuration": {"root_module": {
                "variables": {"db_pw": {"sensitive": true}, "region": {}},
                "outputs": {"pw": {"sensitive": true, "expression": {"references": ["var.db_pw"]}}}
            }},
            "planned_values": {
                "outputs": {"pw": {"sensitive": true, "value": "CANARYnew1234567"},
                            "both": {"sensitive": false, "value": "xCANARYnew1234567"}},
                "root_module": {"resources": [{
                    "address": "terraform_data.a", "mode": "managed", "type": "terraform_data",
                    "name": "a", "values": {"input": "CANARYnew1234567", "id": "id-1"},
                    "sensitive_values": {"input": true}
                }]}
            },
            "resource_changes": [
                {"address": "terraform_data.a", "mode": "managed", "type": "terraform_data", "name": "a",
                 "change": {"actions": ["update"],
                    "before": {"id": "id-1", "input": "CANARYold1234567", "output": "CANARYold1234567"},
                    "after": {"id": "id-1", "input": "CANARYnew1234567"},
                    "after_unknown": {"output": true},
                    "before_sensitive": {"input": true}, "after_sensitive": {"input": true}}},
                {"address": "terraform_data.copy", "mode": "managed", "type": "terraform_data", "name": "copy",
                 "change": {"actions": ["create"], "before": null,
                    "after": {"input": "prefix-CANARYnew1234567-suffix", "short": "pin1"},
                    "after_unknown": {}, "before_sensitive": false, "after_sensitive": {}}}
            ],
            "output_changes": {
                "both": {"actions": ["update"], "before": "xCANARYold1234567", "after": "xCANARYnew1234567",
                         "after_unknown": false, "before_sensitive": false, "after_sensitive": false},
                "pw": {"actions": ["update"], "before": "CANARYold1234567", "after": "CANARYnew1234567",
                       "after_unknown": false, "before_sensitive": false, "after_sensitive": false}
            }
        })
    }

    #[test]
    fn sensitive_values_are_scrubbed_wherever_they_occur() {
        let plan = parse(&leaky_plan()).unwrap();
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        // Everything sluice may render is scrubbed; the sensitive parts keep their values.
        let rc = &plan.resource_changes[0];
        assert_eq!(rc.change.before["output"], REDACTED);
        assert_eq!(
            plan.resource_changes[1].change.after["input"],
            format!("prefix-{REDACTED}-suffix")
        );
        assert_eq!(plan.resource_changes[1].change.after["short"], "pin1");
        assert_eq!(plan.output_changes["both"].after, format!("x{REDACTED}"));
        let pv = plan.planned_values.as_ref().unwrap();
        assert_eq!(pv["outputs"]["both"]["value"], format!("x{REDACTED}"));
        assert_eq!(
            plan.variables["db_pw"].value.expose(),
            &json!("CANARYnew1234567")
        );
        // The output declared sensitive is reported as such although its masks say false.
        let s = plan.summary();
        assert!(s.outputs.iter().any(|o| o.name == "pw" && o.sensitive));
        assert!(s.outputs.iter().any(|o| o.name == "both" && !o.sensitive));
    }

    #[test]
    fn mask_problems_fail_closed_with_a_warning_naming_the_address() {
        let mut d = leaky_plan();
        // A mask shaped for a list over a string, and a mask on an attribute that is absent.
        d["resource_changes"][1]["change"]["after_sensitive"] =
            json!({"input": [true], "missing": true});
        let plan = parse(&d).unwrap();
        let messages: Vec<&str> = plan.warnings.iter().map(|w| w.message.as_str()).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("`terraform_data.copy` (after)") && m.contains("shape")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("marks `missing`")),
            "{messages:?}"
        );
        // Fail closed: the mismatched value counts as sensitive (and is scrubbed).
        assert_eq!(plan.resource_changes[1].change.after["input"], REDACTED);
        // Huge strings complete too.
        let mut d = leaky_plan();
        let huge = format!(
            "{}CANARYnew1234567{}",
            "a".repeat(2_000_000),
            "b".repeat(10)
        );
        d["resource_changes"][1]["change"]["after"]["input"] = json!(huge);
        let plan = parse(&d).unwrap();
        let after = plan.resource_changes[1].change.after["input"]
            .as_str()
            .unwrap();
        assert!(!after.contains("CANARY") && after.ends_with(&format!("{REDACTED}bbbbbbbbbb")));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = Plan::parse("fuzz.json", &bytes);
        }

        #[test]
        fn counts_match_generated_actions(idx in proptest::collection::vec(0usize..9, 0..40)) {
            let changes = idx.iter().enumerate()
                .map(|(i, a)| rc(&format!("aws_s3_bucket.b{i}"), Action::ALL[*a].as_list()))
                .collect();
            let s = parse(&doc("1.2", changes)).unwrap().summary();
            for (n, a) in Action::ALL.iter().enumerate() {
                proptest::prop_assert_eq!(s.counts.get(*a), idx.iter().filter(|i| **i == n).count());
            }
            proptest::prop_assert_eq!(s.counts.total(), idx.len());
        }

        #[test]
        fn format_version_parse(major in 0u32..50, minor in 0u32..50) {
            let v = FormatVersion::parse(&format!("{major}.{minor}")).unwrap();
            proptest::prop_assert_eq!((v.major, v.minor), (major, minor));
            proptest::prop_assert_eq!(v.to_string(), format!("{major}.{minor}"));
        }
    }
}
