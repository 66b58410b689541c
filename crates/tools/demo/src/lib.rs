//! Tools around the product, not part of a change's path: the demo org behind `sluice demo`,
//! the deterministic scale generators (`sluice generate`, plan JSON generation) and the
//! measurements behind `sluice bench`.

pub mod apply_bench;
pub mod bench;
pub mod demo;
pub mod generate;
pub mod plangen;
pub mod render_bench;
