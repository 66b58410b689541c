//! Loading `sluice.yaml` (DESIGN.md §5) into [`OrgConfig`], with every problem reported at its
//! file, line and column, with a hint. All problems are collected, not just the first, so one
//! run of `sluice validate` shows a user everything to fix.

use std::collections::BTreeMap;

use sluice_model::apply::MergeRule;
use sluice_model::approval::{ApprovalMatrix, Approver};
use sluice_model::config::{
    self, ApplyConfig, AppsConfig, Environment, ExplicitDependency, Layer, LogicalRepo, OrgConfig,
    OwnersConfig, RepoLocation, RiskConfig, StacksConfig, ValidateConfig, WatchRule,
};
use sluice_model::glob::GlobList;
use sluice_model::layout::Layout;
use sluice_model::people::{People, Person, PersonId, PublicKey};
use sluice_model::risk::{ChangeAction, PolicyOutcome, RiskLevel, RiskRule, RiskWhen};

use crate::yaml::{self, Node, Value};

/// The file name sluice looks for at the repository root.
pub const FILE_NAME: &str = "sluice.yaml";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}{}", hint.as_ref().map(|h| format!(" (hint: {h})")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
    pub hint: Option<String>,
}

/// Sections owned by later stages; accepted and kept as JSON.
const LATER_SECTIONS: &[&str] = &[
    // `sluice plan`'s engine settings (docs/config.md), read by the iac adapter.
    "plan",
    "risk",
    "approvals",
    "policy",
    "exceptions",
    "sync",
    "runners",
    "evidence",
    "server",
    // Runner trust policy (docs/identity.md), read by the server; validated here.
    "trust",
    // Who may open a break-glass grant and for how long (docs/break-glass.md); validated here.
    "break_glass",
];
const TOP_KEYS: &[&str] = &[
    "version",
    "org",
    "environments",
    "repos",
    "stacks",
    "apps",
    "owners",
    "validate",
    "people",
    "apply",
];

struct Ctx<'a> {
    file: &'a str,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn error(&mut self, node: &Node, message: impl Into<String>, hint: Option<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line: node.line,
            col: node.col,
            message: message.into(),
            hint,
        });
    }

    fn expect_map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &node.value {
            Value::Map(m) => Some(m),
            _ => {
                self.error(
                    node,
                    format!("`{what}` must be a mapping, found {}", node.type_name()),
                    None,
                );
                None
            }
        }
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) if !s.is_empty() => Some(s.clone()),
            Value::Str(_) => {
                self.error(node, format!("`{what}` must not be empty"), None);
                None
            }
            _ => {
                self.error(
                    node,
                    format!("`{what}` must be a string, found {}", node.type_name()),
                    None,
                );
                None
            }
        }
    }

    fn strings(&mut self, node: &Node, what: &str) -> Vec<String> {
        match &node.value {
            Value::Seq(items) => items.iter().filter_map(|n| self.string(n, what)).collect(),
            Value::Str(_) => self.string(node, what).into_iter().collect(),
            _ => {
                self.error(
                    node,
                    format!(
                        "`{what}` must be a list of strings, found {}",
                        node.type_name()
                    ),
                    None,
                );
                Vec::new()
            }
        }
    }

    fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.error(
                    node,
                    format!("`{what}` must be true or false, found {}", node.type_name()),
                    None,
                );
                None
            }
        }
    }

    fn int(&mut self, node: &Node, what: &str) -> Option<i64> {
        match node.value {
            Value::Int(i) => Some(i),
            _ => {
                self.error(
                    node,
                    format!("`{what}` must be an integer, found {}", node.type_name()),
                    None,
                );
                None
            }
        }
    }

    /// A repository-relative path that must stay inside the repository.
    fn repo_path(&mut self, node: &Node, what: &str) -> Option<String> {
        let raw = self.string(node, what)?;
        match sluice_model::path::normalize(&raw) {
            Some(p) if !raw.starts_with('/') => Some(p),
            _ => {
                self.error(
                    node,
                    format!("`{what}` path `{raw}` escapes the repository"),
                    Some("paths are relative to the repository root and may not use `..` to leave it".into()),
                );
                None
            }
        }
    }

    fn globs(&mut self, node: &Node, what: &str) -> Option<GlobList> {
        let patterns = self.strings(node, what);
        match GlobList::new(&patterns) {
            Ok(g) => Some(g),
            Err(e) => {
                self.error(node, format!("`{what}`: {e}"), None);
                None
            }
        }
    }

    /// Report keys that are not in `allowed`, with the closest allowed key as a hint.
    fn check_keys(&mut self, map: &[(Node, Node)], allowed: &[&str], section: &str) {
        for (k, _) in map {
            let key = k.scalar_text().unwrap_or_default();
            if !allowed.contains(&key.as_str()) {
                let hint = closest(&key, allowed).map(|c| format!("did you mean `{c}`?"));
                let hint = hint.or_else(|| Some(format!("allowed keys: {}", allowed.join(", "))));
                self.error(k, format!("unknown key `{key}` in {section}"), hint);
            }
        }
    }
}

fn get<'n>(map: &'n [(Node, Node)], key: &str) -> Option<&'n Node> {
    map.iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// Parse and validate `sluice.yaml`. `file` is the name used in diagnostics.
pub fn load(file: &str, text: &str) -> Result<OrgConfig, Vec<ConfigError>> {
    let root = yaml::parse_one(text).map_err(|e| {
        vec![ConfigError {
            file: file.to_string(),
            line: e.line,
            col: e.col,
            message: e.message,
            hint: Some("sluice.yaml must be valid YAML".into()),
        }]
    })?;
    let mut cx = Ctx {
        file,
        errors: Vec::new(),
    };
    let config = decode(&mut cx, &root);
    match config {
        Some(c) if cx.errors.is_empty() => Ok(c),
        _ => {
            if cx.errors.is_empty() {
                cx.error(&root, "invalid configuration", None);
            }
            Err(cx.errors)
        }
    }
}

