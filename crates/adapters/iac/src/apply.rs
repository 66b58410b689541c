//! Applying a saved plan file (stage 7) with the engine: `init` (when the plan needs it), the
//! state's serial and lineage before, `apply PLANFILE` of exactly that file, and the state
//! after, with the outputs' digest (never their values). The state is read from the file of a
//! `local` backend the plan names, else with `state pull` ([`crate::planfile`]).
//!
//! What the caller decides (the gate, the lock, the plan's digest) is not here; this module
//! only runs the engine in a directory the caller exported and reports what happened:
//! applied, refused as stale (the state moved since the plan: nothing changed), or failed with
//! the resources the engine reported changed and a classified error. Output is captured and
//! handed back for redaction by the caller's rules; it is never printed here.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::engine::{self, Engine};
use crate::planfile::PlanFacts;
use crate::process;

/// The engine and its environment for one apply.
#[derive(Debug, Clone)]
pub struct ApplyEngine {
    pub engine: Engine,
    /// PATH for the engine; `None` keeps the process's.
    pub path_var: Option<OsString>,
    pub plugin_cache: PathBuf,
    pub timeout: Duration,
}

/// What the state said (from `state pull`); absent when there is no state yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateInfo {
    pub serial: u64,
    pub lineage: String,
    /// `sha256:` of the canonical JSON of the outputs' values; the values are never kept.
    pub outputs_digest: String,
}

/// How the engine apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEnd {
    Applied,
    /// The engine refused the saved plan because the state changed since it was made.
    Stale,
    Failed {
        /// Addresses the engine reported complete before it failed.
        changed: Vec<String>,
        class: FailureKind,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Auth,
    Provider,
    State,
    Engine,
}

/// The report of one apply.
#[derive(Debug, Clone)]
pub struct ApplyRun {
    pub end: EngineEnd,
    pub before: Option<StateInfo>,
    pub after: Option<StateInfo>,
    /// The engine's combined output (unredacted: the caller redacts before keeping any of it).
    pub output: String,
    pub apply_ms: u64,
    pub total_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{program} could not be started: {message}")]
    Spawn { program: String, message: String },
    #[error("{program} init failed (exit {code:?}); nothing was applied")]
    Init {
        program: String,
        code: Option<i32>,
        /// Unredacted output, for the caller to redact.
        output: String,
    },
}

impl ApplyEngine {
    fn command(&self, dir: &Path) -> Command {
        let mut cmd = Command::new(&self.engine.path);
        cmd.current_dir(dir);
        if let Some(p) = &self.path_var {
            cmd.env("PATH", p);
        }
        cmd.env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_PLUGIN_CACHE_DIR", &self.plugin_cache);
        cmd
    }

    fn run(&self, cmd: Command) -> Result<process::RunOutput, ApplyError> {
        process::run(cmd, self.timeout).map_err(|e| ApplyError::Spawn {
            program: self.engine.kind.program().to_string(),
            message: e.to_string(),
        })
    }

    /// `init` in `dir` (the exported stack): the providers and the backend the plan needs.
    pub fn init(&self, dir: &Path) -> Result<(), ApplyError> {
        std::fs::create_dir_all(&self.plugin_cache).map_err(|e| ApplyError::Spawn {
            program: self.engine.kind.program().into(),
            message: format!("{}: {e}", self.plugin_cache.display()),
        })?;
        let mut cmd = self.command(dir);
        cmd.args(["init", "-input=false", "-no-color"]);
        let out = self.run(cmd)?;
        if out.code != Some(0) {
            return Err(ApplyError::Init {
                program: self.engine.kind.program().into(),
                code: out.code,
                output: combined(&out),
            });
        }
        Ok(())
    }

    /// The state's serial, lineage and outputs' digest, or `None` when there is no state (or
    /// it cannot be read: the apply record then says "unknown" rather than guessing).
    pub fn state(&self, dir: &Path) -> Option<StateInfo> {
        let mut cmd = self.command(dir);
        cmd.args(["state", "pull"]);
        let out = self.run(cmd).ok()?;
        if out.code != Some(0) {
            return None;
        }
        state_info(&out.stdout)
    }

    /// The state as `facts` says where to read it: the `local` backend's file directly (what
    /// `state pull` would read), else `state pull`.
    pub fn state_for(&self, dir: &Path, facts: &PlanFacts) -> Option<StateInfo> {
        match facts.local_state_file(dir) {
            Some(file) => state_info(&std::fs::read(file).ok()?),
            None => self.state(dir),
        }
    }

    /// `apply PLANFILE` in `dir`, after [`ApplyEngine::init`] when `facts` need it. The saved
    /// plan is applied as is: the engine itself refuses a plan whose state moved ("stale").
    pub fn apply(
        &self,
        dir: &Path,
        plan_file: &Path,
        facts: &PlanFacts,
    ) -> Result<ApplyRun, ApplyError> {
        let started = Instant::now();
        let before = self.state_for(dir, facts);
        let mut cmd = self.command(dir);
        cmd.args(["apply", "-input=false", "-no-color"])
            .arg(plan_file);
        let applied_at = Instant::now();
        let out = self.run(cmd)?;
        let apply_ms = applied_at.elapsed().as_millis() as u64;
        let output = combined(&out);
        let end = if out.code == Some(0) && !out.timed_out {
            EngineEnd::Applied
        } else {
            classify(&output)
        };
        let after = self.state_for(dir, facts);
        Ok(ApplyRun {
            end,
            before,
            after,
            output,
            apply_ms,
            total_ms: started.elapsed().as_millis() as u64,
        })
    }

