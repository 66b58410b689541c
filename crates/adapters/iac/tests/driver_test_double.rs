//! The engine driver against `tofu-test-double` (tests/support/tofu-test-double.sh), a test
//! double of the OpenTofu CLI that serves real plans from `../shared/corpus/tf-plans` and can
//! simulate each failure class. Stacks come from a real git repository written in the test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sluice_git::git::{GitRepo, Snapshot};
use sluice_iac::classify::{FailureClass, Step};
use sluice_iac::config::{EngineChoice, PlanConfig};
use sluice_iac::driver::{Driver, Outcome, StackPlan, StackSpec};
use sluice_iac::engine::EngineKind;
use sluice_iac::export::Input;
use sluice_iac::keys::{KeySource, LocalKeys, generate_key};
use sluice_iac::store::{Digest, FsPlanStore, PlanStore};
use sluice_model::plan::Plan;
use sluice_testkit::TestDoubleBin;

fn corpus_plan(rel: &str) -> Option<PathBuf> {
    sluice_testkit::corpus(&format!("tf-plans/{rel}"))
}

struct Fixture {
    _dir: sluice_testkit::Repo,
    snapshot: Snapshot,
    store_dir: tempfile::TempDir,
    work: tempfile::TempDir,
    log: PathBuf,
}

