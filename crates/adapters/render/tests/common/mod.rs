//! Test repositories written as real git commits (no work tree is read by a render).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_git::git::{GitRepo, Snapshot};
use sluice_model::config::OrgConfig;

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
    pub dir: sluice_testkit::Repo,
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
    let dir = sluice_testkit::Repo::new();
    let commits: Vec<String> = revisions
        .iter()
        .enumerate()
        .map(|(i, f)| dir.commit_tree(&f.iter().collect::<Vec<_>>(), &format!("rev {i}")))
        .collect();
    let repo = Arc::new(GitRepo::open(dir.path()).unwrap());
    let snapshots = commits
        .iter()
        .map(|c| repo.snapshot(repo.resolve(c).unwrap()).unwrap())
        .collect();
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
