//! The engine over crafted plans: each built-in rule fires on a plan that breaks it and passes a
//! clean one; decision records are byte-identical across engines; failing policies fail closed;
//! exceptions waive and expire; user bundles follow conftest's conventions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_model::exception::{Exception, ExceptionSpec, SourceRef, Timestamp};
use sluice_model::redact::RedactedPlan;
use sluice_policy::PolicyError;
use sluice_policy::bundle::{Bundle, BundleFile, Origin};
use sluice_policy::engine::{
    BuiltinSettings, EngineOptions, EngineSpec, PolicyEngine, RuleOverride,
};
use sluice_policy::input::{ChangeContext, EvalInput};
use sluice_policy::record::{Decision, DecisionRecord, Outcome};

const STACK: &str = "prod/eu-west-1/data";

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2025-06-01T00:00:00Z").unwrap()
}

fn builtin_engine() -> PolicyEngine {
    PolicyEngine::new(EngineSpec {
        builtin: Some(BuiltinSettings::default()),
        now: Some(now()),
        ..Default::default()
    })
    .unwrap()
}

fn change(address: &str, kind: &str, actions: &[&str], after: Value) -> Value {
    let name = address.rsplit('.').next().unwrap();
    json!({
        "address": address,
        "mode": "managed",
        "type": kind,
        "name": name,
        "provider_name": "registry.terraform.io/hashicorp/aws",
        "change": {"actions": actions, "before": null, "after": after, "after_unknown": {}}
    })
}

fn plan(changes: Vec<Value>) -> Value {
    json!({
        "format_version": "1.2",
        "terraform_version": "1.9.0",
        "resource_changes": changes,
        "configuration": {"root_module": {}}
    })
}

fn input(plan: &Value, production: bool) -> EvalInput {
    let ctx = ChangeContext {
        correlation_id: Some(sluice_model::change::ChangeId {
            repo: "infra-live".into(),
            pr: Some(412),
            commit: "9f3a12c".into(),
            env: "prod".into(),
            unit: STACK.into(),
        }),
        env: if production { "prod" } else { "dev" }.into(),
        stack: STACK.into(),
        author: Some("carol".into()),
        base: Some("main".into()),
        head: Some("9f3a12c".into()),
        production: Some(production),
    };
    let plan = RedactedPlan::parse(
        "plan.json",
        plan.to_string().as_bytes(),
        &Default::default(),
    )
    .expect("test plans parse");
    EvalInput::plan(plan, &ctx, json!({"id": STACK, "env": "prod"}))
}

/// Non-pass results of one rule.
fn findings<'a>(r: &'a DecisionRecord, rule: &str) -> Vec<&'a sluice_policy::RuleResult> {
    r.results
        .iter()
        .filter(|x| x.rule == rule && x.outcome != Outcome::Pass)
        .collect()
}

fn tagged(mut after: Value) -> Value {
    after["tags"] = json!({"owner": "team-data"});
    after
}

/// A plan that breaks every built-in rule once.
fn bad_plan() -> Value {
    let admin =
        json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}).to_string();
    let mut replace = change(
        "aws_db_instance.legacy",
        "aws_db_instance",
        &["delete", "create"],
        tagged(json!({
            "publicly_accessible": false, "storage_encrypted": true, "backup_retention_period": 14, "deletion_protection": true
        })),
    );
    replace["action_reason"] = json!("replace_because_cannot_update");
    plan(vec![
        change(
            "aws_db_instance.public",
            "aws_db_instance",
            &["create"],
            tagged(json!({
                "publicly_accessible": true, "storage_encrypted": false, "backup_retention_period": 1, "deletion_protection": false
            })),
        ),
        replace,
        change(
            "aws_s3_bucket.logs",
            "aws_s3_bucket",
            &["create"],
            json!({"bucket": "acme-logs", "tags": {}}),
        ),
        change(
            "aws_s3_bucket_acl.logs",
            "aws_s3_bucket_acl",
            &["create"],
            json!({"bucket": "acme-logs", "acl": "public-read"}),
        ),
        change(
            "aws_ebs_volume.data",
            "aws_ebs_volume",
            &["create"],
            tagged(json!({"encrypted": false})),
        ),
        change(
            "aws_iam_policy.admin",
            "aws_iam_policy",
            &["create"],
            tagged(json!({"policy": admin})),
        ),
        change(
            "aws_security_group.ssh",
            "aws_security_group",
            &["create"],
            tagged(json!({"ingress": [
                {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_blocks": ["0.0.0.0/0"], "ipv6_cidr_blocks": []}
            ]})),
        ),
    ])
}

