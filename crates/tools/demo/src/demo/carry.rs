//! The demo's last act: one change carried all the way through stages 4–7 with the real engine.
//!
//! The sample org's stacks are Terragrunt stacks on AWS, which the demo can plan (with
//! terragrunt) but never apply. So the demo adds one stack it *can* apply: the checkout
//! service's feature flags in dev, plain Terraform built on the engine's own `terraform_data`
//! resource with a local state file under `<dir>/.sluice/demo-state/` (ignored by git, no
//! provider to download, nothing leaves the machine). On top of the PR the rest of the demo
//! reports (#412), it:
//!
//! 1. commits to `main` the approvers (`people:` in `sluice.yaml`, with ed25519 keys the demo
//!    generates into a temporary directory outside the work tree, deleted at the end) and the
//!    flags stack, with a risk rule that makes a flag rollout R3 (platform and security approve);
//! 2. opens PR #413 (Bob Payments rolls the new checkout out to 10%), plans it with the engine
//!    and records the change (`sluice pr --run-plans --record`);
//! 3. shows Bob's self-approval refused, then records Alice's (platform) and Carol's (security)
//!    approvals, each signed with the person's registered key (`sluice approve`);
//! 4. applies exactly the approved plan under the stack's state lock (`sluice apply`), then
//!    shows a second apply of the same plan refused;
//! 5. writes the change's bundle (plan, policy, approve and apply statements) and verifies it
//!    offline: the verifier checks the applied digest equals the approved and planned one.
//!
//! Without `tofu` or `terraform` on PATH the whole act is skipped and [`Carried::Skipped`] says
//! why; the rest of the demo does not need an engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sluice_evidence::approval::openssh_public;
use sluice_evidence::keys::EvidenceKey;
use sluice_flow::error::PipelineError;
use sluice_flow::pr::{self, PrOptions, PrReport};
use sluice_git::git_write::{Author, Writer};
use sluice_model::approval::Source;
use sluice_recorder::evidence::{Recorder, RecorderOptions, verify_file};
use sluice_release::apply::{ApplyRequest, DEFAULT_LEASE, StackApplied};
use sluice_release::approve::ApproveRequest;

use super::{DemoRepo, org};

pub const FLAGS_STACK: &str = "dev/ap-southeast-1/feature-flags";
pub const FLAGS_DIR: &str = "infra-live/accounts/dev/ap-southeast-1/feature-flags";
pub const FLAGS_PR: u64 = 413;
pub const FLAGS_BRANCH: &str = "pr/413-checkout-rollout";
/// Where the flags stack keeps its state (inside the ignored `.sluice/`).
pub const STATE_DIR: &str = ".sluice/demo-state";

/// The people the demo registers: name, email, groups.
pub const PEOPLE: &[(&str, &str, &str)] = &[
    ("alice", "alice@acme.example", "@acme/platform"),
    ("bob", "bob@acme.example", "@acme/payments"),
    ("carol", "carol@acme.example", "@acme/security"),
];

/// Who approves PR #413 (Bob wrote it).
pub const APPROVERS: &[&str] = &["alice", "carol"];

/// What the act did, or why it did not run.
pub enum Carried {
    Skipped { reason: String },
    Done(Box<CarryRun>),
}

/// One approval the demo recorded.
#[derive(Debug, Clone)]
pub struct ApprovalMade {
    pub name: String,
    pub groups: Vec<String>,
    pub key_fingerprint: String,
}

/// Everything the act did, step by step, for the summary and the tests.
pub struct CarryRun {
    pub base: String,
    pub head: String,
    pub report: PrReport,
    pub change_id: String,
    pub plan_digest: String,
    /// The engine's plan in words (`1 to add, 0 to change, 0 to destroy`).
    pub plan_summary: String,
    pub plan_ms: u128,
    /// The approval requirements of the change, as the report states them.
    pub requirements: Vec<String>,
    /// Why Bob's approval of his own change was refused.
    pub self_approval_refused: String,
    pub approvals: Vec<ApprovalMade>,
    pub applied: StackApplied,
    /// Why a second apply of the same change was refused.
    pub second_apply_refused: String,
    pub state_file: PathBuf,
    pub bundle_path: PathBuf,
    /// The stages in the verified bundle, in order (`plan`, `policy`, `approve`, `apply`, …).
    pub bundle_stages: Vec<String>,
    pub verified: bool,
    pub verification: String,
    pub total_ms: u128,
}

/// The engine the act applies with (`tofu`, else `terraform`) on the search path `path`, or
/// why there is none.
pub fn engine_on_path(path: Option<&std::ffi::OsStr>) -> Result<&'static str, String> {
    for name in ["tofu", "terraform"] {
        if sluice_iac::engine::find_on_path(name, path).is_some() {
            return Ok(name);
        }
    }
    Err(
        "neither tofu nor terraform is on PATH: the demo skips planning and applying its \
         feature-flags stack (install Terraform or OpenTofu to see a change approved and applied)"
            .to_string(),
    )
}

