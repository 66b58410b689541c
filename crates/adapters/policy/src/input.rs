//! The input document policies see. For a stack's plan it is
//! `{"plan": …, "change": …, "stack": …}` (conftest's conventions, sluice's names); for an app's
//! rendered manifests `{"manifests": [...], "change": …, "app": …}` (or `"manifest"` for one
//! object). Secret values never reach a policy: a plan input can only be built from a
//! [`RedactedPlan`] (sensitive values hidden wherever they occur, plan state and variable
//! values dropped), and Secret manifests' values are replaced by `<redacted>`.

use serde::Serialize;
use sluice_model::change::ChangeId;
use sluice_model::redact::RedactedPlan;

/// Plan JSON keys that never reach a policy: `prior_state` holds every attribute of the current
/// state (secrets included) and `variables` the variable values of the run.
pub const STRIPPED_PLAN_KEYS: &[&str] = &["prior_state", "variables"];

/// The change a document belongs to (`input.change`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChangeContext {
    /// DESIGN.md §2: `infra-live#412@9f3a12c/prod/ap-southeast-1/rds-payments`; absent (never
    /// empty) when the document belongs to no recorded change, e.g. `sluice policy eval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<ChangeId>,
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

    /// The input for a stack's plan: `input.plan`, `input.change` and `input.stack` (the
    /// stack's metadata). The plan must be the redacted view (the type says so) and is moved,
    /// not copied: a 10,000-change plan is a few hundred MB as a JSON tree. `prior_state` and
    /// `variables` are removed as well, whatever the redacted view kept of them.
    pub fn plan(plan: RedactedPlan, change: &ChangeContext, stack: serde_json::Value) -> Self {
        let mut plan = plan.into_value();
        if let serde_json::Value::Object(map) = &mut plan {
            for key in STRIPPED_PLAN_KEYS {
                map.remove(*key);
            }
        }
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

/// What `input.app` holds for a GitOps app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AppContext {
    /// The app id (`prod-ap-southeast-1/payments`).
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub env: String,
    /// Whether `env` is a protected (production) environment.
    pub protected: bool,
    /// Destination namespace applied to namespaced objects without one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// Repository folder of the app.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
}

/// Replaces every Secret value in a policy input.
pub const REDACTED: &str = "<redacted>";

impl EvalInput {
    /// The input for an app's rendered objects: `input.manifests` (Secret values redacted),
    /// `input.change` and `input.app`. Exception globs match `app-id/Kind/namespace/name`.
    pub fn manifests(
        objects: &[serde_json::Value],
        change: &ChangeContext,
        app: &AppContext,
    ) -> Self {
        let objects: Vec<serde_json::Value> = objects.iter().map(redact_manifest).collect();
        Self::app_document("manifests", serde_json::Value::Array(objects), change, app)
    }

    /// The input for one object: `input.manifest` (Secret values redacted), `input.change`
    /// and `input.app`.
    pub fn manifest(object: &serde_json::Value, change: &ChangeContext, app: &AppContext) -> Self {
        Self::app_document("manifest", redact_manifest(object), change, app)
    }

    fn app_document(
        key: &str,
        value: serde_json::Value,
        change: &ChangeContext,
        app: &AppContext,
    ) -> Self {
        let mut change = change.clone();
        if change.stack.is_empty() {
            change.stack = app.id.clone();
        }
        if change.env.is_empty() {
            change.env = app.env.clone();
        }
        if change.production.is_none() {
            change.production = Some(app.protected);
        }
        let mut doc = serde_json::Map::new();
        doc.insert(key.into(), value);
        doc.insert(
            "change".into(),
            serde_json::to_value(&change).expect("change context serializes"),
        );
        doc.insert(
            "app".into(),
            serde_json::to_value(app).expect("app context serializes"),
        );
        EvalInput {
            document: serde_json::Value::Object(doc),
            unit: change.stack.clone(),
        }
    }
}

