//! The read API under `/api/v1` (bearer tokens of scope `read` or `admin`, made with
//! `sluice token create`): changes with their stages, one change by correlation id, its
//! evidence bundle, jobs, locks, the policy decision of a unit, and open backport items; and
//! the runner protocol under `/api/v1/runner` ([`crate::runner`], runner tokens or OIDC). The OpenAPI 3.1 document at
//! `/api/v1/openapi.json` is generated from the same annotations the router is built from
//! (utoipa-axum), so a route cannot exist without its documentation or the reverse.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_store::{
    BreakGlassStore as _, ChangeRecord, ChangeStore as _, JobFilter, JobQueue as _, JobState,
    Scope, StageResultRecord, TokenStore as _,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::App;

/// The API's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    pub error: String,
}

/// An API refusal: the status and what the body's `error` says.
pub struct Failure(pub StatusCode, pub String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(ApiError { error: self.1 })).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
        }
        r
    }
}

/// A store (or other dependency) that could not answer: 503, the cause only in the log.
pub(crate) fn unavailable(e: impl std::fmt::Display) -> Failure {
    internal(e)
}

fn internal(e: impl std::fmt::Display) -> Failure {
    tracing::error!(error = %e, "API request failed");
    Failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "the store is unavailable".into(),
    )
}

