//! Planning stacks: per stack an isolated export of the head revision, `init`, `plan -out`,
//! `show -json`, then the plan file and its JSON stored as secrets; stacks run in parallel up
//! to `plan.parallelism`.
//!
//! Provider cache: every stack shares one plugin cache (`TF_PLUGIN_CACHE_DIR`), so providers
//! are downloaded once per machine rather than once per stack. Terraform documents the cache
//! as unsafe for concurrent `init` (two inits may write the same package at once), so `init`
//! takes an exclusive file lock on `<cache>/.sluice-init.lock` — serialised per cache, across
//! threads and across sluice processes on the same runner — while `plan` and `show`, which
//! only read the cache, run in parallel. Giving each worker its own cache instead would be
//! safe too, but would download every provider N times; init is short next to plan, so the
//! lock costs little.
//!
//! Terragrunt stacks (a `terragrunt.hcl` in the stack directory) run through `terragrunt`
//! with the chosen engine as its `TG_TF_PATH`; without `terragrunt` on PATH they fail as
//! "engine missing: terragrunt".

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::Serialize;
use sluice_model::plan::{Plan, PlanSummary};
use sluice_model::redact::RedactionRules;
use sluice_model::tree::Tree;

use crate::classify::{self, FailureClass, Step};
use crate::config::PlanConfig;
use crate::engine::{self, Engine, EngineError, EngineKind};
use crate::export::{self, Input};
use crate::process;
use crate::store::{Digest, PlanStore};

/// One stack to plan.
#[derive(Debug, Clone)]
pub struct StackSpec {
    pub id: String,
    /// Repo-relative directory.
    pub dir: String,
    pub inputs: Vec<Input>,
}

/// The engine that ran (or would have run) a stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineUsed {
    pub kind: EngineKind,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terragrunt: Option<String>,
}

impl EngineUsed {
    /// How reports name it: `terraform 1.11.4`, or `tofu 1.9.0 via terragrunt 0.77.0`.
    pub fn label(&self) -> String {
        match &self.terragrunt {
            Some(tg) => format!(
                "{} {} via terragrunt {tg}",
                self.kind.program(),
                self.version
            ),
            None => format!("{} {}", self.kind.program(), self.version),
        }
    }
}

/// A stack planned successfully.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    /// The plan's identity for approvals: the plan file's digest, or the plan JSON's when no
    /// plan file exists (an ingested JSON-only plan).
    pub plan_digest: Digest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_file: Option<Digest>,
    pub plan_json: Digest,
    /// `plan -detailed-exitcode`: 0 no changes, 2 changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub summary: PlanSummary,
    /// The parsed plan for later stages (not rendered: see `sluice_model::redact`).
    #[serde(skip)]
    pub plan: Plan,
}

/// A stack that could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanFailure {
    pub class: FailureClass,
    pub step: Step,
    pub message: String,
    pub hint: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Last lines of stderr, redacted.
    pub stderr_excerpt: Vec<String>,
}

impl PlanFailure {
    fn new(class: FailureClass, step: Step, message: impl Into<String>) -> Self {
        PlanFailure {
            class,
            step,
            message: message.into(),
            hint: class.hint(),
            exit_code: None,
            stderr_excerpt: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Planned(Planned),
    Failed(PlanFailure),
}

/// The result for one stack.
#[derive(Debug, Clone, Serialize)]
pub struct StackPlan {
    pub stack: String,
    pub dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineUsed>,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl StackPlan {
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_))
    }
}

/// Everything a planning run needs besides the stacks.
pub struct Driver<'a> {
    pub config: &'a PlanConfig,
    pub store: &'a dyn PlanStore,
    pub rules: RedactionRules,
    /// PATH for finding and running engines; `None` uses the process's PATH.
    pub path_var: Option<OsString>,
    /// The engine's whole environment, when the caller decides it (a runner hands the engine
    /// the unit's cloud role and nothing long-lived: `sluice_identity::engine_env`); `None`
    /// inherits this process's. `path_var` and the variables set here still apply on top.
    pub engine_env: Option<std::collections::BTreeMap<String, String>>,
    /// Where stacks are exported; a fresh temporary directory (0700) per stack under it.
    pub work_root: PathBuf,
    /// Shared provider plugin cache.
    pub plugin_cache: PathBuf,
}

