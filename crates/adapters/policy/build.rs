//! Records the regorus version this crate is built against, read from the workspace's
//! `Cargo.lock` (what Cargo resolved and builds), so the version every decision record names
//! cannot drift from the engine that made it.

use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let lock = manifest_dir
        .ancestors()
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.is_file());
    let version = match &lock {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", path.display());
            locked_version(path, "regorus")
        }
        None => None,
    };
    let version = version.unwrap_or_else(|| {
        println!(
            "cargo:warning=no Cargo.lock entry for regorus; decision records name it `unknown`"
        );
        "unknown".to_string()
    });
    println!("cargo:rustc-env=SLUICE_REGORUS_VERSION={version}");
}

/// The version of package `name` in a `Cargo.lock` (`[[package]]` tables of `name = "…"` and
/// `version = "…"` lines).
fn locked_version(lock: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(lock).ok()?;
    let want = format!("name = \"{name}\"");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == want {
            let version = lines.next()?.trim().strip_prefix("version = \"")?;
            return Some(version.trim_end_matches('"').to_string());
        }
    }
    None
}
