//! The org configuration (`sluice.yaml`, DESIGN.md §5) as typed data. Loading it with positions
//! and errors lives in the repo adapter; this module holds the shape and the pure lookups the
//! pipeline needs (environment of an app, layer of a stack, protected environments).

use std::collections::BTreeMap;

use crate::approval::ApprovalMatrix;
use crate::glob::{self, GlobList};
use crate::layout::Layout;
use crate::risk::{self, RiskRule};

pub const CURRENT_VERSION: i64 = 1;

#[derive(Debug, Clone)]
pub struct OrgConfig {
    pub version: i64,
    pub org: String,
    /// Sorted by `order` (promotion order: dev before prod).
    pub environments: Vec<Environment>,
    pub repos: Vec<LogicalRepo>,
    pub stacks: StacksConfig,
    pub apps: AppsConfig,
    pub owners: OwnersConfig,
    pub validate: ValidateConfig,
    pub risk: RiskConfig,
    pub approvals: ApprovalMatrix,
    /// `people:`: who may approve from the command line, with their emails, groups and keys.
    pub people: crate::people::People,
    /// `apply:`: when an apply may run relative to the PR's merge.
    pub apply: ApplyConfig,
    /// Sections later stages own (risk, approvals, policy, sync, runners), kept as JSON so that
    /// a config written for a newer sluice still loads here.
    pub sections: BTreeMap<String, serde_json::Value>,
}

/// `apply:` in sluice.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyConfig {
    /// `apply.merge`: `before_merge` (the default: apply from the open PR, then merge what was
    /// applied) or `after_merge` (only once merged into the default branch).
    pub merge: crate::apply::MergeRule,
    /// `apply.review_signers`: ed25519 public keys of `sluice serve` replicas whose signed
    /// GitHub-review approvals an apply counts, beside the evidence key of the log it records
    /// into (always trusted). Empty by default.
    pub review_signers: Vec<crate::people::PublicKey>,
}