/// A caller holding a valid token of at least `read` scope.
pub struct Reader(#[allow(dead_code)] pub Scope);

impl FromRequestParts<Arc<App>> for Reader {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Failure> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = token else {
            return Err(Failure(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required (sluice token create --scope read)".into(),
            ));
        };
        match app.store.verify_token(token).await.map_err(internal)? {
            Some(scope) if scope.allows(Scope::Read) => Ok(Reader(scope)),
            _ => Err(Failure(
                StatusCode::UNAUTHORIZED,
                "the token is not valid".into(),
            )),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StageView {
    /// The stage's snake_case name (`validate`, `plan`, `policy`, …).
    pub stage: String,
    /// `passed`, `failed`, `blocked`, `not_run`, …
    pub outcome: String,
    pub detail: Value,
    /// `sha256:` digest of the signed statement, when signed.
    pub envelope: Option<String>,
    pub recorded_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeView {
    /// The correlation id.
    pub change_id: String,
    pub repo: String,
    pub pr: Option<u64>,
    pub base: Option<String>,
    pub head: String,
    pub env: String,
    /// `stack` or `app`.
    pub unit_kind: String,
    pub unit: String,
    pub created_at: i64,
    pub stages: Vec<StageView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: i64,
    pub kind: String,
    pub serial_key: String,
    pub head_sha: Option<String>,
    /// `queued`, `running`, `succeeded`, `dead` or `cancelled`.
    pub state: String,
    pub attempts: u32,
    pub max_attempts: u32,
    pub lease_owner: Option<String>,
    pub last_error: Option<String>,
    pub reason: Option<String>,
    pub delivery_id: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// One stack's state-domain lock as `sluice locks` shows it: the holder, its fencing token and
/// lease, the waiting queue, the stack's health, and the Terraform HTTP backend lock attached
/// to it (docs/approvals.md "State-domain locks").
#[derive(Debug, Serialize, ToSchema)]
pub struct LockView {
    pub unit: String,
    /// The change holding the lock (`repo#pr`, or a change id without a PR); `null` when free.
    pub holder: Option<String>,
    /// The holder's fencing token; `null` when free.
    pub fencing_token: Option<u64>,
    /// The last token handed out for this stack (never decreases).
    pub last_token: u64,
    /// What the holder is doing: `leased`, `applying` or `kept` (after a failed or interrupted
    /// apply: recovery required); `null` when free.
    pub tenure: Option<String>,
    /// When the holder took the lock, RFC 3339.
    pub acquired_at: Option<String>,
    /// When the holder's lease runs out unless renewed, RFC 3339; `null` for a kept lock
    /// (it never expires) or a free one.
    pub lease_expires_at: Option<String>,
    /// Why a kept lock is kept: `failed` or `interrupted`.
    pub kept_cause: Option<String>,
    /// Changes waiting for the lock, first in line first.
    pub queue: Vec<WaiterView>,
    /// `healthy`, `degraded` or `recovering`, with the degradation (the failed change, its
    /// fencing token, error class, resources changed and a redacted excerpt) when not healthy.
    pub health: Value,
    /// The Terraform client's lock on the stack's remote state, when one is held: its lock id
    /// and the lock info JSON it sent (`ID`, `Operation`, `Who`, …).
    pub terraform_lock: Option<TerraformLockView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WaiterView {
    pub change: String,
    /// When it joined the queue, RFC 3339.
    pub since: String,
    /// It loses its place if it does not ask again by then, RFC 3339.
    pub expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TerraformLockView {
    pub lock_id: String,
    pub change: String,
    pub fencing_token: u64,
    pub info: Value,
}

/// An open backport item: a break-glass grant that was used and has ended; Git must be brought
/// back in line with what was applied (docs/break-glass.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct BackportView {
    /// The grant id (`bg-…`).
    pub grant: String,
    pub unit: String,
    /// Who opened the grant.
    pub opened_by: String,
    pub reason: String,
    /// Applies run under the grant.
    pub uses: u32,
    /// When the grant ended (closed or expired), RFC 3339.
    pub ended_at: String,
    /// Always `open` here: resolved items are not listed.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    pub change_id: String,
    /// The recorded policy stage (its decision record digest and results are in `detail`);
    /// `null` when the policy stage has not run for this change.
    pub policy: Option<StageView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only jobs in this state.
    pub state: Option<String>,
    /// Only jobs of this key (`owner/repo#N`).
    pub key: Option<String>,
    pub limit: Option<u32>,
}

fn stage_view(r: StageResultRecord) -> StageView {
    StageView {
        stage: r.stage,
        outcome: r.outcome.as_str().to_string(),
        detail: r.detail,
        envelope: r.envelope_digest.map(|d| d.to_string()),
        recorded_at: r.recorded_at,
    }
}

async fn change_view(app: &App, c: ChangeRecord) -> Result<ChangeView, Failure> {
    let stages = app
        .store
        .stage_results(&c.change_id)
        .await
        .map_err(internal)?
        .into_iter()
        .map(stage_view)
        .collect();
    Ok(ChangeView {
        change_id: c.change_id,
        repo: c.repo,
        pr: c.pr,
        base: c.base,
        head: c.head,
        env: c.env,
        unit_kind: c.unit_kind.as_str().to_string(),
        unit: c.unit,
        created_at: c.created_at,
        stages,
    })
}

fn limit(l: Option<u32>) -> u32 {
    l.unwrap_or(100).clamp(1, 1000)
}

/// Changes, newest first, with their stages.
#[utoipa::path(get, path = "/changes", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<ChangeView>), (status = 401, body = ApiError)))]
async fn list_changes(
    _: Reader,
    State(app): State<Arc<App>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<ChangeView>>, Failure> {
    let changes = app.store.changes(limit(q.limit)).await.map_err(internal)?;
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        out.push(change_view(&app, c).await?);
    }
    Ok(Json(out))
}

async fn find_change(app: &App, id: &str) -> Result<ChangeRecord, Failure> {
    app.store
        .change(id)
        .await
        .map_err(internal)?
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no change {id:?}")))
}

/// One change by correlation id (URL-encode its `/` and `#`).
#[utoipa::path(get, path = "/changes/{id}", params(("id" = String, Path, description = "correlation id")),
    security(("bearer" = [])),
    responses((status = 200, body = ChangeView), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
async fn get_change(
    _: Reader,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<ChangeView>, Failure> {
    let c = find_change(&app, &id).await?;
    Ok(Json(change_view(&app, c).await?))
}

/// The change's offline-verifiable evidence bundle (`sluice evidence verify` checks it).
#[utoipa::path(get, path = "/changes/{id}/bundle", params(("id" = String, Path, description = "correlation id")),
    security(("bearer" = [])),
    responses((status = 200, description = "the bundle (JSON)", content_type = "application/json"),
        (status = 401, body = ApiError), (status = 404, body = ApiError)))]
async fn get_bundle(
    _: Reader,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    find_change(&app, &id).await?;
    let bundle = app.evidence.bundle(&id).await.map_err(|e| {
        Failure(
            StatusCode::NOT_FOUND,
            format!("no evidence bundle for {id:?}: {e}"),
        )
    })?;
    let name = sluice_recorder::evidence::bundle_file_name(&id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bundle.bytes,
    )
        .into_response())
}

/// The policy decision recorded for a unit's change.
#[utoipa::path(get, path = "/changes/{id}/policy", params(("id" = String, Path, description = "correlation id")),
    security(("bearer" = [])),
    responses((status = 200, body = PolicyView), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
async fn get_policy(
    _: Reader,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<PolicyView>, Failure> {
    find_change(&app, &id).await?;
    let policy = app
        .store
        .stage_results(&id)
        .await
        .map_err(internal)?
        .into_iter()
        .rfind(|r| r.stage == "policy")
        .map(stage_view);
    Ok(Json(PolicyView {
        change_id: id,
        policy,
    }))
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/jobs", params(JobQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<JobView>), (status = 400, body = ApiError), (status = 401, body = ApiError)))]
async fn list_jobs(
    _: Reader,
    State(app): State<Arc<App>>,
    Query(q): Query<JobQuery>,
) -> Result<Json<Vec<JobView>>, Failure> {
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            Failure(
                StatusCode::BAD_REQUEST,
                format!("unknown state {s:?}: queued, running, succeeded, dead or cancelled"),
            )
        })?),
    };
    let filter = JobFilter {
        state,
        serial_key: q.key,
    };
    let jobs = app
        .store
        .jobs(&filter, limit(q.limit))
        .await
        .map_err(internal)?;
    Ok(Json(
        jobs.into_iter()
            .map(|j| JobView {
                id: j.id.0,
                kind: j.kind,
                serial_key: j.serial_key,
                head_sha: j.head_sha,
                state: j.state.as_str().into(),
                attempts: j.attempts,
                max_attempts: j.max_attempts,
                lease_owner: j.lease_owner,
                last_error: j.last_error,
                reason: j.reason,
                delivery_id: j.delivery_id,
                created_at: j.created_at,
                finished_at: j.finished_at,
            })
            .collect(),
    ))
}

/// Every stack with a lock or a health record, by unit: holders (expired leases settled, an
/// apply whose lease ran out shown as kept), queues, health and Terraform backend locks.
#[utoipa::path(get, path = "/locks", security(("bearer" = [])),
    responses((status = 200, body = Vec<LockView>), (status = 401, body = ApiError), (status = 503, body = ApiError)))]
async fn list_locks(
    _: Reader,
    State(app): State<Arc<App>>,
) -> Result<Json<Vec<LockView>>, Failure> {
    use sluice_model::lock::Tenure;
    use sluice_store::StateStore as _;
    let views = sluice_release::admin::locks(&app.store)
        .await
        .map_err(internal)?;
    let mut out = Vec::with_capacity(views.len());
    for v in views {
        let terraform_lock = app
            .store
            .backend_lock(&v.unit)
            .await
            .map_err(internal)?
            .map(|b| TerraformLockView {
                lock_id: b.lock_id,
                change: b.change,
                fencing_token: b.fencing_token,
                info: b.info,
            });
        let holder = v.lock.holder.as_ref();
        let (tenure, expires, cause) = match holder.map(|h| &h.tenure) {
            Some(Tenure::Leased { expires_at }) => (Some("leased"), Some(expires_at), None),
            Some(Tenure::Applying { expires_at, .. }) => (Some("applying"), Some(expires_at), None),
            Some(Tenure::Kept { cause, .. }) => (
                Some("kept"),
                None,
                serde_json::to_value(cause)
                    .ok()
                    .and_then(|c| c.as_str().map(str::to_string)),
            ),
            None => (None, None, None),
        };
        out.push(LockView {
            holder: holder.map(|h| h.change.clone()),
            fencing_token: holder.map(|h| h.token.0),
            last_token: v.lock.last_token.0,
            tenure: tenure.map(str::to_string),
            acquired_at: holder.map(|h| h.acquired_at.to_string()),
            lease_expires_at: expires.map(|t| t.to_string()),
            kept_cause: cause,
            queue: v
                .lock
                .queue
                .iter()
                .map(|w| WaiterView {
                    change: w.change.clone(),
                    since: w.since.to_string(),
                    expires_at: w.expires_at.to_string(),
                })
                .collect(),
            health: serde_json::to_value(&v.health).map_err(internal)?,
            terraform_lock,
            unit: v.unit,
        });
    }
    Ok(Json(out))
}

/// Open backport items, oldest first, including those of used grants whose expiry has passed
/// but was not recorded yet.
#[utoipa::path(get, path = "/backports", security(("bearer" = [])),
    responses((status = 200, body = Vec<BackportView>), (status = 401, body = ApiError), (status = 503, body = ApiError)))]
