//! Stage statements: each stage result as an in-toto Statement v1 whose predicate is the stage
//! record (correlation id, actor and identity, input digests, outcome), and the change manifest
//! that lists a change's stage envelopes in order.
//!
//! Predicate types are `https://sluice.dev/predicates/<stage>/v1` per stage of DESIGN.md §2,
//! `https://sluice.dev/predicates/manifest/v1` and `https://sluice.dev/predicates/state-event/v1`
//! (one read, write, lock, unlock or refusal of the Terraform state backend); any other type is
//! rejected when opened. Payloads
//! are canonical JSON so their digests are stable.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sluice_model::change::ChangeId;
use sluice_model::stage::Stage;
use thiserror::Error;

use crate::dsse::{self, DsseError, Envelope, PAYLOAD_TYPE_IN_TOTO};
use crate::keys::EvidenceKey;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_PREFIX: &str = "https://sluice.dev/predicates/";
pub const MANIFEST_PREDICATE_TYPE: &str = "https://sluice.dev/predicates/manifest/v1";
pub const STATE_EVENT_PREDICATE_TYPE: &str = "https://sluice.dev/predicates/state-event/v1";

/// Well-known keys of [`StagePredicate::details`] that the bundle summary and the cross-binding
/// checks read. Values are strings unless noted.
pub mod detail {
    /// plan, approve, apply: the plan file's digest, `sha256:<hex>`.
    pub const PLAN_DIGEST: &str = "plan_digest";
    /// plan: the plan artifact's name (e.g. `plan-prod-network-9f3a12c.tfplan`).
    pub const PLAN_ARTIFACT: &str = "plan_artifact";
    /// plan: the plan summary (object, e.g. `{"add":1,"change":0,"destroy":0}`).
    pub const PLAN_SUMMARY: &str = "plan_summary";
    /// render: digest of the rendered manifests, `sha256:<hex>`.
    pub const RENDERED_DIGEST: &str = "rendered_digest";
    /// policy: the policy bundle version (`policy-library@<commit>`).
    pub const POLICY_VERSION: &str = "policy_version";
    /// policy: the decision (`allow`, `deny`, `warn`, `require-approval`).
    pub const DECISION: &str = "decision";
    /// policy, approve: digest of the decision record, `sha256:<hex>`.
    pub const DECISION_DIGEST: &str = "decision_digest";
    /// approve: approver groups the approval counts for (array of strings).
    pub const GROUPS: &str = "groups";
    /// verify: drift found after apply (`none` or a description).
    pub const DRIFT: &str = "drift";
    /// propose: link to the pull request.
    pub const PR_URL: &str = "pr_url";
}

/// Names of [`StagePredicate::input_digests`] entries the verifier binds.
pub mod input {
    /// policy: the plan the decision was made over (the plan stage's `plan_digest`).
    pub const PLAN: &str = "plan";
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum StatementError {
    #[error(transparent)]
    Envelope(#[from] DsseError),
    #[error("payload is not a valid statement: {0}")]
    Json(String),
    #[error("statement type is {0:?}, expected {STATEMENT_TYPE:?}")]
    StatementType(String),
    #[error("unknown predicate type {0:?}")]
    UnknownPredicateType(String),
    #[error("predicate type is {found:?}, expected {expected:?}")]
    WrongPredicateType { found: String, expected: String },
    #[error("predicate is not a valid {kind} predicate: {reason}")]
    Predicate { kind: String, reason: String },
    #[error("{field} {value:?} is not an RFC 3339 UTC timestamp (YYYY-MM-DDTHH:MM:SS[.frac]Z)")]
    Timestamp { field: &'static str, value: String },
    #[error("{field} {value:?} is not a digest of the form sha256:<64 lowercase hex>")]
    Digest { field: String, value: String },
}

/// The name of a stage in predicate types and records (matches `Stage`'s serde form).
pub fn stage_name(stage: Stage) -> &'static str {
    sluice_model::stage::contract(stage).name()
}

pub fn parse_stage(name: &str) -> Option<Stage> {
    sluice_model::stage::STAGES
        .iter()
        .map(|c| c.stage)
        .find(|s| stage_name(*s) == name)
}

/// The sluice predicate type of a stage.
pub fn predicate_type(stage: Stage) -> String {
    format!("{PREDICATE_PREFIX}{}/v1", stage_name(stage))
}

/// What a predicate type denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredicateKind {
    Stage(Stage),
    Manifest,
    StateEvent,
}

/// Maps a predicate type to what it denotes; anything sluice does not define is an error.
pub fn parse_predicate_type(text: &str) -> Result<PredicateKind, StatementError> {
    if text == MANIFEST_PREDICATE_TYPE {
        return Ok(PredicateKind::Manifest);
    }
    if text == STATE_EVENT_PREDICATE_TYPE {
        return Ok(PredicateKind::StateEvent);
    }
    text.strip_prefix(PREDICATE_PREFIX)
        .and_then(|rest| rest.strip_suffix("/v1"))
        .and_then(parse_stage)
        .map(PredicateKind::Stage)
        .ok_or_else(|| StatementError::UnknownPredicateType(text.to_string()))
}

mod stage_serde {
    use super::*;

