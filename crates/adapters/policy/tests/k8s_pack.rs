//! The Kubernetes half of the built-in pack through the engine: each rule denies (or warns,
//! or asks for approval) on a bad manifest and passes a good one, Secret values never reach a
//! result, decision records are byte-identical, kind views change nothing, and plan inputs
//! neither run nor name the Kubernetes bundle.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sluice_model::exception::Timestamp;
use sluice_model::redact::RedactedPlan;
use sluice_policy::builtin::{self, Target};
use sluice_policy::engine::{BuiltinSettings, EngineOptions, EngineSpec, RuleOverride};
use sluice_policy::{
    AppContext, ChangeContext, Decision, DecisionRecord, EvalInput, Outcome, PolicyEngine,
};

const DIGEST: &str = "sha256:9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b";
const CANARY: &str = "hunter2-canary-7f3a";

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-01T00:00:00Z").unwrap()
}

fn engine_with(settings: BuiltinSettings, options: EngineOptions) -> PolicyEngine {
    PolicyEngine::new(EngineSpec {
        builtin: Some(settings),
        now: Some(now()),
        options,
        ..Default::default()
    })
    .unwrap()
}

fn engine() -> PolicyEngine {
    engine_with(BuiltinSettings::default(), EngineOptions::default())
}

fn app(protected: bool) -> AppContext {
    AppContext {
        id: "prod-ap-southeast-1/payments".into(),
        env: if protected { "prod" } else { "dev" }.into(),
        protected,
        namespace: "payments".into(),
        ..Default::default()
    }
}

fn eval(objects: &[Value], protected: bool) -> DecisionRecord {
    engine()
        .evaluate(&EvalInput::manifests(
            objects,
            &ChangeContext::default(),
            &app(protected),
        ))
        .unwrap()
}

fn good_container() -> Value {
    json!({
        "name": "app",
        "image": format!("ghcr.io/acme/payments:v1.5.0@{DIGEST}"),
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}
    })
}

fn deployment(container: Value, volumes: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "payments", "namespace": "payments"},
        "spec": {"template": {"spec": {"containers": [container], "volumes": volumes}}}
    })
}

fn netpol() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": "payments"}, "spec": {"podSelector": {}}})
}

fn good_app() -> Vec<Value> {
    vec![
        deployment(good_container(), json!([{"name": "tmp", "emptyDir": {}}])),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "payments", "namespace": "payments"}, "spec": {"type": "ClusterIP"}}),
        netpol(),
    ]
}

fn non_pass(record: &DecisionRecord) -> Vec<(String, Outcome, Option<String>)> {
    record
        .results
        .iter()
        .filter(|r| r.outcome != Outcome::Pass)
        .map(|r| (r.rule.clone(), r.outcome, r.resource.clone()))
        .collect()
}

fn k8s_ids() -> BTreeSet<&'static str> {
    builtin::RULES
        .iter()
        .filter(|r| r.target == Target::Manifests)
        .map(|r| r.id)
        .collect()
}

#[test]
fn a_good_app_passes_every_kubernetes_rule_and_only_those() {
    let record = eval(&good_app(), true);
    assert!(non_pass(&record).is_empty(), "{:#?}", record.results);
    let ran: BTreeSet<&str> = record.results.iter().map(|r| r.rule.as_str()).collect();
    assert_eq!(ran, k8s_ids(), "plan rules do not run over manifests");
    assert_eq!(record.outcome, Decision::Allow);
    let names: Vec<&str> = record.bundles.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, [builtin::K8S_BUNDLE]);
}