/// The flags stack's `main.tf`: a local backend whose state lives at `state`, and the flags
/// when `rollout` is given.
fn flags_tf(state: &Path, rollout: Option<u32>) -> String {
    let mut s = format!(
        "# The checkout service's feature flags. Built on the engine's own terraform_data\n\
         # resource, so that `sluice demo` can plan and apply it for real, offline.\n\
         terraform {{\n  backend \"local\" {{\n    path = \"{}\"\n  }}\n}}\n",
        state.display()
    );
    if let Some(percent) = rollout {
        s.push_str(&format!(
            "\nresource \"terraform_data\" \"checkout_flags\" {{\n  input = {{\n    new_checkout    = true\n    rollout_percent = {percent}\n  }}\n}}\n\noutput \"rollout_percent\" {{\n  value = terraform_data.checkout_flags.output.rollout_percent\n}}\n"
        ));
    }
    s
}

/// `sluice.yaml` of the act's base: the org's, with the flags stack in the app layer, a rule
/// that makes any change of it R3, and the registered people with their public keys.
fn sluice_yaml(main: &org::Files, keys: &BTreeMap<String, String>) -> String {
    let text = String::from_utf8_lossy(&main["sluice.yaml"]).to_string();
    let text = text
        .replace(
            "{ name: app, stacks: [\"dns\"] }",
            "{ name: app, stacks: [\"dns\", \"feature-flags\"] }",
        )
        .replace(
            "approvals:\n",
            "    - { when: { stacks: [\"*/*/feature-flags\"] }, risk: R3, reason: feature flags reach customers }\napprovals:\n",
        );
    let mut text = text;
    text.push_str("# Who may approve from the command line (`sluice approve --as NAME --key FILE`).\npeople:\n");
    for (name, email, group) in PEOPLE {
        text.push_str(&format!(
            "  {name}: {{ emails: [{email}], groups: [\"{group}\"], keys: [\"{}\"] }}\n",
            keys[*name]
        ));
    }
    text
}

fn failed(what: &str, e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Internal(format!("{what}: {e}"))
}

/// Write an approver's private key (PKCS#8 PEM, owner-only) into `dir`.
pub(crate) fn write_key(
    dir: &Path,
    name: &str,
    key: &EvidenceKey,
) -> Result<PathBuf, PipelineError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(format!("{name}_ed25519.pem"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| PipelineError::io(&path, e))?;
    f.write_all(key.to_pkcs8_pem().as_bytes())
        .map_err(|e| PipelineError::io(&path, e))?;
    Ok(path)
}

