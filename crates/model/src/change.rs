//! Changes and their correlation ID (DESIGN.md §2): `repo#pr@sha7/env/stack_or_app`, the key
//! that ties a change's PR report, plans, decisions, applies and evidence together.

use std::fmt;

use serde::{Serialize, Serializer};

/// Whether a change's unit is an IaC stack or a Kubernetes app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    Stack,
    App,
}

impl UnitKind {
    pub const ALL: [UnitKind; 2] = [UnitKind::Stack, UnitKind::App];

    /// The kind's name as reports and the store write it (`stack`, `app`).
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Stack => "stack",
            UnitKind::App => "app",
        }
    }

    /// The kind named by [`UnitKind::as_str`].
    pub fn parse(s: &str) -> Option<UnitKind> {
        match s {
            "stack" => Some(UnitKind::Stack),
            "app" => Some(UnitKind::App),
            _ => None,
        }
    }
}

impl fmt::Display for UnitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change's correlation id, kept as its parts: code that needs the repository, commit or
/// unit reads the field, never the rendered string. It is written (JSON, reports, the
/// store) in its rendered form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChangeId {
    pub repo: String,
    /// PR number; `None` for a change without a PR (break-glass, a local run).
    pub pr: Option<u64>,
    pub commit: String,
    pub env: String,
    /// Stack or app id, e.g. `prod/ap-southeast-1/rds-payments`.
    pub unit: String,
}

impl ChangeId {
    fn short_commit(&self) -> &str {
        let end = self.commit.len().min(7);
        &self.commit[..end]
    }
}

impl fmt::Display for ChangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repo)?;
        if let Some(pr) = self.pr {
            write!(f, "#{pr}")?;
        }
        write!(f, "@{}/{}", self.short_commit(), self.env)?;
        // The unit id normally starts with its environment; don't say it twice.
        let unit = self
            .unit
            .strip_prefix(&self.env)
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(&self.unit);
        write!(f, "/{unit}")
    }
}

impl Serialize for ChangeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_the_design() {
        let id = ChangeId {
            repo: "infra-live".into(),
            pr: Some(412),
            commit: "9f3a12cdeadbeef".into(),
            env: "prod".into(),
            unit: "prod/ap-southeast-1/rds-payments".into(),
        };
        assert_eq!(
            id.to_string(),
            "infra-live#412@9f3a12c/prod/ap-southeast-1/rds-payments"
        );
        let app = ChangeId {
            unit: "prod-ap-southeast-1/payments".into(),
            pr: None,
            ..id
        };
        assert_eq!(
            app.to_string(),
            "infra-live@9f3a12c/prod/prod-ap-southeast-1/payments"
        );
    }

    #[test]
    fn serialises_as_the_rendered_id_and_kinds_round_trip() {
        let id = ChangeId {
            repo: "infra-live".into(),
            pr: Some(7),
            commit: "0123456789".into(),
            env: "dev".into(),
            unit: "dev/net".into(),
        };
        assert_eq!(
            serde_json::to_value(&id).unwrap(),
            serde_json::json!("infra-live#7@0123456/dev/net")
        );
        for kind in [UnitKind::Stack, UnitKind::App] {
            assert_eq!(UnitKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
        assert_eq!(UnitKind::parse("Stack"), None);
    }
}
