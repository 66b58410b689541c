//! The state backend's operations, surface-independent: what `GET`, `POST`, `LOCK` and `UNLOCK`
//! of Terraform's `http` backend do, and what `sluice state …` does, over one store.
//!
//! Every operation authorizes first (the trust policy for runners: reading needs a read or
//! write grant on the unit, writing and locking a write grant for the token's environment),
//! then acts, then records one audit event, refusals included. Event details carry digests,
//! serials, versions, lock ids and reasons, never state content.
//!
//! **Audit events are evidence.** Each event is a row of `state_events` and an in-toto
//! statement (`https://sluice.dev/predicates/state-event/v1`) signed with the evidence key in a
//! DSSE envelope, whose digest is appended to the transparency log in the same store
//! transaction as the row (and as the write or lock change it records).
//!
//! **One transaction per request.** A `LOCK` or `UNLOCK` is decided inside one store
//! transaction holding the unit's lock row ([`StateStore::lock_transaction`]): the lock
//! transition, the attached Terraform lock and the audit event with its log leaf commit
//! together, or nothing does. A `POST` is checked against the lock and head read beforehand,
//! then writes the version, its blob and its audit event in one transaction that checks the
//! head and the fence again with the lock row held.
//!
//! **One lock.** The backend's lock is the unit's state-domain lock (`sluice_model::lock`,
//! stored by [`LockStore`]). A Terraform `LOCK` on a free unit acquires it for the change
//! `terraform:<lock id>`, with a lease; a `LOCK` while a change holds it (a runner applying that
//! change) is granted only when it names that change and its fencing token
//! (`?change=…&fencing_token=…` on the lock address), and is otherwise answered with the
//! holder's lock info. The Terraform lock id is attached to the holder's fencing token
//! ([`BackendLockRecord`]); a `POST ?ID=` is accepted only when that id is attached and its
//! token is still current (the lease alive, no newer holder), so a client whose lease lapsed
//! cannot overwrite the state of whoever took the lock next.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use sluice_evidence::keys::EvidenceKey;
use sluice_evidence::statement::{
    StateEventPredicate, now_rfc3339, sign_statement, state_event_statement,
};
use sluice_iac::keys::KeyProvider;
use sluice_iac::seal::{self, SealError};
use sluice_model::exception::Timestamp;
use sluice_model::layout::Layout;
use sluice_model::lock::{FencingToken, Holder, Lock, Tenure};
use sluice_model::state::{
    BackendLockInfo, Force, Head, StateBodyError, StateHeader, WriteDecision, WriteRefusal,
    check_write, rollback_body, state_id_problem,
};
use sluice_model::trust::{Action, Refusal, TrustPolicy, Unit};
use sluice_store::{
    BackendLockRecord, Digest, Fence, LeafInput, LockStore, NewStateVersion, StateEventRecord,
    StateStore, StateVersionRecord, Store, StoreError, Transaction,
};

use crate::auth::Principal;
use crate::locks::{DomainLocks, try_acquire_transition};
use crate::verified::Verified;

/// The change name a Terraform client's own lock is held under.
pub const TERRAFORM_CHANGE_PREFIX: &str = "terraform:";

/// What the backend needs from the store: its state records, its locks and its transaction
/// (with the evidence log), on one database.
pub trait BackendStore: StateStore + LockStore + Store + Clone {}
impl<T: StateStore + LockStore + Store + Clone> BackendStore for T {}

/// How a unit's environment is found from its id, for the trust policy's per-environment rule.
#[derive(Debug, Clone)]
pub enum Environments {
    /// The org's stack layout (`{env}/{region}/{stack}`): the `{env}` capture.
    Layout(Layout),
    /// The id's first segment (`dev/ap-southeast-1/network` → `dev`).
    FirstSegment,
}

impl Environments {
    pub fn env_of(&self, unit: &str) -> Option<String> {
        match self {
            Environments::Layout(layout) => layout.capture(unit)?.values.get("env").cloned(),
            Environments::FirstSegment => unit.split('/').next().map(str::to_string),
        }
    }
}

/// Settings of the backend.
#[derive(Clone)]
pub struct BackendConfig {
    /// The runner trust policy; without one, runner tokens are refused everything.
    pub trust: Option<Arc<TrustPolicy>>,
    pub environments: Environments,
    /// The lease of a lock a Terraform client takes itself. Terraform does not renew locks,
    /// so this bounds how long a killed client blocks the unit.
    pub terraform_lease: Duration,
    /// The largest state body accepted.
    pub max_state_bytes: usize,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            trust: None,
            environments: Environments::FirstSegment,
            terraform_lease: Duration::from_secs(3600),
            max_state_bytes: 64 << 20,
        }
    }
}

/// Why an operation was refused or failed. The surface maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    BadBody(#[from] StateBodyError),
    #[error("{identity} may not do this: {refusal}")]
    Forbidden { identity: String, refusal: String },
    /// Held by someone else: their lock info (Terraform shows it and `-lock-timeout` retries).
    #[error("the state of `{unit}` is locked by {}", .holder.who)]
    Locked {
        unit: String,
        holder: Box<BackendLockInfo>,
    },
    /// The write or unlock does not come with the lock it needs.
    #[error("{0}")]
    LockConflict(String),
    #[error("{0}")]
    Refused(#[from] WriteRefusal),
    #[error("{0}")]
    NotFound(String),
    #[error("state version {version} of `{unit}` failed its integrity check: {problem}")]
    Tampered {
        unit: String,
        version: u64,
        problem: String,
    },
    #[error("encrypting or decrypting state: {0}")]
    Seal(#[source] SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StateError {
    /// The audit outcome of a refusal.
    fn outcome(&self) -> &'static str {
        match self {
            StateError::NotFound(_) => "not_found",
            StateError::Tampered { .. } => "tampered",
            StateError::Seal(_) | StateError::Store(_) => "error",
            _ => "refused",
        }
    }
}

