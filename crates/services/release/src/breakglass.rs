//! Break-glass (DESIGN.md §15.3, docs/break-glass.md): `sluice break-glass open|close|list`
//! and `sluice backports [resolve]` over the model's lifecycle (`sluice_model::breakglass`).
//!
//! - Who may open a grant is read from the *default branch's* `sluice.yaml` (`break_glass:`
//!   and `people:`), never from a change: a PR cannot make its author an on-call engineer. The
//!   requester proves who they are with a key registered for them under `people:` (as `sluice
//!   approve` does): the request is signed with it and checked against the registered key
//!   before anything is written, and the signed request is kept in the grant's audit event.
//! - A grant ends when it is closed or when its TTL passes; [`sweep`] records expiries (each
//!   command that reads grants runs it), and a used grant that ends leaves a backport item in
//!   the same transaction.
//! - An item stays open until a change of its unit recorded by `sluice pr --record` is merged
//!   into the default branch: [`resolve_merged`] after each recording, or [`resolve`] by hand
//!   (`sluice backports resolve GRANT --pr N`), which checks the same thing.
//!
//! How an apply uses a grant is in [`crate::apply`].

use std::path::PathBuf;

use serde::Serialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use sluice_evidence::approval::{load_approver_key, verifying_keys};
use sluice_evidence::dsse::{self, Envelope};
use sluice_model::breakglass::{
    self, BackportItem, BreakGlassConfig, BreakGlassGrant, GrantState, OpenRequest,
};
use sluice_model::exception::Timestamp;
use sluice_model::people::PublicKey;
use sluice_recorder::evidence::{EvidenceService, RecorderOptions};
use sluice_store::{AnyStore, BreakGlassStore, ChangeStore, EventRecord};

use crate::apply::now;
use crate::error::{ReleaseError, Result};
use sluice_flow::error::PipelineError;

/// DSSE payload type of a requester-signed grant request.
pub const REQUEST_PAYLOAD_TYPE: &str = "application/vnd.sluice.break-glass-request+json";

/// The audit-event key of a grant (`sluice evidence events --change break-glass:ID`).
pub fn event_key(grant: &str) -> String {
    format!("break-glass:{grant}")
}

/// Why break-glass refused (the CLI gives these their own exit code).
#[derive(Debug, thiserror::Error)]
pub enum BreakGlassError {
    #[error(
        "break-glass is not configured: add `break_glass: {{ group: \"@org/team\", max_ttl: 4h }}` to sluice.yaml on {branch}"
    )]
    NotConfigured { branch: String },
    #[error("break-glass refused: {0}")]
    Open(#[from] breakglass::OpenError),
    #[error(
        "break-glass refused: `{name}` is not registered under `people:` in sluice.yaml on {branch}"
    )]
    NotRegistered { name: String, branch: String },
    #[error(
        "break-glass refused: the key {fingerprint} is not registered for {name} under `people:` in sluice.yaml on {branch}"
    )]
    KeyNotRegistered {
        name: String,
        fingerprint: String,
        branch: String,
    },
    #[error("break-glass grant {0} does not exist (`sluice break-glass list` shows them)")]
    UnknownGrant(String),
    #[error("break-glass grant {id} has already ended ({state})")]
    AlreadyEnded { id: String, state: String },
    #[error("no backport item for grant {0} (`sluice backports` lists the open ones)")]
    UnknownBackport(String),
    #[error("backport of grant {grant}: {source}")]
    Resolve {
        grant: String,
        source: breakglass::ResolveError,
    },
    #[error("the grant {0} changed while it was being written; try again")]
    Contended(String),
}

pub struct OpenGrantRequest {
    pub repo: PathBuf,
    pub unit: String,
    pub reason: String,
    pub ttl_secs: i64,
    /// The `people:` name the key must belong to.
    pub name: String,
    pub key_file: PathBuf,
    /// The branch whose `sluice.yaml` says who may open a grant.
    pub default_branch: String,
    pub options: RecorderOptions,
}

