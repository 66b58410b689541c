//! The recorder: turns stage results into signed in-toto statements, appends them to the
//! transparency log, stores them with the change, and builds and verifies evidence bundles
//! (the evidence service behind `sluice evidence`).

pub mod evidence;
