//! Finding the engine: OpenTofu or Terraform as configured (or `tofu` then `terraform` on
//! PATH), its version from `version -json`, and Terragrunt for stacks that have a
//! `terragrunt.hcl`.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::config::EngineChoice;
use crate::process;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    Tofu,
    Terraform,
    Terragrunt,
}

impl EngineKind {
    pub fn program(self) -> &'static str {
        match self {
            EngineKind::Tofu => "tofu",
            EngineKind::Terraform => "terraform",
            EngineKind::Terragrunt => "terragrunt",
        }
    }
}

/// An engine found on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Engine {
    pub kind: EngineKind,
    pub path: PathBuf,
    pub version: String,
}

/// The engine could not be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("engine missing: {wanted} not found on PATH{}", why(.configured))]
    NotFound {
        wanted: String,
        /// Set when `plan.engine` named it.
        configured: bool,
    },
    #[error("engine {program}: `{program} version -json` failed: {message}")]
    Version { program: String, message: String },
}

fn why(configured: &bool) -> &'static str {
    if *configured {
        " (plan.engine in sluice.yaml names it)"
    } else {
        "; install OpenTofu or Terraform, or set plan.engine"
    }
}

/// The first executable file called `name` in the directories of `path_var` (a PATH value).
pub fn find_on_path(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let path_var: OsString = path_var
        .map(OsStr::to_os_string)
        .or_else(|| std::env::var_os("PATH"))?;
    std::env::split_paths(&path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The OpenTofu/Terraform engine for plain stacks.
pub fn detect(
    choice: EngineChoice,
    path_var: Option<&OsStr>,
    timeout: Duration,
) -> Result<Engine, EngineError> {
    let candidates: &[EngineKind] = match choice {
        EngineChoice::Auto => &[EngineKind::Tofu, EngineKind::Terraform],
        EngineChoice::Tofu => &[EngineKind::Tofu],
        EngineChoice::Terraform => &[EngineKind::Terraform],
    };
    let found = candidates
        .iter()
        .find_map(|k| find_on_path(k.program(), path_var).map(|p| (*k, p)));
    let Some((kind, path)) = found else {
        return Err(EngineError::NotFound {
            wanted: match choice {
                EngineChoice::Auto => "tofu or terraform".into(),
                _ => candidates[0].program().into(),
            },
            configured: choice != EngineChoice::Auto,
        });
    };
    let version =
        version_json(&path, path_var, timeout).map_err(|message| EngineError::Version {
            program: kind.program().into(),
            message,
        })?;
    Ok(Engine {
        kind,
        path,
        version,
    })
}

/// Terragrunt, when on PATH. Its version is informative only, so a failing `--version` does
/// not hide it.
pub fn detect_terragrunt(path_var: Option<&OsStr>, timeout: Duration) -> Option<Engine> {
    let path = find_on_path("terragrunt", path_var)?;
    let mut cmd = Command::new(&path);
    cmd.arg("--version");
    set_path(&mut cmd, path_var);
    let version = process::run(cmd, timeout.min(Duration::from_secs(60)))
        .ok()
        .and_then(|o| parse_terragrunt_version(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_else(|| "unknown".into());
    Some(Engine {
        kind: EngineKind::Terragrunt,
        path,
        version,
    })
}

pub(crate) fn set_path(cmd: &mut Command, path_var: Option<&OsStr>) {
    if let Some(p) = path_var {
        cmd.env("PATH", p);
    }
}

fn version_json(
    path: &Path,
    path_var: Option<&OsStr>,
    timeout: Duration,
) -> Result<String, String> {
    let mut cmd = Command::new(path);
    cmd.args(["version", "-json"]);
    set_path(&mut cmd, path_var);
    let out = process::run(cmd, timeout.min(Duration::from_secs(60))).map_err(|e| e.to_string())?;
    if out.code != Some(0) {
        return Err(format!("exit status {:?}", out.code));
    }
    parse_version_json(&out.stdout)
}

/// `{"terraform_version": "1.11.4", ...}` (OpenTofu keeps the key for compatibility).
pub fn parse_version_json(stdout: &[u8]) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_slice(stdout).map_err(|e| format!("not JSON: {e}"))?;
    ["terraform_version", "tofu_version", "version"]
        .iter()
        .find_map(|k| v.get(k).and_then(|s| s.as_str()))
        .map(str::to_string)
        .ok_or_else(|| "no terraform_version in the output".into())
}

/// `terragrunt version v0.67.16` → `0.67.16`.
pub fn parse_terragrunt_version(stdout: &str) -> Option<String> {
    stdout
        .split_whitespace()
        .find(|w| {
            let w = w.trim_start_matches('v');
            w.contains('.') && w.chars().next().is_some_and(|c| c.is_ascii_digit())
        })
        .map(|w| w.trim_start_matches('v').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing() {
        assert_eq!(
            parse_version_json(br#"{"terraform_version":"1.11.4","platform":"linux_amd64"}"#),
            Ok("1.11.4".into())
        );
        assert!(parse_version_json(b"Terraform v1.0").is_err());
        assert!(parse_version_json(b"{}").is_err());
        assert_eq!(
            parse_terragrunt_version("terragrunt version v0.67.16\n"),
            Some("0.67.16".into())
        );
        assert_eq!(parse_terragrunt_version("nothing"), None);
    }

    #[test]
    fn path_search_needs_an_executable_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("tofu"), "not executable").unwrap();
        std::fs::write(b.join("tofu"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(b.join("tofu"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(find_on_path("tofu", Some(&path)), Some(b.join("tofu")));
        assert_eq!(find_on_path("terraform", Some(&path)), None);
        let err = detect(EngineChoice::Terraform, Some(&path), Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "engine missing: terraform not found on PATH (plan.engine in sluice.yaml names it)"
        );
    }
}
