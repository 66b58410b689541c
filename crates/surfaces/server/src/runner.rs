//! The runner protocol (DESIGN.md §1 "as a runner", §4 `jobs`, §8): plans need the engine and
//! the stack's cloud role, so the server does not run them; it queues one `runner.plan` job per
//! stack change and runners (`sluice runner`, or the loop `sluice serve --runner` runs in
//! process) take them over HTTP:
//!
//! - `POST /api/v1/runner/claim`: the oldest plan job, under a lease whose token fences every
//!   later call (204 when there is none);
//! - `POST /api/v1/runner/jobs/{id}/heartbeat`: keeps the lease while the engine runs;
//! - `POST /api/v1/runner/jobs/{id}/result`: the plan file and plan JSON with their digests,
//!   or the plan's failure with a redacted stderr excerpt.
//!
//! Callers are runners: a sluice token of scope `runner` (`sluice token create --scope runner`),
//! or an OIDC JWT verified against the trust policy's issuers that the policy lets run stage
//! `plan` on the job's unit (its cloud role goes back with the claim). Refused: no or a bad
//! credential (401), the trust policy says no (403), a job the caller does not hold (a wrong
//! or expired lease, or another runner's: 409), bytes that do not hash to the digest given
//! (400); nothing is stored then, and each refusal of an authenticated caller is a
//! `runner.refused` event.
//!
//! A good upload is handled as `sluice pr --run-plans --record` handles a plan: the artifacts go
//! to the plan store (encrypted with the artifact key, named by their plaintext digest), the PR
//! pipeline runs again for the head with this plan (and those recorded before for the head's
//! other stacks) through `sluice_flow::pr::run_with`, and the stack's stages 4–6 are recorded
//! as signed statements in one transaction with the job's completion and a `pr.publish` job.
//! Stage 4's statement names the runner's identity; stages 5–6 the server's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_flow::pr::{GivenPlan, PlanSource, PlanState, PrOptions, PrReport};
use sluice_iac::store::{Digest as PlanDigest, FsPlanStore, PlanStore as _};
use sluice_model::change::UnitKind;
use sluice_model::plan::Plan;
use sluice_model::stage::Stage;
use sluice_model::trust::{Action, Claims, CloudRole, Unit};
use sluice_recorder::evidence::{ChangeSubject, EvidenceError, Identity, pr_entries};
use sluice_state::Principal;
use sluice_store::{
    ChangeStore as _, Claimant, EventRecord, JobQueue as _, Lease, NewJob, Scope, StageOutcome,
    Store as _, StoreError, TokenStore as _, Transaction,
};
use utoipa::ToSchema;

use crate::App;
use crate::api::{ApiError, Failure};
use crate::metrics::JobOutcome;
use crate::worker::job_event;

/// The kind of a plan job (runners only claim kinds under `runner.`).
pub const RUNNER_PLAN_JOB: &str = "runner.plan";

/// The key of a pull request's plan jobs: its own, so that plans waiting for a runner never hold
/// up the PR's other jobs (publishing, reviews, commands); plans of one PR run one at a time.
pub fn plan_key(pr_key: &str) -> String {
    format!("{pr_key}:plan")
}

/// The plan jobs a pipeline run leads to: one per affected stack whose plan was not run and
/// could be (validation passed, the stack still exists at head), for `head` (superseding the
/// plan jobs of other heads of the PR).
pub fn plan_jobs(
    report: &PrReport,
    repo: &str,
    source: &str,
    installation: Option<u64>,
    max_attempts: u32,
) -> Vec<NewJob> {
    let Some(pr) = report.pr else {
        return Vec::new();
    };
    if !report.validation.passed {
        return Vec::new();
    }
    report
        .stacks
        .iter()
        .filter(|s| matches!(s.plan, PlanState::NotRun { .. }))
        .filter(|s| s.status != sluice_model::affected::UnitStatus::Deleted)
        .map(|s| {
            let mut job = NewJob::new(
                RUNNER_PLAN_JOB,
                &plan_key(&crate::webhook::pr_key(repo, pr)),
                json!({"repo": repo, "pr": pr, "base_sha": report.base, "head_sha": report.head,
                    "installation": installation, "unit": s.id, "env": s.env,
                    "change_id": s.change_id.to_string(), "source": source}),
            )
            .superseding(&report.head);
            job.max_attempts = max_attempts;
            job
        })
        .collect()
}

