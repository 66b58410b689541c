//! Test repositories written as real git commits (no work tree is read by a render).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_git::git::{GitRepo, Snapshot};
use sluice_git::git_write::{Author, Writer};
use sluice_model::config::OrgConfig;
use tempfile::TempDir;

pub const SLUICE_YAML: &str = "version: 1
org: acme
environments:
  dev: { order: 1 }
  prod: { order: 2, protected: true }
stacks:
  root: infra
  layout: \"{env}/{stack}\"
apps:
  root: gitops/clusters
  layout: \"{cluster}/apps/{app}\"
";

pub struct Repo {
    pub dir: TempDir,
    pub repo: Arc<GitRepo>,
    pub snapshots: Vec<Snapshot>,
}

pub fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    let mut m: BTreeMap<String, Vec<u8>> = pairs
        .iter()
        .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
        .collect();
    m.entry("sluice.yaml".into())
        .or_insert_with(|| SLUICE_YAML.as_bytes().to_vec());
    m
}

/// One commit per file set, each on top of the previous one.
pub fn repo(revisions: &[BTreeMap<String, Vec<u8>>]) -> Repo {
    let dir = tempfile::tempdir().unwrap();
    let writer = Writer::init(dir.path()).unwrap();
    let author = Author {
        name: "test",
        email: "test@example.invalid",
        time: 1_700_000_000,
    };
    let mut commits = Vec::new();
    for (i, f) in revisions.iter().enumerate() {
        let parent = commits.last().copied();
        commits.push(
            writer
                .commit("main", f, parent, &format!("rev {i}"), &author)
                .unwrap(),
        );
    }
    let repo = Arc::new(GitRepo::open(dir.path()).unwrap());
    let snapshots = commits.iter().map(|c| repo.snapshot(*c).unwrap()).collect();
    Repo {
        dir,
        repo,
        snapshots,
    }
}

pub fn config(snapshot: &Snapshot) -> OrgConfig {
    let bytes = snapshot.read_file("sluice.yaml").unwrap().unwrap();
    sluice_org::config::load("sluice.yaml", std::str::from_utf8(&bytes).unwrap()).unwrap()
}
