//! `sluice state`: the remote state the Terraform `http` backend stores (docs/state.md): its
//! versions, a version's body, and rollback as a new version. The work is `sluice_state`'s;
//! this module parses flags, prints and maps outcomes to exit codes (exit.rs).

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use sluice_recorder::evidence::RecorderOptions;
use sluice_state::local::LocalState;

use crate::exit;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Where the state lives and how it is decrypted.
#[derive(Args, Clone)]
pub struct StateStoreArgs {
    /// The store: `postgres://…`, `sqlite://PATH` or a path [default: .sluice/sluice.db; env
    /// SLUICE_DATABASE_URL].
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Key-encryption keys [default: env SLUICE_ARTIFACT_KEY, SLUICE_ARTIFACT_KEY_FILE, or the
    /// data directory's artifact-keys].
    #[arg(long, value_name = "PATH")]
    pub artifact_key_file: Option<PathBuf>,
    /// The evidence key the audit events are signed with (PKCS#8 PEM) [default: env
    /// SLUICE_EVIDENCE_KEY, or the key sluice keeps for this repository].
    #[arg(long, value_name = "PEM")]
    pub evidence_key: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum StateCommand {
    /// A unit's state versions, newest first: serial, digest, size, who wrote it, under which
    /// lock and fencing token, forced or rolled back with which reason.
    Versions(VersionsArgs),
    /// A unit's state (the newest version, or --version N) on stdout, as Terraform stored it.
    Pull(PullArgs),
    /// Write version N again as the newest version (with the next serial), under the unit's
    /// lock; the reason is recorded with the version and in the audit trail.
    Rollback(RollbackArgs),
}

#[derive(Args)]
pub struct VersionsArgs {
    /// The unit (stack id), e.g. dev/ap-southeast-1/network.
    unit: String,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    #[command(flatten)]
    store: StateStoreArgs,
}

#[derive(Args)]
pub struct PullArgs {
    unit: String,
    #[arg(long)]
    version: Option<u64>,
    #[command(flatten)]
    store: StateStoreArgs,
}

#[derive(Args)]
pub struct RollbackArgs {
    unit: String,
    /// The version whose content to restore.
    #[arg(long)]
    version: u64,
    /// Why (required; recorded with the new version).
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    store: StateStoreArgs,
}

fn open(store: &StateStoreArgs) -> Result<LocalState, i32> {
    let admin = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "local".into());
    let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let evidence = RecorderOptions {
        key_file: store.evidence_key.clone(),
        ..RecorderOptions::new(&dir)
    }
    .with_env_defaults()
    .load_key()
    .map_err(|e| {
        eprintln!("sluice state: {e}");
        exit::evidence(&e)
    })?;
    LocalState::open(
        &dir,
        store.database_url.as_deref(),
        store.artifact_key_file.as_deref(),
        evidence,
        &admin,
    )
    .map_err(|e| {
        eprintln!("sluice state: {e}");
        exit::state_open(&e)
    })
}

pub fn run_state(command: StateCommand) -> i32 {
    match command {
        StateCommand::Versions(a) => versions(a),
        StateCommand::Pull(a) => pull(a),
        StateCommand::Rollback(a) => rollback(a),
    }
}

fn fail(e: &sluice_state::StateError) -> i32 {
    eprintln!("sluice state: {e}");
    exit::state(e)
}

fn versions(a: VersionsArgs) -> i32 {
    let state = match open(&a.store) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let list = match state.versions(&a.unit, a.limit) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    match a.format {
        Format::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "unit": a.unit, "versions": list }))
                    .expect("versions serialise")
            );
        }
        Format::Text => {
            if list.is_empty() {
                println!("{}: no state versions", a.unit);
            }
            for v in &list {
                let mut note = Vec::new();
                if let Some(r) = v.rollback_of {
                    note.push(format!("rollback of {r}"));
                }
                if let Some(reason) = &v.forced_reason {
                    note.push(format!("forced: {reason}"));
                }
                if let (Some(id), Some(t)) = (&v.lock_id, v.fencing_token) {
                    note.push(format!("lock {id}, fencing token {t}"));
                } else if let Some(t) = v.fencing_token {
                    note.push(format!("fencing token {t}"));
                }
                println!(
                    "{:>4}  serial {:<5} {}  {:>9} B  {}  {}{}",
                    v.version,
                    v.serial,
                    &v.digest.to_string()[..19],
                    v.size,
                    millis_rfc3339(v.created_at),
                    v.identity,
                    if note.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", note.join("; "))
                    }
                );
            }
        }
    }
    exit::OK
}

fn pull(a: PullArgs) -> i32 {
    let state = match open(&a.store) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match state.pull(&a.unit, a.version) {
        Ok(Some(p)) => {
            let mut out = std::io::stdout().lock();
            if out.write_all(&p.body).and_then(|()| out.flush()).is_err() {
                return exit::INTERNAL;
            }
            exit::OK
        }
        Ok(None) => {
            eprintln!("sluice state: `{}` has no state", a.unit);
            exit::USAGE
        }
        Err(e) => fail(&e),
    }
}

fn rollback(a: RollbackArgs) -> i32 {
    let state = match open(&a.store) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match state.rollback(&a.unit, a.version, &a.reason) {
        Ok(v) => {
            println!(
                "{}: version {} restores version {} (serial {}, {})",
                a.unit, v.version, a.version, v.serial, v.digest
            );
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

fn millis_rfc3339(ms: i64) -> String {
    sluice_model::exception::Timestamp::from_unix(ms.div_euclid(1000), 0).to_rfc3339()
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchBackend {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Args)]
pub struct BenchStateArgs {
    /// State size in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    bytes: usize,
    /// Timed rounds (LOCK, GET, POST, UNLOCK each).
    #[arg(long, default_value_t = 200)]
    samples: usize,
    #[arg(long, value_enum, default_value = "both")]
    backend: BenchBackend,
    /// The PostgreSQL server (a scratch schema is created and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// `sluice bench state`: GET/POST/LOCK/UNLOCK latencies of the state backend over HTTP.
pub fn run_bench_state(a: BenchStateArgs) -> i32 {
    let options = sluice_state_backend::bench::BenchOptions {
        state_bytes: a.bytes,
        samples: a.samples.max(1),
        sqlite: a.backend != BenchBackend::Postgres,
        postgres_url: (a.backend != BenchBackend::Sqlite).then(|| a.postgres_url.clone()),
    };
    match sluice_state_backend::bench::bench_blocking(&options) {
        Ok(report) => {
            match a.format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("report serialises")
                ),
                Format::Text => print!("{}", report.to_text()),
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("sluice bench state: {e}");
            exit::INTERNAL
        }
    }
}
