//! The orchestration layer: runs the stages of the change flow over the adapters (git,
//! parsers, discovery) and the pure decisions of `sluice-model`, and shapes their reports.

pub mod affected;
pub mod app_baseline;
pub mod apps;
pub mod bench;
pub mod check;
pub mod decide;
pub mod demo;
pub mod error;
pub mod evidence;
pub mod generate;
pub mod plangen;
pub mod pr;
pub mod sarif;
pub mod secrets;
pub mod validate;
pub mod validation;
pub mod workspace;
