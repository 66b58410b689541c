//! The git adapter, and the only crate that touches gix: opens a repository (bare ones work, no
//! checkout is ever made), resolves revisions and merge bases, reads one commit's files as a
//! [`git::Snapshot`] (which implements `sluice_model::tree::Tree`, so every other adapter reads
//! files without knowing about git), diffs two snapshots, and writes commits for the generators
//! and the tests (`git_write`).

pub mod git;
pub mod git_write;
