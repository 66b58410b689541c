//! `sluice serve` (DESIGN.md §4 surfaces: `server`, the only place HTTP statuses are chosen): one
//! process that hears GitHub's webhooks, keeps a durable job queue in the store, runs the PR
//! pipeline's stages as jobs, answers the read API and shows its control loops as metrics.
//!
//! - [`webhook`]: `/webhooks/github`, verified before parsing, each delivery written once with
//!   its jobs in one transaction.
//! - [`worker`]: claims jobs under leases, heartbeats, records each job's stages with its
//!   completion in one transaction, retries with backoff, drops superseded results.
//! - [`review`]: a GitHub review as a signed approval bound to the reviewed commit's changes
//!   (or its dismissal), then the check run published again.
//! - [`lifecycle`]: a closed PR, and a push to the default branch that merged PRs, give up
//!   their changes' state locks.
//! - [`publish`]: the check run and the PR comment on GitHub, each report published by a job of
//!   its own once it is on record.
//! - [`notices`]: a degraded stack (a failed or killed apply) and a break-glass backport item
//!   told on the PR they belong to (check run and comment), once each.
//! - [`api`]: `/api/v1` with bearer tokens and its OpenAPI document; [`metrics`]: `/metrics`.
//! - [`runner`]: `/api/v1/runner`, where runners claim the plan jobs the pipeline queues and
//!   upload plans (recorded as stages 4–6 of the stack); [`runner_loop`] is the runner itself
//!   (`sluice runner`, or one loop in `serve` with `--runner`).
//! - `/state/<stack id>`: the Terraform `http` state backend (`sluice-state-backend`) over the
//!   same store, authenticated by a sluice `state` token or a runner's OIDC token.
//! - `/healthz` (the process answers) and `/readyz` (the store answers and its schema is
//!   current).
//! - [`serve`] binds, runs the workers, and on SIGTERM/SIGINT stops taking jobs, finishes or
//!   releases the running ones within the grace period, and exits.
//!
//! Several replicas share one PostgreSQL store: claims skip each other's rows, and a replica
//! that dies leaves its jobs to the others once their leases expire.

pub mod api;
pub mod bench;
pub mod config;
pub mod lifecycle;
pub mod metrics;
pub mod notices;
pub mod publish;
pub mod repo;
pub mod review;
pub mod runner;
pub mod runner_loop;
pub mod webhook;
pub mod worker;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use sluice_iac::keys::LocalKeys;
use sluice_recorder::evidence::{EvidenceService, RecorderOptions};
use sluice_state::{
    Authenticator, BackendConfig, FirstOf, OidcAuthenticator, StateBackend, TokenAuthenticator,
};
use sluice_store::{AnyStore, JobQueue as _, Store as _};
use tokio::sync::watch;

pub use config::{ServeArgs, ServerConfig, ServerSection, StateConfig, StateSection};

use crate::metrics::Metrics;
use crate::repo::Revisions;

/// What every handler and worker shares.
pub struct App {
    pub config: ServerConfig,
    pub store: AnyStore,
    pub evidence: EvidenceService,
    pub metrics: Metrics,
    pub revisions: Revisions,
    /// The GitHub App that publishes check runs and PR comments, when one is configured.
    pub github: Option<sluice_vcs::GitHubApp>,
    pub state: StateBackendParts,
}

/// The state backend over the server's store, and who may use it: sluice `state` tokens
/// first, then runner OIDC tokens of the issuers the trust policy names.
pub struct StateBackendParts {
    pub backend: Arc<StateBackend<AnyStore>>,
    pub auth: Arc<dyn Authenticator>,
}

impl StateBackendParts {
    /// The backend over `evidence`'s store, signing its audit events with the evidence key
    /// (they are leaves of the same log as the changes' statements).
    fn open(
        config: &StateConfig,
        evidence: &EvidenceService,
    ) -> Result<StateBackendParts, ServeError> {
        let store = evidence.store();
        // Keys from SLUICE_ARTIFACT_KEY / SLUICE_ARTIFACT_KEY_FILE / the default key file,
        // loaded on first use: a server that never stores state never touches them.
        let keys = Arc::new(LocalKeys::from_env(None).map_err(ServeError::Keys)?);
        let backend_config = BackendConfig {
            trust: config.trust.clone(),
            environments: config.environments.clone(),
            terraform_lease: config.lock_lease,
            max_state_bytes: config.max_state_bytes,
        };
        let backend = Arc::new(StateBackend::new(
            store.clone(),
            keys,
            evidence.evidence_key().clone(),
            backend_config,
        ));
        let mut chain: Vec<Arc<dyn Authenticator>> =
            vec![Arc::new(TokenAuthenticator::new(store.clone()))];
        if let Some(policy) = &config.trust {
            chain.push(Arc::new(
                OidcAuthenticator::new(policy).map_err(|e| ServeError::Trust(e.to_string()))?,
            ));
        }
        Ok(StateBackendParts {
            backend,
            auth: Arc::new(FirstOf(chain)),
        })
    }

