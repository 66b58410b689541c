//! `sluice break-glass open|close|list` and `sluice backports [resolve]` (DESIGN.md §15.3,
//! docs/break-glass.md): flags, rendering and exit codes over `sluice_release::breakglass`.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use sluice_model::breakglass::{BackportItem, BackportStatus, parse_ttl};
use sluice_recorder::evidence::{EvidenceService, Identity};
use sluice_release::breakglass::{self as bg, OpenGrantRequest};

use crate::cmd_evidence::StoreArgs;
use crate::cmd_release::{Format, fail, json, runtime};
use crate::exit;

#[derive(Subcommand)]
pub enum BreakGlassCommand {
    /// Open a time-boxed grant to apply UNIT without the normal approvals (never without its
    /// lock), as a member of the `break_glass.group` of sluice.yaml on the default branch,
    /// proven by your key registered under `people:`. Exit 11 when refused.
    Open(OpenArgs),
    /// End a grant before its TTL (audited; --reason required). A used grant leaves a
    /// backport item.
    Close(CloseArgs),
    /// Every grant, newest first, with its state now.
    List(ListArgs),
}

#[derive(Args)]
pub struct OpenArgs {
    /// The stack (`prod/eu-west-1/rds-payments`).
    #[arg(long, value_name = "UNIT")]
    pub unit: String,
    /// Why (mandatory: the incident, the ticket).
    #[arg(long)]
    pub reason: Option<String>,
    /// How long the grant lasts (`30m`, `1h`, `1h30m`), at most `break_glass.max_ttl`.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Your name under `people:` in sluice.yaml (of the default branch).
    #[arg(long = "as", value_name = "NAME")]
    pub name: String,
    /// Your private key (OpenSSH ed25519, unencrypted, or PKCS#8 PEM); its public key must be
    /// registered for NAME. It signs the request; it is never stored.
    #[arg(long, value_name = "KEYFILE")]
    pub key: PathBuf,
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// The branch whose sluice.yaml says who may open a grant.
    #[arg(long, default_value = "main")]
    pub default_branch: String,
    #[command(flatten)]
    pub evidence: StoreArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Args)]
