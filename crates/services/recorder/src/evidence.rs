//! Evidence wiring: records each stage result of a change as a signed statement in the store and its transparency log, and writes and verifies change bundles.
//!
//! What a stage calls (docs/evidence.md, "Recording from a stage"):
//!
//! - [`EvidenceService`] (async, cheap to clone; for the server and the runner) and [`Recorder`]
//!   (the same with a runtime of its own, for the CLI) open the store (SQLite at
//!   `<repo>/.sluice/sluice.db` by default, or `postgres://…`), the signing key
//!   (outside the work tree by default, or a PKCS#8 PEM file) and the artifact store (`<repo>/.sluice/blobs`,
//!   or `s3://…`).
//! - `record(change, entries)` (and `record_stage(change, entry)`, for one stage as it
//!   finishes): each stage that ran must pass the stage gate (`sluice_model::stage::may_start`:
//!   its inputs recorded as passed, the caller holding its authority), then becomes an in-toto
//!   statement in a DSSE envelope, kept as a content-addressed blob; a new version of the
//!   change's manifest lists every stage envelope in order and names the previous version. The
//!   log leaves, the stage results, the events and the manifest version are written in one store
//!   transaction; a manifest version another writer (process, replica) got to first makes the
//!   store refuse the whole transaction, and the record is prepared again from the new head. A
//!   signed checkpoint is made after the commit. A stage that did not run is stored as
//!   `not_run` and never signed.
//! - `bundle(change_id)` writes the offline-verifiable bundle; [`verify_file`] checks one.
//!
//! [`record_pr`] records a PR report's stages; [`record_validation`], [`record_plans`] and
//! [`record_check`] record the stage of `validate`, `plan` and `check` run on their own with
//! `--record`; [`demo_evidence`] is the demo's last step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use sluice_evidence::VerifyingKey;
use sluice_evidence::bundle::{
    BundleError, BundleInput, PreviousCheckpoint, VerifiedBundle, VerifyError, verify_bundle,
    write_bundle,
};
use sluice_evidence::checkpoint::{parse_note, sign_note};
use sluice_evidence::dsse::Envelope;
use sluice_evidence::keys::{self, EvidenceKey, KeyError};
use sluice_evidence::location;
use sluice_evidence::merkle::{self, Hash, MerkleError, SubtreeHashes};
use sluice_evidence::statement::{
    ChangeRef, ManifestEntry, ManifestPredicate, Outcome, StagePredicate, Subject, detail,
    digest_string, manifest_statement, now_rfc3339, open_statement, sign_statement, stage_name,
    stage_statement,
};
use sluice_model::change::ChangeId;
use sluice_model::stage::{
    Authority, Mark, Progress, STAGES, Stage, contract, may_start, may_start_under_grant,
};
use sluice_store::blobs::BlobStore as _;
use sluice_store::log::{FnSigner, LogSnapshot, create_checkpoint};
use sluice_store::{
    AnyStore, AuditOptions, AuditReport, ChangeRecord, ChangeStore as _, CheckpointRecord,
    Committed, Digest, EventRecord, LeafInput, LeafRef, LocalBlobs, Location, LogStore as _,
    ManifestRecord, NewManifest, ObjectBlobs, StageOutcome, StageResultRecord, Store, StoreError,
    Transaction, UnitKind,
};

use sluice_flow::pr::{PrReport, StageStatus};

/// Where the embedded store, keys and blobs live under a repository.
pub const SLUICE_DIR: &str = ".sluice";
/// The event kind of a manifest version.
pub const MANIFEST_EVENT: &str = "evidence.manifest";
/// Bundles the demo writes, under the repository.
pub const DEMO_BUNDLE_DIR: &str = ".sluice/bundles";

// ---- errors ------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("evidence key: {0}")]
    Key(#[from] KeyError),
    #[error(transparent)]
    Location(#[from] location::LocationError),
    #[error("building the bundle: {0}")]
    Bundle(#[from] BundleError),
    /// The bundle did not verify: the message names the first broken link.
    #[error("{0}")]
    Verify(VerifyError),
    /// An input file could not be read or is not what it must be.
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    /// The request names something that is not there (an unknown change, a missing store).
    #[error("{0}")]
    Usage(String),
    /// The stage gate refused: a stage's input does not exist or did not pass, or the caller
    /// lacks the stage's authority.
    #[error("change {change_id}: {refusal}")]
    Gate {
        change_id: String,
        #[source]
        refusal: sluice_model::stage::Refusal,
    },
    /// Stored evidence does not open or does not match what it is indexed under.
    #[error("stored evidence: {0}")]
    Corrupt(String),
    /// The async runtime the store runs on could not start (threads, file descriptors).
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = EvidenceError> = std::result::Result<T, E>;

// ---- inputs ------------------------------------------------------------------------------------

/// Where the evidence lives. Unset fields take their defaults under `repo`.
#[derive(Debug, Clone, Default)]
pub struct RecorderOptions {
    /// The directory holding `.sluice/` (normally the platform repository).
    pub repo: PathBuf,
    /// `postgres://…`, `sqlite://PATH` or a path; default `<repo>/.sluice/sluice.db`.
    pub database_url: Option<String>,
    /// A PKCS#8 PEM Ed25519 private key; default generated on first use outside the work tree
    /// (`sluice_evidence::location::key_dir`).
    pub key_file: Option<PathBuf>,
    /// `s3://BUCKET[/PREFIX]`; default `<repo>/.sluice/blobs`.
    pub blobs_url: Option<String>,
    /// The log's origin line; default the origin of the latest checkpoint, or
    /// `sluice.local/evidence/<first 16 hex of the key id>` for a new log.
    pub origin: Option<String>,
    /// Refuse to create a new embedded store or key (for commands that only read).
    pub existing_only: bool,
    /// What the caller may run, for the stage gate; default [`Authority::PR_PIPELINE`] (the
    /// server and runners will pass their own).
    pub authorities: Option<Vec<Authority>>,
}

impl RecorderOptions {
    pub fn new(repo: impl Into<PathBuf>) -> Self {
        Self {
            repo: repo.into(),
            ..Self::default()
        }
    }

    /// Fills unset fields from `SLUICE_DATABASE_URL`, `SLUICE_EVIDENCE_KEY`,
    /// `SLUICE_BLOBS_URL` and `SLUICE_EVIDENCE_ORIGIN`.
    pub fn with_env_defaults(mut self) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        self.database_url = self.database_url.or_else(|| var("SLUICE_DATABASE_URL"));
        self.key_file = self
            .key_file
            .or_else(|| var("SLUICE_EVIDENCE_KEY").map(PathBuf::from));
        self.blobs_url = self.blobs_url.or_else(|| var("SLUICE_BLOBS_URL"));
        self.origin = self.origin.or_else(|| var("SLUICE_EVIDENCE_ORIGIN"));
        self
    }

    fn database(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            self.repo
                .join(sluice_store::DEFAULT_DATABASE)
                .display()
                .to_string()
        })
    }

    /// Outside the work tree by default (see `sluice_evidence::location`).
    fn key_dir(&self) -> Result<PathBuf> {
        Ok(location::key_dir(&self.repo)?)
    }

    /// The key file checked as a place a key may be kept, or the default key directory.
    fn checked_key_dir(&self) -> Result<Option<PathBuf>> {
        match &self.key_file {
            Some(path) => {
                location::check_key_path(path)?;
                Ok(None)
            }
            None => Ok(Some(self.key_dir()?)),
        }
    }

    /// The key from the key file, or from `key_dir` (generated there on first use unless
    /// `existing_only`).
    fn key_at(&self, key_dir: Option<&Path>) -> Result<EvidenceKey> {
        Ok(match (&self.key_file, key_dir) {
            (Some(path), _) => keys::load_pem_file(path)?,
            (None, Some(dir)) if self.existing_only => {
                let path = dir.join(keys::KEY_FILE);
                if !path.exists() {
                    return Err(EvidenceError::Usage(format!(
                        "no evidence key at {}: pass --evidence-key PEM",
                        path.display()
                    )));
                }
                keys::load_or_generate(dir)?.0
            }
            (None, Some(dir)) => keys::load_or_generate(dir)?.0,
            (None, None) => unreachable!("a key directory is resolved when no key file is given"),
        })
    }

    /// The evidence signing key these options name (what other services sign their evidence
    /// with, e.g. the state backend's audit events).
    pub fn load_key(&self) -> Result<EvidenceKey> {
        let key_dir = self.checked_key_dir()?;
        self.key_at(key_dir.as_deref())
    }
}

/// Who ran a stage: the actor (a login, a CI job, a runner) and the identity it ran under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub actor: String,
    pub identity: String,
}

impl Identity {
    /// From the environment: `SLUICE_ACTOR`/`SLUICE_IDENTITY` when set, else the CI's variables
    /// (GitHub Actions, GitLab CI), else the local user as `local:<user>`, which no one
    /// authenticated.
    pub fn from_env() -> Identity {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let actor = var("SLUICE_ACTOR")
            .or_else(|| var("GITHUB_ACTOR"))
            .or_else(|| var("GITLAB_USER_LOGIN"))
            .or_else(|| var("USER"))
            .or_else(|| var("LOGNAME"))
            .unwrap_or_else(|| "unknown".into());
        let identity = var("SLUICE_IDENTITY").unwrap_or_else(|| {
            if var("GITHUB_ACTIONS").as_deref() == Some("true") {
                format!(
                    "github-actions:{}:{}",
                    var("GITHUB_REPOSITORY").unwrap_or_default(),
                    var("GITHUB_WORKFLOW_REF")
                        .or_else(|| var("GITHUB_REF"))
                        .unwrap_or_default()
                )
            } else if var("GITLAB_CI").is_some() {
                format!(
                    "gitlab-ci:{}:job/{}",
                    var("CI_PROJECT_PATH").unwrap_or_default(),
                    var("CI_JOB_ID").unwrap_or_default()
                )
            } else {
                format!("local:{actor}")
            }
        });
        Identity { actor, identity }
    }
}

/// The change a stage result belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSubject {
    pub id: ChangeId,
    /// The base revision, when known.
    pub base: Option<String>,
    pub kind: UnitKind,
}

/// A stage that ran, as its statement will say.
#[derive(Debug, Clone, PartialEq)]
pub struct StageEvent {
    pub stage: Stage,
    pub who: Identity,
    /// Digests of the stage's inputs by name (`sha256:<hex>` or `gitCommit:<sha>`).
    pub input_digests: BTreeMap<String, String>,
    /// The stage's artifacts (plan file, rendered manifests, the commit).
    pub subjects: Vec<Subject>,
    pub outcome: Outcome,
    /// Stage-specific facts; `sluice_evidence::statement::detail` names the keys bundles read.
    pub details: Value,
}

/// One entry to record: a stage that ran, or one that did not.
#[derive(Debug, Clone, PartialEq)]
pub enum StageEntry {
    Ran(StageEvent),
    NotRun { stage: Stage, reason: String },
}

impl StageEntry {
    fn stage(&self) -> Stage {
        match self {
            StageEntry::Ran(e) => e.stage,
            StageEntry::NotRun { stage, .. } => *stage,
        }
    }
}

// ---- outputs -----------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct RecordedStage {
    pub stage: String,
    pub outcome: String,
    /// `sha256:` digest of the stage envelope.
    pub envelope: String,
    pub leaf_index: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordedManifest {
    pub version: u32,
    pub envelope: String,
    pub previous: Option<String>,
    pub leaf_index: u64,
}

/// What one `record` call did for one change.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedChange {
    pub change_id: String,
    /// Stages signed and logged by this call.
    pub stages: Vec<RecordedStage>,
    /// Stages whose identical result was already recorded (nothing new signed).
    pub unchanged: Vec<String>,
    /// Stages stored as not run.
    pub not_run: Vec<String>,
    /// The manifest version this call logged, if any stage was new.
    pub manifest: Option<RecordedManifest>,
}

/// The result of recording a batch, with the checkpoint made after it.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub changes: Vec<RecordedChange>,
    pub log_size: u64,
    pub checkpoint: Option<CheckpointView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointView {
    pub origin: String,
    pub size: u64,
    /// Lowercase hex.
    pub root: String,
    /// The C2SP signed note.
    pub note: String,
}

impl From<&CheckpointRecord> for CheckpointView {
    fn from(c: &CheckpointRecord) -> Self {
        CheckpointView {
            origin: c.origin.clone(),
            size: c.size,
            root: hex::encode(c.root),
            note: c.note.clone(),
        }
    }
}

/// A written bundle.
#[derive(Debug, Clone)]
pub struct BundleOutput {
    pub bytes: Vec<u8>,
    pub change_id: String,
    pub manifest_version: u32,
    pub leaf_index: u64,
    pub checkpoint: CheckpointView,
}

