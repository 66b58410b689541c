//! sluice's pure core: the domain types of DESIGN.md §3 and the decisions made over them.
//!
//! Nothing in this crate performs IO or needs async. Adapters (git, parsers, engines, stores) feed
//! it plain data; the functions here decide what is affected, how stacks depend on each other, who
//! owns a path, which stage may run, whether an approval binds to what is applied and who may
//! hold a stack's lock, and are tested without touching a disk. It also holds the
//! types and readers the layers share: the policy decision record and its canonical JSON
//! (`record`, `canonical`), the [`tree::Tree`] trait through which adapters read one revision's
//! files without knowing about git, YAML with positions (`yaml`) and Kustomize references
//! (`kustomize`).

pub mod affected;
/// The apply gate, degraded stacks and their recovery, multi-stack apply order.
pub mod apply;
pub mod approval;
pub mod approval_status;
/// New, pre-existing and fixed findings: a change is judged by what it introduces.
pub mod baseline;
/// Approval records and the binding rules: whether an approval counts for what is applied.
pub mod binding;
pub mod breakglass;
pub mod canonical;
pub mod change;
pub mod codeowners;
pub mod config;
pub mod exception;
pub mod finding;
pub mod glob;
pub mod graph;
pub mod kustomize;
pub mod layout;
/// State-domain locks: one holder per stack, leases, fencing tokens, a FIFO queue.
pub mod lock;
pub mod path;
/// The `people:` registry: approvers, their emails, groups and public keys.
pub mod people;
pub mod plan;
pub mod record;
pub mod redact;
pub mod risk;
pub mod sensitive;
pub mod splitmix;
pub mod stage;
/// Remote state: serial and lineage checks, rollback bodies, the backend's lock info.
pub mod state;
pub mod tree;
pub mod trust;
pub mod yaml;
