//! Reports for people and tools: SARIF 2.1.0 for code-scanning hosts. The Markdown and text
//! renderings of the PR report still live beside the flow that builds it (`sluice-flow`) and
//! move here next.

pub mod sarif;