/// One evidence event of the log listing.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub event_id: i64,
    pub change_id: String,
    pub kind: String,
    pub stage: Option<String>,
    pub outcome: Option<String>,
    pub envelope: Option<String>,
    pub leaf_index: Option<u64>,
    pub manifest_version: Option<u64>,
    /// Unix milliseconds.
    pub at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    pub stage: String,
    pub outcome: String,
    pub envelope: Option<String>,
    pub at: i64,
}

/// `sluice evidence log`.
#[derive(Debug, Clone, Serialize)]
pub struct LogListing {
    pub store: String,
    pub log_size: u64,
    pub checkpoint: Option<CheckpointView>,
    pub change: Option<String>,
    /// The change's stage results in order, not-run ones included (only with a change).
    pub stage_results: Vec<StageRow>,
    pub entries: Vec<LogEntry>,
    /// Earlier entries left out by the limit.
    pub omitted: usize,
}

// ---- blobs -------------------------------------------------------------------------------------

/// The artifact store on either backend.
#[derive(Debug, Clone)]
pub enum Blobs {
    Local(LocalBlobs),
    Object(ObjectBlobs),
}

impl Blobs {
    pub async fn put(&self, bytes: Vec<u8>) -> Result<Digest, StoreError> {
        match self {
            Blobs::Local(b) => b.put(bytes, false).await,
            Blobs::Object(b) => b.put(bytes, false).await,
        }
    }

    pub async fn get(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        match self {
            Blobs::Local(b) => b.get(digest).await,
            Blobs::Object(b) => b.get(digest).await,
        }
    }
}

// ---- pure decisions ----------------------------------------------------------------------------

/// Whether `new` may be listed after `listed` in a manifest: a stage already listed must not
/// require `new` unless `new` is listed before it (the verifier refuses a manifest in which a
/// stage precedes one it requires).
pub fn check_order(listed: &[Stage], new: Stage) -> Result<(), String> {
    if listed.contains(&new) {
        return Ok(());
    }
    match listed
        .iter()
        .find(|s| contract(**s).requires.contains(&new))
    {
        Some(dependent) => Err(format!(
            "stage {} cannot be recorded after {}, which requires it; record a new {} after it",
            stage_name(new),
            stage_name(*dependent),
            stage_name(*dependent)
        )),
        None => Ok(()),
    }
}

/// The stored form of a stage result: everything the statement says except the time, so that
/// recording the same result again is recognised.
fn stage_record_detail(e: &StageEvent) -> Value {
    json!({
        "actor": e.who.actor,
        "identity": e.who.identity,
        "input_digests": e.input_digests,
        "subjects": e.subjects,
        "details": e.details,
    })
}

fn store_outcome(o: Outcome) -> StageOutcome {
    match o {
        Outcome::Passed => StageOutcome::Passed,
        // The store has no "partial": a partial apply failed to complete.
        Outcome::Failed | Outcome::Partial => StageOutcome::Failed,
    }
}

/// The event kind a stage emits (DESIGN.md §2); an app's apply is a sync.
pub fn event_kind(stage: Stage, kind: UnitKind) -> &'static str {
    let events = contract(stage).events;
    if stage == Stage::Apply && kind == UnitKind::App {
        events
            .iter()
            .find(|e| e.starts_with("app."))
            .copied()
            .unwrap_or(events[0])
    } else {
        events[0]
    }
}

/// A file name for a change's bundle: the correlation id with anything but `[A-Za-z0-9._-]`
/// replaced.
pub fn bundle_file_name(change_id: &str) -> String {
    let safe: String = change_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.bundle.json")
}

/// Learns which perfect subtrees a Merkle algorithm reads (they depend only on sizes), so they
/// can be fetched from the store in one round trip.
#[derive(Default)]
struct KeyRecorder(std::cell::RefCell<Vec<(u8, u64)>>);

impl SubtreeHashes for KeyRecorder {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, MerkleError> {
        self.0.borrow_mut().push((level, index));
        Ok([0; 32])
    }
}

/// How many times a record is prepared again after other writers moved a change's manifest
/// first. Each retry follows a commit by someone else, so this bounds starvation, not progress.
const RECORD_ATTEMPTS: u32 = 200;

/// A short, jittered pause before preparing a record again, so that two writers that lost to
/// each other do not collide in step.
fn retry_pause(attempt: u32) -> std::time::Duration {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let ceiling_us = 500u64 << attempt.min(5);
    std::time::Duration::from_micros(jitter % ceiling_us)
}

/// The gate's view of a change: the latest recorded result of each stage.
fn progress_of(results: &[StageResultRecord]) -> Progress {
    let mut progress = Progress::new();
    for r in results {
        if let Some(c) = STAGES.iter().find(|c| c.name() == r.stage) {
            progress.set(c.stage, mark_of(r.outcome));
        }
    }
    progress
}

fn mark_of(outcome: StageOutcome) -> Mark {
    match outcome {
        StageOutcome::Passed => Mark::Passed,
        StageOutcome::Failed | StageOutcome::Blocked => Mark::Failed,
        StageOutcome::NotRun => Mark::NotRun,
    }
}

/// Whether `event` ran under a break-glass grant: an `apply` whose details name the grant
/// (`details.break_glass.grant`, written by `sluice apply --break-glass`; the bundle verifier
/// checks the same field).
fn under_grant(event: &StageEvent) -> bool {
    event.stage == Stage::Apply
        && event.details["break_glass"]["grant"]
            .as_str()
            .is_some_and(|g| !g.trim().is_empty())
}

/// The stage gate ([`may_start`]) for a change, as an evidence error naming the change.
fn gate(
    change: &ChangeSubject,
    stage: Stage,
    progress: &Progress,
    held: &[Authority],
) -> Result<()> {
    may_start(stage, change.kind, progress, held).map_err(|refusal| EvidenceError::Gate {
        change_id: change.id.to_string(),
        refusal,
    })
}

/// A stage signed for a record, waiting for its leaf index.
struct PreparedStage {
    stage: Stage,
    outcome: Outcome,
    envelope: String,
    leaf: LeafRef,
}

/// What one record adds to one change, before commit.
struct PreparedChange {
    change_id: String,
    stages: Vec<PreparedStage>,
    unchanged: Vec<String>,
    not_run: Vec<String>,
    manifest: Option<(RecordedManifest, LeafRef)>,
}

impl PreparedChange {
    fn recorded(self, committed: &Committed) -> RecordedChange {
        let index = |leaf| committed.index(leaf).unwrap_or_default();
        RecordedChange {
            change_id: self.change_id,
            stages: self
                .stages
                .into_iter()
                .map(|s| RecordedStage {
                    stage: stage_name(s.stage).to_string(),
                    outcome: s.outcome.as_str().to_string(),
                    envelope: s.envelope,
                    leaf_index: index(s.leaf),
                })
                .collect(),
            unchanged: self.unchanged,
            not_run: self.not_run,
            manifest: self.manifest.map(|(m, leaf)| RecordedManifest {
                leaf_index: index(leaf),
                ..m
            }),
        }
    }
}

/// A record's transaction and what it will report.
struct Prepared {
    tx: Transaction,
    changes: Vec<PreparedChange>,
}

// ---- the service -------------------------------------------------------------------------------

struct Inner {
    store: AnyStore,
    blobs: Blobs,
    key: EvidenceKey,
    origin: String,
    /// What this recorder's caller may run (the stage gate checks it for every stage recorded).
    authorities: Vec<Authority>,
}

/// The evidence API the stages call (async; clones share one store and key).
#[derive(Clone)]
pub struct EvidenceService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EvidenceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceService")
            .field("store", &self.inner.store.location())
            .field("origin", &self.inner.origin)
            .finish()
    }
}

impl EvidenceService {
    /// Opens the store (migrating it; a newer schema is refused untouched), then the key and
    /// the artifact store.
    pub async fn open(options: &RecorderOptions) -> Result<EvidenceService> {
        let database = options.database();
        if options.existing_only
            && let Location::Sqlite(path) = sluice_store::parse_location(&database)?
            && !path.exists()
        {
            return Err(EvidenceError::Usage(format!(
                "no evidence store at {}: record evidence first (`sluice pr --record`) or pass \
                 --database-url",
                path.display()
            )));
        }
        // Where the key is (and whether it may be used) is settled before anything is created.
        let key_dir = options.checked_key_dir()?;
        if !options.existing_only && (options.database_url.is_none() || options.blobs_url.is_none())
        {
            location::prepare_state_dir(&options.repo.join(SLUICE_DIR))?;
        }
        let store = sluice_store::open(&database).await?;
        let key = options.key_at(key_dir.as_deref())?;
        let blobs = match &options.blobs_url {
            Some(url) => Blobs::Object(ObjectBlobs::s3(url)?),
            None => Blobs::Local(LocalBlobs::new(
                options.repo.join(sluice_store::DEFAULT_BLOBS),
            )),
        };
        let origin = match &options.origin {
            Some(o) => o.clone(),
            None => match store.latest_checkpoint().await? {
                Some(cp) => cp.origin,
                None => format!("sluice.local/evidence/{}", &key.key_id()[..16]),
            },
        };
        Ok(EvidenceService {
            inner: Arc::new(Inner {
                store,
                blobs,
                key,
                origin,
                authorities: options
                    .authorities
                    .clone()
                    .unwrap_or_else(|| Authority::PR_PIPELINE.to_vec()),
            }),
        })
    }

    pub fn store(&self) -> &AnyStore {
        &self.inner.store
    }

