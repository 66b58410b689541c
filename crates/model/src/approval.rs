//! Required approvals for a change: the approval matrix of its risk level, the CODEOWNERS of
//! the paths it touches and the groups policies ask for, each requirement with its source.
//! Whether given approvals satisfy them (and bind to the exact plan) is decided elsewhere.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::codeowners::CodeOwners;
use crate::risk::RiskLevel;

/// One entry of the approval matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Approver {
    /// The CODEOWNERS of the touched paths (always required; listing it documents that).
    Codeowners,
    /// `count` approvals from members of `group` (a team `@org/team` or a user `@login`).
    Group { group: String, count: u32 },
}

/// Risk level → approvers. A level without an entry uses the nearest configured level below.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalMatrix {
    pub levels: BTreeMap<RiskLevel, Vec<Approver>>,
}

impl ApprovalMatrix {
    /// The approvers for `level` and the configured level they come from.
    pub fn for_level(&self, level: RiskLevel) -> Option<(RiskLevel, &[Approver])> {
        self.levels
            .range(..=level)
            .next_back()
            .map(|(l, a)| (*l, a.as_slice()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Source {
    /// `approvals.<configured>` in sluice.yaml, applied because the change is `risk`.
    Risk {
        risk: RiskLevel,
        configured: RiskLevel,
    },
    /// A CODEOWNERS line owning some of the touched paths.
    Codeowners {
        pattern: String,
        line: u32,
        paths: Vec<String>,
    },
    /// A policy rule's `require_approval`.
    Policy { rule: String, message: String },
}

/// `count` approvals from any of `approvers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub approvers: Vec<String>,
    pub count: u32,
    pub source: Source,
}

/// A policy's request for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRequest {
    pub rule: String,
    pub message: String,
    pub groups: Vec<String>,
}

/// Everything that must approve a change of risk `risk` touching `paths`.
pub fn requirements(
    risk: RiskLevel,
    matrix: &ApprovalMatrix,
    codeowners: &CodeOwners,
    paths: &[String],
    policy: &[PolicyRequest],
) -> Vec<Requirement> {
    let mut out = Vec::new();
    if let Some((configured, approvers)) = matrix.for_level(risk) {
        for a in approvers {
            if let Approver::Group { group, count } = a {
                out.push(Requirement {
                    approvers: vec![group.clone()],
                    count: *count,
                    source: Source::Risk { risk, configured },
                });
            }
        }
    }
    // One requirement per deciding CODEOWNERS line, as GitHub asks one approval per owner set.
    let mut by_rule: BTreeMap<u32, (String, Vec<String>, BTreeSet<String>)> = BTreeMap::new();
    for p in paths {
        if let Some(rule) = codeowners.rule_for(p)
            && !rule.owners.is_empty()
        {
            let entry = by_rule
                .entry(rule.line)
                .or_insert_with(|| (rule.pattern.clone(), rule.owners.clone(), BTreeSet::new()));
            entry.2.insert(p.clone());
        }
    }
    for (line, (pattern, owners, touched)) in by_rule {
        out.push(Requirement {
            approvers: owners,
            count: 1,
            source: Source::Codeowners {
                pattern,
                line,
                paths: touched.into_iter().collect(),
            },
        });
    }
    for request in policy {
        out.push(Requirement {
            approvers: request.groups.clone(),
            count: 1,
            source: Source::Policy {
                rule: request.rule.clone(),
                message: request.message.clone(),
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix() -> ApprovalMatrix {
        let mut levels = BTreeMap::new();
        levels.insert(RiskLevel::R1, vec![Approver::Codeowners]);
        levels.insert(
            RiskLevel::R3,
            vec![
                Approver::Group {
                    group: "@acme/platform".into(),
                    count: 1,
                },
                Approver::Group {
                    group: "@acme/security".into(),
                    count: 2,
                },
            ],
        );
        ApprovalMatrix { levels }
    }

    #[test]
    fn level_falls_back_to_nearest_lower() {
        let m = matrix();
        assert_eq!(m.for_level(RiskLevel::R2).unwrap().0, RiskLevel::R1);
        assert_eq!(m.for_level(RiskLevel::R5).unwrap().0, RiskLevel::R3);
        assert!(ApprovalMatrix::default().for_level(RiskLevel::R3).is_none());
    }

    #[test]
    fn lists_every_requirement_with_its_source() {
        let (co, _) = CodeOwners::parse("* @acme/platform\n/infra/prod/db/ @acme/dba\n");
        let paths = vec![
            "infra/prod/db/terragrunt.hcl".to_string(),
            "README.md".to_string(),
        ];
        let policy = vec![PolicyRequest {
            rule: "sg_open_ingress".into(),
            message: "open ingress".into(),
            groups: vec!["@acme/security".into()],
        }];
        let reqs = requirements(RiskLevel::R3, &matrix(), &co, &paths, &policy);
        assert_eq!(reqs.len(), 5);
        assert_eq!(reqs[1].count, 2);
        assert!(
            matches!(&reqs[2].source, Source::Codeowners { line: 1, paths, .. } if paths == &vec!["README.md".to_string()])
        );
        assert!(matches!(
            &reqs[3].source,
            Source::Codeowners { line: 2, .. }
        ));
        assert!(
            matches!(&reqs[4].source, Source::Policy { rule, .. } if rule == "sg_open_ingress")
        );
        let low = requirements(RiskLevel::R1, &matrix(), &co, &paths[..1], &[]);
        assert_eq!(low.len(), 1, "R1 needs only the CODEOWNERS");
    }
}
