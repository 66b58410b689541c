//! Normalisation: the pure decisions that turn documents into the canonical rendered form.
//!
//! - empty values are dropped as kubectl drops them: `null` fields anywhere, empty maps, lists
//!   and strings directly under `metadata` (`creationTimestamp: null`, `labels: {}`), and an
//!   empty `status`; an empty map elsewhere (`emptyDir: {}`) means something and is kept;
//! - the destination namespace is applied to namespaced kinds without one, and a namespace on a
//!   cluster-scoped kind is dropped (the API server ignores it);
//! - keys are sorted (byte order) at every level;
//! - objects are ordered Namespaces, then CRDs, then by kind, namespace, name (group last);
//! - the rendered digest is SHA-256 over the canonical JSON of that ordered list.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Duplicate, RenderError};
use crate::kinds;
use crate::manifest::Document;
use crate::object::{Identity, Object, group_of};

/// The scope of custom kinds, learnt from CRDs (in the repository and the rendered output).
#[derive(Debug, Clone, Default)]
pub struct Scopes {
    custom: HashMap<(String, String), bool>,
}

impl Scopes {
    pub fn add_custom(&mut self, group: &str, kind: &str, namespaced: bool) {
        self.custom
            .insert((group.to_string(), kind.to_string()), namespaced);
    }

    /// `Some(true)` namespaced, `Some(false)` cluster-scoped, `None` unknown kind.
    pub fn namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        kinds::builtin_namespaced(group, kind).or_else(|| {
            self.custom
                .get(&(group.to_string(), kind.to_string()))
                .copied()
        })
    }
}

/// Something normalisation did that the author may not expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub identity: Identity,
    pub message: String,
}

/// Normalise one document. The document must have passed `manifest` checks (apiVersion,
/// kind, name present).
pub fn normalise(
    doc: Document,
    namespace: Option<&str>,
    scopes: &Scopes,
    notes: &mut Vec<Note>,
) -> Object {
    let mut value = doc.value;
    drop_nulls(&mut value);
    let api_version = value["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = value["kind"].as_str().unwrap_or_default().to_string();
    let group = group_of(&api_version).to_string();
    let obj = value.as_object_mut().expect("documents are mappings");
    if obj.get("status").is_some_and(is_empty) {
        obj.remove("status");
    }
    let metadata = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    let meta = metadata.as_object_mut().expect("made an object above");
    meta.retain(|_, v| !is_empty(v));
    let name = match (meta.get("name"), meta.get("generateName")) {
        (Some(Value::String(n)), _) => n.clone(),
        // Objects named by the server: one identity per prefix is the best a render can do.
        (_, Some(Value::String(g))) => format!("{g}*"),
        _ => String::new(),
    };
    let scope = scopes.namespaced(&group, &kind);
    let mut identity = Identity {
        group,
        kind,
        namespace: String::new(),
        name,
    };
    match scope {
        Some(false) => {
            if let Some(ns) = meta.remove("namespace") {
                notes.push(Note {
                    identity: identity.clone(),
                    message: format!(
                        "namespace `{}` dropped: {} is cluster-scoped",
                        ns.as_str().unwrap_or_default(),
                        identity.kind
                    ),
                });
            }
        }
        // Unknown kinds are treated as namespaced, as Kustomize does.
        Some(true) | None => {
            if let Some(Value::String(ns)) = meta.get("namespace") {
                identity.namespace = ns.clone();
            } else if let Some(ns) = namespace {
                meta.insert("namespace".into(), Value::String(ns.to_string()));
                identity.namespace = ns.to_string();
            }
        }
    }
    sort_keys(&mut value);
    Object {
        identity,
        api_version,
        source: doc.source,
        tree: doc.tree,
        value,
    }
}

/// `null`, `{}`, `[]` and `""`.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Remove `null` map values at every depth (a `null` field is an unset field); `null` list
/// items are kept, they are positional.
pub fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Sort map keys in byte order at every depth.
pub fn sort_keys(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.sort_keys();
            m.values_mut().for_each(sort_keys);
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

/// Namespaces first (they must exist before what lives in them), then CRDs (before their
/// custom resources), then everything else.
fn rank(id: &Identity) -> u8 {
    match (id.group.as_str(), id.kind.as_str()) {
        ("", "Namespace") => 0,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => 1,
        _ => 2,
    }
}

/// The render order: a total order over identities.
pub fn order_key(id: &Identity) -> (u8, &str, &str, &str, &str) {
    (rank(id), &id.kind, &id.namespace, &id.name, &id.group)
}

pub fn sort_objects(objects: &mut [Object]) {
    objects.sort_by(|a, b| order_key(&a.identity).cmp(&order_key(&b.identity)));
}

/// Two objects with one identity: the second would silently replace the first on apply.
pub fn check_duplicates(objects: &[Object]) -> Result<(), RenderError> {
    let mut seen: BTreeMap<&Identity, &Object> = BTreeMap::new();
    for o in objects {
        if let Some(first) = seen.insert(&o.identity, o) {
            let (first, second) = if first.source <= o.source {
                (first, o)
            } else {
                (o, first)
            };
            return Err(RenderError::Duplicate(Box::new(Duplicate {
                identity: o.identity.clone(),
                first: first.source.clone(),
                second: second.source.clone(),
            })));
        }
    }
    Ok(())
}

/// Canonical JSON: sorted keys (already, after `normalise`), no insignificant whitespace,
/// serde_json's number and string forms.
pub fn canonical_json(objects: &[Object]) -> Vec<u8> {
    let mut out = Vec::with_capacity(objects.len() * 512);
    out.push(b'[');
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &o.value).expect("JSON values serialise");
    }
    out.push(b']');
    out
}

