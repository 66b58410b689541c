//! The one test kit every sluice test crate shares (a dev-dependency only, never compiled into
//! the product): a git repository builder, the corpus locator, a runner for the `sluice`
//! binary with assertions on its exit code and output, locators for the real engines and
//! PostgreSQL that skip or fail by the `SLUICE_REQUIRE_*` variables, and small orgs to test on.
//!
//! The shape follows ripgrep's `tests/util.rs`: tests say what they set up and what they
//! expect, the kit does the plumbing once.

mod corpus;
mod engines;
mod git;
mod net;
mod plan_json;
pub mod postgres;
mod release;
mod report;
mod require;
mod run;
mod scenario;
mod serve;
pub mod terraform_http;

pub use corpus::{corpus, corpus_root, files_with_extension};
pub use engines::{TestDoubleBin, terraform};
pub use git::{Author, Repo, git_in};
pub use net::{free_port, pem};
pub use plan_json::{plan_json, resource_change, write_json};
pub use release::{keygen, local_state_stack, terraform_sluice};
pub use report::{
    assert_warning, dependency_reasons, expect, kind_paths, kinds, reasons, statuses, unit,
    warnings,
};
pub use require::Requirement;
pub use run::{Exit, Run, Sluice, sluice, sluice_bin, sluice_change};
pub use scenario::{
    R, affected, affected_run, affected_since, assert_kind_paths, assert_units, dependency_on,
    org_repo, org_repo_with, plain_stack, sluice_yaml, tg,
};
pub use serve::{Served, serve_command, start_serve, token_create};

use std::path::{Path, PathBuf};

/// The workspace root (where the top `Cargo.toml` is), found from this crate's own location.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(3)
        .expect("crates/tools/testkit sits three levels below the workspace root")
        .to_path_buf()
}

/// A path as the `&str` a command line takes; test paths are always UTF-8.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Fails with the text unless it contains every one of `needles`; returns nothing so a test
/// can list what an output must say in one call.
#[track_caller]
pub fn assert_has(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "expected {n:?} in:\n{text}");
    }
}

/// Fails with the text if it contains any of `needles`.
#[track_caller]
pub fn assert_lacks(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(!text.contains(n), "did not expect {n:?} in:\n{text}");
    }
}