#[test]
fn each_rule_fires_on_its_bad_manifest() {
    let mut bad = good_container();
    bad["securityContext"] = json!({"privileged": true});
    bad["image"] = json!("ghcr.io/acme/payments:v1.5.0");
    bad.as_object_mut().unwrap().remove("readinessProbe");
    bad["resources"]["limits"] = json!({"memory": "512Mi"});
    let objects = vec![
        deployment(
            bad,
            json!([{"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}}]),
        ),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "edge", "namespace": "payments"}, "spec": {"type": "LoadBalancer"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "payments"}, "stringData": {"password": CANARY}}),
    ];
    let record = eval(&objects, true);
    let found = non_pass(&record);
    let d = "Deployment/payments/payments".to_string();
    let expect = vec![
        ("k8s-host-path", Outcome::Deny, d.clone()),
        ("k8s-image-digest", Outcome::Deny, d.clone()),
        (
            "k8s-loadbalancer",
            Outcome::RequireApproval,
            "Service/payments/edge".into(),
        ),
        (
            "k8s-network-policy",
            Outcome::Warn,
            "Namespace/payments".into(),
        ),
        (
            "k8s-plaintext-secret",
            Outcome::Deny,
            "Secret/payments/db".into(),
        ),
        ("k8s-privileged", Outcome::Deny, d.clone()),
        ("k8s-probes", Outcome::Warn, d.clone()),
        ("k8s-resources", Outcome::Deny, d),
    ];
    let got: Vec<(&str, Outcome, String)> = found
        .iter()
        .map(|(r, o, res)| (r.as_str(), *o, res.clone().unwrap_or_default()))
        .collect();
    assert_eq!(got, expect, "{:#?}", record.results);
    assert_eq!(
        expect.len(),
        k8s_ids().len(),
        "every rule has a denied case here"
    );
    let lb = record
        .results
        .iter()
        .find(|r| r.rule == "k8s-loadbalancer")
        .unwrap();
    assert_eq!(lb.groups, ["platform"]);
    assert_eq!(lb.docs.as_deref(), Some("docs/policy.md#k8s-loadbalancer"));
    assert_eq!(record.outcome, Decision::Deny);
}

#[test]
fn the_plaintext_secret_finding_names_keys_never_values() {
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "payments"},
        "data": {"password": "aHVudGVyMi1jYW5hcnktN2YzYQ=="}, "stringData": {"token": CANARY}});
    let record = eval(&[secret], false);
    let json = record.to_canonical_json();
    assert!(!json.contains(CANARY), "{json}");
    assert!(!json.contains("aHVudGVy"), "{json}");
    let f = record
        .results
        .iter()
        .find(|r| r.rule == "k8s-plaintext-secret")
        .unwrap();
    assert_eq!(f.outcome, Outcome::Deny);
    assert!(
        f.message.contains("data.password, stringData.token"),
        "{}",
        f.message
    );
    assert!(f.message.contains("ExternalSecret"), "{}", f.message);
}

#[test]
fn image_digest_applies_only_to_protected_environments() {
    let mut c = good_container();
    c["image"] = json!("ghcr.io/acme/payments:v1.5.0");
    let objects = vec![deployment(c, json!([])), netpol()];
    assert!(non_pass(&eval(&objects, false)).is_empty());
    let prod = non_pass(&eval(&objects, true));
    assert_eq!(prod.len(), 1, "{prod:?}");
    assert_eq!(prod[0].0, "k8s-image-digest");
}

#[test]
fn one_object_input_is_judged_too() {
    let mut c = good_container();
    c["securityContext"] = json!({"privileged": true});
    let input = EvalInput::manifest(
        &deployment(c, json!([])),
        &ChangeContext::default(),
        &app(true),
    );
    let record = engine().evaluate(&input).unwrap();
    let found: Vec<String> = non_pass(&record).into_iter().map(|f| f.0).collect();
    // The NetworkPolicy rule needs the whole app; one object cannot show it.
    assert_eq!(found, ["k8s-privileged"]);
}

#[test]
fn disable_and_override_work_like_the_plan_rules() {
    let mut settings = BuiltinSettings::default();
    settings.disabled.insert("k8s-probes".into());
    settings.overrides.insert(
        "k8s-network-policy".into(),
        RuleOverride {
            outcome: Some(Outcome::Deny),
            groups: None,
        },
    );
    let e = engine_with(settings, EngineOptions::default());
    let objects = vec![deployment(
        json!({"name": "app", "image": format!("x@{DIGEST}"), "resources": good_container()["resources"]}),
        json!([]),
    )];
    let record = e
        .evaluate(&EvalInput::manifests(
            &objects,
            &ChangeContext::default(),
            &app(true),
        ))
        .unwrap();
    let found = non_pass(&record);
    assert_eq!(
        found,
        [(
            "k8s-network-policy".to_string(),
            Outcome::Deny,
            Some("Namespace/payments".to_string())
        )]
    );
    assert!(!record.results.iter().any(|r| r.rule == "k8s-probes"));
}

