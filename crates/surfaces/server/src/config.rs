//! `sluice serve`'s configuration: command-line flags over the `server:` section of the platform
//! repository's `sluice.yaml` over defaults; secrets only from the environment
//! (`SLUICE_GITHUB_WEBHOOK_SECRET`), never from a file in the repository.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sluice_store::Backoff;
use sluice_vcs::WebhookSecret;

use crate::repo::RepoSource;

/// The environment variable holding the webhook secret shared with GitHub.
pub const WEBHOOK_SECRET_ENV: &str = "SLUICE_GITHUB_WEBHOOK_SECRET";

/// The `server:` section of `sluice.yaml` (every key optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `ADDR:PORT` to listen on (the `--listen` flag wins).
    pub listen: Option<String>,
    /// `postgres://…` for several replicas; default the embedded SQLite store.
    pub database_url: Option<String>,
    /// Jobs run at once by this process (0: webhooks and API only).
    pub workers: Option<usize>,
    /// How long a claimed job stays with its worker without a heartbeat.
    pub lease_seconds: Option<u64>,
    /// How often an idle worker looks for a job.
    pub poll_ms: Option<u64>,
    /// The most jobs one claim takes for this process's waiting workers (default 8).
    pub claim_batch: Option<u32>,
    /// Attempts before a job is dead-lettered.
    pub max_attempts: Option<u32>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_max_seconds: Option<u64>,
    /// Largest webhook body accepted (GitHub sends at most 25 MB).
    pub max_body_bytes: Option<usize>,
    /// How long a shutdown waits for running jobs before releasing them.
    pub shutdown_grace_seconds: Option<u64>,
    /// The GitHub App that publishes check runs and PR comments.
    pub github: Option<GitHubSection>,
    /// The Terraform `http` state backend at `/state/<stack id>`.
    pub state: Option<StateSection>,
    /// Queue a plan job per stack change for runners (`sluice runner`); without runners the
    /// plan stage stays "not run" and no job waits forever. Implied by `runner: true`.
    pub runners: Option<bool>,
    /// Run one plan runner inside this process, against itself (`--runner` wins).
    pub runner: Option<bool>,
}

/// `server.state:` in `sluice.yaml` (every key optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// The request method Terraform's `lock_method` sends (default `LOCK`).
    pub lock_method: Option<String>,
    /// The request method Terraform's `unlock_method` sends (default `UNLOCK`).
    pub unlock_method: Option<String>,
    /// The lease of a lock a Terraform client takes (Terraform never renews it, so this bounds
    /// how long a killed client blocks the stack; default 3600).
    pub lock_lease_seconds: Option<u64>,
    /// The largest state accepted (default 64 MiB).
    pub max_state_bytes: Option<usize>,
}

/// The state backend's resolved settings.
#[derive(Debug, Clone)]
pub struct StateConfig {
    pub lock_method: String,
    pub unlock_method: String,
    pub lock_lease: Duration,
    pub max_state_bytes: usize,
    /// The `trust:` section: which runner OIDC identities may read and write which stacks.
    /// `None`: runner tokens are refused everything (sluice `state` tokens still work).
    pub trust: Option<std::sync::Arc<sluice_model::trust::TrustPolicy>>,
    /// How a stack id's environment is found (the `{env}` of the stacks layout).
    pub environments: sluice_state::Environments,
}

/// `server.github:`: which GitHub App publishes the check run and the PR comment. Its private
/// key only ever comes from the environment ([`GITHUB_APP_KEY_ENV`] or
/// [`GITHUB_APP_KEY_FILE_ENV`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubSection {
    /// The app's id (also `SLUICE_GITHUB_APP_ID`).
    pub app_id: Option<u64>,
    /// `https://api.github.com` (default) or a GitHub Enterprise Server `https://HOST/api/v3`
    /// (also `SLUICE_GITHUB_API_URL`).
    pub api_url: Option<String>,
    /// The app's bot login (`sluice[bot]`): only its comments are taken for sluice's.
    pub bot_login: Option<String>,
}

pub const GITHUB_APP_ID_ENV: &str = "SLUICE_GITHUB_APP_ID";
/// The app's private key, PEM text.
pub const GITHUB_APP_KEY_ENV: &str = "SLUICE_GITHUB_APP_KEY";
/// A file holding the app's private key (a mounted secret).
pub const GITHUB_APP_KEY_FILE_ENV: &str = "SLUICE_GITHUB_APP_KEY_FILE";
pub const GITHUB_API_URL_ENV: &str = "SLUICE_GITHUB_API_URL";