async fn list_backports(
    _: Reader,
    State(app): State<Arc<App>>,
) -> Result<Json<Vec<BackportView>>, Failure> {
    let items = app.store.backports(true).await.map_err(internal)?;
    let grants = app.store.grants(None).await.map_err(internal)?;
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let now = sluice_model::exception::Timestamp::from_unix(d.as_secs() as i64, d.subsec_nanos());
    Ok(Json(
        sluice_model::breakglass::outstanding(&items, &grants, now)
            .into_iter()
            .map(|i| BackportView {
                grant: i.grant,
                unit: i.unit,
                opened_by: i.opened_by,
                reason: i.reason,
                uses: i.uses,
                ended_at: i.ended_at.to_string(),
                status: "open".into(),
            })
            .collect(),
    ))
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "sluice API", description = "Read API and runner protocol of sluice serve"),
    servers((url = "/api/v1")),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The `/api/v1` router and its OpenAPI document, from the same route list.
pub fn router() -> (axum::Router<Arc<App>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_changes))
        .routes(routes!(get_change))
        .routes(routes!(get_bundle))
        .routes(routes!(get_policy))
        .routes(routes!(list_jobs))
        .routes(routes!(list_locks))
        .routes(routes!(list_backports))
        .routes(routes!(crate::runner::claim))
        .routes(routes!(crate::runner::heartbeat))
        .routes(routes!(crate::runner::result))
        .split_for_parts()
}

/// The OpenAPI document as served.
pub fn openapi_json() -> String {
    router()
        .1
        .to_pretty_json()
        .expect("the document serialises")
}
