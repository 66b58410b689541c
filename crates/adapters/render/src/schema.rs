//! Schema validation: every rendered object against the JSON schema of its apiVersion/kind.
//!
//! Built-in kinds use the schemas k8s-openapi generates for the compiled-in Kubernetes version
//! (no network, no schema files); custom resources use the `openAPIV3Schema` of CRDs found in
//! the repository or the rendered output (`apiextensions.k8s.io/v1`, and the `v1beta1` layout
//! old charts still carry); extra JSON schemas can be registered per kind. Schemas are
//! adjusted to what the API server accepts before compiling (see `prepare`): int-or-string and
//! quantities, `nullable`, and unknown fields, which are reported separately so that
//! non-strict mode can warn about them while strict mode blocks.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Draft, Validator};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sluice_model::finding::Severity;
use sluice_model::yaml::Node;

use crate::diagnostic::Diagnostic;
use crate::kinds::{self, KUBERNETES_VERSION};
use crate::normalize::Scopes;
use crate::object::{Identity, Object, Source, group_of, version_of};

type Gvk = (String, String, String);

/// Validation settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Kinds without a schema and unknown fields are errors instead of warnings.
    pub strict: bool,
}

/// Where a custom schema came from.
#[derive(Debug, Clone)]
pub struct CustomSchema {
    pub schema: Value,
    /// OpenAPI v3 (CRDs) is compiled as draft 4 (boolean `exclusiveMaximum`); JSON schema
    /// files as 2020-12 unless they say otherwise.
    pub openapi: bool,
    pub origin: String,
}

/// The schemas for one validation: built-ins plus what the repository adds.
#[derive(Debug, Clone, Default)]
pub struct SchemaSet {
    custom: HashMap<Gvk, CustomSchema>,
    scopes: Scopes,
    /// CRDs already read, by name (the same CRD may be in the repository and in the output).
    /// Later definitions win: the repository's CRDs are read first, then the rendered
    /// output's, which is what the cluster will actually receive.
    crds: HashMap<String, Value>,
}

impl SchemaSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a JSON schema for one kind (kubeconform-style schema files).
    pub fn add_schema(
        &mut self,
        group: &str,
        version: &str,
        kind: &str,
        schema: Value,
        origin: &str,
    ) {
        self.custom.insert(
            (group.into(), version.into(), kind.into()),
            CustomSchema {
                schema,
                openapi: false,
                origin: origin.into(),
            },
        );
    }

    /// Learn a CRD's scope and per-version schemas. Returns diagnostics for a malformed CRD.
    pub fn add_crd(&mut self, crd: &Value, source: &Source) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let spec = &crd["spec"];
        let (Some(group), Some(kind)) = (spec["group"].as_str(), spec["names"]["kind"].as_str())
        else {
            out.push(Diagnostic::new(
                Severity::Warning,
                "schema/crd",
                source,
                None,
                format!(
                    "CustomResourceDefinition {name} has no spec.group or spec.names.kind; ignored"
                ),
            ));
            return out;
        };
        let key = format!("{name}@{group}/{kind}");
        if self.crds.get(&key) == Some(&crd["spec"]) {
            return out;
        }
        self.crds.insert(key, crd["spec"].clone());
        // v1 requires scope; v1beta1 defaulted an absent or empty scope to Namespaced.
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        self.scopes.add_custom(group, kind, namespaced);
        let origin = format!("CRD {name} ({source})");
        let mut versions: Vec<(String, Option<&Value>)> = Vec::new();
        if let Some(list) = spec["versions"].as_array() {
            for v in list {
                if let Some(vn) = v["name"].as_str() {
                    let schema = v["schema"]["openAPIV3Schema"]
                        .as_object()
                        .map(|_| &v["schema"]["openAPIV3Schema"]);
                    versions.push((vn.to_string(), schema));
                }
            }
        } else if let Some(vn) = spec["version"].as_str() {
            versions.push((vn.to_string(), None));
        }
        // v1beta1: one schema for every version under spec.validation.
        let shared = spec["validation"]["openAPIV3Schema"]
            .as_object()
            .map(|_| &spec["validation"]["openAPIV3Schema"]);
        for (version, schema) in versions {
            match schema.or(shared) {
                Some(s) => {
                    self.custom.insert(
                        (group.into(), version, kind.into()),
                        CustomSchema {
                            schema: s.clone(),
                            openapi: true,
                            origin: origin.clone(),
                        },
                    );
                }
                None => out.push(Diagnostic::new(
                    Severity::Info,
                    "schema/crd",
                    source,
                    None,
                    format!("CRD {name} version {version} has no openAPIV3Schema; its objects are not validated"),
                )),
            }
        }
        out
    }

    /// Scopes of the custom kinds learnt from CRDs.
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    pub fn custom(&self, group: &str, version: &str, kind: &str) -> Option<&CustomSchema> {
        self.custom
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
    }
}

