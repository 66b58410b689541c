//! Every JSON file under `../shared/corpus/tf-plans` (terraform-json testdata, Checkov's plan
//! fixtures): each is either a plan that parses — with summary counts equal to an independent
//! count over the raw JSON — or rejected for the documented reason in [`REJECTED`]. Plus
//! snapshots of the summary of a few interesting plans (moved, replace with reason,
//! sensitive outputs, import by identity, deferred changes).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use sluice_model::plan::{Action, Plan, PlanError};
use sluice_model::redact::{RedactionRules, redact_plan};

fn corpus() -> Option<PathBuf> {
    sluice_testkit::corpus("tf-plans")
}

/// What a non-plan file must be rejected as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejection {
    /// State, provider schemas, function signatures: valid JSON, not a plan.
    NotAPlan,
    /// Deliberately broken JSON (terraform-json's `invalid` fixtures).
    Malformed,
}

/// Files that are not plans, and why (paths relative to tf-plans). Everything else must parse.
const REJECTED: &[(&str, Rejection)] = &[
    // terraform-json: the fixtures of its own negative tests.
    (
        "terraform-json/testdata/invalid/plan.json",
        Rejection::Malformed,
    ),
    (
        "terraform-json/testdata/invalid/state.json",
        Rejection::Malformed,
    ),
    // Checkov: a state JSON (`values`, no `planned_values`) named like a plan.
    (
        "checkov/tests/terraform/runner/resources/plan/corrupted-tfplan.json",
        Rejection::NotAPlan,
    ),
    // Checkov: a hand-written fixture without `format_version` (no engine writes that).
    (
        "checkov/tests/terraform/parser/resources/plan_vpc_endpoint/tfplan.json",
        Rejection::NotAPlan,
    ),
];

/// terraform-json's non-plan documents by name: `state.json`, `schemas.json`, `functions.json`,
/// `show.json` of a state, state-store configs.
fn expected_rejection(rel: &str) -> Option<Rejection> {
    if let Some((_, r)) = REJECTED.iter().find(|(p, _)| *p == rel) {
        return Some(*r);
    }
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let not_plan_names = [
        "state.json",
        "schemas.json",
        "functions.json",
        "show.json",
        "single_store.json",
    ];
    not_plan_names
        .contains(&name)
        .then_some(Rejection::NotAPlan)
}

/// Decode independently of the model: BOM-aware, as a second opinion.
fn raw_json(bytes: &[u8]) -> Value {
    let text = if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).unwrap()
    } else {
        String::from_utf8(
            bytes
                .strip_prefix(&[0xEF, 0xBB, 0xBF])
                .unwrap_or(bytes)
                .to_vec(),
        )
        .unwrap()
    };
    serde_json::from_str(&text).unwrap()
}

/// The independent count: walk the raw JSON, no model types involved.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counted {
    per_action: BTreeMap<String, usize>,
    moved: usize,
    imported: usize,
    drifted: usize,
    deferred: usize,
    outputs_changed: usize,
    replaced: usize,
    forgotten: usize,
}