    fn router(&self, config: &StateConfig) -> Router {
        sluice_state_backend::router(
            self.backend.clone(),
            self.auth.clone(),
            sluice_state_backend::Options {
                lock_method: config.lock_method.clone(),
                unlock_method: config.unlock_method.clone(),
            },
        )
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("opening the store: {0}")]
    Evidence(#[from] sluice_recorder::evidence::EvidenceError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    #[error("the state backend's keys: {0}")]
    Keys(#[source] sluice_iac::keys::KeyError),
    #[error("the trust policy's issuers: {0}")]
    Trust(String),
}

impl App {
    /// Opens the store (migrating it) and the evidence key for `config`.
    pub async fn open(config: ServerConfig) -> Result<App, ServeError> {
        let options = RecorderOptions {
            database_url: config.database_url.clone(),
            key_file: config.evidence_key.clone(),
            ..RecorderOptions::new(&config.state_dir)
        }
        .with_env_defaults();
        let evidence = EvidenceService::open(&options).await?;
        let revisions = Revisions::new(config.repo.clone(), &config.state_dir);
        let github = match &config.github {
            Some((github, key)) => Some(
                sluice_vcs::GitHubApp::new(github.clone(), key.clone())
                    .map_err(|e| config::ConfigError::Invalid(format!("GitHub App: {e}")))?,
            ),
            None => None,
        };
        let state = StateBackendParts::open(&config.state, &evidence)?;
        Ok(App {
            github,
            state,
            store: evidence.store().clone(),
            evidence,
            metrics: Metrics::new(),
            revisions,
            config,
        })
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// How long `/readyz` waits for the store: a store that is down must make the probe fail
/// fast, not hang for the pool's acquire timeout while it keeps trying to reconnect.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let answer = match tokio::time::timeout(READY_TIMEOUT, app.store.migrations_current()).await {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {READY_TIMEOUT:?}")),
    };
    match answer {
        Ok(true) => (StatusCode::OK, axum::Json(json!({"ready": true}))).into_response(),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({"ready": false, "reason": "the store's schema is behind this sluice"}),
            ),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"ready": false, "reason": "the store is unreachable"})),
            )
                .into_response()
        }
    }
}

async fn metrics_handler(State(app): State<Arc<App>>) -> Response {
    match app.store.queue_depth().await {
        Ok(depth) => app.metrics.set_depth(depth),
        Err(e) => tracing::warn!(error = %e, "metrics: queue depth unavailable"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        api::openapi_json(),
    )
        .into_response()
}

/// The largest request body under `/api/v1` (a runner's upload of a plan file and its JSON).
pub const RUNNER_UPLOAD_LIMIT: usize = 256 * 1024 * 1024;

/// Every route of the server.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_body_bytes;
    let (api_routes, _) = api::router();
    let state = app.state.router(&app.config.state);
    Router::new()
        .route(
            "/webhooks/github",
            post(webhook::github).layer(DefaultBodyLimit::max(limit)),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/api/v1/openapi.json", get(openapi))
        // Runner uploads carry the plan file and JSON (base64): larger than webhooks.
        .nest(
            "/api/v1",
            api_routes.layer(DefaultBodyLimit::max(RUNNER_UPLOAD_LIMIT)),
        )
        .with_state(app)
        .nest("/state", state)
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Serves until `stop` resolves: binds, prints `sluice serve listening on http://ADDR` on
/// stdout (the bound address, also for port 0), runs the workers, then shuts down gracefully.
pub async fn serve(
    config: ServerConfig,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = config.listen;
    let app = Arc::new(App::open(config).await?);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr()?;
    println!("sluice serve listening on http://{bound}");
    run(listener, app, stop).await
}

/// Serves `app` on a bound `listener` with its workers until `stop` resolves; then stops
/// taking jobs, lets running ones finish within the grace period (releasing the rest) and
/// returns.
pub async fn run(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    tracing::info!(addr = %listener.local_addr()?, store = app.store.location(),
        replica = %app.config.replica, workers = app.config.workers, "sluice serve started");
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // No workers, no claims: a replica that only takes webhooks and answers the API.
    let feed = (app.config.workers > 0).then(|| Arc::new(worker::feed(&app, shutdown_rx.clone())));
    let workers: Vec<_> = match &feed {
        Some(feed) => (0..app.config.workers)
            .map(|i| {
                tokio::spawn(worker::run(
                    app.clone(),
                    i,
                    feed.clone(),
                    shutdown_rx.clone(),
                ))
            })
            .collect(),
        None => Vec::new(),
    };
    let notices = tokio::spawn(notices::run(app.clone(), shutdown_rx.clone()));
    let runner = if app.config.runner {
        Some(spawn_runner(&app, listener.local_addr()?, shutdown_rx.clone()).await?)
    } else {
        None
    };
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        stop.await;
        let _ = stopped_tx.send(());
    });
    let shutdown = {
        let shutdown_tx = shutdown_tx.clone();
        async move {
            let _ = stopped_rx.await;
            tracing::info!("shutting down: no new jobs; finishing or releasing running ones");
            let _ = shutdown_tx.send(true);
        }
    };
    axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(shutdown)
        .await?;
    let _ = shutdown_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    if let Some(feed) = &feed {
        feed.close().await;
    }
    let _ = notices.await;
    if let Some(r) = runner {
        r.stop(&app).await;
    }
    tracing::info!("sluice serve stopped");
    Ok(())
}