/// What a successful write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    New(StateVersionRecord),
    /// The body equals the newest version's.
    Unchanged(StateVersionRecord),
}

/// A version with its plaintext body.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub record: StateVersionRecord,
    pub body: Vec<u8>,
    /// The body's MD5 (`Content-MD5`): the one stored with the version, computed only for
    /// versions stored before it was kept.
    pub md5: [u8; 16],
}

/// The state backend over one store (see the module documentation).
pub struct StateBackend<S> {
    store: S,
    keys: Arc<dyn KeyProvider>,
    /// Signs the audit events' statements (the evidence log's key).
    evidence: EvidenceKey,
    config: BackendConfig,
    /// Heads already decrypted and checked (see [`crate::verified`]).
    verified: Verified,
}

pub fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_unix(d.as_secs() as i64, d.subsec_nanos())
}

impl<S: BackendStore> StateBackend<S> {
    /// The backend over `store` (whose locks are the state-domain locks), encrypting with
    /// `keys` and signing audit events with `evidence`.
    pub fn new(
        store: S,
        keys: Arc<dyn KeyProvider>,
        evidence: EvidenceKey,
        config: BackendConfig,
    ) -> Self {
        StateBackend {
            store,
            keys,
            evidence,
            config,
            verified: Verified::new(crate::verified::DEFAULT_BUDGET),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn config(&self) -> &BackendConfig {
        &self.config
    }

    // ---- authorization and audit --------------------------------------------------------

    fn authorize(&self, who: &Principal, action: Action, unit: &str) -> Result<(), StateError> {
        if let Some(problem) = state_id_problem(unit) {
            return Err(StateError::BadRequest(problem));
        }
        let forbidden = |refusal: String| StateError::Forbidden {
            identity: who.identity(),
            refusal,
        };
        let claims = match who {
            Principal::Admin { .. } => return Ok(()),
            Principal::Token(t) => return t.grants.authorize(action, unit).map_err(forbidden),
            Principal::Runner(claims) => claims,
        };
        let policy = self
            .config
            .trust
            .as_ref()
            .ok_or_else(|| forbidden("no trust policy is configured for runners".into()))?;
        let env = self.config.environments.env_of(unit).ok_or_else(|| {
            forbidden(format!(
                "`{unit}` does not match the stack layout, so its environment is unknown"
            ))
        })?;
        let unit = Unit {
            id: unit.to_string(),
            env,
        };
        policy
            .authorize(claims, action, &unit)
            .map(|_| ())
            .map_err(|r: Refusal| forbidden(r.to_string()))
    }

    /// Adds an audit event to `tx`: its row, and its signed statement as a log leaf. The
    /// statement's subject is the state version the event's `digest` names, if any.
    fn record(&self, tx: &mut Transaction, mut event: StateEventRecord) {
        let state = event
            .detail
            .get("digest")
            .and_then(serde_json::Value::as_str)
            .and_then(|d| d.parse::<Digest>().ok());
        let predicate = StateEventPredicate {
            unit: event.unit.clone(),
            action: event.action.clone(),
            outcome: event.outcome.clone(),
            identity: event.identity.clone(),
            version: event.version,
            detail: event.detail.clone(),
            recorded_at: now_rfc3339(),
        };
        let statement = state_event_statement(&predicate, state.as_ref().map(|d| &d.0));
        let envelope = sign_statement(&statement, &self.evidence);
        let entry = envelope.digest();
        let leaf = tx.append_leaf(LeafInput {
            entry,
            envelope_digest: Some(Digest(entry)),
        });
        let text =
            String::from_utf8(envelope.to_canonical_bytes()).expect("canonical JSON is UTF-8");
        event.envelope = Some(text);
        tx.append_state_event(event, Some(leaf));
    }

    /// Records an audit event in a transaction of its own. A failure to record is an error of
    /// the operation: an unaudited read or write must not be acknowledged.
    async fn audit(
        &self,
        unit: &str,
        action: &str,
        outcome: &str,
        who: &str,
        version: Option<u64>,
        detail: serde_json::Value,
    ) -> Result<(), StateError> {
        let mut tx = Transaction::new();
        self.record(
            &mut tx,
            StateEventRecord::new(unit, action, outcome, who, version, detail),
        );
        self.store.commit(tx).await?;
        Ok(())
    }

    /// Records a refusal decided before an operation could start (bad credentials, a wrong
    /// Content-MD5): `identity` is what is known of the caller.
    pub async fn audit_refusal(
        &self,
        unit: &str,
        action: &str,
        identity: &str,
        reason: &str,
    ) -> Result<(), StateError> {
        self.audit(
            unit,
            action,
            "refused",
            identity,
            None,
            json!({ "reason": reason }),
        )
        .await
    }

    /// Runs `op`, then records its refusal (if it was refused) as an audit event.
    async fn audited<T>(
        &self,
        unit: &str,
        action: &str,
        who: &Principal,
        result: Result<T, StateError>,
    ) -> Result<T, StateError> {
        if let Err(e) = &result {
            let mut tx = Transaction::new();
            self.record(&mut tx, refusal_event(unit, action, &who.identity(), e));
            self.store.commit(tx).await?;
        }
        result
    }

    // ---- reads ----------------------------------------------------------------------------

    /// The newest version (or `version`), decrypted and checked against its record.
    pub async fn read(
        &self,
        who: &Principal,
        unit: &str,
        version: Option<u64>,
    ) -> Result<Option<Pulled>, StateError> {
        let result = self.read_inner(who, unit, version).await;
        let result = self.audited(unit, "read", who, result).await?;
        let (outcome, version, detail) = match &result {
            Some(p) => (
                "ok",
                Some(p.record.version),
                json!({ "digest": p.record.digest, "serial": p.record.serial }),
            ),
            None => ("not_found", None, json!({})),
        };
        self.audit(unit, "read", outcome, &who.identity(), version, detail)
            .await?;
        Ok(result)
    }

    async fn read_inner(
        &self,
        who: &Principal,
        unit: &str,
        version: Option<u64>,
    ) -> Result<Option<Pulled>, StateError> {
        self.authorize(who, Action::ReadState, unit)?;
        // The newest version comes with its blob in one query (what every `GET` asks for).
        let (record, sealed) = match version {
            None => match self.store.state_head_sealed(unit).await? {
                Some(found) => found,
                None => return Ok(None),
            },
            Some(v) => {
                let record = self.store.state_version(unit, v).await?.ok_or_else(|| {
                    StateError::NotFound(format!("`{unit}` has no state version {v}"))
                })?;
                let sealed = self.store.state_blob(&record.digest).await?;
                (record, sealed)
            }
        };
        // The same record and the same sealed bytes as a version checked before: its body is
        // what opening them would give again. Anything else is opened and checked.
        let cached = sealed
            .as_deref()
            .and_then(|s| self.verified.get(&record, s));
        let body = match cached {
            Some(body) => body,
            None => {
                let body = self.open(&record, sealed.as_deref())?;
                if let Some(sealed) = sealed {
                    self.verified.put(&record, sealed, body.clone());
                }
                body
            }
        };
        let md5 = record.md5.unwrap_or_else(|| md5_of(&body));
        Ok(Some(Pulled { record, body, md5 }))
    }

    /// Decrypts a version's body (`sealed`, as read with its record) and checks it is what the
    /// record says: the blob opens with its digest as associated data, hashes to the digest,
    /// and carries the recorded serial and lineage.
    fn open(
        &self,
        record: &StateVersionRecord,
        sealed: Option<&[u8]>,
    ) -> Result<Vec<u8>, StateError> {
        let tampered = |problem: String| StateError::Tampered {
            unit: record.unit.clone(),
            version: record.version,
            problem,
        };
        let sealed =
            sealed.ok_or_else(|| tampered(format!("its blob {} is missing", record.digest)))?;
        let body =
            seal::open(self.keys.as_ref(), sealed, &record.digest.0).map_err(|e| match e {
                SealError::Tampered | SealError::Malformed => tampered(e.to_string()),
                other => StateError::Seal(other),
            })?;
        if Digest::of(&body) != record.digest {
            return Err(tampered("the body does not hash to its digest".into()));
        }
        let header = StateHeader::parse(&body).map_err(|e| tampered(e.to_string()))?;
        if header.serial != record.serial || header.lineage != record.lineage {
            return Err(tampered(format!(
                "the body has serial {} and another lineage than recorded (serial {})",
                header.serial, record.serial
            )));
        }
        Ok(body)
    }

    /// A unit's versions, newest first.
    pub async fn versions(
        &self,
        who: &Principal,
        unit: &str,
        limit: u32,
    ) -> Result<Vec<StateVersionRecord>, StateError> {
        let result = async {
            self.authorize(who, Action::ReadState, unit)?;
            Ok(self.store.state_versions(unit, limit).await?)
        }
        .await;
        let list = self.audited(unit, "versions", who, result).await?;
        self.audit(
            unit,
            "versions",
            "ok",
            &who.identity(),
            None,
            json!({ "count": list.len() }),
        )
        .await?;
        Ok(list)
    }

    // ---- writes -----------------------------------------------------------------------------

    /// `POST ?ID=<lock id>`: a new version from the holder of the unit's lock. `content_md5` is
    /// the MD5 the client sent with the body (`Content-MD5`): a body that does not hash to it
    /// was changed in transit and is refused (after authorization, before the lock and the
    /// head are looked at).
    pub async fn write(
        &self,
        who: &Principal,
        unit: &str,
        lock_id: Option<&str>,
        body: &[u8],
        content_md5: [u8; 16],
    ) -> Result<Written, StateError> {
        let result = self
            .write_inner(who, unit, lock_id, body, content_md5)
            .await;
        self.audited(unit, "write", who, result).await
    }

    async fn write_inner(
        &self,
        who: &Principal,
        unit: &str,
        lock_id: Option<&str>,
        body: &[u8],
        content_md5: [u8; 16],
    ) -> Result<Written, StateError> {
        self.authorize(who, Action::WriteState, unit)?;
        self.check_size(body)?;
        let (md5, prepared) = prepare(self.keys.as_ref(), body);
        if md5 != content_md5 {
            return Err(md5_mismatch());
        }
        let lock_id = lock_id.filter(|id| !id.is_empty()).ok_or_else(|| {
            StateError::LockConflict(format!(
                "writing the state of `{unit}` needs its lock: configure lock_address and \
                 unlock_address so Terraform locks first and sends ?ID=<lock id>"
            ))
        })?;
        // One read of what the write is checked against; its transaction checks it again.
        // (Reading it while the body is prepared measured slower: two cores, three threads.)
        let (lock, attached, head) = self.store.state_write_view(unit).await?;
        let token = current_token(unit, lock_id, lock, attached.as_ref(), now())?;
        let how = How {
            lock: Some((lock_id, token)),
            ..How::default()
        };
        self.put(who, unit, body, prepared?, how, head).await
    }

    /// An admin's write that overrides the serial and lineage checks, with a reason. It takes
    /// the unit's lock for the write (refused while anyone holds it).
    pub async fn force_write(
        &self,
        who: &Principal,
        unit: &str,
        body: &[u8],
        reason: &str,
    ) -> Result<Written, StateError> {
        let result = async {
            let force = self.admin_force(who, reason)?;
            self.authorize(who, Action::WriteState, unit)?;
            self.check_size(body)?;
            let prepared = prepare(self.keys.as_ref(), body).1?;
            self.with_admin_lock(who, unit, |token| async move {
                let how = How {
                    admin_token: Some(token),
                    force: Some(&force),
                    ..How::default()
                };
                let head = self.store.state_head(unit).await?;
                self.put(who, unit, body, prepared, how, head).await
            })
            .await
        }
        .await;
        self.audited(unit, "write", who, result).await
    }

    /// Restores version `version` as a new version (its body with the next serial), by an
    /// admin with a reason, under the unit's lock.
    pub async fn rollback(
        &self,
        who: &Principal,
        unit: &str,
        version: u64,
        reason: &str,
    ) -> Result<StateVersionRecord, StateError> {
        let result = async {
            let force = self.admin_force(who, reason)?;
            self.authorize(who, Action::WriteState, unit)?;
            let old = self
                .store
                .state_version(unit, version)
                .await?
                .ok_or_else(|| {
                    StateError::NotFound(format!("`{unit}` has no state version {version}"))
                })?;
            let sealed = self.store.state_blob(&old.digest).await?;
            let old_body = self.open(&old, sealed.as_deref())?;
            self.with_admin_lock(who, unit, |token| async move {
                let head = self
                    .store
                    .state_head(unit)
                    .await?
                    .ok_or_else(|| StateError::NotFound(format!("`{unit}` has no state")))?;
                let body = rollback_body(&old_body, head.serial)?;
                let prepared = prepare(self.keys.as_ref(), &body).1?;
                let how = How {
                    admin_token: Some(token),
                    force: Some(&force),
                    rollback_of: Some(version),
                    ..How::default()
                };
                match self
                    .put(who, unit, &body, prepared, how, Some(head))
                    .await?
                {
                    Written::New(r) | Written::Unchanged(r) => Ok(r),
                }
            })
            .await
        }
        .await;
        self.audited(unit, "rollback", who, result).await
    }

    fn admin_force(&self, who: &Principal, reason: &str) -> Result<Force, StateError> {
        let Principal::Admin { name } = who else {
            return Err(StateError::Forbidden {
                identity: who.identity(),
                refusal: "only a state administrator may force a write or roll back".into(),
            });
        };
        if reason.trim().is_empty() {
            return Err(WriteRefusal::ReasonRequired.into());
        }
        Ok(Force {
            admin: name.clone(),
            reason: reason.trim().to_string(),
        })
    }

    fn check_size(&self, body: &[u8]) -> Result<(), StateError> {
        if body.len() > self.config.max_state_bytes {
            return Err(StateError::BadRequest(format!(
                "the state is {} bytes; the limit is {}",
                body.len(),
                self.config.max_state_bytes
            )));
        }
        Ok(())
    }

    /// Checks the write of `body` (`prepared` from it) against the head (`head_record`, as
    /// read) and stores the version with its audit event in one transaction, which checks the
    /// head and the fence again.
    async fn put(
        &self,
        who: &Principal,
        unit: &str,
        body: &[u8],
        prepared: Prepared,
        how: How<'_>,
        head_record: Option<StateVersionRecord>,
    ) -> Result<Written, StateError> {
        let How {
            lock,
            admin_token,
            force,
            rollback_of,
        } = how;
        let Prepared {
            md5,
            digest,
            header,
            sealed,
        } = prepared;
        let head = head_record.as_ref().map(|r| Head {
            version: r.version,
            serial: r.serial,
            lineage: r.lineage.clone(),
            digest: r.digest.0,
        });
        let decision = check_write(head.as_ref(), &header, &digest.0, force)?;
        let (version, overridden) = match decision {
            WriteDecision::Unchanged { version } => {
                self.audit(
                    unit,
                    "write",
                    "unchanged",
                    &who.identity(),
                    Some(version),
                    json!({ "digest": digest, "serial": header.serial }),
                )
                .await?;
                return Ok(Written::Unchanged(
                    head_record.expect("unchanged implies a head"),
                ));
            }
            WriteDecision::NewVersion {
                version,
                overridden,
            } => (version, overridden),
        };
        let token = lock.map(|(_, t)| t).or(admin_token);
        let record = StateVersionRecord {
            unit: unit.to_string(),
            version,
            digest,
            serial: header.serial,
            lineage: header.lineage,
            size: body.len() as u64,
            md5: Some(md5),
            identity: who.identity(),
            lock_id: lock.map(|(id, _)| id.to_string()),
            fencing_token: token.map(|t| t.0),
            forced_reason: force.map(|f| f.reason.clone()),
            rollback_of,
            created_at: 0,
        };
        let event = StateEventRecord::new(
            unit,
            if rollback_of.is_some() {
                "rollback"
            } else {
                "write"
            },
            "ok",
            who.identity(),
            Some(version),
            json!({
                "digest": digest,
                "serial": header.serial,
                "size": body.len(),
                "lock_id": lock.map(|(id, _)| id),
                "fencing_token": token.map(|t| t.0),
                "forced": force.map(|f| json!({ "reason": f.reason, "overridden": overridden })),
            }),
        );
        // The lock is checked again inside the write's transaction: a lease that lapsed (or a
        // new holder) since `current_token` refuses the write there, with nothing written.
        let fence = token.map(|token| Fence {
            token,
            lock_id: lock.map(|(id, _)| id.to_string()),
            at: now(),
        });
        // What the head's first `GET` will read back, to answer it without opening it again
        // (kept only once the version is committed).
        let written = sealed.clone();
        let mut tx = Transaction::new();
        tx.put_state_version(NewStateVersion {
            record,
            sealed,
            fence,
        });
        self.record(&mut tx, event);
        let committed = self.store.commit(tx).await.map_err(|e| match e {
            StoreError::Stale { what, detail } => StateError::LockConflict(format!(
                "the state of `{unit}` was not written: the {what} changed while it was \
                 written ({detail}); lock again and retry"
            )),
            other => StateError::Store(other),
        })?;
        let stored = committed
            .state_versions
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Log("the store returned no version".into()))?;
        self.verified.put(&stored, written, body.to_vec());
        Ok(Written::New(stored))
    }

    // ---- locks ------------------------------------------------------------------------------

    /// The unit's state-domain lock as it stands now (an expired holder gone).
    async fn domain_lock(&self, unit: &str, at: Timestamp) -> Result<Lock, StateError> {
        Ok(LockStore::lock(&self.store, unit)
            .await?
            .map(|l| l.settled(at))
            .unwrap_or_else(|| Lock::new(unit)))
    }

    /// `LOCK`: take the unit's lock for this Terraform client, or join the holding change
    /// (`fence`: the change and fencing token the runner holds it with). Decided, written and
    /// audited in one transaction.
    pub async fn lock(
        &self,
        who: &Principal,
        unit: &str,
        info: &BackendLockInfo,
        fence: Option<(&str, u64)>,
    ) -> Result<(), StateError> {
        let checked = self.check_lock_request(who, unit, info);
        let identity = who.identity();
        if checked.is_err() {
            return self.audited(unit, "lock", who, checked).await;
        }
        let at = now();
        let lease = self.config.terraform_lease;
        let (result, _) = self
            .store
            .lock_transaction(unit, |lock, attached| {
                let mut tx = Transaction::new();
                let result = decide_lock(lock, attached.as_ref(), unit, info, fence, at, lease);
                let event = match &result {
                    Ok((token, attach)) => {
                        if let Some(a) = attach {
                            tx.put_backend_lock(a.clone());
                        }
                        StateEventRecord::new(
                            unit,
                            "lock",
                            "ok",
                            identity,
                            None,
                            json!({
                                "lock_id": info.id,
                                "operation": info.operation,
                                "fencing_token": token.0,
                            }),
                        )
                    }
                    Err(e) => refusal_event(unit, "lock", &identity, e),
                };
                self.record(&mut tx, event);
                (result.map(|_| ()), tx)
            })
            .await?;
        result
    }

    /// What a `LOCK` or `UNLOCK` must carry before the lock is looked at.
    fn check_lock_request(
        &self,
        who: &Principal,
        unit: &str,
        info: &BackendLockInfo,
    ) -> Result<(), StateError> {
        self.authorize(who, Action::WriteState, unit)?;
        match info.problem() {
            Some(p) => Err(StateError::BadRequest(p.to_string())),
            None => Ok(()),
        }
    }

    /// `UNLOCK` (also `terraform force-unlock`, which sends only the id): detach the Terraform
    /// lock and release the state-domain lock if the client took it itself. A runner's change
    /// keeps its lock; the runner releases it when the apply is done. Decided, written and
    /// audited in one transaction.
    pub async fn unlock(
        &self,
        who: &Principal,
        unit: &str,
        info: &BackendLockInfo,
    ) -> Result<(), StateError> {
        let checked = self.check_lock_request(who, unit, info);
        let identity = who.identity();
        if checked.is_err() {
            return self.audited(unit, "unlock", who, checked).await;
        }
        let at = now();
        let (result, _) = self
            .store
            .lock_transaction(unit, |lock, attached| {
                let mut tx = Transaction::new();
                let result = decide_unlock(lock, attached.as_ref(), unit, info, at);
                let event = match &result {
                    Ok((released, detach)) => {
                        if let Some(lock_id) = detach {
                            tx.delete_backend_lock(unit, lock_id);
                        }
                        StateEventRecord::new(
                            unit,
                            "unlock",
                            "ok",
                            identity,
                            None,
                            json!({ "lock_id": info.id, "released": released }),
                        )
                    }
                    Err(e) => refusal_event(unit, "unlock", &identity, e),
                };
                self.record(&mut tx, event);
                (result.map(|_| ()), tx)
            })
            .await?;
        result
    }

    /// Runs an admin's write under the unit's lock, taken for `sluice:<admin>` and released
    /// afterwards; refused while anyone else holds it.
    async fn with_admin_lock<T, F, Fut>(
        &self,
        who: &Principal,
        unit: &str,
        f: F,
    ) -> Result<T, StateError>
    where
        F: FnOnce(FencingToken) -> Fut,
        Fut: std::future::Future<Output = Result<T, StateError>>,
    {
        let at = now();
        let change = format!("sluice-admin:{}", who.identity());
        let lease = Duration::from_secs(60);
        let granted = DomainLocks::try_acquire(&self.store, unit, &change, at, lease)
            .await?
            .map_err(|r| StateError::LockConflict(r.to_string()))?;
        let Some(token) = granted else {
            let lock = self.domain_lock(unit, at).await?;
            return Err(match &lock.holder {
                Some(h) => {
                    let attached = self.store.backend_lock(unit).await?;
                    locked(unit, h, attached.as_ref())
                }
                None => StateError::LockConflict(format!(
                    "changes are queued for the lock of `{unit}`; try again when they are done"
                )),
            });
        };
        let result = f(token).await;
        // Released whatever the write did; a lapsed lease has nothing left to release.
        let _ = DomainLocks::release(&self.store, unit, token, now()).await?;
        result
    }
}

/// The refusal of a body that does not hash to the `Content-MD5` sent with it.
pub fn md5_mismatch() -> StateError {
    StateError::BadRequest("Content-MD5 does not match the body: it was changed in transit".into())
}

/// The MD5 of a state body: what Terraform's `http` backend client checks a `GET` against.
///
/// AWS-LC's MD5 (assembly on x86-64) is about a fifth faster than the `md-5` crate's: 1.8
/// against 2.2 ms for a megabyte on this project's machine, on the path of every state write.
/// (aws-lc-rs does not offer MD5; its `aws-lc-sys` does, through the `EVP` interface.)
pub fn md5_of(body: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut written: std::os::raw::c_uint = 0;
    // SAFETY: `EVP_Digest` reads `body.len()` bytes from `body`'s pointer (a live slice) and
    // writes MD5's 16 bytes to `out` (16 bytes long) and their count to `written`; it keeps
    // none of the pointers. `EVP_md5` returns a static table.
    let ok = unsafe {
        aws_lc_sys::EVP_Digest(
            body.as_ptr().cast(),
            body.len(),
            out.as_mut_ptr(),
            &mut written,
            aws_lc_sys::EVP_md5(),
            std::ptr::null_mut(),
        )
    };
    // It fails only on an allocation failure or a digest it does not know.
    assert!(ok == 1 && written == 16, "AWS-LC's MD5 failed");
    out
}

/// How a version is written: under a Terraform lock (its id and token), or by an admin under
/// the lock taken for them, forced, as a rollback.
#[derive(Default, Clone, Copy)]
struct How<'a> {
    lock: Option<(&'a str, FencingToken)>,
    admin_token: Option<FencingToken>,
    force: Option<&'a Force>,
    rollback_of: Option<u64>,
}

/// A body made ready to be stored, before the write's checks: its MD5 (what `GET` answers in
/// `Content-MD5`), its digest, its header, and its sealed (compressed, encrypted) form.
struct Prepared {
    md5: [u8; 16],
    digest: Digest,
    header: StateHeader,
    sealed: Vec<u8>,
}

/// Bodies from this size on are prepared on two threads (below it a thread costs more than it
/// saves).
const PREPARE_IN_PARALLEL_FROM: usize = 256 * 1024;

/// Prepares `body` for a write, or says why it is not a state; its MD5 comes either way (a
/// `POST` checks it against `Content-MD5` first).
///
/// Why two threads: for a 1 MB state the passes over the body take about 7 ms of one core
/// (measured inside `sluice bench state`, p50): the MD5 1.7 (it cannot be split), the JSON
/// scan 1.8, the SHA-256 digest 1.3, the compression 2.1 and the encryption 0.1, which needs
/// the digest. The MD5 and the scan run on one thread, the digest and the compression on the
/// other, then the encryption: about 3.5 ms on two cores. Compressing before the head is
/// checked costs a refused or unchanged write its compression, which is rare next to every
/// accepted one.
fn prepare(keys: &dyn KeyProvider, body: &[u8]) -> ([u8; 16], Result<Prepared, StateError>) {
    let checks = || (md5_of(body), StateHeader::parse(body));
    let digest_and_encode = || (Digest::of(body), seal::encode(body));
    let ((md5, header), (digest, encoded)) = if body.len() >= PREPARE_IN_PARALLEL_FROM {
        std::thread::scope(|scope| {
            let checks = scope.spawn(checks);
            let digested = digest_and_encode();
            let checks = checks
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (checks, digested)
        })
    } else {
        (checks(), digest_and_encode())
    };
    let prepared = header.map_err(StateError::from).and_then(|header| {
        let sealed = seal::seal_encoded(keys, encoded, &digest.0).map_err(StateError::Seal)?;
        Ok(Prepared {
            md5,
            digest,
            header,
            sealed,
        })
    });
    (md5, prepared)
}

/// The audit event of a refusal (or failure) of `action`.
fn refusal_event(unit: &str, action: &str, identity: &str, e: &StateError) -> StateEventRecord {
    StateEventRecord::new(
        unit,
        action,
        e.outcome(),
        identity,
        None,
        json!({ "reason": e.to_string() }),
    )
}

/// The fencing token a write with Terraform lock id `lock_id` is accepted under: the id must
/// be attached to the current holder's token, and that token must still be current at `at`.
/// `lock` and `attached` are the unit's stored lock and attached Terraform lock.
fn current_token(
    unit: &str,
    lock_id: &str,
    lock: Option<Lock>,
    attached: Option<&BackendLockRecord>,
    at: Timestamp,
) -> Result<FencingToken, StateError> {
    let lock = lock
        .map(|l| l.settled(at))
        .unwrap_or_else(|| Lock::new(unit));
    let Some(a) = attached.filter(|a| a.lock_id == lock_id) else {
        return Err(match &lock.holder {
            Some(h) => locked(unit, h, attached),
            None => StateError::LockConflict(format!(
                "lock id {lock_id} does not hold the lock of `{unit}` (it expired or was \
                 released); lock again"
            )),
        });
    };
    let token = FencingToken(a.fencing_token);
    match lock.check_write(token, at) {
        Ok(()) => Ok(token),
        Err(refusal) => match &lock.holder {
            Some(h) if h.token != token => Err(locked(unit, h, attached)),
            _ => Err(StateError::LockConflict(format!(
                "lock id {lock_id} of `{unit}`: {refusal}"
            ))),
        },
    }
}

/// The refusal for a unit held by `holder`: its Terraform lock info when one is attached to
/// its token, else a description of the change holding it.
fn locked(unit: &str, holder: &Holder, attached: Option<&BackendLockRecord>) -> StateError {
    let info = match attached.filter(|a| a.fencing_token == holder.token.0) {
        Some(a) => serde_json::from_value(a.info.clone()).unwrap_or_default(),
        None => holder_info(unit, holder),
    };
    let info = BackendLockInfo {
        id: if info.id.is_empty() {
            holder_info(unit, holder).id
        } else {
            info.id
        },
        ..info
    };
    StateError::Locked {
        unit: unit.to_string(),
        holder: Box::new(info),
    }
}

/// The decision of a `LOCK`, on the unit's stored lock (changed in place when the client
/// takes it) and its attached Terraform lock: the fencing token the client's lock id acts
/// under and the Terraform lock to attach, or why not.
///
/// - The lock is free (and nobody waits ahead): taken for the change `terraform:<lock id>`
///   with `lease`.
/// - The same client locking again (a retry whose answer was lost): granted as it is.
/// - A runner's change holds it and `fence` names that change and its token: the client's
///   lock id is attached to it.
/// - Otherwise: [`StateError::Locked`] with the holder's (or the first waiter's) lock info.
fn decide_lock(
    lock: &mut Lock,
    attached: Option<&BackendLockRecord>,
    unit: &str,
    info: &BackendLockInfo,
    fence: Option<(&str, u64)>,
    at: Timestamp,
    lease: Duration,
) -> Result<(FencingToken, Option<BackendLockRecord>), StateError> {
    let attach = |change: &str, token: FencingToken| BackendLockRecord {
        unit: unit.to_string(),
        lock_id: info.id.clone(),
        change: change.to_string(),
        fencing_token: token.0,
        info: serde_json::to_value(info).expect("lock info serialises"),
        created_at: sluice_store::now_millis(),
    };
    let current = lock.settled(at);
    if let Some(h) = &current.holder {
        let live = |a: &BackendLockRecord| a.fencing_token == h.token.0;
        if attached.is_some_and(|a| live(a) && a.lock_id == info.id) {
            return Ok((h.token, None));
        }
        let joins = fence.is_some_and(|(change, token)| change == h.change && token == h.token.0);
        if joins && !attached.is_some_and(live) {
            current.check_write(h.token, at).map_err(|r| {
                StateError::LockConflict(format!("the lock of `{unit}` cannot be used: {r}"))
            })?;
            return Ok((h.token, Some(attach(&h.change, h.token))));
        }
        return Err(locked(unit, h, attached));
    }
    if let Some((change, _)) = fence {
        return Err(StateError::LockConflict(format!(
            "change {change} does not hold the lock of `{unit}`"
        )));
    }
    let change = format!("{TERRAFORM_CHANGE_PREFIX}{}", info.id);
    let granted = try_acquire_transition(lock, &change, at, lease)
        .map_err(|r| StateError::LockConflict(r.to_string()))?;
    if let Some(token) = granted {
        return Ok((token, Some(attach(&change, token))));
    }
    // Free, but changes are waiting ahead (sluice's own queue): show the first of them.
    let view = lock.settled(at);
    match (&view.holder, view.queue.front()) {
        (Some(h), _) => Err(locked(unit, h, attached)),
        (None, Some(w)) => Err(StateError::Locked {
            unit: unit.to_string(),
            holder: Box::new(BackendLockInfo {
                id: format!("sluice-queue:{}", w.change),
                operation: "sluice:queued".into(),
                info: format!("change {} is next in line for this lock", w.change),
                who: w.change.clone(),
                version: String::new(),
                created: w.since.to_rfc3339(),
                path: unit.to_string(),
            }),
        }),
        (None, None) => Err(StateError::LockConflict(format!(
            "the lock of `{unit}` changed while it was taken; lock again"
        ))),
    }
}

/// The decision of an `UNLOCK`, on the unit's stored lock (released in place when the client
/// took it itself) and its attached Terraform lock: whether the state-domain lock was
/// released, and the lock id to detach.
fn decide_unlock(
    lock: &mut Lock,
    attached: Option<&BackendLockRecord>,
    unit: &str,
    info: &BackendLockInfo,
    at: Timestamp,
) -> Result<(bool, Option<String>), StateError> {
    match attached {
        Some(a) if a.lock_id == info.id => {
            // A runner's change keeps its lock; a lease that already lapsed, or a newer
            // holder, leaves nothing to release.
            let released = a.change.starts_with(TERRAFORM_CHANGE_PREFIX)
                && lock.release(FencingToken(a.fencing_token), at).is_ok();
            Ok((released, Some(a.lock_id.clone())))
        }
        Some(a) => match &lock.settled(at).holder {
            Some(h) if h.token.0 == a.fencing_token => Err(StateError::LockConflict(format!(
                "lock id {} does not hold the lock of `{unit}`; {} does",
                info.id, a.lock_id
            ))),
            // The attached lock is left from a lapsed lease: nothing is held by it.
            _ => Ok((false, None)),
        },
        None => match &lock.settled(at).holder {
            Some(h) => Err(StateError::LockConflict(format!(
                "the lock of `{unit}` is held by change {} (fencing token {}), not by a \
                 Terraform client; an admin releases it with `sluice unlock`",
                h.change, h.token
            ))),
            None => Ok((false, None)),
        },
    }
}

/// Lock info describing a state-domain lock holder that no Terraform client attached to.
pub fn holder_info(unit: &str, h: &Holder) -> BackendLockInfo {
    let (operation, detail) = match &h.tenure {
        Tenure::Leased { expires_at } => ("sluice:held", format!("lease until {expires_at}")),
        Tenure::Applying { expires_at, .. } => (
            "sluice:applying",
            format!("applying, lease until {expires_at}"),
        ),
        Tenure::Kept { since, cause } => (
            "sluice:kept",
            format!("kept since {since} after {cause}; recovery is required"),
        ),
    };
    BackendLockInfo {
        id: format!("sluice:{}:{}", h.change, h.token),
        operation: operation.into(),
        info: format!(
            "held by change {} with fencing token {}; {detail}",
            h.change, h.token
        ),
        who: h.change.clone(),
        version: String::new(),
        created: h.acquired_at.to_rfc3339(),
        path: unit.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// AWS-LC's MD5 is MD5: the same as the `md-5` crate's for any body, block boundaries
        /// included.
        #[test]
        fn md5_of_is_md5(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            use md5::Digest as _;
            let expected: [u8; 16] = md5::Md5::digest(&body).into();
            prop_assert_eq!(md5_of(&body), expected);
        }
    }

    /// A body prepared on one thread or two comes out the same: its MD5 and digest, its
    /// header, and a sealed form that opens to it; a body that is not a state is refused
    /// either way, with its MD5.
    #[test]
    fn prepared_bodies_hash_parse_and_seal() {
        use sluice_iac::keys::{KeySource, LocalKeys, generate_key};
        let keys = LocalKeys::new(KeySource::Inline(generate_key().unwrap()));
        let state = |padding: usize| {
            serde_json::to_vec(&json!({
                "version": 4, "serial": 7, "lineage": "lin", "padding": "x".repeat(padding)
            }))
            .unwrap()
        };
        for body in [state(10), state(PREPARE_IN_PARALLEL_FROM)] {
            let (md5, prepared) = prepare(&keys, &body);
            assert_eq!(md5, md5_of(&body));
            let prepared = prepared.unwrap();
            assert_eq!(prepared.md5, md5);
            assert_eq!(prepared.digest, Digest::of(&body));
            assert_eq!(
                (prepared.header.serial, prepared.header.lineage.as_str()),
                (7, "lin")
            );
            let opened = seal::open(&keys, &prepared.sealed, &prepared.digest.0).unwrap();
            assert_eq!(opened, body);
        }
        for body in [b"[1]".repeat(4), b"[1,".repeat(PREPARE_IN_PARALLEL_FROM)] {
            let (md5, prepared) = prepare(&keys, &body);
            assert_eq!(md5, md5_of(&body));
            assert!(matches!(prepared, Err(StateError::BadBody(_))));
        }
    }

    const UNIT: &str = "dev/ap/network";
    const LEASE: Duration = Duration::from_secs(60);

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_unix(2_000_000_000 + secs, 0)
    }

