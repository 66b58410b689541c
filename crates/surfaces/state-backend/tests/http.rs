//! The backend's protocol over real HTTP on 127.0.0.1, request by request as Terraform's `http`
//! client sends them: statuses, lock info, Content-MD5, fencing, least privilege, forged
//! tokens, tampering and the audit trail. (tests/terraform.rs drives the real client.)

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use md5::Digest as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_store::StateStore;
use support::{Served, contains, unix_now};

const UNIT: &str = "dev/ap-southeast-1/network";
const CANARY: &str = "CANARY-state-7f3e9a";

fn state(serial: u64, lineage: &str) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "version": 4,
        "terraform_version": "1.11.4",
        "serial": serial,
        "lineage": lineage,
        "outputs": {},
        "resources": [{
            "mode": "managed", "type": "terraform_data", "name": "x",
            "provider": "provider[\"terraform.io/builtin/terraform\"]",
            "instances": [{ "attributes": { "input": CANARY } }]
        }]
    }))
    .unwrap()
}

fn lock_info(id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ID": id, "Operation": "OperationTypeApply", "Info": "", "Who": "runner@ci",
        "Version": "1.11.4", "Created": "2026-12-06T18:00:00Z", "Path": ""
    }))
    .unwrap()
}

struct Client {
    http: reqwest::Client,
    token: String,
}

impl Client {
    fn new(token: String) -> Client {
        Client {
            http: reqwest::Client::new(),
            token,
        }
    }

    async fn send(
        &self,
        method: &str,
        url: &str,
        body: Option<&[u8]>,
        md5: Option<String>,
    ) -> (StatusCode, Vec<u8>) {
        let mut req = self
            .http
            .request(Method::from_bytes(method.as_bytes()).unwrap(), url)
            .basic_auth("runner", Some(&self.token));
        if let Some(b) = body {
            let md5 = md5.unwrap_or_else(|| B64.encode(md5::Md5::digest(b)));
            req = req
                .header("content-type", "application/json")
                .header("content-md5", md5)
                .body(b.to_vec());
        }
        let resp = req.send().await.unwrap();
        (resp.status(), resp.bytes().await.unwrap().to_vec())
    }

    async fn get(&self, url: &str) -> (StatusCode, Vec<u8>) {
        self.send("GET", url, None, None).await
    }

    async fn lock(&self, url: &str, id: &str) -> (StatusCode, Vec<u8>) {
        self.send("LOCK", url, Some(&lock_info(id)), None).await
    }

    async fn unlock(&self, url: &str, id: &str) -> (StatusCode, Vec<u8>) {
        self.send("UNLOCK", url, Some(&lock_info(id)), None).await
    }

