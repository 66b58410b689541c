//! What a plan marks sensitive and how a marked value is hidden: the redaction marker, the
//! engine's sensitivity masks, and the set of sensitive *values* that is redacted wherever the
//! same value occurs again.
//!
//! A leaf module: [`crate::plan`] collects sensitive values while parsing and
//! [`crate::redact`] overlays masks when it builds the redacted view; both build on this and
//! neither on the other.
//!
//! Why values and not only masks: Terraform marks a value where it flows from a sensitive
//! source, but the same value often appears unmarked elsewhere in the same plan
//! (`terraform_data.before.output` repeats a masked `before.input`, a format 0.x plan masks
//! `resource_changes` but not `planned_values`, `nonsensitive("x${var.secret}")` embeds it in a
//! longer string). So every value a mask marks is collected ([`SensitiveValues`]) and each of
//! its occurrences, whole or inside a longer string, is replaced by [`REDACTED`]
//! ([`ValueRedactor`]).
//!
//! **Minimum length.** Values shorter than [`MIN_VALUE_LEN`] (8 characters) are hidden only
//! where a mask marks them. Eight is the minimum password length of NIST SP 800-63B and of
//! most cloud providers' password rules, so real secrets are at least that long; shorter
//! strings (`true`, `5432`, `admin`, `eu-west`) collide with ordinary plan values, and
//! redacting them everywhere would hide the facts policies judge.

use std::borrow::Cow;
use std::collections::HashSet;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde_json::Value;

/// What a hidden value is replaced with.
pub const REDACTED: &str = "(sensitive)";

/// Sensitive values shorter than this are redacted only where masked (see the module docs).
pub const MIN_VALUE_LEN: usize = 8;

/// Whether a sensitivity mask marks anything at all.
pub fn is_sensitive_mask(mask: &Value) -> bool {
    match mask {
        Value::Bool(b) => *b,
        Value::Array(a) => a.iter().any(is_sensitive_mask),
        Value::Object(o) => o.values().any(is_sensitive_mask),
        _ => false,
    }
}

/// Hide what a sensitivity mask marks, in place. A `true` at any level hides the whole
/// subtree; objects and arrays recurse. Where mask and value disagree in shape and the mask
/// marks anything, the value is hidden whole (fail closed).
pub fn overlay_mask(value: &mut Value, mask: &Value) {
    match (mask, &mut *value) {
        (_, Value::Null) => {}
        (Value::Bool(true), v) => *v = Value::String(REDACTED.into()),
        (Value::Object(m), Value::Object(v)) => {
            for (k, mv) in m {
                if let Some(vv) = v.get_mut(k) {
                    overlay_mask(vv, mv);
                }
            }
        }
        (Value::Array(m), Value::Array(v)) => {
            for (vv, mv) in v.iter_mut().zip(m) {
                overlay_mask(vv, mv);
            }
            // A mask shorter than the list says nothing about the rest; a mask that marks
            // anything but cannot be lined up hides the whole list below.
            if m.len() > v.len() && m[v.len()..].iter().any(is_sensitive_mask) {
                *value = Value::String(REDACTED.into());
            }
        }
        (m, _) if is_sensitive_mask(m) => *value = Value::String(REDACTED.into()),
        _ => {}
    }
}

/// Where a mask could not be lined up with its value; the caller names the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskIssue {
    /// Mask and value have different shapes (an object mask over a list, a list mask over a
    /// string): everything below `path` was treated as sensitive.
    Shape { path: String },
    /// The mask marks `path` but the value has nothing there.
    Absent { path: String },
}

impl MaskIssue {
    pub fn describe(&self, what: &str) -> String {
        match self {
            MaskIssue::Shape { path } => format!(
                "the sensitivity mask of {what} does not match the value's shape at `{}`; \
                 everything there is treated as sensitive",
                show_path(path)
            ),
            MaskIssue::Absent { path } => format!(
                "the sensitivity mask of {what} marks `{}`, which the value does not have",
                show_path(path)
            ),
        }
    }
}

fn show_path(path: &str) -> &str {
    if path.is_empty() {
        "(whole value)"
    } else {
        path
    }
}

/// The sensitive values of one plan, collected from its masks and sensitive declarations.
#[derive(Debug, Default, Clone)]
pub struct SensitiveValues {
    long: HashSet<String>,
    /// Values marked sensitive somewhere, of any length (numbers and short strings included):
    /// counted so that the plan can say it has masks at all.
    marked: usize,
}

