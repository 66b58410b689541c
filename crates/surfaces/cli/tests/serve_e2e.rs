//! `sluice serve` as processes: two replicas on one PostgreSQL schema, one SIGKILLed by pid
//! while it runs jobs; the other finishes them once the leases expire, no job is lost and none
//! completes twice, and the evidence audit passes. Also `sluice token create` and a graceful
//! SIGTERM. Bounded in jobs (12) and time (about 30 s at most). And a private PostgreSQL
//! (`initdb` and `postgres` on a spare loopback port, never the shared server) restarted under
//! a running `sluice serve`: it reconnects and carries on.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_testkit::postgres::PsqlSchema;
use sluice_testkit::{
    Exit, R, Served, org_repo_with, plain_stack, serve_command, sluice, start_serve,
};
use sqlx::ConnectOptions as _;

const SECRET: &str = "ha-test-secret";
const PRS: u64 = 12;

fn start(repo: &Path, url: &str, key: &Path, logs: &Path) -> Served {
    let mut cmd = serve_command(repo, 2, SECRET);
    cmd.args(["--database-url", url, "--evidence-key"]).arg(key);
    start_serve(cmd, logs)
}

fn sign(body: &[u8]) -> String {
    sluice_vcs::WebhookSecret::new(SECRET).unwrap().sign(body)
}

fn payload(pr: u64, base: &str, head: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "opened",
        "number": pr,
        "pull_request": {
            "number": pr, "title": "t", "user": {"login": "dev"}, "draft": false,
            "head": {"ref": format!("pr-{pr}"), "sha": head, "repo": {"full_name": "acme/platform"}},
            "base": {"ref": "main", "sha": base, "repo": {"full_name": "acme/platform"}}
        },
        "repository": {"full_name": "acme/platform", "default_branch": "main"},
        "sender": {"login": "dev"}
    }))
    .unwrap()
}