/// How long the in-process runner's token verifies without renewal. The token is revoked at a
/// graceful shutdown; this bounds how long one left by a crash (or a SIGKILL) stays usable.
pub const RUNNER_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// How often the running server moves its runner token's expiry forward: five times a TTL,
/// so a store that is briefly unreachable does not let the token lapse under a live runner.
pub const RUNNER_TOKEN_RENEW: std::time::Duration = std::time::Duration::from_secs(120);

/// The expiry a runner token renewed at `now` gets.
pub fn runner_token_expiry(now: sluice_store::UnixMillis) -> sluice_store::UnixMillis {
    now.saturating_add(RUNNER_TOKEN_TTL.as_millis() as i64)
}

/// The in-process runner of `serve --runner` and the id of the token it was given.
struct InProcessRunner {
    task: tokio::task::JoinHandle<()>,
    renew: tokio::task::JoinHandle<()>,
    token_id: String,
}

impl InProcessRunner {
    /// After the runner loop stopped: stops renewing and revokes its token, so no credential
    /// of this process outlives it.
    async fn stop(self, app: &App) {
        use sluice_store::TokenStore as _;
        let _ = self.task.await;
        self.renew.abort();
        match app.store.revoke_token(&self.token_id).await {
            Ok(_) => {
                tracing::info!(token = %self.token_id, "the in-process runner's token was revoked")
            }
            Err(e) => tracing::warn!(token = %self.token_id, error = %e,
                "revoking the in-process runner's token failed; it expires by itself"),
        }
    }
}

/// The runner loop `serve --runner` runs against itself, with a `runner` token made for it now
/// (only its hash is stored; the secret lives in this process). The token expires
/// [`RUNNER_TOKEN_TTL`] after its last renewal, and this process renews it every
/// [`RUNNER_TOKEN_RENEW`]: revoking "the previous in-process token" at start instead cannot
/// tell a crashed replica's token from a live one's when several replicas share a PostgreSQL
/// store, and a crashed replica may never start again.
async fn spawn_runner(
    app: &Arc<App>,
    addr: std::net::SocketAddr,
    stop: watch::Receiver<bool>,
) -> Result<InProcessRunner, ServeError> {
    use sluice_store::TokenStore as _;
    let name = format!("serve-runner:{}", app.config.replica);
    let token = app
        .store
        .create_expiring_token(
            sluice_store::Scope::Runner,
            &name,
            runner_token_expiry(sluice_store::now_millis()),
        )
        .await
        .map_err(|e| ServeError::Evidence(sluice_recorder::evidence::EvidenceError::Store(e)))?;
    let host = if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    let token_id = token.id.clone();
    let opts = runner_loop::RunnerOptions {
        server: format!("http://{host}"),
        credential: runner_loop::Credential::Token(token.token),
        work_dir: app.config.state_dir.join(".sluice/runner"),
        once: false,
        poll: app.config.poll.max(std::time::Duration::from_millis(200)),
        name,
        env: std::env::vars().collect(),
    };
    let renew = tokio::spawn({
        let app = app.clone();
        let id = token_id.clone();
        async move {
            loop {
                tokio::time::sleep(RUNNER_TOKEN_RENEW).await;
                let until = runner_token_expiry(sluice_store::now_millis());
                match app.store.renew_token(&id, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(token = %id, "the in-process runner's token was revoked or \
                            expired; the runner will be refused");
                        return;
                    }
                    Err(e) => tracing::warn!(token = %id, error = %e,
                        "renewing the in-process runner's token failed; trying again"),
                }
            }
        }
    });
    let task = tokio::spawn(async move {
        if let Err(e) = runner_loop::run(opts, stop).await {
            tracing::error!(error = %e, "the in-process runner stopped");
        }
    });
    Ok(InProcessRunner {
        task,
        renew,
        token_id,
    })
}

/// JSON logs on stderr (one object per line), filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}