pub struct CloseArgs {
    /// The grant id (`bg-…`).
    pub grant: String,
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

#[derive(Args)]
pub struct ListArgs {
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Print JSON (`sluice.break-glass/v1`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub evidence: StoreArgs,
}

#[derive(Args)]
pub struct BackportsArgs {
    #[command(subcommand)]
    pub command: Option<BackportsCommand>,
    /// Resolved items too.
    #[arg(long)]
    pub all: bool,
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Print JSON (`sluice.backports/v1`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub evidence: StoreArgs,
}

#[derive(Subcommand)]
pub enum BackportsCommand {
    /// Resolve the backport item of GRANT with PR N: N must have a change of the item's
    /// stack recorded by `sluice pr --record` whose head is merged into the default branch.
    /// Exit 11 when it is not.
    Resolve(ResolveArgs),
}

#[derive(Args)]
pub struct ResolveArgs {
    /// The grant id the item belongs to.
    pub grant: String,
    #[arg(long, value_name = "N")]
    pub pr: u64,
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    #[arg(long, default_value = "main")]
    pub default_branch: String,
    #[command(flatten)]
    pub evidence: StoreArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

fn open_store(
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

fn reason(given: Option<&str>, what: &str) -> Result<String, i32> {
    match given.map(str::trim) {
        Some(r) if !r.is_empty() => Ok(r.to_string()),
        _ => {
            eprintln!(
                "error: --reason is required: {what} is recorded in the audit log with its reason"
            );
            Err(exit::USAGE)
        }
    }
}

pub fn run(c: BreakGlassCommand) -> i32 {
    match c {
        BreakGlassCommand::Open(a) => run_open(a),
        BreakGlassCommand::Close(a) => run_close(a),
        BreakGlassCommand::List(a) => run_list(a),
    }
}

fn run_open(a: OpenArgs) -> i32 {
    let reason = match reason(a.reason.as_deref(), "a break-glass grant") {
        Ok(r) => r,
        Err(code) => return code,
    };
    let ttl_secs = match parse_ttl(&a.ttl) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --ttl: {e}");
            return exit::USAGE;
        }
    };
    let req = OpenGrantRequest {
        unit: a.unit.clone(),
        reason,
        ttl_secs,
        name: a.name.clone(),
        key_file: a.key.clone(),
        default_branch: a.default_branch.clone(),
        options: a.evidence.options(&a.repo, true),
        repo: a.repo.clone(),
    };
    match runtime().block_on(bg::open(req)) {
        Ok(done) => {
            let out = match a.format {
                Format::Json => json(&done),
                Format::Text => format!(
                    "opened break-glass grant {} for {} as {} (key {})\n  reason: {}\n  expires {}\n  apply with: sluice apply CHANGE_ID --unit {} --break-glass {}\n",
                    done.grant.id,
                    done.grant.unit,
                    done.grant.opened_by,
                    done.key_fingerprint,
                    done.grant.reason,
                    done.grant.expires_at,
                    done.grant.unit,
                    done.grant.id,
                ),
            };
            print!("{out}");
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

fn run_close(a: CloseArgs) -> i32 {
    let reason = match reason(a.reason.as_deref(), "closing a grant") {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (rt, service) = match open_store(&a.repo, &a.evidence) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let by = Identity::from_env().actor;
    match rt.block_on(bg::close(service.store(), &a.grant, &by, &reason)) {
        Ok(done) => {
            let out = match a.format {
                Format::Json => json(&done),
                Format::Text => {
                    let mut out = format!(
                        "closed break-glass grant {} ({}) after {} use(s); recorded with reason {:?} by {by}\n",
                        done.grant.id, done.grant.unit, done.grant.uses, done.reason
                    );
                    if let Some(item) = &done.backport {
                        let _ = writeln!(
                            out,
                            "  backport item open for {}: bring Git in line with what was applied (`sluice backports`)",
                            item.unit
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

fn run_list(a: ListArgs) -> i32 {
    let (rt, service) = match open_store(&a.repo, &a.evidence) {
        Ok(x) => x,
        Err(code) => return code,
    };
    match rt.block_on(bg::list(service.store())) {
        Ok(views) => {
            if a.json {
                print!(
                    "{}",
                    json(&serde_json::json!({"schema": "sluice.break-glass/v1", "grants": views}))
                );
            } else if views.is_empty() {
                println!("no break-glass grants");
            } else {
                for v in &views {
                    println!(
                        "{} {}: {}; opened by {} at {}, expires {}; {} use(s); reason: {}",
                        v.grant.id,
                        v.grant.unit,
                        bg::describe(&v.now),
                        v.grant.opened_by,
                        v.grant.opened_at,
                        v.grant.expires_at,
                        v.grant.uses,
                        v.grant.reason
                    );
                }
            }
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

/// One line of `sluice backports`.
pub fn backport_line(item: &BackportItem) -> String {
    let status = match &item.status {
        BackportStatus::Open => "open".to_string(),
        BackportStatus::Resolved { pr, commit } => format!("resolved by PR #{pr} ({commit})"),
    };
    format!(
        "{} {}: {status}; break-glass by {} ({} apply(s), ended {}); reason: {}",
        item.grant, item.unit, item.opened_by, item.uses, item.ended_at, item.reason
    )
}

pub fn run_backports(a: BackportsArgs) -> i32 {
    if let Some(BackportsCommand::Resolve(r)) = a.command {
        return run_resolve(r);
    }
    let (rt, service) = match open_store(&a.repo, &a.evidence) {
        Ok(x) => x,
        Err(code) => return code,
    };
    match rt.block_on(bg::backports(service.store(), a.all)) {
        Ok(items) => {
            if a.json {
                print!(
                    "{}",
                    json(&serde_json::json!({"schema": "sluice.backports/v1", "backports": items}))
                );
            } else if items.is_empty() {
                println!("no open backport items");
            } else {
                for i in &items {
                    println!("{}", backport_line(i));
                }
            }
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

fn run_resolve(a: ResolveArgs) -> i32 {
    let (rt, service) = match open_store(&a.repo, &a.evidence) {
        Ok(x) => x,
        Err(code) => return code,
    };
    match rt.block_on(bg::resolve(
        service.store(),
        &a.repo,
        &a.grant,
        a.pr,
        &a.default_branch,
    )) {
        Ok(done) => {
            let out = match a.format {
                Format::Json => json(&done),
                Format::Text => format!(
                    "resolved the backport of {} ({}) with PR #{} (change {})\n",
                    done.item.grant, done.item.unit, a.pr, done.change_id
                ),
            };
            print!("{out}");
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

/// The store `sluice pr` would record into, if it exists (a PR report never creates one).
fn existing_store(state_root: &std::path::Path, evidence: &StoreArgs) -> Option<String> {
    let options = evidence.options(state_root, true);
    let db = options.database_url.clone().unwrap_or_else(|| {
        state_root
            .join(sluice_store::DEFAULT_DATABASE)
            .display()
            .to_string()
    });
    match sluice_store::parse_location(&db) {
        Ok(sluice_store::Location::Sqlite(p)) if !p.exists() => None,
        Ok(_) => Some(db),
        Err(_) => None,
    }
}

/// For `sluice pr`: each stack that is not healthy (degraded by a failed or killed apply, or
/// recovering) gets its health from the store, so the PR's people see it without a server.
/// No store yet: nothing to show; a store that cannot be read is a warning.
pub fn attach_health(
    state_root: &std::path::Path,
    evidence: &StoreArgs,
    report: &mut sluice_flow::pr::PrReport,
) {
    use sluice_store::ReleaseStore as _;
    let Some(db) = existing_store(state_root, evidence) else {
        return;
    };
    let read = runtime().block_on(async {
        let store = sluice_store::open(&db).await.map_err(|e| e.to_string())?;
        store.unhealthy().await.map_err(|e| e.to_string())
    });
    match read {
        Ok(unhealthy) => {
            for s in &mut report.stacks {
                s.health = unhealthy
                    .iter()
                    .find(|(unit, _)| *unit == s.id)
                    .map(|(_, h)| h.clone());
            }
        }
        Err(e) => eprintln!("warning: stack health not read: {e}"),
    }
}

/// For `sluice pr`: the open backport items of the store (none when there is no store yet).
/// A store that cannot be read is a warning, not a failed report.
pub fn pending_for_report(state_root: &std::path::Path, evidence: &StoreArgs) -> Vec<BackportItem> {
    let Some(db) = existing_store(state_root, evidence) else {
        return Vec::new();
    };
    let read = runtime().block_on(async {
        let store = sluice_store::open(&db).await.map_err(|e| e.to_string())?;
        bg::outstanding(&store, sluice_release::apply::now())
            .await
            .map_err(|e| e.to_string())
    });
    read.unwrap_or_else(|e| {
        eprintln!("warning: backport items not read: {e}");
        Vec::new()
    })
}

/// After `sluice pr --record`: the recorded changes already merged into `default_branch`
/// resolve the open backport items of their stacks. Returns an exit code on failure.
pub fn resolve_after_record(
    repo: &std::path::Path,
    state_root: &std::path::Path,
    evidence: &StoreArgs,
    report: &sluice_flow::pr::PrReport,
    default_branch: &str,
) -> Option<i32> {
    let db = existing_store(state_root, evidence)?;
    let recorded: Vec<(Option<u64>, String, String, String)> = report
        .changes
        .iter()
        .map(|c| {
            (
                report.pr,
                c.change_id.commit.clone(),
                c.id.clone(),
                c.change_id.to_string(),
            )
        })
        .collect();
    let done = runtime().block_on(async {
        let store = sluice_store::open(&db)
            .await
            .map_err(sluice_release::ReleaseError::from)?;
        bg::resolve_merged(&store, repo, &recorded, default_branch).await
    });
    match done {
        Ok(resolved) => {
            for r in resolved {
                eprintln!(
                    "backport of break-glass grant {} ({}) resolved by merged change {}",
                    r.item.grant, r.item.unit, r.change_id
                );
            }
            None
        }
        Err(e) => Some(fail(&e)),
    }
}