struct Engines {
    main: Result<Engine, EngineError>,
    terragrunt: Option<Engine>,
}

impl Driver<'_> {
    /// Remove the work root once every stack's own folder is gone (call it after
    /// [`Driver::plan_stacks`]). It may never have been made, which is fine; any other failure
    /// is returned as a warning naming the folder: a folder left behind is clutter the user
    /// should hear about, not a failed plan.
    pub fn remove_work_root(&self) -> Option<String> {
        match std::fs::remove_dir(&self.work_root) {
            Ok(()) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(format!(
                "{}: the plan work folder could not be removed: {e}",
                self.work_root.display()
            )),
        }
    }

    /// Plan every stack; results in the order of `stacks`.
    pub fn plan_stacks(&self, tree: &dyn Tree, stacks: &[StackSpec]) -> Vec<StackPlan> {
        let path_var = self.path_var.as_deref();
        let engines = Engines {
            main: engine::detect(self.config.engine, path_var, self.config.timeout),
            terragrunt: if stacks.iter().any(|s| is_terragrunt(tree, &s.dir)) {
                engine::detect_terragrunt(path_var, self.config.timeout)
            } else {
                None
            },
        };
        // Export first, on this thread: git reads are cheap and the snapshot's object access
        // is per thread; the parallel part is the engine runs.
        let prepared: Vec<_> = stacks.iter().map(|s| (s, self.prepare(tree, s))).collect();
        let results: Mutex<Vec<Option<StackPlan>>> = Mutex::new(vec![None; stacks.len()]);
        let next = AtomicUsize::new(0);
        let workers = self.config.parallelism.clamp(1, stacks.len().max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((spec, prep)) = prepared.get(i) else {
                            break;
                        };
                        let result = self.run_stack(spec, prep, &engines);
                        results.lock().expect("results lock")[i] = Some(result);
                    }
                });
            }
        });
        results
            .into_inner()
            .expect("results lock")
            .into_iter()
            .map(|r| r.expect("every stack ran"))
            .collect()
    }

    fn prepare(&self, tree: &dyn Tree, spec: &StackSpec) -> Result<Prepared, PlanFailure> {
        let internal = |m: String| PlanFailure::new(FailureClass::Internal, Step::Export, m);
        std::fs::create_dir_all(&self.work_root)
            .map_err(|e| internal(format!("{}: {e}", self.work_root.display())))?;
        let work = tempfile::Builder::new()
            .prefix(&format!("stack-{}-", slug(&spec.id)))
            .tempdir_in(&self.work_root)
            .map_err(|e| internal(format!("{}: {e}", self.work_root.display())))?;
        let repo_root = work.path().join("repo");
        let (dir, _) = export::export_stack(tree, &spec.dir, &spec.inputs, &repo_root)
            .map_err(|e| internal(e.to_string()))?;
        let plan_file = work.path().join("plan.tfplan");
        Ok(Prepared {
            _work: work,
            dir,
            plan_file,
            terragrunt: is_terragrunt(tree, &spec.dir),
        })
    }

    fn run_stack(
        &self,
        spec: &StackSpec,
        prepared: &Result<Prepared, PlanFailure>,
        engines: &Engines,
    ) -> StackPlan {
        let started = Instant::now();
        let mut engine_used = None;
        let outcome = match prepared {
            Err(f) => Outcome::Failed(f.clone()),
            Ok(p) => match self.select(p.terragrunt, engines) {
                Err(f) => Outcome::Failed(f),
                Ok((main, tg)) => {
                    engine_used = Some(EngineUsed {
                        kind: main.kind,
                        version: main.version.clone(),
                        terragrunt: tg.map(|t| t.version.clone()),
                    });
                    match self.run_engine(spec, p, main, tg) {
                        Ok(planned) => Outcome::Planned(planned),
                        Err(f) => Outcome::Failed(f),
                    }
                }
            },
        };
        StackPlan {
            stack: spec.id.clone(),
            dir: spec.dir.clone(),
            engine: engine_used,
            duration_ms: started.elapsed().as_millis() as u64,
            outcome,
        }
    }

    fn select<'e>(
        &self,
        terragrunt: bool,
        engines: &'e Engines,
    ) -> Result<(&'e Engine, Option<&'e Engine>), PlanFailure> {
        let main = engines.main.as_ref().map_err(|e| {
            let class = match e {
                EngineError::NotFound { .. } => FailureClass::EngineMissing,
                EngineError::Version { .. } => FailureClass::EngineMissing,
            };
            PlanFailure::new(class, Step::Version, e.to_string())
        })?;
        if !terragrunt {
            return Ok((main, None));
        }
        match &engines.terragrunt {
            Some(tg) => Ok((main, Some(tg))),
            None => Err(PlanFailure::new(
                FailureClass::EngineMissing,
                Step::Version,
                "engine missing: terragrunt (the stack has a terragrunt.hcl) not found on PATH",
            )),
        }
    }

    fn command(&self, program: &Path, dir: &Path, main: &Engine, terragrunt: bool) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(dir);
        if let Some(env) = &self.engine_env {
            cmd.env_clear().envs(env);
        }
        engine::set_path(&mut cmd, self.path_var.as_deref());
        cmd.env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_PLUGIN_CACHE_DIR", &self.plugin_cache);
        if terragrunt {
            cmd.env("TG_TF_PATH", &main.path)
                .env("TERRAGRUNT_TFPATH", &main.path)
                .env("TG_NON_INTERACTIVE", "true")
                .env("TERRAGRUNT_NON_INTERACTIVE", "true")
                .env("TG_NO_COLOR", "true")
                .env("TERRAGRUNT_NO_COLOR", "true");
        }
        cmd
    }

    fn run_engine(
        &self,
        spec: &StackSpec,
        p: &Prepared,
        main: &Engine,
        tg: Option<&Engine>,
    ) -> Result<Planned, PlanFailure> {
        let program = tg.map_or(&main.path, |t| &t.path);
        let name = tg.map_or(main.kind, |t| t.kind).program();

        // init: serialised per plugin cache (see the module docs).
        let init = {
            let _lock = self.init_lock()?;
            let mut cmd = self.command(program, &p.dir, main, tg.is_some());
            cmd.args(["init", "-input=false", "-no-color"]);
            self.run_step(cmd, Step::Init, name)?
        };
        check_exit(&init, Step::Init, name, &[0], &self.rules)?;

        let mut cmd = self.command(program, &p.dir, main, tg.is_some());
        cmd.args(["plan", "-input=false", "-no-color", "-detailed-exitcode"])
            .arg(format!("-out={}", p.plan_file.display()));
        if self.config.refresh_only {
            cmd.arg("-refresh-only");
        }
        if let Some(lt) = self.config.lock_timeout {
            cmd.arg(format!("-lock-timeout={}s", lt.as_secs()));
        }
        let plan = self.run_step(cmd, Step::Plan, name)?;
        check_exit(&plan, Step::Plan, name, &[0, 2], &self.rules)?;

        let mut cmd = self.command(program, &p.dir, main, tg.is_some());
        cmd.args(["show", "-json", "-no-color"]).arg(&p.plan_file);
        let show = self.run_step(cmd, Step::Show, name)?;
        check_exit(&show, Step::Show, name, &[0], &self.rules)?;

        let plan_bytes = std::fs::read(&p.plan_file).map_err(|e| {
            PlanFailure::new(
                FailureClass::Plan,
                Step::Plan,
                format!("{name} plan exited successfully but wrote no plan file: {e}"),
            )
        })?;
        let json_name = format!("{}/plan.json", spec.dir);
        let parsed = Plan::parse(&json_name, &show.stdout).map_err(|e| {
            PlanFailure::new(
                FailureClass::Plan,
                Step::Show,
                format!("{name} show -json: {e}"),
            )
        })?;
        let store = |bytes: &[u8]| {
            self.store.put_secret(bytes).map_err(|e| {
                PlanFailure::new(
                    FailureClass::Internal,
                    Step::Store,
                    format!("storing the plan in {}: {e}", self.store.describe()),
                )
            })
        };
        let plan_file = store(&plan_bytes)?;
        let plan_json = store(&show.stdout)?;
        Ok(Planned {
            plan_digest: plan_file.clone(),
            plan_file: Some(plan_file),
            plan_json,
            exit_code: plan.code,
            summary: parsed.summary(),
            plan: parsed,
        })
    }

    fn run_step(
        &self,
        cmd: Command,
        step: Step,
        name: &str,
    ) -> Result<process::RunOutput, PlanFailure> {
        let out = process::run(cmd, self.config.timeout).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                PlanFailure::new(
                    FailureClass::EngineMissing,
                    step,
                    format!("engine missing: {name} could not be started: {e}"),
                )
            } else {
                PlanFailure::new(
                    FailureClass::Internal,
                    step,
                    format!("{name}: cannot start: {e}"),
                )
            }
        })?;
        if out.timed_out {
            let mut f = PlanFailure::new(
                FailureClass::Timeout,
                step,
                format!(
                    "{name} {} did not finish within {} s and was interrupted",
                    step_name(step),
                    self.config.timeout.as_secs()
                ),
            );
            f.exit_code = out.code;
            f.stderr_excerpt =
                classify::excerpt(&String::from_utf8_lossy(&out.stderr), &self.rules);
            return Err(f);
        }
        Ok(out)
    }

    fn init_lock(&self) -> Result<std::fs::File, PlanFailure> {
        let internal = |m: String| PlanFailure::new(FailureClass::Internal, Step::Init, m);
        std::fs::create_dir_all(&self.plugin_cache)
            .map_err(|e| internal(format!("{}: {e}", self.plugin_cache.display())))?;
        let path = self.plugin_cache.join(".sluice-init.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| internal(format!("{}: {e}", path.display())))?;
        file.lock()
            .map_err(|e| internal(format!("locking {}: {e}", path.display())))?;
        Ok(file)
    }
}