    pub fn label(&self) -> String {
        format!("{} {}", self.engine.kind.program(), self.engine.version)
    }
}

/// Finds the engine as `sluice plan` does (`plan.engine` in sluice.yaml, else tofu or
/// terraform on PATH); its version remembered in `version_cache` when given
/// ([`engine::detect_cached`]).
pub fn detect(
    config: &crate::config::PlanConfig,
    path_var: Option<OsString>,
    plugin_cache: PathBuf,
    version_cache: Option<&Path>,
) -> Result<ApplyEngine, engine::EngineError> {
    let found = match version_cache {
        Some(cache) => {
            engine::detect_cached(config.engine, path_var.as_deref(), config.timeout, cache)?
        }
        None => engine::detect(config.engine, path_var.as_deref(), config.timeout)?,
    };
    Ok(ApplyEngine {
        engine: found,
        path_var,
        plugin_cache,
        timeout: config.timeout,
    })
}

fn combined(out: &process::RunOutput) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// The serial, lineage and outputs' digest of a state document (`state pull`).
pub fn state_info(bytes: &[u8]) -> Option<StateInfo> {
    let state: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let serial = state.get("serial")?.as_u64()?;
    let lineage = state.get("lineage")?.as_str()?.to_string();
    // Only the values, by name: sensitivity flags and types are not what the digest pins.
    let outputs: serde_json::Map<String, serde_json::Value> = state
        .get("outputs")
        .and_then(|o| o.as_object())
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.get("value").cloned().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let mut sorted: Vec<(&String, &serde_json::Value)> = outputs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let canonical = serde_json::to_vec(&sorted).unwrap_or_default();
    Some(StateInfo {
        serial,
        lineage,
        outputs_digest: format!("sha256:{}", hex::encode(Sha256::digest(&canonical))),
    })
}

/// What a failed apply's output says: a stale plan (nothing changed), or a failure with the
/// resources completed before it and a class.
pub fn classify(output: &str) -> EngineEnd {
    let lower = output.to_ascii_lowercase();
    // Terraform: "Saved plan is stale"; OpenTofu the same wording.
    if lower.contains("saved plan is stale") {
        return EngineEnd::Stale;
    }
    let changed = output
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            [
                "Creation complete",
                "Modifications complete",
                "Destruction complete",
            ]
            .iter()
            .find_map(|m| l.find(&format!(": {m}")).map(|i| l[..i].to_string()))
        })
        .collect();
    let class = if lower.contains("error acquiring the state lock")
        || lower.contains("state lock")
        || lower.contains("failed to persist state")
    {
        FailureKind::State
    } else if lower.contains("credentials")
        || lower.contains("unauthorized")
        || lower.contains("access denied")
        || lower.contains("403")
    {
        FailureKind::Auth
    } else if lower.contains("provider") {
        FailureKind::Provider
    } else {
        FailureKind::Engine
    };
    EngineEnd::Failed { changed, class }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_plans_are_recognised() {
        let out = "\nError: Saved plan is stale\n\nThe given plan file can no longer be applied because the state was changed by another operation after the plan was created.\n";
        assert_eq!(classify(out), EngineEnd::Stale);
    }

    #[test]
    fn failures_name_what_completed() {
        let out = "terraform_data.a: Creating...\nterraform_data.a: Creation complete after 0s [id=1]\nterraform_data.b: Creating...\nterraform_data.b (local-exec): Executing\n\nError: local-exec provisioner error\n";
        assert_eq!(
            classify(out),
            EngineEnd::Failed {
                changed: vec!["terraform_data.a".into()],
                class: FailureKind::Engine
            }
        );
        assert!(matches!(
            classify("Error: Error acquiring the state lock"),
            EngineEnd::Failed {
                class: FailureKind::State,
                ..
            }
        ));
    }

    #[test]
    fn state_info_digests_output_values_only() {
        let a = br#"{"version":4,"serial":3,"lineage":"l-1","outputs":{"b":{"value":"x","type":"string"},"a":{"value":1,"type":"number","sensitive":true}}}"#;
        let b = br#"{"version":4,"serial":3,"lineage":"l-1","outputs":{"a":{"value":1,"type":"number"},"b":{"value":"x","type":"string"}}}"#;
        let ia = state_info(a).unwrap();
        assert_eq!(ia.serial, 3);
        assert_eq!(ia.lineage, "l-1");
        assert_eq!(ia, state_info(b).unwrap());
        assert!(!ia.outputs_digest.contains('x'));
        assert!(state_info(b"not json").is_none());
    }
}