    fn info(id: &str) -> BackendLockInfo {
        BackendLockInfo {
            id: id.into(),
            operation: "OperationTypeApply".into(),
            ..BackendLockInfo::default()
        }
    }

    /// `id` takes the free lock of UNIT: the lock and the Terraform lock attached to it.
    fn taken(id: &str) -> (Lock, BackendLockRecord) {
        let mut lock = Lock::new(UNIT);
        let (token, attach) = decide_lock(&mut lock, None, UNIT, &info(id), None, t(0), LEASE)
            .expect("a free lock is granted");
        let attach = attach.expect("the client's lock id is attached");
        assert_eq!(token, FencingToken(1));
        assert_eq!(attach.lock_id, id);
        assert_eq!(attach.change, format!("{TERRAFORM_CHANGE_PREFIX}{id}"));
        assert_eq!(attach.fencing_token, 1);
        (lock, attach)
    }

    #[test]
    fn lock_is_granted_once_and_shown_to_others() {
        let (mut lock, attached) = taken("a");
        assert_eq!(lock.holder.as_ref().map(|h| h.token), Some(FencingToken(1)));
        // The same client again (its answer was lost): granted, nothing new attached.
        let again = decide_lock(
            &mut lock,
            Some(&attached),
            UNIT,
            &info("a"),
            None,
            t(1),
            LEASE,
        );
        assert_eq!(again.unwrap(), (FencingToken(1), None));
        // Anyone else sees the holder's lock info, with its id (so -lock-timeout retries).
        let before = lock.clone();
        match decide_lock(
            &mut lock,
            Some(&attached),
            UNIT,
            &info("b"),
            None,
            t(1),
            LEASE,
        ) {
            Err(StateError::Locked { holder, .. }) => assert_eq!(holder.id, "a"),
            other => panic!("{other:?}"),
        }
        assert_eq!(lock, before, "a refused lock changes nothing");
        // After the lease the next client takes it with a larger token.
        let (token, _) = decide_lock(
            &mut lock,
            Some(&attached),
            UNIT,
            &info("b"),
            None,
            t(61),
            LEASE,
        )
        .unwrap();
        assert_eq!(token, FencingToken(2));
    }