    pub fn serialize<S: Serializer>(stage: &Stage, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(stage_name(*stage))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Stage, D::Error> {
        let name = String::deserialize(d)?;
        parse_stage(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown stage {name:?}")))
    }
}

/// An in-toto Statement v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Value,
}

/// An artifact the statement is about: a name and its digests (`sha256`, `gitCommit`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    /// A subject identified by SHA-256 (`hex` is the lowercase hex digest).
    pub fn sha256(name: &str, hex: &str) -> Self {
        Self {
            name: name.to_string(),
            digest: BTreeMap::from([("sha256".to_string(), hex.to_string())]),
        }
    }

    /// A git commit as a subject (in-toto's `gitCommit` digest).
    pub fn git_commit(repo: &str, commit: &str) -> Self {
        Self {
            name: format!("git+{repo}"),
            digest: BTreeMap::from([("gitCommit".to_string(), commit.to_string())]),
        }
    }
}

/// Result of a stage as far as evidence goes; stage-specific results (the policy decision, the
/// drift found) live in [`StagePredicate::details`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    /// Part of the stage's work happened (a partial apply): the unit is degraded.
    Partial,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Partial => "partial",
        }
    }
}

/// The predicate of every stage statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagePredicate {
    /// The correlation id, rendered (`infra-live#412@9f3a12c/prod/ap-southeast-1/rds-payments`).
    pub change_id: String,
    /// The full commit SHA the stage ran on.
    pub commit: String,
    #[serde(with = "stage_serde")]
    pub stage: Stage,
    /// Who ran the stage: a human login, a CI job or a runner name.
    pub actor: String,
    /// The authenticated identity it ran under (`github:alice`, `oidc:repo:infra-live:env:prod`).
    pub identity: String,
    /// Digests of the stage's inputs by name, each `sha256:<hex>` (or `gitCommit:<sha>`).
    pub input_digests: BTreeMap<String, String>,
    pub outcome: Outcome,
    /// RFC 3339 UTC.
    pub recorded_at: String,
    /// Stage-specific facts; see [`detail`] for the keys sluice reads.
    #[serde(default)]
    pub details: Value,
}

impl StagePredicate {
    /// A string detail, if present.
    pub fn detail_str(&self, key: &str) -> Option<&str> {
        self.details.get(key).and_then(Value::as_str)
    }
}

/// The change a manifest is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRef {
    /// The rendered correlation id.
    pub id: String,
    pub repo: String,
    pub pr: Option<u64>,
    pub commit: String,
    pub env: String,
    pub unit: String,
}

impl From<&ChangeId> for ChangeRef {
    fn from(c: &ChangeId) -> Self {
        Self {
            id: c.to_string(),
            repo: c.repo.clone(),
            pr: c.pr,
            commit: c.commit.clone(),
            env: c.env.clone(),
            unit: c.unit.clone(),
        }
    }
}

/// One stage envelope listed by a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    #[serde(with = "stage_serde")]
    pub stage: Stage,
    /// `sha256:<hex>` of the envelope's canonical bytes.
    pub envelope: String,
}

