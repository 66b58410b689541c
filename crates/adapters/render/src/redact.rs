//! Secret values never leave sluice: rendered output, `--out` files, diffs and reports show a
//! Secret's keys, never its values. The digest is computed over the real content, so a changed
//! value still changes the digest (and voids approvals bound to it).

use serde_json::Value;

use crate::object::Object;

/// What is shown instead of a value.
pub const REDACTED: &str = "<redacted>";

/// kubectl stores the whole applied object here, Secret values included.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The object as it may be shown.
pub fn redacted(o: &Object) -> Value {
    let mut v = o.value.clone();
    if o.is_secret() {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(m)) = v.get_mut(field) {
                for value in m.values_mut() {
                    *value = Value::String(REDACTED.into());
                }
            }
        }
    }
    redact_last_applied(&mut v);
    v
}

/// The last-applied annotation repeats the object (a Secret's values, on any object a
/// projected secret): never shown.
pub fn redact_last_applied(v: &mut Value) {
    if let Some(Value::Object(a)) = v.pointer_mut("/metadata/annotations")
        && let Some(x) = a.get_mut(LAST_APPLIED)
    {
        *x = Value::String(REDACTED.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{Identity, Source};

    #[test]
    fn secret_values_and_last_applied_are_hidden() {
        let o = Object {
            identity: Identity {
                group: String::new(),
                kind: "Secret".into(),
                namespace: "n".into(),
                name: "db".into(),
            },
            api_version: "v1".into(),
            source: Source::default(),
            tree: None,
            value: serde_json::json!({"kind": "Secret", "data": {"password": "aHVudGVyMg=="}, "stringData": {"user": "admin"},
                "metadata": {"annotations": {LAST_APPLIED: "{\"data\":{\"password\":\"aHVudGVyMg==\"}}"}}}),
        };
        let text = redacted(&o).to_string();
        assert!(!text.contains("aHVudGVyMg"), "{text}");
        assert!(!text.contains("admin"), "{text}");
        assert!(text.contains("password") && text.contains("user"), "{text}");
    }
}
