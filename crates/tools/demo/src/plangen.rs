//! A deterministic generator of plan JSON (format 1.2, as `terraform show -json` writes it)
//! for benchmarks and scale tests of the policy, risk and report stages.
//!
//! `generate_plan(10_000, seed)` yields a plan whose changes spread over the AWS resource types
//! platform policies care about (RDS, S3 and its access/encryption resources, security groups
//! and rules, IAM policies and roles with policy JSON strings, EBS, EC2, EKS, Route 53, KMS,
//! Secrets Manager), with realistic attributes — encryption flags, public access, tags with
//! the odd missing owner, ingress CIDRs including `0.0.0.0/0`, IAM wildcards, backup retention
//! below and above seven days — and every action Terraform emits: creates, in-place updates,
//! both replace orders and create-then-forget with an `action_reason` and `replace_paths`,
//! deletes with reasons, data-source reads, forgets, moved (`previous_address`) and imported
//! objects, drift, sensitive values with their `after_sensitive` masks, sensitive variables,
//! `prior_state` and a `configuration` block. The same `(changes, seed)` always yields the same
//! document, byte for byte once serialised.

use serde_json::{Map, Value, json};
use sluice_model::splitmix::SplitMix64;

const PROVIDER: &str = "registry.terraform.io/hashicorp/aws";
const TYPES: &[&str] = &[
    "aws_db_instance",
    "aws_s3_bucket",
    "aws_s3_bucket_public_access_block",
    "aws_s3_bucket_server_side_encryption_configuration",
    "aws_security_group",
    "aws_security_group_rule",
    "aws_iam_policy",
    "aws_iam_role",
    "aws_ebs_volume",
    "aws_instance",
    "aws_eks_cluster",
    "aws_route53_record",
    "aws_kms_key",
    "aws_secretsmanager_secret_version",
];
const MODULES: &[&str] = &["network", "data", "compute", "identity", "edge"];
const TEAMS: &[&str] = &["payments", "platform", "search", "identity", "checkout"];
const ENVS: &[&str] = &["prod", "stage", "dev"];

/// What the generator decided for one change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Update,
    NoOp,
    Delete,
    DeleteThenCreate,
    CreateThenDelete,
    CreateThenForget,
    Forget,
    Read,
    Moved,
    Imported,
}

impl Kind {
    /// Weights in per mille, roughly what a large real change set looks like.
    fn pick(rng: &mut SplitMix64) -> Kind {
        let r = rng.below(1000);
        match r {
            0..400 => Kind::Create,
            400..650 => Kind::Update,
            650..740 => Kind::NoOp,
            740..810 => Kind::Delete,
            810..870 => Kind::DeleteThenCreate,
            870..900 => Kind::CreateThenDelete,
            900..910 => Kind::CreateThenForget,
            910..920 => Kind::Forget,
            920..960 => Kind::Read,
            960..980 => Kind::Moved,
            _ => Kind::Imported,
        }
    }

    fn actions(self) -> &'static [&'static str] {
        match self {
            Kind::Create => &["create"],
            Kind::Update | Kind::Imported => &["update"],
            Kind::NoOp | Kind::Moved => &["no-op"],
            Kind::Delete => &["delete"],
            Kind::DeleteThenCreate => &["delete", "create"],
            Kind::CreateThenDelete => &["create", "delete"],
            Kind::CreateThenForget => &["create", "forget"],
            Kind::Forget => &["forget"],
            Kind::Read => &["read"],
        }
    }

    fn has_before(self) -> bool {
        !matches!(self, Kind::Create | Kind::Read)
    }

    fn has_after(self) -> bool {
        !matches!(self, Kind::Delete | Kind::Forget)
    }
}

