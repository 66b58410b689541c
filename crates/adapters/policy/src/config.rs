//! The `policy:` section of `sluice.yaml` (it reaches us as JSON in
//! `OrgConfig.sections["policy"]`), validated with errors that name the field.
//!
//! ```yaml
//! policy:
//!   builtin:
//!     enabled: true                  # the built-in pack (default on)
//!     disable: [required-tags]
//!     params: { backup_retention_min_days: 14, required_tags: [owner, cost-center] }
//!     overrides: { sg-open-ingress: { outcome: deny }, stateful-destroy: { groups: [dba] } }
//!   bundles: [policy-library]        # folders of the platform repo (default: the policy-library repo)
//!   namespaces: [main, "terraform.**"]
//!   limits: { timeout_ms: 10000, max_input_bytes: 268435456, max_results_per_rule: 100000 }
//!   exceptions: { path: security-exceptions, max_days: 90 }
//!   docs_url: https://docs.example.com/sluice/   # where `docs/policy.md#rule` links point
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value as J;
use sluice_model::config::OrgConfig;
use sluice_model::exception::DEFAULT_MAX_VALIDITY_DAYS;

use crate::builtin::{self, PARAM_NAMES, Params};
use crate::engine::{BuiltinSettings, EngineOptions, RuleOverride};
use crate::error::PolicyError;
use crate::record::Outcome;

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// `None` when `builtin.enabled: false`.
    pub builtin: Option<BuiltinSettings>,
    /// Bundle folders (repository paths). Empty: the org's `policy-library` repo, if any.
    pub bundles: Vec<String>,
    pub options: EngineOptions,
    /// Folder of exception files. `None`: the org's `security-exceptions` repo, if any.
    pub exceptions_path: Option<String>,
    pub exceptions_max_days: u32,
    /// The absolute URL (ending in `/`) that a rule's relative documentation link
    /// (`docs/policy.md#rule`) is resolved against in reports: [`DEFAULT_DOCS_URL`] unless
    /// `policy.docs_url` says otherwise.
    pub docs_url: String,
}

/// The project's documentation, where the built-in pack's `docs/policy.md#rule` pages live.
pub const DEFAULT_DOCS_URL: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/blob/main/");

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            builtin: Some(BuiltinSettings::default()),
            bundles: Vec::new(),
            options: EngineOptions::default(),
            exceptions_path: None,
            exceptions_max_days: DEFAULT_MAX_VALIDITY_DAYS,
            docs_url: DEFAULT_DOCS_URL.to_string(),
        }
    }
}

fn bad(field: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::Config {
        field: field.to_string(),
        message: message.into(),
    }
}

fn kind(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        J::String(_) => "a string",
        J::Array(_) => "a list",
        J::Object(_) => "a mapping",
    }
}

fn object<'a>(
    v: &'a J,
    field: &str,
    known: &[&str],
) -> Result<&'a serde_json::Map<String, J>, PolicyError> {
    let map = v
        .as_object()
        .ok_or_else(|| bad(field, format!("expected a mapping, found {}", kind(v))))?;
    for k in map.keys() {
        if !known.contains(&k.as_str()) {
            return Err(bad(
                &format!("{field}.{k}"),
                format!("unknown field (known: {})", known.join(", ")),
            ));
        }
    }
    Ok(map)
}

fn string_list(v: &J, field: &str) -> Result<Vec<String>, PolicyError> {
    let items = v.as_array().ok_or_else(|| {
        bad(
            field,
            format!("expected a list of strings, found {}", kind(v)),
        )
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            J::String(s) if !s.trim().is_empty() => Ok(s.clone()),
            J::String(_) => Err(bad(&format!("{field}[{i}]"), "must not be empty")),
            other => Err(bad(
                &format!("{field}[{i}]"),
                format!("expected a string, found {}", kind(other)),
            )),
        })
        .collect()
}

fn uint(v: &J, field: &str, min: u64, max: u64) -> Result<u64, PolicyError> {
    match v.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad(
            field,
            format!("expected a whole number from {min} to {max}, found {v}"),
        )),
    }
}

fn boolean(v: &J, field: &str) -> Result<bool, PolicyError> {
    v.as_bool()
        .ok_or_else(|| bad(field, format!("expected true or false, found {}", kind(v))))
}

