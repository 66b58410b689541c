//! `sluice bench state`: latencies of the backend as Terraform uses it, over real HTTP on
//! 127.0.0.1, on SQLite and PostgreSQL: `GET` and `POST` of a state of a given size (1 MB by
//! default; encryption, the store's transaction and the audit event included), `LOCK` and
//! `UNLOCK`, and runner token verification with the issuer's keys cached. Every request carries
//! a real OIDC token (ES256, signed here; the verifier is seeded with the issuer's JWKS as a
//! fetched key set would be) checked against a trust policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use md5::Digest as _;
use serde_json::json;
use sluice_evidence::keys::EvidenceKey;
use sluice_iac::keys::{KeySource, LocalKeys, generate_key};
use sluice_identity::verify::unix_now;
use sluice_model::splitmix::SplitMix64;
use sluice_model::trust::TrustPolicy;
use sluice_state::{BackendConfig, BackendStore, Environments, OidcAuthenticator, StateBackend};
use sluice_store::SqliteStore;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// State body size in bytes.
    pub state_bytes: usize,
    /// Timed requests of each kind.
    pub samples: usize,
    pub sqlite: bool,
    /// PostgreSQL server URL; the bench works in a schema of its own and drops it.
    pub postgres_url: Option<String>,
}

/// Latency summary of one kind of request, in microseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    pub what: String,
    pub samples: usize,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Latency {
    fn of(what: &str, mut d: Vec<Duration>) -> Latency {
        d.sort();
        let at = |q: f64| {
            let i = ((d.len() as f64 * q).ceil() as usize).clamp(1, d.len()) - 1;
            d[i].as_micros() as u64
        };
        Latency {
            what: what.to_string(),
            samples: d.len(),
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            max_us: d.last().map(|x| x.as_micros() as u64).unwrap_or(0),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendReport {
    pub backend: String,
    pub latencies: Vec<Latency>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub state_bytes: usize,
    /// What one version of that state takes in the store (compressed and encrypted).
    pub sealed_bytes: usize,
    pub build: &'static str,
    /// A token's first verification, its issuer's keys cached: the signature is checked.
    pub token_verification: Latency,
    /// A token verified before, sent again.
    pub token_repeat: Latency,
    pub backends: Vec<BackendReport>,
}

impl BenchReport {
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "state backend over HTTP on 127.0.0.1, {} KiB state ({} KiB stored), {} build\n",
            self.state_bytes / 1024,
            self.sealed_bytes / 1024,
            self.build
        );
        let line = |l: &Latency| {
            format!(
                "  {:<28} p50 {:>7.3} ms   p90 {:>7.3} ms   p99 {:>7.3} ms   max {:>7.3} ms   (n={})\n",
                l.what,
                l.p50_us as f64 / 1000.0,
                l.p90_us as f64 / 1000.0,
                l.p99_us as f64 / 1000.0,
                l.max_us as f64 / 1000.0,
                l.samples
            )
        };
        out.push_str(&line(&self.token_verification));
        out.push_str(&line(&self.token_repeat));
        for b in &self.backends {
            out.push_str(&format!("{}:\n", b.backend));
            for l in &b.latencies {
                out.push_str(&line(l));
            }
        }
        out
    }
}

/// A signing key and the issuer it stands for.
struct BenchIssuer {
    issuer: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl BenchIssuer {
    fn new() -> BenchIssuer {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("key generation");
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).expect("jwk");
        jwk.common.key_id = Some("bench".into());
        BenchIssuer {
            issuer: "http://127.0.0.1/sluice-bench".into(),
            encoding,
            jwk,
        }
    }

    fn token(&self) -> String {
        self.token_numbered(0)
    }

    /// A token of its own for each `n` (its `jti`), so that each is verified afresh.
    fn token_numbered(&self, n: usize) -> String {
        let now = unix_now();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("bench".into());
        jsonwebtoken::encode(
            &header,
            &json!({
                "iss": self.issuer, "aud": "sluice", "sub": "repo:acme/infra-live:environment:dev",
                "environment": "dev", "iat": now - 5, "nbf": now - 5, "exp": now + 3600,
                "jti": format!("bench-{n}"),
            }),
            &self.encoding,
        )
        .expect("signing")
    }

    fn policy(&self) -> TrustPolicy {
        TrustPolicy::from_json(&json!({
            "issuers": [{ "issuer": self.issuer, "audience": "sluice" }],
            "rules": [{
                "name": "apply-dev",
                "when": { "sub": "repo:acme/infra-live:environment:dev", "environment": "dev" },
                "grant": { "stages": ["apply"], "state": { "write": ["dev/**"] } }
            }]
        }))
        .expect("bench policy")
    }

    fn authenticator(&self) -> OidcAuthenticator {
        let auth = OidcAuthenticator::new(&self.policy()).expect("verifier");
        auth.verifier(&self.issuer)
            .expect("issuer listed")
            .seed(&JwkSet {
                keys: vec![self.jwk.clone()],
            });
        auth
    }
}

/// A private address in 10.0.0.0/8.
fn ip(mix: &mut SplitMix64) -> String {
    let n = mix.next_u64();
    format!("10.{}.{}.{}", n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff)
}

/// One resource instance of a few common AWS shapes: unique ids, addresses, ARNs and times,
/// repeated attribute names and tags, an embedded policy document, as in a real state.
fn resource(i: usize, mix: &mut SplitMix64) -> serde_json::Value {
    let account = "123456789012";
    let region = "ap-southeast-1";
    let team = ["network", "payments", "platform"][i % 3];
    let tags = json!({
        "Name": format!("svc-{i}"), "team": team,
        "env": "dev", "managed-by": "terraform", "cost-centre": format!("cc-{}", i % 17),
    });
    let created = format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        1 + mix.next_u64() % 12,
        1 + mix.next_u64() % 28,
        mix.next_u64() % 24,
        mix.next_u64() % 60,
        mix.next_u64() % 60
    );
    let (kind, attributes) = match i % 4 {
        0 => {
            let id = format!("i-{}", mix.hex(17));
            (
                "aws_instance",
                json!({
                    "id": id, "ami": format!("ami-{}", mix.hex(17)), "instance_type": "m6i.large",
                    "arn": format!("arn:aws:ec2:{region}:{account}:instance/{id}"),
                    "availability_zone": format!("{region}{}", ["a", "b", "c"][i % 3]),
                    "private_ip": ip(mix), "private_dns": format!("ip-{}.{region}.compute.internal", mix.hex(8)),
                    "subnet_id": format!("subnet-{}", mix.hex(17)),
                    "vpc_security_group_ids": [format!("sg-{}", mix.hex(17)), format!("sg-{}", mix.hex(17))],
                    "root_block_device": [{ "volume_id": format!("vol-{}", mix.hex(17)), "volume_size": 50,
                        "volume_type": "gp3", "encrypted": true, "iops": 3000, "throughput": 125,
                        "delete_on_termination": true, "kms_key_id": format!("arn:aws:kms:{region}:{account}:key/{}", mix.hex(32)) }],
                    "metadata_options": [{ "http_endpoint": "enabled", "http_tokens": "required",
                        "http_put_response_hop_limit": 1, "instance_metadata_tags": "disabled" }],
                    "monitoring": true, "ebs_optimized": true, "tenancy": "default",
                    "launch_time": created, "tags": tags, "tags_all": tags,
                }),
            )
        }
        1 => {
            let id = format!("sg-{}", mix.hex(17));
            let rules: Vec<_> = (0..4)
                .map(|r| json!({ "from_port": 443 + r, "to_port": 443 + r, "protocol": "tcp",
                    "cidr_blocks": [format!("{}/32", ip(mix))], "description": format!("rule {r} of {id}"),
                    "security_groups": [], "self": false }))
                .collect();
            (
                "aws_security_group",
                json!({
                    "id": id, "arn": format!("arn:aws:ec2:{region}:{account}:security-group/{id}"),
                    "name": format!("svc-{i}-sg"), "description": "Managed by Terraform",
                    "vpc_id": format!("vpc-{}", mix.hex(17)), "ingress": rules, "egress": [{
                        "from_port": 0, "to_port": 0, "protocol": "-1", "cidr_blocks": ["0.0.0.0/0"] }],
                    "owner_id": account, "revoke_rules_on_delete": false, "tags": tags, "tags_all": tags,
                }),
            )
        }
        2 => {
            let name = format!("svc-{i}-{}", mix.hex(6));
            let policy = json!({ "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "kms:Decrypt"],
                "Resource": [format!("arn:aws:s3:::{name}/*"),
                    format!("arn:aws:kms:{region}:{account}:key/{}", mix.hex(32))] }] });
            (
                "aws_iam_policy",
                json!({
                    "id": format!("arn:aws:iam::{account}:policy/{name}"),
                    "arn": format!("arn:aws:iam::{account}:policy/{name}"), "name": name,
                    "path": "/", "policy_id": format!("ANPA{}", mix.hex(17).to_uppercase()),
                    "policy": policy.to_string(), "description": "", "tags": tags, "tags_all": tags,
                }),
            )
        }
        _ => {
            let zone = format!("Z{}", mix.hex(13).to_uppercase());
            (
                "aws_route53_record",
                json!({
                    "id": format!("{zone}_svc-{i}.internal.example.com_A"), "zone_id": zone,
                    "name": format!("svc-{i}.internal.example.com"), "type": "A", "ttl": 300,
                    "records": [ip(mix), ip(mix)], "fqdn": format!("svc-{i}.internal.example.com"),
                    "allow_overwrite": null, "health_check_id": "", "set_identifier": "",
                }),
            )
        }
    };
    json!({
        "mode": "managed", "type": kind, "name": format!("r{i}"),
        "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
        "instances": [{ "schema_version": 1, "attributes": attributes, "sensitive_attributes": [],
            "private": mix.hex(32), "dependencies": [] }]
    })
}