/// A generated plan JSON document with `changes` resource changes.
pub fn generate_plan(changes: usize, seed: u64) -> Value {
    let mut rng = SplitMix64::new(seed ^ 0x005E_ED0F_91A4);
    let mut resource_changes = Vec::with_capacity(changes);
    let mut planned = Vec::new();
    let mut prior = Vec::new();
    let mut config_resources = Vec::new();
    let mut drift = Vec::new();
    for i in 0..changes {
        let g = one_change(&mut rng, i);
        if let Some(p) = &g.planned {
            planned.push(p.clone());
        }
        if let Some(p) = &g.prior {
            prior.push(p.clone());
        }
        if let Some(c) = &g.config {
            config_resources.push(c.clone());
        }
        if g.kind == Kind::Update && rng.chance(4) {
            drift.push(drifted(&g.change));
        }
        resource_changes.push(g.change);
    }
    let env = *rng.pick(ENVS);
    json!({
        "format_version": "1.2",
        "terraform_version": "1.10.5",
        "variables": {
            "environment": {"value": env},
            "db_password": {"value": format!("gen-{}", rng.hex(24))},
            "region": {"value": "ap-southeast-1"}
        },
        "planned_values": {
            "outputs": {
                "db_endpoint": {"sensitive": false, "value": format!("db-{}.rds.amazonaws.com:5432", rng.hex(8))},
                "db_master_password": {"sensitive": true, "value": format!("out-{}", rng.hex(16))}
            },
            "root_module": {"resources": planned}
        },
        "resource_drift": drift,
        "resource_changes": resource_changes,
        "output_changes": {
            "db_endpoint": {
                "actions": ["update"], "before": "db-old.rds.amazonaws.com:5432",
                "after": "db-new.rds.amazonaws.com:5432", "after_unknown": false,
                "before_sensitive": false, "after_sensitive": false
            },
            "db_master_password": {
                "actions": ["create"], "before": null, "after": format!("out-{}", rng.hex(16)),
                "after_unknown": false, "before_sensitive": true, "after_sensitive": true
            }
        },
        "prior_state": {
            "format_version": "1.0",
            "terraform_version": "1.10.5",
            "values": {"root_module": {"resources": prior}}
        },
        "configuration": {
            "provider_config": {
                "aws": {
                    "name": "aws", "full_name": PROVIDER,
                    "version_constraint": "~> 5.80",
                    "expressions": {"region": {"references": ["var.region"]}}
                }
            },
            "root_module": {
                "resources": config_resources,
                "variables": {
                    "environment": {"description": "deployment environment"},
                    "db_password": {"sensitive": true},
                    "region": {"default": "ap-southeast-1"}
                }
            }
        },
        "timestamp": "2026-01-01T00:00:00Z",
        "applyable": true,
        "complete": true,
        "errored": false
    })
}

struct Generated {
    kind: Kind,
    change: Value,
    planned: Option<Value>,
    prior: Option<Value>,
    config: Option<Value>,
}

