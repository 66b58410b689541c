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
    let (kind, path) = locate(choice, path_var)?;
    let version = version_of(kind, &path, path_var, timeout)?;
    Ok(Engine {
        kind,
        path,
        version,
    })
}

/// [`detect`], with the version remembered in the JSON file `cache` for the engine binary as
/// it is now (its path, size, modification time and inode): asking the engine costs a process
/// start (about 100 ms for Terraform) on every apply. A binary replaced or upgraded in place
/// is another key and is asked again; a cache that cannot be read or written only costs that
/// process start.
pub fn detect_cached(
    choice: EngineChoice,
    path_var: Option<&OsStr>,
    timeout: Duration,
    cache: &Path,
) -> Result<Engine, EngineError> {
    let (kind, path) = locate(choice, path_var)?;
    let key = std::fs::metadata(&path).ok().map(|m| {
        use std::os::unix::fs::MetadataExt as _;
        format!(
            "{}|{}|{}.{}|{}",
            path.display(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ino()
        )
    });
    let mut known: std::collections::BTreeMap<String, String> = std::fs::read(cache)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if let Some(version) = key.as_ref().and_then(|k| known.get(k)) {
        return Ok(Engine {
            kind,
            path,
            version: version.clone(),
        });
    }
    let version = version_of(kind, &path, path_var, timeout)?;
    if let Some(key) = key {
        known.insert(key, version.clone());
        // Written beside and renamed: a concurrent reader sees the old or the new file.
        let tmp = cache.with_extension(format!("tmp{}", std::process::id()));
        if let Ok(text) = serde_json::to_vec_pretty(&known)
            && std::fs::write(&tmp, text).is_ok()
            && std::fs::rename(&tmp, cache).is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(Engine {
        kind,
        path,
        version,
    })
}

/// Which engine `choice` means on `path_var`, and where it is.
fn locate(
    choice: EngineChoice,
    path_var: Option<&OsStr>,
) -> Result<(EngineKind, PathBuf), EngineError> {
    let candidates: &[EngineKind] = match choice {
        EngineChoice::Auto => &[EngineKind::Tofu, EngineKind::Terraform],
        EngineChoice::Tofu => &[EngineKind::Tofu],
        EngineChoice::Terraform => &[EngineKind::Terraform],
    };
    candidates
        .iter()
        .find_map(|k| find_on_path(k.program(), path_var).map(|p| (*k, p)))
        .ok_or_else(|| EngineError::NotFound {
            wanted: match choice {
                EngineChoice::Auto => "tofu or terraform".into(),
                _ => candidates[0].program().into(),
            },
            configured: choice != EngineChoice::Auto,
        })
}

fn version_of(
    kind: EngineKind,
    path: &Path,
    path_var: Option<&OsStr>,
    timeout: Duration,
) -> Result<String, EngineError> {
    version_json(path, path_var, timeout).map_err(|message| EngineError::Version {
        program: kind.program().into(),
        message,
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
    fn the_version_cache_is_keyed_by_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("terraform");
        let calls = dir.path().join("calls");
        let script = |version: &str| {
            format!(
                "#!/bin/sh\necho x >> {}\necho '{{\"terraform_version\":\"{version}\"}}'\n",
                calls.display()
            )
        };
        std::fs::write(&bin, script("1.11.4")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().as_os_str().to_os_string();
        let cache = dir.path().join("engines.json");
        let detect = || {
            detect_cached(
                EngineChoice::Terraform,
                Some(&path),
                Duration::from_secs(10),
                &cache,
            )
            .unwrap()
        };
        let count = || {
            std::fs::read_to_string(&calls)
                .unwrap_or_default()
                .lines()
                .count()
        };
        assert_eq!(detect().version, "1.11.4");
        assert_eq!(detect().version, "1.11.4");
        assert_eq!(count(), 1, "the second detection reads the cache");
        // Upgraded in place: another size (and inode), asked again.
        std::fs::remove_file(&bin).unwrap();
        std::fs::write(&bin, script("1.12.0-beta")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(detect().version, "1.12.0-beta");
        assert_eq!(count(), 2);
        // An unreadable cache is only slower.
        std::fs::write(&cache, "not json").unwrap();
        assert_eq!(detect().version, "1.12.0-beta");
        assert_eq!(count(), 3);
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
