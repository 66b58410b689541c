//! The policy engine: bundles compiled once into regorus engines, evaluated per input with
//! conftest's conventions, exceptions applied, and the result written as a decision record.
//! User bundles compile when the engine is built; each built-in bundle (plan rules, Kubernetes
//! rules) compiles the first time an input of its kind needs it, or when
//! [`PolicyEngine::prepare`] asks, so a plan check never compiles the Kubernetes rules.
//!
//! The engine's copy of an input is read from the input's canonical JSON (the text the
//! digest covers): [`PolicyEngine::evaluate_owned`] frees the caller's JSON tree first, so a
//! large plan is never held as a tree and as the engine's value at once.
//!
//! Entry points are the conftest rules `deny`, `violation`, `warn` and sluice's
//! `require_approval`, in packages matching the configured namespaces (default `main`) or, for
//! the built-in pack, in each enabled rule's package. Every entry point is one query over the
//! whole input (never one per resource), on a clone of the prepared engine.
//!
//! Limits. Each evaluation has a wall-clock budget: regorus' cooperative execution timer stops a
//! query that runs past it, and a watchdog abandons the worker thread if a builtin blocks
//! without yielding (`test.sleep`). The input document has a size ceiling, bundles have file
//! and byte ceilings, results per rule are capped, and regorus rejects oversized Rego files.
//! There is no heap ceiling per evaluation: regorus can only meter memory by replacing the
//! process-wide allocator, which the rest of sluice (the server) must not inherit.
//! A policy that errors or runs out of time fails closed: its entry point yields a `deny`
//! result naming the file and rule, and the decision is `deny`.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use regorus::utils::limits::ExecutionTimerConfig;
use sluice_model::exception::{self, Exception, Resolution, Timestamp};
use sluice_model::glob::GlobList;

use crate::builtin::{self, Params, Target};
use crate::bundle::{Bundle, FileKind, Origin, RegoVersion};
use crate::canonical;
use crate::error::{self, PolicyError};
use crate::guard;
use crate::input::EvalInput;
use crate::record::{BundleRef, Decision, DecisionRecord, EngineRef, Outcome, RuleResult, SCHEMA};

/// The conftest rule names sluice evaluates, with the outcome of their results.
pub const ENTRY_RULES: &[(&str, Outcome)] = &[
    ("deny", Outcome::Deny),
    ("violation", Outcome::Deny),
    ("warn", Outcome::Warn),
    ("require_approval", Outcome::RequireApproval),
];

/// The regorus version sluice is built against (recorded in every decision), as `Cargo.lock`
/// resolved it (see `build.rs`).
pub const REGORUS_VERSION: &str = env!("SLUICE_REGORUS_VERSION");

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Package globs (dot-separated, `*` within one segment, `**` across) whose entry points
    /// are evaluated in non-built-in bundles.
    pub namespaces: Vec<String>,
    /// Wall-clock budget of one bundle's evaluation.
    pub timeout: Duration,
    /// Ceiling on the canonical JSON size of an input document.
    pub max_input_bytes: usize,
    /// Results kept per entry point; more fail closed.
    pub max_results_per_rule: usize,
    /// Evaluate each built-in rule over only the resource types it declares reading (an
    /// optimisation with identical results; off only to verify that).
    pub input_views: bool,
    /// Entry points of one bundle evaluated side by side (0: one per available core, up to 4).
    pub workers: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            namespaces: vec!["main".into()],
            timeout: Duration::from_secs(10),
            max_input_bytes: 256 * 1024 * 1024,
            max_results_per_rule: 100_000,
            input_views: true,
            workers: 0,
        }
    }
}

/// How the built-in pack is configured.
#[derive(Debug, Clone, Default)]
pub struct BuiltinSettings {
    pub disabled: BTreeSet<String>,
    pub overrides: BTreeMap<String, RuleOverride>,
    pub params: Params,
}

/// A config override of one built-in rule's outcome (and approver groups).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleOverride {
    pub outcome: Option<Outcome>,
    pub groups: Option<Vec<String>>,
}

/// Everything an engine is built from.
#[derive(Debug, Clone, Default)]
pub struct EngineSpec {
    /// `None`: the built-in pack is off.
    pub builtin: Option<BuiltinSettings>,
    pub bundles: Vec<Bundle>,
    /// Loaded, valid exceptions (expired ones included: they are reported when they match).
    pub exceptions: Vec<Exception>,
    /// The instant exception expiry is judged at.
    pub now: Option<Timestamp>,
    pub options: EngineOptions,
}

#[derive(Debug, Clone)]
struct BuiltinMeta {
    id: &'static str,
    outcome: Option<Outcome>,
    groups: Option<Vec<String>>,
    severity: &'static str,
    /// Resource types (plan rules) or kinds (manifest rules) the rule reads (`*` suffix: a
    /// prefix); empty: everything.
    reads: &'static [&'static str],
    target: Target,
}

#[derive(Debug, Clone)]
struct Entrypoint {
    package: String,
    rule: &'static str,
    outcome: Outcome,
    /// The query (`data.main.deny`).
    path: String,
    /// Files declaring the rule, for error messages.
    files: Vec<String>,
    builtin: Option<BuiltinMeta>,
}

impl Entrypoint {
    fn default_id(&self) -> String {
        match &self.builtin {
            Some(b) => b.id.to_string(),
            None => format!("{}.{}", self.package, self.rule),
        }
    }
}

/// A bundle's prepared engine and the entry points found in it.
struct Prepared {
    engine: regorus::Engine,
    entrypoints: Vec<Entrypoint>,
}

/// What a built-in bundle is compiled from when it is first needed.
struct LazySource {
    bundle: Bundle,
    target: Target,
    settings: BuiltinSettings,
    /// `data.exceptions`, shared by every bundle.
    extra: std::sync::Arc<serde_json::Value>,
}