/// The cancellations a webhook delivery adds for plan jobs: the PR's plan jobs when a new head
/// supersedes its pipeline (their plans would be of an older head) or the PR is closed.
pub fn plan_cancellations(plan: &crate::webhook::DeliveryPlan) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for job in &plan.jobs {
        if job.kind == crate::webhook::PIPELINE_JOB && job.supersede {
            out.push((
                plan_key(&job.serial_key),
                format!(
                    "superseded by a newer head {}",
                    job.head_sha.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
    if let Some((key, reason)) = &plan.cancel
        && !key.ends_with(":plan")
    {
        out.push((plan_key(key), reason.clone()));
    }
    out
}

// ---- who is calling ----------------------------------------------------------------------------

/// A verified runner.
#[derive(Debug, Clone)]
pub enum RunnerCaller {
    /// A sluice token of scope `runner`.
    Token { id: String, name: String },
    /// A verified OIDC token; the trust policy decides per unit.
    Oidc(Box<Claims>),
}

impl RunnerCaller {
    /// How statements and events name it.
    pub fn identity(&self) -> String {
        match self {
            RunnerCaller::Token { id, name } => format!("runner-token:{name}#{id}"),
            RunnerCaller::Oidc(claims) => claims.identity().to_string(),
        }
    }

    /// The lease owner of the jobs this caller claims: the same identity always holds them.
    fn worker(&self) -> String {
        format!("runner:{}", self.identity())
    }

    /// Whether the caller may plan `unit` in `env`, and the cloud role it runs as (pure over
    /// the trust policy: a `runner` token has no cloud role and may plan any unit).
    fn may_plan(
        &self,
        policy: Option<&sluice_model::trust::TrustPolicy>,
        unit: &str,
        env: &str,
    ) -> Result<Option<CloudRole>, String> {
        match self {
            RunnerCaller::Token { .. } => Ok(None),
            RunnerCaller::Oidc(claims) => {
                let Some(policy) = policy else {
                    return Err("no trust policy is configured: OIDC runners may do nothing".into());
                };
                let unit = Unit {
                    id: unit.to_string(),
                    env: env.to_string(),
                };
                policy
                    .authorize(claims, Action::Run(Stage::Plan), &unit)
                    .map(|g| g.cloud_role)
                    .map_err(|r| r.to_string())
            }
        }
    }
}

fn unauthorized(message: impl Into<String>) -> Failure {
    Failure(StatusCode::UNAUTHORIZED, message.into())
}

impl FromRequestParts<Arc<App>> for RunnerCaller {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Failure> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(unauthorized(
                "a bearer token is required: a sluice runner token (sluice token create \
                 --scope runner) or the runner's OIDC token",
            ));
        };
        if sluice_store::tokens::split_token(token).is_some() {
            return match app.store.verify_token_grants(token).await {
                Ok(Some(t)) if t.scope == Scope::Runner => Ok(RunnerCaller::Token {
                    id: t.id,
                    name: t.name,
                }),
                Ok(Some(t)) => Err(unauthorized(format!(
                    "sluice token {} has scope `{}`: runners need a `runner` token",
                    t.id,
                    t.scope.as_str()
                ))),
                Ok(None) => Err(unauthorized(
                    "the sluice token is not valid (unknown, revoked or wrong)",
                )),
                Err(e) => Err(crate::api::unavailable(e)),
            };
        }
        match app.state.auth.authenticate("runner", token).await {
            Ok(Principal::Runner(claims)) => Ok(RunnerCaller::Oidc(Box::new(claims))),
            Ok(_) => Err(unauthorized("not a runner credential")),
            Err(e) if e.is_credentials() => Err(unauthorized(e.to_string())),
            Err(e) => Err(crate::api::unavailable(e)),
        }
    }
}

// ---- bodies ------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ClaimRequest {
    /// The runner's name, for the lease owner and logs (host name, say).
    #[serde(default)]
    pub runner: Option<String>,
}

/// A plan job handed to a runner.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimedJob {
    pub job: i64,
    pub kind: String,
    /// The lease token: name it in every heartbeat and the upload.
    pub lease: i64,
    /// Heartbeat well within this.
    pub lease_seconds: u64,
    /// Where the revision comes from: the repository path or git URL the server reads.
    pub source: String,
    pub repo: String,
    pub pr: u64,
    pub base_sha: String,
    pub head_sha: String,
    /// The stack id.
    pub unit: String,
    pub env: Option<String>,
    /// The correlation id of the stack's change.
    pub change_id: String,
    /// The cloud role the trust policy gives this runner for the unit (OIDC runners).
    #[schema(value_type = Option<Object>)]
    pub cloud_role: Option<CloudRole>,
    /// The caller as statements will name it.
    pub identity: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatRequest {
    pub lease: i64,
}

/// What a runner reports for its job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PlanUpload {
    Planned {
        /// The engine as it named itself (`terraform 1.11.4`).
        engine: String,
        /// The saved plan file, base64.
        plan_file: String,
        /// `sha256:` of the plan file's bytes.
        plan_file_digest: String,
        /// `show -json` of the plan, base64.
        plan_json: String,
        plan_json_digest: String,
        #[serde(default)]
        duration_ms: u64,
    },
    Failed {
        /// `engine_missing`, `auth`, `module`, `state_lock`, `plan`, …
        class: String,
        message: String,
        #[serde(default)]
        hint: Option<String>,
        /// The engine's last stderr lines, redacted by the runner (and again here).
        #[serde(default)]
        stderr_excerpt: Vec<String>,
        #[serde(default)]
        duration_ms: u64,
    },
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadRequest {
    pub lease: i64,
    pub result: PlanUpload,
}

/// What the server recorded for an upload.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadAnswer {
    pub change_id: String,
    /// Stage 4's outcome: `passed` or `failed`.
    pub plan: String,
    /// What approvals bind to, when planned.
    pub plan_digest: Option<String>,
    /// The stages signed by this upload.
    pub recorded: Vec<String>,
}

