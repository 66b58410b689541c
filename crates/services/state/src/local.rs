//! The state backend for the local command line (`sluice state versions | pull | rollback`): the
//! store named by `--database-url` (default `.sluice/sluice.db`), the key-encryption keys of
//! sluice-iac's key provider, the evidence key its audit events are signed with, and the caller
//! as a state administrator (whoever can open the
//! database file can read it anyway; every action is still an audit event naming them). Blocking
//! calls over a runtime of its own, so the CLI stays synchronous.

use std::path::Path;
use std::sync::Arc;

use sluice_evidence::keys::EvidenceKey;
use sluice_iac::keys::{KeyError, LocalKeys};
use sluice_store::{AnyStore, StateVersionRecord, StoreError};

use crate::auth::Principal;
use crate::backend::{BackendConfig, Pulled, StateBackend, StateError};

/// Why the local backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The environment variable naming the store when `--database-url` is not given.
pub const DATABASE_ENV: &str = "SLUICE_DATABASE_URL";

pub struct LocalState {
    runtime: tokio::runtime::Runtime,
    backend: StateBackend<AnyStore>,
    who: Principal,
}

impl LocalState {
    /// Opens the store (`database_url`, else `$SLUICE_DATABASE_URL`, else
    /// `.sluice/sluice.db` under `dir`) with the keys from the environment or `key_file`;
    /// audit events are signed with `evidence`.
    pub fn open(
        dir: &Path,
        database_url: Option<&str>,
        key_file: Option<&Path>,
        evidence: EvidenceKey,
        admin: &str,
    ) -> Result<LocalState, OpenError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(OpenError::Runtime)?;
        let url = database_url
            .map(str::to_string)
            .or_else(|| std::env::var(DATABASE_ENV).ok().filter(|u| !u.is_empty()));
        let store = runtime.block_on(async {
            match url {
                Some(u) => sluice_store::open(&u).await,
                None => sluice_store::open_default(dir).await.map(AnyStore::Sqlite),
            }
        })?;
        let keys = Arc::new(LocalKeys::from_env(key_file)?);
        Ok(LocalState {
            runtime,
            backend: StateBackend::new(store, keys, evidence, BackendConfig::default()),
            who: Principal::Admin {
                name: admin.to_string(),
            },
        })
    }

    pub fn versions(&self, unit: &str, limit: u32) -> Result<Vec<StateVersionRecord>, StateError> {
        self.runtime
            .block_on(self.backend.versions(&self.who, unit, limit))
    }

    /// The newest version or `version`; `None` when the unit has no state.
    pub fn pull(&self, unit: &str, version: Option<u64>) -> Result<Option<Pulled>, StateError> {
        self.runtime
            .block_on(self.backend.read(&self.who, unit, version))
    }

    pub fn rollback(
        &self,
        unit: &str,
        version: u64,
        reason: &str,
    ) -> Result<StateVersionRecord, StateError> {
        self.runtime
            .block_on(self.backend.rollback(&self.who, unit, version, reason))
    }
}