    async fn post(&self, url: &str, id: &str, body: &[u8]) -> (StatusCode, Vec<u8>) {
        self.send("POST", &format!("{url}?ID={id}"), Some(body), None)
            .await
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_read_lock_and_refusals() {
    let s = Served::start().await;
    let url = s.url(UNIT);
    let apply = Client::new(s.issuer.apply_token());

    // No state yet.
    let (st, _) = apply.get(&url).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // A write without the lock, or with a lock id that holds nothing, is refused.
    let (st, body) = apply.send("POST", &url, Some(&state(1, "lin")), None).await;
    assert_eq!(st, StatusCode::CONFLICT, "{}", text(&body));
    assert_eq!(
        apply.post(&url, "nope", &state(1, "lin")).await.0,
        StatusCode::CONFLICT
    );

    // Lock, write, read back.
    assert_eq!(apply.lock(&url, "lock-a").await.0, StatusCode::OK);
    // Locking again with the same id is idempotent; another id gets 423 with the holder.
    assert_eq!(apply.lock(&url, "lock-a").await.0, StatusCode::OK);
    let (st, body) = apply.lock(&url, "lock-b").await;
    assert_eq!(st, StatusCode::LOCKED);
    let holder: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(holder["ID"], "lock-a");
    assert_eq!(holder["Who"], "runner@ci");

    let (st, body) = apply.post(&url, "lock-a", &state(1, "lin")).await;
    assert_eq!(st, StatusCode::OK, "{}", text(&body));
    // The same body again: accepted, no new version.
    assert_eq!(
        apply.post(&url, "lock-a", &state(1, "lin")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        apply.post(&url, "lock-a", &state(2, "lin")).await.0,
        StatusCode::OK
    );
    // A writer that is not the holder: 423 with the holder's info.
    let (st, body) = apply.post(&url, "lock-b", &state(3, "lin")).await;
    assert_eq!(st, StatusCode::LOCKED);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["ID"],
        "lock-a"
    );

    let resp = reqwest::Client::new()
        .get(&url)
        .basic_auth("runner", Some(s.issuer.plan_token()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let md5 = resp.headers()["content-md5"].to_str().unwrap().to_string();
    let got = resp.bytes().await.unwrap();
    assert_eq!(got.as_ref(), state(2, "lin").as_slice());
    assert_eq!(md5, B64.encode(md5::Md5::digest(&got)));

    // Content-MD5: wrong, missing on a write → 400; nothing stored.
    let (st, body) = apply
        .send(
            "POST",
            &format!("{url}?ID=lock-a"),
            Some(&state(3, "lin")),
            Some(B64.encode(md5::Md5::digest(b"something else"))),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(text(&body).contains("Content-MD5"), "{}", text(&body));
    let resp = reqwest::Client::new()
        .post(format!("{url}?ID=lock-a"))
        .basic_auth("runner", Some(&apply.token))
        .body(state(3, "lin"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Serial regression, reused serial, other lineage, not a state → refused, unchanged.
    for (body, want) in [
        (state(1, "lin"), StatusCode::CONFLICT),
        (
            {
                let mut b = state(2, "lin");
                b.extend_from_slice(b" ");
                b
            },
            StatusCode::CONFLICT,
        ),
        (state(9, "other-lineage"), StatusCode::CONFLICT),
        (b"{not json".to_vec(), StatusCode::BAD_REQUEST),
        (b"{\"version\":4}".to_vec(), StatusCode::BAD_REQUEST),
    ] {
        let (st, resp) = apply.post(&url, "lock-a", &body).await;
        assert_eq!(st, want, "{}", text(&resp));
        assert!(!text(&resp).contains(CANARY));
    }
    let head = s.store.state_head(UNIT).await.unwrap().unwrap();
    assert_eq!((head.version, head.serial), (2, 2));
    assert_eq!(head.fencing_token, Some(1));
    assert_eq!(head.lock_id.as_deref(), Some("lock-a"));

    // Unlock with another id: refused; with the holder's: released, and the old id is fenced.
    assert_eq!(apply.unlock(&url, "lock-b").await.0, StatusCode::CONFLICT);
    assert_eq!(apply.unlock(&url, "lock-a").await.0, StatusCode::OK);
    assert_eq!(
        apply.post(&url, "lock-a", &state(3, "lin")).await.0,
        StatusCode::CONFLICT
    );
    // The next holder gets a larger fencing token; a stale id stays refused.
    assert_eq!(apply.lock(&url, "lock-b").await.0, StatusCode::OK);
    assert_eq!(
        apply.post(&url, "lock-a", &state(3, "lin")).await.0,
        StatusCode::LOCKED
    );
    assert_eq!(
        apply.post(&url, "lock-b", &state(3, "lin")).await.0,
        StatusCode::OK
    );
    let head = s.store.state_head(UNIT).await.unwrap().unwrap();
    assert_eq!((head.version, head.fencing_token), (3, Some(2)));
    // force-unlock sends only the id.
    let (st, _) = apply
        .send("UNLOCK", &url, Some(br#"{"ID":"lock-b"}"#), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(apply.lock(&url, "lock-c").await.0, StatusCode::OK);
    assert_eq!(apply.unlock(&url, "lock-c").await.0, StatusCode::OK);

    // DELETE: history is immutable.
    assert_eq!(
        apply.send("DELETE", &url, None, None).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );

    // Encrypted at rest; the audit trail has every read and write but no state content.
    assert!(!contains(&s.raw_database(), CANARY));
    let events = s.store.state_events(Some(UNIT), 0, 1000).await.unwrap();
    let count = |action: &str, outcome: &str| {
        events
            .iter()
            .filter(|e| e.action == action && e.outcome == outcome)
            .count()
    };
    assert_eq!(count("write", "ok"), 3);
    assert_eq!(count("write", "unchanged"), 1);
    assert!(count("write", "refused") >= 8, "{events:#?}");
    assert!(count("read", "ok") >= 1 && count("read", "not_found") == 1);
    assert!(count("lock", "refused") >= 1 && count("delete", "refused") == 1);
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains(CANARY));
    assert!(!all.contains(&apply.token), "a token was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_and_forged_tokens() {
    let s = Served::start().await;
    let apply = Client::new(s.issuer.apply_token());
    let plan = Client::new(s.issuer.plan_token());
    let url = s.url(UNIT);

    // The apply identity for dev/*/network: not another stack, not another environment.
    for other in [
        "dev/ap-southeast-1/rds-payments",
        "prod/ap-southeast-1/network",
    ] {
        let (st, body) = apply.get(&s.url(other)).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{other}: {}", text(&body));
        assert_eq!(
            apply.lock(&s.url(other), "x").await.0,
            StatusCode::FORBIDDEN
        );
    }
    // The plan identity reads but cannot lock or write.
    assert_eq!(plan.get(&url).await.0, StatusCode::NOT_FOUND);
    assert_eq!(plan.lock(&url, "p").await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        plan.post(&url, "p", &state(1, "l")).await.0,
        StatusCode::FORBIDDEN
    );
    // An apply token minted for another environment does not write dev.
    let prod = Client::new(
        s.issuer
            .sign(&s.issuer.claims(support::APPLY_SUB, Some("prod"))),
    );
    assert_eq!(prod.lock(&url, "q").await.0, StatusCode::FORBIDDEN);

    // Forged and mismatched tokens: 401, never 403 or 200.
    let iss = &s.issuer;
    let mut expired = iss.claims(support::APPLY_SUB, Some("dev"));
    expired["exp"] = json!(unix_now() - 3600);
    let mut early = iss.claims(support::APPLY_SUB, Some("dev"));
    early["nbf"] = json!(unix_now() + 3600);
    let mut wrong_aud = iss.claims(support::APPLY_SUB, Some("dev"));
    wrong_aud["aud"] = json!("someone-else");
    let good = iss.apply_token();
    let parts: Vec<&str> = good.split('.').collect();
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"test-key-1"}"#),
        parts[1]
    );
    let unknown_kid = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"not-published"}"#),
        parts[1],
        parts[2]
    );
    let mut other_issuer = iss.claims(support::APPLY_SUB, Some("dev"));
    other_issuer["iss"] = json!("https://token.actions.githubusercontent.com");
    // Change the signature's first character: it carries six whole bits of the signature (the
    // last one carries padding bits too, and may already be the replacement).
    let first = if parts[2].starts_with('A') { "B" } else { "A" };
    let tampered_sig = format!("{}.{}.{first}{}", parts[0], parts[1], &parts[2][1..]);
    for (name, token) in [
        ("expired", iss.sign(&expired)),
        ("not yet valid", iss.sign(&early)),
        ("wrong audience", iss.sign(&wrong_aud)),
        ("alg none", alg_none),
        ("unknown key", unknown_kid),
        ("untrusted issuer", iss.sign(&other_issuer)),
        ("bad signature", tampered_sig),
        ("not a token", "hunter2".to_string()),
    ] {
        let (st, body) = Client::new(token.clone()).get(&url).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{name}: {}", text(&body));
        assert!(
            !text(&body).contains(&token),
            "{name}: the token was echoed"
        );
    }
    // No credentials at all.
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));

    let events = s.store.state_events(None, 0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .filter(|e| e.identity == "unauthenticated" && e.outcome == "refused")
            .count()
            >= 9
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_version_is_detected_on_read() {
    let s = Served::start().await;
    let url = s.url(UNIT);
    let apply = Client::new(s.issuer.apply_token());
    assert_eq!(apply.lock(&url, "l").await.0, StatusCode::OK);
    assert_eq!(
        apply.post(&url, "l", &state(1, "lin")).await.0,
        StatusCode::OK
    );
    assert_eq!(apply.unlock(&url, "l").await.0, StatusCode::OK);
    assert_eq!(apply.get(&url).await.0, StatusCode::OK);

    // Flip one byte of the sealed blob, as someone with write access to the database could.
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT sealed FROM state_blobs")
        .fetch_one(s.store.pool())
        .await
        .unwrap();
    let mut bad = sealed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    sqlx::query("UPDATE state_blobs SET sealed = $1")
        .bind(&bad)
        .execute(s.store.pool())
        .await
        .unwrap();
    let (st, body) = apply.get(&url).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(text(&body).contains("integrity"), "{}", text(&body));
    let events = s.store.state_events(Some(UNIT), 0, 100).await.unwrap();
    assert!(events.iter().any(|e| e.outcome == "tampered"));
}