fn decode(cx: &mut Ctx<'_>, root: &Node) -> Option<OrgConfig> {
    let Value::Map(map) = &root.value else {
        cx.error(
            root,
            format!("sluice.yaml must be a mapping, found {}", root.type_name()),
            Some("start with `version: 1`".into()),
        );
        return None;
    };
    let allowed: Vec<&str> = TOP_KEYS.iter().chain(LATER_SECTIONS).copied().collect();
    cx.check_keys(map, &allowed, "sluice.yaml");

    let version = match get(map, "version") {
        Some(v) => cx.int(v, "version"),
        None => {
            cx.error(
                root,
                "missing `version`",
                Some("add `version: 1` at the top".into()),
            );
            None
        }
    };
    if let (Some(v), Some(node)) = (version, get(map, "version"))
        && v != config::CURRENT_VERSION
    {
        cx.error(
            node,
            format!("unsupported config version {v}"),
            Some(format!(
                "this sluice reads version {}",
                config::CURRENT_VERSION
            )),
        );
    }
    let org = match get(map, "org") {
        Some(n) => cx.string(n, "org"),
        None => {
            cx.error(
                root,
                "missing `org`",
                Some("name the organisation, e.g. `org: acme`".into()),
            );
            None
        }
    };
    let environments = get(map, "environments")
        .map(|n| environments(cx, n))
        .unwrap_or_default();
    if environments.is_empty() {
        let at = get(map, "environments").unwrap_or(root);
        cx.error(
            at,
            "no environments defined",
            Some(
                "e.g. `environments: { dev: { order: 1 }, prod: { order: 2, protected: true } }`"
                    .into(),
            ),
        );
    }
    let repos = get(map, "repos").map(|n| repos(cx, n)).unwrap_or_default();
    // Each section is optional (an IaC-only org has no apps, a GitOps-only one no stacks), but
    // an org with neither has nothing for sluice to govern.
    if get(map, "stacks").is_none() && get(map, "apps").is_none() {
        cx.error(
            root,
            "neither `stacks` nor `apps` is declared",
            Some("declare one or both, e.g. `stacks: { root: infra-live/accounts, layout: \"{env}/{region}/{stack}\" }` or `apps: { root: env-gitops/clusters, layout: \"{cluster}/apps/{app}\" }`".into()),
        );
    }
    let stacks = match get(map, "stacks") {
        Some(n) => stacks(cx, n),
        None => Some(StacksConfig::undeclared()),
    };
    let apps = match get(map, "apps") {
        Some(n) => apps(cx, n),
        None => Some(AppsConfig::undeclared()),
    };
    let owners = get(map, "owners")
        .map(|n| owners(cx, n))
        .unwrap_or_default();
    let validate = get(map, "validate")
        .map(|n| validate(cx, n))
        .unwrap_or_default();
    let risk = get(map, "risk").map(|n| risk(cx, n)).unwrap_or_default();
    let approvals = get(map, "approvals")
        .map(|n| approvals(cx, n))
        .unwrap_or_default();
    let people = get(map, "people")
        .map(|n| people(cx, n))
        .unwrap_or_default();
    let apply = get(map, "apply").map(|n| apply(cx, n)).unwrap_or_default();
    let sections = map
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str()?;
            LATER_SECTIONS
                .contains(&key)
                .then(|| (key.to_string(), v.to_json()))
        })
        .collect();

    // Read by the PR pipeline; checked here, where its position is known.
    if let Some(node) = root.get("policy").and_then(|p| p.get("preexisting"))
        && let Err(e) = sluice_model::baseline::PreexistingPolicy::from_json(&node.to_json())
    {
        cx.error(
            node,
            e.to_string(),
            Some(
                "e.g. `preexisting: warn`, or `preexisting: { default: warn, envs: { prod: block }, rules: { \"secret/*\": block } }`"
                    .into(),
            ),
        );
    }
    if let Some(node) = root.get("trust")
        && let Err(e) = sluice_model::trust::TrustPolicy::from_json(&node.to_json())
    {
        let at = node_at_path(root, &e.path);
        cx.error(
            at,
            format!("{}: {}", e.path, e.message),
            Some("see the trust policy reference in docs/identity.md".into()),
        );
    }
    if let Some(node) = root.get("break_glass")
        && let Err(e) = sluice_model::breakglass::BreakGlassConfig::from_json(&node.to_json())
    {
        let at = node_at_path(root, &e.path);
        cx.error(
            at,
            e.to_string(),
            Some("e.g. `break_glass: { group: \"@acme/sre-oncall\", max_ttl: 4h }`; see docs/break-glass.md".into()),
        );
    }
    let config = OrgConfig {
        version: version?,
        org: org?,
        environments,
        repos,
        stacks: stacks?,
        apps: apps?,
        owners,
        validate,
        risk,
        approvals,
        people,
        apply,
        sections,
    };
    cross_check(cx, root, &config);
    Some(config)
}

fn environments(cx: &mut Ctx<'_>, node: &Node) -> Vec<Environment> {
    let Some(map) = cx.expect_map(node, "environments") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let Some(name) = cx.string(k, "environment name") else {
            continue;
        };
        let mut env = Environment {
            name,
            order: out.len() as i64 + 1,
            protected: false,
        };
        if let Value::Map(fields) = &v.value {
            cx.check_keys(
                fields,
                &["order", "protected"],
                &format!("environment `{}`", env.name),
            );
            if let Some(o) = get(fields, "order").and_then(|n| cx.int(n, "order")) {
                env.order = o;
            }
            if let Some(p) = get(fields, "protected").and_then(|n| cx.bool(n, "protected")) {
                env.protected = p;
            }
        } else if v.value != Value::Null {
            cx.error(
                v,
                format!(
                    "environment `{}` must be a mapping such as `{{ order: 1 }}`",
                    env.name
                ),
                None,
            );
        }
        out.push(env);
    }
    out.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.name.cmp(&b.name)));
    out
}

