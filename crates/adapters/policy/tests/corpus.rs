//! The whole built-in pack over every real plan in `../shared/corpus/tf-plans`: no plan may make
//! a rule error (an error would fail closed and block a real change for nothing).

use std::path::PathBuf;

use serde_json::{Value, json};
use sluice_model::exception::Timestamp;
use sluice_model::redact::RedactedPlan;
use sluice_policy::engine::{BuiltinSettings, EngineOptions, EngineSpec, PolicyEngine};
use sluice_policy::input::{ChangeContext, EvalInput};
use sluice_policy::record::Outcome;

fn corpus() -> Option<PathBuf> {
    sluice_testkit::corpus("tf-plans")
}

/// Plan JSON as `terraform show -json` writes it (format 1.x or the 0.x of Terraform 0.12+).
fn is_plan(v: &Value) -> bool {
    v.get("format_version").is_some()
        && (v.get("resource_changes").is_some() || v.get("planned_values").is_some())
}

#[test]
fn builtin_pack_evaluates_every_corpus_plan_without_error() {
    let Some(dir) = corpus() else { return };
    let engine = PolicyEngine::new(EngineSpec {
        builtin: Some(BuiltinSettings::default()),
        now: Some(Timestamp::parse_rfc3339("2025-06-01T00:00:00Z").unwrap()),
        ..Default::default()
    })
    .unwrap();
    // The same pack evaluated over the whole input, to hold each rule's declared view (the
    // resource types it reads) to what its Rego reads.
    let full = PolicyEngine::new(EngineSpec {
        builtin: Some(BuiltinSettings::default()),
        now: Some(Timestamp::parse_rfc3339("2025-06-01T00:00:00Z").unwrap()),
        options: EngineOptions {
            input_views: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let files = sluice_testkit::files_with_extension(&dir, "json");
    let (mut plans, mut skipped) = (0, 0);
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut errors = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            skipped += 1; // not UTF-8 (the UTF-16 fixture)
            continue;
        };
        let Ok(plan) = serde_json::from_str::<Value>(text.trim_start_matches('\u{feff}')) else {
            skipped += 1; // deliberately corrupted fixtures
            continue;
        };
        if !is_plan(&plan) {
            skipped += 1; // provider schemas, configs
            continue;
        }
        // Policies only ever see the redacted plan; a plan sluice rejects never reaches them.
        let Ok(redacted) = RedactedPlan::parse(
            &file.display().to_string(),
            text.as_bytes(),
            &Default::default(),
        ) else {
            skipped += 1;
            continue;
        };
        plans += 1;
        for production in [true, false] {
            let ctx = ChangeContext {
                env: if production { "prod" } else { "dev" }.into(),
                stack: "corpus/stack".into(),
                production: Some(production),
                ..Default::default()
            };
            let input = EvalInput::plan(redacted.clone(), &ctx, json!({"id": "corpus/stack"}));
            let record = engine.evaluate(&input).unwrap();
            if production {
                let whole = full.evaluate(&input).unwrap();
                assert_eq!(
                    record.to_canonical_json(),
                    whole.to_canonical_json(),
                    "{}: a rule's view changes its results",
                    file.display()
                );
            }
            for r in record.results.iter().filter(|r| r.error) {
                errors.push(format!("{}: {}", file.display(), r.message));
            }
            if production {
                for r in &record.results {
                    *counts.entry(r.outcome.as_str()).or_default() += 1;
                }
                *counts.entry(record.outcome.as_str()).or_default() += 0;
            }
        }
    }
    eprintln!(
        "corpus: {plans} plans evaluated, {skipped} other JSON files skipped; results (production): {counts:?}"
    );
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(plans >= 50, "only {plans} plans found in the corpus");
    // The corpus holds real misconfigurations (Checkov's fixtures): the pack must find some.
    assert!(
        counts.get(Outcome::Deny.as_str()).copied().unwrap_or(0) > 0,
        "{counts:?}"
    );
    assert!(
        counts.get(Outcome::Pass.as_str()).copied().unwrap_or(0) > 0,
        "{counts:?}"
    );
}
