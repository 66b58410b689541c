//! The records the store keeps (DESIGN.md §3): changes, stage results, events, log leaves,
//! checkpoints and the artifact index, plus the SHA-256 digest type they share.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sluice_model::change::ChangeId;

use crate::error::StoreError;

/// A SHA-256 value: a Merkle hash, a log entry, a content address.
pub use sluice_evidence::merkle::Hash;

/// A content address: the SHA-256 of an artifact's bytes. Shown as `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub Hash);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest(sha2::Sha256::digest(bytes).into())
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Digest> {
        Some(Digest(bytes.try_into().ok()?))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a SHA-256 digest: {problem} (expected sha256:<64 hex digits>)")]
pub struct DigestParseError {
    pub input: String,
    pub problem: &'static str,
}

impl FromStr for Digest {
    type Err = DigestParseError;

    /// Accepts `sha256:<64 hex>` or bare 64 hex digits (lower or upper case).
    fn from_str(input: &str) -> Result<Digest, DigestParseError> {
        let err = |problem| DigestParseError {
            input: input.to_string(),
            problem,
        };
        let hex_part = match input.split_once(':') {
            Some(("sha256", rest)) => rest,
            Some(_) => return Err(err("unsupported algorithm")),
            None => input,
        };
        if hex_part.len() != 64 {
            return Err(err("wrong length"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| err("not hexadecimal"))?;
        Ok(Digest(out))
    }
}

/// Milliseconds since the Unix epoch, UTC: the store's one time representation.
pub type UnixMillis = i64;

pub fn now_millis() -> UnixMillis {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Whether a change's unit is an IaC stack or a Kubernetes app (the model's type: the stage
/// gate reads it too).
pub use sluice_model::stage::UnitKind;

/// One change: a PR (or break-glass action) against one environment and one stack or app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeRecord {
    /// The correlation id, `repo#pr@sha7/env/unit` (DESIGN.md §2).
    pub change_id: String,
    pub repo: String,
    pub pr: Option<u64>,
    /// The base revision the change is compared against, when known.
    pub base: Option<String>,
    /// The head commit (full SHA).
    pub head: String,
    pub env: String,
    pub unit_kind: UnitKind,
    /// Stack or app id, e.g. `prod/ap-southeast-1/rds-payments`.
    pub unit: String,
    pub created_at: UnixMillis,
}

impl ChangeRecord {
    /// The record for `id`, with its correlation id rendered the one way the model renders it.
    pub fn new(id: &ChangeId, base: Option<String>, unit_kind: UnitKind) -> ChangeRecord {
        ChangeRecord {
            change_id: id.to_string(),
            repo: id.repo.clone(),
            pr: id.pr,
            base,
            head: id.commit.clone(),
            env: id.env.clone(),
            unit_kind,
            unit: id.unit.clone(),
            created_at: now_millis(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let invalid = |field, problem: &str| StoreError::Invalid {
            record: "change",
            field,
            problem: problem.to_string(),
        };
        for (field, value) in [
            ("change_id", &self.change_id),
            ("repo", &self.repo),
            ("head", &self.head),
            ("env", &self.env),
            ("unit", &self.unit),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(field, "must not be empty"));
            }
        }
        if self.pr.is_some_and(|pr| i64::try_from(pr).is_err()) {
            return Err(invalid("pr", "out of range"));
        }
        Ok(())
    }
}

/// What a stage concluded for a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageOutcome {
    Passed,
    Failed,
    /// Did not run because an earlier stage failed or a rule blocked it.
    Blocked,
    /// Recorded explicitly as not run, so that a bundle never invents it.
    NotRun,
}

impl StageOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StageOutcome::Passed => "passed",
            StageOutcome::Failed => "failed",
            StageOutcome::Blocked => "blocked",
            StageOutcome::NotRun => "not_run",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<StageOutcome> {
        Some(match s {
            "passed" => StageOutcome::Passed,
            "failed" => StageOutcome::Failed,
            "blocked" => StageOutcome::Blocked,
            "not_run" => StageOutcome::NotRun,
            _ => return None,
        })
    }
}

/// The result of one stage for one change. `stage` is the stage's snake_case name from the stage
/// table (`plan`, `policy`, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageResultRecord {
    /// Assigned by the store; ignored on insert.
    pub id: i64,
    pub change_id: String,
    pub stage: String,
    pub outcome: StageOutcome,
    /// The stage record (digests, actor, findings summary) as JSON.
    pub detail: serde_json::Value,
    /// The digest of the DSSE envelope that signs this result, once there is one.
    pub envelope_digest: Option<Digest>,
    pub recorded_at: UnixMillis,
}

impl StageResultRecord {
    pub fn new(
        change_id: impl Into<String>,
        stage: sluice_model::stage::Stage,
        outcome: StageOutcome,
        detail: serde_json::Value,
    ) -> StageResultRecord {
        // The model's Stage serialises as its snake_case name; that is the stored name.
        let stage = match serde_json::to_value(stage) {
            Ok(serde_json::Value::String(name)) => name,
            _ => format!("{stage:?}").to_lowercase(),
        };
        StageResultRecord {
            id: 0,
            change_id: change_id.into(),
            stage,
            outcome,
            detail,
            envelope_digest: None,
            recorded_at: now_millis(),
        }
    }
}

/// One event (`change.planned`, `app.synced`, ...) with its correlation id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    /// Assigned by the store, increasing; ignored on insert.
    pub id: i64,
    pub change_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub created_at: UnixMillis,
}

impl EventRecord {
    pub fn new(
        change_id: impl Into<String>,
        kind: impl Into<String>,
        payload: serde_json::Value,
    ) -> EventRecord {
        EventRecord {
            id: 0,
            change_id: change_id.into(),
            kind: kind.into(),
            payload,
            created_at: now_millis(),
        }
    }
}

