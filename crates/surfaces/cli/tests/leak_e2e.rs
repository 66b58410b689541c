//! The leak test (issue 14): plans built with the real Terraform on PATH (`terraform_data`
//! only) that carry secrets the way real plans do — sensitive variables and outputs, the
//! `before`/`after` of updates and replacements, nested maps and lists, a secret inside a longer
//! string, an unmasked copy (`before.output`, `nonsensitive(...)`), an AWS access key id — and a
//! policy bundle that echoes every string of its input into messages. Every command that reads a
//! plan runs over them (`check` in every format, `policy eval`, `pr`, `pr --record` and the
//! evidence bundle, `ingest-plan`, `plan`), and no canary may appear in any output, in any file
//! sluice writes or in the evidence. Stored artifacts are opened without the key (refused) and
//! with it (the plan comes back byte for byte).
//!
//! The same test walks every plan under `../shared/corpus/tf-plans` with its own masks: every
//! value the plan marks sensitive is looked for in what sluice prints about that plan. The
//! masks are read here by test code of its own, not by sluice's collector.
//!
//! Without terraform on PATH the real-engine part is skipped with a notice, unless
//! `SLUICE_REQUIRE_TERRAFORM=1` or `CI=true`, where it fails. The corpus part follows
//! `SLUICE_REQUIRE_CORPUS`.
//!
//! Self-contained on purpose (no shared test helpers): the secrets in this file must not depend
//! on helpers that may change for other reasons.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../../shared/corpus/tf-plans"
);

/// Secrets planted in the plans. Each is long enough to be redacted wherever it occurs.
const VAR_OLD: &str = "CANARYvarOLD9f8e7d";
const VAR_NEW: &str = "CANARYvarNEW1a2b3c";
const NESTED_OLD: &str = "CANARYnestedOLD5d6e";
const NESTED_NEW: &str = "CANARYnestedNEW7f80";
const OUT_TOKEN: &str = "CANARYtokenOUT0a9b8c";
/// An AWS access key id nobody marked: only the value-shape rule can hide it.
const AKIA: &str = "AKIACANARY7LEAKQ2Z3X";

const CANARIES: &[&str] = &[VAR_OLD, VAR_NEW, NESTED_OLD, NESTED_NEW, OUT_TOKEN, AKIA];

/// The configuration whose plan carries every kind of secret (see the module docs).
const MAIN_TF: &str = r#"
variable "db_password" {
  type      = string
  sensitive = true
}
variable "nested" {
  type      = map(list(string))
  sensitive = true
}
variable "api_token" {
  type      = string
  sensitive = true
}
variable "key_id" {
  type = string
}

# An update: Terraform masks before.input but not before.output, which repeats it.
resource "terraform_data" "db" {
  input = var.db_password
}

# Nested maps and lists, a secret inside a longer string.
resource "terraform_data" "conn" {
  input = {
    url  = "postgres://app@db.internal:5432/pay?opt=${var.db_password}-tail"
    name = "payments"
    tags = var.nested
  }
}

# A replacement forced by a sensitive trigger.
resource "terraform_data" "replaced" {
  input            = "static"
  triggers_replace = [var.db_password]
}

# The secret unmasked inside a longer string: nothing marks it.
resource "terraform_data" "copy" {
  input = nonsensitive("prefix-${var.db_password}-suffix")
}

# An AWS access key id in an attribute nobody marked, whole and inside a string.
resource "terraform_data" "keys" {
  input = {
    key_id = var.key_id
    note   = "aws configure set aws_access_key_id ${var.key_id} --profile ci"
  }
}

output "token" {
  value     = var.api_token
  sensitive = true
}

output "db_copy" {
  value = nonsensitive("x${var.db_password}")
}
"#;

fn tfvars(password: &str, nested: &str) -> String {
    format!(
        "db_password = \"{password}\"\nnested = {{ k = [\"{nested}\", \"plain-visible\"] }}\napi_token = \"{OUT_TOKEN}\"\nkey_id = \"{AKIA}\"\n"
    )
}

/// `terraform` on PATH, or `None` with a notice (a failure where the engine is required).
fn terraform() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("terraform"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let required = std::env::var("SLUICE_REQUIRE_TERRAFORM").as_deref() == Ok("1")
            || std::env::var("CI").as_deref() == Ok("true");
        assert!(
            !required,
            "terraform is required (SLUICE_REQUIRE_TERRAFORM=1 or CI=true) but not on PATH"
        );
        eprintln!("notice: terraform not on PATH; the real-engine leak test is skipped");
    }
    found
}

