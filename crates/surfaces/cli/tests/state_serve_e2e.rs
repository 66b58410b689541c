//! The real Terraform 1.11.4 against a spawned `sluice serve` process (SQLite store in a temp
//! dir, a random loopback port): `backend "http"` at `/state/<stack id>` with the lock and
//! unlock addresses and methods and a sluice `state` token as the password; init, apply of a
//! `terraform_data` stack with a sensitive variable, `state pull`, a second apply refused while
//! the lock is held (sluice's 423 with the holder's lock info), then tokens that may not:
//! another stack's token (403 and an audit event), an API token and an unknown token (401).
//! The sensitive value appears in none of serve's logs or answers. Skipped with a notice
//! without terraform, failing under SLUICE_REQUIRE_TERRAFORM=1. Bounded: every wait has a limit.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use sluice_testkit::terraform_http::{
    CANARY, http_backend, http_backend_stack, ok, show, terraform_command,
};
use sluice_testkit::{Exit, Served, org_repo, serve_command, start_serve, token_create};
use sqlx::ConnectOptions as _;

const UNIT: &str = "dev/ap-southeast-1/network";

fn start(repo: &Path, home: &Path, logs: PathBuf) -> Served {
    let mut cmd = serve_command(repo, 0, "unused-webhook-secret");
    // The artifact key file is made under XDG_DATA_HOME on first use.
    cmd.env("XDG_DATA_HOME", home)
        .env_remove("SLUICE_ARTIFACT_KEY")
        .env_remove("SLUICE_ARTIFACT_KEY_FILE")
        .env_remove("SLUICE_DATABASE_URL")
        .env("RUST_LOG", "debug");
    start_serve(cmd, logs)
}

fn tf(terraform: &Path, dir: &Path, password: &str, args: &[&str]) -> Output {
    terraform_command(terraform, dir, password, args)
        .output()
        .unwrap()
}

async fn db(repo: &Path) -> sqlx::SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(repo.join(".sluice/sluice.db"))
        .read_only(true)
        .connect()
        .await
        .unwrap()
}

