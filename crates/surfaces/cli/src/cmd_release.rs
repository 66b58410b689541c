//! `sluice approve`, `sluice apply`, `sluice locks`, `sluice unlock`, `sluice recover`
//! (stages 6 and 7, docs/approvals.md): flags, rendering and exit codes over `sluice-release`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use sluice_recorder::evidence::{EvidenceService, Identity};
use sluice_release::apply::{ApplyRequest, DEFAULT_LEASE};
use sluice_release::approve::ApproveRequest;
use sluice_release::{ReleaseError, admin};

use crate::cmd_evidence::StoreArgs;
use crate::exit;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Args)]
pub struct ApproveArgs {
    /// The change id `sluice pr --record` printed (`changes[].change_id`).
    pub change_id: String,
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Your name under `people:` in sluice.yaml (of the change's base revision).
    #[arg(long = "as", value_name = "NAME")]
    pub name: String,
    /// Your private key (OpenSSH ed25519, unencrypted, or PKCS#8 PEM); its public key must be
    /// registered for NAME. It signs the approval; it is never stored.
    #[arg(long, value_name = "KEYFILE")]
    pub key: PathBuf,
    #[command(flatten)]
    pub evidence: StoreArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Args)]
pub struct ApplyArgs {
    /// A change id, or the part of it a PR commit's changes share (`repo#pr@sha7`): every
    /// stack of it then applies in dependency order.
    pub change_id: String,
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Only this stack.
    #[arg(long, value_name = "UNIT")]
    pub unit: Option<String>,
    /// Plan store (default: `<repo>/.sluice`).
    #[arg(long, value_name = "DIR")]
    pub plan_store: Option<PathBuf>,
    /// The state lock's lease in seconds, renewed by heartbeat while the engine runs; an
    /// applier that dies stops renewing it and the stack is then degraded.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_LEASE.as_secs())]
    pub lease: u64,
    /// The default branch, for `apply.merge: after_merge`.
    #[arg(long, default_value = "main")]
    pub default_branch: String,
    /// Apply under this open break-glass grant (`sluice break-glass open`): approvals (and a
    /// pending `after_merge` merge) are waived, nothing else; the use is recorded as evidence.
    /// Exit 8 when the grant expired, was closed or is for another stack.
    #[arg(long, value_name = "GRANT")]
    pub break_glass: Option<String>,
    #[command(flatten)]
    pub evidence: StoreArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Args)]
pub struct LocksArgs {
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    #[command(flatten)]
    pub evidence: StoreArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Args)]
pub struct AdminArgs {
    /// The stack (`dev/net`).
    pub unit: String,
    /// Why (mandatory; recorded in the audit log with your identity).
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    #[command(flatten)]
    pub evidence: StoreArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

pub(crate) fn fail(e: &ReleaseError) -> i32 {
    eprintln!("error: {e}");
    exit::release(e)
}

pub(crate) fn json(value: &impl serde::Serialize) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("reports serialise");
    s.push('\n');
    s
}

/// `sluice pr`: each stack's approval requirements met (by whom, for which digest) or missing,
/// from the approvals recorded for its change. Only when the store exists and records the
/// change; a store that cannot be read is a warning under `--record` (which just wrote it),
/// and silent otherwise (no store yet is the normal case).
pub fn attach_approval_status(
    repo: &std::path::Path,
    store: &StoreArgs,
    report: &mut sluice_flow::pr::PrReport,
    record: bool,
) {
    let root = sluice_flow::workspace::state_root(repo);
    let options = store.options(&root, true);
    if options.database_url.is_none() && !root.join(".sluice").join("sluice.db").exists() {
        return;
    }
    let ids: Vec<String> = report
        .stacks
        .iter()
        .filter(|s| s.decision.is_some())
        .map(|s| s.change_id.to_string())
        .collect();
    if ids.is_empty() {
        return;
    }
    match runtime().block_on(sluice_release::status::approval_statuses(
        &root, &options, &ids,
    )) {
        Ok(mut statuses) => {
            for s in &mut report.stacks {
                s.approval_status = statuses.remove(&s.change_id.to_string());
            }
        }
        Err(e) if record => eprintln!("warning: approval status not shown: {e}"),
        Err(_) => {}
    }
}

