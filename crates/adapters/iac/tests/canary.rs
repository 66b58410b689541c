//! The canary: one secret string planted in every place a plan can carry it — provider-marked
//! sensitive values (flat and nested), attributes nobody marked but whose name says secret,
//! connection strings and URLs, PEM blocks, scripts, variables, prior state, configuration
//! literals, sensitive outputs, drift, deferred changes, generated HCL, engine stderr — and
//! every output sluice renders from it is searched for the canary: the summary (JSON, text,
//! Debug), the redacted plan JSON (the policy input), `Debug` of the parsed plan, error
//! messages for malformed plans and the stderr excerpt of a failure.

use serde_json::{Value, json};
use sluice_iac::classify;
use sluice_model::plan::Plan;
use sluice_model::redact::{RedactionRules, redact_plan};

const CANARY: &str = "CANARY-9c1f4e2b77";

fn resource(address: &str, rtype: &str, after: Value, after_sensitive: Value) -> Value {
    json!({
        "address": address, "mode": "managed", "type": rtype,
        "name": address.rsplit('.').next().unwrap(),
        "provider_name": "registry.terraform.io/hashicorp/aws",
        "change": {
            "actions": ["update"],
            "before": after.clone(), "after": after,
            "after_unknown": {},
            "before_sensitive": after_sensitive.clone(), "after_sensitive": after_sensitive
        }
    })
}

fn planted_plan() -> Value {
    let pem =
        format!("-----BEGIN RSA PRIVATE KEY-----\nMIIE{CANARY}\n-----END RSA PRIVATE KEY-----");
    let db = resource(
        "aws_db_instance.main",
        "aws_db_instance",
        json!({"identifier": "payments", "password": CANARY, "settings": [{"name": "a", "value": CANARY}]}),
        json!({"password": true, "settings": [{"value": true}]}),
    );
    let unmarked = resource(
        "aws_ssm_parameter.conf",
        "aws_ssm_parameter",
        json!({
            "name": "/app/conf",
            "db_password": CANARY,
            "clientSecret": CANARY,
            "connection_url": format!("postgres://admin:{CANARY}@db.internal:5432/app"),
            "jdbc": format!("Server=tcp:db;Database=app;User Id=app;Password={CANARY};Encrypt=true"),
            "material": pem,
            "user_data": format!("#!/bin/sh\nexport API_TOKEN={CANARY}\n/opt/start"),
            "headers": {"Authorization": format!("Bearer {CANARY}")},
            "nested": {"credentials": {"user": "u", "key": CANARY}}
        }),
        json!({}),
    );
    let mut generated = resource(
        "aws_iam_user.imported",
        "aws_iam_user",
        json!({"name": "x"}),
        json!({}),
    );
    generated["change"]["importing"] = json!({"id": "x"});
    generated["change"]["generated_config"] = json!(format!(
        "resource \"aws_iam_user\" \"imported\" {{\n  name = \"x\"\n  password = \"{CANARY}\"\n}}\n"
    ));
    json!({
        "format_version": "1.2",
        "terraform_version": "1.10.0",
        "variables": {"db_password": {"value": CANARY}, "x": {"value": CANARY}},
        "prior_state": {"values": {"root_module": {"resources": [{"values": {"password": CANARY}}]}}},
        "planned_values": {
            "outputs": {"out": {"sensitive": true, "value": CANARY}},
            "root_module": {"resources": [{
                "address": "aws_db_instance.main", "mode": "managed", "type": "aws_db_instance",
                "name": "main", "values": {"identifier": "payments", "master": CANARY},
                "sensitive_values": {"master": true}
            }], "child_modules": [{"resources": [{
                "address": "module.m.aws_x.y", "values": {"opaque": CANARY},
                "sensitive_values": {"opaque": true}
            }]}]}
        },
        "resource_changes": [db, unmarked, generated],
        "resource_drift": [resource("aws_db_instance.main", "aws_db_instance", json!({"password": CANARY}), json!({"password": true}))],
        "deferred_changes": [{"reason": "provider_config_unknown", "resource_change":
            resource("aws_x.deferred", "aws_x", json!({"opaque": CANARY}), json!({"opaque": true}))}],
        "output_changes": {
            "out": {"actions": ["create"], "before": null, "after": CANARY, "after_unknown": false,
                    "before_sensitive": true, "after_sensitive": true},
            "api_token": {"actions": ["create"], "before": null, "after": CANARY, "after_unknown": false,
                          "before_sensitive": false, "after_sensitive": false}
        },
        "configuration": {"root_module": {
            "variables": {"x": {"sensitive": true, "default": CANARY}, "db_password": {"default": CANARY}},
            "outputs": {"out": {"sensitive": true, "expression": {"constant_value": CANARY}}},
            "resources": [{"address": "aws_db_instance.main", "expressions": {
                "password": {"constant_value": CANARY},
                "identifier": {"constant_value": "payments"}
            }}],
            "module_calls": {"m": {"module": {"variables": {"opaque": {"sensitive": true, "default": CANARY}}}}}
        }},
        "checks": [{"address": {"kind": "check"}, "status": "fail", "instances": [{"problems": [{"message": format!("token={CANARY}")}]}]}]
    })
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(CANARY), "canary leaked in {what}:\n{text}");
}