/// A copy of a manifest a policy may see: for a core `Secret`, every value of `data` and
/// `stringData` (and a `last-applied-configuration` annotation, which repeats them) becomes
/// `<redacted>`; keys stay, so policies can name them. Other objects are unchanged.
pub fn redact_manifest(object: &serde_json::Value) -> serde_json::Value {
    let mut out = object.clone();
    let is_secret = object.get("kind").and_then(|k| k.as_str()) == Some("Secret")
        && object
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .is_none_or(|v| v == "v1");
    if !is_secret {
        return out;
    }
    for field in ["data", "stringData"] {
        if let Some(map) = out.get_mut(field).and_then(|d| d.as_object_mut()) {
            for v in map.values_mut() {
                *v = serde_json::Value::String(REDACTED.into());
            }
        } else if let Some(v) = out.get_mut(field)
            && !v.is_null()
        {
            *v = serde_json::Value::String(REDACTED.into());
        }
    }
    if let Some(ann) = out
        .pointer_mut("/metadata/annotations")
        .and_then(|a| a.as_object_mut())
        && let Some(v) = ann.get_mut("kubectl.kubernetes.io/last-applied-configuration")
    {
        *v = serde_json::Value::String(REDACTED.into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The redacted view of a plan JSON document.
    fn redacted(plan: &serde_json::Value) -> RedactedPlan {
        RedactedPlan::parse(
            "plan.json",
            plan.to_string().as_bytes(),
            &Default::default(),
        )
        .expect("test plans parse")
    }

    #[test]
    fn plan_input_strips_state_and_variables_and_hides_copies() {
        // The masked value also appears unmasked in `before.output` (as Terraform writes a
        // `terraform_data` update): the policy must not see it there either.
        let plan = json!({
            "format_version": "1.2",
            "variables": {"db_password": {"value": "hunter2-canary"}},
            "prior_state": {"values": {"root_module": {"resources": [{"values": {"password": "hunter2-canary"}}]}}},
            "resource_changes": [{
                "address": "terraform_data.x", "mode": "managed", "type": "terraform_data", "name": "x",
                "change": {
                    "actions": ["update"],
                    "before": {"input": "hunter2-canary", "output": "hunter2-canary"},
                    "after": {"input": "hunter2-canary-2"},
                    "after_unknown": {"output": true},
                    "before_sensitive": {"input": true},
                    "after_sensitive": {"input": true}
                }
            }]
        });
        let change = ChangeContext {
            env: "prod".into(),
            stack: "prod/eu-west-1/data".into(),
            production: Some(true),
            ..Default::default()
        };
        let input = EvalInput::plan(
            redacted(&plan),
            &change,
            json!({"id": "prod/eu-west-1/data"}),
        );
        let text = input.document.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(input.document["plan"].get("variables").is_none());
        assert_eq!(input.document["plan"]["format_version"], "1.2");
        assert_eq!(
            input.document["change"],
            json!({"env": "prod", "stack": "prod/eu-west-1/data", "production": true})
        );
        assert_eq!(input.unit, "prod/eu-west-1/data");
    }

    #[test]
    fn the_correlation_id_is_the_rendered_change_id_or_absent() {
        let id = ChangeId {
            repo: "infra-live".into(),
            pr: Some(412),
            commit: "9f3a12cdeadbeef".into(),
            env: "prod".into(),
            unit: "prod/eu-west-1/data".into(),
        };
        let with = ChangeContext {
            correlation_id: Some(id),
            ..Default::default()
        };
        let doc = EvalInput::plan(
            redacted(&json!({"format_version": "1.2", "resource_changes": []})),
            &with,
            json!({}),
        )
        .document;
        assert_eq!(
            doc["change"]["correlation_id"],
            "infra-live#412@9f3a12c/prod/eu-west-1/data"
        );
        let without = EvalInput::plan(
            redacted(&json!({"format_version": "1.2", "resource_changes": []})),
            &ChangeContext::default(),
            json!({}),
        )
        .document;
        assert!(
            without["change"].get("correlation_id").is_none(),
            "{without}"
        );
    }

    #[test]
    fn manifest_input_redacts_secret_values_and_keeps_keys() {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "pay", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"aHVudGVyMi1jYW5hcnk=\"}}"}},
            "data": {"password": "aHVudGVyMi1jYW5hcnk="},
            "stringData": {"token": "hunter2-canary"}
        });
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "visible"}});
        let app = AppContext {
            id: "prod-eu/payments".into(),
            env: "prod".into(),
            protected: true,
            ..Default::default()
        };
        let input = EvalInput::manifests(&[secret.clone(), cm], &ChangeContext::default(), &app);
        let text = input.document.to_string();
        assert!(
            !text.contains("hunter2-canary") && !text.contains("aHVudGVy"),
            "{text}"
        );
        assert_eq!(input.document["manifests"][0]["data"]["password"], REDACTED);
        assert_eq!(input.document["manifests"][1]["data"]["k"], "visible");
        assert_eq!(input.document["change"]["stack"], "prod-eu/payments");
        assert_eq!(input.document["change"]["production"], true);
        assert_eq!(input.document["app"]["protected"], true);
        assert_eq!(input.unit, "prod-eu/payments");
        let one = EvalInput::manifest(&secret, &ChangeContext::default(), &app);
        assert!(!one.document.to_string().contains("hunter2-canary"));
    }
}
