//! Affected detection on a generated org, checked against an independent recomputation from
//! the generator's own record of stacks, modules and dependencies.

use std::collections::{BTreeMap, BTreeSet};

use sluice_demo::generate::{self, BASE_BRANCH, PR_BRANCH, Spec};
use sluice_flow::affected;

#[test]
fn affected_matches_the_generators_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec::new(1500, 42);
    let generated = generate::write_repo(&spec, dir.path()).unwrap();

    let changed: BTreeSet<&String> = generated
        .pr
        .iter()
        .filter(|(p, c)| generated.main.get(*p) != Some(*c))
        .map(|(p, _)| p)
        .collect();
    let module_changed = |m: usize| {
        changed
            .iter()
            .any(|p| p.starts_with(&format!("modules/mod-{m:03}/")))
    };

    // Direct: own config changed, or its module changed.
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    for s in &generated.stacks {
        if changed.contains(&format!("{}/terragrunt.hcl", s.path)) || module_changed(s.module) {
            expected.insert(s.id.clone(), "modified");
        }
    }
    // The one stack the PR adds.
    let added: Vec<&&String> = changed
        .iter()
        .filter(|p| !generated.main.contains_key(**p))
        .collect();
    assert_eq!(added.len(), 1);
    let added_dir = sluice_model::path::parent(added[0]);
    let added_id = added_dir.strip_prefix("live/").unwrap().to_string();
    expected.insert(added_id, "added");
    // Dependents, to a fixed point.
    loop {
        let mut grew = false;
        for s in &generated.stacks {
            if !expected.contains_key(&s.id) && s.deps.iter().any(|d| expected.contains_key(d)) {
                expected.insert(s.id.clone(), "dependent");
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }

    let analysis = affected::run(dir.path(), BASE_BRANCH, PR_BRANCH).unwrap();
    let got: BTreeMap<String, &str> = analysis
        .report
        .stacks
        .iter()
        .map(|u| {
            let status = match u.status {
                sluice_model::affected::UnitStatus::Added => "added",
                sluice_model::affected::UnitStatus::Modified => "modified",
                sluice_model::affected::UnitStatus::Deleted => "deleted",
                sluice_model::affected::UnitStatus::Dependent => "dependent",
            };
            (u.id.clone(), status)
        })
        .collect();
    assert_eq!(got, expected);
    assert!(
        analysis.report.warnings.is_empty(),
        "{:?}",
        &analysis.report.warnings[..3.min(analysis.report.warnings.len())]
    );
}