/// Totals and findings of one validation run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Validation {
    pub kubernetes_version: &'static str,
    pub strict: bool,
    pub objects: usize,
    pub valid: usize,
    pub invalid: usize,
    /// Objects with no schema (warned, or errors in strict mode).
    pub no_schema: usize,
    pub findings: Vec<Diagnostic>,
}

impl Validation {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count()
    }

    pub fn passed(&self) -> bool {
        self.errors() == 0
    }
}

type Compiled = Arc<Result<Validator, String>>;

/// Built-in validators depend only on the compiled-in version: compile each once per process.
fn builtin_validator(k: &kinds::BuiltinKind) -> Compiled {
    type Key = (&'static str, &'static str, &'static str);
    static CACHE: OnceLock<Mutex<HashMap<Key, Compiled>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (k.group, k.version, k.kind);
    if let Some(hit) = cache.lock().expect("validator cache").get(&key) {
        return hit.clone();
    }
    let mut schema = (k.schema)();
    prepare_builtin(&mut schema);
    let compiled = Arc::new(compile(&schema, Draft::Draft202012));
    cache
        .lock()
        .expect("validator cache")
        .entry(key)
        .or_insert(compiled)
        .clone()
}

fn compile(schema: &Value, draft: Draft) -> Result<Validator, String> {
    jsonschema::options()
        .with_draft(draft)
        .should_validate_formats(false)
        .build(schema)
        .map_err(|e| e.to_string())
}

/// Which schema an object is validated against.
enum Target {
    Builtin(Compiled),
    Custom { compiled: Compiled, origin: String },
    None,
}

fn target_for(set: &SchemaSet, gvk: &Gvk) -> Target {
    let (g, v, k) = gvk;
    if let Some(c) = set.custom(g, v, k) {
        let mut schema = c.schema.clone();
        let draft = if c.openapi {
            prepare_openapi(&mut schema);
            Draft::Draft4
        } else {
            prepare_json_schema(&mut schema);
            Draft::Draft202012
        };
        return Target::Custom {
            compiled: Arc::new(compile(&schema, draft)),
            origin: c.origin.clone(),
        };
    }
    match kinds::builtin_kind(g, v, k) {
        Some(b) => Target::Builtin(builtin_validator(&b)),
        None => Target::None,
    }
}

/// Validate every object. Pure over its inputs (the built-in validator cache only memoises).
pub fn validate(objects: &[Object], set: &SchemaSet, options: Options) -> Validation {
    let gvks: BTreeSet<Gvk> = objects.iter().map(gvk_of).collect();
    let targets: HashMap<Gvk, Target> = gvks
        .into_par_iter()
        .map(|g| {
            let t = target_for(set, &g);
            (g, t)
        })
        .collect();
    let per_object: Vec<(Outcome, Vec<Diagnostic>)> = objects
        .par_iter()
        .map(|o| validate_one(o, &targets[&gvk_of(o)], options))
        .collect();
    let mut v = Validation {
        kubernetes_version: KUBERNETES_VERSION,
        strict: options.strict,
        objects: objects.len(),
        ..Validation::default()
    };
    for (outcome, findings) in per_object {
        match outcome {
            Outcome::Valid => v.valid += 1,
            Outcome::Invalid => v.invalid += 1,
            Outcome::NoSchema => v.no_schema += 1,
        }
        v.findings.extend(findings);
    }
    // Report a broken custom schema once, not once per object.
    v.findings.sort();
    v.findings.dedup();
    v
}

fn gvk_of(o: &Object) -> Gvk {
    (
        group_of(&o.api_version).to_string(),
        version_of(&o.api_version).to_string(),
        o.identity.kind.clone(),
    )
}

enum Outcome {
    Valid,
    Invalid,
    NoSchema,
}

fn validate_one(o: &Object, target: &Target, options: Options) -> (Outcome, Vec<Diagnostic>) {
    let strict_severity = if options.strict {
        Severity::Error
    } else {
        Severity::Warning
    };
    let (compiled, origin) = match target {
        Target::Builtin(c) => (c, None),
        Target::Custom { compiled, origin } => (compiled, Some(origin.as_str())),
        Target::None => {
            return (
                Outcome::NoSchema,
                vec![Diagnostic::new(
                    strict_severity,
                    "schema/missing",
                    &o.source,
                    Some(&o.identity),
                    missing_message(o),
                )],
            );
        }
    };
    let validator = match compiled.as_ref() {
        Ok(v) => v,
        Err(e) => {
            return (
                Outcome::NoSchema,
                vec![Diagnostic::new(
                    strict_severity,
                    "schema/crd",
                    &o.source,
                    Some(&o.identity),
                    format!(
                        "the schema from {} does not compile ({e}); object not validated",
                        origin.unwrap_or("k8s-openapi")
                    ),
                )],
            );
        }
    };
    if validator.is_valid(&o.value) {
        return (Outcome::Valid, Vec::new());
    }
    let mut findings = Vec::new();
    let mut blocking = false;
    for err in validator.iter_errors(&o.value) {
        let path = err.instance_path().to_string();
        match err.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for field in unexpected {
                    let p = format!("{path}/{}", escape_pointer(field));
                    findings.push(finding(
                        o,
                        strict_severity,
                        "schema/unknown-field",
                        &p,
                        format!("unknown field `{field}`"),
                    ));
                }
                blocking |= options.strict;
            }
            kind => {
                findings.push(finding(
                    o,
                    Severity::Error,
                    "schema/invalid",
                    &path,
                    describe(kind, err.instance(), &err.masked().to_string()),
                ));
                blocking = true;
            }
        }
    }
    (
        if blocking {
            Outcome::Invalid
        } else {
            Outcome::Valid
        },
        findings,
    )
}