fn count(raw: &Value) -> Counted {
    let mut c = Counted::default();
    let list = |k: &str| {
        raw.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for rc in list("resource_changes") {
        let actions: Vec<&str> = rc["change"]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        *c.per_action.entry(actions.join(",")).or_default() += 1;
        if actions.len() == 2 {
            c.replaced += 1;
        }
        if actions.contains(&"forget") {
            c.forgotten += 1;
        }
        if rc
            .get("previous_address")
            .and_then(Value::as_str)
            .is_some_and(|p| Some(p) != rc["address"].as_str())
        {
            c.moved += 1;
        }
        if rc["change"].get("importing").is_some_and(|i| !i.is_null()) {
            c.imported += 1;
        }
    }
    c.drifted = list("resource_drift").len();
    c.deferred = list("deferred_changes").len();
    if let Some(outputs) = raw.get("output_changes").and_then(Value::as_object) {
        c.outputs_changed = outputs
            .values()
            .filter(|o| o["actions"] != serde_json::json!(["no-op"]))
            .count();
    }
    c
}

fn counted_from_summary(plan: &Plan) -> Counted {
    let s = plan.summary();
    let mut per_action = BTreeMap::new();
    for a in Action::ALL {
        if s.counts.get(a) > 0 {
            per_action.insert(a.as_list().join(","), s.counts.get(a));
        }
    }
    Counted {
        per_action,
        moved: s.moved.len(),
        imported: s.imported.len(),
        drifted: s.drifted.len(),
        deferred: s.deferred.len(),
        outputs_changed: s.outputs.len(),
        replaced: s.replaced.len(),
        forgotten: s.forgotten.len(),
    }
}

#[test]
fn every_corpus_plan_parses_or_is_rejected_for_its_documented_reason() {
    let Some(root) = corpus() else { return };
    let files = sluice_testkit::files_with_extension(&root, "json");
    assert!(
        files.len() > 60,
        "corpus looks incomplete: {} files",
        files.len()
    );
    let rules = RedactionRules::default();
    let (mut parsed, mut rejected, mut changes) = (0, 0, 0);
    for path in &files {
        let rel = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let bytes = std::fs::read(path).unwrap();
        let result = Plan::parse(&rel, &bytes);
        match (expected_rejection(&rel), result) {
            (None, Ok(plan)) => {
                let raw = raw_json(&bytes);
                assert_eq!(counted_from_summary(&plan), count(&raw), "{rel}");
                assert_eq!(
                    plan.resource_changes.len(),
                    raw["resource_changes"].as_array().map_or(0, Vec::len)
                );
                // Redaction runs over every real plan, and the rendered plan never carries
                // variables' values or prior state.
                let red = redact_plan(&plan, &rules);
                let v = red.as_value();
                assert!(v.get("prior_state").is_none(), "{rel}");
                for var in v["variables"].as_object().unwrap().values() {
                    assert_eq!(var, &serde_json::json!({}), "{rel}");
                }
                changes += plan.resource_changes.len();
                parsed += 1;
            }
            (Some(Rejection::NotAPlan), Err(PlanError::NotAPlan { file, reason })) => {
                assert_eq!(file, rel);
                assert!(!reason.is_empty());
                rejected += 1;
            }
            (
                Some(Rejection::Malformed),
                Err(PlanError::Malformed {
                    file, line, col, ..
                }),
            ) => {
                assert_eq!(file, rel);
                assert!(line > 1 && col > 0, "{rel}: {line}:{col}");
                rejected += 1;
            }
            (want, got) => panic!("{rel}: expected {want:?}, got {got:?}"),
        }
    }
    eprintln!("{parsed} plans ({changes} resource changes) parsed, {rejected} non-plans rejected");
    assert!(
        parsed >= 60 && changes >= 400,
        "{parsed} plans, {changes} changes"
    );
}

#[test]
fn malformed_corpus_plan_reports_its_position() {
    let Some(root) = corpus() else { return };
    let rel = "terraform-json/testdata/invalid/plan.json";
    let bytes = std::fs::read(root.join(rel)).unwrap();
    let err = Plan::parse(rel, &bytes).unwrap_err();
    // Python's json module puts the first error at line 676 column 29 (trailing data after
    // the top-level object); serde_json agrees on the line.
    match &err {
        PlanError::Malformed { line, .. } => assert_eq!(*line, 676, "{err}"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with(&format!("{rel}:676:")), "{err}");
}

#[test]
fn legacy_and_utf16_corpus_plans_carry_warnings() {
    let Some(root) = corpus() else { return };
    let legacy = "terraform-json/testdata/basic/plan.json";
    let p = Plan::parse(legacy, &std::fs::read(root.join(legacy)).unwrap()).unwrap();
    assert_eq!(p.format_version.unwrap().to_string(), "0.1");
    assert!(p.warnings.iter().any(|w| w.message.contains("0.12–1.0")));
    let utf16 = "checkov/tests/terraform/parser/resources/plan_encodings/tfplan_win_utf16.json";
    let p = Plan::parse(utf16, &std::fs::read(root.join(utf16)).unwrap()).unwrap();
    assert!(p.warnings.iter().any(|w| w.message.contains("UTF-16LE")));
    assert!(!p.resource_changes.is_empty());
}

fn summary_of(rel: &str) -> Option<Value> {
    let root = corpus()?;
    let plan = Plan::parse(rel, &std::fs::read(root.join(rel)).unwrap()).unwrap();
    Some(serde_json::to_value(plan.summary()).unwrap())
}

#[test]
fn snapshot_moved_block() {
    if let Some(s) = summary_of("terraform-json/testdata/moved_block/plan.json") {
        insta::assert_json_snapshot!("moved_block", s);
    }
}

#[test]
fn snapshot_replace_with_reason() {
    if let Some(s) = summary_of("terraform-json/testdata/action_reason/plan.json") {
        insta::assert_json_snapshot!("action_reason", s);
    }
}

#[test]
fn snapshot_sensitive_values() {
    if let Some(s) = summary_of("terraform-json/testdata/110_sensitive_values/plan.json") {
        insta::assert_json_snapshot!("sensitive_values", s);
    }
}

/// Where the masks put `(sensitive)`: a sensitive output's value, `sensitive_values` in
/// `planned_values`, and nothing else.
#[test]
fn snapshot_sensitive_values_redacted() {
    let Some(root) = corpus() else { return };
    let rel = "terraform-json/testdata/110_sensitive_values/plan.json";
    let plan = Plan::parse(rel, &std::fs::read(root.join(rel)).unwrap()).unwrap();
    let red = redact_plan(&plan, &RedactionRules::default()).into_value();
    insta::assert_json_snapshot!(
        "sensitive_values_redacted",
        serde_json::json!({
            "output_changes": red["output_changes"],
            "planned_outputs": red["planned_values"]["outputs"],
            "variables": red["variables"],
        })
    );
}

#[test]
fn snapshot_import_by_identity() {
    if let Some(s) = summary_of("terraform-json/testdata/identity/plan.json") {
        insta::assert_json_snapshot!("identity", s);
    }
}

/// No corpus plan has deferred changes (Terraform ≥ 1.9 with `-allow-deferral`), so this one is
/// written from the documented format: a provider configured from an unknown value defers the
/// resources it manages, and `complete` is false.
#[test]
fn snapshot_deferred_changes() {
    let doc = serde_json::json!({
        "format_version": "1.2",
        "terraform_version": "1.10.0",
        "planned_values": {"root_module": {}},
        "resource_changes": [{
            "address": "aws_eks_cluster.main", "mode": "managed", "type": "aws_eks_cluster",
            "name": "main", "provider_name": "registry.terraform.io/hashicorp/aws",
            "change": {"actions": ["create"], "before": null, "after": {"name": "main"},
                       "after_unknown": {"endpoint": true}, "before_sensitive": false,
                       "after_sensitive": {}}
        }],
        "deferred_changes": [{
            "reason": "provider_config_unknown",
            "resource_change": {
                "address": "kubernetes_namespace.apps", "mode": "managed",
                "type": "kubernetes_namespace", "name": "apps",
                "provider_name": "registry.terraform.io/hashicorp/kubernetes",
                "change": {"actions": ["create"], "before": null, "after": {},
                           "after_unknown": {}, "before_sensitive": false, "after_sensitive": {}}
            }
        }, {
            "reason": "resource_config_unknown",
            "resource_change": {
                "address": "helm_release.ingress[\"a\"]", "mode": "managed",
                "type": "helm_release", "name": "ingress", "index": "a",
                "provider_name": "registry.terraform.io/hashicorp/helm",
                "change": {"actions": ["create"], "before": null, "after": {},
                           "after_unknown": {}, "before_sensitive": false, "after_sensitive": {}}
            }
        }],
        "complete": false,
        "applyable": true
    });
    let plan = Plan::parse("deferred.json", doc.to_string().as_bytes()).unwrap();
    let s = plan.summary();
    assert!(!s.complete);
    insta::assert_json_snapshot!("deferred", serde_json::to_value(&s).unwrap());
    insta::assert_snapshot!("deferred_text", s.render_text());
}
