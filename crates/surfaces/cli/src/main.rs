//! The `sluice` command line: one binary for the change flow of GitOps and IaC changes.
//!
//! Each subcommand is a thin surface over the services (`sluice-flow`, `sluice-recorder`) and
//! the tools (`sluice-demo`): parse flags, run, render the report in the requested format and
//! map the outcome to the documented exit codes.

mod cmd_breakglass;
mod cmd_check;
mod cmd_evidence;
mod cmd_plan;
mod cmd_policy;
mod cmd_release;
mod cmd_render;
mod cmd_runner;
mod cmd_serve;
mod cmd_state;
mod commands;
mod exit;
mod output;
mod pages;

use clap::Parser;

// Plans and rendered apps are large JSON trees built and freed in one pass; mimalloc builds and
// frees them markedly faster than the system allocator (see `sluice bench check`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // sluice never prints a library error's backtrace, but with `RUST_BACKTRACE=1` (common on CI
    // runners) every `anyhow` error raised and handled inside the Rego engine captures one:
    // about 4 ms of a 20 ms `sluice check`. Panics still honour `RUST_BACKTRACE`.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: nothing else runs yet: no other thread exists to read the environment.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    // Small pages unless a command's input is large (see `pages`).
    pages::small_pages();
    let cli = commands::Cli::parse();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            exit::pipeline(&e)
        }
    };
    std::process::exit(code);
}