/// The most jobs one claim takes by default: enough that a burst of short jobs costs one claim
/// per several jobs, small enough that a claim stays a short statement.
pub const DEFAULT_CLAIM_BATCH: u32 = 8;
/// The most `server.claim_batch` may say.
pub const MAX_CLAIM_BATCH: u32 = 256;

/// What `sluice serve` was told on its command line.
#[derive(Debug, Clone, Default)]
pub struct ServeArgs {
    pub listen: Option<String>,
    pub repo: String,
    pub database_url: Option<String>,
    pub evidence_key: Option<PathBuf>,
    pub workers: Option<usize>,
    /// `--runner`: run one plan runner in process.
    pub runner: bool,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub repo: RepoSource,
    /// Holds `.sluice/` (the embedded store, blobs, a mirror of a remote repository).
    pub state_dir: PathBuf,
    pub database_url: Option<String>,
    pub evidence_key: Option<PathBuf>,
    /// `None`: every webhook is refused with 401 (nothing can be verified).
    pub webhook_secret: Option<WebhookSecret>,
    pub workers: usize,
    pub lease: Duration,
    pub poll: Duration,
    /// The most jobs one claim takes; it takes only as many as workers wait for
    /// (`sluice_store::feed`).
    pub claim_batch: u32,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    /// This process's name in job leases: `host:pid`.
    pub replica: String,
    /// `None`: nothing is published to GitHub (reports stay in the store and the API).
    pub github: Option<(sluice_vcs::GitHubConfig, sluice_vcs::AppKey)>,
    pub state: StateConfig,
    /// Queue `runner.plan` jobs for the stacks the pipeline cannot plan ([`crate::runner`]).
    pub queue_plans: bool,
    /// Run one plan runner loop inside `serve`, against this server ([`crate::runner_loop`]).
    pub runner: bool,
}

/// A configuration problem, naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    SluiceYaml(Vec<sluice_org::config::ConfigError>),
}

