//! The demo's PR #412 through the apps part of the pipeline: the payments image bump in prod
//! shows as a rendered diff with the image change old → new, is judged by the Kubernetes
//! policy pack, is a production image change (R2) and needs its CODEOWNERS. A planted
//! plaintext Secret is then reported by validation-independent policy without its value.

use std::collections::BTreeMap;

use sluice_demo::demo;
use sluice_flow::apps::{self, AppStatus, AppsInput};
use sluice_flow::{affected, workspace};
use sluice_model::change::ChangeId;
use sluice_model::exception::Timestamp;
use sluice_model::risk::RiskLevel;
use sluice_policy::{Decision, Outcome};
use sluice_render::render;

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-01T00:00:00Z").unwrap()
}

fn kustomize_available() -> bool {
    sluice_render::tool::kustomize(None).is_ok()
}

struct Run {
    decisions: Vec<apps::AppDecision>,
}

fn run(dir: &std::path::Path, base: &str, head: &str) -> Run {
    let analysis = affected::run(dir, base, head).unwrap();
    let repo = workspace::open(dir).unwrap();
    let (base_snap, head_rev) = workspace::change(&repo, base, head).unwrap();
    let base_config =
        workspace::load_config(&base_snap, base).unwrap_or_else(|_| head_rev.config.clone());
    let setup = sluice_policy::from_revision(&head_rev.snapshot, &head_rev.config, now()).unwrap();
    let owners: BTreeMap<String, Vec<String>> = analysis
        .org
        .apps
        .iter()
        .map(|a| (a.id.clone(), a.owners.clone()))
        .collect();
    let changed: Vec<String> = analysis.changes.iter().map(|c| c.path.clone()).collect();
    let change_ids: BTreeMap<String, ChangeId> = analysis
        .report
        .apps
        .iter()
        .map(|u| {
            (
                u.id.clone(),
                ChangeId {
                    repo: "env-gitops".into(),
                    pr: Some(412),
                    commit: analysis.report.head.clone(),
                    env: u.env.clone().unwrap_or_else(|| "-".into()),
                    unit: u.id.clone(),
                },
            )
        })
        .collect();
    let decisions = apps::decide_apps(&AppsInput {
        base: &base_snap,
        base_config: &base_config,
        head: &head_rev.snapshot,
        config: &head_rev.config,
        apps: &analysis.report.apps,
        owners: &owners,
        codeowners: &analysis.org.codeowners,
        changed_paths: &changed,
        engine: Some(&setup.engine),
        change_ids: &change_ids,
        render_options: render::Options::default(),
        strict: false,
    });
    Run { decisions }
}