fn missing_message(o: &Object) -> String {
    let group = &o.identity.group;
    let known_elsewhere = kinds::builtins()
        .filter(|b| b.group == group && b.kind == o.identity.kind)
        .map(|b| {
            if b.group.is_empty() {
                b.version.to_string()
            } else {
                format!("{}/{}", b.group, b.version)
            }
        })
        .collect::<BTreeSet<_>>();
    if known_elsewhere.is_empty() {
        format!(
            "no schema for {} {}: not a built-in kind of Kubernetes {KUBERNETES_VERSION} and no CRD in the repository or the rendered output defines it",
            o.api_version, o.identity.kind
        )
    } else {
        format!(
            "no schema for {} {}: Kubernetes {KUBERNETES_VERSION} serves {} only as {}",
            o.api_version,
            o.identity.kind,
            o.identity.kind,
            known_elsewhere.into_iter().collect::<Vec<_>>().join(", ")
        )
    }
}

fn finding(o: &Object, severity: Severity, rule: &str, path: &str, message: String) -> Diagnostic {
    let mut d = Diagnostic::new(severity, rule, &o.source, Some(&o.identity), message);
    d.path = Some(if path.is_empty() {
        "/".into()
    } else {
        path.into()
    });
    if let Some(line) = o.tree.as_deref().and_then(|t| line_of(t, path)) {
        d.line = line;
    }
    d
}