/// The same resources, done right.
fn clean_plan() -> Value {
    let scoped = json!({"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::acme-logs/*"}]}).to_string();
    plan(vec![
        change(
            "aws_db_instance.main",
            "aws_db_instance",
            &["create"],
            tagged(json!({
                "publicly_accessible": false, "storage_encrypted": true, "backup_retention_period": 14, "deletion_protection": true
            })),
        ),
        change(
            "aws_s3_bucket.logs",
            "aws_s3_bucket",
            &["create"],
            tagged(json!({"bucket": "acme-logs"})),
        ),
        change(
            "aws_s3_bucket_server_side_encryption_configuration.logs",
            "aws_s3_bucket_server_side_encryption_configuration",
            &["create"],
            json!({"bucket": "acme-logs"}),
        ),
        change(
            "aws_s3_bucket_public_access_block.logs",
            "aws_s3_bucket_public_access_block",
            &["create"],
            json!({
                "bucket": "acme-logs", "block_public_acls": true, "block_public_policy": true, "ignore_public_acls": true, "restrict_public_buckets": true
            }),
        ),
        change(
            "aws_ebs_volume.data",
            "aws_ebs_volume",
            &["create"],
            tagged(json!({"encrypted": true})),
        ),
        change(
            "aws_iam_policy.reader",
            "aws_iam_policy",
            &["create"],
            tagged(json!({"policy": scoped})),
        ),
        change(
            "aws_security_group.web",
            "aws_security_group",
            &["create"],
            tagged(json!({"ingress": [
                {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["10.0.0.0/8"], "ipv6_cidr_blocks": []}
            ]})),
        ),
    ])
}

#[test]
fn every_builtin_rule_fires_on_the_bad_plan() {
    let record = builtin_engine()
        .evaluate(&input(&bad_plan(), true))
        .unwrap();
    let expect: &[(&str, &str, Outcome)] = &[
        ("db-public-access", "aws_db_instance.public", Outcome::Deny),
        (
            "rds-storage-encryption",
            "aws_db_instance.public",
            Outcome::Deny,
        ),
        (
            "db-backup-retention",
            "aws_db_instance.public",
            Outcome::Deny,
        ),
        (
            "db-deletion-protection",
            "aws_db_instance.public",
            Outcome::Deny,
        ),
        ("s3-encryption", "aws_s3_bucket.logs", Outcome::Deny),
        ("s3-public-access", "aws_s3_bucket_acl.logs", Outcome::Deny),
        ("ebs-encryption", "aws_ebs_volume.data", Outcome::Deny),
        ("iam-wildcard", "aws_iam_policy.admin", Outcome::Deny),
        (
            "stateful-destroy",
            "aws_db_instance.legacy",
            Outcome::RequireApproval,
        ),
        ("required-tags", "aws_s3_bucket.logs", Outcome::Warn),
        (
            "sg-open-ingress",
            "aws_security_group.ssh",
            Outcome::RequireApproval,
        ),
    ];
    for (rule, resource, outcome) in expect {
        let f = findings(&record, rule);
        assert_eq!(f.len(), 1, "{rule}: {f:#?}");
        assert_eq!(f[0].resource.as_deref(), Some(*resource), "{rule}");
        assert_eq!(f[0].outcome, *outcome, "{rule}");
        assert!(!f[0].message.is_empty());
        assert_eq!(
            f[0].docs.as_deref(),
            Some(format!("docs/policy.md#{rule}").as_str())
        );
    }
    assert_eq!(
        expect.len(),
        sluice_policy::builtin::RULES
            .iter()
            .filter(|r| r.target == sluice_policy::builtin::Target::Plan)
            .count()
    );
    let approvals = findings(&record, "sg-open-ingress");
    assert_eq!(approvals[0].groups, ["security"]);
    assert_eq!(
        findings(&record, "stateful-destroy")[0].groups,
        ["platform"]
    );
    assert!(
        findings(&record, "stateful-destroy")[0]
            .message
            .contains("replace_because_cannot_update")
    );
    assert_eq!(record.outcome, Decision::Deny);
    assert!(
        record.results.iter().all(|r| !r.error),
        "{:#?}",
        record.results
    );
}

