//! The `sluice` command line: one binary for the change flow of GitOps and IaC changes.
//!
//! Each subcommand is a thin surface over the services (`sluice-flow`, `sluice-recorder`) and
//! the tools (`sluice-demo`): parse flags, run, render the report in the requested format and
//! map the outcome to the documented exit codes.

mod cmd_check;
mod cmd_evidence;
mod cmd_plan;
mod cmd_policy;
mod cmd_render;
mod commands;

use clap::Parser;

// Plans and rendered apps are large JSON trees built and freed in one pass; mimalloc builds and
// frees them markedly faster than the system allocator (see `sluice bench check`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = commands::Cli::parse();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