// ---- refusals ----------------------------------------------------------------------------------

/// Records a refusal of an authenticated runner as a `runner.refused` event (best effort: the
/// refusal stands even if the store cannot take the event) and answers it.
async fn refuse(
    app: &App,
    caller: &RunnerCaller,
    job: Option<sluice_store::JobId>,
    status: StatusCode,
    message: String,
) -> Failure {
    let mut tx = Transaction::new();
    tx.append_event(
        EventRecord::new(
            "runner",
            "runner.refused",
            json!({"job": job, "identity": caller.identity(), "status": status.as_u16(),
                "reason": message}),
        ),
        None,
    );
    if let Err(e) = app.store.commit(tx).await {
        tracing::warn!(error = %e, "recording a runner refusal failed");
    }
    tracing::info!(identity = %caller.identity(), job = job.map(|j| j.0), status = status.as_u16(), reason = %message,
        "runner refused");
    Failure(status, message)
}

/// The job `id` if `caller` holds it under `lease` (a plan job, running, this lease token, this
/// caller's claim); otherwise why not (409).
async fn held(
    app: &App,
    caller: &RunnerCaller,
    id: sluice_store::JobId,
    lease: i64,
) -> Result<sluice_store::Job, Failure> {
    let job = app
        .store
        .job(id)
        .await
        .map_err(crate::api::unavailable)?
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no job {id}")))?;
    let why = if job.kind != RUNNER_PLAN_JOB {
        Some(format!("job {id} is not a runner job"))
    } else if job.state != sluice_store::JobState::Running {
        Some(format!(
            "job {id} is {}{}",
            job.state.as_str(),
            job.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ))
    } else if job.lease_token != lease {
        Some(format!(
            "lease {lease} of job {id} is not current (claimed again since)"
        ))
    } else if job.lease_owner.as_deref() != Some(caller.worker().as_str()) {
        Some(format!("job {id} is held by another runner"))
    } else if job
        .lease_until
        .is_some_and(|u| u < sluice_store::now_millis())
    {
        Some(format!("the lease of job {id} expired"))
    } else {
        None
    };
    match why {
        None => Ok(job),
        Some(why) => Err(refuse(app, caller, Some(id), StatusCode::CONFLICT, why).await),
    }
}

