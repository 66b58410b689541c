//! Reports for people and tools, built from what the flow decided: the PR report and the
//! `check` report as Markdown (one GitHub comment, or several parts) and plain text, SARIF
//! 2.1.0 for code-scanning hosts, and the text reports of `affected` and `validate`. Nothing
//! here decides anything; every function reads a finished report.

pub mod apps;
pub mod check;
pub mod markdown;
pub mod policy_sarif;
pub mod pr;
mod sarif;
pub mod stack;
pub mod text;

pub use sarif::{FINGERPRINT_KEY, INFORMATION_URI, SARIF_SCHEMA, SARIF_VERSION, to_sarif};