fn one_change(rng: &mut SplitMix64, i: usize) -> Generated {
    let kind = Kind::pick(rng);
    let rtype = if kind == Kind::Read {
        *rng.pick(&["aws_iam_policy_document", "aws_ami", "aws_caller_identity"])
    } else {
        *rng.pick(TYPES)
    };
    let mode = if kind == Kind::Read {
        "data"
    } else {
        "managed"
    };
    let name = format!("{}_{i}", short(rtype));
    let module = rng
        .chance(40)
        .then(|| format!("module.{}", rng.pick(MODULES)));
    let index = rng.chance(15).then(|| rng.below(3));
    let local = match (mode, index) {
        ("data", Some(n)) => format!("data.{rtype}.{name}[{n}]"),
        ("data", None) => format!("data.{rtype}.{name}"),
        (_, Some(n)) => format!("{rtype}.{name}[{n}]"),
        _ => format!("{rtype}.{name}"),
    };
    let address = match &module {
        Some(m) => format!("{m}.{local}"),
        None => local.clone(),
    };

    let (before, before_sensitive) = if kind.has_before() {
        let (v, s) = attributes(rng, rtype, &name, false);
        (v, s)
    } else {
        (Value::Null, Value::Bool(false))
    };
    let (mut after, after_sensitive) = if kind.has_after() {
        if kind == Kind::NoOp || kind == Kind::Moved {
            (before.clone(), before_sensitive.clone())
        } else {
            attributes(rng, rtype, &name, true)
        }
    } else {
        (Value::Null, Value::Bool(false))
    };
    let mut after_unknown = json!({});
    if kind.has_after()
        && matches!(
            kind,
            Kind::Create
                | Kind::DeleteThenCreate
                | Kind::CreateThenDelete
                | Kind::CreateThenForget
                | Kind::Read
        )
    {
        if let Value::Object(a) = &mut after {
            a.remove("id");
            a.remove("arn");
        }
        after_unknown = json!({"id": true, "arn": true});
    }

    let mut change = Map::new();
    change.insert("actions".into(), json!(kind.actions()));
    change.insert("before".into(), before.clone());
    change.insert("after".into(), after.clone());
    change.insert("after_unknown".into(), after_unknown);
    change.insert("before_sensitive".into(), before_sensitive.clone());
    change.insert("after_sensitive".into(), after_sensitive.clone());
    let mut reason = None;
    match kind {
        Kind::DeleteThenCreate | Kind::CreateThenDelete | Kind::CreateThenForget => {
            let (r, paths) = replace_reason(rng, rtype);
            reason = Some(r);
            if !paths.is_empty() {
                change.insert("replace_paths".into(), json!(paths));
            }
        }
        Kind::Delete => {
            reason = Some(*rng.pick(&[
                "delete_because_no_resource_config",
                "delete_because_count_index",
                "delete_because_each_key",
                "delete_because_no_module",
            ]))
        }
        Kind::Read if rng.chance(50) => reason = Some("read_because_config_unknown"),
        Kind::Imported => {
            change.insert(
                "importing".into(),
                json!({"id": format!("{}-{}", short(rtype), rng.hex(12))}),
            );
        }
        _ => {}
    }

    let mut rc = Map::new();
    rc.insert("address".into(), json!(address));
    if kind == Kind::Moved {
        rc.insert(
            "previous_address".into(),
            json!(address.replacen(&name, &format!("legacy_{name}"), 1)),
        );
    }
    if let Some(m) = &module {
        rc.insert("module_address".into(), json!(m));
    }
    rc.insert("mode".into(), json!(mode));
    rc.insert("type".into(), json!(rtype));
    rc.insert("name".into(), json!(name));
    if let Some(n) = index {
        rc.insert("index".into(), json!(n));
    }
    rc.insert("provider_name".into(), json!(PROVIDER));
    rc.insert("change".into(), Value::Object(change));
    if let Some(r) = reason {
        rc.insert("action_reason".into(), json!(r));
    }

    let resource = |values: &Value, sensitive: &Value| {
        let mut r = json!({
            "address": address, "mode": mode, "type": rtype, "name": name,
            "provider_name": PROVIDER, "schema_version": 1,
            "values": values, "sensitive_values": sensitive
        });
        if let Some(n) = index {
            r["index"] = json!(n);
        }
        r
    };
    let planned = kind.has_after().then(|| resource(&after, &after_sensitive));
    let prior = kind
        .has_before()
        .then(|| resource(&before, &before_sensitive));
    let config = (mode == "managed").then(|| {
        json!({
            "address": local, "mode": mode, "type": rtype, "name": name,
            "provider_config_key": "aws",
            "expressions": {"tags": {"references": ["local.tags"]}},
            "schema_version": 1
        })
    });
    Generated {
        kind,
        change: Value::Object(rc),
        planned,
        prior,
        config,
    }
}

fn short(rtype: &str) -> &str {
    rtype.strip_prefix("aws_").unwrap_or(rtype)
}

/// An `update` seen in drift: the same object with one attribute changed outside Terraform.
fn drifted(change: &Value) -> Value {
    let mut d = change.clone();
    if let Some(c) = d.get_mut("change") {
        c["actions"] = json!(["update"]);
        if let Some(Value::Object(after)) = c.get_mut("after") {
            after.insert("tags_all".into(), json!({"drifted": "changed-in-console"}));
        }
    }
    if let Value::Object(m) = &mut d {
        m.remove("action_reason");
        m.remove("previous_address");
    }
    d
}

fn replace_reason(rng: &mut SplitMix64, rtype: &str) -> (&'static str, Vec<Vec<Value>>) {
    match rng.below(10) {
        0 => ("replace_because_tainted", Vec::new()),
        1 => ("replace_by_request", Vec::new()),
        2 => ("replace_by_triggers", Vec::new()),
        _ => {
            let path: &[&str] = match rtype {
                "aws_db_instance" => &["engine"],
                "aws_ebs_volume" => &["availability_zone"],
                "aws_instance" => &["ami"],
                "aws_eks_cluster" => &["name"],
                "aws_kms_key" => &["customer_master_key_spec"],
                "aws_s3_bucket" => &["bucket"],
                "aws_security_group" => &["name"],
                _ => &["name"],
            };
            (
                "replace_because_cannot_update",
                vec![path.iter().map(|s| json!(s)).collect()],
            )
        }
    }
}

