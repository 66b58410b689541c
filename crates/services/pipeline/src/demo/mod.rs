//! `sluice demo`: build the sample org as a real git repository with history, open a PR branch
//! and run every stage that exists over it, ending with the PR report.

pub mod org;

use std::path::{Path, PathBuf};
use std::time::Instant;

use sluice_repo::git_write::{Author, Writer};

use crate::error::PipelineError;

/// Marks a directory as built by the demo, so a re-run may replace it and nothing else. It
/// lives inside `.git` so that the work tree stays clean.
pub const MARKER: &str = ".git/sluice-demo";

pub struct DemoRepo {
    pub dir: PathBuf,
    pub base: String,
    pub head: String,
    pub build_ms: u128,
}

const ALICE: Author<'static> = Author {
    name: "Alice Platform",
    email: "alice@acme.example",
    time: 1_795_000_000,
};

/// Build (or rebuild) the demo repository in `dir`.
pub fn build(dir: &Path) -> Result<DemoRepo, PipelineError> {
    let started = Instant::now();
    prepare_dir(dir)?;
    let io = |e: sluice_repo::git::GitError| PipelineError::Io(e.to_string());
    let writer = Writer::init(dir).map_err(io)?;
    let main = org::main_tree();
    // History: the org without its dns stacks first, then the dns layer on top.
    let first: org::Files = main
        .iter()
        .filter(|(p, _)| !p.contains("/dns/"))
        .map(|(p, c)| (p.clone(), c.clone()))
        .collect();
    let c1 = writer
        .commit(
            "main",
            &first,
            None,
            "Bootstrap the acme platform org\n",
            &ALICE,
        )
        .map_err(io)?;
    let later = Author {
        time: ALICE.time + 86_400,
        ..ALICE
    };
    let c2 = writer
        .commit(
            "main",
            &main,
            Some(c1),
            "Add the dns layer in every environment\n",
            &later,
        )
        .map_err(io)?;
    let bob = Author {
        name: "Bob Payments",
        email: "bob@acme.example",
        time: ALICE.time + 2 * 86_400,
    };
    let pr = org::pr_tree(&main);
    let c3 = writer
        .commit(
            org::PR_BRANCH,
            &pr,
            Some(c2),
            "prod: add a read replica to rds-payments and ship payments v1.5.0\n",
            &bob,
        )
        .map_err(io)?;
    writer.checkout("main", c2, &main).map_err(io)?;
    std::fs::write(dir.join(MARKER), "built by `sluice demo`; safe to delete\n")
        .map_err(|e| PipelineError::Io(e.to_string()))?;
    Ok(DemoRepo {
        dir: dir.to_path_buf(),
        base: c2.to_string(),
        head: c3.to_string(),
        build_ms: started.elapsed().as_millis(),
    })
}

/// Empty `dir` if the demo built it before; refuse to touch anything else.
fn prepare_dir(dir: &Path) -> Result<(), PipelineError> {
    let io = |e: std::io::Error| PipelineError::Io(format!("{}: {e}", dir.display()));
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(io)?.next().is_none();
        if !empty {
            if !dir.join(MARKER).exists() {
                return Err(PipelineError::Io(format!(
                    "{}: directory exists and was not created by `sluice demo`; choose another --dir",
                    dir.display()
                )));
            }
            std::fs::remove_dir_all(dir).map_err(io)?;
        }
    }
    std::fs::create_dir_all(dir).map_err(io)
}