impl SensitiveValues {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every leaf of `value` is sensitive (a sensitive variable or output, a `true` mask).
    pub fn add_all(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.add(s),
            Value::Number(n) => self.add(&n.to_string()),
            Value::Array(items) => items.iter().for_each(|v| self.add_all(v)),
            Value::Object(map) => map.values().for_each(|v| self.add_all(v)),
            Value::Bool(_) | Value::Null => {}
        }
    }

    fn add(&mut self, s: &str) {
        self.marked += 1;
        // The marker itself (a plan redacted once already) is not a secret.
        if s.chars().count() >= MIN_VALUE_LEN && s != REDACTED {
            self.long.insert(s.to_string());
        }
    }

    /// The leaves of `value` that `mask` marks. `unknown` is the `after_unknown` mask of the
    /// same value, if any: a marked attribute that is unknown until apply is absent from the
    /// value without anything being wrong. Returns where mask and value did not line up.
    pub fn collect(
        &mut self,
        value: &Value,
        mask: &Value,
        unknown: Option<&Value>,
    ) -> Vec<MaskIssue> {
        let mut issues = Vec::new();
        let mut path = String::new();
        self.walk(value, mask, unknown, &mut path, &mut issues, 0);
        issues
    }

    fn walk(
        &mut self,
        value: &Value,
        mask: &Value,
        unknown: Option<&Value>,
        path: &mut String,
        issues: &mut Vec<MaskIssue>,
        depth: usize,
    ) {
        if !is_sensitive_mask(mask) {
            return;
        }
        if unknown == Some(&Value::Bool(true)) {
            return;
        }
        // A crafted document could nest without end; below this depth everything counts.
        if depth > 128 {
            self.add_all(value);
            return;
        }
        match (mask, value) {
            (Value::Bool(true), v) => self.add_all(v),
            (_, Value::Null) => issues.push(MaskIssue::Absent { path: path.clone() }),
            (Value::Object(m), Value::Object(v)) => {
                for (k, mv) in m {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    let u = unknown.and_then(|u| u.get(k));
                    match v.get(k) {
                        Some(vv) => self.walk(vv, mv, u, path, issues, depth + 1),
                        None if is_sensitive_mask(mv) && u != Some(&Value::Bool(true)) => {
                            issues.push(MaskIssue::Absent { path: path.clone() })
                        }
                        None => {}
                    }
                    path.truncate(len);
                }
            }
            (Value::Array(m), Value::Array(v)) => {
                for (i, mv) in m.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    let u = unknown.and_then(|u| u.get(i));
                    match v.get(i) {
                        Some(vv) => self.walk(vv, mv, u, path, issues, depth + 1),
                        None if is_sensitive_mask(mv) && u != Some(&Value::Bool(true)) => {
                            issues.push(MaskIssue::Absent { path: path.clone() })
                        }
                        None => {}
                    }
                    path.truncate(len);
                }
            }
            // The shapes disagree and the mask marks something: fail closed.
            (_, v) => {
                self.add_all(v);
                issues.push(MaskIssue::Shape { path: path.clone() });
            }
        }
    }

    /// Whether any value was marked sensitive (of any length).
    pub fn any_marked(&self) -> bool {
        self.marked > 0
    }

    /// Sensitive values long enough to be redacted wherever they occur.
    pub fn len(&self) -> usize {
        self.long.len()
    }

    pub fn is_empty(&self) -> bool {
        self.long.is_empty()
    }

    /// The matcher that replaces every occurrence of these values, built for searching about
    /// `text_bytes` of text. Longest match first, so that a secret that contains another is
    /// hidden whole.
    ///
    /// A contiguous NFA is built in a fraction of a DFA's time, which dominates for the few
    /// values of a small plan. A DFA searches several times faster, which dominates once the
    /// text is megabytes ([`DFA_FROM_TEXT_BYTES`]); its table grows with the values' total
    /// length, so it is used only while that stays small ([`DFA_MAX_VALUE_BYTES`]).
    pub fn redactor_for(&self, text_bytes: usize) -> ValueRedactor {
        use aho_corasick::AhoCorasickKind::{ContiguousNFA, DFA};
        if self.long.is_empty() {
            return ValueRedactor::default();
        }
        let value_bytes: usize = self.long.iter().map(String::len).sum();
        let build = |kind| {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .kind(Some(kind))
                .build(self.long.iter())
                .ok()
        };
        let matcher = if text_bytes >= DFA_FROM_TEXT_BYTES && value_bytes <= DFA_MAX_VALUE_BYTES {
            build(DFA).or_else(|| build(ContiguousNFA))
        } else {
            build(ContiguousNFA)
        };
        let numeric = self.long.iter().any(|v| v.bytes().all(is_number_byte));
        ValueRedactor { matcher, numeric }
    }
}

/// Text from which a [`ValueRedactor`] searches with a DFA (see [`SensitiveValues::redactor_for`]).
pub const DFA_FROM_TEXT_BYTES: usize = 1 << 20;

