//! The real Terraform client (`terraform` on PATH, v1.11.4) against the backend on a loopback
//! port, with `backend "http"` and the runner's OIDC token as the password: init, plan, apply,
//! the state stored encrypted, a second client refused with sluice's lock info and then waiting
//! with `-lock-timeout`, a killed client's lock lapsing with its lease, a wrong password, `state push` of
//! an older serial; every state event a signed statement in the evidence log. Skipped with a notice without terraform, failing under
//! SLUICE_REQUIRE_TERRAFORM=1.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use sluice_evidence::dsse::Envelope;
use sluice_evidence::statement::{PredicateKind, StateEventPredicate, open_statement};
use sluice_state::BackendConfig;
use sluice_store::{LogStore, StateStore};
use sluice_testkit::terraform_http::{
    CANARY, http_backend, http_backend_stack, ok, show, terraform_command,
};
use support::{Served, contains};
use tokio::process::Command;

const UNIT: &str = "dev/ap-southeast-1/network";
const LEASE: Duration = Duration::from_secs(20);

/// A Terraform working directory configured for the backend at `url`.
fn workdir(parent: &Path, name: &str, url: &str) -> PathBuf {
    http_backend_stack(parent, name, &http_backend(url, ""))
}

async fn tf(terraform: &Path, dir: &Path, token: &str, args: &[&str]) -> Output {
    tf_command(terraform, dir, token, args)
        .output()
        .await
        .unwrap()
}

fn tf_command(terraform: &Path, dir: &Path, token: &str, args: &[&str]) -> Command {
    let mut c = Command::from(terraform_command(terraform, dir, token, args));
    c.kill_on_drop(true);
    c
}

