//! Gatekeeper compatibility: ConstraintTemplates (Rego v0 in `spec.targets[].rego`, with their
//! `libs`) and constraints evaluated the way Gatekeeper's admission target does, over objects
//! sluice rendered, and the `suite.yaml` runner behind `sluice policy gatekeeper-test`
//! (`gator verify`'s format: tests of a template and a constraint, cases of an object, optional
//! inventory and expected violations).
//!
//! What Gatekeeper provides and sluice reproduces: `input.review` (`kind` {group, version,
//! kind}, `name`, `namespace`, `operation`, `object`, `oldObject`, `userInfo`), `input.parameters`
//! (the constraint's `spec.parameters`), `data.inventory` (synced objects:
//! `namespace[ns][apiVersion][kind][name]` and `cluster[apiVersion][kind][name]`), and the
//! constraint's `spec.match`: `kinds`, `namespaces` and `excludedNamespaces` (with `prefix*` /
//! `*suffix` globs), `labelSelector`, `namespaceSelector` (against the Namespace object, from
//! the inventory), `scope` and `name`. Not reproduced: `external_data` calls, mutation and
//! expansion templates, and CEL (`K8sNativeValidation`) code, which the Rego of the same
//! template stands in for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{self, PolicyError};

/// The admission target whose Rego sluice runs.
pub const ADMISSION_TARGET: &str = "admission.k8s.gatekeeper.sh";

/// A compiled ConstraintTemplate.
#[derive(Clone)]
pub struct Template {
    /// `metadata.name` (`k8srequiredlabels`).
    pub name: String,
    /// The constraint kind it defines (`K8sRequiredLabels`).
    pub kind: String,
    /// The Rego package of the main module.
    pub package: String,
    pub file: String,
    engine: regorus::Engine,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("package", &self.package)
            .finish()
    }
}

/// A constraint: an instance of a template's kind with parameters and a match.
#[derive(Debug, Clone, Serialize)]
pub struct Constraint {
    pub kind: String,
    pub name: String,
    pub parameters: Value,
    #[serde(rename = "match")]
    pub match_: Value,
    /// `deny` (default), `dryrun`, `warn`.
    pub enforcement_action: String,
}

/// One violation a template reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    pub msg: String,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

fn yaml_docs(file: &str, text: &str) -> Result<Vec<Value>, PolicyError> {
    let nodes = match sluice_model::yaml::parse_stream(text) {
        Ok(nodes) => nodes,
        Err(e) => {
            // Gatekeeper reads YAML with Go's parser, which accepts a few layouts YAML 1.2
            // parsers reject (a quoted scalar continued at its key's indentation). Such a
            // single-document file gets a second, lenient reading before it is an error.
            if !text.contains("\n---")
                && let Ok(v) = regorus::Value::from_yaml_str(text)
                && let Ok(json) = serde_json::to_value(&v)
            {
                return Ok(vec![json]);
            }
            return Err(PolicyError::Rego {
                file: file.to_string(),
                line: e.line,
                col: e.col,
                message: format!("invalid YAML: {}", e.message),
            });
        }
    };
    Ok(nodes
        .iter()
        .map(sluice_model::yaml::Node::to_json)
        .filter(|v| !v.is_null())
        .collect())
}

/// Rewrite two Rego v0 forms OPA accepts and regorus reads differently, without changing
/// their meaning: a rule with several bodies (`f(x) = y { ... } { ... }`) becomes one rule per
/// body, and a line opening with `(` after a complete term is kept a separate expression
/// (regorus would read `a\n(b)` as the call `a(b)`).
pub fn compat_rego(src: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut head: Option<String> = None;
    let mut prev_code = String::new();
    for line in src.lines() {
        let trimmed = line.trim();
        let indent = &line[..line.len() - line.trim_start().len()];
        if trimmed == "} {"
            && let Some(h) = &head
        {
            out.push(format!("{indent}}}"));
            out.push(format!("{indent}{h} {{"));
            prev_code.clear();
            continue;
        }
        // A rule head starts at the module's left margin and opens a body.
        if !line.starts_with(char::is_whitespace)
            && trimmed.ends_with('{')
            && !trimmed.starts_with('}')
            && !trimmed.starts_with('#')
        {
            head = Some(trimmed.trim_end_matches('{').trim_end().to_string());
        }
        if trimmed.starts_with('(')
            && prev_code
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ']' || c == '"')
            && let Some(last) = out.last_mut()
        {
            last.push(';');
        }
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            prev_code = trimmed.to_string();
        }
        out.push(line.to_string());
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|e| PolicyError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The package a Rego module declares.
fn package_of(rego: &str) -> Option<String> {
    rego.lines().find_map(|l| {
        let l = l.trim();
        l.strip_prefix("package ")
            .map(|p| p.trim().trim_end_matches(';').to_string())
    })
}