/// Run the act over the demo repository (after [`super::build`]).
pub fn run(repo: &DemoRepo) -> Result<Carried, PipelineError> {
    if let Err(reason) = engine_on_path(std::env::var_os("PATH").as_deref()) {
        return Ok(Carried::Skipped { reason });
    }
    let started = Instant::now();
    let dir = &repo.dir;
    // Keys outside the work tree, gone when the act ends.
    let keys_dir = tempfile::Builder::new()
        .prefix("sluice-demo-keys-")
        .tempdir()
        .map_err(|e| failed("a temporary directory for the approvers' keys", e))?;
    let mut public = BTreeMap::new();
    let mut private = BTreeMap::new();
    for (name, _, _) in PEOPLE {
        let key = EvidenceKey::generate().map_err(|e| failed("generating a key", e))?;
        public.insert(name.to_string(), openssh_public(&key.verifying_key(), name));
        private.insert(name.to_string(), write_key(keys_dir.path(), name, &key)?);
    }

    // Commits: the approvers and the empty flags stack on main, then Bob's PR.
    let state_dir = dir.join(STATE_DIR);
    std::fs::create_dir_all(&state_dir).map_err(|e| PipelineError::io(&state_dir, e))?;
    let state_file = state_dir.join("feature-flags.tfstate");
    let io = |e: sluice_git::git::GitError| failed("writing the demo repository", e);
    let writer = Writer::open(dir).map_err(io)?;
    let mut main = org::main_tree();
    let yaml = sluice_yaml(&main, &public);
    main.insert("sluice.yaml".into(), yaml.into_bytes());
    main.insert(
        format!("{FLAGS_DIR}/main.tf"),
        flags_tf(&state_file, None).into_bytes(),
    );
    let c2 = Writer::object_id(&repo.base).map_err(io)?;
    // A day after the PR the rest of the demo reports.
    let time = super::ALICE.time + 3 * 86_400;
    let c4 = writer
        .commit(
            "main",
            &main,
            Some(c2),
            "Register the approvers and add the checkout feature-flags stack\n",
            &Author {
                name: "Alice Platform",
                email: "alice@acme.example",
                time,
            },
        )
        .map_err(io)?;
    let mut pr_files = main.clone();
    pr_files.insert(
        format!("{FLAGS_DIR}/main.tf"),
        flags_tf(&state_file, Some(10)).into_bytes(),
    );
    let c5 = writer
        .commit(
            FLAGS_BRANCH,
            &pr_files,
            Some(c4),
            "dev: roll the new checkout out to 10% of sessions\n",
            &Author {
                name: "Bob Payments",
                email: "bob@acme.example",
                time: time + 3_600,
            },
        )
        .map_err(io)?;
    writer.checkout("main", c4, &main).map_err(io)?;
    let (base, head) = (c4.to_string(), c5.to_string());

    // Stage 4–5: plan with the engine, record the change.
    let plan_started = Instant::now();
    let report = pr::run_with(
        dir,
        &base,
        &head,
        &PrOptions {
            pr: Some(FLAGS_PR),
            run_plans: true,
            ..Default::default()
        },
    )?;
    let plan_ms = plan_started.elapsed().as_millis();
    let stack = report
        .stacks
        .iter()
        .find(|s| s.id == FLAGS_STACK)
        .ok_or_else(|| failed("PR #413", "the feature-flags stack is not in the report"))?;
    let change_id = stack.change_id.to_string();
    let decision = stack.decision.as_ref().ok_or_else(|| {
        failed(
            "PR #413",
            format!(
                "the engine did not plan {FLAGS_STACK}: {}",
                serde_json::to_string(&stack.plan).unwrap_or_default()
            ),
        )
    })?;
    let plan_summary = format!(
        "{} to add, {} to change, {} to destroy",
        decision.plan.totals.add, decision.plan.totals.change, decision.plan.totals.destroy
    );
    let requirements: Vec<String> = decision
        .approvals
        .iter()
        .map(|a| {
            let source = match &a.source {
                Source::Risk { risk, .. } => format!("risk {risk:?}"),
                Source::Codeowners { pattern, line, .. } => {
                    format!("CODEOWNERS line {line} `{pattern}`")
                }
                Source::Policy { rule, .. } => format!("policy {rule}"),
            };
            format!("{} ({source})", a.approvers.join(" or "))
        })
        .collect();
    {
        let recorder = Recorder::open(&RecorderOptions::new(dir))
            .map_err(|e| failed("opening the evidence store", e))?;
        sluice_recorder::evidence::record_pr(&recorder, &report)
            .map_err(|e| failed("recording PR #413", e))?;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| failed("starting a runtime", e))?;
    let approve = |name: &str| {
        runtime.block_on(sluice_release::approve::approve(ApproveRequest {
            repo: dir.clone(),
            change_id: change_id.clone(),
            name: name.to_string(),
            key_file: private[name].clone(),
            options: RecorderOptions::new(dir),
        }))
    };
    // Stage 6: the author cannot approve; then the required approvers do.
    let self_approval_refused = match approve("bob") {
        Err(e) => e.to_string(),
        Ok(_) => {
            return Err(failed(
                "the demo",
                "Bob's approval of his own change was recorded; it must be refused",
            ));
        }
    };
    let mut approvals = Vec::new();
    for name in APPROVERS {
        let done = approve(name).map_err(|e| failed(&format!("{name}'s approval"), e))?;
        approvals.push(ApprovalMade {
            name: name.to_string(),
            groups: done.approval.groups.clone(),
            key_fingerprint: done.key_fingerprint.clone(),
        });
    }

    // Stage 7: apply exactly that plan under the lock; a second apply is refused.
    let apply = || {
        runtime.block_on(sluice_release::apply::apply(ApplyRequest {
            repo: dir.clone(),
            change_id: change_id.clone(),
            unit: None,
            options: RecorderOptions::new(dir),
            plan_store: None,
            lease: DEFAULT_LEASE,
            default_branch: "main".to_string(),
            path_var: None,
            break_glass: None,
        }))
    };
    let mut done = apply().map_err(|e| failed(&format!("applying {change_id}"), e))?;
    let applied = done.applied.pop().ok_or_else(|| {
        failed(
            "the demo",
            format!("the apply of {change_id} applied nothing"),
        )
    })?;
    let second_apply_refused = match apply() {
        Err(e) => e.to_string(),
        Ok(_) => {
            return Err(failed(
                "the demo",
                "a second apply of the same plan succeeded; a plan applies at most once",
            ));
        }
    };
    drop(runtime);

    // The bundle, verified offline.
    let recorder = Recorder::open(&RecorderOptions::new(dir))
        .map_err(|e| failed("opening the evidence store", e))?;
    let bundle_path = dir
        .join(sluice_recorder::evidence::DEMO_BUNDLE_DIR)
        .join(sluice_recorder::evidence::bundle_file_name(&change_id));
    recorder
        .write_bundle(&change_id, &bundle_path)
        .map_err(|e| failed("writing the bundle", e))?;
    let (verified, verification, bundle_stages) =
        match verify_file(&bundle_path, &[recorder.public_key()], None) {
            Ok(v) => (
                true,
                v.report(),
                v.stages
                    .iter()
                    .map(|s| sluice_model::stage::contract(s.stage).name().to_string())
                    .collect(),
            ),
            Err(e) => (false, e.to_string(), Vec::new()),
        };
    Ok(Carried::Done(Box::new(CarryRun {
        base,
        head,
        report,
        change_id,
        plan_digest: applied.plan_digest.clone(),
        plan_summary,
        plan_ms,
        requirements,
        self_approval_refused,
        approvals,
        applied,
        second_apply_refused,
        state_file,
        bundle_path,
        bundle_stages,
        verified,
        verification,
        total_ms: started.elapsed().as_millis(),
    })))
}