    #[test]
    fn a_runner_change_is_joined_only_with_its_token() {
        let mut lock = Lock::new(UNIT);
        lock.acquire("acme/infra-live#7", t(0), LEASE).unwrap();
        let fence = Some(("acme/infra-live#7", 1));
        let (token, attach) =
            decide_lock(&mut lock, None, UNIT, &info("tf"), fence, t(1), LEASE).unwrap();
        assert_eq!(token, FencingToken(1));
        assert_eq!(attach.unwrap().change, "acme/infra-live#7");
        let stale = Some(("acme/infra-live#7", 2));
        assert!(matches!(
            decide_lock(&mut lock, None, UNIT, &info("tf"), stale, t(1), LEASE),
            Err(StateError::Locked { .. })
        ));
        // Its UNLOCK detaches the client and leaves the change holding the lock.
        let attached = BackendLockRecord {
            change: "acme/infra-live#7".into(),
            ..taken("tf").1
        };
        let (released, detach) =
            decide_unlock(&mut lock, Some(&attached), UNIT, &info("tf"), t(2)).unwrap();
        assert!(!released);
        assert_eq!(detach.as_deref(), Some("tf"));
        assert!(lock.holder.is_some());
        // Without an attached client, the change's lock is not a Terraform client's to unlock.
        assert!(matches!(
            decide_unlock(&mut lock, None, UNIT, &info("tf"), t(2)),
            Err(StateError::LockConflict(_))
        ));
    }

