//! End-to-end tests of the evidence trail: `sluice pr --record` on a real git repository, then
//! `sluice evidence log|bundle|verify|audit|checkpoint|key`, tampering with the written bundle
//! (each broken link named, non-zero exit), a database from a newer sluice (refused, untouched),
//! and the same flow on PostgreSQL in a schema of its own.

use std::path::Path;

use serde_json::Value;
use sluice_testkit::*;

/// RFC 8032 test vector 1's public key: a valid Ed25519 key that signed nothing here.
const STRANGER_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// Runs sluice with a fixed actor and identity, so statements do not depend on who runs tests.
fn run(args: &[&str]) -> Run {
    Sluice::new()
        .env("SLUICE_ACTOR", "ci-bot")
        .env("SLUICE_IDENTITY", "test:ci-bot")
        .env_remove("SLUICE_DATABASE_URL")
        .env_remove("SLUICE_EVIDENCE_KEY")
        .run(args)
}

/// A repository whose PR branch changes one stack and adds another; returns (repo, base, head).
fn changed_repo() -> (Repo, String, String) {
    let repo = org_repo();
    repo.write(&tg("network"), plain_stack("cidr = \"10.0.0.0/16\""));
    let base = repo.commit("base");
    repo.checkout_new("pr/7");
    repo.write(&tg("network"), plain_stack("cidr = \"10.1.0.0/16\""));
    repo.write(&tg("dns"), plain_stack("zone = \"example.org\""));
    let head = repo.commit("change network, add dns");
    (repo, base, head)
}

fn record(repo: &Path, base: &str, head: &str, extra: &[&str]) -> Run {
    let mut args = vec!["pr", "--repo", s(repo), "--base", base, "--head", head];
    args.extend(["--pr", "7", "--format", "json", "--record"]);
    args.extend_from_slice(extra);
    run(&args)
}

fn change_ids(pr_report: &Value) -> Vec<String> {
    pr_report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["change_id"].as_str().unwrap().to_string())
        .collect()
}