/// What `sluice break-glass open` recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Opened {
    pub grant: BreakGlassGrant,
    pub key_fingerprint: String,
    /// The revision of the default branch whose `sluice.yaml` was read.
    pub governance_revision: String,
}

/// A grant as `sluice break-glass list` shows it: its state at the time of listing.
#[derive(Debug, Clone, Serialize)]
pub struct GrantView {
    #[serde(flatten)]
    pub grant: BreakGlassGrant,
    pub now: GrantState,
}

fn time_id(now: Timestamp, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(now.unix_seconds().to_be_bytes());
    h.update(now.subsec_nanos().to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("bg-{}", &hex::encode(h.finalize())[..12])
}

/// `sluice break-glass open`.
pub async fn open(req: OpenGrantRequest) -> Result<Opened> {
    let mut options = req.options.clone();
    options.existing_only = true;
    let service = EvidenceService::open(&options).await?;
    let store = service.store();
    let repo = sluice_flow::workspace::open(&req.repo)?;
    let rev = sluice_flow::workspace::revision(&repo, &req.default_branch)?;
    let governance_revision = rev.snapshot.commit.to_string();
    let config = match rev.config.sections.get("break_glass") {
        Some(section) => BreakGlassConfig::from_json(section)
            .map_err(|e| ReleaseError::Usage(format!("sluice.yaml: {e}")))?,
        None => {
            return Err(BreakGlassError::NotConfigured {
                branch: req.default_branch.clone(),
            }
            .into());
        }
    };
    let org = rev.discover();
    if !org.stacks.iter().any(|s| s.id == req.unit) {
        return Err(ReleaseError::Usage(format!(
            "`{}` is not a stack on {} (`sluice stacks` lists them)",
            req.unit, req.default_branch
        )));
    }
    // Identity first: who is asking, proven by their key, before any rule is applied.
    let person =
        rev.config
            .people
            .get(&req.name)
            .ok_or_else(|| BreakGlassError::NotRegistered {
                name: req.name.clone(),
                branch: req.default_branch.clone(),
            })?;
    let key = load_approver_key(&req.key_file)?;
    let public = PublicKey(*key.verifying_key().as_bytes());
    let registered = person.public_keys();
    if !registered.contains(&public) {
        return Err(BreakGlassError::KeyNotRegistered {
            name: req.name.clone(),
            fingerprint: public.fingerprint(),
            branch: req.default_branch.clone(),
        }
        .into());
    }
    let at = now();
    let id = time_id(at, &[&req.unit, &req.name, &req.reason]);
    let grant = breakglass::open(
        &config,
        &OpenRequest {
            requester: req.name.clone(),
            requester_groups: person.groups.clone(),
            unit: req.unit.clone(),
            reason: req.reason.clone(),
            ttl_secs: req.ttl_secs,
        },
        id,
        at,
    )
    .map_err(BreakGlassError::from)?;
    // The requester signs what they asked for; checked as an auditor will check it.
    let request = json!({
        "grant": grant.id,
        "unit": grant.unit,
        "requester": grant.opened_by,
        "reason": grant.reason,
        "opened_at": grant.opened_at,
        "expires_at": grant.expires_at,
        "governance_revision": governance_revision,
    });
    let payload = sluice_evidence::canonical::to_vec(&request)
        .map_err(|e| PipelineError::failed("encoding the break-glass request", e))?;
    let envelope = dsse::sign(REQUEST_PAYLOAD_TYPE, &payload, &key);
    verify_request(&envelope, &registered)?;
    store
        .open_grant(
            &grant,
            &EventRecord::new(
                event_key(&grant.id),
                "breakglass.opened",
                json!({
                    "grant": grant,
                    "group": config.group,
                    "max_ttl_secs": config.max_ttl_secs,
                    "key_fingerprint": public.fingerprint(),
                    "governance_revision": governance_revision,
                    "requester_envelope": envelope,
                }),
            ),
        )
        .await?;
    Ok(Opened {
        grant,
        key_fingerprint: public.fingerprint(),
        governance_revision,
    })
}

/// Checks a requester-signed request against the requester's registered keys.
pub fn verify_request(envelope: &Envelope, registered: &[PublicKey]) -> Result<()> {
    envelope
        .verify(REQUEST_PAYLOAD_TYPE, &verifying_keys(registered))
        .map(|_| ())
        .map_err(|e| PipelineError::failed("the signed request does not verify", e).into())
}

/// Most attempts at a conditional write before giving up (each retry re-reads the grant).
const ATTEMPTS: usize = 16;

/// Records every expiry that has passed at `now` (and the backport items of used grants).
/// Idempotent: an expiry another process recorded first is left as it is.
pub async fn sweep(store: &AnyStore, now: Timestamp) -> Result<()> {
    for before in store.grants(None).await? {
        if before.state != GrantState::Open {
            continue;
        }
        let mut after = before.clone();
        let item = after.settle(now);
        if after == before {
            continue;
        }
        store
            .update_grant(
                &before,
                &after,
                item.as_ref(),
                &EventRecord::new(
                    event_key(&before.id),
                    "breakglass.expired",
                    json!({"grant": after, "backport": item}),
                ),
            )
            .await?;
    }
    Ok(())
}

/// Every grant with its state now, newest first.
pub async fn list(store: &AnyStore) -> Result<Vec<GrantView>> {
    let at = now();
    sweep(store, at).await?;
    let mut out: Vec<GrantView> = store
        .grants(None)
        .await?
        .into_iter()
        .map(|g| GrantView {
            now: g.state_at(at),
            grant: g,
        })
        .collect();
    out.reverse();
    Ok(out)
}

/// What `sluice break-glass close` did.
#[derive(Debug, Clone, Serialize)]
pub struct Closed {
    pub grant: BreakGlassGrant,
    pub reason: String,
    /// The backport item the close created (when the grant was used).
    pub backport: Option<BackportItem>,
}

/// `sluice break-glass close GRANT --reason`.
pub async fn close(store: &AnyStore, id: &str, by: &str, reason: &str) -> Result<Closed> {
    if reason.trim().is_empty() {
        return Err(ReleaseError::Usage(
            "closing a grant needs --reason (it is recorded in the audit log)".into(),
        ));
    }
    for _ in 0..ATTEMPTS {
        let at = now();
        let before = store
            .grant(id)
            .await?
            .ok_or_else(|| BreakGlassError::UnknownGrant(id.to_string()))?;
        match before.state_at(at) {
            GrantState::Open => {}
            ended => {
                // Record an expiry nobody recorded yet, then say it had ended.
                sweep(store, at).await?;
                return Err(BreakGlassError::AlreadyEnded {
                    id: id.to_string(),
                    state: describe(&ended),
                }
                .into());
            }
        }
        let mut after = before.clone();
        let backport = after.close(by, at);
        let event = EventRecord::new(
            event_key(id),
            "breakglass.closed",
            json!({"grant": after, "by": by, "reason": reason.trim(), "backport": backport}),
        );
        if store
            .update_grant(&before, &after, backport.as_ref(), &event)
            .await?
        {
            return Ok(Closed {
                grant: after,
                reason: reason.trim().to_string(),
                backport,
            });
        }
    }
    Err(BreakGlassError::Contended(id.to_string()).into())
}

/// A grant's state in words.
pub fn describe(state: &GrantState) -> String {
    match state {
        GrantState::Open => "open".into(),
        GrantState::Closed { by, at } => format!("closed by {by} at {at}"),
        GrantState::Expired { at } => format!("expired at {at}"),
    }
}

/// The backport items (only the open ones unless `all`), oldest first, after recording the
/// expiries that have passed.
pub async fn backports(store: &AnyStore, all: bool) -> Result<Vec<BackportItem>> {
    sweep(store, now()).await?;
    Ok(store.backports(!all).await?)
}

/// Open backport items as of `now` without writing: the stored ones plus those a sweep would
/// create (for readers such as the API and `sluice pr`, which do not write).
pub async fn outstanding(store: &AnyStore, now: Timestamp) -> Result<Vec<BackportItem>> {
    let items = store.backports(true).await?;
    let grants = store.grants(None).await?;
    Ok(breakglass::outstanding(&items, &grants, now))
}

/// Whether `commit` is in `default_branch` (merged).
fn merged(repo: &sluice_git::git::GitRepo, commit: &str, default_branch: &str) -> bool {
    let (Ok(c), Ok(main)) = (repo.resolve(commit), repo.resolve(default_branch)) else {
        return false;
    };
    matches!(repo.merge_base(c, main), Ok(Some(b)) if b == c)
}

/// What resolved an item.
#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    pub item: BackportItem,
    pub change_id: String,
}