/// The change manifest's predicate: the change, its stage envelopes in order, and the digest of
/// the manifest version it supersedes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPredicate {
    pub change: ChangeRef,
    /// 1 for the first manifest of a change, +1 for each later version.
    pub version: u32,
    /// `sha256:<hex>` of the previous manifest version's envelope; `None` for version 1.
    pub previous: Option<String>,
    pub stages: Vec<ManifestEntry>,
    pub recorded_at: String,
}

impl ManifestPredicate {
    /// The first manifest of a change, listing `stages` (stage, envelope) in order.
    pub fn first(change: ChangeRef, stages: &[(Stage, &Envelope)], recorded_at: &str) -> Self {
        Self {
            change,
            version: 1,
            previous: None,
            stages: entries(stages),
            recorded_at: recorded_at.to_string(),
        }
    }

    /// The next version after this one, whose signed envelope is `this_envelope`: it lists
    /// `stages` (normally this version's stages plus the new ones) and names this one as previous.
    pub fn next(
        &self,
        this_envelope: &Envelope,
        stages: &[(Stage, &Envelope)],
        recorded_at: &str,
    ) -> Self {
        Self {
            change: self.change.clone(),
            version: self.version + 1,
            previous: Some(digest_string(&this_envelope.digest())),
            stages: entries(stages),
            recorded_at: recorded_at.to_string(),
        }
    }
}

fn entries(stages: &[(Stage, &Envelope)]) -> Vec<ManifestEntry> {
    stages
        .iter()
        .map(|(stage, env)| ManifestEntry {
            stage: *stage,
            envelope: digest_string(&env.digest()),
        })
        .collect()
}

/// The transparency-log entry of a (manifest) envelope: the SHA-256 of its canonical bytes. The
/// log's leaf hash is `merkle::leaf_hash(&log_entry(env))`.
pub fn log_entry(envelope: &Envelope) -> [u8; 32] {
    envelope.digest()
}

/// `sha256:<hex>` of a 32-byte digest.
pub fn digest_string(hash: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(hash))
}

/// Parses `sha256:<64 lowercase hex>`.
pub fn parse_digest(field: &str, text: &str) -> Result<[u8; 32], StatementError> {
    let bad = || StatementError::Digest {
        field: field.to_string(),
        value: text.to_string(),
    };
    let hex_part = text.strip_prefix("sha256:").ok_or_else(bad)?;
    if hex_part.len() != 64
        || !hex_part
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
    Ok(out)
}

/// Checks an RFC 3339 UTC timestamp of the form sluice writes: `YYYY-MM-DDTHH:MM:SS[.frac]Z`.
pub fn check_timestamp(field: &'static str, text: &str) -> Result<(), StatementError> {
    let bad = || StatementError::Timestamp {
        field,
        value: text.to_string(),
    };
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
        || b[b.len() - 1] != b'Z'
    {
        return Err(bad());
    }
    let frac = &b[19..b.len() - 1];
    if !frac.is_empty()
        && (frac[0] != b'.' || frac.len() < 2 || !frac[1..].iter().all(u8::is_ascii_digit))
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| text[r].parse::<u32>().unwrap_or(u32::MAX);
    let (month, day, hour, min, sec) =
        (num(5..7), num(8..10), num(11..13), num(14..16), num(17..19));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return Err(bad());
    }
    Ok(())
}

/// `time` as RFC 3339 UTC with second precision.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The current time as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    rfc3339_utc(SystemTime::now())
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Builds the statement of a stage result.
pub fn stage_statement(subjects: Vec<Subject>, predicate: &StagePredicate) -> Statement {
    Statement {
        statement_type: STATEMENT_TYPE.to_string(),
        subject: subjects,
        predicate_type: predicate_type(predicate.stage),
        predicate: serde_json::to_value(predicate).expect("a predicate always serialises"),
    }
}

