//! Plan JSON the demo writes for its affected stacks when no engine can plan them (the demo's
//! stacks are Terragrunt stacks: planning them needs `terragrunt` and `tofu`/`terraform`).
//!
//! The plans follow what `terraform show -json` prints for the demo's modules (format 1.2,
//! `resource_changes` with before/after, `after_unknown`, sensitivity masks, `variables`), and
//! are derived from the two revisions' `terragrunt.hcl` inputs: an `rds` stack whose
//! `read_replicas` grows from 1 to 2 creates `aws_db_instance.replica[1]`, exactly as the
//! module's `count` would. Every file says at its top level (`sluice_demo`) that the demo
//! wrote it, and so does the report.

use serde_json::{Value, json};

use super::org::{self, Files};

/// The top-level key marking a plan as written by the demo (plan readers ignore unknown keys).
pub const MARKER_KEY: &str = "sluice_demo";
pub const MARKER_TEXT: &str =
    "written by `sluice demo` from the stack's terragrunt.hcl inputs, not by an engine";

/// An identifier AWS would have generated for the primary (the module sets none).
const PRIMARY_ID: &str = "terraform-20261117093012345600000001";

fn hcl_number(text: &str, key: &str) -> Option<i64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().parse().ok())?
    })
}

fn hcl_string(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

// One entry of `resource_changes`, argument for argument as the JSON spells it.
#[allow(clippy::too_many_arguments)]
fn change(
    address: &str,
    module: Option<&str>,
    rtype: &str,
    name: &str,
    index: Option<i64>,
    actions: &[&str],
    before: Value,
    after: Value,
    after_unknown: Value,
    after_sensitive: Value,
) -> Value {
    let mut rc = json!({
        "address": address,
        "mode": "managed",
        "type": rtype,
        "name": name,
        "provider_name": "registry.terraform.io/hashicorp/aws",
        "change": {
            "actions": actions,
            "before": before,
            "after": after,
            "after_unknown": after_unknown,
            "before_sensitive": if before.is_null() { json!(false) } else { json!({"tags": {}, "tags_all": {}}) },
            "after_sensitive": after_sensitive,
        }
    });
    if let Some(m) = module {
        rc["module_address"] = json!(m);
    }
    if let Some(i) = index {
        rc["index"] = json!(i);
    }
    rc
}

fn tags(env: &str) -> Value {
    json!({"owner": "payments", "env": env})
}

fn primary(env: &str, inputs: &str) -> Value {
    json!({
        "identifier": PRIMARY_ID,
        "engine": hcl_string(inputs, "engine").unwrap_or_else(|| "postgres".into()),
        "instance_class": hcl_string(inputs, "instance_class").unwrap_or_default(),
        "backup_retention_period": hcl_number(inputs, "backup_retention_days").unwrap_or(7),
        "storage_encrypted": true,
        "deletion_protection": true,
        "publicly_accessible": false,
        "password": null,
        "tags": tags(env),
        "tags_all": tags(env),
    })
}

fn replica(env: &str, inputs: &str, i: i64) -> Value {
    json!({
        "identifier": format!("terraform-2026111709301234560000000{}", i + 2),
        "replicate_source_db": PRIMARY_ID,
        "instance_class": hcl_string(inputs, "instance_class").unwrap_or_default(),
        "deletion_protection": true,
        "publicly_accessible": false,
        "skip_final_snapshot": true,
        "auto_minor_version_upgrade": true,
        "tags": tags(env),
        "tags_all": tags(env),
    })
}

/// The plan of an `rds` stack between two versions of its `terragrunt.hcl`.
fn rds_plan(env: &str, base: &str, head: &str) -> Value {
    let before_n = hcl_number(base, "read_replicas").unwrap_or(0);
    let after_n = hcl_number(head, "read_replicas").unwrap_or(0);
    let mut changes = vec![
        change(
            "module.sg.aws_security_group.this",
            Some("module.sg"),
            "aws_security_group",
            "this",
            None,
            &["no-op"],
            json!({"name": "rds", "tags": null, "tags_all": {}}),
            json!({"name": "rds", "tags": null, "tags_all": {}}),
            json!({}),
            json!({"tags_all": {}}),
        ),
        change(
            "aws_db_instance.primary",
            None,
            "aws_db_instance",
            "primary",
            None,
            &["no-op"],
            primary(env, base),
            primary(env, head),
            json!({}),
            json!({"password": true, "tags": {}, "tags_all": {}}),
        ),
    ];
    for i in 0..before_n.max(after_n) {
        let address = format!("aws_db_instance.replica[{i}]");
        let (actions, before, after, unknown): (&[&str], Value, Value, Value) =
            if i < before_n.min(after_n) {
                let r = replica(env, base, i);
                (&["no-op"], r.clone(), r, json!({}))
            } else if i >= before_n {
                // A new replica: the provider computes these at apply time.
                let mut after = replica(env, head, i);
                after["identifier"] = Value::Null;
                let after = strip_nulls(after);
                let unknown = json!({
                    "address": true, "arn": true, "endpoint": true, "id": true,
                    "identifier": true, "engine": true, "engine_version": true,
                    "storage_encrypted": true, "kms_key_id": true,
                    "backup_retention_period": true, "allocated_storage": true,
                    "availability_zone": true, "port": true, "resource_id": true,
                    "tags": {}, "tags_all": {},
                });
                (&["create"], Value::Null, after, unknown)
            } else {
                (&["delete"], replica(env, base, i), Value::Null, json!({}))
            };
        let mut rc = change(
            &address,
            None,
            "aws_db_instance",
            "replica",
            Some(i),
            actions,
            before,
            after.clone(),
            unknown,
            if after.is_null() {
                json!(false)
            } else {
                json!({"tags": {}, "tags_all": {}})
            },
        );
        if actions == ["delete"] {
            rc["action_reason"] = json!("delete_because_count_index");
        }
        changes.push(rc);
    }
    json!({
        MARKER_KEY: MARKER_TEXT,
        "format_version": "1.2",
        "variables": {
            "engine": {"value": hcl_string(head, "engine").unwrap_or_default()},
            "instance_class": {"value": hcl_string(head, "instance_class").unwrap_or_default()},
            "read_replicas": {"value": after_n},
            "backup_retention_days": {"value": hcl_number(head, "backup_retention_days").unwrap_or(7)},
        },
        "resource_changes": changes,
        "output_changes": {},
        "applyable": after_n != before_n,
        "complete": true,
        "errored": false,
    })
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

/// A no-op plan of a module's single resource (the other demo stacks).
fn noop_plan(rtype: &str) -> Value {
    json!({
        MARKER_KEY: MARKER_TEXT,
        "format_version": "1.2",
        "resource_changes": [change(
            &format!("{rtype}.this"), None, rtype, "this", None, &["no-op"],
            json!({}), json!({}), json!({}), json!({}),
        )],
        "applyable": false,
        "complete": true,
        "errored": false,
    })
}

/// The plan JSON of one demo stack (`{env}/{region}/{name}`), from the base and head trees;
/// `None` for a stack the demo does not know.
pub fn plan_for(stack_id: &str, base: &Files, head: &Files) -> Option<Value> {
    let mut parts = stack_id.split('/');
    let (env, region, name) = (parts.next()?, parts.next()?, parts.next()?);
    let file = format!("infra-live/accounts/{env}/{region}/{name}/terragrunt.hcl");
    let text = |files: &Files| {
        files
            .get(&file)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let head_text = text(head)?;
    let base_text = text(base).unwrap_or_default();
    Some(match name {
        "rds-payments" => rds_plan(env, &base_text, &head_text),
        "network" => noop_plan("aws_vpc"),
        "identity" => noop_plan("aws_iam_openid_connect_provider"),
        "eks-cluster" => noop_plan("aws_eks_cluster"),
        "dns" => noop_plan("aws_route53_zone"),
        _ => return None,
    })
}

/// The demo's own base and head trees.
pub fn trees() -> (Files, Files) {
    let main = org::main_tree();
    let pr = org::pr_tree(&main);
    (main, pr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::plan::{Action, Plan};

    #[test]
    fn the_read_replica_change_creates_one_replica() {
        let (base, head) = trees();
        let doc = plan_for("prod/ap-southeast-1/rds-payments", &base, &head).unwrap();
        let bytes = serde_json::to_vec(&doc).unwrap();
        let plan = Plan::parse("demo.json", &bytes).unwrap();
        let s = plan.summary();
        assert_eq!(s.counts.create, 1);
        assert_eq!(s.counts.no_op, 3);
        assert_eq!(s.changes.len(), 1);
        assert_eq!(s.changes[0].address, "aws_db_instance.replica[1]");
        assert_eq!(s.changes[0].actions, Action::Create);
        assert_eq!(doc[MARKER_KEY], MARKER_TEXT);
        // Unchanged stacks plan nothing.
        let dev = plan_for("dev/ap-southeast-1/rds-payments", &base, &head).unwrap();
        let plan = Plan::parse("dev.json", &serde_json::to_vec(&dev).unwrap()).unwrap();
        assert!(!plan.summary().has_changes);
        assert!(plan_for("prod/ap-southeast-1/unknown", &base, &head).is_none());
    }

    #[test]
    fn fewer_replicas_delete_the_last_with_a_reason() {
        let base = "  read_replicas   = 2\n";
        let head = "  read_replicas   = 1\n";
        let doc = rds_plan("prod", base, head);
        let plan = Plan::parse("d.json", &serde_json::to_vec(&doc).unwrap()).unwrap();
        let s = plan.summary();
        assert_eq!(s.counts.delete, 1);
        assert_eq!(s.deleted[0].address, "aws_db_instance.replica[1]");
        assert!(s.deleted[0].reason.is_some());
    }
}