    #[test]
    fn unlock_releases_only_the_holders_own_lock() {
        let (mut lock, attached) = taken("a");
        assert!(matches!(
            decide_unlock(&mut lock, Some(&attached), UNIT, &info("b"), t(1)),
            Err(StateError::LockConflict(_))
        ));
        let (released, detach) =
            decide_unlock(&mut lock, Some(&attached), UNIT, &info("a"), t(1)).unwrap();
        assert!(released);
        assert_eq!(detach.as_deref(), Some("a"));
        assert!(lock.settled(t(1)).holder.is_none());
    }

    #[test]
    fn writes_need_the_attached_id_with_a_live_lease() {
        let (lock, attached) = taken("a");
        let token = current_token(UNIT, "a", Some(lock.clone()), Some(&attached), t(1));
        assert_eq!(token.unwrap(), FencingToken(1));
        assert!(matches!(
            current_token(UNIT, "b", Some(lock.clone()), Some(&attached), t(1)),
            Err(StateError::Locked { .. })
        ));
        assert!(matches!(
            current_token(UNIT, "a", Some(lock), Some(&attached), t(61)),
            Err(StateError::LockConflict(_))
        ));
        assert!(matches!(
            current_token(UNIT, "a", None, None, t(1)),
            Err(StateError::LockConflict(_))
        ));
    }
}