/// Builds a change manifest statement. Its subjects mirror `predicate.stages` (each envelope as
/// a subject named `<position>/<stage>`), so generic in-toto tooling sees what it attests to.
pub fn manifest_statement(predicate: &ManifestPredicate) -> Statement {
    let subject = manifest_subjects(&predicate.stages);
    Statement {
        statement_type: STATEMENT_TYPE.to_string(),
        subject,
        predicate_type: MANIFEST_PREDICATE_TYPE.to_string(),
        predicate: serde_json::to_value(predicate).expect("a manifest always serialises"),
    }
}

/// The subjects a manifest must carry for its stage list.
pub fn manifest_subjects(stages: &[ManifestEntry]) -> Vec<Subject> {
    stages
        .iter()
        .enumerate()
        .map(|(i, e)| Subject {
            name: format!("{}/{}", i + 1, stage_name(e.stage)),
            digest: BTreeMap::from([(
                "sha256".to_string(),
                e.envelope.trim_start_matches("sha256:").to_string(),
            )]),
        })
        .collect()
}

/// One audit event of the Terraform state backend (a read, write, rollback, lock, unlock, or a
/// refusal of one) as the evidence log keeps it. It names the state by digest, serial, version
/// and lock id, never by content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateEventPredicate {
    /// The unit (stack id) whose state it is.
    pub unit: String,
    pub action: String,
    /// `ok`, `unchanged`, `refused`, `not_found`, `tampered`, `error`.
    pub outcome: String,
    /// Who asked (`oidc:<iss>#<sub>`, `token:<name>`, `user:<name>`, `unauthenticated`).
    pub identity: String,
    /// The state version read or written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Digests, serials, lock ids, fencing tokens, reasons.
    pub detail: Value,
    pub recorded_at: String,
}

/// Builds the statement of a state event. Its subject is the state version it read or wrote
/// (`state:<unit>` with the SHA-256 of the plaintext state), or, when no version is involved,
/// the unit itself (the SHA-256 of its id).
pub fn state_event_statement(
    predicate: &StateEventPredicate,
    state: Option<&[u8; 32]>,
) -> Statement {
    let digest = match state {
        Some(d) => hex::encode(d),
        None => hex::encode(crate::sha256(predicate.unit.as_bytes())),
    };
    Statement {
        statement_type: STATEMENT_TYPE.to_string(),
        subject: vec![Subject::sha256(
            &format!("state:{}", predicate.unit),
            &digest,
        )],
        predicate_type: STATE_EVENT_PREDICATE_TYPE.to_string(),
        predicate: serde_json::to_value(predicate).expect("a state event always serialises"),
    }
}

/// Signs a statement: canonical JSON payload in a DSSE envelope.
pub fn sign_statement(statement: &Statement, key: &EvidenceKey) -> Envelope {
    let payload = crate::canonical::to_vec(statement).expect("a statement always serialises");
    dsse::sign(PAYLOAD_TYPE_IN_TOTO, &payload, key)
}

/// A statement whose envelope verified under a trusted key.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedStatement {
    pub statement: Statement,
    pub kind: PredicateKind,
    /// Key id of the trusted key that signed it.
    pub key_id: String,
}

/// Verifies an envelope and parses its statement; the predicate type must be one sluice defines.
pub fn open_statement(
    envelope: &Envelope,
    trusted: &[VerifyingKey],
) -> Result<OpenedStatement, StatementError> {
    let verified = envelope.verify(PAYLOAD_TYPE_IN_TOTO, trusted)?;
    let statement: Statement = serde_json::from_slice(&verified.payload)
        .map_err(|e| StatementError::Json(e.to_string()))?;
    if statement.statement_type != STATEMENT_TYPE {
        return Err(StatementError::StatementType(statement.statement_type));
    }
    let kind = parse_predicate_type(&statement.predicate_type)?;
    Ok(OpenedStatement {
        statement,
        kind,
        key_id: verified.key_id,
    })
}

