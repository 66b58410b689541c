//! Risk classification (R1–R5) of one stack's change from `sluice.yaml` rules over the
//! environment, stack id, resource types, actions, policy outcome and change counts. The highest
//! matching level wins; every matching rule is kept as a reason so a reviewer sees why.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::glob::GlobList;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RiskLevel {
    R1,
    R2,
    R3,
    R4,
    R5,
}

impl RiskLevel {
    pub const ALL: [RiskLevel; 5] = [
        RiskLevel::R1,
        RiskLevel::R2,
        RiskLevel::R3,
        RiskLevel::R4,
        RiskLevel::R5,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        RiskLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(text))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::R1 => "R1",
            RiskLevel::R2 => "R2",
            RiskLevel::R3 => "R3",
            RiskLevel::R4 => "R4",
            RiskLevel::R5 => "R5",
        }
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a change does to one resource, as risk rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Create,
    Read,
    Update,
    Delete,
    Replace,
    Forget,
    Import,
    Move,
}

impl ChangeAction {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "create" => ChangeAction::Create,
            "read" => ChangeAction::Read,
            "update" => ChangeAction::Update,
            "delete" => ChangeAction::Delete,
            "replace" => ChangeAction::Replace,
            "forget" => ChangeAction::Forget,
            "import" => ChangeAction::Import,
            "move" => ChangeAction::Move,
            _ => return None,
        })
    }
}

/// The policy stage's final outcome, as risk rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyOutcome {
    Allow,
    Warn,
    RequireApproval,
    Deny,
}

impl PolicyOutcome {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "allow" => PolicyOutcome::Allow,
            "warn" => PolicyOutcome::Warn,
            "require_approval" | "require-approval" => PolicyOutcome::RequireApproval,
            "deny" => PolicyOutcome::Deny,
            _ => return None,
        })
    }
}

/// One resource change of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceFact {
    pub address: String,
    pub resource_type: String,
    pub actions: Vec<ChangeAction>,
}

/// Everything a risk rule may look at for one stack's change.
#[derive(Debug, Clone)]
pub struct RiskInput<'a> {
    pub env: &'a str,
    pub stack: &'a str,
    pub resources: &'a [ResourceFact],
    pub policy: Option<PolicyOutcome>,
}

