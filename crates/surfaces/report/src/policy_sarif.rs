//! Policy decision records as SARIF 2.1.0 runs, for stacks and apps alike.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};
use sluice_flow::decide::StackDecision;
use sluice_model::change::UnitKind;
use sluice_model::record::{DecisionRecord, Outcome};

use crate::markdown::docs_link;

/// Policy findings of decisions as a SARIF 2.1.0 run (passes are left out; excepted findings
/// carry an external suppression naming the exception). `location` is the artifact each
/// decision's findings point at (the plan JSON file, or the stack's folder).
pub fn decisions_sarif(
    decisions: &[(&StackDecision, &str)],
    tool_version: &str,
    docs_url: &str,
) -> Value {
    let mut rules: BTreeMap<String, Value> = BTreeMap::new();
    let mut results = Vec::new();
    for (d, location) in decisions {
        let unit = SarifUnit {
            kind: UnitKind::Stack,
            name: &d.stack,
            uri: location,
            risk: d.risk.risk,
            decision_digest: &d.policy.decision_digest,
            docs_url,
        };
        push_policy_results(&d.policy.record, &unit, &mut rules, &mut results);
    }
    sarif_run("sluice-policy", tool_version, rules, results)
}

/// The unit (stack or app) a decision record's SARIF results belong to.
pub struct SarifUnit<'a> {
    /// Names the property that holds the unit (`stack` or `app`).
    pub kind: UnitKind,
    pub name: &'a str,
    /// The artifact the findings point at.
    pub uri: &'a str,
    pub risk: sluice_model::risk::RiskLevel,
    pub decision_digest: &'a str,
    /// Where relative documentation links resolve ([`docs_link`]).
    pub docs_url: &'a str,
}

/// Adds the findings of one decision record (passes left out) to a SARIF run's rules and
/// results; excepted findings carry an external suppression naming the exception.
pub fn push_policy_results(
    record: &DecisionRecord,
    unit: &SarifUnit<'_>,
    rules: &mut BTreeMap<String, Value>,
    results: &mut Vec<Value>,
) {
    for r in record.results.iter().filter(|r| r.outcome != Outcome::Pass) {
        rules.entry(r.rule.clone()).or_insert_with(|| {
            let mut rule = json!({
                "id": r.rule,
                "shortDescription": {"text": format!("policy rule {}", r.rule)},
            });
            if let Some(docs) = &r.docs {
                rule["helpUri"] = json!(docs_link(unit.docs_url, docs));
            }
            rule
        });
        let level = match r.outcome {
            Outcome::Deny => "error",
            Outcome::RequireApproval | Outcome::Warn => "warning",
            Outcome::Excepted | Outcome::Pass => "note",
        };
        let mut message = if r.message.is_empty() {
            r.rule.clone()
        } else {
            r.message.clone()
        };
        if r.outcome == Outcome::RequireApproval && !r.groups.is_empty() {
            let _ = write!(message, " (approval by {})", r.groups.join(", "));
        }
        let mut logical = vec![json!({"name": unit.name, "kind": "module"})];
        if let Some(a) = &r.resource {
            logical.push(json!({
                "name": a,
                "fullyQualifiedName": format!("{}/{a}", unit.name),
                "kind": "resource",
            }));
        }
        let mut result = json!({
            "ruleId": r.rule,
            "level": level,
            "message": {"text": message},
            "locations": [{
                "physicalLocation": {"artifactLocation": {"uri": unit.uri}},
                "logicalLocations": logical,
            }],
            "properties": {
                "outcome": r.outcome.as_str(),
                unit.kind.as_str(): unit.name,
                "risk": unit.risk,
                "decisionDigest": unit.decision_digest,
            },
        });
        if let Some(e) = &r.exception {
            result["suppressions"] = json!([{
                "kind": "external",
                "justification": format!("exception {e}"),
            }]);
        }
        results.push(result);
    }
}

/// A SARIF run of `tool` over `rules` and `results`, each result indexed to its rule.
pub fn sarif_run(
    tool: &str,
    tool_version: &str,
    rules: BTreeMap<String, Value>,
    mut results: Vec<Value>,
) -> Value {
    let rules: Vec<Value> = rules.into_values().collect();
    let index: BTreeMap<String, usize> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r["id"].as_str().unwrap_or_default().to_string(), i))
        .collect();
    for r in &mut results {
        let id = r["ruleId"].as_str().unwrap_or_default().to_string();
        r["ruleIndex"] = json!(index[&id]);
    }
    json!({
        "tool": {"driver": {
            "name": tool,
            "version": tool_version,
            "informationUri": crate::INFORMATION_URI,
            "rules": rules,
        }},
        "results": results,
    })
}

/// A SARIF log holding `runs`.
pub fn sarif_log(runs: Vec<Value>) -> Value {
    json!({
        "$schema": crate::SARIF_SCHEMA,
        "version": crate::SARIF_VERSION,
        "runs": runs,
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::tests::{decision, plan, record};

    #[test]
    fn sarif_leaves_passes_out_and_suppresses_excepted() {
        let mut rec = record(&[
            ("db-public-access", "pass", None),
            ("db-public-access", "deny", Some("a.b")),
            ("sg-open-ingress", "excepted", Some("aws_security_group.x")),
        ]);
        for r in &mut rec.results {
            if r.outcome == Outcome::Excepted {
                r.exception = Some("EXC-1".into());
            }
        }
        let d = decision(&plan(&[("aws_s3_bucket.a", "create")]), rec, "dev");
        let run = decisions_sarif(&[(&d, "plan.json")], "0.1.0", "https://docs.example/");
        let results = run["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["level"], "error");
        assert_eq!(
            results[1]["suppressions"][0]["justification"],
            "exception EXC-1"
        );
        assert_eq!(run["tool"]["driver"]["rules"].as_array().unwrap().len(), 2);
    }
}