/// Waits until a Terraform client holds the unit's lock; its lock id.
async fn wait_for_lock(s: &Served) -> String {
    let start = Instant::now();
    loop {
        if let Some(l) = s.store.backend_lock(UNIT).await.unwrap() {
            return l.lock_id;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "nobody locked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_against_the_backend() {
    let Some(terraform) = sluice_testkit::terraform() else {
        return;
    };
    // Terraform does not renew locks: the lease bounds how long a killed client blocks the
    // stack (an hour by default; short here so the test can watch it lapse).
    let s = Served::start_with(BackendConfig {
        terraform_lease: LEASE,
        ..BackendConfig::default()
    })
    .await;
    let url = s.url(UNIT);
    let token = s.issuer.apply_token();
    let work = tempfile::tempdir().unwrap();
    let a = workdir(work.path(), "a", &url);
    let b = workdir(work.path(), "b", &url);

    ok(&tf(&terraform, &a, &token, &["init", "-no-color"]).await);
    ok(&tf(&terraform, &b, &token, &["init", "-no-color"]).await);
    let plan = ok(&tf(&terraform, &a, &token, &["plan", "-no-color"]).await);
    assert!(plan.contains("1 to add"), "{plan}");
    assert!(!plan.contains(CANARY), "{plan}");
    let applied = ok(&tf(
        &terraform,
        &a,
        &token,
        &["apply", "-auto-approve", "-no-color"],
    )
    .await);
    assert!(!applied.contains(CANARY));

    // Stored as versions, encrypted: the canary is in the state but nowhere in the database.
    let head = s
        .store
        .state_head(UNIT)
        .await
        .unwrap()
        .expect("state stored");
    assert!(head.fencing_token.is_some() && head.lock_id.is_some());
    let pulled = tf(&terraform, &b, &token, &["state", "pull"]).await;
    assert!(pulled.status.success(), "{}", show(&pulled));
    assert!(
        contains(&pulled.stdout, CANARY),
        "state pull shows the stored state"
    );
    assert!(
        !contains(&s.raw_database(), CANARY),
        "the state is stored in plaintext"
    );
    // The lock was released after the apply.
    assert_eq!(s.store.backend_lock(UNIT).await.unwrap(), None);
    // The apply's lock, reads, write and unlock are signed statements in the evidence log.
    let logged = signed_events(&s).await;
    for action in ["lock", "read", "unlock"] {
        assert!(logged.iter().any(|(a, _)| a == action), "{logged:?}");
    }
    assert!(
        logged.contains(&("write".to_string(), Some(head.serial))),
        "{logged:?}"
    );

    // Two applies on one stack: the second is refused with sluice's lock info, then waits.
    let slow = tf_command(
        &terraform,
        &a,
        &token,
        &[
            "apply",
            "-auto-approve",
            "-no-color",
            "-var",
            "run=2",
            "-var",
            "pause=6",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let holder = wait_for_lock(&s).await;
    let refused = tf(
        &terraform,
        &b,
        &token,
        &["apply", "-auto-approve", "-no-color", "-var", "run=3"],
    )
    .await;
    assert!(!refused.status.success());
    let out = show(&refused);
    assert!(out.contains("Error acquiring the state lock"), "{out}");
    assert!(
        out.contains(&holder),
        "the holder's lock id is shown: {out}"
    );
    assert!(out.contains("OperationTypeApply"), "{out}");
    let waited = tf(
        &terraform,
        &b,
        &token,
        &[
            "apply",
            "-auto-approve",
            "-no-color",
            "-lock-timeout=90s",
            "-var",
            "run=3",
        ],
    )
    .await;
    let first = slow.wait_with_output().await.unwrap();
    ok(&first);
    ok(&waited);
    let versions = s.store.state_versions(UNIT, 100).await.unwrap();
    let tokens: Vec<Option<u64>> = versions.iter().map(|v| v.fencing_token).collect();
    assert!(
        tokens.windows(2).all(|w| w[0] >= w[1]),
        "newer versions carry newer tokens: {tokens:?}"
    );
    let serials: Vec<u64> = versions.iter().map(|v| v.serial).collect();
    assert!(serials.windows(2).all(|w| w[0] > w[1]), "{serials:?}");
    let output = tf(&terraform, &a, &token, &["output", "-raw", "run"]).await;
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "3",
        "{}",
        show(&output)
    );

    // A client killed while holding the lock: the lock stays (others are refused) until its
    // lease lapses; then the next client gets it with a larger fencing token. (Terraform's
    // `force-unlock` cannot speak to any `http` backend: its client fails before sending the
    // lock id, hashicorp/terraform#28421. An UNLOCK with only the ID, as OpenTofu sends, is
    // tested in tests/http.rs.)
    let mut killed = tf_command(
        &terraform,
        &a,
        &token,
        &[
            "apply",
            "-auto-approve",
            "-no-color",
            "-var",
            "run=4",
            "-var",
            "pause=60",
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let stuck = wait_for_lock(&s).await;
    let stuck_token = s
        .store
        .backend_lock(UNIT)
        .await
        .unwrap()
        .unwrap()
        .fencing_token;
    let locked_at = Instant::now();
    // SIGKILL by pid: the client cannot unlock.
    let pid = killed.id().unwrap() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let _ = killed.wait().await;
    let refused = tf(
        &terraform,
        &b,
        &token,
        &["plan", "-no-color", "-var", "run=4"],
    )
    .await;
    assert!(!refused.status.success(), "{}", show(&refused));
    assert!(show(&refused).contains(&stuck), "{}", show(&refused));
    ok(&tf(
        &terraform,
        &b,
        &token,
        &[
            "apply",
            "-auto-approve",
            "-no-color",
            "-lock-timeout=60s",
            "-var",
            "run=5",
        ],
    )
    .await);
    assert!(locked_at.elapsed() >= LEASE - Duration::from_secs(2));
    let head = s.store.state_head(UNIT).await.unwrap().unwrap();
    assert!(head.fencing_token > Some(stuck_token), "{head:?}");

    // A wrong password: 401, Terraform says so, the state is untouched.
    let before = s.store.state_head(UNIT).await.unwrap();
    let denied = tf(&terraform, &b, "not-a-token", &["plan", "-no-color"]).await;
    assert!(!denied.status.success());
    assert!(show(&denied).contains("requires auth"), "{}", show(&denied));
    // Someone else's identity (the plan identity) cannot take the lock: 403.
    let plan_only = tf(
        &terraform,
        &b,
        &s.issuer.plan_token(),
        &["apply", "-auto-approve", "-no-color", "-var", "run=6"],
    )
    .await;
    assert!(!plan_only.status.success());
    assert!(
        show(&plan_only).contains("invalid auth") || show(&plan_only).contains("403"),
        "{}",
        show(&plan_only)
    );
    // The plan identity can plan without the lock (read-only).
    ok(&tf(
        &terraform,
        &b,
        &s.issuer.plan_token(),
        &["plan", "-no-color", "-lock=false", "-var", "run=5"],
    )
    .await);

    // `state push -force` of an older serial: Terraform skips its own check, sluice refuses.
    let old = s.store.state_version(UNIT, 1).await.unwrap().unwrap();
    let old_body = s
        .backend
        .read(
            &sluice_state::Principal::Admin {
                name: "test".into(),
            },
            UNIT,
            Some(old.version),
        )
        .await
        .unwrap()
        .unwrap()
        .body;
    std::fs::write(b.join("old.tfstate"), &old_body).unwrap();
    let pushed = tf(
        &terraform,
        &b,
        &token,
        &["state", "push", "-force", "old.tfstate"],
    )
    .await;
    assert!(!pushed.status.success(), "{}", show(&pushed));
    assert!(show(&pushed).contains("409"), "{}", show(&pushed));
    assert_eq!(s.store.state_head(UNIT).await.unwrap(), before);

    // Nothing the backend logged holds the sensitive value or a token.
    let events =
        serde_json::to_string(&s.store.state_events(None, 0, 10_000).await.unwrap()).unwrap();
    assert!(!events.contains(CANARY));
    assert!(!events.contains(&token));
    assert!(!contains(&s.raw_database(), CANARY));
    // After every client, refusal and lapsed lease, each event is still a signed leaf.
    signed_events(&s).await;
}

/// Holds every state event against the evidence log: its envelope opens under the evidence
/// key as a state-event statement saying what the row says, the leaf it names holds the
/// envelope's digest, and the log audits clean. Returns the successful events' actions with
/// the serial each names.
async fn signed_events(s: &Served) -> Vec<(String, Option<u64>)> {
    let events = s.store.state_events(None, 0, 10_000).await.unwrap();
    let key = s.evidence.verifying_key();
    let mut ok = Vec::new();
    for e in &events {
        let envelope: Envelope =
            serde_json::from_str(e.envelope.as_deref().expect("every event is signed")).unwrap();
        let opened = open_statement(&envelope, &[key]).unwrap();
        assert_eq!(opened.kind, PredicateKind::StateEvent);
        let p: StateEventPredicate = serde_json::from_value(opened.statement.predicate).unwrap();
        assert_eq!(
            (
                &p.unit,
                &p.action,
                &p.outcome,
                &p.identity,
                p.version,
                &p.detail
            ),
            (
                &e.unit,
                &e.action,
                &e.outcome,
                &e.identity,
                e.version,
                &e.detail
            )
        );
        let index = e.leaf_index.expect("every event names its leaf");
        let leaf = s.store.leaves(index, index + 1).await.unwrap();
        assert_eq!(leaf[0].entry, envelope.digest(), "event {}", e.id);
        if e.outcome == "ok" {
            ok.push((e.action.clone(), p.detail["serial"].as_u64()));
        }
    }
    let report = sluice_store::audit(&s.store, &Default::default())
        .await
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    ok
}
