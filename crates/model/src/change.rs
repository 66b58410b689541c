//! Changes and their correlation ID (DESIGN.md §2): `repo#pr@sha7/env/stack_or_app`, the key
//! that ties a change's PR report, plans, decisions, applies and evidence together.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
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
}
