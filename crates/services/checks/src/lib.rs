//! Stage 2, static validation: the catalogue of checks run over a revision's YAML and HCL files
//! (syntax, structure, required fields, naming) and the secret scanner, as pure functions over
//! file contents that return findings. Reading the revision is the caller's job (`sluice-flow`).

pub mod secrets;
pub mod validate;
