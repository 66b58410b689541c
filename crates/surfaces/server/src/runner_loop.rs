//! The runner's side of the protocol ([`crate::runner`]): `sluice runner` and the loop
//! `sluice serve --runner` runs in process. It polls the server for a plan job, fetches the
//! revision the job names (a repository path, or a git URL mirrored under the work folder),
//! plans the stack in a fresh workspace with the same engine driver `sluice pr --run-plans`
//! uses, heartbeats while the engine runs, uploads the plan file and plan JSON (or the failure)
//! with their digests, and deletes the workspace.
//!
//! The engine gets the unit's cloud role the trust policy named in the claim and the job's OIDC
//! token file, and none of the runner's long-lived cloud keys (`sluice_identity::engine_env`):
//! they are stripped, and in a protected environment they fail the job. The plan file never
//! touches the runner's disk outside the workspace: the driver's plan store here keeps the
//! bytes in memory until they are uploaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use sluice_iac::config::PlanConfig;
use sluice_iac::driver::{Driver, Outcome};
use sluice_iac::store::{Digest, PlanStore, StoreError};
use tokio::sync::watch;

use crate::repo::{RepoSource, Revisions};
use crate::runner::{ClaimedJob, PlanUpload, UploadAnswer, UploadRequest};

/// How the runner proves who it is.
#[derive(Clone)]
pub enum Credential {
    /// A sluice token of scope `runner`.
    Token(String),
    /// A file holding the runner's current OIDC token (re-read for every request, so a
    /// rotated token is picked up); also the engine's web-identity token file.
    OidcFile(PathBuf),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(…)"),
            Credential::OidcFile(p) => write!(f, "OidcFile({})", p.display()),
        }
    }
}

/// What one runner process does.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The server's base URL (`http://127.0.0.1:8080`).
    pub server: String,
    pub credential: Credential,
    /// Workspaces (one per job, deleted after it) and the mirror of a remote repository.
    pub work_dir: PathBuf,
    /// Take at most one job, and stop when none waits.
    pub once: bool,
    pub poll: Duration,
    /// The runner's name in leases and logs.
    pub name: String,
    /// The runner's environment, from which the engine's is made.
    pub env: BTreeMap<String, String>,
}

/// Why the runner stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("{0}")]
    Usage(String),
    #[error("the server refused the runner ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("{0}")]
    Io(String),
    /// `--once`: the server did not answer a claim (unreachable, or a 5xx) in
    /// [`ONCE_ATTEMPTS`] tries; nothing was run.
    #[error(
        "the server did not answer the runner's claim in {attempts} tries over {waited:?}: {last}"
    )]
    Unreachable {
        attempts: u32,
        waited: Duration,
        last: String,
    },
}

/// How many times `--once` asks for a job before it gives up on a server that does not answer.
/// A one-shot runner is a CI step: it should ride over a server restart or a dropped
/// connection (a few seconds), but fail the step with a clear error, not hang until the CI
/// job's own timeout, when the URL is wrong or the server is down.
pub const ONCE_ATTEMPTS: u32 = 5;

/// The longest pause between two of those tries.
const ONCE_MAX_PAUSE: Duration = Duration::from_secs(30);

/// The pause after failed try `attempt` (1-based) of `--once` before the next one, or `None`
/// when that was the last: the poll interval, doubled after each failure, at most 30 s (with
/// the default 2 s poll: 2, 4, 8, 16 s, so a little over 30 s in all).
pub fn once_retry_pause(attempt: u32, poll: Duration) -> Option<Duration> {
    if attempt >= ONCE_ATTEMPTS {
        return None;
    }
    let doubled = poll.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    Some(doubled.min(ONCE_MAX_PAUSE))
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Jobs whose result the server recorded.
    pub uploaded: u32,
    /// Jobs whose lease was lost before the upload (superseded, taken over).
    pub lost: u32,
}

/// The driver's plan store for one job: the plan file and JSON stay in memory until uploaded.
#[derive(Default)]
struct MemoryPlans(Mutex<BTreeMap<Digest, Vec<u8>>>);