struct Prepared {
    /// Removed (with the plan file in it) when the run ends.
    _work: tempfile::TempDir,
    dir: PathBuf,
    plan_file: PathBuf,
    terragrunt: bool,
}

fn is_terragrunt(tree: &dyn Tree, dir: &str) -> bool {
    tree.is_file(&format!("{dir}/terragrunt.hcl"))
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::Export => "export",
        Step::Version => "version",
        Step::Init => "init",
        Step::Plan => "plan",
        Step::Show => "show",
        Step::Store => "store",
    }
}

fn check_exit(
    out: &process::RunOutput,
    step: Step,
    name: &str,
    ok: &[i32],
    rules: &RedactionRules,
) -> Result<(), PlanFailure> {
    if out.code.is_some_and(|c| ok.contains(&c)) {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let class = classify::classify(step, out.code, &stderr);
    let status = match out.code {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".into(),
    };
    let mut f = PlanFailure::new(
        class,
        step,
        format!("{name} {} failed ({status})", step_name(step)),
    );
    f.exit_code = out.code;
    f.stderr_excerpt = classify::excerpt(&stderr, rules);
    Err(f)
}

/// A file-name-safe form of a stack id.
fn slug(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_the_work_root_reports_what_it_could_not_remove() {
        let dir = tempfile::tempdir().unwrap();
        let config = PlanConfig::default();
        let store = crate::store::FsPlanStore::new(dir.path());
        let driver = |work_root: PathBuf| Driver {
            config: &config,
            store: &store,
            rules: RedactionRules::default(),
            path_var: None,
            engine_env: None,
            work_root,
            plugin_cache: dir.path().join("cache"),
        };
        // Never made: nothing to say.
        assert_eq!(driver(dir.path().join("never")).remove_work_root(), None);
        // Empty: removed.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(driver(empty.clone()).remove_work_root(), None);
        assert!(!empty.exists());
        // Something left in it: a warning naming the folder, the folder kept.
        let left = dir.path().join("left");
        std::fs::create_dir_all(left.join("stack")).unwrap();
        let warning = driver(left.clone()).remove_work_root().unwrap();
        assert!(
            warning.starts_with(&left.display().to_string()),
            "{warning}"
        );
        assert!(left.exists());
    }

    #[test]
    fn slugs_are_safe() {
        assert_eq!(slug("prod/ap-southeast-1/rds"), "prod_ap-southeast-1_rds");
        assert_eq!(slug(&"x".repeat(100)).len(), 60);
    }
}