fn builtin_id(id: &str, field: &str) -> Result<String, PolicyError> {
    if builtin::find(id).is_some() {
        Ok(id.to_string())
    } else {
        Err(bad(
            field,
            format!(
                "unknown built-in rule `{id}` (see `sluice policy list`: {})",
                builtin::RULES
                    .iter()
                    .map(|r| r.id)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }
}

/// Parse the section; `None` (no `policy:` key) gives the defaults.
pub fn parse(section: Option<&J>) -> Result<PolicyConfig, PolicyError> {
    let mut cfg = PolicyConfig::default();
    let Some(section) = section else {
        return Ok(cfg);
    };
    let root = object(
        section,
        "policy",
        // `preexisting` (sluice_model::baseline) is read by the PR pipeline.
        &[
            "builtin",
            "bundles",
            "namespaces",
            "limits",
            "exceptions",
            "preexisting",
            "docs_url",
        ],
    )?;
    if let Some(v) = root.get("docs_url") {
        cfg.docs_url = docs_url(v)?;
    }
    if let Some(b) = root.get("builtin") {
        cfg.builtin = parse_builtin(b)?;
    }
    if let Some(v) = root.get("bundles") {
        cfg.bundles = string_list(v, "policy.bundles")?;
        for (i, p) in cfg.bundles.iter().enumerate() {
            if p.starts_with('/') || p.split('/').any(|s| s == "..") {
                return Err(bad(
                    &format!("policy.bundles[{i}]"),
                    format!("`{p}` must be a path inside the repository"),
                ));
            }
        }
    }
    if let Some(v) = root.get("namespaces") {
        let ns = string_list(v, "policy.namespaces")?;
        if ns.is_empty() {
            return Err(bad("policy.namespaces", "must name at least one package"));
        }
        sluice_model::glob::GlobList::new(
            &ns.iter().map(|n| n.replace('.', "/")).collect::<Vec<_>>(),
        )
        .map_err(|e| bad("policy.namespaces", e.to_string()))?;
        cfg.options.namespaces = ns;
    }
    if let Some(v) = root.get("limits") {
        let l = object(
            v,
            "policy.limits",
            &["timeout_ms", "max_input_bytes", "max_results_per_rule"],
        )?;
        if let Some(v) = l.get("timeout_ms") {
            cfg.options.timeout =
                Duration::from_millis(uint(v, "policy.limits.timeout_ms", 1, 600_000)?);
        }
        if let Some(v) = l.get("max_input_bytes") {
            cfg.options.max_input_bytes =
                uint(v, "policy.limits.max_input_bytes", 1024, 4 << 30)? as usize;
        }
        if let Some(v) = l.get("max_results_per_rule") {
            cfg.options.max_results_per_rule =
                uint(v, "policy.limits.max_results_per_rule", 1, 10_000_000)? as usize;
        }
    }
    if let Some(v) = root.get("exceptions") {
        let e = object(v, "policy.exceptions", &["path", "max_days"])?;
        if let Some(p) = e.get("path") {
            cfg.exceptions_path = Some(
                p.as_str()
                    .ok_or_else(|| bad("policy.exceptions.path", "expected a string"))?
                    .to_string(),
            );
        }
        if let Some(d) = e.get("max_days") {
            cfg.exceptions_max_days = uint(d, "policy.exceptions.max_days", 1, 3650)? as u32;
        }
    }
    Ok(cfg)
}

/// An absolute `http(s)` URL, given a trailing `/` so that relative links join under it.
fn docs_url(v: &J) -> Result<String, PolicyError> {
    let field = "policy.docs_url";
    let url = v
        .as_str()
        .ok_or_else(|| bad(field, format!("expected a URL, found {}", kind(v))))?
        .trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host)
            if !host.is_empty() && !host.starts_with('/') && !url.contains(char::is_whitespace) =>
        {
            Ok(if url.ends_with('/') {
                url.to_string()
            } else {
                format!("{url}/")
            })
        }
        _ => Err(bad(
            field,
            format!(
                "expected an absolute http(s) URL such as https://docs.example.com/sluice/, found `{url}`"
            ),
        )),
    }
}

fn parse_builtin(v: &J) -> Result<Option<BuiltinSettings>, PolicyError> {
    let b = object(
        v,
        "policy.builtin",
        &["enabled", "disable", "params", "overrides"],
    )?;
    if let Some(e) = b.get("enabled")
        && !boolean(e, "policy.builtin.enabled")?
    {
        return Ok(None);
    }
    let mut s = BuiltinSettings::default();
    if let Some(d) = b.get("disable") {
        let ids = string_list(d, "policy.builtin.disable")?;
        s.disabled = ids
            .iter()
            .enumerate()
            .map(|(i, id)| builtin_id(id, &format!("policy.builtin.disable[{i}]")))
            .collect::<Result<BTreeSet<_>, _>>()?;
    }
    if let Some(p) = b.get("params") {
        s.params = parse_params(p)?;
    }
    if let Some(o) = b.get("overrides") {
        let map = o.as_object().ok_or_else(|| {
            bad(
                "policy.builtin.overrides",
                format!("expected a mapping, found {}", kind(o)),
            )
        })?;
        let mut overrides = BTreeMap::new();
        for (id, v) in map {
            let field = format!("policy.builtin.overrides.{id}");
            let id = builtin_id(id, &field)?;
            let o = object(v, &field, &["outcome", "groups"])?;
            let mut ov = RuleOverride::default();
            if let Some(out) = o.get("outcome") {
                let text = out.as_str().unwrap_or_default();
                ov.outcome = match Outcome::parse(text) {
                    Some(o @ (Outcome::Deny | Outcome::RequireApproval | Outcome::Warn)) => Some(o),
                    _ => {
                        return Err(bad(
                            &format!("{field}.outcome"),
                            format!("expected deny, require_approval or warn, found {out}"),
                        ));
                    }
                };
            }
            if let Some(g) = o.get("groups") {
                let groups = string_list(g, &format!("{field}.groups"))?;
                if groups.is_empty() {
                    return Err(bad(
                        &format!("{field}.groups"),
                        "must name at least one group",
                    ));
                }
                ov.groups = Some(groups);
            }
            let rule = builtin::find(&id).expect("checked above");
            if ov.outcome == Some(Outcome::RequireApproval)
                && rule.default_outcome != Outcome::RequireApproval
                && ov.groups.is_none()
            {
                return Err(bad(
                    &format!("{field}.groups"),
                    "required when the outcome becomes require_approval: who approves?",
                ));
            }
            overrides.insert(id, ov);
        }
        s.overrides = overrides;
    }
    Ok(Some(s))
}

fn parse_params(v: &J) -> Result<Params, PolicyError> {
    let map = object(v, "policy.builtin.params", PARAM_NAMES)?;
    let mut p = Params::default();
    let field = |name: &str| format!("policy.builtin.params.{name}");
    for (k, v) in map {
        match k.as_str() {
            "backup_retention_min_days" => {
                p.backup_retention_min_days = uint(v, &field(k), 0, 35)? as u32;
            }
            "required_tags" => p.required_tags = string_list(v, &field(k))?,
            "production_envs" => p.production_envs = string_list(v, &field(k))?,
            "stateful_types" => p.stateful_types = string_list(v, &field(k))?,
            "k8s_required_resources" => {
                let list = string_list(v, &field(k))?;
                for (i, r) in list.iter().enumerate() {
                    if !builtin::K8S_RESOURCE_FIELDS.contains(&r.as_str()) {
                        return Err(bad(
                            &format!("{}[{i}]", field(k)),
                            format!(
                                "unknown resource `{r}` (known: {})",
                                builtin::K8S_RESOURCE_FIELDS.join(", ")
                            ),
                        ));
                    }
                }
                p.k8s_required_resources = list;
            }
            "k8s_loadbalancer_namespaces" => {
                p.k8s_loadbalancer_namespaces = string_list(v, &field(k))?
            }
            "k8s_loadbalancer_approvers" => {
                let groups = string_list(v, &field(k))?;
                if groups.is_empty() {
                    return Err(bad(&field(k), "must name at least one group"));
                }
                p.k8s_loadbalancer_approvers = groups;
            }
            "stateful_approvers" | "open_ingress_approvers" => {
                let groups = string_list(v, &field(k))?;
                if groups.is_empty() {
                    return Err(bad(&field(k), "must name at least one group"));
                }
                if k == "stateful_approvers" {
                    p.stateful_approvers = groups;
                } else {
                    p.open_ingress_approvers = groups;
                }
            }
            _ => unreachable!("object() rejected unknown keys"),
        }
    }
    Ok(p)
}

/// The section of an org's configuration.
pub fn from_org(org: &OrgConfig) -> Result<PolicyConfig, PolicyError> {
    parse(org.sections.get("policy"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: J) -> String {
        parse(Some(&v)).unwrap_err().to_string()
    }

    #[test]
    fn defaults_without_a_section() {
        let c = parse(None).unwrap();
        let b = c.builtin.unwrap();
        assert!(b.disabled.is_empty());
        assert_eq!(b.params.backup_retention_min_days, 7);
        assert_eq!(b.params.required_tags, ["owner"]);
        assert_eq!(c.options.namespaces, ["main"]);
        assert_eq!(c.exceptions_max_days, 90);
        assert_eq!(c.docs_url, DEFAULT_DOCS_URL);
        // The workspace's `repository` (this crate's Cargo.toml must inherit it).
        assert_eq!(c.docs_url, "https://example.invalid/sluice/blob/main/");
    }

    #[test]
    fn docs_url_is_an_absolute_url_ending_in_a_slash() {
        let c = parse(Some(
            &json!({"docs_url": "https://docs.example.com/sluice"}),
        ))
        .unwrap();
        assert_eq!(c.docs_url, "https://docs.example.com/sluice/");
        for bad in [
            json!("docs/"),
            json!("https://"),
            json!(3),
            json!("ftp://x/"),
        ] {
            let e = err(json!({"docs_url": bad}));
            assert!(e.contains("policy.docs_url"), "{e}");
        }
    }

    #[test]
    fn reads_every_field() {
        let c = parse(Some(&json!({
            "builtin": {
                "disable": ["required-tags"],
                "params": {"backup_retention_min_days": 14, "required_tags": ["owner", "cost-center"]},
                "overrides": {"sg-open-ingress": {"outcome": "deny"}, "stateful-destroy": {"groups": ["dba"]}}
            },
            "bundles": ["policy-library/terraform"],
            "namespaces": ["main", "terraform.**"],
            "limits": {"timeout_ms": 2000, "max_input_bytes": 1048576},
            "exceptions": {"path": "sec/exceptions", "max_days": 30}
        })))
        .unwrap();
        let b = c.builtin.unwrap();
        assert!(b.disabled.contains("required-tags"));
        assert_eq!(b.params.backup_retention_min_days, 14);
        assert_eq!(b.params.required_tags, ["owner", "cost-center"]);
        assert_eq!(b.overrides["sg-open-ingress"].outcome, Some(Outcome::Deny));
        assert_eq!(
            b.overrides["stateful-destroy"].groups.as_deref(),
            Some(&["dba".to_string()][..])
        );
        assert_eq!(c.bundles, ["policy-library/terraform"]);
        assert_eq!(c.options.timeout, Duration::from_millis(2000));
        assert_eq!(c.exceptions_path.as_deref(), Some("sec/exceptions"));
        assert_eq!(c.exceptions_max_days, 30);
        assert!(
            parse(Some(&json!({"builtin": {"enabled": false}})))
                .unwrap()
                .builtin
                .is_none()
        );
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err(json!({"builtin": {"disable": ["nope"]}})),
            format!(
                "sluice.yaml: policy.builtin.disable[0]: unknown built-in rule `nope` (see `sluice policy list`: {})",
                builtin::RULES
                    .iter()
                    .map(|r| r.id)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        );
        assert!(err(json!({"builtin": {"params": {"backup_retention_min_days": "seven"}}}))
            .starts_with("sluice.yaml: policy.builtin.params.backup_retention_min_days: expected a whole number"));
        assert!(
            err(json!({"builtin": {"params": {"required_tag": []}}}))
                .starts_with("sluice.yaml: policy.builtin.params.required_tag: unknown field")
        );
        assert!(
            err(json!({"builtin": {"params": {"required_tags": ["owner", 3]}}})).starts_with(
                "sluice.yaml: policy.builtin.params.required_tags[1]: expected a string"
            )
        );
        assert!(
            err(
                json!({"builtin": {"overrides": {"iam-wildcard": {"outcome": "require_approval"}}}})
            )
            .starts_with("sluice.yaml: policy.builtin.overrides.iam-wildcard.groups: required")
        );
        assert!(
            err(json!({"builtin": {"overrides": {"iam-wildcard": {"outcome": "ignore"}}}}))
                .contains("expected deny, require_approval or warn")
        );
        assert!(
            err(json!({"bundles": ["../elsewhere"]}))
                .starts_with("sluice.yaml: policy.bundles[0]:")
        );
        assert!(
            err(json!({"limits": {"timeout_ms": 0}}))
                .starts_with("sluice.yaml: policy.limits.timeout_ms:")
        );
        assert!(
            err(json!({"namespace": ["main"]}))
                .starts_with("sluice.yaml: policy.namespace: unknown field")
        );
        assert!(err(json!(["main"])).starts_with("sluice.yaml: policy: expected a mapping"));
        assert!(
            err(json!({"builtin": {"params": {"k8s_required_resources": ["limits.gpu"]}}}))
                .starts_with("sluice.yaml: policy.builtin.params.k8s_required_resources[0]: unknown resource `limits.gpu`")
        );
        assert!(
            err(json!({"builtin": {"params": {"k8s_loadbalancer_approvers": []}}}))
                .contains("must name at least one group")
        );
        let k = parse(Some(&json!({"builtin": {"params": {"k8s_loadbalancer_namespaces": ["ingress"]}, "disable": ["k8s-probes"]}})))
            .unwrap()
            .builtin
            .unwrap();
        assert_eq!(k.params.k8s_loadbalancer_namespaces, ["ingress"]);
        assert!(k.disabled.contains("k8s-probes"));
    }
}
