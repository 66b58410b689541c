//! The driver with a real `tofu` or `terraform` when one is on PATH (skipped with a notice
//! otherwise). The stacks use only the built-in `terraform_data` resource, so `init` needs no
//! network and `plan` no credentials.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_git::git::GitRepo;
use sluice_git::git_write::{Author, Writer};
use sluice_iac::classify::{FailureClass, Step};
use sluice_iac::config::PlanConfig;
use sluice_iac::driver::{Driver, Outcome, StackSpec};
use sluice_iac::engine;
use sluice_iac::store::{FsPlanStore, PlanStore};
use sluice_model::plan::Action;
use sluice_model::redact::{RedactionRules, redact_plan};

const CANARY: &str = "CANARY-real-engine-4b1d";

#[test]
fn real_engine_plans_redacts_and_classifies() {
    let found = ["tofu", "terraform"]
        .iter()
        .find_map(|n| engine::find_on_path(n, None));
    if found.is_none() {
        eprintln!("notice: neither tofu nor terraform on PATH; real-engine test skipped");
        return;
    }
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
    let files: BTreeMap<String, Vec<u8>> = [
        ("live/dev/data/main.tf".to_string(), main_tf.into_bytes()),
        (
            "live/dev/broken/main.tf".to_string(),
            b"resource \"terraform_data\" \"x\" {\n  no_such_argument = 1\n}\n".to_vec(),
        ),
    ]
    .into_iter()
    .collect();
    let dir = tempfile::tempdir().unwrap();
    Writer::init(dir.path())
        .unwrap()
        .commit(
            "main",
            &files,
            None,
            "stacks",
            &Author {
                name: "t",
                email: "t@t",
                time: 1_767_225_600,
            },
        )
        .unwrap();
    let repo = Arc::new(GitRepo::open(dir.path()).unwrap());
    let snapshot = repo.snapshot(repo.resolve("main").unwrap()).unwrap();

    let store_dir = tempfile::tempdir().unwrap();
    let store = FsPlanStore::new(store_dir.path());
    let config = PlanConfig::default();
    let driver = Driver {
        config: &config,
        store: &store,
        rules: RedactionRules::default(),
        path_var: None,
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
