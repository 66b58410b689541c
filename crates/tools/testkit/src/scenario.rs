//! Small orgs to test on: the `sluice.yaml` the end-to-end tests share (stacks under `live/`
//! laid out `{env}/{region}/{stack}`, apps under `gitops/clusters/` laid out
//! `{cluster}/apps/{app}`), Terragrunt stack bodies, a change on a branch, and `sluice
//! affected` run over it.

use std::path::Path;

use serde_json::Value;

use crate::git::Repo;
use crate::run::{Exit, Run, sluice_change};

/// The region folder most scenarios put their stacks in.
pub const R: &str = "live/dev/eu-west-1";

/// The test orgs' `sluice.yaml`; `stacks_extra` is appended to the `stacks:` section (its lines
/// indented by two spaces).
pub fn sluice_yaml(stacks_extra: &str) -> String {
    format!(
        "version: 1\norg: test\nenvironments:\n  dev:  {{ order: 1 }}\n  prod: {{ order: 2, protected: true }}\nstacks:\n  root: live\n  layout: \"{{env}}/{{region}}/{{stack}}\"\n{stacks_extra}apps:\n  root: gitops/clusters\n  layout: \"{{cluster}}/apps/{{app}}\"\n"
    )
}

/// A repository with the default `sluice.yaml` written (not committed).
pub fn org_repo() -> Repo {
    org_repo_with("")
}

/// A repository with a `sluice.yaml` whose `stacks:` section gets `stacks_extra`.
pub fn org_repo_with(stacks_extra: &str) -> Repo {
    let repo = Repo::new();
    repo.write("sluice.yaml", sluice_yaml(stacks_extra));
    repo
}

/// A minimal Terragrunt stack body.
pub fn plain_stack(inputs: &str) -> String {
    format!("inputs = {{\n  {inputs}\n}}\n")
}

/// `sluice affected --format json` on any repository path; the raw run.
pub fn affected_run(repo: &Path, base: &str, head: &str) -> Run {
    sluice_change("affected", repo, base, head, &["--format", "json"])
}

/// `sluice affected --format json`, which must succeed; the parsed report.
pub fn affected(repo: &Path, base: &str, head: &str) -> Value {
    let run = affected_run(repo, base, head);
    run.expect_code(Exit::OK);
    let report = run.json();
    assert_eq!(report["schema"], "sluice.affected/v1");
    report
}

/// The `terragrunt.hcl` of stack `name` in the region folder [`R`].
pub fn tg(name: &str) -> String {
    format!("{R}/{name}/terragrunt.hcl")
}

/// Commit what the work tree holds and run `sluice affected` from `base` to that commit.
pub fn affected_since(repo: &Repo, base: &str) -> Value {
    let head = repo.commit("change");
    affected(repo.path(), base, &head)
}

/// Fails unless `report[section]` lists exactly these `(id, status)` pairs, in this order.
#[track_caller]
pub fn assert_units(report: &Value, section: &str, want: &[(&str, &str)]) {
    assert_eq!(
        crate::statuses(report, section),
        crate::expect(want),
        "{section}; warnings: {:?}",
        crate::warnings(report)
    );
}

/// Fails unless the unit's reasons, as sorted unique `(kind, path)`, are exactly `want`.
#[track_caller]
pub fn assert_kind_paths<S: AsRef<str>>(
    report: &Value,
    section: &str,
    id: &str,
    want: &[(&str, S)],
) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, p)| (k.to_string(), p.as_ref().to_string()))
        .collect();
    assert_eq!(
        crate::kind_paths(report, section, id),
        want,
        "{section} {id}"
    );
}

/// A Terragrunt `dependency` block on the sibling stack `upstream` (`config_path = "../upstream"`).
pub fn dependency_on(upstream: &str) -> String {
    format!("dependency \"{upstream}\" {{\n  config_path = \"../{upstream}\"\n}}\n")
}
