//! Runner token verification against a local OIDC issuer (wiremock on 127.0.0.1): discovery,
//! JWKS, key rotation, the refresh rate limit, and every kind of forged or mismatched token.
//! Keys are generated at run time; no key file is committed.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sluice_identity::verify::unix_now;
use sluice_identity::{JwksError, OidcVerifier, TokenError, VerifierConfig};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod support;
use support::keys::{Key, ec_key, rsa_key};

const AUD: &str = "sluice";

fn jwks(keys: &[&Key]) -> Value {
    serde_json::to_value(JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    })
    .unwrap()
}

/// GitHub Actions-shaped claims for `issuer`, valid now.
fn claims(issuer: &str) -> Value {
    let now = unix_now();
    json!({
        "iss": issuer,
        "aud": AUD,
        "sub": "repo:acme/infra-live:environment:prod",
        "repository": "acme/infra-live",
        "ref": "refs/heads/main",
        "environment": "prod",
        "job_workflow_ref": "acme/infra-live/.github/workflows/apply.yml@refs/heads/main",
        "iat": now - 5,
        "nbf": now - 5,
        "exp": now + 300,
    })
}

/// A token with a hand-made header, signed (or not) by hand.
fn raw_token(header: Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

struct Issuer {
    server: MockServer,
}

impl Issuer {
    async fn start() -> Issuer {
        Issuer {
            server: MockServer::start().await,
        }
    }

    fn url(&self) -> String {
        self.server.uri()
    }

    /// Serve discovery and `keys`; the JWKS endpoint must be hit exactly `fetches` times.
    async fn publish(&self, keys: &[&Key], fetches: u64) {
        self.server.reset().await;
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": self.url(),
                "jwks_uri": format!("{}/.well-known/jwks", self.url()),
            })))
            .mount(&self.server)
            .await;
        Mock::given(method("GET"))
            .and(path("/.well-known/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(jwks(keys)))
            .expect(fetches)
            .mount(&self.server)
            .await;
    }

    fn verifier(&self, min_refresh: Duration) -> OidcVerifier {
        let mut config = VerifierConfig::new(self.url(), vec![AUD.to_string()]);
        config.min_refresh_interval = min_refresh;
        config.leeway = Duration::from_secs(10);
        OidcVerifier::new(config).unwrap()
    }
}