/// `sluice backports resolve GRANT --pr N`: the item is resolved when PR `pr` has a change of
/// the item's unit recorded (`sluice pr --record`) whose head commit is in the default branch.
pub async fn resolve(
    store: &AnyStore,
    repo: &std::path::Path,
    grant: &str,
    pr: u64,
    default_branch: &str,
) -> Result<Resolved> {
    sweep(store, now()).await?;
    let item = store
        .backports(false)
        .await?
        .into_iter()
        .find(|i| i.grant == grant)
        .ok_or_else(|| BreakGlassError::UnknownBackport(grant.to_string()))?;
    let git = sluice_flow::workspace::open(repo)?;
    let changes: Vec<_> = store
        .changes(100_000)
        .await?
        .into_iter()
        .filter(|c| c.pr == Some(pr))
        .collect();
    let touched: Vec<String> = changes.iter().map(|c| c.unit.clone()).collect();
    let landed = changes
        .iter()
        .filter(|c| c.unit == item.unit)
        .find(|c| merged(&git, &c.head, default_branch));
    let mut resolved = item.clone();
    resolved
        .resolve(
            pr,
            landed.map(|c| c.head.as_str()),
            if landed.is_some() { &touched } else { &[] },
        )
        .map_err(|source| BreakGlassError::Resolve {
            grant: grant.to_string(),
            source,
        })?;
    let change_id = landed.map(|c| c.change_id.clone()).unwrap_or_default();
    write_resolution(store, &resolved, &change_id, "by hand").await?;
    Ok(Resolved {
        item: resolved,
        change_id,
    })
}

