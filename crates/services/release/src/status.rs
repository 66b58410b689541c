//! Each approval requirement of a recorded change as met (by whom, for which digest) or
//! missing, for `sluice pr` and the check run: the recorded approvals re-verified against the
//! approvers' registered keys (or, for GitHub reviews, the trusted servers' keys) and judged by the same model function the apply gate uses
//! (`sluice_model::binding::evaluate`), summarised by `sluice_model::approval_status`.

use std::collections::BTreeMap;
use std::path::Path;

use sluice_model::approval_status::{ApprovalStatus, summarise};
use sluice_model::binding::{Applying, evaluate};
use sluice_recorder::evidence::{EvidenceService, RecorderOptions};
use sluice_store::{ChangeStore, ReleaseStore};

use crate::apply::{admitted_approvals, trusted_review_signers};
use crate::context::{ChangeContext, Governance};
use crate::error::Result;

/// The approval status of every change in `change_ids` that is recorded with a passed plan and
/// an evaluated policy; the others are left out. Opens the store read-only
/// (`options.existing_only`).
pub async fn approval_statuses(
    repo: &Path,
    options: &RecorderOptions,
    change_ids: &[String],
) -> Result<BTreeMap<String, ApprovalStatus>> {
    let mut options = options.clone();
    options.existing_only = true;
    let service = EvidenceService::open(&options).await?;
    let store = service.store();
    let mut out = BTreeMap::new();
    for id in change_ids {
        if store.change(id).await?.is_none() {
            continue;
        }
        let ctx = ChangeContext::load(store, id).await?;
        let Some(binding) = ctx.binding() else {
            continue;
        };
        let governance = Governance::load(repo, &ctx.record)?;
        let rows = store.approvals(id).await?;
        let admitted = admitted_approvals(
            &governance,
            &rows,
            &trusted_review_signers(&service, &governance),
        );
        let evaluation = evaluate(
            Applying {
                binding: &binding,
                authors: &admitted.authors,
            },
            &ctx.requirements,
            &admitted.approvals,
            &admitted.membership,
            ctx.counting(),
        );
        out.insert(
            id.clone(),
            summarise(
                &ctx.requirements,
                &admitted.approvals,
                &evaluation,
                binding.subject.digest(),
                &binding.decision_digest,
            ),
        );
    }
    Ok(out)
}