/// Rewrites a bundle file through a JSON edit.
fn tampered(original: &Path, out: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(original).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(out, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Replaces the character at `at` with a different one of the same alphabet (hex or base64).
fn flip_char(s: &str, at: usize) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    chars[at] = match chars[at] {
        'a' => 'b',
        '0' => '1',
        'A' => 'B',
        _ => 'a',
    };
    chars.into_iter().collect()
}

fn verify(bundle: &Path, key: &str) -> Run {
    run(&[
        "evidence",
        "verify",
        bundle.to_str().unwrap(),
        "--trusted-key",
        key,
    ])
}

#[test]
fn pr_record_bundle_verify_and_tamper() {
    let (repo, base, head) = changed_repo();
    let dir = repo.arg();
    let first = record(repo.path(), &base, &head, &[]);
    first.expect_code(Exit::OK);
    assert_has(&first.stderr, &["4 new statement(s)"]);
    let ids = change_ids(&first.json());
    assert_eq!(ids.len(), 2, "{ids:?}");
    // The same report again signs nothing new.
    let again = record(repo.path(), &base, &head, &[]);
    again.expect_code(Exit::OK);
    assert_has(&again.stderr, &["0 new statement(s), 4 unchanged"]);

    // The log lists both changes' statements and manifests; per change, the stages that did
    // not run are stored as not run.
    let log = run(&["evidence", "log", "--repo", dir, "--format", "json"]);
    log.expect_code(Exit::OK);
    let log = log.json();
    assert_eq!(log["log_size"], 6);
    assert_eq!(log["entries"].as_array().unwrap().len(), 6);
    let id = &ids[0];
    let one = run(&[
        "evidence", "log", "--repo", dir, "--change", id, "--format", "json",
    ]);
    one.expect_code(Exit::OK);
    let one = one.json();
    let stages: Vec<(String, String)> = one["stage_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["stage"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(stages[0], ("propose".into(), "passed".into()));
    assert_eq!(stages[1], ("validate".into(), "passed".into()));
    assert!(
        stages[2..].iter().all(|(_, o)| o == "not_run"),
        "{stages:?}"
    );
    assert_eq!(stages.len(), 9);
    let unknown = run(&[
        "evidence",
        "log",
        "--repo",
        dir,
        "--change",
        "nope#1@abc/x/y",
    ]);
    unknown.expect_error(Exit::USAGE, &["no change"]);

    // Bundle and verify with the exported public key.
    let out_dir = tempfile::tempdir().unwrap();
    let bundle = out_dir.path().join("change.bundle.json");
    run(&[
        "evidence",
        "bundle",
        id,
        "--out",
        bundle.to_str().unwrap(),
        "--repo",
        dir,
    ])
    .expect_code(Exit::OK);
    let key = run(&["evidence", "key", "--repo", dir]);
    key.expect_code(Exit::OK);
    let pem = out_dir.path().join("evidence.pub");
    std::fs::write(&pem, &key.stdout).unwrap();
    let pem_s = pem.to_str().unwrap();
    let ok = verify(&bundle, pem_s);
    ok.expect_code(Exit::OK);
    assert_has(
        &ok.stdout,
        &[
            &format!("bundle verified: {id}"),
            "by ci-bot (test:ci-bot)",
            "not run: plan",
        ],
    );
    let json = run(&[
        "evidence",
        "verify",
        bundle.to_str().unwrap(),
        "--trusted-key",
        pem_s,
        "--format",
        "json",
    ]);
    json.expect_code(Exit::OK);
    let json = json.json();
    assert_eq!(json["verified"], true);
    assert_eq!(json["commit"], head);
    assert_eq!(json["evidence"]["plan"], "not_run");
    // Without --trusted-key the local key is trusted, and said so.
    let local = run(&[
        "evidence",
        "verify",
        bundle.to_str().unwrap(),
        "--repo",
        dir,
    ]);
    local.expect_code(Exit::OK);
    assert!(local.stderr.contains("trusting the local evidence key"));

    // A previously seen checkpoint: the current one is consistent with itself.
    let cp = run(&["evidence", "checkpoint", "--repo", dir]);
    cp.expect_code(Exit::OK);
    assert_has(&cp.stdout, &["\n6\n"]);
    let cp_file = out_dir.path().join("checkpoint.txt");
    std::fs::write(&cp_file, &cp.stdout).unwrap();
    run(&[
        "evidence",
        "verify",
        bundle.to_str().unwrap(),
        "--trusted-key",
        pem_s,
        "--checkpoint",
        cp_file.to_str().unwrap(),
    ])
    .expect_code(Exit::OK);

    let bad = out_dir.path().join("bad.json");

    // A flipped character in a stage envelope's payload.
    tampered(&bundle, &bad, |v| {
        let p = v["stages"][0]["envelope"]["payload"]
            .as_str()
            .unwrap()
            .to_string();
        v["stages"][0]["envelope"]["payload"] = Value::String(flip_char(&p, 40));
    });
    verify(&bad, pem_s).expect_error(Exit::BLOCKED, &["stage propose: envelope digest"]);

    // A flipped character in the checkpoint's root line.
    tampered(&bundle, &bad, |v| {
        let note = v["log"]["checkpoint"].as_str().unwrap().to_string();
        let root_at = note.split('\n').take(2).map(|l| l.len() + 1).sum::<usize>();
        v["log"]["checkpoint"] = Value::String(flip_char(&note, root_at + 3));
    });
    verify(&bad, pem_s).expect_error(Exit::BLOCKED, &["checkpoint:"]);

    // A flipped character in the inclusion proof.
    tampered(&bundle, &bad, |v| {
        let h = v["log"]["inclusionProof"][0].as_str().unwrap().to_string();
        v["log"]["inclusionProof"][0] = Value::String(flip_char(&h, 5));
    });
    verify(&bad, pem_s).expect_error(Exit::BLOCKED, &["inclusion:"]);

    // A flipped character in the manifest: it is no longer the logged leaf.
    tampered(&bundle, &bad, |v| {
        let p = v["manifest"]["payload"].as_str().unwrap().to_string();
        v["manifest"]["payload"] = Value::String(flip_char(&p, 60));
    });
    verify(&bad, pem_s).expect_error(Exit::BLOCKED, &["inclusion:"]);

    // A stage removed from the bundle.
    tampered(&bundle, &bad, |v| {
        v["stages"].as_array_mut().unwrap().pop();
    });
    verify(&bad, pem_s).expect_error(Exit::BLOCKED, &["stage validate:"]);

    // A truncated file is unreadable input.
    let bytes = std::fs::read(&bundle).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    verify(&bad, pem_s).expect_error(Exit::USAGE, &["truncated file"]);

    // A key that signed nothing here.
    verify(&bundle, STRANGER_KEY)
        .expect_error(Exit::BLOCKED, &["checkpoint: signature by unknown key"]);
    // A malformed key, and a missing bundle, are bad input.
    verify(&bundle, "not-a-key").expect_error(Exit::USAGE, &["--trusted-key"]);
    verify(&out_dir.path().join("missing.json"), pem_s)
        .expect_error(Exit::USAGE, &["cannot read the bundle"]);

    // The audit recomputes the log and finds it whole.
    let audit = run(&["evidence", "audit", "--repo", dir]);
    audit.expect_code(Exit::OK);
    assert_has(&audit.stdout, &["clean"]);
}

#[test]
fn audit_detects_a_tampered_leaf_and_newer_schema_is_refused_untouched() {
    let (repo, base, head) = changed_repo();
    let dir = repo.arg();
    record(repo.path(), &base, &head, &[]).expect_code(Exit::OK);
    let db = repo.path().join(".sluice/sluice.db");
    let sql = |q: &'static str| tamper(&db, q);

    // A changed leaf entry.
    sql("UPDATE log_leaves SET entry = zeroblob(32) WHERE idx = 1");
    let audit = run(&["evidence", "audit", "--repo", dir]);
    audit.expect_code(Exit::BLOCKED);
    assert_has(&audit.stdout, &["leaf 1"]);

    // A database from a newer sluice: refused with a clear error, and not modified.
    sql(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, \
         execution_time) VALUES (999, 'from the future', CURRENT_TIMESTAMP, 1, x'00', 0)",
    );
    let before = std::fs::read(&db).unwrap();
    let newer = run(&["evidence", "log", "--repo", dir]);
    newer.expect_error(Exit::USAGE, &["schema version 999"]);
    let again = record(repo.path(), &base, &head, &[]);
    again.expect_error(Exit::USAGE, &["nothing was changed"]);
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the database was rewritten"
    );
}

