//! The change flow: runs the stages of a change (DESIGN.md §2) over the adapters and the pure
//! decisions of `sluice-model`: which stacks and apps a change affects, the stage-2 run over a
//! revision, the plan check of a stack, the render and diff of an app, and the PR report that
//! gathers them.

pub mod affected;
pub mod apps;
pub mod check;
pub mod decide;
pub mod error;
pub mod pr;
pub mod stack_spec;
pub mod validation;
pub mod workspace;