#[test]
fn canary_appears_in_no_rendered_output() {
    let doc = planted_plan();
    let text = serde_json::to_string_pretty(&doc).unwrap();
    assert!(
        text.matches(CANARY).count() >= 25,
        "the canary is planted widely"
    );
    let plan = Plan::parse("canary.json", text.as_bytes()).unwrap();
    let rules = RedactionRules::default();
    let summary = plan.summary();
    let redacted = redact_plan(&plan, &rules);

    assert_clean("summary JSON", &serde_json::to_string(&summary).unwrap());
    assert_clean("summary text", &summary.render_text());
    assert_clean("summary Debug", &format!("{summary:?}"));
    assert_clean(
        "redacted plan JSON",
        &serde_json::to_string_pretty(&redacted).unwrap(),
    );
    assert_clean("redacted plan Debug", &format!("{redacted:?}"));
    assert_clean("plan Debug", &format!("{plan:?} {plan:#?}"));
    assert_clean("variables Debug", &format!("{:?}", plan.variables));
    assert_clean("prior_state Debug", &format!("{:?}", plan.prior_state));
    assert_clean(
        "changes Debug",
        &format!("{:?} {:?}", plan.resource_changes, plan.output_changes),
    );

    // Non-secret values survive: redaction must not blank the plan.
    let v = redacted.as_value();
    assert_eq!(
        v["resource_changes"][0]["change"]["after"]["identifier"],
        "payments"
    );
    assert_eq!(
        v["resource_changes"][1]["change"]["after"]["connection_url"],
        "postgres://admin:(sensitive)@db.internal:5432/app"
    );
    assert_eq!(
        v["resource_changes"][1]["change"]["after"]["nested"]["credentials"]["user"],
        "(sensitive)"
    );
    assert_eq!(
        v["configuration"]["root_module"]["resources"][0]["expressions"]["identifier"]["constant_value"],
        "payments"
    );
    assert_eq!(v["variables"], json!({"db_password": {}, "x": {}}));
    assert!(v.get("prior_state").is_none());
}

#[test]
fn canary_appears_in_no_error_message() {
    // A syntax error right after the canary, a type error on the canary, an action list made
    // of it, and a format_version made of it.
    let broken = [
        format!(
            "{{\"format_version\": \"1.2\", \"planned_values\": {{}}, \"x\": \"{CANARY}\" oops}}"
        ),
        json!({"format_version": "1.2", "planned_values": {}, "resource_changes": [
            {"address": "a.b", "change": {"actions": CANARY}}]})
        .to_string(),
        json!({"format_version": "1.2", "planned_values": {}, "resource_changes": [
            {"address": "a.b", "change": {"actions": [CANARY]}}]})
        .to_string(),
        json!({"format_version": "1.2", "planned_values": {}, "resource_changes": [
            {"address": "a.b", "change": {"actions": ["create"], "replace_paths": {"k": CANARY}}}]})
        .to_string(),
        json!({"format_version": format!("9.{CANARY}"), "planned_values": {}}).to_string(),
        json!({"format_version": CANARY, "planned_values": {}}).to_string(),
    ];
    for doc in &broken {
        let err = Plan::parse("canary.json", doc.as_bytes()).unwrap_err();
        assert_clean("error Display", &err.to_string());
        assert_clean("error Debug", &format!("{err:?}"));
    }
}

#[test]
fn canary_appears_in_no_stderr_excerpt() {
    let stderr = format!(
        "│ Error: creating RDS instance\n│   password = \"{CANARY}\"\n│ url: postgres://u:{CANARY}@h/db\n│ PGPASSWORD={CANARY}\n-----BEGIN OPENSSH PRIVATE KEY-----\n{CANARY}\n-----END OPENSSH PRIVATE KEY-----\n"
    );
    let lines = classify::excerpt(&stderr, &RedactionRules::default());
    assert_clean("stderr excerpt", &lines.join("\n"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Error: creating RDS instance"))
    );
}
