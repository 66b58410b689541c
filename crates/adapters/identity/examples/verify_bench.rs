//! Token verification with a cached JWKS (issue 12: ≤ 100 µs). Run in release:
//! `cargo run --release -p sluice-identity --example verify_bench`.
//!
//! Measures `OidcVerifier::verify` on a GitHub Actions-shaped RS256 token (the algorithm
//! GitHub's issuer uses) and an ES256 one, with the issuer's keys already cached, and prints
//! p50/p99/max per call, in wall-clock time and in the thread's CPU time (on a loaded machine
//! the wall-clock tail is the scheduler's, not the verifier's).

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use sluice_identity::verify::unix_now;
use sluice_identity::{OidcVerifier, VerifierConfig};

#[path = "../tests/support/keys.rs"]
mod keys;

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const ITERATIONS: usize = 20_000;

/// GitHub Actions-shaped claims, valid for an hour.
fn claims() -> serde_json::Value {
    let now = unix_now();
    serde_json::json!({
        "iss": ISSUER, "aud": "sluice", "sub": "repo:acme/infra-live:environment:prod",
        "repository": "acme/infra-live", "repository_owner": "acme", "ref": "refs/heads/main",
        "environment": "prod", "job_workflow_ref": "acme/infra-live/.github/workflows/apply.yml@refs/heads/main",
        "run_id": "1234567890", "run_attempt": "1", "actor": "octocat", "event_name": "push",
        "iat": now, "nbf": now, "exp": now + 3600,
    })
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn report(name: &str, clock: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "verify {name}, cached JWKS, {ITERATIONS} calls, {clock}: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs (target ≤ 100 µs)",
        percentile(&samples, 0.50).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.last().unwrap().as_secs_f64() * 1e6,
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let rsa = keys::rsa_key("rsa");
    let ec = keys::ec_key("ec");
    let keys = vec![rsa.jwk.clone(), ec.jwk.clone()];
    let verifier = OidcVerifier::new(VerifierConfig::new(ISSUER, vec!["sluice".into()])).unwrap();
    verifier.seed(&JwkSet { keys });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    for (name, tok) in [
        ("RS256 (2048-bit)", rsa.sign(&claims())),
        ("ES256 (P-256)", ec.sign(&claims())),
    ] {
        let (wall, cpu) = runtime.block_on(async {
            for _ in 0..500 {
                verifier.verify(&tok).await.unwrap();
            }
            let mut wall = Vec::with_capacity(ITERATIONS);
            let mut cpu = Vec::with_capacity(ITERATIONS);
            for _ in 0..ITERATIONS {
                let (start, start_cpu) = (Instant::now(), thread_cpu());
                let v = verifier.verify(&tok).await.unwrap();
                cpu.push(thread_cpu() - start_cpu);
                wall.push(start.elapsed());
                std::hint::black_box(v);
            }
            (wall, cpu)
        });
        report(name, "wall clock", wall);
        report(name, "thread CPU", cpu);
    }
}