/// A rule's conditions; all given conditions must hold (absent ones always hold).
#[derive(Debug, Clone, Default)]
pub struct RiskWhen {
    pub envs: Vec<String>,
    pub stacks: Option<GlobList>,
    pub resource_types: Option<GlobList>,
    pub actions: Vec<ChangeAction>,
    pub policy: Vec<PolicyOutcome>,
    /// At least this many resource changes match the type/action conditions.
    pub min_changes: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct RiskRule {
    pub when: RiskWhen,
    pub risk: RiskLevel,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RiskReason {
    pub risk: RiskLevel,
    pub reason: String,
    /// Resource addresses that made the rule match (empty for env/stack-only rules).
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RiskAssessment {
    pub risk: RiskLevel,
    /// Matching rules, highest risk first.
    pub reasons: Vec<RiskReason>,
}

/// The built-in rules, used unless configuration turns them off: any change is R1, a
/// production change R2, production database topology and production IAM R3, destructive
/// production changes R4. The patterns are constants, so this cannot fail (the tests compile
/// every one).
pub fn default_rules(production_envs: &[String]) -> Vec<RiskRule> {
    let prod = production_envs.to_vec();
    vec![
        RiskRule {
            when: RiskWhen::default(),
            risk: RiskLevel::R1,
            reason: "change".into(),
        },
        RiskRule {
            when: RiskWhen {
                envs: prod.clone(),
                ..Default::default()
            },
            risk: RiskLevel::R2,
            reason: "production change".into(),
        },
        RiskRule {
            when: RiskWhen {
                envs: prod.clone(),
                resource_types: Some(builtin(&[
                    "aws_db_*",
                    "aws_rds_*",
                    "aws_docdb_*",
                    "aws_elasticache_*",
                    "aws_dynamodb_*",
                    "google_sql_*",
                    "azurerm_*sql*",
                ])),
                actions: vec![
                    ChangeAction::Create,
                    ChangeAction::Update,
                    ChangeAction::Delete,
                    ChangeAction::Replace,
                ],
                ..Default::default()
            },
            risk: RiskLevel::R3,
            reason: "production database topology change".into(),
        },
        RiskRule {
            when: RiskWhen {
                envs: prod.clone(),
                resource_types: Some(builtin(&["aws_iam_*", "google_*iam*", "azurerm_role_*"])),
                actions: vec![
                    ChangeAction::Create,
                    ChangeAction::Update,
                    ChangeAction::Delete,
                    ChangeAction::Replace,
                ],
                ..Default::default()
            },
            risk: RiskLevel::R3,
            reason: "production IAM change".into(),
        },
        RiskRule {
            when: RiskWhen {
                envs: prod.clone(),
                actions: vec![ChangeAction::Delete, ChangeAction::Replace],
                ..Default::default()
            },
            risk: RiskLevel::R4,
            reason: "destructive production change".into(),
        },
        // GitOps apps (resource types per `k8s_resource_type`).
        RiskRule {
            when: RiskWhen {
                envs: prod,
                resource_types: Some(builtin(&[K8S_IMAGE])),
                ..Default::default()
            },
            risk: RiskLevel::R2,
            reason: "production image change".into(),
        },
        RiskRule {
            when: RiskWhen {
                resource_types: Some(builtin(&[
                    "k8s:rbac.authorization.k8s.io/*",
                    "k8s:apiextensions.k8s.io/CustomResourceDefinition",
                    "k8s:admissionregistration.k8s.io/*",
                ])),
                ..Default::default()
            },
            risk: RiskLevel::R3,
            reason: "Kubernetes RBAC, CRD or admission change".into(),
        },
    ]
}

/// A glob list of built-in patterns.
fn builtin(patterns: &[&str]) -> GlobList {
    GlobList::new(patterns).expect("built-in risk patterns compile")
}

/// The resource type risk rules see for a Kubernetes object: `k8s:<group>/<Kind>`, with
/// `core` for the core group (`k8s:apps/Deployment`, `k8s:core/Secret`,
/// `k8s:rbac.authorization.k8s.io/ClusterRole`).
pub fn k8s_resource_type(group: &str, kind: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    format!("k8s:{group}/{kind}")
}

/// The resource type of a container image reference that a change sets or changes (one fact
/// per container, next to the fact of its workload).
pub const K8S_IMAGE: &str = "k8s:image";

/// Addresses of resources matching the rule's type and action conditions.
fn matching_resources<'a>(when: &RiskWhen, input: &'a RiskInput<'_>) -> Vec<&'a str> {
    input
        .resources
        .iter()
        .filter(|r| {
            when.resource_types
                .as_ref()
                .is_none_or(|g| g.is_match(&r.resource_type))
        })
        .filter(|r| when.actions.is_empty() || r.actions.iter().any(|a| when.actions.contains(a)))
        .map(|r| r.address.as_str())
        .collect()
}

/// Does the rule match, and through which resources?
pub fn rule_matches(when: &RiskWhen, input: &RiskInput<'_>) -> Option<Vec<String>> {
    if !when.envs.is_empty() && !when.envs.iter().any(|e| e == input.env) {
        return None;
    }
    if when
        .stacks
        .as_ref()
        .is_some_and(|g| !g.is_match(input.stack))
    {
        return None;
    }
    if !when.policy.is_empty() && !input.policy.is_some_and(|p| when.policy.contains(&p)) {
        return None;
    }
    let per_resource =
        when.resource_types.is_some() || !when.actions.is_empty() || when.min_changes.is_some();
    if !per_resource {
        return Some(Vec::new());
    }
    let hits = matching_resources(when, input);
    if hits.len() < when.min_changes.unwrap_or(1) {
        return None;
    }
    Some(hits.into_iter().map(str::to_string).collect())
}

/// Classify a change: the highest level among matching rules (R1 when none match).
pub fn classify(rules: &[RiskRule], input: &RiskInput<'_>) -> RiskAssessment {
    let mut reasons: Vec<RiskReason> = rules
        .iter()
        .filter_map(|r| {
            rule_matches(&r.when, input).map(|addresses| RiskReason {
                risk: r.risk,
                reason: r.reason.clone(),
                addresses,
            })
        })
        .collect();
    reasons.sort_by(|a, b| b.risk.cmp(&a.risk).then_with(|| a.reason.cmp(&b.reason)));
    reasons.dedup();
    RiskAssessment {
        risk: reasons.first().map_or(RiskLevel::R1, |r| r.risk),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn res(address: &str, t: &str, actions: &[ChangeAction]) -> ResourceFact {
        ResourceFact {
            address: address.into(),
            resource_type: t.into(),
            actions: actions.to_vec(),
        }
    }

    fn input<'a>(env: &'a str, resources: &'a [ResourceFact]) -> RiskInput<'a> {
        RiskInput {
            env,
            stack: "prod/ap-southeast-1/rds-payments",
            resources,
            policy: None,
        }
    }

    #[test]
    fn defaults_follow_the_issue() {
        let rules = default_rules(&["prod".into()]);
        let db = [res(
            "aws_db_instance.replica[1]",
            "aws_db_instance",
            &[ChangeAction::Create],
        )];
        assert_eq!(classify(&rules, &input("dev", &db)).risk, RiskLevel::R1);
        let a = classify(&rules, &input("prod", &db));
        assert_eq!(a.risk, RiskLevel::R3);
        assert_eq!(a.reasons[0].reason, "production database topology change");
        assert_eq!(a.reasons[0].addresses, vec!["aws_db_instance.replica[1]"]);
        let iam = [res(
            "aws_iam_role.x",
            "aws_iam_role",
            &[ChangeAction::Update],
        )];
        assert_eq!(classify(&rules, &input("prod", &iam)).risk, RiskLevel::R3);
        let del = [res(
            "aws_s3_bucket.logs",
            "aws_s3_bucket",
            &[ChangeAction::Delete],
        )];
        assert_eq!(classify(&rules, &input("prod", &del)).risk, RiskLevel::R4);
        let tag = [res(
            "aws_s3_bucket.logs",
            "aws_s3_bucket",
            &[ChangeAction::Update],
        )];
        assert_eq!(classify(&rules, &input("prod", &tag)).risk, RiskLevel::R2);
    }

    #[test]
    fn kubernetes_defaults() {
        let rules = default_rules(&["prod".into()]);
        let image = [
            res(
                "Deployment/payments/payments",
                &k8s_resource_type("apps", "Deployment"),
                &[ChangeAction::Update],
            ),
            res(
                "Deployment/payments/payments#payments",
                K8S_IMAGE,
                &[ChangeAction::Update],
            ),
        ];
        assert_eq!(classify(&rules, &input("dev", &image)).risk, RiskLevel::R1);
        let a = classify(&rules, &input("prod", &image));
        assert_eq!(a.risk, RiskLevel::R2);
        assert!(
            a.reasons
                .iter()
                .any(|r| r.reason == "production image change"
                    && r.addresses == ["Deployment/payments/payments#payments"])
        );
        let rbac = [res(
            "ClusterRole/admin-ish",
            &k8s_resource_type("rbac.authorization.k8s.io", "ClusterRole"),
            &[ChangeAction::Create],
        )];
        assert_eq!(classify(&rules, &input("dev", &rbac)).risk, RiskLevel::R3);
        let crd = [res(
            "CustomResourceDefinition/widgets.acme.io",
            &k8s_resource_type("apiextensions.k8s.io", "CustomResourceDefinition"),
            &[ChangeAction::Update],
        )];
        assert_eq!(classify(&rules, &input("dev", &crd)).risk, RiskLevel::R3);
        assert_eq!(k8s_resource_type("", "Secret"), "k8s:core/Secret");
    }

    #[test]
    fn thresholds_and_policy_conditions() {
        let rule = RiskRule {
            when: RiskWhen {
                min_changes: Some(3),
                actions: vec![ChangeAction::Create],
                ..Default::default()
            },
            risk: RiskLevel::R3,
            reason: "large change".into(),
        };
        let deny = RiskRule {
            when: RiskWhen {
                policy: vec![PolicyOutcome::Deny],
                ..Default::default()
            },
            risk: RiskLevel::R5,
            reason: "denied".into(),
        };
        let two: Vec<_> = (0..2)
            .map(|i| res(&format!("a.b{i}"), "a", &[ChangeAction::Create]))
            .collect();
        let three: Vec<_> = (0..3)
            .map(|i| res(&format!("a.b{i}"), "a", &[ChangeAction::Create]))
            .collect();
        let rules = [rule, deny];
        assert_eq!(classify(&rules, &input("dev", &two)).risk, RiskLevel::R1);
        assert_eq!(classify(&rules, &input("dev", &three)).risk, RiskLevel::R3);
        let mut i = input("dev", &two);
        i.policy = Some(PolicyOutcome::Deny);
        assert_eq!(classify(&rules, &i).risk, RiskLevel::R5);
    }

    proptest! {
        /// Adding a rule never lowers the risk, and the result is the maximum matching level.
        #[test]
        fn adding_rules_is_monotonic(levels in proptest::collection::vec(0usize..5, 0..6), extra in 0usize..5) {
            let rules: Vec<RiskRule> = levels.iter().map(|l| RiskRule { when: RiskWhen::default(), risk: RiskLevel::ALL[*l], reason: format!("r{l}") }).collect();
            let resources = [res("x.y", "x", &[ChangeAction::Update])];
            let before = classify(&rules, &input("dev", &resources)).risk;
            let mut more = rules.clone();
            more.push(RiskRule { when: RiskWhen::default(), risk: RiskLevel::ALL[extra], reason: "extra".into() });
            let after = classify(&more, &input("dev", &resources)).risk;
            prop_assert!(after >= before);
            prop_assert_eq!(after, *levels.iter().chain([&extra]).map(|l| &RiskLevel::ALL[*l]).max().unwrap());
        }
    }
}