fn repos(cx: &mut Ctx<'_>, node: &Node) -> Vec<LogicalRepo> {
    let Some(map) = cx.expect_map(node, "repos") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let Some(name) = cx.string(k, "repo name") else {
            continue;
        };
        let Some(fields) = cx.expect_map(v, &format!("repos.{name}")) else {
            continue;
        };
        cx.check_keys(fields, &["path", "url"], &format!("repo `{name}`"));
        let location = match (get(fields, "path"), get(fields, "url")) {
            (Some(p), None) => cx.repo_path(p, "path").map(RepoLocation::Path),
            (None, Some(u)) => cx.string(u, "url").map(RepoLocation::Url),
            _ => {
                cx.error(v, format!("repo `{name}` needs exactly one of `path` (a folder of this repository) or `url`"), None);
                None
            }
        };
        if let Some(location) = location {
            out.push(LogicalRepo { name, location });
        }
    }
    out
}

fn layout(cx: &mut Ctx<'_>, map: &[(Node, Node)], parent: &Node, section: &str) -> Option<Layout> {
    let Some(node) = get(map, "layout") else {
        cx.error(
            parent,
            format!("missing `{section}.layout`"),
            Some("e.g. `layout: \"{env}/{region}/{stack}\"`".into()),
        );
        return None;
    };
    let text = cx.string(node, "layout")?;
    match Layout::parse(&text) {
        Ok(l) => Some(l),
        Err(e) => {
            cx.error(node, format!("invalid layout `{text}`: {e}"), None);
            None
        }
    }
}

fn root_path(
    cx: &mut Ctx<'_>,
    map: &[(Node, Node)],
    parent: &Node,
    section: &str,
) -> Option<String> {
    match get(map, "root") {
        Some(n) => cx.repo_path(n, "root"),
        None => {
            cx.error(parent, format!("missing `{section}.root`"), None);
            None
        }
    }
}