#[test]
fn records_are_byte_identical_and_kind_views_change_nothing() {
    let mut objects = good_app();
    objects.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "edge", "namespace": "payments"}, "spec": {"type": "LoadBalancer"}}));
    objects.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "other"}, "data": {"k": "dg=="}}));
    let a = eval(&objects, true).to_canonical_json();
    let b = eval(&objects, true).to_canonical_json();
    assert_eq!(a, b);
    let full = engine_with(
        BuiltinSettings::default(),
        EngineOptions {
            input_views: false,
            workers: 1,
            ..Default::default()
        },
    );
    let c = full
        .evaluate(&EvalInput::manifests(
            &objects,
            &ChangeContext::default(),
            &app(true),
        ))
        .unwrap()
        .to_canonical_json();
    assert_eq!(a, c);
}

#[test]
fn plan_inputs_do_not_name_the_kubernetes_bundle() {
    let plan = json!({"format_version": "1.2", "resource_changes": []});
    let record = engine()
        .evaluate(&EvalInput::plan(
            RedactedPlan::parse(
                "plan.json",
                plan.to_string().as_bytes(),
                &Default::default(),
            )
            .unwrap(),
            &ChangeContext::default(),
            json!({}),
        ))
        .unwrap();
    let names: Vec<&str> = record.bundles.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["builtin"]);
    assert!(record.results.iter().all(|r| !r.rule.starts_with("k8s-")));
}

/// docs/policy.md "Loading a Gatekeeper library": a template's Rego v0 in a bundle, wrapped by
/// a `main` rule that turns the app input into reviews, denies like any other policy.
#[test]
fn a_gatekeeper_template_wrapped_as_a_bundle_denies() {
    use sluice_policy::bundle::{Bundle, BundleFile, Origin};
    let template = r#"package k8srequiredlabels

violation[{"msg": msg}] {
  required := {label | label := input.parameters.labels[_].key}
  provided := {label | input.review.object.metadata.labels[label]}
  missing := required - provided
  count(missing) > 0
  msg := sprintf("you must provide labels: %v", [missing])
}
"#;
    let wrapper = r#"package main

import data.k8srequiredlabels

deny contains {"msg": msg, "resource": sprintf("%s/%s", [o.kind, o.metadata.name])} if {
    some o in input.manifests
    o.kind in {"Deployment", "StatefulSet"}
    review := {"object": o, "kind": {"group": "apps", "kind": o.kind},
               "name": o.metadata.name, "namespace": o.metadata.namespace,
               "operation": "CREATE"}
    violations := k8srequiredlabels.violation
        with input as {"review": review, "parameters": {"labels": [{"key": "owner"}]}}
    some v in violations
    msg := v.msg
}
"#;
    let file = |p: &str, t: &str| BundleFile {
        path: p.into(),
        content: std::sync::Arc::from(t.as_bytes()),
    };
    let bundle = Bundle::from_files(
        "policy-library",
        Origin::Memory,
        vec![
            file(
                ".manifest",
                r#"{"rego_version": 1, "file_rego_versions": {"gatekeeper/*.rego": 0}}"#,
            ),
            file("gatekeeper/requiredlabels.rego", template),
            file("wrapper.rego", wrapper),
        ],
    )
    .unwrap();
    let e = PolicyEngine::new(EngineSpec {
        bundles: vec![bundle],
        now: Some(now()),
        ..Default::default()
    })
    .unwrap();
    let mut labelled = deployment(good_container(), json!([]));
    labelled["metadata"]["labels"] = json!({"owner": "payments"});
    let record = e
        .evaluate(&EvalInput::manifests(
            &[deployment(good_container(), json!([])), labelled],
            &ChangeContext::default(),
            &app(false),
        ))
        .unwrap();
    let denies: Vec<_> = record
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::Deny)
        .collect();
    assert_eq!(denies.len(), 1, "{:#?}", record.results);
    assert_eq!(denies[0].rule, "main.deny");
    assert!(denies[0].message.contains("owner"), "{}", denies[0].message);
}