impl ServerConfig {
    /// Flags over `sluice.yaml`'s `server:` section over defaults; the webhook secret from
    /// `env(WEBHOOK_SECRET_ENV)`.
    pub fn resolve(
        args: &ServeArgs,
        section: &ServerSection,
        env: impl Fn(&str) -> Option<String>,
        cwd: &Path,
    ) -> Result<ServerConfig, ConfigError> {
        let invalid = ConfigError::Invalid;
        let listen_text = args
            .listen
            .clone()
            .or_else(|| section.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().map_err(|e| {
            invalid(format!(
                "--listen {listen_text:?}: expected ADDR:PORT such as 127.0.0.1:8080 ({e})"
            ))
        })?;
        let repo = RepoSource::parse(&args.repo, cwd).map_err(invalid)?;
        let state_dir = match &repo {
            RepoSource::Local(path) => path.clone(),
            RepoSource::Remote(_) => cwd.to_path_buf(),
        };
        let webhook_secret = match env(WEBHOOK_SECRET_ENV).filter(|s| !s.is_empty()) {
            Some(s) => Some(WebhookSecret::new(s).map_err(|e| invalid(e.to_string()))?),
            None => None,
        };
        let positive = |v: Option<u64>, name: &str, default: u64| -> Result<u64, ConfigError> {
            match v {
                Some(0) => Err(invalid(format!(
                    "sluice.yaml: server.{name} must be greater than 0"
                ))),
                Some(v) => Ok(v),
                None => Ok(default),
            }
        };
        // 0 workers: a replica that only takes webhooks and answers the API.
        let workers = args.workers.or(section.workers).unwrap_or(2);
        let lease = Duration::from_secs(positive(section.lease_seconds, "lease_seconds", 60)?);
        let max_attempts = positive(section.max_attempts.map(u64::from), "max_attempts", 5)? as u32;
        Ok(ServerConfig {
            listen,
            repo,
            state_dir,
            database_url: args
                .database_url
                .clone()
                .or_else(|| section.database_url.clone())
                .or_else(|| env("SLUICE_DATABASE_URL")),
            evidence_key: args
                .evidence_key
                .clone()
                .or_else(|| env("SLUICE_EVIDENCE_KEY").map(PathBuf::from)),
            webhook_secret,
            workers,
            lease,
            poll: Duration::from_millis(positive(section.poll_ms, "poll_ms", 200)?),
            claim_batch: positive(
                section.claim_batch.map(u64::from),
                "claim_batch",
                DEFAULT_CLAIM_BATCH.into(),
            )?
            .min(MAX_CLAIM_BATCH.into()) as u32,
            max_attempts,
            backoff: Backoff {
                base: Duration::from_millis(positive(
                    section.backoff_base_ms,
                    "backoff_base_ms",
                    2000,
                )?),
                max: Duration::from_secs(positive(
                    section.backoff_max_seconds,
                    "backoff_max_seconds",
                    300,
                )?),
            },
            max_body_bytes: positive(
                section.max_body_bytes.map(|b| b as u64),
                "max_body_bytes",
                sluice_vcs::webhook::MAX_BODY_BYTES as u64,
            )?
            .min(sluice_vcs::webhook::MAX_BODY_BYTES as u64) as usize,
            shutdown_grace: Duration::from_secs(positive(
                section.shutdown_grace_seconds,
                "shutdown_grace_seconds",
                30,
            )?),
            replica: replica_name(),
            github: github(section.github.as_ref(), &env)?,
            state: state_config(section.state.as_ref().unwrap_or(&StateSection::default()))?,
            queue_plans: args.runner
                || section.runner.unwrap_or(false)
                || section.runners.unwrap_or(false),
            runner: args.runner || section.runner.unwrap_or(false),
        })
    }
}

/// The GitHub App from `server.github:` and the environment: none when neither names an app id
/// nor a key; an error naming what is missing when only one does.
fn github(
    section: Option<&GitHubSection>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<(sluice_vcs::GitHubConfig, sluice_vcs::AppKey)>, ConfigError> {
    let invalid = ConfigError::Invalid;
    let app_id =
        match env(GITHUB_APP_ID_ENV).filter(|s| !s.is_empty()) {
            Some(text) => Some(text.trim().parse::<u64>().map_err(|e| {
                invalid(format!("{GITHUB_APP_ID_ENV}={text:?}: not an app id ({e})"))
            })?),
            None => section.and_then(|s| s.app_id),
        };
    let key = match (
        env(GITHUB_APP_KEY_ENV).filter(|s| !s.is_empty()),
        env(GITHUB_APP_KEY_FILE_ENV).filter(|s| !s.is_empty()),
    ) {
        (Some(pem), _) => Some((GITHUB_APP_KEY_ENV.to_string(), pem.into_bytes())),
        (None, Some(file)) => Some((
            format!("{GITHUB_APP_KEY_FILE_ENV}={file}"),
            std::fs::read(&file)
                .map_err(|e| invalid(format!("{GITHUB_APP_KEY_FILE_ENV}={file}: {e}")))?,
        )),
        (None, None) => None,
    };
    let (app_id, (key_source, pem)) = match (app_id, key) {
        (None, None) => return Ok(None),
        (Some(id), Some(key)) => (id, key),
        (Some(_), None) => {
            return Err(invalid(format!(
                "a GitHub App id is configured but no private key: set {GITHUB_APP_KEY_ENV} or {GITHUB_APP_KEY_FILE_ENV}"
            )));
        }
        (None, Some(_)) => {
            return Err(invalid(format!(
                "a GitHub App private key is set but no app id: set server.github.app_id or {GITHUB_APP_ID_ENV}"
            )));
        }
    };
    let key =
        sluice_vcs::AppKey::from_pem(&pem).map_err(|e| invalid(format!("{key_source}: {e}")))?;
    let mut config = sluice_vcs::GitHubConfig::new(app_id);
    let api_url = env(GITHUB_API_URL_ENV)
        .filter(|s| !s.is_empty())
        .map(|u| (GITHUB_API_URL_ENV.to_string(), u))
        .or_else(|| {
            section
                .and_then(|s| s.api_url.clone())
                .map(|u| ("sluice.yaml: server.github.api_url".to_string(), u))
        });
    if let Some((source, url)) = api_url {
        config.api_url = reqwest::Url::parse(&url)
            .map_err(|e| invalid(format!("{source} {url:?}: not a URL ({e})")))?;
    }
    config.bot_login = section.and_then(|s| s.bot_login.clone());
    Ok(Some((config, key)))
}

/// A request method name as HTTP allows it (a token: letters, digits, `!#$%&'*+-.^_`|~`).
fn method_name(value: Option<&String>, key: &str, default: &str) -> Result<String, ConfigError> {
    let Some(v) = value else {
        return Ok(default.to_string());
    };
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if v.is_empty() || !v.bytes().all(token) {
        return Err(ConfigError::Invalid(format!(
            "sluice.yaml: server.state.{key} {v:?} is not an HTTP method name (e.g. LOCK)"
        )));
    }
    if matches!(v.as_str(), "GET" | "POST" | "PUT" | "DELETE") {
        return Err(ConfigError::Invalid(format!(
            "sluice.yaml: server.state.{key} {v:?} is already a state backend method; pick \
             another (e.g. LOCK, UNLOCK)"
        )));
    }
    Ok(v.clone())
}

impl Default for StateConfig {
    /// The defaults: `LOCK`/`UNLOCK`, a one-hour lease, 64 MiB, no trust policy.
    fn default() -> Self {
        state_config(&StateSection::default()).expect("the defaults are valid")
    }
}

fn state_config(section: &StateSection) -> Result<StateConfig, ConfigError> {
    let lock_method = method_name(section.lock_method.as_ref(), "lock_method", "LOCK")?;
    let unlock_method = method_name(section.unlock_method.as_ref(), "unlock_method", "UNLOCK")?;
    if lock_method == unlock_method {
        return Err(ConfigError::Invalid(format!(
            "sluice.yaml: server.state.lock_method and unlock_method are both {lock_method:?}"
        )));
    }
    let lease = match section.lock_lease_seconds {
        Some(0) => {
            return Err(ConfigError::Invalid(
                "sluice.yaml: server.state.lock_lease_seconds must be greater than 0".into(),
            ));
        }
        Some(s) => s,
        None => 3600,
    };
    let max_state_bytes = match section.max_state_bytes {
        Some(0) => {
            return Err(ConfigError::Invalid(
                "sluice.yaml: server.state.max_state_bytes must be greater than 0".into(),
            ));
        }
        Some(b) => b,
        None => 64 << 20,
    };
    Ok(StateConfig {
        lock_method,
        unlock_method,
        lock_lease: Duration::from_secs(lease),
        max_state_bytes,
        trust: None,
        environments: sluice_state::Environments::FirstSegment,
    })
}

/// From the repository's `sluice.yaml`: the `trust:` policy (if any) and how a stack id's
/// environment is found (the stacks layout's `{env}`, else the id's first segment).
pub fn state_policy(
    file: &str,
    text: &str,
) -> Result<
    (
        Option<sluice_model::trust::TrustPolicy>,
        sluice_state::Environments,
    ),
    ConfigError,
> {
    let config = sluice_org::config::load(file, text).map_err(ConfigError::SluiceYaml)?;
    let trust = match config.sections.get("trust") {
        None | Some(serde_json::Value::Null) => None,
        // Validated with positions by the loader; this only converts.
        Some(value) => Some(
            sluice_model::trust::TrustPolicy::from_json(value)
                .map_err(|e| ConfigError::Invalid(format!("{file}: section `trust`: {e}")))?,
        ),
    };
    let environments = if config.stacks.is_declared() {
        sluice_state::Environments::Layout(config.stacks.layout.clone())
    } else {
        sluice_state::Environments::FirstSegment
    };
    Ok((trust, environments))
}

/// `host:pid`: unique among live processes, readable in a job listing.
fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}:{}", std::process::id())
}