impl PlanStore for MemoryPlans {
    fn put_secret(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(bytes);
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.clone(), bytes.to_vec());
        Ok(digest)
    }
    fn get(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned())
    }
    fn describe(&self) -> String {
        "the runner's memory (until uploaded)".into()
    }
}

struct Client {
    http: reqwest::Client,
    opts: RunnerOptions,
}

impl Client {
    fn bearer(&self) -> Result<String, RunnerError> {
        match &self.opts.credential {
            Credential::Token(t) => Ok(t.clone()),
            Credential::OidcFile(p) => std::fs::read_to_string(p)
                .map(|t| t.trim().to_string())
                .map_err(|e| RunnerError::Usage(format!("--oidc-token-file {}: {e}", p.display()))),
        }
    }

    async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, String), RunnerError> {
        let url = format!("{}/api/v1{path}", self.opts.server.trim_end_matches('/'));
        let resp = self
            .http
            .post(&url)
            .bearer_auth(self.bearer()?)
            .json(body)
            .send()
            .await
            .map_err(|e| RunnerError::Io(format!("POST {url}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| RunnerError::Io(format!("POST {url}: {e}")))?;
        Ok((status, text))
    }
}

fn refused(status: u16, body: &str) -> RunnerError {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(500).collect());
    RunnerError::Refused { status, message }
}

/// Runs until `stop` turns true (or, with `once`, after one job or none).
pub async fn run(
    opts: RunnerOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<RunSummary, RunnerError> {
    std::fs::create_dir_all(&opts.work_dir)
        .map_err(|e| RunnerError::Usage(format!("--work-dir {}: {e}", opts.work_dir.display())))?;
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            // A server that drops packets fails a try in seconds, not at the 300 s timeout
            // (which is for uploads of large plans).
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| RunnerError::Io(e.to_string()))?,
        opts,
    };
    let mut summary = RunSummary::default();
    // `--once`: failed claims so far, how long they waited, and the last failure.
    let mut failures = 0u32;
    let mut waited = Duration::ZERO;
    loop {
        if *stop.borrow() {
            return Ok(summary);
        }
        let claimed = client
            .post("/runner/claim", &json!({"runner": client.opts.name}))
            .await;
        // Why this claim failed, when it did and a retry may help.
        let failed = match claimed {
            Ok((200, body)) => {
                let job: ClaimedJob = serde_json::from_str(&body)
                    .map_err(|e| RunnerError::Io(format!("the claim's answer: {e}")))?;
                match run_job(&client, job).await? {
                    true => summary.uploaded += 1,
                    false => summary.lost += 1,
                }
                if client.opts.once {
                    return Ok(summary);
                }
                continue;
            }
            Ok((204, _)) if client.opts.once => return Ok(summary),
            Ok((204, _)) => None,
            // Credentials or policy: retrying will not help.
            Ok((status @ (401 | 403), body)) => return Err(refused(status, &body)),
            Ok((status, body)) => {
                let error = refused(status, &body);
                tracing::warn!(status, error = %error, "claiming a plan job failed");
                Some(error.to_string())
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming a plan job failed");
                Some(e.to_string())
            }
        };
        let pause = match (client.opts.once, failed) {
            (true, Some(last)) => {
                failures += 1;
                match once_retry_pause(failures, client.opts.poll) {
                    Some(pause) => {
                        waited += pause;
                        pause
                    }
                    None => {
                        return Err(RunnerError::Unreachable {
                            attempts: failures,
                            waited,
                            last,
                        });
                    }
                }
            }
            _ => client.opts.poll,
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Runs one claimed job; `Ok(false)` when its lease was lost (nothing recorded).
async fn run_job(client: &Client, job: ClaimedJob) -> Result<bool, RunnerError> {
    let started = Instant::now();
    tracing::info!(job = job.job, unit = %job.unit, correlation_id = %job.change_id,
        "planning for the server");
    // Heartbeats keep the lease while the engine runs; a lost lease stops them.
    let (lost_tx, lost_rx) = watch::channel(false);
    let beat = {
        let http = client.http.clone();
        let url = format!(
            "{}/api/v1/runner/jobs/{}/heartbeat",
            client.opts.server.trim_end_matches('/'),
            job.job
        );
        let bearer = client.bearer()?;
        let lease = job.lease;
        let every = Duration::from_secs(job.lease_seconds.max(3) / 3);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match http
                    .post(&url)
                    .bearer_auth(&bearer)
                    .json(&json!({"lease": lease}))
                    .send()
                    .await
                {
                    Ok(r) if r.status().as_u16() == 409 => {
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
            }
        })
    };
    let result = plan(client, &job).await;
    beat.abort();
    if *lost_rx.borrow() {
        tracing::info!(
            job = job.job,
            "the lease was lost while planning; nothing is uploaded"
        );
        return Ok(false);
    }
    let result = match result {
        Ok(r) => r,
        Err(e) => PlanUpload::Failed {
            class: "internal".into(),
            message: e,
            hint: None,
            stderr_excerpt: Vec::new(),
            duration_ms: started.elapsed().as_millis() as u64,
        },
    };
    let body = serde_json::to_value(UploadRequest {
        lease: job.lease,
        result,
    })
    .map_err(|e| RunnerError::Io(e.to_string()))?;
    let (status, text) = client
        .post(&format!("/runner/jobs/{}/result", job.job), &body)
        .await?;
    match status {
        200 => {
            let answer: Option<UploadAnswer> = serde_json::from_str(&text).ok();
            tracing::info!(job = job.job, answer = ?answer, "plan uploaded");
            Ok(true)
        }
        409 => {
            tracing::info!(job = job.job, error = %refused(status, &text), "the upload was refused: the job is no longer held");
            Ok(false)
        }
        _ => Err(refused(status, &text)),
    }
}

/// Fetches the revision and plans the job's stack in a fresh workspace (deleted on return).
async fn plan(client: &Client, job: &ClaimedJob) -> Result<PlanUpload, String> {
    let workspace = tempfile::Builder::new()
        .prefix(&format!("job-{}-", job.job))
        .tempdir_in(&client.opts.work_dir)
        .map_err(|e| format!("{}: {e}", client.opts.work_dir.display()))?;
    let source = RepoSource::parse(&job.source, &client.opts.work_dir)?;
    let revisions = Revisions::new(source, &client.opts.work_dir);
    revisions.ensure(&[&job.base_sha, &job.head_sha]).await?;
    let repo = revisions.path().to_path_buf();
    let env = client.opts.env.clone();
    let token_file = match &client.opts.credential {
        Credential::OidcFile(p) => p.clone(),
        // No OIDC token: the engine gets no role (a runner token carries none).
        Credential::Token(_) => workspace.path().join("no-oidc-token"),
    };
    let job = job.clone_for_plan();
    let work = workspace.path().to_path_buf();
    let upload =
        tokio::task::spawn_blocking(move || plan_blocking(&repo, &job, &env, &token_file, &work))
            .await
            .map_err(|e| format!("the plan task: {e}"))?;
    drop(workspace);
    upload
}

/// What planning needs of a claim.
struct PlanJob {
    head: String,
    unit: String,
    env: Option<String>,
    change_id: String,
    cloud_role: Option<sluice_model::trust::CloudRole>,
}

impl ClaimedJob {
    fn clone_for_plan(&self) -> PlanJob {
        PlanJob {
            head: self.head_sha.clone(),
            unit: self.unit.clone(),
            env: self.env.clone(),
            change_id: self.change_id.clone(),
            cloud_role: self.cloud_role.clone(),
        }
    }
}

fn plan_blocking(
    repo: &Path,
    job: &PlanJob,
    runner_env: &BTreeMap<String, String>,
    token_file: &Path,
    work: &Path,
) -> Result<PlanUpload, String> {
    let started = Instant::now();
    let repository = sluice_flow::workspace::open(repo).map_err(|e| e.to_string())?;
    let revision =
        sluice_flow::workspace::revision(&repository, &job.head).map_err(|e| e.to_string())?;
    let org = revision.discover();
    let stack = org
        .stacks
        .iter()
        .find(|s| s.id == job.unit)
        .ok_or_else(|| format!("stack {} is not in {}", job.unit, job.head))?;
    let config = PlanConfig::from_section(revision.config.sections.get("plan")).map_err(|e| {
        e.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let role = job.cloud_role.clone().unwrap_or_default();
    let protected = job
        .env
        .as_deref()
        .is_some_and(|e| revision.config.is_protected(e));
    let engine_env = match sluice_identity::engine_env(
        runner_env,
        &sluice_identity::EngineCredentials {
            role: &role,
            token_file,
            work_dir: work,
            session_name: &format!("sluice-{}", job.change_id),
            protected,
        },
    ) {
        Ok(env) => env,
        Err(refusal) => {
            return Ok(PlanUpload::Failed {
                class: "auth".into(),
                message: refusal.to_string(),
                hint: Some(
                    "run the runner without long-lived cloud keys in its environment".into(),
                ),
                stderr_excerpt: Vec::new(),
                duration_ms: started.elapsed().as_millis() as u64,
            });
        }
    };
    for f in &engine_env.files {
        write_private(&f.path, &f.contents)?;
    }
    if !engine_env.stripped.is_empty() {
        tracing::info!(stripped = ?engine_env.stripped, "long-lived cloud variables kept from the engine");
    }
    let store = MemoryPlans::default();
    let driver = Driver {
        config: &config,
        store: &store,
        rules: config.redaction_rules(),
        path_var: None,
        engine_env: Some(engine_env.vars),
        work_root: work.join("plan"),
        plugin_cache: work.join("plugin-cache"),
    };
    let spec = sluice_flow::stack_spec::stack_spec(stack);
    let mut results = driver.plan_stacks(&revision.snapshot, &[spec]);
    let result = results.pop().ok_or("the driver planned nothing")?;
    let engine = result
        .engine
        .as_ref()
        .map_or_else(|| "engine".to_string(), |e| e.label());
    let duration_ms = started.elapsed().as_millis() as u64;
    Ok(match result.outcome {
        Outcome::Planned(p) => {
            let get = |d: &Digest| {
                store
                    .get(d)
                    .ok()
                    .flatten()
                    .ok_or_else(|| format!("the plan artifact {d} was not kept"))
            };
            let file_digest = p.plan_file.clone().unwrap_or_else(|| p.plan_digest.clone());
            let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
            PlanUpload::Planned {
                engine,
                plan_file: b64(&get(&file_digest)?),
                plan_file_digest: file_digest.to_string(),
                plan_json: b64(&get(&p.plan_json)?),
                plan_json_digest: p.plan_json.to_string(),
                duration_ms,
            }
        }
        Outcome::Failed(f) => PlanUpload::Failed {
            class: f.class.as_str().to_string(),
            message: f.message,
            hint: Some(f.hint.to_string()),
            stderr_excerpt: f.stderr_excerpt,
            duration_ms,
        },
    })
}

fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_shot_runner_tries_five_times_with_doubling_pauses() {
        let poll = Duration::from_secs(2);
        let pauses: Vec<_> = (1..=ONCE_ATTEMPTS)
            .map(|a| once_retry_pause(a, poll).map(|p| p.as_secs()))
            .collect();
        assert_eq!(pauses, vec![Some(2), Some(4), Some(8), Some(16), None]);
        // Capped, and nothing after the last try whatever the poll.
        assert_eq!(
            once_retry_pause(4, Duration::from_secs(60)),
            Some(ONCE_MAX_PAUSE)
        );
        assert_eq!(once_retry_pause(ONCE_ATTEMPTS + 3, poll), None);
    }
}
