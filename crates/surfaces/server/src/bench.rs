//! Benchmarks against a `sluice serve` child process fed signed `pull_request` deliveries.
//!
//! - `sluice bench webhook`: webhook-to-job-enqueued latency under load. The server runs no
//!   workers (only the webhook path is measured) and takes deliveries at a fixed rate; each
//!   request's time runs until its `202` (the delivery, its event and its job committed).
//!   Reported: requests, achieved rate, p50/p99/max latency, errors.
//! - `sluice bench pr-events`: PR events on the demo org processed end to end by the server's
//!   workers (every stage but the plan, which needs a runner), until the queue is empty.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use sluice_vcs::WebhookSecret;
use tokio::sync::Mutex;

#[derive(Debug, Clone, Serialize)]
pub struct WebhookFigures {
    pub backend: String,
    pub requests: u64,
    pub target_rate: u32,
    pub achieved_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    pub jobs_enqueued: u64,
}

impl WebhookFigures {
    pub fn text(&self) -> String {
        format!(
            "{}: {} deliveries at {} req/s (achieved {:.0}/s): webhook to job enqueued p50 {:.2} ms, \
             p99 {:.2} ms, max {:.2} ms; {} jobs enqueued; {} errors\n",
            self.backend,
            self.requests,
            self.target_rate,
            self.achieved_rate,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.jobs_enqueued,
            self.errors
        )
    }
}