fn tf(bin: &Path, dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .output()
        .expect("terraform runs");
    assert!(
        out.status.success(),
        "terraform {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The stack directory after applying the old values, planned with the new ones: returns
/// (plan JSON path, plan file path). The directory keeps its `terraform.tfstate`.
fn build_plan(bin: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::write(dir.join("main.tf"), MAIN_TF).unwrap();
    std::fs::write(dir.join("old.tfvars"), tfvars(VAR_OLD, NESTED_OLD)).unwrap();
    std::fs::write(dir.join("new.tfvars"), tfvars(VAR_NEW, NESTED_NEW)).unwrap();
    tf(bin, dir, &["init", "-input=false", "-no-color"]);
    tf(
        bin,
        dir,
        &[
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-var-file=old.tfvars",
        ],
    );
    let plan_file = dir.join("tfplan");
    tf(
        bin,
        dir,
        &[
            "plan",
            "-input=false",
            "-no-color",
            "-var-file=new.tfvars",
            &format!("-out={}", plan_file.display()),
        ],
    );
    let json = tf(bin, dir, &["show", "-json", "-no-color", "tfplan"]);
    let plan_json = dir.join("plan.json");
    std::fs::write(&plan_json, &json).unwrap();
    (plan_json, plan_file)
}

/// Runs sluice with its own artifact key and data directory, so no test touches the user's.
struct Sluice {
    key: String,
    data: tempfile::TempDir,
}

struct Out {
    code: i32,
    stdout: String,
    /// stdout and stderr.
    text: String,
}

impl Sluice {
    fn new() -> Sluice {
        let data = tempfile::tempdir().unwrap();
        let key = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["artifact", "new-key"])
            .output()
            .unwrap();
        assert!(key.status.success());
        Sluice {
            key: String::from_utf8(key.stdout).unwrap().trim().to_string(),
            data,
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with_key(args, &self.key)
    }

    fn run_with_key(&self, args: &[&str], key: &str) -> Out {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .env("NO_COLOR", "1")
            .env("SLUICE_ARTIFACT_KEY", key)
            .env_remove("SLUICE_ARTIFACT_KEY_FILE")
            .env("XDG_DATA_HOME", self.data.path())
            .env("SLUICE_ACTOR", "ci-bot")
            .env("SLUICE_IDENTITY", "test:ci-bot")
            .env_remove("SLUICE_DATABASE_URL")
            .env_remove("SLUICE_EVIDENCE_KEY")
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .expect("sluice runs");
        let code = out.status.code().unwrap_or(-1);
        assert_ne!(code, -1, "sluice {args:?} crashed");
        Out {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            text: format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

/// Every canary (raw or JSON-escaped) found in `text`.
fn leaks<'a>(text: &str, canaries: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    canaries
        .into_iter()
        .filter(|c| {
            let escaped = serde_json::to_string(c).unwrap();
            text.contains(c) || text.contains(escaped.trim_matches('"'))
        })
        .map(|c| c.chars().take(24).collect())
        .collect()
}

fn assert_no_leak(what: &str, text: &str) {
    let found = leaks(text, CANARIES.iter().copied());
    assert!(found.is_empty(), "{what} leaks {found:?}:\n{text}");
}

/// Every file under `dir` (bytes, lossily as text), skipping `skip`.
fn assert_no_leak_in_files(what: &str, dir: &Path, skip: &[&Path]) {
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if skip.iter().any(|s| p.starts_with(s)) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                let bytes = std::fs::read(&p).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                let found = leaks(&text, CANARIES.iter().copied());
                assert!(found.is_empty(), "{what}: {} leaks {found:?}", p.display());
            }
        }
    }
    assert!(
        files > 0,
        "{what}: no files written under {}",
        dir.display()
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A policy that puts every leaf of its input, with its path, into a deny message.
const ECHO_REGO: &str = r#"package main

import rego.v1

deny contains msg if {
  walk(input, [path, value])
  not is_object(value)
  not is_array(value)
  msg := sprintf("echo %v = %v", [path, value])
}
"#;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

const STACK: &str = "prod/eu-west-1/app";

const SLUICE_YAML: &str = r#"version: 1
org: acme
environments:
  dev:  { order: 1 }
  prod: { order: 2, protected: true }
repos:
  infra-live:     { path: live }
  policy-library: { path: policy-library }
stacks:
  root: live
  layout: "{env}/{region}/{stack}"
apps:
  root: gitops/clusters
  layout: "{cluster}/apps/{app}"
"#;

/// The org: a prod stack holding the configuration and the state applied with the old values,
/// and the echo policy. The PR changes the stack's variables to the new values.
fn org(tf_dir: &Path) -> (tempfile::TempDir, String, String) {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    git(r, &["init", "-q", "-b", "main"]);
    std::fs::write(r.join("sluice.yaml"), SLUICE_YAML).unwrap();
    std::fs::create_dir_all(r.join("policy-library")).unwrap();
    std::fs::write(r.join("policy-library/echo.rego"), ECHO_REGO).unwrap();
    let stack = r.join("live").join(STACK);
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::write(stack.join("main.tf"), MAIN_TF).unwrap();
    std::fs::copy(
        tf_dir.join("terraform.tfstate"),
        stack.join("terraform.tfstate"),
    )
    .unwrap();
    std::fs::write(stack.join("terraform.tfvars"), tfvars(VAR_OLD, NESTED_OLD)).unwrap();
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "base"]);
    let base = git(r, &["rev-parse", "HEAD"]);
    git(r, &["checkout", "-q", "-b", "change"]);
    std::fs::write(stack.join("terraform.tfvars"), tfvars(VAR_NEW, NESTED_NEW)).unwrap();
    git(r, &["commit", "-q", "-am", "rotate the password"]);
    let head = git(r, &["rev-parse", "HEAD"]);
    (repo, base, head)
}

#[test]
fn no_secret_leaves_any_command_that_reads_a_real_terraform_plan() {
    let Some(bin) = terraform() else { return };
    let work = tempfile::tempdir().unwrap();
    let tf_dir = work.path().join("tf");
    std::fs::create_dir_all(&tf_dir).unwrap();
    let (plan_json, plan_file) = build_plan(&bin, &tf_dir);
    let raw = std::fs::read_to_string(&plan_json).unwrap();
    // The plan really carries every canary, in the places the issue names; otherwise this
    // test could pass by testing nothing.
    for c in CANARIES {
        assert!(raw.contains(c), "the plan lacks {c}");
    }
    let plan: Value = serde_json::from_str(&raw).unwrap();
    let db = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "terraform_data.db")
        .unwrap();
    assert_eq!(db["change"]["before"]["output"], VAR_OLD, "unmasked copy");
    assert_eq!(db["change"]["before_sensitive"]["input"], true);

    let sluice = Sluice::new();
    let (repo, base, head) = org(&tf_dir);
    let r = repo.path();

    // check, standalone (built-in pack) and with the org (echo policy), every format.
    for format in ["md", "json", "sarif"] {
        let out = sluice.run(&[
            "check",
            "--plan-json",
            s(&plan_json),
            "--stack",
            STACK,
            "--env",
            "prod",
            "--format",
            format,
        ]);
        assert!(
            out.code == 0 || out.code == 1,
            "check {format}: {}",
            out.text
        );
        assert_no_leak(&format!("check --env ({format})"), &out.text);
        let out = sluice.run(&[
            "check",
            "--plan-json",
            s(&plan_json),
            "--stack",
            STACK,
            "--repo",
            s(r),
            "--rev",
            &head,
            "--format",
            format,
        ]);
        assert_eq!(out.code, 1, "the echo policy denies: {}", out.text);
        assert!(out.text.contains("echo"), "{}", out.text);
        assert_no_leak(&format!("check --repo ({format})"), &out.text);
    }
    // The echo policy really quotes the plan: visible values come through.
    let out = sluice.run(&[
        "check",
        "--plan-json",
        s(&plan_json),
        "--stack",
        STACK,
        "--repo",
        s(r),
        "--rev",
        &head,
        "--format",
        "json",
    ]);
    assert!(
        out.text.contains("plain-visible") || out.text.contains("payments"),
        "{}",
        out.text
    );

    // policy eval with the echo bundle, both formats.
    for format in ["text", "json"] {
        let out = sluice.run(&[
            "policy",
            "eval",
            "--plan-json",
            s(&plan_json),
            "--bundle",
            s(&r.join("policy-library")),
            "--format",
            format,
        ]);
        assert_eq!(out.code, 1, "{}", out.text);
        assert_no_leak(&format!("policy eval ({format})"), &out.text);
    }

    // pr with the plan given, every format, then recorded as evidence and bundled.
    let plans = work.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::copy(
        &plan_json,
        plans.join(format!("{}.json", STACK.replace('/', "__"))),
    )
    .unwrap();
    for format in ["md", "json", "sarif"] {
        let out = sluice.run(&[
            "pr",
            "--repo",
            s(r),
            "--base",
            &base,
            "--head",
            &head,
            "--plans",
            s(&plans),
            "--format",
            format,
        ]);
        assert_no_leak(&format!("pr ({format})"), &out.text);
    }
    let out = sluice.run(&[
        "pr",
        "--repo",
        s(r),
        "--base",
        &base,
        "--head",
        &head,
        "--plans",
        s(&plans),
        "--pr",
        "9",
        "--format",
        "json",
        "--record",
    ]);
    assert_no_leak("pr --record", &out.text);
    let report: Value = serde_json::from_str(&out.stdout).expect("pr prints JSON");
    let change_ids: Vec<String> = report["changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["change_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let log = sluice.run(&["evidence", "log", "--repo", s(r), "--format", "json"]);
    assert_no_leak("evidence log", &log.text);
    let bundles = work.path().join("bundles");
    std::fs::create_dir_all(&bundles).unwrap();
    let mut bundled = 0;
    for (i, id) in change_ids.iter().enumerate() {
        let path = bundles.join(format!("{i}.json"));
        let out = sluice.run(&["evidence", "bundle", id, "--out", s(&path), "--repo", s(r)]);
        assert_no_leak("evidence bundle", &out.text);
        if out.code == 0 {
            bundled += 1;
            assert_no_leak(
                "the evidence bundle file",
                &std::fs::read_to_string(&path).unwrap(),
            );
        }
    }
    assert!(
        bundled > 0,
        "no evidence bundle was written ({change_ids:?}): {}",
        out.text
    );

    // plan: the real engine plans the stack from git (state and variables committed).
    let store = work.path().join("plan-store");
    for format in ["text", "json"] {
        let out = sluice.run(&[
            "plan",
            "--repo",
            s(r),
            "--base",
            &base,
            "--head",
            &head,
            "--store",
            s(&store),
            "--format",
            format,
        ]);
        assert_eq!(out.code, 0, "sluice plan ({format}): {}", out.text);
        assert_no_leak(&format!("plan ({format})"), &out.text);
    }

    // ingest-plan, both formats; then the store opened with and without the key.
    let ingest_store = work.path().join("ingest-store");
    let mut digest = String::new();
    for format in ["text", "json"] {
        let out = sluice.run(&[
            "ingest-plan",
            "--stack",
            STACK,
            "--plan-json",
            s(&plan_json),
            "--plan-file",
            s(&plan_file),
            "--store",
            s(&ingest_store),
            "--format",
            format,
        ]);
        assert_eq!(out.code, 0, "{}", out.text);
        assert_no_leak(&format!("ingest-plan ({format})"), &out.text);
        if format == "json" {
            let v: Value = serde_json::from_str(&out.stdout).expect("ingest-plan prints JSON");
            digest = v["plan"]["plan_json"].as_str().unwrap().to_string();
        }
    }
    let other_key = Sluice::new().key;
    let opened = work.path().join("opened.json");
    let out = sluice.run_with_key(
        &[
            "artifact",
            "open",
            &digest,
            "--store",
            s(&ingest_store),
            "--out",
            s(&opened),
        ],
        &other_key,
    );
    assert_eq!(out.code, 2, "a wrong key is refused: {}", out.text);
    assert!(
        out.text.contains("not among the keys configured"),
        "{}",
        out.text
    );
    assert!(!opened.exists());
    assert_no_leak("artifact open (wrong key)", &out.text);
    let out = sluice.run(&[
        "artifact",
        "open",
        &digest,
        "--store",
        s(&ingest_store),
        "--out",
        s(&opened),
    ]);
    assert_eq!(out.code, 0, "{}", out.text);
    assert_eq!(std::fs::read(&opened).unwrap(), raw.as_bytes());
    std::fs::remove_file(&opened).unwrap();

    // Every file sluice wrote: both plan stores (ciphertext only), the repository's
    // `.sluice/` (evidence database, keys, blobs) and the bundles. The repository's own
    // files hold the secrets as inputs (tfvars, state) and are not sluice's output.
    assert_no_leak_in_files("plan store", &store, &[&store.join("plugin-cache")]);
    assert_no_leak_in_files("ingest store", &ingest_store, &[]);
    assert_no_leak_in_files("repository .sluice", &r.join(".sluice"), &[]);
    assert_no_leak_in_files("bundles", &bundles, &[]);
}

// ---------------------------------------------------------------------------------------------
// The corpus, each plan with its own masks

fn corpus() -> Option<PathBuf> {
    let p = PathBuf::from(CORPUS);
    if p.is_dir() {
        return Some(p);
    }
    if std::env::var("SLUICE_REQUIRE_CORPUS").as_deref() == Ok("1") {
        panic!("corpus missing at {CORPUS}");
    }
    eprintln!("notice: corpus not found at {CORPUS}; skipping");
    None
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            json_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
}

/// Leaves of `value` under a `true` in `mask` (test code of its own, deliberately simple: a
/// mask that does not line up marks the whole value).
fn masked(value: &Value, mask: &Value, out: &mut BTreeSet<String>) {
    match (mask, value) {
        (Value::Bool(true), v) => leaves(v, out),
        (Value::Object(m), Value::Object(v)) => {
            for (k, mv) in m {
                if let Some(vv) = v.get(k) {
                    masked(vv, mv, out);
                }
            }
        }
        (Value::Array(m), Value::Array(v)) => {
            for (mv, vv) in m.iter().zip(v) {
                masked(vv, mv, out);
            }
        }
        _ => {}
    }
}

fn leaves(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Number(n) => {
            out.insert(n.to_string());
        }
        Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
        Value::Object(o) => o.values().for_each(|x| leaves(x, out)),
        _ => {}
    }
}