fn tags(rng: &mut SplitMix64, name: &str) -> Value {
    let mut t = Map::new();
    t.insert("Name".into(), json!(name));
    t.insert("environment".into(), json!(rng.pick(ENVS)));
    // Some resources miss the owner tag, so required-tag policies have something to find.
    if !rng.chance(12) {
        t.insert("owner".into(), json!(rng.pick(TEAMS)));
    }
    if rng.chance(50) {
        t.insert(
            "cost-center".into(),
            json!(format!("cc-{}", rng.below(90) + 10)),
        );
    }
    Value::Object(t)
}

fn arn(rng: &mut SplitMix64, service: &str, what: &str) -> String {
    format!(
        "arn:aws:{service}:ap-southeast-1:{:012}:{what}",
        100_000_000_000 + rng.below(900_000_000) as u64
    )
}

fn kms_arn(rng: &mut SplitMix64) -> String {
    let key = format!("key/{}", rng.hex(8));
    arn(rng, "kms", &key)
}

/// Attribute values of one object and their sensitivity mask. `after` varies the values so an
/// update has something to change.
fn attributes(rng: &mut SplitMix64, rtype: &str, name: &str, after: bool) -> (Value, Value) {
    let id = format!("{}-{}", short(rtype), rng.hex(10));
    let none = json!({});
    let (values, sensitive) = match rtype {
        "aws_db_instance" => {
            let retention = *rng.pick(&[0, 1, 3, 7, 7, 14, 14, 30, 35]);
            (
                json!({
                    "id": id, "arn": arn(rng, "rds", &format!("db:{name}")),
                    "identifier": name,
                    "engine": rng.pick(&["postgres", "mysql", "aurora-postgresql"]),
                    "engine_version": rng.pick(&["15.7", "16.3", "8.0.36"]),
                    "instance_class": rng.pick(&["db.t4g.medium", "db.r6g.large", "db.r6g.2xlarge"]),
                    "allocated_storage": 20 + rng.below(50) * 10,
                    "storage_encrypted": !rng.chance(10),
                    "kms_key_id": kms_arn(rng),
                    "publicly_accessible": rng.chance(6),
                    "backup_retention_period": retention,
                    "deletion_protection": !rng.chance(20),
                    "multi_az": rng.chance(60) || after && rng.chance(10),
                    "username": "app_admin",
                    "password": format!("pw-{}", rng.hex(20)),
                    "replicate_source_db": if rng.chance(15) { json!(format!("{name}-primary")) } else { Value::Null },
                    "skip_final_snapshot": rng.chance(30),
                    "tags": tags(rng, name)
                }),
                json!({"password": true, "tags": {}}),
            )
        }
        "aws_s3_bucket" => (
            json!({
                "id": name, "arn": format!("arn:aws:s3:::{name}"), "bucket": name,
                "force_destroy": rng.chance(10),
                "object_lock_enabled": rng.chance(5),
                "tags": tags(rng, name)
            }),
            none,
        ),
        "aws_s3_bucket_public_access_block" => {
            let open = rng.chance(8);
            (
                json!({
                    "id": id, "bucket": format!("bucket-{}", rng.hex(6)),
                    "block_public_acls": !open, "block_public_policy": !open,
                    "ignore_public_acls": !open, "restrict_public_buckets": !open
                }),
                none,
            )
        }
        "aws_s3_bucket_server_side_encryption_configuration" => (
            json!({
                "id": id, "bucket": format!("bucket-{}", rng.hex(6)),
                "rule": [{
                    "apply_server_side_encryption_by_default": [{
                        "sse_algorithm": rng.pick(&["aws:kms", "AES256"]),
                        "kms_master_key_id": kms_arn(rng)
                    }],
                    "bucket_key_enabled": rng.chance(70)
                }]
            }),
            none,
        ),
        "aws_security_group" => (
            json!({
                "id": format!("sg-{}", rng.hex(17)), "arn": arn(rng, "ec2", "security-group/sg"),
                "name": name, "description": "managed by terraform",
                "vpc_id": format!("vpc-{}", rng.hex(17)),
                "ingress": [ingress(rng), ingress(rng)],
                "egress": [{"from_port": 0, "to_port": 0, "protocol": "-1",
                            "cidr_blocks": ["0.0.0.0/0"], "ipv6_cidr_blocks": [],
                            "prefix_list_ids": [], "security_groups": [], "self": false,
                            "description": "all egress"}],
                "tags": tags(rng, name)
            }),
            none,
        ),
        "aws_security_group_rule" => {
            let rule = ingress(rng);
            (
                json!({
                    "id": format!("sgrule-{}", rng.below(1_000_000_000)), "type": "ingress",
                    "security_group_id": format!("sg-{}", rng.hex(17)),
                    "from_port": rule["from_port"], "to_port": rule["to_port"],
                    "protocol": "tcp", "cidr_blocks": rule["cidr_blocks"],
                    "ipv6_cidr_blocks": rule["ipv6_cidr_blocks"],
                    "description": rule["description"]
                }),
                none,
            )
        }
        "aws_iam_policy" => (
            json!({
                "id": arn(rng, "iam", &format!("policy/{name}")), "arn": arn(rng, "iam", &format!("policy/{name}")),
                "name": name, "path": "/", "description": "generated",
                "policy": iam_policy(rng),
                "tags": tags(rng, name)
            }),
            none,
        ),
        "aws_iam_role" => (
            json!({
                "id": name, "arn": arn(rng, "iam", &format!("role/{name}")), "name": name,
                "assume_role_policy": "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"Service\":\"ec2.amazonaws.com\"},\"Action\":\"sts:AssumeRole\"}]}",
                "max_session_duration": 3600,
                "managed_policy_arns": [arn(rng, "iam", "policy/ReadOnly")],
                "tags": tags(rng, name)
            }),
            none,
        ),
        "aws_ebs_volume" => (
            json!({
                "id": format!("vol-{}", rng.hex(17)), "arn": arn(rng, "ec2", "volume/vol"),
                "availability_zone": rng.pick(&["ap-southeast-1a", "ap-southeast-1b"]),
                "size": 20 + rng.below(20) * 50, "type": rng.pick(&["gp3", "io2", "st1"]),
                "encrypted": !rng.chance(12),
                "kms_key_id": if rng.chance(60) { json!(arn(rng, "kms", "key/ebs")) } else { Value::Null },
                "tags": tags(rng, name)
            }),
            none,
        ),
        "aws_instance" => (
            json!({
                "id": format!("i-{}", rng.hex(17)), "arn": arn(rng, "ec2", "instance/i"),
                "ami": format!("ami-{}", rng.hex(17)),
                "instance_type": rng.pick(&["t3.micro", "m6i.large", "c7g.xlarge"]),
                "subnet_id": format!("subnet-{}", rng.hex(17)),
                "associate_public_ip_address": rng.chance(10),
                "vpc_security_group_ids": [format!("sg-{}", rng.hex(17))],
                "metadata_options": [{"http_tokens": rng.pick(&["required", "required", "optional"]), "http_endpoint": "enabled"}],
                "root_block_device": [{"encrypted": !rng.chance(10), "volume_size": 30, "volume_type": "gp3"}],
                "user_data": format!("#!/bin/bash\nexport APP_TOKEN={}\n/opt/app/start", rng.hex(24)),
                "tags": tags(rng, name)
            }),
            json!({"user_data": true}),
        ),
        "aws_eks_cluster" => (
            json!({
                "id": name, "arn": arn(rng, "eks", &format!("cluster/{name}")), "name": name,
                "role_arn": arn(rng, "iam", "role/eks"),
                "version": rng.pick(&["1.29", "1.30", "1.31"]),
                "vpc_config": [{
                    "endpoint_public_access": rng.chance(30),
                    "endpoint_private_access": true,
                    "public_access_cidrs": if rng.chance(50) { json!(["0.0.0.0/0"]) } else { json!(["203.0.113.0/24"]) },
                    "subnet_ids": [format!("subnet-{}", rng.hex(17)), format!("subnet-{}", rng.hex(17))]
                }],
                "encryption_config": if rng.chance(80) { json!([{"resources": ["secrets"], "provider": [{"key_arn": arn(rng, "kms", "key/eks")}]}]) } else { json!([]) },
                "tags": tags(rng, name)
            }),
            none,
        ),
        "aws_route53_record" => (
            json!({
                "id": format!("Z{}_{name}_A", rng.hex(12).to_uppercase()),
                "zone_id": format!("Z{}", rng.hex(12).to_uppercase()),
                "name": format!("{name}.example.com"), "type": rng.pick(&["A", "CNAME", "TXT"]),
                "ttl": *rng.pick(&[60, 300, 3600]),
                "records": [format!("10.{}.{}.{}", rng.below(255), rng.below(255), rng.below(255))]
            }),
            none,
        ),
        "aws_kms_key" => (
            json!({
                "id": rng.hex(32), "arn": arn(rng, "kms", "key/k"),
                "description": format!("{name} key"),
                "enable_key_rotation": !rng.chance(15),
                "deletion_window_in_days": *rng.pick(&[7, 30]),
                "customer_master_key_spec": "SYMMETRIC_DEFAULT",
                "policy": iam_policy(rng),
                "tags": tags(rng, name)
            }),
            none,
        ),
        _ => (
            // aws_secretsmanager_secret_version: the provider marks the secret sensitive.
            json!({
                "id": format!("{}|{}", arn(rng, "secretsmanager", "secret:app"), rng.hex(8)),
                "secret_id": arn(rng, "secretsmanager", "secret:app"),
                "secret_string": format!("{{\"password\":\"sv-{}\"}}", rng.hex(20)),
                "version_stages": ["AWSCURRENT"]
            }),
            json!({"secret_string": true, "version_stages": [false]}),
        ),
    };
    (values, sensitive)
}