/// A Terraform-shaped state of about `bytes` bytes with serial `serial`, the same for the same
/// arguments (deterministic; it compresses about as a real state does, see [`resource`]).
pub fn state_body(bytes: usize, serial: u64) -> Vec<u8> {
    let mut mix = SplitMix64::new(0x51c3);
    let mut resources = Vec::new();
    let mut size = 0;
    while size < bytes {
        let r = resource(resources.len(), &mut mix);
        size += r.to_string().len() + 1;
        resources.push(r);
    }
    serde_json::to_vec(&json!({
        "version": 4, "terraform_version": "1.11.4", "serial": serial,
        "lineage": "bench-lineage", "outputs": {}, "resources": resources,
    }))
    .expect("state serialises")
}

async fn run_backend<S: BackendStore>(
    name: &str,
    store: S,
    issuer: &BenchIssuer,
    options: &BenchOptions,
) -> Result<BackendReport, String> {
    let keys = Arc::new(LocalKeys::new(KeySource::Inline(
        generate_key().map_err(|e| e.to_string())?,
    )));
    let config = BackendConfig {
        trust: Some(Arc::new(issuer.policy())),
        environments: Environments::FirstSegment,
        ..BackendConfig::default()
    };
    let evidence = EvidenceKey::generate().map_err(|e| e.to_string())?;
    let backend = Arc::new(StateBackend::new(store, keys, evidence, config));
    let app = axum::Router::new().nest(
        "/state",
        crate::router(
            backend,
            Arc::new(issuer.authenticator()),
            Default::default(),
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{addr}/state/dev/bench/network");
    let http = reqwest::Client::new();
    let token = issuer.token();
    let send = |method: &'static str, url: String, body: Option<Vec<u8>>| {
        let http = http.clone();
        let token = token.clone();
        async move {
            let mut req = http
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                    url,
                )
                .basic_auth("runner", Some(token));
            if let Some(b) = body {
                let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&b));
                req = req.header("content-md5", md5).body(b);
            }
            let start = Instant::now();
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let _ = resp.bytes().await.map_err(|e| e.to_string())?;
            let took = start.elapsed();
            if !status.is_success() {
                return Err(format!("{method} answered {status}"));
            }
            Ok::<Duration, String>(took)
        }
    };
    let info = |id: &str| {
        serde_json::to_vec(&json!({ "ID": id, "Operation": "OperationTypeApply", "Who": "bench" }))
            .expect("lock info")
    };
    let (mut gets, mut posts, mut locks, mut unlocks) = (vec![], vec![], vec![], vec![]);
    // Warm up, then alternate as Terraform does: lock, read, write, unlock.
    for i in 0..options.samples + 3 {
        let id = format!("bench-{i}");
        let l = send("LOCK", url.clone(), Some(info(&id))).await?;
        let g = send("GET", url.clone(), None).await;
        let body = state_body(options.state_bytes, i as u64 + 1);
        let p = send("POST", format!("{url}?ID={id}"), Some(body)).await?;
        let u = send("UNLOCK", url.clone(), Some(info(&id))).await?;
        if i >= 3 {
            locks.push(l);
            posts.push(p);
            unlocks.push(u);
            gets.push(g?);
        }
    }
    server.abort();
    Ok(BackendReport {
        backend: name.to_string(),
        latencies: vec![
            Latency::of("GET (decrypt, audit)", gets),
            Latency::of("POST (encrypt, version)", posts),
            Latency::of("LOCK", locks),
            Latency::of("UNLOCK", unlocks),
        ],
    })
}