// ---- handlers ----------------------------------------------------------------------------------

/// Claims the oldest plan job (runners only).
#[utoipa::path(post, path = "/runner/claim", request_body = ClaimRequest,
    security(("bearer" = [])),
    responses((status = 200, body = ClaimedJob), (status = 204, description = "no job waits"),
        (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
pub async fn claim(
    caller: RunnerCaller,
    State(app): State<Arc<App>>,
    Json(body): Json<ClaimRequest>,
) -> Result<Response, Failure> {
    let name = body.runner.unwrap_or_default();
    let claimed = app
        .store
        .claim_for(&caller.worker(), app.config.lease, Claimant::Runner)
        .await
        .map_err(crate::api::unavailable)?;
    let Some(sluice_store::Claimed { job, lease }) = claimed else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let p = &job.payload;
    let text = |k: &str| p[k].as_str().unwrap_or_default().to_string();
    let unit = text("unit");
    let env = p["env"].as_str().map(str::to_string);
    let role = match caller.may_plan(
        app.config.state.trust.as_deref(),
        &unit,
        env.as_deref().unwrap_or("-"),
    ) {
        Ok(role) => role,
        Err(why) => {
            // Not this runner's job: give it back untouched for a runner that may run it.
            let _ = app.store.release(lease).await;
            return Err(refuse(
                &app,
                &caller,
                Some(job.id),
                StatusCode::FORBIDDEN,
                format!("the trust policy refuses to let this runner plan {unit}: {why}"),
            )
            .await);
        }
    };
    tracing::info!(job = %job.id, unit = %unit, runner = %name, identity = %caller.identity(),
        correlation_id = %text("change_id"), "plan job claimed by a runner");
    Ok(Json(ClaimedJob {
        job: job.id.0,
        kind: job.kind.clone(),
        lease: lease.token,
        lease_seconds: app.config.lease.as_secs(),
        source: text("source"),
        repo: text("repo"),
        pr: p["pr"].as_u64().unwrap_or_default(),
        base_sha: text("base_sha"),
        head_sha: text("head_sha"),
        unit,
        env,
        change_id: text("change_id"),
        cloud_role: role,
        identity: caller.identity(),
    })
    .into_response())
}

/// Extends the lease of a held plan job.
#[utoipa::path(post, path = "/runner/jobs/{id}/heartbeat", request_body = HeartbeatRequest,
    params(("id" = i64, Path, description = "the job id")),
    security(("bearer" = [])),
    responses((status = 200, description = "the lease is extended"), (status = 401, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn heartbeat(
    caller: RunnerCaller,
    State(app): State<Arc<App>>,
    Path(id): Path<sluice_store::JobId>,
    Json(body): Json<HeartbeatRequest>,
) -> Result<Json<Value>, Failure> {
    held(&app, &caller, id, body.lease).await?;
    let lease = Lease {
        job_id: id,
        token: body.lease,
    };
    match app.store.heartbeat(lease, app.config.lease).await {
        Ok(()) => Ok(Json(
            json!({"job": id, "lease_seconds": app.config.lease.as_secs()}),
        )),
        Err(StoreError::LeaseLost { reason, .. }) => Err(refuse(
            &app,
            &caller,
            Some(id),
            StatusCode::CONFLICT,
            format!("job {id}: {}", reason.unwrap_or_default()),
        )
        .await),
        Err(e) => Err(crate::api::unavailable(e)),
    }
}

fn bad_request(message: String) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message)
}

/// Decodes one uploaded artifact and checks it against its digest.
fn artifact(field: &str, b64: &str, digest: &str) -> Result<(Vec<u8>, PlanDigest), String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("`{field}` is not base64: {e}"))?;
    let claimed = PlanDigest::parse(digest)
        .ok_or_else(|| format!("`{field}_digest` {digest:?} is not a sha256 digest"))?;
    let actual = PlanDigest::of(&bytes);
    if actual != claimed {
        return Err(format!(
            "`{field}` hashes to {actual}, not the `{field}_digest` given ({claimed})"
        ));
    }
    Ok((bytes, actual))
}

