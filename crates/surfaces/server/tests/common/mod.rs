//! An in-process `sluice serve` on 127.0.0.1 with a random port, over a real git repository and a
//! real store, and GitHub-shaped deliveries built from the corpus.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_server::config::ServerConfig;
use sluice_server::repo::RepoSource;
use sluice_server::{App, run};
use sluice_store::{Backoff, JobFilter, JobQueue as _, JobState};
use sluice_testkit::Repo;
use sluice_testkit::{R, org_repo, plain_stack};
use sluice_vcs::WebhookSecret;

pub const SECRET: &str = "test-webhook-secret";

/// A fresh 2048-bit RSA key (PKCS#8 PEM) for a GitHub App, made once per test binary.
pub fn app_key_pem() -> &'static str {
    use aws_lc_rs::encoding::AsDer as _;
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        sluice_testkit::pem("PRIVATE KEY", pair.as_der().unwrap().as_ref())
    })
}

pub struct Server {
    pub base: String,
    pub app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    pub client: reqwest::Client,
    _key_dir: tempfile::TempDir,
}

/// A configuration for a test server over `repo` (its store in `repo/.sluice` unless
/// `database_url`).
pub fn config(
    repo: &Path,
    workers: usize,
    database_url: Option<String>,
    key: PathBuf,
) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        repo: RepoSource::Local(repo.to_path_buf()),
        state_dir: repo.to_path_buf(),
        database_url,
        evidence_key: Some(key),
        webhook_secret: Some(WebhookSecret::new(SECRET).unwrap()),
        workers,
        lease: Duration::from_secs(10),
        poll: Duration::from_millis(20),
        claim_batch: sluice_server::config::DEFAULT_CLAIM_BATCH,
        max_attempts: 3,
        backoff: Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        max_body_bytes: 1024 * 1024,
        shutdown_grace: Duration::from_secs(5),
        replica: format!("test:{}", std::process::id()),
        github: None,
        state: Default::default(),
        queue_plans: false,
        runner: false,
    }
}

/// A PKCS#8 PEM evidence key in a directory of its own, outside any work tree.
pub fn key_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.pem");
    let key = sluice_evidence::keys::EvidenceKey::from_seed(&[42; 32]);
    std::fs::write(&path, key.to_pkcs8_pem().as_bytes()).unwrap();
    (dir, path)
}

impl Server {
    pub async fn start(repo: &Path, workers: usize) -> Server {
        let (key_dir, key) = key_file();
        Server::start_with(config(repo, workers, None, key), key_dir).await
    }

    pub async fn start_with(config: ServerConfig, key_dir: tempfile::TempDir) -> Server {
        let app = Arc::new(App::open(config).await.unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn({
            let app = app.clone();
            async move {
                run(listener, app, async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            }
        });
        Server {
            base,
            app,
            stop: Some(tx),
            handle: Some(handle),
            client: reqwest::Client::new(),
            _key_dir: key_dir,
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(20), h)
                .await
                .expect("the server stops within its grace period")
                .unwrap();
        }
    }

    /// POSTs a delivery; `signature` None sends none.
    pub async fn deliver(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        signature: Option<String>,
    ) -> (u16, Value) {
        self.try_deliver(&self.client, event, delivery, body, signature)
            .await
            .unwrap()
    }

    /// [`Self::deliver`] through `client`, keeping a failure to send (a connection the server
    /// closed) as the error it is.
    pub async fn try_deliver(
        &self,
        client: &reqwest::Client,
        event: &str,
        delivery: &str,
        body: &[u8],
        signature: Option<String>,
    ) -> reqwest::Result<(u16, Value)> {
        let mut req = client
            .post(format!("{}/webhooks/github", self.base))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("x-hub-signature-256", sig);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// A correctly signed delivery.
    pub async fn signed(&self, event: &str, delivery: &str, body: &[u8]) -> (u16, Value) {
        let sig = WebhookSecret::new(SECRET).unwrap().sign(body);
        self.deliver(event, delivery, body, Some(sig)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// Waits (bounded) until no job is queued or running.
    pub async fn drain(&self, within: Duration) {
        let start = Instant::now();
        loop {
            let d = self.app.store.queue_depth().await.unwrap();
            if d.queued == 0 && d.running == 0 {
                return;
            }
            assert!(
                start.elapsed() < within,
                "jobs still pending after {within:?}: {d:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn jobs_in(&self, state: JobState) -> Vec<sluice_store::Job> {
        self.app
            .store
            .jobs(
                &JobFilter {
                    state: Some(state),
                    serial_key: None,
                },
                1000,
            )
            .await
            .unwrap()
    }
}

/// The corpus payloads: (event name from the folder, file, body).
pub fn corpus_deliveries() -> Option<Vec<(String, PathBuf, Vec<u8>)>> {
    let root = sluice_testkit::corpus("github-webhooks/payload-examples/api.github.com")?;
    let mut out = Vec::new();
    for file in sluice_testkit::files_with_extension(&root, "json") {
        let event = file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let body = std::fs::read(&file).unwrap();
        out.push((event, file, body));
    }
    Some(out)
}

/// A corpus pull_request payload rewritten for `pr` at `base..head` of this test's repository.
pub fn pr_payload(action: &str, pr: u64, base: &str, head: &str) -> Option<Vec<u8>> {
    let root = sluice_testkit::corpus("github-webhooks/payload-examples/api.github.com")?;
    let file = root.join(format!("pull_request/{action}.payload.json"));
    let mut v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    v["number"] = pr.into();
    v["pull_request"]["number"] = pr.into();
    v["pull_request"]["head"]["sha"] = head.into();
    v["pull_request"]["base"]["sha"] = base.into();
    if action == "synchronize" {
        v["after"] = head.into();
    }
    Some(serde_json::to_vec(&v).unwrap())
}

/// A small org: `main` with one stack, and a PR branch with `n` successive commits changing it.
/// Returns the repository, the base commit and the PR heads in order.
pub fn org_with_pushes(n: usize) -> (Repo, String, Vec<String>) {
    let repo = org_repo();
    repo.write(
        &format!("{R}/net/terragrunt.hcl"),
        plain_stack("cidr = \"10.0.0.0/16\""),
    );
    let base = repo.commit("base");
    repo.checkout_new("pr");
    let heads = (0..n)
        .map(|i| {
            repo.write(
                &format!("{R}/net/terragrunt.hcl"),
                plain_stack(&format!("cidr = \"10.{}.0.0/16\"", i + 1)),
            );
            repo.commit(&format!("push {i}"))
        })
        .collect();
    (repo, base, heads)
}
