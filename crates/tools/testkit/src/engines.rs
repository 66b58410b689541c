//! The IaC engines a test can run: the real `terraform` from PATH, and `tofu-test-double`
//! (crates/adapters/iac/tests/support), a test double of the OpenTofu CLI installed under the
//! names a test asks for in a bin directory of its own.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::require::Requirement;

/// The real `terraform` on PATH, or `None` (with a notice) when there is none; a failure
/// instead under `SLUICE_REQUIRE_TERRAFORM=1`.
#[track_caller]
pub fn terraform() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("terraform"))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p),
        None => Requirement::Terraform.missing("terraform is not on PATH"),
    }
}

/// A temporary bin directory with the OpenTofu test double installed under some names.
pub struct TestDoubleBin {
    dir: TempDir,
}

impl TestDoubleBin {
    /// The test double's script in the repository.
    pub fn script() -> PathBuf {
        crate::workspace_root().join("crates/adapters/iac/tests/support/tofu-test-double.sh")
    }

    /// The double installed as each of `names` (e.g. `["tofu"]`).
    pub fn new(names: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let double = dir.path().join("tofu-test-double");
        std::fs::copy(Self::script(), &double).expect("copy the test double");
        std::fs::set_permissions(&double, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for n in names {
            std::os::unix::fs::symlink(&double, dir.path().join(n)).expect("symlink");
        }
        TestDoubleBin { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A PATH of this directory, then the system directories the double's shell script needs.
    pub fn path_var(&self) -> OsString {
        std::env::join_paths([self.path(), Path::new("/usr/bin"), Path::new("/bin")]).expect("PATH")
    }
}
