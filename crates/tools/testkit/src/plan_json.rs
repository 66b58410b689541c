//! Hand-written Terraform plan JSON (`terraform show -json` shape) for tests that need a plan
//! with exactly the changes they name.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// One `resource_changes` entry of a managed resource; the name is the address's last part.
pub fn resource_change(
    address: &str,
    rtype: &str,
    actions: &[&str],
    before: Value,
    after: Value,
) -> Value {
    let name = address.rsplit('.').next().expect("address");
    json!({
        "address": address, "mode": "managed", "type": rtype, "name": name,
        "change": {"actions": actions, "before": before, "after": after,
                   "after_unknown": {}, "before_sensitive": {}, "after_sensitive": {}}
    })
}

/// A plan document holding `changes`.
pub fn plan_json(changes: Vec<Value>) -> Value {
    json!({"format_version": "1.2", "resource_changes": changes})
}

/// Write `value` pretty-printed to `dir/name`; returns the path.
pub fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(value).expect("JSON")).expect("write");
    p
}
