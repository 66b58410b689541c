//! An auditor who saved a checkpoint long ago (not the newest one before a bundle's) can still
//! check that the log only grew since: the bundle is written with the consistency proof from
//! that checkpoint's size (`sluice evidence bundle --from-checkpoint FILE`).

use std::collections::BTreeMap;

use serde_json::json;
use sluice_evidence::statement::{Outcome, Subject};
use sluice_model::change::{ChangeId, UnitKind};
use sluice_model::stage::Stage;
use sluice_recorder::evidence::{
    ChangeSubject, Identity, Recorder, RecorderOptions, StageEntry, StageEvent,
    checkpoint_file_size, verify_file,
};

fn subject(unit: &str) -> ChangeSubject {
    ChangeSubject {
        id: ChangeId {
            repo: "infra-live".into(),
            pr: Some(3),
            commit: "9f3a12cdeadbeef9f3a12cdeadbeef9f3a12cdea".into(),
            env: "dev".into(),
            unit: format!("dev/{unit}"),
        },
        base: None,
        kind: UnitKind::Stack,
    }
}

fn ran(change: &ChangeSubject, stage: Stage) -> StageEntry {
    StageEntry::Ran(StageEvent {
        stage,
        who: Identity {
            actor: "alice".into(),
            identity: "local:alice".into(),
        },
        input_digests: BTreeMap::new(),
        subjects: vec![Subject::git_commit("infra-live", &change.id.commit)],
        outcome: Outcome::Passed,
        details: json!({}),
    })
}

#[test]
fn a_bundle_proves_consistency_from_any_earlier_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::open(&RecorderOptions::new(dir.path())).unwrap();
    let network = subject("network");
    recorder
        .record(&network, &[ran(&network, Stage::Propose)])
        .unwrap();
    // The auditor keeps this checkpoint; several more are made after it.
    let old = recorder.checkpoint().unwrap();
    let old_file = dir.path().join("old.checkpoint");
    std::fs::write(&old_file, &old.note).unwrap();
    assert_eq!(checkpoint_file_size(&old_file).unwrap(), old.size);
    for unit in ["dns", "cluster", "data"] {
        let other = subject(unit);
        recorder
            .record(
                &other,
                &[ran(&other, Stage::Propose), ran(&other, Stage::Validate)],
            )
            .unwrap();
    }
    recorder
        .record(&network, &[ran(&network, Stage::Validate)])
        .unwrap();
    let keys = [recorder.public_key()];
    let change_id = network.id.to_string();

    // The default bundle proves consistency from the newest earlier checkpoint only.
    let default = dir.path().join("default.json");
    recorder.write_bundle(&change_id, &default).unwrap();
    assert!(verify_file(&default, &keys, Some(&old_file)).is_err());

    // From the auditor's checkpoint: verifies against it.
    let from_old = dir.path().join("from-old.json");
    let out = recorder
        .write_bundle_from(&change_id, Some(old.size), &from_old)
        .unwrap();
    assert!(out.checkpoint.size > old.size);
    verify_file(&from_old, &keys, Some(&old_file)).unwrap_or_else(|e| panic!("{e}"));

    // A size the log never reached is refused.
    let err = recorder
        .write_bundle_from(&change_id, Some(out.checkpoint.size + 5), &from_old)
        .unwrap_err();
    assert!(err.to_string().contains("no consistency proof"), "{err}");
}
