//! `sluice serve` (the control plane: webhooks, job queue, workers, API, metrics, the Terraform
//! state backend) and `sluice token` (bearer tokens for its API, `state` tokens for its state
//! backend).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use sluice_iac::keys::{KeyError, KeySource, LocalKeys};
use sluice_server::config::{ServerSection, server_section, state_policy};
use sluice_server::{ServeArgs as ServerArgs, ServerConfig};
use sluice_store::{Scope, StateGrants, TokenStore as _};

use crate::cmd_evidence::StoreArgs;
use crate::exit;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 or 0.0.0.0:8080 (port 0 picks a free port;
    /// the bound address is printed) [default: server.listen in sluice.yaml, else
    /// 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The platform repository: a local path (read in place) or a git URL (mirrored under
    /// ./.sluice/repo.git and fetched when a job needs a commit).
    #[arg(long, value_name = "PATH|URL")]
    pub repo: String,
    /// Jobs run at once by this process [default: server.workers, else 2].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Also run one plan runner in this process, against this server (needs the engine on
    /// PATH; the same as `server.runner: true`).
    #[arg(long)]
    pub runner: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token: a bearer token for the API (`--scope read|admin`), a state backend
    /// token for the stacks it names (`--scope state --state-read GLOB --state-write GLOB`),
    /// or a plan runner's (`--scope runner`);
    /// printed alone on the last line, once (only its hash is stored).
    Create(TokenCreateArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ScopeArg {
    Read,
    Admin,
    /// The Terraform state backend only, for the stacks of --state-read / --state-write.
    State,
    /// A plan runner (`sluice runner --token-file`): claims plan jobs and uploads plans.
    Runner,
}

#[derive(Args)]
pub struct TokenCreateArgs {
    #[arg(long, value_enum)]
    pub scope: ScopeArg,
    /// The repository whose store keeps the token (REPO/.sluice/sluice.db unless
    /// --database-url).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
    /// A name to recognise the token by (state events name it `token:<name>#<id>`).
    #[arg(long, default_value = "api")]
    pub name: String,
    /// With --scope state: stacks whose state the token may read (a glob over stack ids such
    /// as `dev/**`; repeatable).
    #[arg(long = "state-read", value_name = "GLOB")]
    pub state_read: Vec<String>,
    /// With --scope state: stacks whose state the token may lock and write, and read (a glob
    /// such as `dev/*/network`; repeatable).
    #[arg(long = "state-write", value_name = "GLOB")]
    pub state_write: Vec<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: starting the runtime: {e}");
            exit::INTERNAL
        })
}

pub fn run_serve(a: ServeArgs) -> i32 {
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: the working directory: {e}");
            return exit::INTERNAL;
        }
    };
    let args = ServerArgs {
        listen: a.listen,
        repo: a.repo,
        database_url: a.store.database_url,
        evidence_key: a.store.evidence_key,
        workers: a.workers,
        runner: a.runner,
    };
    // The `server:` section, from the repository's sluice.yaml when it is a local checkout.
    let yaml = match sluice_server::repo::RepoSource::parse(&args.repo, &cwd) {
        Ok(sluice_server::repo::RepoSource::Local(path)) => {
            let file = path.join("sluice.yaml");
            std::fs::read_to_string(&file)
                .ok()
                .map(|text| (file.display().to_string(), text))
        }
        _ => None,
    };
    let section = match &yaml {
        Some((file, text)) => match server_section(file, text) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        },
        None => ServerSection::default(),
    };
    let mut config = match ServerConfig::resolve(&args, &section, |k| std::env::var(k).ok(), &cwd) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    // The state backend's trust policy and stack layout, from the same sluice.yaml.
    if let Some((file, text)) = &yaml {
        match state_policy(file, text) {
            Ok((trust, environments)) => {
                config.state.trust = trust.map(std::sync::Arc::new);
                config.state.environments = environments;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        }
    }
    if config.webhook_secret.is_none() {
        eprintln!(
            "warning: {} is not set: every webhook will be refused (401)",
            sluice_server::config::WEBHOOK_SECRET_ENV
        );
    }
    if let Some(problem) = state_key_problem() {
        eprintln!(
            "warning: every state read and write will fail (500) until this is fixed: {problem}"
        );
    }
    sluice_server::init_logging();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(sluice_server::serve(config, sluice_server::termination())) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit::serve(&e)
        }
    }
}