#[test]
fn demo_payments_image_bump_is_an_app_decision() {
    if !kustomize_available() {
        eprintln!("notice: neither kustomize nor kubectl on PATH; skipping the demo apps test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let built = demo::build(&dir.path().join("org")).unwrap();
    let r = run(&built.dir, &built.base, &built.head);
    assert_eq!(r.decisions.len(), 1);
    let p = &r.decisions[0];
    assert_eq!(p.app, "prod-ap-southeast-1/payments");
    assert!(p.production);
    assert!(
        matches!(p.render.base, apps::RenderState::Rendered { .. }),
        "{:?}",
        p.render.base
    );
    assert!(
        matches!(p.render.head, apps::RenderState::Rendered { .. }),
        "{:?}",
        p.render.head
    );
    let v = p.validation.as_ref().unwrap();
    assert_eq!(v.errors, 0, "{:?}", v.findings);

    // The image change, old → new, and nothing else changed.
    assert_eq!((p.diff.added, p.diff.removed, p.diff.changed), (0, 0, 1));
    assert_eq!(p.diff.images.len(), 1, "{:?}", p.diff.images);
    let img = &p.diff.images[0];
    let old = img.old.as_deref().unwrap();
    let new = img.new.as_deref().unwrap();
    assert!(old.contains(demo::org::PAYMENTS_DIGEST_OLD), "{old}");
    assert!(new.contains(demo::org::PAYMENTS_DIGEST_NEW), "{new}");

    // Manifest policy over the head: pinned digests, probes and resources pass; the app
    // ships no NetworkPolicy (a warning), nothing denies.
    let policy = p.policy.as_ref().unwrap();
    assert_eq!(
        policy.record.outcome,
        Decision::Warn,
        "{:#?}",
        policy.record.results
    );
    let outcome = |rule: &str| {
        policy
            .record
            .results
            .iter()
            .filter(|r| r.rule == rule)
            .map(|r| r.outcome)
            .max()
            .unwrap()
    };
    assert_eq!(outcome("k8s-image-digest"), Outcome::Pass);
    assert_eq!(outcome("k8s-resources"), Outcome::Pass);
    assert_eq!(outcome("k8s-probes"), Outcome::Pass);
    assert_eq!(outcome("k8s-network-policy"), Outcome::Warn);
    assert_eq!(policy.decision_digest, policy.record.digest());

    // Risk R2 for the production image change; CODEOWNERS of the app folder approve.
    assert_eq!(p.risk.risk, RiskLevel::R2, "{:?}", p.risk);
    assert!(
        p.risk
            .reasons
            .iter()
            .any(|r| r.reason == "production image change")
    );
    assert!(
        p.approvals
            .iter()
            .any(|a| a.approvers.contains(&"@acme/payments".to_string())),
        "{:?}",
        p.approvals
    );
    assert_eq!(p.status, AppStatus::Ready);

    let md =
        sluice_report::apps::render_markdown(&r.decisions, sluice_policy::config::DEFAULT_DOCS_URL);
    if std::env::var("SLUICE_PRINT").is_ok() {
        println!("{md}");
    }
    assert!(
        md.contains("### App `prod-ap-southeast-1/payments`"),
        "{md}"
    );
    assert!(md.contains("→"), "{md}");
    assert!(md.contains("k8s-network-policy"), "{md}");
    assert!(md.contains("<details>"), "{md}");
    assert!(md.contains("production image change"), "{md}");
    let json = serde_json::to_string(&r.decisions).unwrap();
    assert!(json.contains(demo::org::PAYMENTS_DIGEST_NEW));
}

#[test]
fn a_planted_plaintext_secret_is_denied_without_its_value() {
    if !kustomize_available() {
        eprintln!("notice: neither kustomize nor kubectl on PATH; skipping");
        return;
    }
    const CANARY: &str = "s3cr3t-canary-5d1e";
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("org");
    let main = demo::org::main_tree();
    let mut pr = main.clone();
    let app = "env-gitops/clusters/dev-ap-southeast-1/apps/orders";
    let k = format!("{app}/kustomization.yaml");
    let text = String::from_utf8(pr[&k].clone()).unwrap();
    pr.insert(
        k,
        text.replace("resources:\n", "resources:\n  - secret.yaml\n")
            .into_bytes(),
    );
    // base64 of CANARY
    let encoded = "czNjcjN0LWNhbmFyeS01ZDFl".to_string();
    pr.insert(
        format!("{app}/secret.yaml"),
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: orders-db\ntype: Opaque\ndata:\n  password: {encoded}\nstringData:\n  token: {CANARY}\n").into_bytes(),
    );
    let writer = sluice_git::git_write::Writer::init(&root).unwrap();
    let author = sluice_git::git_write::Author {
        name: "t",
        email: "t@x",
        time: 1_800_000_000,
    };
    let c1 = writer.commit("main", &main, None, "main", &author).unwrap();
    let c2 = writer
        .commit("pr", &pr, Some(c1), "plant", &author)
        .unwrap();
    writer.checkout("main", c1, &main).unwrap();
    let r = run(&root, &c1.to_string(), &c2.to_string());
    // Stage 2 (validate) reports the planted Secret too, without its value.
    let repo = workspace::open(&root).unwrap();
    let head = workspace::revision(&repo, &c2.to_string()).unwrap();
    let org = head.discover();
    let scope = vec![format!("{app}/secret.yaml")];
    let validation = sluice_flow::validation::validate_snapshot(
        &head.snapshot,
        Some(c1.to_string()),
        &scope,
        Ok((&head.config, &org)),
    );
    let vtext = serde_json::to_string(&validation).unwrap();
    assert!(vtext.contains("secret.yaml"), "{vtext}");
    assert!(
        !vtext.contains(CANARY) && !vtext.contains(&encoded),
        "{vtext}"
    );
    let d = r
        .decisions
        .iter()
        .find(|d| d.app == "dev-ap-southeast-1/orders")
        .unwrap();
    let policy = d.policy.as_ref().unwrap();
    let secret = policy
        .record
        .results
        .iter()
        .find(|r| r.rule == "k8s-plaintext-secret" && r.outcome == Outcome::Deny)
        .unwrap_or_else(|| panic!("{:#?}", policy.record.results));
    assert_eq!(secret.resource.as_deref(), Some("Secret/orders/orders-db"));
    assert_eq!(d.status, AppStatus::Blocked);
    let everything = format!(
        "{}\n{}",
        serde_json::to_string(&r.decisions).unwrap(),
        sluice_report::apps::render_markdown(&r.decisions, sluice_policy::config::DEFAULT_DOCS_URL)
    );
    assert!(!everything.contains(CANARY), "the value leaked");
    assert!(!everything.contains(&encoded), "the encoded value leaked");
    assert!(everything.contains("data.password"));
}