pub fn run_approve(a: ApproveArgs) -> i32 {
    let req = ApproveRequest {
        change_id: a.change_id.clone(),
        name: a.name.clone(),
        key_file: a.key.clone(),
        options: a.evidence.options(&a.repo, true),
        repo: a.repo.clone(),
    };
    match runtime().block_on(sluice_release::approve::approve(req)) {
        Ok(done) => {
            let out = match a.format {
                Format::Json => json(&done),
                Format::Text => format!(
                    "approved {} as {} (groups: {}) with key {}\n  plan {}\n  decision {}\n  signed approval {}\n",
                    done.change_id,
                    done.approval.approver,
                    done.approval.groups.join(", "),
                    done.key_fingerprint,
                    done.approval.binding.subject.digest(),
                    done.approval.binding.decision_digest,
                    done.approval_envelope,
                ),
            };
            print!("{out}");
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

pub fn run_apply(a: ApplyArgs) -> i32 {
    let req = ApplyRequest {
        change_id: a.change_id.clone(),
        unit: a.unit.clone(),
        options: a.evidence.options(&a.repo, true),
        plan_store: a.plan_store.clone(),
        lease: Duration::from_secs(a.lease.max(1)),
        default_branch: a.default_branch.clone(),
        path_var: None,
        break_glass: a.break_glass.clone(),
        repo: a.repo.clone(),
    };
    match runtime().block_on(sluice_release::apply::apply(req)) {
        Ok(report) => {
            let out = match a.format {
                Format::Json => json(&report),
                Format::Text => {
                    let mut out = String::new();
                    for s in &report.applied {
                        let approved = match &s.break_glass {
                            Some(u) => format!(
                                "break-glass grant {} of {} (use {}; reason: {})",
                                u.grant, u.opened_by, u.number, u.reason
                            ),
                            None => s.approved_by.join(", "),
                        };
                        let _ = writeln!(
                            out,
                            "applied {} ({}) with {} under fencing token {}\n  plan {}\n  approved by {}\n  state serial {} -> {}",
                            s.change_id,
                            s.unit,
                            s.engine,
                            s.fencing_token,
                            s.plan_digest,
                            approved,
                            s.state_before
                                .as_ref()
                                .map_or("-".into(), |x| x.serial.to_string()),
                            s.state_after
                                .as_ref()
                                .map_or("-".into(), |x| x.serial.to_string()),
                        );
                    }
                    out
                }
            };
            print!("{out}");
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

fn open(
    repo: &std::path::Path,
    evidence: &StoreArgs,
) -> Result<(tokio::runtime::Runtime, EvidenceService), i32> {
    let rt = runtime();
    match rt.block_on(EvidenceService::open(&evidence.options(repo, true))) {
        Ok(s) => Ok((rt, s)),
        Err(e) => {
            eprintln!("error: {e}");
            Err(exit::evidence(&e))
        }
    }
}

pub fn run_locks(a: LocksArgs) -> i32 {
    let (rt, service) = match open(&a.repo, &a.evidence) {
        Ok(x) => x,
        Err(code) => return code,
    };
    match rt.block_on(admin::locks(service.store())) {
        Ok(views) => {
            let out = match a.format {
                Format::Json => {
                    json(&serde_json::json!({"schema": "sluice.locks/v1", "locks": views}))
                }
                Format::Text => {
                    let mut out = String::new();
                    if views.is_empty() {
                        out.push_str("no locks\n");
                    }
                    for v in &views {
                        let holder = match &v.lock.holder {
                            Some(h) => format!(
                                "held by {} (token {}, {})",
                                h.change,
                                h.token,
                                serde_json::to_value(&h.tenure)
                                    .ok()
                                    .and_then(|t| t
                                        .get("kind")
                                        .and_then(|k| k.as_str())
                                        .map(str::to_string))
                                    .unwrap_or_default()
                            ),
                            None => "free".to_string(),
                        };
                        let health = serde_json::to_value(&v.health)
                            .ok()
                            .and_then(|h| {
                                h.get("health").and_then(|k| k.as_str()).map(str::to_string)
                            })
                            .unwrap_or_default();
                        let _ = writeln!(
                            out,
                            "{}: {holder}; last token {}; {} waiting; {health}",
                            v.unit,
                            v.lock.last_token,
                            v.lock.queue.len()
                        );
                        for (i, w) in v.lock.queue.iter().enumerate() {
                            let _ = writeln!(out, "  {}. {} (since {})", i + 1, w.change, w.since);
                        }
                    }
                    out
                }
            };
            print!("{out}");
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

fn reason(a: &AdminArgs) -> Result<String, i32> {
    match a.reason.as_deref().map(str::trim) {
        Some(r) if !r.is_empty() => Ok(r.to_string()),
        _ => {
            eprintln!(
                "error: --reason is required: admin actions are recorded in the audit log with their reason"
            );
            Err(exit::USAGE)
        }
    }
}

pub fn run_unlock(a: AdminArgs) -> i32 {
    let reason = match reason(&a) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (rt, service) = match open(&a.repo, &a.evidence) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let admin_id = Identity::from_env();
    match rt.block_on(admin::unlock(
        service.store(),
        &a.unit,
        &admin_id.identity,
        &reason,
    )) {
        Ok(done) => {
            let out = match a.format {
                Format::Json => json(&done),
                Format::Text => format!(
                    "unlocked {} (previous holder: {}); recorded with reason {:?} by {}\n",
                    done.unit,
                    done.previous
                        .as_ref()
                        .map_or("none".into(), |h| format!("{} token {}", h.change, h.token)),
                    done.reason,
                    done.admin
                ),
            };
            print!("{out}");
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

#[derive(Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Instead of the admin override: a refresh-only plan of the stack at the revision whose
    /// apply failed, showing what changed; the stack becomes recovering (a plan made after it,
    /// approved and applied, makes it healthy). No --reason needed; audited as
    /// `stack.refreshed`.
    #[arg(long)]
    pub refresh_only: bool,
    /// Plan store (default: `<repo>/.sluice`), for --refresh-only.
    #[arg(long, value_name = "DIR")]
    pub plan_store: Option<PathBuf>,
}

pub fn run_recover(r: RecoverArgs) -> i32 {
    if r.refresh_only {
        return run_refresh_only(r);
    }
    let a = r.admin;
    let reason = match reason(&a) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (rt, service) = match open(&a.repo, &a.evidence) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let admin_id = Identity::from_env();
    let rules = sluice_model::redact::RedactionRules::default();
    match rt.block_on(admin::recover(
        service.store(),
        &a.unit,
        &admin_id.identity,
        &reason,
        &rules,
    )) {
        Ok(done) => {
            let out = match a.format {
                Format::Json => json(&done),
                Format::Text => format!(
                    "recovered {}: marked healthy{}; recorded with reason {:?} by {}\n",
                    done.unit,
                    if done.unlocked.is_some() {
                        " and unlocked"
                    } else {
                        ""
                    },
                    done.reason,
                    done.admin
                ),
            };
            print!("{out}");
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

fn run_refresh_only(r: RecoverArgs) -> i32 {
    let a = r.admin;
    let req = sluice_release::refresh::RefreshRequest {
        unit: a.unit.clone(),
        options: a.evidence.options(&a.repo, true),
        plan_store: r.plan_store.clone(),
        path_var: None,
        repo: a.repo.clone(),
    };
    match runtime().block_on(sluice_release::refresh::refresh_only(req)) {
        Ok(done) => {
            let out = match a.format {
                Format::Json => json(&done),
                Format::Text => {
                    let mut out = format!(
                        "refresh-only plan of {} at {} ({}) with {}: {}\n  plan {}\n",
                        done.unit,
                        done.commit,
                        done.change_id,
                        done.engine,
                        if done.has_changes {
                            "changes outside the recorded state"
                        } else {
                            "no changes outside the recorded state"
                        },
                        done.plan_digest
                    );
                    for d in &done.drifted {
                        let _ = writeln!(out, "  drifted {} ({})", d.address, d.actions);
                    }
                    for o in &done.outputs {
                        let _ = writeln!(out, "  output {} changes", o.name);
                    }
                    out.push_str(
                        "the stack is recovering: plan again (`sluice pr --run-plans --record`), approve and apply\n",
                    );
                    out
                }
            };
            print!("{out}");
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

#[derive(Args)]
pub struct BenchLocksArgs {
    /// Acquire + release rounds per store.
    #[arg(long, default_value_t = 1_000)]
    pub iterations: usize,
    /// Which stores to measure.
    #[arg(long, value_enum, default_value = "both")]
    pub backend: crate::cmd_evidence::BenchBackend,
    /// PostgreSQL to measure (in a scratch schema, dropped afterwards).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres_url: String,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// `sluice bench locks`: durable acquire and release latency of a stack's lock.
pub fn run_bench_locks(a: BenchLocksArgs) -> i32 {
    use crate::cmd_evidence::BenchBackend;
    use sluice_store::bench_locks;
    let rt = runtime();
    let mut figures = Vec::new();
    if a.backend != BenchBackend::Postgres {
        match rt.block_on(bench_locks::locks_sqlite_scratch(
            &std::env::temp_dir(),
            a.iterations,
        )) {
            Ok(f) => figures.push(f),
            Err(e) => {
                eprintln!("error: sqlite: {e}");
                return exit::INTERNAL;
            }
        }
    }
    if a.backend != BenchBackend::Sqlite {
        match rt.block_on(bench_locks::locks_postgres_scratch(
            &a.postgres_url,
            a.iterations,
        )) {
            Ok(f) => figures.push(f),
            Err(e) => {
                eprintln!("error: postgres: {e}");
                return exit::INTERNAL;
            }
        }
    }
    match a.format {
        Format::Json => print!("{}", json(&figures)),
        Format::Text => {
            for f in &figures {
                println!(
                    "{}: {} rounds; acquire p50 {:.3} ms, p99 {:.3} ms; release p50 {:.3} ms, p99 {:.3} ms",
                    f.backend,
                    f.iterations,
                    f.acquire_p50_ms,
                    f.acquire_p99_ms,
                    f.release_p50_ms,
                    f.release_p99_ms
                );
            }
        }
    }
    exit::OK
}

#[derive(Args)]
pub struct BenchApplyArgs {
    /// Timed rounds of each side (after one warm-up round of each).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// `sluice bench apply`: sluice's apply overhead over the engine's own apply of the same kind
/// of plan, measured in one run (needs `tofu` or `terraform` on PATH).
pub fn run_bench_apply(a: BenchApplyArgs) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: finding sluice: {e}");
            return exit::INTERNAL;
        }
    };
    let result = match sluice_demo::apply_bench::apply(&exe, a.runs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    match a.format {
        Format::Json => print!("{}", json(&result)),
        Format::Text => {
            let line = |name: &str, s: &sluice_demo::apply_bench::Stats| {
                format!(
                    "  {name}: median {:.0} ms, p90 {:.0} ms, min {:.0} ms\n",
                    s.median_ms, s.p90_ms, s.min_ms
                )
            };
            let mut out = format!(
                "apply of a terraform_data plan with {}, {} runs each\n",
                result.engine, result.runs
            );
            out.push_str(&line(
                &format!("{} apply PLANFILE", result.engine),
                &result.engine_alone,
            ));
            out.push_str(&line("sluice apply CHANGE_ID", &result.sluice));
            let _ = writeln!(
                out,
                "  overhead: median {:.0} ms, p90 {:.0} ms (target <= {:.0} ms)",
                result.overhead_median_ms, result.overhead_p90_ms, result.target_overhead_ms
            );
            let phases: Vec<String> = result
                .sluice_phases_median_ms
                .iter()
                .map(|(k, v)| format!("{k} {v:.0}"))
                .collect();
            let _ = writeln!(out, "  sluice medians (ms): {}", phases.join(", "));
            print!("{out}");
        }
    }
    exit::OK
}
