//! `sluice serve` over real HTTP on 127.0.0.1 (random ports): the corpus's deliveries signed,
//! forged and redelivered; a PR head run through the pipeline into the read API; fast pushes
//! superseding older heads; `/metrics` scraped and parsed; the OpenAPI document against the
//! routes; a closed PR and a push to the default branch releasing the locks of their changes.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Server, corpus_deliveries, org_with_pushes, pr_payload};
use serde_json::Value;
use sluice_store::{
    BreakGlassStore as _, ChangeStore as _, EventRecord, JobQueue as _, JobState, Scope,
    TokenStore as _,
};
use sluice_vcs::WebhookSecret;

async fn nothing_stored(server: &Server) {
    let store = &server.app.store;
    assert!(
        store
            .jobs(&Default::default(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.events(None, 0, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unsigned_and_malformed_deliveries_store_nothing() {
    let Some(deliveries) = corpus_deliveries() else {
        return;
    };
    let (repo, _, _) = org_with_pushes(0);
    let server = Server::start(repo.path(), 0).await;
    let wrong = WebhookSecret::new("not the secret").unwrap();
    for (i, (event, file, body)) in deliveries.iter().enumerate() {
        let id = format!("forged-{i}");
        let (status, answer) = server
            .deliver(event, &id, body, Some(wrong.sign(body)))
            .await;
        assert_eq!(status, 401, "{}: {answer}", file.display());
        let (status, _) = server.deliver(event, &id, body, None).await;
        assert_eq!(status, 401, "{}", file.display());
        // The right signature over another body.
        let mut altered = body.clone();
        altered.push(b' ');
        let sig = WebhookSecret::new(common::SECRET).unwrap().sign(body);
        let (status, _) = server.deliver(event, &id, &altered, Some(sig)).await;
        assert_eq!(status, 401, "{}", file.display());
        assert!(server.app.store.delivery(&id).await.unwrap().is_none());
    }
    // Signed but malformed, or over the size limit.
    let (status, answer) = server
        .signed("pull_request", "bad-json", b"{\"action\":")
        .await;
    assert_eq!(status, 400, "{answer}");
    // Over the size limit: refused with 413 once the length is over the limit. The server does
    // not read the refused body and closes the connection, possibly while the client is still
    // sending the 2 MiB: the client then sees the close instead of the 413. Either way nothing is
    // stored (checked below). A client of its own, so the closed connection is not reused.
    let big = vec![b' '; 2 * 1024 * 1024];
    let sig = WebhookSecret::new(common::SECRET).unwrap().sign(&big);
    let once = reqwest::Client::new();
    match server
        .try_deliver(&once, "pull_request", "too-big", &big, Some(sig))
        .await
    {
        Ok((status, _)) => assert_eq!(status, 413),
        Err(e) => assert!(e.is_request(), "not a refusal while sending: {e:?}"),
    }
    let (status, answer) = server.signed("pull_request", "bad id!", b"{}").await;
    assert_eq!(status, 400, "{answer}");
    nothing_stored(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_corpus_deliveries_are_stored_once() {
    let Some(deliveries) = corpus_deliveries() else {
        return;
    };
    let (repo, _, _) = org_with_pushes(0);
    // No workers: the corpus's commits are not in this repository.
    let server = Server::start(repo.path(), 0).await;
    let mut jobs = 0;
    for (i, (event, file, body)) in deliveries.iter().enumerate() {
        let id = format!("corpus-{i}");
        let (status, answer) = server.signed(event, &id, body).await;
        assert_eq!(status, 202, "{}: {answer}", file.display());
        jobs += answer["jobs"].as_array().unwrap().len();
        let (status, again) = server.signed(event, &id, body).await;
        assert_eq!(status, 200, "{}: {again}", file.display());
        assert_eq!(again["duplicate"], true);
    }
    let stored = server
        .app
        .store
        .jobs(&Default::default(), 1000)
        .await
        .unwrap();
    assert_eq!(stored.len(), jobs, "a redelivery created no job");
    assert!(
        jobs >= 4,
        "opened, reopened, synchronize and rerequested enqueue: {jobs}"
    );
    let events = server.app.store.events(None, 0, 1000).await.unwrap();
    assert_eq!(events.len(), deliveries.len(), "one event per delivery");
    // Each job names the delivery that caused it.
    for job in &stored {
        let d = job.delivery_id.as_deref().unwrap();
        assert!(server.app.store.delivery(d).await.unwrap().is_some());
    }
    server.stop().await;
}

async fn wait_for(server: &Server, state: JobState, n: usize) -> Vec<sluice_store::Job> {
    for _ in 0..400 {
        let jobs = server.jobs_in(state).await;
        if jobs.len() >= n {
            return jobs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} jobs {state:?} after 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pr_head_runs_through_the_pipeline_into_the_api() {
    let (repo, base, heads) = org_with_pushes(1);
    let Some(body) = pr_payload("opened", 7, &base, &heads[0]) else {
        return;
    };
    let server = Server::start(repo.path(), 1).await;
    let (status, answer) = server.signed("pull_request", "open-7", &body).await;
    assert_eq!(status, 202, "{answer}");
    let done = wait_for(&server, JobState::Succeeded, 1).await;
    assert_eq!(done[0].head_sha.as_deref(), Some(heads[0].as_str()));

    let store = &server.app.store;
    let changes = store.changes(10).await.unwrap();
    assert_eq!(changes.len(), 1, "one stack affected");
    let change = &changes[0];
    assert_eq!(change.head, heads[0]);
    assert_eq!(change.pr, Some(7));

    // The API wants a token.
    let (status, _) = server.get("/api/v1/changes", None).await;
    assert_eq!(status, 401);
    let (status, _) = server
        .get("/api/v1/changes", Some("sluice_000000000000_nope"))
        .await;
    assert_eq!(status, 401);
    let token = store.create_token(Scope::Read, "test").await.unwrap().token;
    let (status, body) = server.get("/api/v1/changes", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed[0]["change_id"], change.change_id.as_str());
    let stages: Vec<&str> = listed[0]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert!(stages.contains(&"validate"), "{stages:?}");
    let id = encode(&change.change_id);
    let (status, body) = server
        .get(&format!("/api/v1/changes/{id}"), Some(&token))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, bundle) = server
        .get(&format!("/api/v1/changes/{id}/bundle"), Some(&token))
        .await;
    assert_eq!(status, 200, "{bundle}");
    assert!(
        bundle.contains("payload"),
        "a DSSE bundle: {}",
        &bundle[..200.min(bundle.len())]
    );
    let (status, body) = server
        .get(&format!("/api/v1/changes/{id}/policy"), Some(&token))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get("/api/v1/changes/nope", Some(&token)).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .get("/api/v1/jobs?state=succeeded", Some(&token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()[0]["state"],
        "succeeded"
    );
    let (status, body) = server.get("/api/v1/jobs?state=bogus", Some(&token)).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.get("/api/v1/locks", Some(&token)).await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    let (status, _) = server.get("/healthz", None).await;
    assert_eq!(status, 200);
    let (status, body) = server.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_pushes_supersede_older_heads() {
    let (repo, base, heads) = org_with_pushes(3);
    let Some(opened) = pr_payload("opened", 9, &base, &heads[0]) else {
        return;
    };
    let server = Server::start(repo.path(), 1).await;
    let (status, _) = server.signed("pull_request", "p-0", &opened).await;
    assert_eq!(status, 202);
    for (i, head) in heads.iter().enumerate().skip(1) {
        let body = pr_payload("synchronize", 9, &base, head).unwrap();
        let (status, answer) = server
            .signed("pull_request", &format!("p-{i}"), &body)
            .await;
        assert_eq!(status, 202, "{answer}");
    }
    server.drain(Duration::from_secs(30)).await;
    let succeeded = server.jobs_in(JobState::Succeeded).await;
    let cancelled = server.jobs_in(JobState::Cancelled).await;
    let last = heads.last().unwrap();
    assert!(
        succeeded
            .iter()
            .any(|j| j.head_sha.as_deref() == Some(last.as_str())),
        "the newest head ran"
    );
    // Every older head was cancelled (unless it had finished before the next push arrived).
    assert_eq!(succeeded.len() + cancelled.len(), heads.len());
    for j in &cancelled {
        assert_ne!(j.head_sha.as_deref(), Some(last.as_str()));
        assert!(
            j.reason
                .as_deref()
                .unwrap()
                .starts_with("superseded by a newer head")
        );
    }
    // Only heads whose job succeeded left evidence: a cancelled job's result was dropped.
    let recorded: BTreeSet<String> = server
        .app
        .store
        .changes(100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.head)
        .collect();
    let ran: BTreeSet<String> = succeeded
        .iter()
        .filter_map(|j| j.head_sha.clone())
        .collect();
    assert_eq!(recorded, ran);

    // A closed PR cancels what is left.
    let (status, _) = server
        .signed(
            "pull_request",
            "p-close",
            &pr_payload("synchronize", 9, &base, &heads[0]).unwrap(),
        )
        .await;
    assert_eq!(status, 202);
    let closed = pr_payload("closed", 9, &base, &heads[0]).unwrap();
    let (status, answer) = server.signed("pull_request", "p-closed", &closed).await;
    assert_eq!(status, 202, "{answer}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_every_control_loop_and_parse() {
    let Some(deliveries) = corpus_deliveries() else {
        return;
    };
    let (repo, _, _) = org_with_pushes(0);
    let server = Server::start(repo.path(), 0).await;
    let (event, _, body) = &deliveries[0];
    server.signed(event, "m-1", body).await;
    server.signed(event, "m-1", body).await;
    server.deliver(event, "m-2", body, None).await;
    let (status, text) = server.get("/metrics", None).await;
    assert_eq!(status, 200);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let names: BTreeSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    // Histograms may be folded into one sample by the parser: match on the family's name.
    for family in [
        "sluice_plan_duration_seconds",
        "sluice_apply_duration_seconds",
        "sluice_lock_wait_seconds",
        "sluice_policy_decisions",
        "sluice_exceptions",
        "sluice_sync_lag_seconds",
        "sluice_drifted_units",
        "sluice_degraded_apps",
        "sluice_rollbacks",
        "sluice_applies",
        "sluice_reconcile_duration_seconds",
        "sluice_jobs",
        "sluice_webhook_deliveries",
        "sluice_webhook_enqueue_seconds",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(family)),
            "{family} missing from:\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} undocumented"
        );
    }
    let count = |outcome: &str| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| {
                s.metric.starts_with("sluice_webhook_deliveries")
                    && s.labels.get("outcome") == Some(outcome)
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(count("accepted"), 1.0);
    assert_eq!(count("duplicate"), 1.0);
    assert_eq!(count("unauthenticated"), 1.0);
    // Bounded labels: no delivery id, PR number or correlation id in any label.
    for s in &scrape.samples {
        for (_, v) in s.labels.iter() {
            assert!(
                !v.contains("m-1") && !v.contains('#'),
                "unbounded label {v}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let (repo, _, _) = org_with_pushes(0);
    let server = Server::start(repo.path(), 0).await;
    let (status, body) = server.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let token = server
        .app
        .store
        .create_token(Scope::Admin, "t")
        .await
        .unwrap()
        .token;
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<String> = paths.keys().cloned().collect();
    assert_eq!(
        documented,
        [
            "/changes",
            "/changes/{id}",
            "/changes/{id}/bundle",
            "/changes/{id}/policy",
            "/jobs",
            "/locks",
            "/backports",
            "/runner/claim",
            "/runner/jobs/{id}/heartbeat",
            "/runner/jobs/{id}/result"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    let runner = server
        .app
        .store
        .create_token(Scope::Runner, "r")
        .await
        .unwrap()
        .token;
    for (path, ops) in paths {
        if path.starts_with("/runner/") {
            // The runner protocol: POSTs with a runner token (no job is waiting, job 0 exists
            // not), and 401 without one.
            let concrete = path.replace("{id}", "0");
            let url = format!("{}/api/v1{concrete}", server.base);
            let body = serde_json::json!({"lease": 1, "result": {"outcome": "failed",
                "class": "plan", "message": "x"}});
            let documented: Vec<String> = ops["post"]["responses"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            let resp = server
                .client
                .post(&url)
                .bearer_auth(&runner)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16().to_string();
            assert!(
                documented.contains(&status),
                "{path}: {status} not in {documented:?}"
            );
            let resp = server.client.post(&url).json(&body).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 401, "{path}");
            assert!(documented.contains(&"401".to_string()), "{path}");
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            assert_eq!(method, "get", "{path}: the read API is read-only");
            let concrete = path.replace("{id}", "unknown-change");
            let (status, body) = server
                .get(&format!("/api/v1{concrete}"), Some(&token))
                .await;
            let documented: Vec<String> = ops[method]["responses"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            assert!(
                documented.contains(&status.to_string()),
                "{path}: answered {status} ({body}), documents {documented:?}"
            );
            // Without a token: 401, documented too.
            let (status, _) = server.get(&format!("/api/v1{concrete}"), None).await;
            assert_eq!(status, 401, "{path}");
            assert!(documented.contains(&"401".to_string()), "{path}");
        }
    }
    // And nothing answers that is not documented.
    let (status, _) = server.get("/api/v1/changez", Some(&token)).await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backports_are_listed_once_a_used_grant_ends() {
    use sluice_model::breakglass::{self, BreakGlassConfig, OpenRequest};
    use sluice_model::exception::Timestamp;
    let (repo, _, _) = org_with_pushes(0);
    let server = Server::start(repo.path(), 0).await;
    let store = &server.app.store;
    let token = store.create_token(Scope::Read, "t").await.unwrap().token;
    let (status, body) = server.get("/api/v1/backports", Some(&token)).await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    let (status, _) = server.get("/api/v1/backports", None).await;
    assert_eq!(status, 401);

    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let now = Timestamp::from_unix(d.as_secs() as i64, 0);
    let config = BreakGlassConfig {
        group: "@acme/sre".into(),
        max_ttl_secs: 3600,
    };
    let open = |id: &str, unit: &str, at: Timestamp, ttl: i64| {
        breakglass::open(
            &config,
            &OpenRequest {
                requester: "alice".into(),
                requester_groups: vec!["@acme/sre".into()],
                unit: unit.into(),
                reason: "INC-7".into(),
                ttl_secs: ttl,
            },
            id.into(),
            at,
        )
        .unwrap()
    };
    let ev = |kind: &str| EventRecord::new("break-glass:t", kind, serde_json::json!({}));
    // Closed after a use: a recorded item.
    let g = open("bg-closed", "dev/eu-west-1/app", now, 600);
    store
        .open_grant(&g, &ev("breakglass.opened"))
        .await
        .unwrap();
    let mut used = g.clone();
    used.use_for(&g.unit, true, now).unwrap();
    assert!(
        store
            .update_grant(&g, &used, None, &ev("breakglass.used"))
            .await
            .unwrap()
    );
    let mut closed = used.clone();
    let item = closed.close("bob", now).unwrap();
    assert!(
        store
            .update_grant(&used, &closed, Some(&item), &ev("breakglass.closed"))
            .await
            .unwrap()
    );
    // Used and expired, nobody recorded the expiry yet: listed too (a GET writes nothing).
    let old = now.plus_seconds(-7200);
    let g2 = open("bg-expired", "prod/eu-west-1/db", old, 60);
    store
        .open_grant(&g2, &ev("breakglass.opened"))
        .await
        .unwrap();
    let mut used2 = g2.clone();
    used2.use_for(&g2.unit, true, old).unwrap();
    assert!(
        store
            .update_grant(&g2, &used2, None, &ev("breakglass.used"))
            .await
            .unwrap()
    );
    // Open and unused: nothing owed.
    let g3 = open("bg-open", "dev/eu-west-1/app", now, 600);
    store
        .open_grant(&g3, &ev("breakglass.opened"))
        .await
        .unwrap();

    let (status, body) = server.get("/api/v1/backports", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    let grants: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["grant"].as_str().unwrap())
        .collect();
    assert_eq!(grants, vec!["bg-closed", "bg-expired"], "{list}");
    assert_eq!(list[0]["unit"], "dev/eu-west-1/app");
    assert_eq!(list[0]["opened_by"], "alice");
    assert_eq!(list[0]["status"], "open");
    assert_eq!(list[1]["uses"], 1);
    // The GET recorded nothing: the expiry is still unrecorded in the store.
    assert_eq!(store.backports(true).await.unwrap().len(), 1);
    server.stop().await;
}

/// The lock owner of the change the server recorded for `head`.
async fn owner_at(server: &Server, head: &str) -> String {
    let changes = server.app.store.changes(100).await.unwrap();
    let record = changes
        .iter()
        .find(|c| c.head == head)
        .expect("a change for the head");
    sluice_release::lock_owner(record)
}

/// `owner` takes (or queues for) the lock of `unit`.
async fn take(server: &Server, unit: &str, owner: &str) -> sluice_model::lock::Acquired {
    use sluice_store::LockStore as _;
    server
        .app
        .store
        .acquire(
            unit,
            owner,
            sluice_release::apply::now(),
            Duration::from_secs(600),
        )
        .await
        .unwrap()
        .unwrap()
}

async fn holder(server: &Server, unit: &str) -> (Option<String>, Vec<String>) {
    use sluice_store::LockStore as _;
    let lock = server.app.store.lock(unit).await.unwrap().unwrap();
    (
        lock.holder.map(|h| h.change),
        lock.queue.into_iter().map(|w| w.change).collect(),
    )
}

/// A corpus `push` delivery rewritten as a push of `after` to `main`, the default branch.
fn push_payload(after: &str) -> Vec<u8> {
    let root = sluice_testkit::corpus("github-webhooks/payload-examples/api.github.com").unwrap();
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(root.join("push/payload.json")).unwrap()).unwrap();
    v["ref"] = "refs/heads/main".into();
    v["repository"]["default_branch"] = "main".into();
    v["after"] = after.into();
    v["deleted"] = false.into();
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_and_merged_prs_release_their_locks() {
    let (repo, base, heads) = org_with_pushes(1);
    let Some(open9) = pr_payload("opened", 9, &base, &heads[0]) else {
        return;
    };
    // PR 10: another branch off the base, merged into main later; PR 11 never merged.
    repo.git(&["checkout", "-q", "-B", "pr10", &base]);
    repo.write(
        "live/dev/eu-west-1/net/terragrunt.hcl",
        sluice_testkit::plain_stack("cidr = \"10.10.0.0/16\""),
    );
    let head10 = repo.commit("pr 10");
    repo.git(&["checkout", "-q", "-B", "pr11", &base]);
    repo.write(
        "live/dev/eu-west-1/net/terragrunt.hcl",
        sluice_testkit::plain_stack("cidr = \"10.11.0.0/16\""),
    );
    let head11 = repo.commit("pr 11");
    let server = Server::start(repo.path(), 1).await;
    for (i, body) in [
        open9,
        pr_payload("opened", 10, &base, &head10).unwrap(),
        pr_payload("opened", 11, &base, &head11).unwrap(),
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            server
                .signed("pull_request", &format!("l-{i}"), body)
                .await
                .0,
            202
        );
    }
    server.drain(Duration::from_secs(60)).await;
    let (pr9, pr10, pr11) = (
        owner_at(&server, &heads[0]).await,
        owner_at(&server, &head10).await,
        owner_at(&server, &head11).await,
    );
    // PR 9 holds `a` and waits for `b` (held by PR 10); PR 11 holds `c`.
    take(&server, "dev/eu-west-1/a", &pr9).await;
    take(&server, "dev/eu-west-1/b", &pr10).await;
    take(&server, "dev/eu-west-1/b", &pr9).await;
    take(&server, "dev/eu-west-1/c", &pr11).await;

    // PR 9 closed (not merged): it releases `a` and leaves `b`'s queue.
    let closed = pr_payload("closed", 9, &base, &heads[0]).unwrap();
    assert_eq!(
        server.signed("pull_request", "l-close", &closed).await.0,
        202
    );
    server.drain(Duration::from_secs(30)).await;
    assert_eq!(holder(&server, "dev/eu-west-1/a").await, (None, vec![]));
    assert_eq!(
        holder(&server, "dev/eu-west-1/b").await,
        (Some(pr10.clone()), vec![])
    );
    let events = server
        .app
        .store
        .events(Some("lock:dev/eu-west-1/a"), 0, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, "lock.released");
    assert_eq!(events[0].payload["holder"], pr9.as_str());

    // PR 10 merged into main, then pushed: its lock is released; PR 11's is kept.
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["merge", "-q", "--no-ff", "-m", "merge pr 10", "pr10"]);
    let main = repo.head();
    assert_eq!(
        server
            .signed("push", "l-push", &push_payload(&main))
            .await
            .0,
        202
    );
    // A push to another branch does nothing.
    let mut other: Value = serde_json::from_slice(&push_payload(&head11)).unwrap();
    other["ref"] = "refs/heads/pr11".into();
    let (status, answer) = server
        .signed("push", "l-push-other", &serde_json::to_vec(&other).unwrap())
        .await;
    assert_eq!(status, 202);
    assert!(answer["jobs"].as_array().unwrap().is_empty(), "{answer}");
    server.drain(Duration::from_secs(30)).await;
    assert_eq!(holder(&server, "dev/eu-west-1/b").await, (None, vec![]));
    assert_eq!(
        holder(&server, "dev/eu-west-1/c").await,
        (Some(pr11.clone()), vec![])
    );
    let merged = server.app.store.events(None, 0, 1000).await.unwrap();
    let push = merged.iter().find(|e| e.kind == "push.merged").unwrap();
    assert_eq!(push.payload["merged"], serde_json::json!([pr10]));
    server.stop().await;
}

/// The current time as the model counts it.
fn now() -> sluice_model::exception::Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    sluice_model::exception::Timestamp::from_unix(d.as_secs() as i64, d.subsec_nanos())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_show_holders_queues_kept_locks_degraded_stacks_and_terraform_locks() {
    use sluice_model::apply::{
        ApplyErrorClass, Degradation, EngineReport, ResourcesChanged, StackHealth,
    };
    use sluice_model::lock::Acquired;
    use sluice_model::redact::RedactionRules;
    use sluice_store::{BackendLockRecord, LockStore as _, ReleaseStore as _, StateStore as _};
    let (repo, _, _) = org_with_pushes(0);
    let server = Server::start(repo.path(), 0).await;
    let store = &server.app.store;
    let token = store.create_token(Scope::Read, "t").await.unwrap().token;
    let (status, _) = server.get("/api/v1/locks", None).await;
    assert_eq!(status, 401);
    let (status, body) = server.get("/api/v1/locks", Some(&token)).await;
    assert_eq!((status, body.as_str()), (200, "[]"));

    // `a`: held by PR 1 (with Terraform's lock on its state), PR 2 waiting.
    let lease = Duration::from_secs(600);
    let Ok(Acquired::Granted { token: a_token, .. }) = store
        .acquire("dev/eu-west-1/a", "acme/live#1", now(), lease)
        .await
        .unwrap()
    else {
        panic!("the first acquirer holds the lock")
    };
    let queued = store
        .acquire("dev/eu-west-1/a", "acme/live#2", now(), lease)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(queued, Acquired::Queued { position: 1, .. }));
    let info = serde_json::json!({"ID": "6f1c-lock", "Operation": "OperationTypeApply",
        "Who": "runner@ci", "Version": "1.11.4", "Path": "dev/eu-west-1/a"});
    store
        .put_backend_lock(&BackendLockRecord {
            unit: "dev/eu-west-1/a".into(),
            lock_id: "6f1c-lock".into(),
            change: "acme/live#1".into(),
            fencing_token: a_token.0,
            info: info.clone(),
            created_at: 1,
        })
        .await
        .unwrap();
    // `b`: PR 3's apply failed: the lock is kept and the stack degraded, the engine's output
    // (with a secret in it) redacted.
    let Ok(Acquired::Granted { token: b_token, .. }) = store
        .acquire("dev/eu-west-1/b", "acme/live#3", now(), lease)
        .await
        .unwrap()
    else {
        panic!("b is free")
    };
    store
        .begin_apply("dev/eu-west-1/b", b_token, now())
        .await
        .unwrap()
        .unwrap();
    sluice_store::LockStore::fail(store, "dev/eu-west-1/b", b_token, now())
        .await
        .unwrap()
        .unwrap();
    let degradation = Degradation::new(
        "acme/live#3@abc/dev/dev/eu-west-1/b",
        b_token,
        now(),
        EngineReport {
            changed: ResourcesChanged::Unknown,
            error: ApplyErrorClass::Provider,
            output: "Error: creating bucket: password=hunter2-canary denied".into(),
        },
        &RedactionRules::default(),
    );
    store
        .set_health("dev/eu-west-1/b", &StackHealth::Degraded { degradation })
        .await
        .unwrap();

    let (status, body) = server.get("/api/v1/locks", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("hunter2-canary"), "{body}");
    let locks: Value = serde_json::from_str(&body).unwrap();
    let locks = locks.as_array().unwrap();
    assert_eq!(locks.len(), 2, "{body}");
    let a = &locks[0];
    assert_eq!(a["unit"], "dev/eu-west-1/a");
    assert_eq!(a["holder"], "acme/live#1");
    assert_eq!(a["fencing_token"], a_token.0);
    assert_eq!(a["last_token"], a_token.0);
    assert_eq!(a["tenure"], "leased");
    assert!(
        a["lease_expires_at"].as_str().unwrap().ends_with('Z'),
        "{a}"
    );
    assert_eq!(a["queue"].as_array().unwrap().len(), 1);
    assert_eq!(a["queue"][0]["change"], "acme/live#2");
    assert_eq!(a["health"]["health"], "healthy");
    assert_eq!(a["terraform_lock"]["lock_id"], "6f1c-lock");
    assert_eq!(a["terraform_lock"]["info"], info);
    let b = &locks[1];
    assert_eq!(b["unit"], "dev/eu-west-1/b");
    assert_eq!(b["holder"], "acme/live#3");
    assert_eq!(b["tenure"], "kept");
    assert_eq!(b["kept_cause"], "failed");
    assert_eq!(b["lease_expires_at"], Value::Null);
    assert_eq!(b["health"]["health"], "degraded");
    assert_eq!(b["health"]["degradation"]["error"], "provider", "{b}");
    assert_eq!(b["terraform_lock"], Value::Null);
    server.stop().await;
}
