//! The decision record (DESIGN.md §3): what the policy stage decided for one input, in a form
//! that is byte-identical for the same input and bundles (canonical JSON, stable ordering) so
//! that approvals can bind to its digest.

use serde::{Deserialize, Serialize};

use crate::canonical;

/// Schema tag of the record, bumped on incompatible changes.
pub const SCHEMA: &str = "sluice.decision/v1";

/// The outcome of one result, and of the whole decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A rule ran and found nothing.
    Pass,
    /// A finding an active exception waives.
    Excepted,
    Warn,
    RequireApproval,
    Deny,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Excepted => "excepted",
            Outcome::Warn => "warn",
            Outcome::RequireApproval => "require_approval",
            Outcome::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "pass" => Outcome::Pass,
            "excepted" => Outcome::Excepted,
            "warn" => Outcome::Warn,
            "require_approval" => Outcome::RequireApproval,
            "deny" => Outcome::Deny,
            _ => return None,
        })
    }
}

/// The final outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Warn,
    RequireApproval,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Warn => "warn",
            Decision::RequireApproval => "require_approval",
            Decision::Deny => "deny",
        }
    }
}

/// deny > require-approval > warn > allow; passes and excepted findings do not count.
pub fn decide<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Decision {
    outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Deny => Decision::Deny,
            Outcome::RequireApproval => Decision::RequireApproval,
            Outcome::Warn => Decision::Warn,
            Outcome::Pass | Outcome::Excepted => Decision::Allow,
        })
        .max()
        .unwrap_or(Decision::Allow)
}

/// One rule's outcome for one resource (or for the whole input).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RuleResult {
    /// `package.rule` (`main.deny`) or the id the policy gave the result.
    pub rule: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Resource address (`module.db.aws_db_instance.main`, `Deployment/ns/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Approver groups of a `require_approval` result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// For `excepted`: the outcome the exception waived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waived: Option<Outcome>,
    /// The active exception applied (for `excepted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
    /// Expired exceptions that matched and were not honoured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired_exceptions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The bundle the rule came from.
    pub bundle: String,
    /// The Rego rule that produced the result (`data.main.deny`).
    pub source: String,
    /// The policy could not be evaluated (error or limit); the result fails closed as `deny`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub error: bool,
    /// How the result relates to the change (`new` or `pre_existing`), set on results that
    /// are not passes once the change has been judged against its baseline; absent in a
    /// record straight from the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<crate::baseline::Baseline>,
}

/// A bundle as the record names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BundleRef {
    pub name: String,
    /// `<commit>+sha256:<hex>` from git, else `sha256:<hex>`.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineRef {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub schema: String,
    pub engine: EngineRef,
    pub bundles: Vec<BundleRef>,
    /// `sha256:<hex>` of the canonical JSON of the evaluated input.
    pub input_digest: String,
    /// Sorted; identical results are listed once.
    pub results: Vec<RuleResult>,
    /// Ids of the active exceptions that waived a result, sorted.
    pub exceptions_applied: Vec<String>,
    /// Ids of expired exceptions that matched a result and were ignored, sorted.
    pub exceptions_expired: Vec<String>,
    pub outcome: Decision,
}

impl DecisionRecord {
    /// Put results and lists in their canonical order and compute the outcome.
    pub fn normalize(&mut self) {
        self.bundles.sort();
        self.bundles.dedup();
        self.results.sort();
        self.results.dedup();
        self.exceptions_applied = self
            .results
            .iter()
            .filter_map(|r| r.exception.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        self.exceptions_expired = self
            .results
            .iter()
            .flat_map(|r| r.expired_exceptions.iter().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        self.outcome = decide(self.results.iter().map(|r| &r.outcome));
    }

    pub fn to_json_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("decision records serialize")
    }

    /// The canonical bytes: what is stored, signed and bound to approvals.
    pub fn to_canonical_json(&self) -> String {
        canonical::to_string(&self.to_json_value())
    }

    /// `sha256:<hex>` of [`Self::to_canonical_json`].
    pub fn digest(&self) -> String {
        canonical::digest_bytes(self.to_canonical_json().as_bytes())
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn precedence_is_deny_over_approval_over_warn_over_allow() {
        use Outcome::*;
        assert_eq!(decide(&[]), Decision::Allow);
        assert_eq!(decide(&[Pass, Excepted]), Decision::Allow);
        assert_eq!(decide(&[Warn, Pass]), Decision::Warn);
        assert_eq!(decide(&[Warn, RequireApproval]), Decision::RequireApproval);
        assert_eq!(decide(&[RequireApproval, Deny, Warn]), Decision::Deny);
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::Pass),
            Just(Outcome::Excepted),
            Just(Outcome::Warn),
            Just(Outcome::RequireApproval),
            Just(Outcome::Deny),
        ]
    }

    proptest! {
        #[test]
        fn decision_is_order_independent_and_monotone(mut v in prop::collection::vec(outcome(), 0..12), extra in outcome()) {
            let d = decide(&v);
            v.reverse();
            prop_assert_eq!(decide(&v), d);
            v.push(extra);
            prop_assert!(decide(&v) >= d, "adding a result never lowers the decision");
        }
    }
}
