//! What the stage 6–7 end-to-end tests share (release and break-glass): people's keys made
//! with `ssh-keygen`, a Terraform stack on a local backend outside the repository, and the
//! `sluice` runner with Terraform kept offline.

use std::path::Path;
use std::process::Command;

use crate::run::Sluice;

/// An unencrypted ed25519 key pair `DIR/NAME_ed25519[.pub]` made by `ssh-keygen`; returns the
/// public key line (what `people.NAME.keys` registers).
pub fn keygen(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}_ed25519"));
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen runs")
        .success();
    assert!(ok, "ssh-keygen failed");
    std::fs::read_to_string(format!("{}.pub", path.display()))
        .expect("ssh-keygen wrote the public key")
        .trim()
        .to_string()
}

/// A Terraform configuration whose state lives in `state/terraform.tfstate` (outside the
/// repository, so that exporting the stack at a commit keeps it), followed by `body`.
pub fn local_state_stack(state: &Path, body: &str) -> String {
    format!(
        "terraform {{\n  backend \"local\" {{\n    path = \"{}/terraform.tfstate\"\n  }}\n}}\n{body}",
        crate::s(state)
    )
}

/// `sluice` with Terraform offline (no CLI config, no checkpoint calls, no plugin cache from
/// the environment) and a fixed actor.
pub fn terraform_sluice() -> Sluice {
    Sluice::new()
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("CHECKPOINT_DISABLE", "1")
        .env_remove("TF_PLUGIN_CACHE_DIR")
        .env("SLUICE_ACTOR", "ci")
}