impl Template {
    /// Compile a ConstraintTemplate document.
    pub fn from_value(doc: &Value, file: &str) -> Result<Template, PolicyError> {
        let bad = |message: String| PolicyError::Data {
            file: file.to_string(),
            message,
        };
        if doc.get("kind").and_then(Value::as_str) != Some("ConstraintTemplate") {
            return Err(bad("not a ConstraintTemplate".into()));
        }
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let kind = doc
            .pointer("/spec/crd/spec/names/kind")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("spec.crd.spec.names.kind is missing".into()))?
            .to_string();
        let targets = doc
            .pointer("/spec/targets")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("spec.targets is missing".into()))?;
        let target = targets
            .iter()
            .find(|t| t.get("target").and_then(Value::as_str) == Some(ADMISSION_TARGET))
            .ok_or_else(|| bad(format!("no `{ADMISSION_TARGET}` target")))?;
        // `rego`/`libs` on the target, or (newer templates) a `code` entry of engine `Rego`
        // next to the CEL one.
        let rego_code = target
            .get("code")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| c.get("engine").and_then(Value::as_str) == Some("Rego"))
            .and_then(|c| c.get("source"));
        let source = if target.get("rego").is_some() {
            target
        } else {
            rego_code.unwrap_or(target)
        };
        let rego = source.get("rego").and_then(Value::as_str).ok_or_else(|| {
            bad("the admission target has no Rego (CEL-only templates are not supported)".into())
        })?;
        let rego = &compat_rego(rego);
        let package = package_of(rego).ok_or_else(|| bad("the Rego has no package".into()))?;
        let mut engine = regorus::Engine::new();
        engine.set_strict_builtin_errors(false);
        engine.set_rego_v0(true);
        engine
            .add_policy(format!("{file}#rego"), rego.to_string())
            .map_err(|e| rego_error(file, &e.to_string()))?;
        for (i, lib) in source
            .get("libs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let text = lib
                .as_str()
                .ok_or_else(|| bad(format!("spec.targets[].libs[{i}] is not a string")))?;
            engine
                .add_policy(format!("{file}#libs[{i}]"), compat_rego(text))
                .map_err(|e| rego_error(file, &e.to_string()))?;
        }
        // Analyse once (unsafe variables, unknown functions surface here).
        engine
            .eval_query("true".to_string(), false)
            .map_err(|e| rego_error(file, &e.to_string()))?;
        Ok(Template {
            name,
            kind,
            package,
            file: file.to_string(),
            engine,
        })
    }

    pub fn load(path: &Path) -> Result<Template, PolicyError> {
        let file = path.display().to_string();
        let docs = yaml_docs(&file, &read(path)?)?;
        let doc = docs.first().ok_or_else(|| PolicyError::Data {
            file: file.clone(),
            message: "empty file".into(),
        })?;
        Template::from_value(doc, &file)
    }

    /// The violations of `review` under `parameters`, with `inventory` as `data.inventory`.
    pub fn violations(
        &self,
        review: &Value,
        parameters: &Value,
        inventory: &Value,
        timeout: Duration,
    ) -> Result<Vec<Violation>, String> {
        let mut engine = self.engine.clone();
        let data = json!({ "inventory": inventory });
        engine
            .add_data(regorus::Value::from_json_str(&data.to_string()).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let input = json!({ "review": review, "parameters": parameters });
        engine.set_input(
            regorus::Value::from_json_str(&input.to_string()).map_err(|e| e.to_string())?,
        );
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: timeout,
            check_interval: std::num::NonZeroU32::new(64).expect("non-zero"),
        });
        let path = format!("data.{}.violation", self.package);
        let value = engine
            .eval_rule(path)
            .map_err(|e| error::summarize(&e.to_string()))?;
        let json: Value = match value {
            regorus::Value::Undefined => return Ok(Vec::new()),
            v => serde_json::to_value(&v).map_err(|e| e.to_string())?,
        };
        let items = match json {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            other => vec![other],
        };
        Ok(items
            .into_iter()
            .map(|v| Violation {
                msg: v
                    .get("msg")
                    .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                    .unwrap_or_default(),
                details: v.get("details").cloned().unwrap_or(Value::Null),
            })
            .collect())
    }
}

