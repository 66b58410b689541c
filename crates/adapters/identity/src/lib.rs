//! sluice's runner identity adapter (DESIGN.md §8): it verifies the OIDC token a runner or CI
//! job presents against its issuer's published keys, and computes the environment the engine
//! then runs with, so that plans and applies use the unit's short-lived workload-identity role
//! and never a long-lived key the runner happens to hold.
//!
//! What a verified identity may do is decided by the trust policy in `sluice_model::trust`; this
//! crate only establishes who is asking (`verify`) and hands the engine its role (`cloud`).

pub mod cloud;
pub mod verify;

pub use cloud::{EngineCredentials, EngineEnv, LongLivedCredentials, engine_env};
pub use verify::{
    Expectations, JwksError, KeySet, OidcVerifier, TokenError, VerifiedToken, VerifierConfig,
};