fn watch_rules(cx: &mut Ctx<'_>, node: &Node, unit_key: &str) -> Vec<WatchRule> {
    let Some(items) = node.as_seq() else {
        cx.error(
            node,
            "`watch` must be a list of `{ <unit>: glob, paths: [globs] }`",
            None,
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Some(fields) = cx.expect_map(item, "watch entry") else {
            continue;
        };
        cx.check_keys(fields, &[unit_key, "paths"], "watch entry");
        let units = match get(fields, unit_key) {
            Some(n) => cx.globs(n, unit_key),
            None => {
                cx.error(
                    item,
                    format!("watch entry needs `{unit_key}` (a glob over ids)"),
                    None,
                );
                None
            }
        };
        let paths = match get(fields, "paths") {
            Some(n) => {
                let p = cx.strings(n, "paths");
                if let Err(e) = GlobList::new(&p) {
                    cx.error(n, e.to_string(), None);
                }
                p
            }
            None => {
                cx.error(item, "watch entry needs `paths`", None);
                Vec::new()
            }
        };
        if let Some(units) = units {
            out.push(WatchRule { units, paths });
        }
    }
    out
}

fn stacks(cx: &mut Ctx<'_>, node: &Node) -> Option<StacksConfig> {
    let map = cx.expect_map(node, "stacks")?;
    cx.check_keys(
        map,
        &[
            "root",
            "layout",
            "layers",
            "depends_on",
            "watch",
            "dependents",
        ],
        "stacks",
    );
    let root = root_path(cx, map, node, "stacks");
    let layout = layout(cx, map, node, "stacks");
    let mut layers: Vec<Layer> = Vec::new();
    if let Some(n) = get(map, "layers") {
        match n.as_seq() {
            Some(items) => {
                for item in items {
                    let layer = match &item.value {
                        Value::Str(name) => config::layer_named(name).ok(),
                        Value::Map(fields) => {
                            cx.check_keys(fields, &["name", "stacks"], "layer");
                            let name = get(fields, "name").and_then(|n| cx.string(n, "name"));
                            let globs = match get(fields, "stacks") {
                                Some(s) => cx.globs(s, "stacks"),
                                None => name.as_deref().and_then(|n| GlobList::new(&[n]).ok()),
                            };
                            name.zip(globs).map(|(name, stacks)| Layer { name, stacks })
                        }
                        _ => {
                            cx.error(
                                item,
                                "a layer is a name or `{ name: ..., stacks: [globs] }`",
                                None,
                            );
                            None
                        }
                    };
                    if let Some(l) = layer {
                        if layers.iter().any(|x| x.name == l.name) {
                            cx.error(item, format!("layer `{}` is listed twice", l.name), None);
                        }
                        layers.push(l);
                    }
                }
            }
            None => cx.error(n, "`layers` must be a list, upstream first", None),
        }
    }
    let mut depends_on = Vec::new();
    if let Some(n) = get(map, "depends_on") {
        match n.as_seq() {
            Some(items) => {
                for item in items {
                    let Some(fields) = cx.expect_map(item, "depends_on entry") else {
                        continue;
                    };
                    cx.check_keys(fields, &["stack", "on"], "depends_on entry");
                    let stack = get(fields, "stack").and_then(|n| cx.string(n, "stack"));
                    let on = get(fields, "on")
                        .map(|n| cx.strings(n, "on"))
                        .unwrap_or_default();
                    match stack {
                        Some(stack) if !on.is_empty() => depends_on.push(ExplicitDependency {
                            stack,
                            on,
                            line: item.line,
                        }),
                        _ => cx.error(
                            item,
                            "a depends_on entry needs `stack` and a non-empty `on`",
                            None,
                        ),
                    }
                }
            }
            None => cx.error(n, "`depends_on` must be a list", None),
        }
    }
    let watch = get(map, "watch")
        .map(|n| watch_rules(cx, n, "stacks"))
        .unwrap_or_default();
    let propagate_dependents = get(map, "dependents")
        .and_then(|n| cx.bool(n, "dependents"))
        .unwrap_or(true);
    Some(StacksConfig {
        root: root?,
        layout: layout?,
        layers,
        depends_on,
        watch,
        propagate_dependents,
    })
}

fn apps(cx: &mut Ctx<'_>, node: &Node) -> Option<AppsConfig> {
    let map = cx.expect_map(node, "apps")?;
    cx.check_keys(map, &["root", "layout", "clusters", "watch"], "apps");
    let root = root_path(cx, map, node, "apps");
    let layout = layout(cx, map, node, "apps");
    let mut clusters = BTreeMap::new();
    if let Some(n) = get(map, "clusters")
        && let Some(entries) = cx.expect_map(n, "clusters")
    {
        for (k, v) in entries {
            let Some(name) = cx.string(k, "cluster name") else {
                continue;
            };
            let env = match &v.value {
                Value::Map(fields) => {
                    cx.check_keys(fields, &["env"], &format!("cluster `{name}`"));
                    get(fields, "env").and_then(|n| cx.string(n, "env"))
                }
                _ => cx.string(v, "env"),
            };
            if let Some(env) = env {
                clusters.insert(name, env);
            }
        }
    }
    let watch = get(map, "watch")
        .map(|n| watch_rules(cx, n, "apps"))
        .unwrap_or_default();
    Some(AppsConfig {
        root: root?,
        layout: layout?,
        clusters,
        watch,
    })
}

fn owners(cx: &mut Ctx<'_>, node: &Node) -> OwnersConfig {
    let mut out = OwnersConfig::default();
    if let Some(map) = cx.expect_map(node, "owners") {
        cx.check_keys(map, &["codeowners"], "owners");
        out.codeowners = get(map, "codeowners").and_then(|n| cx.repo_path(n, "codeowners"));
    }
    out
}

fn validate(cx: &mut Ctx<'_>, node: &Node) -> ValidateConfig {
    let mut out = ValidateConfig::default();
    let Some(map) = cx.expect_map(node, "validate") else {
        return out;
    };
    cx.check_keys(
        map,
        &["forbidden_paths", "max_file_bytes", "secrets"],
        "validate",
    );
    if let Some(n) = get(map, "forbidden_paths") {
        out.forbidden_paths = cx.strings(n, "forbidden_paths");
        if let Err(e) = GlobList::new(&out.forbidden_paths) {
            cx.error(n, e.to_string(), None);
        }
    }
    if let Some(n) = get(map, "max_file_bytes")
        && let Some(v) = cx.int(n, "max_file_bytes")
    {
        if v <= 0 {
            cx.error(n, "`max_file_bytes` must be positive", None);
        } else {
            out.max_file_bytes = v as u64;
        }
    }
    if let Some(n) = get(map, "secrets")
        && let Some(fields) = cx.expect_map(n, "secrets")
    {
        cx.check_keys(
            fields,
            &["rules", "default_rules", "allow_paths"],
            "validate.secrets",
        );
        out.secret_rules = get(fields, "rules").and_then(|n| cx.repo_path(n, "rules"));
        if let Some(b) = get(fields, "default_rules").and_then(|n| cx.bool(n, "default_rules")) {
            out.default_secret_rules = b;
        }
        if let Some(a) = get(fields, "allow_paths") {
            out.secret_allow_paths = cx.strings(a, "allow_paths");
            if let Err(e) = GlobList::new(&out.secret_allow_paths) {
                cx.error(a, e.to_string(), None);
            }
        }
    }
    out
}

fn risk(cx: &mut Ctx<'_>, node: &Node) -> RiskConfig {
    let mut out = RiskConfig::default();
    let Some(map) = cx.expect_map(node, "risk") else {
        return out;
    };
    cx.check_keys(map, &["defaults", "rules"], "risk");
    if let Some(b) = get(map, "defaults").and_then(|n| cx.bool(n, "defaults")) {
        out.defaults = b;
    }
    let Some(rules) = get(map, "rules") else {
        return out;
    };
    let Some(items) = rules.as_seq() else {
        cx.error(
            rules,
            "`risk.rules` must be a list of `{ when: {...}, risk: R1..R5, reason: ... }`",
            None,
        );
        return out;
    };
    for item in items {
        let Some(fields) = cx.expect_map(item, "risk rule") else {
            continue;
        };
        cx.check_keys(fields, &["when", "risk", "reason"], "risk rule");
        let level = match get(fields, "risk") {
            Some(n) => cx.string(n, "risk").and_then(|t| {
                let l = RiskLevel::parse(&t);
                if l.is_none() {
                    cx.error(
                        n,
                        format!("unknown risk level `{t}`"),
                        Some("use R1, R2, R3, R4 or R5".into()),
                    );
                }
                l
            }),
            None => {
                cx.error(item, "risk rule needs `risk`", None);
                None
            }
        };
        let reason = match get(fields, "reason") {
            Some(n) => cx.string(n, "reason"),
            None => {
                cx.error(
                    item,
                    "risk rule needs a `reason` (it is shown to reviewers)",
                    None,
                );
                None
            }
        };
        let when = get(fields, "when")
            .map(|n| risk_when(cx, n))
            .unwrap_or_default();
        if let (Some(risk), Some(reason)) = (level, reason) {
            out.rules.push(RiskRule { when, risk, reason });
        }
    }
    out
}

fn risk_when(cx: &mut Ctx<'_>, node: &Node) -> RiskWhen {
    let mut when = RiskWhen::default();
    let Some(map) = cx.expect_map(node, "when") else {
        return when;
    };
    cx.check_keys(
        map,
        &[
            "env",
            "stacks",
            "resource_types",
            "actions",
            "policy",
            "min_changes",
        ],
        "risk rule `when`",
    );
    if let Some(n) = get(map, "env") {
        when.envs = cx.strings(n, "env");
    }
    if let Some(n) = get(map, "stacks") {
        when.stacks = cx.globs(n, "stacks");
    }
    if let Some(n) = get(map, "resource_types") {
        when.resource_types = cx.globs(n, "resource_types");
    }
    if let Some(n) = get(map, "actions") {
        for item in n.as_seq().unwrap_or(std::slice::from_ref(n)) {
            let Some(text) = cx.string(item, "actions") else {
                continue;
            };
            match ChangeAction::parse(&text) {
                Some(a) => when.actions.push(a),
                None => cx.error(
                    item,
                    format!("unknown action `{text}`"),
                    Some(
                        "use create, read, update, delete, replace, forget, import or move".into(),
                    ),
                ),
            }
        }
    }
    if let Some(n) = get(map, "policy") {
        for item in n.as_seq().unwrap_or(std::slice::from_ref(n)) {
            let Some(text) = cx.string(item, "policy") else {
                continue;
            };
            match PolicyOutcome::parse(&text) {
                Some(p) => when.policy.push(p),
                None => cx.error(
                    item,
                    format!("unknown policy outcome `{text}`"),
                    Some("use allow, warn, require_approval or deny".into()),
                ),
            }
        }
    }
    if let Some(n) = get(map, "min_changes")
        && let Some(v) = cx.int(n, "min_changes")
    {
        if v < 1 {
            cx.error(n, "`min_changes` must be at least 1", None);
        } else {
            when.min_changes = Some(v as usize);
        }
    }
    when
}

fn approvals(cx: &mut Ctx<'_>, node: &Node) -> ApprovalMatrix {
    let mut out = ApprovalMatrix::default();
    let Some(map) = cx.expect_map(node, "approvals") else {
        return out;
    };
    for (k, v) in map {
        let Some(key) = cx.string(k, "risk level") else {
            continue;
        };
        let Some(level) = RiskLevel::parse(&key) else {
            cx.error(
                k,
                format!("unknown risk level `{key}` in approvals"),
                Some("keys are R1, R2, R3, R4 or R5".into()),
            );
            continue;
        };
        let Some(items) = v.as_seq() else {
            cx.error(v, format!("`approvals.{key}` must be a list of `codeowners`, \"@org/team\" or `{{ group: \"@org/team\", count: 2 }}`"), None);
            continue;
        };
        let mut approvers = Vec::new();
        for item in items {
            match &item.value {
                Value::Str(s) if s == "codeowners" => approvers.push(Approver::Codeowners),
                Value::Str(s) if s.starts_with('@') || s.contains('@') => approvers.push(Approver::Group { group: s.clone(), count: 1 }),
                Value::Map(fields) => {
                    cx.check_keys(fields, &["group", "count"], "approver");
                    let group = get(fields, "group").and_then(|n| cx.string(n, "group"));
                    let count = match get(fields, "count") {
                        Some(n) => cx.int(n, "count").filter(|c| {
                            let ok = *c >= 1;
                            if !ok {
                                cx.error(n, "`count` must be at least 1", None);
                            }
                            ok
                        }),
                        None => Some(1),
                    };
                    match (group, count) {
                        (Some(group), Some(count)) => approvers.push(Approver::Group { group, count: count as u32 }),
                        (None, _) => cx.error(item, "approver needs `group`", None),
                        _ => {}
                    }
                }
                _ => cx.error(item, format!("approver `{item}` is not `codeowners`, a @team or @user, or `{{ group, count }}`"), None),
            }
        }
        out.levels.insert(level, approvers);
    }
    out
}

/// `people:` (docs/approvals.md): name → `{ emails, groups, keys }`. Every key must be an
/// ed25519 public key (OpenSSH or PEM); an email may name one person only, since it decides who
/// authored a change and so who may not approve it.
fn people(cx: &mut Ctx<'_>, node: &Node) -> People {
    let Some(map) = cx.expect_map(node, "people") else {
        return People::default();
    };
    let mut out = Vec::new();
    let mut seen: BTreeMap<PersonId, &Node> = BTreeMap::new();
    let mut email_at: BTreeMap<String, (PersonId, &Node)> = BTreeMap::new();
    for (k, v) in map {
        let Some(name) = cx.string(k, "person name") else {
            continue;
        };
        let id = PersonId::new(&name);
        if let Some(first) = seen.get(&id) {
            cx.error(
                k,
                format!("person `{name}` is listed twice (names compare without case)"),
                Some(format!("the first is at line {}", first.line)),
            );
            continue;
        }
        seen.insert(id.clone(), k);
        let mut person = Person::default();
        let what = format!("people.{name}");
        match &v.value {
            Value::Null => {}
            Value::Map(fields) => {
                cx.check_keys(fields, &["emails", "groups", "keys"], &format!("`{what}`"));
                if let Some(n) = get(fields, "emails") {
                    for item in n
                        .as_seq()
                        .map(|s| s.to_vec())
                        .unwrap_or_else(|| vec![n.clone()])
                    {
                        let Some(email) = cx.string(&item, &format!("{what}.emails")) else {
                            continue;
                        };
                        if !email.contains('@') {
                            cx.error(
                                &item,
                                format!("`{email}` in `{what}.emails` is not an email address"),
                                None,
                            );
                            continue;
                        }
                        let lower = email.to_ascii_lowercase();
                        if let Some((other, at)) = email_at.get(&lower) {
                            if *other != id {
                                cx.error(
                                    &item,
                                    format!("email `{email}` is listed for `{other}` (line {}) and `{name}`", at.line),
                                    Some("an email must name one person: it decides who authored a change".into()),
                                );
                            }
                        } else {
                            email_at.insert(lower, (id.clone(), v));
                        }
                        person.emails.push(email);
                    }
                }
                if let Some(n) = get(fields, "groups") {
                    for group in cx.strings(n, &format!("{what}.groups")) {
                        if !group.starts_with('@') {
                            cx.error(n, format!("group `{group}` in `{what}.groups` must start with `@` (`@org/team`)"), None);
                            continue;
                        }
                        person.groups.push(group);
                    }
                }
                if let Some(n) = get(fields, "keys") {
                    let items = n
                        .as_seq()
                        .map(|s| s.to_vec())
                        .unwrap_or_else(|| vec![n.clone()]);
                    for item in items {
                        let Some(key) = cx.string(&item, &format!("{what}.keys")) else {
                            continue;
                        };
                        match PublicKey::parse(&key) {
                            Ok(_) => person.keys.push(key),
                            Err(e) => cx.error(&item, format!("`{what}.keys`: {e}"), Some("paste the line of `ssh-keygen -y -f KEY` (or the contents of KEY.pub)".into())),
                        }
                    }
                }
            }
            _ => {
                cx.error(
                    v,
                    format!(
                        "`{what}` must be a mapping with `emails`, `groups` and `keys`, found {}",
                        v.type_name()
                    ),
                    None,
                );
                continue;
            }
        }
        out.push((id, person));
    }
    People::new(out)
}

/// `apply:` — `{ merge: before_merge | after_merge, review_signers: [PUBLIC KEY…] }`.
fn apply(cx: &mut Ctx<'_>, node: &Node) -> ApplyConfig {
    let mut out = ApplyConfig::default();
    let Some(map) = cx.expect_map(node, "apply") else {
        return out;
    };
    cx.check_keys(map, &["merge", "review_signers"], "`apply`");
    if let Some(n) = get(map, "review_signers") {
        let items = n
            .as_seq()
            .map(|s| s.to_vec())
            .unwrap_or_else(|| vec![n.clone()]);
        for item in items {
            let Some(key) = cx.string(&item, "apply.review_signers") else {
                continue;
            };
            match PublicKey::parse(&key) {
                Ok(k) => out.review_signers.push(k),
                Err(e) => cx.error(
                    &item,
                    format!("`apply.review_signers`: {e}"),
                    Some("the evidence public key of a `sluice serve` replica (`sluice evidence key`), as an `ssh-ed25519 …` line or a PEM PUBLIC KEY".into()),
                ),
            }
        }
    }
    if let Some(n) = get(map, "merge") {
        match n.as_str() {
            Some("before_merge") => out.merge = MergeRule::BeforeMerge,
            Some("after_merge") => out.merge = MergeRule::AfterMerge,
            _ => cx.error(
                n,
                format!("`apply.merge` must be `before_merge` or `after_merge`, found `{n}`"),
                Some("before_merge applies from the open PR; after_merge once it is merged into the default branch".into()),
            ),
        }
    }
    out
}

/// Checks across sections: the layouts name their environment, explicit dependencies
/// name plausible stacks, clusters map to known environments.
fn cross_check(cx: &mut Ctx<'_>, root: &Node, config: &OrgConfig) {
    let stacks_node = root.get("stacks").unwrap_or(root);
    let has = |l: &Layout, name: &str| l.placeholders().any(|p| p == name);
    if config.stacks.is_declared() && !has(&config.stacks.layout, "env") {
        cx.error(
            stacks_node.get("layout").unwrap_or(stacks_node),
            "the stacks layout needs an `{env}` placeholder",
            Some("stacks belong to an environment, e.g. \"{env}/{region}/{stack}\"".into()),
        );
    }
    let apps_node = root.get("apps").unwrap_or(root);
    if config.apps.is_declared()
        && !has(&config.apps.layout, "env")
        && !has(&config.apps.layout, "cluster")
    {
        cx.error(
            apps_node.get("layout").unwrap_or(apps_node),
            "the apps layout needs an `{env}` or `{cluster}` placeholder",
            None,
        );
    }
    for (cluster, env) in &config.apps.clusters {
        if config.environment(env).is_none() {
            let at = apps_node
                .get("clusters")
                .and_then(|c| c.get(cluster))
                .unwrap_or(apps_node);
            cx.error(
                at,
                format!("cluster `{cluster}` maps to unknown environment `{env}`"),
                Some(known_envs(config)),
            );
        }
    }
    for dep in &config.stacks.depends_on {
        let depth = config.stacks.layout.depth();
        for id in std::iter::once(&dep.stack).chain(&dep.on) {
            if id.split('/').count() != config.stacks.layout.placeholders().count() {
                let at = Node {
                    value: Value::Null,
                    line: dep.line,
                    col: 1,
                };
                cx.error(
                    &at,
                    format!("`{id}` is not a stack id of the layout ({depth} levels)"),
                    Some("stack ids look like `prod/ap-southeast-1/network`".into()),
                );
            }
        }
    }
}

fn known_envs(config: &OrgConfig) -> String {
    let names: Vec<&str> = config
        .environments
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    format!("known environments: {}", names.join(", "))
}

/// The allowed key closest to `key` by edit distance, if close enough to be a typo.
fn closest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (levenshtein(key, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min()
        .map(|(_, a)| a)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The node a path such as `trust.rules[1].when.sub` names, or the deepest one that exists on
/// the way (a missing key is reported at the mapping that lacks it).
fn node_at_path<'a>(root: &'a Node, path: &str) -> &'a Node {
    let mut at = root;
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            match at.get(key) {
                Some(n) => at = n,
                None => return at,
            }
        }
        for index in indexes
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .filter_map(|i| i.parse::<usize>().ok())
        {
            match at.as_seq().and_then(|s| s.get(index)) {
                Some(n) => at = n,
                None => return at,
            }
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SAMPLE: &str = r#"version: 1
org: acme
environments:
  dev:   { order: 1 }
  stage: { order: 2 }
  prod:  { order: 3, protected: true }
repos:
  infra-live:    { path: infra-live }
  infra-modules: { path: infra-modules }
stacks:
  root: infra-live/accounts
  layout: "{env}/{region}/{stack}"
  layers: [network, identity, { name: cluster, stacks: ["eks-*"] }, { name: data, stacks: ["rds-*"] }, app]
  watch:
    - { stacks: "prod/*/*", paths: ["infra-live/accounts/prod/account.hcl"] }
apps:
  root: env-gitops/clusters
  layout: "{cluster}/apps/{app}"
risk:
  rules: []
"#;

    #[test]
    fn loads_the_design_sketch() {
        let c = load("sluice.yaml", SAMPLE).unwrap();
        assert_eq!(c.org, "acme");
        assert_eq!(
            c.environments
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["dev", "stage", "prod"]
        );
        assert!(c.is_protected("prod"));
        assert_eq!(c.layer_of("eks-cluster"), Some((2, "cluster")));
        assert_eq!(c.layer_of("rds-payments"), Some((3, "data")));
        assert_eq!(c.layer_of("network"), Some((0, "network")));
        assert_eq!(c.risk.rules.len(), 0);
        assert!(c.risk.defaults);
        let caps = c
            .apps
            .layout
            .capture("prod-ap-southeast-1/apps/payments")
            .unwrap();
        assert_eq!(c.app_env(&caps.values).as_deref(), Some("prod"));
    }

    #[test]
    fn unknown_key_has_position_and_hint() {
        let text = SAMPLE.replace("  layout: \"{env}", "  layuot: \"{env}");
        let errs = load("sluice.yaml", &text).unwrap_err();
        let e = errs
            .iter()
            .find(|e| e.message.contains("layuot"))
            .expect("unknown key reported");
        assert_eq!((e.line, e.col), (12, 3));
        assert_eq!(e.hint.as_deref(), Some("did you mean `layout`?"));
    }

    #[test]
    fn escaping_paths_are_rejected() {
        let text = SAMPLE.replace("root: infra-live/accounts", "root: ../../etc");
        let errs = load("sluice.yaml", &text).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.message.contains("escapes the repository") && e.line == 11),
            "{errs:?}"
        );
    }

    #[test]
    fn wrong_types_and_versions() {
        let text = SAMPLE
            .replace("version: 1", "version: 2")
            .replace("protected: true", "protected: yes");
        let errs = load("sluice.yaml", &text).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.message.contains("unsupported config version 2"))
        );
        assert!(
            errs.iter()
                .any(|e| e.message.contains("`protected` must be true or false") && e.line == 6)
        );
    }

    #[test]
    fn syntax_error_is_one_error() {
        let errs = load("sluice.yaml", "version: 1\norg: [acme\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().starts_with("sluice.yaml:"));
    }

    #[test]
    fn risk_rules_and_approval_matrix() {
        let text = format!(
            "{SAMPLE}  defaults: false\n  rules:\n    - {{ when: {{ env: prod, resource_types: [\"aws_db_*\"], actions: [replace] }}, risk: R4, reason: db replace }}\napprovals:\n  R1: [codeowners]\n  R3: [\"@acme/platform\", {{ group: \"@acme/security\", count: 2 }}]\n"
        )
        .replace("risk:\n  rules: []\n", "risk:\n");
        let c = load("sluice.yaml", &text).unwrap();
        assert!(!c.risk.defaults);
        assert_eq!(c.risk.rules.len(), 1);
        assert_eq!(c.risk.rules[0].risk, RiskLevel::R4);
        assert_eq!(c.approvals.levels[&RiskLevel::R3].len(), 2);
        assert_eq!(
            c.approvals.levels[&RiskLevel::R3][1],
            Approver::Group {
                group: "@acme/security".into(),
                count: 2
            }
        );

        let bad = text
            .replace("actions: [replace]", "actions: [destroy]")
            .replace("R3: [", "R9: [");
        let errs = load("sluice.yaml", &bad).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.message.contains("unknown action `destroy`")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.message.contains("unknown risk level `R9`")),
            "{errs:?}"
        );
        assert!(errs.iter().all(|e| e.line > 20), "{errs:?}");
    }

    const ALICE_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGAC9l5AZD1Ncw7DBIF7yS7SrIB6XobaC4qN8k3a8cHt alice";

    #[test]
    fn people_and_apply_load_as_the_issue_writes_them() {
        let text = format!(
            "{SAMPLE}people:\n  alice: {{ emails: [alice@acme.example], groups: [\"@acme/platform\"], keys: [\"{ALICE_KEY}\"] }}\n  bob: {{ emails: [bob@acme.example] }}\napply:\n  merge: after_merge\n"
        );
        let c = load("sluice.yaml", &text).unwrap();
        let alice = c.people.get("alice").unwrap();
        assert_eq!(alice.groups, ["@acme/platform"]);
        assert_eq!(alice.public_keys().len(), 1);
        assert!(c.people.get("bob").unwrap().keys.is_empty());
        assert_eq!(c.apply.merge, MergeRule::AfterMerge);
        let default = load("sluice.yaml", SAMPLE).unwrap();
        assert!(default.people.is_empty());
        assert_eq!(default.apply.merge, MergeRule::BeforeMerge);
    }

    #[test]
    fn review_signers_load_and_a_bad_one_is_reported_where_it_is() {
        let text = format!("{SAMPLE}apply:\n  review_signers: [\"{ALICE_KEY}\"]\n");
        let c = load("sluice.yaml", &text).unwrap();
        assert_eq!(
            c.apply.review_signers,
            [PublicKey::parse(ALICE_KEY).unwrap()]
        );
        assert!(
            load("sluice.yaml", SAMPLE)
                .unwrap()
                .apply
                .review_signers
                .is_empty()
        );
        let bad = format!(
            "{SAMPLE}apply:\n  review_signers:\n    - \"{ALICE_KEY}\"\n    - \"ssh-rsa AAAAB3NzaC1yc2E x\"\n"
        );
        let errs = load("sluice.yaml", &bad).unwrap_err();
        let e = errs
            .iter()
            .find(|e| e.message.contains("`apply.review_signers`"))
            .unwrap_or_else(|| panic!("{errs:?}"));
        assert_eq!(e.line, SAMPLE.lines().count() as u32 + 4, "{e:?}");
        assert!(e.message.contains("ssh-rsa"), "{}", e.message);
    }

    #[test]
    fn bad_people_are_reported_where_they_are() {
        let text = format!(
            "{SAMPLE}people:\n  alice:\n    emails: [alice@acme.example]\n    keys: [\"ssh-rsa AAAAB3NzaC1yc2E alice\"]\n    group: [x]\n  carol:\n    emails: [ALICE@acme.example, not-an-email]\n    groups: [platform]\napply: {{ merge: sometimes }}\n"
        );
        let errs = load("sluice.yaml", &text).unwrap_err();
        let line_of = |needle: &str| {
            errs.iter()
                .find(|e| e.message.contains(needle))
                .unwrap_or_else(|| panic!("{needle} in {errs:?}"))
                .line
        };
        let base = SAMPLE.lines().count() as u32;
        assert_eq!(line_of("key type `ssh-rsa` is not supported"), base + 4);
        assert_eq!(line_of("unknown key `group`"), base + 5);
        assert_eq!(line_of("is listed for `alice`"), base + 7);
        assert_eq!(line_of("not-an-email"), base + 7);
        assert_eq!(line_of("must start with `@`"), base + 8);
        assert_eq!(line_of("`apply.merge` must be"), base + 9);
        assert!(errs.iter().all(|e| e.file == "sluice.yaml"));
    }

    #[test]
    fn typo_distance() {
        assert_eq!(closest("enviroments", TOP_KEYS), Some("environments"));
        assert_eq!(closest("zzz", TOP_KEYS), None);
    }

    #[test]
    fn trust_section_is_validated_with_positions() {
        let base = "version: 1\norg: acme\nenvironments:\n  dev: { order: 1 }\nstacks: { root: live, layout: \"{env}/{region}/{stack}\" }\n";
        let good = format!(
            "{base}trust:\n  issuers:\n    - issuer: https://token.actions.githubusercontent.com\n      audience: sluice\n  rules:\n    - name: apply-dev\n      when: {{ sub: \"repo:acme/infra-live:environment:dev\", environment: dev }}\n      grant: {{ stages: [apply], state: {{ write: [\"dev/*/network\"] }} }}\n"
        );
        let config = load("sluice.yaml", &good).unwrap();
        assert!(config.sections.contains_key("trust"));
        // A plan identity that writes state: reported at the rule's grant, with the path.
        let bad = good.replace("stages: [apply]", "stages: [plan]");
        let errors = load("sluice.yaml", &bad).unwrap_err();
        let e = errors
            .iter()
            .find(|e| e.message.contains("trust.rules[0].grant.state.write"))
            .unwrap_or_else(|| panic!("{errors:?}"));
        assert_eq!((e.file.as_str(), e.line), ("sluice.yaml", 13));
        assert!(e.message.contains("read-only"), "{}", e.message);
        // A rule that trusts any subject of the issuer.
        let bad = good.replace("sub: \"repo:acme/infra-live:environment:dev\", ", "");
        let errors = load("sluice.yaml", &bad).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("trust.rules[0].when") && e.line == 12),
            "{errors:?}"
        );
    }

    #[test]
    fn break_glass_section_is_validated_with_positions() {
        let base = "version: 1\norg: acme\nenvironments:\n  dev: { order: 1 }\nstacks: { root: live, layout: \"{env}/{region}/{stack}\" }\n";
        let good = format!("{base}break_glass:\n  group: \"@acme/sre-oncall\"\n  max_ttl: 2h\n");
        let config = load("sluice.yaml", &good).unwrap();
        let section = config.sections.get("break_glass").unwrap();
        let bg = sluice_model::breakglass::BreakGlassConfig::from_json(section).unwrap();
        assert_eq!(
            (bg.group.as_str(), bg.max_ttl_secs),
            ("@acme/sre-oncall", 7200)
        );
        let errors = load("sluice.yaml", &good.replace("2h", "2 hours")).unwrap_err();
        let e = errors
            .iter()
            .find(|e| e.message.contains("break_glass.max_ttl"))
            .unwrap_or_else(|| panic!("{errors:?}"));
        assert_eq!((e.line, e.col), (8, 12), "{e:?}");
        let errors = load("sluice.yaml", &good.replace("\"@acme/sre-oncall\"", "sre")).unwrap_err();
        let e = errors
            .iter()
            .find(|e| e.message.contains("break_glass.group"))
            .unwrap_or_else(|| panic!("{errors:?}"));
        assert_eq!(e.line, 7, "{e:?}");
        // A missing group is reported at the section.
        let errors = load(
            "sluice.yaml",
            &format!("{base}break_glass:\n  max_ttl: 1h\n"),
        )
        .unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("break_glass.group") && e.line == 7),
            "{errors:?}"
        );
    }
}