/// Runs the benchmark (see the module documentation).
pub async fn bench(options: &BenchOptions) -> Result<BenchReport, String> {
    let issuer = BenchIssuer::new();
    let auth = issuer.authenticator();
    let verifier = auth.verifier(&issuer.issuer).expect("issuer listed");
    // First use of each token (its signature checked), then the same token again (as a
    // Terraform run sends it with every request).
    let tokens: Vec<String> = (0..options.samples * 5)
        .map(|n| issuer.token_numbered(n))
        .collect();
    let mut verifications = Vec::with_capacity(tokens.len());
    for token in &tokens {
        let start = Instant::now();
        verifier.verify(token).await.map_err(|e| e.to_string())?;
        verifications.push(start.elapsed());
    }
    let token = issuer.token();
    let mut repeats = Vec::with_capacity(options.samples * 5);
    for _ in 0..options.samples * 5 {
        let start = Instant::now();
        verifier.verify(&token).await.map_err(|e| e.to_string())?;
        repeats.push(start.elapsed());
    }
    let mut backends = Vec::new();
    if options.sqlite {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let store = SqliteStore::open(dir.path().join("bench.db"))
            .await
            .map_err(|e| e.to_string())?;
        backends.push(run_backend("sqlite", store, &issuer, options).await?);
    }
    if let Some(url) = &options.postgres_url {
        let report = sluice_store::bench::postgres_scratch(url, "sluice_bench_state", |store| {
            run_backend("postgres", store, &issuer, options)
        })
        .await
        .map_err(|e| e.to_string())??;
        backends.push(report);
    }
    let body = state_body(options.state_bytes, 1);
    let keys = LocalKeys::new(KeySource::Inline(
        generate_key().map_err(|e| e.to_string())?,
    ));
    let digest = sluice_store::Digest::of(&body);
    let sealed = sluice_iac::seal::seal(&keys, &body, &digest.0).map_err(|e| e.to_string())?;
    Ok(BenchReport {
        state_bytes: body.len(),
        sealed_bytes: sealed.len(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        token_verification: Latency::of("token verification (cached keys)", verifications),
        token_repeat: Latency::of("same token again", repeats),
        backends,
    })
}

/// [`bench`] on a runtime of its own, for the synchronous command line.
pub fn bench_blocking(options: &BenchOptions) -> Result<BenchReport, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(bench(options))
}
