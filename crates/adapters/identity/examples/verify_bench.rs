//! Token verification with a cached JWKS (issue 12: ≤ 100 µs). Run in release:
//! `cargo run --release -p sluice-identity --example verify_bench`.
//!
//! Measures `OidcVerifier::verify` on a GitHub Actions-shaped RS256 token (the algorithm
//! GitHub's issuer uses) and an ES256 one, with the issuer's keys already cached, and prints
//! p50/p99/max per call.

use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sluice_identity::verify::unix_now;
use sluice_identity::{OidcVerifier, VerifierConfig};

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const ITERATIONS: usize = 20_000;

fn token(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let now = unix_now();
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "sluice", "sub": "repo:acme/infra-live:environment:prod",
        "repository": "acme/infra-live", "repository_owner": "acme", "ref": "refs/heads/main",
        "environment": "prod", "job_workflow_ref": "acme/infra-live/.github/workflows/apply.yml@refs/heads/main",
        "run_id": "1234567890", "run_attempt": "1", "actor": "octocat", "event_name": "push",
        "iat": now, "nbf": now, "exp": now + 3600,
    });
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let rsa = EncodingKey::from_rsa_der(rsa.as_der().unwrap().as_ref());
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec = EncodingKey::from_ec_der(ec.as_ref());
    let mut keys = Vec::new();
    for (kid, alg, key) in [("rsa", Algorithm::RS256, &rsa), ("ec", Algorithm::ES256, &ec)] {
        let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
        jwk.common.key_id = Some(kid.into());
        keys.push(jwk);
    }
    let verifier = OidcVerifier::new(VerifierConfig::new(ISSUER, vec!["sluice".into()])).unwrap();
    verifier.seed(&JwkSet { keys });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    for (name, tok) in [
        ("RS256 (2048-bit)", token(Algorithm::RS256, "rsa", &rsa)),
        ("ES256 (P-256)", token(Algorithm::ES256, "ec", &ec)),
    ] {
        let mut samples = runtime.block_on(async {
            for _ in 0..500 {
                verifier.verify(&tok).await.unwrap();
            }
            let mut samples = Vec::with_capacity(ITERATIONS);
            for _ in 0..ITERATIONS {
                let start = Instant::now();
                let v = verifier.verify(&tok).await.unwrap();
                samples.push(start.elapsed());
                std::hint::black_box(v);
            }
            samples
        });
        samples.sort();
        println!(
            "verify {name}, cached JWKS, {ITERATIONS} calls: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs (target ≤ 100 µs)",
            percentile(&samples, 0.50).as_secs_f64() * 1e6,
            percentile(&samples, 0.99).as_secs_f64() * 1e6,
            samples.last().unwrap().as_secs_f64() * 1e6,
        );
    }
}
