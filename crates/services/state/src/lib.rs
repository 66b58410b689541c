//! sluice's remote state service (DESIGN.md §6, §8): the Terraform state backend's logic,
//! independent of HTTP. Every accepted write is a new immutable version, content-addressed by
//! the SHA-256 of its plaintext and encrypted at rest (AES-256-GCM, sluice-iac's seal with its
//! key provider); serial and lineage checks refuse regressions unless an admin forces them with
//! a reason; rollback writes an old version again as a new one; the backend's lock is the
//! unit's state-domain lock with its fencing token; runners are authorized by the trust policy
//! (least privilege: a runner identity touches only the units and environment it is granted);
//! every read, write, lock, unlock and refusal is an audit event without state content.
//!
//! - [`backend`]: [`StateBackend`], the operations (read, write, lock, unlock, versions,
//!   rollback, force write).
//! - [`auth`]: [`Principal`] and the [`Authenticator`] trait (basic-auth password → principal),
//!   with runner OIDC tokens verified against the trusted issuers' JWKS.
//! - [`locks`]: [`DomainLocks`], the state-domain lock operations the backend uses as its lock.
//! - [`local`]: the same operations, blocking, for the command line.
//! - [`verified`]: the heads this process has already decrypted and checked, so a `GET` of an
//!   unchanged head is not opened again.
//!
//! The HTTP surface (`sluice-state-backend`) maps these to Terraform's `http` backend protocol
//! and chooses the status codes.

pub mod auth;
pub mod backend;
pub mod local;
pub mod locks;
pub mod verified;

pub use auth::{
    AuthError, Authenticator, FirstOf, OidcAuthenticator, Principal, TokenAuthenticator,
    TokenPrincipal,
};
pub use backend::{
    BackendConfig, BackendStore, Environments, Pulled, StateBackend, StateError, Written,
    md5_mismatch, md5_of,
};
pub use locks::DomainLocks;
