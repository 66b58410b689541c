//! A state backend on 127.0.0.1 for tests: a SQLite store in a temporary directory, a fresh
//! key-encryption key, a local OIDC issuer (wiremock serving discovery and a JWKS of a key
//! generated at run time) and the trust policy that names it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sluice_evidence::keys::EvidenceKey;
use sluice_iac::keys::{KeySource, LocalKeys, generate_key};
use sluice_model::trust::TrustPolicy;
use sluice_state::{BackendConfig, Environments, OidcAuthenticator, StateBackend};
use sluice_store::SqliteStore;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const APPLY_SUB: &str = "repo:acme/infra-live:environment:dev";
pub const PLAN_SUB: &str = "repo:acme/infra-live:pull_request";

/// A local OIDC issuer with one ES256 signing key.
pub struct Issuer {
    pub server: MockServer,
    kid: String,
    encoding: EncodingKey,
    pub jwk: Jwk,
}

pub fn unix_now() -> i64 {
    sluice_identity::verify::unix_now()
}

impl Issuer {
    pub async fn start() -> Issuer {
        let server = MockServer::start().await;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
        let kid = "test-key-1".to_string();
        jwk.common.key_id = Some(kid.clone());
        let issuer = server.uri();
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}/jwks"),
            })))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(JwkSet {
                keys: vec![jwk.clone()],
            }))
            .mount(&server)
            .await;
        Issuer {
            server,
            kid,
            encoding,
            jwk,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// GitHub Actions-shaped claims for `sub`, valid now.
    pub fn claims(&self, sub: &str, environment: Option<&str>) -> Value {
        let now = unix_now();
        let mut c = json!({
            "iss": self.uri(),
            "aud": "sluice",
            "sub": sub,
            "repository": "acme/infra-live",
            "ref": "refs/heads/main",
            "iat": now - 5,
            "nbf": now - 5,
            "exp": now + 600,
        });
        if let Some(env) = environment {
            c["environment"] = json!(env);
        }
        c
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// The dev apply identity: writes `dev/*/network` only.
    pub fn apply_token(&self) -> String {
        self.sign(&self.claims(APPLY_SUB, Some("dev")))
    }

    /// The plan identity: reads `dev/**`, writes nothing.
    pub fn plan_token(&self) -> String {
        self.sign(&self.claims(PLAN_SUB, None))
    }

    pub fn policy(&self) -> TrustPolicy {
        TrustPolicy::from_json(&json!({
            "issuers": [{ "issuer": self.uri(), "audience": "sluice" }],
            "rules": [
                {
                    "name": "apply-dev-network",
                    "when": { "sub": APPLY_SUB, "environment": "dev" },
                    "grant": { "stages": ["plan", "apply"], "state": { "write": ["dev/*/network"] } }
                },
                {
                    "name": "plan-dev",
                    "when": { "sub": PLAN_SUB },
                    "grant": { "stages": ["plan"], "state": { "read": ["dev/**"] } }
                }
            ]
        }))
        .unwrap()
    }
}

/// The backend on a random loopback port.
pub struct Served {
    pub addr: SocketAddr,
    /// The key the audit events' statements are signed with.
    pub evidence: EvidenceKey,
    pub backend: Arc<StateBackend<SqliteStore>>,
    pub store: SqliteStore,
    pub db: PathBuf,
    pub dir: tempfile::TempDir,
    pub issuer: Issuer,
}

impl Served {
    pub async fn start() -> Served {
        Self::start_with(BackendConfig::default()).await
    }

    pub async fn start_with(mut config: BackendConfig) -> Served {
        let issuer = Issuer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(".sluice/sluice.db");
        let store = SqliteStore::open(&db).await.unwrap();
        let keys = Arc::new(LocalKeys::new(KeySource::Inline(generate_key().unwrap())));
        let policy = issuer.policy();
        let auth = Arc::new(OidcAuthenticator::new(&policy).unwrap());
        config.trust = Some(Arc::new(policy));
        config.environments = Environments::FirstSegment;
        let evidence = EvidenceKey::generate().unwrap();
        let backend = Arc::new(StateBackend::new(
            store.clone(),
            keys,
            evidence.clone(),
            config,
        ));
        let app = axum::Router::new().nest(
            "/state",
            sluice_state_backend::router(backend.clone(), auth, Default::default()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Served {
            addr,
            evidence,
            backend,
            store,
            db,
            dir,
            issuer,
        }
    }

    pub fn url(&self, unit: &str) -> String {
        format!("http://{}/state/{unit}", self.addr)
    }

    /// Every byte the database keeps on disk (the main file and its WAL).
    pub fn raw_database(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", self.db.display()));
            if let Ok(bytes) = std::fs::read(&p) {
                all.extend(bytes);
            }
        }
        all
    }
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}