/// The plan store the CLI path uses for this server's repository (`<state dir>/.sluice`, where
/// `sluice apply --repo` finds the plan an approval binds to).
fn plan_store(app: &App) -> Result<FsPlanStore, String> {
    let root = app.config.state_dir.join(".sluice");
    // Plans are secrets: the folder ignores itself when it is made in a work tree.
    sluice_evidence::location::prepare_state_dir(&root).map_err(|e| e.to_string())?;
    Ok(FsPlanStore::new(root))
}

/// Accepts a runner's result for a held plan job (see the module documentation).
#[utoipa::path(post, path = "/runner/jobs/{id}/result", request_body = UploadRequest,
    params(("id" = i64, Path, description = "the job id")),
    security(("bearer" = [])),
    responses((status = 200, body = UploadAnswer), (status = 400, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError), (status = 503, body = ApiError)))]
pub async fn result(
    caller: RunnerCaller,
    State(app): State<Arc<App>>,
    Path(id): Path<sluice_store::JobId>,
    Json(body): Json<UploadRequest>,
) -> Result<Json<UploadAnswer>, Failure> {
    let job = held(&app, &caller, id, body.lease).await?;
    let lease = Lease {
        job_id: id,
        token: body.lease,
    };
    let p = job.payload.clone();
    let text = |k: &str| p[k].as_str().unwrap_or_default().to_string();
    let (unit, change_id) = (text("unit"), text("change_id"));
    let env = p["env"].as_str().unwrap_or("-").to_string();
    if let Err(why) = caller.may_plan(app.config.state.trust.as_deref(), &unit, &env) {
        return Err(refuse(
            &app,
            &caller,
            Some(id),
            StatusCode::FORBIDDEN,
            format!("the trust policy refuses to let this runner plan {unit}: {why}"),
        )
        .await);
    }
    // Checked before anything is stored: the bytes must be what the digests say.
    let (given, duration_ms, artifacts) = match &body.result {
        PlanUpload::Planned {
            engine,
            plan_file,
            plan_file_digest,
            plan_json,
            plan_json_digest,
            duration_ms,
        } => {
            let checked = artifact("plan_file", plan_file, plan_file_digest)
                .and_then(|f| artifact("plan_json", plan_json, plan_json_digest).map(|j| (f, j)));
            let ((file, file_digest), (json_bytes, json_digest)) = match checked {
                Ok(pair) => pair,
                Err(why) => {
                    return Err(
                        refuse(&app, &caller, Some(id), StatusCode::BAD_REQUEST, why).await,
                    );
                }
            };
            let plan = Plan::parse(&format!("{unit}/plan.json"), &json_bytes)
                .map_err(|e| bad_request(format!("`plan_json`: {e}")))?;
            (
                GivenPlan::Planned {
                    plan: Box::new(plan),
                    source: PlanSource::Engine {
                        engine: engine.chars().take(100).collect(),
                        plan_digest: file_digest.to_string(),
                        plan_json_digest: json_digest.to_string(),
                    },
                },
                *duration_ms,
                Some((file, json_bytes)),
            )
        }
        PlanUpload::Failed {
            class,
            message,
            hint,
            stderr_excerpt,
            duration_ms,
        } => (
            GivenPlan::Failed(PlanState::Failed {
                class: class.chars().take(40).collect(),
                message: message.chars().take(4000).collect(),
                hint: hint.clone(),
                stderr_excerpt: stderr_excerpt
                    .iter()
                    .take(40)
                    .map(|l| l.chars().take(500).collect())
                    .collect(),
            }),
            *duration_ms,
            None,
        ),
    };
    if let Some((file, json_bytes)) = artifacts {
        let store = plan_store(&app).map_err(crate::api::unavailable)?;
        tokio::task::spawn_blocking(move || {
            store.put_secret(&file)?;
            store.put_secret(&json_bytes).map(|_| ())
        })
        .await
        .map_err(crate::api::unavailable)?
        .map_err(crate::api::unavailable)?;
    }

    let (base, head) = (text("base_sha"), text("head_sha"));
    let pr = p["pr"].as_u64();
    app.revisions
        .ensure(&[&base, &head])
        .await
        .map_err(crate::api::unavailable)?;
    let mut plans = earlier_plans(&app, &job, &unit).await;
    plans.insert(unit.clone(), given);
    let repo = app.revisions.path().to_path_buf();
    let (b, h) = (base.clone(), head.clone());
    let report = tokio::task::spawn_blocking(move || {
        let plans = redacted(&repo, &h, plans);
        sluice_flow::pr::run_with(
            &repo,
            &b,
            &h,
            &PrOptions {
                pr,
                given: plans,
                ..Default::default()
            },
        )
    })
    .await
    .map_err(crate::api::unavailable)?
    .map_err(|e| crate::api::unavailable(format!("the pipeline for {head}: {e}")))?;

    let Some(change) = report
        .changes
        .iter()
        .find(|c| c.kind == UnitKind::Stack && c.change_id.to_string() == change_id)
        .map(|c| ChangeSubject {
            id: c.change_id.clone(),
            base: Some(report.base.clone()),
            kind: c.kind,
        })
    else {
        return Err(refuse(
            &app,
            &caller,
            Some(id),
            StatusCode::CONFLICT,
            format!("{change_id} is no longer a change of {head}"),
        )
        .await);
    };
    let runner = Identity {
        actor: "sluice-runner".into(),
        identity: caller.identity(),
    };
    let server = Identity {
        actor: "sluice-serve".into(),
        identity: format!("sluice-serve:{}", app.config.replica),
    };
    let mut entries: Vec<_> = pr_entries(&report, &change, &runner)
        .into_iter()
        .filter(|e| entry_stage(e) == Stage::Plan)
        .collect();
    entries.extend(
        pr_entries(&report, &change, &server)
            .into_iter()
            .filter(|e| matches!(entry_stage(e), Stage::Policy | Stage::Approve)),
    );
    let stack = report.stacks.iter().find(|s| s.change_id == change.id);
    let plan_digest = stack.and_then(|s| match &s.plan {
        PlanState::Planned {
            source: PlanSource::Engine { plan_digest, .. },
        } => Some(plan_digest.clone()),
        _ => None,
    });
    let planned = plan_digest.is_some();
    let publish = match (&app.github, p["installation"].as_u64(), pr) {
        (Some(_), Some(installation), Some(pr)) => Some(crate::publish::publish_job(
            &report,
            &text("repo"),
            pr,
            installation,
            app.config.max_attempts,
        )),
        _ => None,
    };
    let event = job_event(
        &job,
        json!({"change": change_id, "unit": unit, "planned": planned, "plan_digest": plan_digest,
            "runner": caller.identity(), "verdict": report.verdict.as_str()}),
    );
    let recorded = app
        .evidence
        .record_many_with(&[(change.clone(), entries)], |tx: &mut Transaction| {
            tx.append_event(event.clone(), None).complete_job(lease);
            if let Some(p) = &publish {
                tx.enqueue(p.clone());
            }
        })
        .await;
    let seconds = duration_ms as f64 / 1000.0;
    match recorded {
        Ok(recorded) => {
            app.metrics.plan_duration.observe(seconds);
            app.metrics
                .job(RUNNER_PLAN_JOB, JobOutcome::Succeeded, seconds);
            tracing::info!(correlation_id = %change_id, job = %id, planned,
                identity = %caller.identity(), "runner plan recorded");
            Ok(Json(UploadAnswer {
                change_id,
                plan: if planned { "passed" } else { "failed" }.into(),
                plan_digest,
                recorded: recorded
                    .changes
                    .iter()
                    .flat_map(|c| c.stages.iter().map(|s| s.stage.clone()))
                    .collect(),
            }))
        }
        Err(EvidenceError::Store(e)) => match crate::worker::lease_lost(&e) {
            Some(why) => Err(refuse(
                &app,
                &caller,
                Some(id),
                StatusCode::CONFLICT,
                format!("job {id}: {why}"),
            )
            .await),
            None => Err(crate::api::unavailable(e)),
        },
        Err(e @ EvidenceError::Gate { .. }) => {
            Err(refuse(&app, &caller, Some(id), StatusCode::CONFLICT, e.to_string()).await)
        }
        Err(e) => Err(crate::api::unavailable(e)),
    }
}

