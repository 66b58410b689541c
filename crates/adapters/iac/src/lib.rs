//! The IaC engine adapter: plans stacks with OpenTofu, Terraform or Terragrunt and stores the
//! results.
//!
//! - [`config`]: the `plan` section of `sluice.yaml` (engine, parallelism, timeouts, cache,
//!   redaction rules).
//! - [`engine`]: finding the engine on PATH and its version (`version -json`, optionally
//!   remembered per binary).
//! - [`export`]: the stack and its local inputs exported from git into an isolated directory.
//! - [`driver`]: `init`, `plan -out -detailed-exitcode`, `show -json` per stack, in parallel
//!   with a provider cache that concurrent inits cannot corrupt.
//! - [`classify`]: failures classified (engine missing, init/provider, auth, module,
//!   state/lock, plan, timeout) with a redacted stderr excerpt.
//! - [`store`]: plan files and plan JSON stored content-addressed and encrypted at rest
//!   behind [`store::PlanStore`]; [`seal`] is the encrypted format and [`keys`] the
//!   key-encryption keys ([`keys::KeyProvider`], local key file or environment).
//! - [`apply`]: `apply PLANFILE` of a saved plan, with the state's serial, lineage and
//!   outputs' digest before and after, and a stale plan told apart from a failure.
//! - [`planfile`]: what a saved plan file says without the engine (providers it needs, its
//!   backend, the prior state), so that an apply skips what it does not need.
//! - [`ingest`]: accepting a plan JSON (and plan file) made in the user's CI.
//!
//! What a plan *means* (its JSON model, summary and redaction) is pure and lives in
//! `sluice_model::plan` and `sluice_model::redact`.

pub mod apply;
pub mod classify;
pub mod config;
pub mod driver;
pub mod engine;
pub mod export;
pub mod ingest;
pub mod keys;
pub mod planfile;
pub mod process;
pub mod seal;
pub mod store;
