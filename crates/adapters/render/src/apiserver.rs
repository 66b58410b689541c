//! What the Kubernetes API server enforces beyond the OpenAPI types, so that an object the
//! schema accepts but `kubectl apply` would reject is caught at review: object names
//! (DNS-1123 subdomains or labels, by kind), label keys and values, and resource quantities
//! (`cpu: 1x` has the right type, a string, and is still refused).
//!
//! Pure functions over an object's JSON; [`crate::schema::validate`] turns each
//! [`Violation`] into a finding at the field's line. Messages name the rule the value breaks,
//! never the value itself (it could be anything a user typed).

use serde_json::Value;

/// One rule broken at one field (a JSON pointer into the object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub rule: &'static str,
    pub message: String,
}

pub const RULE_NAME: &str = "schema/name";
pub const RULE_LABEL: &str = "schema/label";
pub const RULE_QUANTITY: &str = "schema/quantity";

/// Names the API server checks as DNS-1123 labels (at most 63 characters, no dots).
const LABEL_NAMED: &[(&str, &str)] = &[("", "Service"), ("", "Namespace")];

/// Names it checks as DNS-1123 subdomains (at most 253 characters). Kinds not listed here
/// (RBAC, custom resources) have rules of their own and are left alone.
const SUBDOMAIN_NAMED: &[(&str, &str)] = &[
    ("", "ConfigMap"),
    ("", "Secret"),
    ("", "ServiceAccount"),
    ("", "PersistentVolumeClaim"),
    ("", "PersistentVolume"),
    ("", "Pod"),
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
    ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("policy", "PodDisruptionBudget"),
    ("autoscaling", "HorizontalPodAutoscaler"),
];

