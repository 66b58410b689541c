//! Reports for people and tools: SARIF 2.1.0 for code-scanning hosts. The Markdown and text
//! renderings of the PR report still live beside the flow that builds it (`sluice-flow`) and
//! move here next.

mod sarif;

pub use sarif::{FINGERPRINT_KEY, INFORMATION_URI, SARIF_SCHEMA, SARIF_VERSION, to_sarif};