/// Why the state keys the environment configures cannot be used, if they cannot. The server
/// loads them on the first state request (a server that keeps no state never needs them), so a
/// key file that cannot work would otherwise show only as failed requests. `None` when they
/// load, or when the default key file does not exist yet (the first write makes it).
fn state_key_problem() -> Option<KeyError> {
    let source = match KeySource::from_env(None) {
        Ok(source) => source,
        Err(e) => return Some(e),
    };
    if let KeySource::File { path, create: true } = &source
        && !path.exists()
    {
        return None;
    }
    LocalKeys::new(source).key_ids().err()
}

pub fn run_token(c: TokenCommand) -> i32 {
    let TokenCommand::Create(a) = c;
    let scope = match a.scope {
        ScopeArg::Read => Scope::Read,
        ScopeArg::Admin => Scope::Admin,
        ScopeArg::State => Scope::State,
        ScopeArg::Runner => Scope::Runner,
    };
    let grants = StateGrants {
        read: a.state_read.clone(),
        write: a.state_write.clone(),
    };
    match (scope, grants.is_empty()) {
        (Scope::State, true) => {
            eprintln!(
                "error: --scope state needs the stacks the token is for: --state-read GLOB \
                 and/or --state-write GLOB (e.g. --state-write 'dev/*/network')"
            );
            return exit::USAGE;
        }
        (Scope::State, false) => {
            if let Err(e) = sluice_model::trust::TokenStateGrants::new(&grants.read, &grants.write)
            {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        }
        (_, false) => {
            eprintln!(
                "error: --state-read and --state-write are for --scope state; a {} token \
                 cannot touch state",
                scope.as_str()
            );
            return exit::USAGE;
        }
        (_, true) => {}
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let options = a.store.options(&a.repo, false);
    let database = options.database_url.clone().unwrap_or_else(|| {
        a.repo
            .join(sluice_store::DEFAULT_DATABASE)
            .display()
            .to_string()
    });
    let result = rt.block_on(async {
        let store = sluice_store::open(&database).await?;
        if scope == Scope::State {
            store.create_state_token(&a.name, &grants).await
        } else {
            store.create_token(scope, &a.name).await
        }
    });
    match result {
        Ok(issued) => {
            println!(
                "created {} token {} ({}); it is shown once, store it now:",
                issued.scope.as_str(),
                issued.id,
                a.name
            );
            println!("{}", issued.token);
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::evidence(&sluice_recorder::evidence::EvidenceError::Store(e))
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchBackend {
    Sqlite,
    Postgres,
    Both,
}

impl BenchBackend {
    fn sqlite(self) -> bool {
        matches!(self, BenchBackend::Sqlite | BenchBackend::Both)
    }

    fn postgres(self) -> bool {
        matches!(self, BenchBackend::Postgres | BenchBackend::Both)
    }
}

#[derive(Args)]
pub struct BenchWebhookArgs {
    /// Requests per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// How long to send.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    #[arg(long, value_enum, default_value = "both")]
    pub backend: BenchBackend,
    /// The PostgreSQL server (a scratch schema is made and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres_url: String,
}

#[derive(Args)]
pub struct BenchPrEventsArgs {
    /// Pull requests opened (one `pull_request` delivery each).
    #[arg(long, default_value_t = 1000)]
    pub prs: u32,
    /// Workers of the server.
    #[arg(long, default_value_t = 4)]
    pub workers: u32,
    /// Give up when the queue is not empty after this many seconds.
    #[arg(long, default_value_t = 1800)]
    pub timeout_seconds: u64,
    #[arg(long, value_enum, default_value = "both")]
    pub backend: BenchBackend,
    /// The PostgreSQL server (a scratch schema is made and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres_url: String,
}

/// The stores a benchmark runs on: SQLite, and PostgreSQL at `postgres_url`.
fn backend_runs(backend: BenchBackend, postgres_url: &str) -> Vec<(&'static str, Option<String>)> {
    let mut runs = Vec::new();
    if backend.sqlite() {
        runs.push(("sqlite", None));
    }
    if backend.postgres() {
        runs.push(("postgres", Some(postgres_url.to_string())));
    }
    runs
}

/// Runs `bench` with a database URL: none for SQLite, or a scratch schema (`{prefix}_…`) on the
/// PostgreSQL server at `url`, dropped afterwards, so benchmarks never touch an existing store.
async fn on_scratch_store<T, Fut>(
    url: Option<&str>,
    prefix: &str,
    bench: impl FnOnce(Option<String>) -> Fut,
) -> Result<T, String>
where
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let Some(url) = url else {
        return bench(None).await;
    };
    let (schema, scoped) = sluice_store::queue_bench::create_scratch_schema(url, prefix)
        .await
        .map_err(|e| e.to_string())?;
    let figures = bench(Some(scoped)).await;
    let _ = sluice_store::queue_bench::drop_scratch_schema(url, &schema).await;
    figures
}

/// `sluice bench pr-events`: the demo org is built in a scratch directory per backend, and each
/// of `--prs` pull requests proposes the demo's change (same base and head, its own PR number,
/// so its own changes and records).
pub fn run_bench_pr_events(a: BenchPrEventsArgs) -> i32 {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: locating this sluice binary: {e}");
            return exit::INTERNAL;
        }
    };
    if a.prs == 0 || a.workers == 0 {
        eprintln!("error: --prs and --workers must be greater than 0");
        return exit::USAGE;
    }
    let scratch =
        std::env::temp_dir().join(format!("sluice-pr-events-bench-{}", std::process::id()));
    let mut code = exit::OK;
    for (backend, url) in backend_runs(a.backend, &a.postgres_url) {
        let demo = match sluice_demo::demo::build(&scratch.join(backend)) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: building the demo org: {e}");
                code = exit::INTERNAL;
                continue;
            }
        };
        let (exe, demo) = (&exe, &demo);
        let result = rt.block_on(on_scratch_store(
            url.as_deref(),
            "sluice_pr_events_bench",
            |scoped| async move {
                sluice_server::bench::bench_pr_events(
                    exe,
                    &demo.dir,
                    &demo.base,
                    &demo.head,
                    scoped.as_deref(),
                    backend,
                    a.prs,
                    a.workers,
                    std::time::Duration::from_secs(a.timeout_seconds),
                )
                .await
            },
        ));
        match result {
            Ok(f) => print!("{}", f.text()),
            Err(e) => {
                eprintln!("error: {backend}: {e}");
                code = exit::INTERNAL;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    code
}

#[derive(Args)]
pub struct BenchQueueArgs {
    #[arg(long, default_value_t = 10_000)]
    pub jobs: u64,
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// The most jobs one claim takes for the waiting workers, as `server.claim_batch` (the
    /// benchmark runs the server's own claim loop; each job completes in its own transaction).
    #[arg(long, default_value_t = sluice_server::config::DEFAULT_CLAIM_BATCH)]
    pub batch: u32,
    #[arg(long, value_enum, default_value = "both")]
    pub backend: BenchBackend,
    /// The PostgreSQL server (a scratch schema is made and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres_url: String,
}

pub fn run_bench_queue(a: BenchQueueArgs) -> i32 {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    if a.batch == 0 {
        eprintln!("error: --batch must be at least 1");
        return exit::USAGE;
    }
    let mut code = exit::OK;
    if a.backend.sqlite() {
        match rt.block_on(sluice_store::queue_bench::sqlite_scratch(
            &std::env::temp_dir(),
            a.jobs,
            a.workers,
            a.batch,
        )) {
            Ok(f) => print!("{}", f.text()),
            Err(e) => {
                eprintln!("error: sqlite: {e}");
                code = exit::INTERNAL;
            }
        }
    }
    if a.backend.postgres() {
        match rt.block_on(sluice_store::queue_bench::postgres_scratch(
            &a.postgres_url,
            a.jobs,
            a.workers,
            a.batch,
        )) {
            Ok(f) => print!("{}", f.text()),
            Err(e) => {
                eprintln!("error: postgres: {e}");
                code = exit::INTERNAL;
            }
        }
    }
    code
}

pub fn run_bench_webhook(a: BenchWebhookArgs) -> i32 {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: locating this sluice binary: {e}");
            return exit::INTERNAL;
        }
    };
    if a.rate == 0 || a.seconds == 0 {
        eprintln!("error: --rate and --seconds must be greater than 0");
        return exit::USAGE;
    }
    let scratch = std::env::temp_dir().join(format!("sluice-webhook-bench-{}", std::process::id()));
    let mut code = exit::OK;
    for (backend, url) in backend_runs(a.backend, &a.postgres_url) {
        let dir = scratch.join(backend);
        let exe = &exe;
        let result = rt.block_on(on_scratch_store(
            url.as_deref(),
            "sluice_webhook_bench",
            |scoped| async move {
                sluice_server::bench::bench_webhook(
                    exe,
                    &dir,
                    scoped.as_deref(),
                    backend,
                    a.rate,
                    a.seconds,
                )
                .await
            },
        ));
        match result {
            Ok(f) => print!("{}", f.text()),
            Err(e) => {
                eprintln!("error: {backend}: {e}");
                code = exit::INTERNAL;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    code
}