/// One version of a change's evidence manifest: the chain link the database guards. Versions of
/// a change count 1, 2, 3… with no gap, each naming the envelope of the one before; the
/// primary key (change, version) makes a second version N+1 impossible, whichever process or
/// replica writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestRecord {
    pub change_id: String,
    pub version: u32,
    /// The digest of the manifest's DSSE envelope (its log entry).
    pub envelope: Digest,
    /// The envelope of version `version - 1` (none for version 1).
    pub previous: Option<Digest>,
    /// The manifest's leaf in the transparency log.
    pub leaf_index: u64,
    pub created_at: UnixMillis,
}

/// What an append hands the log: the 32-byte entry (for sluice, the SHA-256 of a DSSE envelope)
/// and, when the envelope is kept in the artifact store under a different digest, that digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafInput {
    pub entry: Hash,
    pub envelope_digest: Option<Digest>,
}

/// One stored leaf of the transparency log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLeaf {
    pub index: u64,
    /// The entry the tree commits to.
    pub entry: Hash,
    /// RFC 6962 leaf hash of `entry`, stored so that a changed entry is pinned to its row.
    pub leaf_hash: Hash,
    pub envelope_digest: Option<Digest>,
    pub created_at: UnixMillis,
}

/// A stored perfect-subtree hash: node (`level`, `index`) covers leaves
/// `[index << level, (index + 1) << level)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogNode {
    pub level: u8,
    pub index: u64,
    pub hash: Hash,
}

impl LogNode {
    /// The last leaf the node covers: the key the nodes are stored and scanned by.
    pub fn end_leaf(&self) -> u64 {
        end_leaf(self.level, self.index)
    }
}

pub(crate) fn end_leaf(level: u8, index: u64) -> u64 {
    ((index + 1) << level) - 1
}

/// Leaves `[from, from + count)` read in one row for the audit: per leaf, its entry then its
/// stored leaf hash (64 bytes), in index order. Row-by-row reads cost more than the hashing on
/// a log of a million leaves; this is the bulk path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedLeaves {
    /// Rows found in the range (fewer than the range's width means a gap).
    pub count: u64,
    pub bytes: Vec<u8>,
}

/// The nodes ending in a leaf range, read in one row for the audit: their hashes in
/// (last leaf, level) order, with the number of rows and of rows at a level their last leaf
/// cannot complete (so the reader knows whether the stored keys are exactly the expected ones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedNodes {
    pub count: u64,
    pub misplaced: u64,
    pub hashes: Vec<u8>,
}

/// A checkpoint: the tree head at `size`, with the signed note that commits to it (C2SP
/// signed-note text: origin, size, base64 root, blank line, signature lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecord {
    pub size: u64,
    pub root: Hash,
    pub origin: String,
    pub note: String,
    pub created_at: UnixMillis,
}

/// The index entry of a content-addressed artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactRecord {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    /// The artifact holds secrets (a plan file, plan JSON): never shown whole.
    pub secret: bool,
    pub created_at: UnixMillis,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn digest_renders_and_parses() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert_eq!(d.hex().to_uppercase().parse::<Digest>().unwrap(), d);
        let e = "md5:abc".parse::<Digest>().unwrap_err();
        assert_eq!(e.problem, "unsupported algorithm");
        assert_eq!(
            "sha256:ab".parse::<Digest>().unwrap_err().problem,
            "wrong length"
        );
        let bad = format!("sha256:{}", "g".repeat(64));
        assert_eq!(
            bad.parse::<Digest>().unwrap_err().problem,
            "not hexadecimal"
        );
    }

    #[test]
    fn change_record_uses_the_correlation_id() {
        let id = ChangeId {
            repo: "infra-live".into(),
            pr: Some(412),
            commit: "9f3a12cdeadbeef".into(),
            env: "prod".into(),
            unit: "prod/ap-southeast-1/rds-payments".into(),
        };
        let rec = ChangeRecord::new(&id, Some("main".into()), UnitKind::Stack);
        assert_eq!(
            rec.change_id,
            "infra-live#412@9f3a12c/prod/ap-southeast-1/rds-payments"
        );
        assert_eq!(rec.head, "9f3a12cdeadbeef");
        rec.validate().unwrap();
        let empty = ChangeRecord {
            env: " ".into(),
            ..rec
        };
        assert!(
            empty
                .validate()
                .unwrap_err()
                .to_string()
                .contains("field env")
        );
    }

    #[test]
    fn stage_names_come_from_the_model() {
        let r = StageResultRecord::new(
            "c",
            sluice_model::stage::Stage::Policy,
            StageOutcome::Passed,
            serde_json::json!({}),
        );
        assert_eq!(r.stage, "policy");
        for o in [
            StageOutcome::Passed,
            StageOutcome::Failed,
            StageOutcome::Blocked,
            StageOutcome::NotRun,
        ] {
            assert_eq!(StageOutcome::parse(o.as_str()), Some(o));
        }
    }

    proptest! {
        #[test]
        fn digest_parse_never_panics(s in ".{0,80}") {
            let _ = s.parse::<Digest>();
        }

        #[test]
        fn digest_round_trips(bytes in proptest::array::uniform32(any::<u8>())) {
            let d = Digest(bytes);
            prop_assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        }

        #[test]
        fn end_leaf_is_last_covered_leaf(level in 1u8..40, index in 0u64..1_000_000) {
            let first = index << level;
            prop_assert_eq!(end_leaf(level, index), first + (1u64 << level) - 1);
        }
    }
}
