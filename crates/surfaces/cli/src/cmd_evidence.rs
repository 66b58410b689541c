//! `sluice evidence`: bundles, offline verification, the log, checkpoints and audit.
//!
//! Also `sluice bench evidence` and the `--record` step of `sluice pr`, `plan`, `check` and
//! `validate`. The work is
//! `sluice_recorder::evidence`'s; this module parses flags, prints and maps outcomes to exit
//! codes: 0 ok; 1 a broken link (a bundle that does not verify, an audit that finds tampering,
//! stored evidence that does not open); 2 bad or unreadable input (a missing or truncated
//! file, a malformed key, an unknown change, a database at a newer schema version); 5 internal
//! or durability failures.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::exit;
use crate::output::{emit, print_json};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use sluice_evidence::VerifyingKey;
use sluice_evidence::keys::{key_id, public_key_pem};
use sluice_recorder::evidence::{
    self, BenchOptions, EvidenceError, LogListing, Recorded, Recorder, RecorderOptions,
};
use sluice_store::Store as _;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Where the evidence store and key are (shared by `sluice evidence …` and `sluice pr --record`).
#[derive(Args, Clone, Default)]
pub struct StoreArgs {
    /// The store: `postgres://…`, `sqlite://PATH` or a path [default: REPO/.sluice/sluice.db;
    /// env SLUICE_DATABASE_URL].
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// The evidence signing key, a PKCS#8 PEM Ed25519 private key [default: generated on first
    /// use in REPO/.sluice/keys; env SLUICE_EVIDENCE_KEY].
    #[arg(long, value_name = "PEM")]
    pub evidence_key: Option<PathBuf>,
}

impl StoreArgs {
    pub(crate) fn options(&self, repo: &std::path::Path, existing_only: bool) -> RecorderOptions {
        let mut o = RecorderOptions::new(repo);
        o.database_url = self.database_url.clone();
        o.key_file = self.evidence_key.clone();
        o.existing_only = existing_only;
        o.with_env_defaults()
    }
}

/// `--record` of a stage run on its own (`plan`, `check`, `validate`).
#[derive(Args, Clone, Default)]
pub struct RecordArgs {
    /// Record this stage's result as signed evidence when it finishes, in the store
    /// (REPO/.sluice/sluice.db, or --database-url). The stage gate is asked first: a stage whose
    /// input was not recorded as passed for the change does not start (exit 1).
    #[arg(long)]
    pub record: bool,
    /// The pull request number, for correlation ids (as `sluice pr --pr`).
    #[arg(long, requires = "record")]
    pub pr: Option<u64>,
    #[command(flatten)]
    pub evidence: StoreArgs,
}

impl RecordArgs {
    /// The recorder when `--record` was given; `Err(exit code)` (the error printed) when it
    /// cannot be opened.
    pub fn open(&self, repo: &std::path::Path) -> Result<Option<Recorder>, i32> {
        if !self.record {
            return Ok(None);
        }
        Recorder::open(&self.evidence.options(repo, false))
            .map(Some)
            .map_err(|e| fail(&e))
    }
}

/// Reports a recording step on stderr; returns the exit code to use instead of the command's
/// when recording failed (the stage gate refused, the store failed).
pub fn report_recorded(
    recorder: &Recorder,
    outcome: Result<Recorded, EvidenceError>,
) -> Option<i32> {
    match outcome {
        Ok(recorded) => {
            eprintln!("{}", recorded_line(recorder, &recorded));
            None
        }
        Err(e) => Some(fail(&e)),
    }
}

/// The stage gate before a stage starts: `Err(exit code)` (the refusal printed) when it refuses.
pub fn gate(
    recorder: &Recorder,
    changes: &[evidence::ChangeSubject],
    stage: sluice_model::stage::Stage,
) -> Result<(), i32> {
    recorder.may_start(changes, stage).map_err(|e| fail(&e))
}