/// `sha256:<hex>` of the canonical JSON of the ordered objects.
pub fn digest(objects: &[Object]) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(canonical_json(objects)))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Limits, parse_documents};
    use crate::object::Source;
    use proptest::prelude::*;

    fn objects(text: &str, ns: Option<&str>, scopes: &Scopes) -> (Vec<Object>, Vec<Note>) {
        let docs = parse_documents("t.yaml", text.as_bytes(), &Limits::default(), false).unwrap();
        let mut notes = Vec::new();
        let objs = docs
            .into_iter()
            .map(|d| normalise(d, ns, scopes, &mut notes))
            .collect();
        (objs, notes)
    }

    #[test]
    fn drops_empty_values_like_kubectl_and_sorts_keys() {
        let (objs, _) = objects(
            "kind: Service\napiVersion: v1\nmetadata:\n  name: web\n  creationTimestamp: null\n  labels: {}\n  annotations:\nspec:\n  selector: {app: web}\n  clusterIP: null\n  ports:\n  - port: 80\nstatus:\n  loadBalancer: {}\n",
            Some("shop"),
            &Scopes::default(),
        );
        let v = &objs[0].value;
        assert_eq!(
            serde_json::to_string(v).unwrap(),
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"shop"},"spec":{"ports":[{"port":80}],"selector":{"app":"web"}},"status":{"loadBalancer":{}}}"#
        );
        let (objs, _) = objects(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  volumes:\n  - name: tmp\n    emptyDir: {}\nstatus: {}\n",
            None,
            &Scopes::default(),
        );
        assert_eq!(
            objs[0].value["spec"]["volumes"][0]["emptyDir"],
            serde_json::json!({})
        );
        assert!(objs[0].value.get("status").is_none());
        assert!(objs[0].value["metadata"].get("namespace").is_none());
    }

    #[test]
    fn namespace_applies_to_namespaced_kinds_only() {
        let mut scopes = Scopes::default();
        scopes.add_custom("example.com", "Cluster", false);
        let (objs, notes) = objects(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r, namespace: oops}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: d, namespace: other}\n---\napiVersion: example.com/v1\nkind: Cluster\nmetadata: {name: e}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
            Some("shop"),
            &scopes,
        );
        let ns: Vec<&str> = objs.iter().map(|o| o.identity.namespace.as_str()).collect();
        assert_eq!(ns, ["", "", "shop", "other", "", "shop"]);
        assert!(objs[1].value["metadata"].get("namespace").is_none());
        assert_eq!(notes.len(), 1);
        assert!(notes[0].message.contains("cluster-scoped"));
    }

    fn id(group: &str, kind: &str, ns: &str, name: &str) -> Identity {
        Identity {
            group: group.into(),
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn namespaces_and_crds_come_first() {
        let mut ids = [
            id("apps", "Deployment", "a", "x"),
            id(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                "",
                "w.example.com",
            ),
            id("", "ConfigMap", "a", "x"),
            id("", "Namespace", "", "a"),
            id("", "ConfigMap", "a", "b"),
        ];
        ids.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
        let kinds: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace a",
                "apiextensions.k8s.io/CustomResourceDefinition w.example.com",
                "ConfigMap a/b",
                "ConfigMap a/x",
                "apps/Deployment a/x"
            ]
        );
    }

    #[test]
    fn duplicates_name_both_sources() {
        let (objs, _) = objects(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n---\napiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: x}\n",
            Some("n"),
            &Scopes::default(),
        );
        let err = check_duplicates(&objs).unwrap_err();
        assert_eq!(
            err.to_string(),
            "apps/Deployment n/x is defined twice: at t.yaml:1 and at t.yaml:5"
        );
    }

    fn object(kind: u8, ns: u8, name: u8, payload: u32) -> Object {
        let kinds = [
            "Namespace",
            "ConfigMap",
            "Service",
            "CustomResourceDefinition",
        ];
        let kind = kinds[kind as usize % kinds.len()];
        let group = if kind == "CustomResourceDefinition" {
            "apiextensions.k8s.io"
        } else {
            ""
        };
        let ns = if kind == "Namespace" || !group.is_empty() {
            String::new()
        } else {
            format!("ns{ns}")
        };
        Object {
            identity: id(group, kind, &ns, &format!("n{name}")),
            api_version: "v1".into(),
            source: Source::default(),
            tree: None,
            value: serde_json::json!({"kind": kind, "metadata": {"name": format!("n{name}"), "namespace": ns}, "data": {"v": payload}}),
        }
    }

    proptest! {
        #[test]
        fn order_is_total_and_consistent(a in (0u8..4, 0u8..3, 0u8..5), b in (0u8..4, 0u8..3, 0u8..5), c in (0u8..4, 0u8..3, 0u8..5)) {
            let (x, y, z) = (object(a.0, a.1, a.2, 0), object(b.0, b.1, b.2, 0), object(c.0, c.1, c.2, 0));
            let (kx, ky, kz) = (order_key(&x.identity), order_key(&y.identity), order_key(&z.identity));
            // antisymmetry, and equality only for equal identities
            prop_assert_eq!(kx.cmp(&ky), ky.cmp(&kx).reverse());
            prop_assert_eq!(kx == ky, x.identity == y.identity);
            // transitivity
            if kx <= ky && ky <= kz { prop_assert!(kx <= kz); }
        }

        #[test]
        fn digest_is_independent_of_input_order(
            specs in proptest::collection::btree_map((0u8..4, 0u8..3, 0u8..6), 0u32..1000, 1..20),
            seed in any::<u64>(),
        ) {
            let mut objs: Vec<Object> = specs.iter().map(|((k, n, m), p)| object(*k, *n, *m, *p)).collect();
            // identities may collide when the kind ignores the namespace; keep one of each
            objs.sort_by(|a, b| a.identity.cmp(&b.identity));
            objs.dedup_by(|a, b| a.identity == b.identity);
            let mut shuffled = objs.clone();
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            sort_objects(&mut objs);
            sort_objects(&mut shuffled);
            prop_assert_eq!(digest(&objs), digest(&shuffled));
        }

        #[test]
        fn digest_changes_with_content(p in 0u32..1000, q in 0u32..1000) {
            prop_assume!(p != q);
            prop_assert_ne!(digest(&[object(1, 0, 0, p)]), digest(&[object(1, 0, 0, q)]));
        }
    }
}
