//! `sluice state versions | pull | rollback` on a store holding real encrypted versions.

use std::sync::Arc;

use sluice_iac::keys::{KeySource, LocalKeys, generate_key};
use sluice_state::{BackendConfig, Principal, StateBackend};
use sluice_store::SqliteStore;
use sluice_testkit::{Exit, Sluice};

const UNIT: &str = "dev/ap-southeast-1/network";

fn body(serial: u64) -> Vec<u8> {
    format!(
        "{{\n  \"version\": 4,\n  \"terraform_version\": \"1.11.4\",\n  \"serial\": {serial},\n  \"lineage\": \"lin\",\n  \"outputs\": {{ \"n\": {{ \"value\": {serial}, \"type\": \"number\" }} }},\n  \"resources\": []\n}}\n"
    )
    .into_bytes()
}

#[test]
fn versions_pull_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let key = generate_key().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        let backend = StateBackend::new(
            store.clone(),
            Arc::new(LocalKeys::new(KeySource::Inline(key.clone()))),
            sluice_evidence::keys::EvidenceKey::generate().unwrap(),
            BackendConfig::default(),
        );
        let admin = Principal::Admin {
            name: "seed".into(),
        };
        for serial in 1..=3 {
            backend
                .force_write(&admin, UNIT, &body(serial), "seeding the test")
                .await
                .unwrap();
        }
        store.close().await;
    });
    let url = db.display().to_string();
    let sluice = Sluice::new().env("SLUICE_ARTIFACT_KEY", &key);
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--database-url", &url]);
        sluice.run(&all)
    };

    let r = run(&["state", "versions", UNIT]);
    assert_eq!(r.code, Exit::OK.0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);
    assert!(
        r.stdout.contains("serial 3") && r.stdout.contains("user:seed"),
        "{}",
        r.stdout
    );

    let r = run(&["state", "pull", UNIT, "--version", "1"]);
    assert_eq!(r.code, Exit::OK.0, "{}", r.stderr);
    assert_eq!(r.stdout.as_bytes(), body(1).as_slice());
    let r = run(&["state", "pull", UNIT]);
    assert_eq!(r.stdout.as_bytes(), body(3).as_slice());

    let r = run(&[
        "state",
        "rollback",
        UNIT,
        "--version",
        "1",
        "--reason",
        "bad apply",
    ]);
    assert_eq!(r.code, Exit::OK.0, "{}", r.stderr);
    assert!(
        r.stdout.contains("version 4 restores version 1"),
        "{}",
        r.stdout
    );
    let r = run(&["state", "versions", UNIT, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let newest = &v["versions"][0];
    assert_eq!(newest["version"], 4);
    assert_eq!(newest["serial"], 4, "the rollback takes the next serial");
    assert_eq!(newest["rollback_of"], 1);
    assert_eq!(newest["forced_reason"], "bad apply");
    let r = run(&["state", "pull", UNIT]);
    let pulled: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(pulled["outputs"]["n"]["value"], 1, "version 1's content");

    // Bad input: a blank reason, an unknown version, no state; a wrong key.
    let r = run(&["state", "rollback", UNIT, "--version", "1", "--reason", " "]);
    assert_eq!(r.code, Exit::USAGE.0, "{}", r.stderr);
    let r = run(&["state", "pull", UNIT, "--version", "9"]);
    assert_eq!(r.code, Exit::USAGE.0, "{}", r.stderr);
    assert!(r.stderr.contains("no state version 9"), "{}", r.stderr);
    let r = run(&["state", "pull", "dev/x/none"]);
    assert_eq!(r.code, Exit::USAGE.0, "{}", r.stderr);
    let r = Sluice::new()
        .env("SLUICE_ARTIFACT_KEY", generate_key().unwrap())
        .run(&["state", "pull", UNIT, "--database-url", &url]);
    assert_eq!(r.code, Exit::USAGE.0, "{}", r.stderr);
    assert_eq!(r.stdout, "");
}