#[derive(Args)]
pub struct RepoArgs {
    /// The directory holding `.sluice/` (the platform repository).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
pub enum EvidenceCommand {
    /// Write a change's evidence bundle: manifest, stage statements, inclusion proof, signed
    /// checkpoint and public key, verifiable offline.
    Bundle(BundleArgs),
    /// Verify a bundle offline. Exit 0 only if every link holds; 1 names the first broken
    /// link; 2 when the file or key cannot be read.
    Verify(VerifyArgs),
    /// The evidence events: stage statements and manifest versions with their log leaves.
    Log(LogArgs),
    /// Sign and print a checkpoint of the whole log (C2SP signed note).
    Checkpoint(CheckpointArgs),
    /// Recompute the log from every stored leaf and check every stored node and checkpoint.
    /// Exit 1 when anything was tampered with or truncated.
    Audit(AuditArgs),
    /// Print the evidence public key (PEM), to hand to verifiers.
    Key(KeyArgs),
}

#[derive(Args)]
pub struct BundleArgs {
    /// The change's correlation id (`sluice evidence log` lists them).
    change_id: String,
    /// Where to write the bundle.
    #[arg(long)]
    out: PathBuf,
    /// An earlier checkpoint (signed note file) the verifier holds: the bundle carries the
    /// consistency proof from its size, whichever size the log had then.
    #[arg(long, value_name = "FILE")]
    from_checkpoint: Option<PathBuf>,
    #[command(flatten)]
    at: RepoArgs,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The bundle file.
    path: PathBuf,
    /// A trusted public key: a file or the key itself (PEM, C2SP verifier key, base64 or hex),
    /// e.g. `--trusted-key "$(sluice evidence key)"`. Repeatable. Default: the local evidence
    /// key under --repo.
    // PEM text starts with `-----`: without `allow_hyphen_values` the parser takes it for an
    // option and rejects it.
    #[arg(long, value_name = "KEY", allow_hyphen_values = true)]
    trusted_key: Vec<String>,
    /// A previously seen checkpoint (signed note file): the log must be consistent with it.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Where to look for the local key when no --trusted-key is given.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The local key file to trust when no --trusted-key is given.
    #[arg(long, value_name = "PEM")]
    evidence_key: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
pub struct LogArgs {
    /// Only this change (with its stage results, not-run ones included).
    #[arg(long)]
    change: Option<String>,
    /// Show the last N entries.
    #[arg(long, default_value_t = 200)]
    limit: usize,
    #[command(flatten)]
    at: RepoArgs,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    at: RepoArgs,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    at: RepoArgs,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
pub struct KeyArgs {
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    #[arg(long, value_name = "PEM")]
    evidence_key: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
pub struct BenchEvidenceArgs {
    /// Durable appends through the group-commit appender.
    #[arg(long, default_value_t = 100_000)]
    appends: u64,
    /// Concurrent appending tasks.
    #[arg(long, default_value_t = 512)]
    callers: usize,
    /// Leaves of the log that is audited and proven against.
    #[arg(long, default_value_t = 1_000_000)]
    log_size: u64,
    /// Inclusion proofs built and verified.
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    /// Statements signed and verified in memory.
    #[arg(long, default_value_t = 2_000)]
    statements: u32,
    /// Which stores to measure.
    #[arg(long, value_enum, default_value = "both")]
    backend: BenchBackend,
    /// PostgreSQL to measure (in a scratch schema, dropped afterwards).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchBackend {
    Sqlite,
    Postgres,
    Both,
}

/// Prints an evidence error and returns its exit code.
pub fn fail(e: &EvidenceError) -> i32 {
    eprintln!("error: {e}");
    exit::evidence(e)
}

pub fn run_evidence(command: EvidenceCommand) -> i32 {
    let result = match command {
        EvidenceCommand::Bundle(a) => bundle(a),
        EvidenceCommand::Verify(a) => verify(a),
        EvidenceCommand::Log(a) => log(a),
        EvidenceCommand::Checkpoint(a) => checkpoint(a),
        EvidenceCommand::Audit(a) => audit(a),
        EvidenceCommand::Key(a) => key(a),
    };
    result.unwrap_or_else(|e| fail(&e))
}

fn bundle(a: BundleArgs) -> Result<i32, EvidenceError> {
    let from_size = a
        .from_checkpoint
        .as_deref()
        .map(evidence::checkpoint_file_size)
        .transpose()?;
    let recorder = Recorder::open(&a.at.store.options(&a.at.repo, true))?;
    let out = recorder.write_bundle_from(&a.change_id, from_size, &a.out)?;
    match a.format {
        Format::Json => print_json(&json!({
            "bundle": a.out,
            "changeId": out.change_id,
            "manifestVersion": out.manifest_version,
            "leafIndex": out.leaf_index,
            "checkpoint": out.checkpoint,
        })),
        Format::Text => emit(&format!(
            "wrote {} ({} bytes): change {}, manifest v{}, leaf {} of {}, root {}\n",
            a.out.display(),
            out.bytes.len(),
            out.change_id,
            out.manifest_version,
            out.leaf_index,
            out.checkpoint.size,
            out.checkpoint.root
        )),
    }
    Ok(exit::OK)
}

fn trusted_keys(a: &VerifyArgs) -> Result<Vec<VerifyingKey>, EvidenceError> {
    if !a.trusted_key.is_empty() {
        return a
            .trusted_key
            .iter()
            .map(|k| evidence::load_trusted_key(k))
            .collect();
    }
    match evidence::local_public_key(&a.repo, a.evidence_key.as_deref())? {
        Some(k) => {
            eprintln!(
                "note: no --trusted-key given; trusting the local evidence key {}",
                key_id(&k)
            );
            Ok(vec![k])
        }
        None => Err(EvidenceError::Usage(
            "no trusted key: pass --trusted-key KEY (the log's public key, as `sluice evidence \
             key` prints it)"
                .into(),
        )),
    }
}

fn verify(a: VerifyArgs) -> Result<i32, EvidenceError> {
    let keys = trusted_keys(&a)?;
    let result = evidence::verify_file(&a.path, &keys, a.checkpoint.as_deref());
    match (a.format, result) {
        (Format::Text, Ok(v)) => {
            emit(&v.report());
            Ok(exit::OK)
        }
        (Format::Json, Ok(v)) => {
            print_json(&json!({
                "verified": true,
                "changeId": v.change.id,
                "commit": v.change.commit,
                "manifestVersion": v.manifest_version,
                "manifest": sluice_evidence::statement::digest_string(&v.manifest_digest),
                "leafIndex": v.leaf_index,
                "treeSize": v.tree_size,
                "root": hex_of(&v.root),
                "checkpointSigners": v.checkpoint_signers,
                "consistentWith": v.consistent_with,
                "stages": v.stages.iter().map(|s| json!({
                    "stage": sluice_evidence::statement::stage_name(s.stage),
                    "outcome": s.predicate.outcome.as_str(),
                    "actor": s.predicate.actor,
                    "identity": s.predicate.identity,
                    "envelope": sluice_evidence::statement::digest_string(&s.digest),
                })).collect::<Vec<_>>(),
                "evidence": v.summary,
            }));
            Ok(exit::OK)
        }
        (Format::Json, Err(e)) => {
            print_json(&json!({"verified": false, "error": e.to_string()}));
            Ok(fail(&e))
        }
        (Format::Text, Err(e)) => {
            eprintln!("bundle {} does NOT verify", a.path.display());
            Ok(fail(&e))
        }
    }
}

fn hex_of(h: &[u8; 32]) -> String {
    h.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn render_log(l: &LogListing) -> String {
    let mut out = format!("store: {}\nlog: {} leaves", l.store, l.log_size);
    match &l.checkpoint {
        Some(c) => {
            let _ = writeln!(
                out,
                "; checkpoint {} at size {} root {}",
                c.origin, c.size, c.root
            );
        }
        None => out.push_str("; no checkpoint\n"),
    }
    if let Some(change) = &l.change {
        let _ = writeln!(out, "\nchange {change}\nstage results:");
        for r in &l.stage_results {
            let _ = writeln!(
                out,
                "  {:<9} {:<8} {}",
                r.stage,
                r.outcome,
                r.envelope.as_deref().unwrap_or("(no statement)")
            );
        }
    }
    out.push_str("\nentries:\n");
    if l.omitted > 0 {
        let _ = writeln!(out, "  … {} earlier entries (raise --limit)", l.omitted);
    }
    if l.entries.is_empty() {
        out.push_str("  (none)\n");
    }
    for e in &l.entries {
        let what = match (&e.stage, e.manifest_version) {
            (Some(stage), _) => format!(
                "{} {} {}",
                e.kind,
                stage,
                e.outcome.as_deref().unwrap_or("")
            ),
            (None, Some(v)) => format!("{} v{v}", e.kind),
            (None, None) => e.kind.clone(),
        };
        let _ = writeln!(
            out,
            "  leaf {:>6}  {:<40} {}  {}",
            e.leaf_index.map(|i| i.to_string()).unwrap_or_default(),
            what,
            e.envelope.as_deref().unwrap_or(""),
            e.change_id
        );
    }
    out
}

fn log(a: LogArgs) -> Result<i32, EvidenceError> {
    let recorder = Recorder::open(&a.at.store.options(&a.at.repo, true))?;
    let listing = recorder.log(a.change.as_deref(), a.limit)?;
    match a.format {
        Format::Json => print_json(&listing),
        Format::Text => emit(&render_log(&listing)),
    }
    Ok(exit::OK)
}

fn checkpoint(a: CheckpointArgs) -> Result<i32, EvidenceError> {
    let recorder = Recorder::open(&a.at.store.options(&a.at.repo, true))?;
    let cp = recorder.checkpoint()?;
    match a.format {
        Format::Json => print_json(&evidence::CheckpointView::from(&cp)),
        Format::Text => emit(&cp.note),
    }
    Ok(exit::OK)
}

fn audit(a: AuditArgs) -> Result<i32, EvidenceError> {
    let recorder = Recorder::open(&a.at.store.options(&a.at.repo, true))?;
    let started = std::time::Instant::now();
    let report = recorder.audit()?;
    let seconds = started.elapsed().as_secs_f64();
    match a.format {
        Format::Json => print_json(&json!({
            "clean": report.is_clean(),
            "seconds": seconds,
            "report": report,
        })),
        Format::Text => {
            let mut out = format!(
                "audit of {}: {} leaves, {} nodes, {} checkpoints in {seconds:.2} s\n",
                recorder.service().store().location(),
                report.leaves_checked,
                report.nodes_checked,
                report.checkpoints_checked
            );
            if let Some(root) = &report.root {
                let _ = writeln!(out, "  root at size {}: {}", report.log_size, hex_of(root));
            }
            if report.is_clean() {
                out.push_str("  clean: every leaf, node and checkpoint holds\n");
            } else {
                for p in &report.problems {
                    let _ = writeln!(out, "  PROBLEM: {p}");
                }
                if report.more_problems > 0 {
                    let _ = writeln!(out, "  … and {} more problems", report.more_problems);
                }
            }
            emit(&out);
        }
    }
    Ok(if report.is_clean() {
        exit::OK
    } else {
        exit::BLOCKED
    })
}

fn key(a: KeyArgs) -> Result<i32, EvidenceError> {
    let k = evidence::local_public_key(&a.repo, a.evidence_key.as_deref())?.ok_or_else(|| {
        EvidenceError::Usage(format!(
            "no evidence key under {}: it is generated when evidence is first recorded",
            a.repo.display()
        ))
    })?;
    match a.format {
        Format::Json => {
            print_json(&json!({"keyId": key_id(&k), "publicKeyPem": public_key_pem(&k)}))
        }
        Format::Text => emit(&public_key_pem(&k)),
    }
    Ok(exit::OK)
}

/// `sluice pr --record`: records the report's stage results; returns the exit code to use
/// instead of the report's when recording failed.
/// The recorder `sluice pr --record` records into: `Err(exit code)`, printed, when the evidence
/// store cannot be opened (before any stage runs).
pub fn open_recorder(repo: &std::path::Path, store: &StoreArgs) -> Result<Recorder, i32> {
    Recorder::open(&store.options(repo, false)).map_err(|e| fail(&e))
}

fn recorded_line(recorder: &Recorder, r: &Recorded) -> String {
    let signed: usize = r.changes.iter().map(|c| c.stages.len()).sum();
    let unchanged: usize = r.changes.iter().map(|c| c.unchanged.len()).sum();
    let mut line = format!(
        "evidence: {} change(s), {signed} new statement(s), {unchanged} unchanged, in {}; log size {}",
        r.changes.len(),
        recorder.service().store().location(),
        r.log_size
    );
    if let Some(c) = &r.checkpoint {
        let _ = write!(line, ", checkpoint root {}", c.root);
    }
    line
}

pub fn run_bench_evidence(a: BenchEvidenceArgs) -> i32 {
    let options = BenchOptions {
        appends: a.appends,
        callers: a.callers,
        log_size: a.log_size,
        samples: a.samples,
        statements: a.statements,
        sqlite: a.backend != BenchBackend::Postgres,
        postgres_url: (a.backend != BenchBackend::Sqlite).then(|| a.postgres_url.clone()),
        scratch_dir: std::env::temp_dir(),
    };
    eprintln!(
        "measuring: {} durable appends from {} callers, a {}-leaf log, {} proofs per store …",
        a.appends, a.callers, a.log_size, a.samples
    );
    match evidence::bench(&options) {
        Ok(report) => {
            match a.format {
                Format::Json => print_json(&report.to_json()),
                Format::Text => emit(&report.to_text()),
            }
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::EvidenceCommand;

    /// `sluice evidence …` as the binary parses it.
    #[derive(Parser)]
    struct Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    }

    #[test]
    fn trusted_key_takes_pem_text_as_a_separate_argument() {
        let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n";
        let parsed = Evidence::try_parse_from([
            "evidence",
            "verify",
            "bundle.json",
            "--trusted-key",
            pem,
            "--trusted-key",
            "keys/other.pem",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let EvidenceCommand::Verify(a) = parsed.command else {
            panic!("not evidence verify");
        };
        assert_eq!(
            a.trusted_key,
            vec![pem.to_string(), "keys/other.pem".into()]
        );
        assert_eq!(a.path, std::path::PathBuf::from("bundle.json"));
    }
}