impl Default for ApplyConfig {
    fn default() -> Self {
        ApplyConfig {
            merge: crate::apply::MergeRule::BeforeMerge,
            review_signers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    pub order: i64,
    pub protected: bool,
}

/// A logical repository: a folder of the platform repo today, a remote URL in a multi-repo org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalRepo {
    pub name: String,
    pub location: RepoLocation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLocation {
    Path(String),
    Url(String),
}

#[derive(Debug, Clone)]
pub struct StacksConfig {
    pub root: String,
    pub layout: Layout,
    pub layers: Vec<Layer>,
    pub depends_on: Vec<ExplicitDependency>,
    pub watch: Vec<WatchRule>,
    /// Stacks that depend on an affected stack are affected too.
    pub propagate_dependents: bool,
}

/// The root of a section `sluice.yaml` leaves out (an IaC-only org has no `apps`, a
/// GitOps-only one no `stacks`): git paths never contain NUL, so nothing is found under it.
pub const UNDECLARED_ROOT: &str = "\0undeclared";

impl StacksConfig {
    /// No stacks: the org did not declare a `stacks` section.
    pub fn undeclared() -> Self {
        StacksConfig {
            root: UNDECLARED_ROOT.to_string(),
            layout: Layout::parse("{env}/{stack}").expect("a valid built-in layout"),
            layers: Vec::new(),
            depends_on: Vec::new(),
            watch: Vec::new(),
            propagate_dependents: true,
        }
    }

    pub fn is_declared(&self) -> bool {
        self.root != UNDECLARED_ROOT
    }
}

impl AppsConfig {
    /// No apps: the org did not declare an `apps` section.
    pub fn undeclared() -> Self {
        AppsConfig {
            root: UNDECLARED_ROOT.to_string(),
            layout: Layout::parse("{env}/{app}").expect("a valid built-in layout"),
            clusters: BTreeMap::new(),
            watch: Vec::new(),
        }
    }

    pub fn is_declared(&self) -> bool {
        self.root != UNDECLARED_ROOT
    }
}

/// A layer of the dependency rule; a stack belongs to the first layer whose globs match its
/// name (the `{stack}` part of the layout, or the whole id when the layout has no `{stack}`).
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    pub stacks: GlobList,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplicitDependency {
    pub stack: String,
    pub on: Vec<String>,
    pub line: u32,
}

/// Extra files that affect the stacks (or apps) whose id matches `units`.
#[derive(Debug, Clone)]
pub struct WatchRule {
    pub units: GlobList,
    pub paths: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AppsConfig {
    pub root: String,
    pub layout: Layout,
    /// Cluster name → environment, when the layout has `{cluster}` rather than `{env}`.
    pub clusters: BTreeMap<String, String>,
    pub watch: Vec<WatchRule>,
}

#[derive(Debug, Clone, Default)]
pub struct OwnersConfig {
    /// Explicit CODEOWNERS path; otherwise `.github/CODEOWNERS`, `CODEOWNERS`, `docs/CODEOWNERS`.
    pub codeowners: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ValidateConfig {
    pub forbidden_paths: Vec<String>,
    /// Files larger than this are reported and not parsed (still scanned for secrets).
    pub max_file_bytes: u64,
    /// A gitleaks-format TOML rule file (repository path).
    pub secret_rules: Option<String>,
    /// Keep sluice's own rules when `secret_rules` is set.
    pub default_secret_rules: bool,
    /// Globs of paths never scanned for secrets (test fixtures, vendored docs).
    pub secret_allow_paths: Vec<String>,
}

impl Default for ValidateConfig {
    fn default() -> Self {
        ValidateConfig {
            forbidden_paths: vec![
                "**/*.tfstate".into(),
                "**/*.tfstate.backup".into(),
                "**/.terraform/**".into(),
            ],
            max_file_bytes: 1024 * 1024,
            secret_rules: None,
            default_secret_rules: true,
            secret_allow_paths: Vec::new(),
        }
    }
}

/// Risk rules from `sluice.yaml`: the built-in defaults (unless `defaults: false`) then the
/// configured rules; the highest matching level wins.
#[derive(Debug, Clone)]
pub struct RiskConfig {
    pub defaults: bool,
    pub rules: Vec<RiskRule>,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            defaults: true,
            rules: Vec::new(),
        }
    }
}

impl OrgConfig {
    /// The environments whose changes count as production (the protected ones).
    pub fn production_envs(&self) -> Vec<String> {
        self.environments
            .iter()
            .filter(|e| e.protected)
            .map(|e| e.name.clone())
            .collect()
    }

    /// The risk rules in force: built-in defaults (unless disabled) followed by configured ones.
    pub fn risk_rules(&self) -> Vec<RiskRule> {
        let mut rules = if self.risk.defaults {
            risk::default_rules(&self.production_envs())
        } else {
            Vec::new()
        };
        rules.extend(self.risk.rules.iter().cloned());
        rules
    }

    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    pub fn is_protected(&self, env: &str) -> bool {
        self.environment(env).is_some_and(|e| e.protected)
    }

    /// The environment of a discovered app: its `{env}` capture, else the configured cluster
    /// mapping, else the environment whose name starts the cluster name (`prod-eu-west-1`).
    pub fn app_env(&self, captures: &BTreeMap<String, String>) -> Option<String> {
        if let Some(env) = captures.get("env") {
            return Some(env.clone());
        }
        let cluster = captures.get("cluster")?;
        if let Some(env) = self.apps.clusters.get(cluster) {
            return Some(env.clone());
        }
        self.environments
            .iter()
            .filter(|e| cluster == &e.name || cluster.starts_with(&format!("{}-", e.name)))
            .max_by_key(|e| e.name.len())
            .map(|e| e.name.clone())
    }

    /// The layer (position, name) of a stack, by its `{stack}` name.
    pub fn layer_of(&self, stack_name: &str) -> Option<(usize, &str)> {
        self.stacks
            .layers
            .iter()
            .enumerate()
            .find(|(_, l)| l.stacks.is_match(stack_name))
            .map(|(i, l)| (i, l.name.as_str()))
    }

    /// The folder of a logical repo in this monorepo.
    pub fn repo_path(&self, name: &str) -> Option<&str> {
        self.repos
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| match &r.location {
                RepoLocation::Path(p) => Some(p.as_str()),
                RepoLocation::Url(_) => None,
            })
    }
}

/// Watch globs that apply to a unit id.
pub fn watch_paths(rules: &[WatchRule], unit_id: &str) -> Vec<String> {
    rules
        .iter()
        .filter(|r| r.units.is_match(unit_id))
        .flat_map(|r| r.paths.iter().cloned())
        .collect()
}

/// A layer whose globs are just its own name.
pub fn layer_named(name: &str) -> Result<Layer, glob::GlobError> {
    Ok(Layer {
        name: name.to_string(),
        stacks: GlobList::new(&[name])?,
    })
}
