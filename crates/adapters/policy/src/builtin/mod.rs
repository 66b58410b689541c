//! The built-in policy pack: Rego shipped inside the binary, one package per rule, with the
//! catalog (`sluice policy list`) that says what each rule checks, its default outcome and how
//! to fix a finding. Parameters reach the Rego as `data.sluice.params`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::bundle::{Bundle, BundleFile, Origin};
use crate::error::PolicyError;
use crate::record::Outcome;

/// One rule of the pack.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BuiltinRule {
    /// Stable id: used in decision records, exceptions and `policy.builtin.disable`.
    pub id: &'static str,
    pub title: &'static str,
    /// What the rule checks, one paragraph.
    pub description: &'static str,
    /// Why it matters and how to fix a finding.
    pub docs: &'static str,
    /// The outcome a finding has unless `policy.builtin.overrides` changes it.
    pub default_outcome: Outcome,
    pub severity: Severity,
    /// The Rego package (under `data`) holding the rule.
    pub package: &'static str,
    /// The conftest rule name the package defines (`deny`, `warn`, `require_approval`).
    pub rule: &'static str,
    /// Resource types the rule reads (a `*` suffix is a prefix); empty: it reads every
    /// change. The engine hands the rule only these changes; `views_match_full_input` in the
    /// tests holds each list to what the Rego reads.
    #[serde(skip)]
    pub reads: &'static [&'static str],
    #[serde(skip)]
    pub file: &'static str,
    #[serde(skip)]
    pub source: &'static str,
    #[serde(skip)]
    pub tests: &'static str,
    /// What the rule reads: a stack's plan or an app's rendered manifests.
    pub target: Target,
}

/// The kind of input a built-in rule judges. The engine evaluates a rule only over inputs of
/// its kind, and the decision record lists only the bundles evaluated: a plan's record does
/// not change when the Kubernetes rules do, and vice versa.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// `input.plan`: Terraform/OpenTofu plan JSON of a stack.
    Plan,
    /// `input.manifests` / `input.manifest`: rendered Kubernetes objects of an app.
    Manifests,
}