fn entry_stage(e: &sluice_recorder::evidence::StageEntry) -> Stage {
    match e {
        sluice_recorder::evidence::StageEntry::Ran(ev) => ev.stage,
        sluice_recorder::evidence::StageEntry::NotRun { stage, .. } => *stage,
    }
}

/// A failure's message and excerpt redacted with the head's redaction rules (the runner redacted
/// them already; the server does not rely on it).
fn redacted(
    repo: &std::path::Path,
    head: &str,
    mut plans: BTreeMap<String, GivenPlan>,
) -> BTreeMap<String, GivenPlan> {
    let rules = sluice_flow::workspace::open(repo)
        .and_then(|r| sluice_flow::workspace::revision(&r, head))
        .ok()
        .and_then(|r| {
            sluice_iac::config::PlanConfig::from_section(r.config.sections.get("plan")).ok()
        })
        .map(|c| c.redaction_rules())
        .unwrap_or_default();
    for given in plans.values_mut() {
        if let GivenPlan::Failed(PlanState::Failed {
            message,
            stderr_excerpt,
            ..
        }) = given
        {
            *message = rules.redact_text(message);
            for line in stderr_excerpt.iter_mut() {
                *line = rules.redact_text(line);
            }
        }
    }
    plans
}

/// The plans recorded before for the head's other stacks (by earlier uploads), so that the
/// report published after this upload shows every plan made so far. A plan that cannot be read
/// back is left out (that stack shows as not planned in the report; its record stands).
async fn earlier_plans(
    app: &App,
    job: &sluice_store::Job,
    unit: &str,
) -> BTreeMap<String, GivenPlan> {
    let mut out = BTreeMap::new();
    let Some(head) = job.head_sha.as_deref() else {
        return out;
    };
    let key = job.serial_key.trim_end_matches(":plan");
    let Ok(changes) = crate::review::changes_at(app, key, Some(head)).await else {
        return out;
    };
    let store = match plan_store(app) {
        Ok(s) => s,
        Err(_) => return out,
    };
    for change in changes {
        let Ok(results) = app.store.stage_results(&change).await else {
            continue;
        };
        let Some(plan) = results.iter().rev().find(|r| r.stage == "plan") else {
            continue;
        };
        let d = &plan.detail["details"];
        let Some(stack) = d["stack"].as_str().filter(|s| *s != unit) else {
            continue;
        };
        let given = match plan.outcome {
            StageOutcome::Passed => {
                let (Some(plan_digest), Some(json_digest)) =
                    (d["plan_digest"].as_str(), d["plan_json_digest"].as_str())
                else {
                    continue;
                };
                let Some(json_key) = PlanDigest::parse(json_digest) else {
                    continue;
                };
                let store = store.clone();
                let bytes = tokio::task::spawn_blocking(move || store.get(&json_key)).await;
                let Ok(Ok(Some(bytes))) = bytes else { continue };
                let Ok(parsed) = Plan::parse(&format!("{stack}/plan.json"), &bytes) else {
                    continue;
                };
                let engine = d["plan_artifact"]
                    .as_str()
                    .and_then(|a| a.split_once(" (").map(|(_, e)| e.trim_end_matches(')')))
                    .unwrap_or("engine")
                    .to_string();
                GivenPlan::Planned {
                    plan: Box::new(parsed),
                    source: PlanSource::Engine {
                        engine,
                        plan_digest: plan_digest.to_string(),
                        plan_json_digest: json_digest.to_string(),
                    },
                }
            }
            StageOutcome::Failed => GivenPlan::Failed(PlanState::Failed {
                class: d["class"].as_str().unwrap_or("plan").to_string(),
                message: d["message"].as_str().unwrap_or_default().to_string(),
                hint: d["hint"].as_str().map(str::to_string),
                stderr_excerpt: Vec::new(),
            }),
            _ => continue,
        };
        out.insert(stack.to_string(), given);
    }
    out
}

/// Where a runner's plan work goes by default: a folder of its own under the temp dir.
pub fn default_work_dir() -> PathBuf {
    std::env::temp_dir().join(format!("sluice-runner-{}", std::process::id()))
}