/// A message for a validation error that never quotes the value itself.
fn describe(kind: &ValidationErrorKind, instance: &Value, masked: &str) -> String {
    let found = json_type(instance);
    match kind {
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            format!("expected {expected}, found {found}")
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            let mut expected = BTreeSet::new();
            for branch in context {
                for e in branch {
                    if let ValidationErrorKind::Type { kind } = e.kind() {
                        match kind {
                            TypeKind::Single(t) => {
                                expected.insert(t.to_string());
                            }
                            TypeKind::Multiple(s) => {
                                expected.extend(s.iter().map(|t| t.to_string()));
                            }
                        }
                    }
                }
            }
            if expected.is_empty() {
                masked.to_string()
            } else {
                format!(
                    "expected {}, found {found}",
                    expected.into_iter().collect::<Vec<_>>().join(" or ")
                )
            }
        }
        ValidationErrorKind::Required { property } => {
            format!(
                "missing required field `{}`",
                property.as_str().unwrap_or_default()
            )
        }
        _ => masked.to_string(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The line of the deepest node on a JSON pointer path (the key's line for a mapping entry).
pub fn line_of(tree: &Node, pointer: &str) -> Option<u32> {
    let mut node = tree;
    let mut line = tree.line;
    for raw in pointer.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        if let Some(entries) = node.as_map() {
            match entries
                .iter()
                .find(|(k, _)| k.scalar_text().as_deref() == Some(seg.as_str()))
            {
                Some((k, v)) => {
                    line = k.line;
                    node = v;
                }
                None => break,
            }
        } else if let Some(items) = node.as_seq() {
            match seg.parse::<usize>().ok().and_then(|i| items.get(i)) {
                Some(item) => {
                    line = item.line;
                    node = item;
                }
                None => break,
            }
        } else {
            break;
        }
    }
    Some(line)
}

// ---- schema preparation (pure) ----

const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const ANY_JSON: &str = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON";

/// k8s-openapi schemas: quantities accept strings and numbers (`cpu: 0.5`), as the API server
/// does; then the common adjustments.
pub fn prepare_builtin(schema: &mut Value) {
    if let Some(q) = schema.pointer_mut(&format!("/$defs/{QUANTITY}"))
        && let Some(m) = q.as_object_mut()
    {
        m.remove("x-kubernetes-int-or-string");
        m.insert(
            "anyOf".into(),
            json!([{"type": "string"}, {"type": "number"}]),
        );
    }
    // `apiextensions.k8s.io/v1 JSON` (CRD defaults, enums, examples) is any JSON value; the
    // generated schema says "object", which would reject `enum: [RSA, ECDSA]`.
    if let Some(j) = schema.pointer_mut(&format!("/$defs/{ANY_JSON}"))
        && let Some(m) = j.as_object_mut()
    {
        m.remove("type");
    }
    walk(schema, &mut adjust);
}

/// CRD `openAPIV3Schema`: the object's own type fields may be left out of a CRD schema.
pub fn prepare_openapi(schema: &mut Value) {
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props
            .entry("apiVersion")
            .or_insert_with(|| json!({"type": "string"}));
        props
            .entry("kind")
            .or_insert_with(|| json!({"type": "string"}));
        props
            .entry("metadata")
            .or_insert_with(|| json!({"type": "object"}));
    }
    walk(schema, &mut adjust);
}

/// A registered JSON schema is used as written (no unknown-field tightening: its author chose).
pub fn prepare_json_schema(schema: &mut Value) {
    if let Some(m) = schema.as_object_mut() {
        m.remove("$schema");
    }
}

fn adjust(m: &mut Map<String, Value>) {
    let flag = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_bool) == Some(true);
    if flag(m, "x-kubernetes-int-or-string")
        && !m.contains_key("type")
        && !m.contains_key("anyOf")
        && !m.contains_key("oneOf")
    {
        m.insert(
            "anyOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    if flag(m, "nullable")
        && let Some(Value::String(t)) = m.get("type").cloned()
    {
        m.insert("type".into(), json!([t, "null"]));
        if let Some(Value::Array(options)) = m.get_mut("enum") {
            options.push(Value::Null);
        }
    }
    // Unknown fields: the API server rejects (kubectl's strict field validation) or prunes
    // them; either way the author's intent is lost. Reported as `schema/unknown-field`.
    if m.contains_key("properties")
        && !m.contains_key("additionalProperties")
        && !flag(m, "x-kubernetes-preserve-unknown-fields")
        && !flag(m, "x-kubernetes-embedded-resource")
    {
        m.insert("additionalProperties".into(), Value::Bool(false));
    }
}

/// Visit every schema object of a schema document (and only schemas: `properties` maps hold
/// schemas, they are not schemas themselves).
fn walk(schema: &mut Value, f: &mut impl FnMut(&mut Map<String, Value>)) {
    let Some(m) = schema.as_object_mut() else {
        return;
    };
    f(m);
    for key in [
        "properties",
        "patternProperties",
        "$defs",
        "definitions",
        "dependentSchemas",
    ] {
        if let Some(Value::Object(children)) = m.get_mut(key) {
            children.values_mut().for_each(|c| walk(c, f));
        }
    }
    for key in ["allOf", "anyOf", "oneOf", "prefixItems"] {
        if let Some(Value::Array(children)) = m.get_mut(key) {
            children.iter_mut().for_each(|c| walk(c, f));
        }
    }
    for key in [
        "additionalProperties",
        "items",
        "not",
        "if",
        "then",
        "else",
        "contains",
        "propertyNames",
        "unevaluatedProperties",
        "additionalItems",
    ] {
        match m.get_mut(key) {
            Some(Value::Array(children)) => children.iter_mut().for_each(|c| walk(c, f)),
            Some(child @ Value::Object(_)) => walk(child, f),
            _ => {}
        }
    }
}

/// Objects' identity for messages when a CRD cannot be read.
pub fn crd_identity(crd: &Value) -> Identity {
    Identity {
        group: "apiextensions.k8s.io".into(),
        kind: "CustomResourceDefinition".into(),
        namespace: String::new(),
        name: crd["metadata"]["name"].as_str().unwrap_or_default().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Limits, parse_documents};
    use crate::normalize::normalise;

    fn objects(text: &str, set: &SchemaSet) -> Vec<Object> {
        let docs = parse_documents("t.yaml", text.as_bytes(), &Limits::default(), true).unwrap();
        let mut notes = Vec::new();
        docs.into_iter()
            .map(|d| normalise(d, Some("default"), set.scopes(), &mut notes))
            .collect()
    }

    #[test]
    fn valid_deployment_with_quantities_and_int_or_string() {
        let set = SchemaSet::new();
        let objs = objects(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  strategy:\n    rollingUpdate: {maxSurge: 25%, maxUnavailable: 1}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n        resources:\n          requests: {cpu: 0.5, memory: 256Mi}\n          limits: {cpu: \"1\", memory: 1073741824}\n        ports: [{containerPort: 80}]\n        readinessProbe: {httpGet: {path: /, port: http}}\n",
            &set,
        );
        let v = validate(&objs, &set, Options::default());
        assert!(v.findings.is_empty(), "{:#?}", v.findings);
        assert_eq!(v.valid, 1);
    }

    #[test]
    fn type_errors_name_path_and_line_without_the_value() {
        let set = SchemaSet::new();
        let objs = objects(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: hunter2-secret\n    targetPort: 6379\n",
            &set,
        );
        let v = validate(&objs, &set, Options::default());
        assert_eq!(v.invalid, 1);
        let f = &v.findings[0];
        assert_eq!(f.path.as_deref(), Some("/spec/ports/0/port"));
        assert_eq!(f.line, 6);
        assert_eq!(f.message, "expected integer, found string");
        assert!(!f.to_string().contains("hunter2"), "{f}");
        assert_eq!(
            f.to_string(),
            "t.yaml:6: error: Service default/s /spec/ports/0/port: expected integer, found string [schema/invalid]"
        );
    }

    #[test]
    fn unknown_fields_warn_unless_strict() {
        let set = SchemaSet::new();
        let objs = objects(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: d}\nspec:\n  replicas: 2\n  selector: {matchLabels: {a: b}}\n  template:\n    spec:\n      containers: [{name: c, image: nginx}]\n",
            &set,
        );
        let v = validate(&objs, &set, Options::default());
        assert!(v.passed());
        assert_eq!(v.valid, 1);
        assert_eq!(v.findings[0].rule, "schema/unknown-field");
        assert_eq!(v.findings[0].path.as_deref(), Some("/spec/replicas"));
        assert_eq!(v.findings[0].line, 5);
        let v = validate(&objs, &set, Options { strict: true });
        assert!(!v.passed());
        assert_eq!(v.invalid, 1);
    }

    #[test]
    fn missing_schema_is_a_warning_and_explains_removed_versions() {
        let set = SchemaSet::new();
        let objs = objects(
            "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: i}\n---\napiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: d}\n",
            &set,
        );
        let v = validate(&objs, &set, Options::default());
        assert!(v.passed());
        assert_eq!(v.no_schema, 2);
        let messages: Vec<&str> = v.findings.iter().map(|f| f.message.as_str()).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("serves Deployment only as apps/v1")),
            "{messages:?}"
        );
        assert!(!validate(&objs, &set, Options { strict: true }).passed());
    }

    #[test]
    fn crds_give_scope_and_schema_for_custom_resources() {
        let mut set = SchemaSet::new();
        let crd: Value = serde_json::from_str(r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"widgets.example.com"},
          "spec":{"group":"example.com","scope":"Cluster","names":{"kind":"Widget","plural":"widgets"},
          "versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{
            "spec":{"type":"object","required":["size"],"properties":{"size":{"type":"integer","minimum":1},"port":{"x-kubernetes-int-or-string":true},"note":{"type":"string","nullable":true},
            "free":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}}}}}]}}"#).unwrap();
        assert!(set.add_crd(&crd, &Source::default()).is_empty());
        let objs = objects(
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: ok}\nspec: {size: 2, port: http, free: {any: thing}}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {size: 0, port: 1.5, colour: red}\n",
            &set,
        );
        assert_eq!(objs[0].identity.namespace, "", "cluster-scoped per the CRD");
        let v = validate(&objs, &set, Options::default());
        assert_eq!(v.valid, 1);
        assert_eq!(v.invalid, 1);
        let rules: Vec<(&str, &str)> = v
            .findings
            .iter()
            .map(|f| (f.rule.as_str(), f.path.as_deref().unwrap()))
            .collect();
        assert!(
            rules.contains(&("schema/invalid", "/spec/size")),
            "{rules:?}"
        );
        assert!(
            rules.contains(&("schema/invalid", "/spec/port")),
            "{rules:?}"
        );
        assert!(
            rules.contains(&("schema/unknown-field", "/spec/colour")),
            "{rules:?}"
        );
    }

    #[test]
    fn walk_visits_schemas_not_property_maps() {
        // A field literally named `properties` must not be mistaken for a schema keyword.
        let mut s = json!({"type": "object", "properties": {"properties": {"type": "string"}}});
        walk(&mut s, &mut adjust);
        assert_eq!(s["additionalProperties"], false);
        assert!(s["properties"].get("additionalProperties").is_none());
        assert!(
            s["properties"]["properties"]
                .get("additionalProperties")
                .is_none()
        );
    }
}