/// Waits (at most 60 s) until a Terraform client holds the unit's lock; its lock id.
async fn wait_for_lock(repo: &Path) -> String {
    let start = Instant::now();
    loop {
        let mut conn = db(repo).await;
        let row: Option<(String,)> =
            sqlx::query_as("SELECT lock_id FROM state_backend_locks WHERE unit = ?")
                .bind(UNIT)
                .fetch_optional(&mut conn)
                .await
                .unwrap();
        if let Some((id,)) = row {
            return id;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "nobody locked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_against_sluice_serve() {
    let Some(terraform) = sluice_testkit::terraform() else {
        return;
    };
    let repo = org_repo();
    repo.commit("org");
    let home = tempfile::tempdir().unwrap();
    let logs = home.path().join("serve.log");
    // Least privilege: this token writes (and reads) one stack, and nothing else.
    let writer = token_create(
        repo.path(),
        &[
            "--scope",
            "state",
            "--name",
            "ci-network",
            "--state-write",
            "dev/*/network",
        ],
    );
    let other = token_create(
        repo.path(),
        &[
            "--scope",
            "state",
            "--name",
            "ci-rds",
            "--state-write",
            "dev/*/rds",
        ],
    );
    let api = token_create(repo.path(), &["--scope", "read"]);
    let serve = start(repo.path(), home.path(), logs);
    let url = format!("{}/state/{UNIT}", serve.base);
    let backend = http_backend(
        &url,
        &format!(
            "    lock_method    = \"LOCK\"\n    unlock_method  = \"UNLOCK\"\n    password       = \"{writer}\"\n"
        ),
    );
    let work = tempfile::tempdir().unwrap();
    let a = http_backend_stack(work.path(), "a", &backend);
    let b = http_backend_stack(work.path(), "b", &backend);
    // The password in the block wins over the environment's; the environment gets a wrong one
    // to prove it.
    ok(&tf(&terraform, &a, "unused", &["init", "-no-color"]));
    ok(&tf(&terraform, &b, "unused", &["init", "-no-color"]));
    let applied = ok(&tf(
        &terraform,
        &a,
        "unused",
        &["apply", "-auto-approve", "-no-color"],
    ));
    assert!(!applied.contains(CANARY), "{applied}");
    let pulled = tf(&terraform, &b, "unused", &["state", "pull"]);
    let pulled_text = ok(&pulled);
    assert!(pulled_text.contains("\"serial\""), "{pulled_text}");
    assert!(
        pulled_text.contains(CANARY),
        "state pull returns the stored state"
    );

    // Versions recorded under the token's identity, the state stored encrypted.
    let versions = sluice_testkit::sluice(&[
        "state",
        "versions",
        UNIT,
        "--format",
        "json",
        "--database-url",
        &repo.path().join(".sluice/sluice.db").display().to_string(),
    ]);
    versions.expect_code(Exit::OK);
    assert!(
        versions.stdout.contains("token:ci-network#"),
        "{}",
        versions.stdout
    );
    let mut raw = Vec::new();
    for suffix in ["", "-wal"] {
        if let Ok(bytes) = std::fs::read(repo.path().join(format!(".sluice/sluice.db{suffix}"))) {
            raw.extend(bytes);
        }
    }
    assert!(
        !raw.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
        "the state is stored in plaintext"
    );

    // A second apply while the first holds the lock: refused with sluice's 423 lock info.
    let slow = terraform_command(
        &terraform,
        &a,
        "unused",
        &[
            "apply",
            "-auto-approve",
            "-no-color",
            "-var",
            "run=2",
            "-var",
            "pause=8",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let holder = wait_for_lock(repo.path()).await;
    let refused = tf(
        &terraform,
        &b,
        "unused",
        &["apply", "-auto-approve", "-no-color", "-var", "run=3"],
    );
    assert!(!refused.status.success());
    let out = show(&refused);
    assert!(out.contains("Error acquiring the state lock"), "{out}");
    assert!(
        out.contains(&holder),
        "the holder's lock id is shown: {out}"
    );
    assert!(out.contains("OperationTypeApply"), "{out}");
    // The 423 over the wire, as sluice sends it.
    let client = reqwest::Client::new();
    let lock = client
        .request(reqwest::Method::from_bytes(b"LOCK").unwrap(), &url)
        .basic_auth("runner", Some(&writer))
        .body(r#"{"ID":"probe-1","Operation":"OperationTypeApply","Who":"probe"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(lock.status(), 423);
    let held: serde_json::Value = lock.json().await.unwrap();
    assert_eq!(held["ID"], holder.as_str(), "{held}");
    assert!(!held.to_string().contains(CANARY));
    let first = slow.wait_with_output().unwrap();
    ok(&first);

    // Another stack's token: 403 on this one, recorded as a refusal naming the token.
    let denied = client
        .get(&url)
        .basic_auth("runner", Some(&other))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let denied_text = denied.text().await.unwrap();
    assert!(denied_text.contains(UNIT), "{denied_text}");
    let mut conn = db(repo.path()).await;
    let refusals: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, identity FROM state_events WHERE unit = ? AND outcome = 'refused'",
    )
    .bind(UNIT)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(
        refusals
            .iter()
            .any(|(action, who)| action == "read" && who.starts_with("token:ci-rds#")),
        "{refusals:?}"
    );
    // An API token and an unknown token are not state credentials: 401.
    for password in [
        api.as_str(),
        "sluice_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let r = client
            .get(&url)
            .basic_auth("runner", Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{password}");
    }
    // With Terraform too: a token for another stack cannot even read this one.
    let other_dir = http_backend_stack(
        work.path(),
        "c",
        &http_backend(&url, &format!("    password       = \"{other}\"\n")),
    );
    let init = tf(&terraform, &other_dir, "unused", &["init", "-no-color"]);
    let refused = if init.status.success() {
        tf(
            &terraform,
            &other_dir,
            "unused",
            &["plan", "-no-color", "-lock=false"],
        )
    } else {
        init
    };
    assert!(!refused.status.success(), "{}", show(&refused));
    // Terraform's http client words a 403 as "invalid auth".
    assert!(
        show(&refused).contains("invalid auth"),
        "{}",
        show(&refused)
    );

    // The state still holds the first client's last write: nothing the refusals sent changed it.
    let after = ok(&tf(&terraform, &b, "unused", &["output", "-raw", "run"]));
    assert!(after.contains("stdout:\n2"), "{after}");

    // Nothing serve logged holds the sensitive value or a token.
    let log = std::fs::read_to_string(&serve.logs).unwrap();
    assert!(
        !log.contains(CANARY),
        "the sensitive value is in serve's logs"
    );
    for t in [&writer, &other, &api] {
        assert!(!log.contains(t.as_str()), "a token is in serve's logs");
    }
    let events: Vec<(String,)> = sqlx::query_as("SELECT detail FROM state_events")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(events.iter().all(|(d,)| !d.contains(CANARY)));

    // Every state event (the writes with their serials, the refusals too) is a signed leaf of
    // the evidence log, and `sluice evidence audit` finds the log whole.
    let unsigned: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM state_events WHERE leaf_index IS NULL OR envelope IS NULL",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(unsigned, 0, "a state event is not in the evidence log");
    let writes: Vec<(String,)> =
        sqlx::query_as("SELECT detail FROM state_events WHERE action = 'write' AND outcome = 'ok'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert!(
        writes.iter().any(|(d,)| d.contains("\"serial\":")),
        "{writes:?}"
    );
    drop(serve);
    let audit = sluice_testkit::Sluice::new()
        .env("XDG_DATA_HOME", home.path())
        .run(&[
            "evidence",
            "audit",
            "--repo",
            sluice_testkit::s(repo.path()),
        ]);
    audit.expect_code(Exit::OK);
}

/// A key file sluice cannot use (here: inside the repository's work tree, where `git add`
/// could commit it) is named when `sluice serve` starts, not first met by a Terraform client,
/// which retries a 500 and then reports it without the reason; the failed write is a 500 that
/// the server logs with its reason.
#[tokio::test]
async fn serve_names_unusable_state_keys_when_it_starts() {
    use base64::Engine as _;
    let repo = org_repo();
    repo.commit("org");
    let home = tempfile::tempdir().unwrap();
    let key_file = repo.path().join("artifact-keys");
    std::fs::write(
        &key_file,
        format!("{}\n", sluice_iac::keys::generate_key().unwrap()),
    )
    .unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let token = token_create(
        repo.path(),
        &[
            "--scope",
            "state",
            "--name",
            "ci",
            "--state-write",
            "dev/*/network",
        ],
    );
    let mut cmd = serve_command(repo.path(), 0, "unused-webhook-secret");
    cmd.env("XDG_DATA_HOME", home.path())
        .env_remove("SLUICE_ARTIFACT_KEY")
        .env("SLUICE_ARTIFACT_KEY_FILE", &key_file)
        .env_remove("SLUICE_DATABASE_URL");
    let serve = start_serve(cmd, home.path().join("serve.log"));
    // Printed before the address line the start waits for.
    let started = serve.log_text();
    sluice_testkit::assert_has(
        &started,
        &["warning:", "artifact-keys", "inside the git work tree"],
    );

    let url = format!("{}/state/{UNIT}", serve.base);
    let http = reqwest::Client::new();
    let info = r#"{"ID":"lock-1","Operation":"OperationTypeApply","Who":"test"}"#;
    let lock = http
        .request(reqwest::Method::from_bytes(b"LOCK").unwrap(), &url)
        .basic_auth("ci", Some(&token))
        .body(info)
        .send()
        .await
        .unwrap();
    assert_eq!(lock.status(), 200, "{:?}", lock.text().await);
    let body = br#"{"version":4,"serial":1,"lineage":"l","resources":[]}"#;
    let md5 = base64::engine::general_purpose::STANDARD.encode(sluice_state::md5_of(body));
    let write = http
        .post(format!("{url}?ID=lock-1"))
        .basic_auth("ci", Some(&token))
        .header("content-md5", md5)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 500);
    let reason = write.text().await.unwrap();
    assert!(reason.contains("inside the git work tree"), "{reason}");
    let logged = serve.log_text();
    let failure = logged
        .lines()
        .find(|l| l.contains("state request failed"))
        .unwrap_or_else(|| panic!("the failed write is not logged:\n{logged}"));
    sluice_testkit::assert_has(failure, &["ERROR", UNIT, "inside the git work tree"]);
}

#[test]
fn state_tokens_name_their_stacks() {
    let repo = org_repo();
    let create = |args: &[&str]| {
        let mut all = vec!["token", "create", "--repo", sluice_testkit::s(repo.path())];
        all.extend_from_slice(args);
        sluice_testkit::sluice(&all)
    };
    create(&["--scope", "state"]).expect_error(Exit::USAGE, &["--state-write"]);
    create(&["--scope", "state", "--state-write", "**"])
        .expect_error(Exit::USAGE, &["--state-write `**`", "not only wildcards"]);
    create(&["--scope", "state", "--state-read", "dev/[x"])
        .expect_error(Exit::USAGE, &["--state-read"]);
    create(&["--scope", "read", "--state-read", "dev/**"])
        .expect_error(Exit::USAGE, &["--scope state"]);
    let made = create(&["--scope", "state", "--state-read", "dev/**"]);
    made.expect_code(Exit::OK)
        .stdout_has(&["created state token"]);
}