fn ingress(rng: &mut SplitMix64) -> Value {
    let port = *rng.pick(&[22, 443, 5432, 8080, 3389]);
    let open = rng.chance(10);
    json!({
        "from_port": port, "to_port": port, "protocol": "tcp",
        "cidr_blocks": if open { json!(["0.0.0.0/0"]) } else { json!([format!("10.{}.0.0/16", rng.below(255))]) },
        "ipv6_cidr_blocks": if open && rng.chance(30) { json!(["::/0"]) } else { json!([]) },
        "prefix_list_ids": [], "security_groups": [], "self": false,
        "description": format!("port {port}")
    })
}

/// An IAM policy document as the JSON string the provider stores, sometimes with wildcards.
fn iam_policy(rng: &mut SplitMix64) -> String {
    let action = if rng.chance(8) {
        json!("*")
    } else if rng.chance(10) {
        json!(["s3:*"])
    } else {
        json!(["s3:GetObject", "s3:PutObject"])
    };
    let resource = if rng.chance(15) {
        json!("*")
    } else {
        json!(format!("arn:aws:s3:::bucket-{}/*", rng.hex(6)))
    };
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "Generated", "Effect": "Allow", "Action": action, "Resource": resource}]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::plan::{Action, Plan};

    #[test]
    fn deterministic_per_seed() {
        let a = serde_json::to_string(&generate_plan(300, 7)).unwrap();
        let b = serde_json::to_string(&generate_plan(300, 7)).unwrap();
        let c = serde_json::to_string(&generate_plan(300, 8)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn parses_with_every_action_and_feature() {
        let doc = generate_plan(2_000, 1);
        let plan =
            Plan::parse("gen.json", doc.to_string().as_bytes()).expect("generated plan parses");
        assert_eq!(plan.resource_changes.len(), 2_000);
        let s = plan.summary();
        for a in Action::ALL {
            assert!(s.counts.get(a) > 0, "no {a} in 2,000 changes");
        }
        assert!(s.replaced.iter().all(|r| r.reason.is_some()));
        assert!(!s.moved.is_empty() && !s.imported.is_empty() && !s.drifted.is_empty());
        let types: std::collections::BTreeSet<&str> = plan
            .resource_changes
            .iter()
            .map(|r| r.resource_type.as_str())
            .collect();
        for t in TYPES {
            assert!(types.contains(t), "{t} missing");
        }
        let addresses: std::collections::BTreeSet<&str> = plan
            .resource_changes
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(addresses.len(), 2_000, "addresses are unique");
    }

    #[test]
    fn sensitive_values_are_marked_and_redacted() {
        // Below and above the size from which the plan's values are scrubbed in parallel.
        for changes in [300, 1_200] {
            let doc = generate_plan(changes, 3);
            let plan = Plan::parse("gen.json", doc.to_string().as_bytes()).unwrap();
            let rules = sluice_model::redact::RedactionRules::default();
            let redacted =
                serde_json::to_string(&sluice_model::redact::redact_plan(&plan, &rules)).unwrap();
            for secret_prefix in ["\"pw-", "sv-", "APP_TOKEN", "gen-", "out-"] {
                assert!(
                    !redacted.contains(secret_prefix),
                    "{secret_prefix} leaked ({changes} changes)"
                );
            }
            assert!(
                doc.to_string().contains("\"pw-"),
                "the generator plants passwords"
            );
        }
    }
}
