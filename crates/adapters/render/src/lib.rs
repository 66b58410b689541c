//! Render (stage 3) and the rendered diff (stage 4 for apps).
//!
//! An app is rendered from git objects at a revision: plain YAML folders are read in place,
//! Kustomize and Helm run on an export of exactly what the app references (`render`). The
//! documents become normalised objects in a stable order with a digest (`manifest`,
//! `normalize`, `assemble`), are validated against the Kubernetes schemas of the compiled-in
//! version and the repository's CRDs (`kinds`, `schema`), and two renders are compared
//! (`diff`). Secret values never leave the crate unredacted (`redact`). The pure parts
//! (normalisation, ordering, digest, validation, diff, YAML emission) take plain data and do
//! no IO; `export`, `tool`, `render` and `output` are the thin IO shell.

pub mod assemble;
pub mod diagnostic;
pub mod diff;
pub mod emit;
pub mod error;
pub mod export;
pub mod generate;
pub mod kinds;
pub mod manifest;
pub mod normalize;
pub mod object;
pub mod output;
pub mod redact;
pub mod render;
pub mod report;
pub mod schema;
pub mod tool;
