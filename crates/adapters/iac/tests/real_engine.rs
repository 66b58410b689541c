//! The driver with the real engine: `terraform` must be on PATH (skipped with a notice
//! otherwise, a failure under `SLUICE_REQUIRE_TERRAFORM=1`); the driver may pick `tofu` first. The stacks use only the built-in `terraform_data` resource, so `init` needs no
//! network and `plan` no credentials.

use std::sync::Arc;

use sluice_git::git::GitRepo;
use sluice_iac::classify::{FailureClass, Step};
use sluice_iac::config::PlanConfig;
use sluice_iac::driver::{Driver, Outcome, StackSpec};
use sluice_iac::keys::{KeySource, LocalKeys, generate_key};
use sluice_iac::store::{FsPlanStore, PlanStore};
use sluice_model::plan::Action;
use sluice_model::redact::{RedactionRules, redact_plan};

const CANARY: &str = "CANARY-real-engine-4b1d";

#[test]
fn real_engine_plans_redacts_and_classifies() {
    let Some(_terraform) = sluice_testkit::terraform() else {
        return;
    };
    let main_tf = format!(
        r#"
variable "db_password" {{
  type      = string
  sensitive = true
  default   = "{CANARY}"
}}

resource "terraform_data" "db" {{
  input = {{
    name     = "payments"
    password = var.db_password
  }}
}}

resource "terraform_data" "plain" {{
  input = "postgres://app:{CANARY}@db.internal:5432/payments"
}}

output "password" {{
  value     = var.db_password
  sensitive = true
}}
"#
    );
    let broken = "resource \"terraform_data\" \"x\" {\n  no_such_argument = 1\n}\n";
    let (dir, commit) = sluice_testkit::Repo::with_files(&[
        ("live/dev/data/main.tf", main_tf.as_str()),
        ("live/dev/broken/main.tf", broken),
    ]);
    let repo = Arc::new(GitRepo::open(dir.path()).unwrap());
    let snapshot = repo.snapshot(repo.resolve(&commit).unwrap()).unwrap();

    let store_dir = tempfile::tempdir().unwrap();
    let store = FsPlanStore::with_keys(store_dir.path(), test_keys());
    let config = PlanConfig::default();
    let driver = Driver {
        config: &config,
        store: &store,
        rules: RedactionRules::default(),
        path_var: None,
        engine_env: None,
        work_root: store_dir.path().join("work"),
        plugin_cache: store_dir.path().join("plugin-cache"),
    };
    let stacks = [
        StackSpec {
            id: "dev/data".into(),
            dir: "live/dev/data".into(),
            inputs: vec![],
        },
        StackSpec {
            id: "dev/broken".into(),
            dir: "live/dev/broken".into(),
            inputs: vec![],
        },
    ];
    let results = driver.plan_stacks(&snapshot, &stacks);

    let Outcome::Planned(p) = &results[0].outcome else {
        panic!("{:?}", results[0]);
    };
    assert_eq!(p.exit_code, Some(2));
    assert_eq!(p.summary.counts.get(Action::Create), 2);
    assert!(
        p.summary
            .outputs
            .iter()
            .any(|o| o.name == "password" && o.sensitive)
    );
    // The stored plan JSON is the real engine's output, secrets included (that is why it is
    // stored 0600); everything rendered from it is not.
    let raw = store.get(&p.plan_json).unwrap().unwrap();
    assert!(String::from_utf8_lossy(&raw).contains(CANARY));
    assert!(store.get(&p.plan_file.clone().unwrap()).unwrap().is_some());
    let rendered = format!(
        "{}{}{}{:?}",
        serde_json::to_string(&results[0]).unwrap(),
        serde_json::to_string(&redact_plan(&p.plan, &RedactionRules::default())).unwrap(),
        p.summary.render_text(),
        results[0]
    );
    assert!(!rendered.contains(CANARY), "{rendered}");

    let Outcome::Failed(f) = &results[1].outcome else {
        panic!("broken stack planned: {:?}", results[1]);
    };
    assert_eq!((f.class, f.step), (FailureClass::Plan, Step::Plan), "{f:?}");
    assert_eq!(f.exit_code, Some(1));
    assert!(
        f.stderr_excerpt
            .iter()
            .any(|l| l.contains("Unsupported argument")),
        "{f:?}"
    );
}

/// One key for this test binary, so that no test touches the user's default key file.
fn test_keys() -> std::sync::Arc<LocalKeys> {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| generate_key().unwrap());
    std::sync::Arc::new(LocalKeys::new(KeySource::Inline(key.clone())))
}

/// A saved plan of a `terraform_data` stack with a local backend names no provider and its
/// state file, so the apply runs in a fresh, never initialised directory and reads the state
/// itself; a plan that needs a provider, or a state the engine must pull, still initialises.
#[test]
fn saved_plans_tell_what_an_apply_needs() {
    use sluice_iac::apply::{ApplyEngine, EngineEnd};
    use sluice_iac::planfile::PlanFacts;
    let Some(terraform) = sluice_testkit::terraform() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state/terraform.tfstate");
    let planned = work.path().join("planned");
    std::fs::create_dir_all(&planned).unwrap();
    let tf = |value: &str| {
        format!(
            "terraform {{\n  backend \"local\" {{\n    path = \"{}\"\n  }}\n}}\nresource \"terraform_data\" \"a\" {{\n  input = \"{value}\"\n}}\noutput \"v\" {{\n  value = terraform_data.a.output\n}}\n",
            state.display()
        )
    };
    let run = |dir: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(&terraform)
            .args(args)
            .current_dir(dir)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(planned.join("main.tf"), tf("one")).unwrap();
    run(&planned, &["init", "-input=false"]);
    run(&planned, &["plan", "-input=false", "-out=one.tfplan"]);
    let bytes = std::fs::read(planned.join("one.tfplan")).unwrap();
    let facts = PlanFacts::read(&bytes);
    assert_eq!(facts.providers, Some(vec![]), "{facts:?}");
    assert_eq!(facts.prior, None, "no state yet: {facts:?}");
    let fresh = work.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    assert_eq!(facts.local_state_file(&fresh), Some(state.clone()));
    assert!(!facts.needs_init(&fresh));

    // Applied from a directory holding only the configuration and the plan.
    std::fs::write(fresh.join("main.tf"), tf("one")).unwrap();
    std::fs::copy(planned.join("one.tfplan"), fresh.join("one.tfplan")).unwrap();
    let engine = ApplyEngine {
        engine: sluice_iac::engine::detect(
            sluice_iac::config::EngineChoice::Terraform,
            None,
            std::time::Duration::from_secs(60),
        )
        .unwrap(),
        path_var: None,
        plugin_cache: work.path().join("plugin-cache"),
        timeout: std::time::Duration::from_secs(60),
    };
    let applied = engine
        .apply(&fresh, &fresh.join("one.tfplan"), &facts)
        .unwrap();
    assert_eq!(applied.end, EngineEnd::Applied, "{}", applied.output);
    assert!(!fresh.join(".terraform").exists(), "never initialised");
    assert_eq!(applied.before, None);
    let after = applied.after.expect("the state file was read");
    assert!(after.serial >= 1);

    // The next plan was made against that state: its prior state is the one just written.
    std::fs::write(planned.join("main.tf"), tf("two")).unwrap();
    run(&planned, &["plan", "-input=false", "-out=two.tfplan"]);
    let two = PlanFacts::read(&std::fs::read(planned.join("two.tfplan")).unwrap());
    let prior = two.prior.expect("a prior state");
    assert_eq!(
        (prior.serial, &prior.lineage),
        (after.serial, &after.lineage)
    );
}