#[tokio::test]
async fn a_valid_token_verifies_and_yields_its_claims() {
    let issuer = Issuer::start().await;
    let (rsa, ec) = (rsa_key("rsa-1"), ec_key("ec-1"));
    issuer.publish(&[&rsa, &ec], 1).await;
    let verifier = issuer.verifier(Duration::from_secs(60));
    for key in [&rsa, &ec] {
        let v = verifier
            .verify(&key.sign(&claims(&issuer.url())))
            .await
            .unwrap();
        assert_eq!(v.kid, key.kid);
        assert_eq!(v.claims.get("environment"), Some("prod"));
        assert_eq!(
            v.claims.identity().to_string(),
            format!(
                "oidc:{}#repo:acme/infra-live:environment:prod",
                issuer.url()
            )
        );
    }
    issuer.server.verify().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_each_with_its_reason() {
    let issuer = Issuer::start().await;
    let (rsa, ec) = (rsa_key("rsa-1"), ec_key("ec-1"));
    issuer.publish(&[&rsa, &ec], 1).await;
    let verifier = issuer.verifier(Duration::from_secs(3600));
    let good = claims(&issuer.url());
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let now = unix_now();

    // (what, token, the error expected)
    type Case = (&'static str, String, fn(&TokenError) -> bool);
    let cases: Vec<Case> = vec![
        ("expired", rsa.sign(&with("exp", json!(now - 60))), |e| {
            matches!(e, TokenError::Expired { .. })
        }),
        (
            "nbf in the future",
            rsa.sign(&with("nbf", json!(now + 600))),
            |e| matches!(e, TokenError::NotYetValid { claim: "nbf", .. }),
        ),
        (
            "iat in the future",
            rsa.sign(&with("iat", json!(now + 600))),
            |e| matches!(e, TokenError::NotYetValid { claim: "iat", .. }),
        ),
        (
            "other audience",
            rsa.sign(&with("aud", json!("https://github.com/acme"))),
            |e| matches!(e, TokenError::WrongAudience { .. }),
        ),
        (
            "other issuer",
            rsa.sign(&with(
                "iss",
                json!("https://token.actions.githubusercontent.com"),
            )),
            |e| matches!(e, TokenError::WrongIssuer { .. }),
        ),
        (
            "alg none",
            raw_token(json!({ "alg": "none", "kid": "rsa-1" }), &good, b""),
            |e| matches!(e, TokenError::AlgNone),
        ),
        (
            "unknown key",
            rsa_key("forged-kid").sign(&good),
            |e| matches!(e, TokenError::UnknownKey { kid } if kid == "forged-kid"),
        ),
        (
            "known kid, other key",
            {
                let mut impostor = rsa_key("rsa-1");
                impostor.kid = "rsa-1".into();
                impostor.sign(&good)
            },
            |e| matches!(e, TokenError::BadSignature),
        ),
        (
            "ES256 header on the RSA key",
            {
                let mut confused = ec_key("rsa-1");
                confused.kid = "rsa-1".into();
                confused.sign(&good)
            },
            |e| {
                matches!(
                    e,
                    TokenError::AlgorithmNotAllowedForKey {
                        alg: Algorithm::ES256,
                        ..
                    }
                )
            },
        ),
        (
            "tampered claims",
            {
                let token = rsa.sign(&good);
                let mut parts: Vec<String> = token.split('.').map(String::from).collect();
                parts[1] = URL_SAFE_NO_PAD.encode(with("environment", json!("dev")).to_string());
                parts.join(".")
            },
            |e| matches!(e, TokenError::BadSignature),
        ),
    ];
    for (what, token, expected) in cases {
        let e = verifier.verify(&token).await.unwrap_err();
        assert!(expected(&e), "{what}: got {e:?}");
        assert!(
            !e.to_string().contains(&token),
            "{what}: the token is not echoed"
        );
    }

    // HS256 "signed" with the issuer's public key as the shared secret (algorithm confusion).
    let public = serde_json::to_vec(&rsa.jwk).unwrap();
    let hs = jsonwebtoken::encode(
        &Header {
            kid: Some("rsa-1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &good,
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert!(matches!(
        verifier.verify(&hs).await,
        Err(TokenError::SymmetricAlgorithm { alg }) if alg == "HS256"
    ));
    issuer.server.verify().await;
}

#[tokio::test]
async fn rotated_keys_are_fetched_and_retired_keys_stop_verifying() {
    let issuer = Issuer::start().await;
    let (old, new) = (rsa_key("2026-11"), rsa_key("2026-12"));
    issuer.publish(&[&old], 1).await;
    let verifier = issuer.verifier(Duration::ZERO);
    let c = claims(&issuer.url());
    verifier.verify(&old.sign(&c)).await.unwrap();
    issuer.server.verify().await;

    // The issuer rotates: the new key is published, the old one withdrawn.
    issuer.publish(&[&new], 2).await;
    let v = verifier.verify(&new.sign(&c)).await.unwrap();
    assert_eq!(v.kid, "2026-12");
    assert!(matches!(
        verifier.verify(&old.sign(&c)).await,
        Err(TokenError::UnknownKey { kid }) if kid == "2026-11"
    ));
    issuer.server.verify().await;
}

#[tokio::test]
async fn forged_key_ids_cannot_make_us_hammer_the_issuer() {
    let issuer = Issuer::start().await;
    let good = rsa_key("good");
    // One fetch for the first token; the forged key ids arrive within the refresh interval.
    issuer.publish(&[&good], 1).await;
    let verifier = issuer.verifier(Duration::from_secs(3600));
    let c = claims(&issuer.url());
    verifier.verify(&good.sign(&c)).await.unwrap();
    for i in 0..20 {
        let forged = ec_key(&format!("forged-{i}")).sign(&c);
        assert!(matches!(
            verifier.verify(&forged).await,
            Err(TokenError::UnknownKey { .. })
        ));
    }
    verifier.verify(&good.sign(&c)).await.unwrap();
    issuer.server.verify().await;
}

#[tokio::test]
async fn an_unknown_kid_refreshes_once_the_interval_has_passed() {
    let issuer = Issuer::start().await;
    let (a, b) = (ec_key("a"), ec_key("b"));
    issuer.publish(&[&a], 1).await;
    let verifier = issuer.verifier(Duration::from_millis(300));
    let c = claims(&issuer.url());
    verifier.verify(&a.sign(&c)).await.unwrap();
    issuer.publish(&[&a, &b], 1).await;
    // Within the interval: refused without asking the issuer.
    assert!(matches!(
        verifier.verify(&b.sign(&c)).await,
        Err(TokenError::UnknownKey { .. })
    ));
    tokio::time::sleep(Duration::from_millis(350)).await;
    verifier.verify(&b.sign(&c)).await.unwrap();
    issuer.server.verify().await;
}

#[tokio::test]
async fn issuer_failures_are_reported_as_key_errors() {
    let issuer = Issuer::start().await;
    let k = ec_key("k");
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": "https://someone-else.example",
            "jwks_uri": format!("{}/.well-known/jwks", issuer.url()),
        })))
        .up_to_n_times(1)
        .mount(&issuer.server)
        .await;
    let verifier = issuer.verifier(Duration::ZERO);
    let token = k.sign(&claims(&issuer.url()));
    assert!(matches!(
        verifier.verify(&token).await,
        Err(TokenError::Keys(JwksError::IssuerMismatch { .. }))
    ));
    // Discovery now unavailable altogether.
    assert!(matches!(
        verifier.verify(&token).await,
        Err(TokenError::Keys(JwksError::Status { status: 404, .. }))
    ));
}
