//! A `terraform_data` stack whose state lives in an `http` backend (sluice's state backend),
//! and the real Terraform run on it offline: what the state backend's tests (against the router
//! alone and against a spawned `sluice serve`) share.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The sensitive variable's value: must never show up in sluice's logs or API answers.
pub const CANARY: &str = "CANARY-tf-sensitive-51c2";

/// The `backend "http"` lines for a unit at `url`: address, lock and unlock addresses, a user
/// name (ignored by sluice) and no retries (a refusal shows at once). The password comes from
/// `TF_HTTP_PASSWORD` unless `extra` sets it.
pub fn http_backend(url: &str, extra: &str) -> String {
    format!(
        "    address        = \"{url}\"\n    lock_address   = \"{url}\"\n    unlock_address = \"{url}\"\n    username       = \"runner\"\n    retry_max      = 0\n{extra}"
    )
}

/// A Terraform working directory `parent/name` with the given `backend "http"` body and one
/// `terraform_data` resource holding the sensitive `db_password`; `run` forces a replacement
/// (a new state serial) and `pause` keeps an apply (and its lock) alive for that many seconds.
pub fn http_backend_stack(parent: &Path, name: &str, backend: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        format!(
            r#"terraform {{
  backend "http" {{
{backend}  }}
}}

variable "db_password" {{
  type      = string
  sensitive = true
}}

variable "run" {{
  type    = string
  default = "1"
}}

variable "pause" {{
  type    = number
  default = 0
}}

resource "terraform_data" "app" {{
  input            = var.db_password
  triggers_replace = [var.run]

  provisioner "local-exec" {{
    command = "sleep ${{var.pause}}"
  }}
}}

output "run" {{
  value = var.run
}}
"#
        ),
    )
    .unwrap();
    dir
}

/// `terraform ARGS` in `dir`, offline (no CLI config, no checkpoint), non-interactive, with
/// `TF_HTTP_PASSWORD` = `password` and the sensitive variable set to [`CANARY`].
pub fn terraform_command(terraform: &Path, dir: &Path, password: &str, args: &[&str]) -> Command {
    let mut c = Command::new(terraform);
    c.current_dir(dir)
        .args(args)
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0")
        .env("TF_HTTP_PASSWORD", password)
        .env("TF_VAR_db_password", CANARY);
    c
}

/// A finished command's status and output, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts success; the output shown.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", show(o));
    show(o)
}