/// The most value bytes a DFA is built for: at most 16 Ki states, a few MiB of table.
pub const DFA_MAX_VALUE_BYTES: usize = 16 << 10;

/// A byte that may appear in a JSON number's text (`-12.5e+3`).
fn is_number_byte(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')
}

/// Replaces every occurrence of a plan's sensitive values (whole strings and substrings).
#[derive(Debug, Clone, Default)]
pub struct ValueRedactor {
    /// `None` when there is nothing to redact. (If the automaton could not be built, which
    /// only a pathological pattern set causes, [`SensitiveValues::redactor_for`] also yields
    /// `None`; the caller warns through [`ValueRedactor::is_active`].)
    matcher: Option<AhoCorasick>,
    /// Some value could occur in a number's text. Only then are numbers formatted and
    /// searched: a plan has hundreds of thousands of them, and few secrets are digits.
    numeric: bool,
}

impl ValueRedactor {
    pub fn is_active(&self) -> bool {
        self.matcher.is_some()
    }

    /// `s` with every sensitive value replaced; borrowed when none occurs.
    pub fn redact_str<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let Some(ac) = &self.matcher else {
            return Cow::Borrowed(s);
        };
        if s.len() < MIN_VALUE_LEN || !ac.is_match(s) {
            return Cow::Borrowed(s);
        }
        Cow::Owned(ac.replace_all(s, &vec![REDACTED; ac.patterns_len()]))
    }

    /// Redact in place; returns whether anything changed.
    pub fn redact_string(&self, s: &mut String) -> bool {
        match self.redact_str(s) {
            Cow::Borrowed(_) => false,
            Cow::Owned(r) => {
                *s = r;
                true
            }
        }
    }

    /// Every string (and number whose text is a sensitive value) in a value tree, in place.
    /// Object keys are left alone: they are attribute names and map keys, which Terraform
    /// does not allow to be sensitive (a sensitive `for_each` is an error).
    pub fn redact_value(&self, value: &mut Value) {
        if self.matcher.is_none() {
            return;
        }
        self.walk(value);
    }

    fn walk(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                self.redact_string(s);
            }
            Value::Number(_) if !self.numeric => {}
            Value::Number(n) => {
                let text = n.to_string();
                if text.len() >= MIN_VALUE_LEN && self.redact_str(&text) != text.as_str() {
                    *value = Value::String(REDACTED.into());
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.walk(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.walk(v)),
            Value::Bool(_) | Value::Null => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_large_text_is_searched_by_a_dfa_that_redacts_as_the_nfa_does() {
        use aho_corasick::AhoCorasickKind::{ContiguousNFA, DFA};
        let mut s = SensitiveValues::new();
        s.add_all(&json!([
            "hunter2-CANARY-tail",
            "hunter2-CANARY",
            "s3cr3t-value-1"
        ]));
        let kind = |r: &ValueRedactor| r.matcher.as_ref().map(|m| m.kind());
        let (small, large) = (s.redactor_for(0), s.redactor_for(DFA_FROM_TEXT_BYTES));
        assert_eq!(
            (kind(&small), kind(&large)),
            (Some(ContiguousNFA), Some(DFA))
        );
        let text = "a hunter2-CANARY-tail b hunter2-CANARY c s3cr3t-value-1 d";
        let redacted = large.redact_str(text);
        assert_eq!(redacted, small.redact_str(text));
        assert_eq!(
            redacted,
            format!("a {REDACTED} b {REDACTED} c {REDACTED} d")
        );
        // Too many value bytes for a DFA's table: the NFA again.
        let mut many = SensitiveValues::new();
        let big = "v".repeat(DFA_MAX_VALUE_BYTES + 1);
        many.add_all(&json!([big]));
        assert_eq!(
            kind(&many.redactor_for(DFA_FROM_TEXT_BYTES)),
            Some(ContiguousNFA)
        );
    }

    #[test]
    fn collects_marked_leaves_and_redacts_everywhere() {
        let value = json!({
            "input": {"conn": "postgres://app@db/x?pw=hunter2-CANARY-tail", "plain": "hello", "pin": "1234"},
            "output": {"conn": "postgres://app@db/x?pw=hunter2-CANARY-tail"},
            "list": ["s3cr3t-value-1", "public"]
        });
        let mask = json!({"input": {"conn": true, "pin": true}, "list": [true, false]});
        let mut s = SensitiveValues::new();
        assert!(s.collect(&value, &mask, None).is_empty());
        assert!(s.any_marked());
        // The four-character pin is below the minimum: only its masked position hides it.
        assert_eq!(s.len(), 2);
        let r = s.redactor_for(0);
        let mut v = value.clone();
        r.redact_value(&mut v);
        let text = v.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("s3cr3t"),
            "{text}"
        );
        assert_eq!(v["input"]["plain"], "hello");
        assert_eq!(v["input"]["pin"], "1234");
        assert_eq!(v["list"][1], "public");
        assert_eq!(
            r.redact_str("prefix hunter2 and postgres://app@db/x?pw=hunter2-CANARY-tail!"),
            format!("prefix hunter2 and {REDACTED}!")
        );
    }

    #[test]
    fn longest_secret_wins_and_numbers_count() {
        let mut s = SensitiveValues::new();
        s.add_all(&json!(["abcdefgh", "abcdefghijkl", 123456789012u64]));
        let r = s.redactor_for(0);
        assert_eq!(r.redact_str("xabcdefghijklx"), format!("x{REDACTED}x"));
        let mut v = json!({"n": 123456789012u64, "m": 5, "s": "id-123456789012"});
        r.redact_value(&mut v);
        assert_eq!(
            v,
            json!({"n": REDACTED, "m": 5, "s": format!("id-{REDACTED}")})
        );
    }

    #[test]
    fn shape_disagreements_fail_closed_and_are_reported() {
        let mut s = SensitiveValues::new();
        let issues = s.collect(
            &json!({"a": ["first-secret", "second-secret"], "b": "third-secret"}),
            &json!({"a": {"x": true}, "b": [true], "c": true}),
            None,
        );
        assert_eq!(
            issues,
            vec![
                MaskIssue::Shape { path: "a".into() },
                MaskIssue::Shape { path: "b".into() },
                MaskIssue::Absent { path: "c".into() },
            ]
        );
        assert_eq!(s.len(), 3);
        // Unknown-until-apply attributes are absent from `after` legitimately.
        let mut s = SensitiveValues::new();
        let issues = s.collect(
            &json!({"id": "x"}),
            &json!({"password": true}),
            Some(&json!({"password": true})),
        );
        assert!(issues.is_empty(), "{issues:?}");
        assert!(
            MaskIssue::Absent { path: "c".into() }
                .describe("aws_db_instance.db (after)")
                .contains("marks `c`")
        );
    }

    #[test]
    fn nothing_marked_is_inactive_and_cheap() {
        let mut s = SensitiveValues::new();
        assert!(
            s.collect(
                &json!({"a": "value-long-enough"}),
                &json!({"a": false}),
                None
            )
            .is_empty()
        );
        assert!(!s.any_marked());
        let r = s.redactor_for(0);
        assert!(!r.is_active());
        assert!(matches!(
            r.redact_str("value-long-enough"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn overlay_nested_masks() {
        let mut v = json!({
            "name": "db",
            "password": "p4ss",
            "nested": {"a": "x", "b": ["y", "z"]},
            "list": [{"k": "v1"}, {"k": "v2"}],
            "gone": null
        });
        let mask = json!({
            "password": true,
            "nested": {"b": [false, true]},
            "list": [{}, {"k": true}],
            "gone": true
        });
        overlay_mask(&mut v, &mask);
        assert_eq!(
            v,
            json!({
                "name": "db",
                "password": REDACTED,
                "nested": {"a": "x", "b": ["y", REDACTED]},
                "list": [{"k": "v1"}, {"k": REDACTED}],
                "gone": null
            })
        );
        let mut whole = json!({"a": {"b": 1}});
        overlay_mask(&mut whole, &json!(true));
        assert_eq!(whole, json!(REDACTED));
        // Shapes that cannot be lined up: a mask marking something hides the value whole.
        let mut odd = json!(["a", "b"]);
        overlay_mask(&mut odd, &json!({"x": true}));
        assert_eq!(odd, json!(REDACTED));
        let mut fine = json!(["a", "b"]);
        overlay_mask(&mut fine, &json!({}));
        assert_eq!(fine, json!(["a", "b"]));
    }

    proptest::proptest! {
        /// Whatever the surrounding text, a collected value never survives redaction.
        #[test]
        fn a_collected_value_never_survives(
            secret in "[A-Za-z0-9!@#%^&*]{8,40}",
            before in "\\PC{0,40}",
            after in "\\PC{0,40}",
        ) {
            let mut s = SensitiveValues::new();
            s.add_all(&json!(secret.clone()));
            let r = s.redactor_for(0);
            let out = r.redact_str(&format!("{before}{secret}{after}")).into_owned();
            proptest::prop_assert!(!out.contains(&secret));
        }

        #[test]
        fn collect_never_panics(value in arb_json(), mask in arb_json()) {
            let mut s = SensitiveValues::new();
            let _ = s.collect(&value, &mask, None);
            let mut v = value.clone();
            s.redactor_for(0).redact_value(&mut v);
            overlay_mask(&mut v, &mask);
        }
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z0-9]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