/// Every value a plan marks sensitive: change masks, planned values' masks, sensitive outputs.
fn sensitive_values(plan: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for list in ["resource_changes", "resource_drift"] {
        for rc in plan[list].as_array().into_iter().flatten() {
            let c = &rc["change"];
            masked(&c["before"], &c["before_sensitive"], &mut out);
            masked(&c["after"], &c["after_sensitive"], &mut out);
        }
    }
    for c in plan["output_changes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, c)| c)
    {
        masked(&c["before"], &c["before_sensitive"], &mut out);
        masked(&c["after"], &c["after_sensitive"], &mut out);
    }
    for o in plan["planned_values"]["outputs"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, o)| o)
    {
        if o["sensitive"] == true {
            leaves(&o["value"], &mut out);
        }
    }
    let mut modules = vec![&plan["planned_values"]["root_module"]];
    while let Some(m) = modules.pop() {
        for r in m["resources"].as_array().into_iter().flatten() {
            masked(&r["values"], &r["sensitive_values"], &mut out);
        }
        modules.extend(m["child_modules"].as_array().into_iter().flatten());
    }
    out
}

#[test]
fn no_corpus_plan_leaks_what_its_own_masks_mark() {
    let Some(dir) = corpus() else { return };
    let sluice = Sluice::new();
    let bundle = tempfile::tempdir().unwrap();
    std::fs::write(bundle.path().join("echo.rego"), ECHO_REGO).unwrap();
    let mut files = Vec::new();
    json_files(&dir, &mut files);
    let (mut checked, mut with_secrets) = (0, 0);
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let Ok(plan) = serde_json::from_str::<Value>(text.trim_start_matches('\u{feff}')) else {
            continue;
        };
        if plan.get("format_version").is_none()
            || (plan.get("resource_changes").is_none() && plan.get("planned_values").is_none())
        {
            continue; // state, schemas, configurations
        }
        // Values shorter than the redaction minimum are hidden only where masked; they may
        // legitimately appear elsewhere (`true`, `443`).
        let all = sensitive_values(&plan);
        let secrets: Vec<String> = all
            .iter()
            .filter(|v| v.chars().count() >= 8 && *v != "(sensitive)")
            .cloned()
            .collect();
        let outs = [
            sluice.run(&[
                "policy",
                "eval",
                "--plan-json",
                s(file),
                "--bundle",
                s(bundle.path()),
                "--format",
                "json",
            ]),
            sluice.run(&[
                "check",
                "--plan-json",
                s(file),
                "--stack",
                "prod/x/y",
                "--env",
                "prod",
                "--format",
                "md",
            ]),
        ];
        for out in &outs {
            assert!(
                out.code == 0 || out.code == 1 || out.code == 2,
                "{}: {}",
                file.display(),
                out.text
            );
            let found = leaks(&out.text, secrets.iter().map(String::as_str));
            assert!(found.is_empty(), "{} leaks {found:?}", file.display());
        }
        checked += 1;
        with_secrets += usize::from(!all.is_empty());
    }
    assert!(checked >= 50, "only {checked} corpus plans checked");
    assert!(
        with_secrets >= 3,
        "only {with_secrets} corpus plans carry masked values"
    );
    eprintln!("{checked} corpus plans, {with_secrets} with masked values: no leak");
}
