//! sluice's pure core: the domain types of DESIGN.md §3 and the decisions made over them.
//!
//! Nothing in this crate performs IO or needs async. Adapters (git, parsers, engines, stores) feed
//! it plain data; the functions here decide what is affected, how stacks depend on each other, who
//! owns a path and which stage may run, and are tested without touching a disk.

pub mod affected;
pub mod approval;
pub mod breakglass;
pub mod change;
pub mod codeowners;
pub mod config;
pub mod exception;
pub mod finding;
pub mod glob;
pub mod graph;
pub mod layout;
pub mod path;
pub mod plan;
pub mod redact;
pub mod risk;
pub mod stage;
pub mod trust;