/// Every violation in `object` (of API group `group` and kind `kind`).
pub fn check(group: &str, kind: &str, object: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str) {
        let is = |list: &[(&str, &str)]| list.iter().any(|(g, k)| *g == group && *k == kind);
        if is(LABEL_NAMED) && !is_dns1123_label(name) {
            out.push(Violation {
                path: "/metadata/name".into(),
                rule: RULE_NAME,
                message: format!(
                    "a {kind} name must be a DNS-1123 label: at most 63 lowercase letters, digits \
                     and '-', starting and ending with a letter or digit"
                ),
            });
        } else if is(SUBDOMAIN_NAMED) && !is_dns1123_subdomain(name) {
            out.push(Violation {
                path: "/metadata/name".into(),
                rule: RULE_NAME,
                message: format!(
                    "a {kind} name must be a DNS-1123 subdomain: at most 253 lowercase letters, \
                     digits, '-' and '.', starting and ending with a letter or digit"
                ),
            });
        }
    }
    for prefix in [
        "/metadata/labels",
        "/spec/selector/matchLabels",
        "/spec/template/metadata/labels",
        "/spec/jobTemplate/spec/template/metadata/labels",
    ] {
        if let Some(Value::Object(labels)) = object.pointer(prefix) {
            // The path is written only for a violation: most objects have none, and every
            // object's labels are checked.
            let path = |k: &str| format!("{prefix}/{}", escape(k));
            for (k, v) in labels {
                if let Err(why) = label_key(k) {
                    out.push(Violation {
                        path: path(k),
                        rule: RULE_LABEL,
                        message: format!("invalid label key: {why}"),
                    });
                }
                if let Some(v) = v.as_str()
                    && let Err(why) = label_value(v)
                {
                    out.push(Violation {
                        path: path(k),
                        rule: RULE_LABEL,
                        message: format!("invalid label value: {why}"),
                    });
                }
            }
        }
    }
    for pod in [
        "/spec",
        "/spec/template/spec",
        "/spec/jobTemplate/spec/template/spec",
    ] {
        let Some(Value::Object(spec)) = object.pointer(pod) else {
            continue;
        };
        for list in ["containers", "initContainers"] {
            let Some(Value::Array(containers)) = spec.get(list) else {
                continue;
            };
            for (i, c) in containers.iter().enumerate() {
                for part in ["requests", "limits"] {
                    let Some(Value::Object(q)) = c.get("resources").and_then(|r| r.get(part))
                    else {
                        continue;
                    };
                    for (name, v) in q {
                        if !is_quantity_value(v) {
                            out.push(Violation {
                                path: format!("{pod}/{list}/{i}/resources/{part}/{}", escape(name)),
                                rule: RULE_QUANTITY,
                                message: format!(
                                    "`{name}` {part} is not a Kubernetes quantity (e.g. `500m`, \
                                     `2`, `1.5Gi`, `128Mi`)"
                                ),
                            });
                        }
                    }
                }
            }
        }
    }
    if group.is_empty() && kind == "PersistentVolumeClaim" {
        for part in ["requests", "limits"] {
            if let Some(Value::Object(q)) =
                object.pointer("/spec/resources").and_then(|r| r.get(part))
            {
                for (name, v) in q {
                    if !is_quantity_value(v) {
                        out.push(Violation {
                            path: format!("/spec/resources/{part}/{}", escape(name)),
                            rule: RULE_QUANTITY,
                            message: format!("`{name}` {part} is not a Kubernetes quantity"),
                        });
                    }
                }
            }
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label as Kubernetes checks it.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| alnum(c) || c == '-')
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// RFC 1123 subdomain as Kubernetes checks it: dot-separated labels, 253 characters at most.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A qualified name (`[prefix/]name`), as label keys are.
fn label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && !is_dns1123_subdomain(p)
    {
        return Err("the prefix before '/' must be a DNS-1123 subdomain".into());
    }
    if name.is_empty() || name.len() > 63 || !is_label_token(name) {
        return Err(
            "the name part must be 1-63 letters, digits, '-', '_' or '.', starting and ending \
             with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

fn label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || (v.len() <= 63 && is_label_token(v)) {
        Ok(())
    } else {
        Err(
            "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or \
             digit (or empty)"
                .into(),
        )
    }
}

fn is_label_token(s: &str) -> bool {
    let edge = |c: char| c.is_ascii_alphanumeric();
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(edge)
        && s.ends_with(edge)
}

fn is_quantity_value(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64().is_some_and(|f| f.is_finite()),
        Value::String(s) => is_quantity(s),
        _ => true, // a type error: the schema reports it
    }
}

/// The quantity grammar of `k8s.io/apimachinery/pkg/api/resource`: a signed decimal number
/// and an optional binary (`Ki`…`Ei`) or decimal (`n u m k M G T P E`) suffix or exponent.
pub fn is_quantity(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let digits_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(digits_end);
    let mut parts = number.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    if frac.is_some_and(|f| f.contains('.')) {
        return false;
    }
    if int.is_empty() && frac.is_none_or(str::is_empty) {
        return false;
    }
    match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => true,
        e => match e.strip_prefix(['e', 'E']) {
            Some(exp) => {
                let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit())
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn quantities() {
        for ok in [
            "1", "500m", "0.5", ".5", "1.5Gi", "128Mi", "1e3", "2E-2", "+1", "100k",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "1x", "1.2.3", "Gi", "1 Gi", "1KiB", "1e", "one", "."] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn names_and_labels() {
        assert!(is_dns1123_subdomain("web.payments-1"));
        assert!(!is_dns1123_subdomain("Web"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(label_key("app.kubernetes.io/name").is_ok());
        assert!(label_key("Team_Name").is_ok());
        assert!(label_key("-x").is_err());
        assert!(label_key("Bad_Prefix/x").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_3").is_ok());
        assert!(label_value("has space").is_err());
        assert!(label_value(&"a".repeat(64)).is_err());
    }

    #[test]
    fn a_deployment_with_every_problem_is_reported_at_each_field() {
        let d = json!({
            "metadata": {"name": "Payments_API", "labels": {"app": "pay ments"}},
            "spec": {"template": {"spec": {"containers": [
                {"name": "c", "resources": {"limits": {"cpu": "1x", "memory": "1Gi"}}}
            ]}}}
        });
        let v = check("apps", "Deployment", &d);
        let got: Vec<(&str, &str)> = v.iter().map(|v| (v.rule, v.path.as_str())).collect();
        assert_eq!(
            got,
            [
                (RULE_NAME, "/metadata/name"),
                (RULE_LABEL, "/metadata/labels/app"),
                (
                    RULE_QUANTITY,
                    "/spec/template/spec/containers/0/resources/limits/cpu"
                ),
            ]
        );
        // Custom resources and RBAC names follow rules of their own.
        assert!(
            check(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                &json!({"metadata": {"name": "system:x"}})
            )
            .is_empty()
        );
    }

    proptest! {
        /// Every quantity sluice prints itself parses (number + suffix).
        #[test]
        fn formatted_quantities_parse(n in 0u32..100_000, suffix in prop::sample::select(vec!["", "m", "k", "Mi", "Gi", "M", "G"])) {
            let q = format!("{n}{suffix}");
            prop_assert!(is_quantity(&q));
        }

        #[test]
        fn quantity_parser_never_panics(s in "\\PC{0,20}") {
            let _ = is_quantity(&s);
        }
    }
}
