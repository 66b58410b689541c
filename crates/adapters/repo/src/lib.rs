//! The repository adapter: reads revisions, trees and blobs through gix (no checkout; bare
//! repositories work), parses the files sluice reasons about (YAML with positions, HCL and
//! Terragrunt, Kustomize, `sluice.yaml`) and discovers the org's stacks and apps.

pub mod config;
pub mod discovery;
pub mod git;
pub mod git_write;
pub mod kustomize;
pub mod terragrunt;
pub mod yaml;