fn repo<S: AsRef<str>>(files: &[(S, String)]) -> Fixture {
    let (dir, commit) = sluice_testkit::Repo::with_files(files);
    let repo = Arc::new(GitRepo::open(dir.path()).unwrap());
    let snapshot = repo.snapshot(repo.resolve(&commit).unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("double.log");
    Fixture {
        _dir: dir,
        snapshot,
        store_dir: tempfile::tempdir().unwrap(),
        work,
        log,
    }
}

fn conf(plan: &Path, extra: &str) -> String {
    format!("plan_json={}\n{extra}", plan.display())
}

fn spec(id: &str, dir: &str, inputs: Vec<Input>) -> StackSpec {
    StackSpec {
        id: id.into(),
        dir: dir.into(),
        inputs,
    }
}

fn run(
    fx: &Fixture,
    bin: &TestDoubleBin,
    config: &PlanConfig,
    stacks: &[StackSpec],
) -> Vec<StackPlan> {
    let store = FsPlanStore::with_keys(fx.store_dir.path(), test_keys());
    let driver = Driver {
        config,
        store: &store,
        rules: config.redaction_rules(),
        path_var: Some(bin.path_var()),
        engine_env: None,
        work_root: fx.work.path().join("work"),
        plugin_cache: fx.work.path().join("plugin-cache"),
    };
    let _guard = LogGuard::set(&fx.log);
    driver.plan_stacks(&fx.snapshot, stacks)
}

/// Serialises tests that point the double's log at a file through the process environment.
struct LogGuard(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

impl LogGuard {
    fn set(path: &Path) -> LogGuard {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: every test that touches TEST_DOUBLE_LOG holds LOCK while it runs the driver.
        unsafe { std::env::set_var("TEST_DOUBLE_LOG", path) };
        LogGuard(g)
    }
}

fn planned(r: &StackPlan) -> &sluice_iac::driver::Planned {
    match &r.outcome {
        Outcome::Planned(p) => p,
        Outcome::Failed(f) => panic!("{} failed: {f:?}", r.stack),
    }
}

fn failed(r: &StackPlan) -> &sluice_iac::driver::PlanFailure {
    match &r.outcome {
        Outcome::Failed(f) => f,
        Outcome::Planned(_) => panic!("{} planned but should have failed", r.stack),
    }
}

#[test]
fn plans_stacks_in_parallel_with_serialised_init_and_stores_secrets() {
    let plans = [
        "terraform-json/testdata/action_reason/plan.json",
        "terraform-json/testdata/moved_block/plan.json",
        "checkov/tests/terraform/runner/resources/plan_with_iam_policies/tfplan.json",
        "terraform-json/testdata/no_changes/plan.json",
    ];
    let Some(paths) = plans
        .iter()
        .map(|p| corpus_plan(p))
        .collect::<Option<Vec<_>>>()
    else {
        return;
    };
    let mut files = vec![("modules/db/main.tf".to_string(), "# module".to_string())];
    let names = ["a", "b", "c", "d"];
    let dirs: Vec<String> = names.iter().map(|n| format!("live/prod/{n}")).collect();
    for (i, d) in dirs.iter().enumerate() {
        let extra = if i == 3 {
            "exit=0\n"
        } else {
            "require=../../../modules/db/main.tf\n"
        };
        files.push((format!("{d}/tofu-double.conf"), conf(&paths[i], extra)));
        files.push((
            format!("{d}/main.tf"),
            "module \"db\" { source = \"../../../modules/db\" }\n".into(),
        ));
    }
    let fx = repo(&files);
    let bin = TestDoubleBin::new(&["tofu"]);
    let config = PlanConfig {
        parallelism: 4,
        ..PlanConfig::default()
    };
    let module = Input {
        path: "modules/db".into(),
        is_dir: true,
    };
    let stacks: Vec<StackSpec> = names
        .iter()
        .zip(&dirs)
        .map(|(n, d)| spec(&format!("prod/{n}"), d, vec![module.clone()]))
        .collect();
    let results = run(&fx, &bin, &config, &stacks);
    assert_eq!(results.len(), 4);
    let store = FsPlanStore::with_keys(fx.store_dir.path(), test_keys());
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.stack, stacks[i].id, "results keep the input order");
        let p = planned(r);
        let engine = r.engine.as_ref().unwrap();
        assert_eq!(engine.kind, EngineKind::Tofu);
        assert_eq!(engine.version, "1.8.5-test-double");
        assert_eq!(p.exit_code, Some(if i == 3 { 0 } else { 2 }));
        // The stored plan JSON is the engine's output, byte for byte; the plan digest is the
        // plan file's.
        let corpus_bytes = std::fs::read(&paths[i]).unwrap();
        assert_eq!(p.plan_json, Digest::of(&corpus_bytes));
        assert_eq!(store.get(&p.plan_json).unwrap().unwrap(), corpus_bytes);
        assert_eq!(Some(&p.plan_digest), p.plan_file.as_ref());
        let blob = store.blob_path(&p.plan_digest);
        assert_eq!(
            std::fs::metadata(&blob).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let expect = Plan::parse("x", &corpus_bytes).unwrap().summary();
        assert_eq!(p.summary.counts, expect.counts);
        assert_eq!(p.summary.moved, expect.moved);
        assert_eq!(p.summary.has_changes, expect.has_changes);
    }

    // init never overlapped (one cache, one init at a time); plans did run in parallel
    // with each other (not asserted: timing), and every stack ran in its own directory.
    let log = std::fs::read_to_string(&fx.log).unwrap();
    let mut open = 0;
    let mut dirs_seen = std::collections::BTreeSet::new();
    for line in log.lines() {
        let mut parts = line.split(' ');
        let event = parts.next().unwrap();
        let _pid = parts.next();
        let cwd = parts.next().unwrap();
        match event {
            "init-start" => {
                open += 1;
                assert_eq!(open, 1, "two inits overlapped:\n{log}");
                dirs_seen.insert(cwd.to_string());
            }
            "init-end" => open -= 1,
            _ => {}
        }
    }
    assert_eq!(
        dirs_seen.len(),
        4,
        "each stack has its own work dir:\n{log}"
    );
    assert!(log.lines().filter(|l| l.starts_with("plan ")).all(
        |l| l.contains("-detailed-exitcode") && l.contains("-input=false") && l.contains("-out=")
    ));
    // Work directories (with the plan files in them) are gone after the run.
    let left: Vec<_> = std::fs::read_dir(fx.work.path().join("work"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn each_failure_class_is_recognised_with_a_redacted_excerpt() {
    let Some(plan) = corpus_plan("terraform-json/testdata/action_reason/plan.json") else {
        return;
    };
    let canary = "CANARY-7f3e9d-secret";
    let cases = [
        ("init-provider", FailureClass::InitProvider, Step::Init),
        ("module", FailureClass::Module, Step::Init),
        ("init-auth", FailureClass::Auth, Step::Init),
        ("auth", FailureClass::Auth, Step::Plan),
        ("state-lock", FailureClass::StateLock, Step::Plan),
        ("plan", FailureClass::Plan, Step::Plan),
        ("show", FailureClass::Plan, Step::Show),
    ];
    let mut files = Vec::new();
    let mut stacks = Vec::new();
    for (fail, _, _) in &cases {
        let dir = format!("live/dev/{fail}");
        files.push((
            format!("{dir}/tofu-double.conf"),
            conf(
                &plan,
                &format!("fail={fail}\nstderr=  db_password = \"{canary}\" (from tfvars)\n"),
            ),
        ));
        files.push((format!("{dir}/main.tf"), "# stack\n".into()));
        stacks.push(spec(&format!("dev/{fail}"), &dir, vec![]));
    }
    let fx = repo(&files);
    let bin = TestDoubleBin::new(&["tofu"]);
    let results = run(&fx, &bin, &PlanConfig::default(), &stacks);
    for ((fail, class, step), r) in cases.iter().zip(&results) {
        let f = failed(r);
        assert_eq!((f.class, f.step), (*class, *step), "{fail}: {f:?}");
        assert_eq!(f.exit_code, Some(1), "{fail}");
        assert!(!f.stderr_excerpt.is_empty(), "{fail}");
        let shown = serde_json::to_string(r).unwrap();
        assert!(!shown.contains(canary), "{fail}: {shown}");
        assert!(!format!("{r:?}").contains(canary), "{fail}");
    }
    // The excerpt keeps what helps: the error line and the lock holder.
    let lock = failed(&results[4]);
    assert!(
        lock.stderr_excerpt
            .iter()
            .any(|l| l == "Error: Error acquiring the state lock")
    );
    assert!(
        lock.stderr_excerpt
            .iter()
            .any(|l| l.contains("Who:       ci@runner-7"))
    );
}

#[test]
fn engine_missing_and_configured_engine_missing() {
    let fx = repo(&[("live/a/main.tf", "# a\n".into())]);
    let empty = TestDoubleBin::new(&[]);
    let stacks = [spec("a", "live/a", vec![])];
    let r = run(&fx, &empty, &PlanConfig::default(), &stacks);
    let f = failed(&r[0]);
    assert_eq!(f.class, FailureClass::EngineMissing);
    assert_eq!(
        f.message,
        "engine missing: tofu or terraform not found on PATH; install OpenTofu or Terraform, or set plan.engine"
    );
    let tofu_only = TestDoubleBin::new(&["tofu"]);
    let config = PlanConfig {
        engine: EngineChoice::Terraform,
        ..PlanConfig::default()
    };
    let r = run(&fx, &tofu_only, &config, &stacks);
    assert!(
        failed(&r[0])
            .message
            .contains("terraform not found on PATH (plan.engine")
    );
}

#[test]
fn auto_prefers_tofu_and_terraform_is_used_when_alone() {
    let Some(plan) = corpus_plan("terraform-json/testdata/moved_block/plan.json") else {
        return;
    };
    let fx = repo(&[
        ("live/a/main.tf", "# a\n".into()),
        ("live/a/tofu-double.conf", conf(&plan, "")),
    ]);
    let stacks = [spec("a", "live/a", vec![])];
    let both = TestDoubleBin::new(&["tofu", "terraform"]);
    let r = run(&fx, &both, &PlanConfig::default(), &stacks);
    assert_eq!(r[0].engine.as_ref().unwrap().kind, EngineKind::Tofu);
    let tf = TestDoubleBin::new(&["terraform"]);
    let r = run(&fx, &tf, &PlanConfig::default(), &stacks);
    assert_eq!(r[0].engine.as_ref().unwrap().kind, EngineKind::Terraform);
    planned(&r[0]);
}

#[test]
fn terragrunt_stacks_need_terragrunt() {
    let Some(plan) = corpus_plan("terraform-json/testdata/moved_block/plan.json") else {
        return;
    };
    let fx = repo(&[
        ("live/root.hcl", "# root\n".into()),
        (
            "live/tg/terragrunt.hcl",
            "include \"root\" { path = find_in_parent_folders(\"root.hcl\") }\n".into(),
        ),
        (
            "live/tg/tofu-double.conf",
            conf(&plan, "require=../root.hcl\n"),
        ),
    ]);
    let inputs = vec![Input {
        path: "live/root.hcl".into(),
        is_dir: false,
    }];
    let stacks = [spec("tg", "live/tg", inputs)];
    let without = TestDoubleBin::new(&["tofu"]);
    let r = run(&fx, &without, &PlanConfig::default(), &stacks);
    let f = failed(&r[0]);
    assert_eq!(f.class, FailureClass::EngineMissing);
    assert!(f.message.contains("terragrunt"), "{}", f.message);

    let with = TestDoubleBin::new(&["tofu", "terragrunt"]);
    let r = run(&fx, &with, &PlanConfig::default(), &stacks);
    planned(&r[0]);
    let e = r[0].engine.as_ref().unwrap();
    assert_eq!(e.terragrunt.as_deref(), Some("0.67.16-test-double"));
    let log = std::fs::read_to_string(&fx.log).unwrap();
    assert!(log.contains("init-start"), "{log}");
}

#[test]
fn a_hanging_engine_times_out() {
    let Some(plan) = corpus_plan("terraform-json/testdata/moved_block/plan.json") else {
        return;
    };
    let fx = repo(&[
        ("live/slow/main.tf", "# slow\n".into()),
        ("live/slow/tofu-double.conf", conf(&plan, "fail=hang\n")),
    ]);
    let config = PlanConfig {
        timeout: Duration::from_secs(1),
        ..PlanConfig::default()
    };
    let bin = TestDoubleBin::new(&["tofu"]);
    let r = run(&fx, &bin, &config, &[spec("slow", "live/slow", vec![])]);
    let f = failed(&r[0]);
    assert_eq!((f.class, f.step), (FailureClass::Timeout, Step::Plan));
    assert_eq!(
        f.exit_code,
        Some(130),
        "interrupted first, so the engine could unlock"
    );
    assert!(
        f.stderr_excerpt
            .iter()
            .any(|l| l.contains("Gracefully shutting down"))
    );
}

#[test]
fn missing_module_input_fails_as_module() {
    let Some(plan) = corpus_plan("terraform-json/testdata/moved_block/plan.json") else {
        return;
    };
    // The stack needs ../../modules/x but the spec does not list it: the export leaves it out
    // and the engine says so.
    let fx = repo(&[
        ("modules/x/main.tf", "# x\n".into()),
        (
            "live/a/main.tf",
            "module \"x\" { source = \"../../modules/x\" }\n".into(),
        ),
        (
            "live/a/tofu-double.conf",
            conf(&plan, "require=../../modules/x/main.tf\n"),
        ),
    ]);
    let bin = TestDoubleBin::new(&["tofu"]);
    let r = run(
        &fx,
        &bin,
        &PlanConfig::default(),
        &[spec("a", "live/a", vec![])],
    );
    assert_eq!(failed(&r[0]).class, FailureClass::Module);
    let r = run(
        &fx,
        &bin,
        &PlanConfig::default(),
        &[spec(
            "a",
            "live/a",
            vec![Input {
                path: "modules/x".into(),
                is_dir: true,
            }],
        )],
    );
    planned(&r[0]);
}

#[test]
fn a_stack_missing_at_the_revision_is_an_internal_failure() {
    let fx = repo(&[("live/a/main.tf", "# a\n".into())]);
    let bin = TestDoubleBin::new(&["tofu"]);
    let r = run(
        &fx,
        &bin,
        &PlanConfig::default(),
        &[spec("gone", "live/gone", vec![])],
    );
    let f = failed(&r[0]);
    assert_eq!((f.class, f.step), (FailureClass::Internal, Step::Export));
}

/// One key for this test binary, so that no test touches the user's default key file.
fn test_keys() -> std::sync::Arc<LocalKeys> {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| generate_key().unwrap());
    std::sync::Arc::new(LocalKeys::new(KeySource::Inline(key.clone())))
}