#[test]
fn views_match_full_input() {
    let full = PolicyEngine::new(EngineSpec {
        builtin: Some(BuiltinSettings::default()),
        now: Some(now()),
        options: EngineOptions {
            input_views: false,
            workers: 1,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    for (p, production) in [
        (bad_plan(), true),
        (bad_plan(), false),
        (clean_plan(), true),
    ] {
        let a = builtin_engine().evaluate(&input(&p, production)).unwrap();
        let b = full.evaluate(&input(&p, production)).unwrap();
        assert_eq!(a.to_canonical_json(), b.to_canonical_json());
    }
}

#[test]
fn the_clean_plan_passes_every_rule() {
    let record = builtin_engine()
        .evaluate(&input(&clean_plan(), true))
        .unwrap();
    let non_pass: Vec<_> = record
        .results
        .iter()
        .filter(|r| r.outcome != Outcome::Pass)
        .collect();
    assert!(non_pass.is_empty(), "{non_pass:#?}");
    let passed: BTreeSet<&str> = record.results.iter().map(|r| r.rule.as_str()).collect();
    let all: BTreeSet<&str> = sluice_policy::builtin::RULES
        .iter()
        .filter(|r| r.target == sluice_policy::builtin::Target::Plan)
        .map(|r| r.id)
        .collect();
    assert_eq!(passed, all, "one pass entry per rule");
    assert_eq!(record.outcome, Decision::Allow);
}

#[test]
fn production_only_rules_stay_quiet_outside_production() {
    let record = builtin_engine()
        .evaluate(&input(&bad_plan(), false))
        .unwrap();
    assert!(findings(&record, "db-deletion-protection").is_empty());
    assert!(findings(&record, "stateful-destroy").is_empty());
    assert_eq!(findings(&record, "db-public-access").len(), 1);
}

#[test]
fn records_are_byte_identical_across_engines_and_key_orders() {
    let a = builtin_engine()
        .evaluate(&input(&bad_plan(), true))
        .unwrap();
    let b = builtin_engine()
        .evaluate(&input(&bad_plan(), true))
        .unwrap();
    assert_eq!(a.to_canonical_json(), b.to_canonical_json());
    assert_eq!(a.digest(), b.digest());
    // The same plan with its changes' keys in another order is the same input.
    let reordered: Value = {
        let text = bad_plan().to_string();
        let v: Value = serde_json::from_str(&text).unwrap();
        let mut changes: Vec<Value> = v["resource_changes"].as_array().unwrap().clone();
        for c in &mut changes {
            let obj = c.as_object().unwrap();
            let mut keys: Vec<_> = obj.keys().cloned().collect();
            keys.reverse();
            *c = Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), obj[&k].clone()))
                    .collect(),
            );
        }
        plan(changes)
    };
    let c = builtin_engine().evaluate(&input(&reordered, true)).unwrap();
    assert_eq!(a.input_digest, c.input_digest);
    assert_eq!(a.to_canonical_json(), c.to_canonical_json());
    // A different input changes the digest.
    let d = builtin_engine()
        .evaluate(&input(&clean_plan(), true))
        .unwrap();
    assert_ne!(a.input_digest, d.input_digest);
    // The canonical form has no insignificant whitespace and sorted keys.
    let text = a.to_canonical_json();
    assert!(
        text.starts_with("{\"bundles\":[{\"name\":\"builtin\",\"version\":\"sha256:"),
        "{text}"
    );
    assert!(!text.contains('\n'));
    let reparsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(sluice_policy::canonical::to_string(&reparsed), text);
}