/// The `server:` section of `sluice.yaml` as `text` holds it (`file` names it in errors).
pub fn server_section(file: &str, text: &str) -> Result<ServerSection, ConfigError> {
    let config = sluice_org::config::load(file, text).map_err(ConfigError::SluiceYaml)?;
    match config.sections.get("server") {
        None | Some(serde_json::Value::Null) => Ok(ServerSection::default()),
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|e| ConfigError::Invalid(format!("{file}: section `server`: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(server: &str) -> String {
        format!(
            "version: 1\norg: t\nenvironments:\n  dev: {{ order: 1 }}\nstacks:\n  root: live\n  layout: \"{{env}}/{{region}}/{{stack}}\"\n{server}"
        )
    }

    #[test]
    fn flags_win_over_the_section_and_secrets_come_from_env() {
        let section = server_section(
            "sluice.yaml",
            &yaml("server:\n  listen: 0.0.0.0:9000\n  workers: 4\n  lease_seconds: 5\n"),
        )
        .unwrap();
        assert_eq!(section.workers, Some(4));
        let args = ServeArgs {
            listen: Some("127.0.0.1:0".into()),
            repo: ".".into(),
            ..Default::default()
        };
        let env = |k: &str| (k == WEBHOOK_SECRET_ENV).then(|| "s3cret".to_string());
        let c = ServerConfig::resolve(&args, &section, env, Path::new("/tmp")).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:0");
        assert_eq!((c.workers, c.lease), (4, Duration::from_secs(5)));
        assert!(c.webhook_secret.is_some());
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = ServerConfig::resolve(&args, &section, |_| None, Path::new("/tmp")).unwrap();
        assert!(c.webhook_secret.is_none());
    }

    #[test]
    fn a_github_app_needs_an_id_and_a_key_from_the_environment() {
        let args = ServeArgs {
            repo: ".".into(),
            ..Default::default()
        };
        let resolve = |section: &ServerSection, vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            ServerConfig::resolve(
                &args,
                section,
                |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
                Path::new("/tmp"),
            )
        };
        let none = resolve(&ServerSection::default(), &[]).unwrap();
        assert!(none.github.is_none());
        let section = server_section(
            "sluice.yaml",
            &yaml("server:\n  github:\n    app_id: 7\n    api_url: https://ghe.example/api/v3\n"),
        )
        .unwrap();
        let err = resolve(&section, &[]).unwrap_err().to_string();
        assert!(err.contains(GITHUB_APP_KEY_ENV), "{err}");
        let err = resolve(&ServerSection::default(), &[(GITHUB_APP_KEY_ENV, "x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no app id"), "{err}");
        // A key that is not an RSA PEM is named by where it came from, never printed.
        let err = resolve(&section, &[(GITHUB_APP_KEY_ENV, "not-a-pem-s3cret")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(GITHUB_APP_KEY_ENV) && !err.contains("s3cret"),
            "{err}"
        );
        let err = resolve(&section, &[(GITHUB_APP_ID_ENV, "seven")])
            .unwrap_err()
            .to_string();
        assert!(err.contains(GITHUB_APP_ID_ENV), "{err}");
        let err = server_section("sluice.yaml", &yaml("server:\n  github:\n    app: 7\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("app"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = server_section("sluice.yaml", &yaml("server:\n  wrokers: 2\n")).unwrap_err();
        assert!(err.to_string().contains("wrokers"), "{err}");
        let section = ServerSection {
            lease_seconds: Some(0),
            ..Default::default()
        };
        let args = ServeArgs {
            repo: ".".into(),
            ..Default::default()
        };
        let err = ServerConfig::resolve(&args, &section, |_| None, Path::new("/tmp")).unwrap_err();
        assert!(err.to_string().contains("server.lease_seconds"), "{err}");
        let args = ServeArgs {
            listen: Some("localhost".into()),
            repo: ".".into(),
            ..Default::default()
        };
        let err = ServerConfig::resolve(&args, &ServerSection::default(), |_| None, Path::new("/"))
            .unwrap_err();
        assert!(err.to_string().contains("--listen"), "{err}");
    }

    #[test]
    fn claims_take_up_to_claim_batch_jobs() {
        let args = ServeArgs {
            repo: ".".into(),
            ..Default::default()
        };
        let resolve = |yaml_text: &str| {
            let section = server_section("sluice.yaml", &yaml(yaml_text)).unwrap();
            ServerConfig::resolve(&args, &section, |_| None, Path::new("/tmp"))
        };
        assert_eq!(
            resolve("server: {}\n").unwrap().claim_batch,
            DEFAULT_CLAIM_BATCH
        );
        assert_eq!(
            resolve("server:\n  claim_batch: 3\n").unwrap().claim_batch,
            3
        );
        assert_eq!(
            resolve("server:\n  claim_batch: 100000\n")
                .unwrap()
                .claim_batch,
            MAX_CLAIM_BATCH
        );
        let err = resolve("server:\n  claim_batch: 0\n").unwrap_err();
        assert!(err.to_string().contains("server.claim_batch"), "{err}");
    }
}
