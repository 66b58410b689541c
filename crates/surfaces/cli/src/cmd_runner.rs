//! `sluice runner`: a plan runner for `sluice serve` (the loop is
//! `sluice_server::runner_loop`): it claims plan jobs over HTTP with a `runner` token or an OIDC
//! token, plans each stack in a fresh workspace and uploads the plan.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sluice_server::runner_loop::{Credential, RunnerError, RunnerOptions, run as run_loop};

use crate::exit;

#[derive(Args)]
pub struct RunnerArgs {
    /// The server's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// A file holding a sluice token of scope `runner` (sluice token create --scope runner).
    #[arg(long, value_name = "FILE", conflicts_with = "oidc_token_file")]
    pub token_file: Option<PathBuf>,
    /// A file holding the runner's OIDC token (re-read for every request; also the engine's
    /// web-identity token file).
    #[arg(long, value_name = "FILE")]
    pub oidc_token_file: Option<PathBuf>,
    /// Take at most one job, and exit when none waits. A server that does not answer is tried
    /// 5 times over about 30 s, then the runner exits with code 13.
    #[arg(long)]
    pub once: bool,
    /// Where workspaces (one per job, deleted after it) and a repository mirror go [default: a
    /// folder under the temporary directory].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// How often an idle runner asks for a job, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub poll_ms: u64,
    /// The runner's name in leases and logs [default: the host name].
    #[arg(long)]
    pub name: Option<String>,
}

/// The credential the flags name, read now so a missing file is a usage error.
fn credential(a: &RunnerArgs) -> Result<Credential, String> {
    match (&a.token_file, &a.oidc_token_file) {
        (Some(f), None) => {
            let token = std::fs::read_to_string(f)
                .map_err(|e| format!("--token-file {}: {e}", f.display()))?;
            let token = token.trim();
            if token.is_empty() {
                return Err(format!("--token-file {}: the file is empty", f.display()));
            }
            Ok(Credential::Token(token.to_string()))
        }
        (None, Some(f)) => {
            std::fs::metadata(f).map_err(|e| format!("--oidc-token-file {}: {e}", f.display()))?;
            Ok(Credential::OidcFile(f.clone()))
        }
        _ => Err("give --token-file FILE (a runner token) or --oidc-token-file FILE".into()),
    }
}

pub fn run(a: RunnerArgs) -> i32 {
    let credential = match credential(&a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    if !(a.server.starts_with("http://") || a.server.starts_with("https://")) {
        eprintln!(
            "error: --server {:?}: give the server's URL (http://HOST:PORT)",
            a.server
        );
        return exit::USAGE;
    }
    let name = a.name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "runner".into())
    });
    let opts = RunnerOptions {
        server: a.server.clone(),
        credential,
        work_dir: a
            .work_dir
            .clone()
            .unwrap_or_else(sluice_server::runner::default_work_dir),
        once: a.once,
        poll: Duration::from_millis(a.poll_ms.max(50)),
        name,
        env: std::env::vars().collect(),
    };
    sluice_server::init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return exit::INTERNAL;
        }
    };
    let result = rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            sluice_server::termination().await;
            let _ = stop_tx.send(true);
        });
        run_loop(opts, stop_rx).await
    });
    match result {
        Ok(summary) => {
            println!(
                "sluice runner: {} plan(s) uploaded, {} job(s) lost to a newer head or another runner",
                summary.uploaded, summary.lost
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                RunnerError::Usage(_) => exit::USAGE,
                RunnerError::Refused {
                    status: 401 | 403, ..
                } => exit::RUNNER_REFUSED,
                RunnerError::Unreachable { .. } => exit::RUNNER_UNREACHABLE,
                _ => exit::INTERNAL,
            }
        }
    }
}