#[test]
fn input_never_carries_prior_state_or_variables() {
    let mut p = bad_plan();
    p["variables"] = json!({"db_password": {"value": "canary-7f3d9c"}});
    p["prior_state"] = json!({"values": {"outputs": {"pw": {"value": "canary-7f3d9c"}}}});
    let record = builtin_engine().evaluate(&input(&p, true)).unwrap();
    let stripped = builtin_engine()
        .evaluate(&input(&bad_plan(), true))
        .unwrap();
    assert_eq!(record.input_digest, stripped.input_digest);
    assert!(!record.to_canonical_json().contains("canary-7f3d9c"));
}

#[test]
fn disabled_rules_and_overrides() {
    let mut settings = BuiltinSettings::default();
    settings.disabled.insert("required-tags".into());
    settings.overrides.insert(
        "sg-open-ingress".into(),
        RuleOverride {
            outcome: Some(Outcome::Deny),
            groups: None,
        },
    );
    settings.overrides.insert(
        "stateful-destroy".into(),
        RuleOverride {
            outcome: None,
            groups: Some(vec!["dba".into()]),
        },
    );
    settings.params.backup_retention_min_days = 30;
    let engine = PolicyEngine::new(EngineSpec {
        builtin: Some(settings),
        now: Some(now()),
        ..Default::default()
    })
    .unwrap();
    let record = engine.evaluate(&input(&clean_plan(), true)).unwrap();
    assert!(record.results.iter().all(|r| r.rule != "required-tags"));
    // 14 days is now too short.
    assert_eq!(findings(&record, "db-backup-retention").len(), 1);
    let bad = engine.evaluate(&input(&bad_plan(), true)).unwrap();
    assert_eq!(findings(&bad, "sg-open-ingress")[0].outcome, Outcome::Deny);
    assert!(findings(&bad, "sg-open-ingress")[0].groups.is_empty());
    assert_eq!(findings(&bad, "stateful-destroy")[0].groups, ["dba"]);
    // Parameters are part of the bundle's version.
    assert_ne!(
        bad.bundles[0].version,
        builtin_engine().bundle_refs()[0].version
    );
}

fn exception(id: &str, policy: &str, resource: &str, expires: &str) -> Exception {
    Exception::new(
        ExceptionSpec {
            id: id.into(),
            policy: policy.into(),
            resources: vec![resource.into()],
            owner: "team-data".into(),
            approved_by: vec!["alice".into()],
            reason: "vendor access until PrivateLink".into(),
            expires_at: Some(expires.into()),
            constraints: json!({"allowed_cidrs": ["203.0.113.0/24"]}),
        },
        SourceRef {
            file: "security-exceptions/db.yaml".into(),
            line: 1,
        },
    )
    .unwrap()
}

#[test]
fn active_exceptions_waive_and_expired_ones_are_reported() {
    let engine = PolicyEngine::new(EngineSpec {
        builtin: Some(BuiltinSettings::default()),
        exceptions: vec![
            exception(
                "EXC-1",
                "db-public-access",
                "prod/*/data/aws_db_instance.public",
                "2025-07-01T00:00:00Z",
            ),
            exception(
                "EXC-2",
                "sg-open-ingress",
                "prod/**",
                "2025-07-01T00:00:00Z",
            ),
            exception("EXC-0", "iam-wildcard", "prod/**", "2025-05-01T00:00:00Z"),
            // Warnings cannot be excepted: they never block.
            exception("EXC-3", "required-tags", "prod/**", "2025-07-01T00:00:00Z"),
        ],
        now: Some(now()),
        ..Default::default()
    })
    .unwrap();
    let record = engine.evaluate(&input(&bad_plan(), true)).unwrap();
    let db = &findings(&record, "db-public-access")[0];
    assert_eq!(db.outcome, Outcome::Excepted);
    assert_eq!(db.waived, Some(Outcome::Deny));
    assert_eq!(db.exception.as_deref(), Some("EXC-1"));
    let sg = &findings(&record, "sg-open-ingress")[0];
    assert_eq!(
        (sg.outcome, sg.waived),
        (Outcome::Excepted, Some(Outcome::RequireApproval))
    );
    let iam = &findings(&record, "iam-wildcard")[0];
    assert_eq!(iam.outcome, Outcome::Deny);
    assert_eq!(iam.expired_exceptions, ["EXC-0"]);
    assert_eq!(findings(&record, "required-tags")[0].outcome, Outcome::Warn);
    assert_eq!(record.exceptions_applied, ["EXC-1", "EXC-2"]);
    assert_eq!(record.exceptions_expired, ["EXC-0"]);
    // Another stack is not covered by EXC-1.
    let mut other = input(&bad_plan(), true);
    other.unit = "prod/eu-west-1/app".into();
    let record = engine.evaluate(&other).unwrap();
    assert_eq!(
        findings(&record, "db-public-access")[0].outcome,
        Outcome::Deny
    );
    // Known ids for exception review include the built-in rules.
    assert!(engine.known_rule_ids().contains("db-public-access"));
}