impl Target {
    /// The kind of an input document: manifests when it has `manifests` or `manifest` and no
    /// `plan`, else a plan (the default for every other document, as before manifests existed).
    pub fn of(document: &serde_json::Value) -> Target {
        let has = |k: &str| document.get(k).is_some();
        if !has("plan") && (has("manifests") || has("manifest")) {
            Target::Manifests
        } else {
            Target::Plan
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Target::Plan => "plan",
            Target::Manifests => "manifests",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

const LIB: &str = include_str!("rego/lib.rego");
const LIB_TESTS: &str = include_str!("rego/lib_test.rego");
const K8S_LIB: &str = include_str!("rego/k8s_lib.rego");
const K8S_LIB_TESTS: &str = include_str!("rego/k8s_lib_test.rego");

macro_rules! rule_files {
    ($name:literal) => {
        (
            concat!($name, ".rego"),
            include_str!(concat!("rego/", $name, ".rego")),
            include_str!(concat!("rego/", $name, "_test.rego")),
        )
    };
}

// A row of the table below; named fields would triple its length.
#[allow(clippy::too_many_arguments)]
const fn rule(
    id: &'static str,
    title: &'static str,
    description: &'static str,
    docs: &'static str,
    default_outcome: Outcome,
    severity: Severity,
    package: &'static str,
    rule: &'static str,
    reads: &'static [&'static str],
    files: (&'static str, &'static str, &'static str),
) -> BuiltinRule {
    BuiltinRule {
        id,
        title,
        description,
        docs,
        default_outcome,
        severity,
        package,
        rule,
        reads,
        file: files.0,
        source: files.1,
        tests: files.2,
        target: Target::Plan,
    }
}

/// A row for a Kubernetes rule (reads rendered manifests; `reads` lists kinds).
#[allow(clippy::too_many_arguments)]
const fn k8s(
    id: &'static str,
    title: &'static str,
    description: &'static str,
    docs: &'static str,
    default_outcome: Outcome,
    severity: Severity,
    package: &'static str,
    rule_name: &'static str,
    reads: &'static [&'static str],
    files: (&'static str, &'static str, &'static str),
) -> BuiltinRule {
    let mut r = rule(
        id,
        title,
        description,
        docs,
        default_outcome,
        severity,
        package,
        rule_name,
        reads,
        files,
    );
    r.target = Target::Manifests;
    r
}

/// Kinds with a pod template (what the workload rules read).
const WORKLOAD_KINDS: &[&str] = &[
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
];

/// The pack, in the order `sluice policy list` shows it.
pub static RULES: &[BuiltinRule] = &[
    rule(
        "db-public-access",
        "Databases are not publicly accessible",
        "Denies RDS instances, RDS cluster instances, Redshift clusters and DMS replication instances planned with publicly_accessible = true.",
        "A database with a public endpoint is one leaked password away from the internet. Set publicly_accessible = false and reach it through private subnets, a VPN or a bastion; if a vendor must connect, use PrivateLink or an allow-listed proxy.",
        Outcome::Deny,
        Severity::Critical,
        "sluice.builtin.db_public_access",
        "deny",
        &[
            "aws_db_instance",
            "aws_rds_cluster_instance",
            "aws_redshift_cluster",
            "aws_dms_replication_instance",
        ],
        rule_files!("db_public_access"),
    ),
    rule(
        "rds-storage-encryption",
        "RDS storage is encrypted",
        "Denies aws_db_instance and aws_rds_cluster without storage_encrypted = true. Read replicas (which inherit their source's encryption) and Aurora Serverless v1 (always encrypted) are exempt; a value known only after apply is not judged.",
        "Encryption at rest cannot be switched on for an existing RDS instance without a snapshot-restore, so it must be right at creation. Set storage_encrypted = true and, for a customer-managed key, kms_key_id.",
        Outcome::Deny,
        Severity::High,
        "sluice.builtin.rds_storage_encryption",
        "deny",
        &["aws_db_instance", "aws_rds_cluster"],
        rule_files!("rds_storage_encryption"),
    ),
    rule(
        "s3-encryption",
        "S3 buckets declare server-side encryption",
        "Denies aws_s3_bucket without an encryption configuration: neither the legacy inline server_side_encryption_configuration block nor an aws_s3_bucket_server_side_encryption_configuration in the plan that targets it (by bucket name, or by its configuration reference to the bucket).",
        "Declare the encryption you rely on instead of the account default, so that a KMS key requirement is reviewable: add an aws_s3_bucket_server_side_encryption_configuration with sse_algorithm = \"aws:kms\" (or \"AES256\") for the bucket.",
        Outcome::Deny,
        Severity::High,
        "sluice.builtin.s3_encryption",
        "deny",
        &[
            "aws_s3_bucket",
            "aws_s3_bucket_server_side_encryption_configuration",
        ],
        rule_files!("s3_encryption"),
    ),
    rule(
        "ebs-encryption",
        "EBS volumes are encrypted",
        "Denies aws_ebs_volume without encrypted = true and aws_instance root or EBS block devices with encrypted = false, unless the plan enables aws_ebs_encryption_by_default.",
        "Unencrypted volumes and their snapshots expose data to anyone who can share or copy them. Set encrypted = true (and kms_key_id if required), or enable EBS encryption by default for the account and region.",
        Outcome::Deny,
        Severity::High,
        "sluice.builtin.ebs_encryption",
        "deny",
        &[
            "aws_ebs_volume",
            "aws_instance",
            "aws_ebs_encryption_by_default",
        ],
        rule_files!("ebs_encryption"),
    ),
    rule(
        "db-backup-retention",
        "Databases keep backups long enough",
        "Denies aws_db_instance, aws_rds_cluster, aws_docdb_cluster and aws_neptune_cluster whose backup_retention_period is below params.backup_retention_min_days (default 7). Read replicas are exempt.",
        "Point-in-time recovery only reaches back as far as the retention period; a bad migration noticed after a weekend needs more than a day. Set backup_retention_period to at least the required number of days.",
        Outcome::Deny,
        Severity::Medium,
        "sluice.builtin.db_backup_retention",
        "deny",
        &[
            "aws_db_instance",
            "aws_rds_cluster",
            "aws_docdb_cluster",
            "aws_neptune_cluster",
        ],
        rule_files!("db_backup_retention"),
    ),
    rule(
        "db-deletion-protection",
        "Production databases have deletion protection",
        "In production (input.change.production, or input.change.env in params.production_envs), denies aws_db_instance, aws_rds_cluster, aws_docdb_cluster and aws_neptune_cluster without deletion_protection = true.",
        "Deletion protection makes a destroy fail instead of dropping a production database; turning it off becomes its own reviewed change. Set deletion_protection = true.",
        Outcome::Deny,
        Severity::High,
        "sluice.builtin.db_deletion_protection",
        "deny",
        &[
            "aws_db_instance",
            "aws_rds_cluster",
            "aws_docdb_cluster",
            "aws_neptune_cluster",
        ],
        rule_files!("db_deletion_protection"),
    ),
    rule(
        "iam-wildcard",
        "IAM policies do not grant wildcards",
        "Parses the policy JSON of aws_iam_policy, aws_iam_role_policy, aws_iam_user_policy, aws_iam_group_policy, aws_ssoadmin_permission_set_inline_policy and aws_iam_role inline policies, and denies Allow statements with Action \"*\", a whole-service action (\"s3:*\") on Resource \"*\", or NotAction on Resource \"*\". Policies only known after apply are not judged.",
        "Wildcard grants turn any compromise of the principal into a compromise of the account or service. List the actions the workload calls and scope Resource to the ARNs it touches; IAM Access Analyzer can generate a policy from CloudTrail activity.",
        Outcome::Deny,
        Severity::Critical,
        "sluice.builtin.iam_wildcard",
        "deny",
        &["aws_iam_*", "aws_ssoadmin_permission_set_inline_policy"],
        rule_files!("iam_wildcard"),
    ),
    rule(
        "stateful-destroy",
        "Destroying stateful resources in production needs approval",
        "In production, requires approval (params.stateful_approvers, default platform) for every delete or replace of a stateful resource type (params.stateful_types: databases, buckets, volumes, file systems, tables, keys, queues, streams, caches...; `*` globs allowed).",
        "A replace of a database or bucket destroys its data unless it is migrated first. The approver checks the action_reason, that a backup or snapshot exists and that the replacement is intended (a renamed attribute that forces replacement is a common accident; a moved block or lifecycle.prevent_destroy may be the fix).",
        Outcome::RequireApproval,
        Severity::High,
        "sluice.builtin.stateful_destroy",
        "require_approval",
        &[],
        rule_files!("stateful_destroy"),
    ),
    rule(
        "required-tags",
        "Resources carry the required tags",
        "Warns when a created or updated resource that supports tags lacks any of params.required_tags (default: owner). Keys compare case-insensitively; tags_all and constant AWS provider default_tags count.",
        "Tags route cost, alerts and incidents to an owner. Add the missing tags to the resource, or once for the whole stack through the provider's default_tags block.",
        Outcome::Warn,
        Severity::Low,
        "sluice.builtin.required_tags",
        "warn",
        &[],
        rule_files!("required_tags"),
    ),
    rule(
        "sg-open-ingress",
        "Internet-wide ingress needs security approval",
        "Requires approval (params.open_ingress_approvers, default security) when a change opens ingress from 0.0.0.0/0 or ::/0 (any /0) in aws_security_group, aws_security_group_rule or aws_vpc_security_group_ingress_rule. An opening already present before the change is not reported again.",
        "Ingress from everywhere is sometimes right (a public load balancer on 443) and often an accident (SSH, a database port). The security approver checks the port and the resource behind it; prefer a load balancer or a narrower CIDR.",
        Outcome::RequireApproval,
        Severity::High,
        "sluice.builtin.sg_open_ingress",
        "require_approval",
        &[
            "aws_security_group",
            "aws_security_group_rule",
            "aws_vpc_security_group_ingress_rule",
        ],
        rule_files!("sg_open_ingress"),
    ),
    rule(
        "s3-public-access",
        "S3 buckets are not public",
        "Denies public canned ACLs (public-read, public-read-write, authenticated-read) on aws_s3_bucket and aws_s3_bucket_acl, ACL grants to the AllUsers or AuthenticatedUsers groups, bucket or account public access blocks with any flag set to false, and bucket policies that allow Principal \"*\" without a Condition.",
        "Public buckets are the most common cloud data leak. Keep all four public access block flags on; serve public content through CloudFront with an origin access control, and scope bucket policies to principals or conditions (aws:SourceVpce, aws:PrincipalOrgID).",
        Outcome::Deny,
        Severity::Critical,
        "sluice.builtin.s3_public_access",
        "deny",
        &[
            "aws_s3_bucket",
            "aws_s3_bucket_acl",
            "aws_s3_bucket_public_access_block",
            "aws_s3_account_public_access_block",
            "aws_s3_bucket_policy",
        ],
        rule_files!("s3_public_access"),
    ),
    k8s(
        "k8s-resources",
        "Containers declare resource requests and limits",
        "Denies workload containers (Pods and pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs; init containers included) missing any of params.k8s_required_resources (default requests.cpu, requests.memory, limits.cpu, limits.memory).",
        "Without requests the scheduler packs pods blindly and a namespace quota cannot admit them; without limits one container can starve its neighbours or the node. Set resources.requests and resources.limits on every container (a LimitRange default hides the choice from review).",
        Outcome::Deny,
        Severity::Medium,
        "sluice.builtin.k8s_resources",
        "deny",
        WORKLOAD_KINDS,
        rule_files!("k8s_resources"),
    ),
    k8s(
        "k8s-privileged",
        "No privileged containers",
        "Denies any container, init or ephemeral container of a workload with securityContext.privileged: true.",
        "A privileged container has every capability and the host's devices: it is root on the node. Remove privileged and add only the capabilities the process needs (securityContext.capabilities.add); device plugins cover hardware access.",
        Outcome::Deny,
        Severity::Critical,
        "sluice.builtin.k8s_privileged",
        "deny",
        WORKLOAD_KINDS,
        rule_files!("k8s_privileged"),
    ),
    k8s(
        "k8s-host-path",
        "No hostPath volumes",
        "Denies workloads that mount a hostPath volume and PersistentVolumes backed by hostPath.",
        "A hostPath mount reads or writes the node's file system (the container runtime socket, kubelet credentials, other pods' data) and ties the pod to one node. Use a PersistentVolumeClaim, a ConfigMap, a Secret reference or an emptyDir.",
        Outcome::Deny,
        Severity::High,
        "sluice.builtin.k8s_host_path",
        "deny",
        &[
            "Pod",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "ReplicationController",
            "Job",
            "CronJob",
            "PersistentVolume",
        ],
        rule_files!("k8s_host_path"),
    ),
    k8s(
        "k8s-image-digest",
        "Production images are pinned by digest",
        "In protected environments (input.app.protected, else input.change.production or the environment in params.production_envs), denies workload containers whose image is not pinned as name[:tag]@sha256:<digest>.",
        "A tag can be moved after review: what runs in production must be the image that was reviewed and scanned. Pin the digest (Kustomize images[].digest, Helm values, or an image updater that writes digests).",
        Outcome::Deny,
        Severity::High,
        "sluice.builtin.k8s_image_digest",
        "deny",
        WORKLOAD_KINDS,
        rule_files!("k8s_image_digest"),
    ),
    k8s(
        "k8s-probes",
        "Long-running containers have liveness and readiness probes",
        "Warns when an app container of a Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet or ReplicationController has no livenessProbe or no readinessProbe (Jobs and CronJobs are exempt).",
        "Without a readiness probe a rollout sends traffic to pods that are not ready and cannot stop a bad release; without a liveness probe a hung process is never restarted. Add both, pointing at cheap health endpoints.",
        Outcome::Warn,
        Severity::Low,
        "sluice.builtin.k8s_probes",
        "warn",
        &[
            "Pod",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "ReplicationController",
        ],
        rule_files!("k8s_probes"),
    ),
    k8s(
        "k8s-loadbalancer",
        "LoadBalancer Services need approval",
        "Requires approval (params.k8s_loadbalancer_approvers, default platform) for each Service of type LoadBalancer outside params.k8s_loadbalancer_namespaces (default none).",
        "A LoadBalancer Service provisions a cloud load balancer, often internet-facing, outside the ingress controls the platform reviews (TLS, WAF, authentication) and at a cost. Route through the shared Ingress or Gateway, or have the network edge owners approve it.",
        Outcome::RequireApproval,
        Severity::Medium,
        "sluice.builtin.k8s_loadbalancer",
        "require_approval",
        &["Service"],
        rule_files!("k8s_loadbalancer"),
    ),
    k8s(
        "k8s-network-policy",
        "Every namespace has a NetworkPolicy",
        "Over a whole app (input.manifests), warns for each namespace that runs the app's workloads or that the app declares without a NetworkPolicy in that namespace among the app's manifests.",
        "Kubernetes allows all pod-to-pod traffic until a NetworkPolicy selects a pod. Ship a default-deny policy with the app and allow the ingress and egress it needs; if another app owns the namespace's policies, disable or override this rule for the app's environment.",
        Outcome::Warn,
        Severity::Medium,
        "sluice.builtin.k8s_network_policy",
        "warn",
        &[],
        rule_files!("k8s_network_policy"),
    ),
    k8s(
        "k8s-plaintext-secret",
        "No plaintext Secrets in Git",
        "Denies core v1 Secret manifests with any data or stringData entry. The finding names the keys, never the values (sluice redacts Secret values before any policy runs).",
        "Base64 is an encoding, not encryption: a Secret manifest in Git is readable by everyone with repository access, forever (history keeps it). Rotate the value, keep it in a secret manager and reference it with an ExternalSecret, or commit a SealedSecret (encrypted for the cluster).",
        Outcome::Deny,
        Severity::Critical,
        "sluice.builtin.k8s_plaintext_secret",
        "deny",
        &["Secret"],
        rule_files!("k8s_plaintext_secret"),
    ),
];

pub fn find(id: &str) -> Option<&'static BuiltinRule> {
    RULES.iter().find(|r| r.id == id)
}

/// Parameters of the pack (`policy.builtin.params`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Params {
    pub backup_retention_min_days: u32,
    pub required_tags: Vec<String>,
    /// Environments treated as production when the caller does not say
    /// (`input.change.production`).
    pub production_envs: Vec<String>,
    pub stateful_types: Vec<String>,
    pub stateful_approvers: Vec<String>,
    pub open_ingress_approvers: Vec<String>,
    /// `requests.cpu`, `limits.memory`, ...: what `k8s-resources` requires of each container.
    /// (The Kubernetes parameters reach only the Kubernetes bundle's data, so the plan
    /// bundle's version does not change with them.)
    #[serde(skip)]
    pub k8s_required_resources: Vec<String>,
    /// Namespaces where `k8s-loadbalancer` allows LoadBalancer Services without approval.
    #[serde(skip)]
    pub k8s_loadbalancer_namespaces: Vec<String>,
    #[serde(skip)]
    pub k8s_loadbalancer_approvers: Vec<String>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Default for Params {
    fn default() -> Self {
        Params {
            backup_retention_min_days: 7,
            required_tags: strings(&["owner"]),
            production_envs: strings(&["prod", "production"]),
            stateful_types: strings(&[
                "aws_db_instance",
                "aws_rds_cluster",
                "aws_rds_cluster_instance",
                "aws_rds_global_cluster",
                "aws_docdb_cluster",
                "aws_neptune_cluster",
                "aws_redshift_cluster",
                "aws_dynamodb_table",
                "aws_dynamodb_global_table",
                "aws_elasticache_cluster",
                "aws_elasticache_replication_group",
                "aws_memorydb_cluster",
                "aws_elasticsearch_domain",
                "aws_opensearch_domain",
                "aws_msk_cluster",
                "aws_kinesis_stream",
                "aws_sqs_queue",
                "aws_s3_bucket",
                "aws_ebs_volume",
                "aws_efs_file_system",
                "aws_fsx_*_file_system",
                "aws_backup_vault",
                "aws_kms_key",
                "aws_secretsmanager_secret",
                "aws_timestreamwrite_table",
                "aws_keyspaces_table",
                "google_sql_database_instance",
                "google_storage_bucket",
                "google_bigquery_dataset",
                "google_spanner_instance",
                "google_kms_crypto_key",
                "azurerm_mssql_database",
                "azurerm_postgresql_flexible_server",
                "azurerm_mysql_flexible_server",
                "azurerm_cosmosdb_account",
                "azurerm_storage_account",
                "azurerm_key_vault",
            ]),
            stateful_approvers: strings(&["platform"]),
            open_ingress_approvers: strings(&["security"]),
            k8s_required_resources: strings(&[
                "requests.cpu",
                "requests.memory",
                "limits.cpu",
                "limits.memory",
            ]),
            k8s_loadbalancer_namespaces: Vec::new(),
            k8s_loadbalancer_approvers: strings(&["platform"]),
        }
    }
}

/// The names `policy.builtin.params` accepts.
pub const PARAM_NAMES: &[&str] = &[
    "backup_retention_min_days",
    "required_tags",
    "production_envs",
    "stateful_types",
    "stateful_approvers",
    "open_ingress_approvers",
    "k8s_required_resources",
    "k8s_loadbalancer_namespaces",
    "k8s_loadbalancer_approvers",
];

/// The resources `k8s_required_resources` may name.
pub const K8S_RESOURCE_FIELDS: &[&str] = &[
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];

impl Params {
    /// The data document the Rego reads (`data.sluice.params`).
    pub fn to_data(&self) -> serde_json::Value {
        serde_json::json!({ "sluice": { "params": self } })
    }

    /// The data document of the Kubernetes bundle: the shared production settings and the
    /// Kubernetes parameters.
    pub fn to_k8s_data(&self) -> serde_json::Value {
        serde_json::json!({ "sluice": { "params": {
            "production_envs": self.production_envs,
            "k8s_required_resources": self.k8s_required_resources,
            "k8s_loadbalancer_namespaces": self.k8s_loadbalancer_namespaces,
            "k8s_loadbalancer_approvers": self.k8s_loadbalancer_approvers,
        } } })
    }
}

/// The pack as a bundle: every rule with its tests, the shared library and the parameters as
/// `data.json` (so the bundle's digest changes when a parameter does).
pub fn bundle(params: &Params) -> Result<Bundle, PolicyError> {
    let mut files = vec![
        file("lib.rego", LIB),
        file("lib_test.rego", LIB_TESTS),
        BundleFile {
            path: "data.json".into(),
            content: Arc::from(crate::canonical::to_string(&params.to_data()).into_bytes()),
        },
    ];
    for r in RULES.iter().filter(|r| r.target == Target::Plan) {
        files.push(file(r.file, r.source));
        files.push(file(&r.file.replace(".rego", "_test.rego"), r.tests));
    }
    Bundle::from_files("builtin", Origin::Builtin, files)
}

/// Name of the Kubernetes half of the pack.
pub const K8S_BUNDLE: &str = "builtin-k8s";

/// The Kubernetes rules as a bundle of their own (with the shared library, which they use for
/// the production test), so that plan decision records do not name it.
pub fn k8s_bundle(params: &Params) -> Result<Bundle, PolicyError> {
    let mut files = vec![
        file("lib.rego", LIB),
        file("k8s_lib.rego", K8S_LIB),
        file("k8s_lib_test.rego", K8S_LIB_TESTS),
        BundleFile {
            path: "data.json".into(),
            content: Arc::from(crate::canonical::to_string(&params.to_k8s_data()).into_bytes()),
        },
    ];
    for r in RULES.iter().filter(|r| r.target == Target::Manifests) {
        files.push(file(r.file, r.source));
        files.push(file(&r.file.replace(".rego", "_test.rego"), r.tests));
    }
    Bundle::from_files(K8S_BUNDLE, Origin::Builtin, files)
}

/// Both halves of the pack, with the target each judges.
pub fn bundles(params: &Params) -> Result<Vec<(Target, Bundle)>, PolicyError> {
    Ok(vec![
        (Target::Plan, bundle(params)?),
        (Target::Manifests, k8s_bundle(params)?),
    ])
}

fn file(path: &str, text: &str) -> BundleFile {
    BundleFile {
        path: path.to_string(),
        content: Arc::from(text.as_bytes()),
    }
}

/// Built-in rule ids by package, for the engine's pass entries and result checks.
pub fn ids_by_package() -> BTreeMap<&'static str, &'static str> {
    RULES.iter().map(|r| (r.package, r.id)).collect()
}