async fn write_resolution(
    store: &AnyStore,
    resolved: &BackportItem,
    change_id: &str,
    how: &str,
) -> Result<bool> {
    Ok(store
        .resolve_backport(
            resolved,
            &EventRecord::new(
                event_key(&resolved.grant),
                "backport.resolved",
                json!({"item": resolved, "change_id": change_id, "how": how}),
            ),
        )
        .await?)
}

/// After `sluice pr --record`: each recorded change (PR `pr`, head commit, unit) whose head is
/// already in the default branch resolves the open items of its unit. Returns what it resolved.
pub async fn resolve_merged(
    store: &AnyStore,
    repo: &std::path::Path,
    recorded: &[(Option<u64>, String, String, String)],
    default_branch: &str,
) -> Result<Vec<Resolved>> {
    sweep(store, now()).await?;
    let items = store.backports(true).await?;
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let git = sluice_flow::workspace::open(repo)?;
    let mut out = Vec::new();
    for (pr, head, unit, change_id) in recorded {
        if !merged(&git, head, default_branch) {
            continue;
        }
        for item in breakglass::resolved_by(&items, std::slice::from_ref(unit)) {
            let mut resolved = item.clone();
            // Without a PR number the merged commit stands for it (a push to the branch).
            if resolved
                .resolve(pr.unwrap_or(0), Some(head), std::slice::from_ref(unit))
                .is_ok()
                && write_resolution(store, &resolved, change_id, "merged change recorded").await?
            {
                out.push(Resolved {
                    item: resolved,
                    change_id: change_id.clone(),
                });
            }
        }
    }
    Ok(out)
}
