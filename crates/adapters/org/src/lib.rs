//! The org adapter: reads the org's definition from the files of one revision (any
//! `sluice_model::tree::Tree`, never git directly): `sluice.yaml`, HCL and Terragrunt evaluated
//! statically, and discovery of the org's stacks and apps (using the YAML and Kustomize readers
//! of `sluice-model`).

pub mod config;
pub mod discovery;
pub mod terragrunt;

// YAML with positions and Kustomize references are pure reads every layer shares
// (sluice-model); re-exported so the org's parsers keep reading them as `crate::…`.
pub use sluice_model::{kustomize, yaml};
