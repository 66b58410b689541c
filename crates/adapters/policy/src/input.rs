//! The input document policies see. For a stack's plan it is
//! `{"plan": …, "change": …, "stack": …}` (conftest's conventions, sluice's names); other stages
//! (GitOps manifests) build their own document and use the same engine.

use serde::Serialize;

/// Plan JSON keys that never reach a policy: `prior_state` holds every attribute of the current
/// state (secrets included) and `variables` the variable values of the run.
pub const STRIPPED_PLAN_KEYS: &[&str] = &["prior_state", "variables"];

/// The change a document belongs to (`input.change`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChangeContext {
    /// DESIGN.md §2: `infra-live#412@9f3a12c/prod/ap-southeast-1/rds-payments`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub correlation_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub env: String,
    /// The stack (or app) id the document is about.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stack: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Whether `env` is a production (protected) environment, when the caller knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub production: Option<bool>,
}

/// What one evaluation runs over.
#[derive(Debug, Clone)]
pub struct EvalInput {
    /// The `input` document (a JSON object).
    pub document: serde_json::Value,
    /// The unit (stack or app id) exception globs are matched against (`unit/address`).
    pub unit: String,
}

impl EvalInput {
    /// A generic document, e.g. `{"manifests": [...]}` for a GitOps app.
    pub fn new(document: serde_json::Value, unit: impl Into<String>) -> Self {
        EvalInput {
            document,
            unit: unit.into(),
        }
    }

    /// The input for a stack's plan: `input.plan` (without `prior_state` and `variables`, even
    /// if the caller left them in), `input.change` and `input.stack` (the stack's metadata).
    pub fn plan(
        plan: &serde_json::Value,
        change: &ChangeContext,
        stack: serde_json::Value,
    ) -> Self {
        let plan = strip_plan(plan);
        let mut doc = serde_json::Map::new();
        doc.insert("plan".into(), plan);
        doc.insert(
            "change".into(),
            serde_json::to_value(change).expect("change context serializes"),
        );
        doc.insert("stack".into(), stack);
        EvalInput {
            document: serde_json::Value::Object(doc),
            unit: change.stack.clone(),
        }
    }
}

/// A copy of the plan without the keys policies must never see.
pub fn strip_plan(plan: &serde_json::Value) -> serde_json::Value {
    match plan {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .filter(|(k, _)| !STRIPPED_PLAN_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plan_input_strips_state_and_variables() {
        let plan = json!({
            "format_version": "1.2",
            "variables": {"db_password": {"value": "hunter2-canary"}},
            "prior_state": {"values": {"root_module": {"resources": [{"values": {"password": "hunter2-canary"}}]}}},
            "resource_changes": []
        });
        let change = ChangeContext {
            env: "prod".into(),
            stack: "prod/eu-west-1/data".into(),
            production: Some(true),
            ..Default::default()
        };
        let input = EvalInput::plan(&plan, &change, json!({"id": "prod/eu-west-1/data"}));
        let text = input.document.to_string();
        assert!(!text.contains("hunter2-canary"), "{text}");
        assert_eq!(input.document["plan"]["format_version"], "1.2");
        assert_eq!(
            input.document["change"],
            json!({"env": "prod", "stack": "prod/eu-west-1/data", "production": true})
        );
        assert_eq!(input.unit, "prod/eu-west-1/data");
    }
}
