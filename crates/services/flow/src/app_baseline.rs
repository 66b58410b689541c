//! Baselines for apps: the manifest policy results and schema findings of an app's head
//! render matched against those of its merge-base render (`sluice_model::baseline`), so that
//! only what the change introduced blocks by default. An image bump is not denied for five
//! hostPath Pods nobody touched.
//!
//! Policy results are identified by rule, resource (`Kind/namespace/name`) and message (a
//! message that names a value the change altered makes the result new, as it should); schema
//! findings by rule, object and field path, and one whose field the change altered is new.

use serde::Serialize;
use serde_json::Value;
use sluice_model::baseline::{self, Baseline, FindingKey, HeadFinding, PreexistingPolicy};
use sluice_model::finding::Severity;
use sluice_policy::{DecisionRecord, Outcome};
use sluice_render::diagnostic::Diagnostic;
use sluice_render::object::{Identity, Object};

/// One policy result that is not a pass, and how it relates to the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassifiedResult {
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    pub outcome: Outcome,
    pub class: Baseline,
    /// It blocks the change: a new denial, or a pre-existing one `policy.preexisting` blocks.
    pub blocks: bool,
}

/// The app's manifest policy judged against its merge base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyBaseline {
    /// The merge-base render was evaluated (`false`: the app is new or its base did not
    /// render, and every result counts as new).
    pub base_evaluated: bool,
    /// Every head result that is not a pass, in record order.
    pub results: Vec<ClassifiedResult>,
    /// Results of the merge base the head no longer has.
    pub fixed: Vec<ClassifiedResult>,
}

impl PolicyBaseline {
    /// The denied rules that block (sorted, unique).
    pub fn blocking_denials(&self) -> Vec<&str> {
        let mut rules: Vec<&str> = self
            .results
            .iter()
            .filter(|r| r.blocks)
            .map(|r| r.rule.as_str())
            .collect();
        rules.sort_unstable();
        rules.dedup();
        rules
    }

    pub fn count(&self, class: Baseline) -> usize {
        match class {
            Baseline::Fixed => self.fixed.len(),
            c => self.results.iter().filter(|r| r.class == c).count(),
        }
    }
}

fn result_key(r: &sluice_policy::RuleResult) -> FindingKey {
    FindingKey::new(
        &r.rule,
        format!("{}\u{0}{}", r.resource.as_deref().unwrap_or(""), r.message),
    )
}

fn not_pass(r: &&sluice_policy::RuleResult) -> bool {
    r.outcome != Outcome::Pass
}

/// Classify the head record's results against the base record's (`None`: no base to judge
/// against). A result the engine could not evaluate always blocks: it fails closed.
pub fn classify_policy(
    base: Option<&DecisionRecord>,
    head: &DecisionRecord,
    policy: &PreexistingPolicy,
    env: Option<&str>,
) -> PolicyBaseline {
    let head_results: Vec<&sluice_policy::RuleResult> =
        head.results.iter().filter(not_pass).collect();
    let base_results: Vec<&sluice_policy::RuleResult> = base
        .map(|b| b.results.iter().filter(not_pass).collect())
        .unwrap_or_default();
    let base_keys: Vec<FindingKey> = base_results.iter().map(|r| result_key(r)).collect();
    let head_keys: Vec<HeadFinding> = head_results
        .iter()
        .map(|r| HeadFinding {
            key: result_key(r),
            touched: r.error,
        })
        .collect();
    let classified = baseline::classify(&base_keys, &head_keys);
    let entry = |r: &sluice_policy::RuleResult, class: Baseline| ClassifiedResult {
        rule: r.rule.clone(),
        resource: r.resource.clone(),
        outcome: r.outcome,
        class,
        blocks: r.outcome == Outcome::Deny && policy.blocks(class, &r.rule, env),
    };
    PolicyBaseline {
        base_evaluated: base.is_some(),
        results: head_results
            .iter()
            .zip(&classified.head)
            .map(|(r, c)| entry(r, *c))
            .collect(),
        fixed: classified
            .fixed
            .iter()
            .map(|i| entry(base_results[*i], Baseline::Fixed))
            .collect(),
    }
}

fn diagnostic_key(d: &Diagnostic) -> FindingKey {
    let object = d
        .object
        .as_ref()
        .map(Identity::to_string)
        .unwrap_or_default();
    FindingKey::new(
        &d.rule,
        format!("{object}\u{0}{}", d.path.as_deref().unwrap_or("")),
    )
}

/// The value at `pointer` in the object with `identity` among `objects`.
fn field<'o>(objects: &'o [Object], identity: &Identity, pointer: &str) -> Option<&'o Value> {
    objects
        .iter()
        .find(|o| &o.identity == identity)
        .and_then(|o| o.value.pointer(pointer))
}

/// Set `baseline` on every head schema finding and return the base findings the head fixed.
/// A finding whose field the change altered (or whose object is new) is new.
pub fn classify_schema(
    base_objects: &[Object],
    base_findings: &[Diagnostic],
    head_objects: &[Object],
    head_findings: &mut [Diagnostic],
) -> Vec<Diagnostic> {
    let base_keys: Vec<FindingKey> = base_findings.iter().map(diagnostic_key).collect();
    let head_keys: Vec<HeadFinding> = head_findings
        .iter()
        .map(|d| {
            let touched = match (&d.object, &d.path) {
                (Some(id), Some(p)) => {
                    let p = if p == "/" { "" } else { p.as_str() };
                    field(base_objects, id, p) != field(head_objects, id, p)
                }
                (Some(id), None) => !base_objects.iter().any(|o| &o.identity == id),
                _ => false,
            };
            HeadFinding {
                key: diagnostic_key(d),
                touched,
            }
        })
        .collect();
    let classified = baseline::classify(&base_keys, &head_keys);
    for (d, c) in head_findings.iter_mut().zip(classified.head) {
        d.baseline = Some(c);
    }
    classified
        .fixed
        .iter()
        .map(|i| {
            let mut d = base_findings[*i].clone();
            d.baseline = Some(Baseline::Fixed);
            d
        })
        .collect()
}

/// Errors among `findings` that block: new ones, and pre-existing ones the org blocks.
pub fn blocking_errors(
    findings: &[Diagnostic],
    policy: &PreexistingPolicy,
    env: Option<&str>,
) -> usize {
    findings
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .filter(|d| policy.blocks(d.baseline.unwrap_or(Baseline::New), &d.rule, env))
        .count()
}
