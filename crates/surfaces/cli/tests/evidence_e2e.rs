//! End-to-end tests of the evidence trail: `sluice pr --record` on a real git repository, then
//! `sluice evidence log|bundle|verify|audit|checkpoint|key`, tampering with the written bundle
//! (each broken link named, non-zero exit), a database from a newer sluice (refused, untouched),
//! and the same flow on PostgreSQL in a schema of its own.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// RFC 8032 test vector 1's public key: a valid Ed25519 key that signed nothing here.
const STRANGER_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// Runs sluice with a fixed actor and identity, so statements do not depend on who runs tests.
fn run(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("SLUICE_ACTOR", "ci-bot")
        .env("SLUICE_IDENTITY", "test:ci-bot")
        .env_remove("SLUICE_DATABASE_URL")
        .env_remove("SLUICE_EVIDENCE_KEY")
        .output()
        .expect("sluice runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A repository whose PR branch changes one stack and adds another; returns (repo, base, head).
fn changed_repo() -> (Repo, String, String) {
    let repo = org_repo();
    repo.write(
        "live/dev/eu-west-1/network/terragrunt.hcl",
        plain_stack("cidr = \"10.0.0.0/16\""),
    );
    let base = repo.commit("base");
    repo.checkout_new("pr/7");
    repo.write(
        "live/dev/eu-west-1/network/terragrunt.hcl",
        plain_stack("cidr = \"10.1.0.0/16\""),
    );
    repo.write(
        "live/dev/eu-west-1/dns/terragrunt.hcl",
        plain_stack("zone = \"example.org\""),
    );
    let head = repo.commit("change network, add dns");
    (repo, base, head)
}

fn record(repo: &Path, base: &str, head: &str, extra: &[&str]) -> Run {
    let repo_s = repo.to_str().unwrap();
    let mut args = vec![
        "pr", "--repo", repo_s, "--base", base, "--head", head, "--pr", "7", "--format", "json",
        "--record",
    ];
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

fn expect_broken(r: &Run, code: i32, names: &str) {
    assert_eq!(
        r.code, code,
        "exit code\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    assert!(
        r.stderr.contains(names),
        "expected the error to name {names:?}:\n{}",
        r.stderr
    );
}

#[test]
fn pr_record_bundle_verify_and_tamper() {
    let (repo, base, head) = changed_repo();
    let dir = repo.path().to_str().unwrap();
    let first = record(repo.path(), &base, &head, &[]);
    first.expect_code(0);
    assert!(
        first.stderr.contains("4 new statement(s)"),
        "{}",
        first.stderr
    );
    let ids = change_ids(&first.json());
    assert_eq!(ids.len(), 2, "{ids:?}");
    // The same report again signs nothing new.
    let again = record(repo.path(), &base, &head, &[]);
    again.expect_code(0);
    assert!(
        again.stderr.contains("0 new statement(s), 4 unchanged"),
        "{}",
        again.stderr
    );

    // The log lists both changes' statements and manifests; per change, the stages that did
    // not run are stored as not run.
    let log = run(&["evidence", "log", "--repo", dir, "--format", "json"]);
    log.expect_code(0);
    let log = log.json();
    assert_eq!(log["log_size"], 6);
    assert_eq!(log["entries"].as_array().unwrap().len(), 6);
    let id = &ids[0];
    let one = run(&[
        "evidence", "log", "--repo", dir, "--change", id, "--format", "json",
    ]);
    one.expect_code(0);
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
    expect_broken(&unknown, 2, "no change");

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
    .expect_code(0);
    let key = run(&["evidence", "key", "--repo", dir]);
    key.expect_code(0);
    let pem = out_dir.path().join("evidence.pub");
    std::fs::write(&pem, &key.stdout).unwrap();
    let pem_s = pem.to_str().unwrap();
    let ok = verify(&bundle, pem_s);
    ok.expect_code(0);
    assert!(
        ok.stdout.contains(&format!("bundle verified: {id}")),
        "{}",
        ok.stdout
    );
    assert!(
        ok.stdout.contains("by ci-bot (test:ci-bot)"),
        "{}",
        ok.stdout
    );
    assert!(ok.stdout.contains("not run: plan"), "{}", ok.stdout);
    let json = run(&[
        "evidence",
        "verify",
        bundle.to_str().unwrap(),
        "--trusted-key",
        pem_s,
        "--format",
        "json",
    ]);
    json.expect_code(0);
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
    local.expect_code(0);
    assert!(local.stderr.contains("trusting the local evidence key"));

    // A previously seen checkpoint: the current one is consistent with itself.
    let cp = run(&["evidence", "checkpoint", "--repo", dir]);
    cp.expect_code(0);
    assert!(cp.stdout.contains("\n6\n"), "{}", cp.stdout);
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
    .expect_code(0);

    let bad = out_dir.path().join("bad.json");

    // A flipped character in a stage envelope's payload.
    tampered(&bundle, &bad, |v| {
        let p = v["stages"][0]["envelope"]["payload"]
            .as_str()
            .unwrap()
            .to_string();
        v["stages"][0]["envelope"]["payload"] = Value::String(flip_char(&p, 40));
    });
    expect_broken(&verify(&bad, pem_s), 1, "stage propose: envelope digest");

    // A flipped character in the checkpoint's root line.
    tampered(&bundle, &bad, |v| {
        let note = v["log"]["checkpoint"].as_str().unwrap().to_string();
        let root_at = note.split('\n').take(2).map(|l| l.len() + 1).sum::<usize>();
        v["log"]["checkpoint"] = Value::String(flip_char(&note, root_at + 3));
    });
    expect_broken(&verify(&bad, pem_s), 1, "checkpoint:");

    // A flipped character in the inclusion proof.
    tampered(&bundle, &bad, |v| {
        let h = v["log"]["inclusionProof"][0].as_str().unwrap().to_string();
        v["log"]["inclusionProof"][0] = Value::String(flip_char(&h, 5));
    });
    expect_broken(&verify(&bad, pem_s), 1, "inclusion:");

    // A flipped character in the manifest: it is no longer the logged leaf.
    tampered(&bundle, &bad, |v| {
        let p = v["manifest"]["payload"].as_str().unwrap().to_string();
        v["manifest"]["payload"] = Value::String(flip_char(&p, 60));
    });
    expect_broken(&verify(&bad, pem_s), 1, "inclusion:");

    // A stage removed from the bundle.
    tampered(&bundle, &bad, |v| {
        v["stages"].as_array_mut().unwrap().pop();
    });
    expect_broken(&verify(&bad, pem_s), 1, "stage validate:");

    // A truncated file is unreadable input.
    let bytes = std::fs::read(&bundle).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    expect_broken(&verify(&bad, pem_s), 2, "truncated file");

    // A key that signed nothing here.
    expect_broken(
        &verify(&bundle, STRANGER_KEY),
        1,
        "checkpoint: signature by unknown key",
    );
    // A malformed key, and a missing bundle, are bad input.
    expect_broken(&verify(&bundle, "not-a-key"), 2, "--trusted-key");
    expect_broken(
        &verify(&out_dir.path().join("missing.json"), pem_s),
        2,
        "cannot read the bundle",
    );

    // The audit recomputes the log and finds it whole.
    let audit = run(&["evidence", "audit", "--repo", dir]);
    audit.expect_code(0);
    assert!(audit.stdout.contains("clean"), "{}", audit.stdout);
}

#[test]
fn audit_detects_a_tampered_leaf_and_newer_schema_is_refused_untouched() {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        eprintln!("notice: sqlite3 is not on PATH; skipping the database tampering test");
        return;
    }
    let (repo, base, head) = changed_repo();
    let dir = repo.path().to_str().unwrap();
    record(repo.path(), &base, &head, &[]).expect_code(0);
    let db = repo.path().join(".sluice/sluice.db");
    let sql = |q: &str| {
        let out = Command::new("sqlite3").arg(&db).arg(q).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    // A changed leaf entry.
    sql("UPDATE log_leaves SET entry = zeroblob(32) WHERE idx = 1");
    let audit = run(&["evidence", "audit", "--repo", dir]);
    expect_broken(&audit, 1, "");
    assert!(audit.stdout.contains("leaf 1"), "{}", audit.stdout);

    // A database from a newer sluice: refused with a clear error, and not modified.
    sql(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, \
         execution_time) VALUES (999, 'from the future', CURRENT_TIMESTAMP, 1, x'00', 0)",
    );
    let before = std::fs::read(&db).unwrap();
    let newer = run(&["evidence", "log", "--repo", dir]);
    expect_broken(&newer, 2, "schema version 999");
    let again = record(repo.path(), &base, &head, &[]);
    expect_broken(&again, 2, "nothing was changed");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the database was rewritten"
    );
}

#[test]
fn read_only_commands_do_not_create_a_store() {
    let repo = org_repo();
    let dir = repo.path().to_str().unwrap();
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
        expect_broken(&run(&args), 2, "no evidence store");
    }
    assert!(!repo.path().join(".sluice").exists());
}