impl OpenedStatement {
    /// The stage predicate; errors unless this is a stage statement whose predicate type and
    /// predicate agree on the stage.
    pub fn stage_predicate(&self) -> Result<StagePredicate, StatementError> {
        let PredicateKind::Stage(stage) = self.kind else {
            return Err(StatementError::WrongPredicateType {
                found: self.statement.predicate_type.clone(),
                expected: format!("{PREDICATE_PREFIX}<stage>/v1"),
            });
        };
        let p: StagePredicate =
            serde_json::from_value(self.statement.predicate.clone()).map_err(|e| {
                StatementError::Predicate {
                    kind: stage_name(stage).to_string(),
                    reason: e.to_string(),
                }
            })?;
        if p.stage != stage {
            return Err(StatementError::Predicate {
                kind: stage_name(stage).to_string(),
                reason: format!("predicate says stage {:?}", stage_name(p.stage)),
            });
        }
        check_timestamp("recorded_at", &p.recorded_at)?;
        Ok(p)
    }

    /// The manifest predicate; errors unless this is a manifest statement.
    pub fn manifest_predicate(&self) -> Result<ManifestPredicate, StatementError> {
        if self.kind != PredicateKind::Manifest {
            return Err(StatementError::WrongPredicateType {
                found: self.statement.predicate_type.clone(),
                expected: MANIFEST_PREDICATE_TYPE.to_string(),
            });
        }
        let p: ManifestPredicate = serde_json::from_value(self.statement.predicate.clone())
            .map_err(|e| StatementError::Predicate {
                kind: "manifest".to_string(),
                reason: e.to_string(),
            })?;
        check_timestamp("recorded_at", &p.recorded_at)?;
        for (i, e) in p.stages.iter().enumerate() {
            parse_digest(&format!("stages[{i}].envelope"), &e.envelope)?;
        }
        if let Some(prev) = &p.previous {
            parse_digest("previous", prev)?;
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn predicate(stage: Stage) -> StagePredicate {
        StagePredicate {
            change_id: "infra-live#412@9f3a12c/prod/ap-southeast-1/rds-payments".into(),
            commit: "9f3a12cdeadbeef".into(),
            stage,
            actor: "ci".into(),
            identity: "oidc:repo:infra-live:ref:refs/pull/412/merge".into(),
            input_digests: BTreeMap::new(),
            outcome: Outcome::Passed,
            recorded_at: "2026-07-03T10:00:00Z".into(),
            details: json!({}),
        }
    }

    #[test]
    fn predicate_types_cover_every_stage_and_nothing_else() {
        for c in sluice_model::stage::STAGES {
            let t = predicate_type(c.stage);
            assert_eq!(parse_predicate_type(&t), Ok(PredicateKind::Stage(c.stage)));
        }
        assert_eq!(
            predicate_type(Stage::Plan),
            "https://sluice.dev/predicates/plan/v1"
        );
        assert_eq!(
            parse_predicate_type(MANIFEST_PREDICATE_TYPE),
            Ok(PredicateKind::Manifest)
        );
        for bad in [
            "https://sluice.dev/predicates/deploy/v1",
            "https://sluice.dev/predicates/plan/v2",
            "https://slsa.dev/provenance/v1",
            "",
        ] {
            assert_eq!(
                parse_predicate_type(bad),
                Err(StatementError::UnknownPredicateType(bad.into()))
            );
        }
    }

    #[test]
    fn stage_names_match_the_model_serde_form() {
        for c in sluice_model::stage::STAGES {
            assert_eq!(
                serde_json::to_value(c.stage).unwrap(),
                json!(stage_name(c.stage))
            );
        }
    }

    #[test]
    fn statement_has_the_in_toto_shape() {
        let st = stage_statement(
            vec![Subject::sha256("plan.tfplan", &"ab".repeat(32))],
            &predicate(Stage::Plan),
        );
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["_type"], STATEMENT_TYPE);
        assert_eq!(v["predicateType"], "https://sluice.dev/predicates/plan/v1");
        assert_eq!(v["subject"][0]["digest"]["sha256"], "ab".repeat(32));
        assert_eq!(v["predicate"]["stage"], "plan");
        assert_eq!(v["predicate"]["outcome"], "passed");
    }

    #[test]
    fn open_rejects_unknown_predicate_types_and_wrong_statement_types() {
        let key = EvidenceKey::from_seed(&[1; 32]);
        let mut st = stage_statement(vec![], &predicate(Stage::Apply));
        let env = sign_statement(&st, &key);
        let opened = open_statement(&env, &[key.verifying_key()]).unwrap();
        assert_eq!(opened.stage_predicate().unwrap(), predicate(Stage::Apply));
        assert!(opened.manifest_predicate().is_err());

        st.predicate_type = "https://example.com/other/v1".into();
        let env = sign_statement(&st, &key);
        assert_eq!(
            open_statement(&env, &[key.verifying_key()]).unwrap_err(),
            StatementError::UnknownPredicateType("https://example.com/other/v1".into())
        );

        let mut st = stage_statement(vec![], &predicate(Stage::Apply));
        st.statement_type = "https://in-toto.io/Statement/v0.1".into();
        let env = sign_statement(&st, &key);
        assert!(matches!(
            open_statement(&env, &[key.verifying_key()]),
            Err(StatementError::StatementType(_))
        ));
    }

    #[test]
    fn predicate_stage_must_match_its_type() {
        let key = EvidenceKey::from_seed(&[1; 32]);
        let mut st = stage_statement(vec![], &predicate(Stage::Apply));
        st.predicate_type = predicate_type(Stage::Approve);
        let env = sign_statement(&st, &key);
        let opened = open_statement(&env, &[key.verifying_key()]).unwrap();
        assert!(matches!(
            opened.stage_predicate(),
            Err(StatementError::Predicate { .. })
        ));
    }

    #[test]
    fn manifest_versions_chain_to_the_previous_envelope() {
        let key = EvidenceKey::from_seed(&[1; 32]);
        let plan = sign_statement(&stage_statement(vec![], &predicate(Stage::Plan)), &key);
        let apply = sign_statement(&stage_statement(vec![], &predicate(Stage::Apply)), &key);
        let change = ChangeRef {
            id: "infra-live#412@9f3a12c/prod/ap-southeast-1/rds-payments".into(),
            repo: "infra-live".into(),
            pr: Some(412),
            commit: "9f3a12cdeadbeef".into(),
            env: "prod".into(),
            unit: "prod/ap-southeast-1/rds-payments".into(),
        };
        let v1 = ManifestPredicate::first(change, &[(Stage::Plan, &plan)], "2026-07-03T10:00:00Z");
        let v1_env = sign_statement(&manifest_statement(&v1), &key);
        let v2 = v1.next(
            &v1_env,
            &[(Stage::Plan, &plan), (Stage::Apply, &apply)],
            "2026-07-03T11:00:00Z",
        );
        assert_eq!(v2.version, 2);
        assert_eq!(v2.previous, Some(digest_string(&log_entry(&v1_env))));
        assert_eq!(v2.stages[1].envelope, digest_string(&apply.digest()));
        let opened = open_statement(
            &sign_statement(&manifest_statement(&v2), &key),
            &[key.verifying_key()],
        )
        .unwrap();
        assert_eq!(opened.manifest_predicate().unwrap(), v2);
    }

    #[test]
    fn digests_and_timestamps_are_checked() {
        let h = [0xab; 32];
        assert_eq!(parse_digest("x", &digest_string(&h)).unwrap(), h);
        assert!(parse_digest("x", &format!("sha256:{}", "AB".repeat(32))).is_err());
        assert!(parse_digest("x", &format!("sha512:{}", "ab".repeat(32))).is_err());
        assert!(parse_digest("x", "sha256:abc").is_err());

        for ok in ["2026-07-03T10:00:00Z", "2026-07-03T10:00:00.123Z"] {
            assert!(check_timestamp("t", ok).is_ok(), "{ok}");
        }
        for bad in [
            "2026-07-03 10:00:00Z",
            "2026-07-03T10:00:00",
            "2026-13-03T10:00:00Z",
            "2026-07-03T10:00:00+07:00",
            "2026-07-03T10:00:00.Z",
            "yesterday",
        ] {
            assert!(check_timestamp("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_formatting_matches_known_instants() {
        let at = |s: u64| rfc3339_utc(UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_783_072_800), "2026-07-03T10:00:00Z");
        assert!(check_timestamp("t", &now_rfc3339()).is_ok());
    }
}
