//! sluice's evidence: what makes the change trail tamper-evident and verifiable offline.
//!
//! - [`merkle`]: the RFC 6962 transparency log (leaf/node hashes, inclusion and consistency
//!   proofs over persisted subtree hashes, an in-memory tree).
//! - [`checkpoint`]: C2SP tlog-checkpoints as C2SP signed notes (Ed25519), and verifier keys.
//! - [`keys`]: the evidence signing key: generated on first use into a key directory or loaded
//!   from a PKCS#8 PEM file.
//! - [`location`]: where that key and the `.sluice/` state folder live, so neither is committed.
//! - [`dsse`] and [`statement`]: stage results as in-toto Statements v1 in DSSE envelopes.
//! - [`approval`]: approvals signed with the approver's registered key (OpenSSH or PEM).
//! - [`summary`]: the reference architecture's evidence fields, derived from signed statements.
//! - [`bundle`]: a change's manifest, its statements, the inclusion proof and a checkpoint in one
//!   JSON file, and the offline verifier that names the first broken link.
//!
//! Synchronous and free of databases: the store (sluice-store) persists what this crate builds.

pub mod approval;
pub mod bench;
pub mod bundle;
pub mod canonical;
pub mod checkpoint;
pub mod dsse;
pub mod keys;
pub mod location;
pub mod merkle;
pub mod statement;
pub mod summary;

pub use bundle::{
    Bundle, BundleInput, PreviousCheckpoint, VerifiedBundle, VerifyError, verify_bundle,
    write_bundle,
};
pub use ed25519_dalek::VerifyingKey;
pub use keys::EvidenceKey;
pub use merkle::{Hash, MemoryTree, SubtreeHashes};

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}