/// The PostgreSQL server; CI's is the one on 127.0.0.1:5432 with trust auth.
fn postgres_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn psql(url: &str, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Drops the test's schema however the test ends.
struct Schema {
    url: String,
    name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = psql(
            &self.url,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
    }
}

#[test]
fn postgres_store_records_bundles_and_audits() {
    let url = postgres_url();
    let name = format!(
        "sluice_cli_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    if let Err(e) = psql(&url, &format!("CREATE SCHEMA {name}")) {
        if std::env::var("SLUICE_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!("PostgreSQL at {url} is required (SLUICE_REQUIRE_POSTGRES=1) but unusable: {e}");
        }
        eprintln!("notice: PostgreSQL at {url} is unusable ({e}); skipping the PostgreSQL test");
        return;
    }
    let schema = Schema { url, name };
    // A schema of its own, so parallel runs never see each other's log.
    let sep = if schema.url.contains('?') { '&' } else { '?' };
    let db = format!(
        "{}{sep}options=-c%20search_path%3D{}",
        schema.url, schema.name
    );

    let (repo, base, head) = changed_repo();
    let dir = repo.path().to_str().unwrap();
    let first = record(repo.path(), &base, &head, &["--database-url", &db]);
    first.expect_code(0);
    assert!(first.stderr.contains("postgres://"), "{}", first.stderr);
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
    log.expect_code(0);
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
    .expect_code(0);
    let key = run(&["evidence", "key", "--repo", dir, "--format", "json"]);
    key.expect_code(0);
    let key_id = key.json()["keyId"].as_str().unwrap().to_string();
    let pem = out_dir.path().join("evidence.pub");
    std::fs::write(&pem, key.json()["publicKeyPem"].as_str().unwrap()).unwrap();
    let ok = verify(&bundle, pem.to_str().unwrap());
    ok.expect_code(0);
    assert!(ok.stdout.contains(&format!("bundle verified: {id}")));
    assert!(!key_id.is_empty());

    let audit = run(&["evidence", "audit", "--repo", dir, "--database-url", &db]);
    audit.expect_code(0);
    assert!(audit.stdout.contains("6 leaves"), "{}", audit.stdout);
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
    refused.expect_code(1);
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
    validated.expect_code(0);
    assert!(
        validated
            .stderr
            .contains("evidence: 2 change(s), 4 new statement(s), 0 unchanged"),
        "{}",
        validated.stderr
    );
    // The PR run records the same stage 1 and 2 results: nothing new for them.
    let pr = record(repo.path(), &base, &head, &[]);
    pr.expect_code(0);
    assert!(
        pr.stderr.contains("0 new statement(s), 4 unchanged"),
        "{}",
        pr.stderr
    );
    // Without --base there is no change to record for.
    run(&["validate", "--repo", dir, "--all", "--record"]).expect_code(2);
}