    /// The same store, key and log for a caller of other authorities: the server records the
    /// pipeline's stages as the PR pipeline and a GitHub review's approval as an approver.
    pub fn with_authorities(&self, authorities: &[Authority]) -> EvidenceService {
        EvidenceService {
            inner: Arc::new(Inner {
                store: self.inner.store.clone(),
                blobs: self.inner.blobs.clone(),
                key: self.inner.key.clone(),
                origin: self.inner.origin.clone(),
                authorities: authorities.to_vec(),
            }),
        }
    }

    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The key statements and checkpoints are signed with (for services that record evidence
    /// of their own in this log, such as the state backend).
    pub fn evidence_key(&self) -> &EvidenceKey {
        &self.inner.key
    }

    /// The public key statements and checkpoints are signed with.
    pub fn public_key(&self) -> VerifyingKey {
        self.inner.key.verifying_key()
    }

    fn signer(&self) -> impl sluice_store::CheckpointSigner + use<> {
        let key = self.inner.key.clone();
        let name = self.inner.origin.clone();
        FnSigner::new(self.inner.origin.clone(), move |body: &str| {
            sign_note(body, &name, key.signing_key()).map_err(|e| e.to_string())
        })
    }

    /// Records one change's stage entries; see [`EvidenceService::record_many`].
    pub async fn record(&self, change: &ChangeSubject, entries: &[StageEntry]) -> Result<Recorded> {
        self.record_many(&[(change.clone(), entries.to_vec())])
            .await
    }

    /// Records one stage as it finishes: what the server, the runners and the commands run on
    /// their own (`plan`, `check`, `validate` with `--record`) call.
    pub async fn record_stage(
        &self,
        change: &ChangeSubject,
        entry: StageEntry,
    ) -> Result<Recorded> {
        self.record(change, std::slice::from_ref(&entry)).await
    }

    /// The gate for `stage` of `change` as recorded so far: whether this recorder's caller may
    /// start it now (the same [`may_start`] the PR path asks). Call it before a stage runs.
    pub async fn may_start(&self, change: &ChangeSubject, stage: Stage) -> Result<()> {
        let existing = self
            .inner
            .store
            .stage_results(&change.id.to_string())
            .await?;
        let progress = progress_of(&existing);
        gate(change, stage, &progress, &self.inner.authorities)
    }

    /// Records stage entries of several changes in one store transaction: each new stage result
    /// is signed, its envelope kept as a blob, and its log leaf, stage row and event are written
    /// together with the change's next manifest version (which lists every stage envelope so far
    /// and names the version before), then a checkpoint is made. A result identical to the last
    /// one recorded for its stage is not signed again; a stage that did not run is stored as
    /// `not_run` unless the stage already has a result. A stage that ran is recorded only if the
    /// stage gate lets it start given the change's recorded results.
    ///
    /// Writers of the same change race on its manifest version in the database: the loser's
    /// transaction is refused whole ([`StoreError::Stale`]) and prepared again from the new head.
    pub async fn record_many(
        &self,
        items: &[(ChangeSubject, Vec<StageEntry>)],
    ) -> Result<Recorded> {
        self.record_many_with(items, |_| {}).await
    }

    /// [`EvidenceService::record_many`], with `also` adding writes of its own to the same store
    /// transaction (the server completes the job that ran the stages there: the job is finished
    /// exactly when its evidence is recorded). If one of those writes is refused (a lost job
    /// lease), nothing is recorded.
    pub async fn record_many_with(
        &self,
        items: &[(ChangeSubject, Vec<StageEntry>)],
        also: impl Fn(&mut Transaction),
    ) -> Result<Recorded> {
        let mut attempt = 0u32;
        let (prepared, committed) = loop {
            let mut prepared = self.prepare(items).await?;
            also(&mut prepared.tx);
            match self.inner.store.commit(prepared.tx.clone()).await {
                Ok(committed) => break (prepared, committed),
                Err(e) if e.is_stale() && attempt < RECORD_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(retry_pause(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let changes = prepared
            .changes
            .into_iter()
            .map(|p| p.recorded(&committed))
            .collect();
        let checkpoint = create_checkpoint(&self.inner.store, &self.signer()).await?;
        Ok(Recorded {
            changes,
            log_size: checkpoint.size,
            checkpoint: Some(CheckpointView::from(&checkpoint)),
        })
    }

    /// Signs what `items` add to each change's evidence and gathers the writes into one
    /// transaction, against the changes' current manifest heads.
    async fn prepare(&self, items: &[(ChangeSubject, Vec<StageEntry>)]) -> Result<Prepared> {
        let inner = &self.inner;
        let recorded_at = now_rfc3339();
        let mut tx = Transaction::new();
        let mut changes = Vec::with_capacity(items.len());
        for (change, entries) in items {
            let change_id = change.id.to_string();
            // The first record of a change stays: a re-run after the base branch moved names
            // another base for the same head, which is the same change.
            if inner.store.change(&change_id).await?.is_none() {
                tx.put_change(ChangeRecord::new(
                    &change.id,
                    change.base.clone(),
                    change.kind,
                ));
            }
            let existing = inner.store.stage_results(&change_id).await?;
            let mut progress = progress_of(&existing);
            let previous = self.latest_manifest(&change_id).await?;
            let mut listed: Vec<Stage> = previous
                .as_ref()
                .map(|(m, _)| m.stages.iter().map(|e| e.stage).collect())
                .unwrap_or_default();
            let mut p = PreparedChange {
                change_id: change_id.clone(),
                stages: Vec::new(),
                unchanged: Vec::new(),
                not_run: Vec::new(),
                manifest: None,
            };
            // Rows of stages that did not run follow those that ran, as they always have.
            let mut not_run = Vec::new();
            for entry in entries {
                let name = stage_name(entry.stage());
                let last = existing.iter().rev().find(|r| r.stage == name);
                match entry {
                    StageEntry::Ran(event) => {
                        let detail = stage_record_detail(event);
                        if let Some(last) = last
                            && last.envelope_digest.is_some()
                            && last.outcome == store_outcome(event.outcome)
                            && last.detail == detail
                        {
                            p.unchanged.push(name.to_string());
                            continue;
                        }
                        if under_grant(event) {
                            may_start_under_grant(
                                event.stage,
                                change.kind,
                                &progress,
                                &inner.authorities,
                            )
                            .map_err(|refusal| {
                                EvidenceError::Gate {
                                    change_id: change.id.to_string(),
                                    refusal,
                                }
                            })?;
                        } else {
                            gate(change, event.stage, &progress, &inner.authorities)?;
                        }
                        check_order(&listed, event.stage).map_err(|e| {
                            EvidenceError::Usage(format!("change {change_id}: {e}"))
                        })?;
                        listed.push(event.stage);
                        progress.set(event.stage, mark_of(store_outcome(event.outcome)));
                        let predicate = StagePredicate {
                            change_id: change_id.clone(),
                            commit: change.id.commit.clone(),
                            stage: event.stage,
                            actor: event.who.actor.clone(),
                            identity: event.who.identity.clone(),
                            input_digests: event.input_digests.clone(),
                            outcome: event.outcome,
                            recorded_at: recorded_at.clone(),
                            details: event.details.clone(),
                        };
                        let envelope = sign_statement(
                            &stage_statement(event.subjects.clone(), &predicate),
                            &inner.key,
                        );
                        self.put_envelope(&envelope).await?;
                        let leaf = tx.append_leaf(leaf_of(&envelope));
                        let digest = digest_string(&envelope.digest());
                        let mut row = StageResultRecord::new(
                            &change_id,
                            event.stage,
                            store_outcome(event.outcome),
                            detail,
                        );
                        row.envelope_digest = Some(Digest(envelope.digest()));
                        tx.put_stage_result(row);
                        tx.append_event(
                            EventRecord::new(
                                &change_id,
                                event_kind(event.stage, change.kind),
                                json!({
                                    "stage": name,
                                    "outcome": event.outcome.as_str(),
                                    "actor": event.who.actor,
                                    "identity": event.who.identity,
                                    "envelope": digest,
                                    // Set by the store to the leaf's index at commit.
                                    "leaf_index": null,
                                }),
                            ),
                            Some(leaf),
                        );
                        p.stages.push(PreparedStage {
                            stage: event.stage,
                            outcome: event.outcome,
                            envelope: digest,
                            leaf,
                        });
                    }
                    StageEntry::NotRun { stage, reason } => {
                        let ran_now = p.stages.iter().any(|s| s.stage == *stage);
                        if last.is_none() && !ran_now {
                            if progress.get(*stage).is_none() {
                                progress.set(*stage, Mark::NotRun);
                            }
                            not_run.push(StageResultRecord::new(
                                &change_id,
                                *stage,
                                StageOutcome::NotRun,
                                json!({ "reason": reason }),
                            ));
                            p.not_run.push(name.to_string());
                        }
                    }
                }
            }
            for row in not_run {
                tx.put_stage_result(row);
            }
            if !p.stages.is_empty() {
                let mut stages: Vec<ManifestEntry> = previous
                    .as_ref()
                    .map(|(m, _)| m.stages.clone())
                    .unwrap_or_default();
                stages.extend(p.stages.iter().map(|s| ManifestEntry {
                    stage: s.stage,
                    envelope: s.envelope.clone(),
                }));
                let predicate = ManifestPredicate {
                    change: ChangeRef::from(&change.id),
                    version: previous.as_ref().map_or(1, |(m, _)| m.version + 1),
                    previous: previous.as_ref().map(|(_, r)| digest_string(&r.envelope.0)),
                    stages,
                    recorded_at: recorded_at.clone(),
                };
                let envelope = sign_statement(&manifest_statement(&predicate), &inner.key);
                self.put_envelope(&envelope).await?;
                let leaf = tx.append_leaf(leaf_of(&envelope));
                let digest = digest_string(&envelope.digest());
                tx.append_event(
                    EventRecord::new(
                        &change_id,
                        MANIFEST_EVENT,
                        json!({
                            "version": predicate.version,
                            "envelope": digest,
                            "previous": predicate.previous,
                            "leaf_index": null,
                            "stages": predicate.stages.len(),
                        }),
                    ),
                    Some(leaf),
                );
                tx.put_manifest(NewManifest {
                    change_id: change_id.clone(),
                    version: predicate.version,
                    envelope: Digest(envelope.digest()),
                    previous: previous.as_ref().map(|(_, r)| r.envelope),
                    leaf,
                });
                p.manifest = Some((
                    RecordedManifest {
                        version: predicate.version,
                        envelope: digest,
                        previous: predicate.previous,
                        leaf_index: 0,
                    },
                    leaf,
                ));
            }
            changes.push(p);
        }
        Ok(Prepared { tx, changes })
    }

    /// Keeps an envelope as a blob of its canonical bytes, so the blob's address is the
    /// envelope's digest.
    async fn put_envelope(&self, envelope: &Envelope) -> Result<()> {
        let digest = self.inner.blobs.put(envelope.to_canonical_bytes()).await?;
        if digest.0 != envelope.digest() {
            return Err(EvidenceError::Internal(
                "an envelope blob's address differs from the envelope's digest".into(),
            ));
        }
        Ok(())
    }

    async fn load_envelope(&self, digest_text: &str) -> Result<Envelope> {
        let digest: Digest = digest_text
            .parse()
            .map_err(|e| EvidenceError::Corrupt(format!("{e}")))?;
        let bytes = self.inner.blobs.get(&digest).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            EvidenceError::Corrupt(format!("envelope {digest} is not a DSSE envelope: {e}"))
        })
    }

    async fn all_events(&self, change_id: Option<&str>) -> Result<Vec<EventRecord>> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.inner.store.events(change_id, after, 10_000).await?;
            let done = page.len() < 10_000;
            if let Some(last) = page.last() {
                after = last.id;
            }
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// The change's latest manifest version, opened under this service's key.
    async fn latest_manifest(
        &self,
        change_id: &str,
    ) -> Result<Option<(ManifestPredicate, ManifestRecord)>> {
        let Some(record) = self.inner.store.latest_manifest(change_id).await? else {
            return Ok(None);
        };
        let digest = record.envelope.to_string();
        let envelope = self.load_envelope(&digest).await?;
        let manifest = open_statement(&envelope, &[self.public_key()])
            .and_then(|o| o.manifest_predicate())
            .map_err(|e| {
                EvidenceError::Corrupt(format!(
                    "manifest {digest} of {change_id} does not open with the evidence key: {e}"
                ))
            })?;
        if manifest.version != record.version {
            return Err(EvidenceError::Corrupt(format!(
                "manifest {digest} of {change_id} says version {}, the store version {}",
                manifest.version, record.version
            )));
        }
        Ok(Some((manifest, record)))
    }

    /// Builds the bundle of a change's latest manifest: its envelopes, the inclusion proof
    /// against the latest checkpoint (made if the log grew past it), a consistency proof from
    /// the checkpoint before, and the public key. The bytes verify with that key.
    pub async fn bundle(&self, change_id: &str) -> Result<BundleOutput> {
        self.bundle_from(change_id, None).await
    }

    /// [`EvidenceService::bundle`] with the consistency proof from `from_size` (a size the log
    /// had, e.g. of an older checkpoint an auditor holds) instead of the checkpoint before.
    pub async fn bundle_from(
        &self,
        change_id: &str,
        from_size: Option<u64>,
    ) -> Result<BundleOutput> {
        let inner = &self.inner;
        let (manifest, record) = self.latest_manifest(change_id).await?.ok_or_else(|| {
            EvidenceError::Usage(format!(
                "no evidence recorded for change {change_id:?}; `sluice evidence log` lists \
                 what is recorded"
            ))
        })?;
        let digest = record.envelope.to_string();
        let manifest_env = self.load_envelope(&digest).await?;
        let leaf_index = record.leaf_index;
        let leaf = inner.store.leaves(leaf_index, leaf_index + 1).await?;
        if leaf.first().map(|l| l.entry) != Some(manifest_env.digest()) {
            return Err(EvidenceError::Corrupt(format!(
                "log leaf {leaf_index} does not hold manifest {digest} of {change_id}; run \
                 `sluice evidence audit`"
            )));
        }
        let mut stages = Vec::with_capacity(manifest.stages.len());
        for entry in &manifest.stages {
            stages.push(self.load_envelope(&entry.envelope).await?);
        }

        let checkpoint = match inner.store.latest_checkpoint().await? {
            Some(cp) if cp.size > leaf_index && cp.origin == inner.origin => cp,
            _ => create_checkpoint(&inner.store, &self.signer()).await?,
        };
        let consistency_from = match from_size {
            Some(size) if size == 0 || size > checkpoint.size => {
                return Err(EvidenceError::Usage(format!(
                    "no consistency proof from size {size}: the log's checkpoint has size {}",
                    checkpoint.size
                )));
            }
            // The same size needs no proof: the roots must simply be equal.
            Some(size) => Some(size).filter(|s| *s < checkpoint.size),
            None => inner
                .store
                .checkpoints()
                .await?
                .iter()
                .map(|c| c.size)
                .filter(|s| *s > 0 && *s < checkpoint.size)
                .max(),
        };

        let rec = KeyRecorder::default();
        let _ = merkle::inclusion_proof(leaf_index, checkpoint.size, &rec);
        if let Some(from) = consistency_from {
            let _ = merkle::consistency_proof(from, checkpoint.size, &rec);
            let _ = merkle::root_from(from, &rec);
        }
        let keys = rec.0.into_inner();
        let snapshot = LogSnapshot::load(&inner.store, checkpoint.size, &keys).await?;
        let public = [self.public_key()];
        let bytes = write_bundle(&BundleInput {
            manifest: &manifest_env,
            stages: &stages,
            leaf_index,
            checkpoint: &checkpoint.note,
            log: &snapshot,
            public_keys: &public,
            consistency_from,
        })?;
        Ok(BundleOutput {
            bytes,
            change_id: manifest.change.id,
            manifest_version: manifest.version,
            leaf_index,
            checkpoint: CheckpointView::from(&checkpoint),
        })
    }

    /// The evidence events (of one change, or all), the last `limit` of them.
    pub async fn log(&self, change_id: Option<&str>, limit: usize) -> Result<LogListing> {
        let inner = &self.inner;
        let stage_results = match change_id {
            Some(id) => {
                if inner.store.change(id).await?.is_none() {
                    return Err(EvidenceError::Usage(format!(
                        "no change {id:?} in {}",
                        inner.store.location()
                    )));
                }
                inner
                    .store
                    .stage_results(id)
                    .await?
                    .into_iter()
                    .map(|r| StageRow {
                        stage: r.stage,
                        outcome: r.outcome.as_str().to_string(),
                        envelope: r.envelope_digest.map(|d| d.to_string()),
                        at: r.recorded_at,
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        let events = self.all_events(change_id).await?;
        let entries: Vec<LogEntry> = events
            .into_iter()
            .filter(|e| e.payload.get("leaf_index").is_some())
            .map(|e| LogEntry {
                event_id: e.id,
                stage: e.payload["stage"].as_str().map(str::to_string),
                outcome: e.payload["outcome"].as_str().map(str::to_string),
                envelope: e.payload["envelope"].as_str().map(str::to_string),
                leaf_index: e.payload["leaf_index"].as_u64(),
                manifest_version: e.payload["version"].as_u64(),
                change_id: e.change_id,
                kind: e.kind,
                at: e.created_at,
            })
            .collect();
        let omitted = entries.len().saturating_sub(limit);
        Ok(LogListing {
            store: inner.store.location().to_string(),
            log_size: inner.store.log_size().await?,
            checkpoint: inner
                .store
                .latest_checkpoint()
                .await?
                .as_ref()
                .map(CheckpointView::from),
            change: change_id.map(str::to_string),
            stage_results,
            entries: entries.into_iter().skip(omitted).collect(),
            omitted,
        })
    }

    /// A signed checkpoint of the whole log (the stored one when the log has not grown).
    pub async fn checkpoint(&self) -> Result<CheckpointRecord> {
        Ok(create_checkpoint(&self.inner.store, &self.signer()).await?)
    }

    /// Recomputes the tree from every stored leaf and checks every stored node and checkpoint,
    /// including each checkpoint's signature under the evidence key.
    pub async fn audit(&self) -> Result<AuditReport> {
        let key = self.public_key();
        let verify = move |cp: &CheckpointRecord| -> std::result::Result<(), String> {
            let note = parse_note(&cp.note).map_err(|e| e.to_string())?;
            note.verify_with_keys(&[key])
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        Ok(sluice_store::audit(
            &self.inner.store,
            &AuditOptions {
                verify_note: Some(&verify),
            },
        )
        .await?)
    }
}

fn leaf_of(envelope: &Envelope) -> LeafInput {
    let digest = envelope.digest();
    LeafInput {
        entry: digest,
        envelope_digest: Some(Digest(digest)),
    }
}

// ---- the blocking facade -------------------------------------------------------------------------

/// [`EvidenceService`] with a runtime of its own, for synchronous callers (the CLI). Do not use
/// it from inside an async runtime: take the service instead.
pub struct Recorder {
    runtime: tokio::runtime::Runtime,
    service: EvidenceService,
}

impl Recorder {
    pub fn open(options: &RecorderOptions) -> Result<Recorder> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(EvidenceError::Runtime)?;
        let service = runtime.block_on(EvidenceService::open(options))?;
        Ok(Recorder { runtime, service })
    }

    pub fn service(&self) -> &EvidenceService {
        &self.service
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.service.public_key()
    }

    pub fn origin(&self) -> &str {
        self.service.origin()
    }

    pub fn record(&self, change: &ChangeSubject, entries: &[StageEntry]) -> Result<Recorded> {
        self.runtime.block_on(self.service.record(change, entries))
    }

    pub fn record_many(&self, items: &[(ChangeSubject, Vec<StageEntry>)]) -> Result<Recorded> {
        self.runtime.block_on(self.service.record_many(items))
    }

    pub fn bundle(&self, change_id: &str) -> Result<BundleOutput> {
        self.runtime.block_on(self.service.bundle(change_id))
    }

    /// Writes the bundle of `change_id` to `out` (fsynced; the directory is created).
    pub fn write_bundle(&self, change_id: &str, out: &Path) -> Result<BundleOutput> {
        self.write_bundle_from(change_id, None, out)
    }

    /// [`Recorder::write_bundle`] with the consistency proof from `from_size`
    /// ([`EvidenceService::bundle_from`]).
    pub fn write_bundle_from(
        &self,
        change_id: &str,
        from_size: Option<u64>,
        out: &Path,
    ) -> Result<BundleOutput> {
        let bundle = self
            .runtime
            .block_on(self.service.bundle_from(change_id, from_size))?;
        write_file(out, &bundle.bytes)?;
        Ok(bundle)
    }

    pub fn log(&self, change_id: Option<&str>, limit: usize) -> Result<LogListing> {
        self.runtime.block_on(self.service.log(change_id, limit))
    }

    pub fn checkpoint(&self) -> Result<CheckpointRecord> {
        self.runtime.block_on(self.service.checkpoint())
    }

    pub fn audit(&self) -> Result<AuditReport> {
        self.runtime.block_on(self.service.audit())
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let io = |e: std::io::Error| EvidenceError::Input {
        path: path.display().to_string(),
        message: format!("cannot write: {e}"),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

// ---- verification (offline) --------------------------------------------------------------------

/// Reads a public key: a file holding one, or the key itself (PEM, C2SP verifier key, base64 or
/// hex of the 32 raw bytes).
pub fn load_trusted_key(spec: &str) -> Result<VerifyingKey> {
    let path = Path::new(spec);
    let (text, origin) = if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| EvidenceError::Input {
            path: spec.to_string(),
            message: format!("cannot read the trusted key: {e}"),
        })?;
        (text, spec.to_string())
    } else {
        (spec.to_string(), "--trusted-key".to_string())
    };
    if text.contains("PRIVATE KEY") {
        return Err(EvidenceError::Input {
            path: origin,
            message: "is a private key; give the public key (`sluice evidence key` prints it)"
                .into(),
        });
    }
    keys::parse_public_key(&text).map_err(|e| EvidenceError::Input {
        path: origin,
        message: e.to_string(),
    })
}

/// The tree size a checkpoint file (a signed note) states. Its signature and root are the
/// verifier's to check, against the bundle that carries the proof from this size.
pub fn checkpoint_file_size(path: &Path) -> Result<u64> {
    let input = |message: String| EvidenceError::Input {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| input(format!("cannot read the checkpoint: {e}")))?;
    let note = parse_note(&text).map_err(|e| input(e.to_string()))?;
    let checkpoint = sluice_evidence::checkpoint::Checkpoint::parse(&note.text)
        .map_err(|e| input(e.to_string()))?;
    Ok(checkpoint.size)
}

/// The public half of the local evidence key (`key_file`, or the generated one), if one
/// exists; never generates one.
pub fn local_public_key(repo: &Path, key_file: Option<&Path>) -> Result<Option<VerifyingKey>> {
    let path = match key_file {
        Some(p) => p.to_path_buf(),
        None => location::key_dir(repo)?.join(keys::KEY_FILE),
    };
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(keys::load_pem_file(&path)?.verifying_key()))
}

/// Verifies a bundle file offline against `trusted` keys and, optionally, a previously seen
/// checkpoint file (a C2SP signed note).
pub fn verify_file(
    bundle: &Path,
    trusted: &[VerifyingKey],
    previous_checkpoint: Option<&Path>,
) -> Result<VerifiedBundle> {
    let bytes = std::fs::read(bundle).map_err(|e| EvidenceError::Input {
        path: bundle.display().to_string(),
        message: format!("cannot read the bundle: {e}"),
    })?;
    let previous = match previous_checkpoint {
        Some(p) => Some(
            std::fs::read_to_string(p).map_err(|e| EvidenceError::Input {
                path: p.display().to_string(),
                message: format!("cannot read the previous checkpoint: {e}"),
            })?,
        ),
        None => None,
    };
    verify_bundle(
        &bytes,
        trusted,
        previous.as_deref().map(|checkpoint| PreviousCheckpoint {
            checkpoint,
            proof: None,
        }),
    )
    .map_err(EvidenceError::Verify)
}

// ---- the PR report -------------------------------------------------------------------------------

/// The subject of one of the report's changes: its correlation id and unit kind as the
/// report carries them.
fn change_subject(report: &PrReport, index: usize) -> ChangeSubject {
    let c = &report.changes[index];
    ChangeSubject {
        id: c.change_id.clone(),
        base: Some(report.base.clone()),
        kind: c.kind,
    }
}

/// The stage entries a PR report establishes for one change, each from that change's own
/// results: stages 1–2 (and the PR-wide rows of stages 7 on) from the report's stage rows with the
/// head commit as subject; stages 3–6 from the change's stack or app in the report, matched by
/// change id. Nothing is filled in that the report does not say: a stage without a result is
/// recorded as not run with the reason.
pub fn pr_entries(report: &PrReport, change: &ChangeSubject, who: &Identity) -> Vec<StageEntry> {
    let mut out: Vec<StageEntry> = report
        .stages
        .iter()
        .filter(|s| matches!(s.stage, Stage::Propose | Stage::Validate))
        .map(|s| match (s.stage, &report.author) {
            // The proposer is the head commit's author; the recorder only witnessed it.
            (Stage::Propose, Some(author)) => {
                pr_row_entry(&Revisions::of(report), change, &proposer(author), s)
            }
            _ => pr_row_entry(&Revisions::of(report), change, who, s),
        })
        .collect();
    let unit_entries = match change.kind {
        UnitKind::App => report
            .apps
            .iter()
            .find(|a| a.change_id.as_ref() == Some(&change.id))
            .map(|a| app_entries(&Revisions::of(report), change, who, a)),
        _ => report
            .stacks
            .iter()
            .find(|s| s.change_id == change.id)
            .map(|s| stack_entries(&Revisions::of(report), change, who, s)),
    };
    match unit_entries {
        Some(entries) => out.extend(entries),
        // No per-unit result (validation blocked the change before apps were decided): stages
        // 3–6 did not run for it, for the reason the PR row gives.
        None => out.extend(
            report
                .stages
                .iter()
                .filter(|s| {
                    matches!(
                        s.stage,
                        Stage::Render | Stage::Plan | Stage::Policy | Stage::Approve
                    )
                })
                .map(|s| StageEntry::NotRun {
                    stage: s.stage,
                    reason: format!("not_run: no result for this change ({})", s.detail),
                }),
        ),
    }
    out.extend(
        report
            .stages
            .iter()
            .filter(|s| {
                !matches!(
                    s.stage,
                    Stage::Propose
                        | Stage::Validate
                        | Stage::Render
                        | Stage::Plan
                        | Stage::Policy
                        | Stage::Approve
                )
            })
            .map(|s| pr_row_entry(&Revisions::of(report), change, who, s)),
    );
    out
}

/// A PR-wide stage row: passed and blocked rows become statements about the head commit
/// (blocked = failed), the rest are recorded as not run.
/// The identity of a change's proposer as git recorded it: a claim, named as such.
fn proposer(author: &sluice_git::git::Author) -> Identity {
    Identity {
        actor: author.name.clone(),
        identity: format!("git-author:{}", author.email),
    }
}

/// What a change's statements say besides the unit: the revisions it compares, the org and the
/// PR (from a PR report, or from a stage run on its own).
#[derive(Debug, Clone, Copy)]
pub struct Revisions<'a> {
    /// None when the stage ran on one revision (`sluice check --repo --rev`).
    pub base: Option<&'a str>,
    pub head: &'a str,
    pub org: &'a str,
    pub pr: Option<u64>,
}

impl<'a> Revisions<'a> {
    fn of(report: &'a PrReport) -> Revisions<'a> {
        Revisions {
            base: Some(&report.base),
            head: &report.head,
            org: &report.org,
            pr: report.pr,
        }
    }

    fn commit_inputs(&self) -> BTreeMap<String, String> {
        let mut inputs = BTreeMap::from([("head".to_string(), format!("gitCommit:{}", self.head))]);
        if let Some(base) = self.base {
            inputs.insert("base".to_string(), format!("gitCommit:{base}"));
        }
        inputs
    }

    fn head_subject(&self, change: &ChangeSubject) -> Subject {
        Subject::git_commit(&change.id.repo, self.head)
    }
}

fn pr_row_entry(
    rev: &Revisions,
    change: &ChangeSubject,
    who: &Identity,
    s: &sluice_flow::pr::StageResult,
) -> StageEntry {
    // Matched without a wildcard so that a status added later must be placed here.
    let outcome = match s.status {
        StageStatus::Passed => Outcome::Passed,
        StageStatus::Blocked => Outcome::Failed,
        StageStatus::Partial => Outcome::Partial,
        StageStatus::Pending | StageStatus::NotRun => {
            return StageEntry::NotRun {
                stage: s.stage,
                reason: format!("{}: {}", s.status.as_str(), s.detail),
            };
        }
    };
    StageEntry::Ran(StageEvent {
        stage: s.stage,
        who: who.clone(),
        input_digests: rev.commit_inputs(),
        subjects: vec![rev.head_subject(change)],
        outcome,
        details: json!({
            "summary": s.detail,
            "stage_number": s.number,
            "org": rev.org,
            "pr": rev.pr,
            "unit_kind": change.kind.as_str(),
        }),
    })
}

/// A subject for a `sha256:<hex>` digest; `None` for anything else (never a malformed subject).
fn digest_subject(name: &str, digest: &str) -> Option<Subject> {
    sluice_evidence::statement::parse_digest(name, digest)
        .ok()
        .map(|hash| Subject::sha256(name, &hex::encode(hash)))
}

/// The statement of a unit's stage: its artifacts as subjects, or the head commit when it made
/// none (a failed plan), so that every statement names what it is about.
fn unit_event(
    (rev, change, who): (&Revisions, &ChangeSubject, &Identity),
    stage: Stage,
    subjects: Vec<Subject>,
    input_digests: BTreeMap<String, String>,
    outcome: Outcome,
    details: Value,
) -> StageEntry {
    let subjects = if subjects.is_empty() {
        vec![rev.head_subject(change)]
    } else {
        subjects
    };
    StageEntry::Ran(StageEvent {
        stage,
        who: who.clone(),
        input_digests,
        subjects,
        outcome,
        details,
    })
}

/// A policy decision as evidence details: bundle versions, final outcome, counts per outcome.
fn decision_details(record: &sluice_model::record::DecisionRecord, decision_digest: &str) -> Value {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &record.results {
        *counts.entry(r.outcome.as_str()).or_default() += 1;
    }
    let version = record
        .bundles
        .iter()
        .map(|b| format!("{}@{}", b.name, b.version))
        .collect::<Vec<_>>()
        .join(", ");
    json!({
        detail::POLICY_VERSION: version,
        "bundles": record.bundles,
        detail::DECISION: record.outcome.as_str(),
        detail::DECISION_DIGEST: decision_digest,
        "policy_input_digest": record.input_digest,
        "outcome_counts": counts,
        "exceptions_applied": record.exceptions_applied,
    })
}

/// Stage 6: approvals are not collected by this build, so it is never recorded as run; the
/// reason lists what would have to be collected.
fn approve_not_run(
    approvals: &[sluice_model::approval::Requirement],
    blocked: Option<String>,
) -> StageEntry {
    let reason = match blocked {
        Some(why) => format!("not_run: {why}; nothing to approve"),
        None if approvals.is_empty() => "not_run: no approvals required".to_string(),
        None => {
            let total: u32 = approvals.iter().map(|r| r.count).sum();
            let each = approvals
                .iter()
                .map(|r| format!("{} of {}", r.count, r.approvers.join(" | ")))
                .collect::<Vec<_>>()
                .join("; ");
            format!("pending: {total} approvals to collect ({each})")
        }
    };
    StageEntry::NotRun {
        stage: Stage::Approve,
        reason,
    }
}

/// Stages 3–6 of one stack: nothing to render; its own plan, policy decision and approvals.
fn stack_entries(
    rev: &Revisions,
    change: &ChangeSubject,
    who: &Identity,
    stack: &sluice_flow::pr::StackReport,
) -> Vec<StageEntry> {
    let mut out = vec![StageEntry::NotRun {
        stage: Stage::Render,
        reason: "not_run: stage 3 renders apps; a stack has nothing to render".to_string(),
    }];
    let summary = stack.decision.as_ref().map(|d| &d.plan);
    let (plan, identity) = plan_entry((rev, change, who), &stack.id, &stack.plan, summary);
    out.push(plan);
    match (&stack.decision, &identity) {
        (Some(d), Some(identity)) => out.extend(policy_entries((rev, change, who), d, identity)),
        _ => {
            out.push(StageEntry::NotRun {
                stage: Stage::Policy,
                reason: "not_run: no plan to evaluate (stage 4 did not pass)".into(),
            });
            out.push(StageEntry::NotRun {
                stage: Stage::Approve,
                reason: "not_run: no plan to approve (stage 4 did not pass)".into(),
            });
        }
    }
    out
}

/// A plan's identities in evidence: what approvals and apply bind to (the plan file's digest,
/// or the plan JSON's when there is no plan file) and the plan JSON policy evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanIdentity {
    pub identity: String,
    pub json_digest: String,
}

/// Stage 4 of one stack: its statement (or why it did not run), and the plan's identity when
/// there is a plan.
fn plan_entry(
    (rev, change, who): (&Revisions, &ChangeSubject, &Identity),
    stack_id: &str,
    plan: &sluice_flow::pr::PlanState,
    summary: Option<&sluice_model::plan::PlanSummary>,
) -> (StageEntry, Option<PlanIdentity>) {
    use sluice_flow::pr::{PlanSource, PlanState};
    let file_stem = stack_id.replace('/', "__");
    match plan {
        PlanState::NotRun { reason } => (
            StageEntry::NotRun {
                stage: Stage::Plan,
                reason: format!("not_run: {reason}"),
            },
            None,
        ),
        PlanState::Failed {
            class,
            message,
            hint,
            ..
        } => (
            unit_event(
                (rev, change, who),
                Stage::Plan,
                Vec::new(),
                rev.commit_inputs(),
                Outcome::Failed,
                json!({"class": class, "message": message, "hint": hint, "stack": stack_id}),
            ),
            None,
        ),
        PlanState::Planned { source } => {
            let (identity, json_digest, artifact, file_digest) = match source {
                PlanSource::File {
                    path,
                    plan_json_digest,
                    ..
                } => (
                    plan_json_digest.clone(),
                    plan_json_digest.clone(),
                    path.clone(),
                    None,
                ),
                PlanSource::Engine {
                    engine,
                    plan_digest,
                    plan_json_digest,
                } => (
                    plan_digest.clone(),
                    plan_json_digest.clone(),
                    format!("{file_stem}.tfplan ({engine})"),
                    Some(plan_digest.clone()),
                ),
            };
            let mut subjects: Vec<Subject> =
                digest_subject(&format!("{file_stem}.plan.json"), &json_digest)
                    .into_iter()
                    .collect();
            if let Some(f) = &file_digest {
                subjects.extend(digest_subject(&format!("{file_stem}.tfplan"), f));
            }
            let mut details = json!({
                detail::PLAN_DIGEST: identity,
                "plan_json_digest": json_digest,
                detail::PLAN_ARTIFACT: artifact,
                "stack": stack_id,
            });
            // Absent rather than null: the bundle's summary reads a present key as a summary.
            if let Some(p) = summary {
                details[detail::PLAN_SUMMARY] = json!({
                    "totals": p.totals,
                    "counts": p.counts,
                    "has_changes": p.has_changes,
                    "complete": p.complete,
                    "drifted": p.drifted.len(),
                    "deferred": p.deferred.len(),
                });
            }
            (
                unit_event(
                    (rev, change, who),
                    Stage::Plan,
                    subjects,
                    rev.commit_inputs(),
                    Outcome::Passed,
                    details,
                ),
                Some(PlanIdentity {
                    identity,
                    json_digest,
                }),
            )
        }
    }
}

/// Stages 5–6 of one stack: its policy decision over `plan`, and its approvals (never run here).
fn policy_entries(
    (rev, change, who): (&Revisions, &ChangeSubject, &Identity),
    d: &sluice_flow::decide::StackDecision,
    plan: &PlanIdentity,
) -> [StageEntry; 2] {
    let mut details = decision_details(&d.policy.record, &d.policy.decision_digest);
    details["risk"] = json!(d.risk);
    details["status"] = json!(d.status.as_str());
    // What must approve this plan: the apply gate (`sluice apply`) reads the requirements
    // from here, so they are the ones this decision was signed with.
    details["approvals"] = json!(d.approvals);
    let mut inputs = rev.commit_inputs();
    inputs.insert(
        sluice_evidence::statement::input::PLAN.into(),
        plan.identity.clone(),
    );
    inputs.insert("plan_json".into(), plan.json_digest.clone());
    inputs.insert("policy_input".into(), d.policy.record.input_digest.clone());
    // The stack's status already counts every denial that blocks (a pre-existing one only
    // when `policy.preexisting` says so); the record keeps the engine's own outcome.
    let denied = d.status == sluice_flow::decide::Status::Denied;
    [
        unit_event(
            (rev, change, who),
            Stage::Policy,
            digest_subject("policy-decision.json", &d.policy.decision_digest)
                .into_iter()
                .collect(),
            inputs,
            if denied {
                Outcome::Failed
            } else {
                Outcome::Passed
            },
            details,
        ),
        approve_not_run(&d.approvals, denied.then(|| "denied by policy".to_string())),
    ]
}

/// Stages 3–6 of one app: its head render (with schema validation), the rendered diff, the
/// manifest policy decision and its approvals.
fn app_entries(
    rev: &Revisions,
    change: &ChangeSubject,
    who: &Identity,
    app: &sluice_flow::apps::AppDecision,
) -> Vec<StageEntry> {
    use sluice_flow::apps::{AppStatus, RenderState};
    let name = |side: &str| format!("rendered/{}@{side}", app.app);
    let rendered = |state: &RenderState| match state {
        RenderState::Rendered { digest, .. } => Some(digest.clone()),
        _ => None,
    };
    let (base_digest, head_digest) = (rendered(&app.render.base), rendered(&app.render.head));
    let mut out = Vec::new();
    // Stage 3: the head render and its schema validation.
    match &app.render.head {
        RenderState::Absent => out.push(StageEntry::NotRun {
            stage: Stage::Render,
            reason: "not_run: the app is absent at head (deleted by the change)".into(),
        }),
        RenderState::Failed { error } => out.push(unit_event(
            (rev, change, who),
            Stage::Render,
            Vec::new(),
            rev.commit_inputs(),
            Outcome::Failed,
            json!({"app": app.app, "error": error}),
        )),
        RenderState::Rendered {
            digest,
            objects,
            tool,
            ..
        } => {
            let invalid = app
                .validation
                .as_ref()
                .is_some_and(|v| v.invalid > 0 || v.errors > 0);
            let validation = app.validation.as_ref().map(|v| {
                json!({
                    "kubernetes_version": v.kubernetes_version,
                    "objects": v.objects,
                    "valid": v.valid,
                    "invalid": v.invalid,
                    "errors": v.errors,
                    "warnings": v.warnings,
                })
            });
            out.push(unit_event(
                (rev, change, who),
                Stage::Render,
                digest_subject(&name("head"), digest).into_iter().collect(),
                rev.commit_inputs(),
                if invalid {
                    Outcome::Failed
                } else {
                    Outcome::Passed
                },
                json!({
                    detail::RENDERED_DIGEST: digest,
                    "app": app.app,
                    "objects": objects,
                    "tool": tool,
                    "validation": validation,
                }),
            ));
        }
    }
    // Stage 4: the diff of the two renders (needs the head; an absent base is an added app).
    match &app.render.head {
        RenderState::Failed { .. } => out.push(StageEntry::NotRun {
            stage: Stage::Plan,
            reason: "not_run: the head does not render; nothing to diff".into(),
        }),
        _ if matches!(app.render.base, RenderState::Failed { .. }) => {
            out.push(StageEntry::NotRun {
                stage: Stage::Plan,
                reason: "not_run: the base does not render; nothing to diff against".into(),
            })
        }
        _ => {
            let mut subjects = Vec::new();
            let mut inputs = rev.commit_inputs();
            if let Some(d) = &base_digest {
                subjects.extend(digest_subject(&name("base"), d));
                inputs.insert("base_rendered".into(), d.clone());
            }
            if let Some(d) = &head_digest {
                subjects.extend(digest_subject(&name("head"), d));
                inputs.insert("head_rendered".into(), d.clone());
            }
            let images: Vec<Value> = app
                .diff
                .images
                .iter()
                .map(|i| json!({"object": i.object.to_string(), "container": i.container, "summary": i.summary}))
                .collect();
            out.push(unit_event(
                (rev, change, who),
                Stage::Plan,
                subjects,
                inputs,
                Outcome::Passed,
                json!({
                    "app": app.app,
                    detail::RENDERED_DIGEST: head_digest,
                    "base_rendered_digest": base_digest,
                    detail::PLAN_SUMMARY: {
                        "added": app.diff.added,
                        "removed": app.diff.removed,
                        "changed": app.diff.changed,
                        "unchanged": app.diff.unchanged,
                    },
                    "images": images,
                    "replicas_changed": app.diff.replicas.len(),
                    "resources_changed": app.diff.resources.len(),
                }),
            ));
        }
    }
    // Stage 5: manifest policy over the head objects.
    // Denied when a denial blocks: new, or pre-existing and blocked by `policy.preexisting`.
    let denied = app.denied();
    match &app.policy {
        Some(p) => {
            let mut details = decision_details(&p.record, &p.decision_digest);
            details["risk"] = json!(app.risk);
            details["status"] = json!(app.status);
            // As for stacks: what must approve these rendered manifests, as this decision was
            // signed with (approvals of apps, from reviews through the server, read it here).
            details["approvals"] = json!(app.approvals);
            let mut inputs = rev.commit_inputs();
            if let Some(d) = &head_digest {
                inputs.insert("head_rendered".into(), d.clone());
            }
            inputs.insert("policy_input".into(), p.record.input_digest.clone());
            out.push(unit_event(
                (rev, change, who),
                Stage::Policy,
                digest_subject("policy-decision.json", &p.decision_digest)
                    .into_iter()
                    .collect(),
                inputs,
                if denied {
                    Outcome::Failed
                } else {
                    Outcome::Passed
                },
                details,
            ));
        }
        None => out.push(StageEntry::NotRun {
            stage: Stage::Policy,
            reason: format!(
                "not_run: {}",
                app.policy_error
                    .as_deref()
                    .unwrap_or("manifest policy was not evaluated")
            ),
        }),
    }
    // Stage 6.
    let blocked = (app.status == AppStatus::Blocked).then(|| {
        if app.blockers.is_empty() {
            "blocked".to_string()
        } else {
            format!("blocked: {}", app.blockers.join("; "))
        }
    });
    out.push(approve_not_run(&app.approvals, blocked));
    out
}

// ---- stages run on their own (`validate`, `plan`, `check` with --record) ------------------------

/// The changes of `base..head` as `sluice pr` names them: one per affected stack and app.
pub fn changes_of(
    analysis: &sluice_flow::affected::Analysis,
    pr: Option<u64>,
) -> Vec<ChangeSubject> {
    let config = &analysis.head.config;
    let head = &analysis.report.head;
    let stacks = analysis.report.stacks.iter().map(|u| (u, UnitKind::Stack));
    let apps = analysis.report.apps.iter().map(|u| (u, UnitKind::App));
    stacks
        .chain(apps)
        .map(|(u, kind)| ChangeSubject {
            id: sluice_flow::pr::change_id(config, u, pr, head),
            base: Some(analysis.report.base.clone()),
            kind,
        })
        .collect()
}

fn analysis_revisions(
    analysis: &sluice_flow::affected::Analysis,
    pr: Option<u64>,
) -> Revisions<'_> {
    Revisions {
        base: Some(&analysis.report.base),
        head: &analysis.report.head,
        org: &analysis.head.config.org,
        pr,
    }
}

/// A stage row (as the PR report has it) as a statement about the head commit.
fn row(
    rev: &Revisions,
    change: &ChangeSubject,
    who: &Identity,
    stage: Stage,
    (status, detail): (sluice_flow::pr::StageStatus, String),
) -> StageEntry {
    pr_row_entry(
        rev,
        change,
        who,
        &sluice_flow::pr::StageResult {
            number: contract(stage).number,
            stage,
            status,
            detail,
        },
    )
}

impl Recorder {
    /// The stage results recorded for `change`, in order.
    fn stage_results(&self, change: &ChangeSubject) -> Result<Vec<StageResultRecord>> {
        let store = &self.service.inner.store;
        Ok(self
            .runtime
            .block_on(store.stage_results(&change.id.to_string()))?)
    }

    /// Whether `stage` of `change` has a recorded result.
    fn has_result(&self, change: &ChangeSubject, stage: Stage) -> Result<bool> {
        let results = self.stage_results(change)?;
        Ok(results.iter().any(|r| r.stage == stage_name(stage)))
    }

    /// The stage gate for `stage` of each change, before the stage starts.
    pub fn may_start(&self, changes: &[ChangeSubject], stage: Stage) -> Result<()> {
        for change in changes {
            self.runtime
                .block_on(self.service.may_start(change, stage))?;
        }
        Ok(())
    }
}

/// `sluice validate --record`: stage 2's result for every change of `base..head`, each after
/// its proposal (stage 1, as git recorded it) when none is recorded for the change yet. The rows
/// are the ones `sluice pr` records, so a later `pr --record` over the same revisions finds them
/// unchanged.
pub fn record_validation(
    recorder: &Recorder,
    analysis: &sluice_flow::affected::Analysis,
    pr: Option<u64>,
    validation: &sluice_flow::validation::ValidationReport,
    who: &Identity,
) -> Result<Recorded> {
    let rev = analysis_revisions(analysis, pr);
    let changes = changes_of(analysis, pr);
    let proposer = match analysis.head.snapshot.author() {
        Ok(author) => proposer(&author),
        Err(_) => who.clone(),
    };
    let mut items = Vec::with_capacity(changes.len());
    for change in &changes {
        let mut entries = Vec::new();
        if !recorder.has_result(change, Stage::Propose)? {
            entries.push(row(
                &rev,
                change,
                &proposer,
                Stage::Propose,
                sluice_flow::pr::propose_row(changes.len()),
            ));
        }
        entries.push(row(
            &rev,
            change,
            who,
            Stage::Validate,
            sluice_flow::pr::validate_row(validation),
        ));
        items.push((change.clone(), entries));
    }
    recorder.record_many(&items)
}

/// `sluice plan --record`: stage 4's result of each planned stack, for the change the stack
/// is part of in `base..head` (or, for a stack named with `--stack` that the change does not
/// affect, the change it would be).
pub fn record_plans(
    recorder: &Recorder,
    analysis: &sluice_flow::affected::Analysis,
    pr: Option<u64>,
    results: &[sluice_iac::driver::StackPlan],
    who: &Identity,
) -> Result<Recorded> {
    let rev = analysis_revisions(analysis, pr);
    let mut items = Vec::with_capacity(results.len());
    for r in results {
        let change = plan_change(analysis, pr, &r.stack);
        let summary = match &r.outcome {
            sluice_iac::driver::Outcome::Planned(p) => Some(p.summary.clone()),
            sluice_iac::driver::Outcome::Failed(_) => None,
        };
        let (state, _) = sluice_flow::pr::plan_outcome(r.clone());
        let (entry, _) = plan_entry((&rev, &change, who), &r.stack, &state, summary.as_ref());
        items.push((change, vec![entry]));
    }
    recorder.record_many(&items)
}

/// The change a planned stack belongs to (see [`record_plans`]).
pub fn plan_change(
    analysis: &sluice_flow::affected::Analysis,
    pr: Option<u64>,
    stack: &str,
) -> ChangeSubject {
    let affected = changes_of(analysis, pr)
        .into_iter()
        .find(|c| c.kind == UnitKind::Stack && c.id.unit == stack);
    affected.unwrap_or_else(|| {
        let found = analysis.org.stacks.iter().find(|s| s.id == stack);
        ChangeSubject {
            id: sluice_flow::pr::change_id_of(
                &analysis.head.config,
                found.map_or("", |s| s.path.as_str()),
                stack,
                found.map(|s| s.env.as_str()),
                pr,
                &analysis.report.head,
            ),
            base: Some(analysis.report.base.clone()),
            kind: UnitKind::Stack,
        }
    })
}

/// The change `sluice check --repo --rev --stack` judges (the stack at that revision), with the
/// org's name.
pub fn check_change(
    repo: &Path,
    rev: &str,
    stack: &str,
    pr: Option<u64>,
) -> std::result::Result<(ChangeSubject, String), sluice_flow::error::PipelineError> {
    let repository = sluice_flow::workspace::open(repo)?;
    let revision = sluice_flow::workspace::revision(&repository, rev)?;
    let org = revision.discover();
    let found = org.stacks.iter().find(|s| s.id == stack);
    let change = ChangeSubject {
        id: sluice_flow::pr::change_id_of(
            &revision.config,
            found.map_or("", |s| s.path.as_str()),
            stack,
            found.map(|s| s.env.as_str()),
            pr,
            &revision.commit(),
        ),
        base: None,
        kind: UnitKind::Stack,
    };
    Ok((change, revision.config.org.clone()))
}

/// `sluice check --record`: stage 5's decision (and stage 6, not run) for `change`, bound to the
/// plan recorded for it. The plan JSON checked must be the one stage 4 recorded (its digest is
/// compared), so that the bundle's policy-to-plan binding holds.
pub fn record_check(
    recorder: &Recorder,
    change: &ChangeSubject,
    org: &str,
    plan_json: &Path,
    report: &sluice_flow::check::CheckReport,
    who: &Identity,
) -> Result<Recorded> {
    let bytes = std::fs::read(plan_json).map_err(|e| EvidenceError::Input {
        path: plan_json.display().to_string(),
        message: e.to_string(),
    })?;
    let given = digest_string(&sluice_evidence::sha256(&bytes));
    recorder.may_start(std::slice::from_ref(change), Stage::Policy)?;
    let plan = recorder.recorded_plan(change)?.ok_or_else(|| {
        EvidenceError::Internal(format!("{}: the gate passed without a plan", change.id))
    })?;
    if plan.json_digest != given {
        return Err(EvidenceError::Usage(format!(
            "change {}: {} ({given}) is not the plan JSON recorded by stage 4 ({}); check the \
             recorded plan, or record this one first (`sluice plan --record` or `sluice pr \
             --record --plans DIR`)",
            change.id,
            plan_json.display(),
            plan.json_digest
        )));
    }
    let rev = Revisions {
        base: None,
        head: &change.id.commit,
        org,
        pr: change.id.pr,
    };
    let entries = policy_entries((&rev, change, who), &report.decision, &plan).to_vec();
    recorder.record(change, &entries)
}

impl Recorder {
    /// The identity of the plan stage 4 last recorded as passed for `change`.
    fn recorded_plan(&self, change: &ChangeSubject) -> Result<Option<PlanIdentity>> {
        let results = self.stage_results(change)?;
        let Some(last) = results
            .iter()
            .rev()
            .find(|r| r.stage == stage_name(Stage::Plan))
        else {
            return Ok(None);
        };
        if last.outcome != StageOutcome::Passed {
            return Ok(None);
        }
        let details = &last.detail["details"];
        match (
            details[detail::PLAN_DIGEST].as_str(),
            details["plan_json_digest"].as_str(),
        ) {
            (Some(identity), Some(json_digest)) => Ok(Some(PlanIdentity {
                identity: identity.to_string(),
                json_digest: json_digest.to_string(),
            })),
            _ => Err(EvidenceError::Corrupt(format!(
                "stage result {} of {} names no plan digest",
                last.id, change.id
            ))),
        }
    }
}

/// Records the stage results of a PR report for each of its changes, in one batch.
pub fn record_pr(recorder: &Recorder, report: &PrReport) -> Result<Recorded> {
    record_pr_as(recorder, report, &Identity::from_env())
}

/// [`record_pr`] for async callers (the server), with `also` adding writes to the same store
/// transaction ([`EvidenceService::record_many_with`]).
pub async fn record_pr_with(
    service: &EvidenceService,
    report: &PrReport,
    who: &Identity,
    also: impl Fn(&mut Transaction),
) -> Result<Recorded> {
    let items: Vec<_> = (0..report.changes.len())
        .map(|i| {
            let change = change_subject(report, i);
            let entries = pr_entries(report, &change, who);
            (change, entries)
        })
        .collect();
    service.record_many_with(&items, also).await
}

/// Records the stages of a `sluice pr` run as each finishes ([`sluice_flow::pr::StageObserver`]):
/// stages 1–2 of every change once validation ends, stages 3–6 of a stack when its decision is
/// made, those of the apps when they are judged. [`finish`](Self::finish) then records what only
/// the whole report says (the PR-wide rows of the later stages) and returns everything this run
/// recorded. Each call is one store transaction and a checkpoint, so a run that stops part-way
/// leaves the stages before it on record.
pub struct PrRecording<'r> {
    recorder: &'r Recorder,
    who: Identity,
    pr: Option<u64>,
    recorded: Option<Recorded>,
}

impl<'r> PrRecording<'r> {
    pub fn new(recorder: &'r Recorder, who: Identity, pr: Option<u64>) -> Self {
        PrRecording {
            recorder,
            who,
            pr,
            recorded: None,
        }
    }

    fn absorb(&mut self, later: Recorded) {
        self.recorded = Some(match self.recorded.take() {
            Some(earlier) => earlier.then(later),
            None => later,
        });
    }

    fn record_units(&mut self, units: Vec<(ChangeSubject, Vec<StageEntry>)>) -> Result<()> {
        if units.is_empty() {
            return Ok(());
        }
        let recorded = self.recorder.record_many(&units)?;
        self.absorb(recorded);
        Ok(())
    }

    /// Record the rest of `report` (stages already recorded by this run are found unchanged)
    /// and return what the whole run recorded.
    pub fn finish(mut self, report: &PrReport) -> Result<Recorded> {
        let rest = record_pr_as(self.recorder, report, &self.who)?;
        self.absorb(rest);
        Ok(self.recorded.expect("set by the call above"))
    }
}

impl sluice_flow::pr::StageObserver for PrRecording<'_> {
    type Error = EvidenceError;

    fn validated(
        &mut self,
        analysis: &sluice_flow::affected::Analysis,
        validation: &sluice_flow::validation::ValidationReport,
    ) -> Result<()> {
        if changes_of(analysis, self.pr).is_empty() {
            return Ok(());
        }
        let recorded = record_validation(self.recorder, analysis, self.pr, validation, &self.who)?;
        self.absorb(recorded);
        Ok(())
    }

    fn stack_decided(
        &mut self,
        analysis: &sluice_flow::affected::Analysis,
        stack: &sluice_flow::pr::StackReport,
    ) -> Result<()> {
        let change = ChangeSubject {
            id: stack.change_id.clone(),
            base: Some(analysis.report.base.clone()),
            kind: UnitKind::Stack,
        };
        let entries = stack_entries(
            &analysis_revisions(analysis, self.pr),
            &change,
            &self.who,
            stack,
        );
        self.record_units(vec![(change, entries)])
    }

    fn apps_decided(
        &mut self,
        analysis: &sluice_flow::affected::Analysis,
        apps: &[sluice_flow::apps::AppDecision],
    ) -> Result<()> {
        let rev = analysis_revisions(analysis, self.pr);
        let units = apps
            .iter()
            .filter_map(|a| {
                let change = ChangeSubject {
                    id: a.change_id.clone()?,
                    base: Some(analysis.report.base.clone()),
                    kind: UnitKind::App,
                };
                let entries = app_entries(&rev, &change, &self.who, a);
                Some((change, entries))
            })
            .collect();
        self.record_units(units)
    }
}

impl Recorded {
    /// This record followed by `later` of the same run: per change, the stages either signed,
    /// and what `later` found unchanged that this one did not sign; the later log size and
    /// checkpoint.
    fn then(mut self, later: Recorded) -> Recorded {
        for l in later.changes {
            match self.changes.iter_mut().find(|c| c.change_id == l.change_id) {
                Some(c) => {
                    let signed: Vec<String> = c.stages.iter().map(|s| s.stage.clone()).collect();
                    c.unchanged
                        .extend(l.unchanged.into_iter().filter(|u| !signed.contains(u)));
                    c.unchanged.sort();
                    c.unchanged.dedup();
                    c.stages.extend(l.stages);
                    c.not_run.extend(l.not_run);
                    if l.manifest.is_some() {
                        c.manifest = l.manifest;
                    }
                }
                None => self.changes.push(l),
            }
        }
        self.log_size = later.log_size;
        if later.checkpoint.is_some() {
            self.checkpoint = later.checkpoint;
        }
        self
    }
}

/// [`record_pr`] with an explicit identity.
pub fn record_pr_as(recorder: &Recorder, report: &PrReport, who: &Identity) -> Result<Recorded> {
    let mut items = Vec::with_capacity(report.changes.len());
    for i in 0..report.changes.len() {
        let change = change_subject(report, i);
        let entries = pr_entries(report, &change, who);
        items.push((change, entries));
    }
    recorder.record_many(&items)
}

/// What the demo prints at its end.
#[derive(Debug, Clone, Serialize)]
pub struct DemoEvidence {
    pub change_id: String,
    pub bundle_path: PathBuf,
    pub store: String,
    pub statements: usize,
    pub log_size: u64,
    pub checkpoint_size: u64,
    /// Lowercase hex.
    pub checkpoint_root: String,
    pub leaf_index: u64,
    pub verified: bool,
    /// The verifier's account, or the first broken link.
    pub verification: String,
    /// A command that verifies the bundle again.
    pub verify_command: String,
}

/// Records the report's evidence under `repo/.sluice`, writes the bundle of its first change
/// (a stack if there is one) to `repo/.sluice/bundles/` and verifies the written file offline.
pub fn demo_evidence(repo: &Path, report: &PrReport) -> Result<DemoEvidence> {
    let recorder = Recorder::open(&RecorderOptions::new(repo))?;
    let recorded = record_pr(&recorder, report)?;
    let change = report
        .changes
        .iter()
        .find(|c| c.kind == UnitKind::Stack)
        .or_else(|| report.changes.first())
        .ok_or_else(|| EvidenceError::Usage("the report has no change to bundle".into()))?;
    let path = repo
        .join(DEMO_BUNDLE_DIR)
        .join(bundle_file_name(&change.change_id.to_string()));
    let bundle = recorder.write_bundle(&change.change_id.to_string(), &path)?;
    let (verified, verification) = match verify_file(&path, &[recorder.public_key()], None) {
        Ok(v) => (true, v.report()),
        Err(e) => (false, e.to_string()),
    };
    Ok(DemoEvidence {
        change_id: change.change_id.to_string(),
        verify_command: format!(
            // `=`: the key is a PEM starting with `-----`, which would read as an option.
            "sluice evidence verify {} --trusted-key=\"$(sluice evidence key --repo {})\"",
            path.display(),
            repo.display()
        ),
        bundle_path: path,
        store: recorder.service().store().location().to_string(),
        statements: recorded.changes.iter().map(|c| c.stages.len()).sum(),
        log_size: recorded.log_size,
        checkpoint_size: bundle.checkpoint.size,
        checkpoint_root: bundle.checkpoint.root,
        leaf_index: bundle.leaf_index,
        verified,
        verification,
    })
}

// ---- benchmark -----------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub appends: u64,
    pub callers: usize,
    pub log_size: u64,
    pub samples: usize,
    pub statements: u32,
    pub sqlite: bool,
    /// PostgreSQL to measure (in a scratch schema), if any.
    pub postgres_url: Option<String>,
    /// Where the SQLite scratch store goes.
    pub scratch_dir: PathBuf,
}

#[derive(Debug)]
pub struct BenchReport {
    pub memory: sluice_evidence::bench::EvidenceBench,
    /// Per backend: its figures, or why it was not measured.
    pub stores: Vec<(
        String,
        std::result::Result<sluice_store::bench::Report, String>,
    )>,
}

impl BenchReport {
    pub fn to_json(&self) -> Value {
        let m = &self.memory;
        let micros = |d: std::time::Duration| d.as_secs_f64() * 1e6;
        json!({
            "schema": "sluice.bench.evidence/v1",
            "memory": {
                "leaves": m.leaves,
                "build_seconds": m.build.as_secs_f64(),
                "audit_recompute_seconds": m.audit_recompute.as_secs_f64(),
                "inclusion_build_verify_micros": micros(m.inclusion_each),
                "consistency_build_verify_micros": micros(m.consistency_each),
                "sign_statement_micros": micros(m.sign_each),
                "verify_statement_micros": micros(m.verify_each),
            },
            "stores": self.stores.iter().map(|(name, r)| match r {
                Ok(report) => json!({"backend": name, "report": report}),
                Err(e) => json!({"backend": name, "skipped": e}),
            }).collect::<Vec<_>>(),
        })
    }

    pub fn to_text(&self) -> String {
        let mut out = format!("in memory (sluice-evidence):\n{}\n", self.memory);
        for (name, r) in &self.stores {
            match r {
                Ok(report) => out.push_str(&format!("{report}\n")),
                Err(e) => out.push_str(&format!("store: {name}\n  not measured: {e}\n")),
            }
        }
        out
    }
}

/// Runs the evidence benchmarks: the in-memory log and statement signing, then durable batched
/// appends, the audit and inclusion proofs on each store.
pub fn bench(options: &BenchOptions) -> Result<BenchReport> {
    let memory = sluice_evidence::bench::run(
        options.log_size,
        options.samples.min(u32::MAX as usize) as u32,
        options.statements,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(EvidenceError::Runtime)?;
    let mut stores = Vec::new();
    if options.sqlite {
        let r = runtime.block_on(sluice_store::bench::run_sqlite_scratch(
            &options.scratch_dir,
            options.appends,
            options.callers,
            options.log_size,
            options.samples,
        ));
        stores.push(("sqlite".to_string(), r.map_err(|e| e.to_string())));
    }
    if let Some(url) = &options.postgres_url {
        let r = runtime.block_on(sluice_store::bench::run_postgres_scratch(
            url,
            options.appends,
            options.callers,
            options.log_size,
            options.samples,
        ));
        stores.push(("postgres".to_string(), r.map_err(|e| e.to_string())));
    }
    Ok(BenchReport { memory, stores })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_refuses_a_required_stage_after_its_dependent() {
        use Stage::*;
        assert!(check_order(&[], Plan).is_ok());
        assert!(check_order(&[Propose, Validate], Render).is_ok());
        let err = check_order(&[Propose, Validate, Plan], Render).unwrap_err();
        assert!(
            err.contains("render cannot be recorded after plan"),
            "{err}"
        );
        // A stage listed before may recur (a re-render, then a re-plan).
        assert!(check_order(&[Render, Plan], Render).is_ok());
        assert!(check_order(&[Plan, Policy], Approve).is_ok());
    }

    #[test]
    fn event_kinds_follow_the_stage_table() {
        assert_eq!(
            event_kind(Stage::Propose, UnitKind::Stack),
            "change.proposed"
        );
        assert_eq!(event_kind(Stage::Apply, UnitKind::Stack), "change.applied");
        assert_eq!(event_kind(Stage::Apply, UnitKind::App), "app.synced");
    }

    #[test]
    fn bundle_names_are_safe() {
        assert_eq!(
            bundle_file_name("infra-live#412@9f3a12c/prod/ap-southeast-1/rds"),
            "infra-live_412_9f3a12c_prod_ap-southeast-1_rds.bundle.json"
        );
        assert!(!bundle_file_name("../../etc/passwd").contains('/'));
    }

    fn subject() -> ChangeSubject {
        ChangeSubject {
            id: ChangeId {
                repo: "infra-live".into(),
                pr: Some(7),
                commit: "9f3a12cdeadbeef9f3a12cdeadbeef9f3a12cdea".into(),
                env: "prod".into(),
                unit: "prod/eu-west-1/network".into(),
            },
            base: Some("1111111111111111111111111111111111111111".into()),
            kind: UnitKind::Stack,
        }
    }

    fn who() -> Identity {
        Identity {
            actor: "alice".into(),
            identity: "local:alice".into(),
        }
    }

    fn ran(stage: Stage, details: Value) -> StageEntry {
        StageEntry::Ran(StageEvent {
            stage,
            who: who(),
            input_digests: BTreeMap::new(),
            subjects: vec![Subject::git_commit("infra-live", &subject().id.commit)],
            outcome: Outcome::Passed,
            details,
        })
    }

    #[test]
    fn records_versions_bundles_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::open(&RecorderOptions::new(dir.path())).unwrap();
        let change = subject();
        let first = recorder
            .record(
                &change,
                &[
                    ran(Stage::Propose, json!({})),
                    ran(Stage::Validate, json!({"summary": "ok"})),
                    StageEntry::NotRun {
                        stage: Stage::Plan,
                        reason: "not available".into(),
                    },
                ],
            )
            .unwrap();
        let c = &first.changes[0];
        assert_eq!(c.stages.len(), 2);
        assert_eq!(c.not_run, vec!["plan"]);
        let m1 = c.manifest.clone().unwrap();
        assert_eq!((m1.version, m1.previous.clone()), (1, None));
        assert_eq!(first.log_size, 3);

        // The same results again sign nothing new.
        let again = recorder
            .record(&change, &[ran(Stage::Propose, json!({}))])
            .unwrap();
        assert!(again.changes[0].manifest.is_none());
        assert_eq!(again.changes[0].unchanged, vec!["propose"]);
        // The base branch moved on: the same head is the same change.
        let moved = ChangeSubject {
            base: Some("2222222222222222222222222222222222222222".into()),
            ..change.clone()
        };
        recorder
            .record(&moved, &[ran(Stage::Propose, json!({}))])
            .unwrap();

        // A new plan makes manifest version 2, naming version 1.
        let plan_digest = format!("sha256:{}", "ab".repeat(32));
        let second = recorder
            .record(
                &change,
                &[ran(Stage::Plan, json!({"plan_digest": plan_digest}))],
            )
            .unwrap();
        let m2 = second.changes[0].manifest.clone().unwrap();
        assert_eq!(m2.version, 2);
        assert_eq!(m2.previous.as_deref(), Some(m1.envelope.as_str()));

        // A render after the plan that requires it is refused.
        let err = recorder
            .record(&change, &[ran(Stage::Render, json!({}))])
            .unwrap_err();
        assert!(matches!(err, EvidenceError::Usage(_)), "{err}");

        let out = dir.path().join("b.json");
        let bundle = recorder.write_bundle(&change.id.to_string(), &out).unwrap();
        assert_eq!(bundle.manifest_version, 2);
        let v = verify_file(&out, &[recorder.public_key()], None).unwrap();
        assert_eq!(v.stages.len(), 3);
        assert_eq!(v.manifest_version, 2);
        assert!(matches!(
            v.summary.plan,
            sluice_evidence::summary::Recorded::Ran(_)
        ));
        assert!(matches!(
            v.summary.execution,
            sluice_evidence::summary::Recorded::NotRun
        ));
        // A bundle carries a consistency proof from the checkpoint before its own.
        assert!(v.carried_consistency_from.is_some());

        let audit = recorder.audit().unwrap();
        assert!(audit.is_clean(), "{:?}", audit.problems);
        let log = recorder.log(Some(&change.id.to_string()), 100).unwrap();
        assert_eq!(log.entries.len(), 5);
        assert_eq!(log.stage_results.len(), 4);

        // Another key is not trusted.
        let other = EvidenceKey::from_seed(&[9; 32]).verifying_key();
        let err = verify_file(&out, &[other], None).unwrap_err();
        assert!(matches!(err, EvidenceError::Verify(_)), "{err}");
        assert!(err.to_string().starts_with("checkpoint:"), "{err}");
    }

    /// A PR with one planned stack and one app whose head does not render.
    fn mixed_report(plan_digest: &str) -> PrReport {
        use sluice_flow::apps::{AppDecision, AppStatus, RenderSection, RenderState};
        use sluice_flow::pr::{
            PlanSource, PlanState, StackReport, StageResult, StageStatus, UnitChange, Verdict,
        };
        use sluice_model::affected::UnitStatus;
        let head = "9f3a12cdeadbeef9f3a12cdeadbeef9f3a12cdea".to_string();
        let base = "1111111111111111111111111111111111111111".to_string();
        let cid = |unit: &str| ChangeId {
            repo: "infra-live".into(),
            pr: Some(7),
            commit: head.clone(),
            env: "prod".into(),
            unit: unit.into(),
        };
        let row = |number: u8, stage: Stage, status: StageStatus| StageResult {
            number,
            stage,
            status,
            detail: format!("row {number}"),
        };
        let change = |kind: UnitKind, id: &str| UnitChange {
            kind,
            change_id: cid(id),
            id: id.into(),
            env: Some("prod".into()),
            status: UnitStatus::Modified,
            owners: vec![],
        };
        PrReport {
            schema: sluice_flow::pr::SCHEMA,
            org: "acme".into(),
            pr: Some(7),
            base: base.clone(),
            head: head.clone(),
            author: Some(sluice_git::git::Author {
                name: "Mona Lisa".into(),
                email: "mona@example.com".into(),
            }),
            verdict: Verdict::AppBlocked,
            changes: vec![
                change(UnitKind::Stack, "prod/network"),
                change(UnitKind::App, "web"),
            ],
            reviewers: vec![],
            stages: vec![
                row(1, Stage::Propose, StageStatus::Passed),
                row(2, Stage::Validate, StageStatus::Passed),
                row(3, Stage::Render, StageStatus::Blocked),
                row(4, Stage::Plan, StageStatus::Partial),
                row(5, Stage::Policy, StageStatus::Partial),
                row(6, Stage::Approve, StageStatus::Pending),
                row(7, Stage::Apply, StageStatus::NotRun),
                row(8, Stage::Verify, StageStatus::NotRun),
            ],
            stacks: vec![StackReport {
                id: "prod/network".into(),
                change_id: cid("prod/network"),
                env: Some("prod".into()),
                status: UnitStatus::Modified,
                plan: PlanState::Planned {
                    source: PlanSource::File {
                        path: "plans/prod__network.json".into(),
                        note: None,
                        plan_json_digest: plan_digest.into(),
                    },
                },
                decision: None,
                approval_status: None,
                health: None,
            }],
            apps: vec![AppDecision {
                app: "web".into(),
                path: "apps/web".into(),
                env: Some("prod".into()),
                production: true,
                change_id: Some(cid("web")),
                change: UnitStatus::Modified,
                render: RenderSection {
                    base: RenderState::Rendered {
                        commit: base.clone(),
                        digest: format!("sha256:{}", "cd".repeat(32)),
                        objects: 3,
                        tool: None,
                    },
                    head: RenderState::Failed {
                        error: "apps/web/values.yaml:3:1: bad indentation".into(),
                    },
                    notes: vec![],
                },
                validation: None,
                diff: Default::default(),
                policy: None,
                policy_baseline: None,
                policy_error: Some("the head does not render".into()),
                risk: sluice_model::risk::RiskAssessment {
                    risk: sluice_model::risk::RiskLevel::R2,
                    reasons: vec![],
                },
                approvals: vec![],
                status: AppStatus::Blocked,
                blockers: vec!["head render failed".into()],
            }],
            notes: vec![],
            warnings: vec![],
            affected: sluice_flow::affected::AffectedReport {
                schema: sluice_flow::affected::SCHEMA,
                base: base.clone(),
                head: head.clone(),
                stacks: vec![],
                apps: vec![],
                warnings: vec![],
            },
            validation: sluice_flow::validation::ValidationReport {
                schema: "sluice.validation/v1",
                rev: head,
                base: Some(base),
                passed: true,
                summary: sluice_flow::validation::Summary {
                    files: 0,
                    errors: 0,
                    warnings: 0,
                    info: 0,
                },
                findings: vec![],
                config_invalid: false,
                baseline: None,
            },
            backports: vec![],
            docs_url: "https://docs.example/".into(),
            org_errors: vec![],
        }
    }

    fn entry(entries: &[StageEntry], stage: Stage) -> &StageEntry {
        entries.iter().find(|e| e.stage() == stage).unwrap()
    }

    #[test]
    fn pr_entries_come_from_each_changes_own_results() {
        let plan_hex = "ab".repeat(32);
        let plan_digest = format!("sha256:{plan_hex}");
        let report = mixed_report(&plan_digest);
        let stack = change_subject(&report, 0);
        let app = change_subject(&report, 1);
        let stack_entries = pr_entries(&report, &stack, &who());
        let app_entries = pr_entries(&report, &app, &who());
        // One entry per stage, in stage order.
        let order: Vec<Stage> = stack_entries.iter().map(StageEntry::stage).collect();
        assert_eq!(
            order,
            report.stages.iter().map(|s| s.stage).collect::<Vec<_>>()
        );

        // The stack's plan passed, about its own plan JSON — not "partial" because of the app.
        match entry(&stack_entries, Stage::Plan) {
            StageEntry::Ran(e) => {
                assert_eq!(e.outcome, Outcome::Passed);
                assert_eq!(e.subjects[0].digest["sha256"], plan_hex);
                assert_eq!(e.details[detail::PLAN_DIGEST], plan_digest);
            }
            other => panic!("stack plan: {other:?}"),
        }
        assert!(matches!(
            entry(&stack_entries, Stage::Render),
            StageEntry::NotRun { .. }
        ));
        // No decision in the report: policy and approvals are not invented.
        assert!(matches!(
            entry(&stack_entries, Stage::Policy),
            StageEntry::NotRun { .. }
        ));
        assert!(matches!(
            entry(&stack_entries, Stage::Approve),
            StageEntry::NotRun { .. }
        ));
        // Stage 1 is PR-wide, about the head commit.
        match entry(&stack_entries, Stage::Propose) {
            StageEntry::Ran(e) => {
                assert_eq!(
                    e.subjects,
                    vec![Subject::git_commit("infra-live", &report.head)]
                );
                // Proposed by the head commit's author, not by whoever ran the recorder.
                assert_eq!(e.who.actor, "Mona Lisa");
                assert_eq!(e.who.identity, "git-author:mona@example.com");
            }
            other => panic!("propose: {other:?}"),
        }

        // The app's render failed; there is nothing to diff; policy did not run.
        match entry(&app_entries, Stage::Render) {
            StageEntry::Ran(e) => {
                assert_eq!(e.outcome, Outcome::Failed);
                assert!(
                    e.details["error"]
                        .as_str()
                        .unwrap()
                        .contains("values.yaml:3:1")
                );
            }
            other => panic!("app render: {other:?}"),
        }
        assert!(matches!(
            entry(&app_entries, Stage::Plan),
            StageEntry::NotRun { .. }
        ));
        match entry(&app_entries, Stage::Policy) {
            StageEntry::NotRun { reason, .. } => assert!(reason.contains("does not render")),
            other => panic!("app policy: {other:?}"),
        }

        // Recorded, bundled and verified: the bundle's plan hash is the stack's plan.
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::open(&RecorderOptions::new(dir.path())).unwrap();
        record_pr_as(&recorder, &report, &who()).unwrap();
        let out = dir.path().join("stack.json");
        recorder.write_bundle(&stack.id.to_string(), &out).unwrap();
        let v = verify_file(&out, &[recorder.public_key()], None).unwrap();
        match &v.summary.plan {
            sluice_evidence::summary::Recorded::Ran(p) => {
                assert_eq!(p.hash.as_deref(), Some(plan_digest.as_str()));
                assert_eq!(p.outcome, "passed");
            }
            other => panic!("bundle plan: {other:?}"),
        }
    }

    #[test]
    fn the_gate_refuses_a_stage_whose_input_is_missing_or_failed_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::open(&RecorderOptions::new(dir.path())).unwrap();
        let change = subject();
        let err = recorder
            .record(&change, &[ran(Stage::Plan, json!({}))])
            .unwrap_err();
        assert!(
            matches!(
                &err,
                EvidenceError::Gate {
                    refusal: sluice_model::stage::Refusal::InputMissing {
                        stage: Stage::Plan,
                        input: Stage::Validate
                    },
                    ..
                }
            ),
            "{err}"
        );
        use sluice_store::LogStore as _;
        let store = recorder.service().store();
        let rt = &recorder.runtime;
        assert_eq!(rt.block_on(store.log_size()).unwrap(), 0);
        // A failed validation closes the gate for the plan, in the same record and later.
        let mut failed = match ran(Stage::Validate, json!({})) {
            StageEntry::Ran(e) => e,
            StageEntry::NotRun { .. } => unreachable!(),
        };
        failed.outcome = Outcome::Failed;
        let err = recorder
            .record(
                &change,
                &[
                    ran(Stage::Propose, json!({})),
                    StageEntry::Ran(failed.clone()),
                    ran(Stage::Plan, json!({})),
                ],
            )
            .unwrap_err();
        assert!(err.to_string().contains("did not pass"), "{err}");
        assert_eq!(rt.block_on(store.log_size()).unwrap(), 0);
        recorder
            .record(
                &change,
                &[ran(Stage::Propose, json!({})), StageEntry::Ran(failed)],
            )
            .unwrap();
        assert!(
            recorder
                .may_start(std::slice::from_ref(&change), Stage::Plan)
                .is_err()
        );
        // Nor an approval out of order (no policy decision is recorded).
        let err = recorder
            .record(&change, &[ran(Stage::Approve, json!({}))])
            .unwrap_err();
        assert!(
            err.to_string().contains("stage approve cannot start"),
            "{err}"
        );
    }

    #[test]
    fn a_policy_decision_over_another_plan_does_not_verify() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::open(&RecorderOptions::new(dir.path())).unwrap();
        let change = subject();
        let planned = format!("sha256:{}", "ab".repeat(32));
        let other = format!("sha256:{}", "cd".repeat(32));
        let mut policy = match ran(Stage::Policy, json!({})) {
            StageEntry::Ran(e) => e,
            StageEntry::NotRun { .. } => unreachable!(),
        };
        policy.input_digests.insert(
            sluice_evidence::statement::input::PLAN.into(),
            other.clone(),
        );
        recorder
            .record(
                &change,
                &[
                    ran(Stage::Propose, json!({})),
                    ran(Stage::Validate, json!({})),
                    ran(Stage::Plan, json!({detail::PLAN_DIGEST: planned})),
                    StageEntry::Ran(policy),
                ],
            )
            .unwrap();
        let out = dir.path().join("b.json");
        // Writing checks the bundle as the verifier will, so the broken link is caught here.
        let err = recorder
            .write_bundle(&change.id.to_string(), &out)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("policy decision was made over plan {other}")),
            "{err}"
        );
    }

    #[test]
    fn read_only_open_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = RecorderOptions::new(dir.path());
        options.existing_only = true;
        let err = Recorder::open(&options).err().unwrap();
        assert!(matches!(err, EvidenceError::Usage(_)), "{err}");
        assert!(err.to_string().contains("no evidence store"), "{err}");
        assert!(!dir.path().join(SLUICE_DIR).exists());
    }
}
