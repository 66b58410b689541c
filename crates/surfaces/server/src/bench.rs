//! `sluice bench webhook`: webhook-to-job-enqueued latency under load. A `sluice serve` child
//! process (no workers: only the webhook path is measured) takes signed `pull_request` deliveries
//! from this process at a fixed rate; each request's time runs until its `202` (the delivery,
//! its event and its job committed). Reported: requests, achieved rate, p50/p99/max latency,
//! errors.

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
    let key = scratch.join("evidence-key");
    let mut cmd = Command::new(exe);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "0",
        "--repo",
    ])
    .arg(scratch)
    .env("SLUICE_GITHUB_WEBHOOK_SECRET", secret)
    .env("SLUICE_KEY_DIR", &key)
    .env("RUST_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting sluice serve: {e}"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .map_err(|e| format!("reading the server's address: {e}"))?;
    let result = async {
        let base = line
            .trim()
            .strip_prefix("sluice serve listening on ")
            .ok_or_else(|| format!("sluice serve did not start: {line:?}"))?
            .to_string();
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
            let (client, base) = (client.clone(), base.clone());
            let (latencies, errors, jobs) = (latencies.clone(), errors.clone(), jobs.clone());
            tasks.push(tokio::spawn(async move {
                let sent = Instant::now();
                let resp = client
                    .post(format!("{base}/webhooks/github"))
                    .header("x-github-event", "pull_request")
                    .header(
                        "x-github-delivery",
                        format!("bench-{n}-{}", std::process::id()),
                    )
                    .header("x-hub-signature-256", sig)
                    .body(body)
                    .send()
                    .await;
                let ms = sent.elapsed().as_secs_f64() * 1000.0;
                match resp {
                    Ok(r) if r.status().as_u16() == 202 => {
                        let n = r
                            .json::<serde_json::Value>()
                            .await
                            .ok()
                            .and_then(|v| v["jobs"].as_array().map(|a| a.len() as u64))
                            .unwrap_or(0);
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
    .await;
    // SAFETY: SIGTERM to the pid of the child this function started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }
}