async fn jobs(pg: &sqlx::postgres::PgConnectOptions) -> Vec<(i64, String, i32, Option<String>)> {
    let mut conn = pg.connect().await.unwrap();
    sqlx::query_as("SELECT id, state, attempts, lease_owner FROM jobs ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_jobs_are_finished_by_the_other_once() {
    let Some(schema) = PsqlSchema::create() else {
        return;
    };
    let url = schema.database_url();
    let pg = sqlx::postgres::PgConnectOptions::from_str(&sluice_testkit::postgres::url())
        .unwrap()
        .options([("search_path", schema.name())]);

    // An org whose leases expire fast, and one PR per branch so jobs run side by side.
    let repo = org_repo_with("");
    let yaml = repo.read("sluice.yaml");
    repo.write(
        "sluice.yaml",
        format!("{yaml}server:\n  lease_seconds: 2\n  poll_ms: 50\n  backoff_base_ms: 100\n"),
    );
    repo.write(&format!("{R}/net/terragrunt.hcl"), plain_stack("a = 1"));
    let base = repo.commit("base");
    let heads: Vec<String> = (1..=PRS)
        .map(|i| {
            repo.git(&["checkout", "-q", "-B", &format!("pr-{i}"), &base]);
            repo.write(
                &format!("{R}/net/terragrunt.hcl"),
                plain_stack(&format!("a = {}", i + 1)),
            );
            repo.commit(&format!("pr {i}"))
        })
        .collect();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("evidence.pem");
    std::fs::write(
        &key,
        sluice_evidence::keys::EvidenceKey::from_seed(&[9; 32])
            .to_pkcs8_pem()
            .as_bytes(),
    )
    .unwrap();
    let logs = tempfile::tempdir().unwrap();

    let a = start(repo.path(), &url, &key, &logs.path().join("a.log"));
    let mut b = start(repo.path(), &url, &key, &logs.path().join("b.log"));
    let client = reqwest::Client::new();
    for (i, head) in heads.iter().enumerate() {
        let body = payload(i as u64 + 1, &base, head);
        let resp = client
            .post(format!("{}/webhooks/github", a.base))
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", format!("ha-{i}"))
            .header("x-hub-signature-256", sign(&body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
    }

    // Kill A (by pid, SIGKILL) while it holds a running job. A job seen running may be
    // finishing: its completion can already be on its way to PostgreSQL. So A is first
    // frozen (SIGSTOP), in-flight commits are given time to land, and only a job still running
    // under A's lease after that counts as held; if A holds none at that instant, it runs on
    // and is frozen again.
    let a_pid = a.pid();
    let owner = format!(":{a_pid}/");
    let start_wait = Instant::now();
    let held = loop {
        assert!(
            start_wait.elapsed() < Duration::from_secs(20),
            "replica A never held a job while frozen: {:?}",
            jobs(&pg).await
        );
        let rows = jobs(&pg).await;
        let running_in_a = |j: &(i64, String, i32, Option<String>)| {
            j.1 == "running" && j.3.as_deref().is_some_and(|o| o.contains(&owner))
        };
        if !rows.iter().any(running_in_a) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        // SAFETY: kill(2) on the pid of a child this test spawned.
        assert_eq!(unsafe { libc::kill(a_pid, libc::SIGSTOP) }, 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Some(j) = jobs(&pg).await.iter().find(|j| running_in_a(j)) {
            break j.0;
        }
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(a_pid, libc::SIGCONT) }, 0);
    };
    // SAFETY: kill(2) on the pid of a child this test spawned.
    assert_eq!(unsafe { libc::kill(a_pid, libc::SIGKILL) }, 0);
    drop(a);

    // B finishes everything, A's held job after its lease expired.
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = jobs(&pg).await;
        if rows.iter().all(|j| j.1 == "succeeded") {
            break rows;
        }
        assert!(Instant::now() < deadline, "jobs not finished: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rows.len() as u64, PRS, "no job lost");
    let taken_over = rows.iter().find(|j| j.0 == held).unwrap();
    assert!(
        taken_over.2 >= 2 || !taken_over.3.as_deref().unwrap().contains(&owner),
        "the killed replica's job was finished by the other: {taken_over:?}"
    );
    // Completed once: one job.succeeded event per job.
    let mut conn = pg.connect().await.unwrap();
    let per_job: Vec<(String, i64)> = sqlx::query_as(
        "SELECT payload::json ->> 'job', COUNT(*) FROM events WHERE kind = 'job.succeeded' \
         GROUP BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(per_job.len() as u64, PRS, "{per_job:?}");
    assert!(per_job.iter().all(|(_, n)| *n == 1), "{per_job:?}");
    let changes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM changes")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(changes as u64, PRS, "one change per PR head");

    // The evidence log is whole.
    let audit = sluice(&[
        "evidence",
        "audit",
        "--repo",
        repo.path().to_str().unwrap(),
        "--database-url",
        &url,
        "--evidence-key",
        key.to_str().unwrap(),
    ]);
    audit.expect_code(Exit::OK);

    // A token made with the CLI reads B's API.
    let made = sluice(&[
        "token",
        "create",
        "--scope",
        "read",
        "--repo",
        repo.path().to_str().unwrap(),
        "--database-url",
        &url,
    ]);
    made.expect_code(Exit::OK);
    let token = made.stdout.lines().last().unwrap().to_string();
    assert!(token.starts_with("sluice_"), "{}", made.stdout);
    let listed: Value = client
        .get(format!("{}/api/v1/jobs", b.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len() as u64, PRS);

    // SIGTERM: B stops gracefully and exits 0.
    // SAFETY: kill(2) on the pid of a child this test spawned.
    assert_eq!(unsafe { libc::kill(b.pid(), libc::SIGTERM) }, 0);
    let until = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = b.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "replica B did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let log_b = std::fs::read_to_string(logs.path().join("b.log")).unwrap();
    // Structured logs: JSON lines carrying the correlation id of what was recorded.
    let recorded = log_b
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "change recorded")
        .expect("a JSON log line for a recorded change");
    assert!(
        recorded["fields"]["correlation_id"]
            .as_str()
            .unwrap()
            .starts_with("test#"),
        "{recorded}"
    );
    let _: PathBuf = key;
}

#[test]
fn serve_refuses_a_bad_listen_address_and_server_section() {
    let repo = org_repo_with("");
    let yaml = repo.read("sluice.yaml");
    let out = sluice(&[
        "serve",
        "--listen",
        "nowhere",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    out.expect_code(Exit::USAGE);
    assert!(out.stderr.contains("--listen"), "{}", out.stderr);
    repo.write("sluice.yaml", format!("{yaml}server:\n  workerz: 2\n"));
    let out = sluice(&["serve", "--repo", repo.path().to_str().unwrap()]);
    out.expect_code(Exit::USAGE);
    assert!(out.stderr.contains("workerz"), "{}", out.stderr);
}

/// A PostgreSQL of the test's own: `initdb` into a temporary directory and `postgres` on a
/// spare loopback port (no Unix socket), run as the `postgres` user when the test runs as root
/// (PostgreSQL refuses root). Stopped by pid on drop.
struct PrivatePg {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    log: PathBuf,
    owner: Option<(u32, u32)>,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl PrivatePg {
    /// `None` (a notice) when the PostgreSQL binaries are not installed and
    /// `SLUICE_REQUIRE_POSTGRES` is not `1`.
    fn init() -> Option<PrivatePg> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists() && b.join("postgres").exists())
            .max();
        let Some(bin) = bin else {
            return sluice_testkit::Requirement::Postgres
                .missing("initdb and postgres are not installed under /usr/lib/postgresql");
        };
        // SAFETY: geteuid and getpwnam are called with a valid C string; the entry is copied
        // out at once.
        let owner = unsafe {
            if libc::geteuid() == 0 {
                let pw = libc::getpwnam(c"postgres".as_ptr());
                assert!(!pw.is_null(), "running as root needs a `postgres` user");
                Some(((*pw).pw_uid, (*pw).pw_gid))
            } else {
                None
            }
        };
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
        }
        let log = dir.path().join("postgres.log");
        std::fs::write(&log, "").unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid)).unwrap();
        }
        let port = sluice_testkit::free_port();
        let mut pg = PrivatePg {
            bin,
            data,
            port,
            log,
            owner,
            child: None,
            _dir: dir,
        };
        let out = pg
            .command("initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&pg.data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start();
        Some(pg)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            use std::os::unix::process::CommandExt as _;
            cmd.uid(uid).gid(gid);
        }
        cmd.env_remove("PGDATA");
        cmd
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits (bounded) until it accepts connections.
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(&self.data)
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .args(["-c", "unix_socket_directories=", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .unwrap();
            if ready.success() {
                return;
            }
            assert!(
                Instant::now() < until,
                "the private PostgreSQL did not start: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fast shutdown (SIGINT to its pid), waiting for it to exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child this test spawned.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let until = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > until {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.wait();
        }
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn job_states(url: &str) -> Vec<String> {
    let mut conn = sqlx::postgres::PgConnectOptions::from_str(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    sqlx::query_scalar("SELECT state FROM jobs ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// Waits (bounded) until `n` jobs exist and all succeeded.
async fn all_succeeded(url: &str, n: usize) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let states = job_states(url).await;
        if states.len() == n && states.iter().all(|s| s == "succeeded") {
            return;
        }
        assert!(Instant::now() < until, "jobs: {states:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_is_survived() {
    let Some(mut pg) = PrivatePg::init() else {
        return;
    };
    let url = pg.url();
    let repo = org_repo_with("");
    let yaml = repo.read("sluice.yaml");
    repo.write(
        "sluice.yaml",
        format!("{yaml}server:\n  poll_ms: 50\n  backoff_base_ms: 100\n"),
    );
    repo.write(&format!("{R}/net/terragrunt.hcl"), plain_stack("a = 1"));
    let base = repo.commit("base");
    let heads: Vec<String> = (1..=2)
        .map(|i| {
            repo.git(&["checkout", "-q", "-B", &format!("pr-{i}"), &base]);
            repo.write(
                &format!("{R}/net/terragrunt.hcl"),
                plain_stack(&format!("a = {}", i + 1)),
            );
            repo.commit(&format!("pr {i}"))
        })
        .collect();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("evidence.pem");
    std::fs::write(
        &key,
        sluice_evidence::keys::EvidenceKey::from_seed(&[5; 32])
            .to_pkcs8_pem()
            .as_bytes(),
    )
    .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let server = start(repo.path(), &url, &key, &log);
    let client = reqwest::Client::new();
    let deliver = |i: usize| {
        let body = payload(i as u64 + 1, &base, &heads[i]);
        client
            .post(format!("{}/webhooks/github", server.base))
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", format!("pg-{i}"))
            .header("x-hub-signature-256", sign(&body))
            .body(body)
            .send()
    };
    let ready = || client.get(format!("{}/readyz", server.base)).send();
    assert_eq!(deliver(0).await.unwrap().status().as_u16(), 202);
    all_succeeded(&url, 1).await;

    // PostgreSQL goes away under the running server: it says at once that it is not ready
    // (its workers keep retrying their claims meanwhile).
    pg.stop();
    let asked = Instant::now();
    assert_eq!(ready().await.unwrap().status().as_u16(), 503);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );

    // Back on the same port: readiness recovers and a new delivery is processed.
    pg.start();
    let until = Instant::now() + Duration::from_secs(30);
    while ready().await.unwrap().status().as_u16() != 200 {
        assert!(
            Instant::now() < until,
            "readyz did not recover; logs in {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = deliver(1).await.unwrap().status().as_u16();
    assert_eq!(
        status,
        202,
        "logs: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    all_succeeded(&url, 2).await;
    drop(server);
}