fn rego_error(file: &str, text: &str) -> PolicyError {
    match error::parse_diagnostic(text) {
        Some(d) => PolicyError::Rego {
            file: file.to_string(),
            line: d.line,
            col: d.col,
            message: d.message,
        },
        None => PolicyError::Rego {
            file: file.to_string(),
            line: 1,
            col: 1,
            message: error::summarize(text),
        },
    }
}

impl Constraint {
    pub fn from_value(doc: &Value) -> Constraint {
        Constraint {
            kind: doc
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            name: doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            parameters: doc
                .pointer("/spec/parameters")
                .cloned()
                .unwrap_or_else(|| json!({})),
            match_: doc
                .pointer("/spec/match")
                .cloned()
                .unwrap_or_else(|| json!({})),
            enforcement_action: doc
                .pointer("/spec/enforcementAction")
                .and_then(Value::as_str)
                .unwrap_or("deny")
                .to_string(),
        }
    }
}

/// Split `apiVersion` into group and version.
fn group_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// The `input.review` Gatekeeper builds for an object (an `AdmissionReview`'s request is used
/// as it is, filling what it leaves out).
pub fn review(object: &Value) -> Value {
    if object.get("kind").and_then(Value::as_str) == Some("AdmissionReview")
        && let Some(request) = object.get("request")
    {
        let mut r = request.clone();
        let obj = request
            .get("object")
            .filter(|o| !o.is_null())
            .or_else(|| request.get("oldObject"))
            .cloned()
            .unwrap_or(Value::Null);
        let base = review_of(&obj, "CREATE");
        if let (Some(map), Some(base)) = (r.as_object_mut(), base.as_object()) {
            for (k, v) in base {
                if k == "object" {
                    continue;
                }
                map.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        return r;
    }
    review_of(object, "CREATE")
}

fn review_of(object: &Value, operation: &str) -> Value {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (group, version) = group_version(api_version);
    let meta = |k: &str| {
        object
            .pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    json!({
        "kind": {"group": group, "version": version, "kind": object.get("kind").and_then(Value::as_str).unwrap_or_default()},
        "name": meta("name"),
        "namespace": meta("namespace"),
        "operation": operation,
        "object": object,
        "userInfo": {"username": "sluice", "groups": ["system:authenticated"]},
    })
}

/// `data.inventory` for synced objects.
pub fn inventory(objects: &[Value]) -> Value {
    let mut inv = json!({"cluster": {}, "namespace": {}});
    for o in objects {
        let api = o
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
        let name = o
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let slot = match o.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() => &mut inv["namespace"][ns],
            _ => &mut inv["cluster"],
        };
        if !slot.is_object() {
            *slot = json!({});
        }
        let slot = &mut slot[api];
        if !slot.is_object() {
            *slot = json!({});
        }
        let slot = &mut slot[kind];
        if !slot.is_object() {
            *slot = json!({});
        }
        slot[name] = o.clone();
    }
    inv
}

/// Gatekeeper's namespace globs: `prefix*` and `*suffix`, else exact.
fn ns_glob(pattern: &str, ns: &str) -> bool {
    if let Some(p) = pattern.strip_suffix('*') {
        ns.starts_with(p)
    } else if let Some(s) = pattern.strip_prefix('*') {
        ns.ends_with(s)
    } else {
        pattern == ns
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// A Kubernetes label selector (`matchLabels`, `matchExpressions`) against labels.
pub fn selector_matches(selector: &Value, labels: &serde_json::Map<String, Value>) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            if label(k) != v.as_str() {
                return false;
            }
        }
    }
    for e in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let values = strings(e.get("values"));
        let ok = match e
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "In" => label(key).is_some_and(|v| values.iter().any(|x| x == v)),
            "NotIn" => label(key).is_none_or(|v| !values.iter().any(|x| x == v)),
            "Exists" => label(key).is_some(),
            "DoesNotExist" => label(key).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether a constraint's `spec.match` selects the object under review. `inventory` supplies
/// Namespace objects for `namespaceSelector`.
pub fn matches(match_: &Value, review: &Value, inventory: &Value) -> bool {
    let obj = review
        .get("object")
        .filter(|o| o.is_object())
        .or_else(|| review.get("oldObject"))
        .cloned()
        .unwrap_or(Value::Null);
    let group = review
        .pointer("/kind/group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = review
        .pointer("/kind/kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let is_namespace = group.is_empty() && kind == "Namespace";
    let namespace = if is_namespace {
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    } else {
        review
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| obj.pointer("/metadata/namespace").and_then(Value::as_str))
            .unwrap_or_default()
            .to_string()
    };
    // kinds: any entry whose groups and kinds both match ("*" matches anything).
    if let Some(kinds) = match_.get("kinds").and_then(Value::as_array)
        && !kinds.is_empty()
    {
        let hit = kinds.iter().any(|k| {
            let groups = strings(k.get("apiGroups"));
            let names = strings(k.get("kinds"));
            (groups.is_empty() || groups.iter().any(|g| g == "*" || g == group))
                && (names.is_empty() || names.iter().any(|n| n == "*" || n == kind))
        });
        if !hit {
            return false;
        }
    }
    if let Some(scope) = match_.get("scope").and_then(Value::as_str) {
        let namespaced = !namespace.is_empty() && !is_namespace;
        match scope {
            "Cluster" if namespaced => return false,
            "Namespaced" if !namespaced => return false,
            _ => {}
        }
    }
    // Cluster-scoped objects other than Namespaces are not filtered by namespace criteria.
    let has_ns = is_namespace || !namespace.is_empty();
    let included = strings(match_.get("namespaces"));
    if has_ns && !included.is_empty() && !included.iter().any(|p| ns_glob(p, &namespace)) {
        return false;
    }
    let excluded = strings(match_.get("excludedNamespaces"));
    if has_ns && excluded.iter().any(|p| ns_glob(p, &namespace)) {
        return false;
    }
    if let Some(name) = match_.get("name").and_then(Value::as_str) {
        let actual = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !ns_glob(name, actual) {
            return false;
        }
    }
    let empty = serde_json::Map::new();
    if let Some(sel) = match_.get("labelSelector") {
        let labels = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        if !selector_matches(sel, labels) {
            return false;
        }
    }
    if let Some(sel) = match_.get("namespaceSelector") {
        if is_namespace {
            let labels = obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            return selector_matches(sel, labels);
        }
        if namespace.is_empty() {
            return true;
        }
        let ns_obj = inventory
            .get("cluster")
            .and_then(|c| c.get("v1"))
            .and_then(|v| v.get("Namespace"))
            .and_then(|n| n.get(&namespace));
        let Some(ns_obj) = ns_obj else {
            // Gatekeeper cannot judge a namespace it has not synced: it does not match.
            return false;
        };
        let labels = ns_obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        return selector_matches(sel, labels);
    }
    true
}

/// Evaluate one constraint over one object: no violations when the match does not select it.
pub fn evaluate(
    template: &Template,
    constraint: &Constraint,
    object: &Value,
    inventory: &Value,
    timeout: Duration,
) -> Result<Vec<Violation>, String> {
    let review = review(object);
    if !matches(&constraint.match_, &review, inventory) {
        return Ok(Vec::new());
    }
    template.violations(&review, &constraint.parameters, inventory, timeout)
}

// ---------------------------------------------------------------------------------------------
// suite.yaml

/// What a case expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    /// At least one.
    Yes,
    No,
    Exactly(usize),
}

/// One case's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// Suite file, relative to the library folder.
    pub suite: String,
    pub test: String,
    pub case: String,
    pub object: String,
    pub agreed: bool,
    /// Why the case disagrees (or could not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub violations: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub library: String,
    pub suites: usize,
    pub cases: usize,
    pub agreed: usize,
    pub rate: f64,
    pub results: Vec<CaseResult>,
}

impl SuiteReport {
    pub fn disagreements(&self) -> impl Iterator<Item = &CaseResult> {
        self.results.iter().filter(|r| !r.agreed)
    }

    pub fn render_text(&self, verbose: bool) -> String {
        let mut out = String::new();
        for r in &self.results {
            if r.agreed && !verbose {
                continue;
            }
            out.push_str(&format!(
                "{} {} / {} / {} ({}): {}\n",
                if r.agreed { "AGREE   " } else { "DISAGREE" },
                r.suite,
                r.test,
                r.case,
                r.object,
                r.reason.as_deref().unwrap_or("as expected")
            ));
        }
        out.push_str(&format!(
            "{} of {} cases agree with the expected violations ({:.1}%) across {} suites in {}\n",
            self.agreed,
            self.cases,
            self.rate * 100.0,
            self.suites,
            self.library
        ));
        out
    }
}

fn expected_of(v: &Value) -> Option<Expected> {
    match v {
        Value::Bool(true) => Some(Expected::Yes),
        Value::Bool(false) => Some(Expected::No),
        Value::String(s) if s.eq_ignore_ascii_case("yes") => Some(Expected::Yes),
        Value::String(s) if s.eq_ignore_ascii_case("no") => Some(Expected::No),
        Value::String(s) => s.parse().ok().map(Expected::Exactly),
        Value::Number(n) => n.as_u64().map(|n| Expected::Exactly(n as usize)),
        _ => None,
    }
}

/// Check one assertion against the violations; `Err` says why it fails.
fn check_assertion(assertion: &Value, violations: &[Violation]) -> Result<(), String> {
    let expected = match assertion.get("violations") {
        None => Expected::Yes,
        Some(v) => expected_of(v).ok_or_else(|| format!("unreadable assertion `{v}`"))?,
    };
    let message = assertion.get("message").and_then(Value::as_str);
    let counted: Vec<&Violation> = match message {
        None => violations.iter().collect(),
        Some(m) => {
            let re = regex::Regex::new(m).ok();
            violations
                .iter()
                .filter(|v| match &re {
                    Some(re) => re.is_match(&v.msg),
                    None => v.msg.contains(m),
                })
                .collect()
        }
    };
    let n = counted.len();
    let ok = match expected {
        Expected::Yes => n > 0,
        Expected::No => n == 0,
        Expected::Exactly(k) => n == k,
    };
    if ok {
        return Ok(());
    }
    let want = match expected {
        Expected::Yes => "at least one violation".to_string(),
        Expected::No => "no violations".to_string(),
        Expected::Exactly(k) => format!("{k} violation(s)"),
    };
    let with = message.map_or(String::new(), |m| format!(" matching {m:?}"));
    let got: Vec<&str> = violations.iter().map(|v| v.msg.as_str()).take(3).collect();
    Err(format!("expected {want}{with}, got {n}: {got:?}"))
}

/// Every `suite.yaml` under `dir`, sorted.
pub fn find_suites(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| PolicyError::Io {
            path: d.display().to_string(),
            message: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let p = entry.path();
            let ft = entry.file_type().map_err(|e| PolicyError::Io {
                path: p.display().to_string(),
                message: e.to_string(),
            })?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() && p.file_name().is_some_and(|n| n == "suite.yaml") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Run every `suite.yaml` under `dir`. Problems with a suite's files are recorded as
/// disagreeing cases with the reason, never hidden; only an unreadable `dir` is an error.
pub fn run_suites(dir: &Path, timeout: Duration) -> Result<SuiteReport, PolicyError> {
    let suites = find_suites(dir)?;
    if suites.is_empty() {
        return Err(PolicyError::Io {
            path: dir.display().to_string(),
            message: "no suite.yaml found".into(),
        });
    }
    let mut results = Vec::new();
    for suite in &suites {
        results.extend(run_suite(dir, suite, timeout));
    }
    let agreed = results.iter().filter(|r| r.agreed).count();
    Ok(SuiteReport {
        library: dir.display().to_string(),
        suites: suites.len(),
        cases: results.len(),
        agreed,
        rate: if results.is_empty() {
            0.0
        } else {
            agreed as f64 / results.len() as f64
        },
        results,
    })
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Load the documents of a sample file relative to the suite's folder.
fn load_docs(base: &Path, file: &str) -> Result<Vec<Value>, String> {
    let path = base.join(file);
    let text = read(&path).map_err(|e| e.to_string())?;
    yaml_docs(&path.display().to_string(), &text).map_err(|e| e.to_string())
}

fn run_suite(root: &Path, suite: &Path, timeout: Duration) -> Vec<CaseResult> {
    let suite_name = rel(root, suite);
    let base = suite.parent().unwrap_or(root);
    // A test that cannot run fails each of its cases, so the rate counts cases throughout.
    let fail_all = |test: &Value, reason: String| -> Vec<CaseResult> {
        let name = test.get("name").and_then(Value::as_str).unwrap_or("*");
        let cases: Vec<&Value> = test
            .get("cases")
            .and_then(Value::as_array)
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        let one = |case: Option<&Value>| CaseResult {
            suite: suite_name.clone(),
            test: name.to_string(),
            case: case
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_string(),
            object: case
                .and_then(|c| c.get("object"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            agreed: false,
            reason: Some(reason.clone()),
            violations: 0,
        };
        if cases.is_empty() {
            vec![one(None)]
        } else {
            cases.into_iter().map(|c| one(Some(c))).collect()
        }
    };
    let doc = match read(suite)
        .and_then(|t| yaml_docs(&suite_name, &t))
        .map(|d| d.into_iter().next().unwrap_or(Value::Null))
    {
        Ok(d) => d,
        Err(e) => return fail_all(&Value::Null, e.to_string()),
    };
    let mut templates: BTreeMap<String, Result<Template, String>> = BTreeMap::new();
    let mut out = Vec::new();
    for test in doc
        .get("tests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let test_name = test
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let tfile = test
            .get("template")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let template = templates
            .entry(tfile.to_string())
            .or_insert_with(|| {
                Template::load(&base.join(tfile)).map_err(|e| format!("template {tfile}: {e}"))
            })
            .clone();
        let template = match template {
            Ok(t) => t,
            Err(e) => {
                out.extend(fail_all(test, e));
                continue;
            }
        };
        let cfile = test
            .get("constraint")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let constraint = match load_docs(base, cfile) {
            Ok(docs) if !docs.is_empty() => Constraint::from_value(&docs[0]),
            Ok(_) => {
                out.extend(fail_all(test, format!("constraint {cfile}: empty")));
                continue;
            }
            Err(e) => {
                out.extend(fail_all(test, format!("constraint {cfile}: {e}")));
                continue;
            }
        };
        if constraint.kind != template.kind {
            out.extend(fail_all(
                test,
                format!(
                    "constraint kind {} is not the template's kind {}",
                    constraint.kind, template.kind
                ),
            ));
            continue;
        }
        for case in test
            .get("cases")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.push(run_case(
                &suite_name,
                &test_name,
                base,
                &template,
                &constraint,
                case,
                timeout,
            ));
        }
    }
    out
}

fn run_case(
    suite: &str,
    test: &str,
    base: &Path,
    template: &Template,
    constraint: &Constraint,
    case: &Value,
    timeout: Duration,
) -> CaseResult {
    let name = case
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let ofile = case
        .get("object")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut result = CaseResult {
        suite: suite.to_string(),
        test: test.to_string(),
        case: name,
        object: ofile.clone(),
        agreed: false,
        reason: None,
        violations: 0,
    };
    let mut synced = Vec::new();
    for f in strings(case.get("inventory")) {
        match load_docs(base, &f) {
            Ok(docs) => synced.extend(docs),
            Err(e) => {
                result.reason = Some(format!("inventory {f}: {e}"));
                return result;
            }
        }
    }
    let inv = inventory(&synced);
    let objects = match load_docs(base, &ofile) {
        Ok(d) if !d.is_empty() => d,
        Ok(_) => {
            result.reason = Some(format!("object {ofile}: empty"));
            return result;
        }
        Err(e) => {
            result.reason = Some(format!("object {ofile}: {e}"));
            return result;
        }
    };
    // gator reviews the file's single object; a multi-document file is reviewed as a whole.
    let mut violations = Vec::new();
    for object in &objects {
        match evaluate(template, constraint, object, &inv, timeout) {
            Ok(v) => violations.extend(v),
            Err(e) => {
                result.reason = Some(format!("evaluation failed: {e}"));
                return result;
            }
        }
    }
    result.violations = violations.len();
    let assertions: Vec<Value> = case
        .get("assertions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let failures: Vec<String> = assertions
        .iter()
        .filter_map(|a| check_assertion(a, &violations).err())
        .collect();
    if failures.is_empty() {
        result.agreed = true;
    } else {
        result.reason = Some(failures.join("; "));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8srequiredlabels
spec:
  crd:
    spec:
      names:
        kind: K8sRequiredLabels
  targets:
    - target: admission.k8s.gatekeeper.sh
      libs:
        - |
          package lib.helpers
          missing(obj, key) { not obj.metadata.labels[key] }
      rego: |
        package k8srequiredlabels
        import data.lib.helpers
        violation[{"msg": msg}] {
          key := input.parameters.labels[_]
          helpers.missing(input.review.object, key)
          msg := sprintf("%v %v lacks label %v", [input.review.kind.kind, input.review.name, key])
        }
"#;

    fn template() -> Template {
        let doc = yaml_docs("t.yaml", TEMPLATE).unwrap().remove(0);
        Template::from_value(&doc, "t.yaml").unwrap()
    }

    fn constraint(m: Value) -> Constraint {
        Constraint::from_value(&json!({
            "kind": "K8sRequiredLabels", "metadata": {"name": "owner"},
            "spec": {"match": m, "parameters": {"labels": ["owner"]}}
        }))
    }

    fn pod(ns: &str, labels: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns, "labels": labels}})
    }

    #[test]
    fn evaluates_violations_with_libs_and_parameters() {
        let t = template();
        assert_eq!(
            (t.kind.as_str(), t.package.as_str()),
            ("K8sRequiredLabels", "k8srequiredlabels")
        );
        let v = evaluate(
            &t,
            &constraint(json!({})),
            &pod("a", json!({})),
            &inventory(&[]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].msg, "Pod p lacks label owner");
        let ok = evaluate(
            &t,
            &constraint(json!({})),
            &pod("a", json!({"owner": "x"})),
            &inventory(&[]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(ok.is_empty());
    }

    #[test]
    fn match_honours_kinds_namespaces_and_selectors() {
        let r = review(&pod("team-a", json!({"tier": "web"})));
        let inv = inventory(&[]);
        assert!(matches(
            &json!({"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]}),
            &r,
            &inv
        ));
        assert!(!matches(
            &json!({"kinds": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}]}),
            &r,
            &inv
        ));
        assert!(matches(&json!({"namespaces": ["team-*"]}), &r, &inv));
        assert!(!matches(&json!({"excludedNamespaces": ["*-a"]}), &r, &inv));
        assert!(matches(
            &json!({"labelSelector": {"matchLabels": {"tier": "web"}}}),
            &r,
            &inv
        ));
        assert!(!matches(
            &json!({"labelSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}}),
            &r,
            &inv
        ));
        assert!(!matches(&json!({"scope": "Cluster"}), &r, &inv));
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"env": "prod"}}});
        let inv = inventory(&[ns]);
        assert!(matches(
            &json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}),
            &r,
            &inv
        ));
        assert!(!matches(
            &json!({"namespaceSelector": {"matchLabels": {"env": "dev"}}}),
            &r,
            &inv
        ));
    }

    #[test]
    fn admission_reviews_keep_their_operation() {
        let r = review(
            &json!({"kind": "AdmissionReview", "request": {"operation": "UPDATE", "object": pod("a", json!({}))}}),
        );
        assert_eq!(r["operation"], "UPDATE");
        assert_eq!(r["kind"]["kind"], "Pod");
        assert_eq!(r["namespace"], "a");
    }

    #[test]
    fn compat_splits_multi_body_rules_and_paren_lines() {
        let src = "package x\nf(o) = s {\n  o.a\n  s := 1\n} {\n  o.b\n  s := 2\n}\nv {\n  input.p\n  (1 + 2) > 2\n}\n";
        let out = compat_rego(src);
        assert_eq!(
            out,
            "package x\nf(o) = s {\n  o.a\n  s := 1\n}\nf(o) = s {\n  o.b\n  s := 2\n}\nv {\n  input.p;\n  (1 + 2) > 2\n}\n"
        );
        let mut e = regorus::Engine::new();
        e.set_rego_v0(true);
        e.add_policy("x.rego".into(), out).unwrap();
        e.set_input(regorus::Value::from_json_str(r#"{"p": true}"#).unwrap());
        assert_eq!(
            e.eval_rule("data.x.v".into()).unwrap(),
            regorus::Value::Bool(true)
        );
    }

    #[test]
    fn assertions_follow_gator() {
        let v = vec![Violation {
            msg: "container nginx is privileged".into(),
            details: Value::Null,
        }];
        assert!(check_assertion(&json!({"violations": "yes"}), &v).is_ok());
        assert!(check_assertion(&json!({"violations": "no"}), &v).is_err());
        assert!(check_assertion(&json!({"violations": 1}), &v).is_ok());
        assert!(check_assertion(&json!({"violations": 1, "message": "privileged"}), &v).is_ok());
        assert!(check_assertion(&json!({"violations": "yes", "message": "^host"}), &v).is_err());
    }
}