/// Runs `sql` on the database through the store's own connection (what an attacker with write
/// access can do), so the tampering tests need no `sqlite3` client and never skip.
fn tamper(db: &Path, sql: &'static str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = sluice_store::SqliteStore::open(db).await.unwrap();
        sqlx::query(sql).execute(store.pool()).await.unwrap();
        store.close().await;
    });
}

#[test]
fn read_only_commands_do_not_create_a_store() {
    let repo = org_repo();
    let dir = repo.arg();
    for args in [
        vec!["evidence", "log", "--repo", dir],
        vec!["evidence", "audit", "--repo", dir],
        vec![
            "evidence",
            "bundle",
            "x",
            "--out",
            "/dev/null",
            "--repo",
            dir,
        ],
    ] {
        run(&args).expect_error(Exit::USAGE, &["no evidence store"]);
    }
    assert!(!repo.path().join(".sluice").exists());
}

#[test]
fn postgres_store_records_bundles_and_audits() {
    // A schema of its own, so parallel runs never see each other's log.
    let Some(schema) = postgres::PsqlSchema::create() else {
        return;
    };
    let db = schema.database_url();

    let (repo, base, head) = changed_repo();
    let dir = repo.arg();
    let first = record(repo.path(), &base, &head, &["--database-url", &db]);
    first.expect_code(Exit::OK);
    assert_has(&first.stderr, &["postgres://"]);
    assert!(!repo.path().join(".sluice/sluice.db").exists());
    let id = change_ids(&first.json())[0].clone();

    let log = run(&[
        "evidence",
        "log",
        "--repo",
        dir,
        "--database-url",
        &db,
        "--format",
        "json",
    ]);
    log.expect_code(Exit::OK);
    assert_eq!(log.json()["log_size"], 6);

    let out_dir = tempfile::tempdir().unwrap();
    let bundle = out_dir.path().join("pg.bundle.json");
    run(&[
        "evidence",
        "bundle",
        &id,
        "--out",
        bundle.to_str().unwrap(),
        "--repo",
        dir,
        "--database-url",
        &db,
    ])
    .expect_code(Exit::OK);
    let key = run(&["evidence", "key", "--repo", dir, "--format", "json"]);
    key.expect_code(Exit::OK);
    let key_id = key.json()["keyId"].as_str().unwrap().to_string();
    let pem = out_dir.path().join("evidence.pub");
    std::fs::write(&pem, key.json()["publicKeyPem"].as_str().unwrap()).unwrap();
    let ok = verify(&bundle, pem.to_str().unwrap());
    ok.expect_code(Exit::OK);
    assert!(ok.stdout.contains(&format!("bundle verified: {id}")));
    assert!(!key_id.is_empty());

    let audit = run(&["evidence", "audit", "--repo", dir, "--database-url", &db]);
    audit.expect_code(Exit::OK);
    assert_has(&audit.stdout, &["6 leaves"]);
}

/// `validate`, `check` (and `plan`) record their own stage with `--record`, after asking the
/// stage gate: policy does not start without a recorded plan; validation records stages 1–2 as
/// `sluice pr --record` would, so the PR run finds them unchanged.
#[test]
fn stages_run_on_their_own_record_after_the_gate() {
    let (repo, base, head) = changed_repo();
    let dir = repo.path().to_str().unwrap();

    // Stage 5 for a change with no recorded plan: refused before anything runs or is written.
    let refused = run(&[
        "check",
        "--repo",
        dir,
        "--rev",
        &head,
        "--stack",
        "dev/eu-west-1/network",
        "--plan-json",
        "never-read.json",
        "--record",
        "--pr",
        "7",
    ]);
    refused.expect_code(Exit::BLOCKED);
    assert!(
        refused
            .stderr
            .contains("stage policy cannot start: its input from stage plan does not exist"),
        "{}",
        refused.stderr
    );
    assert!(refused.stdout.is_empty(), "{}", refused.stdout);

    let validated = run(&[
        "validate", "--repo", dir, "--base", &base, "--head", &head, "--record", "--pr", "7",
    ]);
    validated.expect_code(Exit::OK);
    assert!(
        validated
            .stderr
            .contains("evidence: 2 change(s), 4 new statement(s), 0 unchanged"),
        "{}",
        validated.stderr
    );
    // The PR run records the same stage 1 and 2 results: nothing new for them.
    let pr = record(repo.path(), &base, &head, &[]);
    pr.expect_code(Exit::OK);
    assert!(
        pr.stderr.contains("0 new statement(s), 4 unchanged"),
        "{}",
        pr.stderr
    );
    // Without --base there is no change to record for.
    run(&["validate", "--repo", dir, "--all", "--record"]).expect_code(Exit::USAGE);
}