/// A `pull_request` `opened` delivery for PR `n` (fresh number and head each time).
pub fn delivery_body(n: u64) -> Vec<u8> {
    let sha = format!("{n:040x}");
    serde_json::to_vec(&json!({
        "action": "opened",
        "number": n,
        "pull_request": {
            "number": n, "title": "bench", "user": {"login": "bench"}, "draft": false,
            "head": {"ref": format!("bench-{n}"), "sha": sha, "repo": {"full_name": "bench/org"}},
            "base": {"ref": "main", "sha": "0".repeat(40), "repo": {"full_name": "bench/org"}}
        },
        "repository": {"full_name": "bench/org", "default_branch": "main"},
        "installation": {"id": 1},
        "sender": {"login": "bench"}
    }))
    .expect("JSON")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A `sluice serve` child process of a benchmark, stopped (SIGTERM) when dropped.
struct Server {
    child: std::process::Child,
    base: String,
}

impl Server {
    /// Starts `sluice` (`exe`) `serve` with `workers` workers over `repo` (its state directory
    /// too) with `database_url` (SQLite under `repo` when `None`), and reads the address it
    /// listens on.
    fn start(
        exe: &Path,
        repo: &Path,
        database_url: Option<&str>,
        secret: &str,
        workers: u32,
    ) -> Result<Server, String> {
        let mut cmd = Command::new(exe);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--workers"])
            .arg(workers.to_string())
            .arg("--repo")
            .arg(repo)
            .env("SLUICE_GITHUB_WEBHOOK_SECRET", secret)
            .env("SLUICE_KEY_DIR", repo.join(".sluice-bench-keys"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting sluice serve: {e}"))?;
        // Owned from here: an early return stops the child.
        let mut server = Server {
            child,
            base: String::new(),
        };
        let mut line = String::new();
        BufReader::new(server.child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .map_err(|e| format!("reading the server's address: {e}"))?;
        server.base = line
            .trim()
            .strip_prefix("sluice serve listening on ")
            .ok_or_else(|| format!("sluice serve did not start: {line:?}"))?
            .to_string();
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to the pid of the child this benchmark started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Sends one signed `pull_request` delivery; the response's status and body.
async fn deliver(
    client: &reqwest::Client,
    base: &str,
    signature: String,
    delivery: &str,
    body: Vec<u8>,
) -> Result<(u16, serde_json::Value), String> {
    let resp = client
        .post(format!("{base}/webhooks/github"))
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let value = resp.json().await.unwrap_or(serde_json::Value::Null);
    Ok((status, value))
}

/// Starts `sluice` (`exe`) `serve` over a scratch directory with `database_url` (SQLite in the
/// scratch directory when `None`), sends `rate` deliveries per second for `seconds`, and stops
/// it.
pub async fn bench_webhook(
    exe: &Path,
    scratch: &Path,
    database_url: Option<&str>,
    backend: &str,
    rate: u32,
    seconds: u32,
) -> Result<WebhookFigures, String> {
    let secret = "bench-secret-not-used-elsewhere";
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let server = Server::start(exe, scratch, database_url, secret, 0)?;
    let client = reqwest::Client::new();
    let signer = WebhookSecret::new(secret).map_err(|e| e.to_string())?;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let jobs = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = u64::from(rate) * u64::from(seconds);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 1..=total {
        tick.tick().await;
        let body = delivery_body(n);
        let sig = signer.sign(&body);
        let (client, base) = (client.clone(), server.base.clone());
        let (latencies, errors, jobs) = (latencies.clone(), errors.clone(), jobs.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let id = format!("bench-{n}-{}", std::process::id());
            let resp = deliver(&client, &base, sig, &id, body).await;
            let ms = sent.elapsed().as_secs_f64() * 1000.0;
            match resp {
                Ok((202, v)) => {
                    let n = v["jobs"].as_array().map_or(0, |a| a.len() as u64);
                    jobs.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    latencies.lock().await.push(ms);
                }
                _ => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(server);
    let mut l = latencies.lock().await.clone();
    l.sort_by(f64::total_cmp);
    Ok(WebhookFigures {
        backend: backend.to_string(),
        requests: total,
        target_rate: rate,
        achieved_rate: total as f64 / elapsed.max(1e-9),
        p50_ms: percentile(&l, 50.0),
        p99_ms: percentile(&l, 99.0),
        max_ms: l.last().copied().unwrap_or(0.0),
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        jobs_enqueued: jobs.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// `sluice bench pr-events`: PR events processed end to end.
#[derive(Debug, Clone, Serialize)]
pub struct PrEventFigures {
    pub backend: String,
    pub prs: u32,
    pub workers: u32,
    /// From the first delivery sent to the last one answered.
    pub accept_seconds: f64,
    /// From the first delivery sent to the last pipeline job finished.
    pub seconds: f64,
    pub per_second: f64,
    /// Pipeline job attempts by outcome, from the server's metrics.
    pub succeeded: u64,
    pub failed: u64,
    pub http_errors: u64,
}

impl PrEventFigures {
    pub fn text(&self) -> String {
        format!(
            "{}: {} PR events, {} workers: all accepted in {:.2} s; processed end to end in {:.2} s \
             ({:.1} PRs/s); pipeline jobs succeeded {}, failed attempts {}; {} HTTP errors\n",
            self.backend,
            self.prs,
            self.workers,
            self.accept_seconds,
            self.seconds,
            self.per_second,
            self.succeeded,
            self.failed,
            self.http_errors
        )
    }
}

/// A `pull_request` `opened` delivery for PR `n` of the repository between `base` and `head`.
pub fn pr_opened_body(n: u64, base: &str, head: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "opened",
        "number": n,
        "pull_request": {
            "number": n, "title": format!("change {n}"), "user": {"login": "bench"}, "draft": false,
            "head": {"ref": format!("pr/{n}"), "sha": head, "repo": {"full_name": "acme/infra-live"}},
            "base": {"ref": "main", "sha": base, "repo": {"full_name": "acme/infra-live"}}
        },
        "repository": {"full_name": "acme/infra-live", "default_branch": "main"},
        "sender": {"login": "bench"}
    }))
    .expect("JSON")
}

/// The value of the sample `name` (with all of `labels`) in a metrics exposition, 0 if absent.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Starts `sluice serve` with `workers` workers over `repo` (a repository whose `base` and `head`
/// commits hold an org, such as the demo's), sends `prs` `pull_request` `opened` deliveries
/// (PR numbers 1..=prs, each for `head` over `base`) with at most 32 in flight, and waits until
/// the server's queue is empty. The plan stage is not run by the server (it needs a runner),
/// so this times every other stage of each PR, recorded with its evidence.
#[allow(clippy::too_many_arguments)]
pub async fn bench_pr_events(
    exe: &Path,
    repo: &Path,
    base: &str,
    head: &str,
    database_url: Option<&str>,
    backend: &str,
    prs: u32,
    workers: u32,
    timeout: Duration,
) -> Result<PrEventFigures, String> {
    let secret = "bench-secret-not-used-elsewhere";
    let server = Server::start(exe, repo, database_url, secret, workers)?;
    let client = reqwest::Client::new();
    let signer = WebhookSecret::new(secret).map_err(|e| e.to_string())?;
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(32));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(prs as usize);
    for n in 1..=u64::from(prs) {
        let permit = in_flight.clone().acquire_owned().await.expect("open");
        let body = pr_opened_body(n, base, head);
        let sig = signer.sign(&body);
        let (client, base) = (client.clone(), server.base.clone());
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("bench-pr-{n}-{}", std::process::id());
            if !matches!(deliver(&client, &base, sig, &id, body).await, Ok((202, _))) {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            drop(permit);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let accept_seconds = started.elapsed().as_secs_f64();
    let scrape = || async {
        client
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .map_err(|e| format!("reading the server's metrics: {e}"))?
            .text()
            .await
            .map_err(|e| format!("reading the server's metrics: {e}"))
    };
    loop {
        let text = scrape().await?;
        let open = sample(&text, "sluice_jobs", &["state=\"queued\""])
            + sample(&text, "sluice_jobs", &["state=\"running\""]);
        if open == 0.0 {
            break;
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "{open} jobs were still queued or running after {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    // A worker counts its job in the metrics just after the commit that finished it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = scrape().await?;
    drop(server);
    let count = |outcome: &str| {
        sample(
            &metrics,
            "sluice_job_duration_seconds_count",
            &["kind=\"pr.pipeline\"", &format!("outcome=\"{outcome}\"")],
        ) as u64
    };
    Ok(PrEventFigures {
        backend: backend.to_string(),
        prs,
        workers,
        accept_seconds,
        seconds,
        per_second: f64::from(prs) / seconds.max(1e-9),
        succeeded: count("succeeded"),
        failed: count("failed"),
        http_errors: errors.load(std::sync::atomic::Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_by_name_and_labels() {
        let text = "# TYPE sluice_jobs gauge\n\
            sluice_jobs{state=\"queued\"} 3\n\
            sluice_jobs{state=\"running\"} 2\n\
            sluice_jobs_other{state=\"queued\"} 9\n\
            sluice_job_duration_seconds_count{kind=\"pr.pipeline\",outcome=\"succeeded\"} 7\n";
        assert_eq!(sample(text, "sluice_jobs", &["state=\"queued\""]), 3.0);
        assert_eq!(sample(text, "sluice_jobs", &[]), 5.0);
        assert_eq!(
            sample(
                text,
                "sluice_job_duration_seconds_count",
                &["kind=\"pr.pipeline\"", "outcome=\"succeeded\""]
            ),
            7.0
        );
        assert_eq!(sample(text, "sluice_absent", &[]), 0.0);
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }
}