fn memory_bundle(files: &[(&str, &str)]) -> Bundle {
    Bundle::from_files(
        "policy-library",
        Origin::Memory,
        files
            .iter()
            .map(|(p, c)| BundleFile {
                path: p.to_string(),
                content: Arc::from(c.as_bytes()),
            })
            .collect(),
    )
    .unwrap()
}

fn user_engine(
    bundle: Bundle,
    options: EngineOptions,
    exceptions: Vec<Exception>,
) -> Result<PolicyEngine, PolicyError> {
    PolicyEngine::new(EngineSpec {
        builtin: None,
        bundles: vec![bundle],
        exceptions,
        now: Some(now()),
        options,
    })
}

#[test]
fn conftest_conventions_strings_objects_and_namespaces() {
    let bundle = memory_bundle(&[
        (
            "main.rego",
            r#"package main

deny contains msg if {
	some rc in input.plan.resource_changes
	rc.type == "aws_instance"
	msg := sprintf("%s: instances are not allowed", [rc.address])
}

warn contains {"msg": "plans from old terraform", "id": "TF_OLD", "docs": "https://wiki/tf"} if {
	startswith(input.plan.terraform_version, "0.")
}

violation contains {"msg": "no stack", "address": "plan"} if not input.stack.id
"#,
        ),
        (
            "terraform/approvals.rego",
            r#"package terraform.approvals

require_approval contains {"msg": msg, "groups": ["dba"], "resource": rc.address, "id": "DB_CHANGE"} if {
	some rc in input.plan.resource_changes
	rc.type == "aws_db_instance"
	msg := "database change"
}
"#,
        ),
        (
            "ignored/other.rego",
            "package other\n\ndeny contains \"never evaluated\" if true\n",
        ),
        ("data.json", r#"{"allowed": ["t3.micro"]}"#),
    ]);
    let options = EngineOptions {
        namespaces: vec!["main".into(), "terraform.*".into()],
        ..Default::default()
    };
    let engine = user_engine(bundle, options, Vec::new()).unwrap();
    assert_eq!(
        engine.entrypoints(),
        [
            "data.main.deny",
            "data.main.violation",
            "data.main.warn",
            "data.terraform.approvals.require_approval"
        ]
    );
    let mut p = plan(vec![
        change("aws_instance.web", "aws_instance", &["create"], json!({})),
        change(
            "aws_db_instance.db",
            "aws_db_instance",
            &["update"],
            json!({}),
        ),
    ]);
    p["terraform_version"] = json!("0.12.3");
    let mut inp = input(&p, true);
    inp.document["stack"] = json!({});
    let record = engine.evaluate(&inp).unwrap();
    let by_rule = |r: &str| record.results.iter().find(|x| x.rule == r).unwrap().clone();
    assert_eq!(
        by_rule("main.deny").message,
        "aws_instance.web: instances are not allowed"
    );
    assert_eq!(by_rule("main.deny").outcome, Outcome::Deny);
    assert_eq!(by_rule("main.deny").source, "data.main.deny");
    assert_eq!(by_rule("TF_OLD").outcome, Outcome::Warn);
    assert_eq!(by_rule("TF_OLD").docs.as_deref(), Some("https://wiki/tf"));
    assert_eq!(by_rule("main.violation").resource.as_deref(), Some("plan"));
    assert_eq!(by_rule("DB_CHANGE").groups, ["dba"]);
    assert_eq!(by_rule("DB_CHANGE").outcome, Outcome::RequireApproval);
    assert!(
        record
            .results
            .iter()
            .all(|r| r.message != "never evaluated")
    );
    assert_eq!(record.outcome, Decision::Deny);
}

#[test]
fn rego_v0_bundles_by_manifest_or_flag() {
    let v0 = r#"package main

deny[msg] {
	input.plan.resource_changes[_].type == "aws_instance"
	msg := "v0 deny"
}
"#;
    let p = plan(vec![change(
        "aws_instance.a",
        "aws_instance",
        &["create"],
        json!({}),
    )]);
    // As v1 (the default) it does not parse, and the error names file and line.
    let e = user_engine(
        memory_bundle(&[("main.rego", v0)]),
        EngineOptions::default(),
        Vec::new(),
    )
    .unwrap_err();
    match &e {
        PolicyError::Rego { file, line, .. } => {
            assert_eq!(file, "main.rego");
            assert_eq!(*line, 3, "{e}");
        }
        other => panic!("{other:?}"),
    }
    let with_manifest =
        memory_bundle(&[("main.rego", v0), (".manifest", r#"{"rego_version": 0}"#)]);
    let r = user_engine(with_manifest, EngineOptions::default(), Vec::new())
        .unwrap()
        .evaluate(&input(&p, true))
        .unwrap();
    assert_eq!(r.results[0].message, "v0 deny");
    let flagged = memory_bundle(&[("main.rego", v0)]).with_rego_v0(true);
    let r = user_engine(flagged, EngineOptions::default(), Vec::new())
        .unwrap()
        .evaluate(&input(&p, true))
        .unwrap();
    assert_eq!(r.outcome, Decision::Deny);
}

#[test]
fn syntax_errors_report_file_and_line() {
    let bundle = memory_bundle(&[
        ("lib/ok.rego", "package lib\n\nx := 1\n"),
        (
            "main.rego",
            "package main\n\ndeny contains msg if {\n\tmsg := \"unterminated\n}\n",
        ),
    ]);
    let e = user_engine(bundle, EngineOptions::default(), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("main.rego:4:"), "{e}");
}

#[test]
fn erroring_policies_fail_closed_naming_the_rule() {
    let bundle = memory_bundle(&[(
        "main.rego",
        r#"package main

deny contains msg if {
	msg := input.plan.terraform_version
}

warn contains x if {
	x := {"a": 1}
}

conflict := 1 if true
conflict := 2 if true

require_approval contains {"msg": "who?"} if true

violation contains msg if {
	conflict > 0
	msg := "unreachable"
}
"#,
    )]);
    let engine = user_engine(bundle, EngineOptions::default(), Vec::new()).unwrap();
    let record = engine.evaluate(&input(&clean_plan(), true)).unwrap();
    assert_eq!(record.outcome, Decision::Deny);
    let errors: Vec<_> = record.results.iter().filter(|r| r.error).collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    for e in &errors {
        assert_eq!(e.outcome, Outcome::Deny);
        assert!(e.message.contains("main.rego"), "{}", e.message);
        assert!(e.message.contains(&e.source), "{}", e.message);
    }
    let msg = |rule: &str| {
        errors
            .iter()
            .find(|e| e.rule == rule)
            .unwrap()
            .message
            .clone()
    };
    assert!(
        msg("main.warn").contains("no `msg`"),
        "{}",
        msg("main.warn")
    );
    assert!(
        msg("main.require_approval").contains("groups"),
        "{}",
        msg("main.require_approval")
    );
    assert!(
        msg("main.violation").contains("main.rego:"),
        "{}",
        msg("main.violation")
    );
    // A string rule value works: `deny` yields the version message.
    assert!(
        record
            .results
            .iter()
            .any(|r| r.rule == "main.deny" && r.message == "1.9.0" && !r.error)
    );
    // Errors are never excepted.
    let engine = user_engine(
        memory_bundle(&[("main.rego", "package main\n\nconflict := 1 if true\nconflict := 2 if true\n\ndeny contains \"x\" if conflict\n")]),
        EngineOptions::default(),
        vec![exception("EXC-9", "main.deny", "**", "2030-01-01T00:00:00Z")],
    )
    .unwrap();
    let record = engine.evaluate(&input(&clean_plan(), true)).unwrap();
    assert_eq!(record.outcome, Decision::Deny);
    assert!(record.exceptions_applied.is_empty());
}

#[test]
fn a_policy_over_the_time_limit_fails_closed() {
    // A loop the cooperative timer interrupts.
    let busy = memory_bundle(&[(
        "slow.rego",
        r#"package main

deny contains "done" if {
	n := count([1 | some a in numbers.range(1, 4000); some b in numbers.range(1, 4000)])
	n < 0
}
"#,
    )]);
    let options = EngineOptions {
        timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let engine = user_engine(busy, options.clone(), Vec::new()).unwrap();
    let started = std::time::Instant::now();
    let record = engine.evaluate(&input(&clean_plan(), true)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(record.outcome, Decision::Deny);
    assert!(record.results[0].error);
    assert!(
        record.results[0].message.contains("slow.rego"),
        "{}",
        record.results[0].message
    );
    assert!(
        record.results[0].message.contains("time"),
        "{}",
        record.results[0].message
    );
}

#[test]
fn exceptions_reach_policies_as_data() {
    let bundle = memory_bundle(&[(
        "main.rego",
        r#"package main

deny contains {"msg": "cidr not allowed", "id": "NET_1"} if {
	not "203.0.113.0/24" in data.exceptions["EXC-7"].constraints.allowed_cidrs
}
"#,
    )]);
    let engine = user_engine(
        bundle.clone(),
        EngineOptions::default(),
        vec![exception(
            "EXC-7",
            "NET_1",
            "nothing",
            "2025-07-01T00:00:00Z",
        )],
    )
    .unwrap();
    assert_eq!(
        engine
            .evaluate(&input(&clean_plan(), true))
            .unwrap()
            .outcome,
        Decision::Allow
    );
    // Expired: not in data, so the policy denies.
    let engine = user_engine(
        bundle,
        EngineOptions::default(),
        vec![exception(
            "EXC-7",
            "NET_1",
            "nothing",
            "2025-05-01T00:00:00Z",
        )],
    )
    .unwrap();
    assert_eq!(
        engine
            .evaluate(&input(&clean_plan(), true))
            .unwrap()
            .outcome,
        Decision::Deny
    );
}

#[test]
fn bad_input_is_an_error() {
    let engine = builtin_engine();
    let e = engine
        .evaluate(&EvalInput::new(json!([1]), STACK))
        .unwrap_err();
    assert!(e.to_string().contains("JSON object"));
    let small = PolicyEngine::new(EngineSpec {
        builtin: Some(BuiltinSettings::default()),
        options: EngineOptions {
            max_input_bytes: 1024,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let e = small
        .evaluate(&input(&bad_plan(), true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than the limit of 1024"), "{e}");
}

#[test]
fn decision_record_snapshot() {
    let engine = PolicyEngine::new(EngineSpec {
        builtin: Some(BuiltinSettings::default()),
        exceptions: vec![exception(
            "EXC-1",
            "db-public-access",
            "prod/**",
            "2025-07-01T00:00:00Z",
        )],
        now: Some(now()),
        ..Default::default()
    })
    .unwrap();
    let record = engine.evaluate(&input(&bad_plan(), true)).unwrap();
    let mut pretty: Value = serde_json::from_str(&record.to_canonical_json()).unwrap();
    // The pack's digest changes with every edit of its Rego; the snapshot is about the rest.
    assert!(
        pretty["bundles"][0]["version"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    pretty["bundles"][0]["version"] = json!("sha256:[builtin pack digest]");
    insta::assert_json_snapshot!("bad_plan_decision_record", pretty);
}