struct Compiled {
    reference: BundleRef,
    /// User bundles are compiled when the engine is built (their errors are configuration
    /// errors, reported then); built-in bundles on first use, so that a plan check never
    /// pays for compiling the Kubernetes rules and an app check never for the plan rules.
    prepared: OnceLock<Result<Prepared, PolicyError>>,
    lazy: Option<LazySource>,
    /// Rule ids a bundle's sources declare literally (`"id": "..."`), for exception review.
    declared_ids: BTreeSet<String>,
    /// The inputs a built-in bundle judges; `None` (user bundles): every input.
    target: Option<Target>,
}

impl Compiled {
    /// The prepared engine, compiling a built-in bundle the first time it is asked for (once,
    /// even when several threads ask together).
    fn prepared(&self) -> Result<&Prepared, PolicyError> {
        self.prepared
            .get_or_init(|| match &self.lazy {
                Some(src) => compile_builtin(src),
                None => Err(PolicyError::Compile {
                    bundle: self.reference.name.clone(),
                    message: "internal error: the bundle was not compiled".into(),
                }),
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Compile one built-in bundle and find the entry points of its enabled rules.
fn compile_builtin(src: &LazySource) -> Result<Prepared, PolicyError> {
    let engine = compile_bundle(&src.bundle, false, Some(&src.extra))?;
    let settings = &src.settings;
    let target = src.target;
    let entrypoints = discover_entrypoints(&engine, |package| {
        let rule = builtin::RULES
            .iter()
            .find(|r| r.package == package && r.target == target)?;
        if settings.disabled.contains(rule.id) {
            return None;
        }
        let o = settings.overrides.get(rule.id);
        Some(Some(BuiltinMeta {
            id: rule.id,
            outcome: o.and_then(|o| o.outcome),
            groups: o.and_then(|o| o.groups.clone()),
            severity: rule.severity.as_str(),
            reads: rule.reads,
            target,
        }))
    })?;
    Ok(Prepared {
        engine,
        entrypoints,
    })
}

/// A compiled set of bundles, ready to evaluate inputs.
pub struct PolicyEngine {
    bundles: Vec<Compiled>,
    exceptions: Vec<Exception>,
    now: Timestamp,
    options: EngineOptions,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("bundles", &self.bundle_refs())
            .field("exceptions", &self.exceptions.len())
            .finish()
    }
}

/// Compile one bundle into a prepared regorus engine. `with_tests` adds `*_test.rego` files.
pub(crate) fn compile_bundle(
    bundle: &Bundle,
    with_tests: bool,
    extra_data: Option<&serde_json::Value>,
) -> Result<regorus::Engine, PolicyError> {
    let mut engine = regorus::Engine::new();
    // OPA semantics: a builtin given the wrong types is undefined rather than an error, which
    // policies written for conftest/OPA rely on.
    engine.set_strict_builtin_errors(false);
    for f in &bundle.files {
        let kind = crate::bundle::file_kind(&f.path);
        if !(kind == Some(FileKind::Policy) || (with_tests && kind == Some(FileKind::Test))) {
            continue;
        }
        let display = bundle.display_path(&f.path);
        let text = std::str::from_utf8(&f.content).map_err(|e| PolicyError::Rego {
            file: display.clone(),
            line: 1,
            col: 1,
            message: format!("not UTF-8: {e}"),
        })?;
        engine.set_rego_v0(bundle.rego_version_of(&f.path) == RegoVersion::V0);
        guard::catch(|| engine.add_policy(display.clone(), text.to_string()))
            .map_err(|panic| PolicyError::Compile {
                bundle: bundle.name.clone(),
                message: format!("{display}: {panic}"),
            })?
            .map_err(|e| rego_error(&display, &e.to_string()))?;
    }
    let mut data = bundle.data()?;
    if let Some(extra) = extra_data {
        for (k, v) in extra.as_object().into_iter().flatten() {
            if data.get(k).is_some() {
                return Err(PolicyError::Bundle {
                    bundle: bundle.name.clone(),
                    message: format!("its data defines `data.{k}`, which sluice provides"),
                });
            }
            data[k] = v.clone();
        }
    }
    let data = regorus::Value::from_json_str(&canonical::to_string(&data)).map_err(|e| {
        PolicyError::Bundle {
            bundle: bundle.name.clone(),
            message: format!("data: {e}"),
        }
    })?;
    engine.add_data(data).map_err(|e| PolicyError::Bundle {
        bundle: bundle.name.clone(),
        message: format!("data: {e}"),
    })?;
    // Analyse and schedule now, once; clones start prepared. Semantic errors (unsafe
    // variables, unknown functions, conflicting rules) surface here with their position.
    guard::catch(|| engine.eval_query("true".to_string(), false))
        .map_err(|panic| PolicyError::Compile {
            bundle: bundle.name.clone(),
            message: panic,
        })?
        .map_err(|e| compile_error(bundle, &e.to_string()))?;
    Ok(engine)
}

fn rego_error(file: &str, text: &str) -> PolicyError {
    match error::parse_diagnostic(text) {
        Some(d) => PolicyError::Rego {
            file: d.file,
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

fn compile_error(bundle: &Bundle, text: &str) -> PolicyError {
    match error::parse_diagnostic(text) {
        Some(d) => PolicyError::Rego {
            file: d.file,
            line: d.line,
            col: d.col,
            message: d.message,
        },
        None => PolicyError::Compile {
            bundle: bundle.name.clone(),
            message: error::summarize(text),
        },
    }
}

/// `data.a.b` for package components, quoting those that are not identifiers.
fn rule_path(components: &[String], rule: &str) -> String {
    let mut out = String::from("data");
    for c in components.iter().map(String::as_str).chain([rule]) {
        let ident = c
            .chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
            && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if ident {
            out.push('.');
            out.push_str(c);
        } else {
            out.push_str(&format!("[{}]", serde_json::Value::from(c)));
        }
    }
    out
}

/// Package name globs match dotted names segment-wise, like paths.
fn namespace_matcher(namespaces: &[String]) -> Result<GlobList, PolicyError> {
    let as_paths: Vec<String> = namespaces.iter().map(|n| n.replace('.', "/")).collect();
    GlobList::new(&as_paths).map_err(|e| PolicyError::Config {
        field: "policy.namespaces".into(),
        message: e.to_string(),
    })
}

fn discover_entrypoints(
    engine: &regorus::Engine,
    wanted: impl Fn(&str) -> Option<Option<BuiltinMeta>>,
) -> Result<Vec<Entrypoint>, PolicyError> {
    let modules = engine
        .get_policy_package_components()
        .map_err(|e| PolicyError::Compile {
            bundle: String::new(),
            message: e.to_string(),
        })?;
    let mut by_key: BTreeMap<(String, &'static str), Entrypoint> = BTreeMap::new();
    for m in modules {
        let package = m.components.join(".");
        let Some(meta) = wanted(&package) else {
            continue;
        };
        for (rule, outcome) in ENTRY_RULES {
            let declared = engine
                .has_declared_rule_rooted_at(&m.source_file, rule)
                .unwrap_or(false);
            if !declared {
                continue;
            }
            by_key
                .entry((package.clone(), rule))
                .or_insert_with(|| Entrypoint {
                    package: package.clone(),
                    rule,
                    outcome: *outcome,
                    path: rule_path(&m.components, rule),
                    files: Vec::new(),
                    builtin: meta.clone(),
                })
                .files
                .push(m.source_file.clone());
        }
    }
    Ok(by_key.into_values().collect())
}

/// String literals following `"id":` or `"rule":` in Rego sources: ids a bundle can emit.
fn declared_ids(bundle: &Bundle) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in bundle.files_of(FileKind::Policy) {
        let text = String::from_utf8_lossy(&f.content);
        for key in ["\"id\"", "\"rule\""] {
            let mut rest = &text[..];
            while let Some(i) = rest.find(key) {
                rest = &rest[i + key.len()..];
                let t = rest.trim_start();
                let Some(t) = t.strip_prefix(':') else {
                    continue;
                };
                let t = t.trim_start();
                if let Some(t) = t.strip_prefix('"')
                    && let Some(end) = t.find('"')
                {
                    out.insert(t[..end].to_string());
                }
            }
        }
    }
    out
}

/// Canonical size from which an input's tree is freed on a thread of its own: freeing a
/// 10,000-change plan's value is a pass over millions of allocations that the caller need not
/// wait for.
const BACKGROUND_FREE_BYTES: usize = 4 << 20;

/// Drop `value` on a detached thread when the input was large (inline when small, or when no
/// thread can be started).
fn dispose<T: Send + 'static>(value: T, canonical_len: usize) {
    if canonical_len < BACKGROUND_FREE_BYTES {
        return;
    }
    // A failed spawn drops the closure, and with it the value, here.
    let _ = std::thread::Builder::new()
        .name("policy-input-free".into())
        .spawn(move || drop(value));
}

/// The kind of an input document, which must be a JSON object.
fn input_target(document: &serde_json::Value) -> Result<Target, PolicyError> {
    if !document.is_object() {
        return Err(PolicyError::Input(
            "the input document must be a JSON object".into(),
        ));
    }
    Ok(Target::of(document))
}

/// Builds the engine's value of a JSON document, as regorus' own deserializer would, but
/// sharing each distinct object key between all the objects that have it (a plan's thousands
/// of alike resource changes repeat a few hundred keys), which saves an allocation per key.
#[derive(Default)]
struct EngineValues {
    keys: std::collections::HashMap<String, regorus::Value>,
}

impl EngineValues {
    fn key(&mut self, k: &str) -> regorus::Value {
        if let Some(v) = self.keys.get(k) {
            return v.clone();
        }
        let v = regorus::Value::from(k);
        self.keys.insert(k.to_string(), v.clone());
        v
    }

    /// Numbers go through regorus' deserializer: its rules (integer or float, non-finite
    /// rejected) are the ones the engine applies to every document.
    fn number(n: &serde_json::Number) -> Result<regorus::Value, String> {
        serde::Deserialize::deserialize(serde_json::Value::Number(n.clone()))
            .map_err(|e: serde_json::Error| e.to_string())
    }

    fn of_ref(&mut self, v: &serde_json::Value) -> Result<regorus::Value, String> {
        use serde_json::Value as J;
        Ok(match v {
            J::Null => regorus::Value::Null,
            J::Bool(b) => regorus::Value::Bool(*b),
            J::Number(n) => Self::number(n)?,
            J::String(s) => regorus::Value::from(s.as_str()),
            J::Array(items) => regorus::Value::from(
                items
                    .iter()
                    .map(|i| self.of_ref(i))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            J::Object(map) => {
                let mut out = BTreeMap::new();
                for (k, v) in map {
                    let key = self.key(k);
                    out.insert(key, self.of_ref(v)?);
                }
                regorus::Value::from(out)
            }
        })
    }

    /// Consumes the tree: each part is freed once converted.
    fn of_owned(&mut self, v: serde_json::Value) -> Result<regorus::Value, String> {
        use serde_json::Value as J;
        Ok(match v {
            J::Null => regorus::Value::Null,
            J::Bool(b) => regorus::Value::Bool(b),
            J::Number(n) => Self::number(&n)?,
            J::String(s) => regorus::Value::from(s),
            J::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.of_owned(i)?);
                }
                regorus::Value::from(out)
            }
            J::Object(map) => {
                let mut out = BTreeMap::new();
                for (k, v) in map {
                    let key = self.key(&k);
                    drop(k);
                    out.insert(key, self.of_owned(v)?);
                }
                regorus::Value::from(out)
            }
        })
    }
}

/// `data.exceptions`: the active exceptions, by id, for policies that read their constraints.
fn exceptions_data(exceptions: &[Exception], now: Timestamp) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for e in exceptions {
        if e.status(now) == exception::ExceptionStatus::Active && !map.contains_key(&e.id) {
            map.insert(
                e.id.clone(),
                serde_json::to_value(e).expect("exceptions serialize"),
            );
        }
    }
    serde_json::json!({ "exceptions": map })
}

impl PolicyEngine {
    /// Compile the built-in pack (unless off) and every bundle. Errors name the file and
    /// position (Rego syntax and compile errors) or the bundle.
    pub fn new(spec: EngineSpec) -> Result<PolicyEngine, PolicyError> {
        let now = spec.now.unwrap_or(Timestamp::UNIX_EPOCH);
        let extra = std::sync::Arc::new(exceptions_data(&spec.exceptions, now));
        let mut bundles = Vec::new();
        if let Some(settings) = &spec.builtin {
            for id in settings.disabled.iter().chain(settings.overrides.keys()) {
                if builtin::find(id).is_none() {
                    return Err(PolicyError::Config {
                        field: "policy.builtin".into(),
                        message: format!(
                            "unknown built-in rule `{id}` (known: {})",
                            builtin::RULES
                                .iter()
                                .map(|r| r.id)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
            }
            for (target, bundle) in builtin::bundles(&settings.params)? {
                bundles.push(Compiled {
                    reference: BundleRef {
                        name: bundle.name.clone(),
                        version: bundle.version(),
                    },
                    prepared: OnceLock::new(),
                    lazy: Some(LazySource {
                        bundle,
                        target,
                        settings: settings.clone(),
                        extra: extra.clone(),
                    }),
                    declared_ids: builtin::RULES
                        .iter()
                        .filter(|r| r.target == target)
                        .map(|r| r.id.to_string())
                        .collect(),
                    target: Some(target),
                });
            }
        }
        let namespaces = namespace_matcher(&spec.options.namespaces)?;
        for bundle in &spec.bundles {
            if bundle.origin == Origin::Builtin {
                continue;
            }
            let engine = compile_bundle(bundle, false, Some(&extra))?;
            let entrypoints = discover_entrypoints(&engine, |package| {
                namespaces
                    .is_match(&package.replace('.', "/"))
                    .then_some(None)
            })?;
            bundles.push(Compiled {
                reference: BundleRef {
                    name: bundle.name.clone(),
                    version: bundle.version(),
                },
                prepared: OnceLock::from(Ok(Prepared {
                    engine,
                    entrypoints,
                })),
                lazy: None,
                declared_ids: declared_ids(bundle),
                target: None,
            });
        }
        Ok(PolicyEngine {
            bundles,
            exceptions: spec.exceptions,
            now,
            options: spec.options,
        })
    }

    pub fn bundle_refs(&self) -> Vec<BundleRef> {
        self.bundles.iter().map(|b| b.reference.clone()).collect()
    }

    /// Rule ids results can carry: entry point ids and ids declared in the sources. Needs no
    /// compilation: a built-in bundle's entry point ids are its catalog's rule ids, which
    /// `declared_ids` already holds.
    pub fn known_rule_ids(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for b in &self.bundles {
            out.extend(b.declared_ids.iter().cloned());
            if let Some(Ok(p)) = b.prepared.get() {
                out.extend(p.entrypoints.iter().map(Entrypoint::default_id));
            }
        }
        out
    }

    /// The entry points evaluated, as `data.<package>.<rule>` queries (compiling the built-in
    /// bundles not used yet; one that fails to compile has none, and its error is what
    /// [`evaluate`](Self::evaluate) and [`prepare`](Self::prepare) return).
    pub fn entrypoints(&self) -> Vec<String> {
        self.bundles
            .iter()
            .filter_map(|b| b.prepared().ok())
            .flat_map(|p| p.entrypoints.iter().map(|e| e.path.clone()))
            .collect()
    }

    /// Compile now the built-in bundles that judge `target` inputs (otherwise compiled by the
    /// first evaluation that needs them), e.g. on a second thread while the input is read.
    pub fn prepare(&self, target: Target) -> Result<(), PolicyError> {
        for b in self.bundles.iter().filter(|b| b.target == Some(target)) {
            b.prepared()?;
        }
        Ok(())
    }

    pub fn exceptions(&self) -> &[Exception] {
        &self.exceptions
    }

    /// Evaluate every bundle over `input` and build the decision record. Policy errors and
    /// timeouts do not fail this call: they become `deny` results (fail closed). Only an
    /// input that is not a JSON object or exceeds the size ceiling is an error (or a built-in
    /// bundle that fails to compile on first use, which the crate's tests rule out).
    pub fn evaluate(&self, input: &EvalInput) -> Result<DecisionRecord, PolicyError> {
        let target = input_target(&input.document)?;
        // The digest (over the canonical bytes) and the engine's copy of the document are
        // independent passes over a possibly large input: make them side by side.
        let (canonical_len, input_digest, value) = std::thread::scope(|scope| {
            let digest = scope.spawn(|| {
                let text = canonical::to_string(&input.document);
                (text.len(), canonical::digest_bytes(text.as_bytes()))
            });
            let value = EngineValues::default().of_ref(&input.document);
            let (len, digest) = digest
                .join()
                .expect("canonical serialisation does not panic");
            (len, digest, value)
        });
        self.evaluate_value(target, canonical_len, input_digest, value, &input.unit)
    }

    /// [`evaluate`](Self::evaluate), consuming the input, for large documents: the JSON tree is
    /// freed once its canonical text is written, and the engine reads its value from that
    /// text, so a large input is never held whole as a tree and as the engine's value at
    /// once. The decision record is the same.
    pub fn evaluate_owned(&self, input: EvalInput) -> Result<DecisionRecord, PolicyError> {
        let EvalInput { document, unit } = input;
        let target = input_target(&document)?;
        let (text, readback) = canonical::to_string_checked(&document);
        // Reading the text back is the fast way (the engine's value is laid out afresh, in
        // the order it is read, and regorus shares repeated object keys). A document the
        // text would not give back exactly (nested past the reader's limit, a float the
        // parser would round differently) is converted from the tree instead.
        let tree = if readback.is_exact() {
            drop(document);
            None
        } else {
            Some(document)
        };
        let (input_digest, value) = std::thread::scope(|scope| {
            let digest = scope.spawn(|| canonical::digest_bytes(text.as_bytes()));
            let value = match tree {
                None => regorus::Value::from_json_str(&text).map_err(|e| e.to_string()),
                Some(tree) => EngineValues::default().of_owned(tree),
            };
            (digest.join().expect("hashing does not panic"), value)
        });
        let canonical_len = text.len();
        drop(text);
        self.evaluate_value(target, canonical_len, input_digest, value, &unit)
    }

    /// The evaluation proper, once the input's size and digest are known and the engine's
    /// value is made.
    fn evaluate_value(
        &self,
        target: Target,
        canonical_len: usize,
        input_digest: String,
        value: Result<regorus::Value, String>,
        unit: &str,
    ) -> Result<DecisionRecord, PolicyError> {
        if canonical_len > self.options.max_input_bytes {
            return Err(PolicyError::Input(format!(
                "{canonical_len} bytes, more than the limit of {} (policy.limits.max_input_bytes)",
                self.options.max_input_bytes
            )));
        }
        let value =
            value.map_err(|e| PolicyError::Input(format!("not accepted by the engine: {e}")))?;
        // Built-in bundles judge only their kind of input (plan or manifests); they are
        // compiled here if nothing prepared them yet.
        let selected: Vec<(&Compiled, &Prepared)> = self
            .bundles
            .iter()
            .filter(|b| b.target.is_none_or(|t| t == target))
            .map(|b| b.prepared().map(|p| (b, p)))
            .collect::<Result<_, _>>()?;
        // Bundles run side by side, each on its own worker with its own deadline.
        let outputs: Vec<Vec<(usize, RawOutput)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = selected
                .iter()
                .copied()
                .map(|(b, p)| {
                    let value = value.clone();
                    scope.spawn(move || self.run_bundle(b, p, value))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        dispose(value, canonical_len);

        let mut results = Vec::new();
        for ((bundle, prepared), outputs) in selected.iter().copied().zip(outputs) {
            for (idx, output) in outputs {
                let ep = &prepared.entrypoints[idx];
                results.extend(self.results_of(bundle, ep, output, unit));
            }
        }
        let mut record = DecisionRecord {
            schema: SCHEMA.into(),
            engine: EngineRef {
                name: "regorus".into(),
                version: REGORUS_VERSION.into(),
            },
            bundles: selected.iter().map(|(b, _)| b.reference.clone()).collect(),
            input_digest,
            results,
            exceptions_applied: Vec::new(),
            exceptions_expired: Vec::new(),
            outcome: Decision::Allow,
        };
        record.normalize();
        Ok(record)
    }

    /// Evaluate one bundle's entry points under the time budget, spread over a few workers
    /// (each owns a clone of the prepared engine). A worker that does not report in time is
    /// abandoned and its missing entry points fail closed.
    fn run_bundle(
        &self,
        bundle: &Compiled,
        prepared: &Prepared,
        input: regorus::Value,
    ) -> Vec<(usize, RawOutput)> {
        let timeout = self.options.timeout;
        let deadline = Instant::now() + timeout;
        let n = prepared.entrypoints.len();
        let workers = match self.options.workers {
            0 => std::thread::available_parallelism().map_or(1, |p| p.get().min(4)),
            w => w,
        }
        .clamp(1, n.max(1));
        // Each entry point gets the whole document, or its view of it.
        let jobs: Vec<(usize, String, regorus::Value)> = prepared
            .entrypoints
            .iter()
            .enumerate()
            .map(|(i, ep)| {
                let view = match &ep.builtin {
                    Some(b) if self.options.input_views && !b.reads.is_empty() => match b.target {
                        Target::Plan => view_of(&input, b.reads),
                        Target::Manifests => manifests_view(&input, b.reads),
                    },
                    _ => input.clone(),
                };
                (i, ep.path.clone(), view)
            })
            .collect();
        let mut groups: Vec<Vec<(usize, String, regorus::Value)>> = vec![Vec::new(); workers];
        for (k, job) in jobs.into_iter().enumerate() {
            groups[k % workers].push(job);
        }
        // A little grace past the deadline lets the cooperative timer report first, with the
        // engine's own message.
        let hard_deadline = deadline + Duration::from_millis(250);
        let results: Vec<WorkerReport> = std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .into_iter()
                .enumerate()
                .map(|(w, group)| {
                    let mut engine = prepared.engine.clone();
                    let name = format!("policy-{}-{w}", bundle.reference.name);
                    scope.spawn(move || {
                        let expected = group.len();
                        let collected =
                            collect_with_deadline(expected, hard_deadline, name, move |tx| {
                                for (i, path, input) in group {
                                    let remaining =
                                        deadline.saturating_duration_since(Instant::now());
                                    if remaining.is_zero() {
                                        return;
                                    }
                                    engine.set_input(input);
                                    engine.set_execution_timer_config(ExecutionTimerConfig {
                                        limit: remaining,
                                        check_interval: NonZeroU32::new(64).expect("non-zero"),
                                    });
                                    let out = match guard::catch(|| engine.eval_rule(path)) {
                                        Ok(Ok(regorus::Value::Undefined)) => {
                                            Ok(serde_json::Value::Null)
                                        }
                                        Ok(Ok(v)) => {
                                            serde_json::to_value(&v).map_err(|e| e.to_string())
                                        }
                                        Ok(Err(e)) => Err(error_text(&e)),
                                        // `eval_rule` clears the evaluation state it starts
                                        // from, so the next entry point may use this engine.
                                        Err(panic) => Err(panic),
                                    };
                                    if tx.send((i, out)).is_err() {
                                        return;
                                    }
                                }
                            });
                        match collected {
                            Ok((map, wait)) => (map, wait, None),
                            Err(e) => (BTreeMap::new(), Wait::WorkerStopped, Some(e.to_string())),
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or((BTreeMap::new(), Wait::WorkerStopped, None))
                })
                .collect()
        });
        let mut done: BTreeMap<usize, RawOutput> = BTreeMap::new();
        let mut why_missing = Wait::Complete;
        let mut spawn_error = None;
        for (map, wait, err) in results {
            if wait != Wait::Complete {
                why_missing = wait;
            }
            if err.is_some() {
                spawn_error = err;
            }
            for (i, r) in map {
                done.insert(
                    i,
                    match r {
                        Ok(v) => RawOutput::Value(v),
                        Err(e) => RawOutput::Failed(e),
                    },
                );
            }
        }
        for i in 0..n {
            done.entry(i).or_insert_with(|| {
                RawOutput::Failed(match (&spawn_error, why_missing) {
                    (Some(e), _) => format!("could not start evaluation: {e}"),
                    (None, Wait::WorkerStopped) => "the evaluator stopped unexpectedly".to_string(),
                    (None, _) => format!(
                        "evaluation exceeded the time limit of {} ms (policy.limits.timeout_ms)",
                        timeout.as_millis()
                    ),
                })
            });
        }
        done.into_iter().collect()
    }

    fn results_of(
        &self,
        bundle: &Compiled,
        ep: &Entrypoint,
        output: RawOutput,
        unit: &str,
    ) -> Vec<RuleResult> {
        let base = RuleResult {
            rule: ep.default_id(),
            outcome: Outcome::Pass,
            message: String::new(),
            resource: None,
            groups: Vec::new(),
            waived: None,
            exception: None,
            expired_exceptions: Vec::new(),
            docs: ep
                .builtin
                .as_ref()
                .map(|b| format!("docs/policy.md#{}", b.id)),
            severity: ep.builtin.as_ref().map(|b| b.severity.to_string()),
            bundle: bundle.reference.name.clone(),
            source: ep.path.clone(),
            error: false,
            baseline: None,
        };
        let fail = |message: String| RuleResult {
            outcome: Outcome::Deny,
            message: format!(
                "policy {} in {} failed, so the change is denied: {message}",
                ep.path,
                ep.files.join(", ")
            ),
            error: true,
            ..base.clone()
        };
        let raw = match output {
            RawOutput::Failed(e) => return vec![fail(e)],
            RawOutput::Value(v) => match parse_results(&v, ep.rule) {
                Ok(raw) => raw,
                Err(e) => return vec![fail(e)],
            },
        };
        if raw.len() > self.options.max_results_per_rule {
            return vec![fail(format!(
                "{} results, more than the limit of {}",
                raw.len(),
                self.options.max_results_per_rule
            ))];
        }
        if raw.is_empty() {
            return vec![base];
        }
        raw.into_iter()
            .map(|r| {
                let mut outcome = ep.outcome;
                let mut groups = r.groups;
                if let Some(b) = &ep.builtin {
                    if let Some(o) = b.outcome {
                        outcome = o;
                    }
                    if let Some(g) = &b.groups {
                        groups = g.clone();
                    }
                }
                if outcome != Outcome::RequireApproval {
                    groups.clear();
                }
                let mut result = RuleResult {
                    rule: r.id.unwrap_or_else(|| base.rule.clone()),
                    outcome,
                    message: r.msg,
                    resource: r.resource,
                    groups,
                    docs: r.docs.or_else(|| base.docs.clone()),
                    severity: r.severity.or_else(|| base.severity.clone()),
                    ..base.clone()
                };
                apply_exceptions(&mut result, &self.exceptions, unit, self.now);
                result
            })
            .collect()
    }
}

/// Waive a `deny` or `require_approval` result an active exception covers; note expired ones.
pub fn apply_exceptions(
    result: &mut RuleResult,
    exceptions: &[Exception],
    unit: &str,
    now: Timestamp,
) {
    if result.error || !matches!(result.outcome, Outcome::Deny | Outcome::RequireApproval) {
        return;
    }
    let subject = exception::subject(unit, result.resource.as_deref());
    match exception::resolve(exceptions, &result.rule, &subject, now) {
        Resolution::Excepted { id } => {
            result.waived = Some(result.outcome);
            result.outcome = Outcome::Excepted;
            result.exception = Some(id);
        }
        Resolution::ExpiredOnly { ids } => result.expired_exceptions = ids,
        Resolution::NotCovered => {}
    }
}

/// The input with `plan.resource_changes` narrowed to the given types (`*` suffix: prefix).
/// Cheap: the kept changes and every other part of the document are shared, not copied.
fn view_of(input: &regorus::Value, types: &[&str]) -> regorus::Value {
    let key = |k: &str| regorus::Value::from(k);
    let Ok(doc) = input.as_object() else {
        return input.clone();
    };
    let Some(plan) = doc.get(&key("plan")) else {
        return input.clone();
    };
    let Ok(plan_obj) = plan.as_object() else {
        return input.clone();
    };
    let Some(Ok(changes)) = plan_obj.get(&key("resource_changes")).map(|c| c.as_array()) else {
        return input.clone();
    };
    let wanted = |t: &str| {
        types.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => t.starts_with(prefix),
            None => t == *p,
        })
    };
    let kept: Vec<regorus::Value> = changes
        .iter()
        .filter(|rc| {
            rc.as_object()
                .ok()
                .and_then(|o| o.get(&key("type")))
                .and_then(|t| t.as_string().ok())
                .is_some_and(|t| wanted(t))
        })
        .cloned()
        .collect();
    let mut plan_obj = plan_obj.clone();
    plan_obj.insert(key("resource_changes"), regorus::Value::from(kept));
    let mut doc = doc.clone();
    doc.insert(
        key("plan"),
        regorus::Value::Object(std::sync::Arc::new(plan_obj)),
    );
    regorus::Value::Object(std::sync::Arc::new(doc))
}

/// The input with `manifests` narrowed to objects of the given kinds (`input.manifest`, one
/// object, is left as it is). Shares everything it keeps, like [`view_of`].
fn manifests_view(input: &regorus::Value, kinds: &[&str]) -> regorus::Value {
    let key = |k: &str| regorus::Value::from(k);
    let Ok(doc) = input.as_object() else {
        return input.clone();
    };
    let Some(Ok(objects)) = doc.get(&key("manifests")).map(|m| m.as_array()) else {
        return input.clone();
    };
    let kept: Vec<regorus::Value> = objects
        .iter()
        .filter(|o| {
            o.as_object()
                .ok()
                .and_then(|o| o.get(&key("kind")))
                .and_then(|k| k.as_string().ok())
                .is_some_and(|k| kinds.contains(&k.as_ref()))
        })
        .cloned()
        .collect();
    let mut doc = doc.clone();
    doc.insert(key("manifests"), regorus::Value::from(kept));
    regorus::Value::Object(std::sync::Arc::new(doc))
}

/// Run `work` on a named worker thread and collect the indexed outputs it sends until all `n`
/// arrived or `hard_deadline` passed. A worker that is still busy then is abandoned: it keeps
/// its own clone of everything it uses, and its late sends go nowhere.
fn collect_with_deadline<T: Send + 'static>(
    n: usize,
    hard_deadline: Instant,
    name: String,
    work: impl FnOnce(mpsc::Sender<(usize, T)>) + Send + 'static,
) -> Result<(BTreeMap<usize, T>, Wait), std::io::Error> {
    let (tx, rx) = mpsc::channel::<(usize, T)>();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || work(tx))?;
    let mut done = BTreeMap::new();
    while done.len() < n {
        let wait = hard_deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok((i, v)) => {
                done.insert(i, v);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => return Ok((done, Wait::TimedOut)),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok((done, Wait::WorkerStopped)),
        }
    }
    Ok((done, Wait::Complete))
}

/// What one worker reported: outputs by entry point, how the wait ended, a spawn error.
type WorkerReport = (
    BTreeMap<usize, Result<serde_json::Value, String>>,
    Wait,
    Option<String>,
);

/// How waiting for a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Complete,
    TimedOut,
    /// The worker returned or panicked without reporting every entry point.
    WorkerStopped,
}

fn error_text(e: &anyhow::Error) -> String {
    if let Some(limit) = e.downcast_ref::<regorus::LimitError>() {
        return format!("{limit}");
    }
    error::summarize(&e.to_string())
}

enum RawOutput {
    Value(serde_json::Value),
    Failed(String),
}

/// A result as a policy produced it, before outcomes and exceptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResult {
    pub msg: String,
    pub id: Option<String>,
    pub resource: Option<String>,
    pub groups: Vec<String>,
    pub docs: Option<String>,
    pub severity: Option<String>,
}

const MAX_MESSAGE: usize = 2_000;

/// Read a rule's value with conftest's conventions: a set/array of strings or of objects with
/// `msg` (and optional `id`/`rule`, `resource`/`address`, `docs`, `severity`, `groups`).
/// Undefined (null here) means no results. `require_approval` objects must name `groups`.
pub fn parse_results(value: &serde_json::Value, rule: &str) -> Result<Vec<RawResult>, String> {
    use serde_json::Value as J;
    let items: Vec<&J> = match value {
        J::Null => return Ok(Vec::new()),
        J::Array(items) => items.iter().collect(),
        J::String(_) | J::Object(_) => vec![value],
        other => {
            return Err(format!(
                "`{rule}` must be a set of messages or of objects with `msg`, found {}",
                type_name(other)
            ));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let r = match item {
            J::String(s) => RawResult {
                msg: error::truncate(s, MAX_MESSAGE),
                id: None,
                resource: None,
                groups: Vec::new(),
                docs: None,
                severity: None,
            },
            J::Object(o) => {
                let text = |keys: &[&str]| -> Result<Option<String>, String> {
                    for k in keys {
                        match o.get(*k) {
                            None | Some(J::Null) => continue,
                            Some(J::String(s)) => return Ok(Some(error::truncate(s, MAX_MESSAGE))),
                            Some(other) => {
                                return Err(format!(
                                    "`{rule}`: field `{k}` must be a string, found {}",
                                    type_name(other)
                                ));
                            }
                        }
                    }
                    Ok(None)
                };
                let msg = text(&["msg"])?
                    .ok_or_else(|| format!("`{rule}`: a result object has no `msg` string"))?;
                let groups = match o.get("groups") {
                    None | Some(J::Null) => Vec::new(),
                    Some(J::String(s)) => vec![s.clone()],
                    Some(J::Array(a)) => a
                        .iter()
                        .map(|g| {
                            g.as_str().map(str::to_string).ok_or_else(|| {
                                format!(
                                    "`{rule}`: `groups` must hold strings, found {}",
                                    type_name(g)
                                )
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    Some(other) => {
                        return Err(format!(
                            "`{rule}`: `groups` must be a list of strings, found {}",
                            type_name(other)
                        ));
                    }
                };
                RawResult {
                    msg,
                    id: text(&["id", "rule"])?,
                    resource: text(&["resource", "address"])?,
                    groups,
                    docs: text(&["docs", "doc_url"])?,
                    severity: text(&["severity"])?,
                }
            }
            other => {
                return Err(format!(
                    "`{rule}` must hold strings or objects with `msg`, found {}",
                    type_name(other)
                ));
            }
        };
        if rule == "require_approval" && r.groups.is_empty() {
            return Err(format!(
                "`require_approval`: result `{}` names no approver `groups`",
                r.msg
            ));
        }
        out.push(r);
    }
    Ok(out)
}

fn type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine reports the version it was compiled as (`opa.runtime()`); the version the
    /// decision records name must be that one.
    #[test]
    fn the_recorded_regorus_version_is_the_engine_that_runs() {
        let mut engine = regorus::Engine::new();
        let results = engine
            .eval_query("x := opa.runtime()[\"regorus-version\"]".into(), false)
            .unwrap();
        let built = &results.result[0].bindings[&regorus::Value::from("x")];
        assert_eq!(built.as_string().unwrap().as_ref(), REGORUS_VERSION);
    }

    #[test]
    fn the_watchdog_abandons_a_worker_that_does_not_yield() {
        let started = Instant::now();
        let done = collect_with_deadline(
            3,
            Instant::now() + Duration::from_millis(150),
            "test-worker".into(),
            |tx| {
                tx.send((0, "first")).unwrap();
                std::thread::sleep(Duration::from_secs(20));
                let _ = tx.send((1, "too late"));
            },
        )
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(done.0.into_iter().collect::<Vec<_>>(), vec![(0, "first")]);
        assert_eq!(done.1, Wait::TimedOut);
    }

    #[test]
    fn a_worker_that_panics_ends_the_wait() {
        let started = Instant::now();
        let (done, wait): (BTreeMap<usize, u8>, Wait) = collect_with_deadline(
            2,
            Instant::now() + Duration::from_secs(30),
            "test-worker".into(),
            |_tx| panic!("policy worker crashed"),
        )
        .unwrap();
        assert!(done.is_empty());
        assert_eq!(wait, Wait::WorkerStopped);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    fn builtin_engine() -> PolicyEngine {
        PolicyEngine::new(EngineSpec {
            builtin: Some(BuiltinSettings::default()),
            ..Default::default()
        })
        .unwrap()
    }

    fn plan_input(after: serde_json::Value) -> EvalInput {
        let plan = serde_json::json!({
            "format_version": "1.2",
            "resource_changes": [{
                "address": "aws_db_instance.db", "mode": "managed", "type": "aws_db_instance",
                "name": "db",
                "change": {"actions": ["create"], "before": null, "after": after},
            }],
        });
        let change = crate::ChangeContext {
            env: "prod".into(),
            stack: "prod/db".into(),
            production: Some(true),
            ..Default::default()
        };
        // Built by hand, not through `EvalInput::plan`: the engine's own behaviour is under
        // test here, with documents nested deeper than a plan JSON parser accepts.
        EvalInput::new(
            serde_json::json!({
                "plan": plan,
                "change": serde_json::to_value(&change).unwrap(),
                "stack": {"id": "prod/db"},
            }),
            change.stack.clone(),
        )
    }

    #[test]
    fn built_in_bundles_compile_only_for_the_inputs_they_judge() {
        let engine = builtin_engine();
        let compiled = |t: Target| {
            engine
                .bundles
                .iter()
                .filter(|b| b.target == Some(t))
                .all(|b| b.prepared.get().is_some())
        };
        assert!(!compiled(Target::Plan) && !compiled(Target::Manifests));
        let ids = engine.known_rule_ids();
        let record = engine
            .evaluate(&plan_input(
                serde_json::json!({"publicly_accessible": true}),
            ))
            .unwrap();
        assert!(compiled(Target::Plan));
        assert!(
            !compiled(Target::Manifests),
            "a plan needs no Kubernetes rules"
        );
        assert!(record.results.iter().any(|r| r.outcome == Outcome::Deny));
        // Known ids do not depend on what has been compiled.
        assert_eq!(engine.known_rule_ids(), ids);
        engine.prepare(Target::Manifests).unwrap();
        assert!(compiled(Target::Manifests));
        assert_eq!(engine.known_rule_ids(), ids);
    }

    #[test]
    fn owned_evaluation_gives_the_borrowed_record() {
        let engine = builtin_engine();
        let mut deep = serde_json::json!("leaf");
        for _ in 0..canonical::MAX_READ_DEPTH + 10 {
            deep = serde_json::json!({ "a": deep });
        }
        // Read back from the canonical text; then from the tree (nested past the reader's
        // limit), with a float that needs all 17 digits.
        for after in [
            serde_json::json!({"publicly_accessible": true, "allocated_storage": 20}),
            serde_json::json!({"publicly_accessible": true, "x": 0.30000000000000004, "tags": deep}),
        ] {
            let input = plan_input(after);
            let by_ref = engine.evaluate(&input).unwrap();
            assert!(by_ref.results.iter().any(|r| r.outcome == Outcome::Deny));
            assert_eq!(engine.evaluate_owned(input).unwrap(), by_ref);
        }
    }

    #[test]
    fn rule_paths_quote_odd_components() {
        assert_eq!(rule_path(&["main".into()], "deny"), "data.main.deny");
        assert_eq!(
            rule_path(&["a".into(), "1.0".into()], "warn"),
            r#"data.a["1.0"].warn"#
        );
    }

    #[test]
    fn results_follow_conftest_conventions() {
        use serde_json::json;
        assert!(parse_results(&json!(null), "deny").unwrap().is_empty());
        let r = parse_results(
            &json!(["a", {"msg": "b", "address": "x.y", "rule": "R1", "severity": "high"}]),
            "deny",
        )
        .unwrap();
        assert_eq!(r[0].msg, "a");
        assert_eq!(
            (r[1].resource.as_deref(), r[1].id.as_deref()),
            (Some("x.y"), Some("R1"))
        );
        assert!(
            parse_results(&json!(true), "deny")
                .unwrap_err()
                .contains("found a boolean")
        );
        assert!(
            parse_results(&json!([{"msg": 3}]), "deny")
                .unwrap_err()
                .contains("`msg` must be a string")
        );
        assert!(
            parse_results(&json!([{"msg": "m"}]), "require_approval")
                .unwrap_err()
                .contains("groups")
        );
        let g = parse_results(
            &json!([{"msg": "m", "groups": "security"}]),
            "require_approval",
        )
        .unwrap();
        assert_eq!(g[0].groups, ["security"]);
        let long = "x".repeat(5000);
        assert!(parse_results(&json!([long]), "warn").unwrap()[0].msg.len() < 2100);
    }
}
