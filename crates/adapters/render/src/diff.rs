//! The rendered diff (stage 4 for apps): base and head renders compared object by object
//! (identity = group/kind/namespace/name), a unified YAML diff per added, removed or changed
//! object, and the summaries a reviewer looks for first: image changes (tag or digest),
//! replicas, and resource requests and limits. Secret values never appear: a changed key is
//! reported as changed, nothing more. Pure over two object lists.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;
use similar::TextDiff;

use crate::emit::to_yaml;
use crate::object::{Identity, Object};
use crate::redact::{self, REDACTED};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// One object that differs.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectDiff {
    pub change: Change,
    pub identity: Identity,
    pub api_version: String,
    /// Unified diff of the (redacted) YAML.
    pub diff: String,
    /// For Secrets: which keys of `data`/`stringData` were added, removed or changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secret_keys: Vec<SecretKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretKey {
    /// `data.password`.
    pub key: String,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageChange {
    pub object: Identity,
    pub container: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
    /// `tag v1.4.2 → v1.5.0`, `digest sha256:4f1c2d6e → sha256:9a8b7c6d`, `added`, ...
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaChange {
    pub object: Identity,
    pub old: Option<i64>,
    pub new: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceChange {
    pub object: Identity,
    pub container: String,
    /// `requests.cpu`, `limits.memory`.
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// The diff of two renders of one app.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RenderedDiff {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub images: Vec<ImageChange>,
    pub replicas: Vec<ReplicaChange>,
    pub resources: Vec<ResourceChange>,
    pub objects: Vec<ObjectDiff>,
}

impl RenderedDiff {
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// Compare two renders (each free of duplicate identities, as `assemble` guarantees).
pub fn diff(base: &[Object], head: &[Object]) -> RenderedDiff {
    let b: BTreeMap<&Identity, &Object> = base.iter().map(|o| (&o.identity, o)).collect();
    let h: BTreeMap<&Identity, &Object> = head.iter().map(|o| (&o.identity, o)).collect();
    let ids: BTreeSet<&Identity> = b.keys().chain(h.keys()).copied().collect();
    let mut out = RenderedDiff::default();
    // Report in render order (head's, then base-only objects in base's).
    let mut ordered: Vec<&Identity> = ids.into_iter().collect();
    ordered.sort_by(|x, y| crate::normalize::order_key(x).cmp(&crate::normalize::order_key(y)));
    for id in ordered {
        let (old, new) = (b.get(id).copied(), h.get(id).copied());
        let change = match (old, new) {
            (Some(o), Some(n)) if o.value == n.value => {
                out.unchanged += 1;
                continue;
            }
            (Some(_), Some(_)) => Change::Changed,
            (None, Some(_)) => Change::Added,
            (Some(_), None) => Change::Removed,
            (None, None) => continue,
        };
        match change {
            Change::Added => out.added += 1,
            Change::Removed => out.removed += 1,
            Change::Changed => out.changed += 1,
        }
        let old_value = old.map(|o| &o.value);
        let new_value = new.map(|o| &o.value);
        out.images.extend(image_changes(id, old_value, new_value));
        out.resources
            .extend(resource_changes(id, old_value, new_value));
        if let Some(r) = replica_change(id, old_value, new_value) {
            out.replicas.push(r);
        }
        let is_secret = old.or(new).is_some_and(|o| o.is_secret());
        let (shown_old, shown_new, secret_keys) = if is_secret {
            mask_secret_pair(old_value, new_value)
        } else {
            let mut so = old_value.cloned();
            let mut sn = new_value.cloned();
            so.iter_mut().for_each(redact::redact_last_applied);
            sn.iter_mut().for_each(redact::redact_last_applied);
            (so, sn, Vec::new())
        };
        let api_version = new
            .or(old)
            .map(|o| o.api_version.clone())
            .unwrap_or_default();
        out.objects.push(ObjectDiff {
            change,
            identity: id.clone(),
            api_version,
            diff: unified(id, shown_old.as_ref(), shown_new.as_ref()),
            secret_keys,
        });
    }
    out
}

fn unified(id: &Identity, old: Option<&Value>, new: Option<&Value>) -> String {
    let a = old.map(to_yaml).unwrap_or_default();
    let b = new.map(to_yaml).unwrap_or_default();
    let label = id.to_string();
    TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header(&format!("base {label}"), &format!("head {label}"))
        .to_string()
}

/// Secret pair as shown: every value replaced; a changed value shows as a changed marker so
/// the diff has a line for it, an unchanged one does not.
fn mask_secret_pair(
    old: Option<&Value>,
    new: Option<&Value>,
) -> (Option<Value>, Option<Value>, Vec<SecretKey>) {
    let mut so = old.cloned();
    let mut sn = new.cloned();
    let mut keys = Vec::new();
    for field in ["data", "stringData"] {
        let o = old.and_then(|v| v.get(field)).and_then(Value::as_object);
        let n = new.and_then(|v| v.get(field)).and_then(Value::as_object);
        let names: BTreeSet<&String> = o
            .into_iter()
            .flat_map(|m| m.keys())
            .chain(n.into_iter().flat_map(|m| m.keys()))
            .collect();
        for name in names {
            let (ov, nv) = (o.and_then(|m| m.get(name)), n.and_then(|m| m.get(name)));
            let change = match (ov, nv) {
                (Some(a), Some(b)) if a == b => None,
                (Some(_), Some(_)) => Some(Change::Changed),
                (None, Some(_)) => Some(Change::Added),
                (Some(_), None) => Some(Change::Removed),
                (None, None) => None,
            };
            let (old_marker, new_marker) = match change {
                Some(Change::Changed) => ("<redacted: old value>", "<redacted: new value>"),
                _ => (REDACTED, REDACTED),
            };
            if let Some(m) = so
                .as_mut()
                .and_then(|v| v.get_mut(field))
                .and_then(Value::as_object_mut)
                && let Some(x) = m.get_mut(name.as_str())
            {
                *x = Value::String(old_marker.into());
            }
            if let Some(m) = sn
                .as_mut()
                .and_then(|v| v.get_mut(field))
                .and_then(Value::as_object_mut)
                && let Some(x) = m.get_mut(name.as_str())
            {
                *x = Value::String(new_marker.into());
            }
            if let Some(change) = change {
                keys.push(SecretKey {
                    key: format!("{field}.{name}"),
                    change,
                });
            }
        }
    }
    so.iter_mut().for_each(redact::redact_last_applied);
    sn.iter_mut().for_each(redact::redact_last_applied);
    (so, sn, keys)
}

/// Pod specs of workload kinds: a Pod's `spec`, a template's `spec.template.spec`, a CronJob's
/// `spec.jobTemplate.spec.template.spec`.
fn pod_spec(v: &Value) -> Option<&Value> {
    if v["kind"] == "Pod" {
        return v.get("spec");
    }
    v.pointer("/spec/template/spec")
        .or_else(|| v.pointer("/spec/jobTemplate/spec/template/spec"))
}

/// Containers by name (init and ephemeral containers included, prefixed).
fn containers(v: Option<&Value>) -> BTreeMap<String, &Value> {
    let mut out = BTreeMap::new();
    let Some(spec) = v.and_then(pod_spec) else {
        return out;
    };
    for (field, prefix) in [
        ("initContainers", "init:"),
        ("containers", ""),
        ("ephemeralContainers", "ephemeral:"),
    ] {
        for c in spec[field].as_array().into_iter().flatten() {
            if let Some(name) = c["name"].as_str() {
                out.insert(format!("{prefix}{name}"), c);
            }
        }
    }
    out
}

fn image_changes(id: &Identity, old: Option<&Value>, new: Option<&Value>) -> Vec<ImageChange> {
    let (o, n) = (containers(old), containers(new));
    let names: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let oi = o.get(name).and_then(|c| c["image"].as_str());
        let ni = n.get(name).and_then(|c| c["image"].as_str());
        if oi == ni {
            continue;
        }
        out.push(ImageChange {
            object: id.clone(),
            container: name.clone(),
            old: oi.map(String::from),
            new: ni.map(String::from),
            summary: image_summary(oi, ni),
        });
    }
    out
}

/// An image reference split into repository, tag and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef<'a> {
    pub repository: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

pub fn parse_image(image: &str) -> ImageRef<'_> {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    // A `:` after the last `/` is a tag; before it, a registry port.
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[slash..].rfind(':') {
        Some(i) => ImageRef {
            repository: &rest[..slash + i],
            tag: Some(&rest[slash + i + 1..]),
            digest,
        },
        None => ImageRef {
            repository: rest,
            tag: None,
            digest,
        },
    }
}

fn short_digest(d: &str) -> &str {
    // `sha256:` plus 12 hex characters is what registries and kubectl show.
    let end = d.find(':').map_or(12, |i| i + 13).min(d.len());
    &d[..end]
}

pub fn image_summary(old: Option<&str>, new: Option<&str>) -> String {
    let (Some(o), Some(n)) = (old, new) else {
        return match (old, new) {
            (None, Some(n)) => format!("added {n}"),
            (Some(o), None) => format!("removed {o}"),
            _ => String::new(),
        };
    };
    let (a, b) = (parse_image(o), parse_image(n));
    let mut parts = Vec::new();
    if a.repository != b.repository {
        parts.push(format!("repository {} → {}", a.repository, b.repository));
    }
    if a.tag != b.tag {
        parts.push(format!(
            "tag {} → {}",
            a.tag.unwrap_or("(none)"),
            b.tag.unwrap_or("(none)")
        ));
    }
    if a.digest != b.digest {
        parts.push(format!(
            "digest {} → {}",
            a.digest.map_or("(none)", short_digest),
            b.digest.map_or("(none)", short_digest)
        ));
    }
    parts.join(", ")
}

fn replica_change(
    id: &Identity,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Option<ReplicaChange> {
    let get = |v: Option<&Value>| {
        v.and_then(|v| v.pointer("/spec/replicas"))
            .and_then(Value::as_i64)
    };
    let (o, n) = (get(old), get(new));
    (o != n).then(|| ReplicaChange {
        object: id.clone(),
        old: o,
        new: n,
    })
}

fn quantity(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn resource_changes(
    id: &Identity,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Vec<ResourceChange> {
    let (o, n) = (containers(old), containers(new));
    let mut out = Vec::new();
    let names: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    for name in names {
        for section in ["requests", "limits"] {
            let get = |c: Option<&&Value>| -> BTreeMap<String, String> {
                c.and_then(|c| c["resources"][section].as_object())
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| quantity(v).map(|q| (k.clone(), q)))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (a, b) = (get(o.get(name)), get(n.get(name)));
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                if a.get(k) != b.get(k) {
                    out.push(ResourceChange {
                        object: id.clone(),
                        container: name.clone(),
                        field: format!("{section}.{k}"),
                        old: a.get(k).cloned(),
                        new: b.get(k).cloned(),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::assemble;
    use crate::manifest::{Limits, parse_documents};
    use crate::schema::SchemaSet;

    fn objects(text: &str) -> Vec<Object> {
        let docs = parse_documents("t.yaml", text.as_bytes(), &Limits::default(), false).unwrap();
        assemble(docs, Some("shop"), &mut SchemaSet::new())
            .unwrap()
            .objects
    }

    const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: REPLICAS\n  template:\n    spec:\n      containers:\n      - name: web\n        image: IMAGE\n        resources:\n          requests: {cpu: CPU, memory: 256Mi}\n";

    fn deploy(replicas: &str, image: &str, cpu: &str) -> String {
        DEPLOY
            .replace("REPLICAS", replicas)
            .replace("IMAGE", image)
            .replace("CPU", cpu)
    }

    #[test]
    fn image_references() {
        assert_eq!(
            parse_image("registry:5000/team/app:v1@sha256:abc"),
            ImageRef {
                repository: "registry:5000/team/app",
                tag: Some("v1"),
                digest: Some("sha256:abc")
            }
        );
        assert_eq!(parse_image("registry:5000/app").tag, None);
        assert_eq!(
            image_summary(Some("ghcr.io/a/b:v1.4.2"), Some("ghcr.io/a/b:v1.5.0")),
            "tag v1.4.2 → v1.5.0"
        );
        assert_eq!(
            image_summary(
                Some("a@sha256:4f1c2d6e8a0b3c5d7e9f1a2b4c6d8e0f"),
                Some("a@sha256:9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d")
            ),
            "digest sha256:4f1c2d6e8a0b → sha256:9a8b7c6d5e4f"
        );
        assert_eq!(image_summary(None, Some("nginx")), "added nginx");
    }

    #[test]
    fn summaries_and_unified_diff() {
        let base = objects(&format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: gone}}\ndata: {{a: b}}\n",
            deploy("2", "ghcr.io/acme/web:v1.4.2", "250m")
        ));
        let head = objects(&format!(
            "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{ports: [{{port: 80}}]}}\n",
            deploy("3", "ghcr.io/acme/web:v1.5.0", "500m")
        ));
        let d = diff(&base, &head);
        assert_eq!((d.added, d.removed, d.changed, d.unchanged), (1, 1, 1, 0));
        assert_eq!(d.images.len(), 1);
        assert_eq!(d.images[0].summary, "tag v1.4.2 → v1.5.0");
        assert_eq!(d.images[0].container, "web");
        assert_eq!(d.replicas[0].old, Some(2));
        assert_eq!(d.replicas[0].new, Some(3));
        assert_eq!(d.resources.len(), 1);
        assert_eq!(d.resources[0].field, "requests.cpu");
        let changed = d
            .objects
            .iter()
            .find(|o| o.change == Change::Changed)
            .unwrap();
        insta::assert_snapshot!(changed.diff, @r"
        --- base apps/Deployment shop/web
        +++ head apps/Deployment shop/web
        @@ -4,13 +4,13 @@
           name: web
           namespace: shop
         spec:
        -  replicas: 2
        +  replicas: 3
           template:
             spec:
               containers:
        -      - image: ghcr.io/acme/web:v1.4.2
        +      - image: ghcr.io/acme/web:v1.5.0
                 name: web
                 resources:
                   requests:
        -            cpu: 250m
        +            cpu: 500m
                     memory: 256Mi
        ");
        assert!(diff(&head, &head).is_empty());
    }

    #[test]
    fn secret_values_never_appear_only_changed_keys() {
        let secret = |pw: &str, extra: &str| {
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: db}}\ntype: Opaque\nstringData:\n  password: {pw}\n  user: app-user-7c1e\n{extra}"
            )
        };
        let base = objects(&secret("canary-OLD-4f9a2b7c", ""));
        let head = objects(&secret(
            "canary-NEW-8d3e1f6a",
            "data:\n  token: Y2FuYXJ5LXRva2VuLTk5\n",
        ));
        let d = diff(&base, &head);
        let text = serde_json::to_string(&d).unwrap();
        for planted in [
            "canary-OLD-4f9a2b7c",
            "canary-NEW-8d3e1f6a",
            "Y2FuYXJ5LXRva2VuLTk5",
            "app-user-7c1e",
        ] {
            assert!(!text.contains(planted), "{planted} leaked: {text}");
        }
        let o = &d.objects[0];
        assert_eq!(
            o.secret_keys,
            [
                SecretKey {
                    key: "data.token".into(),
                    change: Change::Added
                },
                SecretKey {
                    key: "stringData.password".into(),
                    change: Change::Changed
                },
            ]
        );
        assert!(
            o.diff.contains(
                "-  password: \"<redacted: old value>\"\n+  password: \"<redacted: new value>\""
            ),
            "{}",
            o.diff
        );
        let changed_lines: Vec<&str> = o
            .diff
            .lines()
            .filter(|l| l.starts_with(['+', '-']))
            .collect();
        assert!(
            !changed_lines.iter().any(|l| l.contains("user:")),
            "unchanged keys add no line: {changed_lines:?}"
        );
        // Added and removed Secrets are masked too.
        let d = diff(&[], &head);
        assert!(!serde_json::to_string(&d).unwrap().contains("canary-NEW"));
    }
}
