//! The `plan` section of `sluice.yaml`: which engine plans stacks and how.
//!
//! ```yaml
//! plan:
//!   engine: auto            # tofu | terraform | auto (tofu preferred, then terraform)
//!   parallelism: 4          # stacks planned at the same time
//!   timeout_seconds: 1800   # per engine command (init, plan, show)
//!   lock_timeout_seconds: 0 # passed as -lock-timeout when > 0
//!   plugin_cache_dir: .sluice/plugin-cache   # shared provider cache (relative to the store)
//!   redact: { secret_names: [...], not_secret_names: [...], defaults: true }
//! ```
//!
//! The foundation keeps sections it does not own as JSON (`OrgConfig.sections["plan"]`); this
//! module reads that JSON and reports every bad field by its dotted path.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sluice_model::redact::{RedactionConfig, RedactionRules};

/// Which engine plans plain Terraform/OpenTofu stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineChoice {
    /// `tofu` when on PATH, else `terraform`.
    Auto,
    Tofu,
    Terraform,
}

impl EngineChoice {
    pub fn parse(text: &str) -> Option<EngineChoice> {
        match text {
            "auto" => Some(EngineChoice::Auto),
            "tofu" | "opentofu" => Some(EngineChoice::Tofu),
            "terraform" => Some(EngineChoice::Terraform),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PlanConfig {
    pub engine: EngineChoice,
    /// Stacks planned at the same time (at least 1).
    pub parallelism: usize,
    /// Limit for each engine command.
    pub timeout: Duration,
    /// `-lock-timeout` for plan; `None` leaves the engine's default (fail at once).
    pub lock_timeout: Option<Duration>,
    /// Shared provider plugin cache; `None` uses `<store>/plugin-cache`.
    pub plugin_cache_dir: Option<PathBuf>,
    pub redaction: RedactionConfig,
    /// Plan with `-refresh-only` (what changed outside the state, no proposed change): set by
    /// `sluice recover UNIT --refresh-only`, never read from `sluice.yaml`.
    pub refresh_only: bool,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            engine: EngineChoice::Auto,
            parallelism: default_parallelism(),
            timeout: Duration::from_secs(1800),
            lock_timeout: None,
            plugin_cache_dir: None,
            redaction: RedactionConfig::default(),
            refresh_only: false,
        }
    }
}

/// Engines are mostly waiting on provider APIs, but each runs providers as processes: more
/// than a handful at once starves small CI runners.
fn default_parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4)
}

/// A field of the `plan` section that is wrong, by dotted path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sluice.yaml: {field}: {message}")]
pub struct ConfigFieldError {
    pub field: String,
    pub message: String,
}

const KEYS: &[&str] = &[
    "engine",
    "parallelism",
    "timeout_seconds",
    "lock_timeout_seconds",
    "plugin_cache_dir",
    "redact",
];

impl PlanConfig {
    /// Read `sections["plan"]` (absent means all defaults).
    pub fn from_section(section: Option<&Value>) -> Result<PlanConfig, Vec<ConfigFieldError>> {
        let mut config = PlanConfig::default();
        let Some(section) = section else {
            return Ok(config);
        };
        let err = |field: &str, message: String| ConfigFieldError {
            field: field.to_string(),
            message,
        };
        let Value::Object(map) = section else {
            return Err(vec![err(
                "plan",
                "expected a mapping, e.g. `plan: { engine: tofu }`".into(),
            )]);
        };
        let mut errors = Vec::new();
        for (key, value) in map {
            let field = format!("plan.{key}");
            match key.as_str() {
                "engine" => match value.as_str().and_then(EngineChoice::parse) {
                    Some(e) => config.engine = e,
                    None => errors.push(err(
                        &field,
                        format!(
                            "expected one of tofu, terraform, auto; got {}",
                            short_json(value)
                        ),
                    )),
                },
                "parallelism" => match positive(value, 256) {
                    Some(n) => config.parallelism = n as usize,
                    None => errors.push(err(&field, "expected an integer from 1 to 256".into())),
                },
                "timeout_seconds" => match positive(value, 86_400) {
                    Some(n) => config.timeout = Duration::from_secs(n),
                    None => errors.push(err(
                        &field,
                        "expected a number of seconds from 1 to 86400".into(),
                    )),
                },
                "lock_timeout_seconds" => match value.as_u64() {
                    Some(0) => config.lock_timeout = None,
                    Some(n) if n <= 86_400 => config.lock_timeout = Some(Duration::from_secs(n)),
                    _ => errors.push(err(
                        &field,
                        "expected a number of seconds from 0 to 86400".into(),
                    )),
                },
                "plugin_cache_dir" => match value.as_str() {
                    Some(p) if !p.trim().is_empty() => {
                        config.plugin_cache_dir = Some(PathBuf::from(p))
                    }
                    _ => errors.push(err(&field, "expected a directory path".into())),
                },
                "redact" => match RedactionConfig::from_json(Some(value), "plan.redact") {
                    Ok(r) => match RedactionRules::new(&r) {
                        Ok(_) => config.redaction = r,
                        Err(e) => errors.push(err(&format!("plan.redact.{}", e.field), e.message)),
                    },
                    Err(es) => {
                        errors.extend(es.into_iter().map(|e| err(&e.field, e.message)));
                    }
                },
                _ => errors.push(err(
                    &field,
                    format!("unknown key; allowed: {}", KEYS.join(", ")),
                )),
            }
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// The compiled redaction rules (validated when the section was read).
    pub fn redaction_rules(&self) -> RedactionRules {
        RedactionRules::new(&self.redaction).unwrap_or_default()
    }
}

fn positive(value: &Value, max: u64) -> Option<u64> {
    value.as_u64().filter(|n| (1..=max).contains(n))
}

fn short_json(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_when_absent() {
        let c = PlanConfig::from_section(None).unwrap();
        assert_eq!(c.engine, EngineChoice::Auto);
        assert!((1..=4).contains(&c.parallelism));
        assert_eq!(c.timeout, Duration::from_secs(1800));
    }

    #[test]
    fn reads_every_field() {
        let c = PlanConfig::from_section(Some(&json!({
            "engine": "tofu", "parallelism": 8, "timeout_seconds": 60,
            "lock_timeout_seconds": 30, "plugin_cache_dir": "/var/cache/tf",
            "redact": {"secret_names": ["(^|_)pin$"]}
        })))
        .unwrap();
        assert_eq!(c.engine, EngineChoice::Tofu);
        assert_eq!(c.parallelism, 8);
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.lock_timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.plugin_cache_dir, Some(PathBuf::from("/var/cache/tf")));
        assert!(c.redaction_rules().is_secret_name("card_pin"));
    }

    #[test]
    fn errors_name_each_field() {
        let errs = PlanConfig::from_section(Some(&json!({
            "engine": "pulumi", "parallelism": 0, "timeout_seconds": "soon",
            "lock_timeout_seconds": -1, "plugin_cache_dir": "", "paralelism": 2,
            "redact": {"secret_names": ["("]}
        })))
        .unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        for needle in [
            "plan.engine: expected one of tofu, terraform, auto; got \"pulumi\"",
            "plan.parallelism: expected an integer from 1 to 256",
            "plan.timeout_seconds:",
            "plan.lock_timeout_seconds:",
            "plan.plugin_cache_dir:",
            "plan.paralelism: unknown key",
            "plan.redact.secret_names[0]: invalid regex",
        ] {
            assert!(
                text.iter().any(|t| t.contains(needle)),
                "{needle} not in {text:#?}"
            );
        }
        assert!(PlanConfig::from_section(Some(&json!("tofu"))).is_err());
    }
}
